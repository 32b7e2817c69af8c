//! One pipeline: a source thread feeding a plugin thread over a bounded
//! channel, and the store the plugin's updates land in.
//!
//! The plugin thread owns the wasmtime `Store`. A trap, a timeout or a
//! memory-limit hit drops the instance, and a new instance is made after
//! a back-off that doubles up to [`MAX_BACKOFF`] and resets after a
//! successful call.
//!
//! **A failed batch of lines is retried in halves** until the lines that
//! make the call fail are isolated: one poison line costs itself, not the
//! lines that came with it. This is safe because the updates of a failed
//! call are never applied (a call's output is all or nothing), and the
//! halves are fed in order, so what is done is always a prefix of the
//! batch and checkpoints stay exact. Each dropped line is counted in
//! `weir_pipeline_inputs_dropped_total` and logged (at most
//! [`DROPS_TOLD_PER_MINUTE`] lines a minute) with its pipeline, origin and
//! byte offset. While retrying, a new instance is made at once (the fault
//! is the line's); the back-off applies once a failure is given up on.
//!
//! The cost is bounded: isolating one poison line in a batch of `n` takes
//! about `log2(n)` failed calls, which re-feed about `n` lines in all,
//! plus as many successful calls on the halves that are fine. Splits are
//! paid from a budget of [`SPLIT_BURST`] per pipeline, refilled at
//! [`SPLITS_PER_SECOND`]; with none left a failed part is dropped whole,
//! as if there were no retrying. So a storm of poison lines costs at most
//! `SPLITS_PER_SECOND` extra failed calls a second (each re-feeding at most
//! `batch_lines` lines, each with an instantiation), after a first burst of
//! `SPLIT_BURST`, however many poison lines arrive. And a plugin that
//! fails every call (no success in `2·log2(batch_lines) + 2` calls) is no
//! longer split for at all: it is backed off as a crash loop.
use crate::config::{PipelineSpec, SourceSpec};
use crate::runtime::bindings::process::exports::weir::plugin::process::Fields;
use crate::runtime::{bindings::types, CallError, Instance, PluginCode, Runtime, World};
use crate::sources::file::{CheckpointFile, Checkpoints, FileSourceSettings, Tailer};
use crate::sources::framing::Resume;
use crate::sources::Batch;
use crate::stats::PipelineStats;
use crate::store::{
    Change, Declared, FamilyDecl, Kind, PipelineStore, RawUpdate, Reject, Semantics,
};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// First wait before re-instantiating a failed plugin.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Refused updates are told in the log at most this often per pipeline
/// (always counted in the self-metrics).
/// `weir_plugin_updates_rejected_total` reason: a family declared during a
/// call that the host refused.
pub const DECLARATION_REFUSED: &str = "declaration";

/// `weir_source_errors_total` reason: a poll or scan whose plugin call
/// failed.
pub const PLUGIN_FAILED: &str = "plugin";

const REFUSALS_TOLD_EVERY: Duration = Duration::from_secs(60);
/// Batches waiting between a source and its plugin.
const QUEUE_BATCHES: usize = 4;
/// Splits of failed batches a pipeline may make in a burst.
pub const SPLIT_BURST: f64 = 64.0;
/// Splits regained per second, up to [`SPLIT_BURST`].
pub const SPLITS_PER_SECOND: f64 = 4.0;
/// Dropped lines logged per minute and pipeline, at most; the others are
/// counted and summed up in one line.
pub const DROPS_TOLD_PER_MINUTE: u32 = 10;

/// A pipeline built and initialised, not yet running.
pub struct Prepared {
    spec: PipelineSpec,
    code: PluginCode,
    instance: Instance,
    decls: Vec<FamilyDecl>,
    fields: Fields,
}

/// How to name a pipeline's plugin in messages.
pub fn plugin_desc(spec: &PipelineSpec, code: &PluginCode) -> String {
    format!(
        "pipeline \"{}\", plugin {} ({})",
        spec.name, spec.plugin, code.hash
    )
}

/// The plugin world a source feeds.
pub fn world_for(source: &SourceSpec) -> World {
    match source {
        SourceSpec::File { .. }
        | SourceSpec::Stdin
        | SourceSpec::Exec { .. }
        | SourceSpec::Journald { .. } => World::Log,
        SourceSpec::Http(_) => World::Http,
        SourceSpec::Process { .. } => World::Process,
    }
}

impl From<types::MetricKind> for Kind {
    fn from(k: types::MetricKind) -> Kind {
        match k {
            types::MetricKind::Counter => Kind::Counter,
            types::MetricKind::Gauge => Kind::Gauge,
            types::MetricKind::Histogram => Kind::Histogram,
            types::MetricKind::Summary => Kind::Summary,
        }
    }
}

