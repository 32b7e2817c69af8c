//! prometheus-text: re-expose families of a Prometheus text exposition
//! (format 0.0.4; OpenMetrics is read too) fetched by an HTTP source.
//!
//! A plugin declares its families at `init`, but an exposition says what
//! it holds only when it is read. So the settings list the families to
//! re-expose, with their type and label names; the plugin parses each
//! response and emits those families only. This is the one clean fit with
//! the interface: label names fix the order of label values, and kinds fix
//! what an update may do, and both must be known before the first response.
//!
//! Settings (JSON, from the pipeline's `[pipeline.NAME.config]` table):
//!
//! - `families`: each `{name, type, help, labels}`. `type` is `counter`,
//!   `gauge`, `histogram` or `summary`; `labels` are the label names the
//!   samples may carry (a label with an empty value counts as absent).
//!   `name` is the name as the samples show it for counters and gauges
//!   (`node_cpu_seconds_total`), and the family name for histograms and
//!   summaries (`http_request_duration_seconds`, without `_bucket`).
//!   Samples without a `# TYPE` line take the listed type. `help` defaults
//!   to a fixed text: the exposition's HELP arrives too late to declare.
//! - `prefix`: prepended to every re-exposed name, with a `_` between.
//! - `labels`: `{name: value}` added to every series.
//! - `keep`, `drop`: regexes (unanchored) on family names, spelled as in
//!   `families`. A family is kept when it matches some `keep` (or `keep` is
//!   empty) and no `drop`.
//!
//! ```toml
//! [pipeline.node.config]
//! prefix = "edge"
//! labels = { source = "node" }
//! keep = ['^node_(cpu|filesystem)_', '^go_gc_']
//! families = [
//!   { name = "node_cpu_seconds_total", type = "counter", labels = ["cpu", "mode"] },
//!   { name = "node_filesystem_avail_bytes", type = "gauge", labels = ["device", "fstype", "mountpoint"] },
//!   { name = "go_gc_duration_seconds", type = "summary" },
//! ]
//! ```
//!
//! What is emitted:
//!
//! - counters with `set` (cumulative readings: the host takes a decrease
//!   for a reset). The host wants counter names to end in `_total`; a
//!   counter listed without it (older exporters) is re-exposed with it:
//!   `foo` becomes `foo_total`;
//! - gauges with `set`;
//! - a histogram `h` as the gauge families `h_bucket` (its labels and
//!   `le`), `h_sum` and `h_count`, values as read. The interface has no
//!   update that sets a whole histogram, and observations cannot rebuild
//!   one. Gauges, because the host requires `_total` on counters: the
//!   series keep the names and labels a Prometheus server would scrape, so
//!   `histogram_quantile(0.9, rate(h_bucket[5m]))` works; only the TYPE
//!   line differs (and `promtool check metrics` notes the suffixes);
//! - a summary `s` as the gauge `s` with its labels and `quantile`, and the
//!   gauges `s_sum` and `s_count`, for the same reason.
//!
//! What is counted as rejected: lines that do not parse, samples with a
//! label their family does not list or a value their family cannot take
//! (a negative counter, an `le` that is not a number), and, once per
//! response, each family that is kept by `keep`/`drop` but not listed, or
//! whose `# TYPE` contradicts its listed type. Use `keep` or `drop` to
//! leave out the families you do not want without counting them. NaN values
//! (an empty summary's quantiles) are skipped without counting; infinite
//! values are rejected: the host stores neither.
//! Timestamps and exemplars are ignored; OpenMetrics `_created` samples
//! are skipped; reading stops at `# EOF`.
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use weir_sdk::{Families, FamilyId, HttpPlugin, Kind, Output, Response};

mod parse;
use parse::{Role, Type};

const DEFAULT_HELP: &str = "Re-exposed from a scraped Prometheus exposition.";

