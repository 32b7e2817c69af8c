//! `weir check`: every error, located, and a non-zero exit.
use crate::support::*;
use std::process::Command;

#[test]
fn check_reports_every_error_with_file_line_and_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(
        dir.join("a.toml"),
        "[pipeline.web]\nplugin = \"regex-log\"\nsource = { type = \"file\", paths = [\"x.log\"] }\nmax_seriess = 5\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("b.toml"),
        "[pipeline.db]\nplugin = \"regexlog\"\nsource = { type = \"stdin\" }\n",
    )
    .expect("write");
    let out = Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(dir)
        .output()
        .expect("run weir check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("a.toml:4") && err.contains("max_seriess"),
        "{err}"
    );
    assert!(
        err.contains("b.toml:2: pipeline.db.plugin") && err.contains("regexlog"),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn check_runs_plugin_init_and_names_pipeline_plugin_and_rule() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    std::fs::write(
        dir.join("web.toml"),
        r#"
[pipeline.web]
plugin = "regex-log"
source = { type = "stdin" }
[[pipeline.web.config.metrics]]
name = "hits_total"
type = "counter"
labels = ["path"]
[[pipeline.web.config.rules]]
name = "hits"
regex = '^(?P<url>\S+)$'
[[pipeline.web.config.rules.emit]]
metric = "hits_total"
"#,
    )
    .expect("write");
    let misbehave = test_plugin("misbehave");
    std::fs::write(
        dir.join("custom.toml"),
        format!(
            "[pipeline.custom]\nplugin = \"{}\"\nsource = {{ type = \"stdin\" }}\nconfig = {{ fail_init = \"database section missing\" }}\n",
            misbehave.display()
        ),
    )
    .expect("write");
    let out = Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(dir)
        .output()
        .expect("run weir check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        // The error points at the TOML line of the key the plugin named
        // (emit[0] of rules[0]), not at the pipeline's header.
        err.contains("web.toml:12: key pipeline.web.config.rules[0].emit[0]: pipeline \"web\", plugin regex-log")
            && err.contains("rule \"hits\"")
            && err.contains("label \"path\""),
        "{err}"
    );
    assert!(
        err.contains("pipeline \"custom\", plugin ") && err.contains("database section missing"),
        "{err}"
    );

    // And a valid directory passes.
    std::fs::remove_file(dir.join("custom.toml")).expect("rm");
    let fixed = std::fs::read_to_string(dir.join("web.toml"))
        .expect("read")
        .replace("(?P<url>", "(?P<path>");
    std::fs::write(dir.join("web.toml"), fixed).expect("write");
    let out = Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(dir)
        .output()
        .expect("run weir check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 pipeline(s) valid"));
}
