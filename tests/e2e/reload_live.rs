//! Reload as users run it: the config directory written however they
//! write it (relative, `./dir`, `dir/`, through a symlink, re-pointed),
//! plugins by relative path and behind symlinks; constant labels changed
//! and added; `[server]` settings applied or refused out loud; `weir
//! check` and a reload wording the same broken file alike.
use crate::support::*;
use std::path::Path;
use std::time::Duration;

fn counting(name: &str, plugin: &str, extra: &str) -> String {
    format!(
        r#"[pipeline.{name}]
plugin = "{plugin}"
source = {{ type = "file", paths = ["{name}.log"], start_at = "beginning" }}
{extra}
[[pipeline.{name}.config.metrics]]
name = "{name}_lines_total"
type = "counter"
help = "Lines."
[[pipeline.{name}.config.rules]]
regex = '^line'
[[pipeline.{name}.config.rules.emit]]
metric = "{name}_lines_total"
"#
    )
}

fn write_atomic(path: &Path, text: &[u8]) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The same plugin with a custom section appended: new bytes, same code.
fn rebuilt(original: &[u8], tag: u8) -> Vec<u8> {
    let mut b = original.to_vec();
    let name = b"weir-test-build";
    b.extend_from_slice(&[0, (1 + name.len() + 1) as u8, name.len() as u8]);
    b.extend_from_slice(name);
    b.push(tag);
    b
}

fn wait_log(agent: &Agent, what: &str, f: impl Fn(&str) -> bool) {
    // Long enough for a debug build to compile a plugin on a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let log = agent.log_text();
        if f(&log) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn successes(s: &Scrape) -> f64 {
    s.val("weir_config_reloads_total", &[("result", "success")])
}

/// Fault 1: with the config directory given relative (the README's
/// `weir run --config-dir examples/nginx`), as `./conf`, `conf/`, through
/// a symlink, and through a symlink that is then re-pointed, a new file is
/// applied, and a plugin given by a relative path behind a symlink is
/// reloaded when the file it points to is rebuilt.
#[test]
fn every_form_of_the_config_path_reloads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let original = std::fs::read(test_plugin("regex_log")).expect("plugin");
    for (i, form) in ["conf", "./conf", "conf/", "link", "link/", "repoint"]
        .iter()
        .enumerate()
    {
        let conf = root.join(format!("conf{i}"));
        let _ = std::fs::remove_dir_all(root.join("conf"));
        let _ = std::fs::remove_file(root.join("link"));
        let _ = std::fs::remove_file(root.join("repoint"));
        std::fs::create_dir_all(conf.join("plugins")).expect("mkdir");
        std::fs::create_dir_all(root.join("build")).expect("mkdir");
        let build = root.join("build").join(format!("count{i}.wasm"));
        std::fs::write(&build, &original).expect("plugin");
        std::os::unix::fs::symlink(&build, conf.join("plugins/count.wasm")).expect("symlink");
        std::fs::write(conf.join("a.toml"), counting("a", "plugins/count.wasm", "")).expect("w");
        std::fs::write(conf.join("a.log"), "line\n").expect("w");
        std::fs::write(conf.join("b.log"), "line\nline\n").expect("w");
        match *form {
            // A real directory for the plain forms.
            "conf" | "./conf" | "conf/" => std::fs::rename(&conf, root.join("conf")).expect("mv"),
            "link" | "link/" => {
                std::os::unix::fs::symlink(format!("conf{i}"), root.join("link")).expect("ln")
            }
            _ => std::os::unix::fs::symlink(format!("conf{i}"), root.join("repoint")).expect("ln"),
        }
        let real = if form.starts_with("conf") || form.starts_with("./") {
            root.join("conf")
        } else {
            conf.clone()
        };
        let state = root.join(format!("state{i}"));
        let agent = Agent::spawn_in(root, form, &state, Some(free_port()), 0);
        agent.wait_ready();
        agent.wait_for(10, "a counted", |s| s.val("a_lines_total", &[]) == 1.0);

        // A new file in the directory.
        write_atomic(
            &real.join("b.toml"),
            counting("b", "regex-log", "").as_bytes(),
        );
        agent.wait_for(10, &format!("{form}: the new file applied"), |s| {
            s.val("b_lines_total", &[]) == 2.0
        });

        // The plugin rebuilt where the symlink points.
        write_atomic(&build, &rebuilt(&original, i as u8));
        wait_log(
            &agent,
            &format!("{form}: the rebuilt plugin applied"),
            |l| l.matches("pipeline started pipeline=a").count() == 2,
        );

        if *form == "repoint" {
            // The symlinked directory re-pointed to another directory:
            // the watcher follows it and applies what it holds.
            let other = root.join("conf-other");
            std::fs::create_dir_all(&other).expect("mkdir");
            std::fs::write(other.join("c.toml"), counting("c", "regex-log", "")).expect("w");
            std::fs::write(other.join("c.log"), "line\nline\nline\n").expect("w");
            let tmp_link = root.join("repoint.new");
            std::os::unix::fs::symlink("conf-other", &tmp_link).expect("ln");
            std::fs::rename(&tmp_link, root.join("repoint")).expect("swap");
            let s = agent.wait_for(10, "the re-pointed directory applied", |s| {
                s.val("c_lines_total", &[]) == 3.0
            });
            assert!(s.get("a_lines_total", &[]).is_none(), "{}", s.text);
            // And it keeps watching the new directory.
            write_atomic(
                &other.join("d.toml"),
                counting("d", "regex-log", "").as_bytes(),
            );
            std::fs::write(other.join("d.log"), "line\n").expect("w");
            agent.wait_for(10, "a file in the new directory applied", |s| {
                s.val("d_lines_total", &[]) == 1.0
            });
        }
        let log = agent.log_text();
        assert!(!log.contains(" ERROR "), "{form}: {log}");
        drop(agent);
    }
}

