//! Collects a call's updates, merging those that touch the same series.
use crate::bindings::log_world::weir::plugin::types::{
    Change, Family, HistogramReading, Output as WitOutput, SummaryReading, Update,
};
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

fn key<S: AsRef<str>>(family: FamilyId, labels: &[S]) -> u64 {
    let mut h = FxHasher::default();
    family.0.hash(&mut h);
    for l in labels {
        l.as_ref().hash(&mut h);
    }
    h.finish()
}

impl Output {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `value` to a counter (must be >= 0) or a gauge.
    pub fn add<S: AsRef<str>>(&mut self, family: FamilyId, labels: &[S], value: f64) {
        self.push(family, labels, Op::Add, value)
    }

    /// Set a gauge, or a counter's cumulative reading (snapshot sources).
    pub fn set<S: AsRef<str>>(&mut self, family: FamilyId, labels: &[S], value: f64) {
        self.push(family, labels, Op::Set, value)
    }

    /// Observe a value into a histogram.
    pub fn observe<S: AsRef<str>>(&mut self, family: FamilyId, labels: &[S], value: f64) {
        self.push(family, labels, Op::Observe, value)
    }

    /// Replace a histogram series with a reading taken elsewhere: `counts`
    /// per declared bucket (not cumulative) plus one for `+Inf`.
    pub fn set_histogram<S: AsRef<str>>(
        &mut self,
        family: FamilyId,
        labels: &[S],
        counts: Vec<u64>,
        sum: f64,
    ) {
        self.push_raw(
            family,
            labels,
            Change::SetHistogram(HistogramReading { counts, sum }),
        );
    }

    /// Replace a summary series with a reading.
    pub fn set_summary<S: AsRef<str>>(
        &mut self,
        family: FamilyId,
        labels: &[S],
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
    pub fn declare(&mut self, already: u32, family: crate::Families) -> Vec<FamilyId> {
        let mut ids = Vec::new();
        for f in family.into_wit() {
            ids.push(FamilyId(already + self.declare.len() as u32));
            self.declare.push(f);
        }
        ids
    }

    fn push_raw<S: AsRef<str>>(&mut self, family: FamilyId, labels: &[S], change: Change) {
        self.updates.push(Update {
            family: family.0,
            labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
            change,
        });
    }

    /// Count one input the plugin could not make sense of.
    pub fn reject(&mut self) {
        self.rejected = self.rejected.saturating_add(1);
    }

    /// How many updates are pending (after merging).
    pub fn len(&self) -> usize {
        self.updates.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// The updates gathered so far, for tests of plugin code.
    pub fn updates(&self) -> &[Update] {
        &self.updates
    }

    /// Inputs rejected so far.
    pub fn rejected(&self) -> u32 {
        self.rejected
    }

    fn push<S: AsRef<str>>(&mut self, family: FamilyId, labels: &[S], op: Op, value: f64) {
        let k = key(family, labels);
        let slots = self.index.entry(k).or_default();
        for &i in slots.iter() {
            let u = &mut self.updates[i];
            if u.family != family.0
                || u.labels.len() != labels.len()
                || !u.labels.iter().zip(labels).all(|(a, b)| a == b.as_ref())
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
            labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
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
        o.set(g, &[] as &[&str], 5.0);
        o.add(g, &[] as &[&str], 1.0);
        o.set(g, &[] as &[&str], 7.0);
        assert_eq!(o.len(), 2);
        match &o.updates()[0].change {
            Change::Set(v) => assert_eq!(*v, 7.0),
            _ => panic!("expected set"),
        }
    }
}
