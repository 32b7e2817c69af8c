//! Reading the Prometheus text format 0.0.4, tolerant of OpenMetrics 1.0
//! (`# EOF`, `# UNIT`, `_created` samples, exemplars, float timestamps).
//!
//! The reader is lazy: a sample line is split into its name and the rest,
//! and the rest (labels, value) is parsed only for families that are kept.
use std::collections::HashMap;

/// What a `# TYPE` line says a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// `untyped`, OpenMetrics `unknown`, or no `# TYPE` line at all.
    Untyped,
    GaugeHistogram,
    Info,
    StateSet,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "counter" => Type::Counter,
            "gauge" => Type::Gauge,
            "histogram" => Type::Histogram,
            "summary" => Type::Summary,
            "untyped" | "unknown" => Type::Untyped,
            "gaugehistogram" => Type::GaugeHistogram,
            "info" => Type::Info,
            "stateset" => Type::StateSet,
            _ => return None,
        })
    }
}

/// What a sample is within its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The value of a counter, gauge or untyped family.
    Value,
    /// `_bucket`, with an `le` label.
    Bucket,
    Sum,
    Count,
    /// A summary's own name, with a `quantile` label.
    Quantile,
    /// OpenMetrics `_created`: when the series started. Not re-exposed.
    Created,
    /// A sample a family of this type cannot have (a histogram's bare name).
    Invalid,
}

/// The families the `# TYPE` lines declare, by name.
pub type Types<'a> = HashMap<&'a str, Type>;

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The lines of an exposition with their line ends and leading blanks
/// removed, up to an OpenMetrics `# EOF`.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .map(|l| {
            l.strip_suffix('\r')
                .unwrap_or(l)
                .trim_start_matches(is_blank)
        })
        .take_while(|l| l.trim_end_matches(is_blank) != "# EOF")
        .filter(|l| !l.is_empty())
}

/// The `# HELP` texts (escapes undone), by family name.
pub type Helps<'a> = HashMap<&'a str, String>;

/// What the `# TYPE` and `# HELP` lines say.
pub struct Meta<'a> {
    /// Types by family name.
    pub types: Types<'a>,
    /// HELP texts by family name.
    pub helps: Helps<'a>,
    /// `# TYPE` lines with a type this reader does not know (their
    /// family's samples are read as untyped).
    pub unknown_types: usize,
}

/// Read the `# TYPE` and `# HELP` lines. A second line of either kind for
/// a family replaces the first.
pub fn meta(text: &str) -> Meta<'_> {
    let mut types = HashMap::new();
    let mut helps = HashMap::new();
    let mut unknown_types = 0;
    for line in lines(text) {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let rest = rest.trim_start_matches(is_blank);
        if let Some(r) = rest
            .strip_prefix("TYPE")
            .filter(|r| r.starts_with(is_blank))
        {
            let mut words = r.split(is_blank).filter(|w| !w.is_empty());
            match (words.next(), words.next().map(Type::parse)) {
                (Some(name), Some(Some(t))) => {
                    types.insert(name, t);
                }
                _ => unknown_types += 1,
            }
        } else if let Some(r) = rest.strip_prefix("HELP") {
            if !r.starts_with(is_blank) {
                continue;
            }
            let r = r.trim_start_matches(is_blank);
            let end = r.find(is_blank).unwrap_or(r.len());
            let (name, text) = r.split_at(end);
            if !name.is_empty() {
                helps.insert(name, unescape_help(text.trim_start_matches(is_blank)));
            }
        }
    }
    Meta {
        types,
        helps,
        unknown_types,
    }
}

/// Undo `\\`, `\n` and (OpenMetrics) `\"` in a HELP text; other
/// backslashes stay, as both formats' parsers keep them.
fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                    continue;
                }
                Some('n') => {
                    out.push('\n');
                    chars.next();
                    continue;
                }
                Some('"') => {
                    out.push('"');
                    chars.next();
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out.trim_end_matches(is_blank).to_string()
}

/// The sample lines: name and the text after it, or `Err` for a line that
/// does not start with a metric name.
pub fn samples(text: &str) -> impl Iterator<Item = Result<(&str, &str), &'static str>> {
    lines(text).filter(|l| !l.starts_with('#')).map(|l| {
        let end = l
            .char_indices()
            .find(|&(i, c)| !is_name_char(c, i == 0, true))
            .map_or(l.len(), |(i, _)| i);
        if end == 0 {
            return Err("a sample line must start with a metric name");
        }
        let (name, rest) = l.split_at(end);
        match rest.chars().next() {
            Some('{') | Some(' ') | Some('\t') => Ok((name, rest)),
            _ => Err("a metric name must be followed by labels or a value"),
        }
    })
}

