//! Collects a call's updates, merging those that touch the same series
//! only where the merged update gives what the separate ones would.
use crate::bindings::log_world::weir::plugin::types::{
    Change, Family, HistogramReading, MetricKind as Kind, Output as WitOutput, SummaryReading,
    Update,
};
use crate::labels::{self, Labels};
use crate::FamilyId;
use rustc_hash::FxHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// The updates of one call.
///
/// The host applies updates in order and judges each on its own (a
/// negative add to a counter, a NaN, ... is refused and counted). To keep
/// results independent of how lines fall into calls, an update is merged
/// only into the *latest* update of the same series, and only when the
/// host would store the same value and refuse the same number of updates
/// as for the two apart:
///
/// | latest, new | merged when | into |
/// |---|---|---|
/// | observe, observe | always (the host judges each value) | `observe-many` |
/// | add x, add y | x and y are whole numbers, both >= 0 for a counter (or a family of unknown kind) | add x + y |
/// | set x, set y (gauge) | both finite | set y |
/// | add x, set y (gauge) | both finite | set y |
/// | set x, add y (gauge) | whole numbers | set x + y |
///
/// Whole numbers (below 2^53) add exactly, so merging them changes no
/// digit; fractional adds are sent one by one because floating-point
/// addition is not associative. Counter sets are never merged: a reading
/// lower than the last one is a reset at the source. A batch of 10,000
/// access-log lines still returns a few dozen updates, not 30,000.
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
    // hash of (family, labels) -> for each series with that hash, the index
    // of its latest update in `updates`
    index: HashMap<u64, Vec<usize>, std::hash::BuildHasherDefault<NoHash>>,
    rejected: u32,
    declare: Vec<Family>,
    // kind of each family id, when known (declared at init and since)
    kinds: Vec<Kind>,
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

impl Op {
    fn change(self, v: f64) -> Change {
        match self {
            Op::Add => Change::Add(v),
            Op::Set => Change::Set(v),
            Op::Observe => Change::Observe(v),
        }
    }
}

fn key<L: Labels + ?Sized>(family: FamilyId, labels: &L) -> u64 {
    let mut h = FxHasher::default();
    family.0.hash(&mut h);
    for l in labels::iter(labels) {
        l.hash(&mut h);
    }
    h.finish()
}

/// The longest label value the weir host accepts, in bytes (its
/// `store::MAX_LABEL_VALUE_BYTES`); longer ones are refused per update.
const MAX_LABEL_VALUE_BYTES: usize = 4096;

/// Largest magnitude below which every whole f64 is exact (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

fn whole(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() < EXACT
}

/// Both whole and their sum too: adding them in one step or two gives the
/// same bits.
fn exact_sum(a: f64, b: f64) -> bool {
    whole(a) && whole(b) && (a + b).abs() < EXACT
}

/// The merged change, or `None` when the two must stay apart.
fn merge(kind: Option<Kind>, latest: &Change, op: Op, v: f64) -> Option<Change> {
    let gauge = kind == Some(Kind::Gauge);
    match (latest, op) {
        (Change::Observe(a), Op::Observe) => Some(Change::ObserveMany(vec![*a, v])),
        (Change::Add(a), Op::Add) => {
            // A counter (or an unknown kind, which may be one) refuses a
            // negative add: keep each to be judged on its own.
            let signs_ok = gauge || (*a >= 0.0 && v >= 0.0);
            (signs_ok && exact_sum(*a, v)).then(|| Change::Add(a + v))
        }
        (Change::Set(a), Op::Set) if gauge => {
            (a.is_finite() && v.is_finite()).then_some(Change::Set(v))
        }
        (Change::Add(a), Op::Set) if gauge => {
            (a.is_finite() && v.is_finite()).then_some(Change::Set(v))
        }
        (Change::Set(a), Op::Add) if gauge => exact_sum(*a, v).then(|| Change::Set(a + v)),
        _ => None,
    }
}

/// Which of `slots` (indexes into `updates`) holds the series, if any.
fn find<L: Labels + ?Sized>(
    updates: &[Update],
    slots: &[usize],
    family: FamilyId,
    labels: &L,
) -> Option<usize> {
    slots.iter().position(|&i| {
        let u = &updates[i];
        u.family == family.0
            && u.labels.len() == labels.count()
            && u.labels
                .iter()
                .zip(labels::iter(labels))
                .all(|(a, b)| a == b)
    })
}

