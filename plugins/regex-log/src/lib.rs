//! regex-log: log lines to metrics with regular expressions, the way mtail
//! and grok_exporter users work.
//!
//! Settings (JSON, from the pipeline's `[pipeline.NAME.config]` table):
//!
//! - `metrics`: the families, each `{name, type, help, unit, labels, buckets,
//!   initial}` (see `weir_sdk::spec`): a counter named without `_total` is
//!   exposed with it; `initial` lists label sets created at 0, and a counter
//!   without labels starts at 0 unless `initial = []`.
//! - `patterns`: named grok patterns for `grok` rules (see `grok.rs`).
//! - `rules`: each `{name, regex or grok, else, stop, transform, emit}`; a rule whose
//!   regex matches a line runs its `emit` actions (there may be none). Every
//!   rule is tried on every line unless a matching rule says `stop = true`.
//!   An `else = true` rule is tried only when no earlier rule matched the
//!   line; without a `regex` it takes every such line.
//! - `transform`: capture name to a step or a list of steps applied to the
//!   captured text before use: `"lower"`, `"upper"`,
//!   `{replace = REGEX, with = TEXT}` (every match; `$1`, `${name}` in TEXT).
//! - `emit`: `{metric, labels, value, scale, op}`. `labels` maps a label name
//!   to a template (`"${method}"`, `"GET"`, `"code_${status}"`); a label left
//!   out takes the capture of the same name. `value` is a number (default 1)
//!   or an expression over captures (`"bytes"`, `"ms / 1000"`,
//!   `"bytes_out - bytes_body"`; `+ - * /` and parentheses), each step exact
//!   in decimal; `scale` multiplies it (milliseconds to seconds: 0.001),
//!   exactly in decimal, so 350 ms is the 0.35 a bucket bound says (see
//!   `weir_sdk::units`). `op` is `add` (counters), `observe` (histograms),
//!   `set` or `add` (gauges; `set` by default).
mod grok;

use regex::{CaptureLocations, Regex};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use weir_sdk::spec::Zeros;
use weir_sdk::units::{exact, Op as Arith};
use weir_sdk::{Batch, Families, FamilyId, Kind, LogPlugin, Output, Scale};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    metrics: Vec<weir_sdk::spec::MetricSpec>,
    #[serde(default)]
    rules: Vec<RuleConfig>,
    /// Named grok patterns for `%{NAME}` in `grok` rules, before the
    /// standard library.
    #[serde(default)]
    patterns: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    grok: Option<String>,
    #[serde(default, rename = "else")]
    otherwise: bool,
    #[serde(default)]
    stop: bool,
    /// Capture name to a step or a list of steps; read by hand so that
    /// errors name the key.
    #[serde(default)]
    transform: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    emit: Vec<EmitConfig>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ValueConfig {
    Number(f64),
    Expr(String),
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

/// A value: a number, a capture, or arithmetic over them.
#[derive(Debug, PartialEq)]
enum Expr {
    Num(f64),
    Cap(usize),
    Neg(Box<Expr>),
    Bin(Arith, Box<Expr>, Box<Expr>),
}

/// Why a value could not be had.
enum NoValue {
    /// An optional group that did not take part: nothing to record.
    Absent,
    /// Not a number, a division by zero, not finite: the line is rejected.
    Bad,
}

impl Expr {
    fn eval<'a>(&self, cap: &impl Fn(usize) -> Option<&'a str>) -> Result<f64, NoValue> {
        match self {
            Expr::Num(n) => Ok(*n),
            Expr::Cap(i) => match cap(*i) {
                None => Err(NoValue::Absent),
                Some(s) => match s.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(v),
                    _ => Err(NoValue::Bad),
                },
            },
            Expr::Neg(e) => Ok(-e.eval(cap)?),
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval(cap)?, b.eval(cap)?);
                match exact(*op, a, b) {
                    Some(v) if v.is_finite() => Ok(v),
                    _ => Err(NoValue::Bad),
                }
            }
        }
    }
}