/// Validate declarations as a plugin sent them; `const_labels` are the
/// pipeline's constant label names. Used by the agent and by `weir test`.
pub fn validate_families(
    families: Vec<types::Family>,
    const_labels: &[String],
) -> Result<Vec<FamilyDecl>, String> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for f in families {
        if !names.insert(f.name.clone()) {
            return Err(format!("family \"{}\" is declared twice", f.name));
        }
        out.push(FamilyDecl::validate(
            f.name,
            f.kind.into(),
            f.help,
            f.unit,
            f.labels,
            f.buckets,
            const_labels,
        )?);
    }
    Ok(out)
}

/// Validate what a pipeline's plugin declared.
fn to_decls(spec: &PipelineSpec, families: Vec<types::Family>) -> Result<Vec<FamilyDecl>, String> {
    validate_families(families, &spec.label_names())
}

/// Instantiate and initialise a plugin for a pipeline; every error names
/// the pipeline and the plugin.
fn instantiate(
    rt: &Runtime,
    spec: &PipelineSpec,
    code: &PluginCode,
) -> Result<(Instance, Vec<FamilyDecl>, Fields), String> {
    let desc = plugin_desc(spec, code);
    let mut inst = Instance::new(
        rt,
        code,
        spec.limits,
        &format!("{}/{}", spec.name, spec.plugin),
    )
    .map_err(|e| format!("{desc}: cannot instantiate: {e:#}"))?;
    let decl = inst.init(&spec.plugin_config).map_err(|e| match e {
        CallError::Plugin(m) => format!("{desc}: init failed: {m}"),
        other => format!("{desc}: init failed: {other}"),
    })?;
    let fields = decl.process_fields.unwrap_or(Fields::empty());
    let decls = to_decls(spec, decl.families).map_err(|e| format!("{desc}: {e}"))?;
    Ok((inst, decls, fields))
}

/// Build a pipeline aside: check the plugin fits the source, instantiate
/// it and run `init`.
pub fn prepare(rt: &Runtime, spec: PipelineSpec, code: PluginCode) -> Result<Prepared, String> {
    let want = world_for(&spec.source);
    if code.world != want {
        return Err(format!(
            "{}: the plugin consumes {} input, but the source is {}; use a {} plugin",
            plugin_desc(&spec, &code),
            code.world.as_str(),
            spec.source.kind(),
            want.as_str()
        ));
    }
    let (instance, decls, fields) = instantiate(rt, &spec, &code)?;
    Ok(Prepared {
        spec,
        code,
        instance,
        decls,
        fields,
    })
}

impl Prepared {
    /// The declared families.
    pub fn decls(&self) -> &[FamilyDecl] {
        &self.decls
    }

    /// The pipeline's settings.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// The compiled plugin.
    pub fn code(&self) -> &PluginCode {
        &self.code
    }

    /// The instance, initialised, and the process fields it asked for: for
    /// a caller that runs the plugin itself (`weir test`) instead of
    /// starting the pipeline.
    pub fn into_parts(self) -> (PluginCode, Instance, Vec<FamilyDecl>, Fields) {
        (self.code, self.instance, self.decls, self.fields)
    }
}

/// A running pipeline.
pub struct Pipeline {
    /// Its settings.
    pub spec: PipelineSpec,
    /// Content hash of its plugin.
    pub code_hash: String,
    /// Series state.
    pub store: Arc<Mutex<PipelineStore>>,
    /// Figures.
    pub stats: Arc<PipelineStats>,
    /// Offsets of a file source.
    pub checkpoints: Option<Arc<Checkpoints>>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    child: Option<crate::sources::exec::ChildSlot>,
    /// Set for snapshot sources polled at scrape time.
    pub on_scrape: Option<Arc<ScrapeTrigger>>,
    /// What starting did with the families of the store it took over.
    pub declared: Declared,
}

struct Worker {
    rt: Arc<Runtime>,
    spec: PipelineSpec,
    code: PluginCode,
    store: Arc<Mutex<PipelineStore>>,
    stats: Arc<PipelineStats>,
    checkpoints: Option<Arc<Checkpoints>>,
    stop: Arc<AtomicBool>,
    backoff: Duration,
    fields: Fields,
    refusals_told: Option<Instant>,
    /// The error value of the last call, while calls keep returning it:
    /// a plugin that fails the same way at every poll (a stats page it
    /// cannot read) is logged once as a warning, then at debug level,
    /// until a call succeeds or the error changes.
    repeated_error: Option<String>,
    splits: Budget,
    drops_told: Told,
    /// Failed calls since the last successful one.
    failures: u32,
}

