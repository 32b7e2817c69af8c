//! Counters read from an upstream (json-stats, prometheus-text) across
//! upstream restarts, failed polls and series missing from a response:
//! Prometheus' `increase()` over what weir exposes must equal the true
//! increase at the upstream (issue 13, fault 5).
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Serve `script` on 127.0.0.1, one (status, content type, body) per
/// request, the last one again once the script is over. Returns the port
/// and the request count.
fn scripted(script: Vec<(u16, &'static str, String)>) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(500) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let i = h.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
            let (status, ctype, body) = &script[i];
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    (port, hits)
}

/// Prometheus' `increase()` over consecutive samples of one series: a
/// decrease is a counter reset, after which the new value counts whole.
fn increase(samples: &[f64]) -> f64 {
    samples
        .windows(2)
        .map(|w| if w[1] < w[0] { w[1] } else { w[1] - w[0] })
        .sum()
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; version=0.0.4";

#[test]
fn upstream_counters_keep_their_increase_across_resets_failed_polls_and_absences() {
    // Upstream readings 100, then 10 (it restarted), then nothing, then
    // 12: the true increase over the run is 12.
    let json = |v: u64| format!("{{\"requests\": {v}, \"up\": 1}}");
    let prom =
        |v: u64| format!("# TYPE app_requests_total counter\napp_requests_total {v}\napp_up 1\n");
    let cases = [
        // A failed poll (404).
        (
            "json_fail",
            scripted(vec![
                (200, JSON, json(100)),
                (200, JSON, json(10)),
                (404, JSON, String::new()),
                (200, JSON, json(12)),
            ]),
        ),
        // The series missing from one successful response.
        (
            "json_missing",
            scripted(vec![
                (200, JSON, json(100)),
                (200, JSON, json(10)),
                (200, JSON, "{\"up\": 1}".into()),
                (200, JSON, json(12)),
            ]),
        ),
        (
            "prom_fail",
            scripted(vec![
                (200, TEXT, prom(100)),
                (200, TEXT, prom(10)),
                (503, TEXT, String::new()),
                (200, TEXT, prom(12)),
            ]),
        ),
        (
            "prom_missing",
            scripted(vec![
                (200, TEXT, prom(100)),
                (200, TEXT, prom(10)),
                (200, TEXT, "app_up 1\n".into()),
                (200, TEXT, prom(12)),
            ]),
        ),
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut cfg = String::new();
    for (name, (port, _)) in &cases {
        // Polled at each scrape (max_age shorter than the scrapes' gap),
        // so every scrape sees the next reading.
        let source = format!(
            "source = {{ type = \"http\", url = \"http://127.0.0.1:{port}/\", max_age = \"10ms\" }}\nlabels = {{ case = \"{name}\" }}\n"
        );
        if name.starts_with("json") {
            cfg += &format!(
                "[pipeline.{name}]\nplugin = \"json-stats\"\n{source}[[pipeline.{name}.config.metrics]]\nname = \"app_json_requests_total\"\ntype = \"counter\"\npath = \"requests\"\n[[pipeline.{name}.config.metrics]]\nname = \"app_up\"\npath = \"up\"\n"
            );
        } else {
            cfg += &format!(
                "[pipeline.{name}]\nplugin = \"prometheus-text\"\n{source}[pipeline.{name}.config]\nprefix = \"prom\"\n"
            );
        }
    }
    std::fs::write(dir.join("p.toml"), cfg).expect("write");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let mut seen: Vec<Vec<Option<f64>>> = vec![Vec::new(); cases.len()];
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let s = agent.scrape();
        for (i, (name, _)) in cases.iter().enumerate() {
            let family = if name.starts_with("json") {
                "app_json_requests_total"
            } else {
                "prom_app_requests_total"
            };
            seen[i].push(s.get(family, &[("case", name)]));
        }
    }
    for (i, (name, (_, hits))) in cases.iter().enumerate() {
        assert_eq!(
            hits.load(Ordering::SeqCst),
            4,
            "{name}: one poll per scrape"
        );
        let values: Vec<f64> = seen[i].iter().flatten().copied().collect();
        assert_eq!(seen[i][2], None, "{name}: no stale value while absent");
        assert_eq!(values.len(), 3, "{name}: {:?}", seen[i]);
        assert_eq!(increase(&values), 12.0, "{name}: exposed {:?}", seen[i]);
    }
}
