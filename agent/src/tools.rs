//! Tools for plugin authors: `weir test`, `weir inspect`, `weir plugin new`.
use crate::agent::plugin_bytes;
use crate::config::{PluginRef, BUILTINS};
use crate::exposition::Exposition;
use crate::runtime::bindings::process::exports::weir::plugin::process::Fields;
use crate::runtime::{bindings::types, Instance, Limits, Runtime, World};
use crate::store::{FamilyDecl, Kind, PipelineStore, Semantics};
use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// Environment variable that makes `weir test --expect` rewrite the file.
pub const BLESS_VAR: &str = "WEIR_BLESS";

/// A plugin named on the command line: a built-in name or a path.
pub fn plugin_ref(s: &str) -> PluginRef {
    if BUILTINS.contains(&s) {
        PluginRef::Builtin(s.to_string())
    } else {
        PluginRef::Path(PathBuf::from(s))
    }
}

/// Plugin settings from a file: `.json` as is, anything else as TOML.
pub fn read_plugin_config(path: Option<&Path>) -> Result<String> {
    let Some(path) = path else {
        return Ok("{}".into());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<serde_json::Value>(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        return Ok(text);
    }
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    Ok(serde_json::to_string(&table)?)
}

fn decls(families: Vec<types::Family>) -> Result<Vec<FamilyDecl>> {
    crate::pipeline::validate_families(families, &[]).map_err(|e| anyhow!(e))
}

fn apply(store: &mut PipelineStore, out: types::Output, sem: Semantics) -> Result<(u64, u32)> {
    if !out.declare.is_empty() {
        store
            .declare_more(decls(out.declare)?)
            .map_err(|e| anyhow!(e))?;
    }
    let updates = crate::pipeline::convert(out.updates);
    let r = store.apply(updates, sem);
    let refused: u64 = r.rejected.iter().map(|(_, n)| n).sum();
    for (reason, n) in &r.rejected {
        eprintln!("weir test: {n} update(s) refused: {}", reason.as_str());
    }
    Ok((refused, out.rejected))
}

/// `weir test`: run one plugin over sample input from `input`, return the
/// exposition (0.0.4 text, the plugin's families only).
pub fn run_test(
    plugin: &str,
    config: Option<&Path>,
    source: World,
    mut input: impl Read,
    limits: Limits,
) -> Result<String> {
    let r = plugin_ref(plugin);
    let bytes = plugin_bytes(&r).map_err(|e| anyhow!(e))?;
    let rt = Runtime::new(None)?;
    let code = rt
        .load(&r.to_string(), &bytes)
        .with_context(|| format!("plugin {r}"))?;
    if code.world != source {
        bail!(
            "plugin {r} consumes {} input; run it with --source {}",
            code.world.as_str(),
            code.world.as_str()
        );
    }
    let cfg = read_plugin_config(config)?;
    let mut inst = Instance::new(&rt, &code, limits, &format!("test/{r}"))?;
    let d = inst
        .init(&cfg)
        .map_err(|e| anyhow!("plugin {r}: init failed: {e}"))?;
    let fields = d.process_fields.unwrap_or(Fields::empty());
    let mut store = PipelineStore::new(Vec::new(), 1_000_000);
    store.declare(decls(d.families).with_context(|| format!("plugin {r}"))?);
    let mut refused = 0;
    let mut rejected = 0u64;
    match source {
        World::Log => {
            let reader = std::io::BufReader::new(input);
            let mut batch = Vec::new();
            let mut flush = |batch: &mut Vec<String>, store: &mut PipelineStore| -> Result<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let out = inst
                    .on_lines("stdin", std::mem::take(batch))
                    .map_err(|e| anyhow!("plugin {r}: {e}"))?;
                let (a, b) = apply(store, out, Semantics::Events)?;
                refused += a;
                rejected += u64::from(b);
                Ok(())
            };
            for line in reader.split(b'\n') {
                let line = line?;
                let (l, _) = crate::sources::decode_line(&line, 64 << 10);
                batch.push(l);
                if batch.len() >= 4096 {
                    flush(&mut batch, &mut store)?;
                }
            }
            flush(&mut batch, &mut store)?;
        }
        World::Http => {
            let mut body = Vec::new();
            input.read_to_end(&mut body)?;
            let resp = crate::runtime::bindings::http::exports::weir::plugin::http::Response {
                url: "stdin".into(),
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            };
            let out = inst
                .on_response(&resp)
                .map_err(|e| anyhow!("plugin {r}: {e}"))?;
            let (a, b) = apply(&mut store, out, Semantics::Snapshot)?;
            refused += a;
            rejected += u64::from(b);
        }
        World::Process => {
            // Process plugins see a live scan of this host.
            let scanner = crate::sources::process::Scanner::new().map_err(|e| anyhow!(e))?;
            let (scan, _) = scanner.scan(fields).map_err(|e| anyhow!(e))?;
            let out = inst
                .on_scan(&scan)
                .map_err(|e| anyhow!("plugin {r}: {e}"))?;
            let (a, b) = apply(&mut store, out, Semantics::Snapshot)?;
            refused += a;
            rejected += u64::from(b);
        }
    }
    if rejected > 0 {
        eprintln!("weir test: the plugin rejected {rejected} input(s)");
    }
    if refused > 0 {
        eprintln!("weir test: {refused} update(s) refused by the host");
    }
    let mut e = Exposition::new();
    e.add_store(&store);
    Ok(e.to_text())
}

