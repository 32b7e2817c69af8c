//! A command's standard output as lines (`journalctl -f -o json`,
//! `kubectl logs -f`, a script). The command is restarted with back-off
//! when it exits; its standard error goes to the agent log.
use super::{pump_lines, Batch};
use crate::stats::PipelineStats;
use parking_lot::Mutex;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// First wait before restarting a command that exited.
const MIN_RESTART: Duration = Duration::from_secs(1);
/// Longest wait.
const MAX_RESTART: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Settings of an exec source.
#[derive(Clone)]
pub struct ExecSettings {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// Longest line passed on.
    pub max_line_bytes: usize,
    /// Most lines per batch.
    pub batch_lines: usize,
}

/// The running child, so that `stop` can end it.
pub type ChildSlot = Arc<Mutex<Option<Child>>>;

/// Run the command until `stop`; restart it when it exits.
pub fn run(
    settings: ExecSettings,
    tx: Sender<Batch>,
    stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
    slot: ChildSlot,
    pipeline: String,
) {
    let origin: Arc<str> = Arc::from(settings.command.join(" "));
    let mut delay = MIN_RESTART;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let Some((program, args)) = settings.command.split_first() else {
            return;
        };
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                stats.source_up.store(false, Ordering::Relaxed);
                tracing::error!(
                    pipeline,
                    "cannot run {:?}: {e}; retrying in {delay:?}",
                    settings.command
                );
                sleep_unless_stopped(delay, &stop);
                delay = (delay * 2).min(MAX_RESTART);
                continue;
            }
        };
        stats.source_up.store(true, Ordering::Relaxed);
        tracing::info!(pipeline, pid = child.id(), "started {:?}", settings.command);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        *slot.lock() = Some(child);
        if stop.load(Ordering::Relaxed) {
            kill(&slot);
        }
        let err_thread = stderr.map(|e| {
            let p = pipeline.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(e)
                    .lines()
                    .map_while(Result::ok)
                    .take(100_000)
                {
                    tracing::warn!(
                        pipeline = p,
                        stream = "stderr",
                        "{}",
                        line.chars().take(4096).collect::<String>()
                    );
                }
            })
        });
        let mut closed = false;
        if let Some(out) = stdout {
            let reader = std::io::BufReader::with_capacity(1 << 16, out);
            match pump_lines(
                reader,
                origin.clone(),
                &tx,
                &stats,
                settings.max_line_bytes,
                settings.batch_lines,
            ) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => closed = true,
                Err(e) => tracing::warn!(pipeline, "reading the command's output: {e}"),
            }
        }
        let status = slot.lock().take().and_then(|mut c| c.wait().ok());
        if let Some(t) = err_thread {
            let _ = t.join();
        }
        if closed || stop.load(Ordering::Relaxed) {
            return;
        }
        stats.source_up.store(false, Ordering::Relaxed);
        if started.elapsed() >= HEALTHY_RUN {
            delay = MIN_RESTART;
        }
        tracing::warn!(
            pipeline,
            "{:?} exited ({}); restarting in {delay:?}",
            settings.command,
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown status".into())
        );
        sleep_unless_stopped(delay, &stop);
        delay = (delay * 2).min(MAX_RESTART);
    }
}

/// End the running command, if any.
pub fn kill(slot: &ChildSlot) {
    if let Some(c) = slot.lock().as_mut() {
        let _ = c.kill();
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
