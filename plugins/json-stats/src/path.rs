//! Paths into a JSON document, references relative to what a path matched,
//! and filters. The syntax is described in the crate documentation.
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;

/// One step of a path.
#[derive(Debug)]
enum Step {
    /// An object key; on an array, the index it spells.
    Key { key: String, index: Option<usize> },
    /// Every member of an object, every element of an array.
    Wild,
    /// The members or elements for which every condition holds.
    Filter(Vec<Cond>),
}

/// A compiled path: `database.idle_conns`, `backends.*.state`,
/// `servers[?state == "up"]`.
#[derive(Debug)]
pub struct Path {
    steps: Vec<Step>,
}

/// Where a reference starts.
#[derive(Debug, Clone, Copy)]
pub enum Base {
    /// The matched value (`@`, or nothing).
    Match,
    /// The document (`$`).
    Root,
    /// That many steps above the matched value (`^`, `^^`, ...).
    Up(usize),
}

/// One step of a reference to a value.
#[derive(Debug)]
pub enum Seg {
    /// An object key; on an array, the index it spells.
    Key(String, Option<usize>),
    /// The first member or element for which every condition holds.
    Filter(Vec<Cond>),
}

/// A reference from a matched value: to a value near it, or to a key a
/// wildcard or filter went through.
#[derive(Debug)]
pub enum Ref {
    /// A value: a base, then keys, indexes or filters.
    Value { base: Base, segs: Vec<Seg> },
    /// The key or index taken by a wildcard or filter step: `None` for the
    /// last one (`*`), else by position (`*1` is `Some(0)`).
    Capture(Option<usize>),
}

/// A literal of a condition.
#[derive(Debug)]
pub enum Lit {
    Text(String),
    Num(f64),
}

/// A comparison.
#[derive(Debug, Clone, Copy)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// A condition of a filter.
#[derive(Debug)]
pub enum Cond {
    Exists(Ref),
    Eq { r: Ref, lit: Lit, negate: bool },
    Re { r: Ref, re: Regex, negate: bool },
    Cmp { r: Ref, op: CmpOp, n: f64 },
}

/// One level of a match: the value, and how it was reached.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    value: &'a Value,
    key: Option<KeyRef<'a>>,
    captured: bool,
}

#[derive(Debug, Clone, Copy)]
enum KeyRef<'a> {
    Name(&'a str),
    Index(usize),
}

/// What a reference found.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// A value of the document (never `null`: that is not found).
    Value(&'a Value),
    /// A key of an object.
    Key(&'a str),
    /// An index into an array.
    Index(usize),
}

/// A value as a number, or why not.
pub enum Number {
    /// A finite or infinite number; the caller checks finiteness.
    Ok(f64),
    /// A string that is neither numeric nor in the value map, an object,
    /// an array.
    Bad,
}

impl<'a> Found<'a> {
    /// The text a label takes: a string's content, a number or boolean as
    /// JSON writes it, an object or array as compact JSON, a key, an index.
    pub fn text(&self) -> Cow<'a, str> {
        match *self {
            Found::Value(Value::String(s)) => Cow::Borrowed(s),
            Found::Value(Value::Bool(true)) => Cow::Borrowed("true"),
            Found::Value(Value::Bool(false)) => Cow::Borrowed("false"),
            Found::Value(v) => Cow::Owned(v.to_string()),
            Found::Key(k) => Cow::Borrowed(k),
            Found::Index(i) => Cow::Owned(i.to_string()),
        }
    }

    /// The value as a number: numbers, booleans as 1/0, strings through
    /// `map` first and then as numeric text.
    pub fn number(&self, map: &HashMap<String, f64>) -> Number {
        let text = match *self {
            Found::Value(Value::Number(n)) => return n.as_f64().map_or(Number::Bad, Number::Ok),
            Found::Value(Value::Bool(b)) => return Number::Ok(if *b { 1.0 } else { 0.0 }),
            Found::Value(Value::String(s)) => s.as_str(),
            Found::Value(_) => return Number::Bad,
            Found::Key(k) => k,
            Found::Index(i) => return Number::Ok(i as f64),
        };
        if let Some(v) = map.get(text) {
            return Number::Ok(*v);
        }
        text.trim().parse().map_or(Number::Bad, Number::Ok)
    }
}

