//! Counters that survive restarts (issue 15): a log pipeline keeps its
//! series values in the checkpoint with the read positions they belong
//! to, so across SIGTERM and SIGKILL alike the values end exact, nothing
//! lost, nothing doubled.
//!
//! A writer appends numbered lines (`line N`, N from 0) without pause while
//! the agent is killed or stopped at random moments, 20 times, and started
//! again on the same state directory. At the end every value is compared
//! with what the lines written give, computed here from the line numbers:
//! a line counter, a counter of the numbers' sum (a lost and a doubled line
//! cannot cancel out in both), a histogram of the numbers with its count,
//! sum and every bucket, and a gauge set to the last number.
use crate::rotation::{counting_pipeline, numbers_sum, setup, Hold, LineWriter};
use crate::support::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Histogram bucket bounds (line numbers).
const BOUNDS: [u64; 4] = [100, 1_000, 10_000, 100_000];

fn pipeline(name: &str, extra: &str) -> String {
    let bounds: Vec<String> = BOUNDS.iter().map(|b| b.to_string()).collect();
    format!(
        r#"[pipeline.{name}]
plugin = "regex-log"
source = {{ type = "file", paths = ["app.log"], start_at = "beginning" }}
{extra}
[[pipeline.{name}.config.metrics]]
name = "{name}_lines_total"
type = "counter"
help = "Lines."

[[pipeline.{name}.config.metrics]]
name = "{name}_numbers_total"
type = "counter"
help = "Sum of line numbers."

[[pipeline.{name}.config.metrics]]
name = "{name}_number"
type = "histogram"
help = "Line numbers."
buckets = [{bounds}]

[[pipeline.{name}.config.metrics]]
name = "{name}_last"
type = "gauge"
help = "Last line number."

[[pipeline.{name}.config.rules]]
regex = '^line (?P<n>\d+)$'
emit = [
  {{ metric = "{name}_lines_total" }},
  {{ metric = "{name}_numbers_total", value = "n" }},
  {{ metric = "{name}_number", value = "n" }},
  {{ metric = "{name}_last", value = "n" }},
]
"#,
        bounds = bounds.join(", ")
    )
}

/// Every value the pipeline must show once lines `0..n` were read once
/// each: (series, value), computed from the line numbers alone.
fn expected(name: &str, n: u64) -> Vec<(String, f64)> {
    let mut want = vec![
        (key(&format!("{name}_lines_total"), &[]), n as f64),
        (
            key(&format!("{name}_numbers_total"), &[]),
            numbers_sum(0, n),
        ),
        (key(&format!("{name}_number_count"), &[]), n as f64),
        (key(&format!("{name}_number_sum"), &[]), numbers_sum(0, n)),
        (
            key(&format!("{name}_last"), &[]),
            n.saturating_sub(1) as f64,
        ),
    ];
    for b in BOUNDS {
        let le = b.to_string();
        want.push((
            key(&format!("{name}_number_bucket"), &[("le", &le)]),
            n.min(b + 1) as f64,
        ));
    }
    want.push((
        key(&format!("{name}_number_bucket"), &[("le", "+Inf")]),
        n as f64,
    ));
    want
}

