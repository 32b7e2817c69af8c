//! Durations as Go and Prometheus write them, in seconds.
//!
//! Go's `time.Duration.String()` (what Go apps log: `1h2m3.5s`, `250ms`,
//! `1.5µs`, `0s`) and Prometheus' duration strings (`5m`, `1h30m`, `2d`,
//! `1w`, `1y`) are both accepted: a sequence of numbers, each with a unit
//! (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`, `d` = 24h, `w` = 7d,
//! `y` = 365d), with an optional sign. Units follow Go's `time.ParseDuration`
//! and Prometheus' `model.ParseDuration` documentation.
//!
//! Written here: Go's and Prometheus' grammars together are a few dozen
//! lines, and the duration crates (humantime, go-parse-duration) accept
//! one of them only or pull in more than a plugin should carry.
use std::fmt;

/// Parse a duration into seconds.
///
/// ```
/// use weir_sdk::duration;
/// assert_eq!(duration::parse("1h2m3.5s"), Ok(3723.5));
/// assert_eq!(duration::parse("250ms"), Ok(0.25));
/// assert_eq!(duration::parse("1.5µs"), Ok(1.5e-6));
/// assert_eq!(duration::parse("2d"), Ok(172_800.0));
/// assert_eq!(duration::parse("0"), Ok(0.0));
/// assert_eq!(duration::parse("350ms"), Ok(0.35)); // exact, not 0.35000000000000003
/// assert_eq!(duration::parse("1h0.35s"), Ok(3600.35));
/// assert!(duration::parse("12").is_err()); // a unit is needed
/// ```
pub fn parse(s: &str) -> Result<f64, Error> {
    let err = |kind| Error {
        text: s.to_string(),
        kind,
    };
    let t = s.trim();
    let (sign, mut rest) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    if rest.is_empty() {
        return Err(err(ErrorKind::Empty));
    }
    if rest == "0" {
        return Ok(0.0);
    }
    // Summed exactly in whole nanoseconds (finer digits are dropped, as Go
    // does) and rounded once, so `350ms` is the 0.35 a bucket bound says
    // and `1h0.35s` the nearest f64 to 3600.35 (issue 13: `350 * 0.001` is
    // 0.35000000000000003, one bucket too high).
    let mut ns: i128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..n];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err(ErrorKind::Number));
        }
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..u];
        if unit.is_empty() {
            return Err(err(ErrorKind::MissingUnit));
        }
        let per = unit_nanos(unit).ok_or_else(|| err(ErrorKind::Unit(unit.into())))?;
        ns = ns
            .checked_add(nanos(number, per).ok_or_else(|| err(ErrorKind::Number))?)
            .ok_or_else(|| err(ErrorKind::Number))?;
        rest = &rest[u..];
    }
    let secs: f64 = format!("{ns}e-9")
        .parse()
        .map_err(|_| err(ErrorKind::Number))?;
    Ok(sign * secs)
}

/// `number` (digits, at most one `.`) times `per` nanoseconds, exactly.
fn nanos(number: &str, per: i128) -> Option<i128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.len() > 30 {
        return None;
    }
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = whole.checked_mul(per)?;
    let mut place = per;
    for c in frac.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        total += i128::from(c - b'0') * place;
    }
    Some(total)
}

fn unit_nanos(unit: &str) -> Option<i128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        "y" => 31_536_000_000_000_000,
        _ => return None,
    })
}

/// Parse a duration, or a bare number in `unit` seconds: apps log both
/// `took=250ms` and `took=0.25`.
///
/// ```
/// use weir_sdk::duration;
/// assert_eq!(duration::parse_or_number("250ms", 1.0), Ok(0.25));
/// assert_eq!(duration::parse_or_number("250", 0.001), Ok(0.25)); // bare milliseconds
/// assert_eq!(duration::parse_or_number("350", 0.001), Ok(0.35));
/// assert!(duration::parse_or_number("soon", 1.0).is_err());
/// ```
pub fn parse_or_number(s: &str, unit: f64) -> Result<f64, Error> {
    match s.trim().parse::<f64>() {
        // In decimal, so `350` milliseconds is exactly the 0.35 of a bound.
        Ok(v) if v.is_finite() => match crate::Scale::new(unit) {
            Ok(scale) => Ok(scale.apply(v)),
            Err(_) => Ok(v * unit),
        },
        _ => parse(s),
    }
}

/// Seconds in one `unit`, for the units [`parse`] knows.
///
/// ```
/// assert_eq!(weir_sdk::duration::unit_seconds("ms"), Some(0.001));
/// assert_eq!(weir_sdk::duration::unit_seconds("fortnight"), None);
/// ```
pub fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e-9,
        "us" | "µs" | "μs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        "y" => 31_536_000.0,
        _ => return None,
    })
}

/// A text that is not a duration, and why.
///
/// ```
/// let e = weir_sdk::duration::parse("5 minutes").unwrap_err();
/// assert_eq!(e.to_string(), "\"5 minutes\" is not a duration: unknown unit \" minutes\" (ns, us, ms, s, m, h, d, w, y)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    text: String,
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    Empty,
    Number,
    MissingUnit,
    Unit(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a duration: ", self.text)?;
        match &self.kind {
            ErrorKind::Empty => write!(f, "empty"),
            ErrorKind::Number => write!(f, "expected a number"),
            ErrorKind::MissingUnit => write!(f, "a number needs a unit (e.g. 1.5s, 250ms)"),
            ErrorKind::Unit(u) => write!(f, "unknown unit {u:?} (ns, us, ms, s, m, h, d, w, y)"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn go_forms() {
        for (s, v) in [
            ("300ms", 0.3),
            ("-1.5h", -5400.0),
            ("2h45m", 9900.0),
            ("1m0.5s", 60.5),
            ("1.000000001s", 1.000000001),
            ("100ns", 1e-7),
            ("3us", 3e-6),
            ("3μs", 3e-6),
            (".5s", 0.5),
            ("0s", 0.0),
        ] {
            // Exact: the nearest f64 to the decimal, as the bound parses.
            assert_eq!(parse(s).unwrap(), v, "{s}");
        }
    }

    #[test]
    fn prometheus_forms() {
        for (s, v) in [("1y", 31_536_000.0), ("1w2d", 777_600.0), ("90m", 5400.0)] {
            assert!(close(parse(s).unwrap(), v), "{s}");
        }
    }

    #[test]
    fn errors() {
        for s in ["", "-", "1", "1.2.3s", "s", "1x", "1h 2m", "..s"] {
            assert!(parse(s).is_err(), "{s}");
        }
        assert!(parse_or_number("inf", 1.0).is_err());
    }
}
