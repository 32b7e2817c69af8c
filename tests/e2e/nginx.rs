//! The nginx example, fed while the agent runs; every value checked
//! against counts computed here.
use crate::support::*;
use std::collections::BTreeMap;
use std::path::Path;

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const METHODS: [&str; 5] = ["GET", "GET", "POST", "PUT", "DELETE"];
const STATUSES: [&str; 6] = ["200", "200", "201", "304", "404", "500"];
// Includes exact zeros and values right on bucket bounds.
const TIMES_MS: [u64; 9] = [0, 0, 1, 5, 10, 99, 100, 1000, 12000];

#[derive(Default)]
struct Expected {
    requests: BTreeMap<(String, String), u64>,
    bytes: u64,
    buckets: [u64; 11],
    count: u64,
    sum_ms: u64,
}

fn lines(rng: &mut Rng, n: usize, exp: &mut Expected) -> String {
    let mut out = String::new();
    for i in 0..n {
        let m = METHODS[rng.below(METHODS.len() as u64) as usize];
        let s = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        let bytes = rng.below(20_000);
        let ms = if rng.below(3) == 0 {
            TIMES_MS[rng.below(TIMES_MS.len() as u64) as usize]
        } else {
            rng.below(3000)
        };
        out.push_str(&format!(
            "10.0.{}.{} - - [22/Nov/2026:10:00:{:02} +0000] \"{m} /p/{} HTTP/1.1\" {s} {bytes} \"-\" \"agent/{}\" {}.{:03}\n",
            i % 256,
            rng.below(256),
            i % 60,
            rng.below(100),
            rng.below(9),
            ms / 1000,
            ms % 1000
        ));
        *exp.requests
            .entry((m.to_string(), s.to_string()))
            .or_default() += 1;
        exp.bytes += bytes;
        exp.count += 1;
        exp.sum_ms += ms;
        let secs = ms as f64 / 1000.0;
        for (b, bound) in exp.buckets.iter_mut().zip(BUCKETS) {
            if secs <= bound {
                *b += 1;
            }
        }
    }
    out
}

fn setup(dir: &Path) {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/nginx/nginx.toml"),
    )
    .expect("example config");
    // The test picks its own port; drop the example's [server] table.
    let example = example.replace("[server]\nlisten = \"127.0.0.1:9731\"\n", "");
    std::fs::write(dir.join("nginx.toml"), example).expect("write config");
    std::fs::create_dir_all(dir.join("sample")).expect("sample dir");
    std::fs::write(dir.join("sample/access.log"), "").expect("empty log");
}

#[test]
fn nginx_counts_match_independent_computation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("conf dir");
    setup(&dir);
    let log = dir.join("sample/access.log");
    let agent = Agent::start(&dir, &tmp.path().join("state"));

    let mut rng = Rng(0x5eed_1234);
    let mut exp = Expected::default();
    for round in 0..5 {
        let mut chunk = lines(&mut rng, 1500, &mut exp);
        // Lines that match no rule, and bytes that are not UTF-8, are
        // read and ignored.
        chunk.push_str("this is not an access log line\n");
        append(&log, &chunk);
        let mut raw = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        std::io::Write::write_all(&mut raw, b"\xff\xfe garbage \xc3\n").expect("write");
        if round % 2 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
    }
    let total = exp.count as f64;
    let s = agent.wait_for(30, "all requests counted", |s| {
        s.sum("http_requests_total") >= total
    });

    assert_eq!(s.sum("http_requests_total"), total);
    for ((m, st), n) in &exp.requests {
        assert_eq!(
            s.get("http_requests_total", &[("method", m), ("status", st)]),
            Some(*n as f64),
            "requests {m} {st}"
        );
    }
    assert_eq!(
        s.get("http_response_bytes_total", &[]),
        Some(exp.bytes as f64)
    );
    for (i, bound) in BUCKETS.iter().enumerate() {
        let le = format!("{bound}");
        assert_eq!(
            s.get("http_request_duration_seconds_bucket", &[("le", &le)]),
            Some(exp.buckets[i] as f64),
            "bucket le={le}"
        );
    }
    assert_eq!(
        s.get("http_request_duration_seconds_bucket", &[("le", "+Inf")]),
        Some(total)
    );
    assert_eq!(
        s.get("http_request_duration_seconds_count", &[]),
        Some(total)
    );
    let sum = s.val("http_request_duration_seconds_sum", &[]);
    assert!((sum - exp.sum_ms as f64 / 1000.0).abs() < 1e-6, "sum {sum}");
    // The zeros are in the lowest bucket: at least the exact-zero lines.
    assert!(exp.buckets[0] > 0);
    // Self-metrics agree with what was written: every line was read.
    let lines_read = s.val("weir_source_lines_total", &[("pipeline", "nginx")]);
    assert_eq!(lines_read, total + 10.0);
    assert_eq!(
        s.val(
            "weir_pipeline_up",
            &[("pipeline", "nginx"), ("plugin", "regex-log")]
        ),
        1.0
    );
    assert_eq!(
        s.val("weir_pipeline_series", &[("pipeline", "nginx")]),
        (exp.requests.len() + 2) as f64
    );
}

#[test]
fn promtool_finds_a_real_scrape_clean() {
    let promtool = which("promtool").expect(
        "promtool is needed for this test: apt-get install prometheus (./dev setup does it)",
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("conf dir");
    setup(&dir);
    append(&dir.join("sample/access.log"), "");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let mut exp = Expected::default();
    append(
        &dir.join("sample/access.log"),
        &lines(&mut Rng(7), 200, &mut exp),
    );
    agent.wait_for(20, "lines counted", |s| {
        s.sum("http_requests_total") >= 200.0
    });
    // promtool lints the 0.0.4 text format.
    let body = agent.scrape_text();
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), body.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed:\n{report}\n{body}");
    assert!(
        report.trim().is_empty(),
        "promtool lint findings:\n{report}"
    );

    // OpenMetrics when asked for it, as Prometheus 3 asks.
    let r = ureq::get(&agent.url("/metrics"))
        .set("Accept", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
        .call()
        .expect("scrape");
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let om = r.into_string().expect("body");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE http_requests counter\n"), "{om}");
    assert!(
        om.contains("# UNIT http_request_duration_seconds seconds\n"),
        "{om}"
    );
    assert!(om.contains("\nhttp_response_bytes_total "), "{om}");
    assert!(!om.contains("{}"), "{om}");
    assert_eq!(om.matches("# EOF").count(), 1);
}

pub fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}
