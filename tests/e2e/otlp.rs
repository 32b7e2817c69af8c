//! Pushing by OTLP/HTTP: a receiver started here, written in Python with
//! the official OpenTelemetry protobuf definitions (`opentelemetry-proto`
//! from PyPI, installed by ./dev setup), decodes every request weir sends
//! from a regex-log pipeline on a real file; every value, start time,
//! attribute, bucket and flag is checked against what the test wrote. A
//! receiver that answers 503 for a while loses nothing within the queue
//! bound; one that answers 400 is not retried.
use crate::support::*;
use serde_json::Value as J;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The receiver; killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(dir: &Path, args: &[&str]) -> Receiver {
        let tag: String = args
            .join("_")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let out = dir.join(format!("otlp-{tag}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/otlp_receiver.py");
        let mut child = Command::new(crate::reexpose::python())
            .arg(&script)
            .arg(&out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("receiver.log")).expect("log"))
            .spawn()
            .expect("python");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the receiver did not start (is opentelemetry-proto installed? ./dev setup): {}",
                std::fs::read_to_string(dir.join("receiver.log")).unwrap_or_default()
            )
        });
        Receiver { child, port, out }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/metrics", self.port)
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request so far, in arrival order.
    fn requests(&self) -> Vec<J> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

const LOG_CONFIG: &str = r#"
[pipeline.app]
plugin = "regex-log"
source = { type = "file", paths = ["app.log"], start_at = "beginning" }

[[pipeline.app.config.metrics]]
name = "app_requests_total"
type = "counter"
help = "Requests by method."
labels = ["method"]

[[pipeline.app.config.metrics]]
name = "app_request_duration_seconds"
type = "histogram"
unit = "seconds"
help = "Request time."
labels = ["method"]
buckets = [0.1, 0.5, 2]

[[pipeline.app.config.metrics]]
name = "app_queue_depth"
type = "gauge"
help = "Queue depth at the last request."

[[pipeline.app.config.rules]]
regex = '^req (?P<method>[A-Z]+) (?P<took>[\d.]+) depth=(?P<depth>\d+)$'

[[pipeline.app.config.rules.emit]]
metric = "app_requests_total"

[[pipeline.app.config.rules.emit]]
metric = "app_request_duration_seconds"
value = "took"

[[pipeline.app.config.rules.emit]]
metric = "app_queue_depth"
value = "depth"
"#;

fn setup(otlp: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(conf.join("weir.toml"), format!("{otlp}\n{LOG_CONFIG}")).expect("w");
    (tmp, conf)
}

fn nanos(v: &J) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or_else(|| panic!("not a uint64: {v}"))
}

fn attrs(list: &J) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap_or("").to_string(),
                        kv["value"]["string_value"]
                            .as_str()
                            .unwrap_or("?")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The metrics of one request, by name.