/// Whether `c` may be in a metric name (`colon`) or a label name.
pub fn is_name_char(c: char, first: bool, colon: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
}

/// Whether `s` is a valid metric name (`colon`) or label name.
pub fn is_name(s: &str, colon: bool) -> bool {
    !s.is_empty()
        && s.char_indices()
            .all(|(i, c)| is_name_char(c, i == 0, colon))
}

/// The family a sample belongs to, by the `# TYPE` lines: its name, its
/// type and the sample's role in it. A name no `# TYPE` line explains is
/// an untyped family of its own.
pub fn classify<'a>(name: &'a str, types: &Types) -> (&'a str, Type, Role) {
    if let Some(&t) = types.get(name) {
        let role = match t {
            Type::Summary => Role::Quantile,
            Type::Histogram | Type::GaugeHistogram => Role::Invalid,
            _ => Role::Value,
        };
        return (name, t, role);
    }
    const SUFFIXES: [&str; 8] = [
        "_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount", "_info",
    ];
    for suffix in SUFFIXES {
        let Some(base) = name.strip_suffix(suffix) else {
            continue;
        };
        let Some(&t) = types.get(base) else {
            continue;
        };
        use Type::*;
        let role = match (suffix, t) {
            ("_bucket", Histogram | GaugeHistogram) => Role::Bucket,
            // A gauge histogram's `_sum` and `_count` (as some exporters
            // spell `_gsum` and `_gcount`) belong to it too, so they are
            // refused with it rather than read as gauges of their own.
            ("_sum", Histogram | Summary | GaugeHistogram) | ("_gsum", GaugeHistogram) => Role::Sum,
            ("_count", Histogram | Summary | GaugeHistogram) | ("_gcount", GaugeHistogram) => {
                Role::Count
            }
            ("_total", Counter) | ("_info", Info) => Role::Value,
            ("_created", Counter | Histogram | Summary) => Role::Created,
            _ => continue,
        };
        return (base, t, role);
    }
    (name, Type::Untyped, Role::Value)
}

/// Labels with their unescaped values, and the value. Timestamps and
/// exemplars are checked loosely and ignored.
pub type Parsed<'a> = (Vec<(&'a str, String)>, f64);

/// Parse what follows the metric name on a sample line.
pub fn rest(s: &str) -> Result<Parsed<'_>, &'static str> {
    let mut r = s.trim_start_matches(is_blank);
    let mut labels: Vec<(&str, String)> = Vec::new();
    if let Some(after) = r.strip_prefix('{') {
        r = after;
        loop {
            r = r.trim_start_matches(is_blank);
            if let Some(after) = r.strip_prefix('}') {
                r = after;
                break;
            }
            let end = r
                .char_indices()
                .find(|&(i, c)| !is_name_char(c, i == 0, false))
                .map_or(r.len(), |(i, _)| i);
            if end == 0 {
                return Err("expected a label name");
            }
            let name = &r[..end];
            r = r[end..].trim_start_matches(is_blank);
            r = r
                .strip_prefix('=')
                .ok_or("expected '=' after a label name")?;
            r = r.trim_start_matches(is_blank);
            r = r
                .strip_prefix('"')
                .ok_or("expected '\"' before a label value")?;
            let (value, after) = label_value(r)?;
            if labels.iter().any(|(n, _)| *n == name) {
                return Err("a label appears twice");
            }
            labels.push((name, value));
            r = after.trim_start_matches(is_blank);
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if let Some(after) = r.strip_prefix('}') {
                r = after;
                break;
            } else {
                return Err("expected ',' or '}' after a label value");
            }
        }
    }
    let mut words = r.split(is_blank).filter(|w| !w.is_empty());
    let value = words
        .next()
        .ok_or("no value")?
        .parse::<f64>()
        .map_err(|_| "the value is not a number")?;
    match words.next() {
        None => {}
        // An OpenMetrics exemplar.
        Some(w) if w.starts_with('#') => {}
        Some(ts) => {
            ts.parse::<f64>()
                .map_err(|_| "the timestamp is not a number")?;
            if words.next().is_some_and(|w| !w.starts_with('#')) {
                return Err("unexpected text after the timestamp");
            }
        }
    }
    Ok((labels, value))
}