/// Fault 3: a pipeline's constant labels changed and added on reload are
/// applied to new samples, as a fresh start would; the reload says which
/// families were reset and why.
#[test]
fn constant_labels_change_and_grow_on_reload() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let log = dir.join("web.log");
    std::fs::write(&log, "line\nline\nline\n").expect("w");
    let file = dir.join("web.toml");
    std::fs::write(
        &file,
        counting("web", "regex-log", "labels = { site = \"eu-1\" }"),
    )
    .expect("w");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    agent.wait_for(10, "eu-1", |s| {
        s.val("web_lines_total", &[("site", "eu-1")]) == 3.0
    });

    write_atomic(
        &file,
        counting("web", "regex-log", "labels = { site = \"eu-2\" }").as_bytes(),
    );
    agent.wait_for(10, "reloaded", |s| successes(s) >= 2.0);
    append(&log, "line\nline\n");
    let s = agent.wait_for(10, "new lines under eu-2", |s| {
        s.val("web_lines_total", &[("site", "eu-2")]) == 2.0
    });
    assert!(
        s.get("web_lines_total", &[("site", "eu-1")]).is_none(),
        "{}",
        s.text
    );

    write_atomic(
        &file,
        counting(
            "web",
            "regex-log",
            "labels = { site = \"eu-2\", env = \"prod\" }",
        )
        .as_bytes(),
    );
    agent.wait_for(10, "reloaded again", |s| successes(s) >= 3.0);
    append(&log, "line\n");
    let s = agent.wait_for(10, "new lines with both labels", |s| {
        s.val("web_lines_total", &[("env", "prod"), ("site", "eu-2")]) == 1.0
    });
    assert_eq!(
        s.val("weir_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    assert_eq!(
        s.val(
            "weir_plugin_updates_rejected_total",
            &[("pipeline", "web"), ("reason", "label_count")]
        ),
        0.0,
        "{}",
        s.text
    );
    let text = agent.log_text();
    assert!(
        text.contains("family reset: constant label values changed")
            && text.contains("family reset: constant labels changed"),
        "{text}"
    );
}

fn basic(user: &str, pass: &str) -> String {
    use std::io::Write;
    // base64 by hand is not worth a dependency: let the system do it.
    let mut child = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("base64");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{user}:{pass}").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("base64");
    format!("Basic {}", String::from_utf8_lossy(&out.stdout).trim())
}

fn status(url: &str, auth: Option<&str>) -> u16 {
    let mut r = ureq::get(url).timeout(Duration::from_secs(5));
    if let Some(a) = auth {
        r = r.set("Authorization", a);
    }
    match r.call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, _)) => c,
        Err(e) => panic!("{url}: {e}"),
    }
}

