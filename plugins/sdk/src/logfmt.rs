//! logfmt and other `key=value` lines.
//!
//! logfmt (the format of Go's logfmt and slog's TextHandler, Heroku's
//! router, Grafana, Loki's own logs) is a sequence of `key=value` pairs
//! separated by spaces, where a value with spaces or `=` is quoted:
//!
//! ```text
//! time=2026-11-22T10:00:00Z level=info msg="Request Completed" path=/api status=200 dur=12.5ms
//! ```
//!
//! [`pairs`] walks such a line without allocating (a quoted value with
//! escapes is the only one copied); [`Record::parse`] checks the whole line
//! and gives lookups by key. [`Syntax`] covers the relatives: `key: value`,
//! `a=1, b=2`, `a=1;b=2`, single quotes.
//!
//! Written here rather than taken from a crate: the Rust logfmt crates
//! allocate a `String` per key and value and know one syntax only; a
//! plugin parses every line of a log, so this one borrows from the line.
use std::borrow::Cow;
use std::fmt;

/// How a `key=value` line is written. [`Syntax::LOGFMT`] is logfmt.
///
/// ```
/// use weir_sdk::logfmt::Syntax;
/// // "user: alice, action: 'log in', ok: true"
/// let s = Syntax { assign: ':', separator: Some(','), single_quotes: true };
/// let pairs: Vec<_> = s.pairs("user: alice, action: 'log in', ok: true").collect();
/// assert_eq!(pairs[1], ("action", "log in".into()));
/// assert_eq!(pairs.len(), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syntax {
    /// Between a key and its value: `=` in logfmt.
    pub assign: char,
    /// Between pairs, besides whitespace: `None` in logfmt (whitespace
    /// only). With a separator, an unquoted value runs up to it and may hold
    /// spaces (trimmed at both ends).
    pub separator: Option<char>,
    /// Whether `'...'` quotes a value as well as `"..."`.
    pub single_quotes: bool,
}

impl Syntax {
    /// logfmt: `key=value key2="quoted value"`, pairs separated by spaces.
    ///
    /// ```
    /// use weir_sdk::logfmt::Syntax;
    /// assert_eq!(Syntax::LOGFMT.get("a=1 b=2", "b").as_deref(), Some("2"));
    /// ```
    pub const LOGFMT: Syntax = Syntax {
        assign: '=',
        separator: None,
        single_quotes: false,
    };

    /// The pairs of `line`, leniently: a malformed piece (an unterminated
    /// quote) ends the walk. Use [`Syntax::parse`] to know whether the
    /// whole line was well formed.
    ///
    /// ```
    /// use weir_sdk::logfmt::Syntax;
    /// let kv = Syntax { assign: '=', separator: Some(';'), single_quotes: false };
    /// let keys: Vec<&str> = kv.pairs("a=1; b=two words ;c").map(|(k, _)| k).collect();
    /// assert_eq!(keys, ["a", "b", "c"]);
    /// ```
    pub fn pairs<'a>(&self, line: &'a str) -> Pairs<'a> {
        Pairs {
            syntax: *self,
            line,
            pos: 0,
            error: None,
        }
    }

    /// The first value of `key` in `line`, unquoted.
    ///
    /// ```
    /// use weir_sdk::logfmt::Syntax;
    /// let line = r#"msg="say \"hi\"" n=1"#;
    /// assert_eq!(Syntax::LOGFMT.get(line, "msg").as_deref(), Some(r#"say "hi""#));
    /// assert_eq!(Syntax::LOGFMT.get(line, "missing"), None);
    /// ```
    pub fn get<'a>(&self, line: &'a str, key: &str) -> Option<Cow<'a, str>> {
        self.pairs(line).find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Every pair of `line`, or the first thing that is not well formed.
    ///
    /// ```
    /// use weir_sdk::logfmt::Syntax;
    /// assert!(Syntax::LOGFMT.parse("a=1 b=\"open").is_err());
    /// assert_eq!(Syntax::LOGFMT.parse("a=1 flag").unwrap().get("flag"), Some(""));
    /// ```
    pub fn parse<'a>(&self, line: &'a str) -> Result<Record<'a>, Error> {
        let mut it = self.pairs(line);
        let pairs: Vec<_> = it.by_ref().collect();
        match it.error {
            Some(e) => Err(e),
            None => Ok(Record { pairs }),
        }
    }
}

/// The pairs of a logfmt line: see [`Syntax::LOGFMT`].
///
/// ```
/// let pairs: Vec<_> = weir_sdk::logfmt::pairs(r#"level=info msg="Request Completed""#).collect();
/// assert_eq!(pairs, [("level", "info".into()), ("msg", "Request Completed".into())]);
/// ```
pub fn pairs(line: &str) -> Pairs<'_> {
    Syntax::LOGFMT.pairs(line)
}

