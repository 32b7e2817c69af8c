//! One 256 MiB line, and an endless stream without a newline, through the
//! sources that read pipes (exec, stdin): the agent's peak memory stays
//! bounded, the cut line is counted, the lines around it are whole
//! (issue 13, fault 3). Files share the same framing.
use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The long line: 256 MiB.
const LONG: usize = 256 << 20;
/// What the agent may grow by, at most, while it streams through: a small
/// multiple of max_line_bytes (64 KiB by default) and of the read buffers,
/// with room for the allocator and the scrapes. Before the fix the whole
/// line was held: 256 MiB and more.
const GROWTH: u64 = 48 << 20;

/// Kilobytes of a `VmRSS:`/`VmHWM:` line of /proc/PID/status.
fn status_kb(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}

/// Counts the lines by kind: `first`, `last`, and cut lines of x
/// (64 KiB of them); anything else is not counted. PIPE is the pipeline.
const PIPELINE: &str = r#"plugin = "regex-log"
[[pipeline.PIPE.config.metrics]]
name = "PIPE_lines_total"
type = "counter"
labels = ["word"]
[[pipeline.PIPE.config.rules]]
regex = '^(?P<word>first|last)$'
emit = [ { metric = "PIPE_lines_total" } ]
[[pipeline.PIPE.config.rules]]
regex = '^x+$'
emit = [ { metric = "PIPE_lines_total", labels = { word = "cut" } } ]
[[pipeline.PIPE.config.rules]]
regex = '^\x00+$'
emit = [ { metric = "PIPE_lines_total", labels = { word = "cut" } } ]
"#;

fn counts(s: &Scrape, pipeline: &str) -> (f64, f64) {
    (
        s.val("weir_source_lines_total", &[("pipeline", pipeline)]),
        s.val(
            "weir_source_lines_truncated_total",
            &[("pipeline", pipeline)],
        ),
    )
}

#[test]
fn a_256_mib_line_from_a_command_is_cut_counted_and_costs_no_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let go = tmp.path().join("go");
    // Waits for the test to measure the agent at rest, then prints a
    // line, the long line, a line; then stays (no restart, no repeat).
    let script = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; echo first; head -c {LONG} /dev/zero | tr '\\0' x; echo; echo last; exec sleep 600",
        go.display()
    );
    let mut cfg = format!(
        "[pipeline.long]\nsource = {{ type = \"exec\", command = [\"sh\", \"-c\", {script:?}] }}\n"
    );
    cfg += &PIPELINE.replace("PIPE", "long");
    // And an endless stream without a newline: NUL bytes, forever.
    cfg += "[pipeline.endless]\nsource = { type = \"exec\", command = [\"cat\", \"/dev/zero\"] }\n";
    cfg += &PIPELINE.replace("PIPE", "endless");
    std::fs::write(dir.join("p.toml"), cfg).expect("write");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let pid = agent.child.as_ref().expect("child").id();
    // The endless stream runs from the start: at rest is after 256 MiB of it.
    agent.wait_for(60, "256 MiB of the endless stream", |s| {
        s.val("weir_source_bytes_total", &[("pipeline", "endless")]) >= LONG as f64
    });
    let rest = status_kb(pid, "VmRSS:") << 10;
    let s = agent.scrape();
    assert_eq!(counts(&s, "endless"), (1.0, 1.0), "one cut line, counted");
    assert_eq!(s.val("endless_lines_total", &[("word", "cut")]), 1.0);
    std::fs::write(&go, "").expect("go");
    let s = agent.wait_for(60, "the long line and the last line", |s| {
        counts(s, "long").0 == 3.0
            && s.val("weir_source_bytes_total", &[("pipeline", "endless")]) >= 2.0 * LONG as f64
    });
    assert_eq!(counts(&s, "long"), (3.0, 1.0));
    // The cut line is passed on: its first 64 KiB.
    for word in ["first", "cut", "last"] {
        assert_eq!(s.val("long_lines_total", &[("word", word)]), 1.0, "{word}");
    }
    let peak = status_kb(pid, "VmHWM:") << 10;
    eprintln!(
        "agent RSS at rest {} MiB, peak {} MiB",
        rest >> 20,
        peak >> 20
    );
    assert!(
        peak < rest + GROWTH,
        "peak RSS {} MiB, at rest {} MiB",
        peak >> 20,
        rest >> 20
    );
}

#[test]
fn a_256_mib_line_on_stdin_is_cut_counted_and_costs_no_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut cfg = "[pipeline.stdin]\nsource = { type = \"stdin\" }\n".to_string();
    cfg += &PIPELINE.replace("PIPE", "stdin");
    std::fs::write(dir.join("p.toml"), cfg).expect("write");
    let port = free_port();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    let log = std::fs::File::create(state.join("agent.log")).expect("log");
    let mut child = Command::new(WEIR)
        .args(["run", "--config-dir"])
        .arg(&dir)
        .arg("--state-dir")
        .arg(&state)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn weir");
    let pid = child.id();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = || -> Option<Scrape> {
        let r = ureq::get(&url)
            .timeout(Duration::from_secs(10))
            .call()
            .ok()?;
        Some(Scrape::parse(&r.into_string().ok()?))
    };
    let wait = |what: &str, f: &dyn Fn(&Scrape) -> bool| -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = scrape() {
                if f(&s) {
                    return s;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"first\n").expect("write");
    wait("the first line", &|s| counts(s, "stdin").0 == 1.0);
    let rest = status_kb(pid, "VmRSS:") << 10;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..(LONG >> 20) {
        input.write_all(&chunk).expect("write");
    }
    input.write_all(b"\r\nlast\r\n").expect("write");
    input.flush().expect("flush");
    let s = wait("the long line and the last line", &|s| {
        // Lines are counted when read, the words when the plugin's
        // updates are applied: wait for both.
        counts(s, "stdin").0 == 3.0 && s.val("stdin_lines_total", &[("word", "last")]) == 1.0
    });
    assert_eq!(counts(&s, "stdin"), (3.0, 1.0));
    for word in ["first", "cut", "last"] {
        assert_eq!(s.val("stdin_lines_total", &[("word", word)]), 1.0, "{word}");
    }
    let peak = status_kb(pid, "VmHWM:") << 10;
    eprintln!(
        "agent RSS at rest {} MiB, peak {} MiB",
        rest >> 20,
        peak >> 20
    );
    // A closed stdin ends the source, not the agent.
    drop(input);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("wait").is_none(), "agent exited");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        peak < rest + GROWTH,
        "peak RSS {} MiB, at rest {} MiB",
        peak >> 20,
        rest >> 20
    );
}
