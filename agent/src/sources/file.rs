//! Following files: globs re-evaluated, rotation by rename or copytruncate,
//! truncation, deletion and re-creation, checkpoints that survive restarts.
//!
//! A file is known by device, inode and a fingerprint of its first bytes,
//! so a reused inode or a copied file is not taken for one already read.
//! Offsets are checkpointed only once the plugin's updates for those lines
//! are applied (the worker acknowledges each batch), so a crash never loses
//! a line; it may count again at most the lines acknowledged since the
//! last checkpoint write (one `CHECKPOINT_EVERY`).
use super::{decode_line, Batch};
use crate::config::StartAt;
use crate::stats::PipelineStats;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// Bytes of a file's start used as its fingerprint.
const FINGERPRINT_BYTES: usize = 256;
/// How often globs are expanded again.
const RESCAN_EVERY: Duration = Duration::from_millis(500);
/// How often acknowledged offsets are written to disk.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Sleep between polls when no file had new data.
const IDLE_POLL: Duration = Duration::from_millis(50);
const READ_CHUNK: usize = 256 << 10;

/// Identity of a file across renames and restarts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    /// Length of the fingerprinted prefix (less than FINGERPRINT_BYTES for
    /// a file that was shorter when first seen).
    fp_len: usize,
    fp: u64,
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn prefix(file: &mut File, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let pos = file.stream_position()?;
    file.seek(SeekFrom::Start(0))?;
    let mut got = 0;
    while got < len {
        let n = file.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    file.seek(SeekFrom::Start(pos))?;
    Ok(buf)
}

/// Offsets acknowledged per file, shared by the tailer (which registers
/// files) and the plugin worker (which acknowledges batches).
#[derive(Default, Debug)]
pub struct Checkpoints {
    entries: Mutex<HashMap<u64, Entry>>,
    path: Option<PathBuf>,
    dirty: AtomicBool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    path: String,
    key: FileKey,
    offset: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct OnDisk {
    files: Vec<Entry>,
}

impl Checkpoints {
    /// Checkpoints kept in `path` (none kept when `None`).
    pub fn new(path: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Checkpoints {
            entries: Mutex::new(HashMap::new()),
            path,
            dirty: AtomicBool::new(false),
        })
    }

    fn load(&self) -> Vec<Entry> {
        // Handed over by a pipeline being replaced: its final offsets.
        let live: Vec<Entry> = self.entries.lock().drain().map(|(_, e)| e).collect();
        if !live.is_empty() {
            return live;
        }
        let Some(p) = &self.path else {
            return Vec::new();
        };
        match std::fs::read(p) {
            Ok(b) => match serde_json::from_slice::<OnDisk>(&b) {
                Ok(d) => d.files,
                Err(e) => {
                    tracing::warn!(path = %p.display(), "ignoring unreadable checkpoint file: {e}");
                    Vec::new()
                }
            },
            Err(_) => Vec::new(),
        }
    }

    /// The plugin applied a batch that ended at `offset` of file `id`.
    pub fn ack(&self, id: u64, offset: u64) {
        if let Some(e) = self.entries.lock().get_mut(&id) {
            if offset > e.offset || offset == 0 {
                e.offset = offset;
            }
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    fn register(&self, id: u64, path: &str, key: FileKey, offset: u64) {
        self.entries.lock().insert(
            id,
            Entry {
                path: path.to_string(),
                key,
                offset,
            },
        );
        self.dirty.store(true, Ordering::Relaxed);
    }

    fn forget(&self, id: u64) {
        self.entries.lock().remove(&id);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Write to disk if anything changed (atomic: temp file, then rename).
    pub fn persist(&self) {
        let Some(p) = &self.path else {
            return;
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let files: Vec<Entry> = self.entries.lock().values().cloned().collect();
        let data = match serde_json::to_vec(&OnDisk { files }) {
            Ok(d) => d,
            Err(_) => return,
        };
        let tmp = p.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &data)?;
            f.sync_data()?;
            std::fs::rename(&tmp, p)
        };
        if let Err(e) = write() {
            self.dirty.store(true, Ordering::Relaxed);
            tracing::warn!(path = %p.display(), "cannot write checkpoint: {e}");
        }
    }
}

/// Settings of one file source.
pub struct FileSourceSettings {
    /// Absolute paths or glob patterns.
    pub patterns: Vec<String>,
    /// Where to start in files present at startup with no checkpoint.
    pub start_at: StartAt,
    /// Longest line passed on.
    pub max_line_bytes: usize,
    /// Most lines per batch.
    pub batch_lines: usize,
}

struct Tracked {
    id: u64,
    path: String,
    origin: Arc<str>,
    file: File,
    key: FileKey,
    /// Offset read up to (end of the last complete line sent or pending).
    offset: u64,
    /// Bytes of an unfinished last line.
    partial: Vec<u8>,
    /// The line in `partial` was already cut; drop bytes until newline.
    skipping: bool,
    /// Renamed or deleted: read to the end, then let go.
    draining: bool,
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
}

/// A batch plus where it ends, for acknowledgement.
pub type Ack = (u64, u64);

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
        }
    }

    fn identify(file: &mut File) -> std::io::Result<FileKey> {
        let md = file.metadata()?;
        let len = (md.len() as usize).min(FINGERPRINT_BYTES);
        let bytes = prefix(file, len)?;
        Ok(FileKey {
            dev: md.dev(),
            ino: md.ino(),
            fp_len: bytes.len(),
            fp: fnv(&bytes),
        })
    }

    /// Whether `key` (taken when the file was shorter) still describes the
    /// file: same inode and the same first bytes.
    fn same_file(key: &FileKey, file: &mut File) -> bool {
        let Ok(md) = file.metadata() else {
            return false;
        };
        if md.dev() != key.dev || md.ino() != key.ino || (md.len() as usize) < key.fp_len {
            return false;
        }
        matches!(prefix(file, key.fp_len), Ok(b) if fnv(&b) == key.fp)
    }

    fn expand(&self) -> Vec<String> {
        let mut out = Vec::new();
        for pat in &self.settings.patterns {
            match glob::glob(pat) {
                Ok(paths) => {
                    for p in paths.flatten() {
                        if p.is_file() {
                            out.push(p.to_string_lossy().into_owned());
                        }
                    }
                }
                Err(_) => out.push(pat.clone()),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn open(&mut self, path: &str) {
        let Ok(mut file) = File::open(path) else {
            return;
        };
        let Ok(key) = Self::identify(&mut file) else {
            return;
        };
        let Ok(md) = file.metadata() else {
            return;
        };
        // A file we follow already under another name (renamed), or twice.
        if self
            .files
            .iter()
            .any(|t| t.key.dev == key.dev && t.key.ino == key.ino && !t.draining)
        {
            return;
        }
        let size = md.len();
        let saved = self.saved.iter().position(|e| {
            e.key.dev == key.dev && e.key.ino == key.ino && {
                let mut f2 = match File::open(path) {
                    Ok(f) => f,
                    Err(_) => return false,
                };
                Self::same_file(&e.key, &mut f2)
            }
        });
        let (offset, key) = match saved {
            Some(i) => {
                let e = self.saved.remove(i);
                // Resume; a file that shrank meanwhile was truncated.
                let off = if e.offset <= size { e.offset } else { 0 };
                (off, e.key)
            }
            None if self.first_scan && self.settings.start_at == StartAt::End => (size, key),
            None => (0, key),
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.checkpoints.register(id, path, key.clone(), offset);
        tracing::debug!(path, offset, "following file");
        self.files.push(Tracked {
            id,
            path: path.to_string(),
            origin: Arc::from(path),
            file,
            key,
            offset,
            partial: Vec::new(),
            skipping: false,
            draining: false,
        });
    }

    /// Run until stopped.
    pub fn run(mut self) {
        let mut last_scan = Instant::now() - RESCAN_EVERY;
        let mut last_checkpoint = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if last_scan.elapsed() >= RESCAN_EVERY {
                last_scan = Instant::now();
                for p in self.expand() {
                    let followed = self.files.iter().any(|t| t.path == p && !t.draining);
                    if !followed {
                        self.open(&p);
                    }
                }
                self.first_scan = false;
                self.check_rotation();
            }
            let mut progressed = false;
            let mut i = 0;
            while i < self.files.len() {
                match self.read_available(i) {
                    Ok(n) => progressed |= n > 0,
                    Err(Closed) => return,
                }
                if self.files[i].draining {
                    self.flush_partial(i);
                    let t = self.files.remove(i);
                    // Its last batch may still be in flight; it was
                    // acknowledged or will be. Forget it once read.
                    self.checkpoints.forget(t.id);
                    tracing::debug!(path = %t.path, "released rotated file");
                    continue;
                }
                i += 1;
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                last_checkpoint = Instant::now();
                self.checkpoints.persist();
            }
            if !progressed {
                std::thread::sleep(IDLE_POLL);
                // Rotation is checked on every idle poll too: a renamed
                // file is drained at once and the new one picked up.
                self.check_rotation();
            }
        }
    }

    /// Compare each followed file with what its path names now.
    fn check_rotation(&mut self) {
        let mut reopen = Vec::new();
        for t in &mut self.files {
            if t.draining {
                continue;
            }
            let current = std::fs::metadata(&t.path);
            let size_now = t.file.metadata().map(|m| m.len()).unwrap_or(0);
            match current {
                Ok(md) if md.dev() == t.key.dev && md.ino() == t.key.ino => {
                    if size_now < t.offset {
                        // copytruncate or truncation: start again at 0.
                        let _ = t.file.seek(SeekFrom::Start(0));
                        t.offset = 0;
                        t.partial.clear();
                        t.skipping = false;
                        self.stats.file(&t.path, |f| f.truncations += 1);
                        self.checkpoints.ack(t.id, 0);
                        tracing::info!(path = %t.path, "file truncated; reading from the start");
                    }
                }
                Ok(_) => {
                    // Renamed away and a new file created in its place:
                    // finish the old one, then follow the new one.
                    t.draining = true;
                    self.stats.file(&t.path, |f| f.rotations += 1);
                    reopen.push(t.path.clone());
                    tracing::info!(path = %t.path, "file rotated");
                }
                Err(_) => {
                    // Deleted (or renamed with nothing new yet).
                    t.draining = true;
                    self.stats.file(&t.path, |f| f.rotations += 1);
                }
            }
        }
        for p in reopen {
            // The replacement is new: read it from the start.
            let first = self.first_scan;
            self.first_scan = false;
            self.open(&p);
            self.first_scan = first;
        }
    }

    fn read_available(&mut self, i: usize) -> Result<usize, Closed> {
        let mut total = 0;
        loop {
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
            total += n;
            let lines = self.split(i, n);
            let t = &self.files[i];
            self.stats.file(&t.path, |f| {
                f.bytes += n as u64;
                f.lines += lines.len() as u64;
            });
            self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
            self.stats
                .lines_read
                .fetch_add(lines.len() as u64, Ordering::Relaxed);
            if !lines.is_empty() {
                self.send(i, lines)?;
            }
            if n < self.buf.len() {
                break;
            }
        }
        let t = &self.files[i];
        let size = t.file.metadata().map(|m| m.len()).unwrap_or(0);
        let lag = size.saturating_sub(t.offset + t.partial.len() as u64);
        self.stats.file(&t.path, |f| f.lag_bytes = lag);
        Ok(total)
    }

    /// Split `n` fresh bytes of `buf` into lines; advance the offset past
    /// each complete line.
    fn split(&mut self, i: usize, n: usize) -> Vec<String> {
        let max = self.settings.max_line_bytes;
        let t = &mut self.files[i];
        let data = &self.buf[..n];
        let mut lines = Vec::new();
        let mut start = 0;
        for nl in memchr_iter(data) {
            let piece = &data[start..nl];
            if t.skipping {
                t.skipping = false;
            } else if t.partial.is_empty() {
                let (l, cut) = decode_line(piece, max);
                if cut {
                    self.stats.lines_truncated.fetch_add(1, Ordering::Relaxed);
                }
                lines.push(l);
            } else {
                t.partial.extend_from_slice(piece);
                let (l, cut) = decode_line(&t.partial, max);
                if cut {
                    self.stats.lines_truncated.fetch_add(1, Ordering::Relaxed);
                }
                lines.push(l);
                t.partial.clear();
            }
            t.offset += (nl - start + 1) as u64;
            start = nl + 1;
        }
        let rest = &data[start..];
        if !rest.is_empty() {
            if t.skipping {
                t.offset += rest.len() as u64;
            } else {
                t.partial.extend_from_slice(rest);
                if t.partial.len() > max {
                    // Pass the first `max` bytes on now; drop the rest of
                    // this line as it comes.
                    let (l, _) = decode_line(&t.partial, max);
                    self.stats.lines_truncated.fetch_add(1, Ordering::Relaxed);
                    lines.push(l);
                    t.offset += t.partial.len() as u64;
                    t.partial.clear();
                    t.skipping = true;
                }
            }
        }
        lines
    }

    /// A rotated file ends without a newline: its last line is complete.
    fn flush_partial(&mut self, i: usize) {
        let t = &mut self.files[i];
        if t.partial.is_empty() || t.skipping {
            return;
        }
        let (l, _) = decode_line(&t.partial, self.settings.max_line_bytes);
        t.offset += t.partial.len() as u64;
        t.partial.clear();
        self.stats.lines_read.fetch_add(1, Ordering::Relaxed);
        let _ = self.send(i, vec![l]);
    }

    fn send(&mut self, i: usize, mut lines: Vec<String>) -> Result<(), Closed> {
        let t = &self.files[i];
        let max = self.settings.batch_lines;
        while !lines.is_empty() {
            let rest = if lines.len() > max {
                lines.split_off(max)
            } else {
                Vec::new()
            };
            // Only the last piece carries the offset: earlier pieces end
            // mid-read, and acknowledging them would skip nothing anyway.
            let ack = if rest.is_empty() {
                Some((t.id, t.offset))
            } else {
                None
            };
            let batch = Batch {
                origin: t.origin.clone(),
                lines,
                ack,
            };
            if self.tx.blocking_send(batch).is_err() {
                return Err(Closed);
            }
            lines = rest;
        }
        Ok(())
    }
}

/// The receiving side is gone: the pipeline stopped.
struct Closed;

fn memchr_iter(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\n', data)
}

/// Where the checkpoints of a pipeline live in the state directory.
pub fn checkpoint_path(state_dir: &Path, pipeline: &str) -> PathBuf {
    state_dir
        .join("checkpoints")
        .join(format!("{pipeline}.json"))
}
