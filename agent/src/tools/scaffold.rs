//! `weir plugin new`: a plugin project that builds on any machine.
//!
//! The project carries what it needs: the WIT it targets (`wit/`) and, for
//! Rust, the SDK crate (`vendor/weir-sdk`) as embedded in this binary at
//! build time, with the `Cargo.lock` the SDK was tested with. No path of the
//! machine where weir was built appears in it, so it can be committed,
//! shared and built in CI anywhere with the wasm target.
//!
//! Layout (Rust):
//!
//! ```text
//! NAME/
//!   Cargo.toml Cargo.lock src/lib.rs   the plugin
//!   vendor/weir-sdk/                    the SDK (Rust only)
//!   wit/v0.1.0/weir.wit                 the interface
//!   sample.log                          input for `weir test`
//!   weir/NAME.toml                      a config dir: the pipeline as deployed
//!   README.md                           build, test, run
//! ```
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

mod files {
    include!(concat!(env!("OUT_DIR"), "/scaffold_files.rs"));
}

/// The language of a new plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Rust with the weir SDK; `cargo build --target wasm32-wasip2`.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// Versions of the other languages' tools known to work with this WIT and
/// the agent's wasmtime (the same the e2e tests build with).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// See [`COMPONENTIZE_PY`].
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

fn write(dir: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
}