/// Wait until every value is the expected one for `n` lines; fail at
/// once on a line counter past `n` (a doubled line cannot come down).
fn wait_exact(agent: &Agent, name: &str, n: u64) -> Scrape {
    let want = expected(name, n);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = agent.scrape();
        let lines = s.val(&format!("{name}_lines_total"), &[]);
        assert!(
            lines <= n as f64,
            "{name}: {lines} lines counted, {n} written: a line was counted twice\n{}",
            agent.log_text()
        );
        let wrong: Vec<String> = want
            .iter()
            .filter(|(k, v)| s.series.get(k) != Some(v))
            .map(|(k, v)| format!("{k}: want {v}, got {:?}", s.series.get(k)))
            .collect();
        if wrong.is_empty() {
            return s;
        }
        if Instant::now() > deadline {
            panic!(
                "{name}: after 60 s the values for {n} lines are not exact:\n{}\nlog:\n{}",
                wrong.join("\n"),
                agent.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 20 restarts at random moments (some before the agent is even ready,
/// some right after a checkpoint write, some in the middle of reading a
/// backlog) while the writer goes on at ~4000 lines/s, then exact values.
fn restarts_end_exact(name: &str, kill: bool) {
    let (tmp, dir) = setup(&pipeline(name, ""));
    let state = tmp.path().join("state");
    let log = dir.join("app.log");
    std::fs::File::create(&log).expect("create log");
    let w = LineWriter::start(log.clone(), Hold::OpenEach);
    let mut rng = Rng(if kill { 0x5eed_0015 } else { 0x7e57_0015 });
    let mut last_seen = 0.0;
    for round in 0..20 {
        let mut agent = Agent::spawn(&dir, &state);
        // A third of the rounds end before /ready; the others after a
        // random 0-2 s of counting.
        let ready = rng.below(3) > 0;
        if ready {
            agent.wait_ready();
            std::thread::sleep(Duration::from_millis(rng.below(2000)));
            // What a restart shows first is never below what was shown
            // before it was stopped less what the last checkpoint missed;
            // and counting went on: more than zero.
            let seen = agent.scrape().val(&format!("{name}_lines_total"), &[]);
            assert!(
                seen >= last_seen || round == 0,
                "round {round}: {seen} lines after restart, {last_seen} before: values were lost\n{}",
                agent.log_text()
            );
            last_seen = seen;
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(400)));
        }
        if kill {
            agent.kill();
            // Values shown but not checkpointed may be shown again lower,
            // then counted again from the file: the exactness check below.
            last_seen = 0.0;
        } else {
            let st = agent.stop();
            // In its first milliseconds, before the signal handlers are
            // installed (config read, state directory opened), SIGTERM
            // ends the process by its default action: nothing was applied
            // yet. Past that it must be a clean stop.
            use std::os::unix::process::ExitStatusExt;
            let early =
                !ready && st.signal() == Some(15) && !agent.log_text().contains("pipeline started");
            assert!(
                st.success() || early,
                "round {round}: exit {st:?}\n{}",
                agent.log_text()
            );
        }
    }
    let agent = Agent::start(&dir, &state);
    std::thread::sleep(Duration::from_millis(500));
    let n = w.finish();
    let s = wait_exact(&agent, name, n);
    assert!(n > 20_000, "the writer wrote only {n} lines");
    assert!(
        agent
            .log_text()
            .contains("series values restored from the checkpoint"),
        "the last start did not say it restored values:\n{}",
        agent.log_text()
    );
    eprintln!(
        "{name}: {n} lines written across 21 runs ({} by SIGKILL), every value exact: {} lines, sum {}",
        if kill { 20 } else { 0 },
        s.val(&format!("{name}_lines_total"), &[]),
        s.val(&format!("{name}_numbers_total"), &[])
    );
}

#[test]
fn twenty_sigkills_end_with_exact_counters_and_histograms() {
    restarts_end_exact("killed", true);
}

#[test]
fn twenty_sigterms_end_with_exact_counters_and_histograms() {
    restarts_end_exact("termed", false);
}

/// A change made to a checkpoint file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

/// Change the checkpoint file of `pipeline` with `f`.
fn damage(state: &Path, pipeline: &str, f: impl Fn(&mut Vec<u8>)) {
    let p = state.join("checkpoints").join(format!("{pipeline}.json"));
    let mut b = std::fs::read(&p).expect("checkpoint file");
    f(&mut b);
    std::fs::write(&p, b).expect("write checkpoint");
}

/// A damaged, cut or future checkpoint is named in a warning and ignored:
/// the agent starts (never fatal), reads as without one (`start_at`), and
/// writes a good one again.
#[test]
fn a_damaged_checkpoint_is_logged_and_ignored() {
    let name = "damaged";
    let (tmp, dir) = setup(&pipeline(name, ""));
    let state = tmp.path().join("state");
    let log = dir.join("app.log");
    let text: String = (0..500).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&log, text).expect("log");
    let mut agent = Agent::start(&dir, &state);
    wait_exact(&agent, name, 500);
    assert!(agent.stop().success());
    let cases: [(&str, &str, Damage); 4] = [
        (
            "cut",
            "cut off",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        ),
        (
            "flipped",
            "checksum does not match",
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() - 10;
                b[i] ^= 0x04;
            }),
        ),
        ("empty", "empty", Box::new(|b: &mut Vec<u8>| b.clear())),
        (
            "newer",
            "version 9",
            Box::new(|b: &mut Vec<u8>| {
                b.splice(
                    ..b"weir-checkpoint 2".len(),
                    b"weir-checkpoint 9".iter().copied(),
                );
            }),
        ),
    ];
    for (what, says, f) in cases {
        damage(&state, name, f);
        let mut agent = Agent::start(&dir, &state);
        // As without a checkpoint: start_at = "beginning" reads all 500
        // lines again, from zero values.
        wait_exact(&agent, name, 500);
        let log_text = agent.log_text();
        assert!(
            log_text.contains("ignoring the checkpoint file") && log_text.contains(says),
            "{what}: no warning saying \"{says}\":\n{log_text}"
        );
        assert!(agent.stop().success(), "{what}");
        // A good checkpoint again: the next start restores, reads nothing.
        let agent = Agent::start(&dir, &state);
        wait_exact(&agent, name, 500);
        assert!(
            agent.log_text().contains("series values restored"),
            "{what}: the rewritten checkpoint was not used:\n{}",
            agent.log_text()
        );
        drop(agent);
    }
}

