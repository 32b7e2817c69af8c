//! regex-log: log lines to metrics with regular expressions, the way mtail
//! and grok_exporter users work.
//!
//! Settings (JSON, from the pipeline's `[pipeline.NAME.config]` table):
//!
//! - `metrics`: the families, each `{name, type, help, unit, labels, buckets}`.
//! - `rules`: each `{name, regex, stop, emit}`; a rule whose regex matches a
//!   line runs its `emit` actions. Every rule is tried on every line unless
//!   a matching rule says `stop = true`.
//! - `emit`: `{metric, labels, value, scale, op}`. `labels` maps a label name
//!   to a template (`"${method}"`, `"GET"`, `"code_${status}"`); a label left
//!   out takes the capture of the same name. `value` is a capture name or a
//!   number (default 1); `scale` multiplies it (milliseconds to seconds:
//!   0.001), exactly in decimal, so 350 ms is the 0.35 a bucket bound says
//!   (see `weir_sdk::units`). `op` is `add` (counters), `observe` (histograms), `set` or `add`
//!   (gauges; `set` by default).
use regex::{CaptureLocations, Regex};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use weir_sdk::{Batch, Families, FamilyId, Kind, LogPlugin, Output, Scale};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
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
    regex: String,
    #[serde(default)]
    stop: bool,
    #[serde(default)]
    emit: Vec<EmitConfig>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ValueConfig {
    Number(f64),
    Capture(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitConfig {
    metric: String,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    value: Option<ValueConfig>,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    op: Option<String>,
}

/// One piece of a label template.
enum Part {
    Lit(String),
    Cap(usize),
}

enum Value {
    Const(f64),
    Cap(usize),
}

#[derive(Clone, Copy)]
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
}

struct Rule {
    regex: Regex,
    locs: CaptureLocations,
    stop: bool,
    emits: Vec<Emit>,
}

/// The plugin: compiled rules.
pub struct RegexLog {
    rules: Vec<Rule>,
}

fn rule_name(i: usize, r: &RuleConfig) -> String {
    match &r.name {
        Some(n) => format!("rule \"{n}\" (rules[{i}])"),
        None => format!("rules[{i}]"),
    }
}

fn parse_template(
    template: &str,
    caps: &HashMap<&str, usize>,
    what: &str,
) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(Part::Lit(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{what}: unclosed \"${{\" in \"{template}\""))?;
        let name = &after[..end];
        let idx = caps.get(name).ok_or_else(|| {
            format!("{what}: no capture named \"{name}\" in the regex (template \"{template}\")")
        })?;
        parts.push(Part::Cap(*idx));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest.to_string()));
    }
    Ok(parts)
}

