//! Every format weir writes, from one scrape-time walk over the stores.
//!
//! A scrape is two steps. [`Plan`] reads the declarations of every store
//! (the pipelines' and the agent's own) and decides, under the rules of
//! the format being written, which families are written, under which
//! name and type, and which are left out because they cannot be written
//! validly next to the others: the same family name with another kind, a
//! sample name that another family of the scrape already produces. Then
//! [`walk`] visits the series of the planned families in a stable order
//! (families by name, series by label values) and hands each one, as it
//! sits in its store, to the format's writer: nothing is copied into an
//! intermediate model. Series that another pipeline already wrote are
//! skipped there.
//!
//! One file per format holds that format's naming rules, its escaping and
//! its value rules, tested against the format's own rules:
//! [`text`] (Prometheus text 0.0.4), [`openmetrics`] (OpenMetrics 1.0
//! text), [`remote_write`] (Prometheus remote write 1.0 series) and
//! [`otlp`] (OpenTelemetry metrics). What
//! a format cannot carry is counted as a [`Conflict`] by reason, so the
//! rest of the scrape is always valid.
use crate::store::{FamilyDecl, FamilyState, Kind, PipelineStore, Value};
use std::collections::{BTreeMap, HashSet};

pub mod openmetrics;
pub mod otlp;
pub mod remote_write;
pub mod text;

/// The formats weir writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text format.
    OpenMetrics,
    /// Prometheus remote write 1.0.
    RemoteWrite,
    /// OTLP metrics.
    Otlp,
}

impl Format {
    /// Label value in `weir_exposition_conflicts_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::OpenMetrics => "openmetrics",
            Format::RemoteWrite => "remote_write",
            Format::Otlp => "otlp",
        }
    }

    /// Every format, for pre-registered series.
    pub const ALL: [Format; 4] = [
        Format::Text,
        Format::OpenMetrics,
        Format::RemoteWrite,
        Format::Otlp,
    ];
}

/// What had to be changed or left out so that a scrape stays valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conflict {
    /// A family left out: another pipeline exposes the same name with
    /// another kind.
    KindMismatch,
    /// A family left out: one of the sample names it would write is a
    /// name another family of the scrape already writes (OpenMetrics also
    /// counts the names a type may write, such as `_created`).
    NameClash,
    /// A series left out: another pipeline already wrote the same series
    /// (same name and labels, labels with empty values ignored).
    DuplicateSeries,
    /// OpenMetrics only: a counter whose family name (the name without
    /// `_total`) clashes with another family is written as `unknown` under
    /// its full name, so every sample keeps the name 0.0.4 gives it.
    CounterAsUnknown,
    /// OpenMetrics only: a histogram series' `_sum` and `_count` left out
    /// (its buckets kept), because a bucket bound is negative or the sum
    /// is negative: the spec allows a sum only where it is a counter, and
    /// a `_count` only with a `_sum`.
    SumDropped,
    /// OpenMetrics only: a summary quantile sample whose value is negative
    /// left out, or a summary `_sum` that is negative or NaN.
    QuantileDropped,
}

impl Conflict {
    /// Label value in `weir_exposition_conflicts_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Conflict::KindMismatch => "kind_mismatch",
            Conflict::NameClash => "name_clash",
            Conflict::DuplicateSeries => "duplicate_series",
            Conflict::CounterAsUnknown => "counter_as_unknown",
            Conflict::SumDropped => "sum_dropped",
            Conflict::QuantileDropped => "quantile_dropped",
        }
    }

    /// Every reason, for pre-registered series.
    pub const ALL: [Conflict; 6] = [
        Conflict::KindMismatch,
        Conflict::NameClash,
        Conflict::DuplicateSeries,
        Conflict::CounterAsUnknown,
        Conflict::SumDropped,
        Conflict::QuantileDropped,
    ];

    /// Whether the format carries everything it had after this remedy.
    pub fn is_left_out(self) -> bool {
        !matches!(self, Conflict::CounterAsUnknown)
    }
}

