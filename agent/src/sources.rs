//! Sources: the host side that reads. Each source runs on its own thread
//! and sends batches over a bounded channel, so a slow plugin slows its
//! source instead of growing memory.
pub mod exec;
pub mod file;
pub mod http;
pub mod process;
pub mod stdin;

use crate::stats::PipelineStats;
use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// Lines for a log plugin.
#[derive(Debug)]
pub struct Batch {
    /// File path, `stdin`, or the command.
    pub origin: Arc<str>,
    /// Complete lines, without terminators.
    pub lines: Vec<String>,
    /// For checkpointed sources: (file id, offset after these lines), to
    /// acknowledge once the plugin's updates are applied.
    pub ack: Option<(u64, u64)>,
}

/// Turn raw line bytes into a string for the plugin: invalid UTF-8 becomes
/// U+FFFD, a trailing `\r` is dropped, and the line is cut at `max` bytes
/// (at a character boundary). Returns the line and whether it was cut.
pub fn decode_line(raw: &[u8], max: usize) -> (String, bool) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let (raw, cut) = if raw.len() > max {
        (&raw[..max], true)
    } else {
        (raw, false)
    };
    let mut s = String::from_utf8_lossy(raw).into_owned();
    if cut {
        // A cut can split a multi-byte character into U+FFFD; that is fine.
        while s.len() > max {
            s.pop();
        }
    }
    (s, cut)
}

/// Read lines from a stream until EOF, in batches of at most
/// `batch_lines`, sending a batch as soon as nothing more is buffered (so
/// a slow trickle is not held back). `BrokenPipe` means the receiver is
/// gone.
pub fn pump_lines<R: std::io::Read>(
    mut reader: std::io::BufReader<R>,
    origin: Arc<str>,
    tx: &Sender<Batch>,
    stats: &PipelineStats,
    max_line: usize,
    batch_lines: usize,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        stats.lines_read.fetch_add(1, Ordering::Relaxed);
        let raw = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let (line, cut) = decode_line(raw, max_line);
        if cut {
            stats.lines_truncated.fetch_add(1, Ordering::Relaxed);
        }
        lines.push(line);
        if lines.len() >= batch_lines || reader.buffer().is_empty() {
            let batch = Batch {
                origin: origin.clone(),
                lines: std::mem::take(&mut lines),
                ack: None,
            };
            if tx.blocking_send(batch).is_err() {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
        }
    }
    if !lines.is_empty() {
        let batch = Batch {
            origin,
            lines,
            ack: None,
        };
        if tx.blocking_send(batch).is_err() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::decode_line;

    #[test]
    fn decodes_invalid_utf8_and_cuts_long_lines() {
        assert_eq!(decode_line(b"ok\r", 10), ("ok".to_string(), false));
        assert_eq!(
            decode_line(b"a\xffb", 10),
            ("a\u{fffd}b".to_string(), false)
        );
        let (s, cut) = decode_line("ééééé".as_bytes(), 5);
        assert!(cut && s.len() <= 5 && s.starts_with("éé"));
    }
}
