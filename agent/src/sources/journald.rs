//! The systemd journal, read through `journalctl` (the journal's own
//! reader: weir does not parse journal files). Each entry reaches the
//! plugin as one line, a JSON object as `journalctl -o json` prints it
//! (`MESSAGE`, `PRIORITY`, `_SYSTEMD_UNIT`, ... as strings; binary fields
//! as arrays of bytes).
//!
//! `journalctl --output=json --follow --all --no-pager --no-tail` runs as a
//! child process (like an `exec` source: its own process group, killed
//! with the pipeline, restarted with back-off when it exits, its standard
//! error logged), with `--directory` and the match terms when given.
//!
//! **Position.** The position is the journal cursor (`__CURSOR`) of the
//! last entry the plugin applied, kept in the pipeline's checkpoint file
//! (`journal_cursor`, written atomically like file offsets). Batches are
//! acknowledged by the plugin worker once applied; only then does their
//! last cursor become the position. journalctl is started with
//! `--cursor=` that cursor (the entry there, printed again, is dropped), so
//! a restart resumes right after it:
//! after SIGTERM nothing is read twice (the final checkpoint is written on
//! stop); after SIGKILL at most the entries acknowledged since the last
//! checkpoint write (every [`super::file::CHECKPOINT_EVERY`]) are read
//! again, the same bound as files. Without a cursor, `start_at = "end"`
//! takes the journal's last cursor at startup (saved at once, so a crash
//! right after startup does not skip what came meanwhile) and reads what
//! comes after it; `start_at = "beginning"` reads every entry there is.
//!
//! **Filtered-out stretches.** With `matches`, journalctl prints only the
//! matching entries, so the cursor of the last one applied may lie far
//! behind the journal's end. Every `cursor_interval`, when the source read
//! nothing since the last tick and every entry sent was acknowledged, the
//! source asks for the journal's last cursor (no matches, `-n 1`), then
//! checks that no matching entry lies after the position (the same
//! matches, `--cursor` and `-n 2`). Only when that check prints no entry
//! but the one at the position
//! is the last cursor saved: every entry up to it existed before the check
//! ran, and none of them is a matching one still to be read. A matching
//! entry that arrives in between fails the check, and the cursor is tried
//! again at the next tick.
use super::exec::{self, ChildSlot};
use super::file::{Checkpoints, JOURNAL_ID};
use super::framing::{Framer, Lines, Resume};
use super::{count, send_lines, wait_readable, Batch, Wait};
use crate::config::StartAt;
use crate::stats::PipelineStats;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// The program run (looked up in `PATH`).
pub const JOURNALCTL: &str = "journalctl";
/// Bytes read at a time from journalctl's output.
const READ_CHUNK: usize = 64 << 10;
/// Longest output of a one-off query (the last cursor, the check), in
/// bytes: one entry reduced to its cursor and timestamps.
const QUERY_MAX_BYTES: usize = 64 << 10;
/// How long a one-off query may take before it is given up on.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a journald source.
#[derive(Clone, Debug)]
pub struct JournaldSettings {
    /// journalctl match terms (`FIELD=value`, `+`), passed as they are.
    pub matches: Vec<String>,
    /// A directory of journal files (`--directory`); `None`: the system
    /// journal.
    pub directory: Option<String>,
    /// Where to start without a saved cursor.
    pub start_at: StartAt,
    /// How often the journal's last cursor is considered while no entry
    /// matches (only with `matches`).
    pub cursor_interval: Duration,
    /// Longest entry (JSON line) passed on, in bytes; longer ones are
    /// counted as cut and invalid, and skipped.
    pub max_line_bytes: usize,
    /// Most entries per batch.
    pub batch_lines: usize,
}

impl JournaldSettings {
    fn base(&self) -> Vec<String> {
        let mut a = vec![JOURNALCTL.to_string()];
        if let Some(d) = &self.directory {
            a.push(format!("--directory={d}"));
        }
        a
    }

    /// The follow command, from `cursor` when there is one.
    ///
    /// `--cursor=C`, not `--after-cursor=C`: journalctl (systemd 252)
    /// skips one entry more after the cursor's position, which with
    /// matches loses the first matching entry after a cursor that does not
    /// match (one saved while nothing matched). The entry at `C` itself,
    /// printed when it matches, is dropped by the reader.
    pub fn follow_command(&self, cursor: Option<&str>) -> Vec<String> {
        let mut a = self.base();
        a.extend(
            [
                "--output=json",
                "--follow",
                "--all",
                "--no-pager",
                "--no-tail",
                "--quiet",
            ]
            .map(String::from),
        );
        if let Some(c) = cursor {
            a.push(format!("--cursor={c}"));
        }
        a.extend(self.matches.iter().cloned());
        a
    }

