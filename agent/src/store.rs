//! Series state, owned by the host.
//!
//! Each pipeline has one [`PipelineStore`]: the families its plugin declared
//! and the current value of every series. Plugins only send updates; values
//! live here, so a plugin that traps, restarts or is replaced keeps its
//! counters. The exposition reads these stores at scrape time.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod saved;
pub use saved::{Restored, SavedSeries};

/// How long a counter series absent from its source keeps the offset the
/// host added to its readings (see [`Value::Counter`]), so that it goes on
/// where it was if it comes back. A day covers the `increase()` windows
/// dashboards and SLOs use.
pub const ABSENT_COUNTER_KEPT_FOR: Duration = Duration::from_secs(24 * 3600);

/// Metric kinds, as declared by plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram with fixed buckets.
    Histogram,
    /// Summary: quantiles computed elsewhere, set as read.
    Summary,
}

impl Kind {
    /// Prometheus TYPE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A validated family declaration.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyDecl {
    /// Full metric name as exposed (counters end in `_total`).
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// HELP text.
    pub help: String,
    /// Unit, or empty.
    pub unit: String,
    /// Label names; constant pipeline labels come first.
    pub labels: Vec<String>,
    /// Histogram bucket upper bounds, without `+Inf`.
    pub buckets: Vec<f64>,
}

/// Longest label value kept. A longer one is refused (`label_too_long`):
/// the series cap bounds how many series a plugin makes, this bounds how
/// big each one is.
pub const MAX_LABEL_VALUE_BYTES: usize = 4096;

/// Longest help text a family may declare.
pub const MAX_HELP_BYTES: usize = 4096;

/// The Prometheus client libraries' default buckets.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label-name rule, shared with the config's constant labels.
pub use crate::config::valid_label_name;
use crate::config::valid_metric_name;

impl FamilyDecl {
    /// Check a declaration as a plugin sent it; `const_labels` are the
    /// pipeline's constant label names, prepended to the family's own.
    pub fn validate(
        name: String,
        kind: Kind,
        help: String,
        unit: String,
        labels: Vec<String>,
        mut buckets: Vec<f64>,
        const_labels: &[String],
    ) -> Result<Self, String> {
        if !valid_metric_name(&name) {
            return Err(format!(
                "family \"{name}\": not a valid metric name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        if name.starts_with("weir_") {
            return Err(format!(
                "family \"{name}\": the weir_ prefix is reserved for the agent's own metrics"
            ));
        }
        if help.len() > MAX_HELP_BYTES {
            return Err(format!(
                "family \"{name}\": help text is {} bytes; at most {MAX_HELP_BYTES}",
                help.len()
            ));
        }
        if kind == Kind::Counter && !name.ends_with("_total") {
            return Err(format!(
                "family \"{name}\": a counter's name must end in _total"
            ));
        }
        if !unit.is_empty() {
            let base = name.strip_suffix("_total").unwrap_or(&name);
            if !base.ends_with(&format!("_{unit}")) {
                return Err(format!(
                    "family \"{name}\": unit \"{unit}\" given, so the name must end in _{unit}{}",
                    if kind == Kind::Counter { "_total" } else { "" }
                ));
            }
        }
        let mut seen = HashSet::new();
        for l in const_labels.iter().chain(labels.iter()) {
            if !valid_label_name(l) {
                return Err(format!("family \"{name}\": invalid label name \"{l}\""));
            }
            if kind == Kind::Histogram && l == "le" {
                return Err(format!(
                    "family \"{name}\": \"le\" is reserved for histogram buckets"
                ));
            }
            if kind == Kind::Summary && l == "quantile" {
                return Err(format!(
                    "family \"{name}\": \"quantile\" is reserved for summary quantiles"
                ));
            }
            if !seen.insert(l.as_str()) {
                return Err(format!("family \"{name}\": label \"{l}\" appears twice"));
            }
        }
        if kind == Kind::Histogram {
            if buckets.is_empty() {
                buckets = DEFAULT_BUCKETS.to_vec();
            }
            if buckets.last() == Some(&f64::INFINITY) {
                buckets.pop();
            }
            if buckets.iter().any(|b| !b.is_finite()) || buckets.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!(
                    "family \"{name}\": buckets must be finite and strictly increasing"
                ));
            }
        } else if !buckets.is_empty() {
            return Err(format!("family \"{name}\": only histograms have buckets"));
        }
        let mut all = const_labels.to_vec();
        all.extend(labels);
        Ok(FamilyDecl {
            name,
            kind,
            help,
            unit,
            labels: all,
            buckets,
        })
    }

    /// Name without `_total` (OpenMetrics family name of a counter).
    pub fn base_name(&self) -> &str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(&self.name),
            _ => &self.name,
        }
    }
}

/// A change to one series, as validated from a plugin update.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Add to a counter or gauge.
    Add(f64),
    /// Set a gauge, or a counter's cumulative reading.
    Set(f64),
    /// Observe values into a histogram.
    Observe(Vec<f64>),
    /// Replace a histogram with a reading: counts per bucket (not
    /// cumulative, `+Inf` last) and sum (NaN when the reading has none).
    SetHistogram(Vec<u64>, f64),
    /// Replace a summary with a reading: quantiles, sum, count.
    SetSummary(Vec<(f64, f64)>, f64, u64),
}

