//! Pushing metrics to OpenTelemetry collectors and backends over
//! OTLP/HTTP: a protobuf `ExportMetricsServiceRequest` per POST to the
//! configured `endpoint` (`.../v1/metrics`), `Content-Type:
//! application/x-protobuf`, gzip unless `compression = "none"`.
//!
//! `encoding = "json"` sends the OTLP/JSON encoding (`application/json`)
//! instead.
//!
//! The message types are the `opentelemetry-proto` crate's prost types;
//! its generated code ships in the crate, so there is no protoc step, and
//! only its messages are used (no tonic runtime, no SDK aggregation: weir
//! owns aggregation, and pushes what `/metrics` serves).
//!
//! Every interval the agent's families are walked as for `/metrics` (see
//! [`crate::outputs::otlp`] for the mapping) and queued, one OTLP metric
//! per family; the queue, retries, back-off and reloads are those of
//! remote write ([`crate::push`]), bounded in data points.
use crate::agent::Agent;
use crate::config::{Auth, Compression, OtlpEncoding, OtlpSettings};
use crate::push::PushStats;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::outputs::otlp::{attr, points};

/// The running OTLP targets, changed by reloads.
pub type Writers = crate::push::Writers<OtlpSettings>;

/// Nanoseconds since the Unix epoch (0 before it).
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The host's name, for the default `host.name`; None when it cannot be
/// read.
pub fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

/// The resource attributes of a target: `service.name = "weir"` and
/// `host.name` unless the config gives them, then the config's, sorted by
/// name.
pub fn resource_attributes(s: &OtlpSettings) -> Vec<KeyValue> {
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    all.insert("service.name".into(), "weir".into());
    if let Some(h) = hostname() {
        all.insert("host.name".into(), h);
    }
    for (k, v) in &s.resource_attributes {
        all.insert(k.clone(), v.clone());
    }
    all.iter().map(|(k, v)| attr(k, v)).collect()
}

/// The agent's families for `s` at `now`, one OTLP metric each, after
/// `keep` and `drop`.
pub fn collect(agent: &Agent, s: &OtlpSettings, now: SystemTime) -> Vec<Metric> {
    let keep = |name: &str| {
        (s.keep.is_empty() || s.keep.iter().any(|r| r.is_match(name)))
            && !s.drop.iter().any(|r| r.is_match(name))
    };
    let mut w =
        crate::outputs::otlp::Writer::new(&keep, unix_nanos(agent.started), unix_nanos(now));
    agent.write::<crate::outputs::otlp::Rules>(&mut w);
    w.out
}

/// The metrics of several readings as one metric per family: a batch that
/// holds readings queued during an outage sends each family once, its
/// points from every reading in order (they differ in `time_unix_nano`).
pub fn merge(batch: &[Metric]) -> Vec<Metric> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let mut out: Vec<Metric> = Vec::new();
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for m in batch {
        let into = at.get(m.name.as_str()).and_then(|&i| out.get_mut(i));
        let merged = match (into.and_then(|o| o.data.as_mut()), &m.data) {
            (Some(Data::Sum(a)), Some(Data::Sum(b))) => {
                a.data_points.extend(b.data_points.iter().cloned());
                true
            }
            (Some(Data::Gauge(a)), Some(Data::Gauge(b))) => {
                a.data_points.extend(b.data_points.iter().cloned());
                true
            }
            (Some(Data::Histogram(a)), Some(Data::Histogram(b))) => {
                a.data_points.extend(b.data_points.iter().cloned());
                true
            }
            (Some(Data::Summary(a)), Some(Data::Summary(b))) => {
                a.data_points.extend(b.data_points.iter().cloned());
                true
            }
            _ => false,
        };
        if !merged {
            at.insert(m.name.as_str(), out.len());
            out.push(m.clone());
        }
    }
    out
}

/// One request's message: one resource, one scope (`weir`), `metrics`.
pub fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "weir".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

