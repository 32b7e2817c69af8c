//! The agent's standard input as a line source (pipes, tests).
use super::{decode_line, Batch};
use crate::stats::PipelineStats;
use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// Read stdin until EOF, in batches of at most `batch_lines`.
pub fn run(tx: Sender<Batch>, stats: Arc<PipelineStats>, max_line: usize, batch_lines: usize) {
    let origin: Arc<str> = Arc::from("stdin");
    let stdin = std::io::stdin();
    let mut lock = std::io::BufReader::with_capacity(1 << 16, stdin.lock());
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    loop {
        buf.clear();
        let n = match lock.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("reading stdin: {e}");
                break;
            }
        };
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
        // Send when full, or when nothing more is waiting in the buffer.
        if lines.len() >= batch_lines || lock.buffer().is_empty() {
            let batch = Batch {
                origin: origin.clone(),
                lines: std::mem::take(&mut lines),
                ack: None,
            };
            if tx.blocking_send(batch).is_err() {
                return;
            }
        }
    }
    if !lines.is_empty() {
        let _ = tx.blocking_send(Batch {
            origin,
            lines,
            ack: None,
        });
    }
}
