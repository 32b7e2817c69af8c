//! Hostile plugins under the real agent: runaway calls, memory and stack
//! bombs, floods of updates, invalid updates, label-cardinality and
//! long-string bombs, crash loops, sandbox escapes and load-time misfits.
//!
//! For each: one log line naming the pipeline and the plugin, the reason
//! counted in the agent's own metrics, a healthy pipeline beside it that
//! keeps counting throughout, and the agent's resident memory under
//! [`RSS_BOUND`].
use crate::support::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The agent's resident memory must stay under this while plugins misbehave.
const RSS_BOUND: u64 = 400 << 20;

/// A file-fed pipeline reading `logs/NAME.log` beside the config
/// directory `conf` (not in it: a write there would start a reload).
/// Every pipeline gets the constant label `p = NAME`, so pipelines sharing
/// a plugin keep apart series of the same families.
fn pipeline(conf: &Path, name: &str, plugin: &Path, extra: &str) -> String {
    format!(
        "[pipeline.{name}]\nplugin = \"{}\"\nsource = {{ type = \"file\", paths = [\"{}\"], start_at = \"beginning\" }}\nlabels = {{ p = \"{name}\" }}\n{extra}\n",
        plugin.display(),
        log_of(conf, name).display()
    )
}

/// The log file a pipeline of [`pipeline`] reads.
fn log_of(conf: &Path, name: &str) -> PathBuf {
    conf.parent()
        .expect("conf has a parent")
        .join("logs")
        .join(format!("{name}.log"))
}

/// A config directory `root/conf` with the given pipelines, and an empty
/// log for each in `root/logs`.
fn conf_dir(root: &Path, pipelines: &[(&str, &Path, &str)]) -> PathBuf {
    let dir = root.join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::create_dir_all(root.join("logs")).expect("mkdir");
    let mut cfg = String::new();
    for (name, plugin, extra) in pipelines {
        cfg += &pipeline(&dir, name, plugin, extra);
        std::fs::write(log_of(&dir, name), "").expect("touch");
    }
    std::fs::write(dir.join("hostile.toml"), cfg).expect("write config");
    dir
}

fn pid(agent: &Agent) -> u32 {
    agent.child.as_ref().expect("running").id()
}

/// Resident memory of a process, from /proc.
fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Samples the agent's VmRSS every 20 ms and keeps the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = vm_rss(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stop sampling; the peak seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak()
    }
}

/// Feeds the `healthy` pipeline a line every 20 ms and watches its counter
/// `test_lines_total{p="healthy"}`: the longest time it stood still while
/// lines were waiting is the stall.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(u64, Duration)>>,
}