/// A token bucket: what splitting failed batches may still cost.
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new() -> Self {
        Budget {
            tokens: SPLIT_BURST,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let regained = now.duration_since(self.at).as_secs_f64() * SPLITS_PER_SECOND;
        self.tokens = (self.tokens + regained).min(SPLIT_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rate limit for the log lines about dropped inputs.
struct Told {
    window: Instant,
    told: u32,
    untold: u64,
}

impl Told {
    fn new() -> Self {
        Told {
            window: Instant::now(),
            told: 0,
            untold: 0,
        }
    }

    /// Whether to log one more; when a minute is over, says how many were
    /// not logged in it.
    fn tell(&mut self, pipeline: &str) -> bool {
        if self.window.elapsed() >= Duration::from_secs(60) {
            if self.untold > 0 {
                tracing::warn!(
                    pipeline = %pipeline,
                    "{} more dropped inputs not logged (all are counted in \
                     weir_pipeline_inputs_dropped_total)",
                    self.untold
                );
            }
            *self = Told::new();
        }
        if self.told < DROPS_TOLD_PER_MINUTE {
            self.told += 1;
            true
        } else {
            self.untold += 1;
            false
        }
    }
}

/// Plugin updates in the store's terms.
pub fn convert(updates: Vec<types::Update>) -> Vec<RawUpdate> {
    updates
        .into_iter()
        .map(|u| {
            let change = match u.change {
                types::Change::Add(v) => Change::Add(v),
                types::Change::Set(v) => Change::Set(v),
                types::Change::Observe(v) => Change::Observe(vec![v]),
                types::Change::ObserveMany(vs) => Change::Observe(vs),
                types::Change::SetHistogram(h) => Change::SetHistogram(h.counts, h.sum),
                types::Change::SetSummary(r) => Change::SetSummary(r.quantiles, r.sum, r.count),
            };
            (u.family, u.labels, change)
        })
        .collect()
}

impl Worker {
    fn desc(&self) -> String {
        plugin_desc(&self.spec, &self.code)
    }

    /// Sleep for the back-off, waking early if the pipeline stops.
    fn back_off(&mut self) {
        let until = Instant::now() + self.backoff;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn ensure(&mut self, slot: &mut Option<Instance>) -> bool {
        while slot.is_none() {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            match instantiate(&self.rt, &self.spec, &self.code) {
                Ok((inst, decls, fields)) => {
                    self.store.lock().declare(decls);
                    self.fields = fields;
                    self.stats.up.store(true, Ordering::Relaxed);
                    tracing::info!(pipeline = %self.spec.name, "plugin restarted");
                    *slot = Some(inst);
                }
                Err(e) => {
                    self.stats.error("init");
                    self.stats.note_error(e.clone());
                    tracing::error!("{e}; retrying in {:?}", self.backoff);
                    self.back_off();
                }
            }
        }
        true
    }

    /// Apply a call's result (snapshot sources: one input per call).
    /// False when the call failed.
    fn handle(
        &mut self,
        slot: &mut Option<Instance>,
        result: Result<types::Output, CallError>,
        inputs: u64,
        semantics: Semantics,
    ) -> bool {
        match result {
            Ok(out) => {
                self.apply(out, semantics, &[]);
                true
            }
            Err(e) => {
                self.stats
                    .lines_dropped
                    .fetch_add(inputs, Ordering::Relaxed);
                self.failed(slot, &e);
                if e.is_fatal() {
                    tracing::error!(
                        "{}: {e}; {inputs} inputs dropped, restarting the plugin in {:?}",
                        self.desc(),
                        self.backoff
                    );
                    self.back_off();
                } else {
                    let text = e.to_string();
                    if self.repeated_error.as_deref() == Some(text.as_str()) {
                        tracing::debug!("{}: {text} (again)", self.desc());
                    } else {
                        tracing::warn!(
                            "{}: {text} (the same error again is logged at debug level)",
                            self.desc()
                        );
                        self.repeated_error = Some(text);
                    }
                }
                false
            }
        }
    }

    /// Apply the output of a successful call; `source_values` are the
    /// values of the source's labels for its input.
    fn apply(&mut self, out: types::Output, semantics: Semantics, source_values: &[String]) {
        self.repeated_error = None;
        let rejected_inputs = u64::from(out.rejected);
        if rejected_inputs > 0 {
            self.stats
                .inputs_rejected
                .fetch_add(rejected_inputs, Ordering::Relaxed);
        }
        let mut store = self.store.lock();
        if !out.declare.is_empty() {
            // One by one: a refused family keeps its index, so the
            // families declared after it keep theirs.
            for f in out.declare {
                let declared = to_decls(&self.spec, vec![f]).and_then(|d| store.declare_more(d));
                if let Err(e) = declared {
                    store.declare_refused();
                    self.stats.rejected(DECLARATION_REFUSED, 1);
                    self.stats
                        .note_error(format!("family declared during a call refused: {e}"));
                    tracing::warn!(
                        "{}: family declared during a call refused: {e}",
                        self.desc()
                    );
                }
            }
        }
        let applied = store.apply_with(convert(out.updates), semantics, source_values);
        drop(store);
        if !applied.rejected.is_empty()
            && self
                .refusals_told
                .is_none_or(|t| t.elapsed() >= REFUSALS_TOLD_EVERY)
        {
            self.refusals_told = Some(Instant::now());
            let what: Vec<String> = applied
                .rejected
                .iter()
                .map(|(reason, n)| match reason {
                    Reject::SeriesLimit => {
                        format!("{n} new series past max_series ({})", self.spec.max_series)
                    }
                    r => format!("{n} {}", r.as_str()),
                })
                .collect();
            self.stats
                .note_error(format!("updates refused: {}", what.join(", ")));
            tracing::warn!(
                "{}: updates refused: {} (counted in weir_plugin_updates_rejected_total \
                 and weir_pipeline_series_dropped_total; told at most once a minute)",
                self.desc(),
                what.join(", ")
            );
        }
        for (reason, n) in applied.rejected {
            self.stats.rejected(reason.as_str(), n);
        }
        self.backoff = MIN_BACKOFF;
        self.failures = 0;
    }

    /// Count a failed call; drop the instance if it can no longer be
    /// used (the next call makes a new one).
    fn failed(&mut self, slot: &mut Option<Instance>, e: &CallError) {
        self.stats.error(e.reason());
        self.stats.note_error(e.to_string());
        self.failures = self.failures.saturating_add(1);
        if e.is_fatal() {
            *slot = None;
            self.stats.up.store(false, Ordering::Relaxed);
            self.stats.restarts.fetch_add(1, Ordering::Relaxed);
            self.stats.memory_bytes.store(0, Ordering::Relaxed);
        }
    }

    fn run_log(mut self, mut slot: Option<Instance>, mut rx: mpsc::Receiver<Batch>) {
        self.first_empty_call(&mut slot);
        // Drain until every sender is gone, so lines read before a stop
        // are still counted and acknowledged.
        while let Some(batch) = rx.blocking_recv() {
            let Batch {
                origin,
                lines,
                offsets,
                ack,
                labels,
            } = batch;
            let n = lines.len();
            // No checkpoint is written between applying and acknowledging
            // (see Checkpoints): the values it keeps match its offsets.
            let checkpoints = self.checkpoints.clone();
            let gate = checkpoints.as_ref().map(|c| c.gate());
            let done = self.feed_lines(&mut slot, &origin, &labels, lines, &offsets);
            // Lines applied or dropped as failing are acknowledged, so a
            // poison line is not fed again after a restart; lines not fed
            // because the pipeline stopped are read again at the next start.
            if let (Some(cp), Some((id, end))) = (&self.checkpoints, ack) {
                if done == n {
                    cp.ack(id, end);
                } else if let (true, Some(&offset)) = (done > 0, offsets.get(done)) {
                    cp.ack(
                        id,
                        Resume {
                            offset,
                            skip: false,
                        },
                    );
                }
            }
            drop(gate);
            if let Some(cp) = &checkpoints {
                cp.persist_if_due();
            }
        }
    }

    /// One call with no lines, right after the start, so that what a
    /// plugin creates at its first call (the SDK's `initial` series, at 0:
    /// a counter without labels) is exposed from the start, not from the
    /// first line: `absent()` and `increase()` alerts then work before
    /// anything was logged. Skipped where the source labels each input
    /// (container logs: the series need a pod's labels). A failed call is
    /// counted like any other, and nothing is retried.
    ///
    /// Only for the built-in plugins, which are known to take a call with
    /// no lines as one: a plugin file may do work at every call whatever
    /// it is given (and no plugin was ever called without lines before),
    /// so it is not surprised with one.
    fn first_empty_call(&mut self, slot: &mut Option<Instance>) {
        let builtin = matches!(self.spec.plugin, crate::config::PluginRef::Builtin(_));
        if !builtin || !self.spec.source_labels().is_empty() {
            return;
        }
        let Some(inst) = slot.as_mut() else { return };
        let t = Instant::now();
        let result = inst.on_lines("", &mut Vec::new());
        self.stats.observe_call(t.elapsed().as_secs_f64());
        match result {
            Ok(out) => self.apply(out, Semantics::Events, &[]),
            Err(e) => {
                tracing::debug!("{}: the call with no lines at start failed: {e}", self.desc());
                self.failed(slot, &e);
            }
        }
    }

    /// Failed calls in a row past which a failed part is no longer split:
    /// enough to isolate a poison line at the very start of a batch (all
    /// left halves fail) and a few more, so a plugin that fails whatever it
    /// is fed is not retried in halves for ever, only backed off.
    fn max_failures_splitting(&self) -> u32 {
        let depth = usize::BITS - self.spec.batch_lines.max(1).leading_zeros();
        2 * depth + 2
    }

    /// Feed one batch to the plugin, retrying a failed part in halves (see
    /// the module documentation). Returns how many of the lines, always a
    /// prefix, were dealt with (applied, or dropped as failing): all of
    /// them unless the pipeline stopped.
    fn feed_lines(
        &mut self,
        slot: &mut Option<Instance>,
        origin: &str,
        source_values: &[String],
        lines: Vec<String>,
        offsets: &[u64],
    ) -> usize {
        if lines.is_empty() {
            // Only a position to acknowledge (a journal entry skipped).
            return 0;
        }
        // Depth first, left half first: parts are done in order.
        let mut parts: Vec<(usize, Vec<String>)> = vec![(0, lines)];
        let mut done = 0;
        while let Some((start, mut part)) = parts.pop() {
            let n = part.len();
            if !self.ensure(slot) {
                let rest = n + parts.iter().map(|(_, p)| p.len()).sum::<usize>();
                self.stats
                    .lines_dropped
                    .fetch_add(rest as u64, Ordering::Relaxed);
                return done;
            }
            let Some(inst) = slot.as_mut() else {
                return done;
            };
            let t = Instant::now();
            let result = inst.on_lines(origin, &mut part);
            self.stats.observe_call(t.elapsed().as_secs_f64());
            self.stats
                .memory_bytes
                .store(inst.memory_bytes() as u64, Ordering::Relaxed);
            let e = match result {
                Ok(out) => {
                    self.apply(out, Semantics::Events, source_values);
                    done = start + n;
                    continue;
                }
                Err(e) => e,
            };
            self.failed(slot, &e);
            if n > 1 && self.failures <= self.max_failures_splitting() && self.splits.take() {
                tracing::debug!("{}: {e}; retrying its {n} lines in halves", self.desc());
                let right = part.split_off(n / 2);
                parts.push((start + n / 2, right));
                parts.push((start, part));
                continue;
            }
            self.stats
                .lines_dropped
                .fetch_add(n as u64, Ordering::Relaxed);
            if self.drops_told.tell(&self.spec.name) {
                let at = offsets.get(start).copied().unwrap_or(0);
                let what = if n == 1 {
                    format!("line dropped: {origin}, the line at byte offset {at}")
                } else {
                    format!(
                        "{n} lines dropped without retrying them (retry budget spent): \
                         {origin}, from byte offset {at}"
                    )
                };
                let then = if e.is_fatal() {
                    format!("; restarting the plugin in {:?}", self.backoff)
                } else {
                    String::new()
                };
                tracing::warn!("{}: {e}; {what}{then}", self.desc());
            }
            if e.is_fatal() {
                self.back_off();
            }
            done = start + n;
        }
        done
    }
}

impl Worker {
    /// Wait until `next`, waking early on stop. False when stopped.
    fn wait_until(&self, next: Instant) -> bool {
        while Instant::now() < next {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep((next - Instant::now()).min(Duration::from_millis(20)));
        }
        !self.stop.load(Ordering::Relaxed)
    }

    /// A snapshot that could not be taken: no stale values stay behind.
    fn source_failed(&self, reason: &'static str, msg: &str) {
        self.stats.source_error(reason);
        self.stats.note_error(format!("source down: {msg}"));
        if self.stats.source_up.swap(false, Ordering::Relaxed) {
            tracing::warn!(pipeline = %self.spec.name, "source down: {msg}");
        } else {
            tracing::debug!(pipeline = %self.spec.name, "source still down: {msg}");
        }
        self.store.lock().clear_series();
    }

    fn source_ok(&self) {
        if !self.stats.source_up.swap(true, Ordering::Relaxed) {
            tracing::info!(pipeline = %self.spec.name, "source up");
        }
    }

    /// Wait for the next snapshot: the interval, or a scrape's request.
    fn next_turn(&self, sched: &mut Schedule) -> bool {
        match &sched.on_scrape {
            Some(t) => t.wait_wanted(&self.stop),
            None => {
                let go = self.wait_until(sched.next);
                sched.next += sched.interval;
                if sched.next < Instant::now() {
                    sched.next = Instant::now() + sched.interval;
                }
                go
            }
        }
    }

    fn run_http(
        mut self,
        mut slot: Option<Instance>,
        settings: crate::sources::http::HttpSettings,
        mut sched: Schedule,
    ) {
        // As logged and as the plugin sees it (plugins name it in their
        // errors, and could put it in a label): query values and user info
        // hidden.
        let url = crate::config::redact::url(&settings.url);
        let poller = match crate::sources::http::Poller::new(settings) {
            Ok(p) => p,
            Err(e) => {
                self.source_failed("other", &e);
                tracing::error!(pipeline = %self.spec.name, "{e}");
                return;
            }
        };
        while self.next_turn(&mut sched) {
            let go_on = self.http_once(&mut slot, &poller, &url);
            sched.done();
            if !go_on {
                return;
            }
        }
    }

    /// One poll and its plugin call. False when the pipeline stops.
    fn http_once(
        &mut self,
        slot: &mut Option<Instance>,
        poller: &crate::sources::http::Poller,
        url: &str,
    ) -> bool {
        let start = Instant::now();
        let fetched = poller.poll();
        self.stats.observe_poll(start.elapsed().as_secs_f64());
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                self.source_failed(e.reason(), &format!("{url}: {e}"));
                return true;
            }
        };
        self.stats
            .bytes_read
            .fetch_add(fetched.body.len() as u64, Ordering::Relaxed);
        self.stats.lines_read.fetch_add(1, Ordering::Relaxed);
        if !self.ensure(slot) {
            return false;
        }
        let Some(inst) = slot.as_mut() else {
            return true;
        };
        let response = crate::runtime::bindings::http::exports::weir::plugin::http::Response {
            url: url.to_string(),
            status: fetched.status,
            headers: fetched.headers,
            body: fetched.body,
        };
        let t = Instant::now();
        let result = inst.on_response(&response);
        let mem = inst.memory_bytes();
        self.snapshot_done(
            slot,
            result,
            t,
            mem,
            &format!("{url}: the plugin could not handle the response"),
        );
        true
    }

    /// Account for a snapshot call and apply its result.
    fn snapshot_done(
        &mut self,
        slot: &mut Option<Instance>,
        result: Result<types::Output, CallError>,
        started: Instant,
        memory: usize,
        failure: &str,
    ) {
        self.stats.observe_call(started.elapsed().as_secs_f64());
        self.stats
            .memory_bytes
            .store(memory as u64, Ordering::Relaxed);
        if self.handle(slot, result, 1, Semantics::Snapshot) {
            self.source_ok();
        } else {
            self.source_failed(PLUGIN_FAILED, failure);
        }
    }

    fn run_process(mut self, mut slot: Option<Instance>, mut sched: Schedule) {
        let scanner = match crate::sources::process::Scanner::new() {
            Ok(s) => s,
            Err(e) => {
                self.source_failed("other", &e);
                return;
            }
        };
        while self.next_turn(&mut sched) {
            let go_on = self.scan_once(&mut slot, &scanner);
            sched.done();
            if !go_on {
                return;
            }
        }
    }

    /// One scan and its plugin call. False when the pipeline stops.
    fn scan_once(
        &mut self,
        slot: &mut Option<Instance>,
        scanner: &crate::sources::process::Scanner,
    ) -> bool {
        if !self.ensure(slot) {
            return false;
        }
        let start = Instant::now();
        let scanned = scanner.scan(self.fields);
        self.stats.observe_poll(start.elapsed().as_secs_f64());
        let (scan, issues) = match scanned {
            Ok(s) => s,
            Err(e) => {
                self.source_failed("other", &e);
                return true;
            }
        };
        self.stats
            .scan_denied
            .fetch_add(issues.denied, Ordering::Relaxed);
        self.stats
            .lines_read
            .fetch_add(scan.processes.len() as u64, Ordering::Relaxed);
        let Some(inst) = slot.as_mut() else {
            return true;
        };
        let t = Instant::now();
        let result = inst.on_scan(&scan);
        let mem = inst.memory_bytes();
        self.snapshot_done(slot, result, t, mem, "the plugin could not handle the scan");
        true
    }
}

/// When a snapshot source (HTTP, process table) takes its next snapshot:
/// every `interval`, or, with `max_age`, when a scrape finds the last
/// snapshot older than that.
pub struct Schedule {
    interval: Duration,
    next: Instant,
    on_scrape: Option<Arc<ScrapeTrigger>>,
}

impl Schedule {
    fn new(interval: Duration, max_age: Option<Duration>) -> Self {
        Schedule {
            interval,
            next: Instant::now(),
            on_scrape: max_age.map(|m| Arc::new(ScrapeTrigger::new(m))),
        }
    }

    fn done(&self) {
        if let Some(t) = &self.on_scrape {
            t.done();
        }
    }
}

/// Scrape-time snapshots: a scrape asks for a fresh snapshot when the last
/// one is older than `max_age`, and waits for it.
pub struct ScrapeTrigger {
    max_age: Duration,
    state: Mutex<TriggerState>,
    cv: parking_lot::Condvar,
}

#[derive(Default)]
struct TriggerState {
    last: Option<Instant>,
    wanted: bool,
    generation: u64,
}

impl ScrapeTrigger {
    fn new(max_age: Duration) -> Self {
        ScrapeTrigger {
            max_age,
            state: Mutex::new(TriggerState::default()),
            cv: parking_lot::Condvar::new(),
        }
    }

    /// Called by a scrape: ask for a snapshot if the last is too old, and
    /// wait for it, at most `timeout`.
    pub fn refresh(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        if st.last.is_some_and(|l| l.elapsed() < self.max_age) {
            return;
        }
        let gen = st.generation;
        st.wanted = true;
        self.cv.notify_all();
        while st.generation == gen {
            if self.cv.wait_until(&mut st, deadline).timed_out() {
                return;
            }
        }
    }

    fn wait_wanted(&self, stop: &AtomicBool) -> bool {
        let mut st = self.state.lock();
        loop {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            if st.wanted {
                st.wanted = false;
                return true;
            }
            self.cv.wait_for(&mut st, Duration::from_millis(100));
        }
    }

    fn done(&self) {
        let mut st = self.state.lock();
        st.last = Some(Instant::now());
        st.generation += 1;
        self.cv.notify_all();
    }
}

/// Put the series values saved in a pipeline's checkpoint back, and say
/// what was restored and what starts afresh.
fn restore_values(pipeline: &str, store: &mut PipelineStore, saved: crate::store::SavedSeries) {
    let r = store.restore(saved);
    if r.series > 0 {
        tracing::info!(
            pipeline = %pipeline,
            series = r.series,
            families = %r.families.join(", "),
            "series values restored from the checkpoint"
        );
    }
    for (family, why) in r.dropped {
        tracing::info!(
            pipeline = %pipeline,
            family = %family,
            "saved series values not restored: {why}"
        );
    }
}

impl Pipeline {
    /// Start a prepared pipeline. `store` is the previous store of a
    /// pipeline of the same name (a reload): families whose declaration is
    /// unchanged keep their series. `checkpoints` likewise hands over file
    /// offsets.
    pub fn start(
        rt: Arc<Runtime>,
        prepared: Prepared,
        store: Option<Arc<Mutex<PipelineStore>>>,
        checkpoints: Option<Arc<Checkpoints>>,
        checkpoint_dir: Option<&Arc<crate::state::StateDir>>,
    ) -> Arc<Pipeline> {
        let Prepared {
            spec,
            code,
            instance,
            decls,
            fields,
        } = prepared;
        let const_values: Vec<String> = spec.labels.values().cloned().collect();
        let store_is_new = store.is_none();
        let store = store.unwrap_or_else(|| {
            Arc::new(Mutex::new(PipelineStore::new(
                const_values.clone(),
                spec.max_series,
            )))
        });
        let declared = {
            let mut s = store.lock();
            s.set_max_series(spec.max_series);
            // A reload hands over the old store: the constant labels (names
            // and values) are the new spec's from here on.
            s.declare_with(decls, const_values)
        };
        let stats = Arc::new(PipelineStats::default());
        stats.up.store(true, Ordering::Relaxed);
        stats.source_up.store(true, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Batch>(QUEUE_BATCHES);
        let mut threads = Vec::new();
        let checkpoints = match &spec.source {
            SourceSpec::File { .. } | SourceSpec::Journald { .. } => {
                Some(checkpoints.unwrap_or_else(|| {
                    Checkpoints::new(
                        checkpoint_dir.map(|d| CheckpointFile::new(d.clone(), &spec.name)),
                    )
                }))
            }
            _ => None,
        };
        if let Some(cp) = &checkpoints {
            // The values saved with the offsets: taken (so a later start
            // of journalctl cannot apply them again), used only by a
            // pipeline that starts with an empty store; a reload hands
            // over the live store instead.
            let saved = cp.saved_series();
            if spec.persist_values {
                if let (Some(saved), true) = (saved, store_is_new) {
                    restore_values(&spec.name, &mut store.lock(), saved);
                }
                cp.keep_values(Some(store.clone()));
            } else {
                cp.keep_values(None);
            }
        }
        let mut child = None;
        let name = spec.name.clone();
        let spawn = |what: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("{what}:{name}"))
                .spawn(f)
        };
        match &spec.source {
            SourceSpec::File {
                paths,
                start_at,
                format,
                labels,
            } => {
                let tailer = Tailer::new(
                    FileSourceSettings {
                        patterns: paths.clone(),
                        start_at: *start_at,
                        format: *format,
                        labels: labels.clone(),
                        max_line_bytes: spec.max_line_bytes,
                        batch_lines: spec.batch_lines,
                        multiline: spec.multiline.clone(),
                    },
                    tx,
                    stats.clone(),
                    checkpoints
                        .clone()
                        .unwrap_or_else(|| Checkpoints::new(None)),
                    stop.clone(),
                );
                // Its log lines name the pipeline.
                let span = tracing::info_span!("source", pipeline = %spec.name);
                match spawn("tail", Box::new(move || span.in_scope(|| tailer.run()))) {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        tracing::error!(pipeline = %spec.name, "cannot start source thread: {e}")
                    }
                }
            }
            SourceSpec::Exec { command, env } => {
                let slot: crate::sources::exec::ChildSlot = Arc::new(Mutex::new(None));
                child = Some(slot.clone());
                let settings = crate::sources::exec::ExecSettings {
                    command: command.clone(),
                    env: env.clone(),
                    max_line_bytes: spec.max_line_bytes,
                    batch_lines: spec.batch_lines,
                    multiline: spec.multiline.clone(),
                };
                let (st, stp, name) = (stats.clone(), stop.clone(), spec.name.clone());
                match spawn(
                    "exec",
                    Box::new(move || crate::sources::exec::run(settings, tx, st, stp, slot, name)),
                ) {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        tracing::error!(pipeline = %spec.name, "cannot start source thread: {e}")
                    }
                }
            }
            SourceSpec::Journald {
                matches,
                directory,
                start_at,
                cursor_interval,
            } => {
                let slot: crate::sources::exec::ChildSlot = Arc::new(Mutex::new(None));
                child = Some(slot.clone());
                let settings = crate::sources::journald::JournaldSettings {
                    matches: matches.clone(),
                    directory: directory.clone(),
                    start_at: *start_at,
                    cursor_interval: *cursor_interval,
                    max_line_bytes: spec.max_line_bytes,
                    batch_lines: spec.batch_lines,
                };
                let (st, stp, name) = (stats.clone(), stop.clone(), spec.name.clone());
                let cp = checkpoints
                    .clone()
                    .unwrap_or_else(|| Checkpoints::new(None));
                match spawn(
                    "journald",
                    Box::new(move || {
                        crate::sources::journald::run(settings, tx, st, cp, stp, slot, name)
                    }),
                ) {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        tracing::error!(pipeline = %spec.name, "cannot start source thread: {e}")
                    }
                }
            }
            // Snapshot sources poll on the plugin's thread: one poll, one
            // call, one snapshot, in order.
            SourceSpec::Http(_) | SourceSpec::Process { .. } => drop(tx),
            SourceSpec::Stdin => {
                let st = stats.clone();
                let (max, batch) = (spec.max_line_bytes, spec.batch_lines);
                let multiline = spec.multiline.clone();
                match spawn(
                    "stdin",
                    Box::new(move || crate::sources::stdin::run(tx, st, max, batch, multiline)),
                ) {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        tracing::error!(pipeline = %spec.name, "cannot start source thread: {e}")
                    }
                }
            }
        }
        let worker = Worker {
            rt,
            spec: spec.clone(),
            code: code.clone(),
            store: store.clone(),
            stats: stats.clone(),
            checkpoints: checkpoints.clone(),
            stop: stop.clone(),
            backoff: MIN_BACKOFF,
            fields,
            refusals_told: None,
            repeated_error: None,
            splits: Budget::new(),
            drops_told: Told::new(),
            failures: 0,
        };
        let source = spec.source.clone();
        // Snapshot sources: background interval or scrape-time.
        let (http_sched, process_sched) = match &spec.source {
            SourceSpec::Http(h) => (
                Schedule::new(h.interval, h.max_age),
                Schedule::new(Duration::from_secs(15), None),
            ),
            SourceSpec::Process { interval, max_age } => (
                Schedule::new(Duration::from_secs(15), None),
                Schedule::new(*interval, *max_age),
            ),
            _ => (
                Schedule::new(Duration::from_secs(15), None),
                Schedule::new(Duration::from_secs(15), None),
            ),
        };
        let on_scrape = http_sched
            .on_scrape
            .clone()
            .or_else(|| process_sched.on_scrape.clone());
        match spawn(
            "plugin",
            Box::new(move || match source {
                SourceSpec::Http(settings) => {
                    worker.run_http(Some(instance), *settings, http_sched)
                }
                SourceSpec::Process { .. } => worker.run_process(Some(instance), process_sched),
                _ => worker.run_log(Some(instance), rx),
            }),
        ) {
            Ok(h) => threads.push(h),
            Err(e) => tracing::error!(pipeline = %spec.name, "cannot start plugin thread: {e}"),
        }
        tracing::info!(
            pipeline = %spec.name,
            plugin = %spec.plugin,
            hash = %code.hash,
            source = spec.source.kind(),
            "pipeline started"
        );
        Arc::new(Pipeline {
            spec,
            code_hash: code.hash,
            store,
            stats,
            checkpoints,
            stop,
            threads: Mutex::new(threads),
            child,
            on_scrape,
            declared,
        })
    }

    /// Stop the source, let the plugin finish what was read, and write
    /// the final checkpoint. Blocks until done (at most about one call
    /// deadline plus one poll).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = &self.child {
            crate::sources::exec::kill(c);
        }
        let threads: Vec<JoinHandle<()>> = self.threads.lock().drain(..).collect();
        if matches!(self.spec.source, SourceSpec::Stdin) {
            // The stdin thread may sit in a blocking read forever, and the
            // plugin thread waits on it: let both go.
            return;
        }
        for t in threads {
            let _ = t.join();
        }
        if let Some(cp) = &self.checkpoints {
            cp.persist();
        }
    }
}
