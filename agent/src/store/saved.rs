//! A pipeline's series values as kept in its checkpoint, so that counters
//! of a log pipeline go on across a restart of the agent (issue 15).
//!
//! Saved with the read positions they correspond to (see
//! `sources::checkpoint`): restoring both gives the state the agent had
//! when it wrote them, and reading on from those positions makes the
//! values exact again. Only what the store needs to go on is kept: each
//! family's declaration (a changed one starts afresh, as on reload) and
//! each series' label values and value.
use super::{FamilyDecl, FamilyState, Kind, PipelineStore, Value};
use serde::{Deserialize, Serialize};

/// Every family's series of one pipeline, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSeries {
    /// The pipeline's constant label values when saved (the first label
    /// values of every series); restoring needs them unchanged.
    pub const_values: Vec<String>,
    /// One entry per family that had series.
    pub families: Vec<SavedFamily>,
}

/// One family as saved: its declaration and its series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedFamily {
    /// Exposed name.
    pub name: String,
    /// `counter`, `gauge`, `histogram` or `summary`.
    pub kind: String,
    /// HELP text.
    pub help: String,
    /// Unit, or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// Label names, constant labels first.
    pub labels: Vec<String>,
    /// Histogram bucket upper bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<Float>,
    /// (label values, value) of each series.
    pub series: Vec<(Vec<String>, SavedValue)>,
}

/// One series' value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedValue {
    /// A counter's exposed value.
    Counter(Float),
    /// A gauge.
    Gauge(Float),
    /// A histogram: per-bucket (not cumulative) counts, `+Inf` last, and
    /// the sum.
    Histogram {
        /// Counts per bucket.
        counts: Vec<u64>,
        /// Sum of observations.
        sum: Float,
    },
    /// A summary as last read.
    Summary {
        /// (quantile, value) pairs.
        quantiles: Vec<(Float, Float)>,
        /// Sum.
        sum: Float,
        /// Count.
        count: u64,
    },
}

/// An `f64` that survives JSON whole: finite values as JSON numbers
/// (serde_json writes the shortest form that reads back to the same bits),
/// NaN and the infinities as the strings `"NaN"`, `"+Inf"`, `"-Inf"` (a
/// gauge read from elsewhere may hold them; JSON numbers cannot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float(pub f64);

impl Serialize for Float {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("+Inf")
        } else {
            s.serialize_str("-Inf")
        }
    }
}

impl<'de> Deserialize<'de> for Float {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Num(f64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(v) => Ok(Float(v)),
            Repr::Text(t) => match t.as_str() {
                "NaN" => Ok(Float(f64::NAN)),
                "+Inf" => Ok(Float(f64::INFINITY)),
                "-Inf" => Ok(Float(f64::NEG_INFINITY)),
                other => Err(serde::de::Error::custom(format!(
                    "\"{other}\" is not a number"
                ))),
            },
        }
    }
}

fn kind_from(s: &str) -> Option<Kind> {
    Some(match s {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "histogram" => Kind::Histogram,
        "summary" => Kind::Summary,
        _ => return None,
    })
}

impl SavedFamily {
    /// Whether `decl` is the declaration this family was saved under.
    fn declared_as(&self, decl: &FamilyDecl) -> bool {
        kind_from(&self.kind) == Some(decl.kind)
            && self.name == decl.name
            && self.help == decl.help
            && self.unit == decl.unit
            && self.labels == decl.labels
            && self.buckets.len() == decl.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&decl.buckets)
                .all(|(a, b)| a.0.to_bits() == b.to_bits())
    }
}

/// What [`PipelineStore::restore`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Restored {
    /// Series restored.
    pub series: usize,
    /// Families whose series were restored.
    pub families: Vec<String>,
    /// Saved families not restored, and why.
    pub dropped: Vec<(String, &'static str)>,
}

fn save_value(v: &Value) -> SavedValue {
    match v {
        Value::Counter { offset, raw, .. } => SavedValue::Counter(Float(offset + raw)),
        Value::Gauge(g) => SavedValue::Gauge(Float(*g)),
        Value::Histogram { counts, sum } => SavedValue::Histogram {
            counts: counts.clone(),
            sum: Float(*sum),
        },
        Value::Summary {
            quantiles,
            sum,
            count,
        } => SavedValue::Summary {
            quantiles: quantiles
                .iter()
                .map(|(q, v)| (Float(*q), Float(*v)))
                .collect(),
            sum: Float(*sum),
            count: *count,
        },
    }
}

