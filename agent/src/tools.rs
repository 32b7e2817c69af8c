//! Tools for plugin authors: `weir test`, `weir inspect`, `weir plugin new`.
use crate::agent::plugin_bytes;
use crate::config::{PluginRef, BUILTINS};
use crate::runtime::bindings::process::exports::weir::plugin::process::Fields;
use crate::runtime::{bindings::types, Instance, Limits, Runtime, World};
use crate::sources::framing::{Framer, Lines, Resume};
use crate::store::{FamilyDecl, Kind, PipelineStore, Semantics};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

pub mod import;
mod scaffold;
mod state;
pub use scaffold::{plugin_new, Lang, COMPONENTIZE_JS, COMPONENTIZE_PY};
pub use state::{state_list, state_reset};

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

fn decls(families: Vec<types::Family>, const_labels: &[String]) -> Result<Vec<FamilyDecl>> {
    crate::pipeline::validate_families(families, const_labels).map_err(|e| anyhow!(e))
}

/// What a test run counted besides the exposition; written after it in
/// the output (and so in golden files) as comment lines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestCounts {
    /// Inputs (lines, responses) the plugin said it could not read.
    pub rejected: u64,
    /// Updates the host refused, by reason.
    pub refused: std::collections::BTreeMap<&'static str, u64>,
    /// Plugin calls that failed (error value or trap); their input is lost.
    pub errors: u64,
    /// Lines cut at the pipeline's `max_line_bytes`.
    pub truncated: u64,
}

impl TestCounts {
    /// The comment lines: valid in a Prometheus text exposition, so that
    /// the output stays one a scraper and promtool read.
    pub fn footer(&self) -> String {
        let refused: u64 = self.refused.values().sum();
        let mut s = format!(
            "# weir test: inputs rejected by the plugin: {}\n",
            self.rejected
        );
        s.push_str(&format!(
            "# weir test: updates refused by the host: {refused}"
        ));
        if refused > 0 {
            let parts: Vec<String> = self
                .refused
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        s.push('\n');
        s.push_str(&format!(
            "# weir test: plugin call errors: {}\n",
            self.errors
        ));
        if self.truncated > 0 {
            s.push_str(&format!(
                "# weir test: lines cut at max_line_bytes: {}\n",
                self.truncated
            ));
        }
        s
    }
}

/// One test run: a plugin instance with its settings, feeding a store set
/// up as the pipeline would have it.
struct Run<'a> {
    rt: &'a Runtime,
    code: &'a crate::runtime::PluginCode,
    config: String,
    limits: Limits,
    tag: String,
    inst: Instance,
    store: PipelineStore,
    const_labels: Vec<String>,
    counts: TestCounts,
    last_error: Option<String>,
}

