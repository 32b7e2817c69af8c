//! Plugins written in other languages, against the same WIT: Python
//! (componentize-py) and JavaScript (componentize-js), from
//! tests/plugins/{python,js}. Their toolchains come from PyPI and npm into
//! target/lang on first use; the components are rebuilt when their
//! sources or the WIT change. A toolchain that cannot be installed fails
//! the test, saying what to run.
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Versions known to work with wasmtime 48 and this WIT.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
/// Bound on one install or one build.
const TOOL_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ has a parent")
        .to_path_buf()
}

/// target/lang: toolchains and built components, kept between runs.
fn lang_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp has a parent")
        .join("lang")
}

/// Run a command to completion within [`TOOL_TIMEOUT`], its output in
/// `log`. Err with the end of that output on failure.
fn run_bounded(what: &str, cmd: &mut Command, log: &Path) -> Result<(), String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            if st.success() {
                eprintln!("{what}: done in {:.1?}", start.elapsed());
                return Ok(());
            }
            return Err(format!("{what} failed ({st}):\n{}", tail()));
        }
        if start.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what} did not finish in {TOOL_TIMEOUT:?}:\n{}",
                tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Install a toolchain into `dir` unless a stamp says this version is
/// there; a half-done install is removed first.
fn install(dir: &Path, version: &str, cmd: impl FnOnce(&Path) -> Command) -> Result<(), String> {
    let stamp = dir.join(".installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(version) {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log = dir.with_extension("install.log");
    run_bounded(&format!("installing {version}"), &mut cmd(dir), &log)?;
    std::fs::write(&stamp, version).map_err(|e| e.to_string())
}

/// Build `out` with `cmd` unless it exists and was built from the same
/// inputs (the sources' bytes and the tool version, kept beside it).
fn build(out: &Path, inputs: &[PathBuf], version: &str, cmd: Command) -> Result<PathBuf, String> {
    let mut fingerprint = version.as_bytes().to_vec();
    for i in inputs {
        fingerprint.extend(std::fs::read(i).map_err(|e| format!("{}: {e}", i.display()))?);
    }
    let stamp = out.with_extension("inputs");
    if out.exists() && std::fs::read(&stamp).ok() == Some(fingerprint.clone()) {
        return Ok(out.to_path_buf());
    }
    let _ = std::fs::remove_file(out);
    let mut cmd = cmd;
    run_bounded(
        &format!("building {}", out.display()),
        &mut cmd,
        &out.with_extension("build.log"),
    )?;
    if !out.exists() {
        return Err(format!("{} was not written", out.display()));
    }
    std::fs::write(&stamp, fingerprint).map_err(|e| e.to_string())?;
    Ok(out.to_path_buf())
}

fn wit_dir() -> PathBuf {
    repo().join("wit/v0.1.0")
}

fn wit_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wit_dir())
        .expect("wit/v0.1.0")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// The Python plugin, built once per test run.
fn python_plugin() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let tools = lang_dir().join("py");
        install(&tools, COMPONENTIZE_PY, |dir| {
            let mut c = Command::new("python3");
            c.args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--target"])
            .arg(dir)
            .arg(COMPONENTIZE_PY);
            c
        })
        .map_err(|e| {
            format!(
                "cannot install {COMPONENTIZE_PY} from PyPI (needs python3 with pip): {e}\n\
                 by hand: python3 -m pip install --target {} {COMPONENTIZE_PY}",
                tools.display()
            )
        })?;
        let src = repo().join("tests/plugins/python");
        let mut inputs = vec![src.join("app.py")];
        inputs.extend(wit_files());
        // Built from a copy: componentize-py leaves __pycache__ beside the
        // app, and the source folder should stay as it is.
        let work = lang_dir().join("python-src");
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        std::fs::copy(src.join("app.py"), work.join("app.py")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(tools.join("bin/componentize-py"));
        cmd.current_dir(&work)
            .env("PYTHONPATH", &tools)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(wit_dir())
            .args(["-w", "log-plugin", "componentize", "app", "-o"])
            .arg(lang_dir().join("words_py.wasm"));
        build(
            &lang_dir().join("words_py.wasm"),
            &inputs,
            COMPONENTIZE_PY,
            cmd,
        )
    });
    match built {
        Ok(p) => p.clone(),
        Err(e) => panic!("the Python plugin could not be built: {e}"),
    }
}

