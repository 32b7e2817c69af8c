//! Plugin settings errors at the user's TOML line.
//!
//! The host hands a plugin its `[pipeline.NAME.config]` table as JSON, so a
//! plugin can only name a key path (`rules[1].regex`), as the SDK's
//! `settings` module does (`KEY: message`). This maps that path back to
//! the line of the pipeline file where the user wrote the key, reading the
//! file again with spans kept (toml's `DeTable`).
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `rules[0].emit[1].metric` as steps; `None` if it is not a key path.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        let key_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !key_ok {
            return None;
        }
        out.push(Step::Key(name));
        while !rest.is_empty() {
            let end = rest.find(']')?;
            out.push(Step::Index(rest.get(1..end)?.parse().ok()?));
            rest = &rest[end + 1..];
            if !(rest.is_empty() || rest.starts_with('[')) {
                return None;
            }
        }
    }
    Some(out)
}

/// The key path a plugin's error message names at its start, if any:
///
/// - `KEY: ...` (the SDK's `settings` errors): `rules[1].regex`;
/// - `settings: ...`: the settings as a whole (`""`);
/// - serde_json's own errors behind `invalid settings: `: the unknown
///   field it names, else the whole;
/// - older forms naming entries by index (`rule "x" (rules[0]) emit[1]:`,
///   `metrics[2] "name":`): those entries, joined (`rules[0].emit[1]`).
pub fn error_key(message: &str) -> Option<String> {
    let (head, rest) = message.split_once(": ")?;
    if head == "settings" {
        return Some(String::new());
    }
    if head == "invalid settings" {
        let field = rest
            .split_once("unknown field `")
            .and_then(|(_, r)| r.split('`').next())
            .filter(|f| steps(f).is_some());
        return Some(field.unwrap_or("").to_string());
    }
    if steps(head).is_some() {
        return Some(head.to_string());
    }
    let indexed: Vec<&str> = head
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| t.ends_with(']') && t.contains('[') && steps(t).is_some())
        .collect();
    (!indexed.is_empty()).then(|| indexed.join("."))
}

/// serde_json ends its messages with " at line L column C" of the JSON the
/// host made: meaningless to a user who wrote TOML.
fn strip_json_position(m: &str) -> &str {
    if let Some(i) = m.rfind(" at line ") {
        let tail = &m[i + " at line ".len()..];
        let mut parts = tail.split(" column ");
        if let (Some(l), Some(c), None) = (parts.next(), parts.next(), parts.next()) {
            if !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_digit())
                && !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
            {
                return &m[..i];
            }
        }
    }
    m
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The line of `text` (a config file) where the dotted table path `keys`
/// (`["pipeline", "app", "multiline", "start"]`) is written: the deepest
/// key found. `None` when the text does not parse or the first key is not
/// there.
pub fn key_line(text: &str, keys: &[&str]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut at = None;
    for k in keys {
        let Some((key, value)) = table.iter().find(|(n, _)| n.get_ref().as_ref() == *k) else {
            break;
        };
        at = Some(key.span().start);
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    at.map(|a| line_of(text, a))
}

/// The line of `file` where `pipeline.NAME.config.PATH` is written: the
/// deepest part of the path found (an unknown last key points at its
/// table). `None` when the file cannot be read or has no such table.
pub fn setting_line(file: &Path, pipeline: &str, path: &str) -> Option<usize> {
    fn get<'a, 'i>(t: &'a DeTable<'i>, key: &str) -> Option<(usize, &'a DeValue<'i>)> {
        t.iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, v)| (k.span().start, v.get_ref()))
    }
    let text = std::fs::read_to_string(file).ok()?;
    let root = DeTable::parse(&text).ok()?;
    let (_, p) = get(root.get_ref(), "pipeline")?;
    let DeValue::Table(p) = p else { return None };
    let (_, n) = get(p, pipeline)?;
    let DeValue::Table(n) = n else { return None };
    let (mut at, mut value) = get(n, "config")?;
    let steps = if path.is_empty() {
        Vec::new()
    } else {
        steps(path)?
    };
    for s in steps {
        let next = match (value, s) {
            (DeValue::Table(t), Step::Key(k)) => get(t, k),
            (DeValue::Array(a), Step::Index(i)) => a
                .get(i)
                .map(|v: &Spanned<DeValue<'_>>| (v.span().start, v.get_ref())),
            _ => None,
        };
        match next {
            Some((a, v)) => {
                at = a;
                value = v;
            }
            None => break,
        }
    }
    Some(line_of(&text, at))
}

