//! prometheus-text: re-expose a Prometheus text exposition (format 0.0.4;
//! OpenMetrics is read too) fetched by an HTTP source: every family it
//! holds, or those `keep` and `drop` let through.
//!
//! An exposition says what it holds only when it is read, so families are
//! declared during the calls (`output.declare`), the first time a family
//! shows up: its kind from the `# TYPE` line, its HELP text, its label
//! names (every label name its samples carry in that response, in the
//! order they first appear; a sample without one of them gets `""`, which
//! Prometheus reads as no label), and for a histogram its bucket bounds.
//! The plugin remembers what it declared for as long as its instance
//! lives.
//!
//! Settings (JSON, from the pipeline's `[pipeline.NAME.config]` table), all
//! optional:
//!
//! - `prefix`: prepended to every re-exposed name, with a `_` between.
//! - `labels`: `{name: value}` added to every series. An upstream label of
//!   the same name is renamed `exported_NAME`, as a Prometheus server does.
//! - `keep`, `drop`: regexes (unanchored) on family names as the exposition
//!   spells them: the sample name for counters, gauges and untyped
//!   families (`node_cpu_seconds_total`), the family name for histograms
//!   and summaries (`http_request_duration_seconds`, without `_bucket`). A
//!   family is re-exposed when it matches some `keep` (or `keep` is empty)
//!   and no `drop`.
//!
//! ```toml
//! [pipeline.node.config]
//! prefix = "edge"
//! labels = { source = "node" }
//! drop = ['^go_memstats_']
//! ```
//!
//! What is emitted, kinds kept:
//!
//! - counters with `set` (cumulative readings, exposed as read, so an
//!   upstream reset is a reset Prometheus sees, as when it scrapes the
//!   upstream itself). A counter whose name does not end in `_total` (older
//!   exporters) is re-exposed as a gauge under its own name: renaming it
//!   would break queries, and the host wants `_total` on counters;
//! - gauges with `set`; untyped families, OpenMetrics `info` and
//!   `stateset` families as gauges;
//! - histograms whole (`set-histogram`): declared with the bucket bounds
//!   the series of the first response share; cumulative bucket counts are
//!   turned into counts per bucket, and the host writes them out again as
//!   `_bucket`, `_sum` and `_count`;
//! - summaries whole (`set-summary`): quantiles (NaN ones too), sum, count.
//!
//! What is counted as rejected (`weir_plugin_inputs_rejected_total`; each
//! unit is one sample line): lines that do not parse; samples with a label
//! name their family was not declared with (logged once per family); a
//! value the family cannot take (NaN or infinite counter and gauge values,
//! negative counters, bucket counts that are not whole numbers or go down,
//! a histogram series missing a declared bound, its `_sum` or both `+Inf`
//! and `_count`, a summary series without `_sum` or `_count`); every sample
//! of a family whose `# TYPE` changed since it was declared; every sample
//! of a family that cannot be re-exposed (logged once, with the reason): a
//! name with `:` or starting with `weir_` (set a prefix), a name another
//! family already takes, a label name starting with `__`, a histogram
//! without a finite bucket, an OpenMetrics gauge histogram.
//!
//! Timestamps and exemplars are ignored; OpenMetrics `_created` samples
//! are skipped; reading stops at `# EOF`. The status was checked by the
//! source (`accept_status`); a protobuf body is an error.
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use weir_sdk::{Families, FamilyId, HttpPlugin, Kind, Output, Response};

mod parse;
use parse::{Helps, Role, Type};

/// HELP of a family whose exposition has none.
const DEFAULT_HELP: &str = "Re-exposed from a scraped Prometheus exposition.";

/// Most families logged about; past it, problems are only counted.
const MAX_LOGGED: usize = 1000;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
}

/// How a family is re-exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// A family declared to the host.
struct Declared {
    id: FamilyId,
    shape: Shape,
    /// Upstream label names, in declared order (before any renaming).
    labels: Vec<String>,
    /// Histogram bucket bounds, without `+Inf`.
    buckets: Vec<f64>,
}

