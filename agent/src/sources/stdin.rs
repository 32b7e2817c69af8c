//! The agent's standard input as a line source (pipes, tests), framed
//! like every line source (see [`super::framing`]).
use super::{pump_lines, Batch};
use crate::config::MultilineSettings;
use crate::stats::PipelineStats;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// Read stdin until EOF, joining multi-line records with `multiline`.
pub fn run(
    tx: Sender<Batch>,
    stats: Arc<PipelineStats>,
    max_line: usize,
    batch_lines: usize,
    multiline: Option<MultilineSettings>,
) {
    let stdin = std::io::stdin();
    if let Err(e) = pump_lines(
        stdin.lock(),
        Arc::from("stdin"),
        &tx,
        &stats,
        max_line,
        batch_lines,
        multiline.as_ref(),
    ) {
        tracing::warn!("reading stdin: {e}");
    }
}
