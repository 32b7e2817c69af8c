//! Field cases: every folder of tests/cases/ run through the real `weir`
//! binary. The folder format is described in tests/cases/README.md.
//!
//! `cargo test --test cases` runs them all (a few at a time); arguments that
//! do not start with `-` select cases whose name contains one of them;
//! `WEIR_BLESS=1` rewrites the expected files from what the agent serves;
//! `WEIR_PENDING=1` also runs the cases marked `pending`.
//!
//! Every exposition a case compares is also checked by `promtool check
//! metrics` (0.0.4) and by the Python `prometheus_client` OpenMetrics parser
//! (installed by `./dev setup` into a virtualenv; see [`om_python`]).
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod batches;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");
const OM_ACCEPT: &str = "application/openmetrics-text;version=1.0.0";
const OM_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROM_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn cases_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases")
}

/// `case.toml`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Meta {
    /// What the case shows.
    description: String,
    /// Where it comes from (issue URLs).
    #[serde(default)]
    sources: Vec<String>,
    /// Known to fail until a fix lands: the reason (and owner). Skipped
    /// unless WEIR_PENDING=1.
    pending: Option<String>,
    /// `run` (default): run the agent and compare expositions; `check`:
    /// `weir check` must fail with the text of `expected.err`.
    #[serde(default)]
    command: Mode,
    /// Self-metric families (`weir_...`) kept in the compared exposition;
    /// every other `weir_` family is left out (timings vary).
    #[serde(default)]
    self_metrics: Vec<String>,
    /// Seconds each `scrape` step may wait for its expectation (default 20).
    timeout: Option<u64>,
    /// Why the batch-independence check does not apply (a plugin that
    /// traps on purpose fails whole calls, which the agent splits but the
    /// check does not); absent: checked.
    no_batch_check: Option<String>,
    /// Extra arguments to `weir run`.
    #[serde(default)]
    args: Vec<String>,
}

#[derive(serde::Deserialize, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Run,
    Check,
}

struct Case {
    name: String,
    dir: PathBuf,
    meta: Meta,
}

