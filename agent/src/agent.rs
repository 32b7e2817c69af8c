//! The set of running pipelines, and reloads as transactions.
//!
//! A reload parses and validates the whole directory, builds every added
//! or changed pipeline aside (compile, instantiate, `init`), and only then
//! swaps. An unchanged pipeline is not touched. Any error leaves every old
//! pipeline running.
use crate::config::{self, AgentConfig, PipelineSpec, PluginRef};
use crate::outputs::{walk, Conflict, Format, Plan, Rules, Sink};
use crate::pipeline::{self, Pipeline, Prepared};
use crate::runtime::{read_plugin_file, PluginCode, Runtime};
use crate::stats::{AgentStats, SelfMetric, SelfMetrics};
use crate::store::PipelineStore;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a reload did to the pipelines.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadSummary {
    /// Pipelines started.
    pub added: Vec<String>,
    /// Pipelines rebuilt.
    pub changed: Vec<String>,
    /// Pipelines stopped.
    pub removed: Vec<String>,
    /// Pipelines left alone.
    pub unchanged: Vec<String>,
    /// Families of rebuilt pipelines that kept their series, as
    /// `pipeline/family`.
    pub families_kept: Vec<String>,
    /// Families of rebuilt pipelines whose series were dropped, as
    /// `pipeline/family`, and why (declaration changed, constant label
    /// values changed, no longer declared).
    pub families_reset: Vec<(String, &'static str)>,
}

impl ReloadSummary {
    /// Whether the reload started, rebuilt or stopped nothing.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The pipelines a new configuration needs, built aside: nothing runs and
/// nothing running is touched until [`Agent::commit`].
pub struct PipelinePlan {
    built: Vec<Prepared>,
    removed: Vec<String>,
    unchanged: Vec<String>,
}

impl PipelinePlan {
    /// The pipelines to start or rebuild, built and initialised.
    pub fn built(&self) -> &[Prepared] {
        &self.built
    }
}

/// The agent.
pub struct Agent {
    rt: Arc<Runtime>,
    config_dir: PathBuf,
    checkpoint_dir: Option<Arc<crate::state::StateDir>>,
    pipelines: RwLock<BTreeMap<String, Arc<Pipeline>>>,
    codes: Mutex<HashMap<String, PluginCode>>,
    /// Agent-wide figures.
    pub stats: AgentStats,
    ready: AtomicBool,
    /// Remote-write targets and their figures.
    pub remote_write: Mutex<Vec<(String, Arc<crate::stats::RemoteWriteStats>)>>,
    /// OTLP targets and their figures.
    pub otlp: Mutex<Vec<(String, Arc<crate::stats::RemoteWriteStats>)>>,
    /// When the agent started: the start time of every series it pushes
    /// by OTLP (it keeps none per series).
    pub started: std::time::SystemTime,
}

/// Read a plugin's bytes: built-in or file.
pub fn plugin_bytes(r: &PluginRef) -> Result<Vec<u8>, String> {
    match r {
        PluginRef::Builtin(n) => crate::builtin::get(n)
            .map(|b| b.to_vec())
            .ok_or_else(|| format!("no built-in plugin \"{n}\"")),
        PluginRef::Path(p) => read_plugin_file(p).map_err(|e| format!("{e:#}")),
    }
}

fn hash_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A pipeline's plugin could not be read or compiled: `file:line:
/// pipeline.NAME.plugin: ...`.
fn build_error(spec: &PipelineSpec, e: &str) -> String {
    format!(
        "{}:{}: pipeline.{}.plugin: pipeline \"{}\", plugin {}: {e}",
        spec.file.display(),
        spec.line,
        spec.name,
        spec.name,
        spec.plugin
    )
}

impl Agent {
    /// The state directory's `checkpoints` directory, if the agent has a
    /// state directory: pipeline checkpoints and push queues live there.
    pub fn state_files(&self) -> Option<&Arc<crate::state::StateDir>> {
        self.checkpoint_dir.as_ref()
    }

    /// An agent with no pipelines yet; file checkpoints go to
    /// `checkpoint_dir` (the state directory's `checkpoints`), if any.
    /// `config_dir` is made absolute here (see [`config::absolute_dir`]),
    /// once.
    pub fn new(
        rt: Arc<Runtime>,
        config_dir: &Path,
        checkpoint_dir: Option<Arc<crate::state::StateDir>>,
    ) -> Arc<Self> {
        Arc::new(Agent {
            rt,
            config_dir: config::absolute_dir(config_dir),
            checkpoint_dir,
            pipelines: RwLock::new(BTreeMap::new()),
            codes: Mutex::new(HashMap::new()),
            stats: AgentStats::default(),
            ready: AtomicBool::new(false),
            remote_write: Mutex::new(Vec::new()),
            otlp: Mutex::new(Vec::new()),
            started: std::time::SystemTime::now(),
        })
    }

    /// The config directory, absolute.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Whether every pipeline has initialised.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The running pipelines.
    pub fn pipelines(&self) -> Vec<Arc<Pipeline>> {
        self.pipelines.read().values().cloned().collect()
    }

    /// Compile (or take from the in-memory and on-disk caches) a plugin.
    pub fn load_code(&self, r: &PluginRef, bytes: &[u8]) -> Result<PluginCode, String> {
        let key = format!("{r}#{}", hash_hex(bytes));
        if let Some(c) = self.codes.lock().get(&key) {
            return Ok(c.clone());
        }
        let code = self
            .rt
            .load(&r.to_string(), bytes)
            .map_err(|e| format!("{e:#}"))?;
        self.codes.lock().insert(key, code.clone());
        Ok(code)
    }

    /// Build one pipeline aside: read and compile its plugin, check that
    /// the plugin fits the source, instantiate it and run `init`. The one
    /// way a pipeline is built, by reload, `weir check` and `weir test`
    /// alike; every error starts with the pipeline's `file:line:` and names
    /// the pipeline and the plugin.
    pub fn build(&self, spec: &PipelineSpec) -> Result<Prepared, String> {
        let bytes = plugin_bytes(&spec.plugin).map_err(|e| build_error(spec, &e))?;
        self.build_from(spec, &bytes)
    }

    fn build_from(&self, spec: &PipelineSpec, bytes: &[u8]) -> Result<Prepared, String> {
        let code = self
            .load_code(&spec.plugin, bytes)
            .map_err(|e| build_error(spec, &e))?;
        // Located at the plugin setting's line when the plugin names it.
        pipeline::prepare(&self.rt, spec.clone(), code).map_err(|e| config::at_pipeline(spec, &e))
    }

    /// Build, aside, every pipeline of `cfg` that is new or differs from the
    /// running one (settings or plugin bytes). Returns every error of every
    /// pipeline; nothing running is touched either way.
    pub fn plan(&self, cfg: &AgentConfig) -> Result<PipelinePlan, Vec<String>> {
        let current = self.pipelines.read().clone();
        let mut errors = Vec::new();
        let mut built = Vec::new();
        let mut unchanged = Vec::new();
        for (name, spec) in &cfg.pipelines {
            let bytes = match plugin_bytes(&spec.plugin) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(build_error(spec, &e));
                    continue;
                }
            };
            if let Some(old) = current.get(name) {
                if old.spec.same_settings(spec) && old.code_hash == hash_hex(&bytes) {
                    unchanged.push(name.clone());
                    continue;
                }
            }
            match self.build_from(spec, &bytes) {
                Ok(p) => built.push(p),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let removed = current
            .keys()
            .filter(|k| !cfg.pipelines.contains_key(*k))
            .cloned()
            .collect();
        Ok(PipelinePlan {
            built,
            removed,
            unchanged,
        })
    }

    /// Make the running pipelines what `plan` says: stop the removed ones,
    /// replace the changed ones (their store and, for an unchanged source,
    /// their file offsets handed over), start the new ones. Cannot fail.
    pub fn commit(&self, plan: PipelinePlan) -> ReloadSummary {
        let current = self.pipelines.read().clone();
        let mut summary = ReloadSummary {
            unchanged: plan.unchanged,
            ..Default::default()
        };
        // The map lock is held only to replace entries: stopping a
        // pipeline may wait for a plugin call, and scrapes must not.
        // Removed pipelines first, so their files are released.
        for name in plan.removed {
            let old = self.pipelines.write().remove(&name);
            if let Some(p) = old {
                p.stop();
                summary.removed.push(name);
            }
        }
        for prepared in plan.built {
            let spec = prepared.spec().clone();
            let name = spec.name.clone();
            let old = current.get(&name).cloned();
            let (store, checkpoints) = match &old {
                Some(old) => {
                    // The old pipeline stays visible (its store is shared
                    // with the new one) until the entry is replaced; its
                    // source stops first, so no line is read twice.
                    old.stop();
                    summary.changed.push(name.clone());
                    // Offsets carry over only when the source is the same.
                    let cp = if old.spec.source == spec.source {
                        old.checkpoints.clone()
                    } else {
                        None
                    };
                    (Some(old.store.clone()), cp)
                }
                None => {
                    summary.added.push(name.clone());
                    (None, None)
                }
            };
            let p = Pipeline::start(
                self.rt.clone(),
                prepared,
                store,
                checkpoints,
                self.checkpoint_dir.as_ref(),
            );
            if old.is_some() {
                let d = &p.declared;
                summary
                    .families_kept
                    .extend(d.kept.iter().map(|f| format!("{name}/{f}")));
                summary
                    .families_reset
                    .extend(d.reset.iter().map(|(f, why)| (format!("{name}/{f}"), *why)));
                summary.families_reset.extend(
                    d.removed
                        .iter()
                        .map(|f| (format!("{name}/{f}"), "no longer declared")),
                );
            }
            self.pipelines.write().insert(name, p);
        }
        self.ready.store(true, Ordering::Relaxed);
        summary
    }

    /// Count a reload's outcome in the self-metrics and keep it for the
    /// status page: the pipelines it added, changed and removed, or its
    /// errors.
    pub fn record_reload(&self, result: Result<&ReloadSummary, &[String]>) {
        *self.stats.last_reload.lock() = Some(match result {
            Ok(s) => crate::stats::ReloadRecord {
                time: crate::stats::unix_now(),
                ok: true,
                added: s.added.clone(),
                changed: s.changed.clone(),
                removed: s.removed.clone(),
                errors: Vec::new(),
            },
            Err(errors) => crate::stats::ReloadRecord {
                time: crate::stats::unix_now(),
                ok: false,
                errors: errors.to_vec(),
                ..Default::default()
            },
        });
        if result.is_ok() {
            self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.stats.last_reload_ok.store(true, Ordering::Relaxed);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.stats.last_reload_success_time.set(now);
        } else {
            self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
            self.stats.last_reload_ok.store(false, Ordering::Relaxed);
        }
    }

    /// Stop every pipeline, flushing checkpoints.
    pub fn shutdown(&self) {
        let mut map = self.pipelines.write();
        for (_, p) in std::mem::take(&mut *map) {
            p.stop();
        }
    }

    /// Ask scrape-time sources for a fresh snapshot if their last is older
    /// than their max_age, all at once, then wait (bounded).
    fn refresh(&self, pipelines: &[Arc<Pipeline>]) {
        let waits: Vec<_> = pipelines
            .iter()
            .filter_map(|p| p.on_scrape.clone().map(|t| (t, p.spec.source.clone())))
            .map(|(t, src)| {
                let timeout = match src {
                    crate::config::SourceSpec::Http(h) => h.timeout + Duration::from_secs(1),
                    _ => Duration::from_secs(5),
                };
                std::thread::spawn(move || t.refresh(timeout))
            })
            .collect();
        for w in waits {
            let _ = w.join();
        }
    }

    /// Write the whole scrape (every pipeline's series and the agent's
    /// own) through `sink`, under the naming rules `R` of its format. The
    /// stores are locked for the walk only; nothing is copied out of them.
    /// What the format could not carry is counted and logged once.
    pub fn write<R: Rules>(&self, sink: &mut impl Sink) {
        let pipelines = self.pipelines();
        self.refresh(&pipelines);
        let guards: Vec<_> = pipelines.iter().map(|p| p.store.lock()).collect();
        let stores: Vec<&PipelineStore> = guards.iter().map(|g| &**g).collect();
        // weir_exposition_conflicts_total is written last, once the walk
        // has found what this very scrape left out (a negative quantile,
        // a duplicate series), so the scrape shows its own conflicts.
        let mut plan = Plan::new();
        plan.add::<R>(&stores);
        self.stats
            .conflicts(R::FORMAT, &std::mem::take(&mut plan.conflicts));
        let own = self.self_metrics(&pipelines, &stores).into_store();
        plan.add::<R>(&[&own]);
        crate::outputs::walk_families(&mut plan, sink);
        self.stats
            .conflicts(R::FORMAT, &std::mem::take(&mut plan.conflicts));
        let tail = self.conflict_metrics().into_store();
        plan.add::<R>(&[&tail]);
        walk(&mut plan, sink);
        self.stats.conflicts(R::FORMAT, &plan.conflicts);
    }

    /// `/metrics` in Prometheus text 0.0.4.
    pub fn text(&self) -> String {
        let mut w = crate::outputs::text::Writer::default();
        self.write::<crate::outputs::text::Rules>(&mut w);
        w.out
    }

    /// `/metrics` in OpenMetrics 1.0.
    pub fn openmetrics(&self) -> String {
        let mut w = crate::outputs::openmetrics::Writer::default();
        self.write::<crate::outputs::openmetrics::Rules>(&mut w);
        w.out
    }

    /// `weir_exposition_conflicts_total`, every format and reason.
    fn conflict_metrics(&self) -> SelfMetrics {
        let mut m = SelfMetrics::default();
        let conflicts = self.stats.exposition_conflicts.lock().clone();
        for format in Format::ALL {
            for reason in Conflict::ALL {
                let n = conflicts.get(&(format, reason)).copied().unwrap_or(0);
                m.set(
                    SelfMetric::ExpositionConflicts,
                    &[format.as_str(), reason.as_str()],
                    n as f64,
                );
            }
        }
        m
    }

    /// The agent's own figures but the exposition conflicts; `stores` are
    /// the pipelines' (locked).
    fn self_metrics(&self, pipelines: &[Arc<Pipeline>], stores: &[&PipelineStore]) -> SelfMetrics {
        use SelfMetric as M;
        let mut m = SelfMetrics::default();
        let s = &self.stats;
        let ld = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed) as f64;
        let flag = |v: &AtomicBool| if v.load(Ordering::Relaxed) { 1.0 } else { 0.0 };
        m.set(M::BuildInfo, &[VERSION, crate::runtime::WIT_VERSION], 1.0);
        m.set(M::ConfigReloads, &["success"], ld(&s.reloads_ok));
        m.set(M::ConfigReloads, &["failure"], ld(&s.reloads_failed));
        // Until the first load of the config directory has finished there
        // is no outcome to report: a 0 would page an operator for an
        // agent that is only compiling its plugins.
        if s.last_reload.lock().is_some() {
            m.set(M::LastReloadOk, &[], flag(&s.last_reload_ok));
            m.set(M::LastReloadTime, &[], s.last_reload_success_time.get());
        }
        m.set(M::ScrapeLimitExceeded, &[], ld(&s.scrapes_over_limit));
        for (target, rw) in self.remote_write.lock().iter() {
            let l = [target.as_str()];
            m.set(M::RwSent, &l, ld(&rw.sent));
            m.set(M::RwFailed, &l, ld(&rw.failed));
            m.set(M::RwRetried, &l, ld(&rw.retried));
            m.set(M::RwDropped, &l, ld(&rw.dropped));
            m.set(M::RwQueue, &l, ld(&rw.queued));
            m.set(M::RwLastSuccess, &l, rw.last_success.get());
        }
        for (target, o) in self.otlp.lock().iter() {
            let l = [target.as_str()];
            m.set(M::OtlpSent, &l, ld(&o.sent));
            m.set(M::OtlpFailed, &l, ld(&o.failed));
            m.set(M::OtlpRetried, &l, ld(&o.retried));
            m.set(M::OtlpDropped, &l, ld(&o.dropped));
            m.set(M::OtlpQueue, &l, ld(&o.queued));
            m.set(M::OtlpLastSuccess, &l, o.last_success.get());
            for (code, n) in o.requests.lock().iter() {
                m.set(
                    M::OtlpRequests,
                    &[target.as_str(), code.as_str()],
                    *n as f64,
                );
            }
        }
        for (p, store) in pipelines.iter().zip(stores) {
            let name = p.spec.name.as_str();
            let st = &p.stats;
            let l = [name];
            let plugin = p.spec.plugin.to_string();
            m.set(M::PipelineUp, &[name, plugin.as_str()], flag(&st.up));
            m.set(M::SourceLines, &l, ld(&st.lines_read));
            m.set(M::SourceBytes, &l, ld(&st.bytes_read));
            m.set(M::SourceTruncated, &l, ld(&st.lines_truncated));
            m.set(M::SourceRecordsTruncated, &l, ld(&st.records_truncated));
            m.set(M::SourceLinesInvalid, &l, ld(&st.lines_invalid));
            m.set(M::InputsDropped, &l, ld(&st.lines_dropped));
            m.set(M::InputsRejected, &l, ld(&st.inputs_rejected));
            m.set(M::Calls, &l, ld(&st.calls));
            m.set(M::Restarts, &l, ld(&st.restarts));
            m.set(M::Memory, &l, ld(&st.memory_bytes));
            let errors = st.errors.lock().clone();
            for reason in crate::runtime::CallError::REASONS.iter().chain(&["init"]) {
                let n = errors.get(reason).copied().unwrap_or(0);
                m.set(M::Errors, &[name, *reason], n as f64);
            }
            let rejected = st.updates_rejected.lock().clone();
            let reasons = crate::store::Reject::ALL
                .iter()
                .filter(|r| **r != crate::store::Reject::SeriesLimit)
                .map(|r| r.as_str())
                .chain([crate::pipeline::DECLARATION_REFUSED]);
            for reason in reasons {
                let n = rejected.get(reason).copied().unwrap_or(0);
                m.set(M::UpdatesRejected, &[name, reason], n as f64);
            }
            let dropped = rejected
                .get(crate::store::Reject::SeriesLimit.as_str())
                .copied()
                .unwrap_or(0);
            m.set(M::SeriesDropped, &l, dropped as f64);
            for (family, n) in st.overflowed.lock().iter() {
                m.set(M::SeriesOverflow, &[name, family.as_str()], *n as f64);
            }
            m.set(M::Series, &l, store.series_count() as f64);
            m.set(M::SeriesLimit, &l, p.spec.max_series as f64);
            m.histogram(M::CallDuration, &l, &st.call_duration.lock());
            let source_reasons: Vec<&str> = match p.spec.source {
                crate::config::SourceSpec::Exec { .. }
                | crate::config::SourceSpec::Journald { .. } => {
                    crate::sources::exec::ERROR_REASONS.to_vec()
                }
                crate::config::SourceSpec::Http(_) | crate::config::SourceSpec::Process { .. } => {
                    let mut r = crate::sources::http::PollError::REASONS.to_vec();
                    r.push(crate::pipeline::PLUGIN_FAILED);
                    r
                }
                _ => Vec::new(),
            };
            if !source_reasons.is_empty() {
                m.set(M::SourceUp, &l, flag(&st.source_up));
                let errs = st.source_errors.lock().clone();
                for reason in source_reasons {
                    let n = errs.get(reason).copied().unwrap_or(0);
                    m.set(M::SourceErrors, &[name, reason], n as f64);
                }
            }
            if matches!(
                p.spec.source,
                crate::config::SourceSpec::Http(_) | crate::config::SourceSpec::Process { .. }
            ) {
                m.histogram(M::PollDuration, &l, &st.poll_duration.lock());
            }
            if matches!(p.spec.source, crate::config::SourceSpec::Process { .. }) {
                m.set(M::ScanDenied, &l, ld(&st.scan_denied));
            }
            for (path, f) in st.files.lock().iter() {
                let fl = [name, path.as_str()];
                m.set(M::FileLines, &fl, f.lines as f64);
                m.set(M::FileBytes, &fl, f.bytes as f64);
                m.set(M::FileLag, &fl, f.lag_bytes as f64);
                m.set(M::FileRotations, &fl, f.rotations as f64);
                m.set(M::FileTruncations, &fl, f.truncations as f64);
                m.set(M::FileReadErrors, &fl, f.read_errors as f64);
            }
        }
        m
    }
}