/// The settings key behind a host's error about a declared family
/// (`family "NAME": buckets must be ...`, from the store's checks, which
/// cannot name the plugin's settings): the entry of the pipeline's
/// `config` whose `name` is NAME (`metrics[2]`, where every SDK-based
/// plugin declares families), narrowed to the key the message is about
/// (`metrics[2].buckets`) when that key is written there.
fn family_key(file: &Path, pipeline: &str, message: &str) -> Option<String> {
    let (_, rest) = message.split_once("family \"")?;
    let (family, why) = rest.split_once("\": ")?;
    let text = std::fs::read_to_string(file).ok()?;
    let root = DeTable::parse(&text).ok()?;
    let config =
        ["pipeline", pipeline, "config"]
            .iter()
            .try_fold(root.get_ref(), |t, k| {
                match t
                    .iter()
                    .find(|(n, _)| n.get_ref().as_ref() == *k)?
                    .1
                    .get_ref()
                {
                    DeValue::Table(t) => Some(t),
                    _ => None,
                }
            })?;
    fn find(t: &DeTable<'_>, family: &str, at: &str) -> Option<(String, Vec<String>)> {
        let named = t.iter().any(|(k, v)| {
            k.get_ref().as_ref() == "name"
                && matches!(v.get_ref(), DeValue::String(s) if s.as_ref() == family)
        });
        if named {
            let keys = t.iter().map(|(k, _)| k.get_ref().to_string()).collect();
            return Some((at.to_string(), keys));
        }
        for (k, v) in t.iter() {
            let path = if at.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{at}.{}", k.get_ref())
            };
            let found = match v.get_ref() {
                DeValue::Table(inner) => find(inner, family, &path),
                DeValue::Array(a) => a.iter().enumerate().find_map(|(i, e)| match e.get_ref() {
                    DeValue::Table(inner) => find(inner, family, &format!("{path}[{i}]")),
                    _ => None,
                }),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
    }
    let (path, keys) = find(config, family, "")?;
    // The key each of the store's family checks is about.
    let about = [
        ("buckets", "buckets"),
        ("only histograms have buckets", "buckets"),
        ("unit", "unit"),
        ("help", "help"),
        ("a counter's name", "name"),
        ("invalid label name", "labels"),
        ("label", "labels"),
        ("\"le\"", "labels"),
        ("\"quantile\"", "labels"),
    ]
    .iter()
    .find(|(start, key)| why.starts_with(start) && keys.iter().any(|k| k == key))
    .map(|(_, key)| *key);
    Some(match about {
        Some(k) if path.is_empty() => k.to_string(),
        Some(k) => format!("{path}.{k}"),
        None => path,
    })
}

/// An error of pipeline `spec` as the user should see it: `FILE:LINE: `
/// first, where LINE is the line of the settings key the plugin's message
/// names (after `init failed: `), else the pipeline's table; the full key
/// is named too (`key pipeline.web.config.rules[1].regex: ...`).
pub fn at_pipeline(spec: &super::PipelineSpec, message: &str) -> String {
    let file = spec.file.display();
    let message = strip_json_position(message);
    let key = message
        .split_once("init failed: ")
        .and_then(|(_, rest)| error_key(rest))
        .or_else(|| family_key(&spec.file, &spec.name, message));
    if let Some(k) = key.as_deref() {
        if let Some(line) = setting_line(&spec.file, &spec.name, k) {
            let full = if k.is_empty() {
                format!("pipeline.{}.config", spec.name)
            } else {
                format!("pipeline.{}.config.{k}", spec.name)
            };
            return format!("{file}:{line}: key {full}: {message}");
        }
    }
    format!("{file}:{}: {message}", spec.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths() {
        let k = |m: &str| error_key(m);
        assert_eq!(
            k("rules[1].regex: invalid regex").as_deref(),
            Some("rules[1].regex")
        );
        assert_eq!(k("settings: no rules").as_deref(), Some(""));
        assert_eq!(k("no rules: add one"), None);
        assert_eq!(k("plugin x: init failed"), None);
        assert_eq!(
            k("rule \"r2\" (rules[1]) emit[0]: no label").as_deref(),
            Some("rules[1].emit[0]")
        );
        assert_eq!(
            k("metrics[2] \"a\": unknown type").as_deref(),
            Some("metrics[2]")
        );
        assert_eq!(
            k("invalid settings: unknown field `bogus`, expected one of `a`").as_deref(),
            Some("bogus")
        );
        assert_eq!(
            strip_json_position("invalid settings: expected , at line 1 column 17"),
            "invalid settings: expected ,"
        );
        assert!(steps("a[0][1].b").is_some());
        assert!(steps("a[x]").is_none());
    }

    #[test]
    fn lines_of_keys_in_tables_arrays_and_inline_tables() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = tmp.path().join("p.toml");
        std::fs::write(
            &f,
            "[pipeline.web]\nplugin = \"regex-log\"\n\
             [pipeline.web.config]\nprefix = \"x\"\n\
             metrics = [\n  { name = \"a\", type = \"counter\" },\n  { name = \"b\",\n    type = \"meter\" },\n]\n\
             [[pipeline.web.config.rules]]\nregex = \"a\"\n\
             [[pipeline.web.config.rules]]\nname = \"second\"\nregex = \"(\"\n",
        )
        .expect("write");
        assert_eq!(setting_line(&f, "web", "prefix"), Some(4));
        assert_eq!(setting_line(&f, "web", "metrics[1].type"), Some(8));
        assert_eq!(setting_line(&f, "web", "rules[1].regex"), Some(14));
        // An unknown key: the deepest part that exists.
        assert_eq!(setting_line(&f, "web", "rules[0].nope"), Some(10));
        assert_eq!(setting_line(&f, "web", ""), Some(3));
        assert_eq!(setting_line(&f, "other", "prefix"), None);
    }
}
