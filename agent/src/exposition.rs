//! Turning series state into Prometheus text 0.0.4 or OpenMetrics 1.0.
//!
//! At scrape time the agent walks every pipeline's store and its own
//! figures into an [`Exposition`]: families merged by name, series
//! de-duplicated, so one pipeline's mistake cannot produce an exposition
//! that fails the whole scrape. OpenMetrics is written by prometheus-client
//! through a `Collector`; prometheus-client has no 0.0.4 encoder, so that
//! one is written here.
use crate::store::{FamilyDecl, Kind, PipelineStore, Value};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

/// The value of one exposed series.
#[derive(Debug, Clone, PartialEq)]
pub enum OutValue {
    /// Counter or gauge value.
    Scalar(f64),
    /// Histogram: bucket bounds, non-cumulative counts (last is `+Inf`), sum.
    Histogram {
        /// Upper bounds.
        buckets: Vec<f64>,
        /// Counts per bucket.
        counts: Vec<u64>,
        /// Sum of observations.
        sum: f64,
    },
    /// Summary: quantiles, sum, count.
    Summary {
        /// (quantile, value).
        quantiles: Vec<(f64, f64)>,
        /// Sum.
        sum: f64,
        /// Count.
        count: u64,
    },
}

/// One exposed series.
#[derive(Debug, Clone, PartialEq)]
pub struct OutSample {
    /// Label names and values.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: OutValue,
}

/// One exposed family.
#[derive(Debug, Clone, PartialEq)]
pub struct OutFamily {
    /// Full name (counters with `_total`).
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// HELP.
    pub help: String,
    /// Unit or empty.
    pub unit: String,
    label_names: Vec<String>,
    /// Series.
    pub samples: Vec<OutSample>,
    seen: HashSet<Vec<String>>,
}

/// A whole scrape.
#[derive(Default, Debug)]
pub struct Exposition {
    families: BTreeMap<String, OutFamily>,
    /// Series left out because they clashed with another pipeline's.
    pub conflicts: u64,
}