    /// The query for the journal's last entry, all matches aside.
    fn last_command(&self) -> Vec<String> {
        let mut a = self.base();
        a.extend(
            [
                "--output=json",
                "--output-fields=__CURSOR",
                "--lines=1",
                "--no-pager",
                "--quiet",
            ]
            .map(String::from),
        );
        a
    }

    /// The query for the first two matching entries from `cursor` on
    /// (with a cursor, `--lines` counts from it): one whose cursor is not
    /// `cursor` lies after it. Without a cursor, any entry printed.
    fn check_command(&self, cursor: Option<&str>) -> Vec<String> {
        let mut a = self.base();
        a.extend(
            [
                "--output=json",
                "--output-fields=__CURSOR",
                "--lines=2",
                "--no-pager",
                "--quiet",
            ]
            .map(String::from),
        );
        if let Some(c) = cursor {
            a.push(format!("--cursor={c}"));
        }
        a.extend(self.matches.iter().cloned());
        a
    }
}

/// The `__CURSOR` of an entry as journalctl prints it: parsed when the
/// line is a JSON object (`Ok`), else looked for in the text (a line cut
/// at `max_line_bytes` usually still holds it) as `Err(Some(..))`.
pub fn entry_cursor(line: &str) -> Result<String, Option<String>> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line) {
        Ok(map) => match map.get("__CURSOR") {
            Some(serde_json::Value::String(c)) => Ok(c.clone()),
            _ => Err(None),
        },
        Err(_) => {
            const KEY: &str = "\"__CURSOR\":\"";
            let Some(at) = line.find(KEY) else {
                return Err(None);
            };
            let rest = &line[at + KEY.len()..];
            // A cursor is plain ASCII (`s=..;i=..;...`): no escapes.
            match rest.find('"') {
                Some(end) if end > 0 && !rest[..end].contains('\\') => {
                    Err(Some(rest[..end].to_string()))
                }
                _ => Err(None),
            }
        }
    }
}

/// Run a one-off journalctl query; its output (at most
/// [`QUERY_MAX_BYTES`]), or why it failed. A query still running after
/// [`QUERY_TIMEOUT`] is killed (with its process group), so a journalctl
/// that hangs cannot hold the source, or the pipeline's stop, for ever.
fn query(argv: &[String]) -> Result<String, String> {
    let shown = argv.join(" ");
    let mut child = exec::spawn(argv, &[]).map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // Signals the child only while it is not reaped (the reads below end,
    // and `done` is sent, before `wait`), so its id cannot be reused.
    let watchdog = std::thread::Builder::new()
        .name("journalctl-query".into())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                done_rx.recv_timeout(QUERY_TIMEOUT)
            {
                if pid > 0 {
                    // SAFETY: kill(2) on the child's own process group
                    // (process_group(0)); the child is not reaped yet.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                }
            }
        })
        .ok();
    let mut out = Vec::new();
    if let Some(s) = child.stdout.take() {
        let _ = s.take(QUERY_MAX_BYTES as u64).read_to_end(&mut out);
    }
    let mut err = Vec::new();
    if let Some(s) = child.stderr.take() {
        let _ = s.take(4096).read_to_end(&mut err);
    }
    let _ = done_tx.send(());
    if let Some(w) = watchdog {
        let _ = w.join();
    }
    // The pipes are closed: a journalctl with more to say gets SIGPIPE.
    let status = child.wait().map_err(|e| format!("`{shown}`: {e}"))?;
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        return Err(format!("`{shown}` failed ({status}): {}", err.trim()));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The cursor of the first entry a query printed, if it printed one.
fn first_cursor(out: &str) -> Option<String> {
    out.lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| entry_cursor(l).ok())
}

