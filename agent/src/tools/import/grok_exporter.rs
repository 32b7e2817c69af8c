//! grok_exporter config files (YAML, config_version 2 and 3) to one
//! regex-log pipeline.
use super::{metric_name, pipeline_name, toml_str, Emit, Metric, Pipeline, Report, Rule, Value};
use serde_norway::Value as Y;

/// Finds the lines of keys in the YAML text (the parsed value has none):
/// the first line at or after `from` whose text, trimmed of `- `, starts
/// with `key:`.
struct Lines<'a> {
    lines: Vec<&'a str>,
}

impl Lines<'_> {
    fn find(&self, from: usize, until: usize, key: &str) -> Option<usize> {
        let want = format!("{key}:");
        (from..until.min(self.lines.len()))
            .find(|&i| {
                let t = self.lines[i].trim_start();
                let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
                t.starts_with(&want)
            })
            .map(|i| i + 1)
    }
    /// The 1-based line of each item of the top-level `metrics:` list.
    fn metric_items(&self) -> Vec<usize> {
        let Some(start) = self.find(0, usize::MAX, "metrics") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut indent = None;
        for (i, l) in self.lines.iter().enumerate().skip(start) {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let ind = l.len() - t.len();
            if ind == 0 && !t.starts_with('-') {
                break;
            }
            if t.starts_with("- ") || t == "-" {
                match indent {
                    None => {
                        indent = Some(ind);
                        out.push(i + 1);
                    }
                    Some(x) if x == ind => out.push(i + 1),
                    _ => {}
                }
            }
        }
        out
    }
}