impl RegexLog {
    /// Build from JSON settings, declaring families.
    pub fn from_config(config: &str, families: &mut Families) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid settings: {e}"))?;
        if cfg.rules.is_empty() {
            return Err("no rules: add at least one [[...rules]] entry".into());
        }
        let by_name = weir_sdk::spec::declare_metrics(&cfg.metrics, families)?;
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let what = rule_name(i, r);
            let regex = Regex::new(&r.regex).map_err(|e| format!("{what}: invalid regex: {e}"))?;
            let caps: HashMap<&str, usize> = regex
                .capture_names()
                .enumerate()
                .filter_map(|(idx, n)| n.map(|n| (n, idx)))
                .collect();
            if r.emit.is_empty() {
                return Err(format!("{what}: no emit actions"));
            }
            let mut emits = Vec::new();
            for (j, e) in r.emit.iter().enumerate() {
                let ewhat = format!("{what} emit[{j}]");
                let weir_sdk::spec::Declared {
                    id: family,
                    kind,
                    labels: label_names,
                } = by_name.get(&e.metric).ok_or_else(|| {
                    format!(
                        "{ewhat}: metric \"{}\" is not declared in metrics",
                        e.metric
                    )
                })?;
                for k in e.labels.keys() {
                    if !label_names.contains(k) {
                        return Err(format!(
                            "{ewhat}: metric \"{}\" has no label \"{k}\"",
                            e.metric
                        ));
                    }
                }
                let mut labels = Vec::new();
                for l in label_names {
                    let parts = match e.labels.get(l) {
                        Some(t) => parse_template(t, &caps, &format!("{ewhat} label \"{l}\""))?,
                        None => match caps.get(l.as_str()) {
                            Some(idx) => vec![Part::Cap(*idx)],
                            None => {
                                return Err(format!(
                                    "{ewhat}: label \"{l}\" of \"{}\" has no value: give labels.{l} or a capture named \"{l}\"",
                                    e.metric
                                ))
                            }
                        },
                    };
                    labels.push(parts);
                }
                let value = match &e.value {
                    None => Value::Const(1.0),
                    Some(ValueConfig::Number(n)) => Value::Const(*n),
                    Some(ValueConfig::Capture(c)) => {
                        let c = c.trim_start_matches("${").trim_end_matches('}');
                        Value::Cap(*caps.get(c).ok_or_else(|| {
                            format!("{ewhat}: value names capture \"{c}\", which the regex does not have")
                        })?)
                    }
                };
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
                            "{ewhat}: op \"{o}\" does not apply to {:?} \"{}\"",
                            kind, e.metric
                        ))
                    }
                };
                if matches!((kind, &value), (Kind::Gauge, Value::Const(_)))
                    && matches!(op, Op::Set)
                    && e.value.is_none()
                {
                    return Err(format!(
                        "{ewhat}: gauge \"{}\" needs a value to set",
                        e.metric
                    ));
                }
                let scale =
                    Scale::new(e.scale.unwrap_or(1.0)).map_err(|m| format!("{ewhat}: {m}"))?;
                emits.push(Emit {
                    family: *family,
                    labels,
                    value,
                    scale,
                    op,
                });
            }
            let locs = regex.capture_locations();
            rules.push(Rule {
                regex,
                locs,
                stop: r.stop,
                emits,
            });
        }
        Ok(RegexLog { rules })
    }

    /// Apply the rules to one line.
    pub fn line(&mut self, line: &str, out: &mut Output) {
        for rule in &mut self.rules {
            if rule.regex.captures_read(&mut rule.locs, line).is_none() {
                continue;
            }
            let cap = |i: usize| -> Option<&str> { rule.locs.get(i).map(|(s, e)| &line[s..e]) };
            for e in &rule.emits {
                let v = e.scale.apply(match e.value {
                    Value::Const(c) => c,
                    Value::Cap(i) => match cap(i) {
                        // An optional group that did not take part: nothing to record.
                        None => continue,
                        Some(s) => match s.parse::<f64>() {
                            Ok(v) if v.is_finite() => v,
                            _ => {
                                out.reject();
                                continue;
                            }
                        },
                    },
                });
                let mut labels: Vec<Cow<'_, str>> = Vec::with_capacity(e.labels.len());
                for parts in &e.labels {
                    let value: Cow<'_, str> = match parts.as_slice() {
                        [Part::Cap(i)] => Cow::Borrowed(cap(*i).unwrap_or("")),
                        [Part::Lit(s)] => Cow::Borrowed(s.as_str()),
                        _ => {
                            let mut s = String::new();
                            for p in parts {
                                match p {
                                    Part::Lit(l) => s.push_str(l),
                                    Part::Cap(i) => s.push_str(cap(*i).unwrap_or("")),
                                }
                            }
                            Cow::Owned(s)
                        }
                    };
                    labels.push(value);
                }
                match e.op {
                    Op::Add => out.add(e.family, &labels, v),
                    Op::Set => out.set(e.family, &labels, v),
                    Op::Observe => out.observe(e.family, &labels, v),
                }
            }
            if rule.stop {
                break;
            }
        }
    }
}

impl LogPlugin for RegexLog {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        Self::from_config(config, families)
    }

    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
        for line in &batch.lines {
            self.line(line, out);
        }
        Ok(())
    }
}

