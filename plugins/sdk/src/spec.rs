//! Metric declarations as config-driven plugins take them from their
//! settings (`[[...config.metrics]]` tables): name, type, help, unit,
//! labels, buckets, and the series to create at zero (`initial`, see
//! [`Zeros`]). A counter named without `_total` is declared with it.
use crate::{Families, FamilyId, Kind};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// Series created at zero before anything is recorded, one label set
    /// each (`[{status = "200"}, {status = "500"}]`): see
    /// [`Declared::initial`]. Unset: `[{}]` for a counter without labels
    /// (it is exposed at 0 from the start), none otherwise.
    #[serde(default)]
    pub initial: Option<Vec<BTreeMap<String, String>>>,
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
    /// The name it is exposed under: as written, with `_total` appended
    /// to a counter written without it (as mtail programs name them).
    pub name: String,
    /// Label values (in declared order) of the series to create at zero.
    pub initial: Vec<Vec<String>>,
}

/// Declare every spec; errors name the entry (`metrics[2] "x": ...`).
///
/// A counter written without `_total` is declared with it (OpenMetrics
/// exposes a counter `x` as `x_total`); both names find it.
///
/// ```
/// # use weir_sdk::spec::*;
/// let m: MetricSpec = serde_json::from_str(r#"{"name":"a","type":"meter"}"#).unwrap();
/// let e = declare_metrics(&[m], &mut weir_sdk::Families::default()).unwrap_err();
/// assert!(e.contains("unknown type \"meter\""), "{e}");
///
/// let m: MetricSpec = serde_json::from_str(r#"{"name":"lines","type":"counter"}"#).unwrap();
/// let mut f = weir_sdk::Families::default();
/// let d = declare_metrics(&[m], &mut f).unwrap();
/// assert_eq!(f.name(d["lines"].id), Some("lines_total"));
/// assert_eq!(d["lines_total"].initial, vec![Vec::<String>::new()]); // at 0 from the start
/// ```
pub fn declare_metrics(
    specs: &[MetricSpec],
    families: &mut Families,
) -> Result<HashMap<String, Declared>, String> {
    let mut by_name: HashMap<String, Declared> = HashMap::new();
    // name (as written, and as exposed) -> (index, name as written)
    let mut seen: HashMap<String, (usize, String)> = HashMap::new();
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
        let name = if kind == Kind::Counter && !m.name.ends_with("_total") && !m.name.is_empty() {
            format!("{}_total", m.name)
        } else {
            m.name.clone()
        };
        for n in [&m.name, &name] {
            if let Some((j, written)) = seen.get(n) {
                return Err(if *written == m.name {
                    format!("metrics[{i}]: \"{}\" is declared twice", m.name)
                } else {
                    format!(
                        "metrics[{i}]: \"{}\" clashes with metrics[{j}] \"{written}\" \
                         (a counter is exposed with _total)",
                        m.name
                    )
                });
            }
        }
        seen.insert(m.name.clone(), (i, m.name.clone()));
        seen.insert(name.clone(), (i, m.name.clone()));
        let initial = initial_series(i, m, kind)?;
        let labels: Vec<&str> = m.labels.iter().map(String::as_str).collect();
        let id = families.declare(kind, &name, &m.help, &m.unit, &labels, &m.buckets);
        let d = Declared {
            id,
            kind,
            labels: m.labels.clone(),
            name: name.clone(),
            initial,
        };
        if name != m.name {
            by_name.insert(m.name.clone(), d.clone());
        }
        by_name.insert(name, d);
    }
    Ok(by_name)
}

