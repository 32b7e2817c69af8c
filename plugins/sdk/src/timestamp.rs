//! Timestamps as logs write them, as Unix time in seconds (UTC).
//!
//! [`parse`] recognises, without being told the form:
//!
//! | form | example |
//! |---|---|
//! | RFC 3339 / ISO 8601 (`T` or space, `.` or `,` before the fraction) | `2026-11-22T10:00:09.123Z`, `2026-11-22 10:00:09,123+01:00` |
//! | Go's `log` package | `2026/11/22 10:00:09.123456` |
//! | common log format (nginx, Apache), with or without `[ ]` | `22/Nov/2026:10:00:09 +0000` |
//! | RFC 1123 / RFC 2822 (HTTP dates, mail) | `Sun, 22 Nov 2026 10:00:09 GMT` |
//! | C `asctime` / Go `time.ANSIC` | `Sun Nov 22 10:00:09 2026` |
//! | Unix epoch in s, ms, µs or ns (by magnitude) | `1795341609`, `1795341609.5`, `1795341609123` |
//! | BSD syslog (no year: see [`Parser::year`]) | `Nov 22 10:00:09` |
//!
//! A time written without an offset is taken as UTC unless
//! [`Parser::offset`] says otherwise.
//!
//! Written here rather than with chrono or time: those parse one given
//! format at a time and add tens of KB to every plugin; detecting the form
//! and the civil-date arithmetic (H. Hinnant's days-from-civil algorithm)
//! fit in this file.
use std::fmt;

/// Parse a timestamp into Unix seconds; see the [module](self) for forms.
///
/// ```
/// use weir_sdk::timestamp;
/// assert_eq!(timestamp::parse("1970-01-02T00:00:00Z"), Ok(86_400.0));
/// assert_eq!(timestamp::parse("2026-11-22T10:00:09+01:00"), timestamp::parse("2026-11-22T09:00:09Z"));
/// assert_eq!(timestamp::parse("22/Nov/2026:10:00:09 +0000"), timestamp::parse("2026-11-22T10:00:09Z"));
/// assert_eq!(timestamp::parse("1795341609123"), Ok(1_795_341_609.123));
/// assert!(timestamp::parse("yesterday").is_err());
/// ```
pub fn parse(s: &str) -> Result<f64, Error> {
    Parser::default().parse(s)
}

/// Parsing with defaults for what a timestamp leaves out.
///
/// ```
/// use weir_sdk::timestamp::Parser;
/// let p = Parser { offset: 3600, year: Some(2026) };
/// // Syslog has neither year nor offset.
/// assert_eq!(p.parse("Nov 22 11:00:09"), weir_sdk::timestamp::parse("2026-11-22T10:00:09Z"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parser {
    /// Seconds east of UTC for times written without an offset (0: UTC).
    pub offset: i32,
    /// The year for forms without one (BSD syslog); without it they are
    /// an error.
    pub year: Option<i32>,
}