/// What the checkers must look at once every case has run.
#[derive(Default)]
struct Checks {
    om_files: Vec<(String, PathBuf)>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let pending_too = std::env::var_os("WEIR_PENDING").is_some();
    let mut cases = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cases_root())
        .expect("tests/cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for dir in entries {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !args.is_empty() && !args.iter().any(|a| name.contains(a.as_str())) {
            continue;
        }
        let meta_path = dir.join("case.toml");
        let text = std::fs::read_to_string(&meta_path)
            .unwrap_or_else(|e| panic!("{}: {e}", meta_path.display()));
        let meta: Meta = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {}", meta_path.display(), e.to_string().trim_end()));
        assert!(
            !meta.description.trim().is_empty(),
            "{name}: empty description"
        );
        assert!(
            !meta.sources.is_empty(),
            "{name}: say where the case comes from in `sources`"
        );
        cases.push(Case { name, dir, meta });
    }
    let work = tempfile::Builder::new()
        .prefix("weir-cases-")
        .tempdir()
        .expect("tempdir");
    // One compiled-plugin cache for every agent, kept between runs (a
    // debug build of the agent takes seconds to compile a plugin).
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("weir-cases-plugin-cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    let jobs: usize = std::env::var("WEIR_CASES_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
        .max(1);
    // The agent's own runtime, for the batch-independence check.
    let rt = weir::runtime::Runtime::new(Some(
        weir::state::StateDir::open(&cache).expect("plugin cache dir"),
    ))
    .expect("wasm runtime");
    let batch_checked = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::new());
    let checks = Mutex::new(Checks::default());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let t = Instant::now();
                let outcome = if case.meta.pending.is_some() && !pending_too {
                    Outcome::Skipped
                } else {
                    let dir = work.path().join(&case.name);
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_case(case, &dir, &cache, bless, &checks)?;
                        if case.meta.command == Mode::Run
                            && !bless
                            && case.meta.no_batch_check.is_none()
                        {
                            let n = batches::check_dir(&rt, &dir.join("config"), i as u64)
                                .map_err(|e| format!("batch independence: {e}"))?;
                            batch_checked.fetch_add(n, Ordering::SeqCst);
                        }
                        Ok::<(), String>(())
                    })) {
                        Ok(Ok(())) => Outcome::Passed,
                        Ok(Err(e)) => Outcome::Failed(e),
                        Err(p) => Outcome::Failed(panic_text(p)),
                    }
                };
                let line = match &outcome {
                    Outcome::Passed => "ok",
                    Outcome::Failed(_) => "FAILED",
                    Outcome::Skipped => "pending (skipped)",
                };
                eprintln!(
                    "case {} ... {line} ({:.1}s)",
                    case.name,
                    t.elapsed().as_secs_f64()
                );
                results.lock().unwrap().push((case.name.clone(), outcome));
            });
        }
    });
    // The example configs, with their sample logs, through the same check.
    let mut example_failures = Vec::new();
    if args.is_empty() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&examples)
            .expect("examples/")
            .flatten()
            .map(|e| e.path())
            .filter(|p| dir_has_toml(p))
            .collect();
        dirs.sort();
        for (i, d) in dirs.iter().enumerate() {
            match batches::check_dir(&rt, d, 1000 + i as u64) {
                Ok(n) => {
                    batch_checked.fetch_add(n, Ordering::SeqCst);
                }
                Err(e) => example_failures.push(format!("{}: {e}", d.display())),
            }
        }
    }
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    // The OpenMetrics parser, once for every exposition served.
    let om = checks.into_inner().unwrap().om_files;
    let om_failures = check_openmetrics(&om);
    let mut failed = 0;
    let mut pending_passed = Vec::new();
    for (name, o) in &results {
        let case = cases.iter().find(|c| &c.name == name).unwrap();
        match o {
            Outcome::Failed(e) => {
                if let Some(why) = &case.meta.pending {
                    eprintln!("\n---- {name} (pending: {why}) still fails ----\n{e}");
                } else {
                    failed += 1;
                    eprintln!("\n---- {name} FAILED ----\n{e}");
                }
            }
            Outcome::Passed
                if case.meta.pending.is_some() && !om_failures.iter().any(|(c, _)| c == name) =>
            {
                pending_passed.push(name.clone())
            }
            _ => {}
        }
    }
    for (name, e) in &om_failures {
        let pending = cases
            .iter()
            .any(|c| &c.name == name && c.meta.pending.is_some());
        if !pending {
            failed += 1;
        }
        eprintln!("\n---- {name}: OpenMetrics parser refused an exposition ----\n{e}");
    }
    for e in &example_failures {
        failed += 1;
        eprintln!("\n---- example config: batch independence FAILED ----\n{e}");
    }
    for name in &pending_passed {
        eprintln!("note: pending case {name} passes now: remove `pending` from its case.toml");
    }
    let skipped = results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Skipped))
        .count();
    eprintln!(
        "\ncases: {} run, {} failed, {} pending skipped, {:.1}s ({jobs} at a time); \
         {} log pipelines checked line by line against random batches",
        results.len() - skipped,
        failed,
        skipped,
        started.elapsed().as_secs_f64(),
        batch_checked.load(Ordering::SeqCst)
    );
    assert!(!args.is_empty() || results.len() > 1, "no cases found");
    if failed > 0 {
        std::process::exit(1);
    }
}

enum Outcome {
    Passed,
    Failed(String),
    Skipped,
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panic".into()
    }
}

type R<T> = Result<T, String>;

/// Paths a case sees: its own folder (`${CASE}`, read-only inputs) and a
/// fresh work folder (`${WORK}`, where the script's files live).
struct Env<'a> {
    case: &'a Case,
    work: PathBuf,
    config: PathBuf,
    state: PathBuf,
    cache: &'a Path,
    http: Option<Server>,
}