/// Value of one series.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Counter: `offset + raw` is exposed.
    ///
    /// `raw` is the sum of `add`s, or the latest cumulative reading
    /// (`set`). What a reading that went down means depends on who made it
    /// lower, and the rule is chosen so that Prometheus' `increase()` over
    /// what weir exposes equals the true increase at the source:
    ///
    /// - **The source reset** (an upstream app restarted: a reading lower
    ///   than the previous one from the same plugin instance): the reading
    ///   is passed through as it is, `offset` back to 0, and Prometheus
    ///   sees the reset exactly as it would scraping the source itself.
    ///   Nothing about the source has to be remembered for this, so a
    ///   series missing from responses or failed polls for any length of
    ///   time, or an agent restart, cannot make `increase()` wrong (keeping
    ///   a host-side offset instead would count a whole reading twice each
    ///   time that offset was lost), and weir's value stays the upstream's
    ///   value, as it is for histograms and summaries read as a whole.
    /// - **A new plugin instance started its readings over** (a restart
    ///   after a trap, a reload; process-groups counts from 0 at its first
    ///   scan): the first lower reading from the new instance is absorbed,
    ///   `offset += raw`, so counters the host owns do not go down because
    ///   weir replaced its plugin.
    ///
    /// A series with a non-zero `offset` that leaves a snapshot keeps it
    /// for [`ABSENT_COUNTER_KEPT_FOR`] (at most `max_series` such series
    /// per pipeline), and goes on from it if it comes back.
    Counter {
        /// Added by the host: what earlier plugin instances counted.
        offset: f64,
        /// Sum of adds, or the latest reading.
        raw: f64,
        /// The plugin instance ([`PipelineStore::declare`] count) that
        /// made the last reading.
        instance: u64,
    },
    /// Gauge.
    Gauge(f64),
    /// Histogram: per-bucket (non-cumulative) counts, the last one `+Inf`.
    Histogram {
        /// Counts per bucket, `buckets.len() + 1` entries.
        counts: Vec<u64>,
        /// Sum of observations; NaN for a reading that had no sum, which
        /// the outputs then leave out.
        sum: f64,
    },
    /// Summary as last read.
    Summary {
        /// (quantile, value) pairs.
        quantiles: Vec<(f64, f64)>,
        /// Sum.
        sum: f64,
        /// Count.
        count: u64,
    },
}

impl Value {
    /// The counter's exposed value.
    pub fn counter_value(&self) -> f64 {
        match self {
            Value::Counter { offset, raw, .. } => offset + raw,
            _ => 0.0,
        }
    }
}

/// Why an update was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// The family index is not one the plugin declared.
    UnknownFamily,
    /// Wrong number of label values.
    LabelCount,
    /// A negative add to a counter.
    NegativeCounter,
    /// NaN or infinite value, or an add or observation whose result would
    /// be infinite.
    NotFinite,
    /// An operation the family's kind does not take.
    WrongOp,
    /// The pipeline's series cap was reached.
    SeriesLimit,
    /// A label value longer than [`MAX_LABEL_VALUE_BYTES`].
    LabelTooLong,
}

impl Reject {
    /// Label value used in self-metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::UnknownFamily => "unknown_family",
            Reject::LabelCount => "label_count",
            Reject::NegativeCounter => "negative_counter",
            Reject::NotFinite => "not_finite",
            Reject::WrongOp => "wrong_op",
            Reject::SeriesLimit => "series_limit",
            Reject::LabelTooLong => "label_too_long",
        }
    }

    /// Every reason, for pre-registering series.
    pub const ALL: [Reject; 7] = [
        Reject::UnknownFamily,
        Reject::LabelCount,
        Reject::LabelTooLong,
        Reject::NegativeCounter,
        Reject::NotFinite,
        Reject::WrongOp,
        Reject::SeriesLimit,
    ];
}

/// One declared family and its series.
#[derive(Debug)]
pub struct FamilyState {
    /// The declaration.
    pub decl: Arc<FamilyDecl>,
    /// Series by label values.
    pub series: HashMap<Vec<String>, Value>,
    /// Counter series absent from the last snapshot whose host-side offset
    /// is kept (see [`Value::Counter`]), with when they left.
    absent: HashMap<Vec<String>, (Value, Instant)>,
    /// When each series was last updated: kept only with the pipeline's
    /// `expire_after` (see [`PipelineStore::set_expire_after`]).
    last_update: HashMap<Vec<String>, Instant>,
    /// The pipeline's `expire_after`.
    expire_after: Option<Duration>,
}

impl FamilyState {
    fn new(decl: FamilyDecl) -> Self {
        FamilyState {
            decl: Arc::new(decl),
            series: HashMap::new(),
            absent: HashMap::new(),
            last_update: HashMap::new(),
            expire_after: None,
        }
    }

    /// Whether the series `key` got no update for the pipeline's
    /// `expire_after` (never without one).
    fn idle(&self, key: &[String], now: Instant) -> bool {
        self.expire_after.is_some_and(|d| {
            self.last_update
                .get(key)
                .is_some_and(|t| now.saturating_duration_since(*t) >= d)
        })
    }

    /// The series to expose: all of them, less those idle past the
    /// pipeline's `expire_after` (removed at the next update of the
    /// pipeline; a series updated again before that starts afresh).
    pub fn live_series(&self) -> impl Iterator<Item = (&Vec<String>, &Value)> {
        let now = Instant::now();
        self.series.iter().filter(move |(k, _)| !self.idle(k, now))
    }
}