impl Ref {
    /// Parse a reference: `name`, `a.b[0]`, `@`, `@.a`, `$.a`, `^.a`, `^^`,
    /// `*`, `*2`, `^[?name == "x"].value`.
    pub fn parse(src: &str) -> Result<Ref, String> {
        let s = src.trim();
        if let Some(n) = s.strip_prefix('*') {
            if n.is_empty() {
                return Ok(Ref::Capture(None));
            }
            return match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Ref::Capture(Some(n - 1))),
                _ => Err(format!(
                    "\"{s}\": a wildcard key is \"*\" (the last) or \"*1\", \"*2\"... (by position)"
                )),
            };
        }
        let (base, rest) = if let Some(r) = s.strip_prefix('@') {
            (Base::Match, r)
        } else if let Some(r) = s.strip_prefix('$') {
            (Base::Root, r)
        } else if s.starts_with('^') {
            let r = s.trim_start_matches('^');
            (Base::Up(s.len() - r.len()), r)
        } else if s.is_empty() {
            return Err("empty reference".into());
        } else {
            (Base::Match, s)
        };
        let steps = parse_steps(rest.strip_prefix('.').unwrap_or(rest))
            .map_err(|e| format!("\"{s}\": {e}"))?;
        let segs = steps
            .into_iter()
            .map(|st| match st {
                Step::Key { key, index } => Ok(Seg::Key(key, index)),
                Step::Filter(conds) => Ok(Seg::Filter(conds)),
                Step::Wild => Err(format!(
                    "\"{s}\": a reference names one value: no \"*\" in it (a filter takes the first match)"
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Ref::Value { base, segs })
    }

    /// Check that the reference fits a match `depth` steps below the
    /// document, reached through `captures` wildcards and filters.
    pub fn check(&self, depth: usize, captures: usize) -> Result<(), String> {
        match self {
            Ref::Capture(None) if captures == 0 => {
                Err("\"*\" names the key taken by a wildcard or filter, and the path has none".into())
            }
            Ref::Capture(Some(i)) if *i >= captures => Err(format!(
                "\"*{}\": the path has only {captures} wildcard or filter step(s) before this point",
                i + 1
            )),
            Ref::Value {
                base: Base::Up(n), ..
            } if *n > depth => Err(format!(
                "\"{}\" goes above the document: the match is only {depth} step(s) deep",
                "^".repeat(*n)
            )),
            Ref::Value { base, segs } => {
                // Conditions of a filter stand on its candidate.
                let mut at = match base {
                    Base::Match => depth,
                    Base::Root => 0,
                    Base::Up(n) => depth - n,
                };
                let mut caps = captures;
                for seg in segs {
                    at += 1;
                    if let Seg::Filter(conds) = seg {
                        caps += 1;
                        for c in conds {
                            c.check(at, caps)?;
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Resolve against a match; `None` when absent or `null`.
    pub fn resolve<'a>(&self, chain: &[Frame<'a>]) -> Option<Found<'a>> {
        match self {
            Ref::Capture(i) => {
                let mut caps = chain.iter().filter(|f| f.captured);
                let f = match i {
                    None => caps.next_back(),
                    Some(i) => caps.nth(*i),
                }?;
                match f.key? {
                    KeyRef::Name(k) => Some(Found::Key(k)),
                    KeyRef::Index(i) => Some(Found::Index(i)),
                }
            }
            Ref::Value { base, segs } => {
                let start = match base {
                    Base::Match => chain.len().checked_sub(1)?,
                    Base::Root => 0,
                    Base::Up(n) => chain.len().checked_sub(1 + n)?,
                };
                if segs.iter().any(|s| matches!(s, Seg::Filter(_))) {
                    return resolve_with_filters(chain.get(..=start)?, segs);
                }
                let mut v = chain.get(start)?.value;
                for seg in segs {
                    let Seg::Key(key, index) = seg else {
                        return None;
                    };
                    v = match v {
                        Value::Object(m) => m.get(key)?,
                        Value::Array(a) => a.get((*index)?)?,
                        _ => return None,
                    };
                }
                (!v.is_null()).then_some(Found::Value(v))
            }
        }
    }
}

/// Resolve `segs` from the end of `chain`, which grows as the steps go
/// down, so that the conditions of a filter see their candidate as a match
/// and its parents above it.
fn resolve_with_filters<'a>(chain: &[Frame<'a>], segs: &[Seg]) -> Option<Found<'a>> {
    let mut sub: Vec<Frame<'a>> = chain.to_vec();
    for seg in segs {
        let cur = sub.last()?.value;
        match seg {
            Seg::Key(key, index) => {
                let (key, value) = match cur {
                    Value::Object(m) => {
                        let (k, v) = m.get_key_value(key.as_str())?;
                        (KeyRef::Name(k), v)
                    }
                    Value::Array(a) => {
                        let i = (*index)?;
                        (KeyRef::Index(i), a.get(i)?)
                    }
                    _ => return None,
                };
                sub.push(Frame {
                    value,
                    key: Some(key),
                    captured: false,
                });
            }
            Seg::Filter(conds) => {
                let candidates: Box<dyn Iterator<Item = (KeyRef<'a>, &'a Value)>> = match cur {
                    Value::Object(m) => Box::new(m.iter().map(|(k, v)| (KeyRef::Name(k), v))),
                    Value::Array(a) => {
                        Box::new(a.iter().enumerate().map(|(i, v)| (KeyRef::Index(i), v)))
                    }
                    _ => return None,
                };
                let mut found = false;
                for (key, value) in candidates {
                    sub.push(Frame {
                        value,
                        key: Some(key),
                        captured: true,
                    });
                    if conds.iter().all(|c| c.holds(&sub)) {
                        found = true;
                        break;
                    }
                    sub.pop();
                }
                if !found {
                    return None;
                }
            }
        }
    }
    let v = sub.last()?.value;
    (!v.is_null()).then_some(Found::Value(v))
}

/// The first of `pats` in `s` outside quotes and brackets: its byte index
/// and which one.
pub fn find_top<'p>(s: &str, pats: &[&'p str]) -> Result<Option<(usize, &'p str)>, String> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' if depth > 0 => {
                i = quoted_end(s, i)?;
                continue;
            }
            b'[' => depth += 1,
            b']' => depth -= 1,
            _ if depth == 0 => {
                if let Some(p) = pats.iter().find(|p| b[i..].starts_with(p.as_bytes())) {
                    return Ok(Some((i, p)));
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(None)
}

impl Cond {
    fn holds(&self, chain: &[Frame<'_>]) -> bool {
        let no_map = HashMap::new();
        let num = |r: &Ref| match r.resolve(chain).map(|f| f.number(&no_map)) {
            Some(Number::Ok(v)) => Some(v),
            _ => None,
        };
        match self {
            Cond::Exists(r) => r.resolve(chain).is_some(),
            Cond::Eq { r, lit, negate } => {
                let eq = match lit {
                    Lit::Text(t) => r.resolve(chain).is_some_and(|f| f.text() == t.as_str()),
                    Lit::Num(n) => num(r) == Some(*n),
                };
                eq != *negate
            }
            Cond::Re { r, re, negate } => {
                r.resolve(chain).is_some_and(|f| re.is_match(&f.text())) != *negate
            }
            Cond::Cmp { r, op, n } => num(r).is_some_and(|v| match op {
                CmpOp::Lt => v < *n,
                CmpOp::Le => v <= *n,
                CmpOp::Gt => v > *n,
                CmpOp::Ge => v >= *n,
            }),
        }
    }

    fn check(&self, depth: usize, captures: usize) -> Result<(), String> {
        match self {
            Cond::Exists(r) | Cond::Eq { r, .. } | Cond::Re { r, .. } | Cond::Cmp { r, .. } => {
                r.check(depth, captures)
            }
        }
    }
}

impl Path {
    /// Parse a path: `a.b`, `$.a.b`, `a[0]`, `a.*`, `a[*]`, `a["x.y"]`,
    /// `a[?cond && cond]`. `$`, `@` and the empty path are the document.
    pub fn parse(src: &str) -> Result<Path, String> {
        let s = src.trim();
        let rest = s
            .strip_prefix('$')
            .or_else(|| s.strip_prefix('@'))
            .map(|r| r.strip_prefix('.').unwrap_or(r))
            .unwrap_or(s);
        let steps = parse_steps(rest)?;
        let path = Path { steps };
        // Check the references in filters against where they stand.
        let mut captures = 0;
        for (i, st) in path.steps.iter().enumerate() {
            match st {
                Step::Wild => captures += 1,
                Step::Filter(conds) => {
                    captures += 1;
                    for c in conds {
                        c.check(i + 1, captures)?;
                    }
                }
                Step::Key { .. } => {}
            }
        }
        Ok(path)
    }

    /// How many steps deep a match is.
    pub fn depth(&self) -> usize {
        self.steps.len()
    }

    /// How many wildcard and filter steps the path has.
    pub fn captures(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| !matches!(s, Step::Key { .. }))
            .count()
    }

    /// Call `f` with every match, in document order (object members in key
    /// order), as the chain of frames from the document to the match.
    pub fn walk<'a>(&self, doc: &'a Value, f: &mut dyn FnMut(&[Frame<'a>])) {
        let mut chain = vec![Frame {
            value: doc,
            key: None,
            captured: false,
        }];
        walk(&self.steps, &mut chain, f);
    }
}

fn walk<'a>(steps: &[Step], chain: &mut Vec<Frame<'a>>, f: &mut dyn FnMut(&[Frame<'a>])) {
    let Some((step, rest)) = steps.split_first() else {
        f(chain);
        return;
    };
    let Some(cur) = chain.last().map(|fr| fr.value) else {
        return;
    };
    let conds: &[Cond] = match step {
        Step::Key { key, index } => {
            let next = match cur {
                Value::Object(m) => m
                    .get_key_value(key.as_str())
                    .map(|(k, v)| (KeyRef::Name(k), v)),
                Value::Array(a) => index.and_then(|i| a.get(i).map(|v| (KeyRef::Index(i), v))),
                _ => None,
            };
            if let Some((key, value)) = next {
                chain.push(Frame {
                    value,
                    key: Some(key),
                    captured: false,
                });
                walk(rest, chain, f);
                chain.pop();
            }
            return;
        }
        Step::Wild => &[],
        Step::Filter(conds) => conds,
    };
    let mut visit = |key: KeyRef<'a>, value: &'a Value| {
        chain.push(Frame {
            value,
            key: Some(key),
            captured: true,
        });
        if conds.iter().all(|c| c.holds(chain)) {
            walk(rest, chain, f);
        }
        chain.pop();
    };
    match cur {
        Value::Object(m) => m.iter().for_each(|(k, v)| visit(KeyRef::Name(k), v)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| visit(KeyRef::Index(i), v)),
        _ => {}
    }
}

fn index_of(key: &str) -> Option<usize> {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
        key.parse().ok()
    } else {
        None
    }
}

/// The end of a quoted string starting at `start` (the quote), as the index
/// just past the closing quote.
fn quoted_end(s: &str, start: usize) -> Result<usize, String> {
    let b = s.as_bytes();
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unclosed quote in \"{s}\""))
}

/// A quoted literal's text: `\` before the quote or a backslash escapes
/// it; any other backslash is kept (so regexes read as written).
fn unquote(lit: &str) -> String {
    let q = lit.chars().next().unwrap_or('"');
    let inner = &lit[1..lit.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if n == q || n == '\\' {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// The index of the `]` closing the `[` at `open`, skipping quoted text and
/// nested brackets.
fn bracket_end(s: &str, open: usize) -> Result<usize, String> {
    let b = s.as_bytes();
    let mut depth = 0;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = quoted_end(s, i)?;
                continue;
            }
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("unclosed \"[\" in \"{s}\""))
}

fn parse_steps(s: &str) -> Result<Vec<Step>, String> {
    let b = s.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' => {
                let end = bracket_end(s, i)?;
                steps.push(parse_bracket(s[i + 1..end].trim())?);
                i = end + 1;
            }
            b']' => return Err(format!("unmatched \"]\" in \"{s}\"")),
            b'.' if i == 0 => return Err(format!("\"{s}\" starts with a dot")),
            b'.' => {
                i += 1;
                let end = s[i..].find(['.', '[']).map_or(s.len(), |p| i + p);
                steps.push(key_step(&s[i..end], s)?);
                i = end;
            }
            _ if i == 0 => {
                let end = s.find(['.', '[']).unwrap_or(s.len());
                steps.push(key_step(&s[..end], s)?);
                i = end;
            }
            _ => return Err(format!("expected \".\" or \"[\" at byte {i} of \"{s}\"")),
        }
    }
    Ok(steps)
}