#[derive(Deserialize)]
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
    #[serde(default)]
    families: Vec<FamilyConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyConfig {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    help: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listed {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

struct Family {
    name: String,
    kind: Listed,
    labels: Vec<String>,
}

/// Where samples of one name go.
#[derive(Clone, Copy)]
struct Target {
    listed: usize,
    role: Role,
    family: FamilyId,
}

/// The plugin: the listed families, by the sample names they take.
pub struct PrometheusText {
    listed: Vec<Family>,
    by_sample: HashMap<String, Target>,
    /// Values of the `labels` setting, in declared order.
    extra: Vec<String>,
    keep: Vec<Regex>,
    drop: Vec<Regex>,
    /// Family names already logged about, so each is logged once.
    logged: HashSet<String>,
}

fn compile(list: &[String], key: &str) -> Result<Vec<Regex>, String> {
    list.iter()
        .enumerate()
        .map(|(i, r)| Regex::new(r).map_err(|e| format!("{key}[{i}]: invalid regex: {e}")))
        .collect()
}

fn check_label(name: &str, what: &str) -> Result<(), String> {
    if !parse::is_name(name, false) {
        return Err(format!("{what}: \"{name}\" is not a label name"));
    }
    if name.starts_with("__") {
        return Err(format!("{what}: label names starting with __ are reserved"));
    }
    Ok(())
}

impl PrometheusText {
    /// Build from JSON settings, declaring families.
    pub fn from_config(config: &str, families: &mut Families) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid settings: {e}"))?;
        if cfg.families.is_empty() {
            return Err(
                "no families: list the families to re-expose, each {name, type, labels}".into(),
            );
        }
        let prefix = match cfg.prefix.as_deref() {
            None | Some("") => String::new(),
            Some(p) if parse::is_name(p, true) => format!("{}_", p.trim_end_matches('_')),
            Some(p) => return Err(format!("prefix \"{p}\" is not a metric name prefix")),
        };
        let keep = compile(&cfg.keep, "keep")?;
        let drop = compile(&cfg.drop, "drop")?;
        for name in cfg.labels.keys() {
            check_label(name, "labels")?;
            if name == "le" || name == "quantile" {
                return Err(format!(
                    "labels: \"{name}\" belongs to histograms and summaries"
                ));
            }
        }
        let extra_names: Vec<&str> = cfg.labels.keys().map(String::as_str).collect();
        let mut exposed_names = HashSet::new();
        let mut plugin = PrometheusText {
            listed: Vec::new(),
            by_sample: HashMap::new(),
            extra: cfg.labels.values().cloned().collect(),
            keep,
            drop,
            logged: HashSet::new(),
        };
        for (i, f) in cfg.families.iter().enumerate() {
            let what = format!("families[{i}] \"{}\"", f.name);
            if !parse::is_name(&f.name, true) {
                return Err(format!("{what}: not a metric name"));
            }
            let kind = match f.kind.as_str() {
                "counter" => Listed::Counter,
                "gauge" => Listed::Gauge,
                "histogram" => Listed::Histogram,
                "summary" => Listed::Summary,
                other => {
                    return Err(format!(
                        "{what}: unknown type \"{other}\" (counter, gauge, histogram or summary)"
                    ))
                }
            };
            for (j, l) in f.labels.iter().enumerate() {
                check_label(l, &what)?;
                if f.labels[..j].contains(l) {
                    return Err(format!("{what}: label \"{l}\" is listed twice"));
                }
                if cfg.labels.contains_key(l) {
                    return Err(format!(
                        "{what}: label \"{l}\" is also set by the labels setting"
                    ));
                }
                if (l == "le" && kind == Listed::Histogram)
                    || (l == "quantile" && kind == Listed::Summary)
                {
                    return Err(format!(
                        "{what}: \"{l}\" is implied for a {}; leave it out of labels",
                        f.kind
                    ));
                }
            }
            if !plugin.kept(&f.name) {
                return Err(format!("{what}: listed, but keep/drop leave it out"));
            }
            let help = f.help.as_deref().unwrap_or(DEFAULT_HELP);
            let parts: &[(&str, Kind, Role, Option<&str>)] = match kind {
                Listed::Counter => &[("", Kind::Counter, Role::Value, None)],
                Listed::Gauge => &[("", Kind::Gauge, Role::Value, None)],
                Listed::Histogram => &[
                    ("_bucket", Kind::Gauge, Role::Bucket, Some("le")),
                    ("_sum", Kind::Gauge, Role::Sum, None),
                    ("_count", Kind::Gauge, Role::Count, None),
                ],
                Listed::Summary => &[
                    ("", Kind::Gauge, Role::Quantile, Some("quantile")),
                    ("_sum", Kind::Gauge, Role::Sum, None),
                    ("_count", Kind::Gauge, Role::Count, None),
                ],
            };
            for &(suffix, k, role, special) in parts {
                let sample = format!("{}{suffix}", f.name);
                let total = if k == Kind::Counter && !sample.ends_with("_total") {
                    "_total"
                } else {
                    ""
                };
                let exposed = format!("{prefix}{sample}{total}");
                if !exposed_names.insert(exposed.clone()) {
                    return Err(format!("{what}: \"{exposed}\" would be re-exposed twice"));
                }
                if exposed.starts_with("weir_") {
                    return Err(format!(
                        "{what}: \"{exposed}\": names starting with weir_ are reserved for the agent; set a prefix"
                    ));
                }
                if let Some(t) = plugin.by_sample.get(&sample) {
                    return Err(format!(
                        "{what}: samples named \"{sample}\" also belong to families[{}] \"{}\"",
                        t.listed, plugin.listed[t.listed].name
                    ));
                }
                let mut labels: Vec<&str> = f.labels.iter().map(String::as_str).collect();
                labels.extend(special);
                labels.extend(&extra_names);
                let family = families.declare(k, &exposed, help, "", &labels, &[]);
                plugin.by_sample.insert(
                    sample,
                    Target {
                        listed: i,
                        role,
                        family,
                    },
                );
            }
            plugin.listed.push(Family {
                name: f.name.clone(),
                kind,
                labels: f.labels.clone(),
            });
        }
        Ok(plugin)
    }

    /// Whether `keep` and `drop` let a family through.
    fn kept(&self, family: &str) -> bool {
        (self.keep.is_empty() || self.keep.iter().any(|r| r.is_match(family)))
            && !self.drop.iter().any(|r| r.is_match(family))
    }

    /// Parse one exposition and emit the listed families.
    pub fn exposition(&mut self, text: &str, out: &mut Output) {
        let types = parse::types(text);
        let mut unlisted: HashSet<&str> = HashSet::new();
        let mut mismatched: HashSet<&str> = HashSet::new();
        for sample in parse::samples(text) {
            let Ok((name, rest)) = sample else {
                out.reject();
                continue;
            };
            let (family, ty, role) = parse::classify(name, &types);
            match role {
                Role::Created => continue,
                Role::Invalid => {
                    out.reject();
                    continue;
                }
                _ => {}
            }
            let Some(&target) = self.by_sample.get(name) else {
                // Unlisted: name it the way `families` would.
                let key = match ty {
                    Type::Histogram | Type::Summary | Type::GaugeHistogram => family,
                    _ => name,
                };
                if self.kept(key) && unlisted.insert(key) {
                    out.reject();
                    self.log_once(key, || {
                        format!(
                            "family \"{key}\" is not listed in families; its samples are skipped"
                        )
                    });
                }
                continue;
            };
            let listed = self.listed[target.listed].kind;
            if !compatible(listed, target.role, ty, role) {
                if mismatched.insert(family) {
                    out.reject();
                    self.log_once(family, || {
                        format!(
                            "family \"{family}\" is a {ty:?} in the exposition but listed as a {listed:?}; its samples are skipped"
                        )
                    });
                }
                continue;
            }
            match parse::rest(rest) {
                Ok((labels, value)) => self.emit(target, labels, value, out),
                Err(_) => out.reject(),
            }
        }
    }

    fn log_once(&mut self, family: &str, message: impl FnOnce() -> String) {
        if self.logged.len() < 1000 && self.logged.insert(family.to_string()) {
            weir_sdk::log::warn(&message());
        }
    }

    fn emit(&self, t: Target, labels: Vec<(&str, String)>, value: f64, out: &mut Output) {
        let listed = &self.listed[t.listed];
        let names = &listed.labels;
        let special = match t.role {
            Role::Bucket => Some("le"),
            Role::Quantile => Some("quantile"),
            _ => None,
        };
        let mut values = vec![String::new(); names.len() + usize::from(special.is_some())];
        for (name, v) in labels {
            if let Some(i) = names.iter().position(|n| n == name) {
                values[i] = v;
            } else if special == Some(name) {
                values[names.len()] = v;
            } else if !v.is_empty() {
                out.reject();
                return;
            }
        }
        if special.is_some() && values[names.len()].parse::<f64>().is_err() {
            out.reject();
            return;
        }
        if value.is_nan() {
            return;
        }
        let count = listed.kind == Listed::Counter || matches!(t.role, Role::Bucket | Role::Count);
        if value.is_infinite() || (count && value < 0.0) {
            out.reject();
            return;
        }
        values.extend(self.extra.iter().cloned());
        out.set(t.family, &values, value);
    }
}

/// Whether samples the exposition types as `ty` (in role `role`) may feed a
/// family listed as `listed` (sample role `want`). Untyped samples take the
/// listed type.
fn compatible(listed: Listed, want: Role, ty: Type, role: Role) -> bool {
    match (listed, ty) {
        (_, Type::Untyped) => true,
        (Listed::Counter, Type::Counter) => role == Role::Value,
        (Listed::Gauge, Type::Gauge | Type::Info | Type::StateSet) => role == Role::Value,
        (Listed::Histogram, Type::Histogram) | (Listed::Summary, Type::Summary) => role == want,
        _ => false,
    }
}

impl HttpPlugin for PrometheusText {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        Self::from_config(config, families)
    }

    fn on_response(&mut self, response: &Response, out: &mut Output) -> Result<(), String> {
        if !(200..300).contains(&response.status) {
            return Err(format!(
                "{} answered HTTP {}",
                response.url, response.status
            ));
        }
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
        let text = String::from_utf8_lossy(&response.body);
        self.exposition(&text, out);
        Ok(())
    }
}

weir_sdk::export_http_plugin!(PrometheusText);

#[cfg(test)]
mod tests;