impl crate::push::Target for OtlpSettings {
    type Item = Metric;
    const WHAT: &'static str = "OTLP";
    const KEY: &'static str = "otlp";
    fn name(&self) -> &str {
        &self.name
    }
    fn url(&self) -> &str {
        &self.endpoint
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
    fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }
    fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }
    fn max_queue(&self) -> usize {
        self.max_queue_points
    }
    fn max_per_send(&self) -> usize {
        self.max_points_per_send
    }
    fn points(item: &Metric) -> usize {
        points(item)
    }
    fn collect(&self, agent: &Agent, now: SystemTime) -> Vec<Metric> {
        collect(agent, self, now)
    }
    fn encode(&self, batch: &[Metric]) -> Result<crate::push::Body, String> {
        let req = request(resource_attributes(self), merge(batch));
        let (body, content_type) = match self.encoding {
            OtlpEncoding::Protobuf => (req.encode_to_vec(), "application/x-protobuf"),
            // The crate's serde mapping is the OTLP/JSON one (camelCase
            // names, 64-bit integers as strings, ids in hex).
            OtlpEncoding::Json => (
                serde_json::to_vec(&req).map_err(|e| format!("json: {e}"))?,
                "application/json",
            ),
        };
        let mut headers = vec![("Content-Type", content_type.to_string())];
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&body)
                    .and_then(|_| gz.finish())
                    .inspect(|_| headers.push(("Content-Encoding", "gzip".to_string())))
                    .map_err(|e| format!("gzip: {e}"))?
            }
        };
        Ok((body, headers))
    }
    fn rejected(&self, content_type: Option<&str>, body: &[u8]) -> Option<(u64, String)> {
        if body.is_empty() {
            return None;
        }
        let (n, why) = if content_type.is_some_and(|c| c.starts_with("application/json")) {
            // OTLP/JSON writes an int64 as a string or a number.
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            let p = v.get("partialSuccess")?;
            let n = match p.get("rejectedDataPoints")? {
                serde_json::Value::String(s) => s.parse::<i64>().ok()?,
                other => other.as_i64()?,
            };
            let why = p.get("errorMessage").and_then(|m| m.as_str()).unwrap_or("");
            (n, why.to_string())
        } else {
            let p = ExportMetricsServiceResponse::decode(body)
                .ok()?
                .partial_success?;
            (p.rejected_data_points, p.error_message)
        };
        let n = u64::try_from(n).unwrap_or(0);
        (n > 0).then(|| (n, why.chars().take(300).collect()))
    }
    /// The metrics as length-delimited protobuf messages, one after the
    /// other (what `Metric::encode_length_delimited` writes).
    fn save_items(items: &std::collections::VecDeque<Metric>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in items {
            // Writing into a Vec cannot run out of room.
            let _ = m.encode_length_delimited(&mut out);
        }
        out
    }
    fn load_items(mut bytes: &[u8]) -> Result<Vec<Metric>, String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(Metric::decode_length_delimited(&mut bytes).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }
    fn of(cfg: &crate::config::AgentSettings) -> &[Self] {
        &cfg.otlp
    }
    fn publish(agent: &Agent, figures: Vec<(String, Arc<PushStats>)>) {
        *agent.otlp.lock() = figures;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Target;

    fn settings() -> OtlpSettings {
        OtlpSettings {
            name: "t".into(),
            endpoint: "http://127.0.0.1:4318/v1/metrics".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            headers: BTreeMap::new(),
            auth: None,
            resource_attributes: [("service.name".to_string(), "edge".to_string())].into(),
            keep: vec![],
            drop: vec![],
            max_queue_points: 10,
            max_points_per_send: 10,
            compression: Compression::Gzip,
            encoding: OtlpEncoding::Protobuf,
            ca_file: None,
        }
    }

    #[test]
    fn config_attributes_override_the_defaults() {
        let a = resource_attributes(&settings());
        assert!(a.contains(&attr("service.name", "edge")), "{a:?}");
        assert!(!a.contains(&attr("service.name", "weir")), "{a:?}");
        if let Some(h) = hostname() {
            assert!(a.contains(&attr("host.name", &h)), "{a:?}");
        }
    }

    #[test]
    fn the_body_is_a_gzipped_export_request_that_decodes_back() {
        let s = settings();
        let m = Metric {
            name: "x".into(),
            ..Default::default()
        };
        let (body, headers) = s.encode(std::slice::from_ref(&m)).expect("encode");
        assert!(headers.contains(&("Content-Encoding", "gzip".to_string())));
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw)
            .expect("gunzip");
        let back = ExportMetricsServiceRequest::decode(&raw[..]).expect("decode");
        assert_eq!(back, request(resource_attributes(&s), vec![m]));
    }

    #[test]
    fn a_partial_success_names_the_rejected_points() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
        let s = settings();
        let r = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "too old".into(),
            }),
        };
        let b = r.encode_to_vec();
        assert_eq!(
            s.rejected(Some("application/x-protobuf"), &b),
            Some((3, "too old".to_string()))
        );
        for j in [
            &br#"{"partialSuccess":{"rejectedDataPoints":"2","errorMessage":"x"}}"#[..],
            br#"{"partialSuccess":{"rejectedDataPoints":2,"errorMessage":"x"}}"#,
        ] {
            assert_eq!(
                s.rejected(Some("application/json"), j),
                Some((2, "x".to_string()))
            );
        }
        assert_eq!(s.rejected(None, b""), None);
        assert_eq!(s.rejected(None, b"not protobuf \xff"), None);
        let ok = ExportMetricsServiceResponse::default().encode_to_vec();
        assert_eq!(s.rejected(None, &ok), None);
    }

    #[test]
    fn readings_of_one_family_are_sent_as_one_metric() {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, Gauge, NumberDataPoint};
        let g = |name: &str, t: u64| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: t,
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        let m = merge(&[g("a", 1), g("b", 1), g("a", 2), g("b", 2), g("a", 3)]);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name.as_str(), points(&m[0])), ("a", 3));
        assert_eq!((m[1].name.as_str(), points(&m[1])), ("b", 2));
        let Some(Data::Gauge(a)) = &m[0].data else {
            panic!()
        };
        let times: Vec<u64> = a.data_points.iter().map(|p| p.time_unix_nano).collect();
        assert_eq!(times, [1, 2, 3]);
    }

    #[test]
    fn the_json_encoding_uses_otlp_json_names() {
        let mut s = settings();
        s.encoding = OtlpEncoding::Json;
        s.compression = Compression::None;
        let m = Metric {
            name: "x_total".into(),
            data: Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(
                opentelemetry_proto::tonic::metrics::v1::Sum {
                    data_points: vec![opentelemetry_proto::tonic::metrics::v1::NumberDataPoint {
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        value: Some(
                            opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                                3.5,
                            ),
                        ),
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                },
            )),
            ..Default::default()
        };
        let (body, headers) = s.encode(&[m]).expect("encode");
        assert_eq!(headers, [("Content-Type", "application/json".to_string())]);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let p = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"];
        assert_eq!(p["isMonotonic"], true);
        assert_eq!(p["aggregationTemporality"], 2);
        assert_eq!(p["dataPoints"][0]["asDouble"], 3.5);
        assert_eq!(p["dataPoints"][0]["timeUnixNano"], "2");
    }
}