/// A new series' value: zero of its kind (a counter made by `instance`).
fn zero(kind: Kind, buckets: usize, instance: u64) -> Value {
    match kind {
        Kind::Counter => Value::Counter {
            offset: 0.0,
            raw: 0.0,
            instance,
        },
        Kind::Gauge => Value::Gauge(0.0),
        Kind::Histogram => Value::Histogram {
            counts: vec![0; buckets + 1],
            sum: 0.0,
        },
        Kind::Summary => Value::Summary {
            quantiles: Vec::new(),
            sum: 0.0,
            count: 0,
        },
    }
}

/// How updates combine with what is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantics {
    /// Log lines: updates accumulate.
    Events,
    /// Polls and scans: each call is the complete set; series not touched
    /// by the call are removed.
    Snapshot,
}

/// The state of one pipeline.
#[derive(Debug)]
pub struct PipelineStore {
    /// By index, as the plugin numbers them. `None` holds the index of a
    /// family declared during a call and refused, so later ids stay right.
    families: Vec<Option<FamilyState>>,
    const_values: Vec<String>,
    max_series: usize,
    series: usize,
    /// Counts [`PipelineStore::declare`] calls: one per plugin instance.
    instance: u64,
    /// Entries in the families' `absent` maps.
    absent: usize,
    /// The pipeline's `expire_after`: series idle that long are dropped.
    expire_after: Option<Duration>,
    /// When idle series were last looked for.
    swept: Instant,
}

/// The label value that every label of a family's overflow series has
/// (except the pipeline's constant labels): past `max_series`, updates for
/// new label sets go to that one series per family, so that `sum()` over
/// the family stays right while the number of series stays bounded. (The
/// OpenTelemetry SDKs do the same past their cardinality limit, with an
/// `otel.metric.overflow` attribute; a Prometheus family has fixed label
/// names, so the values carry the mark.)
pub const OVERFLOW_VALUE: &str = "__overflow__";

/// The result of applying one call's updates.
#[derive(Default, Debug)]
pub struct Applied {
    /// Updates applied (those folded into an overflow series included).
    pub applied: u64,
    /// Refused updates by reason; `SeriesLimit` counts the updates folded
    /// into an overflow series.
    pub rejected: Vec<(Reject, u64)>,
    /// (family index, updates) folded into the family's overflow series.
    pub overflowed: Vec<(u32, u64)>,
}

impl Applied {
    fn reject_n(&mut self, r: Reject, count: u64) {
        if count == 0 {
            return;
        }
        match self.rejected.iter_mut().find(|(k, _)| *k == r) {
            Some((_, n)) => *n += count,
            None => self.rejected.push((r, count)),
        }
    }
}

/// What [`PipelineStore::declare`] did with the families already held.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Declared {
    /// Families that kept their series.
    pub kept: Vec<String>,
    /// Families that start empty again, and why.
    pub reset: Vec<(String, &'static str)>,
    /// Families no longer declared.
    pub removed: Vec<String>,
}

/// An update before validation: family index, label values, change.
pub type RawUpdate = (u32, Vec<String>, Change);

impl PipelineStore {
    /// A store with no families yet.
    pub fn new(const_values: Vec<String>, max_series: usize) -> Self {
        PipelineStore {
            families: Vec::new(),
            const_values,
            max_series,
            series: 0,
            instance: 0,
            absent: 0,
            expire_after: None,
            swept: Instant::now(),
        }
    }

    /// Drop series that got no update for `d` (`expire_after`; `None`:
    /// keep every series until the pipeline goes). A series updated again
    /// after that starts afresh, from zero, as a new series would: never a
    /// counter that is still updated. Series held now count as updated
    /// now.
    pub fn set_expire_after(&mut self, d: Option<Duration>) {
        if self.expire_after == d {
            return;
        }
        self.expire_after = d;
        let now = Instant::now();
        for f in self.families.iter_mut().flatten() {
            f.expire_after = d;
            f.last_update = match d {
                Some(_) => f.series.keys().map(|k| (k.clone(), now)).collect(),
                None => HashMap::new(),
            };
        }
    }

    /// Remove the series idle past `expire_after`, at most once a second.
    fn sweep_idle(&mut self, now: Instant) {
        if self.expire_after.is_none()
            || now.saturating_duration_since(self.swept) < Duration::from_secs(1)
        {
            return;
        }
        self.swept = now;
        for f in self.families.iter_mut().flatten() {
            let idle: Vec<Vec<String>> = f
                .series
                .keys()
                .filter(|k| f.idle(k, now))
                .cloned()
                .collect();
            for k in idle {
                f.series.remove(&k);
                f.last_update.remove(&k);
            }
        }
        self.series = self.families().map(|f| f.series.len()).sum();
    }

    /// Install a plugin's declarations, keeping the constant label values;
    /// see [`PipelineStore::declare_with`].
    pub fn declare(&mut self, decls: Vec<FamilyDecl>) {
        let values = self.const_values.clone();
        self.declare_with(decls, values);
    }

