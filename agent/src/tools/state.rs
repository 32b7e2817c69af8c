//! `weir state`: what the agent keeps in its state directory, and
//! forgetting one pipeline's file positions.
use crate::sources::file::read_checkpoint_file;
use crate::state::StateDir;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;

fn valid_pipeline_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.')
}

/// Every pipeline's file checkpoints: file, saved offset, the file's size
/// now and what that means for the next start.
pub fn state_list(state_dir: &Path) -> Result<String> {
    let mut out = format!("state directory: {}\n", state_dir.display());
    // Through the agent's own checks: a directory it would refuse is
    // reported, not read.
    let dir = match StateDir::open_existing(state_dir).map_err(anyhow::Error::msg)? {
        Some(d) => Some(d.subdir("checkpoints").map_err(anyhow::Error::msg)?),
        None => None,
    };
    let files = match &dir {
        Some(d) => d
            .names(".json")
            .with_context(|| format!("{}", d.path().display()))?,
        None => Vec::new(),
    };
    if files.is_empty() {
        out.push_str("no checkpoints: every file source starts as its start_at says\n");
        return Ok(out);
    }
    let Some(dir) = dir else { return Ok(out) };
    for f in files {
        let name = f.strip_suffix(".json").unwrap_or(&f);
        let _ = writeln!(
            out,
            "pipeline \"{name}\" ({}):",
            dir.path().join(&f).display()
        );
        match read_checkpoint_file(&dir, &f) {
            Ok(None) => out.push_str("  gone\n"),
            Ok(Some(cp)) => {
                match (&cp.journal_cursor, cp.files.is_empty()) {
                    (Some(c), true) => {
                        let _ = writeln!(out, "  journal cursor {c}");
                    }
                    (None, true) => out.push_str("  no files\n"),
                    _ => {}
                }
                for e in &cp.files {
                    let now = match std::fs::metadata(&e.path) {
                        Ok(md) if md.len() == e.offset => {
                            format!("{} bytes: at the end", md.len())
                        }
                        Ok(md) if md.len() > e.offset => {
                            format!("{} bytes: {} left to read", md.len(), md.len() - e.offset)
                        }
                        Ok(md) => format!(
                            "{} bytes: shorter than the checkpoint, read again from the start",
                            md.len()
                        ),
                        Err(_) => "no longer exists".to_string(),
                    };
                    let _ = writeln!(out, "  {}  offset {} ({now})", e.path, e.offset);
                }
                if let Some((series, families)) = cp.series {
                    let _ = writeln!(
                        out,
                        "  values: {series} series of {families} families, restored at the next start"
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(out, "  unreadable: {e}");
            }
        }
    }
    Ok(out)
}

/// Forget the file checkpoints of `pipeline`: at its next start it reads
/// its files as `start_at` says. Returns what was done, for the user.
pub fn state_reset(state_dir: &Path, pipeline: &str) -> Result<String> {
    if !valid_pipeline_name(pipeline) {
        bail!("\"{pipeline}\" is not a pipeline name");
    }
    let root = StateDir::open_existing(state_dir).map_err(anyhow::Error::msg)?;
    // A running agent would write the checkpoint back from memory at its
    // next save, undoing the reset: take the agent's lock for the time of
    // the reset, which fails while one runs.
    let _lock = match &root {
        Some(d) => Some(d.lock().map_err(|e| {
            if e.starts_with("another weir") {
                anyhow::anyhow!("{e}; stop it before resetting a pipeline's checkpoints")
            } else {
                anyhow::anyhow!("{e}")
            }
        })?),
        None => None,
    };
    let dir = root
        .map(|d| d.subdir("checkpoints"))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let file = format!("{pipeline}.json");
    let n = match dir.as_ref().map(|d| read_checkpoint_file(d, &file)) {
        Some(Ok(Some(cp))) => cp.files.len(),
        Some(Err(_)) => 0,
        None | Some(Ok(None)) => {
            let known: Vec<String> = dir
                .as_ref()
                .and_then(|d| d.names(".json").ok())
                .unwrap_or_default()
                .iter()
                .map(|n| n.trim_end_matches(".json").to_string())
                .collect();
            bail!(
                "no checkpoints for pipeline \"{pipeline}\" in {} (pipelines with checkpoints: {})",
                state_dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
    };
    if let Some(d) = &dir {
        d.discard(&file)
            .with_context(|| format!("removing {}", d.path().join(&file).display()))?;
    }
    Ok(format!(
        "forgot the checkpoints of pipeline \"{pipeline}\" ({n} file(s)) and the series values kept with them; at its next start its files are read as start_at says and its counters start from zero.\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_resets() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = tmp.path().join("app.log");
        std::fs::write(&log, "0123456789\n").expect("log");
        std::fs::create_dir_all(tmp.path().join("checkpoints")).expect("dir");
        let json = format!(
            r#"{{"files":[{{"path":"{}","key":{{"dev":1,"ino":2,"fp_len":0,"fp":0}},"offset":11}}]}}"#,
            log.display()
        );
        std::fs::write(tmp.path().join("checkpoints/app.json"), json).expect("cp");
        let text = state_list(tmp.path()).expect("list");
        assert!(text.contains("pipeline \"app\""), "{text}");
        assert!(text.contains("offset 11 (11 bytes: at the end)"), "{text}");
        let e = state_reset(tmp.path(), "other").unwrap_err().to_string();
        assert!(e.contains("pipelines with checkpoints: app"), "{e}");
        assert!(state_reset(tmp.path(), "../x").is_err());
        // While an agent holds the state directory, a reset is refused and
        // the checkpoint stays.
        let held = StateDir::open_existing(tmp.path())
            .expect("open")
            .expect("exists")
            .lock()
            .expect("lock");
        let e = state_reset(tmp.path(), "app").unwrap_err().to_string();
        assert!(e.contains("another weir") && e.contains("stop it"), "{e}");
        assert!(tmp.path().join("checkpoints/app.json").exists());
        drop(held);
        let done = state_reset(tmp.path(), "app").expect("reset");
        assert!(done.contains("1 file(s)"), "{done}");
        assert!(state_list(tmp.path())
            .expect("list")
            .contains("no checkpoints"));
    }
}
