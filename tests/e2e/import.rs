//! `weir import mtail` and `weir import grok-exporter`: the written file
//! passes `weir check`, runs with `weir test`, gives the values counted by
//! hand for the test logs, and every construct left out is reported with
//! file and line (exit 2).
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn inputs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/import")
}

/// Import `file` into `dir/NAME.toml`; the exit code and stderr.
fn import(kind: &str, file: &str, dir: &Path, name: &str) -> (i32, String) {
    let out = Command::new(WEIR)
        .args(["import", kind])
        .arg(inputs().join(file))
        .arg("-o")
        .arg(dir.join(format!("{name}.toml")))
        .output()
        .expect("run weir import");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(dir: &Path) {
    let out = Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(dir)
        .output()
        .expect("run weir check");
    assert!(
        out.status.success(),
        "weir check: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| std::fs::read_to_string(e.expect("entry").path()).ok())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn run(dir: &Path, pipeline: &str, log: &str) -> Scrape {
    let out = Command::new(WEIR)
        .args(["test", "--config-dir"])
        .arg(dir)
        .args(["--pipeline", pipeline, "--input"])
        .arg(inputs().join(log))
        .output()
        .expect("run weir test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Scrape::parse(&String::from_utf8_lossy(&out.stdout))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn mtail_webapp_translates_fully_and_counts_as_by_hand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, err) = import("mtail", "webapp.mtail", tmp.path(), "webapp");
    assert_eq!(code, 0, "{err}");
    check(tmp.path());
    let s = run(tmp.path(), "webapp", "webapp.log");
    let t = &s.text;
    assert_eq!(
        s.val(
            "webapp_requests_total",
            &[("method", "GET"), ("status", "200")]
        ),
        2.0,
        "{t}"
    );
    assert_eq!(
        s.val(
            "webapp_requests_total",
            &[("method", "POST"), ("status", "500")]
        ),
        1.0,
        "{t}"
    );
    assert_eq!(
        s.val(
            "webapp_requests_total",
            &[("method", "GET"), ("status", "404")]
        ),
        1.0,
        "{t}"
    );
    assert_eq!(s.val("webapp_bytes_sent_total", &[]), 360.0, "{t}");
    // GET: 0.03, 0.12, 0.005 s; POST: 0.7 s.
    assert_eq!(
        s.val(
            "webapp_latency_seconds_bucket",
            &[("method", "GET"), ("le", "0.05")]
        ),
        2.0,
        "{t}"
    );
    assert_eq!(
        s.val(
            "webapp_latency_seconds_bucket",
            &[("method", "GET"), ("le", "0.1")]
        ),
        2.0,
        "{t}"
    );
    assert_eq!(
        s.val(
            "webapp_latency_seconds_bucket",
            &[("method", "GET"), ("le", "0.5")]
        ),
        3.0,
        "{t}"
    );
    assert_eq!(
        s.val("webapp_latency_seconds_count", &[("method", "GET")]),
        3.0,
        "{t}"
    );
    assert!(
        close(
            s.val("webapp_latency_seconds_sum", &[("method", "GET")]),
            0.155
        ),
        "{t}"
    );
    assert_eq!(
        s.val(
            "webapp_latency_seconds_bucket",
            &[("method", "POST"), ("le", "0.5")]
        ),
        0.0,
        "{t}"
    );
    assert_eq!(
        s.val(
            "webapp_latency_seconds_bucket",
            &[("method", "POST"), ("le", "1")]
        ),
        1.0,
        "{t}"
    );
    // The last request sent 0 bytes.
    assert_eq!(s.get("webapp_last_size", &[]), Some(0.0), "{t}");
    // `otherwise`: the two lines that are no request.
    assert_eq!(s.val("webapp_unparsed_total", &[]), 2.0, "{t}");
}

#[test]
fn mtail_nested_blocks_numbered_captures_and_gauge_steps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, err) = import("mtail", "jobs.mtail", tmp.path(), "jobs");
    assert_eq!(code, 0, "{err}");
    // Nested regexes are joined in order, which is said, not hidden.
    assert!(
        err.contains("jobs.mtail:9: note: nested condition"),
        "{err}"
    );
    check(tmp.path());
    let s = run(tmp.path(), "jobs", "jobs.log");
    let t = &s.text;
    assert_eq!(
        s.val(
            "jobs_finished_total",
            &[("job", "hourly"), ("outcome", "ok")]
        ),
        2.0,
        "{t}"
    );
    assert_eq!(
        s.val(
            "jobs_finished_total",
            &[("job", "nightly"), ("outcome", "failed")]
        ),
        1.0,
        "{t}"
    );
    // started +1 +1, finished -1 -1, started +1, finished -1.
    assert_eq!(s.get("jobs_running", &[]), Some(0.0), "{t}");
    assert_eq!(s.get("jobs_rows", &[("job", "hourly")]), Some(25.0), "{t}");
    assert_eq!(s.get("jobs_rows", &[("job", "nightly")]), Some(0.0), "{t}");
    // `$job == "nightly"` narrowed into the regex, then `/=failed/`.
    assert_eq!(s.val("nightly_failures_total", &[]), 1.0, "{t}");
}

#[test]
fn mtail_untranslatable_constructs_are_reported_and_the_rest_still_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, err) = import("mtail", "partial.mtail", tmp.path(), "partial");
    assert_eq!(code, 2, "{err}");
    for (line, what) in [
        (3, "hidden gauge session_start"),
        (7, "strptime"),
        (10, "timestamp()"),
        (13, "timestamp()"),
        (14, "del session_start"),
    ] {
        let want = format!("partial.mtail:{line}: not translated: ");
        assert!(
            err.lines().any(|l| l.contains(&want) && l.contains(what)),
            "{want} {what}:\n{err}"
        );
    }
    let text = std::fs::read_to_string(tmp.path().join("partial.toml")).expect("written");
    assert_eq!(text.matches("# not translated: ").count(), 5, "{text}");
    check(tmp.path());
    let log = tmp.path().join("sessions.log");
    std::fs::write(
        &log,
        "Dec 14 10:00:00 ann login\nDec 14 10:05:00 bob login\nDec 14 10:07:00 ann logout\nDec 14 10:08:00 ann login\n",
    )
    .expect("write");
    let out = Command::new(WEIR)
        .args(["test", "--config-dir"])
        .arg(tmp.path())
        .args(["--pipeline", "partial", "--input"])
        .arg(&log)
        .output()
        .expect("run weir test");
    let s = Scrape::parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(s.val("logins_total", &[("user", "ann")]), 2.0, "{}", s.text);
    assert_eq!(s.val("logins_total", &[("user", "bob")]), 1.0, "{}", s.text);
}

