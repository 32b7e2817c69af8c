//! The agent's own counters, updated on the data path with atomics and
//! read at scrape time into `weir_*` families.
//!
//! The families are declared once, as data ([`SelfMetric`]); at scrape
//! time the agent reads its figures into a [`SelfMetrics`], which becomes a
//! store like any pipeline's, so every output format writes the agent's
//! own metrics by the same rules as the rest.
use crate::outputs::{Conflict, Format};
use crate::store::{Change, FamilyDecl, Kind, PipelineStore, RawUpdate, Semantics};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the figures of a file the source let go of (rotated away or
/// deleted, read to its end) stay exposed: long enough for scrapes to see
/// its last lines (Prometheus' staleness period is 5 minutes), short
/// enough that daily or hourly names do not pile up.
pub const RELEASED_FILE_LINGER: Duration = Duration::from_secs(300);
/// At most this many let-go files keep their figures per pipeline; past
/// it the oldest go first. With [`RELEASED_FILE_LINGER`], this bounds the
/// `weir_file_*` series under any churn of file names: the files followed
/// now, plus this many.
pub const RELEASED_FILES_KEPT: usize = 64;

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
    /// Counts per bucket (all zero before the first observation) and sum.
    pub fn reading(&self) -> (Vec<u64>, f64) {
        let counts = if self.counts.is_empty() {
            vec![0; CALL_BUCKETS.len() + 1]
        } else {
            self.counts.clone()
        };
        (counts, self.sum)
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
    /// When the source let go of the file (its figures go after
    /// [`RELEASED_FILE_LINGER`]); `None` while it is followed.
    pub released: Option<Instant>,
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
    /// Multi-line records cut at their `max_lines` or `max_bytes`.
    pub records_truncated: AtomicU64,
    /// Lines not in the source's format (a container log's), dropped.
    pub lines_invalid: AtomicU64,
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
    /// Updates folded into an overflow series, by family name (at most
    /// one entry per declared family).
    pub overflowed: Mutex<BTreeMap<String, u64>>,
    /// Call durations.
    pub call_duration: Mutex<Hist>,
    /// Per-file figures, by path: files followed, and files let go of in
    /// the last [`RELEASED_FILE_LINGER`] (at most [`RELEASED_FILES_KEPT`]).
    pub files: Mutex<BTreeMap<String, FileStats>>,
    /// Paths let go of, oldest first, with when (an entry whose path was
    /// followed again since is stale and skipped).
    released: Mutex<VecDeque<(Instant, String)>>,
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
    /// Update one file's figures (a path let go of is followed again).
    pub fn file(&self, path: &str, f: impl FnOnce(&mut FileStats)) {
        let mut files = self.files.lock();
        match files.get_mut(path) {
            Some(s) => {
                s.released = None;
                f(s)
            }
            None => {
                let mut s = FileStats::default();
                f(&mut s);
                files.insert(path.to_string(), s);
            }
        }
    }

    /// The source let go of the file at `path` after reading it to its
    /// end: its figures stay for [`RELEASED_FILE_LINGER`], then go.
    pub fn release_file(&self, path: &str) {
        let now = Instant::now();
        if let Some(s) = self.files.lock().get_mut(path) {
            s.released = Some(now);
            s.lag_bytes = 0;
            self.released.lock().push_back((now, path.to_string()));
        }
        self.prune_files(now);
    }

    /// Remove the figures of files let go of more than
    /// [`RELEASED_FILE_LINGER`] before `now`, and the oldest past
    /// [`RELEASED_FILES_KEPT`]. Cheap when there are none.
    pub fn prune_files(&self, now: Instant) {
        let mut queue = self.released.lock();
        if queue.is_empty() {
            return;
        }
        let mut files = self.files.lock();
        while let Some((at, path)) = queue.front() {
            let current = files.get(path).and_then(|s| s.released) == Some(*at);
            if current && queue.len() <= RELEASED_FILES_KEPT && now < *at + RELEASED_FILE_LINGER {
                break;
            }
            if current {
                files.remove(path);
            }
            queue.pop_front();
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
    /// Scrapes of `/metrics` refused for `[server] max_scrape_bytes`.
    pub scrapes_over_limit: AtomicU64,
    /// Whether the last scrape in each format (index 0: text 0.0.4,
    /// 1: OpenMetrics) was refused for it, so that a run of refusals is
    /// logged once even when two scrapers ask for different formats whose
    /// bodies fall on either side of the limit.
    pub last_scrape_over_limit: [AtomicBool; 2],
    /// What scrapes left out or changed so that each format stays valid,
    /// by format and reason.
    pub exposition_conflicts: Mutex<BTreeMap<(Format, Conflict), u64>>,
    /// Conflicts already logged (reason, format, family), so each is
    /// logged once; bounded by [`MAX_CONFLICTS_LOGGED`].
    pub conflicts_logged: Mutex<HashSet<(Conflict, Format, String)>>,
    /// The last configuration load, for the status page.
    pub last_reload: Mutex<Option<ReloadRecord>>,
}

/// Most distinct conflicts logged; past it they are only counted.
pub const MAX_CONFLICTS_LOGGED: usize = 1000;

impl AgentStats {
    /// Count and log (once each) what a scrape in `format` left out.
    pub fn conflicts(&self, format: Format, c: &crate::outputs::Conflicts) {
        if c.counts.is_empty() {
            return;
        }
        let mut counts = self.exposition_conflicts.lock();
        for (reason, n) in &c.counts {
            *counts.entry((format, *reason)).or_insert(0) += n;
        }
        drop(counts);
        let mut logged = self.conflicts_logged.lock();
        for (reason, family, detail) in &c.notes {
            if logged.len() < MAX_CONFLICTS_LOGGED
                && logged.insert((*reason, format, family.clone()))
            {
                tracing::warn!(
                    "exposition: {detail} (counted in weir_exposition_conflicts_total{{format=\"{}\",reason=\"{}\"}}; logged once)",
                    format.as_str(),
                    reason.as_str()
                );
            }
        }
    }
}

/// One family of the agent's own metrics.
#[derive(Debug)]
pub struct SelfFamily {
    /// Name (counters end in `_total`).
    pub name: &'static str,
    /// Kind.
    pub kind: Kind,
    /// HELP text.
    pub help: &'static str,
    /// Label names, in the order values are given.
    pub labels: &'static [&'static str],
}

macro_rules! self_metrics {
    ($($id:ident: $name:literal, $kind:ident, [$($l:literal),*], $help:literal;)*) => {
        /// The agent's own metric families, declared once: name, kind,
        /// label names, HELP (see [`SelfMetric::family`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum SelfMetric { $($id),* }

        impl SelfMetric {
            /// Every family, in declaration order (the store's indices).
            pub const ALL: &'static [SelfMetric] = &[$(SelfMetric::$id),*];

            /// The family's declaration.
            pub fn family(self) -> SelfFamily {
                match self {
                    $(SelfMetric::$id => SelfFamily {
                        name: $name,
                        kind: Kind::$kind,
                        help: $help,
                        labels: &[$($l),*],
                    }),*
                }
            }
        }
    };
}

self_metrics! {
    BuildInfo: "weir_build_info", Gauge, ["version", "wit"],
        "Build information of the running agent.";
    ConfigReloads: "weir_config_reloads_total", Counter, ["result"],
        "Configuration loads by result.";
    LastReloadOk: "weir_config_last_reload_successful", Gauge, [],
        "Whether the last configuration load succeeded (1) or left the old pipelines running (0).";
    LastReloadTime: "weir_config_last_reload_success_timestamp_seconds", Gauge, [],
        "Unix time of the last successful configuration load.";
    ScrapeLimitExceeded: "weir_scrape_limit_exceeded_total", Counter, [],
        "Scrapes of /metrics answered 500 because the exposition was larger than [server] max_scrape_bytes.";
    ExpositionConflicts: "weir_exposition_conflicts_total", Counter, ["format", "reason"],
        "Families, series or samples a scrape left out or changed so that the format it wrote stays valid (see docs/http.md).";
    RwSent: "weir_remote_write_samples_sent_total", Counter, ["target"],
        "Samples the receiver accepted.";
    RwFailed: "weir_remote_write_samples_failed_total", Counter, ["target"],
        "Samples the receiver refused (4xx other than 429); not retried.";
    RwRetried: "weir_remote_write_samples_retried_total", Counter, ["target"],
        "Samples sent again after a 5xx, 429 or connection failure.";
    RwDropped: "weir_remote_write_samples_dropped_total", Counter, ["target"],
        "Samples dropped because the queue was full.";
    RwQueue: "weir_remote_write_queue_samples", Gauge, ["target"],
        "Samples waiting to be sent.";
    RwLastSuccess: "weir_remote_write_last_success_timestamp_seconds", Gauge, ["target"],
        "Unix time of the last request the receiver accepted.";
    OtlpSent: "weir_otlp_points_sent_total", Counter, ["target"],
        "OTLP data points the receiver accepted.";
    OtlpFailed: "weir_otlp_points_failed_total", Counter, ["target"],
        "OTLP data points the receiver refused (4xx other than 429, or rejected in a partial success); not retried.";
    OtlpRetried: "weir_otlp_points_retried_total", Counter, ["target"],
        "OTLP data points sent again after a 5xx, 429 or connection failure.";
    OtlpDropped: "weir_otlp_points_dropped_total", Counter, ["target"],
        "OTLP data points dropped because the queue was full.";
    OtlpQueue: "weir_otlp_queue_points", Gauge, ["target"],
        "OTLP data points waiting to be sent.";
    OtlpLastSuccess: "weir_otlp_last_success_timestamp_seconds", Gauge, ["target"],
        "Unix time of the last OTLP request the receiver accepted.";
    OtlpRequests: "weir_otlp_requests_total", Counter, ["target", "code"],
        "OTLP requests by HTTP status code of the answer (\"error\": no answer).";
    PipelineUp: "weir_pipeline_up", Gauge, ["pipeline", "plugin"],
        "Whether the pipeline's plugin instance is running (1) or restarting (0).";
    SourceLines: "weir_source_lines_total", Counter, ["pipeline"],
        "Lines read by the pipeline's source.";
    SourceBytes: "weir_source_bytes_total", Counter, ["pipeline"],
        "Bytes read by the pipeline's source.";
    SourceTruncated: "weir_source_lines_truncated_total", Counter, ["pipeline"],
        "Lines cut at the pipeline's max_line_bytes.";
    SourceLinesInvalid: "weir_source_lines_invalid_total", Counter, ["pipeline"],
        "Lines dropped because they are not in the source's format (format = \"cri\" or \"docker\").";
    SourceRecordsTruncated: "weir_source_records_truncated_total", Counter, ["pipeline"],
        "Multi-line records cut at the pipeline's multiline max_lines or max_bytes (their further lines dropped).";
    InputsDropped: "weir_pipeline_inputs_dropped_total", Counter, ["pipeline"],
        "Lines or responses lost because the plugin call that carried them failed.";
    InputsRejected: "weir_plugin_inputs_rejected_total", Counter, ["pipeline"],
        "Inputs the plugin could not parse (bad lines, invalid JSON), as it reported them.";
    Calls: "weir_plugin_calls_total", Counter, ["pipeline"],
        "Calls into the plugin.";
    Restarts: "weir_plugin_restarts_total", Counter, ["pipeline"],
        "Plugin instances replaced after a trap, timeout or memory-limit hit.";
    Memory: "weir_plugin_memory_bytes", Gauge, ["pipeline"],
        "Linear memory of the pipeline's plugin instance.";
    Errors: "weir_plugin_errors_total", Counter, ["pipeline", "reason"],
        "Failed plugin calls by reason.";
    UpdatesRejected: "weir_plugin_updates_rejected_total", Counter, ["pipeline", "reason"],
        "Updates the host refused as invalid, by reason.";
    SeriesDropped: "weir_pipeline_series_dropped_total", Counter, ["pipeline"],
        "Updates for new label sets past max_series (folded into their family's overflow series).";
    SeriesOverflow: "weir_pipeline_series_overflow_total", Counter, ["pipeline", "family"],
        "Updates past max_series folded into the family's overflow series (labels at \"__overflow__\"), by family.";
    Series: "weir_pipeline_series", Gauge, ["pipeline"],
        "Series the pipeline holds.";
    SeriesLimit: "weir_pipeline_series_limit", Gauge, ["pipeline"],
        "The pipeline's max_series.";
    CallDuration: "weir_plugin_call_duration_seconds", Histogram, ["pipeline"],
        "Time spent in plugin calls.";
    SourceUp: "weir_source_up", Gauge, ["pipeline"],
        "Whether the pipeline's last poll or scan succeeded, or its command is running (1), or not (0).";
    SourceErrors: "weir_source_errors_total", Counter, ["pipeline", "reason"],
        "Failed polls or scans by reason; for commands, exits and failures to start.";
    PollDuration: "weir_source_poll_duration_seconds", Histogram, ["pipeline"],
        "Time taken by polls (HTTP) and scans (process table).";
    ScanDenied: "weir_process_scan_denied_total", Counter, ["pipeline"],
        "Files under /proc the process scan was not allowed to read.";
    FileLines: "weir_file_lines_total", Counter, ["pipeline", "path"],
        "Lines read from the file.";
    FileBytes: "weir_file_bytes_total", Counter, ["pipeline", "path"],
        "Bytes read from the file.";
    FileLag: "weir_file_lag_bytes", Gauge, ["pipeline", "path"],
        "Bytes between the read position and the end of the file.";
    FileRotations: "weir_file_rotations_total", Counter, ["pipeline", "path"],
        "Rotations (rename or delete) seen.";
    FileTruncations: "weir_file_truncations_total", Counter, ["pipeline", "path"],
        "Truncations (copytruncate) seen.";
    FileReadErrors: "weir_file_read_errors_total", Counter, ["pipeline", "path"],
        "Read errors.";
}

/// The agent's figures of one scrape, as updates of a store declaring
/// every [`SelfMetric`].
#[derive(Default)]
pub struct SelfMetrics {
    updates: Vec<RawUpdate>,
}

impl SelfMetrics {
    /// Set a counter or gauge series; `labels` in the family's order.
    pub fn set(&mut self, m: SelfMetric, labels: &[&str], v: f64) {
        let labels = labels.iter().map(|s| s.to_string()).collect();
        self.updates.push((m as u32, labels, Change::Set(v)));
    }

    /// Set a histogram series of [`CALL_BUCKETS`].
    pub fn histogram(&mut self, m: SelfMetric, labels: &[&str], h: &Hist) {
        let (counts, sum) = h.reading();
        let labels = labels.iter().map(|s| s.to_string()).collect();
        self.updates
            .push((m as u32, labels, Change::SetHistogram(counts, sum)));
    }

    /// The figures as a store.
    pub fn into_store(self) -> PipelineStore {
        let mut s = PipelineStore::new(Vec::new(), usize::MAX);
        s.declare(
            SelfMetric::ALL
                .iter()
                .map(|m| {
                    let f = m.family();
                    let histogram = f.kind == Kind::Histogram;
                    FamilyDecl {
                        name: f.name.into(),
                        kind: f.kind,
                        help: f.help.into(),
                        unit: if histogram {
                            "seconds".into()
                        } else {
                            String::new()
                        },
                        labels: f.labels.iter().map(|l| l.to_string()).collect(),
                        buckets: if histogram {
                            CALL_BUCKETS.to_vec()
                        } else {
                            Vec::new()
                        },
                    }
                })
                .collect(),
        );
        s.apply(self.updates, Semantics::Events);
        s
    }
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
    /// Requests by HTTP status code (`error` when no response came).
    pub requests: Mutex<BTreeMap<String, u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(st: &PipelineStats) -> Vec<String> {
        st.files.lock().keys().cloned().collect()
    }

    #[test]
    fn released_files_linger_then_go_and_stay_bounded() {
        let st = PipelineStats::default();
        st.file("a.log", |f| f.lines += 3);
        st.file("b.log", |f| f.lines += 1);
        st.release_file("a.log");
        let t0 = Instant::now();
        // Still there for scrapes to see its last lines.
        st.prune_files(t0);
        assert_eq!(paths(&st), ["a.log", "b.log"]);
        st.prune_files(t0 + RELEASED_FILE_LINGER + Duration::from_secs(1));
        assert_eq!(paths(&st), ["b.log"]);

        // A path followed again before it went keeps its figures.
        st.release_file("b.log");
        st.file("b.log", |f| f.lines += 1);
        st.prune_files(Instant::now() + RELEASED_FILE_LINGER * 2);
        assert_eq!(st.files.lock()["b.log"].lines, 2);

        // Churn of names: at most RELEASED_FILES_KEPT let-go files stay.
        for i in 0..1000 {
            let p = format!("app-{i}.log");
            st.file(&p, |f| f.lines += 1);
            st.release_file(&p);
        }
        assert_eq!(st.files.lock().len(), RELEASED_FILES_KEPT + 1);
        assert!(st.files.lock().contains_key("app-999.log"));
        assert!(!st.files.lock().contains_key("app-0.log"));
    }
}