/// Conflicts of one scrape: counts by reason (one per family, series or
/// sample left out or changed), and the first family names met for each
/// reason, for a log line.
#[derive(Debug, Default)]
pub struct Conflicts {
    /// Counts by reason.
    pub counts: BTreeMap<Conflict, u64>,
    /// (reason, family name, detail), at most [`Conflicts::MAX_NOTES`].
    pub notes: Vec<(Conflict, String, String)>,
}

impl Conflicts {
    /// Most notes kept per scrape.
    pub const MAX_NOTES: usize = 100;

    /// Count `n` of `reason` for `family`; `detail` is built only when it
    /// is kept.
    pub fn add(&mut self, reason: Conflict, family: &str, n: u64, detail: impl FnOnce() -> String) {
        *self.counts.entry(reason).or_insert(0) += n;
        if self.notes.len() < Self::MAX_NOTES
            && !self
                .notes
                .iter()
                .any(|(r, f, _)| *r == reason && f == family)
        {
            self.notes.push((reason, family.to_string(), detail()));
        }
    }

    /// Total of every reason.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// The type a family is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// As its kind says.
    Kind(Kind),
    /// OpenMetrics `unknown` (a counter whose family name clashes).
    Unknown,
}

/// One family as a format writes it: possibly several stores' families
/// of one name and kind.
#[derive(Debug)]
pub struct Planned<'a> {
    /// The name the declarations give (counters end in `_total`): the
    /// sample name of counters and gauges in every format.
    pub name: &'a str,
    /// Name on the format's `# TYPE`, `# HELP` and `# UNIT` lines.
    pub family_name: String,
    /// Kind as declared.
    pub kind: Kind,
    /// Type as written.
    pub written: Written,
    /// HELP text (the first store's).
    pub help: &'a str,
    /// Unit, or empty when none is written.
    pub unit: &'a str,
    /// The stores' families, in store order.
    pub parts: Vec<&'a FamilyState>,
}

/// The naming rules of one format.
pub trait Rules {
    /// Which format.
    const FORMAT: Format;
    /// The family name and every name a family of `decl` written as
    /// `written` writes or may write (which no other family may write).
    fn names(decl: &FamilyDecl, written: Written) -> (String, Vec<String>);
    /// The next way to write a family whose names clash, if the format
    /// has one.
    fn fallback(_decl: &FamilyDecl, _written: Written) -> Option<Written> {
        None
    }
}

/// Which families of a scrape a format writes, and how.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Families to write, by [`Planned::name`].
    pub families: Vec<Planned<'a>>,
    /// Names taken so far.
    claimed: HashSet<String>,
    /// What was left out or changed.
    pub conflicts: Conflicts,
}

impl<'a> Plan<'a> {
    /// An empty plan.
    pub fn new() -> Self {
        Plan {
            families: Vec::new(),
            claimed: HashSet::new(),
            conflicts: Conflicts::default(),
        }
    }

