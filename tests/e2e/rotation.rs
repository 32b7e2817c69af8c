//! Log files rotated while a writer appends without pause: every kind of
//! rotation the file source handles, each five or more times, and every
//! line counted exactly once.
//!
//! Lines are `line N` with N counting up from 0. The pipeline counts them
//! twice over: `NAME_lines_total` (+1 per line) and `NAME_numbers_total`
//! (+N per line). A lost line and a doubled line could cancel out in the
//! first; they cannot in both, so `lines == written` together with
//! `numbers == 0 + 1 + ... + (written - 1)` means each line was counted
//! once.
use crate::support::*;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines per write, and the pause between writes: about 4000 lines/s.
pub(crate) const CHUNK: u64 = 20;
pub(crate) const EVERY: Duration = Duration::from_millis(5);

/// How the writer holds its file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Hold {
    /// Open (append, create), write, close: every write goes to whatever
    /// the path names at that moment.
    OpenEach,
    /// Keep the file open, like a daemon, until asked to reopen (what a
    /// `postrotate` SIGHUP does): meanwhile writes go to the old file,
    /// renamed or deleted.
    KeepOpen,
}

struct WriterState {
    /// Next line number; also the number of lines written.
    next: u64,
    file: Option<File>,
}

struct WriterShared {
    path: PathBuf,
    hold: Hold,
    state: Mutex<WriterState>,
    paused: AtomicBool,
    stop: AtomicBool,
}

impl WriterShared {
    /// Write `n` lines now (state locked by the caller).
    fn write(&self, st: &mut WriterState, n: u64) {
        if self.hold == Hold::OpenEach || st.file.is_none() {
            st.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .expect("open log for append"),
            );
        }
        let text: String = (st.next..st.next + n)
            .map(|i| format!("line {i}\n"))
            .collect();
        if let Some(f) = st.file.as_mut() {
            f.write_all(text.as_bytes()).expect("append");
        }
        if self.hold == Hold::OpenEach {
            st.file = None;
        }
        st.next += n;
    }
}

/// Appends numbered lines to a file at a steady rate (`CHUNK` lines every
/// `EVERY`) on its own thread.
pub(crate) struct LineWriter {
    shared: Arc<WriterShared>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl LineWriter {
    pub(crate) fn start(path: PathBuf, hold: Hold) -> LineWriter {
        let shared = Arc::new(WriterShared {
            path,
            hold,
            state: Mutex::new(WriterState {
                next: 0,
                file: None,
            }),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let handle = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                {
                    let mut st = s.state.lock().expect("writer lock");
                    if !s.paused.load(Ordering::Relaxed) {
                        s.write(&mut st, CHUNK);
                    }
                }
                std::thread::sleep(EVERY);
            }
        });
        LineWriter {
            shared,
            handle: Some(handle),
        }
    }

    /// Stop writing (no write is in progress when this returns); returns
    /// the number of lines written.
    pub(crate) fn pause(&self) -> u64 {
        self.shared.paused.store(true, Ordering::Relaxed);
        self.shared.state.lock().expect("writer lock").next
    }

    pub(crate) fn resume(&self) {
        self.shared.paused.store(false, Ordering::Relaxed);
    }

    /// Lines written so far.
    pub(crate) fn written(&self) -> u64 {
        self.shared.state.lock().expect("writer lock").next
    }

    /// Write `n` lines at once, from this thread.
    pub(crate) fn burst(&self, n: u64) {
        let mut st = self.shared.state.lock().expect("writer lock");
        self.shared.write(&mut st, n);
    }

    /// `KeepOpen`: close the file; the next write opens the path again.
    pub(crate) fn reopen(&self) {
        self.shared.state.lock().expect("writer lock").file = None;
    }

    /// Stop; returns the number of lines written.
    pub(crate) fn finish(mut self) -> u64 {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("writer thread");
        }
        self.written()
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// 0 + 1 + ... + (n - 1): what `NAME_numbers_total` reaches after lines
/// 0..n, each counted once.
pub(crate) fn numbers_sum(from: u64, to: u64) -> f64 {
    let tri = |n: u64| (n as u128 * n.saturating_sub(1) as u128 / 2) as f64;
    tri(to) - tri(from)
}

/// A pipeline `name` counting lines and summing line numbers of `paths`
/// (TOML strings, e.g. `"app.log"`, relative to the config directory).
/// `source_extra` goes inside the source table (`, start_at = "end"`).
pub(crate) fn counting_pipeline(name: &str, paths: &[&str], source_extra: &str) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    format!(
        r#"[pipeline.{name}]
plugin = "regex-log"
source = {{ type = "file", paths = [{paths}]{source_extra} }}

[[pipeline.{name}.config.metrics]]
name = "{name}_lines_total"
type = "counter"
help = "Lines."

[[pipeline.{name}.config.metrics]]
name = "{name}_numbers_total"
type = "counter"
help = "Sum of line numbers."

[[pipeline.{name}.config.rules]]
regex = '^line (?P<n>\d+)$'
emit = [ {{ metric = "{name}_lines_total" }}, {{ metric = "{name}_numbers_total", value = "n" }} ]
"#,
        paths = paths.join(", ")
    )
}