/// The JavaScript plugin, built once per test run.
fn javascript_plugin() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let tools = lang_dir().join("js");
        install(&tools, COMPONENTIZE_JS, |dir| {
            let mut c = Command::new("npm");
            c.args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(dir)
                .arg(COMPONENTIZE_JS);
            c
        })
        .map_err(|e| {
            format!(
                "cannot install {COMPONENTIZE_JS} from npm (needs node and npm): {e}\n\
                 by hand: npm install --prefix {} {COMPONENTIZE_JS}",
                tools.display()
            )
        })?;
        let src = repo().join("tests/plugins/js/plugin.js");
        let mut inputs = vec![src.clone()];
        inputs.extend(wit_files());
        let mut cmd = Command::new(tools.join("node_modules/.bin/componentize-js"));
        cmd.current_dir(&tools)
            .arg(&src)
            .arg("--wit")
            .arg(wit_dir())
            .args(["-n", "log-plugin", "-d", "http", "fetch-event", "-o"])
            .arg(lang_dir().join("words_js.wasm"));
        build(
            &lang_dir().join("words_js.wasm"),
            &inputs,
            COMPONENTIZE_JS,
            cmd,
        )
    });
    match built {
        Ok(p) => p.clone(),
        Err(e) => panic!("the JavaScript plugin could not be built: {e}"),
    }
}

