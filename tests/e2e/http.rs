//! The http source with its plugins against real servers: HAProxy (its
//! JSON stats through json-stats against its own Prometheus exporter),
//! node_exporter (re-exposed whole by prometheus-text), and test servers
//! that fail in each way a poll can fail. Every server listens on
//! 127.0.0.1 and is stopped when its test ends.
use crate::support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Helpers: processes, a small HTTP server, a raw client, an exposition parser.

/// A child process, killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the process accepts connections on every port.
    fn wait_ports(&mut self, ports: &[u16]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("exited ({st}):\n{}", self.log_text());
            }
            if ports
                .iter()
                .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("not listening in 10 s:\n{}", self.log_text());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` every 50 ms until it holds; panic after `secs`.
fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// A request as the test server read it.
struct Request {
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the test server does with a request.
enum Reply {
    /// A status, extra headers and a body, with Content-Length.
    Full(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// 200 and a body without Content-Length, ended by closing.
    Unsized(Vec<u8>),
    /// Read the request and answer nothing, holding the connection this
    /// long (or until the server stops).
    Hold(Duration),
    /// Promise a body of this many bytes, send the headers and the first
    /// of them, then hold the connection (`Some`) or close it (`None`).
    Cut(usize, &'static [u8], Option<Duration>),
    /// 200 and a body sent one byte at a time, this long apart.
    Trickle(&'static [u8], Duration),
}

fn json(body: &str) -> Reply {
    Reply::Full(
        200,
        vec![("Content-Type", "application/json".into())],
        body.as_bytes().to_vec(),
    )
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1, stopped when
/// dropped. At most 32 connections are served at once; more are closed.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(handler);
        let open = Arc::new(AtomicUsize::new(0));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        if open.fetch_add(1, Ordering::SeqCst) >= 32 {
                            open.fetch_sub(1, Ordering::SeqCst);
                            continue;
                        }
                        let (h, st, open) = (handler.clone(), st.clone(), open.clone());
                        std::thread::spawn(move || {
                            let _ = serve(s, &h, &st);
                            open.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut s: TcpStream, handler: &Handler, stop: &AtomicBool) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    // Read a request body, if any, so the client sees a clean close.
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end - 4;
    while have < len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        have += n;
    }
    match handler(&Request { path, headers }) {
        Reply::Full(status, extra, body) => {
            let mut out = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                reason(status),
                body.len()
            );
            for (k, v) in extra {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            s.write_all(out.as_bytes())?;
            s.write_all(&body)?;
        }
        Reply::Unsized(body) => {
            s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
            )?;
            s.write_all(&body)?;
        }
        Reply::Hold(d) => hold(d, stop),
        Reply::Trickle(body, gap) => {
            s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )?;
            for b in body {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                s.write_all(&[*b])?;
                s.flush()?;
                std::thread::sleep(gap);
            }
        }
        Reply::Cut(len, first, d) => {
            s.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )?;
            s.write_all(first)?;
            s.flush()?;
            if let Some(d) = d {
                hold(d, stop);
            }
        }
    }
    s.flush()?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn hold(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Other",
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and body.
fn request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get_body(url: &str) -> String {
    ureq::get(url)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .expect("body")
}

/// A parsed text exposition: TYPE by family, and samples keyed by name and
/// labels (sorted; empty values dropped, as Prometheus reads them; `le`
/// and `quantile` values normalised as numbers).
#[derive(Default, Debug)]
struct Expo {
    types: BTreeMap<String, String>,
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
}

type Key = (String, Vec<(String, String)>);

impl Expo {
    fn parse(text: &str) -> Expo {
        let mut e = Expo::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut w = rest.split(' ');
                if let (Some(n), Some(t)) = (w.next(), w.next()) {
                    e.types.insert(n.to_string(), t.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("sample line");
            let name = line[..name_end].to_string();
            let mut rest = &line[name_end..];
            let mut labels = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                let mut it = r.char_indices().peekable();
                loop {
                    while it.next_if(|&(_, c)| c == ',' || c == ' ').is_some() {}
                    match it.peek() {
                        Some(&(i, '}')) => {
                            rest = &r[i + 1..];
                            break;
                        }
                        None => panic!("unterminated labels in {line}"),
                        _ => {}
                    }
                    let mut lname = String::new();
                    for (_, c) in it.by_ref() {
                        if c == '=' {
                            break;
                        }
                        lname.push(c);
                    }
                    assert_eq!(it.next().map(|c| c.1), Some('"'), "{line}");
                    let mut v = String::new();
                    loop {
                        match it.next().map(|c| c.1) {
                            Some('\\') => match it.next().map(|c| c.1) {
                                Some('n') => v.push('\n'),
                                Some(o) => v.push(o),
                                None => panic!("{line}"),
                            },
                            Some('"') => break,
                            Some(c) => v.push(c),
                            None => panic!("unterminated label value in {line}"),
                        }
                    }
                    labels.push((lname.trim().to_string(), v));
                }
            }
            let value: f64 = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("value in {line}"));
            let mut labels: Vec<(String, String)> = labels
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| {
                    if k == "le" || k == "quantile" {
                        let n: f64 = v.parse().unwrap_or_else(|_| panic!("{k} in {line}"));
                        (k, format!("{n}"))
                    } else {
                        (k, v)
                    }
                })
                .collect();
            labels.sort();
            e.samples.insert((name, labels), value);
        }
        e
    }

    /// The family a sample belongs to, and its TYPE.
    fn family(&self, name: &str) -> (String, String) {
        if let Some(t) = self.types.get(name) {
            return (name.to_string(), t.clone());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(t) = self.types.get(base) {
                    return (base.to_string(), t.clone());
                }
            }
        }
        (name.to_string(), "untyped".into())
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.samples.get(&(name.to_string(), l)).copied()
    }
}

fn label<'a>(key: &'a Key, name: &str) -> Option<&'a str> {
    key.1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), msg)
}

/// A config directory holding `text` as `http.toml`.
fn config_dir(tmp: &Path, text: &str) -> PathBuf {
    let dir = tmp.join("conf");
    std::fs::create_dir_all(&dir).expect("conf dir");
    std::fs::write(dir.join("http.toml"), text).expect("write config");
    dir
}

/// Drop an example's `[server]` table: the test picks its own port.
fn without_server_table(example: &str) -> String {
    example.replace("[server]\nlisten = \"127.0.0.1:9731\"\n", "")
}

fn example(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("examples/{path}: {e}"))
}

// ---------------------------------------------------------------------------
// HAProxy: json-stats over /stats;json equals HAProxy's own exporter.

#[test]
fn haproxy_json_stats_equal_haproxy_prometheus_exporter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The application behind HAProxy: a status by path, bodies of known size.
    let app = Server::start(|r| match r.path.as_str() {
        "/missing" => Reply::Full(404, vec![], b"no".to_vec()),
        "/err" => Reply::Full(500, vec![], b"oops".to_vec()),
        "/moved" => Reply::Full(302, vec![("Location", "/".into())], Vec::new()),
        _ => Reply::Full(200, vec![], vec![b'x'; 1000]),
    });
    let (web, stats) = (free_port(), free_port());
    let cfg = tmp.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    maxconn 200\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\n\
             frontend web\n    bind 127.0.0.1:{web}\n    default_backend app\n\
             backend app\n    server s1 127.0.0.1:{}\n\
             frontend stats\n    bind 127.0.0.1:{stats}\n\
             \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
             \x20   stats enable\n    stats uri /stats\n",
            app.port
        ),
    )
    .expect("haproxy.cfg");
    let mut haproxy = Proc::spawn(
        Command::new("/usr/sbin/haproxy")
            .arg("-f")
            .arg(&cfg)
            .arg("-db"),
        &tmp.path().join("haproxy.log"),
    );
    // Not the web port: a probe would count there.
    haproxy.wait_ports(&[stats]);

    // Traffic, then none.
    let mut by_class: BTreeMap<&str, f64> = BTreeMap::new();
    let plan = ["/", "/", "/missing", "/", "/err", "/moved", "/", "/missing"];
    let rounds = 7;
    for i in 0..rounds {
        for p in plan {
            let (status, _) = request(web, "GET", p, b"");
            *by_class.entry(class(status)).or_default() += 1.0;
        }
        let (status, _) = request(web, "POST", "/upload", &vec![b'u'; 500 + i * 100]);
        *by_class.entry(class(status)).or_default() += 1.0;
    }
    let requests = (rounds * (plan.len() + 1)) as f64;
    assert_eq!(
        by_class.get("2xx"),
        Some(&(rounds as f64 * 5.0)),
        "{by_class:?}"
    );

    let conf = without_server_table(&example("haproxy/haproxy.toml"))
        .replace(
            "http://127.0.0.1:8404/stats;json",
            &format!("http://127.0.0.1:{stats}/stats;json"),
        )
        .replace("interval = \"15s\"", "interval = \"200ms\"");
    let dir = config_dir(tmp.path(), &conf);
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let web_requests =
        |s: &Scrape| s.get("haproxy_frontend_http_requests_total", &[("proxy", "web")]);
    agent.wait_for(20, "haproxy figures", |s| web_requests(s) == Some(requests));

    // No traffic through web/app from here on: only the stats frontend
    // moves, with each read of /stats;json or /metrics.
    let exporter = Expo::parse(&get_body(&format!("http://127.0.0.1:{stats}/metrics")));
    let weir_text = agent.scrape_text();
    let weir = Expo::parse(&weir_text);
    let ours: Vec<(&Key, &f64)> = weir
        .samples
        .iter()
        .filter(|(k, _)| k.0.starts_with("haproxy_") && label(k, "proxy") != Some("stats"))
        .collect();
    let mut families = BTreeSet::new();
    for (k, v) in &ours {
        let (fam, ty) = weir.family(&k.0);
        let theirs = exporter.types.get(&fam);
        assert_eq!(
            theirs,
            Some(&ty),
            "{fam}: TYPE in weir {ty}, in HAProxy's exporter {theirs:?}"
        );
        families.insert(fam);
        match exporter.samples.get(*k) {
            Some(e) => assert!(same(**v, *e), "{k:?}: weir {v}, HAProxy's exporter {e}"),
            None => panic!("{k:?} (weir {v}) is not in HAProxy's exporter output"),
        }
    }
    // And nothing of those families is missing on weir's side.
    let mut theirs = 0;
    for k in exporter.samples.keys() {
        let proxy = label(k, "proxy");
        if families.contains(&k.0) && matches!(proxy, Some("web" | "app")) {
            assert!(weir.samples.contains_key(k), "{k:?} missing from weir");
            theirs += 1;
        }
    }
    assert_eq!(theirs, ours.len());
    assert!(families.len() >= 60, "{} families compared", families.len());
    eprintln!(
        "haproxy: {} series of {} families equal to HAProxy's exporter",
        ours.len(),
        families.len()
    );
    // Figures known from the traffic sent.
    for p in ["web", "app"] {
        let side = if p == "web" { "frontend" } else { "backend" };
        for (c, n) in &by_class {
            assert_eq!(
                weir.get(
                    &format!("haproxy_{side}_http_responses_total"),
                    &[("proxy", p), ("code", c)]
                ),
                Some(*n),
                "{side} {c}"
            );
        }
    }
    assert_eq!(
        weir.get("haproxy_backend_http_requests_total", &[("proxy", "app")]),
        Some(requests)
    );
    assert_eq!(
        weir.get(
            "haproxy_server_sessions_total",
            &[("proxy", "app"), ("server", "s1")]
        ),
        Some(requests)
    );
    assert!(
        weir.get("haproxy_frontend_bytes_in_total", &[("proxy", "web")])
            .unwrap_or(0.0)
            > 500.0 * rounds as f64
    );
    let (ok, msg) = promtool_check(&weir_text);
    assert!(ok && msg.trim().is_empty(), "promtool: {msg}");
    drop(haproxy);
}

fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------
// node_exporter, re-exposed whole by prometheus-text.

const TEXTFILE: &str = r#"# HELP batch_duration_seconds Duration of batch runs.
# TYPE batch_duration_seconds histogram
batch_duration_seconds_bucket{job="backup",le="0.5"} 1
batch_duration_seconds_bucket{job="backup",le="1"} 3
batch_duration_seconds_bucket{job="backup",le="5"} 7
batch_duration_seconds_bucket{job="backup",le="+Inf"} 8
batch_duration_seconds_sum{job="backup"} 21.5
batch_duration_seconds_count{job="backup"} 8
batch_duration_seconds_bucket{job="rotate",le="0.5"} 0
batch_duration_seconds_bucket{job="rotate",le="1"} 0
batch_duration_seconds_bucket{job="rotate",le="5"} 2
batch_duration_seconds_bucket{job="rotate",le="+Inf"} 2
batch_duration_seconds_sum{job="rotate"} 4.25
batch_duration_seconds_count{job="rotate"} 2
# HELP batch_latency_seconds Latency quantiles of batch steps.
# TYPE batch_latency_seconds summary
batch_latency_seconds{job="backup",quantile="0.5"} 0.8
batch_latency_seconds{job="backup",quantile="0.99"} 4.2
batch_latency_seconds_sum{job="backup"} 21.5
batch_latency_seconds_count{job="backup"} 8
# HELP batch_runs_total Batch runs by result.
# TYPE batch_runs_total counter
batch_runs_total{job="backup",result="ok"} 7
batch_runs_total{job="backup",result="error"} 1
# HELP legacy_value A value without a type.
legacy_value{path="C:\\data \"x\""} 42
"#;

/// Families whose values move both ways between two reads (memory,
/// goroutines, load, scrape durations, GC pause quantiles): their gauges
/// and quantiles are checked for presence and finiteness only. Every other series is checked against two reads of
/// node_exporter taken before and after weir's poll: equal when those
/// agree, within them when they differ (counters and clocks only go up).
const MOVING: [&str; 10] = [
    "go_memstats_",
    "go_goroutines",
    "go_threads",
    "go_gc_duration_seconds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "node_load",
    "node_scrape_collector_duration_seconds",
    "promhttp_metric_handler_requests_in_flight",
];

#[test]
fn prometheus_text_re_exposes_node_exporter_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let textfiles = tmp.path().join("textfile");
    std::fs::create_dir_all(&textfiles).expect("textfile dir");
    std::fs::write(textfiles.join("batch.prom"), TEXTFILE).expect("batch.prom");
    let port = free_port();
    let mut node = Proc::spawn(
        Command::new("/usr/bin/prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.loadavg",
                "--collector.os",
                "--collector.textfile",
                "--collector.time",
                "--collector.uname",
            ])
            .arg(format!(
                "--collector.textfile.directory={}",
                textfiles.display()
            )),
        &tmp.path().join("node_exporter.log"),
    );
    node.wait_ports(&[port]);
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_until(10, "node_exporter to answer", || {
        ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok()
    });

    let ex = example("node-exporter/node-exporter.toml");
    let head = ex
        .split("[pipeline.node.config]")
        .next()
        .expect("example has a config table");
    let conf = format!(
        "{}[pipeline.node.config]\nprefix = \"ne\"\nlabels = {{ source = \"node\" }}\n",
        without_server_table(head)
            .replace("http://127.0.0.1:9100/metrics", &url)
            .replace("interval = \"15s\"", "interval = \"200ms\"")
    );
    let dir = config_dir(tmp.path(), &conf);
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let polls = |s: &Scrape| {
        s.val(
            "weir_source_poll_duration_seconds_count",
            &[("pipeline", "node")],
        )
    };
    agent.wait_for(20, "node series", |s| {
        s.series
            .keys()
            .any(|k| k.starts_with("ne_node_uname_info{"))
    });

    // Read node_exporter (before), let weir finish a poll that began after
    // it, read weir, read node_exporter again (after).
    let before = Expo::parse(&get_body(&url));
    let n = polls(&agent.scrape());
    // The poll counted after `n` may have begun before `before` was read;
    // the one after it began later, and is applied once a third is counted.
    agent.wait_for(10, "two more polls", |s| polls(s) >= n + 3.0);
    let weir_text = agent.scrape_text();
    let after = Expo::parse(&get_body(&url));
    let weir = Expo::parse(&weir_text);

    // Weir's node series, without the prefix and the added label.
    let mut ours: BTreeMap<Key, f64> = BTreeMap::new();
    for (k, v) in &weir.samples {
        let Some(name) = k.0.strip_prefix("ne_") else {
            continue;
        };
        assert_eq!(label(k, "source"), Some("node"), "{k:?}");
        let labels = k.1.iter().filter(|(l, _)| l != "source").cloned().collect();
        ours.insert((name.to_string(), labels), *v);
    }
    // Every family, with its type (untyped ones as gauges).
    let fams = |e: &Expo, prefix: &str| -> BTreeMap<String, String> {
        e.samples
            .keys()
            .filter_map(|k| {
                k.0.strip_prefix(prefix)
                    .map(|n| e.family(&format!("{prefix}{n}")))
            })
            .map(|(f, t)| {
                let f = f.strip_prefix(prefix).unwrap_or(&f).to_string();
                (f, if t == "untyped" { "gauge".into() } else { t })
            })
            .collect()
    };
    let upstream_fams = fams(&after, "");
    assert_eq!(fams(&weir, "ne_"), upstream_fams);
    assert!(upstream_fams.len() > 50, "{} families", upstream_fams.len());
    // Every series.
    let keys = |m: &BTreeMap<Key, f64>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(keys(&ours), keys(&after.samples), "series sets differ");

    let (mut exact, mut between, mut moving) = (0, 0, 0);
    for (k, v) in &ours {
        let b = after.samples[k];
        // Counters, and the _sum and _count of summaries, only go up.
        let (fam, ty) = after.family(&k.0);
        let monotonic = ty == "counter" || (ty == "summary" && fam != k.0);
        if !monotonic && MOVING.iter().any(|m| k.0.starts_with(m)) {
            assert!(v.is_finite() || v.is_nan(), "{k:?} {v}");
            moving += 1;
            continue;
        }
        let a = before
            .samples
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("{k:?} not in the first read"));
        // The kernel's idle and iowait times may step back a little
        // (NO_HZ accounting): a second of slack for those two.
        let slack = if k.0 == "node_cpu_seconds_total"
            && matches!(label(k, "mode"), Some("idle" | "iowait"))
        {
            1.0
        } else {
            0.0
        };
        if same(a, b) && slack == 0.0 {
            assert!(same(*v, b), "{k:?}: weir {v}, node_exporter {b} (twice)");
            exact += 1;
        } else {
            let (lo, hi) = (a.min(b) - slack, a.max(b) + slack);
            assert!(
                lo <= *v && *v <= hi,
                "{k:?}: weir {v}, not within {a} ..= {b}"
            );
            between += 1;
        }
    }
    eprintln!(
        "node_exporter: {} families, {} series: {exact} equal, {between} within two reads, {moving} moving (presence only)",
        upstream_fams.len(),
        ours.len()
    );
    // The deterministic textfile families are all exact, histogram and
    // summary whole.
    assert_eq!(
        weir.get(
            "ne_batch_duration_seconds_bucket",
            &[("job", "backup"), ("le", "1"), ("source", "node")]
        ),
        Some(3.0)
    );
    assert_eq!(
        weir.types
            .get("ne_batch_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        weir.types
            .get("ne_batch_latency_seconds")
            .map(String::as_str),
        Some("summary")
    );
    assert_eq!(
        weir.types.get("ne_legacy_value").map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        weir.get(
            "ne_legacy_value",
            &[("path", "C:\\data \"x\""), ("source", "node")]
        ),
        Some(42.0)
    );
    assert!(weir_text.contains("# HELP ne_batch_runs_total Batch runs by result.\n"));
    assert!(exact > 50, "{exact} exact");

    let (ok, msg) = promtool_check(&weir_text);
    assert!(
        ok && msg.trim().is_empty(),
        "promtool on weir's /metrics: {msg}"
    );
}

// ---------------------------------------------------------------------------
// Failures: each counted by reason, the series removed, the agent unhurt.
// Secrets: sent, never logged.

const GOOD: &str = r#"{"requests": 10, "queues": {"a": 1, "b": 2}}"#;

/// Modes of the flaky server.
const MODES: [(&str, &str, &str); 9] = [
    // (mode, reason, what the log says)
    ("invalid_json", "plugin", "the body is not JSON"),
    ("big", "too_large", "body larger than 4096 bytes"),
    ("big_unsized", "too_large", "body larger than 4096 bytes"),
    ("hold", "timeout", "timed out"),
    ("stalled_body", "timeout", "timed out"),
    // Each byte within the timeout, the whole past it.
    ("trickle_body", "timeout", "timed out"),
    ("cut_body", "other", "reading the body"),
    ("status_500", "status", "status 500 not accepted"),
    ("redirect_loop", "redirect", "redirects:"),
];

fn b64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn failed_polls_are_counted_remove_series_and_leave_the_agent_unhurt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mode = Arc::new(AtomicUsize::new(usize::MAX));
    let m = mode.clone();
    let flaky = Server::start(move |_| {
        let big = format!(r#"{{"requests": 10, "pad": "{}"}}"#, "x".repeat(8192));
        match MODES.get(m.load(Ordering::SeqCst)).map(|t| t.0) {
            None => json(GOOD),
            Some("invalid_json") => json(r#"{"requests": 10, "queues": "#),
            Some("big") => json(&big),
            Some("big_unsized") => Reply::Unsized(big.into_bytes()),
            Some("hold") => Reply::Hold(Duration::from_secs(3)),
            Some("stalled_body") => Reply::Cut(100, b"{\"requests\"", Some(Duration::from_secs(3))),
            Some("trickle_body") => Reply::Trickle(GOOD.as_bytes(), Duration::from_millis(50)),
            Some("cut_body") => Reply::Cut(100, b"{\"requests\"", None),
            Some("status_500") => Reply::Full(500, vec![], b"oops".to_vec()),
            _ => Reply::Full(302, vec![("Location", "/stats".into())], Vec::new()),
        }
    });
    let steady = Server::start(|_| json(r#"{"value": 7}"#));

    // Secrets: a basic-auth password in a file, a bearer token in the
    // environment; the server answers only with both right.
    let password = "pw-5f1e9c-never-logged";
    let token = "tok-8a7d2b-never-logged";
    let basic = format!("Basic {}", b64(format!("weir:{password}").as_bytes()));
    let bearer = format!("Bearer {token}");
    let (want_basic, want_bearer) = (basic.clone(), bearer.clone());
    let auth = Server::start(move |r| {
        let got = r.header("authorization").unwrap_or_default();
        if (r.path == "/basic" && got == want_basic) || (r.path == "/bearer" && got == want_bearer)
        {
            json(r#"{"value": 1}"#)
        } else {
            Reply::Full(401, vec![("WWW-Authenticate", "Basic".into())], Vec::new())
        }
    });
    // Set before the agent starts; a name no other test uses.
    std::env::set_var("WEIR_E2E_HTTP_BEARER", token);

    // TLS: a CA and a certificate for 127.0.0.1 it signed; openssl serves
    // files of its working directory. Verified with ca_file, refused
    // without.
    let tls = tmp.path().join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=weir test CA",
    ]);
    openssl(&tls, &args);
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&tls, &args);
    std::fs::write(
        tls.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        &tls,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::write(tls.join("stats.json"), r#"{"value": 3}"#).expect("stats.json");
    let tls_port = free_port();
    let mut s_server = Proc::spawn(
        Command::new("openssl")
            .current_dir(&tls)
            .args([
                "s_server", "-quiet", "-WWW", "-cert", "leaf.pem", "-key", "leaf.key",
            ])
            .arg("-accept")
            .arg(format!("127.0.0.1:{tls_port}")),
        &tmp.path().join("s_server.log"),
    );
    s_server.wait_ports(&[tls_port]);
    std::fs::write(tmp.path().join("basic.pass"), format!("{password}\n")).expect("pass");
    std::fs::write(tmp.path().join("wrong.pass"), "not-it\n").expect("pass");
    let closed = free_port();

    let value = |name: &str| {
        format!("[pipeline.{name}.config]\nmetrics = [{{ name = \"{name}_value\", path = \"value\" }}]\n")
    };
    let tmpd = tmp.path().display();
    let conf = format!(
        r#"
[pipeline.flaky]
plugin = "json-stats"
source = {{ type = "http", url = "{flaky_url}", interval = "100ms", timeout = "300ms", max_body_bytes = "4KiB" }}
[pipeline.flaky.config]
metrics = [
  {{ name = "app_requests_total", type = "counter", path = "requests" }},
  {{ name = "app_queue_depth", path = "queues.*", labels = {{ queue = "${{*}}" }} }},
]

[pipeline.steady]
plugin = "json-stats"
source = {{ type = "http", url = "{steady_url}", interval = "100ms" }}
{steady_cfg}
[pipeline.tls_ok]
plugin = "json-stats"
source = {{ type = "http", url = "https://127.0.0.1:{tls_port}/stats.json", interval = "300ms", ca_file = "{tmpd}/tls/ca.pem" }}
{tls_ok_cfg}
[pipeline.tls_unverified]
plugin = "json-stats"
source = {{ type = "http", url = "https://127.0.0.1:{tls_port}/stats.json", interval = "300ms" }}
{tls_bad_cfg}
[pipeline.refused]
plugin = "json-stats"
source = {{ type = "http", url = "http://127.0.0.1:{closed}/stats", interval = "300ms" }}
{refused_cfg}
[pipeline.basic]
plugin = "json-stats"
source = {{ type = "http", url = "{basic_url}", interval = "200ms", basic_auth = {{ username = "weir", password_file = "{tmpd}/basic.pass" }} }}
{basic_cfg}
[pipeline.bearer]
plugin = "json-stats"
source = {{ type = "http", url = "{bearer_url}", interval = "200ms", bearer_token_env = "WEIR_E2E_HTTP_BEARER" }}
{bearer_cfg}
[pipeline.wrong_password]
plugin = "json-stats"
source = {{ type = "http", url = "{basic_url}", interval = "300ms", basic_auth = {{ username = "weir", password_file = "{tmpd}/wrong.pass" }} }}
{wrong_cfg}
[pipeline.no_token]
plugin = "json-stats"
source = {{ type = "http", url = "{bearer_url}", interval = "300ms", bearer_token_env = "WEIR_E2E_HTTP_UNSET_TOKEN" }}
{no_token_cfg}
"#,
        flaky_url = flaky.url("/stats"),
        steady_url = steady.url("/stats"),
        steady_cfg = value("steady"),
        tls_ok_cfg = value("tls_ok"),
        tls_bad_cfg = value("tls_unverified"),
        refused_cfg = value("refused"),
        basic_url = auth.url("/basic"),
        bearer_url = auth.url("/bearer"),
        basic_cfg = value("basic"),
        bearer_cfg = value("bearer"),
        wrong_cfg = value("wrong_password"),
        no_token_cfg = value("no_token"),
    );
    let dir = config_dir(tmp.path(), &conf);
    let agent = Agent::start(&dir, &tmp.path().join("state"));

    let up = |s: &Scrape, p: &str| s.get("weir_source_up", &[("pipeline", p)]);
    let errors = |s: &Scrape, p: &str, reason: &str| {
        s.val(
            "weir_source_errors_total",
            &[("pipeline", p), ("reason", reason)],
        )
    };
    let flaky_ok = |s: &Scrape| {
        up(s, "flaky") == Some(1.0)
            && s.get("app_requests_total", &[]) == Some(10.0)
            && s.get("app_queue_depth", &[("queue", "b")]) == Some(2.0)
    };
    let s = agent.wait_for(20, "every pipeline's first poll", |s| {
        flaky_ok(s)
            && ["steady", "tls_ok", "basic", "bearer"]
                .iter()
                // up is set when the poll succeeds, the value a moment
                // later when the plugin's updates are applied: wait for both.
                .all(|p| up(s, p) == Some(1.0) && s.get(&format!("{p}_value"), &[]).is_some())
            && [
                ("tls_unverified", "tls"),
                ("refused", "connect"),
                ("wrong_password", "status"),
                ("no_token", "secret"),
            ]
            .iter()
            .all(|(p, r)| up(s, p) == Some(0.0) && errors(s, p, r) >= 1.0)
    });
    // Secrets worked, TLS with the CA worked.
    assert_eq!(s.get("basic_value", &[]), Some(1.0));
    assert_eq!(s.get("bearer_value", &[]), Some(1.0));
    assert_eq!(s.get("tls_ok_value", &[]), Some(3.0));
    for p in ["tls_unverified", "refused", "wrong_password", "no_token"] {
        assert_eq!(s.get(&format!("{p}_value"), &[]), None, "{p}: no series");
        assert_eq!(s.get("weir_pipeline_series", &[("pipeline", p)]), Some(0.0));
    }

    // The flaky server fails in each way in turn, and recovers.
    for (i, (name, reason, says)) in MODES.iter().enumerate() {
        let s = agent.scrape();
        let before = errors(&s, "flaky", reason);
        let polls = s.val(
            "weir_source_poll_duration_seconds_count",
            &[("pipeline", "steady")],
        );
        mode.store(i, Ordering::SeqCst);
        let s = agent.wait_for(20, &format!("{name} counted as {reason}"), |s| {
            errors(s, "flaky", reason) > before
                && up(s, "flaky") == Some(0.0)
                && s.get("weir_pipeline_series", &[("pipeline", "flaky")]) == Some(0.0)
        });
        assert_eq!(
            s.get("app_requests_total", &[]),
            None,
            "{name}: series removed"
        );
        assert_eq!(s.get("app_queue_depth", &[("queue", "a")]), None, "{name}");
        assert!(
            agent.log_text().contains(says),
            "{name}: log should say {says:?}\n{}",
            agent.log_text()
        );
        // The other pipelines go on.
        assert_eq!(up(&s, "steady"), Some(1.0), "{name}");
        assert_eq!(s.get("steady_value", &[]), Some(7.0), "{name}");
        mode.store(usize::MAX, Ordering::SeqCst);
        agent.wait_for(20, &format!("recovery after {name}"), |s| {
            flaky_ok(s)
                && s.val(
                    "weir_source_poll_duration_seconds_count",
                    &[("pipeline", "steady")],
                ) > polls
        });
    }
    let s = agent.scrape();
    for (_, reason, _) in MODES {
        assert!(errors(&s, "flaky", reason) >= 1.0, "{reason}");
    }
    // A body that is not JSON is the plugin's error, not an input rejected.
    assert_eq!(
        s.val(
            "weir_plugin_inputs_rejected_total",
            &[("pipeline", "flaky")]
        ),
        0.0
    );

    let log = agent.log_text();
    if std::env::var_os("WEIR_E2E_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    for (what, text) in [
        ("tls", "TLS failed"),
        ("connect", "cannot connect"),
        ("status", "status 401 not accepted"),
        (
            "secret",
            "environment variable WEIR_E2E_HTTP_UNSET_TOKEN is not set",
        ),
    ] {
        assert!(log.contains(text), "{what}: log should say {text:?}\n{log}");
    }
    for secret in [
        password,
        token,
        basic.as_str(),
        bearer.as_str(),
        &b64(format!("weir:{password}").as_bytes()),
    ] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
    let (ok, msg) = promtool_check(&agent.scrape_text());
    assert!(ok && msg.trim().is_empty(), "promtool: {msg}");
}

// ---------------------------------------------------------------------------
// A family the host refuses must not shift the families declared after it.

#[test]
fn a_refused_declaration_does_not_shift_later_families() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let later = Arc::new(AtomicBool::new(false));
    let l = later.clone();
    let server = Server::start(move |_| {
        // `a` carries a label the pipeline sets too: the host refuses it.
        let mut text = String::from("# TYPE a gauge\na{job=\"up\"} 1\n# TYPE b gauge\nb 2\n");
        if l.load(Ordering::SeqCst) {
            text.push_str(
                "# TYPE c gauge\nc 3\n# TYPE a2 gauge\na2{job=\"up\"} 4\n# TYPE d gauge\nd 5\n",
            );
        }
        Reply::Full(200, vec![], text.into_bytes())
    });
    let conf = format!(
        "[pipeline.up]\nplugin = \"prometheus-text\"\nlabels = {{ job = \"weir\" }}\n\
         source = {{ type = \"http\", url = \"{}\", interval = \"100ms\" }}\n",
        server.url("/metrics")
    );
    let dir = config_dir(tmp.path(), &conf);
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    agent.wait_for(10, "b", |s| s.get("b", &[("job", "weir")]) == Some(2.0));
    later.store(true, Ordering::SeqCst);
    let s = agent.wait_for(10, "c and d", |s| {
        s.get("c", &[("job", "weir")]) == Some(3.0) && s.get("d", &[("job", "weir")]) == Some(5.0)
    });
    assert_eq!(s.get("b", &[("job", "weir")]), Some(2.0));
    assert!(!s.text.contains("\na{") && !s.text.contains("\na2{"));
}

/// `max_age`: no background polling; a scrape polls when the last poll is
/// older than max_age and serves the fresh values; scrapes in between are
/// served from the last poll.
#[test]
fn scrape_time_polls_respect_max_age() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let hits = std::sync::Arc::new(AtomicU64::new(0));
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(200) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let n = h.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!("{{\"polls\": {n}}}");
            let _ = std::io::Write::write_all(
                &mut s,
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("p.toml"),
        format!(
            r#"[pipeline.lazy]
plugin = "json-stats"
source = {{ type = "http", url = "http://127.0.0.1:{port}/stats", max_age = "1500ms" }}
[[pipeline.lazy.config.metrics]]
name = "app_polls"
path = "polls"
"#
        ),
    )
    .expect("w");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "polled without a scrape");
    let s1 = agent.scrape();
    assert_eq!(s1.get("app_polls", &[]), Some(1.0), "{}", s1.text);
    let s2 = agent.scrape();
    assert_eq!(
        s2.get("app_polls", &[]),
        Some(1.0),
        "served from the last poll"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let s3 = agent.scrape();
    assert_eq!(s3.get("app_polls", &[]), Some(2.0), "{}", s3.text);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

/// A page the plugin cannot read at every poll is one warning, not one a
/// poll; a good poll in between, or another error, is told again.
#[test]
fn the_same_plugin_error_at_every_poll_is_one_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = Arc::new(AtomicUsize::new(0));
    let g = good.clone();
    let server = Server::start(move |_| {
        if g.load(Ordering::SeqCst) == 1 {
            json(r#"{"value": 3}"#)
        } else {
            json(r#"{"value": "#)
        }
    });
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("p.toml"),
        format!(
            "[pipeline.bad]\nplugin = \"json-stats\"\nsource = {{ type = \"http\", url = \"{}\", interval = \"100ms\" }}\n[pipeline.bad.config]\nmetrics = [{{ name = \"bad_value\", path = \"value\" }}]\n",
            server.url("/stats")
        ),
    )
    .expect("write");
    let mut a = Agent::start(&conf, &tmp.path().join("state"));
    let errors = |s: &Scrape| s.sum("weir_source_errors_total");
    a.wait_for(20, "ten failed polls", |s| errors(s) >= 10.0);
    let told = |log: &str| {
        log.lines()
            .filter(|l| l.contains(" WARN ") && l.contains("the body is not JSON"))
            .count()
    };
    assert_eq!(told(&a.log_text()), 1, "{}", a.log_text());
    // Good once, then bad again: told once more.
    good.store(1, Ordering::SeqCst);
    a.wait_for(20, "a good poll", |s| s.get("bad_value", &[]) == Some(3.0));
    good.store(0, Ordering::SeqCst);
    let before = a.scrape();
    a.wait_for(20, "more failed polls", |s| {
        errors(s) >= errors(&before) + 5.0
    });
    assert_eq!(told(&a.log_text()), 2, "{}", a.log_text());
    a.stop();
}
