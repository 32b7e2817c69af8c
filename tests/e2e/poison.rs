//! One line that makes the plugin trap must cost that line only, not the
//! batch it came in (issue 13, fault 7): the batch is retried in halves
//! until the line is isolated, the line is dropped, counted and logged
//! with its pipeline, origin and offset, and the checkpoint moves past it.
//! A storm of such lines costs a bounded number of plugin calls.
use crate::support::*;

fn setup(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = test_plugin("misbehave");
    std::fs::write(
        dir.join("p.toml"),
        format!(
            "[pipeline.poison]\nplugin = \"{}\"\nsource = {{ type = \"file\", paths = [\"{}/app.log\"], start_at = \"beginning\" }}\n{extra}\n",
            p.display(),
            dir.display()
        ),
    )
    .expect("write");
    std::fs::write(dir.join("app.log"), "").expect("touch");
    (tmp, dir)
}

const P: [(&str, &str); 1] = [("pipeline", "poison")];

#[test]
fn a_poison_line_costs_only_itself_and_the_checkpoint_moves_past_it() {
    let (tmp, dir) = setup("");
    let state = tmp.path().join("state");
    let mut agent = Agent::start(&dir, &state);
    let mut text = String::new();
    for i in 0..999 {
        text += &format!("ordinary line {i}\n");
    }
    let poison_at = text.len();
    text += "this one says TRAP\n";
    for i in 0..1000 {
        text += &format!("ordinary line {}\n", 999 + i);
    }
    // Appended at once: one batch.
    append(&dir.join("app.log"), &text);
    let s = agent.wait_for(60, "the good lines", |s| {
        s.val("test_lines_total", &[]) == 1999.0
    });
    assert_eq!(s.val("weir_pipeline_inputs_dropped_total", &P), 1.0);
    assert_eq!(s.val("weir_source_lines_total", &P), 2000.0);
    assert!(
        s.val(
            "weir_plugin_errors_total",
            &[("pipeline", "poison"), ("reason", "trap")]
        ) >= 1.0
    );
    let log = agent.log_text();
    let told = format!(
        "{}/app.log, the line at byte offset {poison_at}",
        dir.display()
    );
    assert!(
        log.contains(&told) && log.contains("pipeline \"poison\""),
        "log lacks {told:?}:\n{log}"
    );
    // The checkpoint is past the poison line: a second start on the same
    // state reads only what comes after, and goes on from the values kept
    // with the checkpoint.
    assert!(agent.stop().success());
    let agent = Agent::start(&dir, &state);
    append(&dir.join("app.log"), "one more\n");
    let s = agent.wait_for(30, "the new line", |s| {
        s.val("test_lines_total", &[]) == 2000.0
    });
    assert_eq!(
        s.val("weir_source_lines_total", &P),
        1.0,
        "nothing read twice"
    );
    assert_eq!(s.val("weir_pipeline_inputs_dropped_total", &P), 0.0);
}

/// Every tenth line poison, 4,000 lines in batches of 500: the good lines
/// are counted as far as the retry budget goes, every line is counted or
/// dropped, and the plugin calls stay within the documented bound (one
/// per batch, plus two per split: a burst of 64 splits, then 4 a second).
#[test]
fn a_storm_of_poison_lines_costs_bounded_calls() {
    let (tmp, dir) = setup("batch_lines = 500");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let started = std::time::Instant::now();
    let mut text = String::new();
    for i in 0..4000 {
        if i % 10 == 9 {
            text += "TRAP\n";
        } else {
            text += &format!("ordinary line {i}\n");
        }
    }
    append(&dir.join("app.log"), &text);
    let s = agent.wait_for(120, "every line counted or dropped", |s| {
        s.val("test_lines_total", &[]) + s.val("weir_pipeline_inputs_dropped_total", &P) == 4000.0
    });
    let secs = started.elapsed().as_secs_f64();
    let dropped = s.val("weir_pipeline_inputs_dropped_total", &P);
    assert!(dropped >= 400.0, "the poison lines are dropped: {dropped}");
    // Splits: a burst of 64, then 4 a second; each split adds two calls;
    // each batch (at least 8 of them) is one call to begin with.
    let calls = s.val("weir_plugin_calls_total", &P);
    let batches = s.val("weir_source_lines_total", &P) / 500.0;
    let bound = batches.ceil() + 8.0 + 2.0 * (64.0 + 4.0 * secs);
    assert!(
        calls <= bound,
        "{calls} calls in {secs:.1} s, bound {bound:.0}"
    );
    // Some good lines were saved (the first burst of splits isolates a
    // few dozen poison lines), not all (the budget ran out).
    let saved = s.val("test_lines_total", &[]);
    assert!((100.0..3600.0).contains(&saved), "{saved} saved");
}