/// The agent compiles a component of 12-18 MB in tens of seconds on a
/// busy machine: more than `Agent::start` waits.
fn start_slow(dir: &Path, state: &Path) -> Agent {
    let agent = Agent::spawn(dir, state);
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        if let Ok(r) = ureq::get(&agent.url("/ready"))
            .timeout(Duration::from_secs(2))
            .call()
        {
            if r.status() == 200 {
                return agent;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("agent not ready in 300 s; log:\n{}", agent.log_text());
}

/// Tests that compile a large component run one at a time: two at once on
/// a small machine only make both slow.
static HEAVY: Mutex<()> = Mutex::new(());

/// Run `plugin` under the agent on a log with known counts; check the
/// counts, that its errors reach the user, and report its costs.
fn counts_under_the_agent(lang: &str, plugin: &Path, memory_limit: &str) {
    let _one_at_a_time = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let log = tmp.path().join("app.log");
    std::fs::write(&log, "").expect("touch");
    let pipeline = |name: &str, config: &str| {
        format!(
            "[pipeline.{name}]\nplugin = \"{}\"\nsource = {{ type = \"file\", paths = [\"{}\"], start_at = \"beginning\" }}\nmemory_limit = \"{memory_limit}\"\ncall_timeout = \"10s\"\nconfig = {config}\n",
            plugin.display(),
            log.display()
        )
    };
    std::fs::write(
        dir.join("words.toml"),
        pipeline(
            lang,
            &format!("{{ word = \"ERROR\", prefix = \"{lang}\" }}"),
        ),
    )
    .expect("write config");
    // Compiled components from earlier runs (named by content and engine
    // settings, so a stale one is never used): compiling 12-18 MB takes the
    // agent tens of seconds.
    let state = tmp.path().join("state");
    let compiled = lang_dir().join("compiled");
    copy_files(&compiled, &state.join("plugins"));
    let started = Instant::now();
    let agent = start_slow(&dir, &state);
    let startup = started.elapsed();
    copy_files(&state.join("plugins"), &compiled);

    // 1000 lines first, then 30,000 in batches of up to 4096.
    let mut rng = Rng(7);
    let (mut lines, mut matches, mut empty) = (0u64, 0u64, 0u64);
    let mut text = String::new();
    for round in [1_000u64, 30_000] {
        text.clear();
        for i in 0..round {
            match rng.below(10) {
                0 => {
                    text.push('\n');
                    empty += 1;
                }
                1 | 2 => {
                    text += &format!("2026-11-22 level=ERROR id={i} disk full\n");
                    lines += 1;
                    matches += 1;
                }
                _ => {
                    text += &format!("2026-11-22 level=info id={i} ok é ☃\n");
                    lines += 1;
                }
            }
        }
        append(&log, &text);
        let lines_total = format!("{lang}_lines_total");
        let matches_total = format!("{lang}_matches_total");
        agent.wait_for(120, &format!("{lang} counts"), |s| {
            s.val(&lines_total, &[]) == lines as f64
                && s.val(&matches_total, &[("word", "ERROR")]) == matches as f64
                && s.val("weir_plugin_inputs_rejected_total", &[("pipeline", lang)]) == empty as f64
        });
    }
    let s = agent.scrape();
    for reason in ["trap", "timeout", "memory_limit", "plugin_error", "init"] {
        assert_eq!(
            s.val(
                "weir_plugin_errors_total",
                &[("pipeline", lang), ("reason", reason)]
            ),
            0.0,
            "{reason}:\n{}",
            agent.log_text()
        );
    }
    let calls = s.val(
        "weir_plugin_call_duration_seconds_count",
        &[("pipeline", lang)],
    );
    let secs = s.val(
        "weir_plugin_call_duration_seconds_sum",
        &[("pipeline", lang)],
    );
    let memory = s.val("weir_plugin_memory_bytes", &[("pipeline", lang)]);
    eprintln!(
        "{lang}: component {} MB, agent ready in {startup:.1?}, {calls} calls for {} lines: {:.2} µs/line, plugin memory {} MiB",
        std::fs::metadata(plugin).map(|m| m.len() >> 20).unwrap_or(0),
        lines + empty,
        secs * 1e6 / (lines + empty) as f64,
        memory as u64 >> 20
    );
    assert!(
        log_names_plugin(&agent, lang, plugin, "counting lines with"),
        "the plugin's init log line is missing:\n{}",
        agent.log_text()
    );

    // An error the plugin returns from init reaches the user, naming the
    // pipeline and the plugin; the running pipeline stays.
    std::fs::write(
        dir.join("broken.toml"),
        pipeline(&format!("{lang}_broken"), "{ prefix = \"x\" }"),
    )
    .expect("write config");
    agent.signal("HUP");
    agent.wait_for(120, "the reload refused", |s| {
        s.val("weir_config_last_reload_successful", &[]) == 0.0
    });
    let broken = format!("{lang}_broken");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log_names_plugin(&agent, &broken, plugin, "`word` is required") {
        assert!(
            Instant::now() < deadline,
            "the init error is not in the log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    append(&log, "one more ERROR\n");
    agent.wait_for(60, "the running pipeline still counting", |s| {
        s.val(&format!("{lang}_matches_total"), &[("word", "ERROR")]) == (matches + 1) as f64
    });
}

/// Copy the `.cwasm` files of `from` into `to`, unless there already.
fn copy_files(from: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    for e in std::fs::read_dir(from).into_iter().flatten().flatten() {
        let dest = to.join(e.file_name());
        if e.path().extension().is_some_and(|x| x == "cwasm") && !dest.exists() {
            // Whole or not at all: a torn copy would be ignored, but
            // would cost a compile.
            let tmp = dest.with_extension("part");
            if std::fs::copy(e.path(), &tmp).is_ok() {
                let _ = std::fs::rename(&tmp, &dest);
            }
        }
    }
}

fn log_names_plugin(agent: &Agent, pipeline: &str, plugin: &Path, words: &str) -> bool {
    let plugin = plugin.display().to_string();
    agent.log_text().lines().any(|l| {
        l.contains(&plugin)
            && (l.contains(&format!("pipeline \"{pipeline}\""))
                || l.contains(&format!("plugin=\"{pipeline}/")))
            && l.contains(words)
    })
}

#[test]
fn python_plugin_counts_under_the_agent() {
    let plugin = python_plugin();
    counts_under_the_agent("py", &plugin, "256MiB");
}

#[test]
fn javascript_plugin_counts_under_the_agent() {
    let plugin = javascript_plugin();
    counts_under_the_agent("js", &plugin, "512MiB");
}
