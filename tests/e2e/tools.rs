//! Plugin-author tools: `weir test` with golden files, `weir inspect`,
//! `weir plugin new`.
use crate::support::*;
use std::path::Path;
use std::process::{Command, Stdio};

fn weir_test(dir: &Path, bless: bool) -> std::process::Output {
    let plugin = std::fs::read_to_string(dir.join("plugin")).expect("plugin file");
    let source = std::fs::read_to_string(dir.join("source")).expect("source file");
    let input = std::fs::File::open(dir.join("input")).expect("input");
    let mut cmd = Command::new(WEIR);
    cmd.args(["test", "--plugin", plugin.trim(), "--source", source.trim()])
        .arg("--plugin-config")
        .arg(dir.join("config.toml"))
        .arg("--expect")
        .arg(dir.join("expected.prom"))
        .stdin(Stdio::from(input));
    if bless {
        cmd.env("WEIR_BLESS", "1");
    } else {
        cmd.env_remove("WEIR_BLESS");
    }
    cmd.output().expect("run weir test")
}

/// Every folder of tests/golden: plugin, source, config.toml, input and
/// expected.prom. `WEIR_BLESS=1 cargo test --test e2e golden` rewrites the
/// expectations on purpose.
#[test]
fn golden_cases_match() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut n = 0;
    for e in std::fs::read_dir(&root).expect("tests/golden") {
        let dir = e.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let out = weir_test(&dir, bless);
        assert!(
            out.status.success(),
            "{}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        n += 1;
    }
    assert!(n >= 1, "no golden cases found");
}

#[test]
fn a_changed_output_fails_the_golden_comparison() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/regex-log-nginx");
    for f in ["plugin", "source", "config.toml", "input", "expected.prom"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).expect("copy");
    }
    append(
        &tmp.path().join("input"),
        "1.2.3.4 - - [22/Nov/2026:10:00:09 +0000] \"PATCH /x HTTP/1.1\" 418 5 \"-\" \"t\" 0.001\n",
    );
    let out = weir_test(tmp.path(), false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("+ http_requests_total{method=\"PATCH\",status=\"418\"} 1"),
        "{err}"
    );
    assert!(err.contains("WEIR_BLESS"), "{err}");
    // Blessing accepts it, and then it matches.
    assert!(weir_test(tmp.path(), true).status.success());
    assert!(weir_test(tmp.path(), false).status.success());
}

#[test]
fn inspect_shows_world_imports_and_families() {
    let out = Command::new(WEIR)
        .arg("inspect")
        .arg(test_plugin("misbehave"))
        .output()
        .expect("run weir inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("world:    log (weir:plugin@0.1.0)"), "{text}");
    assert!(text.contains("weir:plugin/log@0.1.0"), "{text}");
    assert!(text.contains("test_lines_total counter"), "{text}");

    let out = Command::new(WEIR)
        .args(["inspect", "regex-log"])
        .output()
        .expect("run weir inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("init:     failed") && text.contains("no rules"),
        "{text}"
    );
}

#[test]
fn plugin_new_builds_tests_and_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(WEIR)
        .args(["plugin", "new", "shop-logs", "--dir"])
        .arg(tmp.path())
        .output()
        .expect("run weir plugin new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tmp.path().join("shop-logs");
    // Share compiled dependencies with the plugins built by the build.
    let target = Path::new(env!("WEIR_TEST_PLUGINS"))
        .ancestors()
        .nth(2)
        .expect("wasm target dir")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let t = Command::new(&cargo)
        .args(["test", "-q"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo test");
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    assert!(String::from_utf8_lossy(&t.stdout).contains("1 passed"));
    let b = Command::new(&cargo)
        .args(["build", "-q", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo build");
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let wasm = target.join("wasm32-wasip2/release/shop_logs.wasm");
    let out = Command::new(WEIR)
        .args(["test", "--plugin"])
        .arg(&wasm)
        .arg("--plugin-config")
        .arg(dir.join("config.toml"))
        .stdin(std::fs::File::open(dir.join("sample.log")).expect("sample"))
        .output()
        .expect("weir test");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("myapp_requests_total{route=\"/api\",status=\"500\"} 1"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejected 1 input"));
}
