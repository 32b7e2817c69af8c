//! A plugin's settings as a typed struct, with errors that name the key.
//!
//! The host hands `init` the pipeline's `[pipeline.NAME.config]` table as
//! JSON. [`parse`] reads it into your own `serde` type; when a value is
//! wrong, the error names the key path the user wrote (`rules[1].regex`),
//! not a line and column of JSON the user never saw. The host turns that
//! path back into the TOML file, line and key, so keep errors in the form
//! `KEY: message` — [`Error::new`] builds them for your own checks.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Deserialize, Debug)]
//! #[serde(deny_unknown_fields)]
//! struct Settings {
//!     prefix: String,
//!     #[serde(default, deserialize_with = "weir_sdk::settings::duration")]
//!     slow: Option<f64>,
//! }
//!
//! let s: Settings = weir_sdk::settings::parse(r#"{"prefix":"shop","slow":"250ms"}"#).unwrap();
//! assert_eq!(s.slow, Some(0.25));
//!
//! let e = weir_sdk::settings::parse::<Settings>(r#"{"prefix":"shop","slow":"soon"}"#).unwrap_err();
//! assert_eq!(e.key(), "slow");
//! let e = weir_sdk::settings::parse::<Settings>(r#"{"prefx":"shop"}"#).unwrap_err();
//! assert_eq!(e.key(), "prefx");
//! assert!(e.to_string().starts_with("prefx: unknown field `prefx`"));
//! ```
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Read settings (JSON text; an empty text is `{}`) into `T`.
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// struct S { #[serde(default)] n: u32 }
/// assert_eq!(weir_sdk::settings::parse::<S>("").unwrap().n, 0);
/// assert_eq!(weir_sdk::settings::parse::<S>(r#"{"n": "x"}"#).unwrap_err().key(), "n");
/// ```
pub fn parse<T: DeserializeOwned>(config: &str) -> Result<T, Error> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let message = strip_position(&e.inner().to_string());
            let mut key = if path == "." || path == "?" {
                String::new()
            } else {
                path
            };
            // Name an unknown key itself (not only its parent) so the user
            // is pointed at the line that holds it.
            if let Some(name) = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .filter(|n| key != *n && !key.ends_with(&format!(".{n}")))
            {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Err(Error { key, message })
        }
    }
}

/// serde_json ends its messages with " at line L column C" of the JSON
/// text: meaningless to a user who wrote TOML.
fn strip_position(m: &str) -> String {
    if let Some(i) = m.rfind(" at line ") {
        let tail = &m[i + " at line ".len()..];
        let mut parts = tail.split(" column ");
        if let (Some(l), Some(c), None) = (parts.next(), parts.next(), parts.next()) {
            if l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit()) {
                return m[..i].to_string();
            }
        }
    }
    m.to_string()
}

/// A settings error at a key path (`rules[0].emit[1].metric`; empty for
/// the settings as a whole). Its text is `KEY: message`, the form the host
/// maps back to the user's TOML line.
///
/// ```
/// use weir_sdk::settings::Error;
/// let e = Error::new("rules[2].regex", "invalid regex: unclosed group");
/// assert_eq!(e.to_string(), "rules[2].regex: invalid regex: unclosed group");
/// // init returns Result<_, String>; `?` converts.
/// fn init() -> Result<(), String> { Err(Error::new("prefix", "must not be empty"))? }
/// assert_eq!(init().unwrap_err(), "prefix: must not be empty");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    key: String,
    message: String,
}

impl Error {
    /// An error at `key` (a path such as `rules[0].regex`, or `""`).
    ///
    /// ```
    /// let e = weir_sdk::settings::Error::new("", "no rules");
    /// assert_eq!(e.to_string(), "settings: no rules");
    /// ```
    pub fn new(key: impl Into<String>, message: impl fmt::Display) -> Self {
        Error {
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// The key path, empty for the settings as a whole.
    ///
    /// ```
    /// assert_eq!(weir_sdk::settings::Error::new("a.b", "x").key(), "a.b");
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong, without the key.
    ///
    /// ```
    /// assert_eq!(weir_sdk::settings::Error::new("a", "bad").message(), "bad");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "settings: {}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

/// For `#[serde(deserialize_with = "weir_sdk::settings::duration")]` on an
/// `Option<f64>` field: a duration text (`"250ms"`, `"1h30m"`, see
/// [`crate::duration`]) or a number of seconds, as seconds.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct S { #[serde(default, deserialize_with = "weir_sdk::settings::duration")] t: Option<f64> }
/// let s: S = weir_sdk::settings::parse(r#"{"t": 1.5}"#).unwrap();
/// assert_eq!(s.t, Some(1.5));
/// ```
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Seconds(f64),
        Text(String),
    }
    match Option::<Text>::deserialize(d)? {
        None => Ok(None),
        Some(Text::Seconds(s)) => Ok(Some(s)),
        Some(Text::Text(t)) => crate::duration::parse(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        regex: String,
        #[serde(default)]
        stop: bool,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        rules: Vec<Rule>,
    }

    #[test]
    fn nested_paths() {
        let e =
            parse::<Cfg>(r#"{"rules":[{"regex":"a"},{"regex":"b","stop":"yes"}]}"#).unwrap_err();
        assert_eq!(e.key(), "rules[1].stop");
        assert!(!e.message().contains("line 1"), "{e}");
        let e = parse::<Cfg>(r#"{"rules":[{"regex":"a","stp":true}]}"#).unwrap_err();
        assert_eq!(e.key(), "rules[0].stp");
        let e = parse::<Cfg>(r#"{"rules":[{}]}"#).unwrap_err();
        assert_eq!(e.key(), "rules[0]");
        assert!(e.message().contains("missing field `regex`"), "{e}");
        let e = parse::<Cfg>("{").unwrap_err();
        assert_eq!(e.key(), "");
    }
}