impl Env<'_> {
    fn subst(&self, text: &str) -> String {
        let mut t = text
            .replace("${WORK}", &self.work.to_string_lossy())
            .replace("${CASE}", &self.case.dir.to_string_lossy())
            .replace("${TEST_PLUGINS}", env!("WEIR_TEST_PLUGINS"));
        if let Some(s) = &self.http {
            t = t.replace("${HTTP}", &format!("127.0.0.1:{}", s.port));
        }
        t
    }

    /// The reverse of `subst` for what the agent says, so expected files
    /// hold no temporary paths.
    fn normalize(&self, text: &str) -> String {
        let mut t = text.replace(&*self.config.to_string_lossy(), "${WORK}/config");
        t = t.replace(&*self.work.to_string_lossy(), "${WORK}");
        if let Ok(c) = self.case.dir.canonicalize() {
            t = t.replace(&*c.to_string_lossy(), "${CASE}");
        }
        t = t.replace(&*self.case.dir.to_string_lossy(), "${CASE}");
        if let Some(s) = &self.http {
            t = t.replace(&format!("127.0.0.1:{}", s.port), "${HTTP}");
        }
        plugin_hashes(&t)
    }

    fn path(&self, rel: &str) -> R<PathBuf> {
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            return Err(format!("script paths stay inside ${{WORK}}: {rel}"));
        }
        Ok(self.work.join(rel))
    }
}

fn run_case(case: &Case, work: &Path, cache: &Path, bless: bool, checks: &Mutex<Checks>) -> R<()> {
    let script = match std::fs::read_to_string(case.dir.join("script")) {
        Ok(s) => parse_script(&s)?,
        Err(_) => Vec::new(),
    };
    let needs_http = script
        .iter()
        .any(|(_, op)| op.first().is_some_and(|w| w == b"serve"))
        || dir_mentions(&case.dir.join("config"), "${HTTP}");
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    let work = work.canonicalize().map_err(|e| e.to_string())?;
    let mut env = Env {
        case,
        config: work.join("config"),
        state: work.join("state"),
        work: work.clone(),
        cache,
        http: if needs_http {
            Some(Server::start())
        } else {
            None
        },
    };
    copy_config(&env)?;
    match case.meta.command {
        Mode::Check => check_mode(&env, bless),
        Mode::Run => run_mode(&mut env, &script, bless, checks),
    }
}

fn dir_has_toml(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "toml"))
}

fn dir_mentions(dir: &Path, what: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(what)))
}

/// `config/` of the case into `${WORK}/config`, placeholders replaced in
/// every `*.toml`; other files (plugins, certificates) copied as they are.
fn copy_config(env: &Env) -> R<()> {
    let src = env.case.dir.join("config");
    copy_tree(&src, &env.config, &|p, bytes| {
        if p.extension().is_some_and(|e| e == "toml") {
            env.subst(&String::from_utf8_lossy(&bytes)).into_bytes()
        } else {
            bytes
        }
    })
    .map_err(|e| format!("copying {}: {e}", src.display()))
}

fn copy_tree(src: &Path, dst: &Path, f: &dyn Fn(&Path, Vec<u8>) -> Vec<u8>) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let p = e.path();
        let to = dst.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &to, f)?;
        } else {
            std::fs::write(&to, f(&p, std::fs::read(&p)?))?;
        }
    }
    Ok(())
}

fn check_mode(env: &Env, bless: bool) -> R<()> {
    let out = Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(&env.config)
        .output()
        .map_err(|e| format!("running weir check: {e}"))?;
    let err = env.normalize(&String::from_utf8_lossy(&out.stderr));
    let want_path = env.case.dir.join("expected.err");
    if bless {
        std::fs::write(&want_path, &err).map_err(|e| e.to_string())?;
    }
    if out.status.success() {
        return Err(format!(
            "weir check succeeded; expected it to fail\nstderr:\n{err}"
        ));
    }
    let want = std::fs::read_to_string(&want_path)
        .map_err(|_| "no expected.err; run with WEIR_BLESS=1 to write it".to_string())?;
    if want != err {
        return Err(format!(
            "weir check said something else (WEIR_BLESS=1 rewrites expected.err):\n{}",
            diff(&want, &err)
        ));
    }
    Ok(())
}

/// `plugin regex-log (2e9c32f9e7de)` as `plugin regex-log (${HASH})`: the
/// content hash of a built-in plugin changes with every change to it.
fn plugin_hashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('(') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let hex = after.len() > 12
            && after.as_bytes()[12] == b')'
            && after.as_bytes()[..12]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        if hex && out.split(' ').rev().nth(2) == Some("plugin") {
            out.push_str("(${HASH})");
            rest = &after[13..];
        } else {
            out.push('(');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A running agent.
struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
    /// The agent's compiled-plugin cache and the shared one it was filled
    /// from; what the agent compiled goes back when it ends.
    plugins: PathBuf,
    cache: PathBuf,
}