/// Follow the journal until `stop`; restart journalctl when it exits.
pub fn run(
    settings: JournaldSettings,
    tx: Sender<Batch>,
    stats: Arc<PipelineStats>,
    checkpoints: Arc<Checkpoints>,
    stop: Arc<AtomicBool>,
    slot: ChildSlot,
    pipeline: String,
) {
    let origin: Arc<str> = Arc::from(match &settings.directory {
        Some(d) => format!("journal:{d}"),
        None => "journal".to_string(),
    });
    // A directory that does not exist yet (journal-remote creates its
    // output at the first upload) is waited for like a missing log file,
    // but said once, so a typo in the path is seen in the log.
    if let Some(d) = settings.directory.as_deref() {
        if !std::path::Path::new(d).is_dir() {
            tracing::warn!(
                pipeline = %pipeline,
                directory = %d,
                "journald source: the directory is not there (yet); its entries are read once journal files appear in it"
            );
        }
    }
    let mut sup = exec::Supervisor::new(
        &pipeline,
        &stats,
        &stop,
        &slot,
        " (is journalctl installed and in PATH?)",
    );
    // Entry numbers, across journalctl restarts (see JOURNAL_ID).
    let mut next_entry: u64 = 0;
    // The cursor of the last entry sent: where a restarted journalctl
    // continues, whether the plugin applied it yet or not.
    let mut sent: Option<String> = checkpoints.journal_cursor();
    match &sent {
        Some(c) => tracing::info!(
            pipeline = %pipeline,
            cursor = %c,
            "reading the journal after its checkpoint cursor (start_at applies only without one; `weir state reset PIPELINE` forgets it)"
        ),
        // Found in the loop below, before journalctl is followed.
        None if settings.start_at == StartAt::End => {}
        None => tracing::info!(
            pipeline = %pipeline,
            "reading the journal from the beginning (start_at = \"beginning\")"
        ),
    }
    let mut find_end = sent.is_none() && settings.start_at == StartAt::End;
    while !stop.load(Ordering::Relaxed) {
        if find_end {
            // Where "the end" is, found before anything is read, and
            // again after a failure: following without a cursor would
            // read the whole journal.
            match query(&settings.last_command()).map(|o| first_cursor(&o)) {
                Ok(Some(c)) => {
                    // Saved at once: a crash now must not apply "end" again.
                    checkpoints.journal_skip_to(c.clone(), true);
                    tracing::info!(
                        pipeline = %pipeline,
                        cursor = %c,
                        "reading the journal from the end (start_at = \"end\": only entries written from now on; start_at = \"beginning\" reads what is there)"
                    );
                    sent = Some(c);
                }
                Ok(None) => tracing::info!(
                    pipeline = %pipeline,
                    "reading the journal from the beginning: it has no entry yet"
                ),
                Err(e) => {
                    sup.failed(&format!(
                        "journald source: cannot find the journal's end: {e}"
                    ));
                    continue;
                }
            }
            find_end = false;
        }
        let argv = settings.follow_command(sent.as_deref());
        let shown = argv.join(" ");
        let go_on = sup.run_once(&argv, &[], &shown, |out| {
            let mut reader = Reader {
                drop_first: sent.clone(),
                settings: &settings,
                tx: &tx,
                stats: &stats,
                checkpoints: &checkpoints,
                stop: &stop,
                origin: &origin,
                pipeline: &pipeline,
                next_entry: &mut next_entry,
                sent: &mut sent,
            };
            reader.pump(out).is_err()
        });
        if !go_on {
            return;
        }
    }
}

struct Reader<'a> {
    /// The cursor journalctl was started at: the entry there, if printed
    /// first, was sent already.
    drop_first: Option<String>,
    settings: &'a JournaldSettings,
    tx: &'a Sender<Batch>,
    stats: &'a PipelineStats,
    checkpoints: &'a Checkpoints,
    stop: &'a AtomicBool,
    origin: &'a Arc<str>,
    pipeline: &'a str,
    next_entry: &'a mut u64,
    sent: &'a mut Option<String>,
}

