//! Reloads as one plan, and the watcher that triggers them.
//!
//! A reload reads the whole directory, then computes one plan before
//! anything changes: the pipelines added, changed and removed (built and
//! initialised aside), the `[server]` settings (TLS and credentials built,
//! a new `listen` address already bound) and the `[[remote_write]]`
//! targets (clients built). Settings that cannot change on a running agent
//! fail the plan. Only when every part succeeded is it committed; any error
//! leaves everything as it was, `reload_endpoint` included.
//!
//! Events are debounced: a reload runs once the directory has been quiet
//! for [`QUIET`] (or [`MAX_DELAY`] after the first event of a burst), so an
//! editor's save, a Kubernetes ConfigMap's `..data` symlink swap or a
//! `cargo build` writing a `.wasm` becomes one reload. Directories are
//! watched, not files, because atomic writes and symlink swaps replace
//! inodes; a watched directory that is itself replaced (a re-pointed
//! symlink, a directory deleted and created again) is noticed within
//! [`REARM_EVERY`] and watched again. A half-written `.wasm` fails to
//! compile, the reload is refused and the old pipeline keeps running; the
//! write's final event brings the next reload.
use crate::agent::{Agent, ReloadSummary};
use crate::config::{self, AgentConfig, PluginRef};
use crate::remote_write::Writers;
type OtlpWriters = crate::push::Writers<crate::config::OtlpSettings>;
use crate::server::Server;
use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quiet time that ends a burst of events.
pub const QUIET: Duration = Duration::from_millis(100);
/// Longest wait after the first event of a burst.
pub const MAX_DELAY: Duration = Duration::from_millis(1000);
/// How often the watched directories' inodes are compared with the
/// watched ones.
pub const REARM_EVERY: Duration = Duration::from_millis(500);

/// What a reload did, all parts.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The pipelines.
    pub pipelines: ReloadSummary,
    /// `[server]` keys applied, as `server.KEY`.
    pub server_changed: Vec<&'static str>,
    /// Remote-write targets started, changed, stopped.
    pub remote_write: (Vec<String>, Vec<String>, Vec<String>),
    /// OTLP targets started, changed, stopped.
    pub otlp: (Vec<String>, Vec<String>, Vec<String>),
}

impl Outcome {
    /// Whether the reload changed nothing.
    pub fn is_noop(&self) -> bool {
        let (a, c, r) = &self.remote_write;
        let (oa, oc, or) = &self.otlp;
        self.pipelines.is_noop()
            && self.server_changed.is_empty()
            && a.is_empty()
            && c.is_empty()
            && r.is_empty()
            && oa.is_empty()
            && oc.is_empty()
            && or.is_empty()
    }

    /// One line for `POST /-/reload`.
    pub fn line(&self) -> String {
        let p = &self.pipelines;
        format!(
            "reloaded: {} added, {} changed, {} removed, {} unchanged; server: {}; remote write: {} added, {} changed, {} removed{}\n",
            p.added.len(),
            p.changed.len(),
            p.removed.len(),
            p.unchanged.len(),
            if self.server_changed.is_empty() {
                "unchanged".to_string()
            } else {
                self.server_changed.join(", ")
            },
            self.remote_write.0.len(),
            self.remote_write.1.len(),
            self.remote_write.2.len(),
            if self.otlp == Default::default() {
                String::new()
            } else {
                format!(
                    "; otlp: {} added, {} changed, {} removed",
                    self.otlp.0.len(),
                    self.otlp.1.len(),
                    self.otlp.2.len()
                )
            },
        )
    }
}

/// Everything a reload changes, and what it must keep.
pub struct Reloader {
    agent: Arc<Agent>,
    server: Option<Arc<Server>>,
    writers: Writers,
    otlp: OtlpWriters,
    /// `[agent] state_dir` as the agent started with it (a restart is
    /// needed to change it), or None when `--state-dir` or
    /// `WEIR_STATE_DIR` overrides the key, so that changing it changes
    /// nothing.
    started_state_dir: Option<Option<PathBuf>>,
    lock: Mutex<()>,
}

impl Reloader {
    /// A reloader for `agent`, its `server` (none for `weir check`), and
    /// the `[agent] state_dir` the agent started with (None: the command
    /// line overrides it).
    pub fn new(
        agent: Arc<Agent>,
        server: Option<Arc<Server>>,
        started_state_dir: Option<Option<PathBuf>>,
    ) -> Arc<Self> {
        Arc::new(Reloader {
            writers: Writers::new(agent.clone()),
            otlp: OtlpWriters::new(agent.clone()),
            agent,
            server,
            started_state_dir,
            lock: Mutex::new(()),
        })
    }