impl Exposition {
    /// Start an empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    fn family(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        unit: &str,
        label_names: &[String],
    ) -> Option<&mut OutFamily> {
        let f = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| OutFamily {
                name: name.to_string(),
                kind,
                help: help.to_string(),
                unit: unit.to_string(),
                label_names: label_names.to_vec(),
                samples: Vec::new(),
                seen: HashSet::new(),
            });
        if f.kind != kind || f.label_names != label_names {
            self.conflicts += 1;
            return None;
        }
        self.families.get_mut(name)
    }

    /// Add a pipeline's series.
    pub fn add_store(&mut self, store: &PipelineStore) {
        for fam in store.families() {
            let d: &FamilyDecl = &fam.decl;
            let mut conflicts = 0;
            let Some(out) = self.family(&d.name, d.kind, &d.help, &d.unit, &d.labels) else {
                continue;
            };
            for (labels, v) in &fam.series {
                if !out.seen.insert(labels.clone()) {
                    conflicts += 1;
                    continue;
                }
                let value = match v {
                    Value::Counter { .. } => OutValue::Scalar(v.counter_value()),
                    Value::Gauge(g) => OutValue::Scalar(*g),
                    Value::Histogram { counts, sum } => OutValue::Histogram {
                        buckets: d.buckets.clone(),
                        counts: counts.clone(),
                        sum: *sum,
                    },
                    Value::Summary {
                        quantiles,
                        sum,
                        count,
                    } => OutValue::Summary {
                        quantiles: quantiles.clone(),
                        sum: *sum,
                        count: *count,
                    },
                };
                out.samples.push(OutSample {
                    labels: d
                        .labels
                        .iter()
                        .cloned()
                        .zip(labels.iter().cloned())
                        .collect(),
                    value,
                });
            }
            self.conflicts += conflicts;
        }
    }

    /// Add one scalar sample of an agent metric.
    pub fn scalar(&mut self, name: &str, kind: Kind, help: &str, labels: &[(&str, &str)], v: f64) {
        let names: Vec<String> = labels.iter().map(|(k, _)| k.to_string()).collect();
        if let Some(f) = self.family(name, kind, help, "", &names) {
            f.samples.push(OutSample {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value: OutValue::Scalar(v),
            });
        }
    }

    /// Add one histogram sample of an agent metric: `value` is an
    /// [`OutValue::Histogram`].
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        unit: &str,
        labels: &[(&str, &str)],
        value: OutValue,
    ) {
        let names: Vec<String> = labels.iter().map(|(k, _)| k.to_string()).collect();
        if let Some(f) = self.family(name, Kind::Histogram, help, unit, &names) {
            f.samples.push(OutSample {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value,
            });
        }
    }

    /// Declare a family with no samples yet, so that HELP and TYPE appear
    /// (and `increase()` has a zero to start from once samples come).
    pub fn declare(&mut self, name: &str, kind: Kind, help: &str) {
        self.family(name, kind, help, "", &[]);
    }

    /// The families, by name.
    pub fn families(&self) -> impl Iterator<Item = &OutFamily> {
        self.families.values()
    }

    /// Prometheus text format 0.0.4.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(4096);
        for f in self.families.values() {
            // A family with no series is left out: 0.0.4 parsers accept
            // it, but it says nothing.
            if f.samples.is_empty() {
                continue;
            }
            let _ = writeln!(s, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(s, "# TYPE {} {}", f.name, f.kind.as_str());
            let mut samples: Vec<&OutSample> = f.samples.iter().collect();
            samples.sort_by(|a, b| a.labels.cmp(&b.labels));
            for sample in samples {
                match &sample.value {
                    OutValue::Scalar(v) => {
                        s.push_str(&f.name);
                        write_labels(&mut s, &sample.labels, None);
                        let _ = writeln!(s, " {}", fmt_f64(*v));
                    }
                    OutValue::Histogram {
                        buckets,
                        counts,
                        sum,
                    } => {
                        let mut cum = 0u64;
                        for (i, c) in counts.iter().enumerate() {
                            cum += c;
                            let le = buckets
                                .get(i)
                                .map(|b| fmt_f64(*b))
                                .unwrap_or_else(|| "+Inf".to_string());
                            let _ = write!(s, "{}_bucket", f.name);
                            write_labels(&mut s, &sample.labels, Some(&le));
                            let _ = writeln!(s, " {cum}");
                        }
                        let _ = write!(s, "{}_sum", f.name);
                        write_labels(&mut s, &sample.labels, None);
                        let _ = writeln!(s, " {}", fmt_f64(*sum));
                        let _ = write!(s, "{}_count", f.name);
                        write_labels(&mut s, &sample.labels, None);
                        let _ = writeln!(s, " {cum}");
                    }
                    OutValue::Summary { .. } => write_summary(&mut s, &f.name, sample),
                }
            }
        }
        s
    }

    /// OpenMetrics 1.0 text, written by prometheus-client; summaries,
    /// which it does not encode, are written here before `# EOF`.
    pub fn to_openmetrics(self) -> String {
        let mut summaries = String::new();
        for f in self.families.values() {
            if f.kind != Kind::Summary || f.samples.is_empty() {
                continue;
            }
            let _ = writeln!(summaries, "# TYPE {} summary", f.name);
            if !f.unit.is_empty() {
                let _ = writeln!(summaries, "# UNIT {} {}", f.name, f.unit);
            }
            let _ = writeln!(summaries, "# HELP {} {}", f.name, escape_om(&f.help));
            let mut samples: Vec<&OutSample> = f.samples.iter().collect();
            samples.sort_by(|a, b| a.labels.cmp(&b.labels));
            for sample in samples {
                write_summary(&mut summaries, &f.name, sample);
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(OpenMetricsCollector(self)));
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut s, &registry);
        s.push_str(&summaries);
        let _ = prometheus_client::encoding::text::encode_eof(&mut s);
        s
    }
}

fn escape_om(h: &str) -> String {
    h.replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('"', "\\\"")
}