impl Heartbeat {
    fn start(agent: &Agent) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let log = log_of(&agent.dir, "healthy");
        let url = agent.url("/metrics");
        let handle = std::thread::spawn(move || {
            let mut written = 0u64;
            let mut last_count = -1.0;
            let mut last_move = Instant::now();
            let mut stall = Duration::ZERO;
            let mut next_scrape = Instant::now();
            while !s.load(Ordering::Relaxed) {
                append(&log, &format!("ok {written}\n"));
                written += 1;
                if Instant::now() >= next_scrape {
                    next_scrape = Instant::now() + Duration::from_millis(100);
                    let count = ureq::get(&url)
                        .timeout(Duration::from_secs(5))
                        .call()
                        .ok()
                        .and_then(|r| r.into_string().ok())
                        .map(|b| Scrape::parse(&b).val("test_lines_total", &[("p", "healthy")]));
                    if let Some(c) = count {
                        if c != last_count {
                            last_count = c;
                            last_move = Instant::now();
                        }
                        // Counted against the stall only while lines wait.
                        if c < written as f64 {
                            stall = stall.max(last_move.elapsed());
                        } else {
                            last_move = Instant::now();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (written, stall)
        });
        Heartbeat {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop feeding; wait until every line fed is counted; the longest
    /// stall seen.
    fn finish(mut self, agent: &Agent) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        let (written, stall) = self
            .handle
            .take()
            .expect("running")
            .join()
            .expect("heartbeat thread");
        agent.wait_for(30, "the healthy pipeline to count every line", |s| {
            s.val("test_lines_total", &[("p", "healthy")]) == written as f64
        });
        stall
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The longest the healthy pipeline may stand still with lines waiting.
const MAX_STALL: Duration = Duration::from_secs(3);

/// Whether a log or error line names this pipeline and plugin.
fn names(line: &str, name: &str, plugin: &Path) -> bool {
    line.contains(&format!("pipeline \"{name}\"")) && line.contains(&plugin.display().to_string())
}

/// The first log line that names the pipeline and the plugin and says
/// `needle`.
fn log_line_for(agent: &Agent, name: &str, plugin: &Path, needle: &str) -> String {
    let log = agent.log_text();
    match log
        .lines()
        .find(|l| names(l, name, plugin) && l.contains(needle))
    {
        Some(l) => l.to_string(),
        None => panic!(
            "no log line naming {name} and {} with {needle:?}; log:\n{log}",
            plugin.display()
        ),
    }
}

/// Seconds since the epoch of a log line's timestamp
/// (`2026-11-22T05:10:59.068853Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's way.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec)
}

/// `/metrics`, failing the test if it is bigger than `max` bytes.
fn scrape_bounded(agent: &Agent, max: usize) -> String {
    let r = ureq::get(&agent.url("/metrics"))
        .timeout(Duration::from_secs(30))
        .call()
        .expect("scrape");
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(r.into_reader(), max as u64 + 1),
        &mut body,
    )
    .expect("read the scrape");
    assert!(
        body.len() <= max,
        "the exposition is over {max} bytes: the agent keeps what a plugin sends, however big"
    );
    String::from_utf8(body).expect("utf-8 exposition")
}

fn errors(s: &Scrape, pipeline: &str, reason: &str) -> f64 {
    s.val(
        "weir_plugin_errors_total",
        &[("pipeline", pipeline), ("reason", reason)],
    )
}

fn rejected(s: &Scrape, pipeline: &str, reason: &str) -> f64 {
    s.val(
        "weir_plugin_updates_rejected_total",
        &[("pipeline", pipeline), ("reason", reason)],
    )
}

#[test]
fn bombs_are_contained_counted_and_agent_memory_stays_bounded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = test_plugin("misbehave");
    let f = test_plugin("flood");
    let dir = conf_dir(
        tmp.path(),
        &[
            ("healthy", &m, ""),
            ("spin", &m, "call_timeout = \"200ms\""),
            ("hog", &m, ""),
            ("deep", &m, ""),
            ("flood", &f, ""),
            (
                "big",
                &f,
                "memory_limit = \"160MiB\"\ncall_timeout = \"10s\"\nconfig = { updates = 1000000 }",
            ),
        ],
    );
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let rss = RssWatch::start(pid(&agent));
    let idle_rss = vm_rss(pid(&agent)).expect("VmRSS");
    let heartbeat = Heartbeat::start(&agent);

    // Infinite loop, memory bomb, stack overflow, ten million updates (all
    // fatal), and a million updates within a larger limit (taken whole).
    // Three rounds: each fault is counted, and nothing grows round after
    // round.
    let fatal = [
        ("spin", "LOOP", "timeout", "exceeded its deadline"),
        ("hog", "ALLOC", "memory_limit", "exceeded its memory limit"),
        ("deep", "RECURSE", "trap", "call stack exhausted"),
        ("flood", "go", "memory_limit", "exceeded its memory limit"),
    ];
    let mut peaks = Vec::new();
    for round in 1..=3 {
        for (name, trigger, _, _) in fatal {
            append(&log_of(&dir, name), &format!("{trigger}\n"));
        }
        append(&log_of(&dir, "big"), "go\n");
        let r = f64::from(round);
        agent.wait_for(60, &format!("round {round} of faults counted"), |s| {
            fatal
                .iter()
                .all(|(n, _, reason, _)| errors(s, n, reason) == r)
                && s.val("test_flood_total", &[("p", "big")]) == r * 1e6
        });
        peaks.push(rss.peak());
    }
    let s = agent.scrape();
    for (name, _, reason, words) in fatal {
        for other in ["trap", "timeout", "memory_limit", "plugin_error", "init"] {
            if other != reason {
                assert_eq!(errors(&s, name, other), 0.0, "{name}: {other}");
            }
        }
        assert_eq!(
            s.val("weir_plugin_restarts_total", &[("pipeline", name)]),
            3.0,
            "{name}"
        );
        assert_eq!(
            s.val("weir_pipeline_inputs_dropped_total", &[("pipeline", name)]),
            3.0,
            "{name}"
        );
        // One line says who failed and why.
        log_line_for(&agent, name, if name == "flood" { &f } else { &m }, words);
    }
    assert_eq!(
        s.val("weir_plugin_restarts_total", &[("pipeline", "big")]),
        0.0
    );
    assert!(s.val("weir_plugin_memory_bytes", &[("pipeline", "hog")]) < (64 << 20) as f64);

    let stall = heartbeat.finish(&agent);
    let peak = rss.finish();
    eprintln!(
        "agent VmRSS: idle {} MiB, peak after each round {:?} MiB, peak {} MiB; healthy stall {stall:?}",
        idle_rss >> 20,
        peaks.iter().map(|p| p >> 20).collect::<Vec<_>>(),
        peak >> 20
    );
    assert!(
        peak < RSS_BOUND,
        "agent VmRSS peaked at {} MiB (bound {} MiB)",
        peak >> 20,
        RSS_BOUND >> 20
    );
    assert!(stall < MAX_STALL, "healthy pipeline stood still {stall:?}");
}

#[test]
fn invalid_updates_cardinality_and_long_strings_are_refused_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = test_plugin("misbehave");
    let dir = conf_dir(
        tmp.path(),
        &[
            ("healthy", &m, ""),
            ("bad", &m, ""),
            (
                "cardinal",
                &m,
                "max_series = 1000\nconfig = { by_line = true }",
            ),
            ("long", &m, "config = { by_line = true }"),
        ],
    );
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let rss = RssWatch::start(pid(&agent));
    let heartbeat = Heartbeat::start(&agent);

    // Invalid updates: one call at a time, each with a label value too
    // many, a negative counter add, NaN, +Inf and an undeclared family.
    for i in 1..=3 {
        append(&log_of(&dir, "bad"), "ok\nINVALID\nok\n");
        let n = f64::from(i);
        agent.wait_for(20, "invalid updates refused", |s| {
            s.val("test_lines_total", &[("p", "bad")]) == 3.0 * n
        });
    }
    // A unique label value per line, five times past max_series.
    let unique: String = (0..5000).map(|i| format!("user-{i:05}\n")).collect();
    append(&log_of(&dir, "cardinal"), &unique);
    // Label values of 1 MiB, each a new series: 200 of them would hold
    // 200 MiB in the agent, and as much in every scrape.
    for i in 0..10 {
        let text: String = std::iter::once(format!("short {i}\n"))
            .chain((0..20).map(|j| format!("LONG {i}-{j}\n")))
            .collect();
        append(&log_of(&dir, "long"), &text);
        let want = 21.0 * f64::from(i + 1);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = scrape_bounded(&agent, 512 << 10);
            if Scrape::parse(&body).val("test_lines_total", &[("p", "long")]) == want {
                break;
            }
            assert!(Instant::now() < deadline, "long lines not counted");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let s = agent.wait_for(30, "the cardinality bomb read", |s| {
        s.val("test_lines_total", &[("p", "cardinal")]) == 5000.0
    });

    assert_eq!(rejected(&s, "bad", "label_count"), 3.0);
    assert_eq!(rejected(&s, "bad", "negative_counter"), 3.0);
    assert_eq!(rejected(&s, "bad", "not_finite"), 6.0);
    assert_eq!(rejected(&s, "bad", "unknown_family"), 3.0);
    // Refused updates are not faults: no error, no restart.
    for p in ["bad", "cardinal", "long"] {
        assert_eq!(
            s.val("weir_plugin_restarts_total", &[("pipeline", p)]),
            0.0,
            "{p}"
        );
        assert_eq!(errors(&s, p, "trap"), 0.0, "{p}");
    }

    // The series cap holds: past it, new label sets fold into one overflow
    // series of the family (its labels at "__overflow__"), so the family's
    // sum stays the number of lines; what was folded is counted, by family.
    assert_eq!(
        s.val("weir_pipeline_series", &[("pipeline", "cardinal")]),
        1001.0
    );
    assert_eq!(
        s.val(
            "weir_pipeline_series_dropped_total",
            &[("pipeline", "cardinal")]
        ),
        4001.0
    );
    assert_eq!(
        s.val(
            "weir_pipeline_series_overflow_total",
            &[("pipeline", "cardinal"), ("family", "test_by_line_total")]
        ),
        4001.0
    );
    let by_line: Vec<(&String, &f64)> = s
        .series
        .iter()
        .filter(|(k, _)| k.starts_with("test_by_line_total{p=\"cardinal\""))
        .collect();
    assert_eq!(by_line.len(), 1000);
    assert_eq!(by_line.iter().map(|(_, v)| **v).sum::<f64>(), 5000.0);
    let overflow = by_line
        .iter()
        .find(|(k, _)| k.contains("\"__overflow__\""))
        .unwrap_or_else(|| panic!("no overflow series: {by_line:?}"));
    assert_eq!(*overflow.1, 4001.0);

    // A label value of 1 MiB is refused and counted; the short lines'
    // series are kept, and the exposition stays small.
    assert_eq!(rejected(&s, "long", "label_too_long"), 200.0);
    assert_eq!(s.val("weir_pipeline_series", &[("pipeline", "long")]), 11.0);
    assert!(
        s.text.len() < 512 << 10,
        "exposition of {} bytes",
        s.text.len()
    );

    // One warning names the pipeline, the plugin and what was refused.
    let log = agent.log_text();
    for (name, what) in [
        ("bad", "negative_counter"),
        ("cardinal", "max_series"),
        ("long", "label_too_long"),
    ] {
        assert!(
            log.lines()
                .any(|l| names(l, name, &m) && l.contains("refused") && l.contains(what)),
            "no warning naming {name} and its plugin with {what}:\n{log}"
        );
    }

    let stall = heartbeat.finish(&agent);
    let peak = rss.finish();
    eprintln!(
        "agent VmRSS peak {} MiB; healthy stall {stall:?}",
        peak >> 20
    );
    assert!(peak < RSS_BOUND, "VmRSS peaked at {} MiB", peak >> 20);
    assert!(stall < MAX_STALL, "healthy pipeline stood still {stall:?}");
}

#[test]
fn a_crash_loop_backs_off_exponentially() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = test_plugin("misbehave");
    let dir = conf_dir(
        tmp.path(),
        &[
            ("healthy", &m, ""),
            ("crash", &m, "config = { trap_always = true }"),
        ],
    );
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let heartbeat = Heartbeat::start(&agent);

    // Lines keep coming, so every new instance is called at once and traps:
    // the time between the failures given up on (each announcing its
    // back-off) is the back-off. Retrying a batch in halves in between is
    // immediate, and bounded (it stops once no call succeeds).
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stop, log) = (stop.clone(), log_of(&dir, "crash"));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                append(&log, &format!("line {i}\n"));
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let announced = |log: &str| {
        log.lines()
            .filter(|l| names(l, "crash", &m) && l.contains("restarting the plugin in "))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while announced(&agent.log_text()) < 7 {
        assert!(
            std::time::Instant::now() < deadline,
            "seven back-offs not announced in 30 s:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    // When each fault was logged, and the back-off each line announced.
    let log = agent.log_text();
    let faults: Vec<(f64, &str)> = log
        .lines()
        .filter(|l| names(l, "crash", &m) && l.contains("trapped"))
        .filter_map(|l| {
            let at = log_time(l)?;
            let (_, backoff) = l.rsplit_once("restarting the plugin in ")?;
            Some((at, backoff))
        })
        .take(7)
        .collect();
    let announced: Vec<&str> = faults.iter().map(|(_, b)| *b).collect();
    assert_eq!(
        announced,
        ["100ms", "200ms", "400ms", "800ms", "1.6s", "3.2s", "6.4s"],
        "announced back-offs; log:\n{log}"
    );
    let intervals: Vec<Duration> = faults
        .windows(2)
        .map(|w| Duration::from_secs_f64(w[1].0 - w[0].0))
        .collect();
    eprintln!("intervals between restarts: {intervals:?}");
    // 100 ms doubling: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s, plus a new
    // instance's first call, longer on a busy machine.
    for (k, got) in intervals.iter().enumerate() {
        let want = Duration::from_millis(100 << k);
        assert!(
            *got >= want && *got <= want.mul_f64(1.5) + Duration::from_millis(300),
            "interval {k} was {got:?}, expected about {want:?}; all: {intervals:?}"
        );
    }
    let s = agent.scrape();
    assert!(
        s.val(
            "weir_pipeline_inputs_dropped_total",
            &[("pipeline", "crash")]
        ) >= 7.0
    );
    assert_eq!(
        errors(&s, "crash", "trap"),
        s.val("weir_plugin_restarts_total", &[("pipeline", "crash")])
    );
    let stall = heartbeat.finish(&agent);
    assert!(stall < MAX_STALL, "healthy pipeline stood still {stall:?}");
}

#[test]
fn wasi_is_denied_and_plugin_output_reaches_the_log_rate_limited() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = test_plugin("misbehave");
    let dir = conf_dir(
        tmp.path(),
        &[
            ("healthy", &m, ""),
            ("probe", &m, ""),
            // Each line written crosses into the host: give it time.
            ("chatty", &m, "call_timeout = \"10s\""),
        ],
    );
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let heartbeat = Heartbeat::start(&agent);

    // A listener the plugin tries to reach: it must see no connection.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (c, stop) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = listener.accept() {
                    c.lock().expect("lock").push(from);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    append(&log_of(&dir, "probe"), &format!("before\nPROBE {port}\n"));
    append(&log_of(&dir, "chatty"), "PRINT 300\n");
    let probes = ["file", "env", "args", "dir", "connect", "bind"];
    let s = agent.wait_for(20, "every probe reported", |s| {
        probes.iter().all(|w| {
            s.val(
                "test_probe_total",
                &[("p", "probe"), ("what", w), ("result", "denied")],
            ) + s.val(
                "test_probe_total",
                &[("p", "probe"), ("what", w), ("result", "allowed")],
            ) == 1.0
        }) && s.val("test_lines_total", &[("p", "chatty")]) == 1.0
    });
    for w in probes {
        assert_eq!(
            s.val(
                "test_probe_total",
                &[("p", "probe"), ("what", w), ("result", "denied")]
            ),
            1.0,
            "the sandbox let {w} through:\n{}",
            agent.log_text()
        );
    }
    // The plugin goes on working after being denied.
    append(&log_of(&dir, "probe"), "after 1\nafter 2\n");
    let s = agent.wait_for(20, "lines after the probes", |s| {
        s.val("test_lines_total", &[("p", "probe")]) == 4.0
    });
    for p in ["probe", "chatty"] {
        for reason in ["trap", "timeout", "memory_limit", "plugin_error"] {
            assert_eq!(errors(&s, p, reason), 0.0, "{p} {reason}");
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    assert!(
        connections.lock().expect("lock").is_empty(),
        "the plugin reached the listener"
    );

    // What the plugin wrote on stderr is in the agent log, tagged with the
    // pipeline and the stream.
    let log = agent.log_text();
    let tagged = |l: &&str, name: &str, stream: &str| {
        l.contains(&format!("plugin=\"{name}/")) && l.contains(&format!("stream=\"{stream}\""))
    };
    assert!(
        log.lines()
            .any(|l| tagged(&l, "probe", "stderr") && l.contains("probe connect: denied")),
        "{log}"
    );
    // 300 lines on each stream within one call: a few reach the log.
    for stream in ["stdout", "stderr"] {
        let n = log
            .lines()
            .filter(|l| tagged(l, "chatty", stream) && l.contains(&format!("to {stream} ")))
            .count();
        assert!(
            (1..=40).contains(&n),
            "{n} lines of chatty's {stream} in the log"
        );
    }
    let stall = heartbeat.finish(&agent);
    assert!(stall < MAX_STALL, "healthy pipeline stood still {stall:?}");
}

fn weir_check(dir: &Path) -> (bool, String) {
    let out = Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(dir)
        .output()
        .expect("run weir check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn load_time_misfits_fail_check_startup_and_reload_naming_pipeline_and_plugin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = test_plugin("misbehave");
    let evil = test_plugin("evil_import");
    let other = test_plugin("other_major");
    // (pipeline, plugin, settings, what the error must say)
    let misfits: [(&str, &Path, &str, &[&str]); 4] = [
        (
            "evil",
            &evil,
            "",
            &[
                "imports something the agent does not provide",
                "evil:net/socket",
            ],
        ),
        (
            "future",
            &other,
            "",
            &["weir:plugin@1.0.0", "weir:plugin@0.1.0"],
        ),
        (
            "stuck",
            &m,
            "call_timeout = \"300ms\"\nconfig = { loop_in_init = true }",
            &["init failed", "exceeded its deadline"],
        ),
        (
            "verbose",
            &m,
            "config = { help_bytes = 1048576 }",
            &["help", "1048576 bytes"],
        ),
    ];
    let expect_named = |text: &str, name: &str, plugin: &Path, words: &[&str]| {
        assert!(
            text.lines()
                .any(|l| names(l, name, plugin) && words.iter().all(|w| l.contains(w))),
            "no line naming {name} and {} with {words:?}:\n{text}",
            plugin.display()
        );
    };

    // `weir check`: each misfit alone fails, naming pipeline, plugin, cause.
    for (name, plugin, extra, words) in misfits {
        let dir = tmp.path().join(format!("check-{name}"));
        let dir = conf_dir(&dir, &[(name, plugin, extra)]);
        let (ok, err) = weir_check(&dir);
        assert!(!ok, "weir check passed {name}");
        expect_named(&err, name, plugin, words);
        assert!(err.contains("1 error(s)"), "{err}");
    }

    // `weir run` refuses to start on one, and says why.
    let dir = conf_dir(
        &tmp.path().join("run"),
        &[("healthy", &m, ""), ("evil", &evil, "")],
    );
    let mut agent = Agent::spawn(&dir, &tmp.path().join("run-state"));
    let mut child = agent.child.take().expect("spawned");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent started with a plugin it cannot link");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = agent.log_text();
    expect_named(&log, "evil", &evil, misfits[0].3);
    assert!(log.contains("not starting"), "{log}");

    // On reload the misfits are refused together, and the running
    // pipeline keeps counting throughout.
    let dir = conf_dir(&tmp.path().join("reload"), &[("healthy", &m, "")]);
    let agent = Agent::start(&dir, &tmp.path().join("reload-state"));
    let heartbeat = Heartbeat::start(&agent);
    let mut bad = String::new();
    for (name, plugin, extra, _) in misfits {
        bad += &pipeline(&dir, name, plugin, extra);
        std::fs::write(log_of(&dir, name), "").expect("touch");
    }
    std::fs::write(dir.join("misfits.toml"), bad).expect("write");
    agent.signal("HUP");
    let s = agent.wait_for(30, "the reload refused", |s| {
        s.val("weir_config_last_reload_successful", &[]) == 0.0
    });
    assert!(s.val("weir_config_reloads_total", &[("result", "failure")]) >= 1.0);
    for (name, _, _, _) in misfits {
        assert_eq!(
            s.val("weir_plugin_calls_total", &[("pipeline", name)]),
            0.0,
            "{name} is running"
        );
        assert!(
            !s.text.contains(&format!("pipeline=\"{name}\"")),
            "{name} is exposed:\n{}",
            s.text
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = agent.log_text();
    for (name, plugin, _, words) in misfits {
        expect_named(&log, name, plugin, words);
    }
    assert!(log.contains("the running pipelines are unchanged"), "{log}");
    // Taking them out again reloads cleanly.
    std::fs::remove_file(dir.join("misfits.toml")).expect("rm");
    agent.signal("HUP");
    agent.wait_for(30, "a clean reload", |s| {
        s.val("weir_config_last_reload_successful", &[]) == 1.0
    });
    let stall = heartbeat.finish(&agent);
    assert!(stall < MAX_STALL, "healthy pipeline stood still {stall:?}");
}