/// The value of `key` in a logfmt line, unquoted.
///
/// ```
/// use weir_sdk::logfmt;
/// let line = r#"level=info msg="Request Completed" status=200"#;
/// assert_eq!(logfmt::get(line, "msg").as_deref(), Some("Request Completed"));
/// assert_eq!(logfmt::get(line, "status").as_deref(), Some("200"));
/// ```
pub fn get<'a>(line: &'a str, key: &str) -> Option<Cow<'a, str>> {
    Syntax::LOGFMT.get(line, key)
}

/// A whole logfmt line, checked: see [`Syntax::parse`].
///
/// ```
/// let r = weir_sdk::logfmt::parse("status=200 path=/api").unwrap();
/// assert_eq!(r.get("path"), Some("/api"));
/// ```
pub fn parse(line: &str) -> Result<Record<'_>, Error> {
    Syntax::LOGFMT.parse(line)
}

/// Iterator over `(key, value)`; see [`Syntax::pairs`]. A key written
/// without a value (`flag`) yields an empty value.
///
/// ```
/// let mut p = weir_sdk::logfmt::pairs("debug path=/x");
/// assert_eq!(p.next(), Some(("debug", "".into())));
/// assert_eq!(p.next(), Some(("path", "/x".into())));
/// assert_eq!(p.next(), None);
/// ```
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    syntax: Syntax,
    line: &'a str,
    pos: usize,
    error: Option<Error>,
}

impl<'a> Pairs<'a> {
    /// What ended the walk early, if something did.
    ///
    /// ```
    /// let mut p = weir_sdk::logfmt::pairs("a=1 b=\"x");
    /// assert_eq!(p.by_ref().count(), 1);
    /// assert!(p.error().is_some());
    /// ```
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    fn is_sep(&self, c: char) -> bool {
        c.is_whitespace() || Some(c) == self.syntax.separator
    }

    fn is_quote(&self, c: char) -> bool {
        c == '"' || (c == '\'' && self.syntax.single_quotes)
    }

    fn fail(&mut self, offset: usize, what: ErrorKind) -> Option<(&'a str, Cow<'a, str>)> {
        self.error = Some(Error { offset, kind: what });
        self.pos = self.line.len();
        None
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.line;
        let bytes_after = |p: usize| line[p..].char_indices().map(move |(i, c)| (p + i, c));
        // Skip separators.
        let start = bytes_after(self.pos).find(|&(_, c)| !self.is_sep(c))?.0;
        // The key runs to the assign sign or a separator.
        let mut end = line.len();
        for (i, c) in bytes_after(start) {
            if c == self.syntax.assign || self.is_sep(c) {
                end = i;
                break;
            }
            if self.is_quote(c) {
                return self.fail(i, ErrorKind::QuoteInKey);
            }
        }
        let key = &line[start..end];
        if key.is_empty() {
            // A value without a key: `=x`.
            return self.fail(start, ErrorKind::EmptyKey);
        }
        // With a separator, spaces may stand between key and `=`.
        let mut p = end;
        if self.syntax.separator.is_some() || self.syntax.assign != '=' {
            p = bytes_after(p)
                .find(|&(_, c)| !(c.is_whitespace() && c != '\n'))
                .map_or(line.len(), |(i, _)| i);
        }
        if !line[p..].starts_with(self.syntax.assign) {
            self.pos = end;
            return Some((key, Cow::Borrowed("")));
        }
        p += self.syntax.assign.len_utf8();
        if self.syntax.separator.is_some() || self.syntax.assign != '=' {
            p = bytes_after(p)
                .find(|&(_, c)| !c.is_whitespace())
                .map_or(line.len(), |(i, _)| i);
        }
        match line[p..].chars().next() {
            Some(q) if self.is_quote(q) => match unquote(&line[p + 1..], q) {
                Some((v, used)) => {
                    self.pos = p + 1 + used;
                    Some((key, v))
                }
                None => self.fail(p, ErrorKind::UnterminatedQuote),
            },
            _ => {
                let vend = bytes_after(p)
                    .find(|&(_, c)| match self.syntax.separator {
                        Some(s) => c == s,
                        None => c.is_whitespace(),
                    })
                    .map_or(line.len(), |(i, _)| i);
                self.pos = vend;
                Some((key, Cow::Borrowed(line[p..vend].trim_end())))
            }
        }
    }
}

/// The quoted text at the start of `s` (after the opening quote `q`), with
/// the bytes used including the closing quote. Escapes: `\"`, `\'`, `\\`,
/// `\n`, `\r`, `\t`, `\uXXXX`; any other `\x` stays as written.
fn unquote(s: &str, q: char) -> Option<(Cow<'_, str>, usize)> {
    let mut owned: Option<String> = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == q {
            let v = match owned {
                Some(o) => Cow::Owned(o),
                None => Cow::Borrowed(&s[..i]),
            };
            return Some((v, i + 1));
        }
        if c == '\\' {
            let o = owned.get_or_insert_with(|| s[..i].to_string());
            match chars.next() {
                Some((_, 'n')) => o.push('\n'),
                Some((_, 'r')) => o.push('\r'),
                Some((_, 't')) => o.push('\t'),
                Some((j, 'u')) => {
                    let hex = s.get(j + 1..j + 5);
                    match hex
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32)
                    {
                        Some(ch) => {
                            o.push(ch);
                            for _ in 0..4 {
                                chars.next();
                            }
                        }
                        None => o.push_str("\\u"),
                    }
                }
                Some((_, e)) if e == q || e == '\\' => o.push(e),
                Some((_, e)) => {
                    o.push('\\');
                    o.push(e);
                }
                None => return None,
            }
        } else if let Some(o) = owned.as_mut() {
            o.push(c);
        }
    }
    None
}