impl Run<'_> {
    fn apply(&mut self, out: types::Output, sem: Semantics) -> Result<()> {
        if !out.declare.is_empty() {
            self.store
                .declare_more(decls(out.declare, &self.const_labels)?)
                .map_err(|e| anyhow!(e))?;
        }
        let updates = crate::pipeline::convert(out.updates);
        let r = self.store.apply(updates, sem);
        for (reason, n) in &r.rejected {
            *self.counts.refused.entry(reason.as_str()).or_insert(0) += n;
        }
        self.counts.rejected += u64::from(out.rejected);
        Ok(())
    }

    /// A failed call: counted; a trapped instance is replaced, as the
    /// agent does.
    fn failed(&mut self, e: crate::runtime::CallError) -> Result<()> {
        self.counts.errors += 1;
        let trapped = !matches!(e, crate::runtime::CallError::Plugin(_));
        self.last_error = Some(e.to_string());
        if trapped {
            self.inst = Instance::new(self.rt, self.code, self.limits, &self.tag)?;
            self.inst
                .init(&self.config)
                .map_err(|e| anyhow!("init failed after a restart: {e}"))?;
        }
        Ok(())
    }

    /// Lines framed (decoded from a container runtime's format, and
    /// joined into records, as the pipeline says) as the agent's line
    /// sources do; the input is read to its end, so a record ends at the
    /// next line that does not continue it or at the end.
    fn lines(
        &mut self,
        mut input: impl Read,
        max_line: usize,
        batch_lines: usize,
        spec: Option<&crate::config::PipelineSpec>,
    ) -> Result<()> {
        let mut framer = Framer::new(max_line, Resume::default());
        let multiline = spec.and_then(|s| s.multiline.as_ref());
        let mut decoder = match spec.map(|s| &s.source) {
            Some(crate::config::SourceSpec::File { format, .. })
                if *format != crate::config::LineFormat::Plain =>
            {
                Some(crate::sources::container::Decoder::new(*format, max_line))
            }
            _ => None,
        };
        let mut joiner = multiline
            .cloned()
            .map(crate::sources::multiline::Joiner::new);
        let mut buf = vec![0u8; 64 << 10];
        let mut batch = Vec::new();
        loop {
            let mut framed = Lines::default();
            let n = match input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                framer.finish(&mut framed);
            } else {
                framer.feed(&buf[..n], &mut framed);
            }
            if let Some(d) = decoder.as_mut() {
                let (mut lines, _invalid) = d.decode(framed);
                if n == 0 {
                    let rest = d.flush();
                    lines.cut += rest.cut;
                    lines.lines.extend(rest.lines);
                    lines.offsets.extend(rest.offsets);
                }
                framed = lines;
            }
            self.counts.truncated += framed.cut;
            if let Some(j) = joiner.as_mut() {
                let mut records = j.join(framed);
                if n == 0 {
                    records.lines.extend(j.flush().lines);
                }
                framed = records;
            }
            batch.extend(framed.lines);
            while batch.len() >= batch_lines.max(1) || (n == 0 && !batch.is_empty()) {
                let rest = batch.split_off(batch.len().min(batch_lines.max(1)));
                let result = self.inst.on_lines("input", &mut batch);
                batch = rest;
                match result {
                    Ok(out) => self.apply(out, Semantics::Events)?,
                    Err(e) => self.failed(e)?,
                }
            }
            if n == 0 {
                return Ok(());
            }
        }
    }
}

/// What `weir test` feeds and how: one plugin with its settings, or a
/// pipeline of a config directory as configured.
pub enum TestTarget<'a> {
    /// `--plugin P [--plugin-config F] --source S`.
    Plugin {
        /// Built-in name or path.
        plugin: &'a str,
        /// Settings file.
        config: Option<&'a Path>,
        /// What the input is.
        source: World,
        /// Sandbox limits.
        limits: Limits,
    },
    /// `--config-dir D --pipeline N`: the plugin, its settings, limits,
    /// constant labels, series cap and line framing of that pipeline.
    Pipeline {
        /// Config directory.
        dir: &'a Path,
        /// Pipeline name.
        name: &'a str,
    },
}