fn metrics(req: &J) -> Vec<&J> {
    let rm = &req["request"]["resource_metrics"];
    assert_eq!(rm.as_array().map(Vec::len), Some(1), "{req}");
    let sm = &rm[0]["scope_metrics"];
    assert_eq!(sm.as_array().map(Vec::len), Some(1), "{req}");
    assert_eq!(sm[0]["scope"]["name"], "weir");
    sm[0]["metrics"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

/// The lines, and what they make: (method, took, depth).
fn lines() -> (String, Vec<(&'static str, f64, u32)>) {
    let mut rng = Rng(0x07_1b);
    let mut out = String::new();
    let mut recs = Vec::new();
    for _ in 0..57 {
        let method = ["GET", "POST"][rng.below(2) as usize];
        // 0.05, 0.3, 1.0 or 7.0: one per bucket and one past the last.
        let took = [0.05, 0.3, 1.0, 7.0][rng.below(4) as usize];
        let depth = rng.below(20) as u32;
        out.push_str(&format!("req {method} {took} depth={depth}\n"));
        recs.push((method, took, depth));
    }
    // A line that matches nothing.
    out.push_str("noise\n");
    (out, recs)
}

#[test]
fn collector_receives_every_value_start_time_and_attribute() {
    receives_every_value("", "application/x-protobuf");
}

#[test]
fn the_json_encoding_carries_the_same() {
    receives_every_value("encoding = \"json\"", "application/json");
}

fn receives_every_value(encoding: &str, content_type: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(tmp.path(), &[]);
    let (_t, conf) = setup(&format!(
        r#"[[otlp]]
{encoding}
endpoint = "{}"
interval = "300ms"
timeout = "2s"
keep = ["^app_"]
headers = {{ X-Tenant = "team-a" }}
resource_attributes = {{ "deployment.environment" = "test", "service.instance.id" = "i-1" }}
"#,
        rx.endpoint()
    ));
    let (text, recs) = lines();
    std::fs::write(conf.join("app.log"), &text).expect("w");
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let agent = Agent::start(&conf, &tmp.path().join("state"));
    let target = rx.target();
    agent.wait_for(30, "pushes accepted", |s| {
        s.val(
            "weir_otlp_requests_total",
            &[("target", &target), ("code", "200")],
        ) >= 4.0
            && s.val("weir_source_lines_total", &[("pipeline", "app")]) == 58.0
    });
    // Two more pushes after every line was read.
    let n0 = rx.requests().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.requests().len() < n0 + 2 {
        assert!(Instant::now() < deadline, "no further pushes");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let reqs = rx.requests();
    let mut start: Option<u64> = None;
    let mut last_time = 0u64;
    for r in &reqs {
        assert_eq!(r["status"], 200, "{r}");
        assert!(r.get("error").is_none(), "{r}");
        assert_eq!(r["path"], "/v1/metrics");
        assert_eq!(r["content_type"], content_type);
        assert_eq!(r["content_encoding"], "gzip");
        assert_eq!(r["x_tenant"], "team-a");
        let res = attrs(&r["request"]["resource_metrics"][0]["resource"]["attributes"]);
        assert_eq!(
            res,
            [
                ("deployment.environment".to_string(), "test".to_string()),
                ("host.name".into(), hostname()),
                ("service.instance.id".into(), "i-1".into()),
                ("service.name".into(), "weir".into()),
            ]
        );
        let ms = metrics(r);
        // keep = ["^app_"]: the agent's own families are not sent.
        assert!(
            ms.iter()
                .all(|m| m["name"].as_str().is_some_and(|n| n.starts_with("app_"))),
            "{r}"
        );
        let mut times = Vec::new();
        for m in &ms {
            for kind in ["sum", "gauge", "histogram", "summary"] {
                for p in m[kind]["data_points"].as_array().into_iter().flatten() {
                    let (s, t) = (
                        nanos(&p["start_time_unix_nano"]),
                        nanos(&p["time_unix_nano"]),
                    );
                    assert!(s <= t, "start {s} after time {t}: {m}");
                    // The agent's start: after the test began, the same in
                    // every push.
                    assert!(s >= before - 1_000_000_000 && s <= after, "{s}");
                    assert_eq!(*start.get_or_insert(s), s, "start time changed: {m}");
                    times.push(t);
                }
            }
        }
        // Readings arrive in order: every time of a request is later than
        // those of the one before.
        if let (Some(lo), Some(hi)) = (times.iter().min(), times.iter().max()) {
            assert!(*lo > last_time && *hi <= after, "{lo} after {last_time}");
            last_time = *hi;
        }
    }
    // The last push has every line.
    let last = reqs.last().expect("a request");
    let ms = metrics(last);
    let by_name = |n: &str| -> &J {
        ms.iter()
            .find(|m| m["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {last}"))
    };
    // Counter: a monotonic cumulative Sum, named as in Prometheus.
    let c = by_name("app_requests_total");
    assert_eq!(c["description"], "Requests by method.");
    assert_eq!(c["sum"]["is_monotonic"], true);
    assert_eq!(
        c["sum"]["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    assert_eq!(
        attrs(&c["metadata"]),
        [("prometheus.type".into(), "counter".into())]
    );
    for method in ["GET", "POST"] {
        let want = recs.iter().filter(|r| r.0 == method).count() as f64;
        let p = c["sum"]["data_points"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| attrs(&p["attributes"]) == [("method".to_string(), method.to_string())])
            .unwrap_or_else(|| panic!("no {method} point: {c}"));
        assert_eq!(p["as_double"].as_f64(), Some(want), "{p}");
    }
    // Gauge: the last depth.
    let g = by_name("app_queue_depth");
    let gp = &g["gauge"]["data_points"][0];
    assert_eq!(
        gp["as_double"].as_f64(),
        Some(recs[recs.len() - 1].2 as f64)
    );
    assert_eq!(attrs(&gp["attributes"]), []);
    // Histogram: cumulative, bounds as declared, counts per bucket.
    let h = by_name("app_request_duration_seconds");
    assert_eq!(h["unit"], "s");
    assert_eq!(
        h["histogram"]["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    for method in ["GET", "POST"] {
        let mine: Vec<f64> = recs.iter().filter(|r| r.0 == method).map(|r| r.1).collect();
        let bounds = [0.1, 0.5, 2.0];
        let mut want = [0u64; 4];
        for v in &mine {
            let i = bounds.iter().position(|b| v <= b).unwrap_or(3);
            want[i] += 1;
        }
        let p = h["histogram"]["data_points"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| attrs(&p["attributes"]) == [("method".to_string(), method.to_string())])
            .unwrap_or_else(|| panic!("no {method} point: {h}"));
        let got: Vec<f64> = p["explicit_bounds"]
            .as_array()
            .expect("bounds")
            .iter()
            .filter_map(J::as_f64)
            .collect();
        assert_eq!(got, bounds);
        let counts: Vec<u64> = p["bucket_counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(nanos)
            .collect();
        assert_eq!(counts, want, "{p}");
        assert_eq!(nanos(&p["count"]), mine.len() as u64);
        let sum: f64 = mine.iter().sum();
        assert!(
            (p["sum"].as_f64().unwrap_or(f64::NAN) - sum).abs() < 1e-9,
            "{p}"
        );
    }
    let s = agent.scrape();
    assert!(s.val("weir_otlp_points_sent_total", &[("target", &target)]) > 0.0);
    assert_eq!(
        s.val("weir_otlp_points_dropped_total", &[("target", &target)]),
        0.0
    );
    assert_eq!(
        s.val("weir_otlp_points_failed_total", &[("target", &target)]),
        0.0
    );
}

#[test]
fn points_collected_while_the_receiver_answers_503_all_arrive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // 503 with Retry-After: 1 for the first 4 requests (about 4 s of
    // collections at 250 ms: well within the queue bound).
    let rx = Receiver::start(tmp.path(), &["--fail-first", "4"]);
    let (_t, conf) = setup(&format!(
        "[[otlp]]\nendpoint = \"{}\"\ninterval = \"250ms\"\ncompression = \"none\"\nkeep = [\"^app_\"]\nmax_queue_points = 100000\nbearer_token_env = \"WEIR_E2E_OTLP_TOKEN\"\n",
        rx.endpoint()
    ));
    let (text, _) = lines();
    std::fs::write(conf.join("app.log"), &text).expect("w");
    let state = tmp.path().join("state");
    let agent = Agent::spawn_with(&conf, &state, &state, &[("WEIR_E2E_OTLP_TOKEN", "tok-3")]);
    agent.wait_ready();
    let target = rx.target();
    let s = agent.wait_for(40, "accepted after the outage", |s| {
        s.val(
            "weir_otlp_requests_total",
            &[("target", &target), ("code", "200")],
        ) >= 3.0
            && s.val("weir_otlp_queue_points", &[("target", &target)]) < 10.0
    });
    assert_eq!(
        s.val(
            "weir_otlp_requests_total",
            &[("target", &target), ("code", "503")]
        ),
        4.0
    );
    assert!(s.val("weir_otlp_points_retried_total", &[("target", &target)]) > 0.0);
    assert_eq!(
        s.val("weir_otlp_points_dropped_total", &[("target", &target)]),
        0.0
    );
    assert_eq!(
        s.val("weir_otlp_points_failed_total", &[("target", &target)]),
        0.0
    );
    // Every collection a 503 answered arrived later in an accepted
    // request: compare the (metric, time) pairs.
    let reqs = rx.requests();
    let pairs = |ok: bool| -> std::collections::BTreeSet<(String, u64)> {
        reqs.iter()
            .filter(|r| (r["status"] == 200) == ok)
            .flat_map(|r| metrics(r).into_iter().cloned().collect::<Vec<_>>())
            .flat_map(|m| {
                let name = m["name"].as_str().unwrap_or("").to_string();
                ["sum", "gauge", "histogram"]
                    .iter()
                    .flat_map(|k| m[*k]["data_points"].as_array().cloned().unwrap_or_default())
                    .map(|p| (name.clone(), nanos(&p["time_unix_nano"])))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    for r in &reqs {
        assert_eq!(r["authorization"], "Bearer tok-3");
        assert_eq!(r["content_encoding"], J::Null, "compression = \"none\"");
    }
    // The first accepted request carries every reading refused before it,
    // one metric per family.
    let first = reqs.iter().find(|r| r["status"] == 200).expect("accepted");
    let mut names: Vec<&str> = metrics(first)
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "a family twice in one request: {names:?}");
    let refused = pairs(false);
    let accepted = pairs(true);
    assert!(refused.len() >= 3, "{refused:?}");
    let lost: Vec<_> = refused.difference(&accepted).collect();
    assert!(lost.is_empty(), "lost in the outage: {lost:?}");
    // Retry-After: 1 was honoured (back-off alone would retry after 0.1,
    // 0.2, 0.4, 0.8 s): the first accepted request carries collections
    // from at least 3 s after the first refused one.
    let first_refused = refused.iter().map(|p| p.1).min().unwrap_or(0);
    let first_ok = reqs
        .iter()
        .find(|r| r["status"] == 200)
        .expect("an accepted request");
    let newest = metrics(first_ok)
        .iter()
        .flat_map(|m| {
            ["sum", "gauge", "histogram"]
                .iter()
                .flat_map(|k| m[*k]["data_points"].as_array().cloned().unwrap_or_default())
                .map(|p| nanos(&p["time_unix_nano"]))
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0);
    assert!(
        newest >= first_refused + 3_000_000_000,
        "retried too soon: {} ms",
        newest.saturating_sub(first_refused) / 1_000_000
    );
}

#[test]
fn a_receiver_that_answers_400_is_not_retried() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(tmp.path(), &["--status", "400"]);
    let (_t, conf) = setup(&format!(
        "[[otlp]]\nendpoint = \"{}\"\ninterval = \"200ms\"\nkeep = [\"^app_\"]\n",
        rx.endpoint()
    ));
    std::fs::write(conf.join("app.log"), lines().0).expect("w");
    let agent = Agent::start(&conf, &tmp.path().join("state"));
    let target = rx.target();
    let s = agent.wait_for(30, "refusals counted", |s| {
        s.val(
            "weir_otlp_requests_total",
            &[("target", &target), ("code", "400")],
        ) >= 3.0
    });
    assert!(s.val("weir_otlp_points_failed_total", &[("target", &target)]) > 0.0);
    assert_eq!(
        s.val("weir_otlp_points_retried_total", &[("target", &target)]),
        0.0
    );
    // One request per collection, never the same collection twice.
    let reqs = rx.requests();
    let mut times: Vec<u64> = reqs
        .iter()
        .flat_map(|r| metrics(r).into_iter().cloned().collect::<Vec<_>>())
        .filter(|m| m["name"] == "app_queue_depth")
        .map(|m| nanos(&m["gauge"]["data_points"][0]["time_unix_nano"]))
        .collect();
    let n = times.len();
    times.dedup();
    assert_eq!(times.len(), n, "a refused collection was sent again");
}

#[test]
fn past_the_queue_bound_the_oldest_points_are_dropped_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(tmp.path(), &["--status", "503"]);
    let (_t, conf) = setup(&format!(
        "[[otlp]]\nendpoint = \"{}\"\ninterval = \"100ms\"\nkeep = [\"^app_\"]\nmax_queue_points = 20\n",
        rx.endpoint()
    ));
    std::fs::write(conf.join("app.log"), lines().0).expect("w");
    let agent = Agent::start(&conf, &tmp.path().join("state"));
    let target = rx.target();
    let s = agent.wait_for(20, "points dropped", |s| {
        s.val("weir_otlp_points_dropped_total", &[("target", &target)]) >= 20.0
    });
    assert!(s.val("weir_otlp_queue_points", &[("target", &target)]) <= 20.0);
    assert_eq!(
        s.val("weir_otlp_points_sent_total", &[("target", &target)]),
        0.0
    );
    assert_eq!(
        s.val("weir_otlp_points_failed_total", &[("target", &target)]),
        0.0
    );
}

#[test]
fn a_partial_success_counts_the_rejected_points_as_failed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(tmp.path(), &["--partial", "2"]);
    let (_t, conf) = setup(&format!(
        "[[otlp]]\nendpoint = \"{}\"\ninterval = \"200ms\"\nkeep = [\"^app_\"]\n",
        rx.endpoint()
    ));
    std::fs::write(conf.join("app.log"), lines().0).expect("w");
    let agent = Agent::start(&conf, &tmp.path().join("state"));
    let target = rx.target();
    agent.wait_for(20, "partial successes", |s| {
        s.val(
            "weir_otlp_requests_total",
            &[("target", &target), ("code", "200")],
        ) >= 3.0
    });
    // Compare the figures: every accepted request rejected 2 points.
    let mut agent = agent;
    let s = agent.scrape();
    let requests = s.val(
        "weir_otlp_requests_total",
        &[("target", &target), ("code", "200")],
    );
    let failed = s.val("weir_otlp_points_failed_total", &[("target", &target)]);
    let sent = s.val("weir_otlp_points_sent_total", &[("target", &target)]);
    // Every request counted up to this scrape rejected 2 (a request may be
    // in flight between the two readings of the figures).
    assert!(
        failed >= 2.0 * (requests - 1.0) && failed <= 2.0 * (requests + 1.0),
        "{failed} failed for {requests} requests"
    );
    assert!(sent > 0.0);
    assert_eq!(
        s.val("weir_otlp_points_retried_total", &[("target", &target)]),
        0.0
    );
    assert!(
        agent.log_text().contains("rejected 2 of its"),
        "{}",
        agent.log_text()
    );
    agent.stop();
}

#[test]
fn a_target_added_by_a_reload_pushes_and_a_new_endpoint_starts_afresh() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Receiver::start(tmp.path(), &[]);
    let b = Receiver::start(tmp.path(), &["--status", "200"]);
    let (_t, conf) = setup("");
    std::fs::write(conf.join("app.log"), lines().0).expect("w");
    let agent = Agent::start(&conf, &tmp.path().join("state"));
    let with = |rx: &Receiver| {
        std::fs::write(
            conf.join("weir.toml"),
            format!(
                "[[otlp]]\nname = \"main\"\nendpoint = \"{}\"\ninterval = \"200ms\"\nbasic_auth = {{ username = \"u\", password_env = \"HOME\" }}\n\n{LOG_CONFIG}",
                rx.endpoint()
            ),
        )
        .expect("w");
        agent.signal("HUP");
    };
    with(&a);
    agent.wait_for(20, "pushes to the first endpoint", |s| {
        s.val(
            "weir_otlp_requests_total",
            &[("target", "main"), ("code", "200")],
        ) >= 2.0
    });
    assert!(
        agent.log_text().contains("otlp_added=[\"main\"]"),
        "{}",
        agent.log_text()
    );
    let home = std::env::var("HOME").unwrap_or_default();
    let want = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("u:{home}")
        )
    );
    assert!(a
        .requests()
        .iter()
        .all(|r| r["authorization"] == want.as_str()));
    // Another endpoint: the target restarts with fresh figures.
    with(&b);
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.requests().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "nothing pushed to the new endpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(agent.log_text().contains("otlp_changed=[\"main\"]"));
    let n = a.requests().len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(a.requests().len(), n, "the old endpoint still gets pushes");
    // Removed: the figures go.
    std::fs::write(conf.join("weir.toml"), LOG_CONFIG).expect("w");
    agent.signal("HUP");
    agent.wait_for(20, "target removed", |s| {
        s.get("weir_otlp_queue_points", &[("target", "main")])
            .is_none()
    });
}

#[test]
fn weir_check_names_file_line_and_key_of_a_bad_otlp_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let check = |text: &str| -> String {
        std::fs::write(tmp.path().join("push.toml"), text).expect("w");
        let out = Command::new(WEIR)
            .args(["check", "--config-dir"])
            .arg(tmp.path())
            .output()
            .expect("weir check");
        assert!(!out.status.success(), "{text}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let ok = "[[otlp]]\nendpoint = \"http://127.0.0.1:4318/v1/metrics\"\n\n";
    // An unknown key is refused at its line, like every table's.
    let err = check(&format!("{ok}[[otlp]]\nname = \"b\"\nendpoint = \"http://127.0.0.1:1/v1/metrics\"\ncompresion = \"gzip\"\n"));
    assert!(
        err.contains("push.toml:7") && err.contains("compresion"),
        "{err}"
    );
    let err = check(&format!(
        "{ok}[[otlp]]\nendpoint = \"ftp://x/v1/metrics\"\n"
    ));
    assert!(err.contains("push.toml:5: otlp[1].endpoint"), "{err}");
    // A ca_file that cannot be read: at the table's line.
    let err = check(&format!("{ok}[[otlp]]\nname = \"b\"\nendpoint = \"https://127.0.0.1:1/v1/metrics\"\nca_file = \"missing.pem\"\n"));
    assert!(
        err.contains("push.toml:4: otlp[1]") && err.contains("missing.pem"),
        "{err}"
    );
}

/// Serves `body` as Prometheus text on 127.0.0.1 until the test ends.
fn upstream(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Summaries (which only an upstream's exposition brings: prometheus-text
/// over the http source) arrive as OTLP Summaries with every quantile.
#[test]
fn an_upstream_summary_arrives_as_an_otlp_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(tmp.path(), &[]);
    let up = upstream(
        "# HELP rpc_duration_seconds RPC latency.\n# TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{service=\"auth\",quantile=\"0.5\"} 0.25\n\
         rpc_duration_seconds{service=\"auth\",quantile=\"0.99\"} 1.5\n\
         rpc_duration_seconds_sum{service=\"auth\"} 42.5\n\
         rpc_duration_seconds_count{service=\"auth\"} 17\n",
    );
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("weir.toml"),
        format!(
            "[[otlp]]\nendpoint = \"{}\"\ninterval = \"200ms\"\nkeep = [\"^rpc_\"]\n\n\
             [pipeline.up]\nplugin = \"prometheus-text\"\n\
             source = {{ type = \"http\", url = \"http://127.0.0.1:{up}/metrics\", interval = \"200ms\" }}\n",
            rx.endpoint()
        ),
    )
    .expect("w");
    let _agent = Agent::start(&conf, &tmp.path().join("state"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let summary = loop {
        let found = rx.requests().iter().find_map(|r| {
            metrics(r)
                .into_iter()
                .find(|m| m["name"] == "rpc_duration_seconds")
                .cloned()
        });
        if let Some(m) = found {
            break m;
        }
        assert!(Instant::now() < deadline, "no summary pushed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(summary["description"], "RPC latency.");
    // The 0.0.4 text has no UNIT line: no unit (one is never guessed from
    // the name).
    assert_eq!(summary["unit"], "");
    assert_eq!(
        attrs(&summary["metadata"]),
        [("prometheus.type".into(), "summary".into())]
    );
    let p = &summary["summary"]["data_points"][0];
    assert_eq!(
        attrs(&p["attributes"]),
        [("service".to_string(), "auth".to_string())]
    );
    let q: Vec<(f64, f64)> = p["quantile_values"]
        .as_array()
        .expect("quantiles")
        .iter()
        .map(|v| {
            (
                v["quantile"].as_f64().unwrap_or(f64::NAN),
                v["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    assert_eq!(q, [(0.5, 0.25), (0.99, 1.5)]);
    assert_eq!(p["sum"].as_f64(), Some(42.5));
    assert_eq!(nanos(&p["count"]), 17);
    assert!(nanos(&p["start_time_unix_nano"]) <= nanos(&p["time_unix_nano"]));
}

/// The push queue is kept on disk (issue 16): a receiver down across a
/// SIGKILL and a SIGTERM of the agent, then up again: every reading the
/// receiver refused arrives once it is back, except, for the SIGKILL, the
/// last `QUEUE_SAVE_EVERY` (5 s) before the kill (the documented bound).
#[test]
fn the_push_queue_survives_a_sigkill_and_a_restart_during_an_outage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let down = tmp.path().join("down");
    std::fs::write(&down, "").expect("down");
    let rx = Receiver::start(
        tmp.path(),
        &["--fail-while", down.to_str().expect("utf-8 path")],
    );
    let (_t, conf) = setup(&format!(
        "[[otlp]]\nname = \"central\"\nendpoint = \"{}\"\ninterval = \"250ms\"\ncompression = \"none\"\nkeep = [\"^app_\"]\nmax_queue_points = 100000\n",
        rx.endpoint()
    ));
    let (text, _) = lines();
    std::fs::write(conf.join("app.log"), &text).expect("w");
    let state = tmp.path().join("state");
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    };
    // Run 1: 7 s of refusals (a queue file written at about 5 s), SIGKILL.
    let mut a = Agent::start(&conf, &state);
    std::thread::sleep(Duration::from_secs(7));
    let killed_at = now_ns();
    a.kill();
    // Run 2: restores what run 1 wrote, goes on queueing, SIGTERM.
    let run2_from = now_ns();
    let mut a = Agent::start(&conf, &state);
    std::thread::sleep(Duration::from_secs(2));
    let log2 = a.log_text();
    assert!(a.stop().success());
    assert!(
        log2.contains("queue of the last run restored"),
        "run 2 did not restore the queue:\n{log2}"
    );
    // Run 3: the receiver is back.
    std::fs::remove_file(&down).expect("up");
    let a = Agent::start(&conf, &state);
    a.wait_for(40, "the backlog accepted", |s| {
        s.val("weir_otlp_points_sent_total", &[("target", "central")]) > 0.0
            && s.val("weir_otlp_queue_points", &[("target", "central")]) < 10.0
    });
    let reqs = rx.requests();
    let pairs = |ok: bool| -> std::collections::BTreeSet<(String, u64)> {
        reqs.iter()
            .filter(|r| (r["status"] == 200) == ok)
            .flat_map(|r| metrics(r).into_iter().cloned().collect::<Vec<_>>())
            .flat_map(|m| {
                let name = m["name"].as_str().unwrap_or("").to_string();
                ["sum", "gauge", "histogram"]
                    .iter()
                    .flat_map(|k| m[*k]["data_points"].as_array().cloned().unwrap_or_default())
                    .map(|p| (name.clone(), nanos(&p["time_unix_nano"])))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let refused = pairs(false);
    let accepted = pairs(true);
    let bound = killed_at - 6_000_000_000;
    let must: Vec<&(String, u64)> = refused
        .iter()
        .filter(|p| p.1 <= bound || p.1 >= run2_from)
        .collect();
    let from_run1 = must.iter().filter(|p| p.1 <= bound).count();
    let from_run2 = must.iter().filter(|p| p.1 >= run2_from).count();
    assert!(
        from_run1 > 0 && from_run2 > 0,
        "{from_run1} {from_run2}: {refused:?}"
    );
    let lost: Vec<_> = must.iter().filter(|p| !accepted.contains(p)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} readings refused during the outage never arrived: {lost:?}\nlog:\n{}",
        lost.len(),
        must.len(),
        a.log_text()
    );
    eprintln!(
        "{} readings refused, {} accepted; of those that must arrive, {from_run1} from before the kill, {from_run2} from the SIGTERM run",
        refused.len(),
        accepted.len()
    );
}