impl Output {
    /// An empty output that knows no family kinds: it merges only what is
    /// safe for every kind (observations; whole, non-negative adds). The
    /// SDK makes one per call that knows the kinds; tests make their own.
    ///
    /// ```
    /// assert!(weir_sdk::Output::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty output for the families declared so far, so that gauge
    /// updates merge too (what the export macros use).
    ///
    /// ```
    /// use weir_sdk::{Families, Output};
    /// let mut f = Families::default();
    /// let depth = f.gauge("queue_depth", "Jobs waiting.", &[]);
    /// let mut out = Output::for_families(&f);
    /// out.set(depth, &[], 3.0);
    /// out.add(depth, &[], 1.0);
    /// assert_eq!(out.len(), 1); // set 4
    /// ```
    pub fn for_families(families: &crate::Families) -> Self {
        Self::with_kinds(families.kinds())
    }

    #[doc(hidden)]
    pub fn with_kinds(kinds: Vec<Kind>) -> Self {
        Output {
            kinds,
            ..Self::default()
        }
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
    /// For a gauge, the last set of a series in one call wins; a counter's
    /// readings are all sent (a lower one is a reset).
    ///
    /// ```
    /// use weir_sdk::{Families, Output};
    /// let mut f = Families::default();
    /// let pool = f.gauge("db_connections", "Open connections.", &["db"]);
    /// let mut out = Output::for_families(&f);
    /// out.set(pool, &["db"], 3.0);
    /// out.set(pool, &["db"], 5.0);
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
            let id = already + self.declare.len() as u32;
            ids.push(FamilyId(id));
            if self.kinds.len() == id as usize {
                self.kinds.push(f.kind);
            }
            self.declare.push(f);
        }
        ids
    }

    fn push_raw<L: Labels + ?Sized>(&mut self, family: FamilyId, labels: &L, change: Change) {
        let next = self.updates.len();
        let slots = self.index.entry(key(family, labels)).or_default();
        match find(&self.updates, slots, family, labels) {
            Some(n) => slots[n] = next,
            None => slots.push(next),
        }
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
        let new = |labels: &L| Update {
            family: family.0,
            labels: labels::iter(labels).map(str::to_string).collect(),
            change: op.change(value),
        };
        if labels::iter(labels).any(|l| l.len() > MAX_LABEL_VALUE_BYTES) {
            // The host refuses each of these; keep them apart so each is
            // counted, as it would be line by line.
            self.updates.push(new(labels));
            return;
        }
        let kind = self.kinds.get(family.0 as usize).copied();
        let next = self.updates.len();
        let slots = self.index.entry(key(family, labels)).or_default();
        match find(&self.updates, slots, family, labels) {
            Some(n) => {
                let u = &mut self.updates[slots[n]];
                if let Change::ObserveMany(vs) = &mut u.change {
                    if op == Op::Observe {
                        vs.push(value);
                        return;
                    }
                } else if let Some(c) = merge(kind, &u.change, op, value) {
                    u.change = c;
                    return;
                }
                // The new update follows the latest one of its series.
                slots[n] = next;
            }
            None => slots.push(next),
        }
        self.updates.push(new(labels));
    }

    #[doc(hidden)]
    pub fn finish(self) -> WitOutput {
        self.into_parts().0
    }

    /// The output, and the family kinds known after this call (for the
    /// next call's output).
    #[doc(hidden)]
    pub fn into_parts(self) -> (WitOutput, Vec<Kind>) {
        (
            WitOutput {
                updates: self.updates,
                rejected: self.rejected,
                declare: self.declare,
            },
            self.kinds,
        )
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

    fn kinds(k: &[Kind]) -> Output {
        Output::with_kinds(k.to_vec())
    }

    /// What the host does with the updates of a gauge or counter series, in
    /// order: the final value and the number of refused updates.
    fn host(kind: Kind, updates: &[Update]) -> (f64, usize) {
        let (mut v, mut offset, mut refused) = (0.0, 0.0, 0);
        for u in updates {
            match u.change {
                Change::Add(x) | Change::Set(x) if !x.is_finite() => refused += 1,
                Change::Add(x) if kind == Kind::Counter && x < 0.0 => refused += 1,
                Change::Set(x) if kind == Kind::Counter && x < 0.0 => refused += 1,
                Change::Add(x) => v += x,
                Change::Set(x) if kind == Kind::Counter => {
                    if x < v {
                        offset += v;
                    }
                    v = x;
                }
                Change::Set(x) => v = x,
                _ => unreachable!(),
            }
        }
        (v + offset, refused)
    }

    #[test]
    fn set_and_add_keep_their_order_per_series() {
        // Issue 19: connect, set 5, connect, connect, disconnect is 6.
        let g = FamilyId(0);
        let l: &[&str] = &["a"];
        for mut o in [kinds(&[Kind::Gauge]), Output::new()] {
            o.add(g, l, 1.0);
            o.set(g, l, 5.0);
            o.add(g, l, 1.0);
            o.add(g, l, 1.0);
            o.add(g, l, -1.0);
            assert_eq!(host(Kind::Gauge, o.updates()), (6.0, 0));
        }
        let mut o = kinds(&[Kind::Gauge]);
        o.set(g, l, 5.0);
        o.add(g, l, 1.0);
        o.set(g, l, 5.0);
        assert_eq!(host(Kind::Gauge, o.updates()), (5.0, 0));
        assert_eq!(
            o.len(),
            1,
            "a gauge's whole-number updates fold into one set"
        );
    }

    #[test]
    fn each_counter_add_is_judged_on_its_own() {
        let c = FamilyId(0);
        for mut o in [kinds(&[Kind::Counter]), Output::new()] {
            o.add(c, &[], -3.0);
            o.add(c, &[], 4.0);
            assert_eq!(host(Kind::Counter, o.updates()), (4.0, 1));
        }
    }

    #[test]
    fn counter_readings_are_not_merged() {
        // 100, then 10 (a reset), then 12 is 112 counted, as line by line.
        let c = FamilyId(0);
        let mut o = kinds(&[Kind::Counter]);
        for v in [100.0, 10.0, 12.0] {
            o.set(c, &[], v);
        }
        assert_eq!(host(Kind::Counter, o.updates()), (112.0, 0));
    }

    #[test]
    fn fractional_adds_stay_apart_so_sums_match_line_by_line() {
        let c = FamilyId(0);
        let mut o = kinds(&[Kind::Counter]);
        let mut line_by_line = 0.0;
        for v in [0.1, 0.2, 0.3] {
            o.add(c, &[], v);
            line_by_line += v;
        }
        assert_eq!(
            host(Kind::Counter, o.updates()).0.to_bits(),
            line_by_line.to_bits()
        );
    }

    #[test]
    fn nan_and_negative_updates_are_refused_as_often_as_line_by_line() {
        let (g, c) = (FamilyId(0), FamilyId(1));
        let seq = [3.0, f64::NAN, -2.0, 7.0, f64::INFINITY, 1.0];
        for (kind, fam) in [(Kind::Gauge, g), (Kind::Counter, c)] {
            for set in [false, true] {
                let mut batched = kinds(&[Kind::Gauge, Kind::Counter]);
                let mut one_by_one = Vec::new();
                for v in seq {
                    let mut single = kinds(&[Kind::Gauge, Kind::Counter]);
                    if set {
                        batched.set(fam, &[], v);
                        single.set(fam, &[], v);
                    } else {
                        batched.add(fam, &[], v);
                        single.add(fam, &[], v);
                    }
                    one_by_one.extend(single.updates().to_vec());
                }
                let (a, ra) = host(kind, batched.updates());
                let (b, rb) = host(kind, &one_by_one);
                assert_eq!((a.to_bits(), ra), (b.to_bits(), rb), "{kind:?} set={set}");
            }
        }
    }

    #[test]
    fn an_observation_after_a_histogram_reading_follows_it() {
        let h = FamilyId(0);
        let mut o = kinds(&[Kind::Histogram]);
        o.observe(h, &[], 1.0);
        o.set_histogram(h, &[], vec![0, 0], 0.0);
        o.observe(h, &[], 2.0);
        assert_eq!(o.len(), 3);
        assert!(matches!(o.updates()[2].change, Change::Observe(v) if v == 2.0));
    }

    #[test]
    fn updates_the_host_refuses_for_their_labels_stay_apart() {
        let c = FamilyId(0);
        let long = "x".repeat(MAX_LABEL_VALUE_BYTES + 1);
        let mut o = kinds(&[Kind::Counter]);
        o.add(c, &[long.as_str()], 1.0);
        o.add(c, &[long.as_str()], 1.0);
        assert_eq!(o.len(), 2);
    }
}
