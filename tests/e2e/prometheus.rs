//! weir with the Prometheus side of examples/: the scrape config and alert
//! rules (promtool), the Grafana dashboard (its queries read only metrics a
//! real weir serves), and a real Prometheus server scraping a running weir
//! on 127.0.0.1 and answering queries about it.
use crate::apps::{example_dir, promql_metric_names, rule_exprs};
use crate::support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

fn tool(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is needed for this test: apt-get install prometheus (./dev setup does it)"
    );
    path
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Copy an example's pipeline file and sample directory into `dir`,
/// without its [server] table (the test picks the port).
fn add_example(dir: &Path, name: &str, file: &str) {
    let src = example_dir(name);
    let text = std::fs::read_to_string(src.join(file)).expect("example config");
    let text = text.replace("[server]\nlisten = \"127.0.0.1:9731\"\n", "");
    assert!(!text.contains("[server]"), "{name}: [server] left in");
    std::fs::write(dir.join(file), text).expect("write config");
    let sample = dir.join("sample");
    std::fs::create_dir_all(&sample).expect("sample dir");
    for entry in std::fs::read_dir(src.join("sample")).expect("sample") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), sample.join(entry.file_name())).expect("copy sample");
    }
}

/// Metric names in a scrape: every sample's name (histograms as their
/// _bucket, _sum and _count).
fn served_names(s: &Scrape) -> BTreeSet<String> {
    s.series
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k).to_string())
        .collect()
}

// ---------------------------------------------------------------------------

#[test]
fn promtool_checks_the_config_rules_and_rule_tests() {
    let dir = example_dir("prometheus");
    let report = run(Command::new(tool(PROMTOOL))
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml")));
    assert!(report.contains("SUCCESS: 12 rules found"), "{report}");
    assert!(report.contains("SUCCESS: 24 rules found"), "{report}");
    run(Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(dir.join("weir.rules.yml"))
        .arg(dir.join("apps.rules.yml")));
    let report = run(Command::new(PROMTOOL)
        .args(["test", "rules"])
        .arg(dir.join("rules.test.yml")));
    assert!(report.contains("SUCCESS"), "{report}");
}

/// Every `expr` in a Grafana dashboard, and the selectors of its
/// `label_values(...)` variables.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    ("query" | "definition", Value::String(q))
                        if q.starts_with("label_values(") =>
                    {
                        // label_values(SELECTOR, label)
                        let inner = &q["label_values(".len()..q.len() - 1];
                        let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
                        out.push(selector.to_string());
                    }
                    _ => dashboard_queries(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| dashboard_queries(x, out)),
        _ => {}
    }
}

