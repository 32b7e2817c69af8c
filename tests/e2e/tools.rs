//! Plugin-author tools: `weir test` with golden files, `weir inspect`,
//! `weir plugin new`.
use crate::support::*;
use std::io::Read;
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

    // A plugin whose init fails: the report, and a non-zero exit with
    // the reason in one line.
    let out = Command::new(WEIR)
        .args(["inspect", "regex-log"])
        .output()
        .expect("run weir inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("init:     failed") && text.contains("no rules"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.trim().lines().count() == 1 && err.contains("error: plugin regex-log: init failed"),
        "{err}"
    );
}

/// In `dir`: `input`, 5000 distinct ids, and `many.toml`, regex-log
/// settings counting them by id, so that `weir test` prints more than a
/// pipe holds (64 KiB) and writing must fail when nobody reads.
fn ids_fixture(dir: &Path) {
    let input: String = (0..5000).map(|i| format!("request-id-{i}\n")).collect();
    std::fs::write(dir.join("input"), &input).expect("write");
    std::fs::write(
        dir.join("many.toml"),
        "[[metrics]]\nname = \"ids_total\"\ntype = \"counter\"\nlabels = [\"id\"]\n[[rules]]\nregex = '^(?P<id>\\S+)'\nemit = [{ metric = \"ids_total\" }]\n",
    )
    .expect("write");
}

/// `weir ... | head -1`: every command that prints more than a line, with
/// its stdout (and stderr) closed after the first read. None may panic.
#[test]
fn no_command_panics_on_a_closed_pipe() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ids_fixture(tmp.path());
    let cfg = tmp.path().join("many.toml");
    let cfg = cfg.to_string_lossy();
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "test",
            "--plugin",
            "regex-log",
            "--plugin-config",
            &cfg,
            "--input",
            "INPUT",
        ],
        vec!["inspect", "json-log"],
        vec!["--help"],
        vec!["test", "--help"],
        vec!["check", "--config-dir", "DIR"],
        vec!["state", "list", "--state-dir", "DIR"],
    ];
    let dir = tmp.path().to_string_lossy().to_string();
    let inp = tmp.path().join("input").to_string_lossy().to_string();
    for case in cases {
        let args: Vec<&str> = case
            .iter()
            .map(|a| match *a {
                "INPUT" => inp.as_str(),
                "DIR" => dir.as_str(),
                a => a,
            })
            .collect();
        let mut child = Command::new(WEIR)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Read one byte, then hang up both pipes, as `| head -c1` does.
        let mut one = [0u8; 1];
        let _ = child.stdout.as_mut().expect("stdout").read(&mut one);
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().expect("wait");
        // 101 is Rust's panic exit code; a signal would give None.
        assert!(
            status.code().is_some() && status.code() != Some(101),
            "weir {args:?} ended with {status} on a closed pipe"
        );
    }
}

/// `weir test ... > /dev/full`: output that cannot be written (a full disk)
/// is an error, exit 1 with a one-line reason; a reader that hung up
/// (`| head`) is not one, exit 0.
#[test]
fn output_that_cannot_be_written_fails_the_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ids_fixture(tmp.path());
    let args = |cmd: &mut Command| {
        cmd.args(["test", "--plugin", "regex-log", "--plugin-config"])
            .arg(tmp.path().join("many.toml"))
            .arg("--input")
            .arg(tmp.path().join("input"));
    };
    let mut ok = Command::new(WEIR);
    args(&mut ok);
    let out = ok.output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.len() > 64 * 1024, "{} bytes", out.stdout.len());

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut cmd = Command::new(WEIR);
    args(&mut cmd);
    let out = cmd.stdout(full).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: cannot write to standard output"),
        "{err}"
    );

    let mut cmd = Command::new(WEIR);
    args(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let mut err = String::new();
    let _ = child
        .stderr
        .as_mut()
        .expect("stderr")
        .read_to_string(&mut err);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "closed pipe: {err}");
    assert!(!err.contains("error"), "closed pipe is not an error: {err}");
}

