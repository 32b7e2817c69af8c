//! Collects a call's updates, merging those that touch the same series.
use crate::bindings::log_world::weir::plugin::types::{
    Change, Family, HistogramReading, Output as WitOutput, SummaryReading, Update,
};
use crate::labels::{self, Labels};
use crate::FamilyId;
use rustc_hash::FxHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// The updates of one call.
///
/// Updates to the same series are merged before they cross into the host:
/// adds are summed, the last set wins, observations are gathered into one
/// `observe-many`. A batch of 10,000 access-log lines therefore returns a
/// few dozen updates, not 30,000.
///
/// ```
/// use weir_sdk::{FamilyId, Output};
/// let requests = FamilyId(0);
/// let mut out = Output::new();
/// for status in ["200", "200", "500"] {
///     out.add(requests, &["GET", status], 1.0);
/// }
/// assert_eq!(out.len(), 2); // {GET,200} += 2 and {GET,500} += 1
/// ```
#[derive(Default)]
pub struct Output {
    updates: Vec<Update>,
    // hash of (family, labels) -> indexes into `updates` with that hash
    index: HashMap<u64, Vec<usize>, std::hash::BuildHasherDefault<NoHash>>,
    rejected: u32,
    declare: Vec<Family>,
}

/// The keys are already hashes.
#[derive(Default)]
struct NoHash(u64);

impl Hasher for NoHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add,
    Set,
    Observe,
}

fn key<L: Labels + ?Sized>(family: FamilyId, labels: &L) -> u64 {
    let mut h = FxHasher::default();
    family.0.hash(&mut h);
    for l in labels::iter(labels) {
        l.hash(&mut h);
    }
    h.finish()
}

impl Output {
    /// An empty output (the SDK makes one per call; tests make their own).
    ///
    /// ```
    /// assert!(weir_sdk::Output::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `value` to a counter (must be >= 0) or a gauge. `labels` are the
    /// values in the family's declared label order; `&[]` for a family
    /// without labels (see [`Labels`]).
    ///
    /// ```
    /// use weir_sdk::{FamilyId, Output};
    /// let (lines, bytes) = (FamilyId(0), FamilyId(1));
    /// let mut out = Output::new();
    /// out.add(lines, &[], 1.0);
    /// out.add(bytes, &["/api"], 512.0);
    /// assert_eq!(out.len(), 2);
    /// ```
    pub fn add<L: Labels + ?Sized>(&mut self, family: FamilyId, labels: &L, value: f64) {
        self.push(family, labels, Op::Add, value)
    }

    /// Set a gauge, or a counter's cumulative reading (snapshot sources).
    /// The last set of a series in one call wins.
    ///
    /// ```
    /// use weir_sdk::{FamilyId, Output};
    /// let mut out = Output::new();
    /// out.set(FamilyId(0), &["db"], 3.0);
    /// out.set(FamilyId(0), &["db"], 5.0);
    /// assert_eq!(out.len(), 1);
    /// ```
    pub fn set<L: Labels + ?Sized>(&mut self, family: FamilyId, labels: &L, value: f64) {
        self.push(family, labels, Op::Set, value)
    }

    /// Observe a value into a histogram (in the family's unit: seconds for
    /// a `_seconds` histogram).
    ///
    /// ```
    /// use weir_sdk::{FamilyId, Output};
    /// let mut out = Output::new();
    /// out.observe(FamilyId(0), &["/api"], 0.012);
    /// out.observe(FamilyId(0), &["/api"], 0.230);
    /// assert_eq!(out.len(), 1); // one observe-many of two values
    /// ```
    pub fn observe<L: Labels + ?Sized>(&mut self, family: FamilyId, labels: &L, value: f64) {
        self.push(family, labels, Op::Observe, value)
    }

    /// Replace a histogram series with a reading taken elsewhere: `counts`
    /// per declared bucket (not cumulative) plus one for `+Inf`.
    ///
    /// ```
    /// use weir_sdk::{FamilyId, Output};
    /// let mut out = Output::new();
    /// // Buckets declared as [0.1, 1.0]: 3 at <= 0.1, 1 in (0.1, 1], 0 above.
    /// out.set_histogram(FamilyId(0), &[], vec![3, 1, 0], 0.9);
    /// assert_eq!(out.len(), 1);
    /// ```
    pub fn set_histogram<L: Labels + ?Sized>(
        &mut self,
        family: FamilyId,
        labels: &L,
        counts: Vec<u64>,
        sum: f64,
    ) {
        self.push_raw(
            family,
            labels,
            Change::SetHistogram(HistogramReading { counts, sum }),
        );
    }

    /// Replace a summary series with a reading: `(quantile, value)` pairs,
    /// the sum and the count of observations.
    ///
    /// ```
    /// use weir_sdk::{FamilyId, Output};
    /// let mut out = Output::new();
    /// out.set_summary(FamilyId(0), &["/api"], vec![(0.5, 0.02), (0.99, 0.3)], 12.5, 400);
    /// assert_eq!(out.len(), 1);
    /// ```
    pub fn set_summary<L: Labels + ?Sized>(
        &mut self,
        family: FamilyId,
        labels: &L,
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: u64,
    ) {
        self.push_raw(
            family,
            labels,
            Change::SetSummary(SummaryReading {
                quantiles,
                sum,
                count,
            }),
        );
    }

