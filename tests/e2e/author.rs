//! The new plugin author's path, played end to end from a project outside
//! the checkout: `weir plugin new`, `cargo test`, the wasm build, `weir
//! test` against a golden file, then the agent on the project's own config
//! dir given as a relative path, with the counts checked against the
//! sample log.
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Copy a directory tree (the project as a user would commit and clone it).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).expect("copy");
        }
    }
}

/// The cargo target dir of the plugins built by agent/build.rs: shared so
/// that dependencies are compiled once.
fn shared_target() -> PathBuf {
    Path::new(env!("WEIR_TEST_PLUGINS"))
        .ancestors()
        .nth(2)
        .expect("wasm target dir")
        .to_path_buf()
}

fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo")
}

fn weir_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(WEIR)
        .args(args)
        .current_dir(dir)
        .env_remove("WEIR_BLESS")
        .stdin(Stdio::null())
        .output()
        .expect("run weir")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn new_author_path_from_a_copy_outside_the_checkout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(WEIR)
        .args(["plugin", "new", "shop-logs", "--dir"])
        .arg(tmp.path())
        .output()
        .expect("weir plugin new");
    assert!(out.status.success(), "{}", text(&out));
    // Committed, cloned elsewhere: the copy must build on its own.
    let dir = tmp.path().join("elsewhere/shop-logs");
    copy_tree(&tmp.path().join("shop-logs"), &dir);
    std::fs::remove_dir_all(tmp.path().join("shop-logs")).expect("rm original");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("manifest");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo");
    assert!(
        !manifest.contains(&*repo.to_string_lossy()),
        "the manifest names the build machine's checkout:\n{manifest}"
    );

    // --locked: the lock weir writes is whole, as committed it builds.
    let t = cargo(&dir, &["test", "-q", "--locked"]);
    assert!(t.status.success(), "cargo test: {}", text(&t));
    assert!(text(&t).contains("2 passed"), "{}", text(&t));
    let b = cargo(
        &dir,
        &[
            "build",
            "-q",
            "--locked",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
    );
    assert!(b.status.success(), "cargo build: {}", text(&b));
    // Where the project's pipeline file expects it (its own target dir).
    let built = shared_target().join("wasm32-wasip2/release/shop_logs.wasm");
    let wasm = dir.join("target/wasm32-wasip2/release/shop_logs.wasm");
    std::fs::create_dir_all(wasm.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&built, &wasm).expect("copy wasm");

    // weir test: the pipeline as configured, a golden file blessed once,
    // then compared.
    let args = [
        "test",
        "--config-dir",
        "weir",
        "--pipeline",
        "shop-logs",
        "--input",
        "sample.log",
        "--expect",
        "weir/expected.prom",
    ];
    let o = Command::new(WEIR)
        .args(args)
        .current_dir(&dir)
        .env("WEIR_BLESS", "1")
        .output()
        .expect("weir test");
    assert!(o.status.success(), "bless: {}", text(&o));
    let golden = std::fs::read_to_string(dir.join("weir/expected.prom")).expect("golden");
    for want in [
        r#"shop_logs_requests_total{method="GET",path="/api/items",status="200"} 1"#,
        r#"shop_logs_requests_total{method="GET",path="/api/report",status="500"} 1"#,
        r#"shop_logs_request_duration_seconds_count{method="GET",path="/api/items"} 2"#,
        r#"shop_logs_log_messages_total{level="warn"} 2"#,
        "# weir test: inputs rejected by the plugin: 1",
    ] {
        assert!(golden.contains(want), "missing {want:?} in:\n{golden}");
    }
    let o = weir_in(&dir, &args);
    assert!(o.status.success(), "compare: {}", text(&o));
    append(
        &dir.join("sample.log"),
        "level=info method=GET path=/api/items status=200 duration=3ms\n",
    );
    let o = weir_in(&dir, &args);
    assert!(!o.status.success(), "a changed output must fail");
    assert!(
        text(&o).contains(
            r#"+ shop_logs_requests_total{method="GET",path="/api/items",status="200"} 2"#
        ),
        "{}",
        text(&o)
    );

    // The agent, on the relative config dir, from the project folder.
    let port = free_port();
    let log = dir.join("agent.log");
    let child = Command::new(WEIR)
        .args(["run", "--config-dir", "weir", "--state-dir", "state"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("weir run");
    let agent = Agent {
        child: Some(child),
        port,
        dir: dir.join("weir"),
        state: dir.join("state"),
        log,
    };
    agent.wait_ready();
    let s = agent.wait_for(30, "the sample log counted", |s| {
        s.get(
            "weir_plugin_inputs_rejected_total",
            &[("pipeline", "shop-logs")],
        ) == Some(1.0)
            && s.sum("shop_logs_requests_total") == 5.0
    });
    let get = |m: &str, path: &str, status: &str| {
        s.val(
            "shop_logs_requests_total",
            &[("method", m), ("path", path), ("status", status)],
        )
    };
    assert_eq!(get("GET", "/api/items", "200"), 2.0);
    assert_eq!(get("POST", "/api/items", "201"), 1.0);
    assert_eq!(get("GET", "/api/items", "404"), 1.0);
    assert_eq!(get("GET", "/api/report", "500"), 1.0);
    assert_eq!(
        s.val("shop_logs_log_messages_total", &[("level", "warn")]),
        2.0
    );
    let log = agent.log_text();
    assert!(
        log.contains("sample.log from the beginning (start_at = \"beginning\")"),
        "the log must say where reading starts:\n{log}"
    );
}