/// The SDK's manifest with its `x.workspace = true` keys replaced by the
/// plugins workspace's values, so that it stands alone.
pub fn vendored_sdk_manifest() -> Result<String> {
    let ws: toml::Table = toml::from_str(files::PLUGINS_MANIFEST)?;
    let package = ws
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.as_table())
        .cloned()
        .unwrap_or_default();
    let sdk = files::SDK_FILES
        .iter()
        .find(|(n, _)| *n == "Cargo.toml")
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .context("SDK manifest not embedded")?;
    let mut out = String::new();
    for line in sdk.lines() {
        let t = line.trim();
        if let Some(key) = t.strip_suffix(".workspace = true") {
            let v = package
                .get(key)
                .with_context(|| format!("workspace.package.{key} not found"))?;
            out.push_str(&format!("{key} = {v}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\n# Vendored by `weir plugin new` from weir ");
    out.push_str(crate::agent::VERSION);
    out.push_str("; replace this folder to update the SDK.\n");
    Ok(out)
}

/// The scaffold's `Cargo.lock`: the plugins workspace's lock (the versions
/// the SDK is tested with) cut down to what a plugin named `name`
/// depending on `weir-sdk` and `serde` (as `RUST_MANIFEST` declares)
/// reaches, with the plugin as its root package, so that `cargo build
/// --locked` takes it as it is. Cargo writes no such subset itself without
/// resolving (and downloading) on the user's machine, hence this walk.
///
/// Errors: the embedded lock is not a lock or names a dependency it does
/// not list (a build of weir from a broken checkout).
pub fn scaffold_lock(name: &str) -> Result<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let lock: toml::Table = toml::from_str(files::PLUGINS_LOCK).context("plugins/Cargo.lock")?;
    let format = lock
        .get("version")
        .and_then(|v| v.as_integer())
        .unwrap_or(4);
    let packages: Vec<&toml::Table> = lock
        .get("package")
        .and_then(|p| p.as_array())
        .context("plugins/Cargo.lock has no [[package]]")?
        .iter()
        .filter_map(|p| p.as_table())
        .collect();
    let field = |p: &toml::Table, k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let deps = |p: &toml::Table| -> Vec<String> {
        p.get("dependencies")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    // A dependency entry is "name", "name version" or
    // "name version (source)"; the index of the package it names.
    let find = |dep: &str| -> Result<usize> {
        let mut it = dep.split(' ');
        let n = it.next().unwrap_or("");
        let v = it.next();
        let hits: Vec<usize> = (0..packages.len())
            .filter(|&i| {
                field(packages[i], "name").as_deref() == Some(n)
                    && v.is_none_or(|v| field(packages[i], "version").as_deref() == Some(v))
            })
            .collect();
        match hits[..] {
            [i] => Ok(i),
            _ => bail!("plugins/Cargo.lock: dependency \"{dep}\" is not one package"),
        }
    };
    let sdk = find("weir-sdk")?;
    let root_deps: Vec<String> = {
        let serde = deps(packages[sdk])
            .into_iter()
            .find(|d| d == "serde" || d.starts_with("serde "))
            .context("plugins/Cargo.lock: weir-sdk without serde")?;
        vec![serde, "weir-sdk".to_string()]
    };
    let mut seen = BTreeSet::new();
    let mut todo: Vec<usize> = root_deps.iter().map(|d| find(d)).collect::<Result<_>>()?;
    while let Some(i) = todo.pop() {
        if seen.insert(i) {
            for d in deps(packages[i]) {
                todo.push(find(&d)?);
            }
        }
    }
    // Cargo's order: by name, then version (as written; each name has
    // few versions and the comparison is by parsed resolve anyway).
    let mut out: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut entry = |n: String, v: String, p: Option<&toml::Table>, d: &[String]| {
        let mut e = format!("[[package]]\nname = {n:?}\nversion = {v:?}\n");
        for k in ["source", "checksum"] {
            if let Some(x) = p.and_then(|p| field(p, k)) {
                e.push_str(&format!("{k} = {x:?}\n"));
            }
        }
        if !d.is_empty() {
            e.push_str("dependencies = [\n");
            for x in d {
                e.push_str(&format!(" {x:?},\n"));
            }
            e.push_str("]\n");
        }
        out.insert((n, v), e);
    };
    entry(name.to_string(), "0.1.0".to_string(), None, &root_deps);
    for i in seen {
        let p = packages[i];
        entry(
            field(p, "name").unwrap_or_default(),
            field(p, "version").unwrap_or_default(),
            Some(p),
            &deps(p),
        );
    }
    let mut text = format!(
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = {format}\n"
    );
    for e in out.values() {
        text.push('\n');
        text.push_str(e);
    }
    Ok(text)
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        bail!("plugin name \"{name}\": lowercase letters, digits, '-' and '_', starting with a letter");
    }
    Ok(())
}

/// `weir plugin new NAME --lang L`: a plugin project in `parent/NAME`.
/// Returns the created directory.
pub fn plugin_new(name: &str, parent: &Path, lang: Lang) -> Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let prefix = name.replace('-', "_");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (rel, bytes) in files::WIT_FILES {
        write(&dir, &format!("wit/{rel}"), bytes)?;
    }
    let fill = |t: &str| {
        t.replace("@NAME@", name)
            .replace("@PREFIX@", &prefix)
            .replace("@WIT@", &format!("v{}", crate::runtime::WIT_VERSION))
            .replace("@PY@", COMPONENTIZE_PY)
            .replace("@JS@", COMPONENTIZE_JS)
    };
    let (wasm, memory) = match lang {
        Lang::Rust => (format!("../target/wasm32-wasip2/release/{prefix}.wasm"), ""),
        Lang::Python => (format!("../{prefix}.wasm"), "memory_limit = \"256MiB\"\n"),
        // componentize-js needs about 512 MiB (see shared/toolchain.md).
        Lang::Js => (format!("../{prefix}.wasm"), "memory_limit = \"768MiB\"\n"),
    };
    write(&dir, "sample.log", SAMPLE_LOG.as_bytes())?;
    write(
        &dir,
        &format!("weir/{name}.toml"),
        fill(PIPELINE)
            .replace("@WASM@", &wasm)
            .replace("@MEMORY@", memory)
            .as_bytes(),
    )?;
    write(
        &dir,
        ".gitignore",
        b"/target\n*.wasm\n__pycache__/\nnode_modules/\n",
    )?;
    match lang {
        Lang::Rust => {
            write(&dir, "Cargo.toml", fill(RUST_MANIFEST).as_bytes())?;
            write(&dir, "Cargo.lock", scaffold_lock(name)?.as_bytes())?;
            write(&dir, "src/lib.rs", fill(RUST_LIB).as_bytes())?;
            for (rel, bytes) in files::SDK_FILES {
                if *rel != "Cargo.toml" {
                    write(&dir, &format!("vendor/weir-sdk/{rel}"), bytes)?;
                }
            }
            write(
                &dir,
                "vendor/weir-sdk/Cargo.toml",
                vendored_sdk_manifest()?.as_bytes(),
            )?;
            write(&dir, "README.md", fill(RUST_README).as_bytes())?;
        }
        Lang::Python => {
            write(&dir, "app.py", fill(PY_APP).as_bytes())?;
            write(&dir, "README.md", fill(PY_README).as_bytes())?;
        }
        Lang::Js => {
            write(&dir, "app.js", fill(JS_APP).as_bytes())?;
            write(&dir, "README.md", fill(JS_README).as_bytes())?;
        }
    }
    Ok(dir)
}

