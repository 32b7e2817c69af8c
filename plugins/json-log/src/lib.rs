//! json-log: structured logs to metrics. Each line is one JSON object, as
//! written by zerolog, zap, logrus, Go `slog`, Rust `tracing` JSON, Caddy or
//! nginx with `escape=json`.
//!
//! Settings (JSON, from the pipeline's `[pipeline.NAME.config]` table):
//!
//! - `format`: `"json"` (default: one JSON object a line) or `"logfmt"`
//!   (`key=value` pairs; see the `logfmt` module for the grammar). With
//!   logfmt a field is a key as written, `key=` is an empty string and a
//!   bare `key` is `true`; everything below applies alike.
//! - `metrics`: the families, each `{name, type, help, unit, labels, buckets}`
//!   (`type` is `counter`, `gauge` or `histogram`), as for regex-log.
//! - `rules`: each `{name, match, stop, emit}`. A rule whose `match`
//!   conditions all hold for a line (no `match`: every line) runs its `emit`
//!   actions. Every rule is tried on every line unless a matching rule says
//!   `stop = true`.
//!
//! **Fields.** A field is named by its path: `status`, or with dots through
//! nested objects, `request.method`; a part that is all digits indexes an
//! array (`request.headers.User-Agent.0`). A dot also matches a key that
//! itself holds dots, so `log.level` finds `{"log.level":..}` (ECS,
//! OpenTelemetry) as well as `{"log":{"level":..}}`. A field set to `null` is
//! treated as absent.
//!
//! **Conditions** (`match`, a list; all must hold), each on one `field`:
//!
//! - `{field, equals}`: a string compares with the field's text (so `"200"`
//!   matches both `200` and `"200"`), a number with its numeric value, a
//!   boolean with `true`/`false`;
//! - `{field, regex}`: the field's text matches (unanchored: use `^...$`);
//! - `{field, exists}`: `true` if the field is present and not `null`,
//!   `false` if it is absent or `null`;
//! - `{field, gt, ge, lt, le}`: numeric comparisons, any of them together
//!   (`{field = "status", ge = 500, lt = 600}`); the field must be a number
//!   or a numeric string;
//! - add `not = true` to any condition to negate it.
//!
//! The text of a field is a string's content, a number as written, `true` or
//! `false`, or an object's or array's JSON text.
//!
//! **Emit** actions: `{metric, labels, value, scale, op, parse}`.
//!
//! - `labels` maps a label name to a template: text in which `${path}` is
//!   replaced by a field's text (`"${request.method}"`, `"code_${status}"`);
//!   anything else is kept as written (`"GET"`); `$$` is a literal `$`.
//!   `${path:-text}` gives a default for when the field is absent. A label
//!   left out takes the field of the same name (`status` -> `${status}`).
//!   When a label's field is absent and has no default, the action is
//!   skipped for that line.
//! - `value` is a field path (`"duration_ms"` or `"${duration_ms}"`,
//!   optionally `"${bytes:-0}"`) or a number (default 1, for counters and
//!   gauge adds; a gauge `set` or a histogram needs a `value`). A field value is a
//!   number, a numeric string, or a boolean (1/0). A line whose value field
//!   is absent (without default), not numeric, or not finite is counted as
//!   rejected for that action; so is a negative value added to a counter.
//! - `scale` multiplies the value (milliseconds to seconds: 0.001), exactly
//!   in decimal, so 350 ms is the 0.35 a bucket bound says (`weir_sdk::units`).
//! - `op` is `add` (counters), `observe` (histograms), `set` or `add`
//!   (gauges; `set` by default).
//! - `parse = "duration"` also reads Go duration strings (`"1.5s"`,
//!   `"250ms"`, `"3m20s"`, `"150µs"`) as seconds; plain numbers pass through.
//!
//! A line that is not valid JSON, or not an object, is counted as rejected.
//! Blank lines (and a byte-order mark) are skipped.
//!
//! Example, for zerolog lines like
//! `{"level":"info","message":"HTTP request","method":"POST","path":"/api/v1/tables/users","status":200,"duration_ms":25.5}`:
//!
//! ```toml
//! [pipeline.api.config]
//! metrics = [
//!   { name = "app_http_requests_total", type = "counter", help = "HTTP requests.",
//!     labels = ["method", "route", "status"] },
//!   { name = "app_http_request_duration_seconds", type = "histogram", unit = "seconds",
//!     help = "HTTP request latency.", labels = ["method"],
//!     buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] },
//!   { name = "app_log_messages_total", type = "counter", help = "Log lines by level.",
//!     labels = ["level"] },
//! ]
//!
//! [[pipeline.api.config.rules]]
//! name = "requests"
//! match = [ { field = "message", equals = "HTTP request" },
//!           { field = "path", regex = "^/health", not = true } ]
//! emit = [
//!   # method and status are taken from the fields of the same name
//!   { metric = "app_http_requests_total", labels = { route = "${path}" } },
//!   { metric = "app_http_request_duration_seconds", value = "duration_ms", scale = 0.001 },
//! ]
//!
//! [[pipeline.api.config.rules]]
//! name = "levels"
//! emit = [ { metric = "app_log_messages_total", labels = { level = "${level:-none}" } } ]
//! ```
mod fields;
mod logfmt;

