//! OTLP metrics: the agent's families as OpenTelemetry `Metric`s, for an
//! `ExportMetricsServiceRequest` (the `opentelemetry-proto` crate's prost
//! types).
//!
//! The mapping follows the OpenTelemetry specification's "Prometheus and
//! OpenMetrics Compatibility", section "Prometheus Metric points to OTLP":
//!
//! | weir family | OTLP |
//! | --- | --- |
//! | counter | `Sum`, `is_monotonic = true`, cumulative temporality |
//! | gauge | `Gauge` |
//! | histogram | `Histogram`, cumulative; `explicit_bounds` are the declared buckets (without `+Inf`), `bucket_counts` per bucket (not cumulative), the last one above the last bound |
//! | summary | `Summary` with its quantiles, sum and count |
//!
//! - the metric name is the Prometheus name, unaltered (a counter keeps its
//!   `_total`: the spec says the name SHOULD NOT be altered by default);
//! - HELP is the description; a declared unit is converted to the
//!   OpenTelemetry (UCUM) abbreviation (`seconds` to `s`, `bytes` to `By`,
//!   `ratio` to `1`, `foo_per_bar` to `foo/bar`);
//! - the Prometheus type is in the metric's metadata as `prometheus.type`;
//! - labels are attributes (a label with an empty value is no label);
//! - `start_time_unix_nano` is when the agent started counting: weir keeps
//!   no start time per series, so every point carries the agent's start,
//!   which is the same for every push of the process; `time_unix_nano` is
//!   the collection's time, the same for every point of one collection.
use super::{Conflicts, Labels, Planned, Sink, Written};
use crate::store::{FamilyDecl, Kind, Value};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, Summary, SummaryDataPoint,
};

/// The OTLP naming rules: a family claims the names remote write and
/// the text format give its samples, so that what a collector turns back
/// into Prometheus series does not clash either.
pub struct Rules;

impl super::Rules for Rules {
    const FORMAT: super::Format = super::Format::Otlp;
    fn names(decl: &FamilyDecl, _: Written) -> (String, Vec<String>) {
        (decl.name.clone(), super::text::sample_names(decl))
    }
}

/// A string attribute.
pub fn attr(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// A Prometheus unit (OpenMetrics UNIT) as the OpenTelemetry unit.
pub fn unit(u: &str) -> String {
    if u == "ratio" {
        return "1".into();
    }
    if let Some((a, b)) = u.split_once("_per_") {
        return format!("{}/{}", unit(a), unit(b));
    }
    let abbr = match u {
        "days" => "d",
        "hours" => "h",
        "minutes" => "min",
        "seconds" => "s",
        "milliseconds" => "ms",
        "microseconds" => "us",
        "nanoseconds" => "ns",
        "bytes" => "By",
        "kibibytes" => "KiBy",
        "mebibytes" => "MiBy",
        "gibibytes" => "GiBy",
        "tebibytes" => "TiBy",
        "kilobytes" => "KBy",
        "megabytes" => "MBy",
        "gigabytes" => "GBy",
        "terabytes" => "TBy",
        "bits" => "bit",
        "meters" => "m",
        "volts" => "V",
        "amperes" => "A",
        "joules" => "J",
        "watts" => "W",
        "grams" => "g",
        "celsius" => "Cel",
        "hertz" => "Hz",
        "percent" => "%",
        other => other,
    };
    abbr.to_string()
}

/// Collects the families of a walk as OTLP metrics, one per family.
pub struct Writer<'s> {
    /// Whether a family (by its declared name) is sent.
    pub keep: &'s dyn Fn(&str) -> bool,
    /// Every point's `start_time_unix_nano`.
    pub start_ns: u64,
    /// Every point's `time_unix_nano`.
    pub time_ns: u64,
    /// The metrics so far.
    pub out: Vec<Metric>,
    skip: bool,
}

impl<'s> Writer<'s> {
    /// A writer with no metrics yet.
    pub fn new(keep: &'s dyn Fn(&str) -> bool, start_ns: u64, time_ns: u64) -> Self {
        Writer {
            keep,
            start_ns,
            time_ns,
            out: Vec::new(),
            skip: false,
        }
    }
}

/// Data points in a metric.
pub fn points(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        None => 0,
    }
}

