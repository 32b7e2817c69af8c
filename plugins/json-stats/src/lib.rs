//! json-stats: JSON stats endpoints to metrics, the way json_exporter users
//! work, plus what they keep asking it for: map keys and parent fields as
//! labels, strings mapped to numbers, `&&` and regex filters.
//!
//! Each response is a snapshot: the series it yields replace the previous
//! ones. The source decides which statuses are handed over (its
//! `accept_status`). A body that is not JSON is an error (the call fails
//! with serde's message, so the agent logs it, counts it in
//! `weir_source_errors_total{reason="plugin"}`, removes the pipeline's
//! series and sets `weir_source_up` to 0): a page that cannot be read says
//! nothing about the values, and keeping the last ones would be stale.
//!
//! Settings (JSON, from the pipeline's `[pipeline.NAME.config]` table):
//! `metrics`, a list of mappings, each
//! `{name, type, help, unit, path, value, value_map, scale, labels}`:
//!
//! - `type`: `gauge` (default) or `counter` (a cumulative reading, such as a
//!   request count since start; exposed as read, so a restart of the
//!   upstream is a counter reset Prometheus sees and `increase()` handles).
//! - `path` selects values in the document; each match is one series.
//! - `value`: what to read, relative to the match (default: the match
//!   itself, `@`), or a number (`value = 1` for info-style series).
//! - Numbers are read as they are, booleans as 1/0, strings through
//!   `value_map` (`{ UP = 1, DOWN = 0 }`, exact match) and then as numeric
//!   text (`"42"`). `scale` multiplies the result, exactly in decimal (megabytes to bytes:
//!   1048576). A missing or `null` value yields no series; any other value
//!   that is not a number (an object, an unmapped string, a negative counter,
//!   infinity) is counted as rejected.
//! - `labels` maps a label name to a template: text in which `${ref}` is
//!   replaced (see below) and everything else is kept as written; `$$` is a
//!   literal `$`; `${ref:-text}` gives a default for when `ref` is absent or
//!   `null`; `${ref#text}` and `${ref%text}` remove `text` from the start or
//!   the end of the value when it is there (`${field.name#hrsp_}` turns
//!   `hrsp_2xx` into `2xx`). A match whose label has no value and no
//!   default yields no series.
//!
//! `help` defaults to "Read from the JSON document at PATH.".
//!
//! Several mappings may share a `name` (one family: same `type` and label
//! names; `help` and `unit` from whichever gives them), for example to put
//! `database.acquired_conns` and `database.idle_conns` in one family with a
//! `state` label. When two matches of one family yield the same label set,
//! the later one wins (matches come in document order; object members in
//! key order, mappings in the order given).
//!
//! **Paths** are steps joined by `.` or written in brackets, optionally
//! after `$`:
//!
//! | step | selects |
//! |---|---|
//! | `name`, `["odd.name"]`, `['odd.name']` | an object member |
//! | `0`, `[0]` | an array element |
//! | `*`, `[*]` | every member of an object, every element of an array |
//! | `[?cond && cond ...]` | the members or elements for which every condition holds |
//!
//! A condition is `ref`, true when it is present and not `null`, or
//! `ref OP literal`, with `ref` relative to the candidate: `==` and `!=`
//! (a quoted literal compares with the text, so `"200"` equals `200`; a
//! number literal compares numerically; `true`/`false` with booleans), `=~`
//! and `!~` (a quoted regex, unanchored: `'^db[0-9]+$'`), `<`, `<=`, `>`,
//! `>=` (numbers, numeric strings). A missing value fails every test but
//! `!=` and `!~`. Quotes are `"` or `'`; inside them a backslash escapes
//! only the quote or a backslash, so regexes read as written. JSONPath's
//! `[?(@.state=="up")]` is accepted as is.
//!
//! **References** (`ref`, in `value`, in `${...}` and in filters):
//!
//! | ref | is |
//! |---|---|
//! | `name`, `@.name`, `a.b[0]` | a value inside the match (in a filter: inside the candidate) |
//! | `^[?field.name == "pxname"].value` | with a filter step: the first member or element for which it holds, then on from there |
//! | `@` | the match itself |
//! | `$.name` | a value from the document root |
//! | `^.name`, `^^.name` | a value inside the parent of the match, the grandparent... (each `^` is one step of the path back) |
//! | `*` | the key (or array index) taken by the last `*` or filter step |
//! | `*1`, `*2` | ... by the first, second `*` or filter step |
//!
//! A reference names one value: no `*` in it; a filter step in it takes the
//! first match, which is how rows of name/value pairs are read (HAProxy's
//! `/stats;json`, tag lists like `[{"Key": "env", "Value": "prod"}]`); see
//! `examples/haproxy/`.
//!
//! Label text is a string's content, a number or boolean as JSON writes it,
//! an object or array as compact JSON, a key, or an index.
//!
//! Example, for a stats page like
//! `{"uptime_seconds":123,"memory_alloc_mb":12.5,"num_goroutines":40,
//! "database":{"acquired_conns":3,"idle_conns":7,"max_conns":20},
//! "realtime":{"connections":5}}`:
//!
//! ```toml
//! [pipeline.app_stats.config]
//! metrics = [
//!   { name = "app_uptime_seconds", unit = "seconds", help = "Time since start.", path = "uptime_seconds" },
//!   { name = "app_memory_alloc_bytes", unit = "bytes", help = "Heap in use.",
//!     path = "memory_alloc_mb", scale = 1048576 },
//!   { name = "app_goroutines", help = "Goroutines.", path = "num_goroutines" },
//!   # one family from two mappings: app_db_connections{state="acquired"} 3, {state="idle"} 7
//!   { name = "app_db_connections", help = "Pool connections by state.",
//!     path = "database.acquired_conns", labels = { state = "acquired" } },
//!   { name = "app_db_connections", path = "database.idle_conns", labels = { state = "idle" } },
//!   { name = "app_db_connections_max", help = "Pool size.", path = "database.max_conns" },
//!   { name = "app_realtime_connections", help = "Realtime connections.", path = "realtime.connections" },
//! ]
//! ```
//!
//! With a filter on the keys, one mapping does the same with the keys as
//! they are: `path = 'database[?* =~ "_conns$" && * != "max_conns"]'`,
//! `labels = { state = "${*}" }` gives `state="acquired_conns"` and
//! `state="idle_conns"`.
//!
//! For a map of backends, such as
//! `{"cluster":"eu-1","backends":{"db1":{"state":"UP","latency_ms":3,
//! "pools":[{"name":"read","active":2}]},"db2":{"state":"DOWN","latency_ms":null,"pools":[]}}}`:
//!
//! ```toml
//! [pipeline.lb.config]
//! metrics = [
//!   # backend_up{backend="db1",cluster="eu-1"} 1, {backend="db2",...} 0
//!   { name = "backend_up", path = "backends.*.state", value_map = { UP = 1, DOWN = 0 },
//!     labels = { backend = "${*}", cluster = "${$.cluster}" } },
//!   # no series for db2: its latency is null
//!   { name = "backend_latency_seconds", unit = "seconds", path = "backends.*",
//!     value = "latency_ms", scale = 0.001, labels = { backend = "${*}" } },
//!   # backend_pool_active{backend="db1",pool="read",backend_state="UP"} 2
//!   { name = "backend_pool_active", path = "backends.*.pools[*]", value = "active",
//!     labels = { backend = "${*1}", pool = "${name}", backend_state = "${^^.state}" } },
//!   # only the backends that are up
//!   { name = "backend_up_pools", path = 'backends[?state == "UP"].pools', value = 1,
//!     labels = { backend = "${*}" } },
//! ]
//! ```
mod path;

