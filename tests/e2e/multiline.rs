//! Multi-line records with the real binary: Java, Python and Go traces
//! interleaved with ordinary lines, across a rotation and a restart in the
//! middle of a trace; records cut at `max_lines`; records passed on by
//! their timeout and at a command's exit (where peers have lost or held
//! back the last record).
//!
//! Each pipeline counts with regex-log: every record; ordinary lines that
//! came as records of their own (`\A...\z`, no line feed); and whole
//! traces, a record from its header line (`trace=ID`) to its last line
//! (`end=ID`), adding both ids. A trace split in two matches neither half;
//! two records merged lose one count; so `traces == T`, `ids == ends ==
//! sum of ids` and `plain == P` say each trace and each line was counted
//! once and whole.
use crate::support::*;
use std::path::Path;

const LANGS: [&str; 3] = ["java", "python", "go"];

fn trace(lang: &str, id: u64) -> String {
    match lang {
        "java" => format!(
            "2026-12-03T10:00:00Z ERROR trace={id} request failed\n\
             java.lang.IllegalStateException: boom {id}\n\
             \tat com.example.App.handle(App.java:42)\n\
             \tat com.example.App.main(App.java:10)\n\
             Caused by: java.io.IOException: disk full\n\
             \tat com.example.Disk.write(Disk.java:7)\n\
             \t... 2 more end={id}\n"
        ),
        "python" => format!(
            "2026-12-03T10:00:00Z ERROR trace={id} request failed\n\
             Traceback (most recent call last):\n\
             \x20 File \"/app/a.py\", line 3, in handle\n\
             \x20   f()\n\
             KeyError: 'x'\n\
             \n\
             During handling of the above exception, another exception occurred:\n\
             \n\
             Traceback (most recent call last):\n\
             \x20 File \"/app/a.py\", line 5, in handle\n\
             \x20   g()\n\
             ValueError: bad end={id}\n"
        ),
        _ => format!(
            "panic: trace={id} runtime error: index out of range [5] with length 3\n\
             \n\
             goroutine 1 [running]:\n\
             main.handler(0xc000012345, {{0x4b2f00, 0x3}})\n\
             \t/src/main.go:12 +0x1d\n\
             net/http.(*conn).serve(0xc0000a4000)\n\
             \t/usr/local/go/src/net/http/server.go:2092 +0x5d0\n\
             created by net/http.(*Server).Serve in goroutine 6\n\
             \t/usr/local/go/src/net/http/server.go:3285 +0x4b4 end={id}\n"
        ),
    }
}

/// What was written to one pipeline's log, and what it must count.
#[derive(Default)]
struct Expect {
    plain: u64,
    traces: u64,
    ids: u64,
    lines: u64,
    next: u64,
}

impl Expect {
    /// `n` items: ordinary lines, every third a trace.
    fn items(&mut self, lang: &str, n: u64) -> String {
        let mut out = String::new();
        for _ in 0..n {
            self.next += 1;
            let item = if self.next.is_multiple_of(3) {
                self.traces += 1;
                self.ids += self.next;
                trace(lang, self.next)
            } else {
                self.plain += 1;
                format!("2026-12-03T10:00:00Z INFO seq={}\n", self.next)
            };
            self.lines += item.lines().count() as u64;
            out.push_str(&item);
        }
        out
    }

    /// A trace cut after its first `k` lines: (first part, rest).
    fn split_trace(&mut self, lang: &str, k: usize) -> (String, String) {
        self.next += 1;
        self.traces += 1;
        self.ids += self.next;
        let t = trace(lang, self.next);
        self.lines += t.lines().count() as u64;
        let cut = t
            .match_indices('\n')
            .nth(k - 1)
            .map(|(i, _)| i + 1)
            .unwrap_or(0);
        (t[..cut].to_string(), t[cut..].to_string())
    }
}