    /// Install a plugin's declarations and the pipeline's constant label
    /// values (in label-name order). A family whose declaration equals one
    /// already here keeps its series, unless the constant label values
    /// changed (its series carry the old values); others start empty, and
    /// families no longer declared go away. Says which were kept and why
    /// the others were reset, for the reload log.
    pub fn declare_with(&mut self, decls: Vec<FamilyDecl>, const_values: Vec<String>) -> Declared {
        self.instance += 1;
        let values_changed = self.const_values != const_values;
        let count_changed = self.const_values.len() != const_values.len();
        self.const_values = const_values;
        let mut old: HashMap<String, FamilyState> = self
            .families
            .drain(..)
            .flatten()
            .map(|f| (f.decl.name.clone(), f))
            .collect();
        let mut out = Declared::default();
        for d in decls {
            let state = match old.remove(&d.name) {
                Some(f) if *f.decl == d && !values_changed => {
                    out.kept.push(d.name.clone());
                    f
                }
                prev => {
                    if let Some(f) = prev {
                        let only_labels = FamilyDecl {
                            labels: d.labels.clone(),
                            ..(*f.decl).clone()
                        } == d;
                        let why = if *f.decl == d {
                            "constant label values changed"
                        } else if only_labels && count_changed {
                            // The pipeline's `labels` gained or lost one.
                            "constant labels changed"
                        } else {
                            "declaration changed"
                        };
                        if !f.series.is_empty() || *f.decl != d {
                            out.reset.push((d.name.clone(), why));
                        }
                    }
                    FamilyState::new(d)
                }
            };
            self.families.push(Some(state));
        }
        out.removed = old.into_keys().collect();
        out.removed.sort();
        // Families declared anew take the pipeline's expire_after; kept
        // ones keep their series' times.
        let d = self.expire_after;
        for f in self.families.iter_mut().flatten() {
            f.expire_after = d;
        }
        self.series = self.families().map(|f| f.series.len()).sum();
        self.absent = self.families().map(|f| f.absent.len()).sum();
        out
    }

    /// Add families declared during a call. Refuses (and adds none of
    /// them) if a name is already declared.
    pub fn declare_more(&mut self, decls: Vec<FamilyDecl>) -> Result<(), String> {
        for (i, d) in decls.iter().enumerate() {
            if self.families().any(|f| f.decl.name == d.name)
                || decls[..i].iter().any(|o| o.name == d.name)
            {
                return Err(format!("family \"{}\" is already declared", d.name));
            }
        }
        for d in decls {
            let mut f = FamilyState::new(d);
            f.expire_after = self.expire_after;
            self.families.push(Some(f));
        }
        Ok(())
    }

    /// Hold the index of a family declared during a call and refused: its
    /// updates are rejected as unknown; later families keep their ids.
    pub fn declare_refused(&mut self) {
        self.families.push(None);
    }

    /// The declared families, in index order.
    pub fn families(&self) -> impl Iterator<Item = &FamilyState> {
        self.families.iter().flatten()
    }

    /// The family with index `i`, if declared.
    pub fn family(&self, i: usize) -> Option<&FamilyState> {
        self.families.get(i).and_then(Option::as_ref)
    }

    /// Number of series held.
    pub fn series_count(&self) -> usize {
        self.series
    }

    /// Change the series cap (reload of pipeline settings).
    pub fn set_max_series(&mut self, max: usize) {
        self.max_series = max;
    }

    /// Apply one call's updates.
    pub fn apply(&mut self, updates: Vec<RawUpdate>, semantics: Semantics) -> Applied {
        self.apply_with(updates, semantics, &[])
    }

