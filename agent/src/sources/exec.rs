//! A command's standard output as lines (`journalctl -f -o json`,
//! `kubectl logs -f`, a script). The command is restarted with back-off
//! when it exits; its standard error goes to the agent log, tagged with
//! the pipeline.
//!
//! The command runs in a process group of its own, and stopping the
//! pipeline kills the whole group: a child it started (`sh -c 'a | b'`, a
//! `sleep` in a script) would otherwise hold the output pipe open and keep
//! the source, and the agent's shutdown, waiting. On Linux the command is
//! also killed if the agent dies without stopping it.
//!
//! The command does not inherit the agent's environment, which holds the
//! agent's own secrets (bearer tokens and passwords read from `_env`
//! settings): it gets [`DEFAULT_ENV`] and the variables its source's `env`
//! names, nothing else. Its command line is logged with the values of
//! secret-looking options redacted.
use super::framing::{Framer, Lines, Resume};
use super::{pump_lines, Batch};
use crate::stats::PipelineStats;
use parking_lot::Mutex;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// First wait before restarting a command that exited.
/// `weir_source_errors_total` reasons: the command exited, or could not
/// be started.
pub const ERROR_REASONS: [&str; 2] = ["exit", "spawn"];

const MIN_RESTART: Duration = Duration::from_secs(1);
/// Longest wait.
const MAX_RESTART: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// Standard error lines logged per second at most; the rest are counted
/// and reported in one line.
const STDERR_LINES_PER_SEC: u32 = 50;
/// Longest standard error line logged.
const STDERR_LINE_BYTES: usize = 4096;

/// Variables every command gets from the agent's environment (when set):
/// where programs are, and the locale and time zone their output depends
/// on. None of them holds a secret.
pub const DEFAULT_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// Settings of an exec source.
#[derive(Clone)]
pub struct ExecSettings {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// Names of the agent's environment variables passed on, beyond
    /// [`DEFAULT_ENV`].
    pub env: Vec<String>,
    /// Longest line passed on.
    pub max_line_bytes: usize,
    /// Most lines per batch.
    pub batch_lines: usize,
    /// How lines are joined into multi-line records, if they are.
    pub multiline: Option<crate::config::MultilineSettings>,
}

/// The running child, so that `stop` can end it.
pub type ChildSlot = Arc<Mutex<Option<Child>>>;

pub(crate) fn spawn(command: &[String], env: &[String]) -> std::io::Result<Child> {
    let Some((program, args)) = command.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for name in DEFAULT_ENV
        .iter()
        .copied()
        .chain(env.iter().map(String::as_str))
    {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            // Killed with the agent (the thread that started it, which
            // lives as long as the command does).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Run the command until `stop`; restart it when it exits.
pub fn run(
    settings: ExecSettings,
    tx: Sender<Batch>,
    stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
    slot: ChildSlot,
    pipeline: String,
) {
    // The command line as logged and as plugins see it (an origin may end
    // up in a label): secret-looking values hidden.
    let shown = crate::config::redact::argv(&settings.command);
    let origin: Arc<str> = Arc::from(shown.as_str());
    let mut sup = Supervisor::new(&pipeline, &stats, &stop, &slot, "");
    loop {
        let go_on = sup.run_once(
            &settings.command,
            &settings.env,
            &shown,
            |out| match pump_lines(
                out,
                origin.clone(),
                &tx,
                &stats,
                settings.max_line_bytes,
                settings.batch_lines,
                settings.multiline.as_ref(),
            ) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => true,
                Err(e) => {
                    tracing::warn!(pipeline = %pipeline, "reading the command's output: {e}");
                    false
                }
            },
        );
        if !go_on {
            return;
        }
    }
}

/// One child process run again and again until `stop`, as the exec and
/// journald sources do: started in its group, its standard error logged,
/// killed when the pipeline goes, restarted after a back-off of 1 s
/// doubling to 60 s (back to 1 s after a run of 10 s), each failure
/// counted in `weir_source_errors_total` by [`ERROR_REASONS`] and shown in
/// `weir_source_up`.
pub(crate) struct Supervisor<'a> {
    pipeline: &'a str,
    stats: &'a PipelineStats,
    stop: &'a AtomicBool,
    slot: &'a ChildSlot,
    /// Added to "cannot run" errors, e.g. where the program comes from.
    hint: &'a str,
    delay: Duration,
}

impl<'a> Supervisor<'a> {
    /// A supervisor at the shortest back-off.
    pub(crate) fn new(
        pipeline: &'a str,
        stats: &'a PipelineStats,
        stop: &'a AtomicBool,
        slot: &'a ChildSlot,
        hint: &'a str,
    ) -> Self {
        Supervisor {
            pipeline,
            stats,
            stop,
            slot,
            hint,
            delay: MIN_RESTART,
        }
    }

    /// `what` could not be done (the program could not be started): count
    /// it as `spawn`, log it, and wait the back-off.
    pub(crate) fn failed(&mut self, what: &str) {
        self.stats.source_up.store(false, Ordering::Relaxed);
        self.stats.source_error(ERROR_REASONS[1]);
        tracing::error!(
            pipeline = %self.pipeline,
            "{what}{}; retrying in {:?}",
            self.hint,
            self.delay
        );
        self.backoff();
    }