fn write_summary(s: &mut String, name: &str, sample: &OutSample) {
    let OutValue::Summary {
        quantiles,
        sum,
        count,
    } = &sample.value
    else {
        return;
    };
    for (q, v) in quantiles {
        let mut labels = sample.labels.clone();
        labels.push(("quantile".to_string(), fmt_f64(*q)));
        s.push_str(name);
        write_labels(s, &labels, None);
        let _ = writeln!(s, " {}", fmt_f64(*v));
    }
    let _ = write!(s, "{name}_sum");
    write_labels(s, &sample.labels, None);
    let _ = writeln!(s, " {}", fmt_f64(*sum));
    let _ = write!(s, "{name}_count");
    write_labels(s, &sample.labels, None);
    let _ = writeln!(s, " {count}");
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_labels(s: &mut String, labels: &[(String, String)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    s.push('{');
    let mut first = true;
    for (k, v) in labels {
        if !first {
            s.push(',');
        }
        first = false;
        s.push_str(k);
        s.push_str("=\"");
        escape_value(v, s);
        s.push('"');
    }
    if let Some(le) = le {
        if !first {
            s.push(',');
        }
        s.push_str("le=\"");
        s.push_str(le);
        s.push('"');
    }
    s.push('}');
}

/// Format a float the way Prometheus parses it back exactly.
pub fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

struct OpenMetricsCollector(Exposition);

impl std::fmt::Debug for OpenMetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenMetricsCollector")
    }
}

struct Scalar(f64, MetricType);

impl EncodeMetric for Scalar {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        match self.1 {
            MetricType::Counter => encoder.encode_counter::<NoLabelSet, _, f64>(&self.0, None),
            _ => encoder.encode_gauge(&self.0),
        }
    }
    fn metric_type(&self) -> MetricType {
        self.1
    }
}

struct Hist<'a>(&'a [f64], &'a [u64], f64);

