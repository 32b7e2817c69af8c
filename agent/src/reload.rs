//! Watching the config directory and the plugin files, and reloading.
//!
//! Events are debounced: a reload runs once the directory has been quiet
//! for [`QUIET`] (or [`MAX_DELAY`] after the first event of a burst), so an
//! editor's save, a Kubernetes ConfigMap's `..data` symlink swap or a
//! `cargo build` writing a `.wasm` becomes one reload. The directory is
//! watched, not the files, because atomic writes and symlink swaps replace
//! inodes. A half-written `.wasm` fails to compile, the reload is refused
//! and the old pipeline keeps running; the write's final event brings the
//! next reload.
use crate::agent::Agent;
use crate::config::PluginRef;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Quiet time that ends a burst of events.
pub const QUIET: Duration = Duration::from_millis(100);
/// Longest wait after the first event of a burst.
pub const MAX_DELAY: Duration = Duration::from_millis(1000);

/// The directories to watch, and the plugin files among them that matter.
fn watch_set(agent: &Agent) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    dirs.insert(agent.config_dir().to_path_buf());
    for p in agent.pipelines() {
        if let PluginRef::Path(path) = &p.spec.plugin {
            if let Some(parent) = path.parent() {
                dirs.insert(parent.to_path_buf());
            }
            files.insert(path.clone());
        }
    }
    (dirs, files)
}

fn relevant(config_dir: &Path, plugin_files: &BTreeSet<PathBuf>, ev: &notify::Event) -> bool {
    if matches!(ev.kind, notify::EventKind::Access(_)) {
        return false;
    }
    ev.paths
        .iter()
        .any(|p| p.parent() == Some(config_dir) || plugin_files.contains(p) || p == config_dir)
}

/// Start watching; reloads run on the returned thread until the process
/// ends. Returns an error if the platform cannot watch.
pub fn spawn(agent: Arc<Agent>) -> notify::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let _ = tx.send(ev);
        }
    })?;
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    let (dirs, mut files) = watch_set(&agent);
    for d in &dirs {
        match watcher.watch(d, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(d.clone());
            }
            Err(e) => tracing::warn!(dir = %d.display(), "cannot watch: {e}"),
        }
    }
    let config_dir = agent.config_dir().to_path_buf();
    let handle = std::thread::Builder::new()
        .name("weir-reload".into())
        .spawn(move || {
            while let Ok(ev) = rx.recv() {
                if !relevant(&config_dir, &files, &ev) {
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
                let _ = agent.reload();
                // Plugins may have moved: follow them.
                let (dirs, new_files) = watch_set(&agent);
                for d in dirs.difference(&watched.clone()) {
                    if watcher.watch(d, RecursiveMode::NonRecursive).is_ok() {
                        watched.insert(d.clone());
                    }
                }
                files = new_files;
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(handle)
}