weir_sdk::export_log_plugin!(RegexLog);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::__private::log_world::weir::plugin::types::Change;

    const NGINX: &str = r#"{
      "metrics": [
        {"name": "http_requests_total", "type": "counter", "labels": ["method", "status"]},
        {"name": "http_request_duration_seconds", "type": "histogram", "unit": "seconds",
         "buckets": [0.005, 0.1, 1]}
      ],
      "rules": [{"name": "access",
        "regex": "^\\S+ \\S+ \\S+ \\[[^\\]]*\\] \"(?P<method>[A-Z]+) [^\"]*\" (?P<status>\\d+) \\S+ \"[^\"]*\" \"[^\"]*\" (?P<rt>[\\d.]+)$",
        "emit": [{"metric": "http_requests_total"},
                 {"metric": "http_request_duration_seconds", "value": "rt"}]}]
    }"#;

    fn run(cfg: &str, lines: &[&str]) -> Output {
        let mut f = Families::default();
        let mut p = RegexLog::from_config(cfg, &mut f).expect("config");
        let mut out = Output::for_families(&f);
        for l in lines {
            p.line(l, &mut out);
        }
        out
    }

    #[test]
    fn counts_and_observes_with_implicit_labels() {
        let out = run(
            NGINX,
            &[
                r#"1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 12 "-" "curl" 0.000"#,
                r#"1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 12 "-" "curl" 0.250"#,
                "garbage",
            ],
        );
        let u = out.updates();
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].labels, vec!["GET".to_string(), "200".to_string()]);
        assert!(matches!(u[0].change, Change::Add(v) if v == 2.0));
        assert!(matches!(&u[1].change, Change::ObserveMany(vs) if vs == &vec![0.0, 0.25]));
    }

    #[test]
    fn init_errors_name_the_rule() {
        let mut f = Families::default();
        let bad_regex = r#"{"metrics":[{"name":"a_total","type":"counter"}],
            "rules":[{"name":"broken","regex":"(","emit":[{"metric":"a_total"}]}]}"#;
        let e = RegexLog::from_config(bad_regex, &mut f)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("rule \"broken\"") && e.contains("invalid regex"),
            "{e}"
        );

        let mut f = Families::default();
        let bad_label = r#"{"metrics":[{"name":"a_total","type":"counter","labels":["x"]}],
            "rules":[{"regex":"(?P<y>.)","emit":[{"metric":"a_total","labels":{"x":"${nope}"}}]}]}"#;
        let e = RegexLog::from_config(bad_label, &mut f)
            .err()
            .unwrap_or_default();
        assert!(e.contains("rules[0]") && e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn scale_and_templates() {
        let cfg = r#"{"metrics":[{"name":"t_seconds","type":"gauge","labels":["k"]}],
            "rules":[{"regex":"k=(?P<k>\\w+) ms=(?P<ms>\\d+)",
              "emit":[{"metric":"t_seconds","labels":{"k":"key_${k}"},"value":"ms","scale":0.001}]}]}"#;
        let out = run(cfg, &["k=a ms=1500", "k=b ms=x"]);
        assert_eq!(out.updates().len(), 1);
        assert_eq!(out.updates()[0].labels, vec!["key_a".to_string()]);
        assert!(matches!(out.updates()[0].change, Change::Set(v) if (v - 1.5).abs() < 1e-12));
    }

    #[test]
    fn scaled_values_on_bucket_bounds_are_the_bounds() {
        // Issue 13: 350 ms with scale 0.001 is le="0.35", not one bucket up.
        let cfg = r#"{"metrics":[{"name":"t_seconds","type":"histogram","buckets":[0.35,0.7,0.95]}],
            "rules":[{"regex":"took (?P<ms>[\\d.]+)ms",
              "emit":[{"metric":"t_seconds","value":"ms","scale":0.001}]}]}"#;
        let out = run(
            cfg,
            &["took 350ms", "took 700ms", "took 950ms", "took 0.35ms"],
        );
        match &out.updates()[0].change {
            Change::ObserveMany(vs) => assert_eq!(vs, &vec![0.35, 0.7, 0.95, 0.00035]),
            c => panic!("{c:?}"),
        }
    }
}
