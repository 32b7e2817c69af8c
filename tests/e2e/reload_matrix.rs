//! The reload matrix: every key of the config reference changed on a
//! running agent, with the effect asserted from outside, while a scraper
//! polls the unchanged address without pause and never fails. The config
//! directory is given relative to the working directory in one half of the
//! agents and through a symlink in the other.
//!
//! Three agents share the keys: `plain` (relative dir; auth, admin auth,
//! reload endpoint, allow, timeouts, every pipeline key, state_dir
//! refused), `tls` (symlinked dir; certificate, client CA, remote write)
//! and `listen` (symlinked dir; listen rebind, a bind failure refused,
//! max_connections). `listen` has no steady scraper: its address is what
//! changes; it asserts the new address answering and the old one closed.
use crate::support::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

fn hash(pw: &str) -> String {
    let mut child = Command::new(WEIR)
        .args(["hash-password", "--cost", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{pw}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("hash");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// curl's HTTP status, or 0 when the connection or handshake failed.
fn curl(args: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn curl_body(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Calls `probe` without pause until finished; every failure is kept.
struct Poller {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    count: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Poller {
    fn start(probe: impl Fn() -> Result<(), String> + Send + 'static) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, c, f) = (stop.clone(), count.clone(), failures.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Err(e) = probe() {
                    f.lock().expect("lock").push(e);
                }
                c.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Poller {
            stop,
            handle: Some(handle),
            count,
            failures,
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("poller");
        }
        let f = self.failures.lock().expect("lock").clone();
        assert!(
            f.is_empty(),
            "failed scrapes on the unchanged address: {f:#?}"
        );
        let n = self.count.load(Ordering::Relaxed);
        assert!(n > 20, "only {n} scrapes");
        n
    }
}

/// Counts `want` lines in the log until there are more than `n`.
fn wait_count(agent: &Agent, what: &str, want: &str, n: usize) -> String {
    // Long enough for a debug build to compile a plugin on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let log = agent.log_text();
        if log.matches(want).count() > n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no new \"{want}\" in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Step<'a> {
    agent: &'a Agent,
    file: PathBuf,
}

impl Step<'_> {
    /// Write the server file and wait for the reload's outcome line.
    fn apply(&self, what: &str, text: &str, ok: bool) -> String {
        let want = if ok {
            "configuration loaded"
        } else {
            "configuration not applied"
        };
        let n = self.agent.log_text().matches(want).count();
        write_atomic(&self.file, text);
        wait_count(self.agent, what, want, n)
    }
}

fn pipeline(extra: &str, labels: &str) -> String {
    format!(
        r#"[pipeline.web]
plugin = "regex-log"
source = {{ type = "file", paths = ["web.log"], start_at = "beginning" }}
labels = {labels}
{extra}
[[pipeline.web.config.metrics]]
name = "web_lines_total"
type = "counter"
help = "Lines."
[[pipeline.web.config.rules]]
regex = '^line'
[[pipeline.web.config.rules.emit]]
metric = "web_lines_total"
"#
    )
}

fn get(url: &str, auth: Option<&str>) -> Result<(u16, String), String> {
    let mut r = ureq::get(url).timeout(Duration::from_secs(5));
    if let Some(a) = auth {
        r = r.set("Authorization", a);
    }
    match r.call() {
        Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(c, r)) => Ok((c, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

fn b64(s: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("printf %s '{s}' | base64 -w0")])
        .output()
        .expect("base64");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn plain_agent_relative_dir_server_and_pipeline_keys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let port = free_port();
    let log = conf.join("web.log");
    std::fs::write(&log, "line\n").expect("w");
    std::fs::write(conf.join("scrape.token"), "scrape-token\n").expect("w");
    std::fs::write(conf.join("admin.token"), "admin-token\n").expect("w");
    std::fs::write(conf.join("web.toml"), pipeline("", "{ site = \"eu-1\" }")).expect("w");
    let server = conf.join("server.toml");
    let base = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    std::fs::write(&server, &base).expect("w");
    // Read by server.auth.bearer_token_env below; inherited by the agent.
    std::env::set_var("WEIR_MATRIX_TOKEN", "env-token");
    // The config dir relative to the working directory, as `./dev run`.
    let agent = Agent::spawn_in(root, "conf", &root.join("state"), None, port);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&url, None).map(|r| r.0) != Ok(200) {
        assert!(Instant::now() < deadline, "{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The scraper sends a token that every step below accepts.
    let scrape_auth = "Bearer scrape-token".to_string();
    let (u, a) = (url.clone(), scrape_auth.clone());
    let poller = Poller::start(move || match get(&u, Some(&a)) {
        Ok((200, _)) => Ok(()),
        Ok((c, b)) => Err(format!("status {c}: {b}")),
        Err(e) => Err(e),
    });
    // The endpoint answers before the first load ends; steps count the
    // reloads after it.
    wait_count(&agent, "first load", "ready: ", 0);
    let step = Step {
        agent: &agent,
        file: server.clone(),
    };
    let (h1, h2) = (hash("pw-one"), hash("pw-two"));
    let tokens = "bearer_token_files = [\"scrape.token\"]";
    let basic = |u: &str, p: &str| format!("Basic {}", b64(&format!("{u}:{p}")));

    // server.auth.basic added: credentials demanded.
    let auth1 = format!("{base}[server.auth]\nbasic = {{ prom = \"{h1}\" }}\n{tokens}\n");
    let l = step.apply("auth added", &auth1, true);
    assert!(l.contains("server.auth"), "{l}");
    assert_eq!(get(&url, None).expect("get").0, 401);
    assert_eq!(
        get(&url, Some(&basic("prom", "pw-one"))).expect("get").0,
        200
    );

    // server.auth.basic rotated: the old password is refused at once.
    let auth2 = format!("{base}[server.auth]\nbasic = {{ prom = \"{h2}\" }}\n{tokens}\n");
    step.apply("password rotated", &auth2, true);
    assert_eq!(
        get(&url, Some(&basic("prom", "pw-one"))).expect("get").0,
        401
    );
    assert_eq!(
        get(&url, Some(&basic("prom", "pw-two"))).expect("get").0,
        200
    );

    // server.auth.bearer_token_env added.
    let auth3 = format!("{auth2}bearer_token_env = \"WEIR_MATRIX_TOKEN\"\n");
    step.apply("bearer_token_env", &auth3, true);
    assert_eq!(get(&url, Some("Bearer env-token")).expect("get").0, 200);
    assert_eq!(get(&url, Some("Bearer wrong")).expect("get").0, 401);

    // server.reload_endpoint and server.admin_auth.
    let post = |auth: &str| -> u16 {
        match ureq::post(&format!("http://127.0.0.1:{port}/-/reload"))
            .set("Authorization", auth)
            .set("X-Weir-Reload", "1")
            .call()
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(post("Bearer admin-token"), 401, "admin token unknown yet");
    let admin = auth3.replace("[server]\n", "[server]\nreload_endpoint = true\n")
        + "[server.admin_auth]\nbearer_token_files = [\"admin.token\"]\n";
    step.apply("admin_auth and reload_endpoint", &admin, true);
    assert_eq!(
        post("Bearer scrape-token"),
        401,
        "read credentials are not admin"
    );
    assert_eq!(post("Bearer admin-token"), 200);
    let no_endpoint = admin.replace("reload_endpoint = true", "reload_endpoint = false");
    step.apply("reload_endpoint off", &no_endpoint, true);
    assert_eq!(post("Bearer admin-token"), 403);

    // server.allow: 127.0.0.1 only; a client from 127.0.0.2 is refused.
    let from2 = |u: &str| {
        curl(&[
            "--interface",
            "127.0.0.2",
            "-H",
            "Authorization: Bearer scrape-token",
            u,
        ])
    };
    assert_eq!(from2(&url), 200);
    let allow = no_endpoint.replace("[server]\n", "[server]\nallow = [\"127.0.0.1/32\"]\n");
    step.apply("allow", &allow, true);
    assert_ne!(from2(&url), 200, "127.0.0.2 is not allowed any more");

    // server.header_timeout: a client that sends nothing is cut off.
    let timeouts = allow.replace(
        "[server]\n",
        "[server]\nheader_timeout = \"1s\"\nrequest_timeout = \"5s\"\n",
    );
    let l = step.apply("timeouts", &timeouts, true);
    assert!(
        l.contains("server.header_timeout") && l.contains("server.request_timeout"),
        "{l}"
    );
    let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let _ = idle.read(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "an idle client was kept {:?}, not cut at header_timeout = 1s",
        t.elapsed()
    );

    // Pipeline keys: labels (values changed, one added), and the others
    // rebuild the pipeline.
    let before = agent
        .log_text()
        .matches("pipeline started pipeline=web")
        .count();
    write_atomic(
        &conf.join("web.toml"),
        &pipeline("", "{ site = \"eu-2\", env = \"prod\" }"),
    );
    wait_count(&agent, "labels", "pipeline started pipeline=web", before);
    append(&log, "line\nline\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = get(&url, Some(&scrape_auth)).expect("get").1;
        let s = Scrape::parse(&body);
        if s.val("web_lines_total", &[("env", "prod"), ("site", "eu-2")]) == 2.0 {
            assert!(s.get("web_lines_total", &[("site", "eu-1")]).is_none());
            break;
        }
        assert!(Instant::now() < deadline, "labels not applied:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (key, extra) in [
        ("memory_limit", "memory_limit = \"32MiB\""),
        ("call_timeout", "call_timeout = \"2s\""),
        ("max_series", "max_series = 77"),
        ("max_line_bytes", "max_line_bytes = \"1KiB\""),
        ("batch_lines", "batch_lines = 9"),
    ] {
        let n = agent
            .log_text()
            .matches("pipeline started pipeline=web")
            .count();
        write_atomic(
            &conf.join("web.toml"),
            &pipeline(extra, "{ site = \"eu-2\", env = \"prod\" }"),
        );
        let l = wait_count(&agent, key, "pipeline started pipeline=web", n);
        assert!(!l.contains("configuration not applied"), "{key}: {l}");
        if key == "max_series" {
            let s = Scrape::parse(&get(&url, Some(&scrape_auth)).expect("get").1);
            assert_eq!(
                s.val("weir_pipeline_series_limit", &[("pipeline", "web")]),
                77.0
            );
        }
    }
    let body = get(&url, Some(&scrape_auth)).expect("get").1;
    let s = Scrape::parse(&body);
    // Counting went on through every rebuild: offsets handed over.
    assert_eq!(
        s.val("web_lines_total", &[("env", "prod"), ("site", "eu-2")]),
        2.0
    );

    // agent.state_dir: this agent was started with --state-dir, so the
    // key is not used and changing it is no error (refusing it on an
    // agent started from the key: reload_live).
    let n = poller.finish();
    eprintln!("plain: {n} scrapes, none failed");
}

/// A receiver counting remote-write POSTs.
fn receiver(count: Arc<AtomicU64>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().take(2000) {
            let Ok(mut s) = s else { continue };
            let c = count.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut got = Vec::new();
                let mut buf = vec![0u8; 1 << 16];
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
                let _ = write!(s, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            });
        }
    });
    port
}

#[test]
fn tls_agent_symlinked_dir_certificate_client_ca_and_remote_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let real = root.join("conf-real");
    std::fs::create_dir_all(&real).expect("mkdir");
    sh(
        &real,
        r#"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > san.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for name in server-one server-two; do
  openssl req -newkey rsa:2048 -nodes -subj /CN=$name -keyout $name.key -out $name.csr 2>/dev/null
  openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out $name.pem 2>/dev/null
done
openssl req -newkey rsa:2048 -nodes -subj /CN=prometheus -keyout client.key -out client.csr 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem 2>/dev/null
"#,
    );
    std::os::unix::fs::symlink("conf-real", root.join("conf")).expect("symlink");
    let port = free_port();
    std::fs::write(real.join("web.log"), "line\n").expect("w");
    std::fs::write(real.join("web.toml"), pipeline("", "{ site = \"eu-1\" }")).expect("w");
    let server = real.join("server.toml");
    let tls = |cert: &str, ca: bool| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[server.tls]\ncert_file = \"{cert}.pem\"\nkey_file = \"{cert}.key\"\n{}",
            if ca { "client_ca_file = \"ca.pem\"\n" } else { "" }
        )
    };
    std::fs::write(&server, tls("server-one", false)).expect("w");
    // Through the symlink, from the working directory.
    let agent = Agent::spawn_in(root, "conf", &root.join("state"), None, port);
    let url = format!("https://127.0.0.1:{port}/metrics");
    let ca = real.join("ca.pem").display().to_string();
    let cert = real.join("client.pem").display().to_string();
    let key = real.join("client.key").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while curl(&["--cacert", &ca, &url]) != 200 {
        assert!(Instant::now() < deadline, "{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The scraper trusts the CA and always presents its certificate.
    let (u, c, ce, k) = (url.clone(), ca.clone(), cert.clone(), key.clone());
    let poller =
        Poller::start(
            move || match curl(&["--cacert", &c, "--cert", &ce, "--key", &k, &u]) {
                200 => Ok(()),
                code => Err(format!("status {code}")),
            },
        );
    // The endpoint answers before the first load ends; steps count the
    // reloads after it.
    wait_count(&agent, "first load", "ready: ", 0);
    let step = Step {
        agent: &agent,
        file: server.clone(),
    };
    let subject = || {
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "openssl s_client -connect 127.0.0.1:{port} -CAfile {ca} -cert {cert} -key {key} </dev/null 2>/dev/null | openssl x509 -noout -subject"
                ),
            ])
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(subject().contains("server-one"));

    // server.tls.cert_file / key_file: the new certificate is served.
    let l = step.apply("certificate", &tls("server-two", false), true);
    assert!(l.contains("server.tls"), "{l}");
    assert!(subject().contains("server-two"), "{}", subject());

    // server.tls.client_ca_file: clients without a certificate are refused.
    assert_eq!(curl(&["--cacert", &ca, &url]), 200);
    step.apply("client CA", &tls("server-two", true), true);
    assert_eq!(curl(&["--cacert", &ca, &url]), 0, "no client certificate");
    assert_eq!(
        curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]),
        200
    );

    // [[remote_write]] added, then its url switched to another receiver.
    let (ca_n, cb_n) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (pa, pb) = (receiver(ca_n.clone()), receiver(cb_n.clone()));
    let rw = |p: u16| {
        format!(
            "{}[[remote_write]]\nname = \"main\"\nurl = \"http://127.0.0.1:{p}/api/v1/write\"\ninterval = \"200ms\"\n",
            tls("server-two", true)
        )
    };
    let l = step.apply("remote_write added", &rw(pa), true);
    assert!(l.contains("remote_write_added=[\"main\"]"), "{l}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ca_n.load(Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "receiver A got nothing: {}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let l = step.apply("remote_write url", &rw(pb), true);
    assert!(l.contains("remote_write_changed=[\"main\"]"), "{l}");
    let a_then = ca_n.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cb_n.load(Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "receiver B got nothing: {}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        ca_n.load(Ordering::Relaxed) <= a_then + 1,
        "receiver A still receives after the switch"
    );
    // Removed: nothing more is sent.
    step.apply("remote_write removed", &tls("server-two", true), true);
    let b_then = cb_n.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        cb_n.load(Ordering::Relaxed) <= b_then + 1,
        "B still receives"
    );
    let body = curl_body(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
    assert!(
        !body.contains("weir_remote_write_samples_sent_total{target=\"main\"}"),
        "{body}"
    );

    // A TLS file that cannot be read fails the reload at server.tls.
    let l = step.apply("bad certificate", &tls("missing", true), false);
    assert!(
        l.contains(&format!(
            "{}:3: server.tls",
            root.join("conf/server.toml").display()
        )),
        "{l}"
    );
    assert!(
        subject().contains("server-two"),
        "the old certificate keeps serving"
    );
    let n = poller.finish();
    eprintln!("tls: {n} scrapes, none failed");
}

#[test]
fn listen_agent_symlinked_dir_rebind_refused_bind_and_max_connections() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let real = root.join("real");
    std::fs::create_dir_all(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, root.join("conf")).expect("symlink");
    std::fs::write(real.join("web.log"), "line\n").expect("w");
    std::fs::write(real.join("web.toml"), pipeline("", "{ site = \"eu-1\" }")).expect("w");
    let (p1, p2) = (free_port(), free_port());
    let server = real.join("server.toml");
    let listen = |p: u16, extra: &str| format!("[server]\nlisten = \"127.0.0.1:{p}\"\n{extra}");
    std::fs::write(&server, listen(p1, "")).expect("w");
    let agent = Agent::spawn_in(root, "conf/", &root.join("state"), None, p1);
    let up = |p: u16| get(&format!("http://127.0.0.1:{p}/metrics"), None).map(|r| r.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while up(p1) != Ok(200) {
        assert!(Instant::now() < deadline, "{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The endpoint answers before the first load ends; steps count the
    // reloads after it.
    wait_count(&agent, "first load", "ready: ", 0);
    let step = Step {
        agent: &agent,
        file: server.clone(),
    };

    // server.listen: the new address answers, the old one is closed.
    let l = step.apply("listen", &listen(p2, ""), true);
    assert!(
        l.contains(&format!("now listening on 127.0.0.1:{p2}")),
        "{l}"
    );
    assert_eq!(up(p2), Ok(200));
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(("127.0.0.1", p1)).is_ok() {
        assert!(Instant::now() < deadline, "the old address still accepts");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A listen address that cannot be bound fails the reload at the key;
    // the current address keeps serving.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let bp = busy.local_addr().expect("addr").port();
    let l = step.apply("busy listen", &listen(bp, ""), false);
    assert!(
        l.contains(&format!(
            "{}:2: server.listen: cannot listen on 127.0.0.1:{bp}",
            root.join("conf/server.toml").display()
        )),
        "{l}"
    );
    assert_eq!(up(p2), Ok(200));

    // server.max_connections = 1: at most one connection may wait for a
    // request. An idle keep-alive connection is closed when a second client
    // comes, and the second client is served (with the default of 64 both
    // would stay).
    step.apply(
        "max_connections",
        &listen(p2, "max_connections = 1\n"),
        true,
    );
    let mut held = TcpStream::connect(("127.0.0.1", p2)).expect("connect");
    write!(held, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut buf = [0u8; 256];
    let n = held.read(&mut buf).expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A fresh client: no pooled connection from before.
    let second = ureq::AgentBuilder::new()
        .build()
        .get(&format!("http://127.0.0.1:{p2}/health"))
        .timeout(Duration::from_millis(3000))
        .call();
    assert!(
        matches!(&second, Ok(r) if r.status() == 200),
        "the second client is served: {second:?}"
    );
    held.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let closed = match held.read(&mut buf) {
        Ok(0) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        Ok(_) => false,
    };
    assert!(
        closed,
        "the idle connection was closed to stay within max_connections = 1"
    );
    drop(held);
    assert_eq!(up(p2), Ok(200));
}