/// A restart with a changed family declaration starts that family afresh
/// (as a reload does) and keeps the others; `persist_values = false`
/// starts every counter from zero while offsets still carry over.
#[test]
fn a_changed_family_starts_afresh_and_persist_values_false_keeps_offsets_only() {
    let name = "changed";
    let (tmp, dir) = setup(&pipeline(name, ""));
    let state = tmp.path().join("state");
    let log = dir.join("app.log");
    let text: String = (0..300).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&log, text).expect("log");
    let mut agent = Agent::start(&dir, &state);
    wait_exact(&agent, name, 300);
    assert!(agent.stop().success());

    // The histogram's buckets change; the counters' declarations do not.
    let changed = pipeline(name, "").replace(
        "buckets = [100, 1000, 10000, 100000]",
        "buckets = [50, 500]",
    );
    std::fs::write(dir.join("logs.toml"), &changed).expect("rewrite");
    append(&log, "line 300\nline 301\n");
    let mut agent = Agent::start(&dir, &state);
    let s = agent.wait_for(30, "302 lines", |s| {
        s.get(&format!("{name}_lines_total"), &[]) == Some(302.0)
    });
    assert_eq!(
        s.val(&format!("{name}_numbers_total"), &[]),
        numbers_sum(0, 302)
    );
    // Only the two lines read since: the histogram started afresh.
    assert_eq!(s.val(&format!("{name}_number_count"), &[]), 2.0);
    assert_eq!(s.val(&format!("{name}_number_sum"), &[]), 601.0);
    assert!(
        agent.log_text().contains("declaration changed"),
        "{}",
        agent.log_text()
    );
    assert!(agent.stop().success());

    std::fs::write(dir.join("logs.toml"), crate::restart::offsets_only(changed)).expect("rewrite");
    append(&log, "line 302\n");
    let agent = Agent::start(&dir, &state);
    let s = agent.wait_for(30, "the new line", |s| {
        s.get(&format!("{name}_lines_total"), &[]) == Some(1.0)
    });
    assert_eq!(s.val(&format!("{name}_numbers_total"), &[]), 302.0);
    drop(agent);
}

