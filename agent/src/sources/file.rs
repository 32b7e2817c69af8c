//! Following files: globs re-evaluated, rotation by rename or copytruncate,
//! truncation, deletion and re-creation, checkpoints that survive restarts.
//!
//! A file is known by device and inode, plus a fingerprint of its first
//! bytes (up to [`FINGERPRINT_BYTES`]) so that a reused inode, or a file
//! emptied and written again, is not taken for the content already read.
//!
//! - **Rename** (`mv app.log app.log.1`, then a new `app.log`): the renamed
//!   file is read to its end and kept open while it is still written to
//!   (a daemon writes into it until it reopens its log), and let go after
//!   [`ROTATE_WAIT`] without new data; the new file is read from its start.
//!   If the globs also match the new name, the file is simply followed
//!   under that name: it is never read twice.
//! - **Deletion**: the same; the deleted file is held open and read out.
//! - **Truncation and copytruncate**: a file shorter than what was read, or
//!   whose first bytes changed, is read again from its start. Bytes read
//!   while the file was being rewritten under us are checked the same way
//!   before they are passed on.
//!
//! Offsets are checkpointed only once the plugin's updates for those lines
//! are applied (the worker acknowledges each batch), so a crash never loses
//! a line; it may count again at most the lines acknowledged since the
//! last checkpoint write, which happens every [`CHECKPOINT_EVERY`] while
//! anything changed.
use super::container::Decoder;
use super::framing::{Framer, Lines, Resume};
use super::multiline::Joiner;
use super::{send_labelled, Batch, Closed};
use crate::config::{LineFormat, MultilineSettings, StartAt, CONTAINER_LABELS};
use crate::stats::PipelineStats;
use crate::store::{PipelineStore, SavedSeries};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// Bytes of a file's start used as its fingerprint.
pub const FINGERPRINT_BYTES: usize = 256;
/// How often globs are expanded again.
const RESCAN_EVERY: Duration = Duration::from_millis(500);
/// How often acknowledged offsets are written to disk (when they changed).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// A file renamed away or deleted is let go once it got no new data for
/// this long.
pub const ROTATE_WAIT: Duration = Duration::from_secs(5);
/// Sleep between polls when no file had new data.
const IDLE_POLL: Duration = Duration::from_millis(50);
const READ_CHUNK: usize = 256 << 10;
/// With `start_at = "end"`, how far back from the end a line start is
/// looked for, so that a line being written at startup is read whole.
const LINE_START_WINDOW: u64 = 64 << 10;

/// Identity of a file across renames and restarts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    /// Length of the fingerprinted prefix (less than FINGERPRINT_BYTES for
    /// a file that was shorter when last looked at).
    fp_len: usize,
    fp: u64,
}

impl FileKey {
    fn same_inode(&self, md: &std::fs::Metadata) -> bool {
        self.dev == md.dev() && self.ino == md.ino()
    }