/// Compare `actual` with the golden file, or rewrite it when blessing.
pub fn expect(actual: &str, file: &Path) -> Result<bool> {
    if std::env::var_os(BLESS_VAR).is_some() {
        std::fs::write(file, actual).with_context(|| format!("writing {}", file.display()))?;
        eprintln!("weir test: wrote {}", file.display());
        return Ok(true);
    }
    let expected = std::fs::read_to_string(file).with_context(|| {
        format!(
            "reading {} (set {BLESS_VAR}=1 to create it)",
            file.display()
        )
    })?;
    if expected == actual {
        return Ok(true);
    }
    let exp: Vec<&str> = expected.lines().collect();
    let act: Vec<&str> = actual.lines().collect();
    eprintln!("weir test: output differs from {}:", file.display());
    for l in &exp {
        if !act.contains(l) {
            eprintln!("- {l}");
        }
    }
    for l in &act {
        if !exp.contains(l) {
            eprintln!("+ {l}");
        }
    }
    eprintln!("(set {BLESS_VAR}=1 to accept the new output)");
    Ok(false)
}

/// `weir inspect`: the world, WIT version, imports and exports, and the
/// families the plugin declares for `config`.
pub fn inspect(plugin: &str, config: Option<&Path>) -> Result<String> {
    let r = plugin_ref(plugin);
    let bytes = plugin_bytes(&r).map_err(|e| anyhow!(e))?;
    let rt = Runtime::new(None)?;
    let d = rt.describe(&bytes).with_context(|| format!("plugin {r}"))?;
    let mut s = String::new();
    s.push_str(&format!("plugin:   {r}\nsize:     {} bytes\n", bytes.len()));
    match &d.world {
        Ok(w) => s.push_str(&format!(
            "world:    {} (weir:plugin@{})\n",
            w.as_str(),
            crate::runtime::WIT_VERSION
        )),
        Err(e) => s.push_str(&format!("world:    none: {e}\n")),
    }
    s.push_str("imports:\n");
    for i in &d.imports {
        s.push_str(&format!("  {i}\n"));
    }
    s.push_str("exports:\n");
    for e in &d.exports {
        s.push_str(&format!("  {e}\n"));
    }
    if let Err(e) = &d.link {
        s.push_str(&format!("links:    no: {e}\n"));
        return Ok(s);
    }
    if d.world.is_err() {
        return Ok(s);
    }
    let code = rt.load(&r.to_string(), &bytes)?;
    let cfg = read_plugin_config(config)?;
    let mut inst = Instance::new(&rt, &code, Limits::default(), &format!("inspect/{r}"))?;
    match inst.init(&cfg) {
        Ok(decl) => {
            s.push_str(&format!("families ({}):\n", decl.families.len()));
            for f in decl.families {
                let k = Kind::from(f.kind).as_str();
                let labels = if f.labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", f.labels.join(","))
                };
                let unit = if f.unit.is_empty() {
                    String::new()
                } else {
                    format!(" unit={}", f.unit)
                };
                s.push_str(&format!("  {} {k}{labels}{unit}: {}\n", f.name, f.help));
            }
            if let Some(fields) = decl.process_fields {
                s.push_str(&format!("process fields: {fields:?}\n"));
            }
        }
        Err(e) => s.push_str(&format!("init:     failed: {e}\n")),
    }
    Ok(s)
}