/// `persist_values` on a source without read positions is a config error
/// at its line.
#[test]
fn persist_values_on_an_exec_source_is_refused_at_its_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("x.toml"),
        "[pipeline.x]\nplugin = \"regex-log\"\nsource = { type = \"exec\", command = [\"true\"] }\npersist_values = true\n",
    )
    .expect("write");
    let out = std::process::Command::new(WEIR)
        .args(["check", "--config-dir"])
        .arg(&dir)
        .output()
        .expect("weir check");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("x.toml:4") && text.contains("persist_values"),
        "{text}"
    );
}

fn numbered(from: u64, to: u64) -> String {
    (from..to).map(|i| format!("line {i}\n")).collect()
}

fn wait_lines(agent: &Agent, name: &str, n: u64) {
    agent.wait_for(30, &format!("{n} lines"), |s| {
        s.get(&format!("{name}_lines_total"), &[]) == Some(n as f64)
    });
}

/// The rotations that take a file's lines out of the followed paths, each
/// followed by a SIGKILL before the next checkpoint interval: copytruncate
/// (the checkpoint is written as soon as the old content's lines are
/// applied) and a rename to a name no pattern matches (found again by
/// inode at the next start). Every line counted once.
#[test]
fn a_sigkill_right_after_a_rotation_out_of_the_paths_loses_nothing() {
    for how in ["copytruncate", "rename"] {
        let name = if how == "rename" { "renamed" } else { "copied" };
        let (tmp, dir) = setup(&counting_pipeline(
            name,
            &["app.log"],
            ", start_at = \"beginning\"",
        ));
        let state = tmp.path().join("state");
        let log = dir.join("app.log");
        std::fs::write(&log, numbered(0, 1000)).expect("w");
        let mut a = Agent::start(&dir, &state);
        wait_lines(&a, name, 1000);
        // A checkpoint with 1000 lines, then 500 more counted but not yet
        // in a periodic checkpoint.
        std::thread::sleep(Duration::from_millis(1500));
        append(&log, &numbered(1000, 1500));
        wait_lines(&a, name, 1500);
        let rotated = dir.join("app.log.1");
        if how == "copytruncate" {
            std::fs::copy(&log, &rotated).expect("copy");
            std::fs::File::create(&log).expect("truncate");
            append(&log, &numbered(1500, 1600));
            wait_lines(&a, name, 1600);
        } else {
            std::fs::rename(&log, &rotated).expect("rename");
            append(&log, &numbered(1500, 1600));
        }
        a.kill();
        let a = Agent::start(&dir, &state);
        wait_lines(&a, name, 1600);
        std::thread::sleep(Duration::from_millis(700));
        let n = a.scrape().val(&format!("{name}_lines_total"), &[]);
        assert_eq!(n, 1600.0, "{how}: counted twice\n{}", a.log_text());
        if how == "rename" {
            assert!(
                a.log_text().contains("rotated away since the checkpoint"),
                "{}",
                a.log_text()
            );
        }
    }
}

/// With the default `start_at = "end"`, a file created while the agent
/// was down is read whole at the next start: all of it is new.
#[test]
fn a_file_created_while_the_agent_was_down_is_read_whole() {
    let name = "created";
    let (tmp, dir) = setup(&counting_pipeline(name, &["*.log"], ""));
    let state = tmp.path().join("state");
    std::fs::write(dir.join("old.log"), numbered(0, 100)).expect("w");
    let mut a = Agent::start(&dir, &state);
    append(&dir.join("old.log"), &numbered(100, 110));
    wait_lines(&a, name, 10);
    assert!(a.stop().success());
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(dir.join("new.log"), numbered(0, 500)).expect("w");
    let a = Agent::start(&dir, &state);
    wait_lines(&a, name, 510);
    assert!(
        a.log_text()
            .contains("created since the agent last wrote its checkpoint"),
        "{}",
        a.log_text()
    );
}
