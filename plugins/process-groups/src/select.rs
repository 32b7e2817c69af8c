//! Choosing processes: regexes on `comm`, `exe` and `cmdline`, and the
//! templates that name a group from what matched.
use regex::{CaptureLocations, Regex};

/// A process field a regex is tried on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    Comm,
    Exe,
    Cmdline,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Comm => "comm",
            Field::Exe => "exe",
            Field::Cmdline => "cmdline",
        }
    }
}

/// The text one process offers to matchers and templates.
pub struct Subject<'a> {
    pub comm: &'a str,
    pub exe: &'a str,
    /// The arguments joined with single spaces.
    pub cmdline: &'a str,
}

impl<'a> Subject<'a> {
    fn get(&self, f: Field) -> &'a str {
        match f {
            Field::Comm => self.comm,
            Field::Exe => self.exe,
            Field::Cmdline => self.cmdline,
        }
    }
}

/// Template names that mean a process field, not a capture.
const FIELD_NAMES: [&str; 3] = ["comm", "exe", "exebase"];

struct Matcher {
    field: Field,
    regex: Regex,
    locs: CaptureLocations,
    /// Whether a template reads this regex's captures (else `is_match` does).
    captures: bool,
}

/// A group's or a service's regexes: a process is selected when every one
/// of them matches. Regexes are unanchored: write `^...$` for a whole field.
pub struct Selector {
    matchers: Vec<Matcher>,
}

impl Selector {
    /// Compile the given regexes; `what` names the config entry in errors.
    pub fn new(
        comm: Option<&str>,
        exe: Option<&str>,
        cmdline: Option<&str>,
        what: &str,
    ) -> Result<Self, String> {
        let mut matchers = Vec::new();
        for (field, src) in [
            (Field::Comm, comm),
            (Field::Exe, exe),
            (Field::Cmdline, cmdline),
        ] {
            let Some(src) = src else { continue };
            let regex = Regex::new(src)
                .map_err(|e| format!("{what}: invalid {} regex: {e}", field.key()))?;
            if let Some(n) = regex
                .capture_names()
                .flatten()
                .find(|n| FIELD_NAMES.contains(n))
            {
                return Err(format!(
                    "{what}: the {} regex names a capture \"{n}\", which is reserved for the process field; rename the capture",
                    field.key()
                ));
            }
            let locs = regex.capture_locations();
            matchers.push(Matcher {
                field,
                regex,
                locs,
                captures: false,
            });
        }
        if matchers.is_empty() {
            return Err(format!(
                "{what}: give at least one of comm, exe or cmdline (a regex)"
            ));
        }
        Ok(Selector { matchers })
    }

    /// Whether some regex of this selector looks at `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.matchers.iter().any(|m| m.field == field)
    }

    /// Whether every regex matches; remembers captures for [`Template::render`].
    pub fn matches(&mut self, s: &Subject) -> bool {
        self.matchers.iter_mut().all(|m| {
            let text = s.get(m.field);
            if m.captures {
                m.regex.captures_read(&mut m.locs, text).is_some()
            } else {
                m.regex.is_match(text)
            }
        })
    }

    fn capture<'s>(&self, s: &Subject<'s>, matcher: usize, group: usize) -> Option<&'s str> {
        let m = &self.matchers[matcher];
        let text = s.get(m.field);
        m.locs.get(group).map(|(a, b)| &text[a..b])
    }
}

enum Part {
    Lit(String),
    Comm,
    Exe,
    ExeBase,
    Cap { matcher: usize, group: usize },
}

/// A group name: literal text with `${...}` references, e.g. `"${comm}"`,
/// `"java-${1}"`, `"pg ${db}"`.
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse `template` against the selector whose captures it may use.
    pub fn parse(template: &str, sel: &mut Selector, what: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("{what}: unclosed \"${{\" in name \"{template}\""))?;
            let key = &after[..end];
            parts.push(Self::reference(key, sel, what, template)?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        if parts.is_empty() {
            return Err(format!("{what}: empty name"));
        }
        Ok(Template { parts })
    }

    fn reference(
        key: &str,
        sel: &mut Selector,
        what: &str,
        template: &str,
    ) -> Result<Part, String> {
        match key {
            "comm" => return Ok(Part::Comm),
            "exe" => return Ok(Part::Exe),
            "exebase" => return Ok(Part::ExeBase),
            "" => return Err(format!("{what}: empty \"${{}}\" in name \"{template}\"")),
            _ => {}
        }
        if key.bytes().all(|b| b.is_ascii_digit()) {
            let group: usize = key
                .parse()
                .map_err(|_| format!("{what}: capture number {key} is too large"))?;
            if sel.matchers.len() != 1 {
                return Err(format!(
                    "{what}: \"${{{key}}}\" in name \"{template}\" is ambiguous with several regexes; name the capture, (?P<name>...), and write \"${{name}}\""
                ));
            }
            let m = &mut sel.matchers[0];
            if group >= m.regex.captures_len() {
                return Err(format!(
                    "{what}: name \"{template}\" uses capture {group}, but the {} regex has {} capture group(s)",
                    m.field.key(),
                    m.regex.captures_len() - 1
                ));
            }
            m.captures = true;
            return Ok(Part::Cap { matcher: 0, group });
        }
        let mut found = None;
        for (i, m) in sel.matchers.iter().enumerate() {
            if let Some(g) = m.regex.capture_names().position(|n| n == Some(key)) {
                if found.is_some() {
                    return Err(format!(
                        "{what}: capture \"{key}\" is named in more than one regex; rename one"
                    ));
                }
                found = Some((i, g));
            }
        }
        let (matcher, group) = found.ok_or_else(|| {
            format!(
                "{what}: name \"{template}\" uses \"${{{key}}}\", which is neither comm, exe, exebase nor a capture of the regexes"
            )
        })?;
        sel.matchers[matcher].captures = true;
        Ok(Part::Cap { matcher, group })
    }

    /// The name when it has no references.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(s)] => Some(s),
            _ => None,
        }
    }

    /// Whether the name needs the process's `exe`.
    pub fn uses_exe(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Exe | Part::ExeBase))
    }

    /// Write the name of a process that `sel` just matched into `out`.
    /// False when a capture the name uses did not take part in the match.
    pub fn render(&self, sel: &Selector, s: &Subject, out: &mut String) -> bool {
        out.clear();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Comm => out.push_str(s.comm),
                Part::Exe => out.push_str(s.exe),
                Part::ExeBase => out.push_str(s.exe.rsplit('/').next().unwrap_or("")),
                Part::Cap { matcher, group } => match sel.capture(s, *matcher, *group) {
                    Some(c) => out.push_str(c),
                    None => return false,
                },
            }
        }
        true
    }
}