fn pipeline(lang: &str, source: &str, multiline: &str) -> String {
    format!(
        r#"
[pipeline.{lang}]
plugin = "regex-log"
source = {source}
multiline = {multiline}
[pipeline.{lang}.config]
metrics = [
  {{ name = "{lang}_records_total", type = "counter", help = "Records." }},
  {{ name = "{lang}_plain_total", type = "counter", help = "Ordinary lines, each a record." }},
  {{ name = "{lang}_traces_total", type = "counter", help = "Whole traces." }},
  {{ name = "{lang}_trace_ids_total", type = "counter", help = "Ids of whole traces, from their first line." }},
  {{ name = "{lang}_trace_ends_total", type = "counter", help = "Ids of whole traces, from their last line." }},
]
[[pipeline.{lang}.config.rules]]
regex = ''
emit = [{{ metric = "{lang}_records_total" }}]
[[pipeline.{lang}.config.rules]]
regex = '\A\S+ INFO seq=\d+\z'
emit = [{{ metric = "{lang}_plain_total" }}]
[[pipeline.{lang}.config.rules]]
regex = '(?s)\A[^\n]*trace=(?P<id>\d+) .*\n.*end=(?P<end>\d+)\z'
emit = [
  {{ metric = "{lang}_traces_total" }},
  {{ metric = "{lang}_trace_ids_total", value = "id" }},
  {{ metric = "{lang}_trace_ends_total", value = "end" }},
]
"#
    )
}

/// The five counters of pipeline `lang`, and its lines read.
fn counts(s: &Scrape, lang: &str) -> [f64; 6] {
    [
        s.val(&format!("{lang}_records_total"), &[]),
        s.val(&format!("{lang}_plain_total"), &[]),
        s.val(&format!("{lang}_traces_total"), &[]),
        s.val(&format!("{lang}_trace_ids_total"), &[]),
        s.val(&format!("{lang}_trace_ends_total"), &[]),
        s.val("weir_source_lines_total", &[("pipeline", lang)]),
    ]
}

