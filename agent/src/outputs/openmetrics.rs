//! OpenMetrics 1.0 text format.
//!
//! Written here rather than by prometheus-client's encoder: that encoder
//! does not escape HELP text, has no summaries and no `unknown` type, and
//! gives no hold on the naming and value rules below, which weir must
//! apply to whatever its pipelines re-expose.
//!
//! Rules, from the OpenMetrics 1.0 specification
//! (<https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md>)
//! and the official Python parser (`prometheus_client.openmetrics.parser`):
//!
//! - a family is named without its type's suffix: a counter `x_total` is
//!   family `x` with sample `x_total`. A family's name plus each suffix its
//!   type may write (`_total`, `_created` for counters; `_bucket`,
//!   `_count`, `_sum`, `_created` for histograms; `_count`, `_sum`,
//!   `_created` for summaries) must not be another family's name or
//!   sample name in the same exposition. A counter that would clash is
//!   written as `unknown` under its full name (its samples keep their
//!   names); any other clashing family is left out;
//! - `# UNIT` only when the family name ends in `_` and the unit;
//! - HELP escapes `\`, `"` and a line feed (`\\`, `\"`, `\n`), and so do
//!   label values;
//! - histogram and summary `_sum` and `_count` are counters: never
//!   negative or NaN, and a histogram with a negative bucket bound has no
//!   `_sum` (and then no `_count`, which needs a `_sum`). Summary
//!   quantiles are within [0, 1] and their values are not negative. What
//!   breaks these rules is left out of the OpenMetrics output and counted;
//! - `le` and `quantile` values are written canonically (`1.0`, `+Inf`);
//! - the exposition ends with `# EOF`.
use super::text::{escape_label_value, write_labels};
use super::{fmt_f64, Conflict, Conflicts, Labels, Planned, Sink, Written};
use crate::store::{FamilyDecl, Kind, Value};

/// The OpenMetrics naming rules.
pub struct Rules;

impl super::Rules for Rules {
    const FORMAT: super::Format = super::Format::OpenMetrics;

    fn names(decl: &FamilyDecl, written: Written) -> (String, Vec<String>) {
        let kind = match written {
            Written::Unknown => return (decl.name.clone(), vec![decl.name.clone()]),
            Written::Kind(k) => k,
        };
        let family = decl.base_name().to_string();
        let suffixes: &[&str] = match kind {
            Kind::Counter => &["", "_total", "_created"],
            Kind::Gauge => &[""],
            Kind::Histogram => &["", "_bucket", "_count", "_sum", "_created"],
            Kind::Summary => &["", "_count", "_sum", "_created"],
        };
        let names = suffixes.iter().map(|s| format!("{family}{s}")).collect();
        (family, names)
    }

    fn fallback(decl: &FamilyDecl, written: Written) -> Option<Written> {
        (decl.kind == Kind::Counter && written == Written::Kind(Kind::Counter))
            .then_some(Written::Unknown)
    }
}

/// Append `help` escaped for an OpenMetrics `# HELP` line.
pub fn escape_help(help: &str, out: &mut String) {
    escape_label_value(help, out)
}

/// Append a canonical `le` or `quantile` value as the Go client library
/// writes it in OpenMetrics: [`super::fmt_bound`], with `.0` added when
/// that has neither a point nor an exponent (`1.0`, `0.25`, `6.4e-08`,
/// `1e+06`, `+Inf`).
pub fn canonical(v: f64, out: &mut String) {
    let start = out.len();
    super::fmt_bound(v, out);
    if v.is_finite() && !out[start..].contains(['.', 'e']) {
        out.push_str(".0");
    }
}

/// Writes OpenMetrics text into a String.
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

    fn count(&mut self, v: u64) {
        use std::fmt::Write;
        let _ = writeln!(self.out, "{v}");
    }
}

impl Sink for Writer {
    fn family(&mut self, f: &Planned<'_>) {
        let name = f.family_name.as_str();
        let ty = match f.written {
            Written::Unknown => "unknown",
            Written::Kind(k) => k.as_str(),
        };
        self.out.push_str("# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(ty);
        self.out.push('\n');
        if !f.unit.is_empty() {
            self.out.push_str("# UNIT ");
            self.out.push_str(name);
            self.out.push(' ');
            self.out.push_str(f.unit);
            self.out.push('\n');
        }
        if !f.help.is_empty() {
            self.out.push_str("# HELP ");
            self.out.push_str(name);
            self.out.push(' ');
            escape_help(f.help, &mut self.out);
            self.out.push('\n');
        }
    }

    fn series(
        &mut self,
        f: &Planned<'_>,
        labels: Labels<'_>,
        value: &Value,
        buckets: &[f64],
        conflicts: &mut Conflicts,
    ) {
        let name = f.family_name.as_str();
        match value {
            Value::Counter { .. } => {
                // Counters are written under their full name, as counter
                // `x` with sample `x_total` or as unknown `x_total`.
                self.line(f.name, "", labels, None);
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
                    canonical(
                        buckets.get(i).copied().unwrap_or(f64::INFINITY),
                        &mut self.num,
                    );
                    let le = std::mem::take(&mut self.num);
                    self.line(name, "_bucket", labels, Some(("le", &le)));
                    self.num = le;
                    self.count(cum);
                }
                if sum.is_nan() {
                    // No sum was read, and `_count` needs one.
                    return;
                }
                let negative_bound = buckets.first().is_some_and(|b| *b < 0.0);
                if negative_bound || *sum < 0.0 {
                    conflicts.add(Conflict::SumDropped, f.name, 1, || {
                        format!(
                            "histogram \"{}\": _sum and _count left out of OpenMetrics ({})",
                            f.name,
                            if negative_bound {
                                "a bucket bound is negative"
                            } else {
                                "the sum is negative"
                            }
                        )
                    });
                } else {
                    self.line(name, "_sum", labels, None);
                    self.value(*sum);
                    self.line(name, "_count", labels, None);
                    self.count(cum);
                }
            }
            Value::Summary {
                quantiles,
                sum,
                count,
            } => {
                for (q, v) in quantiles {
                    if !(0.0..=1.0).contains(q) || *v < 0.0 {
                        conflicts.add(Conflict::QuantileDropped, f.name, 1, || {
                            format!(
                                "summary \"{}\": a quantile outside [0, 1] or with a negative value left out of OpenMetrics",
                                f.name
                            )
                        });
                        continue;
                    }
                    self.num.clear();
                    canonical(*q, &mut self.num);
                    let qs = std::mem::take(&mut self.num);
                    self.line(name, "", labels, Some(("quantile", &qs)));
                    self.num = qs;
                    self.value(*v);
                }
                if *sum < 0.0 || sum.is_nan() {
                    conflicts.add(Conflict::QuantileDropped, f.name, 1, || {
                        format!(
                            "summary \"{}\": a negative or NaN _sum left out of OpenMetrics",
                            f.name
                        )
                    });
                } else {
                    self.line(name, "_sum", labels, None);
                    self.value(*sum);
                }
                self.line(name, "_count", labels, None);
                self.count(*count);
            }
        }
    }

