//! Prometheus text format 0.0.4.
//!
//! Rules, from the format's description
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>) and
//! its reference parser (`expfmt` in prometheus/common, which `promtool
//! check metrics` runs):
//!
//! - a family's `# HELP` and `# TYPE` lines name it; counters and gauges
//!   write one sample name (the family's), a histogram `x` writes
//!   `x_bucket`, `x_sum` and `x_count`, a summary `x` writes `x`, `x_sum`
//!   and `x_count`. The parser files a sample under the family whose
//!   name, or name plus one of those suffixes, it has: so no family may
//!   be named like another family's sample;
//! - HELP text escapes `\` as `\\` and a line feed as `\n`, nothing else;
//! - label values escape `\`, `"` and a line feed (`\\`, `\"`, `\n`);
//! - values are Go floats: `NaN`, `+Inf`, `-Inf` or a decimal.
use super::{fmt_f64, Conflicts, Labels, Planned, Sink, Written};
use crate::store::{FamilyDecl, Kind, Value};

/// The 0.0.4 naming rules (also those of remote write, which carries the
/// same sample names).
pub struct Rules;

impl super::Rules for Rules {
    const FORMAT: super::Format = super::Format::Text;
    fn names(decl: &FamilyDecl, _: Written) -> (String, Vec<String>) {
        (decl.name.clone(), sample_names(decl))
    }
}

/// Every sample name a family writes in 0.0.4 (and remote write), its
/// own name first.
pub fn sample_names(decl: &FamilyDecl) -> Vec<String> {
    let n = &decl.name;
    let suffixes: &[&str] = match decl.kind {
        Kind::Counter | Kind::Gauge => &[""],
        Kind::Histogram => &["", "_bucket", "_sum", "_count"],
        Kind::Summary => &["", "_sum", "_count"],
    };
    suffixes.iter().map(|s| format!("{n}{s}")).collect()
}

/// Append `help` escaped for a 0.0.4 `# HELP` line.
pub fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Append `v` escaped for a label value (0.0.4 and OpenMetrics alike).
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Append `{a="1",b="2",le="…"}` (nothing when there are no labels and
/// no `extra`); `extra` is `le` or `quantile` with its value.
pub fn write_labels(labels: Labels<'_>, extra: Option<(&str, &str)>, out: &mut String) {
    let mut first = true;
    for (k, v) in labels.iter().chain(extra) {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(v, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

/// Writes 0.0.4 text into a String.
#[derive(Default)]
pub struct Writer {
    /// The body so far.
    pub out: String,
    num: String,
}

impl Writer {
    fn line(&mut self, name: &str, suffix: &str, labels: Labels<'_>, extra: Option<(&str, &str)>) {
        self.out.push_str(name);
        self.out.push_str(suffix);
        write_labels(labels, extra, &mut self.out);
        self.out.push(' ');
    }

    fn value(&mut self, v: f64) {
        fmt_f64(v, &mut self.out);
        self.out.push('\n');
    }
}

impl Sink for Writer {
    fn family(&mut self, f: &Planned<'_>) {
        self.out.push_str("# HELP ");
        self.out.push_str(f.name);
        self.out.push(' ');
        escape_help(f.help, &mut self.out);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(f.name);
        self.out.push(' ');
        self.out.push_str(f.kind.as_str());
        self.out.push('\n');
    }

    fn series(
        &mut self,
        f: &Planned<'_>,
        labels: Labels<'_>,
        value: &Value,
        buckets: &[f64],
        _: &mut Conflicts,
    ) {
        let name = f.name;
        match value {
            Value::Counter { .. } => {
                self.line(name, "", labels, None);
                self.value(value.counter_value());
            }
            Value::Gauge(g) => {
                self.line(name, "", labels, None);
                self.value(*g);
            }
            Value::Histogram { counts, sum } => {
                let mut cum = 0u64;
                for (i, c) in counts.iter().enumerate() {
                    cum += c;
                    self.num.clear();
                    super::fmt_bound(
                        buckets.get(i).copied().unwrap_or(f64::INFINITY),
                        &mut self.num,
                    );
                    let le = std::mem::take(&mut self.num);
                    self.line(name, "_bucket", labels, Some(("le", &le)));
                    self.num = le;
                    self.value(cum as f64);
                }
                if !sum.is_nan() {
                    self.line(name, "_sum", labels, None);
                    self.value(*sum);
                }
                self.line(name, "_count", labels, None);
                self.value(cum as f64);
            }
            Value::Summary {
                quantiles,
                sum,
                count,
            } => {
                for (q, v) in quantiles {
                    self.num.clear();
                    super::fmt_bound(*q, &mut self.num);
                    let qs = std::mem::take(&mut self.num);
                    self.line(name, "", labels, Some(("quantile", &qs)));
                    self.num = qs;
                    self.value(*v);
                }
                self.line(name, "_sum", labels, None);
                self.value(*sum);
                self.line(name, "_count", labels, None);
                self.value(*count as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::super::to_text;
    use super::*;
    use crate::store::{Change, PipelineStore, Semantics};

    #[test]
    fn help_and_label_values_are_escaped_by_the_0_0_4_rules() {
        let mut s = PipelineStore::new(vec![], 10);
        s.declare(vec![FamilyDecl::validate(
            "app_matches_total".into(),
            Kind::Counter,
            "Lines matching \\d+ in C:\\logs.\nSecond line with a \"quote\".".into(),
            String::new(),
            vec!["path".into()],
            vec![],
            &[],
        )
        .expect("valid")]);
        s.apply(
            vec![(0, vec!["/a\"b\\c\nd".into()], Change::Add(3.0))],
            Semantics::Events,
        );
        let (t, _) = to_text(&[&s]);
        assert_eq!(
            t,
            "# HELP app_matches_total Lines matching \\\\d+ in C:\\\\logs.\\nSecond line with a \"quote\".\n\
             # TYPE app_matches_total counter\n\
             app_matches_total{path=\"/a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn histograms_and_summaries_write_their_samples() {
        let s = store(
            &[
                ("lat_seconds", Kind::Histogram, &[], &[0.1, 1.0]),
                ("rpc_seconds", Kind::Summary, &["x"], &[]),
            ],
            vec![
                (0, vec![], Change::Observe(vec![0.0, 0.5, 2.0])),
                (
                    1,
                    vec!["a"],
                    Change::SetSummary(vec![(0.5, 0.1), (0.99, f64::NAN)], 3.0, 7),
                ),
            ],
        );
        let (t, _) = to_text(&[&s]);
        assert_eq!(
            t,
            "# HELP lat_seconds Help of lat_seconds.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"1\"} 2\nlat_seconds_bucket{le=\"+Inf\"} 3\n\
             lat_seconds_sum 2.5\nlat_seconds_count 3\n\
             # HELP rpc_seconds Help of rpc_seconds.\n# TYPE rpc_seconds summary\n\
             rpc_seconds{x=\"a\",quantile=\"0.5\"} 0.1\nrpc_seconds{x=\"a\",quantile=\"0.99\"} NaN\n\
             rpc_seconds_sum{x=\"a\"} 3\nrpc_seconds_count{x=\"a\"} 7\n"
        );
    }
}