/// Parse a value expression: numbers, capture names (`ms` or `${ms}`),
/// `+ - * /`, unary minus and parentheses, with the usual precedence.
fn parse_expr(text: &str, caps: &HashMap<&str, usize>) -> Result<Expr, String> {
    #[derive(Debug, PartialEq)]
    enum Tok<'a> {
        Num(f64),
        Name(&'a str),
        Sym(u8),
    }
    let mut toks = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() || c == b'.' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let t = &text[start..i];
            let n: f64 = t
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| format!("\"{t}\" is not a finite number (in \"{text}\")"))?;
            toks.push(Tok::Num(n));
        } else if c == b'$' {
            let rest = &text[i..];
            let end = rest
                .strip_prefix("${")
                .and_then(|r| r.find('}'))
                .ok_or_else(|| format!("\"$\" not followed by {{name}} (in \"{text}\")"))?;
            toks.push(Tok::Name(&rest[2..2 + end]));
            i += end + 3;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            toks.push(Tok::Name(&text[start..i]));
        } else if b"+-*/()".contains(&c) {
            toks.push(Tok::Sym(c));
            i += 1;
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(format!(
                "unexpected \"{ch}\" in \"{text}\" (a value is a number, a capture name, or \
                 arithmetic over them with + - * / and parentheses)"
            ));
        }
    }

    struct P<'t, 'a> {
        toks: &'t [Tok<'a>],
        at: usize,
        caps: &'t HashMap<&'t str, usize>,
        text: &'t str,
    }
    impl P<'_, '_> {
        fn peek(&self) -> Option<&Tok<'_>> {
            self.toks.get(self.at)
        }
        fn sum(&mut self) -> Result<Expr, String> {
            let mut e = self.product()?;
            while let Some(Tok::Sym(c @ (b'+' | b'-'))) = self.peek() {
                let op = if *c == b'+' { Arith::Add } else { Arith::Sub };
                self.at += 1;
                e = Expr::Bin(op, Box::new(e), Box::new(self.product()?));
            }
            Ok(e)
        }
        fn product(&mut self) -> Result<Expr, String> {
            let mut e = self.unary()?;
            while let Some(Tok::Sym(c @ (b'*' | b'/'))) = self.peek() {
                let op = if *c == b'*' { Arith::Mul } else { Arith::Div };
                self.at += 1;
                e = Expr::Bin(op, Box::new(e), Box::new(self.unary()?));
            }
            Ok(e)
        }
        fn unary(&mut self) -> Result<Expr, String> {
            match self.peek() {
                Some(Tok::Sym(b'-')) => {
                    self.at += 1;
                    Ok(Expr::Neg(Box::new(self.unary()?)))
                }
                Some(Tok::Sym(b'+')) => {
                    self.at += 1;
                    self.unary()
                }
                _ => self.atom(),
            }
        }
        fn atom(&mut self) -> Result<Expr, String> {
            let text = self.text;
            let t = self.toks.get(self.at);
            self.at += 1;
            match t {
                Some(Tok::Num(n)) => Ok(Expr::Num(*n)),
                Some(Tok::Name(n)) => match self.caps.get(n) {
                    Some(i) => Ok(Expr::Cap(*i)),
                    None => Err(format!(
                        "names capture \"{n}\", which the regex does not have (in \"{text}\")"
                    )),
                },
                Some(Tok::Sym(b'(')) => {
                    let e = self.sum()?;
                    match self.toks.get(self.at) {
                        Some(Tok::Sym(b')')) => {
                            self.at += 1;
                            Ok(e)
                        }
                        _ => Err(format!("unclosed \"(\" in \"{text}\"")),
                    }
                }
                Some(Tok::Sym(c)) => Err(format!(
                    "\"{}\" where a number or capture was expected in \"{text}\"",
                    *c as char
                )),
                None if text.trim().is_empty() => Err("empty value".to_string()),
                None => Err(format!(
                    "\"{text}\" ends where a number or capture was expected"
                )),
            }
        }
    }
    let mut p = P {
        toks: &toks,
        at: 0,
        caps,
        text,
    };
    let e = p.sum()?;
    if let Some(t) = toks.get(p.at) {
        let what = match t {
            Tok::Sym(c) => format!("\"{}\"", *c as char),
            Tok::Num(n) => format!("the number {n}"),
            Tok::Name(n) => format!("\"{n}\""),
        };
        return Err(format!("unexpected {what} in \"{text}\""));
    }
    Ok(e)
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
    value: Expr,
    scale: Scale,
    op: Op,
}

/// A transform step on a capture's text.
enum Step {
    Lower,
    Upper,
    Replace(Regex, String),
}