use path::{Frame, Number, Path, Ref};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use weir_sdk::{Families, FamilyId, HttpPlugin, Kind, Output, Response, Scale};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    metrics: Vec<MetricConfig>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ValueConfig {
    Number(f64),
    Ref(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricConfig {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    help: String,
    #[serde(default)]
    unit: String,
    path: String,
    #[serde(default)]
    value: Option<ValueConfig>,
    #[serde(default)]
    value_map: HashMap<String, f64>,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// One piece of a label template.
enum Part {
    Lit(String),
    Ref { r: Ref, op: Op },
}

/// What a `${...}` does besides naming its reference.
enum Op {
    None,
    /// `${ref:-text}`: text when the reference is absent or null.
    Default(String),
    /// `${ref#text}`: text removed from the start, when there.
    StripPrefix(String),
    /// `${ref%text}`: text removed from the end, when there.
    StripSuffix(String),
}

enum ValueSource {
    Const(f64),
    Ref(Ref),
}

struct Mapping {
    family: FamilyId,
    counter: bool,
    path: Path,
    value: ValueSource,
    value_map: HashMap<String, f64>,
    scale: Scale,
    labels: Vec<Vec<Part>>,
}

/// The plugin: compiled mappings.
pub struct JsonStats {
    mappings: Vec<Mapping>,
}

fn mapping_name(i: usize, m: &MetricConfig) -> String {
    format!("metrics[{i}] \"{}\"", m.name)
}

fn parse_template(
    template: &str,
    depth: usize,
    captures: usize,
    what: &str,
) -> Result<Vec<Part>, String> {
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
            let unclosed = || format!("{what}: unclosed \"${{\" in \"{template}\"");
            // The reference ends at the first `}`, `:-`, `#` or `%` outside
            // its brackets; the text of an operator runs to the next `}`.
            let (at, stop) = path::find_top(a, &["}", ":-", "#", "%"])
                .map_err(|e| format!("{what}: {e}"))?
                .ok_or_else(unclosed)?;
            let r = Ref::parse(&a[..at])
                .and_then(|r| r.check(depth, captures).map(|()| r))
                .map_err(|e| format!("{what}: {e} (in \"{template}\")"))?;
            let after_ref = &a[at + stop.len()..];
            let (op, end) = if stop == "}" {
                (Op::None, at)
            } else {
                let close = after_ref.find('}').ok_or_else(unclosed)?;
                let text = after_ref[..close].to_string();
                let op = match stop {
                    ":-" => Op::Default(text),
                    "#" => Op::StripPrefix(text),
                    _ => Op::StripSuffix(text),
                };
                (op, at + stop.len() + close)
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Ref { r, op });
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

/// What mappings of one name share.
struct FamilySpec<'c> {
    name: &'c str,
    kind: Kind,
    help: &'c str,
    unit: &'c str,
    labels: Vec<&'c str>,
    first: usize,
}

fn family_specs(cfg: &Config) -> Result<Vec<FamilySpec<'_>>, String> {
    let mut specs: Vec<FamilySpec<'_>> = Vec::new();
    for (i, m) in cfg.metrics.iter().enumerate() {
        let what = mapping_name(i, m);
        let kind = match m.kind.as_deref() {
            None | Some("gauge") => Kind::Gauge,
            Some("counter") => Kind::Counter,
            Some("histogram") => {
                return Err(format!(
                    "{what}: a stats page is a snapshot, so type is gauge or counter, not histogram"
                ))
            }
            Some(other) => {
                return Err(format!(
                    "{what}: unknown type \"{other}\" (gauge or counter)"
                ))
            }
        };
        let labels: Vec<&str> = m.labels.keys().map(String::as_str).collect();
        let Some(spec) = specs.iter_mut().find(|s| s.name == m.name) else {
            specs.push(FamilySpec {
                name: &m.name,
                kind,
                help: &m.help,
                unit: &m.unit,
                labels,
                first: i,
            });
            continue;
        };
        let first = spec.first;
        if spec.kind != kind {
            return Err(format!(
                "{what}: type differs from metrics[{first}], which has the same name"
            ));
        }
        if spec.labels != labels {
            return Err(format!(
                "{what}: labels [{}] differ from metrics[{first}], which has the same name and labels [{}]",
                labels.join(", "),
                spec.labels.join(", ")
            ));
        }
        for (field, mine, theirs) in [
            ("help", &m.help, &mut spec.help),
            ("unit", &m.unit, &mut spec.unit),
        ] {
            if theirs.is_empty() {
                *theirs = mine;
            } else if !mine.is_empty() && mine != theirs {
                return Err(format!(
                    "{what}: {field} differs from metrics[{first}], which has the same name"
                ));
            }
        }
    }
    Ok(specs)
}

impl JsonStats {
    /// Build from JSON settings, declaring families.
    pub fn from_config(config: &str, families: &mut Families) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid settings: {e}"))?;
        if cfg.metrics.is_empty() {
            return Err("no metrics: add at least one entry to metrics".into());
        }
        let mut ids = HashMap::new();
        for s in family_specs(&cfg)? {
            // Prometheus tooling wants a HELP text; say where it comes from.
            let help = if s.help.is_empty() {
                format!(
                    "Read from the JSON document at {}.",
                    cfg.metrics[s.first].path
                )
            } else {
                s.help.to_string()
            };
            let id = families.declare(s.kind, s.name, &help, s.unit, &s.labels, &[]);
            ids.insert(s.name, (id, s.kind));
        }
        let mut mappings = Vec::new();
        for (i, m) in cfg.metrics.iter().enumerate() {
            let what = mapping_name(i, m);
            let (family, kind) = ids[m.name.as_str()];
            let path = Path::parse(&m.path).map_err(|e| format!("{what}: path: {e}"))?;
            let (depth, captures) = (path.depth(), path.captures());
            let value = match &m.value {
                None => ValueSource::Ref(Ref::parse("@")?),
                Some(ValueConfig::Number(n)) => ValueSource::Const(*n),
                Some(ValueConfig::Ref(s)) => {
                    let s = s.trim();
                    let inner = s
                        .strip_prefix("${")
                        .and_then(|i| i.strip_suffix('}'))
                        .unwrap_or(s);
                    let r = Ref::parse(inner)
                        .and_then(|r| r.check(depth, captures).map(|()| r))
                        .map_err(|e| format!("{what}: value: {e}"))?;
                    ValueSource::Ref(r)
                }
            };
            let scale = Scale::new(m.scale.unwrap_or(1.0)).map_err(|e| format!("{what}: {e}"))?;
            let labels = m
                .labels
                .iter()
                .map(|(l, t)| parse_template(t, depth, captures, &format!("{what} label \"{l}\"")))
                .collect::<Result<Vec<_>, _>>()?;
            mappings.push(Mapping {
                family,
                counter: kind == Kind::Counter,
                path,
                value,
                value_map: m.value_map.clone(),
                scale,
                labels,
            });
        }
        Ok(JsonStats { mappings })
    }

    /// Turn one parsed document into series.
    pub fn document(&self, doc: &Value, out: &mut Output) {
        for m in &self.mappings {
            m.path.walk(doc, &mut |chain| m.emit(chain, out));
        }
    }
}

impl Mapping {
    fn emit(&self, chain: &[Frame<'_>], out: &mut Output) {
        let v = match &self.value {
            ValueSource::Const(c) => *c,
            ValueSource::Ref(r) => match r.resolve(chain).map(|f| f.number(&self.value_map)) {
                None => return,
                Some(Number::Ok(v)) => v,
                Some(Number::Bad) => {
                    out.reject();
                    return;
                }
            },
        };
        let v = self.scale.apply(v);
        if !v.is_finite() || (self.counter && v < 0.0) {
            out.reject();
            return;
        }
        let mut labels: Vec<Cow<'_, str>> = Vec::with_capacity(self.labels.len());
        for parts in &self.labels {
            let mut text = Cow::Borrowed("");
            for p in parts {
                let piece: Cow<'_, str> = match p {
                    Part::Lit(l) => Cow::Borrowed(l),
                    Part::Ref { r, op } => match (r.resolve(chain), op) {
                        (Some(f), Op::StripPrefix(p)) => strip(f.text(), |t| t.strip_prefix(p)),
                        (Some(f), Op::StripSuffix(p)) => strip(f.text(), |t| t.strip_suffix(p)),
                        (Some(f), _) => f.text(),
                        (None, Op::Default(d)) => Cow::Borrowed(d),
                        (None, _) => return,
                    },
                };
                if text.is_empty() {
                    text = piece;
                } else {
                    text.to_mut().push_str(&piece);
                }
            }
            labels.push(text);
        }
        out.set(self.family, &labels, v);
    }
}

/// `text` with `f` applied when it matches.
fn strip<'a>(text: Cow<'a, str>, f: impl Fn(&str) -> Option<&str>) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(t) => Cow::Borrowed(f(t).unwrap_or(t)),
        Cow::Owned(t) => match f(&t) {
            Some(s) => Cow::Owned(s.to_string()),
            None => Cow::Owned(t),
        },
    }
}

impl HttpPlugin for JsonStats {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        Self::from_config(config, families)
    }

    fn on_response(&mut self, response: &Response, out: &mut Output) -> Result<(), String> {
        let body = response
            .body
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(&response.body);
        // Lone surrogate escapes become U+FFFD: serde_json refuses them.
        let body = weir_sdk::json::replace_lone_surrogates(body);
        let doc = serde_json::from_slice::<Value>(&body).map_err(|e| {
            format!(
                "{} (HTTP {}): the body is not JSON: {e}",
                response.url, response.status
            )
        })?;
        self.document(&doc, out);
        Ok(())
    }
}

weir_sdk::export_http_plugin!(JsonStats);

#[cfg(test)]
mod tests;
