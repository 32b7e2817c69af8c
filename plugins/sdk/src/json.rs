//! JSON text as programs really write it.
//!
//! RFC 8259 (section 8.2) lets a string escape a lone UTF-16 surrogate
//! (`"bad\ud800x"`): Go's and Java's encoders write one for a string that
//! was not valid Unicode, JavaScript's `JSON.stringify` for a broken pair.
//! `serde_json` refuses such strings when it decodes them (it has no option
//! to replace them), so a plugin would lose the value or the whole line.
//! [`replace_lone_surrogates`] rewrites each such escape as `\uFFFD`, the
//! replacement character, before parsing: the value is kept, with U+FFFD
//! where the broken character was, as lossy UTF-8 decoding does for bytes.

use std::borrow::Cow;

fn hex4(b: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u16::from_str_radix(s, 16).ok()
}

/// The JSON text with every `\uXXXX` escape of a lone surrogate (a high
/// surrogate D800-DBFF not followed by a `\u` low surrogate, or a low
/// surrogate DC00-DFFF not preceded by a high one) replaced by `\uFFFD`.
/// Borrowed when there is none. Escaped backslashes (`\\ud800`) are text,
/// not escapes, and stay. The replacement has the same length, so byte
/// offsets into the text do not move.
///
/// ```
/// use weir_sdk::json::replace_lone_surrogates;
/// let fixed = replace_lone_surrogates(br#"{"host":"bad\ud800x"}"#);
/// assert_eq!(&*fixed, br#"{"host":"bad\uFFFDx"}"#);
/// ```
pub fn replace_lone_surrogates(text: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(off) = text[i..].iter().position(|&b| b == b'\\') {
        let at = i + off;
        match text.get(at + 1) {
            Some(b'u') => {
                let Some(cp) = hex4(&text[at + 2..]) else {
                    i = at + 2;
                    continue;
                };
                let next = at + 6;
                let lone = match cp {
                    0xD800..=0xDBFF => {
                        let low = text.get(next..next + 2) == Some(b"\\u")
                            && hex4(&text[next + 2..])
                                .is_some_and(|c| (0xDC00..=0xDFFF).contains(&c));
                        if low {
                            // A proper pair: skip both.
                            i = next + 6;
                            continue;
                        }
                        true
                    }
                    0xDC00..=0xDFFF => true,
                    _ => false,
                };
                if lone {
                    out.get_or_insert_with(|| text.to_vec())[at..next].copy_from_slice(b"\\uFFFD");
                }
                i = next;
            }
            // Any other escape, `\\` included, is two bytes.
            Some(_) => i = at + 2,
            None => break,
        }
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(text),
    }
}

/// [`replace_lone_surrogates`] for text known to be UTF-8.
///
/// ```
/// let line = weir_sdk::json::replace_lone_surrogates_str(r#""pair\ud83d\ude00""#);
/// assert_eq!(line, r#""pair\ud83d\ude00""#); // a proper pair stays
/// ```
pub fn replace_lone_surrogates_str(text: &str) -> Cow<'_, str> {
    match replace_lone_surrogates(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        // Only ASCII bytes were replaced by ASCII bytes.
        Cow::Owned(v) => Cow::Owned(
            String::from_utf8(v)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        replace_lone_surrogates_str(s).into_owned()
    }

    #[test]
    fn lone_surrogates_become_the_replacement_character() {
        assert_eq!(r(r#"{"h":"bad\ud800x"}"#), r#"{"h":"bad\uFFFDx"}"#);
        assert_eq!(r(r#"{"h":"bad\uDC00y"}"#), r#"{"h":"bad\uFFFDy"}"#);
        assert_eq!(r(r#""two\ud800\ud800""#), r#""two\uFFFD\uFFFD""#);
        assert_eq!(r(r#""end\udbff""#), r#""end\uFFFD""#);
        assert_eq!(r(r#""\udfff\ud83d\ude00""#), r#""\uFFFD\ud83d\ude00""#);
        assert_eq!(r(r#"{"k\ud800":1}"#), r#"{"k\uFFFD":1}"#);
    }

    #[test]
    fn pairs_escaped_backslashes_and_other_escapes_stay() {
        for s in [
            r#""pair\ud83d\ude00ok""#,
            r#""esc\\ud800""#,
            r#""q\"\n\u00e9\\\\""#,
            r#""short\ud8""#,
            "no escapes at all",
            r#""trailing\"#,
        ] {
            assert!(
                matches!(replace_lone_surrogates_str(s), Cow::Borrowed(_)),
                "{s}"
            );
        }
    }
}
