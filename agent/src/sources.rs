//! Sources: the host side that reads. Each source runs on its own thread
//! and sends batches over a bounded channel, so a slow plugin slows its
//! source instead of growing memory.
pub mod checkpoint;
pub mod container;
pub mod exec;
pub mod file;
pub mod framing;
pub mod http;
pub mod journald;
pub mod multiline;
pub mod process;
pub mod stdin;

use crate::config::MultilineSettings;
use crate::stats::PipelineStats;
pub use framing::decode_line;
use framing::{Framer, Lines, Resume};
use multiline::Joiner;
use std::io::Read;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// Bytes read at a time from a command's output or stdin. A batch holds
/// the lines one read completed, so it is at most this plus
/// `max_line_bytes` (the unfinished line carried over), however many
/// lines `batch_lines` allows.
const READ_CHUNK: usize = 64 << 10;

/// Lines for a log plugin.
#[derive(Debug)]
pub struct Batch {
    /// File path, `stdin`, or the command.
    pub origin: Arc<str>,
    /// Complete lines, without terminators.
    pub lines: Vec<String>,
    /// Where each line starts (byte offset): in the file; in the command's
    /// output since it was started; in stdin. Same length as `lines`.
    pub offsets: Vec<u64>,
    /// For checkpointed sources: the file's checkpoint entry and where to
    /// resume after these lines, to acknowledge once the plugin's updates
    /// are applied.
    pub ack: Option<(u64, Resume)>,
    /// Values of the source's labels for these lines (a container log's
    /// `namespace`, `pod`, ...), in the pipeline's order; empty for most
    /// sources.
    pub labels: Arc<[String]>,
}

/// The receiving side is gone: the pipeline stopped.
#[derive(Debug)]
pub struct Closed;

/// Send framed lines as batches of at most `batch_lines`. With `ack`
/// (checkpoint entry, resume point after the last line), each batch
/// carries where to resume after it: the start of the next batch's first
/// line, and `ack`'s point for the last.
pub fn send_lines(
    tx: &Sender<Batch>,
    origin: &Arc<str>,
    framed: Lines,
    batch_lines: usize,
    ack: Option<(u64, Resume)>,
) -> Result<(), Closed> {
    send_labelled(tx, origin, &Arc::from([]), framed, batch_lines, ack)
}

/// [`send_lines`], with the values of the source's labels.
pub fn send_labelled(
    tx: &Sender<Batch>,
    origin: &Arc<str>,
    labels: &Arc<[String]>,
    framed: Lines,
    batch_lines: usize,
    ack: Option<(u64, Resume)>,
) -> Result<(), Closed> {
    let max = batch_lines.max(1);
    let Lines {
        mut lines,
        mut offsets,
        ..
    } = framed;
    while !lines.is_empty() {
        let (rest, rest_offsets) = if lines.len() > max {
            (lines.split_off(max), offsets.split_off(max))
        } else {
            (Vec::new(), Vec::new())
        };
        let this_ack = match (ack, rest_offsets.first()) {
            (Some((id, _)), Some(&next)) => Some((
                id,
                Resume {
                    offset: next,
                    skip: false,
                },
            )),
            (a, _) => a,
        };
        let batch = Batch {
            origin: origin.clone(),
            lines,
            offsets,
            ack: this_ack,
            labels: labels.clone(),
        };
        if tx.blocking_send(batch).is_err() {
            return Err(Closed);
        }
        lines = rest;
        offsets = rest_offsets;
    }
    Ok(())
}

/// Read lines from a stream until EOF, through the shared [`Framer`]
/// (memory bounded by `max_line` whatever arrives) and, with `multiline`,
/// a [`Joiner`], sending what each read completed at once, so a slow
/// trickle is not held back. A last line without a newline, and an
/// unfinished record, are passed on at EOF; an unfinished record also when
/// nothing could be read for its timeout. `BrokenPipe` means the receiver
/// is gone.
pub fn pump_lines<R: Read + AsFd>(
    mut reader: R,
    origin: Arc<str>,
    tx: &Sender<Batch>,
    stats: &PipelineStats,
    max_line: usize,
    batch_lines: usize,
    multiline: Option<&MultilineSettings>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut framer = Framer::new(max_line, Resume::default());
    let mut joiner = multiline.cloned().map(Joiner::new);
    let closed = |_: Closed| std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    loop {
        if let Some(j) = joiner.as_mut() {
            if let Some(deadline) = j.deadline() {
                match wait_readable(&reader, deadline.saturating_duration_since(Instant::now())) {
                    Wait::Ready => {}
                    Wait::Interrupted => continue,
                    Wait::TimedOut => {
                        let records = j.flush();
                        count_records(stats, &records);
                        send_lines(tx, &origin, records, batch_lines, None).map_err(closed)?;
                        continue;
                    }
                }
            }
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        let mut out = Lines::default();
        framer.feed(&buf[..n], &mut out);
        count(stats, &out);
        let out = join(&mut joiner, stats, out);
        send_lines(tx, &origin, out, batch_lines, None).map_err(closed)?;
    }
    let mut out = Lines::default();
    framer.finish(&mut out);
    count(stats, &out);
    let mut out = join(&mut joiner, stats, out);
    if let Some(j) = joiner.as_mut() {
        let last = j.flush();
        count_records(stats, &last);
        out.lines.extend(last.lines);
        out.offsets.extend(last.offsets);
    }
    send_lines(tx, &origin, out, batch_lines, None).map_err(closed)
}

/// What waiting for a stream to become readable gave.
pub(crate) enum Wait {
    /// Readable, at its end, or in error: a read will say which.
    Ready,
    /// Nothing to read for the whole wait.
    TimedOut,
    /// A signal came: wait again.
    Interrupted,
}

pub(crate) fn wait_readable(fd: &impl AsFd, wait: Duration) -> Wait {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: wait.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(0) => Wait::TimedOut,
        Ok(_) => Wait::Ready,
        Err(rustix::io::Errno::INTR) => Wait::Interrupted,
        Err(_) => Wait::Ready,
    }
}

/// Framed lines through the joiner, when there is one: the records they
/// completed.
pub fn join(joiner: &mut Option<Joiner>, stats: &PipelineStats, framed: Lines) -> Lines {
    match joiner {
        Some(j) => {
            let records = j.join(framed);
            count_records(stats, &records);
            records
        }
        None => framed,
    }
}

/// Count records cut at `max_lines` or `max_bytes`.
pub fn count_records(stats: &PipelineStats, records: &Lines) {
    if records.records_cut > 0 {
        stats
            .records_truncated
            .fetch_add(records.records_cut, Ordering::Relaxed);
    }
}

/// Count framed lines in the pipeline's figures.
pub fn count(stats: &PipelineStats, framed: &Lines) {
    if !framed.is_empty() {
        stats
            .lines_read
            .fetch_add(framed.len() as u64, Ordering::Relaxed);
    }
    if framed.cut > 0 {
        stats
            .lines_truncated
            .fetch_add(framed.cut, Ordering::Relaxed);
    }
}