impl Sink for Writer<'_> {
    fn family(&mut self, f: &Planned<'_>) {
        self.skip = !(self.keep)(f.name);
        if self.skip {
            return;
        }
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = match f.kind {
            Kind::Counter => metric::Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            Kind::Gauge => metric::Data::Gauge(Gauge {
                data_points: Vec::new(),
            }),
            Kind::Histogram => metric::Data::Histogram(Histogram {
                data_points: Vec::new(),
                aggregation_temporality: cumulative,
            }),
            Kind::Summary => metric::Data::Summary(Summary {
                data_points: Vec::new(),
            }),
        };
        self.out.push(Metric {
            name: f.name.to_string(),
            description: f.help.to_string(),
            unit: unit(f.unit),
            metadata: vec![attr("prometheus.type", f.kind.as_str())],
            data: Some(data),
        });
    }

    fn series(
        &mut self,
        _: &Planned<'_>,
        labels: Labels<'_>,
        value: &Value,
        buckets: &[f64],
        _: &mut Conflicts,
    ) {
        if self.skip {
            return;
        }
        let attributes: Vec<KeyValue> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| attr(k, v))
            .collect();
        let (start_time_unix_nano, time_unix_nano) = (self.start_ns, self.time_ns);
        let number = |v: f64| NumberDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano,
            time_unix_nano,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        };
        let Some(data) = self.out.last_mut().and_then(|m| m.data.as_mut()) else {
            return;
        };
        match (data, value) {
            (metric::Data::Sum(s), Value::Counter { .. }) => {
                s.data_points.push(number(value.counter_value()))
            }
            (metric::Data::Gauge(g), Value::Gauge(v)) => g.data_points.push(number(*v)),
            (metric::Data::Histogram(h), Value::Histogram { counts, sum }) => {
                h.data_points.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    count: counts.iter().sum(),
                    // No sum for a reading that had none (the spec: "If
                    // `_sum` is not present, the histogram's sum MUST be
                    // unset").
                    sum: (!sum.is_nan()).then_some(*sum),
                    bucket_counts: counts.clone(),
                    explicit_bounds: buckets.to_vec(),
                    ..Default::default()
                })
            }
            (
                metric::Data::Summary(s),
                Value::Summary {
                    quantiles,
                    sum,
                    count,
                },
            ) => s.data_points.push(SummaryDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count: *count,
                sum: *sum,
                quantile_values: quantiles
                    .iter()
                    .map(|(q, v)| ValueAtQuantile {
                        quantile: *q,
                        value: *v,
                    })
                    .collect(),
                ..Default::default()
            }),
            // A value of another kind than its family's: the store never
            // makes one.
            _ => {}
        }
    }

    fn end(&mut self) {
        // Families whose every series was skipped say nothing.
        self.out.retain(|m| points(m) > 0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::super::{walk, Plan};
    use super::*;
    use crate::store::Change;

    #[test]
    fn units_follow_the_compatibility_spec() {
        assert_eq!(unit("seconds"), "s");
        assert_eq!(unit("bytes"), "By");
        assert_eq!(unit("ratio"), "1");
        assert_eq!(unit("bytes_per_seconds"), "By/s");
        assert_eq!(unit("requests"), "requests");
        assert_eq!(unit(""), "");
    }

    #[test]
    fn kinds_map_to_otlp_types_with_cumulative_temporality() {
        let s = store(
            &[
                ("req_total", Kind::Counter, &["code"], &[]),
                ("temp", Kind::Gauge, &[], &[]),
                ("lat", Kind::Histogram, &["path", "empty"], &[0.1, 1.0]),
                ("q", Kind::Summary, &[], &[]),
            ],
            vec![
                (0, vec!["200"], Change::Add(3.0)),
                (1, vec![], Change::Set(-1.5)),
                (
                    2,
                    vec!["/a", ""],
                    Change::Observe(vec![0.05, 0.5, 0.7, 5.0]),
                ),
                (
                    3,
                    vec![],
                    Change::SetSummary(vec![(0.5, 2.0), (0.9, 4.0)], 10.0, 4),
                ),
            ],
        );
        let keep = |n: &str| n != "temp";
        let mut w = Writer::new(&keep, 100, 200);
        let mut plan = Plan::new();
        plan.add::<Rules>(&[&s]);
        walk(&mut plan, &mut w);
        let names: Vec<&str> = w.out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["lat", "q", "req_total"]);
        let Some(metric::Data::Histogram(h)) = &w.out[0].data else {
            panic!("{:?}", w.out[0])
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, [0.1, 1.0]);
        assert_eq!(p.bucket_counts, [1, 2, 1]);
        assert_eq!(p.count, 4);
        assert_eq!(p.sum, Some(6.25));
        assert_eq!(p.attributes, [attr("path", "/a")]);
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (100, 200));
        let Some(metric::Data::Summary(q)) = &w.out[1].data else {
            panic!()
        };
        assert_eq!(q.data_points[0].quantile_values.len(), 2);
        assert_eq!((q.data_points[0].count, q.data_points[0].sum), (4, 10.0));
        let Some(metric::Data::Sum(c)) = &w.out[2].data else {
            panic!()
        };
        assert!(c.is_monotonic);
        assert_eq!(
            c.data_points[0].value,
            Some(number_data_point::Value::AsDouble(3.0))
        );
        assert_eq!(w.out[2].metadata, [attr("prometheus.type", "counter")]);
        assert_eq!(w.out[2].description, "Help of req_total.");
    }
}