fn key_step(seg: &str, whole: &str) -> Result<Step, String> {
    match seg {
        "" => Err(format!(
            "\"{whole}\" has an empty key (two dots, or a dot at the end)"
        )),
        "*" => Ok(Step::Wild),
        _ if seg.contains(']') => Err(format!("unmatched \"]\" in \"{whole}\"")),
        _ => Ok(Step::Key {
            key: seg.to_string(),
            index: index_of(seg),
        }),
    }
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wild);
    }
    if let Some(expr) = inner.strip_prefix('?') {
        let conds = split_top(strip_parens(expr)?, "&&")?
            .into_iter()
            .map(parse_cond)
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Step::Filter(conds));
    }
    if inner.starts_with(['"', '\'']) {
        if quoted_end(inner, 0)? != inner.len() {
            return Err(format!("[{inner}]: text after the quoted key"));
        }
        return Ok(Step::Key {
            key: unquote(inner),
            index: None,
        });
    }
    match index_of(inner) {
        Some(i) => Ok(Step::Key {
            key: inner.to_string(),
            index: Some(i),
        }),
        None => Err(format!(
            "[{inner}]: expected [*], an index like [0], a quoted key like [\"a.b\"], or a filter like [?state == \"up\"]"
        )),
    }
}

/// Split on `sep` outside quotes and brackets.
fn split_top<'s>(s: &'s str, sep: &str) -> Result<Vec<&'s str>, String> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = quoted_end(s, i)?;
                continue;
            }
            b'[' => depth += 1,
            b']' => depth -= 1,
            _ if depth == 0 && b[i..].starts_with(sep.as_bytes()) => {
                parts.push(&s[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start..]);
    Ok(parts)
}

