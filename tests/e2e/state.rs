//! Where a file source starts reading, said in the log, and `weir state`
//! to see and forget checkpoints: the first-run trap of a guide snippet
//! without `start_at` (an existing sample log read from its end, then a
//! checkpoint at the end that `start_at = "beginning"` does not move).
use crate::support::*;
use std::path::Path;
use std::process::Command;

fn pipeline(dir: &Path, start_at: Option<&str>) {
    let start = start_at
        .map(|s| format!("start_at = \"{s}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("app.toml"),
        format!(
            "[pipeline.app]\nplugin = \"regex-log\"\n[pipeline.app.source]\ntype = \"file\"\npaths = [\"logs/*.log\"]\n{start}\
             [pipeline.app.config]\nmetrics = [{{ name = \"app_lines_total\", type = \"counter\", help = \"Lines.\" }}]\n\
             rules = [{{ regex = \"\", emit = [{{ metric = \"app_lines_total\" }}] }}]\n"
        ),
    )
    .expect("write pipeline");
}

fn lines(a: &Agent) -> f64 {
    a.scrape().get("app_lines_total", &[]).unwrap_or(0.0)
}

fn state(args: &[&str], state_dir: &Path) -> (bool, String) {
    let out = Command::new(WEIR)
        .arg("state")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("weir state");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_log_says_where_each_file_starts_and_state_reset_rereads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    let st = tmp.path().join("state");
    std::fs::create_dir_all(dir.join("logs")).expect("mkdir");
    let log = dir.join("logs/app.log");
    std::fs::write(&log, "one\ntwo\nthree\n").expect("log");

    // 1. No start_at: the existing file is read from its end, and the log
    //    says so and how to read it whole.
    pipeline(&dir, None);
    let mut a = Agent::start(&dir, &st);
    append(&log, "four\n");
    a.wait_for(20, "the appended line", |s| {
        s.get("app_lines_total", &[]) == Some(1.0)
    });
    let text = a.log_text();
    assert!(
        text.contains("app.log from the end (start_at = \"end\"")
            && text.contains("start_at = \"beginning\" reads what is there"),
        "{text}"
    );
    assert!(
        text.contains("pipeline=app"),
        "the line names the pipeline:\n{text}"
    );
    a.stop();

    // 2. start_at = "beginning" now: the checkpoint wins, and the log says
    //    that, with the offset and how to forget it.
    pipeline(&dir, Some("beginning"));
    let mut a = Agent::start(&dir, &st);
    let text = a.log_text();
    assert!(
        text.contains("app.log from its checkpoint (start_at applies only to files without one")
            && text.contains("weir state reset PIPELINE")
            && text.contains("offset=19"),
        "{text}"
    );
    // A file that appears while running is read from its start.
    std::fs::write(dir.join("logs/late.log"), "x\ny\n").expect("late");
    // Its two lines go on from the value kept with the checkpoint (1).
    a.wait_for(20, "the late file", |s| {
        s.get("app_lines_total", &[]) == Some(3.0)
    });
    assert!(
        a.log_text()
            .contains("late.log from the beginning: a new file"),
        "{}",
        a.log_text()
    );
    a.stop();

    // 3. weir state lists both files at their ends; reset forgets them.
    let (ok, out) = state(&["list"], &st);
    assert!(ok, "{out}");
    assert!(out.contains("pipeline \"app\""), "{out}");
    assert!(
        out.contains("app.log  offset 19 (19 bytes: at the end)"),
        "{out}"
    );
    assert!(
        out.contains("late.log  offset 4 (4 bytes: at the end)"),
        "{out}"
    );
    let (ok, out) = state(&["reset", "app"], &st);
    assert!(ok, "{out}");
    assert!(out.contains("2 file(s)"), "{out}");
    let (ok, out) = state(&["reset", "app"], &st);
    assert!(
        !ok && out.contains("no checkpoints for pipeline \"app\""),
        "{out}"
    );

    // 4. Next start: every line of both files, as start_at says, counted
    //    from zero (the values went with the checkpoint).
    let a = Agent::start(&dir, &st);
    a.wait_for(20, "all lines read again", |s| {
        s.get("app_lines_total", &[]) == Some(6.0)
    });
    assert!(
        a.log_text()
            .contains("app.log from the beginning (start_at = \"beginning\")"),
        "{}",
        a.log_text()
    );
    assert_eq!(lines(&a), 6.0);
}
