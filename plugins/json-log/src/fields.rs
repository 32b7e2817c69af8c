//! Reading one line for the fields the rules use, and nothing else.
//!
//! At `init` every field path a rule names is put in a [`Trie`]. A line is
//! then walked once by a serde visitor: keys outside the trie are skipped
//! without allocating (serde_json still checks that the whole line is valid
//! JSON), and a wanted field is kept as the slice of the line that holds it.
//! Strings are unescaped only when they contain a backslash.
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// A field of one line. `null` and absent fields are not fields: their slot
/// is `None`.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// A string, unescaped.
    Str(Cow<'a, str>),
    /// A number, as written in the line.
    Num(&'a str),
    /// `true` or `false`.
    Bool(bool),
    /// An object or an array, as written in the line.
    Compound(&'a str),
}

impl<'a> Field<'a> {
    /// Classify the raw JSON text of a value; `None` for `null`.
    fn from_raw(raw: &'a str) -> Option<Field<'a>> {
        // serde_json hands raw values without surrounding whitespace.
        match raw.as_bytes().first()? {
            b'"' if !raw.contains('\\') => Some(Field::Str(Cow::Borrowed(&raw[1..raw.len() - 1]))),
            // A string that does not decode (serde_json refuses lone
            // surrogates, which the caller replaces first) is present all
            // the same: keep its text as written rather than treat it as absent.
            b'"' => Some(Field::Str(match serde_json::from_str::<String>(raw) {
                Ok(s) => Cow::Owned(s),
                Err(_) => Cow::Borrowed(&raw[1..raw.len() - 1]),
            })),
            b't' => Some(Field::Bool(true)),
            b'f' => Some(Field::Bool(false)),
            b'n' => None,
            b'{' | b'[' => Some(Field::Compound(raw)),
            _ => Some(Field::Num(raw)),
        }
    }

    /// The field as label text: a string's content, a number as written,
    /// `true`/`false`, an object or array as its JSON text.
    pub fn text(&self) -> &str {
        match self {
            Field::Str(s) => s,
            Field::Num(n) | Field::Compound(n) => n,
            Field::Bool(true) => "true",
            Field::Bool(false) => "false",
        }
    }

    /// The field as a number: numbers, numeric strings, booleans as 1/0.
    pub fn number(&self) -> Option<f64> {
        match self {
            Field::Str(s) => s.trim().parse().ok(),
            Field::Num(n) => n.parse().ok(),
            Field::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Field::Compound(_) => None,
        }
    }
}

/// Longest path whose every reading of its dots is indexed (2^(n-1) ways);
/// longer paths are read as nested keys, or as one key with all its dots.
const MAX_SPLIT_SEGMENTS: usize = 8;

#[derive(Default, Debug)]
struct Node {
    /// The field id whose value is this node's value.
    field: Option<usize>,
    children: Vec<Child>,
}

#[derive(Debug)]
struct Child {
    key: Box<str>,
    /// The key read as an array index, when it is all digits.
    index: Option<usize>,
    node: Node,
}

impl Node {
    fn child_mut(&mut self, key: &str) -> &mut Node {
        let pos = match self.children.iter().position(|c| &*c.key == key) {
            Some(p) => p,
            None => {
                let index = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
                    key.parse().ok()
                } else {
                    None
                };
                self.children.push(Child {
                    key: key.into(),
                    index,
                    node: Node::default(),
                });
                self.children.len() - 1
            }
        };
        &mut self.children[pos].node
    }

    /// Index `segs` under every way of grouping them, so that `a.b.c` finds
    /// `{"a":{"b":{"c":..}}}`, `{"a.b":{"c":..}}`, `{"a":{"b.c":..}}` and
    /// `{"a.b.c":..}` alike.
    fn insert(&mut self, segs: &[&str], id: usize) {
        if segs.is_empty() {
            self.field = Some(id);
            return;
        }
        let splits: Vec<usize> = if segs.len() > MAX_SPLIT_SEGMENTS {
            vec![1, segs.len()]
        } else {
            (1..=segs.len()).collect()
        };
        for k in splits {
            let key = segs[..k].join(".");
            self.child_mut(&key).insert(&segs[k..], id);
        }
    }
}

/// The field paths the rules use, each with an id that indexes a line's slots.
#[derive(Default, Debug)]
pub struct Trie {
    root: Node,
    ids: HashMap<String, usize>,
}

/// A line that is not one JSON object.
#[derive(Debug)]
pub struct NotAnObject;

impl Trie {
    /// The id of a field path (`status`, `request.method`, `items.0.id`),
    /// adding it if new.
    pub fn field(&mut self, path: &str) -> Result<usize, String> {
        let path = path.trim();
        if path.is_empty() {
            return Err("empty field name".into());
        }
        if let Some(id) = self.ids.get(path) {
            return Ok(*id);
        }
        let segs: Vec<&str> = path.split('.').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(format!(
                "field \"{path}\" has an empty part (two dots, or a dot at an end)"
            ));
        }
        let id = self.ids.len();
        self.root.insert(&segs, id);
        self.ids.insert(path.to_string(), id);
        Ok(id)
    }

    /// Every field path and its id (logfmt keys are looked up whole).
    pub fn keys(&self) -> &HashMap<String, usize> {
        &self.ids
    }

    /// How many distinct fields there are.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Read a line into `slots` (one per field id). Fails when the line is
    /// not valid JSON or not an object.
    pub fn read<'a>(
        &self,
        line: &'a str,
        slots: &mut Vec<Option<Field<'a>>>,
    ) -> Result<(), NotAnObject> {
        slots.clear();
        slots.resize(self.len(), None);
        if !line.trim_start().starts_with('{') {
            return Err(NotAnObject);
        }
        let mut de = serde_json::Deserializer::from_str(line);
        Level {
            node: &self.root,
            slots,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|_| NotAnObject)
    }
}