impl Step {
    fn apply<'a>(&self, s: Cow<'a, str>) -> Cow<'a, str> {
        let changed = match self {
            Step::Lower => s.to_lowercase(),
            Step::Upper => s.to_uppercase(),
            Step::Replace(re, with) => match re.replace_all(&s, with.as_str()) {
                Cow::Borrowed(_) => return s,
                Cow::Owned(o) => o,
            },
        };
        if changed == *s {
            s
        } else {
            Cow::Owned(changed)
        }
    }
}

struct Matcher {
    regex: Regex,
    locs: CaptureLocations,
    /// Group index of a grok capture name used more than once -> the
    /// later groups of that name, tried in order when it did not take part.
    alternates: HashMap<usize, Vec<usize>>,
}

struct Rule {
    /// `None`: an `else` rule without a regex, which takes every line it
    /// is tried on.
    matcher: Option<Matcher>,
    otherwise: bool,
    stop: bool,
    /// (capture index, steps), applied in order.
    transforms: Vec<(usize, Vec<Step>)>,
    /// The transformed text of each capture, for this line.
    scratch: Vec<Option<String>>,
    emits: Vec<Emit>,
}

/// The plugin: compiled rules.
pub struct RegexLog {
    rules: Vec<Rule>,
    zeros: Zeros,
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

/// One transform step as written: `"lower"`, `"upper"` or
/// `{replace = REGEX, with = TEXT}`.
fn parse_step(v: &serde_json::Value, key: &str) -> Result<Step, String> {
    const FORMS: &str = "\"lower\", \"upper\" or { replace = 'REGEX', with = 'TEXT' }";
    match v {
        serde_json::Value::String(s) => match s.as_str() {
            "lower" => Ok(Step::Lower),
            "upper" => Ok(Step::Upper),
            other => Err(format!("{key}: unknown transform \"{other}\" ({FORMS})")),
        },
        serde_json::Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| *k != "replace" && *k != "with") {
                return Err(format!("{key}: unknown key \"{k}\" ({FORMS})"));
            }
            let pattern = match m.get("replace") {
                Some(serde_json::Value::String(s)) => s,
                Some(_) => return Err(format!("{key}.replace: must be a string (a regex)")),
                None => return Err(format!("{key}: a table needs replace = 'REGEX' ({FORMS})")),
            };
            let with = match m.get("with") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(_) => return Err(format!("{key}.with: must be a string")),
                None => return Err(format!("{key}: replace needs with = 'TEXT' (may be '')")),
            };
            let re =
                Regex::new(pattern).map_err(|e| format!("{key}.replace: invalid regex: {e}"))?;
            Ok(Step::Replace(re, with))
        }
        _ => Err(format!("{key}: a transform is {FORMS}, or a list of them")),
    }
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
        if let Some(k) = cfg
            .patterns
            .keys()
            .find(|k| k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(format!(
                "patterns.{k}: a pattern name is letters, digits and _ (for %{{NAME}})"
            ));
        }
        let library = grok::Library::new(&cfg.patterns);
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let what = rule_name(i, r);
            let named = match &r.name {
                Some(n) => format!(" (rule \"{n}\")"),
                None => String::new(),
            };
            let (source, alternates) = match (&r.regex, &r.grok) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "rules[{i}].grok: give regex or grok, not both{named}"
                    ))
                }
                (Some(re), None) => (Some((re.clone(), "regex")), Vec::new()),
                (None, Some(g)) => {
                    let x = grok::expand(g, &library)
                        .map_err(|m| format!("rules[{i}].grok: {m}{named}"))?;
                    (Some((x.regex, "grok")), x.alternates)
                }
                (None, None) => (None, Vec::new()),
            };
            let matcher = match source {
                Some((re, key)) => {
                    let regex = Regex::new(&re).map_err(|e| {
                        // An expanded grok pattern can be thousands of
                        // characters: say what is wrong, not all of it.
                        let e = e.to_string();
                        let e = match key {
                            "grok" => e.lines().last().unwrap_or_default().to_string(),
                            _ => e,
                        };
                        format!("rules[{i}].{key}: invalid regex{named}: {e}")
                    })?;
                    let locs = regex.capture_locations();
                    let index = |n: &str| regex.capture_names().position(|c| c == Some(n));
                    let mut alt: HashMap<usize, Vec<usize>> = HashMap::new();
                    for (name, hidden) in &alternates {
                        if let (Some(p), Some(h)) = (index(name), index(hidden)) {
                            alt.entry(p).or_default().push(h);
                        }
                    }
                    Some(Matcher {
                        regex,
                        locs,
                        alternates: alt,
                    })
                }
                None if r.otherwise => None,
                None => {
                    return Err(format!(
                        "{what}: no regex: give regex (or grok), or else = true for a rule that \
                         takes the lines no earlier rule matched"
                    ))
                }
            };
            let caps: HashMap<&str, usize> = match &matcher {
                Some(m) => m
                    .regex
                    .capture_names()
                    .enumerate()
                    .filter_map(|(idx, n)| n.map(|n| (n, idx)))
                    .filter(|(n, _)| !n.starts_with(grok::HIDDEN))
                    .collect(),
                None => HashMap::new(),
            };
            let mut transforms = Vec::new();
            for (name, steps) in &r.transform {
                let key = format!("rules[{i}].transform.{name}");
                let idx = *caps
                    .get(name.as_str())
                    .ok_or_else(|| format!("{key}: the regex has no capture named \"{name}\""))?;
                let steps = match steps {
                    serde_json::Value::Array(list) => list
                        .iter()
                        .enumerate()
                        .map(|(k, s)| parse_step(s, &format!("{key}[{k}]")))
                        .collect::<Result<Vec<_>, _>>()?,
                    one => vec![parse_step(one, &key)?],
                };
                transforms.push((idx, steps));
            }
            let mut emits = Vec::new();
            for (j, e) in r.emit.iter().enumerate() {
                let ewhat = format!("{what} emit[{j}]");
                let weir_sdk::spec::Declared {
                    id: family,
                    kind,
                    labels: label_names,
                    ..
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
                    None => Expr::Num(1.0),
                    Some(ValueConfig::Number(n)) => Expr::Num(*n),
                    Some(ValueConfig::Expr(text)) => parse_expr(text, &caps)
                        .map_err(|m| format!("rules[{i}].emit[{j}].value: {m}"))?,
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
                if *kind == Kind::Gauge && matches!(op, Op::Set) && e.value.is_none() {
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
            let ncaps = matcher.as_ref().map_or(0, |m| m.regex.captures_len());
            rules.push(Rule {
                matcher,
                otherwise: r.otherwise,
                stop: r.stop,
                transforms,
                scratch: vec![None; ncaps],
                emits,
            });
        }
        Ok(RegexLog {
            rules,
            zeros: Zeros::new(&by_name),
        })
    }

    /// Apply the rules to one line.
    pub fn line(&mut self, line: &str, out: &mut Output) {
        let mut matched = false;
        // A line counts once as rejected, however many of its values fail.
        let mut rejected = false;
        for rule in &mut self.rules {
            if rule.otherwise && matched {
                continue;
            }
            let m = match &mut rule.matcher {
                Some(m) => {
                    if m.regex.captures_read(&mut m.locs, line).is_none() {
                        continue;
                    }
                    Some(&*m)
                }
                None => None,
            };
            matched = true;
            let raw = |i: usize| -> Option<&str> {
                let m = m?;
                let span = m
                    .locs
                    .get(i)
                    .or_else(|| m.alternates.get(&i)?.iter().find_map(|&j| m.locs.get(j)))?;
                Some(&line[span.0..span.1])
            };
            for (i, steps) in &rule.transforms {
                rule.scratch[*i] = raw(*i).map(|s| {
                    steps
                        .iter()
                        .fold(Cow::Borrowed(s), |acc, st| st.apply(acc))
                        .into_owned()
                });
            }
            let scratch = &rule.scratch;
            let has_transforms = !rule.transforms.is_empty();
            let cap = |i: usize| -> Option<&str> {
                if has_transforms {
                    if let Some(Some(t)) = scratch.get(i) {
                        return Some(t.as_str());
                    }
                }
                raw(i)
            };
            for e in &rule.emits {
                let v = match e.value.eval(&cap) {
                    Ok(v) => e.scale.apply(v),
                    Err(NoValue::Absent) => continue,
                    Err(NoValue::Bad) => {
                        rejected = true;
                        continue;
                    }
                };
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
        if rejected {
            out.reject();
        }
    }
}

impl LogPlugin for RegexLog {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        Self::from_config(config, families)
    }

    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
        // The first call for each origin creates the `initial` series at 0
        // (the host makes a series at its first update, with the origin's
        // source labels; adding 0 leaves one it has as is).
        self.zeros.emit(&batch.origin, out);
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

    fn err(cfg: &str) -> String {
        RegexLog::from_config(cfg, &mut Families::default())
            .err()
            .unwrap_or_default()
    }

    fn batch(p: &mut RegexLog, f: &Families, lines: &[&str]) -> Output {
        let mut out = Output::for_families(f);
        let b = Batch {
            origin: "t".into(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        };
        p.on_lines(&b, &mut out).expect("on_lines");
        out
    }

    fn adds(out: &Output) -> Vec<(u32, Vec<String>, f64)> {
        out.updates()
            .iter()
            .map(|u| match u.change {
                Change::Add(v) | Change::Set(v) | Change::Observe(v) => {
                    (u.family, u.labels.clone(), v)
                }
                ref c => panic!("{c:?}"),
            })
            .collect()
    }

    #[test]
    fn initial_series_are_created_at_zero_by_the_first_call_only() {
        let cfg = r#"{"metrics":[
            {"name":"errors_total","type":"counter"},
            {"name":"quiet_total","type":"counter","initial":[]},
            {"name":"requests_total","type":"counter","labels":["status"],
             "initial":[{"status":"200"},{"status":"500"}]},
            {"name":"queue","type":"gauge","initial":[{}]},
            {"name":"t_seconds","type":"histogram"}],
          "rules":[{"regex":"status=(?P<status>\\d+)","emit":[{"metric":"requests_total"}]}]}"#;
        let mut f = Families::default();
        let mut p = RegexLog::from_config(cfg, &mut f).expect("config");
        let out = batch(&mut p, &f, &["nothing"]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            adds(&out),
            vec![
                (0, s(&[]), 0.0),
                (2, s(&["200"]), 0.0),
                (2, s(&["500"]), 0.0),
                (3, s(&[]), 0.0)
            ]
        );
        let out = batch(&mut p, &f, &["status=200"]);
        assert_eq!(adds(&out), vec![(2, s(&["200"]), 1.0)]);
        // Another origin (a container log: other source labels) gets its own.
        let mut out = Output::for_families(&f);
        let b = Batch {
            origin: "other.log".into(),
            lines: vec!["nothing".into()],
        };
        p.on_lines(&b, &mut out).expect("on_lines");
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn initial_errors_name_the_key() {
        let e = err(
            r#"{"metrics":[{"name":"h","type":"histogram","initial":[{}]}],
            "rules":[{"regex":"x"}]}"#,
        );
        assert!(
            e.starts_with("metrics[0].initial: ") && e.contains("histogram"),
            "{e}"
        );
        let e = err(
            r#"{"metrics":[{"name":"a_total","type":"counter","labels":["s"],
            "initial":[{"s":"1"},{"x":"2"}]}], "rules":[{"regex":"x"}]}"#,
        );
        assert!(
            e.starts_with("metrics[0].initial[1]: \"x\" is not a label"),
            "{e}"
        );
        let e = err(
            r#"{"metrics":[{"name":"a_total","type":"counter","labels":["s", "t"],
            "initial":[{"s":"1"}]}], "rules":[{"regex":"x"}]}"#,
        );
        assert!(
            e.starts_with("metrics[0].initial[0]: no value for label \"t\""),
            "{e}"
        );
    }

    #[test]
    fn counters_without_total_are_exposed_with_it() {
        let cfg = r#"{"metrics":[{"name":"lines","type":"counter","unit":"","help":"Lines."}],
          "rules":[{"regex":"a","emit":[{"metric":"lines"}]},
                   {"regex":"b","emit":[{"metric":"lines_total","value":2}]}]}"#;
        let mut f = Families::default();
        let mut p = RegexLog::from_config(cfg, &mut f).expect("config");
        assert_eq!(f.name(FamilyId(0)), Some("lines_total"));
        let out = batch(&mut p, &f, &["ab"]);
        assert_eq!(adds(&out), vec![(0, vec![], 3.0)]);
        let e = err(
            r#"{"metrics":[{"name":"x","type":"counter"},{"name":"x_total","type":"counter"}],
            "rules":[{"regex":"x"}]}"#,
        );
        assert!(e.contains("metrics[1]") && e.contains("clashes"), "{e}");
    }

    #[test]
    fn else_rules_take_what_no_earlier_rule_matched() {
        let cfg = r#"{"metrics":[
            {"name":"a_total","type":"counter","initial":[]},
            {"name":"debug_total","type":"counter","initial":[]},
            {"name":"unparsed_total","type":"counter","initial":[]}],
          "rules":[
            {"regex":"^DEBUG","stop":true},
            {"regex":"^a","emit":[{"metric":"a_total"}]},
            {"regex":"^debug-like","else":true,"emit":[{"metric":"debug_total"}]},
            {"else":true,"emit":[{"metric":"unparsed_total"}]}]}"#;
        let mut f = Families::default();
        let mut p = RegexLog::from_config(cfg, &mut f).expect("config");
        let out = batch(
            &mut p,
            &f,
            &["DEBUG a", "a1", "junk", "debug-like", "junk", "a2"],
        );
        assert_eq!(
            adds(&out),
            vec![(0, vec![], 2.0), (2, vec![], 2.0), (1, vec![], 1.0)]
        );
        let e = err(r#"{"metrics":[],"rules":[{"emit":[]}]}"#);
        assert!(
            e.starts_with("rules[0]: no regex") && e.contains("else"),
            "{e}"
        );
        let e = err(
            r#"{"metrics":[{"name":"a_total","type":"counter","labels":["x"]}],
            "rules":[{"else":true,"emit":[{"metric":"a_total"}]}]}"#,
        );
        assert!(e.contains("label \"x\""), "{e}");
    }

    #[test]
    fn transforms_apply_to_captures_in_order() {
        let cfg = r#"{"metrics":[{"name":"r_total","type":"counter","labels":["method","path"]},
                                 {"name":"b_bytes","type":"gauge"}],
          "rules":[{"regex":"(?P<method>\\w+) (?P<path>\\S+) (?P<size>[\\d,]+)",
            "transform":{"method":"upper",
                         "path":["lower",{"replace":"/\\d+","with":"/:id"}],
                         "size":{"replace":",","with":""}},
            "emit":[{"metric":"r_total"},{"metric":"b_bytes","value":"size"}]}]}"#;
        let out = run(
            cfg,
            &["get /Users/42/Posts/7 1,234", "Get /users/1/posts/2 5"],
        );
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            adds(&out),
            vec![
                (0, s(&["GET", "/users/:id/posts/:id"]), 2.0),
                (1, s(&[]), 5.0)
            ]
        );
        for (t, want) in [
            (
                r#""title""#,
                "rules[0].transform.m: unknown transform \"title\"",
            ),
            (
                r#"{"replace":"("}"#,
                "rules[0].transform.m: replace needs with",
            ),
            (
                r#"[{"replace":"(","with":""}]"#,
                "rules[0].transform.m[0].replace: invalid regex",
            ),
            (r#"3"#, "rules[0].transform.m: a transform is"),
        ] {
            let e = err(&format!(
                r#"{{"metrics":[],"rules":[{{"regex":"(?P<m>.)","transform":{{"m":{t}}}}}]}}"#
            ));
            assert!(e.starts_with(want), "{t}: {e}");
        }
        let e = err(r#"{"metrics":[],"rules":[{"regex":"(?P<m>.)","transform":{"n":"lower"}}]}"#);
        assert!(e.starts_with("rules[0].transform.n: "), "{e}");
    }

    fn cfg_two_bad() -> &'static str {
        r#"{"metrics":[{"name":"g","type":"gauge"},{"name":"c_total","type":"counter","initial":[]}],
          "rules":[{"regex":"a=(?P<a>\\S+)","emit":[
            {"metric":"g","value":"a"},{"metric":"c_total"},{"metric":"g","value":"a * 2"}]}]}"#
    }

    #[test]
    fn values_are_arithmetic_over_captures() {
        let cfg = r#"{"metrics":[{"name":"h_seconds","type":"histogram","buckets":[0.35]},
                                 {"name":"body_bytes_total","type":"counter","initial":[]}],
          "rules":[{"regex":"out=(?P<out>\\S+) body=(?P<body>\\S+) ms=(?P<ms>\\S+)",
            "emit":[{"metric":"h_seconds","value":"ms / 1000"},
                    {"metric":"body_bytes_total","value":"(${out} - body) * 2 / -(-2)"}]}]}"#;
        let out = run(
            cfg,
            &[
                "out=1500 body=1150 ms=350",
                "out=0.3 body=0.1 ms=0.35",
                "out=x body=1 ms=1",
                "out=1 body=5 ms=1",
            ],
        );
        // 350 / 1000 is the bound 0.35 itself; 0.35 / 1000 is 0.00035;
        // 0.3 - 0.1 is 0.2 (not 0.19999999999999998); x is no number; 1 - 5 is a
        // negative counter add, which the host refuses.
        let u = out.updates();
        assert!(
            matches!(&u[0].change, Change::ObserveMany(v) if v == &vec![0.35, 0.00035, 0.001, 0.001]),
            "{:?}",
            u[0]
        );
        assert_eq!(
            u[1..]
                .iter()
                .map(|u| format!("{:?}", u.change))
                .collect::<Vec<_>>(),
            [
                "Change::Add(350.0)",
                "Change::Add(0.2)",
                "Change::Add(-4.0)"
            ]
        );
        assert_eq!(out.rejected(), 1);
        // Two values of one line fail: the line counts once.
        let out = run(cfg_two_bad(), &["a=x"]);
        assert_eq!((out.rejected(), out.len()), (1, 1));

        let cfg = r#"{"metrics":[{"name":"g","type":"gauge"}],
          "rules":[{"regex":"a=(?P<a>\\S+) b=(?P<b>\\S+)","emit":[{"metric":"g","value":"a / b"}]}]}"#;
        let out = run(
            cfg,
            &[
                "a=1 b=0",
                "a=1 b=-0",
                "a=1e308 b=1e-308",
                "a=1 b=4",
                "a=- b=1",
            ],
        );
        assert_eq!(out.rejected(), 4);
        assert!(matches!(out.updates()[0].change, Change::Set(v) if v == 0.25));

        for (v, want) in [
            ("a +", "ends where"),
            ("(a", "unclosed"),
            ("a b", "unexpected \"b\""),
            ("a % 2", "unexpected \"%\""),
            ("c * 2", "capture \"c\""),
            ("", "empty value"),
            ("1..2", "not a finite number"),
            ("1e999 * a", "not a finite number"),
            ("${a", "not followed"),
        ] {
            let e = err(&format!(
                r#"{{"metrics":[{{"name":"g","type":"gauge"}}],
                  "rules":[{{"regex":"(?P<a>.)","emit":[{{"metric":"g","value":"{v}"}}]}}]}}"#
            ));
            assert!(
                e.starts_with("rules[0].emit[0].value: ") && e.contains(want),
                "{v}: {e}"
            );
        }
    }

    #[test]
    fn grok_rules_expand_to_regexes() {
        let cfg = r#"{"metrics":[{"name":"c_total","type":"counter","labels":["client","path"]}],
          "patterns":{"API":"/api/%{WORD}"},
          "rules":[{"grok":"^(?:%{IPV4:client}|%{IPV6:client}) %{API:path}$",
                    "emit":[{"metric":"c_total"}]}]}"#;
        let out = run(cfg, &["10.0.0.1 /api/a", "2001:db8::1 /api/b", "x /api/c"]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            adds(&out),
            vec![
                (0, s(&["10.0.0.1", "/api/a"]), 1.0),
                (0, s(&["2001:db8::1", "/api/b"]), 1.0)
            ]
        );
        for (cfg, want) in [
            (
                r#"{"rules":[{"regex":"a","grok":"b"}]}"#,
                "rules[0].grok: give regex or grok, not both",
            ),
            (
                r#"{"rules":[{"grok":"%{NOPE}"}]}"#,
                "rules[0].grok: %{NOPE}: no grok pattern named",
            ),
            (
                r#"{"patterns":{"a-b":"x"},"rules":[{"grok":"x"}]}"#,
                "patterns.a-b: ",
            ),
            (
                r#"{"rules":[{"name":"r","grok":"%{HTTPD_COMBINEDLOG}("}]}"#,
                "rules[0].grok: invalid regex (rule \"r\"): error: unclosed group",
            ),
        ] {
            let e = err(cfg);
            assert!(e.starts_with(want) && e.len() < 200, "{cfg}: {e}");
        }
    }

    /// Lines per second natively, plain regex against grok (issue 19:
    /// within 20%). `WEIR_BENCH_LOG=FILE cargo test --release -p regex-log
    /// -- --ignored grok_throughput --nocapture` (FILE from
    /// bench/gen-nginx-log.py).
    #[test]
    #[ignore]
    fn grok_throughput() {
        let Some(path) = std::env::var_os("WEIR_BENCH_LOG") else {
            return;
        };
        let text = std::fs::read_to_string(path).expect("log");
        let lines: Vec<&str> = text.lines().collect();
        let metrics = r#""metrics":[
            {"name":"http_requests_total","type":"counter","labels":["method","status"]},
            {"name":"http_response_bytes_total","type":"counter"},
            {"name":"http_request_duration_seconds","type":"histogram",
             "buckets":[0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10]}]"#;
        let emit = r#""emit":[{"metric":"http_requests_total"},
            {"metric":"http_response_bytes_total","value":"bytes"},
            {"metric":"http_request_duration_seconds","value":"request_time"}]"#;
        let plain = r#""regex":"^\\S+ \\S+ \\S+ \\[[^\\]]*\\] \"(?P<method>[A-Z]+) [^\"]*\" (?P<status>\\d{3}) (?P<bytes>\\d+|-) \"[^\"]*\" \"[^\"]*\" (?P<request_time>[\\d.]+)$""#;
        // The plain regex's shape: the same text but for %{NOTSPACE} and %{NUMBER}.
        let grok_shape = r#""grok":"^%{NOTSPACE} %{NOTSPACE} %{NOTSPACE} \\[[^\\]]*\\] \"(?P<method>[A-Z]+) [^\"]*\" (?P<status>\\d{3}) (?:(?P<bytes>\\d+)|-) \"[^\"]*\" \"[^\"]*\" %{NUMBER:request_time}$""#;
        // What a grok user writes for the same captures: %{DATA} is .*?,
        // and %{INT} may start with -, like the - alternative after it.
        let grok_same = r#""grok":"^%{NOTSPACE} %{NOTSPACE} %{NOTSPACE} \\[%{DATA}\\] \"%{WORD:method} %{DATA}\" %{INT:status} (?:%{INT:bytes}|-) \"%{DATA}\" \"%{DATA}\" %{NUMBER:request_time}$""#;
        let grok_std = r#""grok":"^%{IPORHOST:client} %{USER:ident} %{USER:auth} \\[%{HTTPDATE:timestamp}\\] \"%{WORD:method} %{NOTSPACE:request} HTTP/%{NUMBER:httpversion}\" %{INT:status} (?:%{INT:bytes}|-) %{QS:referrer} %{QS:agent} %{NUMBER:request_time}$""#;
        let mut base = 0.0;
        for (name, rule) in [
            ("plain regex", plain),
            ("grok, the plain regex's shape", grok_shape),
            ("grok, DATA, WORD and INT", grok_same),
            ("grok, standard patterns", grok_std),
        ] {
            let cfg = format!(r#"{{{metrics},"rules":[{{{rule},{emit}}}]}}"#);
            let mut f = Families::default();
            let t0 = std::time::Instant::now();
            let mut p = RegexLog::from_config(&cfg, &mut f).expect("config");
            let init = t0.elapsed();
            let mut best = f64::MAX;
            let mut counted = 0.0;
            for _ in 0..3 {
                let mut out = Output::for_families(&f);
                let t = std::time::Instant::now();
                for l in &lines {
                    p.line(l, &mut out);
                }
                best = best.min(t.elapsed().as_secs_f64());
                counted = out
                    .updates()
                    .iter()
                    .filter(|u| u.family == 0)
                    .map(|u| match u.change {
                        Change::Add(v) => v,
                        _ => 0.0,
                    })
                    .sum();
            }
            if base == 0.0 {
                base = best;
            }
            println!(
                "{name}: {:.0} ns/line, {:.0}k lines/s, {:+.0}% time vs plain, init {:?}, {counted} requests counted",
                best / lines.len() as f64 * 1e9,
                lines.len() as f64 / best / 1e3,
                (best / base - 1.0) * 100.0,
                init
            );
            assert_eq!(counted, lines.len() as f64, "{name}");
        }
    }
}