    /// Declare a family during this call (families learnt from the data).
    /// `already` is how many families exist (declared at init and in
    /// earlier calls); the new family's id follows them and those declared
    /// earlier in this call.
    ///
    /// ```
    /// use weir_sdk::{Families, Output};
    /// let mut out = Output::new();
    /// let mut new = Families::default();
    /// new.gauge("app_queue_depth", "Jobs waiting, by queue.", &["queue"]);
    /// // Two families were declared at init: the new one is FamilyId(2).
    /// let ids = out.declare(2, new);
    /// out.set(ids[0], &["mail"], 4.0);
    /// assert_eq!(ids[0].0, 2);
    /// ```
    pub fn declare(&mut self, already: u32, family: crate::Families) -> Vec<FamilyId> {
        let mut ids = Vec::new();
        for f in family.into_wit() {
            ids.push(FamilyId(already + self.declare.len() as u32));
            self.declare.push(f);
        }
        ids
    }

    fn push_raw<L: Labels + ?Sized>(&mut self, family: FamilyId, labels: &L, change: Change) {
        self.updates.push(Update {
            family: family.0,
            labels: labels::iter(labels).map(str::to_string).collect(),
            change,
        });
    }

    /// Count one input the plugin could not make sense of (shown as
    /// `weir_plugin_rejected_total`, and by `weir test`).
    ///
    /// ```
    /// let mut out = weir_sdk::Output::new();
    /// out.reject();
    /// assert_eq!(out.rejected(), 1);
    /// ```
    pub fn reject(&mut self) {
        self.rejected = self.rejected.saturating_add(1);
    }

    /// How many updates are pending (after merging).
    ///
    /// ```
    /// let mut out = weir_sdk::Output::new();
    /// out.add(weir_sdk::FamilyId(0), &[], 1.0);
    /// out.add(weir_sdk::FamilyId(0), &[], 1.0);
    /// assert_eq!(out.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.updates.len()
    }

    /// Whether nothing is pending.
    ///
    /// ```
    /// let mut out = weir_sdk::Output::new();
    /// out.reject();
    /// assert!(out.is_empty()); // a rejection is not an update
    /// ```
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// The updates gathered so far, for tests of plugin code.
    ///
    /// ```
    /// use weir_sdk::{FamilyId, Output};
    /// let mut out = Output::new();
    /// out.add(FamilyId(3), &["a"], 2.0);
    /// let u = &out.updates()[0];
    /// assert_eq!((u.family, u.labels.as_slice()), (3, &["a".to_string()][..]));
    /// ```
    pub fn updates(&self) -> &[Update] {
        &self.updates
    }

    /// Inputs rejected so far.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Output::new().rejected(), 0);
    /// ```
    pub fn rejected(&self) -> u32 {
        self.rejected
    }

    fn push<L: Labels + ?Sized>(&mut self, family: FamilyId, labels: &L, op: Op, value: f64) {
        let k = key(family, labels);
        let slots = self.index.entry(k).or_default();
        for &i in slots.iter() {
            let u = &mut self.updates[i];
            if u.family != family.0
                || u.labels.len() != labels.count()
                || !u
                    .labels
                    .iter()
                    .zip(labels::iter(labels))
                    .all(|(a, b)| a == b)
            {
                continue;
            }
            let merged = match (&mut u.change, op) {
                (Change::Add(v), Op::Add) => {
                    *v += value;
                    true
                }
                (Change::Set(v), Op::Set) => {
                    *v = value;
                    true
                }
                (Change::ObserveMany(vs), Op::Observe) => {
                    vs.push(value);
                    true
                }
                (Change::Observe(first), Op::Observe) => {
                    u.change = Change::ObserveMany(vec![*first, value]);
                    true
                }
                _ => false,
            };
            if merged {
                return;
            }
        }
        slots.push(self.updates.len());
        self.updates.push(Update {
            family: family.0,
            labels: labels::iter(labels).map(str::to_string).collect(),
            change: match op {
                Op::Add => Change::Add(value),
                Op::Set => Change::Set(value),
                Op::Observe => Change::Observe(value),
            },
        });
    }

    #[doc(hidden)]
    pub fn finish(self) -> WitOutput {
        WitOutput {
            updates: self.updates,
            rejected: self.rejected,
            declare: self.declare,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_adds_and_observations_per_series() {
        let mut o = Output::new();
        let f = FamilyId(0);
        let h = FamilyId(1);
        o.add(f, &["GET", "200"], 1.0);
        o.add(f, &["GET", "200"], 1.0);
        o.add(f, &["POST", "200"], 1.0);
        o.observe(h, &["GET"], 0.0);
        o.observe(h, &["GET"], 0.5);
        o.observe(h, &["GET"], 2.0);
        assert_eq!(o.len(), 3);
        match &o.updates()[0].change {
            Change::Add(v) => assert_eq!(*v, 2.0),
            _ => panic!("expected add"),
        }
        match &o.updates()[2].change {
            Change::ObserveMany(vs) => assert_eq!(vs, &vec![0.0, 0.5, 2.0]),
            _ => panic!("expected observe-many"),
        }
    }

    #[test]
    fn different_ops_on_one_series_stay_apart() {
        let mut o = Output::new();
        let g = FamilyId(0);
        o.set(g, &[], 5.0);
        o.add(g, &[], 1.0);
        o.set(g, &[], 7.0);
        assert_eq!(o.len(), 2);
        match &o.updates()[0].change {
            Change::Set(v) => assert_eq!(*v, 7.0),
            _ => panic!("expected set"),
        }
    }
}
