//! Other line sources and the json-log built-in, end to end: an exec
//! source restarted with back-off, and a zerolog-style JSON access log
//! checked against counts computed here.
use crate::rotation::{counted, setup};
use crate::support::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A pipeline counting the `line N` lines of a command's output.
fn exec_pipeline(name: &str, script: &str) -> String {
    format!(
        r#"[pipeline.{name}]
plugin = "regex-log"
source = {{ type = "exec", command = ["sh", "-c", {script:?}] }}

[[pipeline.{name}.config.metrics]]
name = "{name}_lines_total"
type = "counter"
help = "Lines."

[[pipeline.{name}.config.metrics]]
name = "{name}_numbers_total"
type = "counter"
help = "Sum of line numbers."

[[pipeline.{name}.config.rules]]
regex = '^line (?P<n>\d+)$'
emit = [ {{ metric = "{name}_lines_total" }}, {{ metric = "{name}_numbers_total", value = "n" }} ]
"#
    )
}

/// Wait until pipeline `name` shows exactly `want` (lines, numbers);
/// returns when it did.
fn wait_exact(agent: &Agent, name: &str, want: (f64, f64), secs: u64) -> Instant {
    agent.wait_for(secs, &format!("{name} at {want:?}"), |s| {
        let got = counted(s, name);
        assert!(
            got.0 <= want.0,
            "{name}: {got:?}, expected {want:?} at most"
        );
        got == want
    });
    Instant::now()
}

/// A command that prints three lines and exits is run again after 1 s,
/// then 2 s (the back-off doubles while runs are short); every run's lines
/// are counted once; its standard error, invalid UTF-8 included, lands in
/// the agent log tagged with the pipeline, and never stops the command.
#[test]
fn exec_source_restarts_with_back_off_and_logs_stderr() {
    let script = "printf 'first warning \\377 not utf-8\\n' >&2; sleep 0.2; \
                  echo 'exec-stderr-marker from the command' >&2; \
                  echo line 1; echo line 2; echo line 3";
    let mut conf = exec_pipeline("cmd", script);
    conf.push('\n');
    conf.push_str(&exec_pipeline("failing", "echo line 5; exit 3"));
    let (tmp, dir) = setup(&conf);
    let agent = Agent::start(&dir, &tmp.path().join("state"));

    let t1 = wait_exact(&agent, "cmd", (3.0, 6.0), 20);
    let t2 = wait_exact(&agent, "cmd", (6.0, 12.0), 20);
    let t3 = wait_exact(&agent, "cmd", (9.0, 18.0), 20);
    // Times are seen through 50 ms polls: allow for that.
    let (d1, d2) = (t2 - t1, t3 - t2);
    assert!(
        d1 >= Duration::from_millis(850),
        "first restart after {d1:?}"
    );
    assert!(
        d2 >= Duration::from_millis(1850),
        "second restart after {d2:?}"
    );
    assert!(d2 > d1, "back-off did not grow: {d1:?} then {d2:?}");
    wait_exact(&agent, "failing", (3.0, 15.0), 20);

    let log = agent.log_text();
    let tagged = |needle: &str| {
        log.lines()
            .any(|l| l.contains(needle) && l.contains("pipeline=cmd"))
    };
    assert!(tagged("exec-stderr-marker from the command"), "{log}");
    assert!(tagged("first warning \u{fffd} not utf-8"), "{log}");
    assert!(tagged("restarting in 1s"), "{log}");
    assert!(tagged("restarting in 2s"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("exit status: 3") && l.contains("pipeline=failing")),
        "{log}"
    );
    let s = agent.scrape();
    assert_eq!(
        s.val("weir_source_lines_total", &[("pipeline", "cmd")]),
        9.0
    );
    // Each exit is counted; the command never failed to start.
    assert!(
        s.val(
            "weir_source_errors_total",
            &[("pipeline", "cmd"), ("reason", "exit")]
        ) >= 2.0
    );
    assert_eq!(
        s.val(
            "weir_source_errors_total",
            &[("pipeline", "cmd"), ("reason", "spawn")]
        ),
        0.0
    );
}

/// Processes whose command line is exactly `sleep SECS`.
fn sleepers(secs: &str) -> usize {
    let want = format!("sleep\0{secs}\0");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| c == want.as_bytes())
                .unwrap_or(false)
        })
        .count()
}