/// Read a label value up to its closing quote, undoing `\\`, `\"` and
/// `\n`; another escape (`\z`) is kept as written, backslash and all, as
/// the OpenMetrics and Prometheus parsers read it. Returns the value and
/// what follows the quote.
fn label_value(s: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, c)) => {
                    value.push('\\');
                    value.push(c);
                }
                None => return Err("unterminated label value"),
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_values_and_timestamps() {
        let (l, v) =
            rest(r#"{path="C:\\dir",msg="say \"hi\"\nbye" , empty="",} 1.5e3 1712345678000"#)
                .expect("parses");
        assert_eq!(
            l,
            vec![
                ("path", r"C:\dir".to_string()),
                ("msg", "say \"hi\"\nbye".to_string()),
                ("empty", String::new())
            ]
        );
        assert_eq!(v, 1500.0);
        assert_eq!(rest(" +Inf").map(|r| r.1), Ok(f64::INFINITY));
        assert_eq!(rest(" -Inf").map(|r| r.1), Ok(f64::NEG_INFINITY));
        assert!(rest(" NaN").is_ok_and(|r| r.1.is_nan()));
        // OpenMetrics: float timestamp, exemplar.
        assert_eq!(
            rest(r#"{le="0.1"} 8 # {trace_id="abc"} 0.05 1712345678.1"#).map(|r| r.1),
            Ok(8.0)
        );
        assert_eq!(rest(" 3 1712345678.5").map(|r| r.1), Ok(3.0));
        // Unknown escapes are kept as written.
        assert_eq!(
            rest(r#"{a="x\z\t"} 1"#).map(|r| r.0),
            Ok(vec![("a", r"x\z\t".to_string())])
        );
        for bad in [
            r#"{a="x\"#,
            r#"{a="x} 1"#,
            r#"{a="1",a="2"} 1"#,
            r#"{a=1} 1"#,
            r#"{1a="1"} 1"#,
            " one",
            " 1 2 3",
            "",
        ] {
            assert!(rest(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn families_from_type_lines() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\n# TYPE om counter\n\
                    # TYPE h histogram\n# TYPE s summary\n# TYPE g gauge\n# UNIT g seconds\n\
                    # TYPE odd histogramm\n# EOF\n# TYPE late gauge\n";
        let Meta {
            types: t,
            helps: h,
            unknown_types,
        } = meta(text);
        assert_eq!(unknown_types, 1);
        assert_eq!(h.get("a_total").map(String::as_str), Some("A."));
        let h = meta(
            "# HELP x Path C:\\\\dir, two\\nlines, \\d kept, \\\"q\\\"  \n#HELP  y\ty \n# HELPz no\n",
        )
        .helps;
        assert_eq!(
            h.get("x").map(String::as_str),
            Some("Path C:\\dir, two\nlines, \\d kept, \"q\"")
        );
        assert_eq!(h.get("y").map(String::as_str), Some("y"));
        assert_eq!(h.len(), 2);
        assert_eq!(
            classify("a_total", &t),
            ("a_total", Type::Counter, Role::Value)
        );
        assert_eq!(classify("om_total", &t), ("om", Type::Counter, Role::Value));
        assert_eq!(
            classify("om_created", &t),
            ("om", Type::Counter, Role::Created)
        );
        assert_eq!(
            classify("h_bucket", &t),
            ("h", Type::Histogram, Role::Bucket)
        );
        assert_eq!(classify("h_count", &t), ("h", Type::Histogram, Role::Count));
        assert_eq!(classify("h", &t), ("h", Type::Histogram, Role::Invalid));
        assert_eq!(classify("s", &t), ("s", Type::Summary, Role::Quantile));
        assert_eq!(classify("s_sum", &t), ("s", Type::Summary, Role::Sum));
        assert_eq!(classify("g", &t), ("g", Type::Gauge, Role::Value));
        assert_eq!(
            classify("g_total", &t),
            ("g_total", Type::Untyped, Role::Value)
        );
        assert_eq!(classify("late", &t), ("late", Type::Untyped, Role::Value));
        let s: Vec<_> = samples("a 1\n  b{x=\"y\"} 2\r\n# c 3\n4d 5\ne+ 1\n# EOF\nf 1\n").collect();
        assert_eq!(
            s,
            vec![
                Ok(("a", " 1")),
                Ok(("b", "{x=\"y\"} 2")),
                Err("a sample line must start with a metric name"),
                Err("a metric name must be followed by labels or a value"),
            ]
        );
    }
}