/// The samples of one family in one response.
struct Group<'a> {
    /// Family name as `keep`/`drop` see it, without the prefix.
    key: &'a str,
    /// Name of its `# TYPE` and `# HELP` lines.
    base: &'a str,
    ty: Type,
    samples: Vec<(Role, &'a str)>,
}

/// A parsed sample: role, labels, value.
type Sample<'a> = (Role, Vec<(&'a str, String)>, f64);

/// The plugin: settings and what was declared so far.
pub struct PrometheusText {
    prefix: String,
    extra_names: Vec<String>,
    extra_values: Vec<String>,
    keep: Vec<Regex>,
    drop: Vec<Regex>,
    /// Declared families by `Group::key`.
    declared: HashMap<String, Declared>,
    /// Families declared so far (the next id).
    count: u32,
    /// Exposed sample names taken by declared families.
    taken: HashSet<String>,
    /// Families that cannot be re-exposed.
    refused: HashSet<String>,
    /// What was logged about, so each problem is logged once.
    logged: HashSet<String>,
}

fn compile(list: &[String], key: &str) -> Result<Vec<Regex>, String> {
    list.iter()
        .enumerate()
        .map(|(i, r)| Regex::new(r).map_err(|e| format!("{key}[{i}]: invalid regex: {e}")))
        .collect()
}

/// Whether the host takes `n` as a metric name: no colons.
fn host_metric_name(n: &str) -> bool {
    parse::is_name(n, false)
}

/// A whole, non-negative count that fits a u64.
fn whole(v: f64) -> Option<u64> {
    (v >= 0.0 && v.fract() == 0.0 && v < 18_446_744_073_709_551_616.0).then_some(v as u64)
}

