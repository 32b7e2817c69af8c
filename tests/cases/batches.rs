//! Batch independence (issue 19): a log plugin's result must not depend on
//! how lines fall into calls. For every file-fed pipeline of a config
//! directory, the lines its files hold are fed to the real plugin (the
//! same wasm component the agent runs, through the agent's runtime and
//! store) once line by line and then in batches of random sizes; the
//! expositions, the plugin's rejected inputs and the host's refused updates
//! (by reason) must be identical.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir::config::{PluginRef, SourceSpec};
use weir::runtime::{Instance, Runtime, World};
use weir::store::{PipelineStore, Semantics};

/// Most lines taken from one pipeline's files: enough for every case, and
/// line-by-line calls stay cheap.
const MAX_LINES: usize = 20_000;

/// What a run ended with.
#[derive(PartialEq, Debug)]
struct Outcome {
    exposition: String,
    rejected: u64,
    refused: BTreeMap<&'static str, u64>,
}

/// A small deterministic generator (xorshift), so the sizes are
/// reproducible from the seed printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n.max(1)
    }
}

fn feed(
    rt: &Arc<Runtime>,
    plugin: &PluginRef,
    config: &str,
    lines: &[String],
    mut size: impl FnMut() -> usize,
) -> Result<Outcome, String> {
    let bytes = weir::agent::plugin_bytes(plugin)?;
    let code = rt
        .load(&plugin.to_string(), &bytes)
        .map_err(|e| format!("{e:#}"))?;
    if code.world != World::Log {
        return Err("not a log plugin".into());
    }
    let mut inst =
        Instance::new(rt, &code, Default::default(), "batches").map_err(|e| format!("{e:#}"))?;
    let d = inst.init(config).map_err(|e| format!("init: {e}"))?;
    let mut store = PipelineStore::new(Vec::new(), 1_000_000);
    store.declare(weir::pipeline::validate_families(d.families, &[])?);
    let mut out = Outcome {
        exposition: String::new(),
        rejected: 0,
        refused: BTreeMap::new(),
    };
    let mut rest = lines;
    while !rest.is_empty() {
        let n = size().clamp(1, rest.len());
        let (batch, more) = rest.split_at(n);
        rest = more;
        let o = inst
            .on_lines("batches", &mut batch.to_vec())
            .map_err(|e| format!("on_lines: {e}"))?;
        out.rejected += u64::from(o.rejected);
        if !o.declare.is_empty() {
            store.declare_more(weir::pipeline::validate_families(o.declare, &[])?)?;
        }
        let r = store.apply(weir::pipeline::convert(o.updates), Semantics::Events);
        for (reason, n) in r.rejected {
            *out.refused.entry(reason.as_str()).or_default() += n;
        }
    }
    out.exposition = weir::outputs::to_text(&[&store]).0;
    Ok(out)
}

/// The lines of every file a file source of `spec` matches now.
fn lines_of(spec: &weir::config::PipelineSpec) -> Vec<String> {
    let SourceSpec::File { paths, .. } = &spec.source else {
        return Vec::new();
    };
    let base = spec.file.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = Vec::new();
    for p in paths {
        let pat = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        if let Ok(g) = glob::glob(&pat.to_string_lossy()) {
            files.extend(g.flatten().filter(|f| f.is_file()));
        }
    }
    files.sort();
    files.dedup();
    let mut lines = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let mut framed = weir::sources::framing::Lines::default();
        for raw in bytes.split(|b| *b == b'\n') {
            framed
                .lines
                .push(weir::sources::decode_line(raw, spec.max_line_bytes).0);
            framed.offsets.push(0);
        }
        // split() yields an empty piece after the last newline.
        if bytes.ends_with(b"\n") {
            framed.lines.pop();
            framed.offsets.pop();
        }
        // With `multiline`, the plugin is fed records, as the agent feeds
        // them (a file read to its end: the last record is complete).
        match &spec.multiline {
            Some(m) => {
                let mut j = weir::sources::multiline::Joiner::new(m.clone());
                lines.extend(j.join(framed).lines);
                lines.extend(j.flush().lines);
            }
            None => lines.extend(framed.lines),
        }
    }
    lines.truncate(MAX_LINES);
    lines
}

/// Check every file-fed log pipeline of `dir`; returns how many were
/// checked. `seed` varies the random batch sizes.
pub fn check_dir(rt: &Arc<Runtime>, dir: &Path, seed: u64) -> Result<usize, String> {
    let cfg = weir::config::load_dir(dir).map_err(|errs| {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let mut checked = 0;
    for (name, spec) in &cfg.pipelines {
        let lines = lines_of(spec);
        if lines.is_empty() {
            continue;
        }
        let what = format!("pipeline {name} ({} lines)", lines.len());
        let one = match feed(rt, &spec.plugin, &spec.plugin_config, &lines, || 1) {
            Ok(o) => o,
            Err(e) if e == "not a log plugin" => continue,
            Err(e) => return Err(format!("{what}: {e}")),
        };
        for round in 0..3u64 {
            let s = seed.wrapping_mul(31).wrapping_add(round) | 1;
            let mut rng = Rng(s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let max = (lines.len() as u64 / 3).max(2);
            let batched = feed(rt, &spec.plugin, &spec.plugin_config, &lines, || {
                1 + rng.below(max) as usize
            })
            .map_err(|e| format!("{what}: {e}"))?;
            if batched != one {
                return Err(format!(
                    "{what}: line by line and in random batches (seed {s}) differ\n\
                     rejected inputs: {} vs {}; refused updates: {:?} vs {:?}\n{}",
                    one.rejected,
                    batched.rejected,
                    one.refused,
                    batched.refused,
                    crate::diff(&one.exposition, &batched.exposition)
                ));
            }
        }
        checked += 1;
    }
    Ok(checked)
}