/// A checked line: its pairs in order, looked up by key.
///
/// ```
/// let r = weir_sdk::logfmt::parse(r#"a=1 b="x y" a=2"#).unwrap();
/// assert_eq!(r.get("a"), Some("1")); // the first of a repeated key
/// assert_eq!(r.len(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record<'a> {
    pairs: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> Record<'a> {
    /// Parse a logfmt line: [`parse`].
    ///
    /// ```
    /// use weir_sdk::logfmt::Record;
    /// assert_eq!(Record::parse("k=v").unwrap().get("k"), Some("v"));
    /// ```
    pub fn parse(line: &'a str) -> Result<Self, Error> {
        parse(line)
    }

    /// The first value of `key`.
    ///
    /// ```
    /// let r = weir_sdk::logfmt::parse("status=200").unwrap();
    /// assert_eq!(r.get("status"), Some("200"));
    /// assert_eq!(r.get("route"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The value of `key` parsed as a number.
    ///
    /// ```
    /// let r = weir_sdk::logfmt::parse("bytes=512 ms=abc").unwrap();
    /// assert_eq!(r.number("bytes"), Some(512.0));
    /// assert_eq!(r.number("ms"), None);
    /// ```
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key)?.trim().parse().ok()
    }

    /// The pairs in the order written.
    ///
    /// ```
    /// let r = weir_sdk::logfmt::parse("a=1 b=2").unwrap();
    /// let keys: Vec<&str> = r.iter().map(|(k, _)| k).collect();
    /// assert_eq!(keys, ["a", "b"]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (*k, v.as_ref()))
    }

    /// How many pairs.
    ///
    /// ```
    /// assert_eq!(weir_sdk::logfmt::parse("").unwrap().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the line had no pairs.
    ///
    /// ```
    /// assert!(weir_sdk::logfmt::parse("   ").unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Why a line is not well formed, and where (byte offset).
///
/// ```
/// let e = weir_sdk::logfmt::parse(r#"msg="unterminated"#).unwrap_err();
/// assert_eq!(e.offset(), 4);
/// assert_eq!(e.to_string(), "unterminated quoted value at byte 4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    offset: usize,
    kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    UnterminatedQuote,
    QuoteInKey,
    EmptyKey,
}

impl Error {
    /// Byte offset in the line where the problem starts.
    ///
    /// ```
    /// assert_eq!(weir_sdk::logfmt::parse("a=1 =2").unwrap_err().offset(), 4);
    /// ```
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ErrorKind::UnterminatedQuote => "unterminated quoted value",
            ErrorKind::QuoteInKey => "quote inside a key",
            ErrorKind::EmptyKey => "value without a key",
        };
        write!(f, "{what} at byte {}", self.offset)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(line: &str) -> Vec<(String, String)> {
        pairs(line)
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect()
    }

    #[test]
    fn quoted_values_with_spaces_and_escapes() {
        let line = r#"time=2026-11-22T10:00:00Z level=info msg="Request Completed" err="said \"no\"\n" path=/a?x=1"#;
        let p = all(line);
        assert_eq!(p[2], ("msg".into(), "Request Completed".into()));
        assert_eq!(p[3], ("err".into(), "said \"no\"\n".into()));
        assert_eq!(p[4], ("path".into(), "/a?x=1".into()));
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn empty_and_bare_values() {
        assert_eq!(
            all(r#"a= b="" c"#),
            vec![
                ("a".into(), "".into()),
                ("b".into(), "".into()),
                ("c".into(), "".into())
            ]
        );
    }

    #[test]
    fn unicode_escape_and_multibyte() {
        assert_eq!(get(r#"m="caf\u00e9 ☕""#, "m").as_deref(), Some("café ☕"));
        assert_eq!(get("ü=ö x=1", "ü").as_deref(), Some("ö"));
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [r#"a="x"#, r#"a"b=1"#, "=1", r#"a="\"#] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // Lenient walk stops at the bad piece and keeps what came before.
        assert_eq!(all(r#"ok=1 bad="x"#).len(), 1);
    }

    #[test]
    fn other_syntaxes() {
        let s = Syntax {
            assign: ':',
            separator: Some(','),
            single_quotes: true,
        };
        let r = s.parse("user : alice , note: 'a, b', n:3").expect("parses");
        assert_eq!(r.get("user"), Some("alice"));
        assert_eq!(r.get("note"), Some("a, b"));
        assert_eq!(r.number("n"), Some(3.0));
    }
}