const OPS: [&str; 8] = ["==", "!=", "=~", "!~", "<=", ">=", "<", ">"];

/// `(x)` -> `x`, when the parentheses enclose the whole of it.
fn strip_parens(src: &str) -> Result<&str, String> {
    let s = src.trim();
    let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) else {
        return Ok(s);
    };
    let b = inner.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = quoted_end(inner, i)?;
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth < 0 {
                    // `(a) && (b)`: the first `(` closes early.
                    return Ok(s);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(inner.trim())
}

fn parse_cond(src: &str) -> Result<Cond, String> {
    let s = strip_parens(src)?;
    if s.is_empty() {
        return Err("empty filter condition".into());
    }
    // The first operator outside quotes and brackets.
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    let mut found = None;
    while i < b.len() && found.is_none() {
        match b[i] {
            b'"' | b'\'' => {
                i = quoted_end(s, i)?;
                continue;
            }
            b'[' => depth += 1,
            b']' => depth -= 1,
            _ if depth == 0 => {
                found = OPS
                    .iter()
                    .find(|op| b[i..].starts_with(op.as_bytes()))
                    .map(|op| (i, *op))
            }
            _ => {}
        }
        i += 1;
    }
    let Some((at, op)) = found else {
        return Ok(Cond::Exists(Ref::parse(s)?));
    };
    let r = Ref::parse(&s[..at]).map_err(|e| format!("filter \"{s}\": {e}"))?;
    let lit_src = s[at + op.len()..].trim();
    let lit = if lit_src.starts_with(['"', '\'']) {
        if quoted_end(lit_src, 0)? != lit_src.len() {
            return Err(format!("filter \"{s}\": text after the quoted value"));
        }
        Lit::Text(unquote(lit_src))
    } else if lit_src == "true" || lit_src == "false" {
        Lit::Text(lit_src.to_string())
    } else if let Ok(n) = lit_src.parse::<f64>() {
        Lit::Num(n)
    } else {
        return Err(format!(
            "filter \"{s}\": \"{lit_src}\" is not a quoted string, a number, true or false"
        ));
    };
    Ok(match (op, lit) {
        ("==", lit) => Cond::Eq {
            r,
            lit,
            negate: false,
        },
        ("!=", lit) => Cond::Eq {
            r,
            lit,
            negate: true,
        },
        ("=~" | "!~", Lit::Text(t)) => Cond::Re {
            r,
            re: Regex::new(&t).map_err(|e| format!("filter \"{s}\": invalid regex: {e}"))?,
            negate: op == "!~",
        },
        ("=~" | "!~", Lit::Num(_)) => {
            return Err(format!("filter \"{s}\": {op} takes a quoted regex"))
        }
        (_, Lit::Num(n)) => Cond::Cmp {
            r,
            op: match op {
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            },
            n,
        },
        (_, Lit::Text(_)) => return Err(format!("filter \"{s}\": {op} takes a number")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every match as the text of the matched value, with `refs` resolved.
    fn matches(path: &str, doc: &Value, refs: &[&str]) -> Vec<Vec<String>> {
        let p = Path::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let refs: Vec<Ref> = refs.iter().map(|r| Ref::parse(r).unwrap()).collect();
        let mut out = Vec::new();
        p.walk(doc, &mut |chain| {
            let mut row = vec![chain
                .last()
                .map(|f| Found::Value(f.value).text().into_owned())
                .unwrap()];
            for r in &refs {
                row.push(
                    r.resolve(chain)
                        .map_or("<none>".into(), |f| f.text().into_owned()),
                );
            }
            out.push(row);
        });
        out
    }

    fn doc() -> Value {
        json!({
            "cluster": "eu-1",
            "servers": [
                {"name": "a", "state": "up", "conns": 3, "tags": ["x"]},
                {"name": "b", "state": "down", "conns": 0},
                {"name": "c", "state": "up", "conns": 12, "weight": null}
            ],
            "backends": {
                "db1": {"state": "UP", "pools": [{"name": "read", "active": 2}, {"name": "write", "active": 1}]},
                "db2": {"state": "DOWN", "pools": []}
            },
            "odd.key": {"x": 1}
        })
    }

    #[test]
    fn keys_indexes_and_wildcards() {
        let d = doc();
        assert_eq!(matches("cluster", &d, &[]), vec![vec!["eu-1"]]);
        assert_eq!(matches("$.servers[1].name", &d, &[]), vec![vec!["b"]]);
        assert_eq!(matches("servers.2.conns", &d, &[]), vec![vec!["12"]]);
        assert_eq!(matches("[\"odd.key\"].x", &d, &[]), vec![vec!["1"]]);
        assert_eq!(matches("$['odd.key']['x']", &d, &[]), vec![vec!["1"]]);
        assert_eq!(
            matches("servers[*].conns", &d, &["*", "^.name", "$.cluster"]),
            vec![
                vec!["3", "0", "a", "eu-1"],
                vec!["0", "1", "b", "eu-1"],
                vec!["12", "2", "c", "eu-1"]
            ]
        );
        assert_eq!(
            matches(
                "backends.*.pools.*",
                &d,
                &["*1", "*2", "*", "name", "^^.state"]
            ),
            vec![
                vec![
                    r#"{"active":2,"name":"read"}"#,
                    "db1",
                    "0",
                    "0",
                    "read",
                    "UP"
                ],
                vec![
                    r#"{"active":1,"name":"write"}"#,
                    "db1",
                    "1",
                    "1",
                    "write",
                    "UP"
                ],
            ]
        );
        assert!(matches("nope.*", &d, &[]).is_empty());
        assert!(matches("cluster.*", &d, &[]).is_empty());
        assert!(matches("servers.x", &d, &[]).is_empty());
        assert_eq!(matches("$", &json!(5), &[]), vec![vec!["5"]]);
    }

    #[test]
    fn filters() {
        let d = doc();
        let names = |p: &str| -> Vec<String> {
            matches(p, &d, &["name"])
                .into_iter()
                .map(|r| r[1].clone())
                .collect()
        };
        assert_eq!(names(r#"servers[?(@.state=="up")]"#), ["a", "c"]);
        assert_eq!(names(r#"servers[?state != "up"]"#), ["b"]);
        assert_eq!(names("servers[?conns > 2 && name =~ '^[ab]']"), ["a"]);
        assert_eq!(names("servers[?conns >= 0 && conns <= 3]"), ["a", "b"]);
        assert_eq!(names("servers[?tags]"), ["a"]);
        // null counts as absent.
        assert!(names("servers[?weight]").is_empty());
        assert_eq!(names(r#"servers[?tags[0] == "x"]"#), ["a"]);
        assert_eq!(names(r#"servers[?name !~ "a|b"]"#), ["c"]);
        assert_eq!(names(r#"servers[?* == 1]"#), ["b"]);
        assert_eq!(
            names(r#"servers[?$.cluster == "eu-1" && conns == "12"]"#),
            ["c"]
        );
        // Filters over object members, by value and by key.
        assert_eq!(
            matches(r#"backends[?state == "UP"]"#, &d, &["*"])
                .into_iter()
                .map(|r| r[1].clone())
                .collect::<Vec<_>>(),
            ["db1"]
        );
        assert_eq!(
            matches(r#"backends[?* =~ "2$"].state"#, &d, &["*"]),
            vec![vec!["DOWN", "db2"]]
        );
        // A regex with a backslash and a bracket inside quotes.
        assert_eq!(names(r#"servers[?name =~ "^\w]?$"]"#), ["a", "b", "c"]);
    }

    #[test]
    fn numbers_from_found_values() {
        let map: HashMap<String, f64> = [("UP".to_string(), 1.0)].into();
        let n = |v: Value| match Found::Value(&v).number(&map) {
            Number::Ok(x) => Some(x),
            Number::Bad => None,
        };
        assert_eq!(n(json!(2.5)), Some(2.5));
        assert_eq!(n(json!(true)), Some(1.0));
        assert_eq!(n(json!("UP")), Some(1.0));
        assert_eq!(n(json!(" 42 ")), Some(42.0));
        assert_eq!(n(json!("down")), None);
        assert_eq!(n(json!({"a": 1})), None);
    }

    #[test]
    fn parse_errors() {
        for (p, want) in [
            ("a..b", "empty key"),
            ("a.", "empty key"),
            (".a", "starts with a dot"),
            ("a[", "unclosed \"[\""),
            ("a]", "unmatched"),
            ("a[x]", "expected [*]"),
            ("a[?b =~ 1]", "quoted regex"),
            ("a[?b > 'x']", "takes a number"),
            ("a[?b == up]", "not a quoted string"),
            ("a[?b =~ '(']", "invalid regex"),
            ("a[?b == 'x]", "unclosed quote"),
            ("a[?^^^.x]", "goes above the document"),
            ("a[?*2 == 'x']", "only 1 wildcard"),
            ("a[?b.* == 'x']", "no \"*\" in it"),
        ] {
            let e = Path::parse(p).err().unwrap_or_else(|| panic!("{p} parsed"));
            assert!(e.contains(want), "{p}: {e}");
        }
        let r = Ref::parse("^^.x").unwrap();
        assert!(r.check(1, 0).is_err() && r.check(2, 0).is_ok());
        assert!(Ref::parse("*").unwrap().check(3, 0).is_err());
        assert!(Ref::parse("*0").is_err());
        assert!(Ref::parse("").is_err());
    }
}
