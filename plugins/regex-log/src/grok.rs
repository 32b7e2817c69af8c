//! grok syntax (`%{IPORHOST:client} %{HTTPDATE:ts}`), expanded at init to
//! one regular expression for the `regex` crate, so matching stays linear
//! in the line's length.
//!
//! The pattern library is the `grok` crate's (Logstash's standard
//! patterns), and `%{...}` is split by its parser. The library is written
//! for Oniguruma; the `regex` crate has no look-around and no atomic
//! groups, so while expanding, `(?>...)` becomes `(?:...)`, look-around
//! assertions (`(?<![0-9])`, `(?![0-9])`) are left out and possessive
//! quantifiers (`a++`) become greedy ones. Those only make a pattern accept
//! a little more around its edges (`%{NUMBER}` no longer refuses to start in
//! the middle of a number); in a pattern between fixed separators the
//! captures are the same.
use grok::parser::{grok_split, GrokComponent};
use std::collections::{BTreeMap, HashMap};

/// Deepest nesting of patterns in patterns (Logstash's go about 6 deep).
const MAX_DEPTH: usize = 64;

/// The patterns `%{NAME}` may name: the user's (`patterns` in the
/// settings), then the standard library.
pub struct Library<'a> {
    user: &'a BTreeMap<String, String>,
    standard: HashMap<&'static str, &'static str>,
}

impl<'a> Library<'a> {
    pub fn new(user: &'a BTreeMap<String, String>) -> Self {
        Library {
            user,
            standard: grok::patterns().iter().copied().collect(),
        }
    }

    fn get(&self, name: &str) -> Option<(&str, bool)> {
        match self.user.get(name) {
            Some(p) => Some((p.as_str(), true)),
            None => self.standard.get(name).map(|p| (*p, false)),
        }
    }

    /// How many standard patterns there are.
    #[cfg(test)]
    pub fn standard_names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.standard.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

/// `%{NAME}`, `%{NAME:capture}` and `%{NAME:capture:int}` (`int` and
/// `float` are accepted and change nothing: values are read as numbers
/// anyway) expanded into a regex string.
///
/// A capture name used more than once (Oniguruma allows it: the standard
/// patterns name both sides of an alternative alike) names the first; the
/// others get a hidden name, listed in [`Expanded::alternates`], and the
/// capture's value is that of the first of them that took part.
pub fn expand(pattern: &str, lib: &Library<'_>) -> Result<Expanded, String> {
    let mut x = Expansion {
        out: String::with_capacity(pattern.len() * 4),
        stack: Vec::new(),
        seen: HashMap::new(),
        alternates: Vec::new(),
    };
    x.expand(pattern, lib)?;
    Ok(Expanded {
        regex: for_regex_crate(&x.out),
        alternates: x.alternates,
    })
}

/// A grok pattern as a regex.
#[derive(Debug)]
pub struct Expanded {
    /// The regex, for the `regex` crate.
    pub regex: String,
    /// (capture name, hidden name of a later group of the same name).
    pub alternates: Vec<(String, String)>,
}

struct Expansion<'p> {
    out: String,
    stack: Vec<&'p str>,
    /// capture name -> how many groups have it so far
    seen: HashMap<String, usize>,
    alternates: Vec<(String, String)>,
}

/// The prefix of hidden capture names.
pub const HIDDEN: &str = "__grok";

