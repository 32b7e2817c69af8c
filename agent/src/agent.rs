//! The set of running pipelines, and reloads as transactions.
//!
//! A reload parses and validates the whole directory, builds every added
//! or changed pipeline aside (compile, instantiate, `init`), and only then
//! swaps. An unchanged pipeline is not touched. Any error leaves every old
//! pipeline running.
use crate::config::{self, AgentConfig, PipelineSpec, PluginRef};
use crate::exposition::Exposition;
use crate::pipeline::{self, Pipeline, Prepared};
use crate::runtime::{read_plugin_file, PluginCode, Runtime};
use crate::stats::AgentStats;
use crate::store::Kind;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The agent's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a reload did.
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
}

/// The agent.
pub struct Agent {
    rt: Arc<Runtime>,
    config_dir: PathBuf,
    state_dir: Option<PathBuf>,
    pipelines: RwLock<BTreeMap<String, Arc<Pipeline>>>,
    codes: Mutex<HashMap<String, PluginCode>>,
    reload_lock: Mutex<()>,
    /// Agent-wide figures.
    pub stats: AgentStats,
    ready: AtomicBool,
    reload_endpoint: AtomicBool,
    /// Remote-write targets and their figures.
    pub remote_write: Mutex<Vec<(String, Arc<crate::stats::RemoteWriteStats>)>>,
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

impl Agent {
    /// An agent with no pipelines yet.
    pub fn new(rt: Arc<Runtime>, config_dir: &Path, state_dir: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Agent {
            rt,
            config_dir: config_dir.to_path_buf(),
            state_dir,
            pipelines: RwLock::new(BTreeMap::new()),
            codes: Mutex::new(HashMap::new()),
            reload_lock: Mutex::new(()),
            stats: AgentStats::default(),
            ready: AtomicBool::new(false),
            reload_endpoint: AtomicBool::new(false),
            remote_write: Mutex::new(Vec::new()),
        })
    }

    /// The config directory.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Whether every pipeline has initialised.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Whether `POST /-/reload` is enabled.
    pub fn reload_endpoint(&self) -> bool {
        self.reload_endpoint.load(Ordering::Relaxed)
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
            .map_err(|e| format!("plugin {r}: {e:#}"))?;
        self.codes.lock().insert(key, code.clone());
        Ok(code)
    }