const SAMPLE_LOG: &str = r#"time=2026-11-22T10:00:00.120Z level=info msg="Request Completed" method=GET path=/api/items status=200 duration=12.5ms
time=2026-11-22T10:00:00.480Z level=info msg="Request Completed" method=POST path=/api/items status=201 duration=48ms
time=2026-11-22T10:00:01.002Z level=warn msg="Request Completed" method=GET path=/api/items status=404 duration=900us
time=2026-11-22T10:00:02.310Z level=error msg="Request Completed" method=GET path=/api/report status=500 duration=1.25s
time=2026-11-22T10:00:03.000Z level=warn msg="TLS certificate expires within 30 days" domain=example.org
time=2026-11-22T10:00:04.000Z level=info msg="unterminated quote
"#;

const PIPELINE: &str = r#"# A config directory with one pipeline: run it with
#   weir run --config-dir weir
# from the project folder. Paths are relative to this file.
[pipeline.@NAME@]
plugin = "@WASM@"
@MEMORY@
[pipeline.@NAME@.source]
type = "file"
paths = ["../sample.log"]
# Read files that already exist from their first line. Without this a
# pipeline starts at the end of an existing file (only new lines count).
start_at = "beginning"

# Settings handed to the plugin's init (as JSON).
[pipeline.@NAME@.config]
prefix = "@PREFIX@"
"#;

const RUST_MANIFEST: &str = r#"[package]
name = "@NAME@"
version = "0.1.0"
edition = "2021"

[lib]
# cdylib: the WebAssembly component; rlib: `cargo test` on this machine.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The SDK travels with the project (vendor/weir-sdk, wit/): no network
# source or path outside this folder is needed to build it.
weir-sdk = { path = "vendor/weir-sdk", features = ["serde"] }
serde = { version = "1", features = ["derive"] }

# Build: cargo build --release --target wasm32-wasip2
[profile.release]
lto = true
codegen-units = 1
panic = "abort"
opt-level = "s"
strip = true

# A project of its own, even inside another cargo workspace.
[workspace]
"#;

const RUST_LIB: &str = r##"//! @NAME@: a weir plugin for logfmt request logs.
//!
//! Lines like
//! `level=info msg="Request Completed" method=GET path=/api status=200 duration=12.5ms`
//! become `@PREFIX@_requests_total{method,path,status}`,
//! `@PREFIX@_request_duration_seconds{method,path}` and
//! `@PREFIX@_log_messages_total{level}`; a line that is not logfmt is
//! rejected (counted, shown by `weir test`). See README.md.
use serde::Deserialize;
use weir_sdk::{duration, logfmt, settings, Batch, Families, FamilyId, LogPlugin, Output};

/// The pipeline's `[pipeline.NAME.config]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
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
    messages: FamilyId,
}