impl EncodeMetric for Hist<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let count: u64 = self.1.iter().sum();
        let buckets: Vec<(f64, u64)> = self
            .1
            .iter()
            .enumerate()
            .map(|(i, c)| (self.0.get(i).copied().unwrap_or(f64::INFINITY), *c))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.2, count, &buckets, None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for OpenMetricsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.0.families.values() {
            if f.samples.is_empty() || f.kind == Kind::Summary {
                continue;
            }
            let mut base = match f.kind {
                Kind::Counter => f.name.strip_suffix("_total").unwrap_or(&f.name),
                _ => f.name.as_str(),
            };
            let unit = if f.unit.is_empty() {
                None
            } else {
                base = base.strip_suffix(&format!("_{}", f.unit)).unwrap_or(base);
                Some(Unit::Other(f.unit.clone()))
            };
            let ty = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
                Kind::Summary => continue,
            };
            let mut fam = encoder.encode_descriptor(base, &f.help, unit.as_ref(), ty)?;
            if f.label_names.is_empty() {
                // One series without labels: encode it on the family itself,
                // so no empty `{}` is written.
                match &f.samples[0].value {
                    OutValue::Scalar(v) => Scalar(*v, ty).encode(fam)?,
                    OutValue::Histogram {
                        buckets,
                        counts,
                        sum,
                    } => Hist(buckets, counts, *sum).encode(fam)?,
                    OutValue::Summary { .. } => {}
                }
                continue;
            }
            let mut samples: Vec<&OutSample> = f.samples.iter().collect();
            samples.sort_by(|a, b| a.labels.cmp(&b.labels));
            for s in samples {
                let labels: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let enc = fam.encode_family(&labels)?;
                match &s.value {
                    OutValue::Scalar(v) => Scalar(*v, ty).encode(enc)?,
                    OutValue::Histogram {
                        buckets,
                        counts,
                        sum,
                    } => Hist(buckets, counts, *sum).encode(enc)?,
                    OutValue::Summary { .. } => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Semantics};

    fn store() -> PipelineStore {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![
            FamilyDecl::validate(
                "req_total".into(),
                Kind::Counter,
                "Requests.\nAll of them.".into(),
                String::new(),
                vec!["path".into()],
                vec![],
                &[],
            )
            .expect("valid"),
            FamilyDecl::validate(
                "lat_seconds".into(),
                Kind::Histogram,
                "Latency.".into(),
                "seconds".into(),
                vec![],
                vec![0.1, 1.0],
                &[],
            )
            .expect("valid"),
        ]);
        s.apply(
            vec![
                (0, vec!["/a\"b\\c\nd".into()], Change::Add(3.0)),
                (1, vec![], Change::Observe(vec![0.0, 0.5, 2.0])),
            ],
            Semantics::Events,
        );
        s
    }

    #[test]
    fn text_format_escapes_and_accumulates_buckets() {
        let mut e = Exposition::new();
        e.add_store(&store());
        let t = e.to_text();
        let expected = "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n\
lat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"1\"} 2\nlat_seconds_bucket{le=\"+Inf\"} 3\n\
lat_seconds_sum 2.5\nlat_seconds_count 3\n\
# HELP req_total Requests.\\nAll of them.\n# TYPE req_total counter\n\
req_total{path=\"/a\\\"b\\\\c\\nd\"} 3\n";
        assert_eq!(t, expected);
    }

    #[test]
    fn openmetrics_has_units_and_eof() {
        let mut e = Exposition::new();
        e.add_store(&store());
        let t = e.to_openmetrics();
        assert!(t.contains("# TYPE req counter\n"), "{t}");
        assert!(t.contains("req_total{path="), "{t}");
        assert!(t.contains("# UNIT lat_seconds seconds\n"), "{t}");
        assert!(t.contains("lat_seconds_bucket{le=\"+Inf\"} 3\n"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn readings_replace_histograms_and_summaries_declared_mid_call() {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![]);
        let decl = |n: &str, k: Kind, b: Vec<f64>| {
            FamilyDecl::validate(
                n.into(),
                k,
                "h".into(),
                String::new(),
                vec!["x".into()],
                b,
                &[],
            )
            .expect("valid")
        };
        s.declare_more(vec![
            decl("rpc_seconds", Kind::Summary, vec![]),
            decl("lat_seconds", Kind::Histogram, vec![1.0]),
        ])
        .expect("declared");
        assert!(s
            .declare_more(vec![decl("lat_seconds", Kind::Gauge, vec![])])
            .is_err());
        let r = s.apply(
            vec![
                (
                    0,
                    vec!["a".into()],
                    Change::SetSummary(vec![(0.5, 0.1), (0.99, f64::NAN)], 3.0, 7),
                ),
                (1, vec!["a".into()], Change::SetHistogram(vec![4, 1], 2.5)),
                (1, vec!["b".into()], Change::SetHistogram(vec![4], 2.5)),
            ],
            Semantics::Snapshot,
        );
        assert_eq!(r.applied, 2);
        assert_eq!(r.rejected, vec![(crate::store::Reject::WrongOp, 1)]);
        let mut e = Exposition::new();
        e.add_store(&s);
        let t = e.to_text();
        assert!(t.contains("# TYPE rpc_seconds summary\nrpc_seconds{x=\"a\",quantile=\"0.5\"} 0.1\nrpc_seconds{x=\"a\",quantile=\"0.99\"} NaN\nrpc_seconds_sum{x=\"a\"} 3\nrpc_seconds_count{x=\"a\"} 7\n"), "{t}");
        assert!(t.contains("lat_seconds_bucket{x=\"a\",le=\"1\"} 4\nlat_seconds_bucket{x=\"a\",le=\"+Inf\"} 5\n"), "{t}");
        let om = e.to_openmetrics();
        assert!(
            om.contains("# TYPE rpc_seconds summary\n")
                && om.ends_with("rpc_seconds_count{x=\"a\"} 7\n# EOF\n"),
            "{om}"
        );
    }

    #[test]
    fn same_family_from_two_pipelines_merges_and_dedupes() {
        let mut e = Exposition::new();
        e.add_store(&store());
        e.add_store(&store());
        assert_eq!(e.conflicts, 2);
        let t = e.to_text();
        assert_eq!(t.matches("req_total{").count(), 1);
        assert_eq!(t.matches("# TYPE req_total").count(), 1);
    }
}