fn file_config(dir: &Path, logs: &Path) -> String {
    LANGS
        .iter()
        .map(|l| {
            let path = logs.join(format!("{l}.log"));
            pipeline(
                l,
                &format!(
                    "{{ type = \"file\", paths = [\"{}\"], start_at = \"beginning\" }}",
                    path.display()
                ),
                &format!("{{ preset = \"{l}\", timeout = \"5s\" }}"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + &format!("# {}\n", dir.display())
}

/// Java, Python and Go traces among ordinary lines. The agent is stopped
/// (SIGTERM) while the last trace of each file is half written, and
/// started again: the trace's first part is read again with the rest,
/// so it counts once and whole. The files are then rotated (rename and
/// create) and written on. Every trace and line counts exactly once.
#[test]
fn traces_across_a_restart_mid_record_and_a_rotation() {
    let d = tempfile::tempdir().expect("tempdir");
    let (conf, logs, state) = (
        d.path().join("conf"),
        d.path().join("logs"),
        d.path().join("state"),
    );
    for p in [&conf, &logs, &state] {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(conf.join("p.toml"), file_config(&conf, &logs)).expect("config");
    let mut expect: Vec<Expect> = LANGS.iter().map(|_| Expect::default()).collect();
    let mut rests = Vec::new();
    let mut half_lines = Vec::new();
    for (l, e) in LANGS.iter().zip(&mut expect) {
        let mut text = e.items(l, 20);
        let (first, rest) = e.split_trace(l, 3);
        text.push_str(&first);
        append(&logs.join(format!("{l}.log")), &text);
        rests.push(rest);
        half_lines.push(3.0);
    }
    // Run 1: everything before the half trace is passed on (its first
    // line ends the record before it); the half trace waits.
    let mut a = Agent::start(&conf, &state);
    let mut run1 = Vec::new();
    for (i, l) in LANGS.iter().enumerate() {
        let e = &expect[i];
        let before_records = (e.plain + e.traces - 1) as f64;
        let lines = (e.lines - rests[i].lines().count() as u64) as f64;
        let s = a.wait_for(20, &format!("{l}: run 1 read"), |s| {
            let c = counts(s, l);
            c[0] == before_records && c[5] == lines
        });
        run1.push(counts(&s, l));
    }
    // Well within the 5 s timeout of the half-read traces.
    assert_eq!(a.stop().code(), Some(0));
    // The half traces were not passed on.
    for (i, l) in LANGS.iter().enumerate() {
        assert_eq!(
            run1[i][2],
            (expect[i].traces - 1) as f64,
            "{l}: {:?}",
            run1[i]
        );
    }

    // Run 2: the rest of each trace, more, a rotation, more.
    let mut a = Agent::start(&conf, &state);
    for (i, l) in LANGS.iter().enumerate() {
        let log = logs.join(format!("{l}.log"));
        let more = expect[i].items(l, 10);
        append(&log, &format!("{}{more}", rests[i]));
    }
    for (i, l) in LANGS.iter().enumerate() {
        let lines = expect[i].lines as f64 - run1[i][5];
        a.wait_for(20, &format!("{l}: run 2 read before rotating"), |s| {
            counts(s, l)[5] == lines + half_lines[i]
        });
        let log = logs.join(format!("{l}.log"));
        std::fs::rename(&log, logs.join(format!("{l}.log.1"))).expect("rotate");
        let more = expect[i].items(l, 14);
        append(&log, &more);
    }
    for (i, l) in LANGS.iter().enumerate() {
        let e = &expect[i];
        let want = [
            (e.plain + e.traces) as f64,
            e.plain as f64,
            e.traces as f64,
            e.ids as f64,
            e.ids as f64,
            // The half trace was read in both runs.
            e.lines as f64 + half_lines[i],
        ];
        // The counters go on from run 1's values (kept with the
        // checkpoint); lines read are the agent's own figure, per process.
        let s = a.wait_for(30, &format!("{l}: every record"), |s| {
            let mut c = counts(s, l);
            c[5] += run1[i][5];
            c == want
        });
        assert_eq!(
            s.val("weir_source_records_truncated_total", &[("pipeline", l)]),
            0.0
        );
        assert!(
            s.val(
                "weir_file_rotations_total",
                &[
                    ("pipeline", l),
                    ("path", &logs.join(format!("{l}.log")).display().to_string())
                ]
            ) >= 1.0,
            "{l}: rotation seen"
        );
    }
    assert_eq!(a.stop().code(), Some(0));
}

fn small_pipeline(name: &str, source: &str, multiline: &str, rules: &[(&str, &str)]) -> String {
    let mut out = format!(
        "[pipeline.{name}]\nplugin = \"regex-log\"\nsource = {source}\nmultiline = {multiline}\n\
         [pipeline.{name}.config]\nmetrics = [\n"
    );
    for (metric, _) in rules {
        out.push_str(&format!(
            "  {{ name = \"{name}_{metric}_total\", type = \"counter\", help = \"{metric}\" }},\n"
        ));
    }
    out.push_str("]\n");
    for (metric, regex) in rules {
        out.push_str(&format!(
            "[[pipeline.{name}.config.rules]]\nregex = '{regex}'\nemit = [{{ metric = \"{name}_{metric}_total\" }}]\n"
        ));
    }
    out
}

/// A record past `max_lines` keeps its first lines, drops the rest (they
/// make no records of their own) and is counted as cut. A record with no
/// line after it is passed on by its timeout; lines that continue it
/// after that make a record of their own. A command's last record is
/// passed on when it exits, and one it leaves unfinished while it keeps
/// running, by the timeout.
#[test]
fn max_lines_timeout_and_a_commands_last_record() {
    let d = tempfile::tempdir().expect("tempdir");
    let (conf, state) = (d.path().join("conf"), d.path().join("state"));
    std::fs::create_dir_all(&conf).expect("mkdir");
    let log = d.path().join("app.log");
    let mut text = String::from("2026 ERROR big\n");
    for i in 1..=11 {
        text.push_str(&format!("  at frame {i}\n"));
    }
    text.push_str("2026 INFO after\n");
    append(&log, &text);
    let config = [
        small_pipeline(
            "cut",
            &format!("{{ type = \"file\", paths = [\"{}\"], start_at = \"beginning\" }}", log.display()),
            "{ continue = '^\\s', max_lines = 5, timeout = \"500ms\" }",
            &[
                ("records", ""),
                ("big", r"(?s)\A2026 ERROR big\n  at frame 1\n  at frame 2\n  at frame 3\n  at frame 4\z"),
                ("slow", r"(?s)\A2026 ERROR slow\n  at s1\z"),
                ("late", r"\A  at s2\z"),
            ],
        ),
        small_pipeline(
            "eof",
            "{ type = \"exec\", command = [\"sh\", \"-c\", \"printf 'E1 ERROR\\\\n  at a\\\\n  at b\\\\n'\"] }",
            "{ preset = \"java\", timeout = \"60s\" }",
            &[("whole", r"(?s)\AE1 ERROR\n  at a\n  at b\z"), ("split", r"\AE1 ERROR\z")],
        ),
        small_pipeline(
            "idle",
            "{ type = \"exec\", command = [\"sh\", \"-c\", \"printf 'T1 ERROR\\\\n  at a\\\\n'; exec sleep 600\"] }",
            "{ preset = \"java\", timeout = \"300ms\" }",
            &[("whole", r"(?s)\AT1 ERROR\n  at a\z")],
        ),
    ]
    .join("\n");
    std::fs::write(conf.join("p.toml"), config).expect("config");
    let a = Agent::start(&conf, &state);
    let s = a.wait_for(20, "the cut record and the last line", |s| {
        s.val("cut_records_total", &[]) == 2.0
    });
    assert_eq!(s.val("cut_big_total", &[]), 1.0);
    assert_eq!(
        s.val(
            "weir_source_records_truncated_total",
            &[("pipeline", "cut")]
        ),
        1.0
    );
    assert_eq!(
        s.val("weir_source_lines_total", &[("pipeline", "cut")]),
        13.0
    );

    append(&log, "2026 ERROR slow\n  at s1\n");
    a.wait_for(10, "the unfinished record, by its timeout", |s| {
        s.val("cut_records_total", &[]) == 3.0 && s.val("cut_slow_total", &[]) == 1.0
    });
    append(&log, "  at s2\n");
    let s = a.wait_for(10, "the late line, a record of its own", |s| {
        s.val("cut_records_total", &[]) == 4.0 && s.val("cut_late_total", &[]) == 1.0
    });
    assert_eq!(s.val("cut_slow_total", &[]), 1.0);

    // Each run of the command ends with its record whole (it is run again
    // after each exit, so it may count more than once).
    let s = a.wait_for(10, "the command's last record at its exit", |s| {
        s.val("eof_whole_total", &[]) >= 1.0
    });
    assert_eq!(s.val("eof_split_total", &[]), 0.0);
    a.wait_for(10, "the running command's record, by its timeout", |s| {
        s.val("idle_whole_total", &[]) == 1.0
    });
}

/// SIGKILL while a trace is half written, after the checkpoint of the
/// lines before it was written: the next run reads the trace from its
/// first line, whole, and nothing before it again.
#[test]
fn sigkill_mid_trace_reads_it_again_whole() {
    let d = tempfile::tempdir().expect("tempdir");
    let (conf, logs, state) = (
        d.path().join("conf"),
        d.path().join("logs"),
        d.path().join("state"),
    );
    for p in [&conf, &logs, &state] {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    let log = logs.join("java.log");
    std::fs::write(
        conf.join("p.toml"),
        pipeline(
            "java",
            &format!(
                "{{ type = \"file\", paths = [\"{}\"], start_at = \"beginning\" }}",
                log.display()
            ),
            "{ preset = \"java\", timeout = \"30s\" }",
        ),
    )
    .expect("config");
    let mut e = Expect::default();
    let mut text = e.items("java", 8);
    let (first, rest) = e.split_trace("java", 4);
    text.push_str(&first);
    append(&log, &text);
    let mut a = Agent::start(&conf, &state);
    let before = (e.plain + e.traces - 1) as f64;
    a.wait_for(20, "the lines before the half trace", |s| {
        counts(s, "java")[0] == before
    });
    // The checkpoint is written within CHECKPOINT_EVERY (1 s) of the last
    // acknowledgement.
    std::thread::sleep(std::time::Duration::from_millis(1600));
    a.kill();
    let a = Agent::start(&conf, &state);
    append(&log, &format!("{rest}2026-12-03T10:00:00Z INFO seq=999\n"));
    let s = a.wait_for(20, "the trace, whole", |s| {
        counts(s, "java")[2] == e.traces as f64
    });
    let c = counts(&s, "java");
    // The values saved with the checkpoint come back (everything before
    // the half trace), and the trace is counted once, whole: 4 lines read
    // again, the rest of the trace, one more line waiting.
    assert_eq!(c[0], before + 1.0, "{c:?}");
    assert_eq!(c[1], e.plain as f64, "{c:?}");
    assert_eq!(c[3], c[4]);
    assert_eq!(c[3], e.ids as f64);
    assert_eq!(c[5], (4 + rest.lines().count() + 1) as f64, "{c:?}");
}
