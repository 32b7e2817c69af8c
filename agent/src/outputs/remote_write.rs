//! Prometheus remote write 1.0: series for a `prometheus.WriteRequest`.
//!
//! Rules, from the remote-write 1.0 specification
//! (<https://prometheus.io/docs/specs/remote_write_spec/>):
//!
//! - a series is a label set with `__name__`; names are the 0.0.4 sample
//!   names (histograms as `_bucket` with `le`, `_sum`, `_count`; summaries
//!   as the name with `quantile`, `_sum`, `_count`), so the naming rules
//!   are those of [`super::text`];
//! - labels are sorted by name, names unique, and a label with an empty
//!   value is left out (it is no label);
//! - strings are sent as they are (protobuf carries UTF-8; nothing is
//!   escaped).
use super::{Conflicts, Labels, Planned, Sink, Written};
use crate::store::{FamilyDecl, Value};
use std::collections::BTreeMap;

/// The remote-write naming rules: the 0.0.4 sample names.
pub struct Rules;

impl super::Rules for Rules {
    const FORMAT: super::Format = super::Format::RemoteWrite;
    fn names(decl: &FamilyDecl, _: Written) -> (String, Vec<String>) {
        (decl.name.clone(), super::text::sample_names(decl))
    }
}

/// One series with its samples, ready to encode.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels, sorted by name as the protocol asks (`__name__` sorts
    /// first among the usual names).
    pub labels: Vec<(String, String)>,
    /// (value, timestamp in ms).
    pub samples: Vec<(f64, i64)>,
}

/// Collects the series of a walk, one sample each at one timestamp.
pub struct Writer<'s> {
    /// Whether a family (by its declared name) is sent.
    pub keep: &'s dyn Fn(&str) -> bool,
    /// Labels added to every series that has no label of that name.
    pub external_labels: &'s BTreeMap<String, String>,
    /// Timestamp of every sample, in ms since the Unix epoch.
    pub ts_ms: i64,
    /// The series so far.
    pub out: Vec<Series>,
    skip: bool,
}

impl<'s> Writer<'s> {
    /// A writer with no series yet.
    pub fn new(
        keep: &'s dyn Fn(&str) -> bool,
        external_labels: &'s BTreeMap<String, String>,
        ts_ms: i64,
    ) -> Self {
        Writer {
            keep,
            external_labels,
            ts_ms,
            out: Vec::new(),
            skip: false,
        }
    }

    fn push(&mut self, name: String, labels: Labels<'_>, extra: Option<(&str, String)>, v: f64) {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some((k, v)) = extra {
            l.push((k.to_string(), v));
        }
        for (k, v) in self.external_labels {
            if !v.is_empty() && !l.iter().any(|(n, _)| n == k) {
                l.push((k.clone(), v.clone()));
            }
        }
        l.push(("__name__".into(), name));
        l.sort_unstable();
        self.out.push(Series {
            labels: l,
            samples: vec![(v, self.ts_ms)],
        });
    }
}

/// An `le` or `quantile` value, as the 0.0.4 text writes it.
fn num(v: f64) -> String {
    let mut s = String::new();
    super::fmt_bound(v, &mut s);
    s
}

