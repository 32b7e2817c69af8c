//! The journald source against real journal files, written by
//! `systemd-journal-remote` from export-format input made here, read by
//! the real `journalctl` (both from ./dev setup_test: Debian packages
//! `systemd-journal-remote` and `systemd`).
//!
//! Every entry carries `ENTRY_NO` (1, 2, ...): the pipeline counts entries
//! by `PRIORITY` and sums their numbers, so a run that counted entries
//! `a..=b` exactly once shows `b - a + 1` entries summing to
//! `(a + b) (b - a + 1) / 2`; an entry twice or missing changes one of
//! them.
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const BOOT_ID: &str = "6c3f3a5f0d8e4c7f9a1b2c3d4e5f6a7b";

/// Both tools are there, or the test fails saying how to get them.
fn require_tools() {
    assert!(
        Path::new(JOURNAL_REMOTE).exists(),
        "{JOURNAL_REMOTE} is missing: install the Debian package systemd-journal-remote (./dev setup_test does)"
    );
    let ok = Command::new("journalctl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "journalctl is missing: install the Debian package systemd (./dev setup_test does)"
    );
}

/// One entry: its number and unit; priority 3 for every fifth, else 6.
fn export_entry(no: u64, unit: &str) -> String {
    let prio = if no.is_multiple_of(5) { 3 } else { 6 };
    // Realtime grows with the number, across appends.
    let t = 1_700_000_000_000_000u64 + no * 1000;
    format!(
        "__CURSOR=s=0;i={no}\n__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={no}000\n_BOOT_ID={BOOT_ID}\n_HOSTNAME=test\n_SYSTEMD_UNIT={unit}\nPRIORITY={prio}\nENTRY_NO={no}\nMESSAGE=entry {no}\n\n"
    )
}

