//! `weir import mtail PROGRAM.mtail [...]` and `weir import grok-exporter
//! CONFIG.yml`: write a weir pipeline file (regex-log config) from rules
//! written for another tool. What cannot be translated is reported with
//! file and line, and marked with a `# not translated: ...` comment at its
//! place in the output; nothing is dropped without a word.
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

mod grok_exporter;
mod mtail;

/// One construct that was not translated (or only in part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The input file, as given on the command line.
    pub file: String,
    /// 1-based line of the construct.
    pub line: usize,
    /// What it was and why it was left out.
    pub what: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: not translated: {}",
            self.file, self.line, self.what
        )
    }
}

/// What `weir import` produced: the pipeline file and what it reported.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// The TOML text.
    pub toml: String,
    /// Every construct not translated, in input order.
    pub reports: Vec<Report>,
    /// Translations that hold with a caveat (shown as `FILE:LINE: note:`;
    /// they do not change the exit code).
    pub notes: Vec<Report>,
}

/// The tool whose rules are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// mtail programs.
    Mtail,
    /// A grok_exporter config file.
    GrokExporter,
}

/// Translate `files` (read from disk) into one pipeline file.
pub fn import(from: From, files: &[&Path]) -> Result<Imported> {
    let mut pipelines = Vec::new();
    let mut reports = Vec::new();
    let mut notes = Vec::new();
    for f in files {
        let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let text = String::from_utf8_lossy(&text);
        let shown = f.display().to_string();
        let (p, r) = match from {
            From::Mtail => mtail::translate(&shown, &text),
            From::GrokExporter => grok_exporter::translate(&shown, &text),
        };
        for pl in &p {
            notes.extend(pl.caveats.iter().cloned());
        }
        pipelines.extend(p);
        reports.extend(r);
    }
    dedup_pipeline_names(&mut pipelines);
    Ok(Imported {
        toml: render(from, &pipelines),
        reports,
        notes,
    })
}

/// Translate one input held in memory (tests, fuzzing).
pub fn import_text(from: From, file: &str, text: &str) -> Imported {
    let (pipelines, reports) = match from {
        From::Mtail => mtail::translate(file, text),
        From::GrokExporter => grok_exporter::translate(file, text),
    };
    Imported {
        toml: render(from, &pipelines),
        notes: pipelines.iter().flat_map(|p| p.caveats.clone()).collect(),
        reports,
    }
}

/// A pipeline to write.
#[derive(Debug, Clone, Default)]
struct Pipeline {
    name: String,
    /// The input it came from.
    from_file: String,
    /// The `source` inline table.
    source: String,
    /// Comments before the pipeline's table.
    notes: Vec<String>,
    metrics: Vec<Metric>,
    patterns: Vec<(String, String)>,
    rules: Vec<Rule>,
    /// Comments after the last rule (constructs with no better place).
    trailer: Vec<String>,
    /// Translations with a caveat, for stderr.
    caveats: Vec<Report>,
}