/// Where the SDK lives, for generated crates.
fn sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
}

/// `weir plugin new NAME`: a plugin crate that builds and has a passing
/// test. Returns the created directory.
pub fn plugin_new(name: &str, parent: &Path) -> Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!("plugin name \"{name}\": lowercase letters, digits, '-' and '_', starting with a letter");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = std::fs::canonicalize(sdk_path()).unwrap_or_else(|_| sdk_path());
    let prefix = name.replace('-', "_");
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = {{ path = "{}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# Build: cargo build --release --target wasm32-wasip2
[profile.release]
lto = true
codegen-units = 1
panic = "abort"
opt-level = "s"
strip = true

[workspace]
"#,
            sdk.display()
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), TEMPLATE.replace("PREFIX", &prefix))?;
    std::fs::write(
        dir.join("sample.log"),
        "level=info msg=\"request\" route=/api status=200 ms=12\nlevel=error msg=\"request\" route=/api status=500 ms=230\nnot a log line\n",
    )?;
    std::fs::write(
        dir.join("config.toml"),
        "# Settings handed to init (as JSON) by weir.\nprefix = \"myapp\"\n",
    )?;
    Ok(dir)
}

const TEMPLATE: &str = r##"//! A weir plugin: logfmt-style request lines to metrics.
//!
//! Build:  cargo build --release --target wasm32-wasip2
//! Try:    weir test --plugin target/wasm32-wasip2/release/PREFIX.wasm \
//!             --plugin-config config.toml --source log < sample.log
use serde::Deserialize;
use weir_sdk::{Batch, Families, FamilyId, LogPlugin, Output};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Metric name prefix, e.g. "myapp".
    #[serde(default = "default_prefix")]
    prefix: String,
}

fn default_prefix() -> String {
    "app".into()
}

pub struct Plugin {
    requests: FamilyId,
    duration: FamilyId,
}

/// The value of `key=` in a logfmt line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

impl LogPlugin for Plugin {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        let cfg: Config = serde_json::from_str(config).map_err(|e| format!("invalid settings: {e}"))?;
        let requests = families.counter(
            &format!("{}_requests_total", cfg.prefix),
            "Requests by route and status.",
            &["route", "status"],
        );
        let duration = families.histogram(
            &format!("{}_request_duration_seconds", cfg.prefix),
            "Request duration.",
            &["route"],
            weir_sdk::DEFAULT_BUCKETS,
        );
        families.with_unit("seconds");
        Ok(Plugin { requests, duration })
    }

    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
        for line in &batch.lines {
            let (Some(route), Some(status)) = (field(line, "route"), field(line, "status")) else {
                out.reject();
                continue;
            };
            out.add(self.requests, &[route, status], 1.0);
            if let Some(ms) = field(line, "ms").and_then(|v| v.parse::<f64>().ok()) {
                out.observe(self.duration, &[route], ms / 1000.0);
            }
        }
        Ok(())
    }
}

weir_sdk::export_log_plugin!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_and_rejects_other_lines() {
        let mut families = Families::default();
        let mut p = Plugin::init(r#"{"prefix":"t"}"#, &mut families).expect("init");
        assert_eq!(families.name(p.requests), Some("t_requests_total"));
        let batch = Batch {
            origin: "test".into(),
            lines: vec![
                "route=/a status=200 ms=5".into(),
                "route=/a status=200 ms=7".into(),
                "garbage".into(),
            ],
        };
        let mut out = Output::new();
        p.on_lines(&batch, &mut out).expect("lines");
        assert_eq!(out.rejected(), 1);
        // One merged counter update and one histogram update.
        assert_eq!(out.len(), 2);
    }
}
"##;