impl LogPlugin for Plugin {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        // Errors name the key the user wrote ("prefix: invalid type...").
        let s: Settings = settings::parse(config)?;
        if s.prefix.is_empty() {
            Err(settings::Error::new("prefix", "must not be empty"))?;
        }
        let p = &s.prefix;
        let requests = families.counter(
            &format!("{p}_requests_total"),
            "Requests by method, path and status.",
            &["method", "path", "status"],
        );
        let duration = families.histogram(
            &format!("{p}_request_duration_seconds"),
            "Request duration.",
            &["method", "path"],
            weir_sdk::DEFAULT_BUCKETS,
        );
        families.with_unit("seconds");
        let messages = families.counter(
            &format!("{p}_log_messages_total"),
            "Log lines by level.",
            &["level"],
        );
        Ok(Plugin { requests, duration, messages })
    }

    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
        for line in &batch.lines {
            let Ok(rec) = logfmt::parse(line) else {
                out.reject();
                continue;
            };
            out.add(self.messages, &[rec.get("level").unwrap_or("none")], 1.0);
            let (Some(method), Some(path), Some(status)) =
                (rec.get("method"), rec.get("path"), rec.get("status"))
            else {
                continue; // not a request line
            };
            out.add(self.requests, &[method, path, status], 1.0);
            // "12.5ms", "1.25s"; a bare number is taken as milliseconds.
            if let Some(d) = rec.get("duration").and_then(|d| duration::parse_or_number(d, 0.001).ok()) {
                out.observe(self.duration, &[method, path], d);
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
    fn counts_requests_and_rejects_what_is_not_logfmt() {
        let mut families = Families::default();
        let mut p = Plugin::init(r#"{"prefix":"t"}"#, &mut families).expect("init");
        assert_eq!(families.name(p.requests), Some("t_requests_total"));
        let batch = Batch {
            origin: "test".into(),
            lines: vec![
                r#"level=info msg="Request Completed" method=GET path=/a status=200 duration=5ms"#.into(),
                r#"level=info msg="Request Completed" method=GET path=/a status=200 duration=7ms"#.into(),
                r#"level=info msg="no end"#.into(),
            ],
        };
        let mut out = Output::new();
        p.on_lines(&batch, &mut out).expect("lines");
        assert_eq!(out.rejected(), 1);
        // Merged: one request counter, one histogram, one level counter.
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_bad_setting_names_its_key() {
        let e = Plugin::init(r#"{"prefix": 3}"#, &mut Families::default()).err().expect("error");
        assert!(e.starts_with("prefix: "), "{e}");
    }
}
"##;

const RUST_README: &str = r#"# @NAME@

A [weir](https://github.com/) plugin: logfmt request logs to Prometheus
metrics. The project is self-contained: the SDK is in `vendor/weir-sdk` and
the plugin interface in `wit/@WIT@`; it builds anywhere with Rust and the
wasm target (`rustup target add wasm32-wasip2`).

```sh
cargo test                                      # the plugin's own tests, natively
cargo build --release --target wasm32-wasip2    # -> target/wasm32-wasip2/release/@PREFIX@.wasm

# The pipeline as configured in weir/, on sample input:
weir test --config-dir weir --pipeline @NAME@ --input sample.log
# Keep that output as a golden file, then compare on every change:
WEIR_BLESS=1 weir test --config-dir weir --pipeline @NAME@ --input sample.log --expect weir/expected.prom
weir test --config-dir weir --pipeline @NAME@ --input sample.log --expect weir/expected.prom

weir run --config-dir weir --listen 127.0.0.1:9731   # then: curl 127.0.0.1:9731/metrics
```

The SDK's helpers (`weir_sdk::logfmt`, `duration`, `timestamp`, `settings`)
are documented in `vendor/weir-sdk/src`; `cargo doc --open` shows them.
"#;

const PY_APP: &str = r#""""@NAME@: a weir plugin in Python for logfmt request logs.

Lines like
    level=info msg="Request Completed" method=GET path=/api status=200 duration=12.5ms
become @PREFIX@_requests_total{method,path,status} and
@PREFIX@_log_messages_total{level}; a line that is not logfmt is rejected.
Build: see README.md.
"""
import json
import shlex

from wit_world import exports
from wit_world.imports.types import Change_Add, Family, MetricKind, Output, Update
from componentize_py_types import Err

REQUESTS = 0
MESSAGES = 1


def logfmt(line):
    """The key=value pairs of a logfmt line; ValueError if it is not one."""
    pairs = {}
    for token in shlex.split(line, posix=True):
        key, _, value = token.partition("=")
        if not key:
            raise ValueError("value without a key")
        pairs.setdefault(key, value)
    return pairs


def counter(name, help, labels):
    return Family(name=name, kind=MetricKind.COUNTER, help=help, unit="", labels=labels, buckets=[])


class Log(exports.Log):
    def init(self, config: str) -> list[Family]:
        try:
            settings = json.loads(config or "{}")
        except ValueError as e:
            raise Err(f"settings: not JSON: {e}")
        unknown = set(settings) - {"prefix"}
        if unknown:
            key = sorted(unknown)[0]
            raise Err(f"{key}: unknown setting (known: prefix)")
        prefix = settings.get("prefix", "app")
        if not isinstance(prefix, str) or not prefix:
            raise Err("prefix: must be a non-empty string")
        return [
            counter(f"{prefix}_requests_total", "Requests by method, path and status.",
                    ["method", "path", "status"]),
            counter(f"{prefix}_log_messages_total", "Log lines by level.", ["level"]),
        ]

    def on_lines(self, batch: exports.log.Batch) -> Output:
        counts = {}
        rejected = 0
        for line in batch.lines:
            try:
                rec = logfmt(line)
            except ValueError:
                rejected += 1
                continue
            key = (MESSAGES, (rec.get("level", "none"),))
            counts[key] = counts.get(key, 0) + 1
            if "method" in rec and "path" in rec and "status" in rec:
                key = (REQUESTS, (rec["method"], rec["path"], rec["status"]))
                counts[key] = counts.get(key, 0) + 1
        updates = [
            Update(family=f, labels=list(labels), change=Change_Add(float(n)))
            for (f, labels), n in counts.items()
        ]
        return Output(updates=updates, rejected=rejected, declare=[])
"#;

const PY_README: &str = r#"# @NAME@

A weir plugin in Python. The plugin interface is in `wit/@WIT@`; the build
needs only `componentize-py` from PyPI.

```sh
python3 -m pip install "@PY@"
componentize-py -d wit/@WIT@ -w log-plugin componentize app -o @PREFIX@.wasm

weir test --config-dir weir --pipeline @NAME@ --input sample.log
WEIR_BLESS=1 weir test --config-dir weir --pipeline @NAME@ --input sample.log --expect weir/expected.prom
weir run --config-dir weir
```
"#;

const JS_APP: &str = r#"// @NAME@: a weir plugin in JavaScript for logfmt request logs.
//
// Lines like
//   level=info msg="Request Completed" method=GET path=/api status=200 duration=12.5ms
// become @PREFIX@_requests_total{method,path,status} and
// @PREFIX@_log_messages_total{level}; a line that is not logfmt is
// rejected. Build: see README.md.

const REQUESTS = 0;
const MESSAGES = 1;

// key=value pairs; quoted values may hold spaces and \" escapes.
const PAIR = /\s*([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*)))?(?=\s|$)/y;

function logfmt(line) {
  const pairs = {};
  PAIR.lastIndex = 0;
  while (PAIR.lastIndex < line.length) {
    if (line.slice(PAIR.lastIndex).trim() === '') break;
    const m = PAIR.exec(line);
    if (m === null) return null; // not logfmt
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
    if (!(m[1] in pairs)) pairs[m[1]] = value;
  }
  return pairs;
}

function counter(name, help, labels) {
  return { name, kind: 'counter', help, unit: '', labels, buckets: [] };
}

export const log = {
  // A thrown string is the error the user sees: start it with the key.
  init(config) {
    let settings;
    try {
      settings = JSON.parse(config || '{}');
    } catch (e) {
      throw `settings: not JSON: ${e}`;
    }
    for (const key of Object.keys(settings)) {
      if (key !== 'prefix') throw `${key}: unknown setting (known: prefix)`;
    }
    const prefix = settings.prefix ?? 'app';
    if (typeof prefix !== 'string' || prefix === '') throw 'prefix: must be a non-empty string';
    return [
      counter(`${prefix}_requests_total`, 'Requests by method, path and status.', ['method', 'path', 'status']),
      counter(`${prefix}_log_messages_total`, 'Log lines by level.', ['level']),
    ];
  },

  onLines(batch) {
    const counts = new Map();
    let rejected = 0;
    const bump = (family, labels) => {
      const key = JSON.stringify([family, labels]);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    };
    for (const line of batch.lines) {
      const rec = logfmt(line);
      if (rec === null) {
        rejected += 1;
        continue;
      }
      bump(MESSAGES, [rec.level ?? 'none']);
      if (rec.method !== undefined && rec.path !== undefined && rec.status !== undefined) {
        bump(REQUESTS, [rec.method, rec.path, rec.status]);
      }
    }
    const updates = [];
    for (const [key, n] of counts) {
      const [family, labels] = JSON.parse(key);
      updates.push({ family, labels, change: { tag: 'add', val: n } });
    }
    return { updates, rejected, declare: [] };
  },
};
"#;

const JS_README: &str = r#"# @NAME@

A weir plugin in JavaScript. The plugin interface is in `wit/@WIT@`; the
build needs only `componentize-js` from npm.

```sh
npm install "@JS@"
npx componentize-js app.js --wit wit/@WIT@ -n log-plugin -d http fetch-event -o @PREFIX@.wasm

weir test --config-dir weir --pipeline @NAME@ --input sample.log
WEIR_BLESS=1 weir test --config-dir weir --pipeline @NAME@ --input sample.log --expect weir/expected.prom
weir run --config-dir weir
```
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_manifest_stands_alone() {
        let m = vendored_sdk_manifest().expect("manifest");
        let t: toml::Table = toml::from_str(&m).expect("valid TOML");
        let pkg = t["package"].as_table().expect("package");
        assert_eq!(pkg["name"].as_str(), Some("weir-sdk"));
        assert!(pkg["version"].is_str(), "{m}");
        assert!(!m.contains(".workspace"), "{m}");
    }

    #[test]
    fn the_lock_holds_the_plugin_and_what_it_reaches_only() {
        let l = scaffold_lock("shop-logs").expect("lock");
        let t: toml::Table = toml::from_str(&l).expect("valid TOML");
        let names: Vec<&str> = t["package"]
            .as_array()
            .expect("packages")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for want in [
            "shop-logs",
            "weir-sdk",
            "wit-bindgen",
            "serde",
            "serde_json",
        ] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        // Other members of the plugins workspace, and what only they use.
        for other in ["regex-log", "json-log", "prometheus-text", "regex"] {
            assert!(!names.contains(&other), "{other} kept: {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn the_project_names_no_path_of_this_machine() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let name = format!("p-{lang:?}").to_lowercase();
            let dir = plugin_new(&name, tmp.path(), lang).expect("scaffold");
            let here = env!("CARGO_MANIFEST_DIR");
            let repo = Path::new(here)
                .parent()
                .expect("parent")
                .to_string_lossy()
                .to_string();
            let mut n = 0;
            for e in walk(&dir) {
                let text = std::fs::read_to_string(&e).unwrap_or_default();
                assert!(!text.contains(&repo), "{} names {repo}", e.display());
                n += 1;
            }
            assert!(dir.join("wit/v0.1.0/weir.wit").exists());
            assert!(n >= 5);
        }
        assert!(tmp
            .path()
            .join("p-rust/vendor/weir-sdk/src/logfmt.rs")
            .exists());
        assert!(plugin_new("Bad Name", tmp.path(), Lang::Rust).is_err());
        assert!(plugin_new("p-rust", tmp.path(), Lang::Rust).is_err());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
