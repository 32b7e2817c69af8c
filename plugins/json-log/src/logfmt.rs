//! Reading a logfmt line (`level=info msg="HTTP request" status=200
//! took=25.5ms`) into the same field slots as a JSON line, so rules,
//! templates and duration parsing work unchanged.
//!
//! Written here rather than taken from a crate: the logfmt crates on
//! crates.io are unmaintained, allocate every pair, and accept malformed
//! lines silently; this reader borrows from the line, keeps only the keys
//! the rules use, and tells a malformed line apart (it is counted as
//! rejected). The grammar is the one Go's logfmt encoders write:
//!
//! - pairs are separated by spaces (or tabs); a key is any run of
//!   characters other than space, `=` and `"`;
//! - `key=value`: an unquoted value runs to the next space and may hold
//!   `=` (`path=/a?b=c`), not `"`;
//! - `key="quoted value"`: with the escapes `\"`, `\\`, `\/`, `\n`, `\r`,
//!   `\t`, `\b`, `\f` and `\uXXXX` (a lone surrogate becomes U+FFFD);
//! - `key=` is present with an empty value; a bare `key` is present as
//!   `true` (a flag);
//! - a key seen twice keeps its last value.
//!
//! Malformed: an unterminated quote, an unknown escape, a `"` inside a key
//! or an unquoted value, a pair with no key (`=x`), and a line with no
//! `key=value` pair at all (plain text is not logfmt).
use crate::fields::Field;
use std::borrow::Cow;
use std::collections::HashMap;

/// Why a line is not logfmt (for tests and messages).
#[derive(Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A quoted value without its closing quote.
    Unterminated,
    /// A backslash escape that logfmt does not have.
    Escape,
    /// A `"` inside a key or an unquoted value.
    Quote,
    /// `=` with no key before it.
    NoKey,
    /// No `key=value` pair in the line.
    NoPairs,
}

/// Read `line` into `slots`: the field of id `keys[key]` for every key the
/// rules use (others are checked and skipped).
pub fn read<'a>(
    line: &'a str,
    keys: &HashMap<String, usize>,
    slots: &mut [Option<Field<'a>>],
) -> Result<(), Malformed> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut pairs = 0;
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r') {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'=' | b'"') {
            i += 1;
        }
        let key = &line[start..i];
        if i < b.len() && b[i] == b'"' {
            return Err(Malformed::Quote);
        }
        if i == b.len() || b[i] != b'=' {
            // A bare key: a flag.
            if let Some(&id) = keys.get(key) {
                slots[id] = Some(Field::Bool(true));
            }
            continue;
        }
        if key.is_empty() {
            return Err(Malformed::NoKey);
        }
        i += 1;
        pairs += 1;
        let value = if i < b.len() && b[i] == b'"' {
            let (v, end) = quoted(line, i)?;
            i = end;
            if i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\r') {
                // `a="x"y`: text glued to the closing quote.
                return Err(Malformed::Quote);
            }
            v
        } else {
            let vstart = i;
            while i < b.len() && !matches!(b[i], b' ' | b'\t') {
                if b[i] == b'"' {
                    return Err(Malformed::Quote);
                }
                i += 1;
            }
            Cow::Borrowed(line[vstart..i].trim_end_matches('\r'))
        };
        if let Some(&id) = keys.get(key) {
            slots[id] = Some(Field::Str(value));
        }
    }
    if pairs == 0 {
        return Err(Malformed::NoPairs);
    }
    Ok(())
}