    /// Plan the families of `stores` under `R`'s rules, after those already
    /// planned (which keep their names). Families without series are left
    /// out: they say nothing. Within the batch, families are taken in name
    /// order, and a family whose names clash with one taken before it is
    /// left out (or written in the format's fallback way).
    pub fn add<R: Rules>(&mut self, stores: &[&'a PipelineStore]) {
        let mut merged: BTreeMap<&'a str, Vec<&'a FamilyState>> = BTreeMap::new();
        for store in stores {
            for f in store.families() {
                if !f.series.is_empty() {
                    merged.entry(f.decl.name.as_str()).or_default().push(f);
                }
            }
        }
        for (name, mut parts) in merged {
            let first = &parts[0].decl;
            let kind = first.kind;
            parts.retain(|p| {
                if p.decl.kind == kind {
                    return true;
                }
                let (k, n) = (p.decl.kind, p.series.len() as u64);
                self.conflicts.add(Conflict::KindMismatch, name, n, || {
                    format!(
                        "{} \"{name}\" left out: another pipeline exposes \"{name}\" as a {}",
                        k.as_str(),
                        kind.as_str()
                    )
                });
                false
            });
            let p0: &'a FamilyState = parts[0];
            let decl = &p0.decl;
            let series: u64 = parts.iter().map(|p| p.series.len() as u64).sum();
            let mut written = Written::Kind(kind);
            loop {
                let (family_name, names) = R::names(decl, written);
                let clash = names.iter().find(|n| self.claimed.contains(*n)).cloned();
                match clash {
                    None => {
                        self.claimed.extend(names);
                        if written != Written::Kind(kind) {
                            self.conflicts.add(Conflict::CounterAsUnknown, name, 1, || {
                                format!(
                                    "counter \"{name}\" written as unknown \"{family_name}\" in {}: its family name clashes with another family",
                                    R::FORMAT.as_str()
                                )
                            });
                        }
                        let unit = match written {
                            Written::Kind(_)
                                if !p0.decl.unit.is_empty()
                                    && family_name.ends_with(&format!("_{}", p0.decl.unit)) =>
                            {
                                p0.decl.unit.as_str()
                            }
                            _ => "",
                        };
                        self.families.push(Planned {
                            name,
                            family_name,
                            kind,
                            written,
                            help: p0.decl.help.as_str(),
                            unit,
                            parts,
                        });
                        break;
                    }
                    Some(taken) => match R::fallback(decl, written) {
                        Some(w) => written = w,
                        None => {
                            self.conflicts.add(Conflict::NameClash, name, series, || {
                                format!(
                                    "{} \"{name}\" left out of {}: it would write \"{taken}\", which another family writes",
                                    kind.as_str(),
                                    R::FORMAT.as_str()
                                )
                            });
                            break;
                        }
                    },
                }
            }
        }
    }

    /// The families in name order (families added later are merged in).
    fn sorted(&mut self) {
        self.families.sort_by(|a, b| a.name.cmp(b.name));
    }
}

impl Default for Plan<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Labels of one series as its store holds them: names from the
/// declaration, values from the series key.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    /// Label names.
    pub names: &'a [String],
    /// Label values, one per name.
    pub values: &'a [String],
}

impl<'a> Labels<'a> {
    /// (name, value) pairs.
    pub fn iter(self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().map(String::as_str))
    }

    /// Whether there is no label with a non-empty value.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(String::is_empty)
    }

    /// The series identity: pairs with a value, sorted by name. A label
    /// with an empty value is no label (as Prometheus reads it).
    fn identity(self) -> Vec<(&'a str, &'a str)> {
        let mut v: Vec<(&str, &str)> = self.iter().filter(|(_, v)| !v.is_empty()).collect();
        v.sort_unstable();
        v
    }
}