    /// Apply one call's updates, with the values of the source's labels
    /// for the input they came from (a container log's `namespace`,
    /// `pod`, ...): declared after the constant labels, before the
    /// plugin's own.
    pub fn apply_with(
        &mut self,
        updates: Vec<RawUpdate>,
        semantics: Semantics,
        source_values: &[String],
    ) -> Applied {
        let mut res = Applied::default();
        let now = Instant::now();
        self.sweep_idle(now);
        let mut touched: Vec<HashSet<Vec<String>>> = match semantics {
            Semantics::Snapshot => vec![HashSet::new(); self.families.len()],
            Semantics::Events => Vec::new(),
        };
        for (fi, labels, mut change) in updates {
            // An observe-many is that many updates, each judged on its own,
            // so what is refused does not depend on how a plugin's
            // observations were gathered into calls (issue 19).
            let mut weight = match &change {
                Change::Observe(vs) => vs.len() as u64,
                _ => 1,
            };
            let Some(fam) = self.families.get_mut(fi as usize).and_then(Option::as_mut) else {
                res.reject_n(Reject::UnknownFamily, weight);
                continue;
            };
            let decl = &fam.decl;
            if labels.len() + self.const_values.len() + source_values.len() != decl.labels.len() {
                res.reject_n(Reject::LabelCount, weight);
                continue;
            }
            if labels.iter().any(|l| l.len() > MAX_LABEL_VALUE_BYTES) {
                res.reject_n(Reject::LabelTooLong, weight);
                continue;
            }
            let finite = match &mut change {
                // A gauge read from elsewhere may be NaN or infinite (both
                // formats carry them); nothing accumulates into it.
                Change::Set(_) if decl.kind == Kind::Gauge => true,
                Change::Add(v) | Change::Set(v) => v.is_finite(),
                Change::Observe(vs) => {
                    let before = vs.len();
                    vs.retain(|v| v.is_finite());
                    res.reject_n(Reject::NotFinite, (before - vs.len()) as u64);
                    weight = vs.len() as u64;
                    !vs.is_empty()
                }
                // A reading without a sum (valid in both formats) has NaN.
                Change::SetHistogram(_, sum) => !sum.is_infinite(),
                // A summary with no observations has NaN quantiles.
                Change::SetSummary(qs, sum, _) => {
                    !sum.is_infinite() && qs.iter().all(|(q, _)| q.is_finite())
                }
            };
            if !finite {
                // (an observe-many's values were counted one by one above)
                res.reject_n(Reject::NotFinite, weight);
                continue;
            }
            match (decl.kind, &change) {
                (Kind::Counter, Change::Add(v)) if *v < 0.0 => {
                    res.reject_n(Reject::NegativeCounter, weight);
                    continue;
                }
                (Kind::Counter, Change::Set(v)) if *v < 0.0 => {
                    res.reject_n(Reject::NegativeCounter, weight);
                    continue;
                }
                (Kind::Histogram, Change::SetHistogram(counts, _))
                    if counts.len() != decl.buckets.len() + 1 =>
                {
                    res.reject_n(Reject::WrongOp, weight);
                    continue;
                }
                (Kind::Counter | Kind::Gauge, Change::Add(_) | Change::Set(_))
                | (Kind::Histogram, Change::Observe(_) | Change::SetHistogram(..))
                | (Kind::Summary, Change::SetSummary(..)) => {}
                _ => {
                    res.reject_n(Reject::WrongOp, weight);
                    continue;
                }
            }
            let key = if self.const_values.is_empty() && source_values.is_empty() {
                labels
            } else {
                let mut k = self.const_values.clone();
                k.extend(source_values.iter().cloned());
                k.extend(labels);
                k
            };
            let nb = decl.buckets.len();
            let kind = decl.kind;
            let instance = self.instance;
            // Past the cap, a new label set is folded into the family's
            // overflow series (its own labels at OVERFLOW_VALUE), which may
            // be created past the cap, one per family: what it counts stays
            // in sum(), and nothing new is made per label set.
            let key = if !fam.series.contains_key(&key) && self.series >= self.max_series {
                res.reject_n(Reject::SeriesLimit, weight);
                match res.overflowed.iter_mut().find(|(f, _)| *f == fi) {
                    Some((_, n)) => *n += weight,
                    None => res.overflowed.push((fi, weight)),
                }
                let own = decl.labels.len() - self.const_values.len();
                let mut k = self.const_values.clone();
                k.extend(std::iter::repeat_n(OVERFLOW_VALUE.to_string(), own));
                k
            } else {
                key
            };
            if fam.expire_after.is_some() {
                // Idle past expire_after and not swept yet: it comes back
                // as a new series would, from zero.
                if fam.idle(&key, now) {
                    if let Some(v) = fam.series.get_mut(&key) {
                        *v = zero(kind, nb, instance);
                    }
                }
                fam.last_update.insert(key.clone(), now);
            }
            let value = match fam.series.get_mut(&key) {
                Some(v) => v,
                None => {
                    self.series += 1;
                    let back = fam.absent.remove(&key).map(|(v, _)| v);
                    if back.is_some() {
                        self.absent -= 1;
                    }
                    let init = match (kind, back) {
                        (Kind::Counter, Some(back)) => back,
                        _ => zero(kind, nb, instance),
                    };
                    fam.series.entry(key.clone()).or_insert(init)
                }
            };
            // An add of finite values can still overflow to infinity
            // (1e308 + 1e308): refused like an infinite value, since the
            // series could never leave it (rate() of it is NaN forever).
            let overflows = match (&*value, &change) {
                (Value::Counter { offset, raw, .. }, Change::Add(v)) => {
                    !(offset + raw + v).is_finite()
                }
                (Value::Gauge(g), Change::Add(v)) => g.is_finite() && !(g + v).is_finite(),
                _ => false,
            };
            if overflows {
                res.reject_n(Reject::NotFinite, weight);
                continue;
            }
            match (value, change) {
                (Value::Counter { raw, .. }, Change::Add(v)) => *raw += v,
                (
                    Value::Counter {
                        offset,
                        raw,
                        instance: by,
                    },
                    Change::Set(v),
                ) => {
                    // See Value::Counter for why.
                    if v < *raw {
                        if *by == instance {
                            *offset = 0.0;
                        } else {
                            *offset += *raw;
                        }
                    }
                    *raw = v;
                    *by = instance;
                }
                (Value::Gauge(g), Change::Add(v)) => *g += v,
                (Value::Gauge(g), Change::Set(v)) => *g = v,
                (Value::Histogram { counts, sum }, Change::Observe(vs)) => {
                    for v in vs {
                        if !(*sum + v).is_finite() {
                            res.reject_n(Reject::NotFinite, 1);
                            continue;
                        }
                        // Buckets are inclusive upper bounds: v <= le. A
                        // value of 0 lands in the first bucket.
                        let i = fam.decl.buckets.partition_point(|b| *b < v);
                        // Saturating: a count restored from a hand-edited checkpoint
                        // may sit at the top of u64.
                        counts[i] = counts[i].saturating_add(1);
                        *sum += v;
                    }
                }
                (Value::Histogram { counts, sum }, Change::SetHistogram(c, s)) => {
                    *counts = c;
                    *sum = s;
                }
                (
                    Value::Summary {
                        quantiles,
                        sum,
                        count,
                    },
                    Change::SetSummary(q, s, n),
                ) => {
                    *quantiles = q;
                    *sum = s;
                    *count = n;
                }
                // Kind and change were checked together above.
                _ => {}
            }
            if let Some(t) = touched.get_mut(fi as usize) {
                t.insert(key);
            }
            res.applied += 1;
        }
        if semantics == Semantics::Snapshot {
            let now = Instant::now();
            for (fam, t) in self.families.iter_mut().zip(touched) {
                if let Some(fam) = fam {
                    let gone: Vec<Vec<String>> = fam
                        .series
                        .keys()
                        .filter(|k| !t.contains(*k))
                        .cloned()
                        .collect();
                    for k in gone {
                        if let Some(v) = fam.series.remove(&k) {
                            self.absent += keep_absent(fam, k, v, now);
                        }
                    }
                }
            }
            self.series = self.families().map(|f| f.series.len()).sum();
            self.prune_absent(now);
        }
        res
    }

