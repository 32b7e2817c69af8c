//! The agent's own counters, updated on the data path with atomics and
//! read at scrape time into `weir_*` families.
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Buckets of `weir_plugin_call_duration_seconds`.
pub const CALL_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A float that can be added to from many threads.
#[derive(Default, Debug)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    /// Add `v`.
    pub fn add(&self, v: f64) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match self
                .0
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(x) => cur = x,
            }
        }
    }
    /// Set to `v`.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }
    /// Current value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Call-duration histogram.
#[derive(Debug, Default, Clone)]
pub struct Hist {
    /// Non-cumulative counts, one more than `CALL_BUCKETS` (for `+Inf`).
    pub counts: Vec<u64>,
    /// Sum of observations.
    pub sum: f64,
}

impl Hist {
    /// As an exposed histogram (all zero before the first observation).
    pub fn to_out(&self) -> crate::exposition::OutValue {
        crate::exposition::OutValue::Histogram {
            buckets: CALL_BUCKETS.to_vec(),
            counts: if self.counts.is_empty() {
                vec![0; CALL_BUCKETS.len() + 1]
            } else {
                self.counts.clone()
            },
            sum: self.sum,
        }
    }

    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; CALL_BUCKETS.len() + 1];
        }
        self.counts[CALL_BUCKETS.partition_point(|b| *b < v)] += 1;
        self.sum += v;
    }
}

/// Per-file source figures.
#[derive(Debug, Default, Clone)]
pub struct FileStats {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Bytes between the read position and the end of the file.
    pub lag_bytes: u64,
    /// Rotations by rename or delete seen.
    pub rotations: u64,
    /// Truncations (copytruncate) seen.
    pub truncations: u64,
    /// Read errors.
    pub read_errors: u64,
}

/// Figures for one pipeline. Shared by the source, the plugin thread and
/// the exposition.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Plugin instance ready.
    pub up: AtomicBool,
    /// Source reachable / readable (for sources that can fail as a whole).
    pub source_up: AtomicBool,
    /// Lines read by the source.
    pub lines_read: AtomicU64,
    /// Bytes read by the source.
    pub bytes_read: AtomicU64,
    /// Lines cut at `max_line_bytes`.
    pub lines_truncated: AtomicU64,
    /// Lines lost because the plugin call that carried them failed.
    pub lines_dropped: AtomicU64,
    /// Plugin calls.
    pub calls: AtomicU64,
    /// Inputs the plugin reported it could not parse.
    pub inputs_rejected: AtomicU64,
    /// Instance restarts after a fault.
    pub restarts: AtomicU64,
    /// Linear memory of the current instance.
    pub memory_bytes: AtomicU64,
    /// Call errors by reason.
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Refused updates by reason.
    pub updates_rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Call durations.
    pub call_duration: Mutex<Hist>,
    /// Per-file figures, by path.
    pub files: Mutex<BTreeMap<String, FileStats>>,
    /// Source failures by reason (polls, scans, commands).
    pub source_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Poll or scan durations.
    pub poll_duration: Mutex<Hist>,
    /// Files of /proc the scan was not allowed to read.
    pub scan_denied: AtomicU64,
    /// The last error or warning logged for this pipeline, for the status
    /// page: (Unix time, text).
    pub last_error: Mutex<Option<(f64, String)>>,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl PipelineStats {
    /// Remember `text` as the pipeline's last error (shown on the status
    /// page with its time).
    pub fn note_error(&self, text: impl Into<String>) {
        *self.last_error.lock() = Some((unix_now(), text.into()));
    }
    /// Count an error.
    pub fn error(&self, reason: &'static str) {
        *self.errors.lock().entry(reason).or_insert(0) += 1;
    }
    /// Count refused updates.
    pub fn rejected(&self, reason: &'static str, n: u64) {
        *self.updates_rejected.lock().entry(reason).or_insert(0) += n;
    }
    /// Count a source failure.
    pub fn source_error(&self, reason: &'static str) {
        *self.source_errors.lock().entry(reason).or_insert(0) += 1;
    }
    /// Record a poll's duration.
    pub fn observe_poll(&self, secs: f64) {
        self.poll_duration.lock().observe(secs);
    }
    /// Record a call's duration.
    pub fn observe_call(&self, secs: f64) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.call_duration.lock().observe(secs);
    }
    /// Update one file's figures.
    pub fn file(&self, path: &str, f: impl FnOnce(&mut FileStats)) {
        let mut files = self.files.lock();
        match files.get_mut(path) {
            Some(s) => f(s),
            None => {
                let mut s = FileStats::default();
                f(&mut s);
                files.insert(path.to_string(), s);
            }
        }
    }
}

/// Agent-wide figures.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Reloads that succeeded.
    pub reloads_ok: AtomicU64,
    /// Reloads that failed.
    pub reloads_failed: AtomicU64,
    /// Whether the last reload succeeded.
    pub last_reload_ok: AtomicBool,
    /// Unix time of the last successful reload.
    pub last_reload_success_time: AtomicF64,
    /// Series dropped at scrape time because two pipelines declared one
    /// family name differently, or produced the same series.
    pub exposition_conflicts: AtomicU64,
    /// The last configuration load, for the status page.
    pub last_reload: Mutex<Option<ReloadRecord>>,
}

/// The outcome of one configuration load.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadRecord {
    /// Unix time it finished.
    pub time: f64,
    /// Whether it was applied.
    pub ok: bool,
    /// Pipelines added, changed and removed (when applied).
    pub added: Vec<String>,
    /// See `added`.
    pub changed: Vec<String>,
    /// See `added`.
    pub removed: Vec<String>,
    /// Why it was not applied: one entry per error, each naming the file,
    /// line and key.
    pub errors: Vec<String>,
}

/// Figures of one target.
#[derive(Default, Debug)]
pub struct RemoteWriteStats {
    /// Samples accepted by the receiver.
    pub sent: AtomicU64,
    /// Samples refused by the receiver (4xx other than 429).
    pub failed: AtomicU64,
    /// Samples sent again after a retryable failure.
    pub retried: AtomicU64,
    /// Samples dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Samples waiting.
    pub queued: AtomicU64,
    /// Unix time of the last accepted request.
    pub last_success: AtomicF64,
}