/// Walks the children of one trie node over the value at that level.
struct Level<'n, 's, 'a> {
    node: &'n Node,
    slots: &'s mut Vec<Option<Field<'a>>>,
}

/// One wanted value: stored if its node is a field, walked further if its
/// node has children.
struct Wanted<'n, 's, 'a> {
    node: &'n Node,
    slots: &'s mut Vec<Option<Field<'a>>>,
}

/// Finds a map key among a node's children without allocating.
struct Key<'n>(&'n [Child]);

impl<'a> DeserializeSeed<'a> for Level<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> DeserializeSeed<'a> for Wanted<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        let Some(id) = self.node.field else {
            return Level {
                node: self.node,
                slots: self.slots,
            }
            .deserialize(d);
        };
        let raw: &'a RawValue = de::Deserialize::deserialize(d)?;
        let text = raw.get();
        self.slots[id] = Field::from_raw(text);
        if !self.node.children.is_empty() && matches!(text.as_bytes().first(), Some(b'{' | b'[')) {
            // Both this value and fields inside it are wanted: walk its text again.
            let mut inner = serde_json::Deserializer::from_str(text);
            Level {
                node: self.node,
                slots: self.slots,
            }
            .deserialize(&mut inner)
            .map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<Option<usize>, E> {
        // Most keys of a line are not wanted: look at the length and the last
        // byte before comparing whole keys.
        let last = k.as_bytes().last();
        Ok(self.0.iter().position(|c| {
            c.key.len() == k.len() && c.key.as_bytes().last() == last && &*c.key == k
        }))
    }
}

impl<'a> Visitor<'a> for Level<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    // Scalars where an object was expected: nothing inside them is wanted.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<M: MapAccess<'a>>(self, mut map: M) -> Result<(), M::Error> {
        let children = &self.node.children;
        while let Some(found) = map.next_key_seed(Key(children))? {
            match found {
                Some(i) => map.next_value_seed(Wanted {
                    node: &children[i].node,
                    slots: &mut *self.slots,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<S: SeqAccess<'a>>(self, mut seq: S) -> Result<(), S::Error> {
        let children = &self.node.children;
        let mut i = 0usize;
        loop {
            let more = match children.iter().find(|c| c.index == Some(i)) {
                Some(c) => seq
                    .next_element_seed(Wanted {
                        node: &c.node,
                        slots: &mut *self.slots,
                    })?
                    .is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<'a>(t: &Trie, line: &'a str) -> Option<Vec<Option<Field<'a>>>> {
        let mut slots = Vec::new();
        t.read(line, &mut slots).ok().map(|()| slots)
    }

    #[test]
    fn nested_flat_dotted_and_indexed_paths() {
        let mut t = Trie::default();
        let m = t.field("request.method").unwrap();
        let s = t.field("status").unwrap();
        let ua = t.field("request.headers.User-Agent.0").unwrap();
        let lvl = t.field("log.level").unwrap();
        let req = t.field("request").unwrap();
        assert_eq!(t.field(" status ").unwrap(), s);
        let line = r#"{"log.level":"warn","request":{"method":"GET","headers":{"User-Agent":["curl/8","x"]}},"status":404,"other":{"deep":[1,2,{"x":null}]}}"#;
        let f = read(&t, line).unwrap();
        assert_eq!(f[m], Some(Field::Str(Cow::Borrowed("GET"))));
        assert_eq!(f[s].as_ref().map(|v| v.text()), Some("404"));
        assert_eq!(f[s].as_ref().and_then(|v| v.number()), Some(404.0));
        assert_eq!(f[ua].as_ref().map(|v| v.text()), Some("curl/8"));
        assert_eq!(f[lvl].as_ref().map(|v| v.text()), Some("warn"));
        assert!(matches!(f[req], Some(Field::Compound(t)) if t.starts_with("{\"method\"")));
    }

    #[test]
    fn escapes_nulls_and_bad_lines() {
        let mut t = Trie::default();
        let msg = t.field("msg").unwrap();
        let err = t.field("error").unwrap();
        let f = read(&t, r#"{"msg":"a \"quoted\" \u00e9","error":null}"#).unwrap();
        assert_eq!(f[msg].as_ref().map(|v| v.text()), Some("a \"quoted\" é"));
        assert_eq!(f[err], None);
        assert!(read(&t, "not json").is_none());
        assert!(read(&t, "[1,2]").is_none());
        assert!(read(&t, r#"{"msg":"x"} trailing"#).is_none());
        assert!(read(&t, r#"{"msg":"x","#).is_none());
        // Invalid JSON inside a skipped value is still a bad line.
        assert!(read(&t, r#"{"skip":[1,,2],"msg":"x"}"#).is_none());
        assert!(read(&t, "  {\"msg\":1}\r").is_some());
    }

    #[test]
    fn bad_paths() {
        let mut t = Trie::default();
        assert!(t.field("").is_err());
        assert!(t.field("a..b").unwrap_err().contains("empty part"));
        assert!(t.field("a.").is_err());
    }
}