/// Stopping the agent ends the command and what it started (a child that
/// holds the output pipe open would otherwise keep the source reading).
#[test]
fn exec_source_stops_with_the_commands_children() {
    // A duration no other process uses: "600.<our pid>" seconds.
    let secs = format!("600.{}", std::process::id());
    let secs = secs.as_str();
    let script = format!("echo line 1; sleep {secs}; echo line 2");
    let (tmp, dir) = setup(&exec_pipeline("sleeper", &script));
    let mut agent = Agent::start(&dir, &tmp.path().join("state"));
    wait_exact(&agent, "sleeper", (1.0, 1.0), 20);
    assert_eq!(sleepers(secs), 1);
    let t = Instant::now();
    assert!(agent.stop().success());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleepers(secs) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sleepers(secs), 0, "the command's child outlived the agent");
}

const BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
const METHODS: [&str; 5] = ["GET", "GET", "POST", "PUT", "DELETE"];
const STATUSES: [u16; 5] = [200, 200, 201, 404, 500];
const PATHS: [&str; 3] = ["/api/v1/tables/users", "/api/v1/tables/orders", "/health"];
const LEVELS: [&str; 3] = ["info", "info", "warn"];

/// The json-log example's pipeline, as shipped in examples/json-log.
fn example_config() -> String {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/json-log/api.toml"),
    )
    .expect("example config");
    // The test picks its own port.
    example.replace("[server]\nlisten = \"127.0.0.1:9731\"\n", "")
}

#[derive(Default)]
struct Expected {
    /// (method, status) -> requests, /health excluded.
    requests: BTreeMap<(String, String), u64>,
    /// method -> cumulative bucket counts, count, sum (seconds).
    durations: BTreeMap<String, ([u64; 9], u64, f64)>,
    /// level -> JSON lines.
    levels: BTreeMap<String, u64>,
    rejected: u64,
    lines: u64,
}

fn json_lines(rng: &mut Rng, n: usize, exp: &mut Expected) -> String {
    let mut out = String::new();
    for i in 0..n {
        exp.lines += 1;
        match rng.below(20) {
            0 => {
                // Not JSON: a panic trace, a plain line.
                out.push_str(if i % 2 == 0 {
                    "panic: runtime error: index out of range [3] with length 3\n"
                } else {
                    "\tgoroutine 1 [running]:\n"
                });
                exp.rejected += 1;
                continue;
            }
            1 => {
                let level = LEVELS[rng.below(3) as usize];
                out.push_str(&format!(
                    "{{\"level\":\"{level}\",\"message\":\"cache refreshed\",\"entries\":{}}}\n",
                    rng.below(1000)
                ));
                *exp.levels.entry(level.to_string()).or_default() += 1;
                continue;
            }
            _ => {}
        }
        let method = METHODS[rng.below(METHODS.len() as u64) as usize];
        let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        let path = PATHS[rng.below(PATHS.len() as u64) as usize];
        // Milliseconds with a fraction, some right on bucket bounds.
        let ms = if rng.below(5) == 0 {
            [5.0, 10.0, 25.0, 100.0, 2500.0][rng.below(5) as usize]
        } else {
            rng.below(300_000) as f64 / 100.0
        };
        let level = if status >= 500 { "error" } else { "info" };
        out.push_str(&format!(
            "{{\"level\":\"{level}\",\"time\":\"2026-11-22T10:00:{:02}Z\",\"message\":\"HTTP request\",\"method\":\"{method}\",\"path\":\"{path}\",\"status\":{status},\"duration_ms\":{ms}}}\n",
            i % 60
        ));
        *exp.levels.entry(level.to_string()).or_default() += 1;
        if path == "/health" {
            continue;
        }
        *exp.requests
            .entry((method.to_string(), status.to_string()))
            .or_default() += 1;
        let d = exp.durations.entry(method.to_string()).or_default();
        let secs = ms * 0.001;
        for (b, bound) in d.0.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *b += 1;
            }
        }
        d.1 += 1;
        d.2 += secs;
    }
    out
}