fn s(v: &Y) -> Option<String> {
    match v {
        Y::String(s) => Some(s.clone()),
        Y::Number(n) => Some(n.to_string()),
        Y::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A grok_exporter template as a regex-log label template:
/// `{{.name}}` -> `${name}`; Err with what cannot be.
fn label_template(t: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = t;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!("template \"{t}\": `{{{{` not closed"));
        };
        let inner = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        match inner.strip_prefix('.') {
            Some(name)
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                if name == "logfile" {
                    return Err(format!(
                        "template \"{t}\": `{{{{.logfile}}}}` (one pipeline per file with a \
                         constant label instead)"
                    ));
                }
                out.push_str(&format!("${{{name}}}"));
            }
            _ => {
                return Err(format!(
                    "template \"{t}\": `{{{{{inner}}}}}` (only `{{{{.field}}}}` translates)"
                ))
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A `value` template as a regex-log value: `{{.val}}`, or `{{divide
/// .val 1000}}` / `multiply` / `add` / `subtract` with a field or number.
fn value_template(t: &str) -> Result<Value, String> {
    let tr = t.trim();
    let inner = tr
        .strip_prefix("{{")
        .and_then(|x| x.strip_suffix("}}"))
        .map(str::trim)
        .ok_or_else(|| format!("value \"{t}\": not one `{{{{...}}}}` template"))?;
    let arg = |a: &str| -> Result<String, String> {
        if let Some(f) = a.strip_prefix('.') {
            if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Ok(f.to_string());
            }
        } else if a.parse::<f64>().is_ok_and(|n| n.is_finite()) {
            return Ok(a.to_string());
        }
        Err(format!(
            "value \"{t}\": `{a}` is neither `.field` nor a number"
        ))
    };
    let words: Vec<&str> = inner.split_whitespace().collect();
    match words.as_slice() {
        [one] => Ok(Value::Expr(arg(one)?)),
        [f, a, b] => {
            let op = match *f {
                "divide" => "/",
                "multiply" => "*",
                "add" => "+",
                "subtract" => "-",
                other => return Err(format!("value \"{t}\": the function `{other}`")),
            };
            Ok(Value::Expr(format!("{} {op} {}", arg(a)?, arg(b)?)))
        }
        _ => Err(format!(
            "value \"{t}\": only `{{{{.field}}}}` and one arithmetic function translate"
        )),
    }
}

pub(super) fn translate(file: &str, text: &str) -> (Vec<Pipeline>, Vec<Report>) {
    let lines = Lines {
        lines: text.lines().collect(),
    };
    let mut reports = Vec::new();
    let mut top_notes = Vec::new();
    let mut report = |line: usize, what: String, notes: &mut Vec<String>| {
        notes.push(format!("not translated: {file}:{line}: {what}"));
        reports.push(Report {
            file: file.to_string(),
            line,
            what,
        });
    };
    let name = pipeline_name(file);
    let doc: Y = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            report(line, format!("not a YAML document: {e}"), &mut top_notes);
            let p = Pipeline {
                name,
                from_file: file.to_string(),
                notes: top_notes,
                ..Default::default()
            };
            return (vec![p], reports);
        }
    };
    let top = doc.as_mapping().cloned().unwrap_or_default();
    let mut source = "{ type = \"stdin\" }".to_string();
    let mut patterns: Vec<(String, String)> = Vec::new();
    for (k, v) in &top {
        let key = s(k).unwrap_or_default();
        let kline = lines.find(0, usize::MAX, &key).unwrap_or(1);
        match key.as_str() {
            "global" => {
                for (gk, _) in v.as_mapping().into_iter().flatten() {
                    let gk = s(gk).unwrap_or_default();
                    if gk != "config_version" {
                        let l = lines.find(kline - 1, usize::MAX, &gk).unwrap_or(kline);
                        report(l, format!("global.{gk}"), &mut top_notes);
                    }
                }
            }
            "input" => {
                let m = v.as_mapping().cloned().unwrap_or_default();
                let get = |k: &str| m.get(Y::String(k.into()));
                let kind = get("type").and_then(s).unwrap_or_else(|| "file".into());
                match kind.as_str() {
                    "file" => {
                        let mut paths: Vec<String> = Vec::new();
                        if let Some(p) = get("path").and_then(s) {
                            paths.push(p);
                        }
                        if let Some(Y::Sequence(ps)) = get("paths") {
                            paths.extend(ps.iter().filter_map(s));
                        }
                        if paths.is_empty() {
                            report(
                                kline,
                                "input of type file without path".into(),
                                &mut top_notes,
                            );
                            paths.push("/var/log/CHANGE-ME.log".into());
                        }
                        let ps: Vec<String> = paths.iter().map(|p| toml_str(p)).collect();
                        let start = if get("readall").and_then(Y::as_bool) == Some(true) {
                            ", start_at = \"beginning\""
                        } else {
                            ""
                        };
                        source =
                            format!("{{ type = \"file\", paths = [{}]{start} }}", ps.join(", "));
                    }
                    "stdin" => {}
                    other => {
                        report(
                            kline,
                            format!(
                                "input type {other} (weir reads files, journald, stdin, commands)"
                            ),
                            &mut top_notes,
                        );
                    }
                }
                for (ik, iv) in &m {
                    let ik = s(ik).unwrap_or_default();
                    let l = lines.find(kline - 1, usize::MAX, &ik).unwrap_or(kline);
                    match ik.as_str() {
                        "type" | "path" | "paths" | "readall" => {}
                        "fail_on_missing_logfile" if iv.as_bool() != Some(true) => {}
                        other => report(l, format!("input.{other}"), &mut top_notes),
                    }
                }
            }
            "grok" => {
                // config_version 2: patterns_dir, additional_patterns.
                for (gk, gv) in v.as_mapping().into_iter().flatten() {
                    let gk = s(gk).unwrap_or_default();
                    let l = lines.find(kline - 1, usize::MAX, &gk).unwrap_or(kline);
                    match gk.as_str() {
                        "additional_patterns" => {
                            for p in gv.as_sequence().into_iter().flatten() {
                                add_pattern(p, l, &mut patterns, &mut |l, w| {
                                    report(l, w, &mut top_notes)
                                });
                            }
                        }
                        other => report(
                            l,
                            format!("grok.{other} (pattern files: add the patterns you use to `patterns`)"),
                            &mut top_notes,
                        ),
                    }
                }
            }
            "grok_patterns" => {
                for p in v.as_sequence().into_iter().flatten() {
                    add_pattern(p, kline, &mut patterns, &mut |l, w| {
                        report(l, w, &mut top_notes)
                    });
                }
            }
            "imports" => {
                for _ in v.as_sequence().into_iter().flatten() {
                    report(
                        kline,
                        "imports (pattern or metric files: add the patterns you use to `patterns`, \
                         the metrics to this file)"
                            .into(),
                        &mut top_notes,
                    );
                }
            }
            "metrics" => {}
            "server" => report(
                kline,
                "server (weir's listen address is agent-wide: `[server] listen` in one file of \
                 the config directory)"
                    .into(),
                &mut top_notes,
            ),
            other => report(kline, format!("the key `{other}`"), &mut top_notes),
        }
    }
    let items = lines.metric_items();
    let mut metrics: Vec<Metric> = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    let list = top
        .get(Y::String("metrics".into()))
        .and_then(Y::as_sequence)
        .cloned()
        .unwrap_or_default();
    for (i, m) in list.iter().enumerate() {
        let line = items.get(i).copied().unwrap_or(1);
        let until = items.get(i + 1).map(|n| n - 1).unwrap_or(usize::MAX);
        let at = |k: &str| lines.find(line - 1, until, k).unwrap_or(line);
        let mut notes = Vec::new();
        let Some(map) = m.as_mapping() else {
            report(line, "a metric that is not a mapping".into(), &mut notes);
            top_notes.extend(notes);
            continue;
        };
        let get = |k: &str| map.get(Y::String(k.into()));
        let mname = get("name").and_then(s).unwrap_or_default();
        let kind = get("type").and_then(s).unwrap_or_default();
        let Some(matched) = get("match").and_then(s) else {
            report(
                line,
                format!("metric \"{mname}\" without match"),
                &mut notes,
            );
            top_notes.extend(notes);
            continue;
        };
        let kind_out = match kind.as_str() {
            "counter" => "counter",
            "gauge" => "gauge",
            "histogram" => "histogram",
            "summary" => {
                report(
                    at("type"),
                    format!("summary \"{mname}\" (weir has no summaries: make it a histogram)"),
                    &mut notes,
                );
                top_notes.extend(notes);
                continue;
            }
            other => {
                report(at("type"), format!("metric type \"{other}\""), &mut notes);
                top_notes.extend(notes);
                continue;
            }
        };
        let exposed = metric_name(&mname);
        if exposed != mname || mname.is_empty() {
            report(
                at("name"),
                format!("the name \"{mname}\" is no Prometheus name: written as \"{exposed}\""),
                &mut notes,
            );
        }
        let mut labels = Vec::new();
        let mut emit = Emit {
            metric: exposed.clone(),
            ..Default::default()
        };
        let mut ok = true;
        if let Some(Y::Mapping(ls)) = get("labels") {
            for (lk, lv) in ls {
                let lk = s(lk).unwrap_or_default();
                match s(lv)
                    .ok_or_else(|| format!("label {lk}: not a string"))
                    .and_then(|t| label_template(&t))
                {
                    Ok(t) => {
                        labels.push(lk.clone());
                        emit.labels.push((lk, t));
                    }
                    Err(w) => {
                        // The family goes on without that label.
                        report(at(&lk), format!("label {lk} left out: {w}"), &mut notes);
                    }
                }
            }
        }
        let cumulative = get("cumulative").and_then(Y::as_bool).unwrap_or(false);
        match get("value").and_then(s) {
            Some(v) => match value_template(&v) {
                Ok(v) => emit.value = Some(v),
                Err(w) => {
                    report(at("value"), w, &mut notes);
                    ok = false;
                }
            },
            None if kind_out == "counter" => {}
            None => {
                report(
                    line,
                    format!("{kind} \"{mname}\" without value"),
                    &mut notes,
                );
                ok = false;
            }
        }
        if kind_out == "gauge" {
            emit.op = Some(if cumulative { "add" } else { "set" });
        }
        let buckets = match get("buckets") {
            Some(Y::Sequence(b)) => {
                let v: Vec<f64> = b
                    .iter()
                    .filter_map(Y::as_f64)
                    .filter(|n| n.is_finite())
                    .collect();
                if v.len() != b.len() {
                    report(
                        at("buckets"),
                        "buckets that are not numbers".into(),
                        &mut notes,
                    );
                }
                Some(v)
            }
            _ => None,
        };
        for (k, _) in map {
            let k = s(k).unwrap_or_default();
            match k.as_str() {
                "type" | "name" | "help" | "match" | "labels" | "value" | "buckets" => {}
                "cumulative" if kind_out == "gauge" => {}
                "retention" => report(
                    at(&k),
                    "retention (series are not expired; `max_series` bounds them)".into(),
                    &mut notes,
                ),
                "delete_match" | "delete_labels" => {
                    report(at(&k), format!("{k} (deleting series)"), &mut notes)
                }
                "path" | "paths" => report(
                    at(&k),
                    format!("{k} (a metric for some files only: a pipeline of its own)"),
                    &mut notes,
                ),
                other => report(
                    at(other),
                    format!("the key `{other}` of a metric"),
                    &mut notes,
                ),
            }
        }
        metrics.push(Metric {
            name: exposed,
            kind: kind_out,
            help: get("help").and_then(s).unwrap_or_default(),
            labels,
            buckets,
            notes,
        });
        if !ok {
            if let Some(m) = metrics.last_mut() {
                m.notes.push("no rule updates it: see above".into());
            }
            continue;
        }
        // Metrics sharing a match become one rule with several actions.
        match rules
            .iter_mut()
            .find(|r| r.grok.as_deref() == Some(matched.as_str()))
        {
            Some(r) => r.emits.push(emit),
            None => rules.push(Rule {
                name: format!("{}:{line}", short(file)),
                grok: Some(matched),
                emits: vec![emit],
                ..Default::default()
            }),
        }
    }
    if list.is_empty() {
        report(1, "no metrics".into(), &mut top_notes);
    }
    let p = Pipeline {
        name,
        from_file: file.to_string(),
        source,
        notes: top_notes,
        metrics,
        patterns,
        rules,
        trailer: Vec::new(),
        caveats: Vec::new(),
    };
    (vec![p], reports)
}