    fn backoff(&mut self) {
        sleep_unless_stopped(self.delay, self.stop);
        self.delay = (self.delay * 2).min(MAX_RESTART);
    }

    /// Start `argv` (logged as `shown`), hand its standard output to
    /// `read` (which returns whether the pipeline is gone, so that nothing
    /// reads any more), wait for it to exit and the back-off. `false` when
    /// the caller must return: stopped, or the pipeline gone.
    pub(crate) fn run_once(
        &mut self,
        argv: &[String],
        env: &[String],
        shown: &str,
        read: impl FnOnce(std::process::ChildStdout) -> bool,
    ) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let started = Instant::now();
        let mut child = match spawn(argv, env) {
            Ok(c) => c,
            Err(e) => {
                self.failed(&format!("cannot run `{shown}`: {e}"));
                return true;
            }
        };
        let (pipeline, stats, slot) = (self.pipeline, self.stats, self.slot);
        stats.source_up.store(true, Ordering::Relaxed);
        tracing::info!(pipeline = %pipeline, pid = child.id(), "started `{shown}`");
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        *slot.lock() = Some(child);
        if self.stop.load(Ordering::Relaxed) {
            kill(slot);
        }
        let err_thread = stderr.and_then(|e| {
            let p = pipeline.to_string();
            std::thread::Builder::new()
                .name(format!("stderr:{p}"))
                .spawn(move || log_stderr(e, &p))
                .ok()
        });
        let closed = stdout.is_some_and(read);
        if closed {
            // The pipeline is going away: nothing reads the output.
            kill(slot);
        }
        let status = wait(slot, self.stop);
        if let Some(t) = err_thread {
            let _ = t.join();
        }
        if closed || self.stop.load(Ordering::Relaxed) {
            return false;
        }
        stats.source_up.store(false, Ordering::Relaxed);
        stats.source_error(ERROR_REASONS[0]);
        if started.elapsed() >= HEALTHY_RUN {
            self.delay = MIN_RESTART;
        }
        tracing::warn!(
            pipeline = %pipeline,
            "`{shown}` exited ({}); restarting in {:?}",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown status".into()),
            self.delay
        );
        self.backoff();
        true
    }
}

/// Wait for the child in `slot` to exit, leaving it there meanwhile so that
/// `stop` can kill it (a command may close its output and go on running).
/// Once it exited, whatever it left running in its group is killed too.
pub(crate) fn wait(slot: &ChildSlot, stop: &AtomicBool) -> Option<ExitStatus> {
    let mut killed = false;
    loop {
        {
            let mut guard = slot.lock();
            let child = guard.as_mut()?;
            if exited(child) {
                // Not reaped yet: the group id cannot have been reused.
                kill_group(child);
                let status = child.wait().ok();
                *guard = None;
                return status;
            }
        }
        if stop.load(Ordering::Relaxed) && !killed {
            kill(slot);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the child exited, without reaping it. An error (no such
/// child) counts as exited, so that `wait` does not loop forever.
fn exited(child: &Child) -> bool {
    let pid: libc::id_t = child.id();
    // SAFETY: a zeroed siginfo_t is a valid value; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain system call on our own child; WNOWAIT leaves it
    // waitable, so std's `Child` still reaps it.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
        )
    };
    // SAFETY: si_pid is set by waitid (0 when nothing exited yet).
    r != 0 || unsafe { info.si_pid() } != 0
}

/// Log the command's standard error, line by line, at most
/// `STDERR_LINES_PER_SEC` a second. Reads to the end whatever the bytes
/// are: a command must never be stopped by a pipe nobody reads. Framed
/// like every line source, lines cut at `STDERR_LINE_BYTES`.
pub(crate) fn log_stderr(mut stream: ChildStderr, pipeline: &str) {
    let mut buf = vec![0u8; 16 << 10];
    let mut framer = Framer::new(STDERR_LINE_BYTES, Resume::default());
    let mut window = Instant::now();
    let mut logged = 0u32;
    let mut suppressed = 0u64;
    let mut eof = false;
    while !eof {
        let mut out = Lines::default();
        match stream.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => {
                eof = true;
                framer.finish(&mut out);
            }
            Ok(n) => framer.feed(&buf[..n], &mut out),
        }
        for text in out.lines {
            if window.elapsed() >= Duration::from_secs(1) {
                if suppressed > 0 {
                    tracing::warn!(pipeline = %pipeline, stream = "stderr", "{suppressed} more lines not logged");
                }
                window = Instant::now();
                logged = 0;
                suppressed = 0;
            }
            if logged >= STDERR_LINES_PER_SEC {
                suppressed += 1;
                continue;
            }
            logged += 1;
            tracing::warn!(pipeline = %pipeline, stream = "stderr", "{text}");
        }
    }
    if suppressed > 0 {
        tracing::warn!(pipeline = %pipeline, stream = "stderr", "{suppressed} more lines not logged");
    }
}

/// Kill the process group the command leads (its children included).
/// Only called on a child not reaped yet.
fn kill_group(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // the group is the child's own (process_group(0)), and the child
        // is not reaped yet, so its id cannot have been reused.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// End the running command and everything it started, if any.
pub fn kill(slot: &ChildSlot) {
    if let Some(c) = slot.lock().as_mut() {
        kill_group(c);
        let _ = c.kill();
    }
}

pub(crate) fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