use fields::{Field, Trie};
use regex::Regex;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use weir_sdk::{Batch, Families, FamilyId, Kind, LogPlugin, Output, Scale};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    metrics: Vec<weir_sdk::spec::MetricSpec>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "match")]
    conditions: Vec<CondConfig>,
    #[serde(default)]
    stop: bool,
    #[serde(default)]
    emit: Vec<EmitConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CondConfig {
    field: String,
    #[serde(default)]
    equals: Option<serde_json::Value>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    exists: Option<bool>,
    #[serde(default)]
    gt: Option<f64>,
    #[serde(default)]
    ge: Option<f64>,
    #[serde(default)]
    lt: Option<f64>,
    #[serde(default)]
    le: Option<f64>,
    #[serde(default)]
    not: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ValueConfig {
    Number(f64),
    Field(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitConfig {
    metric: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<ValueConfig>,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    parse: Option<String>,
}

/// One piece of a label template.
enum Part {
    Lit(String),
    Field { id: usize, default: Option<String> },
}

enum Test {
    Text(String),
    Number(f64),
    Regex(Regex),
    Exists(bool),
    Range {
        gt: Option<f64>,
        ge: Option<f64>,
        lt: Option<f64>,
        le: Option<f64>,
    },
}

struct Cond {
    field: usize,
    test: Test,
    not: bool,
}

enum Value {
    Const(f64),
    Field { id: usize, default: Option<f64> },
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add,
    Set,
    Observe,
}

struct Emit {
    family: FamilyId,
    labels: Vec<Vec<Part>>,
    value: Value,
    scale: Scale,
    op: Op,
    duration: bool,
    counter: bool,
}

struct Rule {
    conds: Vec<Cond>,
    stop: bool,
    emits: Vec<Emit>,
}

/// How a line is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    /// One JSON object.
    Json,
    /// `key=value` pairs (see [`logfmt`]).
    Logfmt,
}

/// The plugin: the line format, the fields to read and the compiled rules.
pub struct JsonLog {
    format: Format,
    fields: Trie,
    rules: Vec<Rule>,
    /// The metrics' `initial` series, created at 0 by the first call.
    zeros: weir_sdk::spec::Zeros,
}

fn rule_name(i: usize, r: &RuleConfig) -> String {
    match &r.name {
        Some(n) => format!("rule \"{n}\" (rules[{i}])"),
        None => format!("rules[{i}]"),
    }
}

/// Split `path:-default` (the inside of `${...}`).
fn split_default(inner: &str) -> (&str, Option<&str>) {
    match inner.find(":-") {
        Some(p) => (&inner[..p], Some(&inner[p + 2..])),
        None => (inner, None),
    }
}

fn parse_template(template: &str, fields: &mut Trie, what: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = template;
    while let Some(p) = rest.find('$') {
        lit.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        if let Some(a) = after.strip_prefix('$') {
            lit.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('{') {
            let end = a
                .find('}')
                .ok_or_else(|| format!("{what}: unclosed \"${{\" in \"{template}\""))?;
            let (path, default) = split_default(&a[..end]);
            let id = fields
                .field(path)
                .map_err(|e| format!("{what}: {e} in \"{template}\""))?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Field {
                id,
                default: default.map(str::to_string),
            });
            rest = &a[end + 1..];
        } else {
            lit.push('$');
            rest = after;
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

fn compile_cond(c: &CondConfig, fields: &mut Trie, what: &str) -> Result<Cond, String> {
    let field = fields.field(&c.field).map_err(|e| format!("{what}: {e}"))?;
    let range = c.gt.is_some() || c.ge.is_some() || c.lt.is_some() || c.le.is_some();
    let given = [
        c.equals.is_some(),
        c.regex.is_some(),
        c.exists.is_some(),
        range,
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!(
            "{what}: give exactly one test for field \"{}\": equals, regex, exists, or gt/ge/lt/le",
            c.field
        ));
    }
    let test = if let Some(eq) = &c.equals {
        match eq {
            serde_json::Value::String(s) => Test::Text(s.clone()),
            serde_json::Value::Bool(b) => Test::Text(b.to_string()),
            serde_json::Value::Number(n) => Test::Number(n.as_f64().unwrap_or(f64::NAN)),
            _ => {
                return Err(format!(
                    "{what}: equals takes a string, a number or a boolean (for null use exists = false)"
                ))
            }
        }
    } else if let Some(re) = &c.regex {
        Test::Regex(Regex::new(re).map_err(|e| format!("{what}: invalid regex: {e}"))?)
    } else if let Some(e) = c.exists {
        Test::Exists(e)
    } else {
        Test::Range {
            gt: c.gt,
            ge: c.ge,
            lt: c.lt,
            le: c.le,
        }
    };
    Ok(Cond {
        field,
        test,
        not: c.not,
    })
}

fn compile_value(v: &Option<ValueConfig>, fields: &mut Trie, what: &str) -> Result<Value, String> {
    let s = match v {
        None => return Ok(Value::Const(1.0)),
        Some(ValueConfig::Number(n)) => return Ok(Value::Const(*n)),
        Some(ValueConfig::Field(s)) => s.trim(),
    };
    let inner = s
        .strip_prefix("${")
        .and_then(|i| i.strip_suffix('}'))
        .unwrap_or(s);
    let (path, default) = split_default(inner);
    let id = fields
        .field(path)
        .map_err(|e| format!("{what}: value: {e}"))?;
    let default =
        match default {
            None => None,
            Some(d) => Some(d.trim().parse::<f64>().map_err(|_| {
                format!("{what}: value \"{s}\": the default \"{d}\" is not a number")
            })?),
        };
    Ok(Value::Field { id, default })
}

impl Cond {
    fn holds(&self, slots: &[Option<Field<'_>>]) -> bool {
        let f = slots[self.field].as_ref();
        let r = match &self.test {
            Test::Exists(want) => f.is_some() == *want,
            Test::Text(s) => f.is_some_and(|f| f.text() == s),
            Test::Number(n) => f.and_then(Field::number).is_some_and(|v| v == *n),
            Test::Regex(re) => f.is_some_and(|f| re.is_match(f.text())),
            Test::Range { gt, ge, lt, le } => f.and_then(Field::number).is_some_and(|v| {
                gt.is_none_or(|b| v > b)
                    && ge.is_none_or(|b| v >= b)
                    && lt.is_none_or(|b| v < b)
                    && le.is_none_or(|b| v <= b)
            }),
        };
        r != self.not
    }
}

impl Emit {
    fn apply(&self, slots: &[Option<Field<'_>>], out: &mut Output) {
        let v = match &self.value {
            Value::Const(c) => *c,
            Value::Field { id, default } => {
                let v = match &slots[*id] {
                    Some(f) if self.duration => duration_seconds(f),
                    Some(f) => f.number(),
                    None => *default,
                };
                match v {
                    Some(v) => v,
                    None => {
                        out.reject();
                        return;
                    }
                }
            }
        };
        let v = self.scale.apply(v);
        if !v.is_finite() || (self.counter && v < 0.0) {
            out.reject();
            return;
        }
        let mut labels: Vec<Cow<'_, str>> = Vec::with_capacity(self.labels.len());
        for parts in &self.labels {
            let text = match parts.as_slice() {
                [Part::Lit(s)] => Cow::Borrowed(s.as_str()),
                [Part::Field { id, default }] => match (&slots[*id], default) {
                    (Some(f), _) => Cow::Borrowed(f.text()),
                    (None, Some(d)) => Cow::Borrowed(d.as_str()),
                    (None, None) => return,
                },
                _ => {
                    let mut s = String::new();
                    for p in parts {
                        match p {
                            Part::Lit(l) => s.push_str(l),
                            Part::Field { id, default } => match (&slots[*id], default) {
                                (Some(f), _) => s.push_str(f.text()),
                                (None, Some(d)) => s.push_str(d),
                                (None, None) => return,
                            },
                        }
                    }
                    Cow::Owned(s)
                }
            };
            labels.push(text);
        }
        match self.op {
            Op::Add => out.add(self.family, &labels, v),
            Op::Set => out.set(self.family, &labels, v),
            Op::Observe => out.observe(self.family, &labels, v),
        }
    }
}

/// A field as seconds: numbers as they are, or a Go duration string
/// (`1h2m3.5s`, `250ms`, `150µs`, `-1.5s`).
fn duration_seconds(f: &Field<'_>) -> Option<f64> {
    if let Some(v) = f.number() {
        return Some(v);
    }
    let Field::Str(s) = f else { return None };
    parse_go_duration(s.trim())
}

/// A Go duration (`1h2m0.35s`, `250ms`, `1.5µs`) in seconds, exact in
/// decimal (the SDK's parser, shared with every plugin).
fn parse_go_duration(s: &str) -> Option<f64> {
    weir_sdk::duration::parse(s).ok()
}

impl JsonLog {
    /// Build from JSON settings, declaring families.
    pub fn from_config(config: &str, families: &mut Families) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid settings: {e}"))?;
        let format = match cfg.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("logfmt") => Format::Logfmt,
            Some(f) => return Err(format!("format: \"{f}\" is not a format (json or logfmt)")),
        };
        if cfg.rules.is_empty() {
            return Err("no rules: add at least one [[...rules]] entry".into());
        }
        let by_name = weir_sdk::spec::declare_metrics(&cfg.metrics, families)?;
        let mut fields = Trie::default();
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let what = rule_name(i, r);
            let conds = r
                .conditions
                .iter()
                .enumerate()
                .map(|(k, c)| compile_cond(c, &mut fields, &format!("{what} match[{k}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if r.emit.is_empty() {
                return Err(format!("{what}: no emit actions"));
            }
            let mut emits = Vec::new();
            for (j, e) in r.emit.iter().enumerate() {
                let ewhat = format!("{what} emit[{j}]");
                let d = by_name.get(e.metric.as_str()).ok_or_else(|| {
                    format!(
                        "{ewhat}: metric \"{}\" is not declared in metrics",
                        e.metric
                    )
                })?;
                let (family, kind, label_names) = (d.id, d.kind, d.labels.as_slice());
                if let Some(k) = e.labels.keys().find(|k| !label_names.contains(k)) {
                    return Err(format!(
                        "{ewhat}: metric \"{}\" has no label \"{k}\"",
                        e.metric
                    ));
                }
                let mut labels = Vec::new();
                for l in label_names {
                    let lwhat = format!("{ewhat} label \"{l}\"");
                    let parts = match e.labels.get(l) {
                        Some(t) => parse_template(t, &mut fields, &lwhat)?,
                        None => vec![Part::Field {
                            id: fields.field(l).map_err(|e| format!("{lwhat}: {e}"))?,
                            default: None,
                        }],
                    };
                    labels.push(parts);
                }
                let op = match (kind, e.op.as_deref()) {
                    (Kind::Counter, None | Some("add")) => Op::Add,
                    (Kind::Histogram, None | Some("observe")) => Op::Observe,
                    (Kind::Gauge, None | Some("set")) => Op::Set,
                    (Kind::Gauge, Some("add")) => Op::Add,
                    (Kind::Summary, _) => {
                        return Err(format!("{ewhat}: summaries cannot be fed from log lines"))
                    }
                    (_, Some(o)) => {
                        return Err(format!(
                            "{ewhat}: op \"{o}\" does not apply to {} \"{}\"",
                            kind_name(kind),
                            e.metric
                        ))
                    }
                };
                if e.value.is_none() && (op == Op::Set || op == Op::Observe) {
                    return Err(format!(
                        "{ewhat}: {} \"{}\" needs a value to {}",
                        kind_name(kind),
                        e.metric,
                        if op == Op::Set { "set" } else { "observe" }
                    ));
                }
                let duration = match e.parse.as_deref() {
                    None | Some("number") => false,
                    Some("duration") => true,
                    Some(p) => {
                        return Err(format!(
                            "{ewhat}: unknown parse \"{p}\" (number or duration)"
                        ))
                    }
                };
                let value = compile_value(&e.value, &mut fields, &ewhat)?;
                let scale =
                    Scale::new(e.scale.unwrap_or(1.0)).map_err(|m| format!("{ewhat}: {m}"))?;
                emits.push(Emit {
                    family,
                    labels,
                    value,
                    scale,
                    op,
                    duration,
                    counter: kind == Kind::Counter,
                });
            }
            rules.push(Rule {
                conds,
                stop: r.stop,
                emits,
            });
        }
        Ok(JsonLog {
            format,
            fields,
            rules,
            zeros: weir_sdk::spec::Zeros::new(&by_name),
        })
    }

    /// Apply the rules to one line. `slots` is scratch space, reused across
    /// the lines of a batch.
    pub fn line<'a>(&self, line: &'a str, slots: &mut Vec<Option<Field<'a>>>, out: &mut Output) {
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        if line.trim().is_empty() {
            return;
        }
        let read = match self.format {
            Format::Json => self.fields.read(line, slots).is_ok(),
            Format::Logfmt => {
                slots.clear();
                slots.resize(self.fields.len(), None);
                logfmt::read(line, self.fields.keys(), slots).is_ok()
            }
        };
        if !read {
            out.reject();
            return;
        }
        for rule in &self.rules {
            if !rule.conds.iter().all(|c| c.holds(slots)) {
                continue;
            }
            for e in &rule.emits {
                e.apply(slots, out);
            }
            if rule.stop {
                break;
            }
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
        Kind::Summary => "summary",
    }
}

impl LogPlugin for JsonLog {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        Self::from_config(config, families)
    }

    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
        // Lone surrogate escapes become U+FFFD first: serde_json would refuse
        // the string, and its field would look absent (issue 13). The logfmt
        // reader does that itself.
        let lines: Vec<Cow<'_, str>> = batch
            .lines
            .iter()
            .map(|l| match self.format {
                Format::Json => weir_sdk::json::replace_lone_surrogates_str(l),
                Format::Logfmt => Cow::Borrowed(l.as_str()),
            })
            .collect();
        self.zeros.emit(&batch.origin, out);
        let mut slots = Vec::new();
        for line in &lines {
            self.line(line, &mut slots, out);
        }
        Ok(())
    }
}

weir_sdk::export_log_plugin!(JsonLog);

#[cfg(test)]
mod tests;