    /// Remove every series (a snapshot source that failed). Counters with
    /// a host-side offset keep it for a while (see [`Value::Counter`]).
    pub fn clear_series(&mut self) {
        let now = Instant::now();
        for f in self.families.iter_mut().flatten() {
            for (k, v) in std::mem::take(&mut f.series) {
                self.absent += keep_absent(f, k, v, now);
            }
        }
        self.series = 0;
        self.prune_absent(now);
    }

    /// Forget absent counters older than [`ABSENT_COUNTER_KEPT_FOR`], and
    /// the oldest past `max_series`.
    fn prune_absent(&mut self, now: Instant) {
        if self.absent == 0 {
            return;
        }
        let mut n = 0;
        for f in self.families.iter_mut().flatten() {
            f.absent
                .retain(|_, (_, since)| now.duration_since(*since) < ABSENT_COUNTER_KEPT_FOR);
            n += f.absent.len();
        }
        while n > self.max_series {
            let oldest = self
                .families
                .iter()
                .enumerate()
                .filter_map(|(i, f)| Some((i, f.as_ref()?)))
                .flat_map(|(i, f)| f.absent.iter().map(move |(k, (_, t))| (*t, i, k)))
                .min_by_key(|(t, _, _)| *t)
                .map(|(_, i, k)| (i, k.clone()));
            let Some((i, k)) = oldest else { break };
            if let Some(Some(f)) = self.families.get_mut(i) {
                f.absent.remove(&k);
            }
            n -= 1;
        }
        self.absent = n;
    }
}