/// (lines counted, line numbers summed) of pipeline `name`.
pub(crate) fn counted(s: &Scrape, name: &str) -> (f64, f64) {
    (
        s.val(&format!("{name}_lines_total"), &[]),
        s.val(&format!("{name}_numbers_total"), &[]),
    )
}

/// Wait until pipeline `name` counted lines `from..to` exactly (`from` was
/// counted before, by an earlier run). A count past the target fails at
/// once: it can only come down by a restart.
pub(crate) fn wait_counted(agent: &Agent, name: &str, from: u64, to: u64, secs: u64) -> Scrape {
    let want = ((to - from) as f64, numbers_sum(from, to));
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = agent.scrape();
        let got = counted(&s, name);
        if got == want {
            return s;
        }
        assert!(
            got.0 <= want.0,
            "{name}: counted {} lines, {} written (lines {from}..{to}): doubled\n{}",
            got.0,
            want.0,
            agent.log_text()
        );
        if Instant::now() > deadline {
            panic!(
                "{name}: after {secs}s, counted {:?} of lines {from}..{to}, want {want:?}\nscrape:\n{}\nlog:\n{}",
                got,
                s.text,
                agent.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary config directory holding one pipeline file.
pub(crate) fn setup(pipeline: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("logs.toml"), pipeline).expect("write pipeline");
    (tmp, dir)
}

fn rotations(s: &Scrape, name: &str, path: &Path, what: &str) -> f64 {
    s.val(
        &format!("weir_file_{what}_total"),
        &[("pipeline", name), ("path", &path.display().to_string())],
    )
}

/// Shift `app.log.N` to `app.log.N+1` (the last one, `keep`, is deleted),
/// like logrotate with `rotate keep`.
fn shift(log: &Path, keep: u32) {
    let gen = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    let _ = std::fs::remove_file(gen(keep));
    for n in (1..keep).rev() {
        if gen(n).exists() {
            std::fs::rename(gen(n), gen(n + 1)).expect("shift rotated file");
        }
    }
}

/// Rename-and-create (logrotate's default, with `create` and a
/// `postrotate` that makes the daemon reopen its log): the writer keeps
/// its file open and goes on writing into `app.log.1` for up to 150 ms
/// after the rename, then reopens `app.log`.
fn rename_and_create(glob: &str, name: &str) {
    let (tmp, dir) = setup(&counting_pipeline(
        name,
        &[glob],
        ", start_at = \"beginning\"",
    ));
    let log = dir.join("app.log");
    File::create(&log).expect("create log");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let w = LineWriter::start(log.clone(), Hold::KeepOpen);
    let mut rng = Rng(0x5eed_0001);
    let rotations_made = 7;
    for _ in 0..rotations_made {
        std::thread::sleep(Duration::from_millis(200 + rng.below(200)));
        shift(&log, 3);
        std::fs::rename(&log, dir.join("app.log.1")).expect("rotate");
        File::create(&log).expect("create new log");
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        w.reopen();
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = w.finish();
    let s = wait_counted(&agent, name, 0, n, 30);
    assert!(
        rotations(&s, name, &log, "rotations") >= rotations_made as f64,
        "{}",
        s.text
    );
    // Nothing more arrives later (a rotated file read again, say).
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        counted(&agent.scrape(), name),
        (n as f64, numbers_sum(0, n))
    );
    eprintln!("{name}: {rotations_made} rotations, {n} lines, each counted once");
}

#[test]
fn rename_and_create_with_glob_on_the_live_file() {
    rename_and_create("app.log", "renamed");
}

/// `app.log*` also matches the rotated files: each one is known by its
/// identity under its new name and never read again from the start.
#[test]
fn rename_and_create_with_glob_covering_rotated_files() {
    rename_and_create("app.log*", "renamed_all");
}

/// copytruncate (logrotate copies the file, then truncates it in place;
/// the writer keeps appending with O_APPEND).
///
/// Two sources of loss here are copytruncate's own, not the agent's:
/// lines written between the copy and the truncation are in neither file,
/// and lines the agent had not read yet when the file was truncated exist
/// only in the copy, which the glob (`app.log`) does not cover. So the
/// writer pauses, the test waits until the agent has counted every line
/// written so far, and only then copies and truncates. With that, the
/// expected count is exactly the number of lines written: what the agent
/// must get right is noticing the truncation and reading the new content
/// from its start, including lines written at once after it.
#[test]
fn copytruncate() {
    let name = "copied";
    let (tmp, dir) = setup(&counting_pipeline(
        name,
        &["app.log"],
        ", start_at = \"beginning\"",
    ));
    let log = dir.join("app.log");
    File::create(&log).expect("create log");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let w = LineWriter::start(log.clone(), Hold::OpenEach);
    let mut rng = Rng(0x5eed_0002);
    let truncations = 6;
    for i in 0..truncations {
        std::thread::sleep(Duration::from_millis(200 + rng.below(200)));
        let n = w.pause();
        wait_counted(&agent, name, 0, n, 30);
        shift(&log, 3);
        std::fs::copy(&log, dir.join("app.log.1")).expect("copy");
        OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        if i % 2 == 1 {
            // Some lines at once, before the agent's next look.
            w.burst(3);
        }
        w.resume();
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = w.finish();
    let s = wait_counted(&agent, name, 0, n, 30);
    assert_eq!(
        rotations(&s, name, &log, "truncations"),
        truncations as f64,
        "{}",
        s.text
    );
    eprintln!("{name}: {truncations} copytruncates, {n} lines, each counted once");
}

/// Truncation in place (`: > app.log`). As for copytruncate, lines not yet
/// read when the file is emptied are gone, so the writer pauses and the
/// test waits until everything written was counted before truncating. On
/// every other truncation, more bytes than the agent had read are written
/// at once after it: the file is then longer than the agent's offset
/// before the agent looks again, and only the changed first bytes tell it
/// the content is new.
#[test]
fn truncation() {
    let name = "truncated";
    let (tmp, dir) = setup(&counting_pipeline(
        name,
        &["app.log"],
        ", start_at = \"beginning\"",
    ));
    let log = dir.join("app.log");
    File::create(&log).expect("create log");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let w = LineWriter::start(log.clone(), Hold::OpenEach);
    let mut rng = Rng(0x5eed_0003);
    let truncations = 6;
    for i in 0..truncations {
        std::thread::sleep(Duration::from_millis(200 + rng.below(200)));
        let n = w.pause();
        wait_counted(&agent, name, 0, n, 30);
        let len = std::fs::metadata(&log).expect("stat").len();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        if i % 2 == 0 {
            // "line NNNNN\n" is at most 11 bytes here: this outgrows `len`.
            w.burst(len / 8 + 10);
        }
        w.resume();
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = w.finish();
    let s = wait_counted(&agent, name, 0, n, 30);
    assert_eq!(
        rotations(&s, name, &log, "truncations"),
        truncations as f64,
        "{}",
        s.text
    );
    eprintln!("{name}: {truncations} truncations, {n} lines, each counted once");
}

/// The file is deleted and created again. The writer keeps its file open
/// and writes into the deleted file for up to 150 ms before it reopens
/// (creating the new file); the agent still holds the deleted file open
/// and reads it to the end.
#[test]
fn deletion_and_recreation() {
    let name = "deleted";
    let (tmp, dir) = setup(&counting_pipeline(
        name,
        &["app.log"],
        ", start_at = \"beginning\"",
    ));
    let log = dir.join("app.log");
    File::create(&log).expect("create log");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let w = LineWriter::start(log.clone(), Hold::KeepOpen);
    let mut rng = Rng(0x5eed_0004);
    let deletions = 6;
    for i in 0..deletions {
        std::thread::sleep(Duration::from_millis(200 + rng.below(200)));
        std::fs::remove_file(&log).expect("delete");
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(150)));
        }
        w.reopen();
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = w.finish();
    let s = wait_counted(&agent, name, 0, n, 30);
    assert!(
        rotations(&s, name, &log, "rotations") >= deletions as f64,
        "{}",
        s.text
    );
    eprintln!("{name}: {deletions} deletions, {n} lines, each counted once");
}

/// A file (and its directory) that does not exist when the agent starts
/// is waited for, and read from its first line when it appears, even with
/// `start_at = "end"` (which is about files present at startup). Then it
/// is rotated by rename like any other.
#[test]
fn file_missing_at_startup_is_waited_for() {
    let name = "late";
    let (tmp, dir) = setup(&counting_pipeline(
        name,
        &["later/app.log"],
        ", start_at = \"end\"",
    ));
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let s = agent.scrape();
    assert_eq!(counted(&s, name), (0.0, 0.0));
    std::thread::sleep(Duration::from_millis(700));
    let later = dir.join("later");
    std::fs::create_dir_all(&later).expect("mkdir");
    let log = later.join("app.log");
    let w = LineWriter::start(log.clone(), Hold::OpenEach);
    let mut rng = Rng(0x5eed_0005);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200 + rng.below(200)));
        std::fs::rename(&log, later.join("app.log.1")).expect("rotate");
    }
    std::thread::sleep(Duration::from_millis(300));
    let n = w.finish();
    wait_counted(&agent, name, 0, n, 30);
    eprintln!("{name}: {n} lines of a file created after startup, each counted once");
}