/// The label value sets of `initial`, in declared label order.
fn initial_series(i: usize, m: &MetricSpec, kind: Kind) -> Result<Vec<Vec<String>>, String> {
    let what = format!("metrics[{i}].initial");
    let Some(sets) = &m.initial else {
        return Ok(if kind == Kind::Counter && m.labels.is_empty() {
            vec![Vec::new()]
        } else {
            Vec::new()
        });
    };
    if kind == Kind::Histogram && !sets.is_empty() {
        return Err(format!(
            "{what}: \"{}\" is a histogram, whose series cannot be created before its first \
             observation (only counters and gauges can be pre-created)",
            m.name
        ));
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    for (j, set) in sets.iter().enumerate() {
        if let Some(k) = set.keys().find(|k| !m.labels.contains(k)) {
            return Err(format!(
                "{what}[{j}]: \"{k}\" is not a label of \"{}\" ({})",
                m.name,
                if m.labels.is_empty() {
                    "it has none".to_string()
                } else {
                    m.labels.join(", ")
                }
            ));
        }
        let mut values = Vec::new();
        for l in &m.labels {
            match set.get(l) {
                Some(v) => values.push(v.clone()),
                None => {
                    return Err(format!(
                        "{what}[{j}]: no value for label \"{l}\" of \"{}\"",
                        m.name
                    ))
                }
            }
        }
        if out.contains(&values) {
            return Err(format!(
                "{what}[{j}]: the same label values are listed twice"
            ));
        }
        out.push(values);
    }
    Ok(out)
}

/// The series every family's `initial` lists, to create at zero, in
/// declaration order: once per origin (see [`Zeros::emit`]).
///
/// ```
/// # use weir_sdk::spec::*;
/// let m: Vec<MetricSpec> = serde_json::from_str(r#"[
///     {"name":"errors_total","type":"counter"},
///     {"name":"requests_total","type":"counter","labels":["status"],
///      "initial":[{"status":"200"},{"status":"500"}]}]"#).unwrap();
/// let mut f = weir_sdk::Families::default();
/// let mut zeros = Zeros::new(&declare_metrics(&m, &mut f).unwrap());
/// let mut out = weir_sdk::Output::for_families(&f);
/// zeros.emit("app.log", &mut out);
/// assert_eq!(out.len(), 3); // errors_total, {status="200"}, {status="500"}: add 0
/// zeros.emit("app.log", &mut out);
/// assert_eq!(out.len(), 3); // once per origin
/// ```
#[derive(Debug, Clone, Default)]
pub struct Zeros {
    series: Vec<(FamilyId, Vec<String>)>,
    origins: HashSet<String>,
}

/// Origins remembered by [`Zeros`]; past it they are forgotten and the
/// zeros sent again, which changes nothing.
const MAX_ORIGINS: usize = 4096;

impl Zeros {
    /// Gather the series from what [`declare_metrics`] returned.
    ///
    /// ```
    /// assert!(weir_sdk::spec::Zeros::new(&Default::default()).is_empty());
    /// ```
    pub fn new(declared: &HashMap<String, Declared>) -> Zeros {
        let mut fams: Vec<&Declared> = declared.values().collect();
        fams.sort_by_key(|d| d.id.0);
        fams.dedup_by_key(|d| d.id.0);
        Zeros {
            series: fams
                .into_iter()
                .flat_map(|d| d.initial.iter().map(|l| (d.id, l.clone())))
                .collect(),
            origins: HashSet::new(),
        }
    }

    /// Whether there is nothing to create.
    ///
    /// ```
    /// assert!(weir_sdk::spec::Zeros::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Add 0 to each series, the first time a batch comes from `origin`:
    /// the host creates a series at its first update, with the labels of
    /// the input it came from (a container log's `namespace`, `pod`, ...),
    /// so each origin gets its own zeros; adding 0 leaves a series that
    /// exists (another file of a glob, a plugin restart, a reload) as it
    /// is. Call it at the start of every call.
    ///
    /// ```
    /// let mut z = weir_sdk::spec::Zeros::default();
    /// z.emit("stdin", &mut weir_sdk::Output::new());
    /// ```
    pub fn emit(&mut self, origin: &str, out: &mut crate::Output) {
        if self.series.is_empty() || self.origins.contains(origin) {
            return;
        }
        if self.origins.len() >= MAX_ORIGINS {
            self.origins.clear();
        }
        self.origins.insert(origin.to_string());
        for (f, labels) in &self.series {
            out.add(*f, labels, 0.0);
        }
    }
}