impl Sink for Writer<'_> {
    fn family(&mut self, f: &Planned<'_>) {
        self.skip = !(self.keep)(f.name);
    }

    fn series(
        &mut self,
        f: &Planned<'_>,
        labels: Labels<'_>,
        value: &Value,
        buckets: &[f64],
        _: &mut Conflicts,
    ) {
        if self.skip {
            return;
        }
        let n = f.name;
        match value {
            Value::Counter { .. } => self.push(n.into(), labels, None, value.counter_value()),
            Value::Gauge(g) => self.push(n.into(), labels, None, *g),
            Value::Histogram { counts, sum } => {
                let mut cum = 0u64;
                for (i, c) in counts.iter().enumerate() {
                    cum += c;
                    let le = num(buckets.get(i).copied().unwrap_or(f64::INFINITY));
                    self.push(format!("{n}_bucket"), labels, Some(("le", le)), cum as f64);
                }
                if !sum.is_nan() {
                    self.push(format!("{n}_sum"), labels, None, *sum);
                }
                self.push(format!("{n}_count"), labels, None, cum as f64);
            }
            Value::Summary {
                quantiles,
                sum,
                count,
            } => {
                for (q, v) in quantiles {
                    self.push(n.into(), labels, Some(("quantile", num(*q))), *v);
                }
                self.push(format!("{n}_sum"), labels, None, *sum);
                self.push(format!("{n}_count"), labels, None, *count as f64);
            }
        }
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_len_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(buf, u64::from(field << 3 | 2));
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Encode a `prometheus.WriteRequest` (remote-write 1.0) protobuf. By
/// hand rather than with prost: three nested messages of two fields each
/// do not justify a protobuf build step.
pub fn encode_write_request(series: &[Series]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ts = Vec::new();
    let mut item = Vec::new();
    for s in series {
        ts.clear();
        for (k, v) in &s.labels {
            item.clear();
            put_len_field(&mut item, 1, k.as_bytes());
            put_len_field(&mut item, 2, v.as_bytes());
            put_len_field(&mut ts, 1, &item);
        }
        for (v, t) in &s.samples {
            item.clear();
            // double value = 1 (fixed64), int64 timestamp = 2 (varint).
            item.push(1 << 3 | 1);
            item.extend_from_slice(&v.to_le_bytes());
            item.push(2 << 3);
            put_varint(&mut item, *t as u64);
            put_len_field(&mut ts, 2, &item);
        }
        put_len_field(&mut out, 1, &ts);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::store;
    use super::super::{walk, Plan};
    use super::*;
    use crate::store::{Change, Kind};

    #[test]
    fn encodes_the_protobuf_by_hand_like_prost_would() {
        let s = vec![Series {
            labels: vec![("__name__".into(), "up".into())],
            samples: vec![(1.0, 1000)],
        }];
        let b = encode_write_request(&s);
        // WriteRequest.timeseries(1) { labels(1) { name(1)="__name__" value(2)="up" }
        //   samples(2) { value(1)=1.0 timestamp(2)=1000 } }
        let expected: Vec<u8> = [
            &[0x0a, 0x1e][..],
            &[0x0a, 0x0e, 0x0a, 0x08],
            b"__name__",
            &[0x12, 0x02],
            b"up",
            &[0x12, 0x0c, 0x09],
            &1.0f64.to_le_bytes(),
            &[0x10, 0xe8, 0x07],
        ]
        .concat();
        assert_eq!(b, expected);
    }

    #[test]
    fn series_have_sorted_labels_without_empty_values() {
        let s = store(
            &[("lat", Kind::Histogram, &["z", "a"], &[1.0])],
            vec![(0, vec!["", "x"], Change::Observe(vec![0.5]))],
        );
        let mut ext = BTreeMap::new();
        ext.insert("a".to_string(), "ignored".to_string());
        ext.insert("host".to_string(), "h1".to_string());
        let keep = |_: &str| true;
        let mut w = Writer::new(&keep, &ext, 7);
        let mut plan = Plan::new();
        plan.add::<Rules>(&[&s]);
        walk(&mut plan, &mut w);
        let names: Vec<String> = w
            .out
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(
            names,
            [
                "__name__=lat_bucket,a=x,host=h1,le=1",
                "__name__=lat_bucket,a=x,host=h1,le=+Inf",
                "__name__=lat_sum,a=x,host=h1",
                "__name__=lat_count,a=x,host=h1",
            ]
        );
        assert!(w
            .out
            .iter()
            .all(|s| s.samples == [(if s.labels[0].1 == "lat_sum" { 0.5 } else { 1.0 }, 7)]));
    }
}
