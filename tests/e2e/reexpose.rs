//! Re-exposition that one odd upstream cannot break: upstreams whose
//! expositions are valid alone but clash or break OpenMetrics' rules when
//! merged, served to prometheus-text pipelines of one agent; the combined
//! scrape checked by `promtool`, the official Python OpenMetrics parser
//! and a real Prometheus, which must keep the target up.
use crate::prometheus::PromServer;
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upstream expositions (written for this test), by path.
const UPSTREAMS: &[(&str, &str)] = &[
    // A Go exporter's pair: gauge x and counter x_total, and a HELP with a
    // line feed, backslashes and quotes (OpenMetrics escapes).
    (
        "go",
        "# HELP go_memstats_alloc_bytes Bytes allocated and still in use.\n\
         # TYPE go_memstats_alloc_bytes gauge\n\
         go_memstats_alloc_bytes 1024\n\
         # HELP go_memstats_alloc_bytes_total Total bytes allocated, even if freed.\n\
         # TYPE go_memstats_alloc_bytes_total counter\n\
         go_memstats_alloc_bytes_total 4096\n\
         # HELP app_matches_total Lines matching \\\\d+ in C:\\\\logs.\\nSecond line with a \"quote\".\n\
         # TYPE app_matches_total counter\n\
         app_matches_total{path=\"C:\\\\logs\\\\a \\\"b\\\"\"} 3\n",
    ),
    // OpenMetrics from another exporter: escaped quotes in HELP, unknown
    // label escapes, a histogram with a negative bound, a summary with a
    // negative quantile value, a gauge histogram with _sum/_count, a
    // histogram with only +Inf and one without _sum.
    (
        "om",
        "# TYPE temp_celsius histogram\n\
         # HELP temp_celsius Temperature, \\\"outside\\\".\n\
         temp_celsius_bucket{le=\"-10.0\"} 1\n\
         temp_celsius_bucket{le=\"0.0\"} 2\n\
         temp_celsius_bucket{le=\"+Inf\"} 4\n\
         temp_celsius_sum 3.5\n\
         temp_celsius_count 4\n\
         # TYPE drift summary\n\
         drift{quantile=\"0.5\"} -0.25\n\
         drift{quantile=\"0.9\"} 0.5\n\
         drift_sum -1.0\n\
         drift_count 8\n\
         # TYPE queue gaugehistogram\n\
         queue_bucket{le=\"+Inf\"} 3\n\
         queue_sum 1.0\n\
         queue_count 3\n\
         # TYPE only_inf histogram\n\
         only_inf_bucket{le=\"+Inf\"} 7\n\
         only_inf_count 7\n\
         only_inf_sum 2.0\n\
         # TYPE no_sum histogram\n\
         no_sum_bucket{le=\"1.0\"} 1\n\
         no_sum_bucket{le=\"+Inf\"} 2\n\
         # TYPE odd_escape gauge\n\
         odd_escape{v=\"a\\zb\"} 1\n\
         # TYPE weird wibble\n\
         weird 1\n\
         # EOF\n",
    ),
    // A summary "rpc" here, a gauge "rpc_count" in the next upstream: the
    // merged 0.0.4 scrape would fail promtool.
    (
        "summary",
        "# TYPE rpc summary\nrpc{quantile=\"0.5\"} 0.1\nrpc_sum 3\nrpc_count 7\n",
    ),
    ("clash", "# TYPE rpc_count gauge\nrpc_count 99\n# TYPE ok gauge\nok 1\n"),
];