    fn same_ino(&self, other: &FileKey) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Up to `len` bytes from the start of `file` (the read position is not
/// moved).
fn prefix(file: &File, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = file.read_at(&mut buf[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// The key of an open file, fingerprinting what its start holds now.
fn identify(file: &File) -> std::io::Result<FileKey> {
    let md = file.metadata()?;
    let bytes = prefix(file, FINGERPRINT_BYTES)?;
    Ok(FileKey {
        dev: md.dev(),
        ino: md.ino(),
        fp_len: bytes.len(),
        fp: fnv(&bytes),
    })
}

/// What the start of a followed file says about it.
#[derive(Debug, PartialEq)]
enum Prefix {
    /// Still the content the key describes.
    Same,
    /// The same, and longer than the key's fingerprint: a better key.
    Longer(FileKey),
    /// Not the content the key describes (emptied and written again).
    Changed,
}

fn check_prefix(file: &File, key: &FileKey) -> std::io::Result<Prefix> {
    let bytes = prefix(file, FINGERPRINT_BYTES)?;
    if bytes.len() < key.fp_len || fnv(&bytes[..key.fp_len]) != key.fp {
        return Ok(Prefix::Changed);
    }
    if bytes.len() > key.fp_len {
        return Ok(Prefix::Longer(FileKey {
            fp_len: bytes.len(),
            fp: fnv(&bytes),
            ..key.clone()
        }));
    }
    Ok(Prefix::Same)
}

/// Where "the end" of a file is for `start_at = "end"`: after its last
/// newline, so that a line being written now is read whole. Returns the
/// offset and whether the bytes from there up to the next newline are to
/// be skipped (a line longer than the window).
fn line_start_near_end(file: &File, size: u64) -> (u64, bool) {
    let from = size.saturating_sub(LINE_START_WINDOW);
    let mut buf = vec![0u8; (size - from) as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], from + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    if got < buf.len() {
        return (size, false);
    }
    match memchr::memrchr(b'\n', &buf) {
        Some(i) => (from + i as u64 + 1, false),
        None if from == 0 => (0, false),
        None => (size, true),
    }
}

/// Offsets acknowledged per file, shared by the tailer (which registers
/// files) and the plugin worker (which acknowledges batches), and, when the
/// pipeline keeps its values across restarts, its series values: written
/// together, so that the file always holds a pair that belong together.
///
/// The pair is consistent because the worker holds [`Checkpoints::gate`]
/// from applying a batch until it acknowledged it, and a write takes the
/// gate before it reads the store and the offsets: no write sees values
/// of lines whose offsets are not acknowledged yet, or the reverse.
#[derive(Debug)]
pub struct Checkpoints {
    entries: Mutex<HashMap<u64, Entry>>,
    /// A journald source's position (see [`JOURNAL_ID`]).
    journal: Mutex<Journal>,
    path: Option<CheckpointFile>,
    dirty: AtomicBool,
    /// Held while writing; when the last write was made (none yet: the
    /// first registration is written at once, so that a crash right after
    /// startup does not apply `start_at = "end"` a second time).
    written: Mutex<Option<Instant>>,
    /// The pipeline's store, when its values are kept with the offsets.
    values: Mutex<Option<Arc<Mutex<PipelineStore>>>>,
    /// Held by the worker from applying a batch to acknowledging it, and
    /// by a write while it reads what it writes.
    gate: Mutex<()>,
    /// Saved entries the tailer has not found a file for (see
    /// [`Checkpoints::with_initial`]).
    carried: Mutex<Vec<Entry>>,
    /// Entries the tailer is done with, by id: removed once acknowledged
    /// up to the offset given (see [`Checkpoints::retire`]).
    retiring: Mutex<HashMap<u64, u64>>,
    /// Write at the next chance, whatever the interval.
    urgent: AtomicBool,
    /// When the checkpoint file read at the start was written.
    initial_mtime: Mutex<Option<std::time::SystemTime>>,
    /// The checkpoint file as read at the pipeline's start, read once so
    /// that offsets, cursor and values all come from the same file.
    initial: Mutex<Option<OnDisk>>,
    /// A checkpoint too large with its values was written without them
    /// (told once).
    too_large_told: AtomicBool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: String,
    key: FileKey,
    offset: u64,
    /// The bytes at `offset` are the rest of a line already passed on cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    skip: bool,
    /// A saved entry whose file was not found since this time (seconds
    /// since the Unix epoch): carried into each write for [`CARRIED_FOR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    missing_since: Option<u64>,
}

/// How long the checkpoint of a file that was not found at a start is
/// kept, in case it comes back (a mount that comes up late, a log that is
/// only written now and then).
pub const CARRIED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// The JSON body of a checkpoint file (framed by [`super::checkpoint`]).
#[derive(Debug, Serialize, Deserialize, Default)]
struct OnDisk {
    #[serde(default)]
    files: Vec<Entry>,
    /// A journald source's cursor: the `__CURSOR` of the last entry
    /// applied (or of the journal's last entry, once every entry up to it
    /// was applied or did not match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    journal_cursor: Option<String>,
    /// The pipeline's series values as of the offsets and cursor above
    /// (absent when the pipeline does not keep them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    series: Option<SavedSeries>,
}

/// The checkpoint "entry" a journald source acknowledges batches with.
/// Its batches' offsets are entry numbers (counted from 0 since the source
/// started), not bytes; acknowledging offset `n` means every entry before
/// entry `n` was applied.
pub const JOURNAL_ID: u64 = u64::MAX;

/// A journald source's position: the cursor applied, and the cursors of
/// the entries sent to the plugin and not yet acknowledged.
#[derive(Debug, Default)]
struct Journal {
    cursor: Option<String>,
    /// (entry number, its cursor), in order.
    pending: std::collections::VecDeque<(u64, String)>,
    /// The cursor was read (from disk or handed over) once already.
    loaded: bool,
}

impl Checkpoints {
    /// Checkpoints kept in `path` (none kept when `None`).
    pub fn new(path: Option<CheckpointFile>) -> Arc<Self> {
        Arc::new(Checkpoints {
            entries: Mutex::new(HashMap::new()),
            journal: Mutex::new(Journal::default()),
            path,
            dirty: AtomicBool::new(false),
            written: Mutex::new(None),
            values: Mutex::new(None),
            gate: Mutex::new(()),
            carried: Mutex::new(Vec::new()),
            retiring: Mutex::new(HashMap::new()),
            urgent: AtomicBool::new(false),
            initial_mtime: Mutex::new(None),
            initial: Mutex::new(None),
            too_large_told: AtomicBool::new(false),
        })
    }

    fn load(&self) -> Vec<Entry> {
        // The saved entries no tailer found a file for yet (read from the
        // file at the first call), and those handed over by a pipeline
        // being replaced: its final offsets.
        self.with_initial(|_| ());
        // Handed-over entries are carried too until the new tailer finds
        // their files: a write meanwhile keeps them.
        let now = crate::stats::unix_now() as u64;
        let live: Vec<Entry> = self
            .entries
            .lock()
            .drain()
            .map(|(_, mut e)| {
                e.missing_since = Some(now);
                e
            })
            .collect();
        let mut carried = self.carried.lock();
        carried.extend(live);
        carried.clone()
    }

    /// Run `f` on the checkpoint file as read at the start (read now if
    /// it was not yet). The first read also makes what it holds the
    /// position until the source says otherwise: its file entries are
    /// carried into every write until the tailer finds their files, and
    /// its journal cursor is the cursor. A write in between (a stop while
    /// the pipeline starts) must not lose positions whose values it keeps.
    fn with_initial<R>(&self, f: impl FnOnce(&mut OnDisk) -> R) -> R {
        let mut g = self.initial.lock();
        if g.is_none() {
            let d = self.load_disk();
            let now = crate::stats::unix_now() as u64;
            *self.carried.lock() = d
                .files
                .iter()
                .cloned()
                .map(|mut e| {
                    e.missing_since.get_or_insert(now);
                    e
                })
                .collect();
            let mut j = self.journal.lock();
            if !j.loaded {
                j.loaded = true;
                if j.cursor.is_none() {
                    j.cursor = d.journal_cursor.clone();
                }
            }
            drop(j);
            *g = Some(d);
        }
        f(g.get_or_insert_with(OnDisk::default))
    }

    /// Keep `store`'s values in the checkpoint with the offsets, from the
    /// next write on (`None`: offsets only, as after a reload that turned
    /// `persist_values` off).
    pub fn keep_values(&self, store: Option<Arc<Mutex<PipelineStore>>>) {
        *self.values.lock() = store;
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Whether the file of `md` was created after the checkpoint file was
    /// last written (by the agent's previous run): such a file appeared
    /// while the agent was down, or just before it crashed, so all of it
    /// is new and it is read from its start even with `start_at = "end"`.
    /// False on a first start (no checkpoint file) and where the file
    /// system keeps no creation time.
    fn created_since_last_run(&self, md: &std::fs::Metadata) -> bool {
        self.with_initial(|_| ());
        let Some(last) = *self.initial_mtime.lock() else {
            return false;
        };
        md.created().is_ok_and(|born| born > last)
    }

    /// The series values saved with the offsets, once (a pipeline starting
    /// with an empty store restores them).
    pub fn saved_series(&self) -> Option<SavedSeries> {
        self.with_initial(|d| d.series.take())
    }

    /// Held by the worker from applying a batch until it acknowledged it
    /// (see [`Checkpoints`]); it calls [`Checkpoints::persist_if_due`]
    /// after letting go.
    pub fn gate(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.gate.lock()
    }

    fn load_disk(&self) -> OnDisk {
        let Some(p) = &self.path else {
            return OnDisk::default();
        };
        // When the previous run last wrote it (a stat of the path: only a
        // time, nothing in the file is trusted from it).
        *self.initial_mtime.lock() = std::fs::symlink_metadata(p.path())
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok());
        match p.dir.read(&p.name, MAX_CHECKPOINT_BYTES) {
            Ok(Some(b)) => match parse_checkpoint(&b) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(
                        path = %p.path().display(),
                        "ignoring the checkpoint file: {e}; the pipeline starts as without \
                         one (start_at applies, counters start from zero)"
                    );
                    OnDisk::default()
                }
            },
            Ok(None) => OnDisk::default(),
            Err(why) => {
                // Its offsets could have been written by someone else:
                // start as without checkpoints, and replace it.
                tracing::warn!(path = %p.path().display(), "ignoring an untrusted checkpoint file ({why})");
                if let Err(e) = p.dir.discard(&p.name) {
                    tracing::warn!(path = %p.path().display(), "cannot remove it: {e}");
                }
                OnDisk::default()
            }
        }
    }

    /// The plugin applied (or dropped) the lines of file `id` up to
    /// `at`. Writes the checkpoints when the last write is older than
    /// [`CHECKPOINT_EVERY`], so the bound on lines counted again after a
    /// crash holds even while the tailer waits on a busy plugin.
    pub fn ack(&self, id: u64, at: Resume) {
        if id == JOURNAL_ID {
            let mut j = self.journal.lock();
            let mut last = None;
            while j.pending.front().is_some_and(|(n, _)| *n < at.offset) {
                last = j.pending.pop_front().map(|(_, c)| c);
            }
            if last.is_some() {
                j.cursor = last;
                self.dirty.store(true, Ordering::Relaxed);
            }
            drop(j);
            self.persist_if_due();
            return;
        }
        let mut entries = self.entries.lock();
        if let Some(e) = entries.get_mut(&id) {
            if at.offset > e.offset {
                e.offset = at.offset;
                e.skip = at.skip;
                self.dirty.store(true, Ordering::Relaxed);
            }
            let done = self
                .retiring
                .lock()
                .get(&id)
                .is_some_and(|end| e.offset >= *end);
            if done {
                entries.remove(&id);
                self.retiring.lock().remove(&id);
                self.urgent.store(true, Ordering::Relaxed);
            }
        }
        drop(entries);
        self.persist_if_due();
    }

    /// A journald source's saved cursor: the one a pipeline being replaced
    /// reached, else the one in the checkpoint file. Read from the file
    /// once; later calls (the source restarting journalctl) give the cursor
    /// acknowledged since.
    pub fn journal_cursor(&self) -> Option<String> {
        // The first read of the file sets the cursor (see with_initial);
        // a handed-over cursor is kept.
        self.with_initial(|_| ());
        self.journal.lock().cursor.clone()
    }

    /// Entry `n`, at `cursor`, was sent to the plugin: its cursor becomes
    /// the position once a batch acknowledges it.
    pub fn journal_sent(&self, n: u64, cursor: String) {
        self.journal.lock().pending.push_back((n, cursor));
    }

    /// Whether every entry sent was acknowledged.
    pub fn journal_settled(&self) -> bool {
        self.journal.lock().pending.is_empty()
    }

    /// Make `cursor` the position, if every entry sent was acknowledged
    /// (the caller checked that no entry up to `cursor` is still to be
    /// read). Returns whether it did. `now` writes it at once.
    pub fn journal_skip_to(&self, cursor: String, now: bool) -> bool {
        {
            let mut j = self.journal.lock();
            j.loaded = true;
            if !j.pending.is_empty() {
                return false;
            }
            if j.cursor.as_deref() == Some(cursor.as_str()) {
                return true;
            }
            j.cursor = Some(cursor);
        }
        self.dirty.store(true, Ordering::Relaxed);
        if now {
            self.persist();
        } else {
            self.persist_if_due();
        }
        true
    }

    fn register(&self, id: u64, path: &str, key: FileKey, at: Resume) {
        // A saved entry of this file (or of an older file on the same
        // inode, which the tailer found changed) is now this one.
        self.carried
            .lock()
            .retain(|e| !(e.key.dev == key.dev && e.key.ino == key.ino));
        self.entries.lock().insert(
            id,
            Entry {
                path: path.to_string(),
                key,
                offset: at.offset,
                skip: at.skip,
                missing_since: None,
            },
        );
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// A followed file has a new name or a longer fingerprint.
    fn update(&self, id: u64, path: &str, key: &FileKey) {
        if let Some(e) = self.entries.lock().get_mut(&id) {
            e.path = path.to_string();
            e.key = key.clone();
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// The tailer is done with entry `id` (a rotated file let go, a file
    /// truncated and read again under a new entry), having passed on its
    /// bytes up to `end`. The entry stays until they are applied; then it
    /// goes and a checkpoint is written at once, not at the next interval:
    /// the lines of a file no longer followed cannot be read again after a
    /// crash, so the values that count them must reach the disk before the
    /// values of what comes next.
    fn retire(&self, id: u64, end: u64) {
        let mut entries = self.entries.lock();
        match entries.get(&id) {
            Some(e) if e.offset < end => {
                self.retiring.lock().insert(id, end);
            }
            Some(_) => {
                entries.remove(&id);
                self.urgent.store(true, Ordering::Relaxed);
            }
            None => {}
        }
        drop(entries);
        self.dirty.store(true, Ordering::Relaxed);
        self.persist_if_due();
    }

    /// Write if anything changed and the last write is [`CHECKPOINT_EVERY`]
    /// old; never waits for a write in progress.
    /// While the worker is between applying a batch and acknowledging it,
    /// nothing is written: it calls this again right after.
    pub fn persist_if_due(&self) {
        if self.path.is_none() || !self.dirty.load(Ordering::Relaxed) {
            return;
        }
        if let Some(mut last) = self.written.try_lock() {
            let urgent = self.urgent.load(Ordering::Relaxed);
            if urgent || last.is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY) {
                let Some(_gate) = self.gate.try_lock() else {
                    return;
                };
                self.urgent.store(false, Ordering::Relaxed);
                *last = Some(Instant::now());
                self.write();
            }
        }
    }

    /// Write to disk now if anything changed (atomic: temp file, then
    /// rename). Waits for the worker to finish the batch it is applying.
    pub fn persist(&self) {
        let mut last = self.written.lock();
        let _gate = self.gate.lock();
        *last = Some(Instant::now());
        self.write();
    }

    /// The caller holds `written` and `gate`.
    fn write(&self) {
        let Some(p) = &self.path else {
            return;
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut files: Vec<Entry> = self.entries.lock().values().cloned().collect();
        // Saved entries whose files were not found (yet): kept, so a file
        // that comes back later resumes at its offset instead of being read
        // again from its start with its counts already in the values; let
        // go after CARRIED_FOR.
        let now = crate::stats::unix_now() as u64;
        let mut carried = self.carried.lock();
        carried.retain(|e| {
            e.missing_since
                .is_none_or(|t| now.saturating_sub(t) < CARRIED_FOR.as_secs())
        });
        files.extend(carried.iter().cloned());
        drop(carried);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let journal_cursor = self.journal.lock().cursor.clone();
        let series = self.values.lock().as_ref().map(|s| s.lock().save());
        let mut disk = OnDisk {
            files,
            journal_cursor,
            series,
        };
        let mut data = match serde_json::to_vec(&disk) {
            Ok(d) => super::checkpoint::encode(&d),
            Err(_) => return,
        };
        if data.len() as u64 > MAX_CHECKPOINT_BYTES && disk.series.is_some() {
            // The next start would refuse it whole, offsets included:
            // keep the offsets.
            if !self.too_large_told.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    path = %p.path().display(),
                    "the pipeline's series values make its checkpoint larger than {} MiB: \
                     they are not kept (counters start from zero after a restart); \
                     lower max_series or the number of label values",
                    MAX_CHECKPOINT_BYTES >> 20
                );
            }
            disk.series = None;
            data = match serde_json::to_vec(&disk) {
                Ok(d) => super::checkpoint::encode(&d),
                Err(_) => return,
            };
        }
        if let Err(e) = p.dir.write(&p.name, &data) {
            self.dirty.store(true, Ordering::Relaxed);
            tracing::warn!(path = %p.path().display(), "cannot write checkpoint: {e}");
        }
    }
}

/// Settings of one file source.
pub struct FileSourceSettings {
    /// Absolute paths or glob patterns.
    pub patterns: Vec<String>,
    /// Where to start in files present at startup with no checkpoint.
    pub start_at: StartAt,
    /// How lines are written (a container runtime's log is decoded).
    pub format: LineFormat,
    /// Labels from a container log's path, by name (see
    /// [`super::container::path_labels`]), in this order.
    pub labels: Vec<String>,
    /// Longest line passed on.
    pub max_line_bytes: usize,
    /// Most lines per batch.
    pub batch_lines: usize,
    /// How lines are joined into multi-line records, if they are.
    pub multiline: Option<MultilineSettings>,
}

struct Tracked {
    /// Checkpoint entry; a new one after each truncation, so that late
    /// acknowledgements of the old content cannot move the new offset.
    id: u64,
    /// The name it is followed under.
    path: String,
    origin: Arc<str>,
    file: File,
    key: FileKey,
    /// Lines of the file, and the offset read up to.
    framer: Framer,
    /// A container log's lines decoded and their parts joined.
    decoder: Option<Decoder>,
    /// Its lines joined into records (with `multiline`): one per file, so
    /// that a record never mixes files.
    joiner: Option<Joiner>,
    /// Values of the source's labels, from its path.
    labels: Arc<[String]>,
    /// Since when no followed path names the file (renamed away or
    /// deleted): it is read until it has been quiet for `ROTATE_WAIT`.
    moved: Option<Instant>,
    /// When bytes were last read from it.
    last_data: Instant,
}

/// Follows a set of files until `stop` is set or the receiver goes away.
pub struct Tailer {
    settings: FileSourceSettings,
    tx: Sender<Batch>,
    stats: Arc<PipelineStats>,
    checkpoints: Arc<Checkpoints>,
    stop: Arc<AtomicBool>,
    files: Vec<Tracked>,
    next_id: u64,
    saved: Vec<Entry>,
    first_scan: bool,
    buf: Vec<u8>,
    /// Names whose file went away (deleted, or renamed with nothing in its
    /// place yet), looked at on every poll rather than every rescan, so
    /// that a file created there is followed at once.
    waiting: Vec<(String, Instant)>,
    /// The real names of matched files whose names are not UTF-8 (Linux
    /// names are bytes; a Latin-1 name is one), by the name weir shows
    /// (and labels, and keeps in checkpoints) for them: U+FFFD in place of
    /// each byte that is not UTF-8.
    os_names: HashMap<String, std::path::PathBuf>,
}

/// The paths `pat` matches, or None when it is not a valid pattern (then
/// it is taken as a plain path). The glob crate matches names as UTF-8
/// only, so a file whose name is not UTF-8 would never match: it expands
/// the directories (the pattern up to the last `/`), and the file names in
/// each are listed here and matched with their lossy form (U+FFFD for
/// each byte that is not UTF-8), so `app-*.log` matches `app-\xff.log`.
fn expand_pattern(pat: &str) -> Option<Vec<PathBuf>> {
    let opts = glob::MatchOptions::new();
    let (dir, name) = match pat.rsplit_once('/') {
        Some((d, n)) if !n.is_empty() && n != "**" => (if d.is_empty() { "/" } else { d }, n),
        _ => return glob::glob(pat).ok().map(|g| g.flatten().collect()),
    };
    let name_pat = glob::Pattern::new(name).ok()?;
    let dirs: Vec<PathBuf> = if glob::Pattern::escape(dir) == dir {
        vec![PathBuf::from(dir)]
    } else {
        glob::glob(dir)
            .ok()?
            .flatten()
            .filter(|d| d.is_dir())
            .collect()
    };
    if glob::Pattern::escape(name) == name {
        // A plain name: no listing needed.
        return Some(dirs.into_iter().map(|d| d.join(name)).collect());
    }
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let n = e.file_name();
            if name_pat.matches_with(&n.to_string_lossy(), opts) {
                out.push(d.join(n));
            }
        }
    }
    Some(out)
}

/// The file system name of the file weir shows as `p` (see
/// `Tailer::os_names`).
fn real_name<'a>(os_names: &'a HashMap<String, PathBuf>, p: &'a str) -> &'a Path {
    os_names.get(p).map_or(Path::new(p), PathBuf::as_path)
}

impl Tailer {
    /// Prepare a tailer; `run` does the work.
    pub fn new(
        settings: FileSourceSettings,
        tx: Sender<Batch>,
        stats: Arc<PipelineStats>,
        checkpoints: Arc<Checkpoints>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let saved = checkpoints.load();
        Tailer {
            settings,
            tx,
            stats,
            checkpoints,
            stop,
            files: Vec::new(),
            next_id: 1,
            saved,
            first_scan: true,
            buf: vec![0; READ_CHUNK],
            waiting: Vec::new(),
            os_names: HashMap::new(),
        }
    }

    fn decoder(&self) -> Option<Decoder> {
        (self.settings.format != LineFormat::Plain)
            .then(|| Decoder::new(self.settings.format, self.settings.max_line_bytes))
    }

    /// The values of the source's labels for a file at `path`.
    fn labels_of(&self, path: &str) -> Arc<[String]> {
        if self.settings.labels.is_empty() {
            return Arc::from([]);
        }
        let all = super::container::path_labels(path);
        self.settings
            .labels
            .iter()
            .map(|n| {
                CONTAINER_LABELS
                    .iter()
                    .position(|c| c == n)
                    .map(|i| all[i].clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The file system name of the file shown as `p`.
    fn real<'a>(&'a self, p: &'a str) -> &'a Path {
        real_name(&self.os_names, p)
    }

    fn expand(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for pat in &self.settings.patterns {
            match expand_pattern(pat) {
                Some(paths) => {
                    for p in paths {
                        if p.is_file() {
                            let shown = p.to_string_lossy().into_owned();
                            if p.to_str().is_none() {
                                self.os_names.insert(shown.clone(), p);
                            }
                            out.push(shown);
                        }
                    }
                }
                None => out.push(pat.clone()),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Look at `paths` (all matches of the globs, or names just vacated by
    /// a rotation): a file already followed is recognised by its inode
    /// under whatever name it has now; any other file is opened.
    fn scan(&mut self, paths: Vec<String>) {
        let mut fresh = Vec::new();
        for p in paths {
            let Ok(md) = std::fs::metadata(self.real(&p)) else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            // Every followed file is held open, so its inode cannot be
            // reused: the inode alone is a sure match here.
            match self.files.iter().position(|t| t.key.same_inode(&md)) {
                Some(i) => self.found_at(i, &p),
                None => fresh.push(p),
            }
        }
        for p in fresh {
            if !self.files.iter().any(|t| t.path == p && t.moved.is_none()) {
                self.open(&p);
            }
        }
    }

    /// At the start, a saved entry whose file no pattern matches any more
    /// may be of a file rotated away while the agent was down, or just
    /// before it crashed (`app.log` renamed `app.log.1`, which no glob
    /// covers): its last lines were read, and maybe counted, but not yet
    /// in the values the checkpoint kept. Looked for by inode in the
    /// directory it was in; found, with the same first bytes, it is read
    /// from its offset to its end and let go as a rotated file is.
    fn find_rotated_away(&mut self) {
        let wanted: Vec<(String, FileKey)> = self
            .saved
            .iter()
            .filter(|e| !self.files.iter().any(|t| t.key.same_ino(&e.key)))
            .map(|e| (e.path.clone(), e.key.clone()))
            .collect();
        for (path, key) in wanted {
            let Some(dir) = Path::new(&path).parent() else {
                continue;
            };
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            // Bounded: a directory of many thousands of files is not
            // searched whole.
            let found = rd.flatten().take(10_000).find_map(|d| {
                let md = d.metadata().ok()?;
                (md.is_file() && md.dev() == key.dev && md.ino() == key.ino).then(|| d.path())
            });
            let Some(found) = found.and_then(|p| p.to_str().map(str::to_string)) else {
                continue;
            };
            let before = self.files.len();
            self.open(&found);
            if self.files.len() > before {
                if let Some(t) = self.files.last_mut() {
                    tracing::info!(from = %path, to = %found, "a file rotated away since the checkpoint: reading the rest of it");
                    t.moved = Some(Instant::now());
                }
            }
        }
    }

    /// Followed file `i` is at `p`.
    fn found_at(&mut self, i: usize, p: &str) {
        let t = &mut self.files[i];
        if t.path == p {
            if t.moved.take().is_some() {
                tracing::debug!(path = p, "file back at its path");
            }
            return;
        }
        if t.moved.is_none() {
            let still_there = std::fs::metadata(real_name(&self.os_names, &t.path))
                .map(|md| t.key.same_inode(&md))
                .unwrap_or(false);
            if still_there {
                // A second name for the same file (a hard link): read once.
                return;
            }
            self.stats.file(&t.path, |f| f.rotations += 1);
        }
        tracing::info!(from = %t.path, to = p, "file renamed; following it under its new name");
        t.path = p.to_string();
        t.origin = Arc::from(p);
        let labels = self.labels_of(p);
        let t = &mut self.files[i];
        t.labels = labels;
        t.moved = None;
        self.checkpoints.update(t.id, &t.path, &t.key);
    }

    fn open(&mut self, path: &str) {
        let Ok(mut file) = File::open(self.real(path)) else {
            return;
        };
        let Ok(key) = identify(&file) else {
            return;
        };
        let Ok(md) = file.metadata() else {
            return;
        };
        if self
            .files
            .iter()
            .any(|t| t.key.dev == key.dev && t.key.ino == key.ino)
        {
            return;
        }
        let size = md.len();
        let mut skip = false;
        // Said at info level for every file, with the reason: a pipeline
        // that reads nothing must say why (start_at, or a checkpoint).
        let from: &str;
        let saved = self
            .saved
            .iter()
            .position(|e| e.key.dev == key.dev && e.key.ino == key.ino);
        let offset = match saved {
            Some(i) => {
                let e = self.saved.remove(i);
                let same = matches!(
                    check_prefix(&file, &e.key),
                    Ok(Prefix::Same | Prefix::Longer(_))
                );
                if same && e.offset <= size {
                    skip = e.skip;
                    from = "its checkpoint (start_at applies only to files without one; \
                            `weir state reset PIPELINE` forgets them)";
                    e.offset
                } else {
                    // Truncated, rewritten, or a new file on a reused
                    // inode: all of it was written after the checkpoint.
                    from = "the beginning: the file changed since its checkpoint";
                    0
                }
            }
            None if self.first_scan
                && self.settings.start_at == StartAt::End
                && self.checkpoints.created_since_last_run(&md) =>
            {
                from = "the beginning: created since the agent last wrote its checkpoint \
                        (start_at = \"end\" applies on a first start)";
                0
            }
            None if self.first_scan && self.settings.start_at == StartAt::End => {
                let (offset, skip_rest) = line_start_near_end(&file, size);
                skip = skip_rest;
                from = "the end (start_at = \"end\": only lines written from now on; \
                        start_at = \"beginning\" reads what is there)";
                offset
            }
            None if self.first_scan => {
                from = "the beginning (start_at = \"beginning\")";
                0
            }
            None => {
                from = "the beginning: a new file";
                0
            }
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let at = Resume { offset, skip };
        self.checkpoints.register(id, path, key.clone(), at);
        tracing::info!(path, offset, size, "reading {path} from {from}");
        self.files.push(Tracked {
            id,
            path: path.to_string(),
            origin: Arc::from(path),
            file,
            key,
            framer: Framer::new(self.settings.max_line_bytes, at),
            decoder: self.decoder(),
            joiner: self.settings.multiline.clone().map(Joiner::new),
            labels: self.labels_of(path),
            moved: None,
            last_data: Instant::now(),
        });
    }

    /// Run until stopped.
    pub fn run(mut self) {
        let mut last_scan: Option<Instant> = None;
        let mut last_check: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            // At most once an idle poll, however busy: a stat and a short
            // read per file. (Bytes read are checked on each read anyway.)
            let mut vacated = Vec::new();
            if last_check.is_none_or(|t| t.elapsed() >= IDLE_POLL) {
                last_check = Some(Instant::now());
                vacated = self.check_files();
            }
            if last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY) {
                last_scan = Some(Instant::now());
                let paths = self.expand();
                if self.first_scan && paths.is_empty() {
                    tracing::info!(
                        patterns = ?self.settings.patterns,
                        "no file matches yet; reading each from its start once it appears"
                    );
                }
                self.scan(paths);
                if self.first_scan {
                    self.find_rotated_away();
                }
                self.first_scan = false;
            } else {
                // The file that took a rotated file's name, or that is
                // created again where one was deleted: at once.
                let mut paths = vacated;
                let files = &self.files;
                let os_names = &self.os_names;
                self.waiting.retain(|(p, since)| {
                    since.elapsed() < ROTATE_WAIT
                        && !files.iter().any(|t| t.path == *p && t.moved.is_none())
                });
                paths.extend(
                    self.waiting
                        .iter()
                        .filter(|(p, _)| std::fs::metadata(real_name(os_names, p)).is_ok())
                        .map(|(p, _)| p.clone()),
                );
                if !paths.is_empty() {
                    self.scan(paths);
                }
            }
            let mut progressed = false;
            for i in 0..self.files.len() {
                match self.read_available(i) {
                    Ok(n) => progressed |= n > 0,
                    Err(Closed) => return,
                }
            }
            if self.flush_timed_out().is_err() || self.release_quiet().is_err() {
                return;
            }
            self.stats.prune_files(Instant::now());
            self.checkpoints.persist_if_due();
            if !progressed {
                std::thread::sleep(IDLE_POLL);
            }
        }
    }

    /// Compare each followed file with what its path names now; returns
    /// the paths that now name another file.
    fn check_files(&mut self) -> Vec<String> {
        let mut vacated = Vec::new();
        for i in 0..self.files.len() {
            let t = &mut self.files[i];
            if t.moved.is_some() {
                continue;
            }
            let real = real_name(&self.os_names, &t.path);
            match std::fs::metadata(real) {
                Ok(md) if t.key.same_inode(&md) => self.check_content(i),
                found => {
                    // Renamed away (perhaps with a new file in its place)
                    // or deleted: read it out, follow what has its name.
                    t.moved = Some(Instant::now());
                    self.stats.file(&t.path, |f| f.rotations += 1);
                    if found.is_ok() {
                        tracing::info!(path = %t.path, "file rotated; reading the new file from its start");
                        vacated.push(t.path.clone());
                    } else {
                        tracing::info!(path = %t.path, "file renamed or deleted; reading it to its end");
                        self.waiting.push((t.path.clone(), Instant::now()));
                    }
                }
            }
        }
        vacated
    }

    /// Truncation of followed file `i`: shorter than what was read, or its
    /// first bytes changed. Also lengthens a short fingerprint.
    fn check_content(&mut self, i: usize) {
        let t = &mut self.files[i];
        let Ok(size) = t.file.metadata().map(|m| m.len()) else {
            return;
        };
        match check_prefix(&t.file, &t.key) {
            _ if size < t.framer.position() => self.restart(i),
            Ok(Prefix::Changed) => self.restart(i),
            Ok(Prefix::Longer(key)) => {
                t.key = key;
                self.checkpoints.update(t.id, &t.path, &t.key);
            }
            Ok(Prefix::Same) | Err(_) => {}
        }
    }

    /// File `i` was truncated (copytruncate, `: > file`): read it again
    /// from its start, under a new checkpoint entry.
    fn restart(&mut self, i: usize) {
        // The record being built is of the old content: passed on as it
        // is (if the pipeline is gone, the tailer notices at its next send).
        let decoded = self.files[i].decoder.as_mut().map(Decoder::flush);
        if let Some(lines) = decoded {
            let t = &mut self.files[i];
            let records = super::join(&mut t.joiner, &self.stats, lines);
            let _ = self.send(i, records);
        }
        if let Some(records) = self.files[i].joiner.as_mut().map(Joiner::flush) {
            super::count_records(&self.stats, &records);
            let _ = self.send(i, records);
        }
        let decoder = self.decoder();
        let t = &mut self.files[i];
        // Where the acknowledgements of what was passed on will end.
        let old_end = t.framer.resume().offset;
        let _ = t.file.seek(SeekFrom::Start(0));
        t.framer = Framer::new(self.settings.max_line_bytes, Resume::default());
        t.decoder = decoder;
        if let Ok(key) = identify(&t.file) {
            t.key = key;
        }
        // The old content's entry goes once its lines are applied, with a
        // checkpoint written then (it cannot be read again).
        self.checkpoints.retire(t.id, old_end);
        t.id = self.next_id;
        self.next_id += 1;
        self.checkpoints
            .register(t.id, &t.path, t.key.clone(), Resume::default());
        self.stats.file(&t.path, |f| f.truncations += 1);
        tracing::info!(path = %t.path, "file truncated; reading it from the start");
    }

    /// Pass on unfinished records whose timeout passed, of files read to
    /// their end: a file with bytes still to read may hold the record's
    /// next lines (the source was busy, not the writer), so its record
    /// waits.
    fn flush_timed_out(&mut self) -> Result<(), Closed> {
        let now = Instant::now();
        for i in 0..self.files.len() {
            let t = &mut self.files[i];
            let Some(j) = t.joiner.as_mut() else { continue };
            if j.deadline().is_none_or(|d| d > now) {
                continue;
            }
            let size = t.file.metadata().map(|m| m.len()).unwrap_or(0);
            if size > t.framer.position() {
                continue;
            }
            let records = j.flush();
            super::count_records(&self.stats, &records);
            self.send(i, records)?;
        }
        Ok(())
    }

    /// Let go of rotated files that have been quiet for `ROTATE_WAIT`.
    fn release_quiet(&mut self) -> Result<(), Closed> {
        let mut i = 0;
        while i < self.files.len() {
            let t = &self.files[i];
            let quiet = t
                .moved
                .is_some_and(|m| m.max(t.last_data).elapsed() >= ROTATE_WAIT);
            if !quiet {
                i += 1;
                continue;
            }
            self.flush_partial(i)?;
            let t = self.files.remove(i);
            // Its last batch may still be in flight: the entry goes once
            // it is acknowledged, and a checkpoint is written then.
            self.checkpoints.retire(t.id, t.framer.resume().offset);
            // Its figures go after a while, unless its name is followed
            // still (the file that took its place).
            if !self.files.iter().any(|o| o.path == t.path) {
                self.stats.release_file(&t.path);
            }
            tracing::debug!(path = %t.path, "released rotated file");
        }
        Ok(())
    }

    fn read_available(&mut self, i: usize) -> Result<usize, Closed> {
        let mut total = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let t = &mut self.files[i];
            let n = match t.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    self.stats.file(&t.path, |f| f.read_errors += 1);
                    tracing::warn!(path = %t.path, "read error: {e}");
                    break;
                }
            };
            // Bytes read while the file was emptied and written again come
            // from the middle of the new content: checked before use.
            if matches!(check_prefix(&t.file, &t.key), Ok(Prefix::Changed)) {
                self.restart(i);
                total += n;
                continue;
            }
            t.last_data = Instant::now();
            total += n;
            let mut lines = Lines::default();
            t.framer.feed(&self.buf[..n], &mut lines);
            self.stats.file(&t.path, |f| {
                f.bytes += n as u64;
                f.lines += lines.len() as u64;
            });
            self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            super::count(&self.stats, &lines);
            let lines = decode(&mut t.decoder, &self.stats, lines);
            let records = super::join(&mut t.joiner, &self.stats, lines);
            self.send(i, records)?;
            if n < self.buf.len() {
                break;
            }
        }
        let t = &self.files[i];
        let size = t.file.metadata().map(|m| m.len()).unwrap_or(0);
        let lag = size.saturating_sub(t.framer.position());
        self.stats.file(&t.path, |f| f.lag_bytes = lag);
        Ok(total)
    }

    /// A rotated file ends without a newline: its last line is complete.
    fn flush_partial(&mut self, i: usize) -> Result<(), Closed> {
        let t = &mut self.files[i];
        let mut lines = Lines::default();
        t.framer.finish(&mut lines);
        self.stats.file(&t.path, |f| f.lines += lines.len() as u64);
        super::count(&self.stats, &lines);
        let mut lines = decode(&mut t.decoder, &self.stats, lines);
        if let Some(rest) = t.decoder.as_mut().map(Decoder::flush) {
            if rest.cut > 0 {
                self.stats
                    .lines_truncated
                    .fetch_add(rest.cut, Ordering::Relaxed);
            }
            lines.lines.extend(rest.lines);
            lines.offsets.extend(rest.offsets);
        }
        let mut records = super::join(&mut t.joiner, &self.stats, lines);
        if let Some(last) = t.joiner.as_mut().map(Joiner::flush) {
            super::count_records(&self.stats, &last);
            records.lines.extend(last.lines);
            records.offsets.extend(last.offsets);
        }
        self.send(i, records)
    }

    /// Pass framed lines (or records) of file `i` on, acknowledged up to
    /// where its framer stands, or to the start of the record still being
    /// built: a restart reads that record again whole.
    fn send(&self, i: usize, lines: Lines) -> Result<(), Closed> {
        let t = &self.files[i];
        // The earliest of an unfinished container line and an unfinished
        // record (the record's lines all came before the container line).
        let pending = [
            t.decoder.as_ref().and_then(Decoder::pending_start),
            t.joiner.as_ref().and_then(Joiner::pending_start),
        ]
        .into_iter()
        .flatten()
        .min();
        let resume = match pending {
            Some(offset) => Resume {
                offset,
                skip: false,
            },
            None => t.framer.resume(),
        };
        send_labelled(
            &self.tx,
            &t.origin,
            &t.labels,
            lines,
            self.settings.batch_lines,
            Some((t.id, resume)),
        )
    }
}

/// A container log's framed lines decoded (invalid ones counted), or the
/// lines as they are.
fn decode(decoder: &mut Option<Decoder>, stats: &PipelineStats, framed: Lines) -> Lines {
    match decoder {
        Some(d) => {
            let counted = framed.cut;
            let (lines, invalid) = d.decode(framed);
            if invalid > 0 {
                stats.lines_invalid.fetch_add(invalid, Ordering::Relaxed);
            }
            // Lines cut while their parts were joined count as cut too.
            let cut = lines.cut.saturating_sub(counted);
            if cut > 0 {
                stats.lines_truncated.fetch_add(cut, Ordering::Relaxed);
            }
            lines
        }
        None => framed,
    }
}

/// One file's checkpoint as saved: its path and the offset up to which
/// its lines were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedOffset {
    /// The name the file was followed under.
    pub path: String,
    /// Bytes applied.
    pub offset: u64,
}

/// What checkpoint file `name` of `dir` holds, for `weir state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCheckpoint {
    /// Each followed file's offset.
    pub files: Vec<SavedOffset>,
    /// A journald source's cursor.
    pub journal_cursor: Option<String>,
    /// (series, families) of the values kept with the positions, if any.
    pub series: Option<(usize, usize)>,
}

/// Checkpoint file `name` of `dir`, read once with the state directory's
/// checks; `Ok(None)` when there is no such file.
pub fn read_checkpoint_file(
    dir: &crate::state::StateDir,
    name: &str,
) -> Result<Option<SavedCheckpoint>, String> {
    let path = dir.path().join(name);
    let bytes = match dir.read(name, MAX_CHECKPOINT_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(why) => return Err(format!("{}: not trusted: {why}", path.display())),
    };
    let d = parse_checkpoint(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(SavedCheckpoint {
        files: d
            .files
            .into_iter()
            .map(|e| SavedOffset {
                path: e.path,
                offset: e.offset,
            })
            .collect(),
        journal_cursor: d.journal_cursor,
        series: d.series.map(|s| {
            let n = s.families.iter().map(|f| f.series.len()).sum();
            (n, s.families.len())
        }),
    }))
}

/// A checkpoint file's contents: its header checked (see
/// [`super::checkpoint`]), its body parsed.
fn parse_checkpoint(bytes: &[u8]) -> Result<OnDisk, String> {
    let body = super::checkpoint::decode(bytes)?;
    let mut d: OnDisk =
        serde_json::from_slice(body).map_err(|e| format!("it is not a valid checkpoint: {e}"))?;
    if bytes.first() == Some(&b'{') {
        // Version 1 (no header, so no checksum) never held values: values
        // in such a file were not written by weir, and are not trusted.
        d.series = None;
    }
    Ok(d)
}

/// Where the checkpoints of a pipeline live: `PIPELINE.json` in the state
/// directory's `checkpoints` directory, read and written through
/// [`StateDir`](crate::state::StateDir)'s checks.
#[derive(Debug)]
pub struct CheckpointFile {
    dir: Arc<crate::state::StateDir>,
    name: String,
}

/// Largest checkpoint file read (one entry per followed file).
const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

impl CheckpointFile {
    /// The checkpoint file of `pipeline` in `dir`.
    pub fn new(dir: Arc<crate::state::StateDir>, pipeline: &str) -> Self {
        CheckpointFile {
            dir,
            name: format!("{pipeline}.json"),
        }
    }

    /// Its path, for messages.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::sync::mpsc;

    fn tailer(patterns: Vec<String>, start_at: StartAt) -> (Tailer, mpsc::Receiver<Batch>) {
        tailer_with(patterns, start_at, None)
    }

    fn tailer_with(
        patterns: Vec<String>,
        start_at: StartAt,
        multiline: Option<MultilineSettings>,
    ) -> (Tailer, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(1024);
        let t = Tailer::new(
            FileSourceSettings {
                patterns,
                start_at,
                format: LineFormat::Plain,
                labels: Vec::new(),
                max_line_bytes: 1024,
                batch_lines: 100,
                multiline,
            },
            tx,
            Arc::new(PipelineStats::default()),
            Checkpoints::new(None),
            Arc::new(AtomicBool::new(false)),
        );
        (t, rx)
    }

    fn lines(rx: &mut mpsc::Receiver<Batch>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend(b.lines);
        }
        out
    }

    /// One pass of the tailer's loop, without sleeping.
    fn poll(t: &mut Tailer) {
        let vacated = t.check_files();
        let mut paths = t.expand();
        paths.extend(vacated);
        t.scan(paths);
        t.first_scan = false;
        for i in 0..t.files.len() {
            assert!(t.read_available(i).is_ok());
        }
    }

    fn append(path: &std::path::Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn start_at_end_reads_a_line_being_written_whole() {
        let d = tempfile::tempdir().expect("tempdir");
        let log = d.path().join("a.log");
        append(&log, "old 1\nold 2\nhalf");
        let (mut t, mut rx) = tailer(vec![log.display().to_string()], StartAt::End);
        poll(&mut t);
        assert!(lines(&mut rx).is_empty());
        append(&log, " done\nnew\n");
        poll(&mut t);
        assert_eq!(lines(&mut rx), ["half done", "new"]);
    }

    #[test]
    fn line_start_near_end_finds_the_last_newline() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("f");
        std::fs::write(&p, "ab\ncd").expect("write");
        let f = File::open(&p).expect("open");
        assert_eq!(line_start_near_end(&f, 5), (3, false));
        std::fs::write(&p, "abcd").expect("write");
        assert_eq!(line_start_near_end(&f, 4), (0, false));
        std::fs::write(&p, "ab\n").expect("write");
        assert_eq!(line_start_near_end(&f, 3), (3, false));
        assert_eq!(line_start_near_end(&f, 0), (0, false));
        let long = "x".repeat(LINE_START_WINDOW as usize + 10);
        std::fs::write(&p, &long).expect("write");
        assert_eq!(
            line_start_near_end(&f, long.len() as u64),
            (long.len() as u64, true)
        );
    }

    /// Emptied and written again past the old offset before the tailer
    /// looks: the changed first bytes say so; nothing from the middle of
    /// the new content is passed on.
    #[test]
    fn truncation_outgrowing_the_offset_is_read_from_the_start() {
        let d = tempfile::tempdir().expect("tempdir");
        let log = d.path().join("a.log");
        append(&log, "line 0\nline 1\n");
        let (mut t, mut rx) = tailer(vec![log.display().to_string()], StartAt::Beginning);
        poll(&mut t);
        assert_eq!(lines(&mut rx), ["line 0", "line 1"]);
        let first_id = t.files[0].id;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        append(&log, "line 2\nline 3\nline 4\n");
        // Straight to the read, as if the truncation fell between a check
        // and a read.
        assert!(t.read_available(0).is_ok());
        poll(&mut t);
        assert_eq!(lines(&mut rx), ["line 2", "line 3", "line 4"]);
        // A late acknowledgement of the old content moves nothing.
        let new_id = t.files[0].id;
        assert_ne!(first_id, new_id);
        let at = |offset| Resume {
            offset,
            skip: false,
        };
        t.checkpoints.ack(first_id, at(14));
        t.checkpoints.ack(new_id, at(7));
        let e = t.checkpoints.entries.lock();
        assert_eq!(e.len(), 1);
        assert_eq!(e.get(&new_id).map(|e| e.offset), Some(7));
    }

    /// Renamed to a name the globs also match: followed under it, not
    /// read again; the new file is read from its start.
    #[test]
    fn rename_within_the_globs_is_followed_not_reread() {
        let d = tempfile::tempdir().expect("tempdir");
        let log = d.path().join("a.log");
        append(&log, "1\n2\n");
        let pattern = format!("{}*", log.display());
        let (mut t, mut rx) = tailer(vec![pattern], StartAt::Beginning);
        poll(&mut t);
        assert_eq!(lines(&mut rx), ["1", "2"]);
        let rotated = d.path().join("a.log.1");
        std::fs::rename(&log, &rotated).expect("rename");
        append(&rotated, "3\n");
        append(&log, "4\n");
        poll(&mut t);
        poll(&mut t);
        let mut got = lines(&mut rx);
        got.sort();
        assert_eq!(got, ["3", "4"]);
        assert_eq!(t.files.len(), 2);
        assert!(t.files.iter().all(|f| f.moved.is_none()));
    }

    /// An unfinished record whose timeout passed waits while its file has
    /// bytes not read yet (they may continue it: the source was busy, not
    /// the writer); once the file is read to its end it is passed on, and
    /// acknowledged only then.
    #[test]
    fn a_record_times_out_only_once_its_file_is_read_to_its_end() {
        let d = tempfile::tempdir().expect("tempdir");
        let log = d.path().join("a.log");
        append(&log, "a\n b\n");
        let ml = MultilineSettings {
            rule: crate::config::MultilineRule::Continue(regex::Regex::new(r"^\s").expect("re")),
            max_lines: 100,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(10),
        };
        let (mut t, mut rx) = tailer_with(
            vec![log.display().to_string()],
            StartAt::Beginning,
            Some(ml),
        );
        poll(&mut t);
        assert!(lines(&mut rx).is_empty());
        std::thread::sleep(Duration::from_millis(30));
        append(&log, " c\n");
        assert!(t.flush_timed_out().is_ok());
        assert!(lines(&mut rx).is_empty(), "flushed with bytes unread");
        poll(&mut t);
        std::thread::sleep(Duration::from_millis(30));
        assert!(t.flush_timed_out().is_ok());
        let got: Vec<Batch> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lines, ["a\n b\n c"]);
        assert_eq!(got[0].offsets, [0]);
        assert_eq!(got[0].ack.map(|(_, r)| r.offset), Some(8));
    }

    /// A fingerprint taken from a short file grows with it, so a restart
    /// can tell the file from a new one on the same inode.
    #[test]
    fn short_fingerprint_grows() {
        let d = tempfile::tempdir().expect("tempdir");
        let log = d.path().join("a.log");
        append(&log, "a\n");
        let (mut t, _rx) = tailer(vec![log.display().to_string()], StartAt::Beginning);
        poll(&mut t);
        assert_eq!(t.files[0].key.fp_len, 2);
        append(&log, &"b".repeat(400));
        poll(&mut t);
        assert_eq!(t.files[0].key.fp_len, FINGERPRINT_BYTES);
    }
}

#[cfg(test)]
mod checkpoint_file_tests {
    use super::*;
    use crate::store::{Change, FamilyDecl, Kind, Semantics};

    fn key() -> FileKey {
        FileKey {
            dev: 1,
            ino: 2,
            fp_len: 3,
            fp: 4,
        }
    }

    fn store() -> Arc<Mutex<PipelineStore>> {
        let mut s = PipelineStore::new(vec![], 10);
        let decl = FamilyDecl::validate(
            "lines_total".into(),
            Kind::Counter,
            "Lines.".into(),
            String::new(),
            vec![],
            vec![],
            &[],
        )
        .expect("valid");
        s.declare(vec![decl]);
        s.apply(vec![(0, vec![], Change::Add(7.0))], Semantics::Events);
        Arc::new(Mutex::new(s))
    }

    #[test]
    fn offsets_and_values_are_written_and_read_back_together() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = Arc::new(crate::state::StateDir::open(t.path()).expect("state"));
        let cp = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "p")));
        cp.register(
            1,
            "/var/log/a.log",
            key(),
            Resume {
                offset: 0,
                skip: false,
            },
        );
        cp.keep_values(Some(store()));
        cp.ack(
            1,
            Resume {
                offset: 42,
                skip: false,
            },
        );
        cp.persist();
        let raw = std::fs::read(t.path().join("p.json")).expect("file");
        assert!(raw.starts_with(b"weir-checkpoint 2 crc32="), "{raw:?}");

        let again = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "p")));
        let saved = again.saved_series().expect("values saved");
        assert_eq!(saved.families.len(), 1);
        let files = again.load();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].offset, 42);
        // Taken once: a second look finds none (not applied twice).
        assert!(again.saved_series().is_none());

        // A version 1 file (the JSON body alone, as weir wrote before the
        // header) still gives its offsets.
        let body = super::super::checkpoint::decode(&raw)
            .expect("decode")
            .to_vec();
        dir.write("v1.json", &body).expect("write v1");
        let v1 = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "v1")));
        assert_eq!(v1.load()[0].offset, 42);
        let listed = read_checkpoint_file(&dir, "v1.json")
            .expect("read")
            .expect("some");
        assert_eq!(listed.files[0].offset, 42);
        assert_eq!(listed.series, None, "a version 1 file gives offsets only");

        // A damaged one is ignored: no offsets, no values, and `weir
        // state` says why.
        let mut bad = raw.clone();
        let last = bad.len() - 2;
        bad[last] ^= 1;
        dir.write("bad.json", &bad).expect("write bad");
        let b = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "bad")));
        assert!(b.load().is_empty());
        assert!(b.saved_series().is_none());
        let e = read_checkpoint_file(&dir, "bad.json").expect_err("damaged");
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn a_write_before_the_tailer_found_its_files_keeps_their_offsets() {
        // A stop while the pipeline starts: the values restored are
        // written back; the offsets they go with must be too, or the next
        // start would read the files again into restored values.
        let t = tempfile::tempdir().expect("tempdir");
        let dir = Arc::new(crate::state::StateDir::open(t.path()).expect("state"));
        let cp = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "s")));
        cp.register(
            1,
            "/a.log",
            key(),
            Resume {
                offset: 0,
                skip: false,
            },
        );
        cp.keep_values(Some(store()));
        cp.ack(
            1,
            Resume {
                offset: 9,
                skip: false,
            },
        );
        cp.persist();
        for round in 0..3 {
            let next = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "s")));
            assert!(next.saved_series().is_some(), "round {round}");
            next.keep_values(Some(store()));
            next.persist();
            let after = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "s")));
            let files = after.load();
            assert_eq!(files.len(), 1, "round {round}");
            assert_eq!(files[0].offset, 9);
        }
        // A reload hands the tailer's entries over: kept too.
        let cp = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "s")));
        let saved = cp.load();
        cp.register(
            7,
            "/a.log",
            saved[0].key.clone(),
            Resume {
                offset: 12,
                skip: false,
            },
        );
        let handed = cp.load();
        assert_eq!(handed.len(), 1);
        cp.persist();
        let after = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "s")));
        assert_eq!(after.load()[0].offset, 12);
    }

    #[test]
    fn no_write_happens_while_the_worker_holds_the_gate() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = Arc::new(crate::state::StateDir::open(t.path()).expect("state"));
        let cp = Checkpoints::new(Some(CheckpointFile::new(dir.clone(), "g")));
        cp.register(
            1,
            "/a",
            key(),
            Resume {
                offset: 0,
                skip: false,
            },
        );
        let gate = cp.gate();
        cp.persist_if_due();
        assert!(!t.path().join("g.json").exists(), "written under the gate");
        drop(gate);
        cp.persist_if_due();
        assert!(t.path().join("g.json").exists());
    }
}
