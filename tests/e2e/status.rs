//! The status page in a real browser: headless Chromium (Debian package
//! `chromium`, installed by `./dev setup`) loads `/` of a running agent
//! with a healthy pipeline, a failing one and a failed reload; the test
//! asserts what the rendered page shows, and keeps a screenshot in
//! `target/tmp/status-page.png`. `/api/v1/status` is checked alongside.
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn chromium() -> PathBuf {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!("chromium is not installed: run ./dev setup (apt-get install chromium)");
}

/// Run headless Chromium on `url` with `args`; its stdout.
fn browse(profile: &Path, url: &str, args: &[String]) -> String {
    let out = Command::new("timeout")
        .arg("90")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1500,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_page_shows_pipelines_errors_and_the_failed_reload_in_a_browser() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let log = tmp.path().join("app.log");
    std::fs::write(&log, "GET 200\nGET 500\nPOST 200\nnot a request\n").expect("log");
    std::fs::write(
        dir.join("healthy.toml"),
        format!(
            "[pipeline.healthy]\nplugin = \"regex-log\"\n[pipeline.healthy.source]\ntype = \"file\"\n\
             paths = [\"{}\"]\nstart_at = \"beginning\"\n[pipeline.healthy.config]\n\
             metrics = [{{ name = \"app_requests_total\", type = \"counter\", help = \"Requests.\", labels = [\"method\", \"status\"] }}]\n\
             rules = [{{ regex = '^(?P<method>[A-Z]+) (?P<status>\\d+)$', emit = [{{ metric = \"app_requests_total\" }}] }}]\n",
            log.display()
        ),
    )
    .expect("healthy");
    // Nothing listens on this port: every poll fails.
    let dead = free_port();
    std::fs::write(
        dir.join("failing.toml"),
        format!(
            "[pipeline.failing]\nplugin = \"json-stats\"\n[pipeline.failing.source]\ntype = \"http\"\n\
             url = \"http://127.0.0.1:{dead}/stats\"\ninterval = \"1s\"\ntimeout = \"1s\"\n\
             [pipeline.failing.config]\nmetrics = [{{ name = \"app_up\", path = \"up\" }}]\n"
        ),
    )
    .expect("failing");
    let st = tmp.path().join("state");
    let a = Agent::start(&dir, &st);
    a.wait_for(
        30,
        "the healthy pipeline's lines and the failing poll",
        |s| {
            s.sum("app_requests_total") == 3.0
                && s.get("weir_source_up", &[("pipeline", "failing")]) == Some(0.0)
        },
    );

    // A reload that fails: a key the file source does not have, line 5.
    std::fs::write(
        dir.join("broken.toml"),
        "[pipeline.broken]\nplugin = \"regex-log\"\n[pipeline.broken.source]\ntype = \"file\"\n\
         pathz = [\"/tmp/x.log\"]\n",
    )
    .expect("broken");
    a.signal("HUP");
    a.wait_for(30, "the failed reload", |s| {
        s.get("weir_config_last_reload_successful", &[]) == Some(0.0)
    });
    // Two rate samples (every 5 s) so that the rate column has a value.
    std::thread::sleep(Duration::from_secs(6));

    // The JSON twin.
    let body = ureq::get(&a.url("/api/v1/status"))
        .call()
        .expect("status json")
        .into_string()
        .expect("body");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let p = |name: &str| {
        v["pipelines"]
            .as_array()
            .expect("pipelines")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no pipeline {name} in {body}"))
    };
    let healthy = p("healthy");
    assert_eq!(healthy["state"], "up", "{body}");
    assert_eq!(healthy["inputs_total"], 4, "{body}");
    assert_eq!(healthy["errors"], 0, "{body}");
    assert_eq!(healthy["series"], 3, "{body}");
    assert_eq!(healthy["plugin"], "regex-log", "{body}");
    assert_eq!(
        healthy["plugin_hash"].as_str().map(str::len),
        Some(12),
        "{body}"
    );
    assert!(healthy["inputs_per_second"].is_number(), "{body}");
    let failing = p("failing");
    assert_eq!(failing["state"], "source down", "{body}");
    assert!(failing["errors"].as_u64().unwrap_or(0) >= 1, "{body}");
    assert!(
        failing["inputs_total"].as_u64().unwrap_or(0) >= 1,
        "polls tried: {body}"
    );
    assert_eq!(failing["inputs_unit"], "polls", "{body}");
    let last = failing["last_error"].as_str().unwrap_or("");
    assert!(last.contains(&format!("127.0.0.1:{dead}")), "{body}");
    assert_eq!(v["last_reload"]["ok"], false, "{body}");
    let errors = v["last_reload"]["errors"].to_string();
    assert!(
        errors.contains("broken.toml") && errors.contains("pathz"),
        "{body}"
    );

    // The page, rendered by a browser.
    let profile = tmp.path().join("chromium");
    let dom = browse(&profile, &a.url("/"), &["--dump-dom".to_string()]);
    for want in [
        "id=\"pipeline-healthy\"",
        "id=\"pipeline-failing\"",
        "source down",
        &format!("127.0.0.1:{dead}"),
        "regex-log",
        "json-stats",
        "4 lines",
        "3&nbsp;/&nbsp;10000",
        "failed</span>",
        "broken.toml",
        "pathz",
        "href=\"/metrics\"",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    assert!(!dom.contains("<script"), "the page has no scripts");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &profile,
        &a.url("/"),
        &[format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot {} looks empty",
        shot.display()
    );
    eprintln!("status page screenshot: {}", shot.display());
}

/// The page and its JSON twin ask for the same credentials as /metrics.
#[test]
fn the_status_page_needs_the_metrics_credentials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("token"), "s3cret\n").expect("token");
    std::fs::write(
        dir.join("server.toml"),
        "[server.auth]\nbearer_token_files = [\"token\"]\n",
    )
    .expect("server");
    let a = Agent::spawn(&dir, &tmp.path().join("state"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if ureq::get(&a.url("/health")).call().is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", a.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    for path in ["/", "/api/v1/status", "/metrics"] {
        match ureq::get(&a.url(path)).call() {
            Err(ureq::Error::Status(401, _)) => {}
            other => panic!("{path} without a token: {other:?}"),
        }
        let r = ureq::get(&a.url(path))
            .set("Authorization", "Bearer s3cret")
            .call()
            .unwrap_or_else(|e| panic!("{path} with the token: {e}"));
        assert_eq!(r.status(), 200, "{path}");
    }
}