impl<'p> Expansion<'p> {
    fn expand(&mut self, pattern: &'p str, lib: &'p Library<'_>) -> Result<(), String> {
        for part in grok_split(pattern) {
            match part {
                GrokComponent::RegularExpression { string, .. } => self.out.push_str(string),
                GrokComponent::GrokPattern {
                    pattern: written,
                    name,
                    alias,
                    extract,
                    definition,
                    ..
                } => {
                    if !matches!(extract, "" | "int" | "float") {
                        return Err(format!(
                            "{written}: unknown type \"{extract}\" (int or float, or none)"
                        ));
                    }
                    let body = if definition.is_empty() {
                        match lib.get(name) {
                            Some((body, _)) => body,
                            None => {
                                return Err(format!(
                                    "{written}: no grok pattern named \"{name}\" (neither in \
                                     patterns nor in the standard library)"
                                ))
                            }
                        }
                    } else {
                        definition
                    };
                    if self.stack.contains(&name) {
                        return Err(format!(
                            "{written}: pattern \"{name}\" refers to itself ({} -> {name})",
                            self.stack.join(" -> ")
                        ));
                    }
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(format!(
                            "{written}: patterns nested more than {MAX_DEPTH} deep"
                        ));
                    }
                    if alias.is_empty() {
                        self.out.push_str("(?:");
                    } else {
                        let c = capture_name(alias);
                        let n = self.seen.entry(c.clone()).or_insert(0);
                        *n += 1;
                        self.out.push_str("(?P<");
                        if *n == 1 {
                            self.out.push_str(&c);
                        } else {
                            let hidden = format!("{HIDDEN}{n}_{c}");
                            self.out.push_str(&hidden);
                            self.alternates.push((c, hidden));
                        }
                        self.out.push('>');
                    }
                    self.stack.push(name);
                    self.expand(body, lib)?;
                    self.stack.pop();
                    self.out.push(')');
                }
                GrokComponent::PatternError(e) => {
                    return Err(format!("malformed %{{...}} in \"{pattern}\" ({e:?})"))
                }
            }
        }
        Ok(())
    }
}