fn short(file: &str) -> String {
    std::path::Path::new(file)
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| file.to_string())
}

/// `NAME pattern` lines of `additional_patterns` / `grok_patterns`.
fn add_pattern(
    p: &Y,
    line: usize,
    patterns: &mut Vec<(String, String)>,
    report: &mut dyn FnMut(usize, String),
) {
    let Some(t) = s(p) else {
        report(line, "a grok pattern that is not a string".into());
        return;
    };
    let t = t.trim();
    match t.split_once(char::is_whitespace) {
        Some((name, pat))
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            patterns.push((name.to_string(), pat.trim().to_string()));
        }
        _ => report(line, format!("grok pattern \"{t}\" is not `NAME pattern`")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{import_text, From};
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(label_template("{{.user}}").as_deref(), Ok("${user}"));
        assert_eq!(
            label_template("a_{{ .x }}_{{.y}}").as_deref(),
            Ok("a_${x}_${y}")
        );
        assert!(label_template("{{base .logfile}}").is_err());
        assert!(label_template("{{.logfile}}").is_err());
        assert!(label_template("{{gsub .x \"a\" \"b\"}}").is_err());
        assert_eq!(value_template("{{.val}}"), Ok(Value::Expr("val".into())));
        assert_eq!(
            value_template("{{divide .ms 1000}}"),
            Ok(Value::Expr("ms / 1000".into()))
        );
        assert_eq!(
            value_template("{{multiply .s 1000}}"),
            Ok(Value::Expr("s * 1000".into()))
        );
        assert!(value_template("{{if .x}}1{{end}}").is_err());
    }

    #[test]
    fn a_config_translates_with_reports_at_lines() {
        let cfg = r#"global:
  config_version: 3
input:
  type: file
  path: /var/log/jobs.log
  readall: true
grok_patterns:
  - 'JOB [a-z-]+'
metrics:
  - type: counter
    name: jobs_total
    help: Job runs.
    match: 'job=%{JOB:job} status=%{WORD:status}'
    labels:
      job: '{{.job}}'
      status: '{{.status}}'
  - type: gauge
    name: jobs_rows
    help: Rows.
    match: 'rows=%{NUMBER:rows}'
    value: '{{.rows}}'
    retention: 48h
  - type: summary
    name: jobs_seconds
    help: Time.
    match: 'ms=%{NUMBER:ms}'
    value: '{{divide .ms 1000}}'
"#;
        let i = import_text(From::GrokExporter, "g.yml", cfg);
        toml::from_str::<toml::Table>(&i.toml).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
        let got: Vec<(usize, &str)> = i
            .reports
            .iter()
            .map(|r| (r.line, r.what.as_str()))
            .collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, 22, "{got:?}");
        assert!(got[0].1.starts_with("retention"), "{got:?}");
        assert_eq!(got[1].0, 23, "{got:?}");
        assert!(i.toml.contains("source = { type = \"file\", paths = ['/var/log/jobs.log'], start_at = \"beginning\" }"), "{}", i.toml);
        assert!(i.toml.contains("JOB = '[a-z-]+'"), "{}", i.toml);
        assert!(
            i.toml
                .contains("labels = { job = '${job}', status = '${status}' }"),
            "{}",
            i.toml
        );
        assert!(
            i.toml
                .contains("{ metric = 'jobs_rows', value = 'rows', op = \"set\" }"),
            "{}",
            i.toml
        );
    }

    #[test]
    fn never_panics() {
        let cfg =
            "metrics:\n  - type: counter\n    name: a\n    match: 'x'\n    labels: {a: '{{.b'}\n";
        for n in 0..=cfg.len() {
            let _ = import_text(From::GrokExporter, "g.yml", &cfg[..n]);
        }
        for junk in [
            "",
            "- 1\n- 2",
            "metrics: 3",
            "metrics: [1, {a: b}]",
            "input: [1]",
            "{{{{",
            "\u{0}",
        ] {
            let i = import_text(From::GrokExporter, "g.yml", junk);
            toml::from_str::<toml::Table>(&i.toml).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
        }
    }
}