    /// Read the config directory and make the running pipelines match it.
    pub fn reload(&self) -> Result<ReloadSummary, Vec<String>> {
        let _guard = self.reload_lock.lock();
        let result = self.reload_inner();
        *self.stats.last_reload.lock() = Some(match &result {
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
                errors: errors.clone(),
                ..Default::default()
            },
        });
        match &result {
            Ok(s) => {
                self.stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
                self.stats.last_reload_ok.store(true, Ordering::Relaxed);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                self.stats.last_reload_success_time.set(now);
                self.ready.store(true, Ordering::Relaxed);
                if !(s.added.is_empty() && s.changed.is_empty() && s.removed.is_empty()) {
                    tracing::info!(
                        added = ?s.added,
                        changed = ?s.changed,
                        removed = ?s.removed,
                        unchanged = s.unchanged.len(),
                        "configuration loaded"
                    );
                }
            }
            Err(errors) => {
                self.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                self.stats.last_reload_ok.store(false, Ordering::Relaxed);
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    "configuration not applied ({} error(s)); the running pipelines are unchanged",
                    errors.len()
                );
            }
        }
        result
    }

    fn reload_inner(&self) -> Result<ReloadSummary, Vec<String>> {
        let cfg: AgentConfig = config::load_dir(&self.config_dir)
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        self.reload_endpoint
            .store(cfg.settings.reload_endpoint, Ordering::Relaxed);
        let current = self.pipelines.read().clone();
        let mut summary = ReloadSummary::default();
        let mut errors = Vec::new();
        let mut built: Vec<(PipelineSpec, Prepared)> = Vec::new();
        for (name, spec) in &cfg.pipelines {
            let bytes = match plugin_bytes(&spec.plugin) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(format!(
                        "{}:{}: pipeline.{name}.plugin: {e}",
                        spec.file.display(),
                        spec.line
                    ));
                    continue;
                }
            };
            if let Some(old) = current.get(name) {
                if old.spec == *spec && old.code_hash == hash_hex(&bytes) {
                    summary.unchanged.push(name.clone());
                    continue;
                }
            }
            let code = match self.load_code(&spec.plugin, &bytes) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!(
                        "{}:{}: pipeline \"{name}\": {e}",
                        spec.file.display(),
                        spec.line
                    ));
                    continue;
                }
            };
            match pipeline::prepare(&self.rt, spec.clone(), code) {
                Ok(p) => built.push((spec.clone(), p)),
                Err(e) => errors.push(format!("{}:{}: {e}", spec.file.display(), spec.line)),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Swap. The map lock is held only to replace entries: stopping a
        // pipeline may wait for a plugin call, and scrapes must not.
        // Removed pipelines first, so their files are released.
        let removed: Vec<String> = current
            .keys()
            .filter(|k| !cfg.pipelines.contains_key(*k))
            .cloned()
            .collect();
        for name in removed {
            let old = self.pipelines.write().remove(&name);
            if let Some(p) = old {
                p.stop();
                summary.removed.push(name);
            }
        }
        for (spec, prepared) in built {
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
                self.state_dir.as_deref(),
            );
            self.pipelines.write().insert(name, p);
        }
        Ok(summary)
    }

    /// Stop every pipeline, flushing checkpoints.
    pub fn shutdown(&self) {
        let mut map = self.pipelines.write();
        for (_, p) in std::mem::take(&mut *map) {
            p.stop();
        }
    }

    /// Everything `/metrics` serves.
    pub fn exposition(&self) -> Exposition {
        let mut e = Exposition::new();
        let pipelines = self.pipelines();
        // Scrape-time sources: ask each for a fresh snapshot if its last is
        // older than its max_age, all at once, then wait (bounded).
        let triggers: Vec<_> = pipelines
            .iter()
            .filter_map(|p| p.on_scrape.clone().map(|t| (t, p.spec.source.clone())))
            .collect();
        let waits: Vec<_> = triggers
            .into_iter()
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
        for p in &pipelines {
            e.add_store(&p.store.lock());
        }
        self.self_metrics(&mut e, &pipelines);
        let conflicts = e.conflicts;
        if conflicts > 0 {
            self.stats
                .exposition_conflicts
                .fetch_add(conflicts, Ordering::Relaxed);
        }
        e
    }

    fn self_metrics(&self, e: &mut Exposition, pipelines: &[Arc<Pipeline>]) {
        use Kind::{Counter, Gauge};
        let s = &self.stats;
        e.scalar(
            "weir_build_info",
            Gauge,
            "Build information of the running agent.",
            &[("version", VERSION), ("wit", crate::runtime::WIT_VERSION)],
            1.0,
        );
        e.scalar(
            "weir_config_reloads_total",
            Counter,
            "Configuration loads by result.",
            &[("result", "success")],
            s.reloads_ok.load(Ordering::Relaxed) as f64,
        );
        e.scalar(
            "weir_config_reloads_total",
            Counter,
            "Configuration loads by result.",
            &[("result", "failure")],
            s.reloads_failed.load(Ordering::Relaxed) as f64,
        );
        e.scalar(
            "weir_config_last_reload_successful",
            Gauge,
            "Whether the last configuration load succeeded (1) or left the old pipelines running (0).",
            &[],
            if s.last_reload_ok.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
        );
        e.scalar(
            "weir_config_last_reload_success_timestamp_seconds",
            Gauge,
            "Unix time of the last successful configuration load.",
            &[],
            s.last_reload_success_time.get(),
        );
        e.scalar(
            "weir_exposition_conflicts_total",
            Counter,
            "Series left out of /metrics because two pipelines exposed the same series or one family name differently.",
            &[],
            s.exposition_conflicts.load(Ordering::Relaxed) as f64,
        );
        for (target, rw) in self.remote_write.lock().iter() {
            let l = [("target", target.as_str())];
            let ld = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed) as f64;
            e.scalar(
                "weir_remote_write_samples_sent_total",
                Counter,
                "Samples the receiver accepted.",
                &l,
                ld(&rw.sent),
            );
            e.scalar(
                "weir_remote_write_samples_failed_total",
                Counter,
                "Samples the receiver refused (4xx other than 429); not retried.",
                &l,
                ld(&rw.failed),
            );
            e.scalar(
                "weir_remote_write_samples_retried_total",
                Counter,
                "Samples sent again after a 5xx, 429 or connection failure.",
                &l,
                ld(&rw.retried),
            );
            e.scalar(
                "weir_remote_write_samples_dropped_total",
                Counter,
                "Samples dropped because the queue was full.",
                &l,
                ld(&rw.dropped),
            );
            e.scalar(
                "weir_remote_write_queue_samples",
                Gauge,
                "Samples waiting to be sent.",
                &l,
                ld(&rw.queued),
            );
            e.scalar(
                "weir_remote_write_last_success_timestamp_seconds",
                Gauge,
                "Unix time of the last request the receiver accepted.",
                &l,
                rw.last_success.get(),
            );
        }
        for p in pipelines {
            let name = p.spec.name.as_str();
            let plugin = p.spec.plugin.to_string();
            let st = &p.stats;
            let l = [("pipeline", name)];
            let ld = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed) as f64;
            e.scalar(
                "weir_pipeline_up",
                Gauge,
                "Whether the pipeline's plugin instance is running (1) or restarting (0).",
                &[("pipeline", name), ("plugin", &plugin)],
                if st.up.load(Ordering::Relaxed) {
                    1.0
                } else {
                    0.0
                },
            );
            e.scalar(
                "weir_source_lines_total",
                Counter,
                "Lines read by the pipeline's source.",
                &l,
                ld(&st.lines_read),
            );
            e.scalar(
                "weir_source_bytes_total",
                Counter,
                "Bytes read by the pipeline's source.",
                &l,
                ld(&st.bytes_read),
            );
            e.scalar(
                "weir_source_lines_truncated_total",
                Counter,
                "Lines cut at the pipeline's max_line_bytes.",
                &l,
                ld(&st.lines_truncated),
            );
            e.scalar(
                "weir_pipeline_inputs_dropped_total",
                Counter,
                "Lines or responses lost because the plugin call that carried them failed.",
                &l,
                ld(&st.lines_dropped),
            );
            e.scalar(
                "weir_plugin_inputs_rejected_total",
                Counter,
                "Inputs the plugin could not parse (bad lines, invalid JSON), as it reported them.",
                &l,
                ld(&st.inputs_rejected),
            );
            e.scalar(
                "weir_plugin_calls_total",
                Counter,
                "Calls into the plugin.",
                &l,
                ld(&st.calls),
            );
            e.scalar(
                "weir_plugin_restarts_total",
                Counter,
                "Plugin instances replaced after a trap, timeout or memory-limit hit.",
                &l,
                ld(&st.restarts),
            );
            e.scalar(
                "weir_plugin_memory_bytes",
                Gauge,
                "Linear memory of the pipeline's plugin instance.",
                &l,
                ld(&st.memory_bytes),
            );
            for reason in ["trap", "timeout", "memory_limit", "plugin_error", "init"] {
                let n = st.errors.lock().get(reason).copied().unwrap_or(0);
                e.scalar(
                    "weir_plugin_errors_total",
                    Counter,
                    "Failed plugin calls by reason.",
                    &[("pipeline", name), ("reason", reason)],
                    n as f64,
                );
            }
            let rejected = st.updates_rejected.lock().clone();
            for reason in crate::store::Reject::ALL {
                if reason == crate::store::Reject::SeriesLimit {
                    continue;
                }
                let n = rejected.get(reason.as_str()).copied().unwrap_or(0);
                e.scalar(
                    "weir_plugin_updates_rejected_total",
                    Counter,
                    "Updates the host refused as invalid, by reason.",
                    &[("pipeline", name), ("reason", reason.as_str())],
                    n as f64,
                );
            }
            e.scalar(
                "weir_pipeline_series_dropped_total",
                Counter,
                "New series refused because the pipeline reached max_series.",
                &l,
                rejected.get("series_limit").copied().unwrap_or(0) as f64,
            );
            e.scalar(
                "weir_pipeline_series",
                Gauge,
                "Series the pipeline holds.",
                &l,
                p.store.lock().series_count() as f64,
            );
            e.scalar(
                "weir_pipeline_series_limit",
                Gauge,
                "The pipeline's max_series.",
                &l,
                p.spec.max_series as f64,
            );
            e.histogram(
                "weir_plugin_call_duration_seconds",
                "Time spent in plugin calls.",
                "seconds",
                &l,
                st.call_duration.lock().to_out(),
            );
            if let crate::config::SourceSpec::Exec { .. } = p.spec.source {
                e.scalar(
                    "weir_source_up",
                    Gauge,
                    "Whether the pipeline's last poll or scan succeeded, or its command is running (1), or not (0).",
                    &l,
                    if st.source_up.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
                );
                let errs = st.source_errors.lock().clone();
                for reason in ["exit", "spawn"] {
                    e.scalar(
                        "weir_source_errors_total",
                        Counter,
                        "Failed polls or scans by reason; for commands, exits and failures to start.",
                        &[("pipeline", name), ("reason", reason)],
                        errs.get(reason).copied().unwrap_or(0) as f64,
                    );
                }
            }
            if matches!(
                p.spec.source,
                crate::config::SourceSpec::Http(_) | crate::config::SourceSpec::Process { .. }
            ) {
                e.scalar(
                    "weir_source_up",
                    Gauge,
                    "Whether the pipeline's last poll or scan succeeded, or its command is running (1), or not (0).",
                    &l,
                    if st.source_up.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
                );
                let errs = st.source_errors.lock().clone();
                let mut reasons: Vec<&str> = crate::sources::http::PollError::REASONS.to_vec();
                reasons.push("plugin");
                for reason in reasons {
                    e.scalar(
                        "weir_source_errors_total",
                        Counter,
                        "Failed polls or scans by reason; for commands, exits and failures to start.",
                        &[("pipeline", name), ("reason", reason)],
                        errs.get(reason).copied().unwrap_or(0) as f64,
                    );
                }
                e.histogram(
                    "weir_source_poll_duration_seconds",
                    "Time taken by polls (HTTP) and scans (process table).",
                    "seconds",
                    &l,
                    st.poll_duration.lock().to_out(),
                );
            }
            if matches!(p.spec.source, crate::config::SourceSpec::Process { .. }) {
                e.scalar(
                    "weir_process_scan_denied_total",
                    Counter,
                    "Files under /proc the process scan was not allowed to read.",
                    &l,
                    st.scan_denied.load(Ordering::Relaxed) as f64,
                );
            }
            for (path, f) in st.files.lock().iter() {
                let fl = [("pipeline", name), ("path", path.as_str())];
                e.scalar(
                    "weir_file_lines_total",
                    Counter,
                    "Lines read from the file.",
                    &fl,
                    f.lines as f64,
                );
                e.scalar(
                    "weir_file_bytes_total",
                    Counter,
                    "Bytes read from the file.",
                    &fl,
                    f.bytes as f64,
                );
                e.scalar(
                    "weir_file_lag_bytes",
                    Gauge,
                    "Bytes between the read position and the end of the file.",
                    &fl,
                    f.lag_bytes as f64,
                );
                e.scalar(
                    "weir_file_rotations_total",
                    Counter,
                    "Rotations (rename or delete) seen.",
                    &fl,
                    f.rotations as f64,
                );
                e.scalar(
                    "weir_file_truncations_total",
                    Counter,
                    "Truncations (copytruncate) seen.",
                    &fl,
                    f.truncations as f64,
                );
                e.scalar(
                    "weir_file_read_errors_total",
                    Counter,
                    "Read errors.",
                    &fl,
                    f.read_errors as f64,
                );
            }
        }
    }
}