#[derive(Debug, Clone, Default)]
struct Metric {
    name: String,
    kind: &'static str,
    help: String,
    labels: Vec<String>,
    buckets: Option<Vec<f64>>,
    notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Rule {
    name: String,
    regex: Option<String>,
    grok: Option<String>,
    else_: bool,
    stop: bool,
    /// Capture to `lower` / `upper`.
    transforms: Vec<(String, &'static str)>,
    emits: Vec<Emit>,
    notes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Emit {
    metric: String,
    labels: Vec<(String, String)>,
    /// A number or an expression over captures, as regex-log reads it.
    value: Option<Value>,
    op: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Num(f64),
    Expr(String),
}

/// Two inputs with the same file stem get distinct pipeline names.
fn dedup_pipeline_names(ps: &mut [Pipeline]) {
    let mut seen = std::collections::HashSet::new();
    for p in ps.iter_mut() {
        let base = p.name.clone();
        let mut n = 2;
        while !seen.insert(p.name.clone()) {
            p.name = format!("{base}_{n}");
            n += 1;
        }
    }
}

/// A pipeline name from a file name: `apache-combined.mtail` ->
/// `apache_combined`.
fn pipeline_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        s.insert_str(0, "p_");
    }
    s
}

/// A Prometheus metric name from any text: other characters become `_`.
fn metric_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// A TOML string: a literal `'...'` when it can be one (regexes read as
/// written), else a basic string with escapes.
fn toml_str(s: &str) -> String {
    if !s.contains('\'') && !s.chars().any(|c| c.is_control()) {
        return format!("'{s}'");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        toml_str(s)
    }
}

fn toml_num(n: f64) -> String {
    if n.is_finite() && n == n.trunc() && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else if n.is_finite() {
        format!("{n:?}")
    } else {
        // Not reachable from parsed input (numbers are checked), but a
        // TOML file must stay valid whatever happens.
        "0".to_string()
    }
}

fn comment_lines(out: &mut String, notes: &[String]) {
    for n in notes {
        for l in n.lines() {
            // A comment holds no control characters (TOML refuses them).
            let l: String = l
                .chars()
                .map(|c| {
                    if c.is_control() && c != '\t' {
                        '\u{FFFD}'
                    } else {
                        c
                    }
                })
                .collect();
            let _ = writeln!(out, "# {l}");
        }
    }
}

fn render(from: From, pipelines: &[Pipeline]) -> String {
    let mut out = String::new();
    let tool = match from {
        From::Mtail => "mtail",
        From::GrokExporter => "grok-exporter",
    };
    let _ = writeln!(
        out,
        "# Written by `weir import {tool}`. Check it with `weir check`, and try it\n\
         # with `weir test --config-dir DIR --pipeline NAME --input SAMPLE.log`."
    );
    for p in pipelines {
        let _ = writeln!(out, "\n# from {}", p.from_file);
        comment_lines(&mut out, &p.notes);
        if p.rules.is_empty() {
            let _ = writeln!(
                out,
                "# no rules could be written for {}: no pipeline \"{}\"",
                p.from_file, p.name
            );
            for m in &p.metrics {
                comment_lines(&mut out, &m.notes);
            }
            comment_lines(&mut out, &p.trailer);
            continue;
        }
        let t = format!("pipeline.{}", toml_key(&p.name));
        let _ = writeln!(out, "[{t}]\nplugin = \"regex-log\"\nsource = {}", p.source);
        if !p.patterns.is_empty() {
            let _ = writeln!(out, "\n[{t}.config.patterns]");
            for (k, v) in &p.patterns {
                let _ = writeln!(out, "{} = {}", toml_key(k), toml_str(v));
            }
        }
        for m in &p.metrics {
            out.push('\n');
            comment_lines(&mut out, &m.notes);
            let _ = writeln!(out, "[[{t}.config.metrics]]");
            let _ = writeln!(out, "name = {}", toml_str(&m.name));
            let _ = writeln!(out, "type = \"{}\"", m.kind);
            if !m.help.is_empty() {
                let _ = writeln!(out, "help = {}", toml_str(&m.help));
            }
            if !m.labels.is_empty() {
                let l: Vec<String> = m.labels.iter().map(|l| toml_str(l)).collect();
                let _ = writeln!(out, "labels = [{}]", l.join(", "));
            }
            if let Some(b) = &m.buckets {
                let b: Vec<String> = b.iter().map(|n| toml_num(*n)).collect();
                let _ = writeln!(out, "buckets = [{}]", b.join(", "));
            }
        }
        for r in &p.rules {
            out.push('\n');
            comment_lines(&mut out, &r.notes);
            let _ = writeln!(out, "[[{t}.config.rules]]");
            let _ = writeln!(out, "name = {}", toml_str(&r.name));
            if let Some(g) = &r.grok {
                let _ = writeln!(out, "grok = {}", toml_str(g));
            } else if let Some(re) = &r.regex {
                let _ = writeln!(out, "regex = {}", toml_str(re));
            }
            if r.else_ {
                let _ = writeln!(out, "else = true");
            }
            if r.stop {
                let _ = writeln!(out, "stop = true");
            }
            if !r.transforms.is_empty() {
                let t: Vec<String> = r
                    .transforms
                    .iter()
                    .map(|(k, v)| format!("{} = \"{v}\"", toml_key(k)))
                    .collect();
                let _ = writeln!(out, "transform = {{ {} }}", t.join(", "));
            }
            if !r.emits.is_empty() {
                let _ = writeln!(out, "emit = [");
                for e in &r.emits {
                    let mut parts = vec![format!("metric = {}", toml_str(&e.metric))];
                    if !e.labels.is_empty() {
                        let l: Vec<String> = e
                            .labels
                            .iter()
                            .map(|(k, v)| format!("{} = {}", toml_key(k), toml_str(v)))
                            .collect();
                        parts.push(format!("labels = {{ {} }}", l.join(", ")));
                    }
                    match &e.value {
                        Some(Value::Num(n)) => parts.push(format!("value = {}", toml_num(*n))),
                        Some(Value::Expr(s)) => parts.push(format!("value = {}", toml_str(s))),
                        None => {}
                    }
                    if let Some(op) = e.op {
                        parts.push(format!("op = \"{op}\""));
                    }
                    let _ = writeln!(out, "  {{ {} }},", parts.join(", "));
                }
                let _ = writeln!(out, "]");
            }
        }
        if !p.trailer.is_empty() {
            out.push('\n');
            comment_lines(&mut out, &p.trailer);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_valid_toml() {
        for s in ["a\\b", "it's", "\"q\"", "tab\there", "\u{1}x", "ünï"] {
            let doc = format!("k = {}", toml_str(s));
            let v: toml::Table = toml::from_str(&doc).expect(&doc);
            assert_eq!(v["k"].as_str(), Some(s), "{doc}");
        }
        assert_eq!(toml_key("a-b_1"), "a-b_1");
        assert_eq!(toml_key("a.b"), "'a.b'");
        assert_eq!(pipeline_name("/x/apache-combined.mtail"), "apache_combined");
        assert_eq!(pipeline_name("9.mtail"), "p_9");
        assert_eq!(
            metric_name("connection-time_total"),
            "connection_time_total"
        );
    }
}
