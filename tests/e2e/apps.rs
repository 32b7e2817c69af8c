//! The app examples (examples/asterdrive, fluxbase, quicproquo,
//! notes-backup) run by the real binary over the samples they ship. Every
//! value is checked against what this file computes from the same samples
//! with its own parsing (string splitting and serde_json, nothing shared
//! with the plugins' regexes and rules). HTTP endpoints are served by a small
//! server on 127.0.0.1; each test copies its example to a temporary
//! directory, so the checkout is only read.
use crate::support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Helpers

/// examples/NAME in the checkout.
pub fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Copy a directory tree (files and folders).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Copy examples/NAME to `dir`, then apply `(from, to)` replacements to its
/// pipeline file, each of which must occur.
fn copy_example(name: &str, file: &str, dir: &Path, edits: &[(&str, &str)]) {
    copy_tree(&example_dir(name), dir);
    let path = dir.join(file);
    let mut text = read(&path);
    for (from, to) in edits {
        assert!(text.contains(from), "{file} has no {from:?}");
        text = text.replace(from, to);
    }
    std::fs::write(&path, text).expect("write config");
}

/// `weir run` with extra environment variables, ready.
fn start_with_env(dir: &Path, state: &Path, env: &[(&str, &str)]) -> Agent {
    let port = free_port();
    std::fs::create_dir_all(state).expect("state dir");
    let log = state.join(format!("agent-{port}.log"));
    let logf = std::fs::File::create(&log).expect("log file");
    let child = Command::new(WEIR)
        .args(["run", "--config-dir"])
        .arg(dir)
        .arg("--state-dir")
        .arg(state)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("WEIR_LOG", "info,weir=debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .expect("spawn weir");
    let agent = Agent {
        child: Some(child),
        port,
        dir: dir.to_path_buf(),
        state: state.to_path_buf(),
        log,
    };
    agent.wait_ready();
    agent
}

fn lines_of(text: &str) -> usize {
    text.lines().count()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Every series of `name` (labels as written), from a scrape.
fn series_of<'a>(s: &'a Scrape, name: &str) -> BTreeMap<&'a str, f64> {
    let prefix = format!("{name}{{");
    s.series
        .iter()
        .filter(|(k, _)| *k == name || k.starts_with(&prefix))
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

/// A histogram's expected buckets, sum and count.
#[derive(Default, Clone)]
struct Hist {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len()];
        }
        for (b, bound) in self.buckets.iter_mut().zip(bounds) {
            if v <= *bound {
                *b += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Check one histogram series: every bucket, +Inf, count and sum.
fn assert_hist(s: &Scrape, name: &str, labels: &[(&str, &str)], bounds: &[f64], h: &Hist) {
    for (i, bound) in bounds.iter().enumerate() {
        let le = format!("{bound}");
        let mut l = labels.to_vec();
        l.push(("le", &le));
        assert_eq!(
            s.get(&format!("{name}_bucket"), &l),
            Some(h.buckets[i] as f64),
            "{name} {labels:?} le={le}"
        );
    }
    let mut l = labels.to_vec();
    l.push(("le", "+Inf"));
    assert_eq!(
        s.get(&format!("{name}_bucket"), &l),
        Some(h.count as f64),
        "{name} {labels:?} +Inf"
    );
    assert_eq!(
        s.get(&format!("{name}_count"), labels),
        Some(h.count as f64),
        "{name} {labels:?} count"
    );
    let sum = s.val(&format!("{name}_sum"), labels);
    assert!(
        close(sum, h.sum),
        "{name} {labels:?} sum {sum} != {}",
        h.sum
    );
}

/// A child process killed and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the test server answers: status and JSON body, given the path and
/// the Authorization header.
type Handler = Arc<dyn Fn(&str, Option<&str>) -> (u16, String) + Send + Sync>;

/// A small HTTP/1.1 server on 127.0.0.1, one request per connection,
/// stopped when dropped.
struct Http {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Http {
    fn start(
        handler: impl Fn(&str, Option<&str>) -> (u16, String) + Send + Sync + 'static,
    ) -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(handler);
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = answer(s, &handler);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Http {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut s: TcpStream, handler: &Handler) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let auth = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.trim().to_string());
    let (status, body) = handler(&path, auth.as_deref());
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Not OK" },
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}

/// The metric names a PromQL expression reads: identifiers that are not
/// functions, keywords, label names (inside `{...}` or after by, without,
/// on, ignoring, group_left, group_right), strings, durations, numbers or
/// Grafana variables.
pub fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 25] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let c: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_until = |i: &mut usize, close: char| {
        while *i < c.len() && c[*i] != close {
            if c[*i] == '"' || c[*i] == '\'' || c[*i] == '`' {
                let q = c[*i];
                *i += 1;
                while *i < c.len() && c[*i] != q {
                    if c[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i += 1;
            while i < c.len() && c[i] != ch {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if ch == '{' {
            skip_until(&mut i, '}');
        } else if ch == '[' {
            skip_until(&mut i, ']');
        } else if ch == '$' {
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut j = i;
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if KEYWORDS.contains(&lower.as_str()) {
                // A list of label names follows some of them.
                if c.get(j) == Some(&'(')
                    && [
                        "by",
                        "without",
                        "on",
                        "ignoring",
                        "group_left",
                        "group_right",
                    ]
                    .contains(&lower.as_str())
                {
                    i = j + 1;
                    skip_until(&mut i, ')');
                }
            } else if c.get(j) != Some(&'(') {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The `expr` of every rule of `group` in a Prometheus rule file (block
/// scalars included), without a YAML library: the files are written in
/// one simple style.
pub fn rule_exprs(file: &Path, group: Option<&str>) -> Vec<String> {
    let text = read(file);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent == 2 && trimmed.starts_with("- name:") {
            current = Some(
                trimmed["- name:".len()..]
                    .trim()
                    .trim_matches('"')
                    .to_string(),
            );
        }
        let wanted = group.is_none() || current.as_deref() == group;
        if let Some(rest) = trimmed.strip_prefix("expr:") {
            let rest = rest.trim();
            let mut expr = String::new();
            if rest.is_empty() || rest.starts_with('|') || rest.starts_with('>') {
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    let next_indent = next.len() - next.trim_start().len();
                    if !next.trim().is_empty() && next_indent <= indent {
                        break;
                    }
                    expr.push_str(next.trim());
                    expr.push(' ');
                    i += 1;
                }
            } else {
                expr.push_str(rest.trim_matches('\''));
            }
            if wanted {
                out.push(expr.trim().to_string());
            }
        }
        i += 1;
    }
    out
}

/// Every metric an app's alert rules read is served: by the app's pipelines
/// (in this scrape) or by Prometheus itself.
fn assert_alerts_read_served_metrics(group: &str, s: &Scrape) {
    let file = example_dir("prometheus").join("apps.rules.yml");
    let exprs = rule_exprs(&file, Some(group));
    assert!(!exprs.is_empty(), "no rules in group {group}");
    let served: BTreeSet<&str> = s
        .series
        .keys()
        .map(|k| k.split('{').next().unwrap_or(k))
        .collect();
    for e in &exprs {
        for name in promql_metric_names(e) {
            assert!(
                served.contains(name.as_str()) || name == "up",
                "alert group {group} reads {name}, which the example does not serve: {e}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Every example passes `weir check` where it is, as shipped.

#[test]
fn app_examples_pass_weir_check() {
    for name in [
        "asterdrive",
        "fluxbase",
        "quicproquo",
        "notes-backup",
        "kubernetes/config",
    ] {
        let out = Command::new(WEIR)
            .args(["check", "--config-dir"])
            .arg(example_dir(name))
            .output()
            .expect("run weir check");
        assert!(
            out.status.success(),
            "weir check examples/{name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// AsterDrive: request log, process, health probes.

const ASTER_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// AsterDrive's route patterns, as actix-web matches them (the subset the
/// example maps); `{...}` is one path segment.
const ASTER_ROUTES: [&str; 28] = [
    "/health",
    "/health/ready",
    "/api/v1/auth/login",
    "/api/v1/auth/logout",
    "/api/v1/auth/refresh",
    "/api/v1/files/upload",
    "/api/v1/files/upload/init",
    "/api/v1/files/upload/sessions",
    "/api/v1/files/new",
    "/api/v1/folders",
    "/api/v1/search",
    "/api/v1/trash",
    "/api/v1/shares",
    "/api/v1/files/upload/{upload_id}/{chunk_number}",
    "/api/v1/files/upload/{upload_id}/complete",
    "/api/v1/files/upload/{upload_id}/presign-parts",
    "/api/v1/files/upload/{upload_id}",
    "/api/v1/files/{id}",
    "/api/v1/files/{id}/download",
    "/api/v1/files/{id}/thumbnail",
    "/api/v1/files/{id}/content",
    "/api/v1/files/{id}/versions",
    "/api/v1/files/{id}/copy",
    "/api/v1/files/{id}/lock",
    "/api/v1/folders/{id}",
    "/api/v1/folders/{id}/content",
    "/api/v1/shares/{id}",
    "/api/v1/shares/{id}/download",
];

/// The route pattern of a path, or AsterDrive's labels for no match.
fn aster_route(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    'route: for route in ASTER_ROUTES {
        let pat: Vec<&str> = route.split('/').collect();
        if pat.len() != segs.len() {
            continue;
        }
        for (p, s) in pat.iter().zip(&segs) {
            let ok = match *p {
                "{id}" | "{chunk_number}" => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
                "{upload_id}" => {
                    s.len() >= 8 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                }
                lit => lit == *s,
            };
            if !ok {
                continue 'route;
            }
        }
        return route.to_string();
    }
    if path.starts_with("/api/") {
        "unmatched_api".into()
    } else if path.starts_with("/health") {
        "unmatched_health".into()
    } else {
        "unmatched".into()
    }
}

#[derive(Default)]
struct AsterExpected {
    requests: BTreeMap<(String, String, String), u64>,
    latency: BTreeMap<(String, String), Hist>,
    levels: BTreeMap<String, u64>,
}

fn aster_expected(log: &str) -> AsterExpected {
    let mut e = AsterExpected::default();
    for line in log.lines() {
        let mut words = line.split_whitespace();
        let _time = words.next();
        let level = words.next().expect("level").to_string();
        let target = words.next().expect("target");
        *e.levels.entry(level.clone()).or_default() += 1;
        if level != "INFO" || target != "actix_web::middleware::logger:" {
            continue;
        }
        // ip "METHOD TARGET PROTO" status size "referer" "agent" seconds
        let q1 = line.find('"').expect("request opens");
        let q2 = q1 + 1 + line[q1 + 1..].find('"').expect("request closes");
        let mut request = line[q1 + 1..q2].split(' ');
        let method = request.next().expect("method").to_string();
        let path = request
            .next()
            .expect("target")
            .split('?')
            .next()
            .unwrap_or("")
            .to_string();
        let status = line[q2 + 1..]
            .split_whitespace()
            .next()
            .expect("status")
            .to_string();
        let secs: f64 = line
            .rsplit(' ')
            .next()
            .expect("seconds")
            .parse()
            .expect("seconds are a number");
        let route = aster_route(&path);
        *e.requests
            .entry((method.clone(), route.clone(), status))
            .or_default() += 1;
        e.latency
            .entry((method, route))
            .or_default()
            .observe(&ASTER_BUCKETS, secs);
    }
    e
}

fn page_size() -> u64 {
    let out = Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("page size")
}

#[test]
fn asterdrive_log_process_and_probes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Health endpoints: /health answers while `health` is 1 (500 when 0),
    // /health/ready is ready while `ready` is 1 (503 when 0).
    let health = Arc::new(AtomicU8::new(1));
    let ready = Arc::new(AtomicU8::new(1));
    let (h, r) = (health.clone(), ready.clone());
    let server = Http::start(move |path, _| match path {
        "/health" if h.load(Ordering::SeqCst) == 1 => (200, r#"{"status":"ok"}"#.into()),
        "/health" => (500, "{}".into()),
        "/health/ready" if r.load(Ordering::SeqCst) == 1 => (
            200,
            r#"{"code":"success","msg":"","data":{"status":"ready"}}"#.into(),
        ),
        "/health/ready" => (
            503,
            r#"{"code":"database.error","msg":"Database unavailable","error":{"retryable":false}}"#
                .into(),
        ),
        _ => (404, "{}".into()),
    });
    // The service's process: a copy of sleep. The example matches
    // `^aster_drive$`; the test gives its copy a name of its own, so that
    // another run of this test on the machine cannot be taken for it.
    let comm = format!("aster{}", std::process::id());
    let dir = tmp.path().join("conf");
    copy_example(
        "asterdrive",
        "asterdrive.toml",
        &dir,
        &[
            ("http://127.0.0.1:3000", &server.base()),
            ("interval = \"15s\"", "interval = \"500ms\""),
            ("comm = '^aster_drive$'", &format!("comm = '^{comm}$'")),
        ],
    );
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("sleep");
    std::fs::copy(sleep, bin.join(&comm)).expect("copy sleep");
    let spawned_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let mut proc = Proc(
        Command::new(bin.join(&comm))
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the service process"),
    );
    let pid = proc.0.id();

    let log_text = read(&dir.join("sample/aster_drive.log"));
    let exp = aster_expected(&log_text);
    let lines = lines_of(&log_text) as f64;
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let s = agent.wait_for(60, "the sample read, the process and both probes", |s| {
        // Lines read are counted before the plugin applied them: wait
        // for the requests too.
        s.val("weir_source_lines_total", &[("pipeline", "asterdrive")]) >= lines
            && series_of(s, "http_requests_total").len() == exp.requests.len()
            && s.get("process_up", &[("service", "asterdrive")]) == Some(1.0)
            && s.get("asterdrive_up", &[("probe", "health")]) == Some(1.0)
            && s.get("asterdrive_up", &[("probe", "ready")]) == Some(1.0)
    });

    // Requests: every series, and nothing else.
    let got = series_of(&s, "http_requests_total");
    assert_eq!(got.len(), exp.requests.len(), "series: {got:?}");
    for ((m, route, st), n) in &exp.requests {
        assert_eq!(
            s.get(
                "http_requests_total",
                &[("method", m), ("route", route), ("status", st)]
            ),
            Some(*n as f64),
            "{m} {route} {st}"
        );
    }
    for ((m, route), h) in &exp.latency {
        assert_hist(
            &s,
            "http_request_duration_seconds",
            &[("method", m), ("route", route)],
            &ASTER_BUCKETS,
            h,
        );
    }
    for (level, n) in &exp.levels {
        assert_eq!(
            s.get("asterdrive_log_messages_total", &[("level", level)]),
            Some(*n as f64),
            "level {level}"
        );
    }
    // The same numbers, written out: 120 requests, the 5xx among them.
    assert_eq!(s.sum("http_requests_total"), 120.0);
    let v = |m: &str, route: &str, st: &str| {
        s.val(
            "http_requests_total",
            &[("method", m), ("route", route), ("status", st)],
        )
    };
    assert_eq!(v("GET", "/api/v1/files/{id}/download", "200"), 13.0);
    assert_eq!(v("GET", "/api/v1/files/{id}/download", "500"), 4.0);
    assert_eq!(
        v("POST", "/api/v1/files/upload/{upload_id}/complete", "500"),
        2.0
    );
    assert_eq!(
        v(
            "PUT",
            "/api/v1/files/upload/{upload_id}/{chunk_number}",
            "200"
        ),
        11.0
    );
    assert_eq!(v("GET", "/health/ready", "503"), 2.0);
    assert_eq!(v("GET", "/api/v1/search", "200"), 5.0);
    assert_eq!(v("GET", "unmatched_health", "404"), 5.0);
    assert_eq!(v("GET", "unmatched_api", "404"), 1.0);
    assert_eq!(v("GET", "unmatched", "404"), 1.0);
    assert_eq!(
        s.val("asterdrive_log_messages_total", &[("level", "ERROR")]),
        8.0
    );
    assert_eq!(
        s.val("asterdrive_log_messages_total", &[("level", "WARN")]),
        1.0
    );
    assert_eq!(
        s.val("asterdrive_log_messages_total", &[("level", "INFO")]),
        124.0
    );
    assert_eq!(
        s.val(
            "http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/api/v1/files/{id}/download")]
        ),
        17.0
    );

    // The process, against /proc as this test reads it.
    let statm = read(Path::new(&format!("/proc/{pid}/statm")));
    let mut f = statm.split_whitespace();
    let vsize: u64 = f.next().expect("size").parse().expect("size");
    let resident: u64 = f.next().expect("resident").parse().expect("resident");
    let page = page_size();
    let svc = [("service", "asterdrive")];
    let s = agent.scrape();
    // The kernel sums resident pages from per-CPU counters: two reads of
    // one idle process can differ by a few pages.
    let rss = s.val(
        "process_memory_bytes",
        &[("service", "asterdrive"), ("memtype", "resident")],
    );
    let want = (resident * page) as f64;
    assert!(
        (rss - want).abs() <= want * 0.15,
        "resident {rss} vs {want} from /proc/{pid}/statm"
    );
    assert_eq!(
        s.get(
            "process_memory_bytes",
            &[("service", "asterdrive"), ("memtype", "virtual")]
        ),
        Some((vsize * page) as f64)
    );
    assert_eq!(s.get("process_num_threads", &svc), Some(1.0));
    let start = s.val("process_start_time_seconds", &svc);
    assert!(
        (start - spawned_at).abs() < 2.0,
        "start time {start}, spawned at {spawned_at}"
    );
    let uptime = s.val("process_uptime_seconds", &svc);
    assert!((0.0..120.0).contains(&uptime), "uptime {uptime}");
    let cpu = s.val(
        "process_cpu_seconds_total",
        &[("service", "asterdrive"), ("mode", "user")],
    );
    assert!((0.0..1.0).contains(&cpu), "cpu {cpu}");
    // fds and io are off in the example: no such series.
    assert!(s.get("process_open_filedesc", &svc).is_none());
    assert!(s.get("process_read_bytes_total", &svc).is_none());
    // Everything is served now: the alert rules read nothing else.
    assert_alerts_read_served_metrics("asterdrive", &s);

    // Not ready: 503 is accepted and read as 0.
    ready.store(0, Ordering::SeqCst);
    let s = agent.wait_for(20, "ready 0", |s| {
        s.get("asterdrive_up", &[("probe", "ready")]) == Some(0.0)
    });
    assert_eq!(
        s.get("weir_source_up", &[("pipeline", "asterdrive_ready")]),
        Some(1.0)
    );
    // /health failing: its series go, weir_source_up says why.
    health.store(0, Ordering::SeqCst);
    let s = agent.wait_for(20, "health probe down", |s| {
        s.get("weir_source_up", &[("pipeline", "asterdrive_health")]) == Some(0.0)
    });
    assert_eq!(s.get("asterdrive_up", &[("probe", "health")]), None);
    assert!(
        s.val(
            "weir_source_errors_total",
            &[("pipeline", "asterdrive_health"), ("reason", "status")]
        ) >= 1.0
    );
    // The process gone: up 0, its per-process series gone.
    let _ = proc.0.kill();
    let _ = proc.0.wait();
    let s = agent.wait_for(20, "process down", |s| {
        s.get("process_up", &[("service", "asterdrive")]) == Some(0.0)
    });
    assert_eq!(s.get("process_uptime_seconds", &svc), None);
}

// ---------------------------------------------------------------------------
// Fluxbase: the JSON system-metrics and health endpoints, the zerolog log.

const FLUX_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const FLUX_TOKEN: &str = "fbk_test_4f1c2e";

fn status_class(status: i64) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500.. => "5xx",
        _ => "unknown",
    }
}

#[test]
fn fluxbase_stats_health_and_request_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let example = example_dir("fluxbase");
    let metrics_json = read(&example.join("sample/metrics.json"));
    let degraded = read(&example.join("sample/health.json"));
    let unhealthy = r#"{"status":"unhealthy","services":{"database":{"status":"unhealthy","message":"failed to connect to `host=db user=fluxbase database=fluxbase`: dial error","latency_ms":5001},"realtime":{"status":"healthy","message":"WebSocket server running"}}}"#;
    // healthy: the sample (degraded, 200); then unhealthy (503).
    let sick = Arc::new(AtomicBool::new(false));
    let unauthorized = Arc::new(AtomicUsize::new(0));
    let (sk, un, mj, dg) = (
        sick.clone(),
        unauthorized.clone(),
        metrics_json.clone(),
        degraded.clone(),
    );
    let server = Http::start(move |path, auth| {
        if auth != Some(&format!("Bearer {FLUX_TOKEN}")) {
            un.fetch_add(1, Ordering::SeqCst);
            return (401, r#"{"error":"Missing authentication"}"#.into());
        }
        match path {
            "/api/v1/monitoring/metrics" => (200, mj.clone()),
            "/api/v1/monitoring/health" if sk.load(Ordering::SeqCst) => (503, unhealthy.into()),
            "/api/v1/monitoring/health" => (200, dg.clone()),
            _ => (404, "{}".into()),
        }
    });
    let dir = tmp.path().join("conf");
    copy_example(
        "fluxbase",
        "fluxbase.toml",
        &dir,
        &[
            ("http://localhost:8080", &server.base()),
            ("interval = \"15s\"", "interval = \"500ms\""),
        ],
    );
    let log_text = read(&dir.join("sample/fluxbase.log"));
    let lines = lines_of(&log_text) as f64;
    let agent = start_with_env(
        &dir,
        &tmp.path().join("state"),
        &[("FLUXBASE_TOKEN", FLUX_TOKEN)],
    );
    let s = agent.wait_for(60, "log read, stats and health polled", |s| {
        s.val("weir_source_lines_total", &[("pipeline", "fluxbase_logs")]) >= lines
            && s.get("fluxbase_system_uptime_seconds", &[]).is_some()
            && s.get("fluxbase_healthy", &[("component", "fluxbase")])
                .is_some()
    });
    assert_eq!(
        unauthorized.load(Ordering::SeqCst),
        0,
        "every poll had the token"
    );

    // The stats endpoint, read here with serde_json.
    let m: Value = serde_json::from_str(&metrics_json).expect("sample JSON");
    let f = |v: &Value| v.as_f64().expect("number");
    let db = &m["database"];
    let rt = &m["realtime"];
    let st = &m["storage"];
    let expect: [(&str, f64); 21] = [
        ("fluxbase_system_uptime_seconds", f(&m["uptime_seconds"])),
        ("fluxbase_goroutines", f(&m["num_goroutines"])),
        (
            "fluxbase_memory_alloc_bytes",
            f(&m["memory_alloc_mb"]) * 1048576.0,
        ),
        (
            "fluxbase_memory_sys_bytes",
            f(&m["memory_sys_mb"]) * 1048576.0,
        ),
        ("fluxbase_gc_cycles_total", f(&m["num_gc"])),
        (
            "fluxbase_gc_last_pause_seconds",
            f(&m["gc_pause_ms"]) / 1000.0,
        ),
        ("fluxbase_db_connections", f(&db["total_conns"])),
        ("fluxbase_db_connections_idle", f(&db["idle_conns"])),
        ("fluxbase_db_connections_max", f(&db["max_conns"])),
        ("fluxbase_db_connections_acquired", f(&db["acquired_conns"])),
        ("fluxbase_db_acquires_total", f(&db["acquire_count"])),
        (
            "fluxbase_db_acquires_empty_total",
            f(&db["empty_acquire_count"]),
        ),
        (
            "fluxbase_db_acquires_canceled_total",
            f(&db["canceled_acquire_count"]),
        ),
        (
            "fluxbase_db_acquire_duration_seconds_total",
            f(&db["acquire_duration_ms"]) / 1000.0,
        ),
        ("fluxbase_realtime_connections", f(&rt["total_connections"])),
        ("fluxbase_realtime_channels", f(&rt["active_channels"])),
        (
            "fluxbase_realtime_subscriptions",
            f(&rt["total_subscriptions"]),
        ),
        ("fluxbase_storage_buckets", f(&st["total_buckets"])),
        ("fluxbase_storage_files", f(&st["total_files"])),
        (
            "fluxbase_storage_size_bytes",
            f(&st["total_size_gb"]) * 1073741824.0,
        ),
        ("fluxbase_build_info", 1.0),
    ];
    for (name, want) in expect {
        let labels: Vec<(&str, &str)> = if name == "fluxbase_build_info" {
            vec![("go_version", m["go_version"].as_str().expect("go_version"))]
        } else {
            vec![]
        };
        let got = s
            .get(name, &labels)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(close(got, want), "{name}: {got} != {want}");
    }
    // Written out: the pool the guide's alert compares, the storage total.
    assert_eq!(s.get("fluxbase_db_connections", &[]), Some(10.0));
    assert_eq!(s.get("fluxbase_db_connections_max", &[]), Some(25.0));
    assert_eq!(s.get("fluxbase_realtime_connections", &[]), Some(23.0));
    assert_eq!(s.get("fluxbase_memory_alloc_bytes", &[]), Some(50331648.0));
    assert_eq!(
        s.get("fluxbase_storage_size_bytes", &[]),
        Some(13421772800.0)
    );

    // Health: overall and per component, from the sample.
    let h: Value = serde_json::from_str(&degraded).expect("health JSON");
    let up = |status: &Value| {
        if status.as_str() == Some("healthy") {
            1.0
        } else {
            0.0
        }
    };
    assert_eq!(
        s.get("fluxbase_healthy", &[("component", "fluxbase")]),
        Some(up(&h["status"]))
    );
    let services = h["services"].as_object().expect("services");
    assert_eq!(series_of(&s, "fluxbase_healthy").len(), services.len() + 1);
    for (name, svc) in services {
        assert_eq!(
            s.get("fluxbase_healthy", &[("component", name)]),
            Some(up(&svc["status"])),
            "{name}"
        );
        let latency = s.get(
            "fluxbase_health_check_latency_seconds",
            &[("component", name)],
        );
        match svc.get("latency_ms") {
            Some(ms) => assert!(close(latency.expect("latency"), f(ms) / 1000.0)),
            None => assert_eq!(latency, None, "{name} has no latency_ms"),
        }
    }
    assert_eq!(
        s.get("fluxbase_healthy", &[("component", "storage")]),
        Some(0.0)
    );

    // The request log.
    let mut requests: BTreeMap<(String, String, &str), u64> = BTreeMap::new();
    let mut latency: BTreeMap<(String, String, &str), Hist> = BTreeMap::new();
    let mut levels: BTreeMap<String, u64> = BTreeMap::new();
    let mut auth_failures: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut rate_limited: BTreeMap<(String, String), u64> = BTreeMap::new();
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("unknown").to_string();
    for line in log_text.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        *levels
            .entry(v["level"].as_str().expect("level").to_string())
            .or_default() += 1;
        if v["message"] == "Authentication failed" {
            *auth_failures
                .entry((text(&v, "method"), text(&v, "reason")))
                .or_default() += 1;
        }
        if v["message"] == "Rate limit exceeded" {
            *rate_limited
                .entry((text(&v, "limiter_type"), text(&v, "identifier")))
                .or_default() += 1;
        }
        if v["message"] != "HTTP request" {
            continue;
        }
        let key = (
            v["method"].as_str().expect("method").to_string(),
            v["path"].as_str().expect("path").to_string(),
            status_class(v["status"].as_i64().expect("status")),
        );
        *requests.entry(key.clone()).or_default() += 1;
        latency
            .entry(key)
            .or_default()
            .observe(&FLUX_BUCKETS, f(&v["duration_ms"]) / 1000.0);
    }
    assert_eq!(
        series_of(&s, "fluxbase_http_requests_total").len(),
        requests.len()
    );
    for ((m, p, c), n) in &requests {
        let l = [("method", m.as_str()), ("path", p.as_str()), ("status", *c)];
        assert_eq!(
            s.get("fluxbase_http_requests_total", &l),
            Some(*n as f64),
            "{l:?}"
        );
        assert_hist(
            &s,
            "fluxbase_http_request_duration_seconds",
            &l,
            &FLUX_BUCKETS,
            &latency[&(m.clone(), p.clone(), *c)],
        );
    }
    for (level, n) in &levels {
        assert_eq!(
            s.get("fluxbase_log_messages_total", &[("level", level)]),
            Some(*n as f64)
        );
    }
    assert_eq!(
        series_of(&s, "fluxbase_auth_failure_total").len(),
        auth_failures.len()
    );
    for ((method, reason), n) in &auth_failures {
        assert_eq!(
            s.get(
                "fluxbase_auth_failure_total",
                &[("method", method), ("reason", reason)]
            ),
            Some(*n as f64)
        );
    }
    assert_eq!(
        series_of(&s, "fluxbase_rate_limit_hits_total").len(),
        rate_limited.len()
    );
    for ((limiter, id), n) in &rate_limited {
        assert_eq!(
            s.get(
                "fluxbase_rate_limit_hits_total",
                &[("limiter_type", limiter), ("identifier", id)]
            ),
            Some(*n as f64)
        );
    }
    assert_eq!(s.sum("fluxbase_auth_failure_total"), 4.0);
    assert_eq!(s.sum("fluxbase_rate_limit_hits_total"), 3.0);
    let class = |c: &str| -> f64 {
        requests
            .iter()
            .filter(|((_, _, k), _)| *k == c)
            .map(|(_, n)| *n as f64)
            .sum()
    };
    // Written out: 90 requests, 5 of them 5xx, 5 WebSocket upgrades (101).
    assert_eq!(s.sum("fluxbase_http_requests_total"), 90.0);
    assert_eq!(class("5xx"), 5.0);
    assert_eq!(class("unknown"), 5.0);
    assert_eq!(
        s.get(
            "fluxbase_http_requests_total",
            &[
                ("method", "GET"),
                ("path", "/api/v1/tables/orders"),
                ("status", "5xx")
            ]
        ),
        Some(5.0)
    );

    // Unhealthy: 503 is read, the database is down, storage is gone from
    // the answer and so from the series.
    sick.store(true, Ordering::SeqCst);
    let s = agent.wait_for(20, "unhealthy", |s| {
        s.get("fluxbase_healthy", &[("component", "database")]) == Some(0.0)
    });
    assert_eq!(
        s.get("fluxbase_healthy", &[("component", "fluxbase")]),
        Some(0.0)
    );
    assert_eq!(
        s.get("fluxbase_healthy", &[("component", "realtime")]),
        Some(1.0)
    );
    assert_eq!(s.get("fluxbase_healthy", &[("component", "storage")]), None);
    assert_eq!(
        s.get(
            "fluxbase_health_check_latency_seconds",
            &[("component", "database")]
        ),
        Some(5001.0 * 0.001)
    );
    assert_eq!(
        s.get("weir_source_up", &[("pipeline", "fluxbase_health")]),
        Some(1.0)
    );

    assert_alerts_read_served_metrics("fluxbase", &s);
}

// ---------------------------------------------------------------------------
// quicproquo: facts in log lines, JSON and text.

#[derive(Default, Debug, PartialEq)]
struct QpqState {
    expiring: f64,
    self_signed: f64,
    no_token: f64,
    plaintext: f64,
    rate_limited: u64,
    shutdowns: u64,
    opaque: u64,
    levels: BTreeMap<String, u64>,
}

/// What the log says, line by line; the gauges are set by the warnings
/// and cleared by a shutdown.
fn qpq_state(log: &str) -> QpqState {
    let mut st = QpqState::default();
    for line in log.lines() {
        let level = if line.starts_with('{') {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            v["level"].as_str().expect("level").to_string()
        } else {
            line.split_whitespace().nth(1).expect("level").to_string()
        };
        *st.levels.entry(level).or_default() += 1;
        if line.contains("TLS certificate expires within 30 days") {
            st.expiring = 1.0;
        } else if line.contains("TLS certificate is self-signed") {
            st.self_signed = 1.0;
        } else if line.contains("running without QPQ_AUTH_TOKEN") {
            st.no_token = 1.0;
        } else if line.contains("db_key is empty; SQL store will be plaintext") {
            st.plaintext = 1.0;
        } else if line.contains("connection rate limit exceeded") {
            st.rate_limited += 1;
        } else if line.contains("shutdown signal received") {
            st.shutdowns += 1;
            st.expiring = 0.0;
            st.self_signed = 0.0;
            st.no_token = 0.0;
            st.plaintext = 0.0;
        } else if line.contains("generated and persisted new OPAQUE ServerSetup") {
            st.opaque += 1;
        }
    }
    st
}

fn qpq_scraped(s: &Scrape) -> QpqState {
    let mut levels = BTreeMap::new();
    for (k, v) in series_of(s, "qpq_log_messages_total") {
        let level = k
            .split("level=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("level label");
        levels.insert(level.to_string(), v as u64);
    }
    QpqState {
        expiring: s.val("qpq_tls_certificate_expiring_soon", &[]),
        self_signed: s.val("qpq_tls_certificate_self_signed", &[]),
        no_token: s.val("qpq_auth_token_missing", &[]),
        plaintext: s.val("qpq_sql_store_plaintext", &[]),
        rate_limited: s.val("qpq_connection_rate_limited_total", &[]) as u64,
        shutdowns: s.val("qpq_shutdown_signals_total", &[]) as u64,
        opaque: s.val("qpq_opaque_setup_generated_total", &[]) as u64,
        levels,
    }
}

#[test]
fn quicproquo_log_facts_become_alertable_metrics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    copy_example("quicproquo", "quicproquo.toml", &dir, &[]);
    let log = dir.join("sample/qpq-server.log");
    let sample = read(&log);
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let n = lines_of(&sample) as f64;
    let s = agent.wait_for(30, "the sample read", |s| {
        s.val("weir_source_lines_total", &[("pipeline", "qpq")]) >= n
    });
    let exp = qpq_state(&sample);
    assert_eq!(qpq_scraped(&s), exp);
    // Written out: two starts, one shutdown between them; the second start
    // fixed the token and the certificate's issuer, not the db_key, and its
    // certificate expires soon too.
    assert_eq!(exp.expiring, 1.0);
    assert_eq!(exp.self_signed, 0.0);
    assert_eq!(exp.no_token, 0.0);
    assert_eq!(exp.plaintext, 1.0);
    assert_eq!(exp.rate_limited, 10);
    assert_eq!(exp.shutdowns, 1);
    assert_eq!(exp.opaque, 1);
    assert_eq!(exp.levels.get("WARN"), Some(&16));
    assert_eq!(exp.levels.get("INFO"), Some(&19));
    assert_eq!(exp.levels.get("ERROR"), Some(&1));

    // The text format, appended: a restart into insecure mode.
    let text = "\
2026-11-22T09:10:00.000100Z  INFO quicproquo_server: shutdown signal received signal=\"SIGTERM\"
2026-11-22T09:10:00.400000Z  INFO quicproquo_server: drained connections; exiting open=0
2026-11-22T09:10:03.000000Z  INFO quicproquo_server: starting qpq-server version=\"0.4.1\"
2026-11-22T09:10:03.000900Z  WARN quicproquo_server::config: running without QPQ_AUTH_TOKEN
2026-11-22T09:10:03.001200Z  WARN quicproquo_server::tls: TLS certificate is self-signed subject=\"CN=qpq.local\"
2026-11-22T09:10:04.100000Z  WARN quicproquo_server::net: connection rate limit exceeded peer=203.0.113.8 limit=20
2026-11-22T09:10:04.200000Z  WARN quicproquo_server::net: connection rate limit exceeded peer=203.0.113.8 limit=20
2026-11-22T09:10:04.300000Z  WARN quicproquo_server::net: connection rate limit exceeded peer=203.0.113.9 limit=20
";
    append(&log, text);
    let all = format!("{sample}{text}");
    let n = lines_of(&all) as f64;
    let s = agent.wait_for(30, "the appended lines read", |s| {
        s.val("weir_source_lines_total", &[("pipeline", "qpq")]) >= n
    });
    let exp = qpq_state(&all);
    assert_eq!(qpq_scraped(&s), exp);
    assert_eq!(
        (exp.expiring, exp.self_signed, exp.no_token, exp.plaintext),
        (0.0, 1.0, 1.0, 0.0)
    );
    assert_eq!((exp.rate_limited, exp.shutdowns), (13, 2));

    assert_alerts_read_served_metrics("quicproquo", &s);
}

// ---------------------------------------------------------------------------
// LeafLock's backup runner.

const BACKUP_BUCKETS: [f64; 10] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0,
];

/// Go's time.Duration.String() back to seconds ("4m7.088s", "1h2m", "850ms").
fn go_duration(s: &str) -> f64 {
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .expect("a unit");
        let n: f64 = rest[..num_end].parse().expect("a number");
        rest = &rest[num_end..];
        let (unit, scale) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))
        .expect("a known unit");
        total += n * scale;
        rest = &rest[unit.len()..];
    }
    total
}

#[derive(Default)]
struct BackupExpected {
    runs: BTreeMap<String, u64>,
    duration: Hist,
    size: Option<f64>,
    running: Option<f64>,
}

fn backup_expected(log: &str) -> BackupExpected {
    let mut e = BackupExpected::default();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        if v["component"] != "backup" {
            continue;
        }
        match v["msg"].as_str().expect("msg") {
            "backup started" => e.running = Some(1.0),
            "backup completed" => {
                *e.runs.entry("success".into()).or_default() += 1;
                e.duration.observe(
                    &BACKUP_BUCKETS,
                    go_duration(v["duration"].as_str().expect("duration")),
                );
                e.size = Some(v["size_bytes"].as_f64().expect("size"));
                e.running = Some(0.0);
            }
            "backup failed" => {
                *e.runs.entry("failure".into()).or_default() += 1;
                e.running = Some(0.0);
            }
            "backup skipped" => *e.runs.entry("skipped".into()).or_default() += 1,
            other => panic!("unexpected backup line {other:?}"),
        }
    }
    e
}

fn assert_backups(s: &Scrape, e: &BackupExpected) {
    assert_eq!(series_of(s, "leaflock_backups_total").len(), e.runs.len());
    for (status, n) in &e.runs {
        assert_eq!(
            s.get("leaflock_backups_total", &[("status", status)]),
            Some(*n as f64),
            "{status}"
        );
    }
    assert_hist(
        s,
        "leaflock_backup_duration_seconds",
        &[],
        &BACKUP_BUCKETS,
        &e.duration,
    );
    assert_eq!(s.get("leaflock_backup_size_bytes", &[]), e.size);
    assert_eq!(s.get("leaflock_backup_running", &[]), e.running);
}

#[test]
fn notes_backup_runs_durations_and_sizes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    copy_example("notes-backup", "leaflock.toml", &dir, &[]);
    let log = dir.join("sample/leaflock-backend.log");
    let sample = read(&log);
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let n = lines_of(&sample) as f64;
    let s = agent.wait_for(30, "the sample read", |s| {
        s.val(
            "weir_source_lines_total",
            &[("pipeline", "leaflock_backup")],
        ) >= n
    });
    let e = backup_expected(&sample);
    assert_backups(&s, &e);
    // Written out: a week of nightly runs.
    assert_eq!(e.runs["success"], 5);
    assert_eq!(e.runs["failure"], 1);
    assert_eq!(e.runs["skipped"], 1);
    assert_eq!(e.size, Some(73400320.0));
    assert_eq!(e.running, Some(0.0));
    assert_eq!(e.duration.buckets, vec![0, 0, 0, 4, 4, 4, 5, 5, 5, 5]);
    assert!(close(e.duration.sum, 2040.848), "{}", e.duration.sum);
    // API request lines of the same log count for nothing here.
    assert_eq!(
        s.val(
            "weir_plugin_inputs_rejected_total",
            &[("pipeline", "leaflock_backup")]
        ),
        0.0
    );

    // A run starts: running 1; it fails: running 0, one more failure.
    let started = r#"{"time":"2026-11-23T03:00:00.012Z","level":"INFO","msg":"backup started","component":"backup","backup_id":"20261123T030000Z","target":"s3://leaflock-backups/nightly"}
"#;
    append(&log, started);
    let s = agent.wait_for(20, "running", |s| {
        s.get("leaflock_backup_running", &[]) == Some(1.0)
    });
    assert_backups(&s, &backup_expected(&format!("{sample}{started}")));
    let failed = r#"{"time":"2026-11-23T03:41:09.500Z","level":"ERROR","msg":"backup failed","component":"backup","backup_id":"20261123T030000Z","duration":"41m9.488s","error":"upload part 112: RequestTimeout: Your socket connection to the server was not read from or written to within the timeout period."}
"#;
    append(&log, failed);
    let s = agent.wait_for(20, "failed", |s| {
        s.get("leaflock_backups_total", &[("status", "failure")]) == Some(2.0)
    });
    let e = backup_expected(&format!("{sample}{started}{failed}"));
    assert_backups(&s, &e);
    assert_eq!(e.running, Some(0.0));

    assert_alerts_read_served_metrics("leaflock", &s);
}