/// `weir test`: run the target over sample input, return the exposition
/// (0.0.4 text, the pipeline's families only) followed by the counts.
pub fn run_test(target: TestTarget<'_>, mut input: impl Read) -> Result<String> {
    let rt = Runtime::new(None)?;
    let mut held: Option<crate::config::PipelineSpec> = None;
    let (r, world, config, limits, const_labels, const_values, max_series, max_line, batch) =
        match target {
            TestTarget::Plugin {
                plugin,
                config,
                source,
                limits,
            } => (
                plugin_ref(plugin),
                source,
                read_plugin_config(config)?,
                limits,
                Vec::new(),
                Vec::new(),
                1_000_000,
                64 << 10,
                4096,
            ),
            TestTarget::Pipeline { dir, name } => {
                let cfg = crate::config::load_dir(dir).map_err(|errors| {
                    anyhow!(
                        "{}: {} error(s):\n{}",
                        dir.display(),
                        errors.len(),
                        errors
                            .iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                })?;
                let Some(spec) = cfg.pipelines.get(name) else {
                    let names: Vec<&str> = cfg.pipelines.keys().map(String::as_str).collect();
                    bail!(
                        "no pipeline \"{name}\" in {} (pipelines: {})",
                        dir.display(),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    );
                };
                held = Some(spec.clone());
                (
                    spec.plugin.clone(),
                    crate::pipeline::world_for(&spec.source),
                    spec.plugin_config.clone(),
                    spec.limits,
                    spec.label_names(),
                    // A container log's labels come from its path; the
                    // sample input has none: they are left empty.
                    spec.labels
                        .values()
                        .cloned()
                        .chain(spec.source_labels().iter().map(|_| String::new()))
                        .collect(),
                    spec.max_series,
                    spec.max_line_bytes,
                    spec.batch_lines,
                )
            }
        };
    let bytes = plugin_bytes(&r).map_err(|e| anyhow!(e))?;
    let code = rt
        .load(&r.to_string(), &bytes)
        .with_context(|| format!("plugin {r}"))?;
    if code.world != world {
        bail!(
            "plugin {r} consumes {} input, but the input is {}",
            code.world.as_str(),
            world.as_str()
        );
    }
    let tag = format!("test/{r}");
    let mut inst = Instance::new(&rt, &code, limits, &tag)?;
    let d = inst.init(&config).map_err(|e| {
        let msg = match e {
            crate::runtime::CallError::Plugin(m) => format!("plugin {r}: init failed: {m}"),
            other => format!("plugin {r}: init failed: {other}"),
        };
        match &held {
            Some(spec) => anyhow!(crate::config::at_pipeline(spec, &msg)),
            None => anyhow!(msg),
        }
    })?;
    let fields = d.process_fields.unwrap_or(Fields::empty());
    let mut store = PipelineStore::new(const_values, max_series);
    let declared = decls(d.families, &const_labels).map_err(|e| {
        let msg = format!("plugin {r}: {e:#}");
        match &held {
            Some(spec) => anyhow!(crate::config::at_pipeline(spec, &msg)),
            None => anyhow!(msg),
        }
    })?;
    store.declare(declared);
    let mut run = Run {
        rt: &rt,
        code: &code,
        config,
        limits,
        tag,
        inst,
        store,
        const_labels,
        counts: TestCounts::default(),
        last_error: None,
    };
    match world {
        World::Log => run.lines(input, max_line, batch, held.as_ref())?,
        World::Http => {
            let mut body = Vec::new();
            input.read_to_end(&mut body)?;
            let resp = crate::runtime::bindings::http::exports::weir::plugin::http::Response {
                url: "input".into(),
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            };
            match run.inst.on_response(&resp) {
                Ok(out) => run.apply(out, Semantics::Snapshot)?,
                Err(e) => run.failed(e)?,
            }
        }
        World::Process => {
            // Process plugins see a live scan of this host.
            let scanner = crate::sources::process::Scanner::new().map_err(|e| anyhow!(e))?;
            let (scan, _) = scanner.scan(fields).map_err(|e| anyhow!(e))?;
            match run.inst.on_scan(&scan) {
                Ok(out) => run.apply(out, Semantics::Snapshot)?,
                Err(e) => run.failed(e)?,
            }
        }
    }
    if let Some(e) = &run.last_error {
        eprintln_safe(&format!(
            "weir test: {} plugin call(s) failed; the last: {e}",
            run.counts.errors
        ));
    }
    let text = crate::outputs::to_text(&[&run.store]).0;
    Ok(format!("{text}{}", run.counts.footer()))
}

/// A line on stderr that never panics (a closed pipe is not an error
/// worth a backtrace).
fn eprintln_safe(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

/// Compare `actual` with the golden file, or rewrite it when blessing.
pub fn expect(actual: &str, file: &Path) -> Result<bool> {
    if std::env::var_os(BLESS_VAR).is_some() {
        std::fs::write(file, actual).with_context(|| format!("writing {}", file.display()))?;
        eprintln_safe(&format!("weir test: wrote {}", file.display()));
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
    eprintln_safe(&format!(
        "weir test: output differs from {}:",
        file.display()
    ));
    for l in &exp {
        if !act.contains(l) {
            eprintln_safe(&format!("- {l}"));
        }
    }
    for l in &act {
        if !exp.contains(l) {
            eprintln_safe(&format!("+ {l}"));
        }
    }
    eprintln_safe(&format!("(set {BLESS_VAR}=1 to accept the new output)"));
    Ok(false)
}

/// `weir inspect`: the world, WIT version, imports and exports, and the
/// families the plugin declares for `config`. Returns that report and,
/// when the plugin cannot run (no weir world, does not link, `init`
/// fails), why: the command then exits non-zero.
pub fn inspect(plugin: &str, config: Option<&Path>) -> Result<(String, Option<String>)> {
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
        return Ok((s, Some(format!("plugin {r} does not link: {e}"))));
    }
    if let Err(e) = &d.world {
        return Ok((s, Some(format!("plugin {r} implements no weir world: {e}"))));
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
        Err(e) => {
            s.push_str(&format!("init:     failed: {e}\n"));
            return Ok((s, Some(format!("plugin {r}: init failed: {e}"))));
        }
    }
    Ok((s, None))
}