#[test]
fn dashboard_and_weir_alerts_read_only_what_weir_serves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("conf dir");
    // One pipeline of each source kind, so every self-metric family shows:
    // a file, an HTTP poll (of a closed port), a process scan.
    add_example(&dir, "nginx", "nginx.toml");
    let closed = free_port();
    std::fs::write(
        dir.join("others.toml"),
        format!(
            r#"
[pipeline.poll]
plugin = "json-stats"
source = {{ type = "http", url = "http://127.0.0.1:{closed}/stats", interval = "500ms", timeout = "1s" }}
[pipeline.poll.config]
metrics = [{{ name = "app_value", path = "value" }}]

[pipeline.scan]
plugin = "process-groups"
source = {{ type = "process", interval = "500ms" }}
[pipeline.scan.config]
groups = [{{ name = "none", comm = '^weir-no-such-process$' }}]
"#
        ),
    )
    .expect("write config");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let s = agent.wait_for(30, "every source kind reported", |s| {
        s.sum("weir_file_lines_total") >= 6.0
            && s.val(
                "weir_source_errors_total",
                &[("pipeline", "poll"), ("reason", "connect")],
            ) >= 1.0
            && s.val("weir_plugin_calls_total", &[("pipeline", "scan")]) >= 1.0
    });
    let served = served_names(&s);

    let path = example_dir("grafana").join("weir.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
        .expect("weir.json is JSON");
    assert_eq!(dash["uid"], "weir-overview");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        assert!(p["gridPos"]["w"].as_u64().is_some(), "gridPos: {p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            assert!(!p["targets"].as_array().expect("targets").is_empty());
        }
    }
    let mut queries = Vec::new();
    dashboard_queries(&dash, &mut queries);
    assert!(queries.len() >= 40, "{} queries", queries.len());
    let mut used = BTreeSet::new();
    for q in &queries {
        let names = promql_metric_names(q);
        assert!(!names.is_empty(), "no metric in {q}");
        for n in names {
            assert!(
                served.contains(&n) || n == "up",
                "the dashboard queries {n}, which weir does not serve: {q}\nserved: {served:?}"
            );
            used.insert(n);
        }
    }
    // The essentials are on it.
    for n in [
        "weir_pipeline_up",
        "weir_source_up",
        "weir_config_last_reload_successful",
        "weir_plugin_errors_total",
        "weir_pipeline_series_dropped_total",
        "weir_file_lag_bytes",
        "weir_plugin_call_duration_seconds_bucket",
    ] {
        assert!(used.contains(n), "the dashboard does not show {n}");
    }

    // weir's alert rules too.
    let rules = rule_exprs(&example_dir("prometheus").join("weir.rules.yml"), None);
    assert_eq!(rules.len(), 12);
    for e in &rules {
        for n in promql_metric_names(e) {
            assert!(
                served.contains(&n) || n == "up",
                "weir.rules.yml reads {n}, which weir does not serve: {e}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A real Prometheus.

/// Prometheus, killed and reaped when dropped.
pub(crate) struct PromServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl PromServer {
    pub(crate) fn start(config: &Path, data: &Path, log: &Path) -> PromServer {
        let port = free_port();
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(tool(PROMETHEUS))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn prometheus");
        PromServer {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path; the `data` of a successful answer.
    pub(crate) fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let mut req = ureq::get(&format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5));
        for (k, v) in query {
            req = req.query(k, v);
        }
        let text = req.call().ok()?.into_string().ok()?;
        let body: Value = serde_json::from_str(&text).ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// An instant query's vector: labels to value.
    pub(crate) fn query(&self, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let Some(data) = self.api("/api/v1/query", &[("query", q)]) else {
            return Vec::new();
        };
        data["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .map(|m| {
                                m.iter()
                                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                    .collect()
                            })
                            .unwrap_or_default();
                        let v = s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(f64::NAN);
                        (labels, v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends an access-log line every 100 ms until dropped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(log: PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !st.load(Ordering::Relaxed) {
                append(
                    &log,
                    &format!(
                        "198.51.100.{} - - [22/Nov/2026:11:00:00 +0000] \"GET /items/{i} HTTP/1.1\" 200 {} \"-\" \"load\" 0.0{:02}\n",
                        i % 250,
                        100 + i,
                        i % 100
                    ),
                );
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn prometheus_scrapes_weir_and_evaluates_the_example_rules() {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("conf dir");
    add_example(&dir, "nginx", "nginx.toml");
    add_example(&dir, "notes-backup", "leaflock.toml");
    let agent = Agent::start(&dir, &tmp.path().join("state"));

    let rules = example_dir("prometheus");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            rules.join("weir.rules.yml").display(),
            rules.join("apps.rules.yml").display(),
            agent.port
        ),
    )
    .expect("write prometheus.yml");
    let prom = PromServer::start(
        &config,
        &tmp.path().join("data"),
        &tmp.path().join("prom.log"),
    );
    let _writer = Writer::start(dir.join("sample/access.log"));

    let wait = |what: &str, f: &mut dyn FnMut() -> bool| {
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "timed out ({} s in) waiting for {what}\nprometheus log:\n{}\nweir log:\n{}",
            started.elapsed().as_secs(),
            prom.log_text(),
            agent.log_text()
        );
    };

    // The scrape works and the log counter moves while lines are written.
    wait("up{job=\"weir\"} == 1", &mut || {
        prom.query("up{job=\"weir\"}")
            .first()
            .is_some_and(|(_, v)| *v == 1.0)
    });
    let mut rate = 0.0;
    wait("rate(http_requests_total[5s]) > 0", &mut || {
        rate = prom
            .query("sum(rate(http_requests_total[5s]))")
            .first()
            .map_or(0.0, |(_, v)| *v);
        rate > 0.0
    });
    // About 10 lines a second are written.
    assert!(rate > 1.0 && rate < 40.0, "rate {rate}");

    // Each pipeline is up, and only those.
    let up = prom.query("weir_pipeline_up");
    let got: BTreeMap<String, (String, f64)> = up
        .iter()
        .map(|(l, v)| (l["pipeline"].clone(), (l["plugin"].clone(), *v)))
        .collect();
    let want: BTreeMap<String, (String, f64)> = [
        ("leaflock_backup".to_string(), ("json-log".to_string(), 1.0)),
        ("nginx".to_string(), ("regex-log".to_string(), 1.0)),
    ]
    .into();
    assert_eq!(got, want);
    for (l, _) in &up {
        assert_eq!(l["job"], "weir");
        assert_eq!(l["instance"], format!("127.0.0.1:{}", agent.port));
    }
    // A value that weir derived from the sample, as Prometheus stored it.
    assert_eq!(
        prom.query("leaflock_backups_total{status=\"success\"}")
            .first()
            .map(|(_, v)| *v),
        Some(5.0)
    );

    // The example rule files load, and every rule evaluates without error.
    let mut report = String::new();
    wait("every rule evaluated", &mut || {
        let Some(data) = prom.api("/api/v1/rules", &[]) else {
            return false;
        };
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let names: BTreeSet<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
        report = format!("{groups:?}");
        names == BTreeSet::from(["weir", "asterdrive", "fluxbase", "quicproquo", "leaflock"])
            && groups.iter().all(|g| {
                g["rules"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|r| r["health"] == "ok"))
            })
    });
    assert!(!report.contains("\"lastError\": String(\""), "{report}");
    // Nothing is wrong with this weir: no weir alert fires.
    let firing = prom.query("ALERTS{alertname=~\"Weir.*\"}");
    assert!(firing.is_empty(), "{firing:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