impl Parser {
    /// Parse `s` into Unix seconds.
    ///
    /// ```
    /// use weir_sdk::timestamp::Parser;
    /// assert!(Parser::default().parse("Nov 22 10:00:09").is_err()); // no year
    /// ```
    pub fn parse(&self, s: &str) -> Result<f64, Error> {
        let t = s
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim();
        let err = |why: &'static str| Error {
            text: s.to_string(),
            why,
        };
        if t.is_empty() {
            return Err(err("empty"));
        }
        if let Some(v) = epoch(t) {
            return Ok(v);
        }
        let mut c = Cursor { s: t, pos: 0 };
        let first = t.as_bytes()[0];
        let (date, rest) = if first.is_ascii_digit() {
            let a = c.digits(1, 4).ok_or(err("unrecognised form"))?;
            match c.peek() {
                Some(b'-') | Some(b'/') if a.1 == 4 => {
                    // YYYY-MM-DD or YYYY/MM/DD
                    let sep = c.next().unwrap_or(b'-');
                    let m = c.number(2).ok_or(err("bad month"))?;
                    c.expect(sep).ok_or(err("bad date"))?;
                    let d = c.number(2).ok_or(err("bad day"))?;
                    ((a.0 as i32, m, d), c.rest())
                }
                Some(b'/') => {
                    // DD/Mon/YYYY:HH:MM:SS (common log format)
                    c.next();
                    let m = c.month().ok_or(err("bad month"))?;
                    c.expect(b'/').ok_or(err("bad date"))?;
                    let y = c.number(4).ok_or(err("bad year"))?;
                    ((y as i32, m, a.0), c.rest())
                }
                Some(b' ') => {
                    // DD Mon YYYY (RFC 2822 without the weekday)
                    c.skip_spaces();
                    let m = c.month().ok_or(err("bad month"))?;
                    c.skip_spaces();
                    let y = c.number(4).ok_or(err("bad year"))?;
                    ((y as i32, m, a.0), c.rest())
                }
                _ => return Err(err("unrecognised form")),
            }
        } else {
            // Weekday or month names first.
            if c.weekday() {
                c.eat(b',');
                c.skip_spaces();
            }
            if let Some(day) = c.digits(1, 2) {
                // RFC 1123: DD Mon YYYY HH:MM:SS
                c.skip_spaces();
                let m = c.month().ok_or(err("bad month"))?;
                c.skip_spaces();
                let y = c.number(4).ok_or(err("bad year"))?;
                ((y as i32, m, day.0), c.rest())
            } else {
                // Mon DD HH:MM:SS [YYYY] (asctime, syslog)
                let m = c.month().ok_or(err("unrecognised form"))?;
                c.skip_spaces();
                let d = c.digits(1, 2).ok_or(err("bad day"))?.0;
                c.skip_spaces();
                let time = c.time().ok_or(err("bad time"))?;
                c.skip_spaces();
                let y = match c.digits(4, 4) {
                    Some((y, _)) => y as i32,
                    None => self.year.ok_or(err("no year in the timestamp"))?,
                };
                let off = c.offset(self.offset).ok_or(err("bad offset"))?;
                if !c.done() {
                    return Err(err("unexpected text after the time"));
                }
                return civil((y, m, d), time, off).ok_or(err("date out of range"));
            }
        };
        let mut c = Cursor { s: rest, pos: 0 };
        if c.done() {
            // A date alone: midnight.
            return civil(date, (0, 0, 0.0), self.offset).ok_or(err("date out of range"));
        }
        if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ') || c.eat(b':')) {
            return Err(err("expected the time after the date"));
        }
        c.skip_spaces();
        let time = c.time().ok_or(err("bad time"))?;
        let off = c.offset(self.offset).ok_or(err("bad offset"))?;
        if !c.done() {
            return Err(err("unexpected text after the time"));
        }
        civil(date, time, off).ok_or(err("date out of range"))
    }
}

/// Unix seconds of a civil UTC date and time: the arithmetic [`parse`]
/// uses, for plugins that read the parts themselves. `None` when a field is
/// out of range (month 13, 31 April, hour 24...).
///
/// ```
/// use weir_sdk::timestamp::unix_seconds;
/// assert_eq!(unix_seconds(1970, 1, 1, 0, 0, 0.0), Some(0.0));
/// assert_eq!(unix_seconds(2000, 3, 1, 0, 0, 0.0), Some(951_868_800.0));
/// assert_eq!(unix_seconds(2026, 2, 29, 0, 0, 0.0), None);
/// ```
pub fn unix_seconds(year: i32, month: u32, day: u32, hour: u32, min: u32, sec: f64) -> Option<f64> {
    civil((year, month, day), (hour, min, sec), 0)
}

