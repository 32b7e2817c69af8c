//! Metric declarations as config-driven plugins take them from their
//! settings (`[[...config.metrics]]` tables): name, type, help, unit,
//! labels, buckets.
use crate::{Families, FamilyId, Kind};
use serde::Deserialize;
use std::collections::HashMap;

/// One metric family as written in a plugin's settings.
///
/// ```
/// let m: weir_sdk::spec::MetricSpec = serde_json::from_str(
///     r#"{"name":"app_requests_total","type":"counter","labels":["status"]}"#).unwrap();
/// assert_eq!(m.kind, "counter");
/// ```
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// Prometheus name.
    pub name: String,
    /// `counter`, `gauge` or `histogram`.
    #[serde(rename = "type")]
    pub kind: String,
    /// HELP text.
    #[serde(default)]
    pub help: String,
    /// Base unit, or empty.
    #[serde(default)]
    pub unit: String,
    /// Label names.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Histogram bucket bounds.
    #[serde(default)]
    pub buckets: Vec<f64>,
}

/// A declared family, found by name: see [`declare_metrics`].
///
/// ```
/// # use weir_sdk::spec::*;
/// let m: MetricSpec = serde_json::from_str(r#"{"name":"a_total","type":"counter"}"#).unwrap();
/// let d = &declare_metrics(&[m], &mut weir_sdk::Families::default()).unwrap()["a_total"];
/// assert_eq!(d.kind, weir_sdk::Kind::Counter);
/// ```
#[derive(Debug, Clone)]
pub struct Declared {
    /// Its id.
    pub id: FamilyId,
    /// Its kind.
    pub kind: Kind,
    /// Its label names.
    pub labels: Vec<String>,
}

/// Declare every spec; errors name the entry (`metrics[2] "x": ...`).
///
/// ```
/// # use weir_sdk::spec::*;
/// let m: MetricSpec = serde_json::from_str(r#"{"name":"a","type":"meter"}"#).unwrap();
/// let e = declare_metrics(&[m], &mut weir_sdk::Families::default()).unwrap_err();
/// assert!(e.contains("unknown type \"meter\""), "{e}");
/// ```
pub fn declare_metrics(
    specs: &[MetricSpec],
    families: &mut Families,
) -> Result<HashMap<String, Declared>, String> {
    let mut by_name = HashMap::new();
    for (i, m) in specs.iter().enumerate() {
        let kind = match m.kind.as_str() {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            other => {
                return Err(format!(
                    "metrics[{i}] \"{}\": unknown type \"{other}\" (counter, gauge or histogram)",
                    m.name
                ))
            }
        };
        if by_name.contains_key(&m.name) {
            return Err(format!("metrics[{i}]: \"{}\" is declared twice", m.name));
        }
        let labels: Vec<&str> = m.labels.iter().map(String::as_str).collect();
        let id = families.declare(kind, &m.name, &m.help, &m.unit, &labels, &m.buckets);
        by_name.insert(
            m.name.clone(),
            Declared {
                id,
                kind,
                labels: m.labels.clone(),
            },
        );
    }
    Ok(by_name)
}