/// What a format writer does with a walk.
pub trait Sink {
    /// A family starts (its series follow).
    fn family(&mut self, f: &Planned<'_>);
    /// One series of the current family; `buckets` are the histogram bounds
    /// of its declaration (without `+Inf`).
    fn series(
        &mut self,
        f: &Planned<'_>,
        labels: Labels<'_>,
        value: &Value,
        buckets: &[f64],
        conflicts: &mut Conflicts,
    );
    /// After the last family.
    fn end(&mut self) {}
}

/// Visit every planned family and series, in order: families by name,
/// series by label values within each store, stores in the order given.
/// A series another store of the same family already wrote is skipped
/// and counted.
pub fn walk(plan: &mut Plan<'_>, sink: &mut impl Sink) {
    walk_families(plan, sink);
    sink.end();
}

/// Write the families planned so far, in name order, and take them out of
/// the plan (the names they claimed stay claimed), leaving the body open:
/// families planned afterwards are written after these by another call,
/// and [`Sink::end`] closes the body. Used to write, last, figures that
/// only the walk itself can tell (what this scrape left out).
pub fn walk_families(plan: &mut Plan<'_>, sink: &mut impl Sink) {
    plan.sorted();
    let conflicts = &mut plan.conflicts;
    for f in &plan.families {
        sink.family(f);
        let mut seen: HashSet<Vec<(&str, &str)>> = HashSet::new();
        let many = f.parts.len() > 1;
        for part in &f.parts {
            let mut series: Vec<(&Vec<String>, &Value)> = part.live_series().collect();
            series.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let names = &part.decl.labels;
            for (values, value) in series {
                let labels = Labels { names, values };
                if many && !seen.insert(labels.identity()) {
                    conflicts.add(Conflict::DuplicateSeries, f.name, 1, || {
                        format!(
                            "a series of \"{}\" left out: another pipeline exposes the same series",
                            f.name
                        )
                    });
                    continue;
                }
                sink.series(f, labels, value, &part.decl.buckets, conflicts);
            }
        }
    }
    plan.families.clear();
}

/// Format a float the way Prometheus and OpenMetrics parsers read it back
/// exactly: shortest round-trip digits, `NaN`, `+Inf`, `-Inf`.
pub fn fmt_f64(v: f64, out: &mut String) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

/// Format a bucket bound or quantile (the value of an `le` or `quantile`
/// label, which is part of the series' identity) the way the Go client
/// library writes it in the text format: Go's `strconv.FormatFloat(v, 'g',
/// -1, 64)`, the shortest digits that read back exactly, with an exponent
/// when it is below -4 or at least 6 (`6.4e-08`, `1e+06`, `0.25`, `100`),
/// and `+Inf`, `-Inf`, `NaN`. Written the same way, a series re-exposed by
/// weir keeps the identity it had when Prometheus scraped the Go exporter
/// directly.
pub fn fmt_bound(v: f64, out: &mut String) {
    use std::fmt::Write;
    if !v.is_finite() {
        return fmt_f64(v, out);
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` gives the same shortest digits: `6.4e-8`, `1e6`.
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return fmt_f64(v, out);
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return fmt_f64(v, out);
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exp.abs());
    } else {
        // In this range Rust's Display is the plain decimal Go writes.
        let _ = write!(out, "{v}");
    }
}

/// Plan and write `stores` as 0.0.4 text (what `weir test` prints).
pub fn to_text(stores: &[&PipelineStore]) -> (String, Conflicts) {
    let mut plan = Plan::new();
    plan.add::<text::Rules>(stores);
    let mut w = text::Writer::default();
    walk(&mut plan, &mut w);
    (w.out, plan.conflicts)
}

/// Plan and write `stores` as OpenMetrics text.
pub fn to_openmetrics(stores: &[&PipelineStore]) -> (String, Conflicts) {
    let mut plan = Plan::new();
    plan.add::<openmetrics::Rules>(stores);
    let mut w = openmetrics::Writer::default();
    walk(&mut plan, &mut w);
    (w.out, plan.conflicts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::{Change, Semantics};

    #[test]
    fn bounds_are_written_as_the_go_client_writes_them() {
        // (value, Go text format, Go OpenMetrics), from strconv's 'g' rule
        // and client_golang's OpenMetrics writer.
        let cases: &[(f64, &str, &str)] = &[
            (6.4e-8, "6.4e-08", "6.4e-08"),
            (0.0001, "0.0001", "0.0001"),
            (0.00001, "1e-05", "1e-05"),
            (0.25, "0.25", "0.25"),
            (1.0, "1", "1.0"),
            (0.0, "0", "0.0"),
            (100.0, "100", "100.0"),
            (123456.0, "123456", "123456.0"),
            (1e6, "1e+06", "1e+06"),
            (1234567.0, "1.234567e+06", "1.234567e+06"),
            (-2.5, "-2.5", "-2.5"),
            (-1e-300, "-1e-300", "-1e-300"),
            (5e-324, "5e-324", "5e-324"),
            (f64::INFINITY, "+Inf", "+Inf"),
            (f64::NEG_INFINITY, "-Inf", "-Inf"),
        ];
        for (v, text, om) in cases {
            let mut t = String::new();
            fmt_bound(*v, &mut t);
            assert_eq!(&t, text, "{v}");
            let mut o = String::new();
            openmetrics::canonical(*v, &mut o);
            assert_eq!(&o, om, "{v}");
            // Both read back exactly.
            assert_eq!(t.replace("+Inf", "inf").parse::<f64>().ok(), Some(*v));
        }
    }

    /// A store with families (name, kind, labels, buckets) and updates.
    pub fn store(
        decls: &[(&str, Kind, &[&str], &[f64])],
        updates: Vec<(u32, Vec<&str>, Change)>,
    ) -> PipelineStore {
        let mut s = PipelineStore::new(vec![], 1000);
        s.declare(
            decls
                .iter()
                .map(|(n, k, l, b)| {
                    FamilyDecl::validate(
                        n.to_string(),
                        *k,
                        format!("Help of {n}."),
                        String::new(),
                        l.iter().map(|x| x.to_string()).collect(),
                        b.to_vec(),
                        &[],
                    )
                    .expect("valid")
                })
                .collect(),
        );
        let r = s.apply(
            updates
                .into_iter()
                .map(|(i, l, c)| (i, l.into_iter().map(String::from).collect(), c))
                .collect(),
            Semantics::Events,
        );
        assert!(r.rejected.is_empty(), "{:?}", r.rejected);
        s
    }

    #[test]
    fn kinds_that_differ_and_duplicate_series_are_left_out_and_counted() {
        let a = store(
            &[("x", Kind::Gauge, &["k"], &[])],
            vec![
                (0, vec!["1"], Change::Set(1.0)),
                (0, vec!["2"], Change::Set(2.0)),
            ],
        );
        let b = store(
            &[("x", Kind::Gauge, &["k", "extra"], &[])],
            vec![
                (0, vec!["1", ""], Change::Set(9.0)),
                (0, vec!["3", "e"], Change::Set(3.0)),
            ],
        );
        let c = store(
            &[
                ("x_total", Kind::Counter, &[], &[]),
                ("x", Kind::Histogram, &[], &[1.0]),
            ],
            vec![
                (0, vec![], Change::Add(1.0)),
                (1, vec![], Change::Observe(vec![0.5])),
            ],
        );
        let (t, conflicts) = to_text(&[&a, &b, &c]);
        assert_eq!(
            t,
            "# HELP x Help of x.\n# TYPE x gauge\nx{k=\"1\"} 1\nx{k=\"2\"} 2\nx{k=\"3\",extra=\"e\"} 3\n\
             # HELP x_total Help of x_total.\n# TYPE x_total counter\nx_total 1\n"
        );
        assert_eq!(conflicts.counts[&Conflict::KindMismatch], 1);
        assert_eq!(conflicts.counts[&Conflict::DuplicateSeries], 1);
        assert_eq!(conflicts.notes.len(), 2);
    }

    #[test]
    fn sample_names_are_checked_across_stores() {
        // A summary "s" in one pipeline, a gauge "s_count" in another: the
        // gauge's sample would join the summary, so it is left out.
        let a = store(
            &[("s", Kind::Summary, &[], &[])],
            vec![(0, vec![], Change::SetSummary(vec![(0.5, 1.0)], 3.0, 2))],
        );
        let b = store(
            &[
                ("s_count", Kind::Gauge, &[], &[]),
                ("h_bucket", Kind::Gauge, &[], &[]),
            ],
            vec![(0, vec![], Change::Set(7.0)), (1, vec![], Change::Set(7.0))],
        );
        let c = store(
            &[("h", Kind::Histogram, &[], &[1.0])],
            vec![(0, vec![], Change::Observe(vec![2.0]))],
        );
        let (t, conflicts) = to_text(&[&a, &b, &c]);
        assert!(!t.contains("# TYPE s_count"), "{t}");
        assert!(!t.contains("# TYPE h_bucket"), "{t}");
        assert!(
            t.contains("s_count 2\n") && t.contains("h_count 1\n"),
            "{t}"
        );
        assert_eq!(conflicts.counts[&Conflict::NameClash], 2);
    }
}