/// Keep what matters of a series leaving a snapshot: a counter's
/// host-side offset. Returns 1 when kept.
fn keep_absent(fam: &mut FamilyState, key: Vec<String>, v: Value, now: Instant) -> usize {
    match v {
        Value::Counter { offset, .. } if offset != 0.0 => {
            fam.absent.insert(key, (v, now));
            1
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid declaration (also for the tests of `saved`).
    pub(super) fn decl(name: &str, kind: Kind, labels: &[&str], buckets: &[f64]) -> FamilyDecl {
        FamilyDecl::validate(
            name.into(),
            kind,
            "h".into(),
            String::new(),
            labels.iter().map(|s| s.to_string()).collect(),
            buckets.to_vec(),
            &[],
        )
        .expect("valid")
    }

    /// Label values from strs.
    pub(super) fn l(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_observation_of_an_observe_many_is_judged_on_its_own() {
        // Issue 19: batched or one by one, the same values are refused.
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![
            decl("h", Kind::Histogram, &[], &[1.0]),
            decl("c_total", Kind::Counter, &[], &[]),
        ]);
        let r = s.apply(
            vec![
                (
                    0,
                    l(&[]),
                    Change::Observe(vec![0.5, f64::NAN, 2.0, f64::INFINITY]),
                ),
                (0, l(&["extra"]), Change::Observe(vec![1.0, 1.0, 1.0])),
                (1, l(&[]), Change::Observe(vec![1.0, 2.0])),
                (0, l(&[]), Change::Observe(vec![f64::NAN])),
            ],
            Semantics::Events,
        );
        let mut rejected = r.rejected.clone();
        rejected.sort_by_key(|(k, _)| k.as_str());
        assert_eq!(
            rejected,
            vec![
                (Reject::LabelCount, 3),
                (Reject::NotFinite, 3),
                (Reject::WrongOp, 2)
            ]
        );
        let f = s.families().next().expect("family");
        match f.series.get(&l(&[])) {
            Some(Value::Histogram { counts, sum }) => {
                assert_eq!(counts, &vec![1, 1]);
                assert_eq!(*sum, 2.5);
            }
            _ => panic!("no histogram series"),
        }
    }

    #[test]
    fn adds_that_would_overflow_to_infinity_are_refused() {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![
            decl("c_total", Kind::Counter, &[], &[]),
            decl("g", Kind::Gauge, &[], &[]),
            decl("h", Kind::Histogram, &[], &[1.0]),
        ]);
        let r = s.apply(
            vec![
                (0, l(&[]), Change::Add(1e308)),
                (0, l(&[]), Change::Add(1e308)),
                (0, l(&[]), Change::Add(5.0)),
                (1, l(&[]), Change::Add(-1e308)),
                (1, l(&[]), Change::Add(-1e308)),
                (2, l(&[]), Change::Observe(vec![1e308, 1e308, 0.5])),
            ],
            Semantics::Events,
        );
        assert_eq!(r.rejected, vec![(Reject::NotFinite, 3)]);
        let mut f = s.families();
        let first = |f: &mut dyn Iterator<Item = &FamilyState>| {
            f.next()
                .and_then(|f| f.series.get(&l(&[])).cloned())
                .expect("series")
        };
        assert!(matches!(first(&mut f), Value::Counter { raw, .. } if raw == 1e308 + 5.0));
        assert_eq!(first(&mut f), Value::Gauge(-1e308));
        match first(&mut f) {
            Value::Histogram { counts, sum } => {
                assert_eq!(counts, vec![1, 1]);
                assert_eq!(sum, 1e308 + 0.5);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn long_label_values_and_help_texts_are_refused() {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![decl("c_total", Kind::Counter, &["k"], &[])]);
        let long = "x".repeat(MAX_LABEL_VALUE_BYTES + 1);
        let r = s.apply(
            vec![
                (0, vec![long], Change::Add(1.0)),
                (0, l(&["short"]), Change::Add(1.0)),
            ],
            Semantics::Events,
        );
        assert_eq!(r.rejected, vec![(Reject::LabelTooLong, 1)]);
        assert_eq!(s.series_count(), 1);
        let e = FamilyDecl::validate(
            "g".into(),
            Kind::Gauge,
            "h".repeat(MAX_HELP_BYTES + 1),
            String::new(),
            vec![],
            vec![],
            &[],
        );
        assert!(e.is_err_and(|e| e.contains("help text is 4097 bytes")));
    }

    #[test]
    fn zero_falls_in_lowest_bucket_and_bounds_are_inclusive() {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![decl("d_seconds", Kind::Histogram, &[], &[0.1, 1.0])]);
        s.apply(
            vec![(0, vec![], Change::Observe(vec![0.0, 0.1, 0.5, 1.0, 7.0]))],
            Semantics::Events,
        );
        let v = s
            .family(0)
            .expect("family 0")
            .series
            .get(&Vec::new())
            .cloned();
        assert_eq!(
            v,
            Some(Value::Histogram {
                counts: vec![2, 2, 1],
                sum: 8.6
            })
        );
    }

    #[test]
    fn invalid_updates_are_refused_and_counted() {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![decl("c_total", Kind::Counter, &["a"], &[])]);
        let r = s.apply(
            vec![
                (0, l(&["x"]), Change::Add(1.0)),
                (7, l(&["x"]), Change::Add(1.0)),
                (0, l(&[]), Change::Add(1.0)),
                (0, l(&["x"]), Change::Add(-1.0)),
                (0, l(&["x"]), Change::Add(f64::NAN)),
                (0, l(&["x"]), Change::Observe(vec![1.0])),
            ],
            Semantics::Events,
        );
        assert_eq!(r.applied, 1);
        let mut reasons: Vec<_> = r.rejected.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        reasons.sort();
        assert_eq!(
            reasons,
            vec![
                ("label_count", 1),
                ("negative_counter", 1),
                ("not_finite", 1),
                ("unknown_family", 1),
                ("wrong_op", 1)
            ]
        );
    }

    #[test]
    fn past_the_series_cap_new_label_sets_fold_into_one_overflow_series() {
        let mut s = PipelineStore::new(vec!["web1".into()], 2);
        let mut d = decl("c_total", Kind::Counter, &["a", "b"], &[]);
        d.labels.insert(0, "host".into());
        s.declare(vec![d]);
        let r = s.apply(
            (0..5)
                .map(|i| (0, l(&[&i.to_string(), "x"]), Change::Add(1.0)))
                .chain([(0, l(&["0", "x"]), Change::Add(1.0))])
                .collect(),
            Semantics::Events,
        );
        // Two series of their own, one overflow series past the cap.
        assert_eq!(s.series_count(), 3);
        assert_eq!(r.applied, 6);
        assert_eq!(r.rejected, vec![(Reject::SeriesLimit, 3)]);
        assert_eq!(r.overflowed, vec![(0, 3)]);
        let f = s.family(0).expect("family");
        let total: f64 = f.series.values().map(Value::counter_value).sum();
        assert_eq!(total, 6.0, "sum() stays right");
        let over = l(&["web1", OVERFLOW_VALUE, OVERFLOW_VALUE]);
        assert_eq!(f.series[&over].counter_value(), 3.0);
        assert_eq!(f.series[&l(&["web1", "0", "x"])].counter_value(), 2.0);
        // More new label sets: still one overflow series.
        s.apply(
            vec![(0, l(&["9", "y"]), Change::Add(4.0))],
            Semantics::Events,
        );
        assert_eq!(s.series_count(), 3);
        assert_eq!(s.family(0).expect("f").series[&over].counter_value(), 7.0);
    }

    /// Prometheus' `increase()` over a sequence of exposed samples: a
    /// decrease is a reset, after which the new value counts whole.
    fn increase(samples: &[f64]) -> f64 {
        samples
            .windows(2)
            .map(|w| if w[1] < w[0] { w[1] } else { w[1] - w[0] })
            .sum()
    }

    fn counter_store() -> PipelineStore {
        let mut s = PipelineStore::new(vec!["p".into()], 100);
        let d = FamilyDecl::validate(
            "c_total".into(),
            Kind::Counter,
            "h".into(),
            String::new(),
            l(&["g"]),
            vec![],
            &["inst".to_string()],
        )
        .expect("valid");
        s.declare(vec![d]);
        s
    }

    fn exposed(s: &PipelineStore, g: &str) -> Option<f64> {
        s.family(0)?
            .series
            .get(&l(&["p", g]))
            .map(Value::counter_value)
    }

    /// Issue 13, fault 5: upstream 100, then 10 (it restarted), then a
    /// failed poll, then 12; and the same with the series missing from one
    /// successful response. The true increase is 12.
    #[test]
    fn a_counter_read_from_upstream_keeps_increase_across_resets_and_absences() {
        for missing_by_failure in [true, false] {
            let mut s = counter_store();
            let mut seen = Vec::new();
            for reading in [Some(100.0), Some(10.0), None, Some(12.0)] {
                match reading {
                    Some(v) => {
                        s.apply(
                            vec![
                                (0, l(&["a"]), Change::Set(v)),
                                (0, l(&["other"]), Change::Set(1.0)),
                            ],
                            Semantics::Snapshot,
                        );
                    }
                    None if missing_by_failure => s.clear_series(),
                    None => {
                        s.apply(
                            vec![(0, l(&["other"]), Change::Set(1.0))],
                            Semantics::Snapshot,
                        );
                    }
                }
                match exposed(&s, "a") {
                    Some(v) => seen.push(v),
                    None => assert!(reading.is_none()),
                }
            }
            assert_eq!(seen, [100.0, 10.0, 12.0]);
            assert_eq!(increase(&seen), 12.0);
        }
    }

    /// A new plugin instance whose readings start over (process-groups
    /// counts from 0) does not lower the exposed counter; the offset it
    /// leaves survives an absence, and a later reset at the source is
    /// passed through.
    #[test]
    fn a_new_instance_starting_over_is_absorbed_and_kept_across_absences() {
        let mut s = counter_store();
        let mut seen = Vec::new();
        let mut set = |s: &mut PipelineStore, v: f64| {
            s.apply(vec![(0, l(&["a"]), Change::Set(v))], Semantics::Snapshot);
            seen.push(exposed(s, "a").expect("series"));
        };
        set(&mut s, 50.0);
        set(&mut s, 70.0);
        // Restart after a fault: same declarations, a new instance.
        let decls: Vec<FamilyDecl> = s.families().map(|f| (*f.decl).clone()).collect();
        s.declare(decls);
        set(&mut s, 0.0);
        set(&mut s, 5.0);
        // Missing from a scan, then back: goes on from where it was.
        s.apply(vec![], Semantics::Snapshot);
        assert_eq!(exposed(&s, "a"), None);
        set(&mut s, 8.0);
        // The source itself reset: passed through.
        set(&mut s, 2.0);
        assert_eq!(seen, [50.0, 70.0, 70.0, 75.0, 78.0, 2.0]);
        assert_eq!(increase(&seen), 20.0 + 5.0 + 3.0 + 2.0);
        // Absent counters with an offset are bounded in count.
        let mut s = PipelineStore::new(vec![], 3);
        s.declare(vec![decl("c_total", Kind::Counter, &["k"], &[])]);
        for round in 0..3 {
            let keys: Vec<String> = (0..3).map(|i| format!("{round}-{i}")).collect();
            let set = |v: f64| -> Vec<RawUpdate> {
                keys.iter().map(|k| (0, l(&[k]), Change::Set(v))).collect()
            };
            s.apply(set(10.0), Semantics::Snapshot);
            let decls: Vec<FamilyDecl> = s.families().map(|f| (*f.decl).clone()).collect();
            s.declare(decls);
            s.apply(set(1.0), Semantics::Snapshot);
            s.clear_series();
            assert_eq!(s.absent, 3, "round {round}");
        }
        let kept: usize = s.families().map(|f| f.absent.len()).sum();
        assert_eq!(kept, 3);
        assert!(s
            .family(0)
            .is_some_and(|f| f.absent.contains_key(&l(&["2-0"]))));
    }

    #[test]
    fn redeclare_keeps_unchanged_families_only() {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(vec![
            decl("a_total", Kind::Counter, &[], &[]),
            decl("b_total", Kind::Counter, &[], &[]),
        ]);
        s.apply(
            vec![(0, vec![], Change::Add(5.0)), (1, vec![], Change::Add(5.0))],
            Semantics::Events,
        );
        s.declare(vec![
            decl("b_total", Kind::Counter, &["new"], &[]),
            decl("a_total", Kind::Counter, &[], &[]),
        ]);
        assert!(s.family(0).expect("family 0").series.is_empty());
        assert_eq!(
            s.family(1).expect("family 1").series[&Vec::new()].counter_value(),
            5.0
        );
        assert_eq!(s.series_count(), 1);
    }

    #[test]
    fn declarations_are_checked() {
        let bad = |n: &str, k: Kind, unit: &str, labels: &[&str]| {
            FamilyDecl::validate(
                n.into(),
                k,
                String::new(),
                unit.into(),
                l(labels),
                vec![],
                &[],
            )
            .err()
            .unwrap_or_default()
        };
        assert!(bad("x", Kind::Counter, "", &[]).contains("_total"));
        assert!(bad("weir_x", Kind::Gauge, "", &[]).contains("reserved"));
        assert!(bad("x_ms", Kind::Gauge, "seconds", &[]).contains("_seconds"));
        assert!(bad("x", Kind::Histogram, "", &["le"]).contains("le"));
        assert!(bad("x", Kind::Gauge, "", &["a", "a"]).contains("twice"));
        assert!(bad("1x", Kind::Gauge, "", &[]).contains("valid"));
    }
}