impl PrometheusText {
    /// Build from JSON settings. Nothing is declared at init.
    pub fn from_config(config: &str) -> Result<Self, String> {
        let cfg: Config = if config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(config).map_err(|e| format!("invalid settings: {e}"))?
        };
        let prefix = match cfg.prefix.as_deref() {
            None | Some("") => String::new(),
            Some(p) if host_metric_name(p) => format!("{}_", p.trim_end_matches('_')),
            Some(p) => {
                return Err(format!(
                    "prefix \"{p}\" is not a metric name prefix ([a-zA-Z_][a-zA-Z0-9_]*)"
                ))
            }
        };
        if prefix.starts_with("weir_") {
            return Err(format!(
                "prefix \"{}\": names starting with weir_ are reserved for the agent",
                prefix.trim_end_matches('_')
            ));
        }
        for name in cfg.labels.keys() {
            if !parse::is_name(name, false) || name.starts_with("__") {
                return Err(format!(
                    "labels: \"{name}\" is not a label name (or starts with __, which is reserved)"
                ));
            }
            if name == "le" || name == "quantile" {
                return Err(format!(
                    "labels: \"{name}\" belongs to histograms and summaries"
                ));
            }
        }
        Ok(PrometheusText {
            prefix,
            extra_names: cfg.labels.keys().cloned().collect(),
            extra_values: cfg.labels.values().cloned().collect(),
            keep: compile(&cfg.keep, "keep")?,
            drop: compile(&cfg.drop, "drop")?,
            declared: HashMap::new(),
            count: 0,
            taken: HashSet::new(),
            refused: HashSet::new(),
            logged: HashSet::new(),
        })
    }

    /// Whether `keep` and `drop` let a family through.
    fn kept(&self, family: &str) -> bool {
        (self.keep.is_empty() || self.keep.iter().any(|r| r.is_match(family)))
            && !self.drop.iter().any(|r| r.is_match(family))
    }

    fn log_once(&mut self, what: String, message: impl FnOnce() -> String) {
        if self.logged.len() < MAX_LOGGED && self.logged.insert(what) {
            weir_sdk::log::warn(&message());
        }
    }

    /// Parse one exposition: declare the families not seen before and emit
    /// every kept family's series.
    pub fn exposition(&mut self, text: &str, out: &mut Output) {
        let parse::Meta {
            types,
            helps,
            unknown_types,
        } = parse::meta(text);
        // A `# TYPE` line with a type no format defines: its samples are
        // read as untyped, the line itself is counted.
        for _ in 0..unknown_types {
            out.reject();
        }
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for sample in parse::samples(text) {
            let Ok((name, rest)) = sample else {
                out.reject();
                continue;
            };
            let (base, ty, role) = parse::classify(name, &types);
            match role {
                Role::Created => continue,
                Role::Invalid => {
                    out.reject();
                    continue;
                }
                _ => {}
            }
            let key = match ty {
                Type::Histogram | Type::Summary | Type::GaugeHistogram => base,
                _ => name,
            };
            if !self.kept(key) {
                continue;
            }
            let i = *index.entry(key).or_insert_with(|| {
                groups.push(Group {
                    key,
                    base,
                    ty,
                    samples: Vec::new(),
                });
                groups.len() - 1
            });
            groups[i].samples.push((role, rest));
        }
        let already = self.count;
        for g in &groups {
            self.family(g, &helps, already, out);
        }
    }

    fn family(&mut self, g: &Group<'_>, helps: &Helps<'_>, already: u32, out: &mut Output) {
        if self.refused.contains(g.key) {
            for _ in &g.samples {
                out.reject();
            }
            return;
        }
        let mut samples: Vec<Sample<'_>> = Vec::with_capacity(g.samples.len());
        for &(role, rest) in &g.samples {
            match parse::rest(rest) {
                Ok((labels, value)) => samples.push((role, labels, value)),
                Err(_) => out.reject(),
            }
        }
        if samples.is_empty() {
            return;
        }
        let shape = match shape_of(g.ty, g.key) {
            Ok(s) => s,
            Err(why) => return self.refuse(g.key, why, samples.len(), out),
        };
        if !self.declared.contains_key(g.key) {
            if let Err(why) = self.declare(g, shape, &samples, helps, already, out) {
                return self.refuse(g.key, why, samples.len(), out);
            }
        }
        let Some(d) = self.declared.get(g.key) else {
            return;
        };
        if d.shape != shape {
            let was = d.shape;
            for _ in &samples {
                out.reject();
            }
            let key = g.key;
            self.log_once(format!("{key}/type"), || {
                format!(
                    "family \"{key}\" was re-exposed as a {was:?} and is now a {shape:?} upstream; its samples are skipped until the plugin restarts"
                )
            });
            return;
        }
        let unknown = match shape {
            Shape::Counter | Shape::Gauge => self.scalars(d, shape == Shape::Counter, samples, out),
            Shape::Histogram => self.histograms(d, samples, out),
            Shape::Summary => self.summaries(d, samples, out),
        };
        if let Some(label) = unknown {
            let key = g.key;
            self.log_once(format!("{key}/label/{label}"), || {
                format!(
                    "family \"{key}\": samples with label \"{label}\", which the family was not declared with (it was not in the first response), are skipped"
                )
            });
        }
    }

    fn refuse(&mut self, key: &str, why: String, samples: usize, out: &mut Output) {
        for _ in 0..samples {
            out.reject();
        }
        self.refused.insert(key.to_string());
        self.log_once(format!("{key}/refused"), || {
            format!("family \"{key}\" is not re-exposed: {why}")
        });
    }

    /// Declare a family seen for the first time, from this response's
    /// samples.
    fn declare(
        &mut self,
        g: &Group<'_>,
        shape: Shape,
        samples: &[Sample<'_>],
        helps: &Helps<'_>,
        already: u32,
        out: &mut Output,
    ) -> Result<(), String> {
        let name = format!("{}{}", self.prefix, g.key);
        if !host_metric_name(&name) {
            return Err(format!(
                "\"{name}\" is not a metric name the agent takes ([a-zA-Z_][a-zA-Z0-9_]*, no ':')"
            ));
        }
        if name.starts_with("weir_") {
            return Err(format!(
                "\"{name}\": names starting with weir_ are reserved for the agent; set a prefix"
            ));
        }
        let exposed: Vec<String> = match shape {
            Shape::Counter | Shape::Gauge => vec![name.clone()],
            Shape::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect(),
            Shape::Summary => ["", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect(),
        };
        if let Some(t) = exposed.iter().find(|e| self.taken.contains(*e)) {
            return Err(format!("\"{t}\" is already re-exposed by another family"));
        }
        // Label names: every one the samples carry, in order of appearance.
        let mut labels: Vec<String> = Vec::new();
        for (role, ls, _) in samples {
            for (n, _) in ls {
                let special = (*role == Role::Bucket && *n == "le")
                    || (*role == Role::Quantile && *n == "quantile");
                if !special && !labels.iter().any(|l| l == n) {
                    labels.push(n.to_string());
                }
            }
        }
        let mut names: Vec<String> = labels
            .iter()
            .map(|l| {
                if self.extra_names.contains(l) {
                    format!("exported_{l}")
                } else {
                    l.clone()
                }
            })
            .collect();
        names.extend(self.extra_names.iter().cloned());
        for (i, n) in names.iter().enumerate() {
            if n.starts_with("__") {
                return Err(format!(
                    "label \"{n}\": names starting with __ are reserved"
                ));
            }
            if names[..i].contains(n) {
                return Err(format!("label \"{n}\" would appear twice"));
            }
            if (shape == Shape::Histogram && n == "le")
                || (shape == Shape::Summary && n == "quantile")
            {
                return Err(format!(
                    "label \"{n}\" is reserved in a {}",
                    if shape == Shape::Histogram {
                        "histogram"
                    } else {
                        "summary"
                    }
                ));
            }
        }
        // Histogram bounds: those every series of the response has, so each
        // can be read exactly.
        let mut buckets = Vec::new();
        if shape == Shape::Histogram {
            let mut per_series: HashMap<Vec<(&str, &str)>, Vec<f64>> = HashMap::new();
            for (role, ls, _) in samples {
                if *role != Role::Bucket {
                    continue;
                }
                let Some(le) = le_of(ls) else { continue };
                if !le.is_finite() {
                    continue;
                }
                let mut key: Vec<(&str, &str)> = ls
                    .iter()
                    .filter(|(n, v)| *n != "le" && !v.is_empty())
                    .map(|(n, v)| (*n, v.as_str()))
                    .collect();
                key.sort_unstable();
                per_series.entry(key).or_default().push(le);
            }
            let mut sets = per_series.into_values();
            if let Some(first) = sets.next() {
                buckets = first;
                for other in sets {
                    buckets.retain(|b| other.contains(b));
                }
            }
            buckets.sort_by(f64::total_cmp);
            buckets.dedup();
        }
        let kind = match shape {
            Shape::Counter => Kind::Counter,
            Shape::Gauge => Kind::Gauge,
            Shape::Histogram => Kind::Histogram,
            Shape::Summary => Kind::Summary,
        };
        let help = helps.get(g.base).map_or(DEFAULT_HELP, String::as_str);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut fams = Families::default();
        // A histogram with only the `+Inf` bucket says so (an empty list
        // would get the host's default buckets).
        let declared_bounds = if shape == Shape::Histogram && buckets.is_empty() {
            vec![f64::INFINITY]
        } else {
            buckets.clone()
        };
        fams.declare(kind, &name, help, "", &refs, &declared_bounds);
        let Some(&id) = out.declare(already, fams).first() else {
            return Err("could not declare it".into());
        };
        self.count = id.0 + 1;
        self.taken.extend(exposed);
        self.declared.insert(
            g.key.to_string(),
            Declared {
                id,
                shape,
                labels,
                buckets,
            },
        );
        Ok(())
    }

    /// Label values in declared order, with the constant labels; `Err`
    /// with the first label name the family was not declared with.
    fn values<'s>(
        &self,
        d: &Declared,
        labels: &[(&'s str, String)],
        special: &str,
    ) -> Result<Vec<String>, &'s str> {
        let mut values = vec![String::new(); d.labels.len()];
        for (n, v) in labels {
            if *n == special {
                continue;
            }
            match d.labels.iter().position(|l| l == n) {
                Some(i) => values[i] = v.clone(),
                None if v.is_empty() => {}
                None => return Err(n),
            }
        }
        values.extend(self.extra_values.iter().cloned());
        Ok(values)
    }

    fn scalars(
        &self,
        d: &Declared,
        counter: bool,
        samples: Vec<Sample<'_>>,
        out: &mut Output,
    ) -> Option<String> {
        let mut unknown = None;
        for (_, labels, v) in samples {
            let values = match self.values(d, &labels, "") {
                Ok(v) => v,
                Err(l) => {
                    unknown.get_or_insert_with(|| l.to_string());
                    out.reject();
                    continue;
                }
            };
            // Gauges may be NaN or infinite; a counter may not.
            if counter && !(v.is_finite() && v >= 0.0) {
                out.reject();
                continue;
            }
            out.set(d.id, &values, v);
        }
        unknown
    }

    fn histograms(
        &self,
        d: &Declared,
        samples: Vec<Sample<'_>>,
        out: &mut Output,
    ) -> Option<String> {
        #[derive(Default)]
        struct Series {
            /// (le, cumulative count)
            buckets: Vec<(f64, f64)>,
            sum: Option<f64>,
            count: Option<f64>,
            samples: usize,
            bad: bool,
        }
        let mut unknown = None;
        let mut order: Vec<Vec<String>> = Vec::new();
        let mut series: HashMap<Vec<String>, Series> = HashMap::new();
        for (role, labels, v) in samples {
            let values = match self.values(d, &labels, "le") {
                Ok(v) => v,
                Err(l) => {
                    unknown.get_or_insert_with(|| l.to_string());
                    out.reject();
                    continue;
                }
            };
            let s = series.entry(values.clone()).or_insert_with(|| {
                order.push(values);
                Series::default()
            });
            s.samples += 1;
            match role {
                Role::Bucket => match le_of(&labels) {
                    Some(le) if !le.is_nan() => s.buckets.push((le, v)),
                    _ => s.bad = true,
                },
                Role::Sum => s.sum = Some(v),
                Role::Count => s.count = Some(v),
                _ => s.bad = true,
            }
        }
        for values in order {
            let Some(s) = series.remove(&values) else {
                continue;
            };
            // A histogram without `_sum` is valid (OpenMetrics makes it
            // optional); NaN tells the host there is none.
            let sum = s.sum.unwrap_or(f64::NAN);
            match histogram_counts(&d.buckets, &s.buckets, s.count) {
                Some(counts) if !s.bad && !sum.is_infinite() => {
                    out.set_histogram(d.id, &values, counts, sum);
                }
                _ => {
                    for _ in 0..s.samples {
                        out.reject();
                    }
                }
            }
        }
        unknown
    }

    fn summaries(
        &self,
        d: &Declared,
        samples: Vec<Sample<'_>>,
        out: &mut Output,
    ) -> Option<String> {
        #[derive(Default)]
        struct Series {
            quantiles: Vec<(f64, f64)>,
            sum: Option<f64>,
            count: Option<f64>,
            samples: usize,
            bad: bool,
        }
        let mut unknown = None;
        let mut order: Vec<Vec<String>> = Vec::new();
        let mut series: HashMap<Vec<String>, Series> = HashMap::new();
        for (role, labels, v) in samples {
            let values = match self.values(d, &labels, "quantile") {
                Ok(v) => v,
                Err(l) => {
                    unknown.get_or_insert_with(|| l.to_string());
                    out.reject();
                    continue;
                }
            };
            let s = series.entry(values.clone()).or_insert_with(|| {
                order.push(values);
                Series::default()
            });
            s.samples += 1;
            match role {
                Role::Quantile => {
                    let q = labels
                        .iter()
                        .find(|(n, _)| *n == "quantile")
                        .and_then(|(_, q)| q.parse::<f64>().ok());
                    match q {
                        Some(q) if q.is_finite() => s.quantiles.push((q, v)),
                        _ => s.bad = true,
                    }
                }
                Role::Sum => s.sum = Some(v),
                Role::Count => s.count = Some(v),
                _ => s.bad = true,
            }
        }
        for values in order {
            let Some(s) = series.remove(&values) else {
                continue;
            };
            match (s.sum, s.count.and_then(whole)) {
                (Some(sum), Some(count)) if !s.bad && !sum.is_infinite() => {
                    out.set_summary(d.id, &values, s.quantiles, sum, count);
                }
                _ => {
                    for _ in 0..s.samples {
                        out.reject();
                    }
                }
            }
        }
        unknown
    }
}

/// How a family of type `ty` named `key` is re-exposed.
fn shape_of(ty: Type, key: &str) -> Result<Shape, String> {
    Ok(match ty {
        Type::Counter if key.ends_with("_total") => Shape::Counter,
        // Re-exposed under its own name, as a gauge: see the crate doc.
        Type::Counter => Shape::Gauge,
        Type::Gauge | Type::Untyped | Type::Info | Type::StateSet => Shape::Gauge,
        Type::Histogram => Shape::Histogram,
        Type::Summary => Shape::Summary,
        Type::GaugeHistogram => return Err("gauge histograms are not re-exposed".into()),
    })
}

fn le_of(labels: &[(&str, String)]) -> Option<f64> {
    labels
        .iter()
        .find(|(n, _)| *n == "le")
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
}

/// Counts per declared bucket (not cumulative), then `+Inf`, from
/// cumulative `(le, count)` readings; `None` when a declared bound is
/// missing, a count is not whole or the counts go down.
fn histogram_counts(bounds: &[f64], read: &[(f64, f64)], count: Option<f64>) -> Option<Vec<u64>> {
    let at = |b: f64| read.iter().find(|(le, _)| *le == b).map(|(_, c)| *c);
    let inf = at(f64::INFINITY).or(count)?;
    let mut counts = Vec::with_capacity(bounds.len() + 1);
    let mut prev = 0u64;
    for &b in bounds.iter().chain(std::iter::once(&f64::INFINITY)) {
        let cum = if b.is_infinite() { inf } else { at(b)? };
        let cum = whole(cum)?;
        counts.push(cum.checked_sub(prev)?);
        prev = cum;
    }
    Some(counts)
}

impl HttpPlugin for PrometheusText {
    fn init(config: &str, _families: &mut Families) -> Result<Self, String> {
        Self::from_config(config)
    }

    fn on_response(&mut self, response: &Response, out: &mut Output) -> Result<(), String> {
        let content_type = response
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map_or("", |(_, v)| v.as_str());
        if content_type.starts_with("application/vnd.google.protobuf") {
            return Err(format!(
                "{} sent protobuf ({content_type}); this plugin reads the text format",
                response.url
            ));
        }
        match std::str::from_utf8(&response.body) {
            Ok(text) => self.exposition(text, out),
            Err(_) => {
                // Both formats are UTF-8. A sample line that is not is
                // counted and left out (a replaced label value would be
                // another series); other lines are read with U+FFFD.
                let mut text = String::with_capacity(response.body.len());
                for line in response.body.split(|b| *b == b'\n') {
                    match std::str::from_utf8(line) {
                        Ok(l) => text.push_str(l),
                        Err(_) if line.trim_ascii_start().starts_with(b"#") => {
                            text.push_str(&String::from_utf8_lossy(line))
                        }
                        Err(_) => {
                            out.reject();
                            self.log_once("utf8".into(), || {
                                format!(
                                    "{}: sample lines that are not UTF-8 are skipped",
                                    response.url
                                )
                            });
                        }
                    }
                    text.push('\n');
                }
                self.exposition(&text, out);
            }
        }
        Ok(())
    }
}

weir_sdk::export_http_plugin!(PrometheusText);

#[cfg(test)]
mod tests;