    fn end(&mut self) {
        self.out.push_str("# EOF\n");
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::super::{to_openmetrics, Conflict};
    use super::*;
    use crate::store::{Change, PipelineStore, Semantics};

    #[test]
    fn help_is_escaped_by_the_openmetrics_rules() {
        let mut s = PipelineStore::new(vec![], 10);
        s.declare(vec![FamilyDecl::validate(
            "app_matches_total".into(),
            Kind::Counter,
            "Lines matching \\d+ in C:\\logs.\nSecond line with a \"quote\".".into(),
            String::new(),
            vec![],
            vec![],
            &[],
        )
        .expect("valid")]);
        s.apply(vec![(0, vec![], Change::Add(1.0))], Semantics::Events);
        let (t, _) = to_openmetrics(&[&s]);
        assert_eq!(
            t,
            "# TYPE app_matches counter\n\
             # HELP app_matches Lines matching \\\\d+ in C:\\\\logs.\\nSecond line with a \\\"quote\\\".\n\
             app_matches_total 1\n# EOF\n"
        );
    }

    #[test]
    fn a_counter_next_to_a_gauge_of_its_family_name_is_written_as_unknown() {
        let a = store(
            &[("go_memstats_alloc_bytes", Kind::Gauge, &[], &[])],
            vec![(0, vec![], Change::Set(5.0))],
        );
        let b = store(
            &[
                ("go_memstats_alloc_bytes_total", Kind::Counter, &[], &[]),
                ("h", Kind::Histogram, &[], &[1.0]),
                ("h_created", Kind::Gauge, &[], &[]),
            ],
            vec![
                (0, vec![], Change::Add(9.0)),
                (1, vec![], Change::Observe(vec![0.5])),
                (2, vec![], Change::Set(1.0)),
            ],
        );
        let (t, c) = to_openmetrics(&[&a, &b]);
        assert_eq!(
            t,
            "# TYPE go_memstats_alloc_bytes gauge\n# HELP go_memstats_alloc_bytes Help of go_memstats_alloc_bytes.\n\
             go_memstats_alloc_bytes 5\n\
             # TYPE go_memstats_alloc_bytes_total unknown\n# HELP go_memstats_alloc_bytes_total Help of go_memstats_alloc_bytes_total.\n\
             go_memstats_alloc_bytes_total 9\n\
             # TYPE h histogram\n# HELP h Help of h.\n\
             h_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n# EOF\n"
        );
        assert_eq!(c.counts[&Conflict::CounterAsUnknown], 1);
        assert_eq!(c.counts[&Conflict::NameClash], 1);
    }

    #[test]
    fn sums_and_quantiles_openmetrics_forbids_are_left_out() {
        let s = store(
            &[
                ("t_celsius", Kind::Histogram, &[], &[-10.0, 0.0, 10.0]),
                ("s", Kind::Summary, &[], &[]),
            ],
            vec![
                (0, vec![], Change::Observe(vec![-5.0, 5.0])),
                (
                    1,
                    vec![],
                    Change::SetSummary(vec![(0.5, -1.0), (0.9, 2.0), (1.5, 1.0)], -3.0, 2),
                ),
            ],
        );
        let (t, c) = to_openmetrics(&[&s]);
        assert!(
            !t.contains("t_celsius_sum") && !t.contains("t_celsius_count"),
            "{t}"
        );
        assert!(t.contains("t_celsius_bucket{le=\"-10.0\"} 0\n"), "{t}");
        assert!(t.contains("s{quantile=\"0.9\"} 2\ns_count 2\n"), "{t}");
        assert!(
            !t.contains("s_sum") && !t.contains("quantile=\"0.5\""),
            "{t}"
        );
        assert_eq!(c.counts[&Conflict::SumDropped], 1);
        assert_eq!(c.counts[&Conflict::QuantileDropped], 3);
    }
}