/// A zerolog-style access log through the json-log built-in (the shipped
/// example's pipeline), written while the agent runs: requests by method
/// and status, the latency histogram (milliseconds scaled to seconds) and
/// lines by level all match counts computed here; lines that are not JSON
/// are counted as rejected inputs.
#[test]
fn json_log_counts_match_independent_computation() {
    let (tmp, dir) = setup(&example_config());
    std::fs::create_dir_all(dir.join("sample")).expect("sample dir");
    let log = dir.join("sample/api.log");
    let mut rng = Rng(0x15_0000);
    let mut exp = Expected::default();
    // Some lines before the start (the example reads from the beginning).
    append(&log, &json_lines(&mut rng, 500, &mut exp));
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    for _ in 0..6 {
        append(&log, &json_lines(&mut rng, 700, &mut exp));
        std::thread::sleep(Duration::from_millis(40));
    }
    let lines = exp.lines as f64;
    let s = agent.wait_for(30, "every line read and handled", |s| {
        s.val("weir_source_lines_total", &[("pipeline", "api")]) == lines
            && s.sum("app_log_messages_total")
                + s.val("weir_plugin_inputs_rejected_total", &[("pipeline", "api")])
                == lines
    });
    assert!(exp.rejected > 0);
    assert_eq!(
        s.val("weir_plugin_inputs_rejected_total", &[("pipeline", "api")]),
        exp.rejected as f64
    );
    for (level, n) in &exp.levels {
        assert_eq!(
            s.get("app_log_messages_total", &[("level", level)]),
            Some(*n as f64),
            "level {level}"
        );
    }
    let total: u64 = exp.requests.values().sum();
    assert_eq!(s.sum("app_http_requests_total"), total as f64);
    for ((m, st), n) in &exp.requests {
        assert_eq!(
            s.get("app_http_requests_total", &[("method", m), ("status", st)]),
            Some(*n as f64),
            "requests {m} {st}"
        );
    }
    for (m, (buckets, count, sum)) in &exp.durations {
        for (i, bound) in BUCKETS.iter().enumerate() {
            let le = format!("{bound}");
            assert_eq!(
                s.get(
                    "app_http_request_duration_seconds_bucket",
                    &[("method", m), ("le", &le)]
                ),
                Some(buckets[i] as f64),
                "{m} bucket le={le}"
            );
        }
        assert_eq!(
            s.get(
                "app_http_request_duration_seconds_bucket",
                &[("method", m), ("le", "+Inf")]
            ),
            Some(*count as f64)
        );
        assert_eq!(
            s.get("app_http_request_duration_seconds_count", &[("method", m)]),
            Some(*count as f64)
        );
        let got = s.val("app_http_request_duration_seconds_sum", &[("method", m)]);
        assert!(
            (got - sum).abs() < 1e-6 * sum.max(1.0),
            "{m} sum {got} vs {sum}"
        );
    }
}

/// The example directory runs as it is (`weir run --config-dir
/// examples/json-log`) and serves the figures of its sample log.
#[test]
fn json_log_example_runs_as_shipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/json-log");
    let sample = std::fs::read_to_string(dir.join("sample/api.log")).expect("sample log");
    let rejected = sample
        .lines()
        .filter(|l| !l.trim_start().starts_with('{'))
        .count() as f64;
    let requests = sample
        .lines()
        .filter(|l| l.contains("\"HTTP request\"") && !l.contains("\"/health"))
        .count() as f64;
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let s = agent.wait_for(20, "the sample read", |s| {
        s.val("weir_source_lines_total", &[("pipeline", "api")]) == sample.lines().count() as f64
            && s.sum("app_http_requests_total") == requests
    });
    assert!(requests > 0.0 && rejected > 0.0);
    assert_eq!(
        s.val("weir_plugin_inputs_rejected_total", &[("pipeline", "api")]),
        rejected
    );
    assert_eq!(s.sum("app_http_request_duration_seconds_count"), requests);
}

/// Linux names are bytes: a file whose name is not UTF-8 (a Latin-1 name)
/// matched by a glob is read like any other, and shown (log, `path` label)
/// with U+FFFD for the bytes that are not UTF-8.
#[test]
fn a_file_whose_name_is_not_utf8_is_read() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let odd = logs.join(std::ffi::OsStr::from_bytes(b"app-\xff\xfe.log"));
    std::fs::write(&odd, "one\ntwo\n").expect("write");
    std::fs::write(logs.join("app-plain.log"), "three\n").expect("write");
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("p.toml"),
        format!(
            "[pipeline.web]\nplugin = \"{}\"\nsource = {{ type = \"file\", paths = [\"{}/app-*.log\"], start_at = \"beginning\" }}\n",
            test_plugin("misbehave").display(),
            logs.display()
        ),
    )
    .expect("w");
    let mut a = Agent::start(&conf, &tmp.path().join("state"));
    let shown = format!("{}/app-\u{FFFD}\u{FFFD}.log", logs.display());
    let s = a.wait_for(20, "both files read", |s| {
        s.get(
            "weir_file_lines_total",
            &[("pipeline", "web"), ("path", &shown)],
        ) == Some(2.0)
    });
    assert_eq!(s.sum("test_lines_total"), 3.0);
    // Appended lines are followed too.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&odd)
        .expect("open");
    std::io::Write::write_all(&mut f, b"four\n").expect("append");
    a.wait_for(20, "the appended line", |s| {
        s.sum("test_lines_total") == 4.0
    });
    a.stop();
}