/// The quoted value starting at `line[open]` (a `"`), unescaped, and the
/// index after its closing quote.
fn quoted(line: &str, open: usize) -> Result<(Cow<'_, str>, usize), Malformed> {
    let b = line.as_bytes();
    let body = open + 1;
    let mut i = body;
    while i < b.len() && b[i] != b'"' && b[i] != b'\\' {
        i += 1;
    }
    if i == b.len() {
        return Err(Malformed::Unterminated);
    }
    if b[i] == b'"' {
        return Ok((Cow::Borrowed(&line[body..i]), i + 1));
    }
    // Escapes: build the value.
    let mut out = String::with_capacity(i - body + 16);
    out.push_str(&line[body..i]);
    let mut chars = line[i..].char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(out), i + at + 1)),
            '\\' => {
                let (_, e) = chars.next().ok_or(Malformed::Unterminated)?;
                out.push(match e {
                    '"' => '"',
                    '\\' => '\\',
                    '/' => '/',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'u' => {
                        let hi = hex4(&mut chars)?;
                        if (0xD800..0xDC00).contains(&hi) {
                            // A high surrogate: its pair must follow.
                            if let Some(pair) = chars.as_str().strip_prefix("\\u") {
                                let mut look = pair.char_indices();
                                if let Ok(lo) = hex4(&mut look) {
                                    if (0xDC00..0xE000).contains(&lo) {
                                        chars.nth(5);
                                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                        out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                        continue;
                                    }
                                }
                            }
                            '\u{fffd}'
                        } else {
                            char::from_u32(hi).unwrap_or('\u{fffd}')
                        }
                    }
                    _ => return Err(Malformed::Escape),
                });
            }
            c => out.push(c),
        }
    }
    Err(Malformed::Unterminated)
}

fn hex4(chars: &mut std::str::CharIndices<'_>) -> Result<u32, Malformed> {
    let mut v = 0;
    for _ in 0..4 {
        let (_, c) = chars.next().ok_or(Malformed::Escape)?;
        v = v * 16 + c.to_digit(16).ok_or(Malformed::Escape)?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields `names` of `line`, as text (`None`: absent).
    fn fields(line: &str, names: &[&str]) -> Result<Vec<Option<String>>, Malformed> {
        let keys: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i))
            .collect();
        let mut slots = vec![None; names.len()];
        read(line, &keys, &mut slots)?;
        Ok(slots
            .into_iter()
            .map(|f| f.map(|f| f.text().to_string()))
            .collect())
    }

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn quoted_values_escapes_and_unquoted_forms() {
        let line = r#"time=2026-12-03T10:00:00Z level=info msg="HTTP request \"x\" done\n" path=/a?b=c status=200 dur=1.2s"#;
        let got = fields(line, &["msg", "path", "status", "dur", "level"]).expect("valid");
        assert_eq!(
            got,
            some(&["HTTP request \"x\" done\n", "/a?b=c", "200", "1.2s", "info"])
        );
        let got = fields(
            r#"a="tab\tslash\/\\ \u00e9 \ud83d\ude00 \ud800" b="""#,
            &["a", "b"],
        );
        assert_eq!(
            got.expect("valid"),
            some(&["tab\tslash/\\ é 😀 \u{fffd}", ""])
        );
        // Dotted keys are keys as written.
        let got = fields(
            "http.method=GET http.status_code=503\r",
            &["http.method", "http.status_code"],
        );
        assert_eq!(got.expect("valid"), some(&["GET", "503"]));
    }

    #[test]
    fn missing_values_and_repeated_keys() {
        let got = fields("a= b c=3 d=\"\" c=4", &["a", "b", "c", "d", "e"]).expect("valid");
        assert_eq!(
            got,
            vec![
                Some(String::new()),
                Some("true".into()),
                Some("4".into()),
                Some(String::new()),
                None
            ]
        );
    }

    #[test]
    fn malformed_lines() {
        let k = &["a"];
        assert_eq!(fields(r#"a="open"#, k), Err(Malformed::Unterminated));
        assert_eq!(fields(r#"a="x\"#, k), Err(Malformed::Unterminated));
        assert_eq!(fields(r#"a="\q""#, k), Err(Malformed::Escape));
        assert_eq!(fields(r#"a="\u12""#, k), Err(Malformed::Escape));
        assert_eq!(fields(r#"a=x"y"#, k), Err(Malformed::Quote));
        assert_eq!(fields(r#"a="x"y b=1"#, k), Err(Malformed::Quote));
        assert_eq!(fields(r#"k"ey=1"#, k), Err(Malformed::Quote));
        assert_eq!(fields("=x a=1", k), Err(Malformed::NoKey));
        assert_eq!(fields("just some text", k), Err(Malformed::NoPairs));
        assert_eq!(fields("{\"a\":1}", k), Err(Malformed::Quote));
        assert!(fields("  a=1  ", k).is_ok());
    }
}