/// Serves UPSTREAMS on 127.0.0.1 until dropped.
struct Upstreams {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Upstreams {
    fn start() -> Upstreams {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/');
                let body = UPSTREAMS
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map_or("", |(_, b)| b);
                let ct = if body.ends_with("# EOF\n") {
                    "application/openmetrics-text; version=1.0.0; charset=utf-8"
                } else {
                    "text/plain; version=0.0.4; charset=utf-8"
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Upstreams { port, stop }
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const OM_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

fn scrape_om(agent: &Agent) -> String {
    let r = ureq::get(&agent.url("/metrics"))
        .set("Accept", OM_ACCEPT)
        .timeout(Duration::from_secs(10))
        .call()
        .expect("scrape");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        r.header("content-type")
    );
    r.into_string().expect("body")
}

/// `promtool check metrics`: the parse must succeed (lint findings are
/// about upstream naming, not validity).
fn promtool_parses(text: &str) {
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (./dev setup installs prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !report.contains("error while linting") && !report.contains("parsing error"),
        "promtool could not parse the scrape:\n{report}\n{text}"
    );
}

/// The Python with prometheus_client that `./dev setup` installs:
/// `$WEIR_PYTHON`, its virtualenv, or the python3 on PATH.
pub fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("WEIR_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    if let Some(venv) = cache.map(|c| c.join("weir-dev/venv/bin/python")) {
        if venv.exists() {
            return venv;
        }
    }
    "python3".into()
}

/// The official Python OpenMetrics parser reads the whole scrape.
pub fn python_openmetrics_parses(text: &str) {
    let mut child = Command::new(python())
        .args([
            "-c",
            "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
             fams = list(p(sys.stdin.read()))\nprint(len(fams))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (./dev setup installs prometheus_client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the Python OpenMetrics parser refused the scrape:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config(dir: &Path, port: u16) {
    let mut t = String::new();
    for (name, _) in UPSTREAMS {
        t.push_str(&format!(
            "[pipeline.{name}]\nplugin = \"prometheus-text\"\n\
             source = {{ type = \"http\", url = \"http://127.0.0.1:{port}/{name}\", interval = \"500ms\", timeout = \"2s\" }}\n\n"
        ));
    }
    std::fs::write(dir.join("upstreams.toml"), t).expect("write config");
}

#[test]
fn clashing_and_odd_upstreams_give_a_scrape_valid_in_both_formats_and_prometheus_keeps_it_up() {
    let up = Upstreams::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("conf dir");
    config(&dir, up.port);
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let s = agent.wait_for(30, "every upstream read", |s| {
        UPSTREAMS
            .iter()
            .all(|(p, _)| s.val("weir_plugin_calls_total", &[("pipeline", p)]) >= 1.0)
            && s.get("ok", &[]).is_some()
    });
    let text = agent.scrape_text();
    promtool_parses(&text);
    // 0.0.4: the gauge rpc_count of "clash" would join the summary rpc.
    assert!(text.contains("rpc_count 7\n"), "{text}");
    assert!(!text.contains("rpc_count 99"), "{text}");
    assert!(
        text.contains(
            "# HELP app_matches_total Lines matching \\\\d+ in C:\\\\logs.\\nSecond line with a \"quote\".\n"
        ),
        "{text}"
    );
    assert!(text.contains("odd_escape{v=\"a\\\\zb\"} 1\n"), "{text}");
    assert!(text.contains("only_inf_bucket{le=\"+Inf\"} 7\n"), "{text}");
    assert!(
        text.contains("no_sum_bucket{le=\"+Inf\"} 2\nno_sum_count 2\n"),
        "{text}"
    );
    assert!(!text.contains("no_sum_sum"), "{text}");
    // The refused gauge histogram's _sum and _count do not leak out.
    assert!(!text.contains("queue"), "{text}");
    assert!(
        s.val(
            "weir_exposition_conflicts_total",
            &[("format", "text"), ("reason", "name_clash")]
        ) > 0.0
    );
    // Rejected: the gauge histogram's three samples and the unknown TYPE line.
    assert!(
        s.val("weir_plugin_inputs_rejected_total", &[("pipeline", "om")]) >= 4.0,
        "{text}"
    );

    let om = scrape_om(&agent);
    python_openmetrics_parses(&om);
    assert!(
        om.contains(
            "# HELP app_matches Lines matching \\\\d+ in C:\\\\logs.\\nSecond line with a \\\"quote\\\".\n"
        ),
        "{om}"
    );
    assert!(
        om.contains("# TYPE go_memstats_alloc_bytes_total unknown\n"),
        "{om}"
    );
    assert!(om.contains("go_memstats_alloc_bytes_total 4096\n"), "{om}");
    assert!(
        om.contains("# HELP temp_celsius Temperature, \\\"outside\\\".\n"),
        "{om}"
    );
    assert!(!om.contains("temp_celsius_sum"), "{om}");
    assert!(
        !om.contains("drift{quantile=\"0.5\"}") && !om.contains("drift_sum"),
        "{om}"
    );
    assert!(om.contains("drift{quantile=\"0.9\"} 0.5\n"), "{om}");
    // The first OpenMetrics scrape already counts what it left out itself
    // (a negative quantile and a negative _sum of "drift"): the conflicts
    // family is written after the walk that finds them.
    let first = Scrape::parse(&om);
    assert!(
        first.val(
            "weir_exposition_conflicts_total",
            &[("format", "openmetrics"), ("reason", "quantile_dropped")]
        ) >= 2.0,
        "{om}"
    );

    // A real Prometheus asks for OpenMetrics first: the target stays up
    // and weir's own series arrive with the upstreams'.
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            agent.port
        ),
    )
    .expect("write prometheus.yml");
    let prom = PromServer::start(
        &config,
        &tmp.path().join("data"),
        &tmp.path().join("prom.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut ups = 0;
    loop {
        let up = prom.query("up{job=\"weir\"}");
        if up.first().is_some_and(|(_, v)| *v == 1.0) {
            ups += 1;
        } else {
            assert!(
                up.is_empty() || ups == 0,
                "the target went down after {ups} good scrapes\n{}",
                prom.log_text()
            );
        }
        let got = prom.query("go_memstats_alloc_bytes_total");
        let own = prom.query("weir_pipeline_up");
        if ups >= 3
            && got.first().is_some_and(|(_, v)| *v == 4096.0)
            && own.len() == UPSTREAMS.len()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not keep weir up with every series ({ups} up samples)\n{}",
            prom.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let help = prom
        .api("/api/v1/metadata", &[])
        .map(|d| d.to_string())
        .unwrap_or_default();
    assert!(help.contains("Second line with a \\\"quote\\\""), "{help}");
    drop(up);
}