/// The store's value for a saved one, if it fits `decl`.
fn restore_value(v: SavedValue, decl: &FamilyDecl) -> Option<Value> {
    Some(match (decl.kind, v) {
        // Instance 0 is no plugin instance's (they count from 1): a
        // cumulative reading lower than the restored value, from the
        // plugin started now, is absorbed as after a plugin restart.
        (Kind::Counter, SavedValue::Counter(Float(c))) if c.is_finite() && c >= 0.0 => {
            Value::Counter {
                offset: 0.0,
                raw: c,
                instance: 0,
            }
        }
        (Kind::Gauge, SavedValue::Gauge(Float(g))) => Value::Gauge(g),
        (Kind::Histogram, SavedValue::Histogram { counts, sum })
            if counts.len() == decl.buckets.len() + 1 =>
        {
            Value::Histogram { counts, sum: sum.0 }
        }
        (
            Kind::Summary,
            SavedValue::Summary {
                quantiles,
                sum,
                count,
            },
        ) => Value::Summary {
            quantiles: quantiles.into_iter().map(|(q, v)| (q.0, v.0)).collect(),
            sum: sum.0,
            count,
        },
        _ => return None,
    })
}

impl PipelineStore {
    /// Every family's series, for the checkpoint. Families without series
    /// are left out.
    pub fn save(&self) -> SavedSeries {
        SavedSeries {
            const_values: self.const_values.clone(),
            families: self
                .families()
                .filter(|f| !f.series.is_empty())
                .map(|f| {
                    let d = &f.decl;
                    SavedFamily {
                        name: d.name.clone(),
                        kind: d.kind.as_str().to_string(),
                        help: d.help.clone(),
                        unit: d.unit.clone(),
                        labels: d.labels.clone(),
                        buckets: d.buckets.iter().map(|b| Float(*b)).collect(),
                        series: f
                            .series
                            .iter()
                            .map(|(k, v)| (k.clone(), save_value(v)))
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    /// Put saved series back into the families declared now (a pipeline
    /// starting with its checkpoint). A family is restored only when it
    /// is declared exactly as it was saved and holds no series yet, and
    /// only while the pipeline's constant label values are the saved ones;
    /// the others start afresh, as a changed declaration does on reload.
    /// Series past `max_series`, with the wrong number of label values or
    /// a value of the wrong kind are left out (and counted as dropped).
    pub fn restore(&mut self, saved: SavedSeries) -> Restored {
        let mut out = Restored::default();
        let consts_same = saved.const_values == self.const_values;
        for fam in saved.families {
            if !consts_same {
                out.dropped
                    .push((fam.name, "the pipeline's constant labels changed"));
                continue;
            }
            let Some(state) = self
                .families
                .iter_mut()
                .flatten()
                .find(|f| f.decl.name == fam.name)
            else {
                out.dropped.push((fam.name, "no longer declared"));
                continue;
            };
            if !fam.declared_as(&state.decl) {
                out.dropped.push((fam.name, "declaration changed"));
                continue;
            }
            if !state.series.is_empty() {
                out.dropped.push((fam.name, "already has series"));
                continue;
            }
            let restored = restore_family(state, fam.series, &mut self.series, self.max_series);
            if restored.1 > 0 {
                out.dropped.push((
                    state.decl.name.clone(),
                    "series left out (max_series or shape)",
                ));
            }
            out.series += restored.0;
            out.families.push(state.decl.name.clone());
        }
        out
    }
}

/// Insert saved series into `state`; returns (restored, left out).
fn restore_family(
    state: &mut FamilyState,
    series: Vec<(Vec<String>, SavedValue)>,
    count: &mut usize,
    max: usize,
) -> (usize, usize) {
    let (mut kept, mut left) = (0, 0);
    for (labels, v) in series {
        if *count >= max || labels.len() != state.decl.labels.len() {
            left += 1;
            continue;
        }
        match restore_value(v, &state.decl) {
            Some(v) => {
                if state.expire_after.is_some() {
                    // Restored now: idle from now on.
                    state
                        .last_update
                        .insert(labels.clone(), std::time::Instant::now());
                }
                if state.series.insert(labels, v).is_none() {
                    *count += 1;
                    kept += 1;
                }
            }
            None => left += 1,
        }
    }
    (kept, left)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{decl, l};
    use super::super::{Change, Semantics};
    use super::*;

    fn families() -> Vec<FamilyDecl> {
        vec![
            decl("c_total", Kind::Counter, &["code"], &[]),
            decl("g", Kind::Gauge, &[], &[]),
            decl("h", Kind::Histogram, &[], &[0.1, 1.0]),
        ]
    }

    fn filled() -> PipelineStore {
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(families());
        s.apply(
            vec![
                (0, l(&["200"]), Change::Add(3.0)),
                (0, l(&["500"]), Change::Add(0.1)),
                (1, l(&[]), Change::Set(f64::NAN)),
                (2, l(&[]), Change::Observe(vec![0.05, 0.5, 7.0])),
            ],
            Semantics::Events,
        );
        s
    }

    #[test]
    fn values_come_back_exactly_through_json() {
        let saved = filled().save();
        let text = serde_json::to_string(&saved).expect("json");
        let back: SavedSeries = serde_json::from_str(&text).expect("parse");
        let mut s = PipelineStore::new(vec![], 100);
        s.declare(families());
        let r = s.restore(back);
        assert_eq!(r.series, 4, "{r:?}");
        assert!(r.dropped.is_empty(), "{r:?}");
        let c = s.family(0).expect("c");
        assert_eq!(c.series[&l(&["500"])].counter_value(), 0.1);
        assert!(matches!(s.family(1).expect("g").series[&l(&[])], Value::Gauge(g) if g.is_nan()));
        assert_eq!(
            s.family(2).expect("h").series[&l(&[])],
            Value::Histogram {
                counts: vec![1, 1, 1],
                sum: 7.55
            }
        );
        // Counting goes on from the restored value.
        s.apply(vec![(0, l(&["200"]), Change::Add(1.0))], Semantics::Events);
        assert_eq!(
            s.family(0).expect("c").series[&l(&["200"])].counter_value(),
            4.0
        );
        assert_eq!(s.series_count(), 4);
    }

    #[test]
    fn a_changed_declaration_or_constant_label_starts_afresh() {
        let saved = filled().save();
        let mut s = PipelineStore::new(vec![], 100);
        let mut changed = families();
        changed[2] = decl("h", Kind::Histogram, &[], &[0.1, 2.0]);
        changed.remove(1);
        s.declare(changed);
        let r = s.restore(saved.clone());
        assert_eq!(r.families, vec!["c_total".to_string()]);
        let mut why = r.dropped.clone();
        why.sort();
        assert_eq!(
            why,
            vec![
                ("g".to_string(), "no longer declared"),
                ("h".to_string(), "declaration changed")
            ]
        );
        assert!(s.family(1).expect("h").series.is_empty());

        let mut s = PipelineStore::new(vec!["web1".into()], 100);
        let mut with_const = families();
        for d in &mut with_const {
            d.labels.insert(0, "host".into());
        }
        s.declare(with_const);
        let r = s.restore(saved);
        assert_eq!(r.series, 0);
        assert_eq!(s.series_count(), 0);
    }

    #[test]
    fn the_series_cap_holds_for_restored_series() {
        let saved = filled().save();
        let mut s = PipelineStore::new(vec![], 2);
        s.declare(families());
        let r = s.restore(saved);
        assert_eq!(r.series, 2);
        assert_eq!(s.series_count(), 2);
    }

    #[test]
    fn a_cumulative_reading_after_a_restore_does_not_lower_a_counter() {
        let mut s = PipelineStore::new(vec![], 10);
        s.declare(families());
        s.apply(vec![(0, l(&["200"]), Change::Set(50.0))], Semantics::Events);
        let saved = s.save();
        let mut s = PipelineStore::new(vec![], 10);
        s.declare(families());
        s.restore(saved);
        // The new plugin instance starts its readings at 2.
        s.apply(vec![(0, l(&["200"]), Change::Set(2.0))], Semantics::Events);
        assert_eq!(
            s.family(0).expect("c").series[&l(&["200"])].counter_value(),
            52.0
        );
    }

    #[test]
    fn non_numbers_are_refused_when_read() {
        assert!(serde_json::from_str::<Float>("\"lots\"").is_err());
        assert_eq!(
            serde_json::from_str::<Float>("\"-Inf\"").expect("inf").0,
            f64::NEG_INFINITY
        );
        let v = 0.1 + 0.2;
        let back: Float =
            serde_json::from_str(&serde_json::to_string(&Float(v)).expect("w")).expect("r");
        assert_eq!(back.0.to_bits(), v.to_bits());
    }
}
