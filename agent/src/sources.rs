//! Sources: the host side that reads. Each source runs on its own thread
//! and sends batches over a bounded channel, so a slow plugin slows its
//! source instead of growing memory.
pub mod exec;
pub mod file;
pub mod framing;
pub mod http;
pub mod process;
pub mod stdin;

use crate::stats::PipelineStats;
pub use framing::decode_line;
use framing::{Framer, Lines, Resume};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
/// (memory bounded by `max_line` whatever arrives), sending what each read
/// completed at once, so a slow trickle is not held back. A last line
/// without a newline is passed on at EOF. `BrokenPipe` means the receiver
/// is gone.
pub fn pump_lines<R: Read>(
    mut reader: R,
    origin: Arc<str>,
    tx: &Sender<Batch>,
    stats: &PipelineStats,
    max_line: usize,
    batch_lines: usize,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut framer = Framer::new(max_line, Resume::default());
    let closed = |_: Closed| std::io::Error::from(std::io::ErrorKind::BrokenPipe);
    loop {
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
        send_lines(tx, &origin, out, batch_lines, None).map_err(closed)?;
    }
    let mut out = Lines::default();
    framer.finish(&mut out);
    count(stats, &out);
    send_lines(tx, &origin, out, batch_lines, None).map_err(closed)
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