/// Bad arguments and bad inputs: a non-zero exit and a one-line reason,
/// never a panic.
#[test]
fn bad_arguments_get_a_one_line_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    std::fs::write(d.join("not.wasm"), b"not a component").expect("write");
    std::fs::write(d.join("bad.toml"), b"[pipeline.x\nplugin = 3").expect("write");
    std::fs::create_dir_all(d.join("cfg")).expect("mkdir");
    std::fs::write(
        d.join("cfg/a.toml"),
        "[pipeline.a]\nplugin = \"regex-log\"\n[pipeline.a.source]\ntype = \"stdin\"\n[[pipeline.a.config.rules]]\nregex = \"x\"\nemit = [{ metric = \"m_total\" }]\n[[pipeline.a.config.metrics]]\nname = \"m_total\"\ntype = \"counter\"\n",
    )
    .expect("write");
    let s = |p: &str| d.join(p).to_string_lossy().to_string();
    let cases: Vec<Vec<String>> = vec![
        vec!["test".into(), "--plugin".into(), s("missing.wasm")],
        vec!["test".into(), "--plugin".into(), s("not.wasm")],
        vec![
            "test".into(),
            "--plugin".into(),
            "regex-log".into(),
            "--plugin-config".into(),
            s("bad.toml"),
        ],
        vec![
            "test".into(),
            "--plugin".into(),
            "regex-log".into(),
            "--plugin-config".into(),
            s("cfg"),
        ],
        vec![
            "test".into(),
            "--plugin".into(),
            "regex-log".into(),
            "--memory-limit".into(),
            "lots".into(),
        ],
        vec![
            "test".into(),
            "--config-dir".into(),
            s("cfg"),
            "--pipeline".into(),
            "nope".into(),
        ],
        vec![
            "test".into(),
            "--config-dir".into(),
            s("cfg"),
            "--pipeline".into(),
            "a".into(),
            "--input".into(),
            s("absent.log"),
        ],
        vec![
            "test".into(),
            "--config-dir".into(),
            s("missing-dir"),
            "--pipeline".into(),
            "a".into(),
        ],
        vec!["inspect".into(), s("not.wasm")],
        vec![
            "inspect".into(),
            "regex-log".into(),
            "--plugin-config".into(),
            s("absent.toml"),
        ],
        vec!["check".into(), "--config-dir".into(), s("missing-dir")],
        vec![
            "state".into(),
            "reset".into(),
            "nope".into(),
            "--state-dir".into(),
            s("state"),
        ],
        vec![
            "state".into(),
            "reset".into(),
            "../../etc".into(),
            "--state-dir".into(),
            s("state"),
        ],
        vec![
            "plugin".into(),
            "new".into(),
            "Bad Name".into(),
            "--dir".into(),
            s(""),
        ],
        vec!["run".into(), "--config-dir".into(), s("missing-dir")],
        vec!["frobnicate".into()],
        vec![
            "test".into(),
            "--source".into(),
            "carrier-pigeon".into(),
            "--plugin".into(),
            "regex-log".into(),
        ],
    ];
    for args in cases {
        let out = Command::new(WEIR)
            .args(&args)
            .stdin(Stdio::null())
            .env("WEIR_LOG", "error")
            .output()
            .expect("run weir");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.status.code() != Some(101),
            "weir {args:?}: {:?}\n{err}",
            out.status
        );
        assert!(!err.contains("panicked"), "weir {args:?} panicked:\n{err}");
        let first = err.lines().find(|l| l.contains("error")).unwrap_or("");
        assert!(
            !first.is_empty() && first.len() < 400,
            "weir {args:?}: no one-line reason:\n{err}"
        );
    }
}