    /// The agent.
    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }

    /// Read the config directory and make the agent match it, or change
    /// nothing and return every error. Logs what it did.
    pub fn reload(&self) -> Result<Outcome, Vec<String>> {
        let _guard = self.lock.lock();
        let result = config::load_dir(self.agent.config_dir())
            .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .and_then(|cfg| {
                warn_if_others_may_write(self.agent.config_dir(), &cfg);
                self.apply(&cfg)
            });
        self.agent.record_reload(
            result
                .as_ref()
                .map(|o| &o.pipelines)
                .map_err(|e| e.as_slice()),
        );
        match &result {
            Ok(o) => log_outcome(o),
            Err(errors) => {
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    "configuration not applied ({} error(s)); the running pipelines are unchanged, and so are the server and remote-write settings",
                    errors.len()
                );
            }
        }
        result
    }

    /// Plan every part, then commit all or nothing.
    fn apply(&self, cfg: &AgentConfig) -> Result<Outcome, Vec<String>> {
        let mut errors = match &self.started_state_dir {
            Some(started) => restart_needed(cfg, started.as_deref()),
            None => Vec::new(),
        };
        let pipelines = self.agent.plan(cfg).map_err(|e| errors.extend(e)).ok();
        let server = match &self.server {
            Some(s) => s.plan(&cfg.settings).map_err(|e| errors.extend(e)).ok(),
            None => None,
        };
        let writers = self
            .writers
            .plan(&cfg.settings)
            .map_err(|e| errors.extend(e))
            .ok();
        let otlp = self
            .otlp
            .plan(&cfg.settings)
            .map_err(|e| errors.extend(e))
            .ok();
        if !errors.is_empty() {
            // Dropping the plans closes a newly bound socket and the
            // instances built aside.
            return Err(errors);
        }
        let mut out = Outcome::default();
        if let (Some(s), Some(plan)) = (&self.server, server) {
            for i in &plan.ignored {
                tracing::warn!("{i}");
            }
            out.server_changed = plan.changed.clone();
            s.commit(plan);
        }
        if let Some(plan) = writers {
            out.remote_write = (
                plan.added.clone(),
                plan.changed.clone(),
                plan.removed.clone(),
            );
            self.writers.commit(plan);
        }
        if let Some(plan) = otlp {
            out.otlp = (
                plan.added.clone(),
                plan.changed.clone(),
                plan.removed.clone(),
            );
            self.otlp.commit(plan);
        }
        if let Some(plan) = pipelines {
            out.pipelines = self.agent.commit(plan);
        }
        Ok(out)
    }

    /// Stop the remote-write and OTLP targets (at shutdown).
    pub fn shutdown(&self) {
        self.writers.stop_all();
        self.otlp.stop_all();
    }
}

/// Settings a running agent cannot take: each is an error located at its
/// key, saying that a restart is needed.
fn restart_needed(cfg: &AgentConfig, started_state_dir: Option<&Path>) -> Vec<String> {
    let mut errors = Vec::new();
    if cfg.settings.state_dir.as_deref() != started_state_dir {
        let show = |d: Option<&Path>| match d {
            Some(d) => d.display().to_string(),
            None => "(not set)".to_string(),
        };
        errors.push(
            cfg.settings
                .origin
                .error(
                    "agent.state_dir",
                    format!(
                        "changed from {} to {}: the state directory cannot change on a running agent; restart weir to use it",
                        show(started_state_dir),
                        show(cfg.settings.state_dir.as_deref())
                    ),
                )
                .to_string(),
        );
    }
    errors
}

fn log_outcome(o: &Outcome) {
    if o.is_noop() {
        tracing::debug!(
            unchanged = o.pipelines.unchanged.len(),
            "configuration reloaded: nothing changed"
        );
        return;
    }
    let p = &o.pipelines;
    let (rw_added, rw_changed, rw_removed) = &o.remote_write;
    tracing::info!(
        added = ?p.added,
        changed = ?p.changed,
        removed = ?p.removed,
        unchanged = p.unchanged.len(),
        server = ?o.server_changed,
        remote_write_added = ?rw_added,
        remote_write_changed = ?rw_changed,
        remote_write_removed = ?rw_removed,
        otlp_added = ?o.otlp.0,
        otlp_changed = ?o.otlp.1,
        otlp_removed = ?o.otlp.2,
        "configuration loaded"
    );
    if !p.families_kept.is_empty() {
        tracing::info!(families = ?p.families_kept, "families kept their series");
    }
    for (f, why) in &p.families_reset {
        tracing::info!(family = %f, "family reset: {why}");
    }
}