/// Append entries to the journal file in `jdir` (created by the first
/// call) through systemd-journal-remote.
fn append_journal(jdir: &Path, entries: &[(u64, &str)]) {
    std::fs::create_dir_all(jdir).expect("journal dir");
    let text: String = entries.iter().map(|(n, u)| export_entry(*n, u)).collect();
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!(
            "--output={}",
            jdir.join("remote.journal").display()
        ))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run systemd-journal-remote");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write export");
    }
    let out = child.wait_with_output().expect("wait journal-remote");
    assert!(
        out.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pipeline(name: &str, jdir: &Path, extra: &str) -> String {
    format!(
        r#"[pipeline.{name}]
plugin = "json-log"
source = {{ type = "journald", directory = {dir:?}, matches = ["_SYSTEMD_UNIT=nginx.service"]{extra} }}

[pipeline.{name}.config]
metrics = [
  {{ name = "jd_entries_total", type = "counter", help = "Entries by priority.", labels = ["priority"] }},
  {{ name = "jd_numbers_total", type = "counter", help = "Sum of ENTRY_NO." }},
]

[[pipeline.{name}.config.rules]]
name = "all"
emit = [
  {{ metric = "jd_entries_total", labels = {{ priority = "${{PRIORITY}}" }} }},
  {{ metric = "jd_numbers_total", value = "ENTRY_NO" }},
]
"#,
        dir = jdir.display().to_string()
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state: PathBuf,
    jdir: PathBuf,
}

fn setup(name: &str, extra: &str) -> Setup {
    require_tools();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    let jdir = tmp.path().join("journal");
    std::fs::create_dir_all(&dir).expect("conf");
    std::fs::write(dir.join("p.toml"), pipeline(name, &jdir, extra)).expect("config");
    Setup {
        state: tmp.path().join("state"),
        dir,
        jdir,
        _tmp: tmp,
    }
}

/// (entries, sum of numbers, priority-3 entries) the agent counted.
fn counted(s: &Scrape) -> (f64, f64, f64) {
    let entries = s.val("jd_entries_total", &[("priority", "3")])
        + s.val("jd_entries_total", &[("priority", "6")]);
    (
        entries,
        s.val("jd_numbers_total", &[]),
        s.val("jd_entries_total", &[("priority", "3")]),
    )
}

/// What counting nginx entries numbered in `nos` gives.
fn expected(nos: impl IntoIterator<Item = u64>) -> (f64, f64, f64) {
    let mut e = (0.0, 0.0, 0.0);
    for n in nos {
        e.0 += 1.0;
        e.1 += n as f64;
        if n.is_multiple_of(5) {
            e.2 += 1.0;
        }
    }
    e
}

/// Entries `from..=to`, even numbers nginx, odd ones cron.
fn mixed(from: u64, to: u64) -> Vec<(u64, &'static str)> {
    (from..=to)
        .map(|n| {
            (
                n,
                if n % 2 == 0 {
                    "nginx.service"
                } else {
                    "cron.service"
                },
            )
        })
        .collect()
}

fn nginx_nos(from: u64, to: u64) -> impl Iterator<Item = u64> {
    (from..=to).filter(|n| n.is_multiple_of(2))
}

fn wait_counted(a: &Agent, want: (f64, f64, f64)) -> Scrape {
    let s = a.wait_for(30, &format!("counted {want:?}"), |s| counted(s) == want);
    // Nothing more comes (a duplicate would show up late).
    std::thread::sleep(Duration::from_millis(700));
    let s2 = a.scrape();
    assert_eq!(counted(&s2), want, "counted more than expected");
    s
}

fn saved_cursor(state: &Path, name: &str) -> Option<String> {
    checkpoint_json(state, name)?["journal_cursor"]
        .as_str()
        .map(String::from)
}

/// `matches` lets only nginx entries through, counted by PRIORITY; the
/// pipeline's figures count the entries read.
#[test]
fn journald_matches_filter_entries_by_unit() {
    let name = "jdmatch";
    let s = setup(name, ", start_at = \"beginning\"");
    append_journal(&s.jdir, &mixed(1, 40));
    let a = Agent::start(&s.dir, &s.state);
    let sc = wait_counted(&a, expected(nginx_nos(1, 40)));
    assert_eq!(
        sc.val("weir_source_lines_total", &[("pipeline", name)]),
        20.0
    );
    assert_eq!(
        sc.val("weir_plugin_inputs_rejected_total", &[("pipeline", name)]),
        0.0
    );
    // Written while it runs: followed.
    append_journal(&s.jdir, &mixed(41, 60));
    wait_counted(&a, expected(nginx_nos(1, 60)));
    assert!(
        a.log_text().contains("start_at = \\\"beginning\\\"")
            || a.log_text().contains("from the beginning"),
        "{}",
        a.log_text()
    );
}

/// SIGTERM, entries appended while down, start again: every entry once.
/// Then SIGKILL after the checkpoint was written, entries appended, start
/// again: every entry once too (what was acknowledged before the last
/// write is never reread; here the writer had caught up).
#[test]
fn journald_resumes_after_its_cursor_after_sigterm_and_sigkill() {
    let name = "jdresume";
    let s = setup(name, ", start_at = \"beginning\"");
    append_journal(&s.jdir, &mixed(1, 30));
    let mut a = Agent::start(&s.dir, &s.state);
    wait_counted(&a, expected(nginx_nos(1, 30)));
    assert!(a.stop().success());
    let c1 = saved_cursor(&s.state, name).expect("a cursor saved on SIGTERM");

    append_journal(&s.jdir, &mixed(31, 50));
    let mut a = Agent::start(&s.dir, &s.state);
    // Counters go on from the checkpoint's values: the new entries are
    // added to what the first run counted, none twice.
    wait_counted(&a, expected(nginx_nos(1, 50)));
    let log = a.log_text();
    assert!(log.contains("after its checkpoint cursor"), "{log}");
    assert!(log.contains(&c1), "resumed from {c1}:\n{log}");

    // SIGKILL once the checkpoint holds the last entry (written every 1 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while saved_cursor(&s.state, name) == Some(c1.clone()) {
        assert!(Instant::now() < deadline, "checkpoint not written");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    a.kill();
    append_journal(&s.jdir, &mixed(51, 70));
    let a = Agent::start(&s.dir, &s.state);
    wait_counted(&a, expected(nginx_nos(1, 70)));
}

/// A long stretch where nothing matches, then a restart: the saved cursor
/// moved to the journal's end meanwhile, so nothing is looked at again,
/// and the entries that match after the restart are counted once.
#[test]
fn journald_filtered_out_stretch_then_restart_does_not_reread() {
    let name = "jdskip";
    let s = setup(
        name,
        ", start_at = \"beginning\", cursor_interval = \"300ms\"",
    );
    append_journal(&s.jdir, &mixed(1, 10));
    let mut a = Agent::start(&s.dir, &s.state);
    wait_counted(&a, expected(nginx_nos(1, 10)));
    // Only cron entries.
    let cron: Vec<(u64, &str)> = (11..=200).map(|n| (n, "cron.service")).collect();
    append_journal(&s.jdir, &cron);
    // The journal's last entry, a cron one.
    let last = Command::new("journalctl")
        .arg(format!("--directory={}", s.jdir.display()))
        .args(["-n", "1", "-o", "json", "--no-pager", "-q"])
        .output()
        .expect("journalctl");
    let last: serde_json::Value = serde_json::from_slice(&last.stdout).expect("journalctl JSON");
    assert_eq!(last["ENTRY_NO"].as_str(), Some("200"));
    let skipped = last["__CURSOR"].as_str().expect("cursor").to_string();
    // The position moves to it though none matched. (Waiting for "a
    // different cursor than after the matches" raced with the checkpoint
    // of the last match itself, written up to 1 s later.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while saved_cursor(&s.state, name).as_deref() != Some(skipped.as_str()) {
        assert!(
            Instant::now() < deadline,
            "cursor not moved past the filtered-out entries (saved {:?}):\n{}",
            saved_cursor(&s.state, name),
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill();

    append_journal(&s.jdir, &mixed(201, 220));
    let a = Agent::start(&s.dir, &s.state);
    wait_counted(&a, expected(nginx_nos(1, 10).chain(nginx_nos(201, 220))));
    let log = a.log_text();
    assert!(
        log.contains("after its checkpoint cursor") && log.contains(&skipped),
        "not resumed from the skipped-to cursor {skipped}:\n{log}"
    );
    assert!(log.contains(&format!("--cursor={skipped}")), "{log}");
}

/// Not JSON lines are counted, not fatal; a missing journalctl is a clear,
/// counted error naming the pipeline.
#[test]
fn journald_without_journalctl_says_so_and_retries() {
    let name = "jdmissing";
    let s = setup(name, "");
    let empty = s.dir.join("empty-bin");
    std::fs::create_dir_all(&empty).expect("dir");
    let a = Agent::spawn_with(
        &s.dir,
        &s.state,
        &s.state,
        &[("PATH", empty.to_str().expect("utf-8"))],
    );
    a.wait_ready();
    a.wait_for(20, "a spawn error counted", |sc| {
        sc.val(
            "weir_source_errors_total",
            &[("pipeline", name), ("reason", "spawn")],
        ) >= 2.0
    });
    let log = a.log_text();
    assert!(
        log.contains(name) && log.contains("journalctl") && log.contains("retrying"),
        "{log}"
    );
}

/// An entry longer than `max_line_bytes` (a huge field, printed in full
/// by `--all`) is cut, counted as cut and invalid, and skipped; memory
/// stays bounded and the entries around it are counted.
#[test]
fn journald_huge_entry_is_bounded_and_skipped() {
    let name = "jdhuge";
    let s = setup(name, ", start_at = \"beginning\"");
    std::fs::write(
        s.dir.join("p.toml"),
        pipeline(name, &s.jdir, ", start_at = \"beginning\"").replace(
            "plugin = \"json-log\"\n",
            "plugin = \"json-log\"\nmax_line_bytes = 4096\n",
        ),
    )
    .expect("config");
    append_journal(&s.jdir, &mixed(1, 10));
    // Entry 12 (nginx) with a 100 KiB field.
    let huge = export_entry(12, "nginx.service").replace(
        "MESSAGE=entry 12\n",
        &format!("MESSAGE={}\n", "x".repeat(100 << 10)),
    );
    std::fs::create_dir_all(&s.jdir).expect("dir");
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!(
            "--output={}",
            s.jdir.join("remote.journal").display()
        ))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("journal-remote");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(huge.as_bytes()).expect("write");
    }
    assert!(child.wait().expect("wait").success());
    append_journal(&s.jdir, &mixed(13, 20));
    let a = Agent::start(&s.dir, &s.state);
    let sc = wait_counted(&a, expected(nginx_nos(1, 20).filter(|n| *n != 12)));
    assert_eq!(
        sc.val("weir_source_lines_truncated_total", &[("pipeline", name)]),
        1.0
    );
    assert_eq!(
        sc.val("weir_source_lines_invalid_total", &[("pipeline", name)]),
        1.0
    );
    assert_eq!(
        sc.val(
            "weir_pipeline_up",
            &[("pipeline", name), ("plugin", "json-log")]
        ),
        1.0
    );
}

/// The ENTRY_NO of the entry at `cursor`.
fn entry_no_at(jdir: &Path, cursor: &str) -> u64 {
    let out = Command::new("journalctl")
        .arg(format!("--directory={}", jdir.display()))
        .arg(format!("--cursor={cursor}"))
        .args(["-n", "1", "-o", "json", "--no-pager", "-q"])
        .output()
        .expect("journalctl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("journalctl JSON");
    v["ENTRY_NO"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("ENTRY_NO")
}

/// SIGKILL at a random moment soon after entries were counted: the next
/// run resumes exactly after the cursor saved (every entry after it
/// counted once, none before it), and the saved cursor is never ahead of
/// what the killed run counted. What the killed run counted past the
/// cursor (up to 1 s of acknowledged entries, the documented bound) is
/// what the next run counts again.
#[test]
fn journald_sigkill_mid_read_resumes_exactly_after_the_saved_cursor() {
    let name = "jdkill";
    let s = setup(name, ", start_at = \"beginning\"");
    std::fs::write(
        s.dir.join("p.toml"),
        pipeline(name, &s.jdir, ", start_at = \"beginning\"").replace(
            "plugin = \"json-log\"\n",
            "plugin = \"json-log\"\nbatch_lines = 16\n",
        ),
    )
    .expect("config");
    let total = 6000;
    append_journal(&s.jdir, &mixed(1, total));
    let mut rng = Rng(0x5eed_1234);
    let mut a = Agent::start(&s.dir, &s.state);
    // Some entries counted, not all.
    let mid = a.wait_for(60, "some entries counted", |sc| counted(sc).0 >= 200.0);
    std::thread::sleep(Duration::from_millis(rng.below(400)));
    let before = a.scrape();
    a.kill();
    let (seen, _, _) = counted(&before);
    assert!(counted(&mid).0 <= seen);
    let cursor = saved_cursor(&s.state, name).expect("a cursor was saved");
    let at = entry_no_at(&s.jdir, &cursor);
    eprintln!("killed after {seen} nginx entries counted; cursor saved at entry {at} of {total}");
    // Never ahead of what was applied: the killed run counted at least the
    // nginx entries up to the cursor.
    let upto = nginx_nos(1, at).count() as f64;
    assert!(
        upto <= seen,
        "cursor at entry {at} ({upto} nginx entries) ahead of the {seen} counted"
    );
    // The values saved with that cursor come back, and the entries after
    // it are counted once: exact, whatever the killed run had counted.
    let a = Agent::start(&s.dir, &s.state);
    wait_counted(&a, expected(nginx_nos(1, total)));
}

/// journalctl exiting is logged naming the pipeline, counted, and
/// restarted with back-off (from the cursor reached); output lines that
/// are not JSON entries are counted as invalid, never fatal. A stand-in
/// `journalctl` (a script first in PATH) prints a line that is not JSON
/// and one entry, then exits; started again with `--cursor`, it prints
/// only the line that is not JSON.
#[test]
fn journald_journalctl_exiting_is_restarted_and_bad_lines_counted() {
    let name = "jdexit";
    let s = setup(name, ", start_at = \"beginning\", cursor_interval = \"1h\"");
    let bin = s.dir.join("fake-bin");
    std::fs::create_dir_all(&bin).expect("dir");
    let script = bin.join("journalctl");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'Hint: not JSON'\ncase \"$*\" in *--cursor=*) exit 3;; esac\necho '{\"__CURSOR\":\"s=1;i=1\",\"_SYSTEMD_UNIT\":\"nginx.service\",\"PRIORITY\":\"3\",\"ENTRY_NO\":\"5\"}'\nexit 3\n",
    )
    .expect("script");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let a = Agent::spawn_with(&s.dir, &s.state, &s.state, &[("PATH", path.as_str())]);
    a.wait_ready();
    let sc = a.wait_for(20, "journalctl exits counted", |sc| {
        sc.val(
            "weir_source_errors_total",
            &[("pipeline", name), ("reason", "exit")],
        ) >= 2.0
    });
    assert_eq!(counted(&sc), expected([5]), "the entry counted once");
    assert!(sc.val("weir_source_lines_invalid_total", &[("pipeline", name)]) >= 2.0);
    let log = a.log_text();
    assert!(
        log.contains("exited") && log.contains(name) && log.contains("--cursor=s=1;i=1"),
        "{log}"
    );
}

/// `start_at = "end"` (the default): entries already in the journal are
/// not read, those written afterwards are; the start is saved at once, so
/// a SIGKILL right away does not move it to the new end.
#[test]
fn journald_start_at_end_reads_only_new_entries() {
    let name = "jdend";
    let s = setup(name, "");
    append_journal(&s.jdir, &mixed(1, 20));
    let mut a = Agent::start(&s.dir, &s.state);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.log_text().contains("reading the journal from the end") {
        assert!(Instant::now() < deadline, "{}", a.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = saved_cursor(&s.state, name).expect("the start saved at once");
    assert_eq!(entry_no_at(&s.jdir, &start), 20);
    a.kill();
    append_journal(&s.jdir, &mixed(21, 40));
    let a = Agent::start(&s.dir, &s.state);
    wait_counted(&a, expected(nginx_nos(21, 40)));
    append_journal(&s.jdir, &mixed(41, 50));
    wait_counted(&a, expected(nginx_nos(21, 50)));
}