impl Reader<'_> {
    /// Read journalctl's output to its end (`Err`: the pipeline is gone).
    fn pump(&mut self, mut out: std::process::ChildStdout) -> Result<(), super::Closed> {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut framer = Framer::new(self.settings.max_line_bytes, Resume::default());
        let tick = self.settings.cursor_interval;
        let mut next_tick = Instant::now() + tick;
        let mut read_since_tick = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                // Stopped: what was read is sent below; journalctl is killed.
                break;
            }
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            match wait_readable(&out, wait) {
                Wait::Interrupted => continue,
                Wait::TimedOut => {
                    // Acknowledgements since the last write, written once
                    // due (the worker writes only while batches come).
                    self.checkpoints.persist_if_due();
                    if Instant::now() >= next_tick {
                        next_tick = Instant::now() + tick;
                        if !read_since_tick && framer.pending() == 0 {
                            self.skip_filtered();
                        }
                        read_since_tick = false;
                    }
                    continue;
                }
                Wait::Ready => {}
            }
            let n = match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(pipeline = %self.pipeline, "reading journalctl's output: {e}");
                    break;
                }
            };
            read_since_tick = true;
            self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            let mut lines = Lines::default();
            framer.feed(&buf[..n], &mut lines);
            self.send(lines)?;
        }
        let mut lines = Lines::default();
        framer.finish(&mut lines);
        self.send(lines)
    }

    /// Turn framed lines into entries and send them, acknowledged by
    /// entry number.
    fn send(&mut self, framed: Lines) -> Result<(), super::Closed> {
        if framed.is_empty() {
            return Ok(());
        }
        count(self.stats, &framed);
        let mut entries = Lines::default();
        let mut invalid = 0u64;
        let mut skipped_cursor = false;
        for line in framed.lines {
            let at_start = self.drop_first.take();
            match entry_cursor(&line) {
                Ok(cursor) if at_start.as_deref() == Some(cursor.as_str()) => {}
                Ok(cursor) => {
                    let n = *self.next_entry;
                    *self.next_entry += 1;
                    self.checkpoints.journal_sent(n, cursor.clone());
                    *self.sent = Some(cursor);
                    entries.lines.push(line);
                    entries.offsets.push(n);
                }
                Err(salvaged) => {
                    invalid += 1;
                    // Too long (cut) but its cursor is known: skipped, and
                    // the position moves past it all the same.
                    if let Some(cursor) = salvaged {
                        let n = *self.next_entry;
                        *self.next_entry += 1;
                        self.checkpoints.journal_sent(n, cursor.clone());
                        *self.sent = Some(cursor);
                        skipped_cursor = true;
                    }
                }
            }
        }
        if invalid > 0 {
            self.stats
                .lines_invalid
                .fetch_add(invalid, Ordering::Relaxed);
        }
        let ack = Some((
            JOURNAL_ID,
            Resume {
                offset: *self.next_entry,
                skip: false,
            },
        ));
        if entries.lines.is_empty() {
            if skipped_cursor {
                // Nothing for the plugin, but a position to acknowledge
                // once what was sent before is applied.
                let batch = Batch {
                    origin: self.origin.clone(),
                    lines: Vec::new(),
                    offsets: Vec::new(),
                    ack,
                    labels: Arc::from([]),
                };
                return self.tx.blocking_send(batch).map_err(|_| super::Closed);
            }
            return Ok(());
        }
        send_lines(
            self.tx,
            self.origin,
            entries,
            self.settings.batch_lines,
            ack,
        )
    }

    /// Every entry read was applied and nothing came for a tick: move the
    /// position to the journal's last entry if no matching entry is still
    /// to be read (see the module documentation).
    fn skip_filtered(&mut self) {
        if self.settings.matches.is_empty() || !self.checkpoints.journal_settled() {
            return;
        }
        let last = match query(&self.settings.last_command()) {
            Ok(out) => first_cursor(&out),
            Err(e) => {
                tracing::warn!(pipeline = %self.pipeline, "journald source: cannot find the journal's last cursor: {e}");
                return;
            }
        };
        let Some(last) = last else {
            return;
        };
        if self.sent.as_deref() == Some(last.as_str()) {
            return;
        }
        match query(&self.settings.check_command(self.sent.as_deref())) {
            Ok(out)
                if out
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .all(|l| entry_cursor(l).ok().as_deref() == self.sent.as_deref()) => {}
            // A matching entry is on its way: not now.
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(pipeline = %self.pipeline, "journald source: cannot check for matching entries: {e}");
                return;
            }
        }
        if self.checkpoints.journal_skip_to(last.clone(), false) {
            tracing::debug!(pipeline = %self.pipeline, cursor = %last, "no matching entry up to the journal's last one: position moved there");
            *self.sent = Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_from_entries_and_cut_lines() {
        let line = r#"{"MESSAGE":"hi","__CURSOR":"s=ab;i=3;b=cd","PRIORITY":"6"}"#;
        assert_eq!(entry_cursor(line), Ok("s=ab;i=3;b=cd".to_string()));
        // Cut: not JSON, the cursor still found.
        assert_eq!(
            entry_cursor(r#"{"__CURSOR":"s=ab;i=4","MESSAGE":"xxxxx"#),
            Err(Some("s=ab;i=4".to_string()))
        );
        // Cut inside the cursor, or not an entry at all.
        assert_eq!(entry_cursor(r#"{"__CURSOR":"s=ab;i"#), Err(None));
        assert_eq!(entry_cursor("-- No entries --"), Err(None));
        assert_eq!(entry_cursor(r#"{"MESSAGE":"no cursor"}"#), Err(None));
        assert_eq!(entry_cursor(r#"[1,2]"#), Err(None));
    }

    #[test]
    fn commands() {
        let s = JournaldSettings {
            matches: vec!["_SYSTEMD_UNIT=nginx.service".into()],
            directory: Some("/j".into()),
            start_at: StartAt::End,
            cursor_interval: Duration::from_secs(5),
            max_line_bytes: 1 << 16,
            batch_lines: 100,
        };
        let f = s.follow_command(Some("s=1"));
        assert_eq!(f[0], "journalctl");
        assert!(f.contains(&"--directory=/j".to_string()));
        assert!(f.contains(&"--cursor=s=1".to_string()));
        assert_eq!(
            f.last().map(String::as_str),
            Some("_SYSTEMD_UNIT=nginx.service")
        );
        assert!(!s.last_command().iter().any(|a| a.starts_with("_SYSTEMD")));
        let c = s.check_command(None);
        assert!(c.contains(&"--lines=2".to_string()));
        assert!(c.contains(&"_SYSTEMD_UNIT=nginx.service".to_string()));
    }
}