/// A plugin's settings error points at the TOML line and key the user
/// wrote, not at the pipeline's header or a position in JSON the host made.
#[test]
fn settings_errors_name_the_toml_line_and_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    // Line 9: a typo in a key of the settings' root.
    std::fs::write(
        d.join("typo.toml"),
        "[pipeline.typo]\nplugin = \"regex-log\"\n[pipeline.typo.source]\ntype = \"stdin\"\n\n\
         [pipeline.typo.config]\nmetrics = [{ name = \"a_total\", type = \"counter\" }]\n\
         rules = [{ regex = \"a\", emit = [{ metric = \"a_total\" }] }]\nrulez = []\n",
    )
    .expect("write");
    // Line 12: the second rule (its table), whose regex does not compile.
    std::fs::write(
        d.join("regex.toml"),
        "[pipeline.rx]\nplugin = \"regex-log\"\n[pipeline.rx.source]\ntype = \"stdin\"\n\
         [pipeline.rx.config]\nmetrics = [\n  { name = \"a_total\", type = \"counter\" },\n]\n\
         [[pipeline.rx.config.rules]]\nregex = \"a\"\nemit = [{ metric = \"a_total\" }]\n\
         [[pipeline.rx.config.rules]]\nregex = \"(\"\nemit = [{ metric = \"a_total\" }]\n",
    )
    .expect("write");
    // Line 10: buckets the store refuses (the host's check, not the
    // plugin's), on the second metric.
    std::fs::write(
        d.join("buckets.toml"),
        "[pipeline.bk]\nplugin = \"regex-log\"\nsource = { type = \"stdin\" }\n\
         [[pipeline.bk.config.metrics]]\nname = \"a_total\"\ntype = \"counter\"\n\
         [[pipeline.bk.config.metrics]]\nname = \"dur_seconds\"\ntype = \"histogram\"\n\
         buckets = [0.35, 0.7, 0.001]\n\
         [[pipeline.bk.config.rules]]\nregex = \"a\"\nemit = [{ metric = \"a_total\" }]\n",
    )
    .expect("write");
    let out = Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(d)
        .output()
        .expect("weir check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let bk = d.join("buckets.toml");
    assert!(
        err.contains(&format!(
            "{}:10: key pipeline.bk.config.metrics[1].buckets: ",
            bk.display()
        )) && err.contains("strictly increasing"),
        "{err}"
    );
    let out = Command::new(WEIR)
        .args(["test", "--pipeline", "bk", "--config-dir"])
        .arg(d)
        .stdin(Stdio::null())
        .output()
        .expect("weir test");
    let test_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        test_err.contains(&format!(
            "{}:10: key pipeline.bk.config.metrics[1].buckets: ",
            bk.display()
        )),
        "{test_err}"
    );
    let typo = d.join("typo.toml");
    assert!(
        err.contains(&format!(
            "{}:9: key pipeline.typo.config.rulez: ",
            typo.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("line 1 column"),
        "a JSON position leaked: {err}"
    );
    let rx = d.join("regex.toml");
    assert!(
        err.contains(&format!(
            "{}:13: key pipeline.rx.config.rules[1].regex: ",
            rx.display()
        )) && err.contains("invalid regex"),
        "{err}"
    );
    // weir test --config-dir says the same.
    let out = Command::new(WEIR)
        .args(["test", "--pipeline", "rx", "--config-dir"])
        .arg(d)
        .stdin(Stdio::null())
        .output()
        .expect("weir test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:13: key pipeline.rx.config.rules[1].regex: ",
            rx.display()
        )),
        "{err}"
    );
}

/// `weir test` on a pipeline frames its sample as the pipeline's source
/// does: a CRI log decoded (parts joined), then joined into multi-line
/// records.
#[test]
fn weir_test_decodes_container_logs_and_joins_records() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        d.path().join("p.toml"),
        r#"
[pipeline.pods]
plugin = "regex-log"
source = { type = "file", paths = ["/var/log/pods/*/*/*.log"], format = "cri" }
multiline = "java"
[pipeline.pods.config]
metrics = [{ name = "records_total", type = "counter", help = "Records by first word and line count.", labels = ["first", "lines"] }]
[[pipeline.pods.config.rules]]
regex = '(?s)\A(?P<first>\w+) [^\n]*\z'
emit = [{ metric = "records_total", labels = { lines = "1" } }]
[[pipeline.pods.config.rules]]
regex = '(?s)\A(?P<first>\w+) [^\n]*\n[^\n]*\n[^\n]*\z'
emit = [{ metric = "records_total", labels = { lines = "3" } }]
"#,
    )
    .expect("config");
    let sample = d.path().join("0.log");
    std::fs::write(
        &sample,
        "2026-12-03T10:00:00.1Z stdout F started ok\n\
         2026-12-03T10:00:00.2Z stdout P failed req\n\
         2026-12-03T10:00:00.3Z stdout F uest 42\n\
         2026-12-03T10:00:00.4Z stdout F java.lang.IllegalStateException: boom\n\
         2026-12-03T10:00:00.5Z stdout F \tat com.example.App.main(App.java:10)\n\
         not a cri line\n",
    )
    .expect("sample");
    let out = Command::new(WEIR)
        .args(["test", "--config-dir"])
        .arg(d.path())
        .args(["--pipeline", "pods", "--input"])
        .arg(&sample)
        .output()
        .expect("weir test");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            r#"records_total{namespace="",pod="",container="",first="started",lines="1"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"records_total{namespace="",pod="",container="",first="failed",lines="3"} 1"#
        ),
        "{text}"
    );
}