/// Copy the compiled plugins in `from` that `to` lacks (through a temporary
/// name, mode 0600). The agent trusts only files of its own, not links:
/// each case's state directory gets copies.
fn share_cache(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".cwasm") || to.join(&name).exists() {
            continue;
        }
        let tmp = to.join(format!(
            ".{}.{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if std::fs::copy(e.path(), &tmp).is_ok() {
            let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
            let _ = std::fs::rename(&tmp, to.join(&name));
        }
        let _ = std::fs::remove_file(&tmp);
    }
}

impl Agent {
    fn start(env: &Env, n: usize) -> R<Agent> {
        std::fs::create_dir_all(&env.state).map_err(|e| e.to_string())?;
        let plugins = env.state.join("plugins");
        {
            use std::os::unix::fs::DirBuilderExt;
            if !plugins.exists() {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&plugins)
                    .map_err(|e| e.to_string())?;
            }
        }
        share_cache(env.cache, &plugins);
        let port = free_port();
        let log = env.work.join(format!("agent-{n}.log"));
        let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut child = Command::new(WEIR)
            .args(["run", "--config-dir"])
            .arg(&env.config)
            .arg("--state-dir")
            .arg(&env.state)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&env.case.meta.args)
            .env("WEIR_LOG", "info,weir=debug")
            .current_dir(&env.work)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .map_err(|e| format!("spawn weir: {e}"))?;
        let stdin = child.stdin.take();
        let a = Agent {
            child,
            stdin,
            port,
            log,
            plugins,
            cache: env.cache.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = ureq::get(&a.url("/ready"))
                .timeout(Duration::from_secs(2))
                .call()
            {
                if r.status() == 200 {
                    return Ok(a);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("agent not ready in 60 s; log:\n{}", a.log_text()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn url(&self, p: &str) -> String {
        format!("http://127.0.0.1:{}{p}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn scrape(&self, om: bool) -> R<String> {
        let mut req = ureq::get(&self.url("/metrics")).timeout(Duration::from_secs(10));
        if om {
            req = req.set("Accept", OM_ACCEPT);
        }
        let r = req.call().map_err(|e| format!("scrape: {e}"))?;
        let want = if om { OM_TYPE } else { PROM_TYPE };
        if r.header("content-type") != Some(want) {
            return Err(format!(
                "content-type {:?}, expected {want}",
                r.header("content-type")
            ));
        }
        r.into_string().map_err(|e| format!("scrape body: {e}"))
    }

    /// SIGTERM and wait; SIGKILL after 20 s.
    fn stop(mut self) -> R<()> {
        drop(self.stdin.take());
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return if st.success() {
                    Ok(())
                } else {
                    Err(format!("agent exited with {st}; log:\n{}", self.log_text()))
                };
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err("agent did not stop in 20 s after SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        share_cache(&self.plugins, &self.cache);
    }
}

fn signal(c: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &c.id().to_string()])
        .status();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One step of a script: its words (quoted strings decoded, `@file` read).
type Op = Vec<Vec<u8>>;

/// Split a script into steps: `(line number, words)`.
fn parse_script(text: &str) -> R<Vec<(usize, Op)>> {
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words = split_words(line).map_err(|e| format!("script line {}: {e}", i + 1))?;
        if !words.is_empty() {
            ops.push((i + 1, words));
        }
    }
    Ok(ops)
}

/// Words separated by blanks; `"..."` with `\n \r \t \0 \\ \" \xHH \u{H..}`
/// escapes; `"..."*N` repeats the string N times; `#` starts a comment
/// outside quotes.
fn split_words(line: &str) -> R<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b'#' => break,
            b'"' => {
                let mut w = Vec::new();
                i += 1;
                loop {
                    let Some(&c) = b.get(i) else {
                        return Err("unterminated string".into());
                    };
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let e = *b.get(i).ok_or("dangling backslash")?;
                            i += 1;
                            match e {
                                b'n' => w.push(b'\n'),
                                b'r' => w.push(b'\r'),
                                b't' => w.push(b'\t'),
                                b'0' => w.push(0),
                                b'\\' => w.push(b'\\'),
                                b'"' => w.push(b'"'),
                                b'x' => {
                                    let h = line.get(i..i + 2).ok_or("short \\x escape")?;
                                    w.push(u8::from_str_radix(h, 16).map_err(|e| e.to_string())?);
                                    i += 2;
                                }
                                b'u' => {
                                    let rest = line.get(i..).unwrap_or("");
                                    let end = rest.find('}').ok_or("unterminated \\u{")?;
                                    let hex = rest
                                        .strip_prefix('{')
                                        .and_then(|r| r.get(..end - 1))
                                        .ok_or("\\u needs {HEX}")?;
                                    let cp =
                                        u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                    let ch = char::from_u32(cp).ok_or("not a scalar value")?;
                                    let mut buf = [0; 4];
                                    w.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                                    i += end + 1;
                                }
                                _ => return Err(format!("unknown escape \\{}", e as char)),
                            }
                        }
                        _ => w.push(c),
                    }
                }
                if b.get(i) == Some(&b'*') {
                    let start = i + 1;
                    let mut end = start;
                    while end < b.len() && b[end].is_ascii_digit() {
                        end += 1;
                    }
                    let n: usize = line[start..end].parse().map_err(|_| "`*` needs a count")?;
                    w = w.repeat(n);
                    i = end;
                }
                // Marks a quoted word, so `@x` in quotes is literal.
                let mut q = vec![b'"'];
                q.extend(w);
                words.push(q);
            }
            _ => {
                let start = i;
                while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                    i += 1;
                }
                words.push(b[start..i].to_vec());
            }
        }
    }
    Ok(words)
}