/// The directories to watch, and the files among them that matter: the
/// config directory, each plugin file and each config file, and for those
/// behind symlinks the files they point to and their directories.
fn watch_set(agent: &Agent) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    dirs.insert(agent.config_dir().to_path_buf());
    let mut add = |path: &Path| {
        files.insert(path.to_path_buf());
        if let Some(parent) = path.parent() {
            dirs.insert(parent.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(path) {
            if real != path {
                if let Some(parent) = real.parent() {
                    dirs.insert(parent.to_path_buf());
                }
                files.insert(real);
            }
        }
    };
    for p in agent.pipelines() {
        if let PluginRef::Path(path) = &p.spec.plugin {
            add(path);
        }
    }
    for f in config::config_files(agent.config_dir()).unwrap_or_default() {
        add(&f);
    }
    // The directory a symlinked config dir leads to is the config dir:
    // watching it under a second name would make the events come under
    // that name (one inotify watch per inode).
    let real = std::fs::canonicalize(agent.config_dir()).ok();
    dirs.retain(|d| d == agent.config_dir() || std::fs::canonicalize(d).ok() != real);
    (dirs, files)
}

fn relevant(config_dir: &Path, files: &BTreeSet<PathBuf>, ev: &notify::Event) -> bool {
    if matches!(ev.kind, notify::EventKind::Access(_)) {
        return false;
    }
    let in_config_dir = |p: &Path| {
        p.parent() == Some(config_dir)
            // Named through the directory a symlinked config dir leads to.
            || p.parent().and_then(|d| std::fs::canonicalize(d).ok())
                == std::fs::canonicalize(config_dir).ok()
    };
    ev.paths
        .iter()
        .any(|p| files.contains(p) || p == config_dir || in_config_dir(p))
}

/// The inode a path leads to (symlinks followed).
fn inode(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

type Watched = BTreeMap<PathBuf, Option<(u64, u64)>>;

/// Watch `d` (again), remembering the inode it leads to now.
fn arm(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut Watched,
    d: &Path,
    config_dir: &Path,
) {
    let _ = watcher.unwatch(d);
    let ino = inode(d);
    if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
        if d == config_dir {
            tracing::warn!(dir = %d.display(), "cannot watch: {e}");
        }
    }
    watched.insert(d.to_path_buf(), ino);
}

/// Start watching; reloads run on the returned thread until the process
/// ends. Call it before the first load, so that a change made while the
/// first load runs is not missed. Returns an error if the platform cannot
/// watch.
pub fn spawn(reloader: Arc<Reloader>) -> notify::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let _ = tx.send(ev);
        }
    })?;
    let agent = reloader.agent().clone();
    let config_dir = agent.config_dir().to_path_buf();
    // Watched directory -> the inode watched.
    let mut watched = Watched::new();
    let (dirs, mut files) = watch_set(&agent);
    for d in &dirs {
        arm(&mut watcher, &mut watched, d, &config_dir);
    }
    let mut last_check = Instant::now();
    let mut just_reloaded = false;
    let handle = std::thread::Builder::new()
        .name("weir-reload".into())
        .spawn(move || loop {
            let ev = match rx.recv_timeout(REARM_EVERY) {
                Ok(ev) => Some(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            // Every REARM_EVERY, events or not: a watched directory
            // replaced (symlink re-pointed, directory recreated) is watched
            // again, where the path leads now, and brings a reload.
            let due = std::mem::take(&mut just_reloaded) || last_check.elapsed() >= REARM_EVERY;
            let moved: Vec<PathBuf> = if due {
                watched
                    .iter()
                    .filter(|(d, ino)| inode(d) != **ino)
                    .map(|(d, _)| d.clone())
                    .collect()
            } else {
                Vec::new()
            };
            for d in &moved {
                tracing::debug!(dir = %d.display(), "watched directory replaced: watching it again");
                arm(&mut watcher, &mut watched, d, &config_dir);
            }
            // Pipelines loaded (the first load runs while this thread
            // starts) or plugins moved: follow them.
            if due {
                last_check = Instant::now();
                let (dirs, new_files) = watch_set(&agent);
                for d in dirs {
                    if !watched.contains_key(&d) {
                        arm(&mut watcher, &mut watched, &d, &config_dir);
                    }
                }
                files = new_files;
            }
            let go = !moved.is_empty() || ev.is_some_and(|ev| relevant(&config_dir, &files, &ev));
            if !go {
                continue;
            }
            // Debounce the burst.
            let first = Instant::now();
            loop {
                let left = MAX_DELAY.saturating_sub(first.elapsed());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(QUIET.min(left)) {
                    Ok(_) => continue,
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            tracing::debug!("config or plugin changed: reloading");
            let _ = reloader.reload();
            just_reloaded = true;
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(handle)
}

/// Warn about each path the config directory `dir` makes weir trust like
/// its own code (the directory, its config files, plugin files named by
/// path) that a user other than the agent's and root could change: at
/// startup and at every reload, since a plugin file can be replaced by
/// another one while the agent runs.
pub fn warn_if_others_may_write(dir: &Path, cfg: &AgentConfig) {
    let mut trusted = vec![dir.to_path_buf()];
    trusted.extend(config::config_files(dir).unwrap_or_default());
    for p in cfg.pipelines.values() {
        if let PluginRef::Path(f) = &p.plugin {
            trusted.push(f.clone());
        }
    }
    trusted.sort();
    trusted.dedup();
    for p in &trusted {
        if let Some(why) = crate::state::others_may_write(p) {
            tracing::warn!("{why}");
        }
    }
}