#[test]
fn grok_exporter_config_translates_and_counts_as_by_hand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, err) = import("grok-exporter", "jobs.yml", tmp.path(), "jobs");
    assert_eq!(code, 0, "{err}");
    check(tmp.path());
    let s = run(tmp.path(), "jobs", "jobs-grok.log");
    let t = &s.text;
    assert_eq!(
        s.val("runs_total", &[("job", "export"), ("status", "ok")]),
        1.0,
        "{t}"
    );
    assert_eq!(
        s.val("runs_total", &[("job", "export"), ("status", "failed")]),
        1.0,
        "{t}"
    );
    assert_eq!(
        s.val("runs_total", &[("job", "import"), ("status", "ok")]),
        1.0,
        "{t}"
    );
    // {{divide .ms 1000}}: export 8.123 and 0.5 s, import 61 s.
    assert_eq!(
        s.val(
            "run_duration_seconds_bucket",
            &[("job", "export"), ("le", "1")]
        ),
        1.0,
        "{t}"
    );
    assert_eq!(
        s.val(
            "run_duration_seconds_bucket",
            &[("job", "export"), ("le", "10")]
        ),
        2.0,
        "{t}"
    );
    assert!(
        close(
            s.val("run_duration_seconds_sum", &[("job", "export")]),
            8.623
        ),
        "{t}"
    );
    assert_eq!(
        s.val(
            "run_duration_seconds_bucket",
            &[("job", "import"), ("le", "60")]
        ),
        0.0,
        "{t}"
    );
    assert_eq!(
        s.val("run_duration_seconds_count", &[("job", "import")]),
        1.0,
        "{t}"
    );
    assert_eq!(s.get("last_rows", &[("job", "export")]), Some(0.0), "{t}");
    assert_eq!(s.get("last_rows", &[("job", "import")]), Some(7.0), "{t}");
    assert_eq!(s.val("errors_total", &[]), 1.0, "{t}");
}

#[test]
fn grok_exporter_constructs_left_out_are_reported_at_their_lines() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (code, err) = import("grok-exporter", "partial.yml", tmp.path(), "partial");
    assert_eq!(code, 2, "{err}");
    for (line, what) in [
        (1, "webhook"),
        (3, "webhook_path"),
        (5, "patterns_dir"),
        (15, "base .logfile"),
        (16, "summary"),
        (27, "retention"),
        (28, "server"),
    ] {
        let want = format!("partial.yml:{line}: not translated: ");
        assert!(
            err.lines().any(|l| l.contains(&want) && l.contains(what)),
            "{want} {what}:\n{err}"
        );
    }
    check(tmp.path());
    let text = std::fs::read_to_string(tmp.path().join("partial.toml")).expect("written");
    // cumulative: true adds; the pattern of additional_patterns is kept.
    assert!(text.contains("op = \"add\""), "{text}");
    assert!(text.contains("USER = '[a-z]+'"), "{text}");
}