/// A grok capture name as the `regex` crate takes it: a field reference
/// `[source][ip]` is `source.ip`, characters other than letters, digits,
/// `_ . [ ]` become `_` (`close-reason` is `close_reason`), and one starting
/// with a digit gets a `_` before it.
fn capture_name(s: &str) -> String {
    let dotted;
    let s = if s.starts_with('[') && s.ends_with(']') {
        dotted = s[1..s.len() - 1].replace("][", ".");
        dotted.as_str()
    } else {
        s
    };
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Oniguruma constructs the `regex` crate lacks, rewritten (see the module
/// documentation).
fn for_regex_crate(re: &str) -> String {
    let b: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len());
    let mut i = 0;
    // Whether the last thing written was a quantifier (so a `+` after it
    // makes it possessive).
    let mut quantified = false;
    while i < b.len() {
        let c = b[i];
        if c == '\\' {
            match b.get(i + 1) {
                // Oniguruma's hexadecimal digit
                Some('h') => out.push_str("[0-9A-Fa-f]"),
                Some('H') => out.push_str("[^0-9A-Fa-f]"),
                Some(n) => {
                    out.push(c);
                    out.push(*n);
                }
                None => out.push(c),
            }
            i += 2;
            quantified = false;
            continue;
        }
        if c == '[' {
            let end = class_end(&b, i);
            let class: String = b[i..end].iter().collect();
            out.push_str(&class.replace("\\h", "0-9A-Fa-f"));
            i = end;
            quantified = false;
            continue;
        }
        if c == '{' {
            // A repetition {n}, {n,} or {n,m}; anything else is a literal
            // brace to Oniguruma and an error to the regex crate.
            match repetition_end(&b, i) {
                Some(end) => {
                    out.extend(&b[i..end]);
                    i = end;
                    quantified = true;
                }
                None => {
                    out.push_str("\\{");
                    i += 1;
                    quantified = false;
                }
            }
            continue;
        }
        if c == '}' {
            out.push_str("\\}");
            i += 1;
            quantified = false;
            continue;
        }
        if c == '(' && b.get(i + 1) == Some(&'?') {
            let rest: String = b[i + 2..b.len().min(i + 4)].iter().collect();
            if rest.starts_with("<!")
                || rest.starts_with("<=")
                || rest.starts_with('!')
                || rest.starts_with('=')
            {
                i = group_end(&b, i);
                continue;
            }
            if rest.starts_with('>') {
                out.push_str("(?:");
                i += 3;
                quantified = false;
                continue;
            }
        }
        if c == '+' && quantified {
            // possessive: greedy
            i += 1;
            quantified = false;
            continue;
        }
        quantified = matches!(c, '*' | '+' | '?' | '}');
        out.push(c);
        i += 1;
    }
    out
}

/// Index just past the repetition `{n}`, `{n,}` or `{n,m}` at `start`.
fn repetition_end(b: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if !digits(&mut i) {
        return None;
    }
    if b.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    (b.get(i) == Some(&'}')).then_some(i + 1)
}

/// Index just past the character class that starts at `start` (`[`).
fn class_end(b: &[char], start: usize) -> usize {
    let mut i = start + 1;
    if b.get(i) == Some(&'^') {
        i += 1;
    }
    // A `]` first is a literal.
    if b.get(i) == Some(&']') {
        i += 1;
    }
    while i < b.len() {
        match b[i] {
            '\\' => i += 2,
            '[' => i = class_end(b, i),
            ']' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// Index just past the group that starts at `start` (`(`).
fn group_end(b: &[char], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            '\\' => {
                i += 2;
                continue;
            }
            '[' => {
                i = class_end(b, i);
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn lib() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn oniguruma_constructs_are_rewritten() {
        assert_eq!(
            for_regex_crate(r"(?<![0-9.+-])(?>[+-]?\d+)"),
            r"(?:[+-]?\d+)"
        );
        assert_eq!(for_regex_crate(r"a(?![0-9])b(?=x(y))c"), "abc");
        assert_eq!(for_regex_crate(r"a++b*+c?+d{2}+e+?"), "a+b*c?d{2}e+?");
        assert_eq!(
            for_regex_crate(r"[(?!]\(?!x\)[]a)(?!y)]"),
            r"[(?!]\(?!x\)[]a)(?!y)]"
        );
        assert_eq!(for_regex_crate(r"[*+]+\++"), r"[*+]+\++");
        assert_eq!(
            for_regex_crate(r"a{2}b{1,}c{1,3}: {x} }"),
            r"a{2}b{1,}c{1,3}: \{x\} \}"
        );
        assert_eq!(
            for_regex_crate(r"\h{32}[\h-]"),
            r"[0-9A-Fa-f]{32}[0-9A-Fa-f-]"
        );
    }

    #[test]
    fn standard_patterns_expand_and_compile() {
        let user = lib();
        let l = Library::new(&user);
        let mut failed = Vec::new();
        let names = l.standard_names();
        for name in &names {
            match expand(&format!("%{{{name}}}"), &l) {
                Ok(re) => {
                    if let Err(e) = Regex::new(&re.regex) {
                        failed.push(format!("{name}: {e}"));
                    }
                }
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        assert!(names.len() > 300, "{}", names.len());
        assert!(
            failed.is_empty(),
            "{} of {}:\n{}",
            failed.len(),
            names.len(),
            failed.join("\n")
        );
    }

    #[test]
    fn captures_and_errors() {
        let mut user = lib();
        user.insert("MS".into(), r"%{INT:ms}ms".into());
        user.insert("LOOP".into(), r"a%{LOOP2}".into());
        user.insert("LOOP2".into(), r"b%{LOOP}".into());
        let l = Library::new(&user);
        let re = Regex::new(
            &expand(
                r"^%{IPORHOST:client} \[%{HTTPDATE:ts}\] %{WORD:verb} %{NUMBER:bytes:int} took %{MS}$",
                &l,
            )
            .expect("expand")
            .regex,
        )
        .expect("compile");
        let c = re
            .captures("192.0.2.5 [08/Apr/2010:20:43:02 -0700] GET 1528528 took 350ms")
            .expect("match");
        assert_eq!(&c["client"], "192.0.2.5");
        assert_eq!(&c["ts"], "08/Apr/2010:20:43:02 -0700");
        assert_eq!(&c["bytes"], "1528528");
        assert_eq!(&c["ms"], "350");
        let re = Regex::new(
            &expand("%{INT:close-reason} %{INT:9x}", &l)
                .expect("expand")
                .regex,
        )
        .expect("compile");
        let c = re.captures("1 2").expect("match");
        assert_eq!((&c["close_reason"], &c["_9x"]), ("1", "2"));
        let re =
            Regex::new(&expand("%{IP:[source][ip]}", &l).expect("expand").regex).expect("compile");
        assert_eq!(
            &re.captures("10.0.0.1").expect("match")["source.ip"],
            "10.0.0.1"
        );
        let x = expand("%{INT:n}|%{WORD:n}", &l).expect("expand");
        assert_eq!(
            x.alternates,
            vec![("n".to_string(), format!("{HIDDEN}2_n"))]
        );
        for (p, want) in [
            ("%{NOPE:x}", "no grok pattern named \"NOPE\""),
            ("%{LOOP}", "refers to itself (LOOP -> LOOP2 -> LOOP)"),
            ("%{INT:x:date}", "unknown type \"date\""),
        ] {
            let e = expand(p, &l).err().unwrap_or_default();
            assert!(e.contains(want), "{p}: {e}");
        }
    }
}