fn word(w: &[u8]) -> String {
    String::from_utf8_lossy(w.strip_prefix(b"\"").unwrap_or(w)).to_string()
}

/// Data of a step: a quoted string, or `@file` from the case folder.
fn data(env: &Env, w: &[u8]) -> R<Vec<u8>> {
    if let Some(q) = w.strip_prefix(b"\"") {
        return Ok(q.to_vec());
    }
    if let Some(f) = w.strip_prefix(b"@") {
        let p = env.case.dir.join(String::from_utf8_lossy(f).as_ref());
        return std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    }
    Err(format!(
        "data is a \"quoted string\" or @file, not {}",
        String::from_utf8_lossy(w)
    ))
}

fn run_mode(env: &mut Env, script: &[(usize, Op)], bless: bool, checks: &Mutex<Checks>) -> R<()> {
    let mut agent: Option<Agent> = None;
    let mut starts = 0;
    let explicit_start = script
        .iter()
        .any(|(_, op)| op.first().is_some_and(|w| w == b"start"));
    if !explicit_start {
        agent = Some(Agent::start(env, starts)?);
        starts += 1;
    }
    let mut checked_final = false;
    let step = |n: usize, op: &Op, agent: &mut Option<Agent>, starts: &mut usize| -> R<()> {
        let verb = word(&op[0]);
        let arg = |i: usize| -> R<&Vec<u8>> {
            op.get(i)
                .ok_or_else(|| format!("`{verb}` needs argument {i}"))
        };
        let s = |i: usize| -> R<String> { arg(i).map(|w| word(w)) };
        let running = |a: &Option<Agent>| -> R<()> {
            if a.is_none() {
                Err(format!("`{verb}` needs a running agent"))
            } else {
                Ok(())
            }
        };
        let io = |e: std::io::Error| format!("`{verb}`: {e}");
        match verb.as_str() {
            "start" => {
                if agent.is_some() {
                    return Err("agent already running".into());
                }
                *agent = Some(Agent::start(env, *starts)?);
                *starts += 1;
            }
            "stop" => agent.take().ok_or("no agent to stop")?.stop()?,
            "kill" => agent.take().ok_or("no agent to kill")?.kill(),
            "restart" => {
                agent.take().ok_or("no agent to restart")?.stop()?;
                *agent = Some(Agent::start(env, *starts)?);
                *starts += 1;
            }
            "write" | "append" => {
                let p = env.path(&s(1)?)?;
                arg(2)?;
                let mut d = Vec::new();
                for w in &op[2..] {
                    d.extend(data(env, w)?);
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(verb == "append")
                    .truncate(verb == "write")
                    .open(&p)
                    .map_err(io)?;
                f.write_all(&d).map_err(io)?;
            }
            "rename" => std::fs::rename(env.path(&s(1)?)?, env.path(&s(2)?)?).map_err(io)?,
            "copy" => {
                std::fs::copy(env.path(&s(1)?)?, env.path(&s(2)?)?).map_err(io)?;
            }
            "remove" => std::fs::remove_file(env.path(&s(1)?)?).map_err(io)?,
            "mkdir" => std::fs::create_dir_all(env.path(&s(1)?)?).map_err(io)?,
            "symlink" => std::os::unix::fs::symlink(s(1)?, env.path(&s(2)?)?).map_err(io)?,
            "truncate" => {
                let len: u64 = match op.get(2) {
                    Some(w) => word(w).parse().map_err(|_| "truncate LEN is a number")?,
                    None => 0,
                };
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(env.path(&s(1)?)?)
                    .and_then(|f| f.set_len(len))
                    .map_err(io)?;
            }
            "serve" => {
                let path = s(1)?;
                let status: u16 = s(2)?
                    .parse()
                    .map_err(|_| "serve PATH STATUS [DATA [TYPE]]")?;
                let body = match op.get(3) {
                    Some(w) => data(env, w)?,
                    None => Vec::new(),
                };
                let ctype = match op.get(4) {
                    Some(w) => word(w),
                    None if path.ends_with(".json") || body.first() == Some(&b'{') => {
                        "application/json".into()
                    }
                    None => "text/plain; version=0.0.4".into(),
                };
                let srv = env.http.as_ref().ok_or("no HTTP server")?;
                srv.routes
                    .lock()
                    .unwrap()
                    .insert(path, (status, ctype, body));
            }
            "stdin" => {
                running(agent)?;
                arg(1)?;
                let mut d = Vec::new();
                for w in &op[1..] {
                    d.extend(data(env, w)?);
                }
                let a = agent.as_mut().unwrap();
                let w = a.stdin.as_mut().ok_or("stdin already closed")?;
                w.write_all(&d).and_then(|_| w.flush()).map_err(io)?;
            }
            "close-stdin" => {
                running(agent)?;
                drop(agent.as_mut().unwrap().stdin.take());
            }
            "sleep" => {
                let ms: u64 = s(1)?.parse().map_err(|_| "sleep MS")?;
                std::thread::sleep(Duration::from_millis(ms));
            }
            "log" => {
                running(agent)?;
                let want = s(1)?;
                let a = agent.as_ref().unwrap();
                let deadline = Instant::now() + timeout(env);
                while !a.log_text().contains(&want) {
                    if Instant::now() > deadline {
                        return Err(format!(
                            "the agent never logged {want:?}; log:\n{}",
                            a.log_text()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            "series" => {
                // series FAMILY MAX: wait until FAMILY has at most MAX
                // series in the 0.0.4 exposition (for bounds that no exact
                // exposition can state, such as which of many let-go files
                // keep their figures).
                running(agent)?;
                let family = s(1)?;
                let max: usize = s(2)?.parse().map_err(|_| "series FAMILY MAX")?;
                let a = agent.as_ref().unwrap();
                let deadline = Instant::now() + timeout(env);
                loop {
                    let text = ureq::get(&a.url("/metrics"))
                        .call()
                        .map_err(|e| e.to_string())?
                        .into_string()
                        .map_err(io)?;
                    let n = text
                        .lines()
                        .filter(|l| {
                            l.strip_prefix(family.as_str())
                                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
                        })
                        .count();
                    if n <= max {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("{family} has {n} series, more than {max}"));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            "scrape" => {
                running(agent)?;
                let name = op.get(1).map(|w| word(w)).unwrap_or("expected".into());
                let last = n == usize::MAX;
                scrape_step(env, agent.as_ref().unwrap(), &name, bless, last, checks)?;
            }
            other => return Err(format!("unknown step `{other}`")),
        }
        Ok(())
    };
    for (line, op) in script {
        if word(&op[0]) == "repeat" {
            let times: usize = word(op.get(1).ok_or("repeat N OP")?)
                .parse()
                .map_err(|_| format!("script line {line}: repeat N OP..."))?;
            for i in 1..=times {
                let sub: Op = op[2..]
                    .iter()
                    .map(|w| {
                        String::from_utf8_lossy(w)
                            .replace("{i}", &format!("{i:04}"))
                            .into_bytes()
                    })
                    .collect();
                if sub.is_empty() {
                    return Err(format!("script line {line}: repeat needs a step"));
                }
                step(*line, &sub, &mut agent, &mut starts)
                    .map_err(|e| format!("script line {line} (i={i}): {e}"))?;
            }
            continue;
        }
        let is_final = word(&op[0]) == "scrape"
            && op.get(1).map(|w| word(w)).unwrap_or("expected".into()) == "expected";
        if is_final {
            checked_final = true;
        }
        step(
            if is_final { usize::MAX } else { *line },
            op,
            &mut agent,
            &mut starts,
        )
        .map_err(|e| format!("script line {line}: {e}"))?;
    }
    if !checked_final {
        step(
            usize::MAX,
            &vec![b"scrape".to_vec()],
            &mut agent,
            &mut starts,
        )?;
    }
    if let Some(a) = agent {
        a.stop()?;
    }
    Ok(())
}

fn timeout(env: &Env) -> Duration {
    Duration::from_secs(env.case.meta.timeout.unwrap_or(20))
}

/// Wait until what the agent serves, in both formats, equals `NAME.prom`
/// and `NAME.om` (or, blessing, until it has not changed for a second, and
/// write it). The final step also requires it to stay so.
fn scrape_step(
    env: &Env,
    agent: &Agent,
    name: &str,
    bless: bool,
    last: bool,
    checks: &Mutex<Checks>,
) -> R<()> {
    let dir = &env.case.dir;
    let (pp, op) = (
        dir.join(format!("{name}.prom")),
        dir.join(format!("{name}.om")),
    );
    let want = if bless {
        None
    } else {
        let p = std::fs::read_to_string(&pp)
            .map_err(|_| format!("no {name}.prom; run with WEIR_BLESS=1 to write it"))?;
        let o = std::fs::read_to_string(&op)
            .map_err(|_| format!("no {name}.om; run with WEIR_BLESS=1 to write it"))?;
        Some((p, o))
    };
    let keep = &env.case.meta.self_metrics;
    let take = || -> R<(String, String, String, String)> {
        let p = agent.scrape(false)?;
        let o = agent.scrape(true)?;
        let fp = env.normalize(&filter(&p, keep));
        let fo = env.normalize(&filter(&o, keep));
        Ok((p, o, fp, fo))
    };
    let deadline = Instant::now() + timeout(env);
    let mut stable_since = Instant::now();
    let mut prev: Option<(String, String)> = None;
    loop {
        let (p, o, fp, fo) = take()?;
        let done = match &want {
            Some((wp, wo)) => *wp == fp && *wo == fo,
            None => {
                let same = prev.as_ref() == Some(&(fp.clone(), fo.clone()));
                if !same {
                    stable_since = Instant::now();
                }
                prev = Some((fp.clone(), fo.clone()));
                same && stable_since.elapsed() >= Duration::from_secs(1)
            }
        };
        if done {
            if bless {
                std::fs::write(&pp, &fp).map_err(|e| e.to_string())?;
                std::fs::write(&op, &fo).map_err(|e| e.to_string())?;
            } else if last {
                // Nothing more may arrive (lines counted twice, say).
                std::thread::sleep(Duration::from_millis(300));
                let (_, _, fp2, fo2) = take()?;
                let (wp, wo) = want.as_ref().unwrap();
                if *wp != fp2 || *wo != fo2 {
                    return Err(format!(
                        "{name}: matched, then changed:\n{}{}",
                        diff(wp, &fp2),
                        diff(wo, &fo2)
                    ));
                }
            }
            promtool(&p).map_err(|e| format!("{name}: promtool check metrics: {e}\n{p}"))?;
            let f = env.work.join(format!("{name}.served.om"));
            std::fs::write(&f, &o).map_err(|e| e.to_string())?;
            checks
                .lock()
                .unwrap()
                .om_files
                .push((env.case.name.clone(), f));
            return Ok(());
        }
        if Instant::now() > deadline {
            let Some((wp, wo)) = want else {
                return Err(format!("{name}: still changing after {:?}", timeout(env)));
            };
            return Err(format!(
                "{name} not reached in {:?} (WEIR_BLESS=1 rewrites it on purpose)\n\
                 0.0.4 (- expected, + served):\n{}\nOpenMetrics:\n{}\nlog:\n{}",
                timeout(env),
                diff(&wp, &fp),
                diff(&wo, &fo),
                tail(&agent.log_text(), 40)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The families a case compares: every family not named `weir_...`, and
/// the self-metric families it lists. Works for both formats: a family is
/// the block that its `# HELP`/`# TYPE`/`# UNIT` lines open.
fn filter(text: &str, keep: &[String]) -> String {
    let mut out = String::new();
    let mut family = String::new();
    for line in text.lines() {
        let name = if let Some(rest) = line.strip_prefix("# ") {
            if rest == "EOF" {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            let mut w = rest.split(' ');
            let _ = w.next();
            let n = w.next().unwrap_or("").to_string();
            family = n.clone();
            n
        } else {
            let sample = line.split(['{', ' ']).next().unwrap_or("");
            if !family.is_empty() && sample.starts_with(&family) {
                family.clone()
            } else {
                family = sample.to_string();
                family.clone()
            }
        };
        let own = name.starts_with("weir_");
        let kept = keep.iter().any(|k| {
            name == *k
                || name.strip_suffix("_total") == Some(k)
                || k.strip_suffix("_total") == Some(&name)
        });
        if !own || kept {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `promtool check metrics` on a 0.0.4 exposition. A parse error fails
/// (exit status 1), and so does any lint finding about weir's own
/// families; lint findings (exit status 3) about names that come from the
/// case's config or upstream (`other_gauge` "should not include type") are
/// the user's naming, not an exposition fault.
fn promtool(text: &str) -> R<()> {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool (installed by ./dev setup): {e}"))?;
    c.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = c.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let findings = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(3) && !findings.lines().any(|l| l.starts_with("weir_")) {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The Python interpreter of the virtualenv that `./dev setup` makes, with
/// `prometheus_client` in it: `$WEIR_PYTHON`, else
/// `${XDG_CACHE_HOME:-~/.cache}/weir-dev/venv/bin/python`.
fn om_python() -> PathBuf {
    if let Some(p) = std::env::var_os("WEIR_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("weir-dev/venv/bin/python")
}

/// Run the official OpenMetrics parser over every served OpenMetrics
/// exposition, in one interpreter. Returns (case, error) per refusal.
fn check_openmetrics(files: &[(String, PathBuf)]) -> Vec<(String, String)> {
    if files.is_empty() {
        return Vec::new();
    }
    let py = om_python();
    let script = cases_root().join("om_check.py");
    let out = Command::new(&py)
        .arg(&script)
        .args(files.iter().map(|(_, f)| f))
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            return vec![(
                "(all)".into(),
                format!(
                    "cannot run {} ({e}); ./dev setup installs prometheus_client there",
                    py.display()
                ),
            )]
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut res = Vec::new();
    for line in text.lines() {
        let Some((file, err)) = line.split_once('\t') else {
            continue;
        };
        let case = files
            .iter()
            .find(|(_, f)| f.to_string_lossy() == file)
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| file.to_string());
        let body = std::fs::read_to_string(file).unwrap_or_default();
        res.push((case, format!("{err}\n{body}")));
    }
    if !out.status.success() && res.is_empty() {
        res.push((
            "(all)".into(),
            format!(
                "{} {}: {}",
                py.display(),
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    res
}

/// A line diff (`-` expected only, `+` served only), small inputs.
fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    // Longest common subsequence table.
    let mut t = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            t[i][j] = if a[i] == b[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || t[i][j + 1] >= t[i + 1][j]) {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", a[i]);
            i += 1;
        }
    }
    out
}

/// Responses by URL path: (status, content type, body).
type Routes = Arc<Mutex<HashMap<String, (u16, String, Vec<u8>)>>>;

/// An HTTP/1.1 server on 127.0.0.1 for the `serve` steps; unknown paths
/// get 404.
struct Server {
    port: u16,
    routes: Routes,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start() -> Server {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let routes: Routes = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (routes.clone(), stop.clone());
        l.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let r = r.clone();
                        std::thread::spawn(move || {
                            let _ = answer(c, &r);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server { port, routes, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(mut c: TcpStream, routes: &Routes) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf)?;
        if n == 0 || head.len() > 64 << 10 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
    let path = path.split('?').next().unwrap_or("/").to_string();
    let (status, ctype, body) = routes.lock().unwrap().get(&path).cloned().unwrap_or((
        404,
        "text/plain".into(),
        b"not found\n".to_vec(),
    ));
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    write!(
        c,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    c.write_all(&body)?;
    c.flush()
}
