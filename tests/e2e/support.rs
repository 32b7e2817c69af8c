//! Running the agent and reading its endpoint.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The agent binary under test.
pub const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// Folder of the test plugins built by agent/build.rs.
pub fn test_plugin(stem: &str) -> PathBuf {
    Path::new(env!("WEIR_TEST_PLUGINS")).join(format!("{stem}.wasm"))
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running agent; killed (SIGTERM, then SIGKILL) when dropped.
pub struct Agent {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Start `weir run` on `dir` with a fresh port; wait for `/ready`.
    pub fn start(dir: &Path, state: &Path) -> Agent {
        let a = Self::spawn(dir, state);
        a.wait_ready();
        a
    }

    /// Start without waiting.
    pub fn spawn(dir: &Path, state: &Path) -> Agent {
        Self::spawn_with(dir, state, state, &[])
    }

    /// Start without waiting, logging into `log_dir`, with `--state-dir
    /// state` and extra environment variables (`WEIR_LOG` among them
    /// replaces the default).
    pub fn spawn_with(dir: &Path, log_dir: &Path, state: &Path, env: &[(&str, &str)]) -> Agent {
        Self::spawn_state(dir, log_dir, Some(state), env)
    }

    /// Start `weir run` on `dir` without `--state-dir` (the config's
    /// `[agent] state_dir` decides, which `state` must name), logging into
    /// `log_dir`; wait for `/ready`.
    pub fn start_keyed(dir: &Path, log_dir: &Path, state: &Path) -> Agent {
        let mut a = Self::spawn_state(dir, log_dir, None, &[]);
        a.state = state.to_path_buf();
        a.wait_ready();
        a
    }

    fn spawn_state(
        dir: &Path,
        log_dir: &Path,
        state: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Agent {
        let port = free_port();
        let log = log_dir.join(format!("agent-{port}.log"));
        std::fs::create_dir_all(log_dir).expect("log dir");
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(WEIR);
        cmd.args(["run", "--config-dir"]).arg(dir);
        if let Some(state) = state {
            cmd.arg("--state-dir").arg(state);
        }
        let child = cmd
            .env_remove("WEIR_STATE_DIR")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("WEIR_LOG", "info,weir=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn weir");
        Agent {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            state: state.map_or_else(|| log_dir.to_path_buf(), Path::to_path_buf),
            log,
        }
    }

    /// Start `weir run` the way a user types it: from the working
    /// directory `cwd`, with `--config-dir dir_arg` as written (relative,
    /// `./x`, `x/`, a symlink). With `port`, `--listen` is given; without
    /// it the config's `[server] listen` is used and `listen_port` is the
    /// port it names. Does not wait.
    pub fn spawn_in(
        cwd: &Path,
        dir_arg: &str,
        state: &Path,
        port: Option<u16>,
        listen_port: u16,
    ) -> Agent {
        let log = state.join(format!("agent-{}.log", port.unwrap_or(listen_port)));
        std::fs::create_dir_all(state).expect("state dir");
        let logf = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(WEIR);
        cmd.current_dir(cwd)
            .args(["run", "--config-dir", dir_arg])
            .arg("--state-dir")
            .arg(state);
        if let Some(p) = port {
            cmd.arg("--listen").arg(format!("127.0.0.1:{p}"));
        }
        let child = cmd
            .env("WEIR_LOG", "info,weir=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn weir");
        Agent {
            child: Some(child),
            port: port.unwrap_or(listen_port),
            dir: cwd.join(dir_arg),
            state: state.to_path_buf(),
            log,
        }
    }

    /// The agent's process id (0 once it was reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = ureq::get(&self.url("/ready"))
                .timeout(Duration::from_secs(2))
                .call()
            {
                if r.status() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent not ready in 60 s; log:\n{}", self.log_text());
    }

    /// Scrape `/metrics` (0.0.4) and parse it.
    pub fn scrape(&self) -> Scrape {
        let body = self.scrape_text();
        Scrape::parse(&body)
    }

    pub fn scrape_text(&self) -> String {
        let r = ureq::get(&self.url("/metrics"))
            .timeout(Duration::from_secs(10))
            .call()
            .expect("scrape");
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        r.into_string().expect("body")
    }

    /// Poll until `f` holds for a scrape; panic after `secs` with the last
    /// scrape and the log.
    pub fn wait_for(&self, secs: u64, what: &str, f: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = Scrape::default();
        while Instant::now() < deadline {
            last = self.scrape();
            if f(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {secs}s waiting for {what}\nlast scrape:\n{}\nlog:\n{}",
            last.text,
            self.log_text()
        );
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not stop on SIGTERM in 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A parsed 0.0.4 exposition: series (as written, labels in exposed order)
/// to value.
#[derive(Default, Debug)]
pub struct Scrape {
    pub text: String,
    pub series: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (k, v) = line.rsplit_once(' ').expect("sample line has a value");
            let v: f64 = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().expect("value"),
            };
            assert!(
                series.insert(k.to_string(), v).is_none(),
                "duplicate series {k}"
            );
        }
        Scrape {
            text: text.to_string(),
            series,
        }
    }

    /// Value of `name{labels...}` with labels in exposed order.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.series.get(&key(name, labels)).copied()
    }

    /// Value, or 0 when absent.
    pub fn val(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Sum over every series of a name.
    pub fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }
}

pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Append text to a file (creating it).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// A small deterministic generator (xorshift), so tests need no crates.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Polls /metrics in a loop while a test changes things; records failed
/// scrapes and any watched series that goes down.
pub struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    scrapes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    problems: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Scraper {
    /// `watch` says which series (as written, labels included) must never
    /// decrease.
    pub fn start(url: String, watch: impl Fn(&str) -> bool + Send + 'static) -> Scraper {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (s, n, p) = (stop.clone(), scrapes.clone(), problems.clone());
        let handle = std::thread::spawn(move || {
            let mut last: BTreeMap<String, f64> = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                match ureq::get(&url).timeout(Duration::from_secs(5)).call() {
                    Ok(r) if r.status() == 200 => {
                        let sc = Scrape::parse(&r.into_string().unwrap_or_default());
                        for (k, v) in &sc.series {
                            if !watch(k) {
                                continue;
                            }
                            if let Some(prev) = last.get(k) {
                                if v < prev {
                                    p.lock()
                                        .expect("lock")
                                        .push(format!("{k} went from {prev} to {v}"));
                                }
                            }
                            last.insert(k.clone(), *v);
                        }
                    }
                    Ok(r) => p
                        .lock()
                        .expect("lock")
                        .push(format!("scrape status {}", r.status())),
                    Err(e) => p.lock().expect("lock").push(format!("scrape failed: {e}")),
                }
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Scraper {
            stop,
            handle: Some(handle),
            scrapes,
            problems,
        }
    }

    /// Stop and assert that no scrape failed and no watched series went
    /// down; returns how many scrapes ran.
    pub fn finish(mut self) -> u64 {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("scraper thread");
        }
        let problems = self.problems.lock().expect("lock").clone();
        assert!(problems.is_empty(), "scraper saw: {problems:#?}");
        let n = self.scrapes.load(Ordering::Relaxed);
        assert!(n > 10, "only {n} scrapes");
        n
    }
}

/// A `Scraper` watch: series whose text starts with one of `p`.
pub fn prefixes(p: &[&str]) -> impl Fn(&str) -> bool + Send + 'static {
    let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
    move |k: &str| p.iter().any(|m| k.starts_with(m.as_str()))
}

/// The JSON body of the checkpoint file of `pipeline` in state directory
/// `state` (after its `weir-checkpoint` header line), if it can be read.
pub fn checkpoint_json(state: &Path, pipeline: &str) -> Option<serde_json::Value> {
    let p = state.join("checkpoints").join(format!("{pipeline}.json"));
    let bytes = std::fs::read(p).ok()?;
    let body = match bytes.strip_prefix(b"weir-checkpoint ") {
        Some(rest) => &rest[rest.iter().position(|b| *b == b'\n')? + 1..],
        None => &bytes[..],
    };
    serde_json::from_slice(body).ok()
}