fn civil(date: (i32, u32, u32), time: (u32, u32, f64), offset: i32) -> Option<f64> {
    let (y, m, d) = date;
    let (hh, mm, ss) = time;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    // 60 allows a leap second as written.
    if hh > 23 || mm > 59 || !(0.0..61.0).contains(&ss) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    Some(days as f64 * 86_400.0 + f64::from(hh * 3600 + mm * 60) + ss - f64::from(offset))
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's
/// algorithm: eras of 400 years, March-based years).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A number alone: epoch seconds, ms, µs or ns by magnitude.
fn epoch(t: &str) -> Option<f64> {
    if !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') || t.starts_with('.') {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    Some(if v >= 1e17 {
        v / 1e9
    } else if v >= 1e14 {
        v / 1e6
    } else if v >= 1e11 {
        v / 1e3
    } else {
        v
    })
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }
    fn done(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }
    /// Between `min` and `max` digits: (value, digit count).
    fn digits(&mut self, min: usize, max: usize) -> Option<(u32, usize)> {
        let start = self.pos;
        let mut v: u32 = 0;
        while self.pos - start < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    v = v * 10 + u32::from(b - b'0');
                    self.pos += 1;
                }
                _ => break,
            }
        }
        let n = self.pos - start;
        if n < min {
            self.pos = start;
            return None;
        }
        Some((v, n))
    }
    fn number(&mut self, n: usize) -> Option<u32> {
        self.digits(n, n).map(|d| d.0)
    }
    fn word(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.s[start..self.pos].to_ascii_lowercase())
    }
    fn month(&mut self) -> Option<u32> {
        let start = self.pos;
        let w = self.word()?;
        match MONTHS.iter().position(|m| w.len() >= 3 && w.starts_with(m)) {
            Some(i) => Some(i as u32 + 1),
            None => {
                self.pos = start;
                None
            }
        }
    }
    fn weekday(&mut self) -> bool {
        let start = self.pos;
        match self.word() {
            Some(w) if w.len() >= 3 && DAYS.iter().any(|d| w.starts_with(d)) => true,
            _ => {
                self.pos = start;
                false
            }
        }
    }
    /// HH:MM[:SS[.frac]]
    fn time(&mut self) -> Option<(u32, u32, f64)> {
        let h = self.number(2)?;
        self.expect(b':')?;
        let m = self.number(2)?;
        let mut s = 0.0;
        if self.eat(b':') {
            let start = self.pos;
            self.number(2)?;
            if self.peek() == Some(b'.') || self.peek() == Some(b',') {
                self.pos += 1;
                self.digits(1, 12)?;
            }
            s = self.s[start..self.pos].replace(',', ".").parse().ok()?;
        }
        Some((h, m, s))
    }
    /// Z, UTC, GMT, ±HH:MM, ±HHMM, ±HH, or nothing (the default).
    fn offset(&mut self, default: i32) -> Option<i32> {
        self.skip_spaces();
        if self.done() {
            return Some(default);
        }
        if self.eat(b'Z') || self.eat(b'z') {
            return Some(0);
        }
        let r = self.rest();
        for name in ["UTC", "GMT", "UT"] {
            if r.eq_ignore_ascii_case(name) {
                self.pos = self.s.len();
                return Some(0);
            }
        }
        let sign = match self.next()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let h = self.number(2)? as i32;
        self.eat(b':');
        let m = self.digits(2, 2).map_or(0, |d| d.0) as i32;
        if h > 23 || m > 59 {
            return None;
        }
        Some(sign * (h * 3600 + m * 60))
    }
}

/// A text that is not a timestamp of a known form, and why.
///
/// ```
/// let e = weir_sdk::timestamp::parse("2026-13-01T00:00:00Z").unwrap_err();
/// assert_eq!(e.to_string(), "\"2026-13-01T00:00:00Z\" is not a timestamp: date out of range");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    text: String,
    why: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a timestamp: {}", self.text, self.why)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-22T10:00:09Z, computed independently: `date -u -d
    // 2026-11-22T10:00:09Z +%s`.
    const T: f64 = 1_795_341_609.0;

    #[test]
    fn every_documented_form() {
        for s in [
            "2026-11-22T10:00:09Z",
            "2026-11-22T10:00:09.000Z",
            "2026-11-22t10:00:09z",
            "2026-11-22 10:00:09",
            "2026-11-22 10:00:09 UTC",
            "2026-11-22T11:00:09+01:00",
            "2026-11-22T11:00:09+0100",
            "2026-11-22T05:00:09-05",
            "2026/11/22 10:00:09",
            "22/Nov/2026:10:00:09 +0000",
            "[22/Nov/2026:11:00:09 +0100]",
            "Sun, 22 Nov 2026 10:00:09 GMT",
            "22 Nov 2026 10:00:09 +0000",
            "Sun Nov 22 10:00:09 2026",
            "1795341609",
            "1795341609000",
            "1795341609000000",
            "1795341609000000000",
        ] {
            assert_eq!(parse(s), Ok(T), "{s}");
        }
        assert_eq!(parse("2026-11-22 10:00:09,250"), Ok(T + 0.25));
        assert_eq!(parse("2026/11/22 10:00:09.5"), Ok(T + 0.5));
        assert_eq!(parse("2026-11-22"), Ok(T - 36_009.0));
        let p = Parser {
            offset: 0,
            year: Some(2026),
        };
        assert_eq!(p.parse("Nov 22 10:00:09"), Ok(T));
    }

    #[test]
    fn errors() {
        for s in [
            "",
            "2026-11-22T25:00:00Z",
            "2026-02-30",
            "2026-11-22T10:00:09 banana",
            "Nov 22 10:00:09",
            "Foo 22 10:00:09 2026",
            "22/Nov/2026/10:00:09",
            "2026-11-22T10:00:09+25:00",
            "-5",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn dates_far_from_1970() {
        assert_eq!(unix_seconds(1969, 12, 31, 23, 59, 59.0), Some(-1.0));
        assert_eq!(unix_seconds(2400, 2, 29, 0, 0, 0.0), Some(13_574_563_200.0));
    }
}