fn hash(pw: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(WEIR)
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

/// Fault 2: `[server.auth]` added to a running agent locks the endpoint;
/// a rotated password refuses the old one; a removed user is refused;
/// `state_dir` changed fails the reload naming file, line and key while
/// the old settings keep serving, `reload_endpoint` included.
#[test]
fn server_auth_applies_live_and_state_dir_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("web.log"), "line\n").expect("w");
    std::fs::write(dir.join("web.toml"), counting("web", "regex-log", "")).expect("w");
    let server = dir.join("server.toml");
    // Started from the key, not --state-dir: then the key cannot change.
    let state = tmp.path().join("state");
    let key = format!("[agent]\nstate_dir = \"{}\"\n", state.display());
    std::fs::write(&server, format!("[server]\nreload_endpoint = true\n{key}")).expect("w");
    let agent = Agent::start_keyed(&dir, tmp.path(), &state);
    let url = agent.url("/metrics");
    assert_eq!(status(&url, None), 200);

    let (h1, h2) = (hash("first"), hash("second"));
    write_atomic(
        &server,
        format!(
            "[server]\nreload_endpoint = true\n[server.auth]\nbasic = {{ prom = \"{h1}\" }}\n{key}"
        )
        .as_bytes(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status(&url, None) != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "auth not applied: {}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&url, Some(&basic("prom", "first"))), 200);
    assert_eq!(status(&url, Some(&basic("prom", "second"))), 401);

    // Rotation: the old password is refused at once, even though it was
    // accepted (and remembered) a moment ago.
    write_atomic(
        &server,
        format!(
            "[server]\nreload_endpoint = true\n[server.auth]\nbasic = {{ prom = \"{h2}\" }}\n{key}"
        )
        .as_bytes(),
    );
    while status(&url, Some(&basic("prom", "second"))) != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not applied: {}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&url, Some(&basic("prom", "first"))), 401);
    let ok = basic("prom", "second");

    // state_dir cannot change: the reload fails at file:line:key, and the
    // reload_endpoint = false written in the same file is not applied.
    write_atomic(
        &server,
        format!("[server]\nreload_endpoint = false\n[server.auth]\nbasic = {{ prom = \"{h2}\" }}\n[agent]\nstate_dir = \"elsewhere\"\n")
            .as_bytes(),
    );
    let metrics = |a: &Agent| {
        Scrape::parse(
            &ureq::get(&a.url("/metrics"))
                .set("Authorization", &ok)
                .call()
                .expect("scrape")
                .into_string()
                .expect("body"),
        )
    };
    while metrics(&agent).val("weir_config_last_reload_successful", &[]) != 0.0 {
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(10),
            "{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = agent.log_text();
    let want = format!("{}:6: agent.state_dir: changed from", server.display());
    assert!(log.contains(&want), "want {want} in:\n{log}");
    assert!(log.contains("restart weir"), "{log}");
    // Old settings still serve: the credentials, and the reload endpoint.
    assert_eq!(status(&url, None), 401);
    assert_eq!(status(&url, Some(&ok)), 200);
    let r = ureq::post(&agent.url("/-/reload"))
        .set("Authorization", &ok)
        .set("X-Weir-Reload", "1")
        .call();
    let (code, body) = match r {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        code, 400,
        "the endpoint stays enabled and reports the failure: {body}"
    );
    assert!(body.contains("agent.state_dir"), "{body}");
}

/// `weir check` and a reload print the same errors for the same broken
/// directory, whichever part is broken: a config key, a plugin's init, a
/// missing plugin file, a TLS file.
#[test]
fn check_and_reload_word_the_same_failure_alike() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("web.log"), "").expect("w");
    std::fs::write(dir.join("web.toml"), counting("web", "regex-log", "")).expect("w");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let broken = [
        (
            "bad.toml",
            counting("bad", "regex-log", "max_series = \"many\""),
        ),
        (
            "init.toml",
            counting("init", "regex-log", "").replace("regex = '^line'", "regex = '(('"),
        ),
        ("missing.toml", counting("missing", "plugins/none.wasm", "")),
        (
            "tls.toml",
            "[server]\n[server.tls]\ncert_file = \"no-cert.pem\"\nkey_file = \"no-key.pem\"\n"
                .into(),
        ),
    ];
    let mut failures = 1.0;
    for (name, text) in broken {
        let f = dir.join(name);
        write_atomic(&f, text.as_bytes());
        agent.wait_for(10, &format!("{name} refused"), |s| {
            s.val("weir_config_reloads_total", &[("result", "failure")]) >= failures
        });
        failures += 1.0;
        let out = std::process::Command::new(WEIR)
            .args(["check", "--config-dir"])
            .arg(&dir)
            .output()
            .expect("check");
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Every line check printed (an error may span lines, like a regex
        // error's caret) is in the reload's log, the last (the count) aside.
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.ends_with("error(s)"))
            .map(|l| l.strip_prefix("error: ").unwrap_or(l))
            .collect();
        assert!(
            lines.iter().any(|l| l.contains(name)),
            "{name}: the error names the file: {stderr}"
        );
        let log = agent.log_text();
        for l in &lines {
            assert!(
                log.contains(l),
                "{name}: check said\n  {l}\nbut the reload log does not:\n{log}"
            );
        }
        std::fs::remove_file(&f).expect("rm");
    }
}
