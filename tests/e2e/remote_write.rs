//! Pushing to remote-write receivers: a real Prometheus (with its
//! receiver enabled) gets weir's series with the right values, including
//! samples queued while it was down; receivers that answer 500, 400 or
//! slowly are handled as the protocol asks.
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Prom(Child);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_prometheus(port: u16, dir: &std::path::Path) -> Prom {
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1m\n",
    )
    .expect("w");
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log"))
        .spawn()
        .expect("prometheus is needed: apt-get install prometheus");
    let p = Prom(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = ureq::get(&format!("http://127.0.0.1:{port}/-/ready")).call() {
            if r.status() == 200 {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "prometheus not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of an instant query's single result, if any.
fn query(port: u16, q: &str) -> Option<f64> {
    let r = ureq::get(&format!("http://127.0.0.1:{port}/api/v1/query"))
        .query("query", q)
        .call()
        .ok()?
        .into_string()
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&r).ok()?;
    let res = v["data"]["result"].as_array()?;
    let first = res.first()?;
    first["value"][1].as_str()?.parse().ok()
}

fn config(dir: &std::path::Path, url: &str, extra: &str) {
    std::fs::write(
        dir.join("weir.toml"),
        format!(
            r#"[[remote_write]]
url = "{url}"
interval = "300ms"
timeout = "1s"
external_labels = {{ host = "test-host" }}
drop = ["^weir_file_"]
{extra}

[pipeline.app]
plugin = "regex-log"
source = {{ type = "file", paths = ["app.log"], start_at = "beginning" }}
[[pipeline.app.config.metrics]]
name = "app_lines_total"
type = "counter"
[[pipeline.app.config.rules]]
regex = "^line"
[[pipeline.app.config.rules.emit]]
metric = "app_lines_total"
"#
        ),
    )
    .expect("w");
}

#[test]
fn prometheus_receives_series_including_those_queued_while_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let pport = free_port();
    config(&conf, &format!("http://127.0.0.1:{pport}/api/v1/write"), "");
    let lines: String = (0..37).map(|i| format!("line {i}\n")).collect();
    std::fs::write(conf.join("app.log"), &lines).expect("w");
    // The receiver is down at first: weir queues and retries.
    let agent = Agent::start(&conf, &tmp.path().join("state"));
    let s = agent.wait_for(20, "retries while the receiver is down", |s| {
        s.val(
            "weir_remote_write_samples_retried_total",
            &[("target", &format!("127.0.0.1:{pport}"))],
        ) > 0.0
    });
    let started_down = Instant::now();
    let queued = s.val(
        "weir_remote_write_queue_samples",
        &[("target", &format!("127.0.0.1:{pport}"))],
    );
    assert!(queued > 0.0);
    std::thread::sleep(Duration::from_millis(700));
    let _prom = start_prometheus(pport, tmp.path());
    let target = format!("127.0.0.1:{pport}");
    let s = agent.wait_for(30, "queue drained", |s| {
        s.val("weir_remote_write_queue_samples", &[("target", &target)]) == 0.0
            && s.val(
                "weir_remote_write_samples_sent_total",
                &[("target", &target)],
            ) > queued
    });
    assert_eq!(
        s.val(
            "weir_remote_write_samples_dropped_total",
            &[("target", &target)]
        ),
        0.0
    );
    assert_eq!(
        s.val(
            "weir_remote_write_samples_failed_total",
            &[("target", &target)]
        ),
        0.0
    );
    // Prometheus has the value, with the external label.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if query(pport, "app_lines_total{host=\"test-host\"}") == Some(37.0) {
            break;
        }
        assert!(Instant::now() < deadline, "series not in Prometheus");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Samples collected while it was down arrived too: the series has
    // points from before Prometheus started.
    let secs = started_down.elapsed().as_secs() + 2;
    let n = query(pport, &format!("count_over_time(app_lines_total[{secs}s])")).unwrap_or(0.0);
    assert!(n >= 3.0, "only {n} samples in the last {secs}s");
    assert_eq!(
        query(pport, "weir_pipeline_up{pipeline=\"app\"}"),
        Some(1.0)
    );
    // Histograms arrive as their series; dropped families do not.
    assert!(query(
        pport,
        "weir_plugin_call_duration_seconds_count{pipeline=\"app\"}"
    )
    .is_some());
    assert!(query(pport, "count(weir_file_lines_total)").is_none());
}

/// A receiver that answers `status` to every request after `delay`.
fn fake_receiver(status: u16, delay: Duration, count: Arc<AtomicU64>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().take(500) {
            let Ok(mut s) = s else { continue };
            let c = count.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut buf = vec![0u8; 1 << 20];
                let mut got = Vec::new();
                // Read headers and body (Content-Length).
                loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len = text[..h]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= h + 4 + len {
                            break;
                        }
                    }
                }
                c.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(delay);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope"
                );
            });
        }
    });
    port
}

#[test]
fn server_errors_are_retried_client_errors_are_not_and_slow_receivers_time_out() {
    for (status, delay, retried) in [
        (500, Duration::ZERO, true),
        (429, Duration::ZERO, true),
        (400, Duration::ZERO, false),
        (204, Duration::from_millis(2500), true),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let conf = tmp.path().join("conf");
        std::fs::create_dir_all(&conf).expect("mkdir");
        let count = Arc::new(AtomicU64::new(0));
        let port = fake_receiver(status, delay, count.clone());
        config(
            &conf,
            &format!("http://127.0.0.1:{port}/api/v1/write"),
            "max_queue_samples = 2000",
        );
        std::fs::write(conf.join("app.log"), "line 1\n").expect("w");
        let agent = Agent::start(&conf, &tmp.path().join("state"));
        let t = format!("127.0.0.1:{port}");
        let l = [("target", t.as_str())];
        let s = agent.wait_for(20, "requests answered", |s| {
            if retried {
                s.val("weir_remote_write_samples_retried_total", &l) > 0.0
            } else {
                s.val("weir_remote_write_samples_failed_total", &l) > 0.0
            }
        });
        assert_eq!(
            s.val("weir_remote_write_samples_sent_total", &l),
            0.0,
            "{status}"
        );
        if retried {
            assert_eq!(
                s.val("weir_remote_write_samples_failed_total", &l),
                0.0,
                "{status}"
            );
            // The queue is bounded: with nothing accepted it fills, and the
            // excess is dropped and counted, not kept.
            let s = agent.wait_for(20, "queue bound reached", |s| {
                s.val("weir_remote_write_samples_dropped_total", &l) > 0.0
            });
            assert!(s.val("weir_remote_write_queue_samples", &l) <= 2000.0);
        } else {
            assert_eq!(
                s.val("weir_remote_write_samples_retried_total", &l),
                0.0,
                "{status}"
            );
        }
        assert!(count.load(Ordering::Relaxed) >= 1);
        // The agent's own endpoint is unaffected.
        assert_eq!(
            s.val(
                "weir_pipeline_up",
                &[("pipeline", "app"), ("plugin", "regex-log")]
            ),
            1.0
        );
    }
}
