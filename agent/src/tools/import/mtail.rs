//! mtail programs to regex-log rules.
//!
//! A small hand-written lexer and recursive-descent parser for the part
//! of mtail's language that regex-log can express: no maintained Rust
//! crate parses mtail's language (mtail's own parser is Go and yacc), and
//! the subset is small. The parser never panics: every index is checked,
//! nesting is bounded, and anything it does not understand is reported
//! with its line and skipped to the end of the statement or block.
use super::{metric_name, pipeline_name, Emit, Metric, Pipeline, Report, Rule, Value};
use std::collections::HashMap;

/// Deeper nesting than this (of blocks or expressions) is reported, not
/// followed, so that hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `$name` or `$1`.
    Cap(String),
    Num(String),
    Str(String),
    Regex(String),
    Punct(&'static str),
    Newline,
}

const PUNCTS: &[&str] = &[
    "++", "--", "+=", "-=", "*=", "/=", "==", "!=", "<=", ">=", "=~", "!~", "&&", "||", "**", "<<",
    ">>", "{", "}", "(", ")", "[", "]", ",", "+", "-", "*", "/", "%", "=", "<", ">", "!", "&", "|",
    "^", "~", "@", ":",
];

/// Lex `text` into tokens with their lines. A `/` starts a regex unless
/// the previous token ends an operand (then it divides). Unknown bytes
/// are reported and skipped.
fn lex(text: &str, file: &str, reports: &mut Vec<Report>) -> Vec<(Tok, usize)> {
    let b: Vec<char> = text.chars().collect();
    let mut toks: Vec<(Tok, usize)> = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        // `const NAME /re/`: a regex, though a name comes before it.
        let after_const = toks.len() >= 2
            && matches!(toks.get(toks.len() - 2), Some((Tok::Ident(k), _)) if k == "const");
        let operand_before = !after_const
            && matches!(
                toks.last(),
                Some((
                    Tok::Ident(_)
                        | Tok::Cap(_)
                        | Tok::Num(_)
                        | Tok::Str(_)
                        | Tok::Punct(")")
                        | Tok::Punct("]"),
                    _
                ))
            );
        if c == '\n' {
            toks.push((Tok::Newline, line));
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && !operand_before {
            let start_line = line;
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    '\\' if b.get(i + 1) == Some(&'/') => {
                        s.push('/');
                        i += 2;
                    }
                    '\\' => {
                        s.push('\\');
                        if let Some(n) = b.get(i + 1) {
                            s.push(*n);
                        }
                        i += 2;
                    }
                    '/' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    '\n' => break,
                    ch => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            if !closed {
                reports.push(Report {
                    file: file.into(),
                    line: start_line,
                    what: "regex not closed with / on its line".into(),
                });
            }
            toks.push((Tok::Regex(s), start_line));
        } else if c == '"' {
            let start_line = line;
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    '\\' => {
                        match b.get(i + 1) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(n) => s.push(*n),
                            None => {}
                        }
                        i += 2;
                    }
                    '"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    '\n' => break,
                    ch => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            if !closed {
                reports.push(Report {
                    file: file.into(),
                    line: start_line,
                    what: "string not closed on its line".into(),
                });
            }
            toks.push((Tok::Str(s), start_line));
        } else if c == '$' {
            let mut j = i + 1;
            while j < b.len() && (b[j].is_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            let name: String = b[i + 1..j].iter().collect();
            if name.is_empty() {
                reports.push(Report {
                    file: file.into(),
                    line,
                    what: "`$` without a capture name".into(),
                });
            } else {
                toks.push((Tok::Cap(name), line));
            }
            i = j.max(i + 1);
        } else if c.is_ascii_digit()
            || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '.') {
                // 1e-3: a sign right after the exponent
                j += 1;
                if j < b.len()
                    && (b[j] == '-' || b[j] == '+')
                    && matches!(b[j - 1], 'e' | 'E')
                    && b[i..j - 1].iter().all(|d| d.is_ascii_digit() || *d == '.')
                {
                    j += 1;
                }
            }
            toks.push((Tok::Num(b[i..j].iter().collect()), line));
            i = j;
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < b.len() && (b[j].is_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            toks.push((Tok::Ident(b[i..j].iter().collect()), line));
            i = j;
        } else {
            let rest: String = b[i..(i + 2).min(b.len())].iter().collect();
            match PUNCTS.iter().find(|p| rest.starts_with(**p)) {
                Some(p) => {
                    toks.push((Tok::Punct(p), line));
                    i += p.chars().count();
                }
                None => {
                    reports.push(Report {
                        file: file.into(),
                        line,
                        what: format!("unexpected character {c:?}"),
                    });
                    i += 1;
                }
            }
        }
    }
    toks
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Cap(String),
    Num(String),
    Str(String),
    Re(String),
    Ident(String),
    Call(String, Vec<Expr>),
    Index(Box<Expr>, Vec<Expr>),
    Bin(&'static str, Box<Expr>, Box<Expr>),
    Un(&'static str, Box<Expr>),
    Post(&'static str, Box<Expr>),
    Assign(&'static str, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone)]
enum Stmt {
    Decl {
        line: usize,
        hidden: bool,
        kind: String,
        name: String,
        labels: Vec<String>,
        alias: Option<String>,
        buckets: Vec<f64>,
        extra: Vec<String>,
    },
    Const {
        line: usize,
        name: String,
        value: Expr,
    },
    Def {
        name: String,
        body: Vec<Stmt>,
    },
    Deco {
        line: usize,
        name: String,
        body: Vec<Stmt>,
    },
    Cond {
        line: usize,
        cond: Expr,
        body: Vec<Stmt>,
        else_body: Option<(usize, Vec<Stmt>)>,
    },
    Otherwise {
        line: usize,
        body: Vec<Stmt>,
    },
    Expr {
        line: usize,
        e: Expr,
    },
    /// `del`, `stop`, `next`, `settime(...)`-like keywords kept as text.
    Keyword {
        line: usize,
        word: String,
        text: String,
    },
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
    file: &'a str,
    reports: &'a mut Vec<Report>,
}

type PResult<T> = Result<T, (usize, String)>;

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.0)
    }
    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.at + n).map(|t| &t.0)
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.at)
            .or(self.toks.last())
            .map(|t| t.1)
            .unwrap_or(1)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|t| t.0.clone());
        if t.is_some() {
            self.at += 1;
        }
        t
    }
    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }
    fn eat(&mut self, p: &str) -> bool {
        if self.is(p) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &str) -> PResult<()> {
        if self.eat(p) {
            Ok(())
        } else {
            Err((
                self.line(),
                format!("expected `{p}`, found {}", self.shown()),
            ))
        }
    }
    fn shown(&self) -> String {
        let s = self.shown_full();
        if s.chars().count() > 60 {
            format!("{}...", s.chars().take(57).collect::<String>())
        } else {
            s
        }
    }
    fn shown_full(&self) -> String {
        match self.peek() {
            None => "the end of the file".into(),
            Some(Tok::Newline) => "the end of the line".into(),
            Some(Tok::Ident(s)) => format!("`{s}`"),
            Some(Tok::Cap(s)) => format!("`${s}`"),
            Some(Tok::Num(s)) => format!("`{s}`"),
            Some(Tok::Str(s)) => format!("\"{s}\""),
            Some(Tok::Regex(s)) => format!("/{s}/"),
            Some(Tok::Punct(p)) => format!("`{p}`"),
        }
    }
    fn skip_newlines(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline)) {
            self.at += 1;
        }
    }
    fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => Err((
                self.line(),
                format!("expected a name, found {}", self.shown()),
            )),
        }
    }

    /// Skip to the end of the statement that failed: the end of its line,
    /// or past a block it opened (braces balanced).
    fn recover(&mut self) {
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Tok::Punct("{") => depth += 1,
                Tok::Punct("}") => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return;
                    }
                }
                Tok::Newline if depth == 0 => return,
                _ => {}
            }
            self.at += 1;
        }
    }

    /// Statements up to `}` (when `nested`) or the end.
    fn block(&mut self, nested: bool) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            self.skip_newlines();
            match self.peek() {
                None => {
                    if nested {
                        self.reports.push(Report {
                            file: self.file.into(),
                            line: self.line(),
                            what: "block not closed with `}` before the end of the file".into(),
                        });
                    }
                    return out;
                }
                Some(Tok::Punct("}")) => {
                    if nested {
                        self.at += 1;
                        return out;
                    }
                    self.reports.push(Report {
                        file: self.file.into(),
                        line: self.line(),
                        what: "`}` without a block to close".into(),
                    });
                    self.at += 1;
                }
                _ => {
                    let start = self.at;
                    match self.stmt() {
                        Ok(s) => out.push(s),
                        Err((line, msg)) => {
                            self.reports.push(Report {
                                file: self.file.into(),
                                line,
                                what: format!("syntax: {msg}"),
                            });
                            self.recover();
                        }
                    }
                    if self.at == start {
                        // Never loop without progress.
                        self.at += 1;
                    }
                }
            }
        }
    }

    fn braced(&mut self) -> PResult<Vec<Stmt>> {
        self.skip_newlines();
        self.expect("{")?;
        if self.depth >= MAX_DEPTH {
            return Err((self.line(), "blocks nested too deeply".into()));
        }
        self.depth += 1;
        let b = self.block(true);
        self.depth -= 1;
        Ok(b)
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        let line = self.line();
        if let Some(Tok::Ident(w)) = self.peek() {
            let w = w.clone();
            match w.as_str() {
                "counter" | "gauge" | "histogram" | "timer" | "text" | "hidden" => {
                    return self.decl(line)
                }
                "const" => {
                    self.at += 1;
                    let name = self.ident()?;
                    let value = self.expr(0)?;
                    return Ok(Stmt::Const { line, name, value });
                }
                "def" => {
                    self.at += 1;
                    let name = self.ident()?;
                    let body = self.braced()?;
                    return Ok(Stmt::Def { name, body });
                }
                "otherwise" => {
                    self.at += 1;
                    let body = self.braced()?;
                    return Ok(Stmt::Otherwise { line, body });
                }
                "del" | "stop" | "next" => {
                    self.at += 1;
                    let mut text = w.clone();
                    while !matches!(
                        self.peek(),
                        None | Some(Tok::Newline) | Some(Tok::Punct("}"))
                    ) {
                        if let Some(t) = self.bump() {
                            text.push(' ');
                            text.push_str(&tok_text(&t));
                        }
                    }
                    return Ok(Stmt::Keyword {
                        line,
                        word: w,
                        text,
                    });
                }
                _ => {}
            }
        }
        if self.eat("@") {
            let name = self.ident()?;
            let body = self.braced()?;
            return Ok(Stmt::Deco { line, name, body });
        }
        let e = self.expr(0)?;
        // A condition: an expression followed by a block (possibly on the
        // next line).
        let mut k = 0;
        while matches!(self.peek_at(k), Some(Tok::Newline)) {
            k += 1;
        }
        if matches!(self.peek_at(k), Some(Tok::Punct("{"))) {
            let body = self.braced()?;
            let mut k = 0;
            while matches!(self.peek_at(k), Some(Tok::Newline)) {
                k += 1;
            }
            let else_body = if matches!(self.peek_at(k), Some(Tok::Ident(w)) if w == "else") {
                self.at += k + 1;
                let l = self.line();
                Some((l, self.braced()?))
            } else {
                None
            };
            return Ok(Stmt::Cond {
                line,
                cond: e,
                body,
                else_body,
            });
        }
        match self.peek() {
            None | Some(Tok::Newline) | Some(Tok::Punct("}")) => Ok(Stmt::Expr { line, e }),
            _ => Err((self.line(), format!("unexpected {}", self.shown()))),
        }
    }

    fn decl(&mut self, line: usize) -> PResult<Stmt> {
        let mut hidden = false;
        let mut kind = self.ident()?;
        if kind == "hidden" {
            hidden = true;
            kind = self.ident()?;
        }
        if !matches!(
            kind.as_str(),
            "counter" | "gauge" | "histogram" | "timer" | "text"
        ) {
            return Err((line, format!("`{kind}` is not a variable kind")));
        }
        let name = self.ident()?;
        let mut labels = Vec::new();
        let mut alias = None;
        let mut buckets = Vec::new();
        let mut extra = Vec::new();
        loop {
            match self.peek() {
                Some(Tok::Ident(w)) if w == "by" => {
                    self.at += 1;
                    loop {
                        labels.push(self.ident()?);
                        if !self.eat(",") {
                            break;
                        }
                        self.skip_newlines();
                    }
                }
                Some(Tok::Ident(w)) if w == "as" => {
                    self.at += 1;
                    match self.bump() {
                        Some(Tok::Str(s)) => alias = Some(s),
                        _ => return Err((line, "`as` needs a \"name\"".into())),
                    }
                }
                Some(Tok::Ident(w)) if w == "buckets" => {
                    self.at += 1;
                    loop {
                        let neg = self.eat("-");
                        match self.bump() {
                            Some(Tok::Num(n)) => match n.parse::<f64>() {
                                Ok(v) if v.is_finite() => buckets.push(if neg { -v } else { v }),
                                _ => return Err((line, format!("bucket `{n}` is not a number"))),
                            },
                            _ => return Err((line, "`buckets` needs numbers".into())),
                        }
                        if !self.eat(",") {
                            break;
                        }
                        self.skip_newlines();
                    }
                }
                Some(Tok::Ident(w)) if w == "limit" => {
                    self.at += 1;
                    let n = self.bump().map(|t| tok_text(&t)).unwrap_or_default();
                    extra.push(format!("limit {n}"));
                }
                None | Some(Tok::Newline) | Some(Tok::Punct("}")) => break,
                _ => return Err((self.line(), format!("unexpected {}", self.shown()))),
            }
        }
        Ok(Stmt::Decl {
            line,
            hidden,
            kind,
            name,
            labels,
            alias,
            buckets,
            extra,
        })
    }

    /// Precedence climbing over mtail's operators.
    fn expr(&mut self, min: u8) -> PResult<Expr> {
        if self.depth >= MAX_DEPTH {
            return Err((self.line(), "expression nested too deeply".into()));
        }
        self.depth += 1;
        let r = self.expr_inner(min);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, min: u8) -> PResult<Expr> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Punct(op)) = self.peek() {
            let op: &'static str = op;
            let prec = match op {
                "=" | "+=" | "-=" | "*=" | "/=" => 1,
                "||" => 2,
                "&&" => 3,
                "==" | "!=" | "<" | ">" | "<=" | ">=" | "=~" | "!~" => 4,
                "|" | "^" | "&" => 5,
                "<<" | ">>" => 6,
                "+" | "-" => 7,
                "*" | "/" | "%" => 8,
                "**" => 9,
                _ => break,
            };
            if prec < min {
                break;
            }
            self.at += 1;
            // A regex concatenation may go on at the next line.
            if op == "+" || op == "&&" || op == "||" {
                self.skip_newlines();
            }
            if prec == 1 {
                let rhs = self.expr(1)?;
                lhs = Expr::Assign(op, Box::new(lhs), Box::new(rhs));
            } else {
                let next = if op == "**" { prec } else { prec + 1 };
                let rhs = self.expr(next)?;
                lhs = Expr::Bin(op, Box::new(lhs), Box::new(rhs));
            }
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.eat("-") {
            return Ok(Expr::Un("-", Box::new(self.expr(9)?)));
        }
        if self.eat("!") {
            return Ok(Expr::Un("!", Box::new(self.expr(9)?)));
        }
        if self.eat("~") {
            return Ok(Expr::Un("~", Box::new(self.expr(9)?)));
        }
        let mut e = self.primary()?;
        loop {
            if self.is("[") {
                self.at += 1;
                let mut keys = Vec::new();
                if !self.is("]") {
                    loop {
                        keys.push(self.expr(2)?);
                        if !self.eat(",") {
                            break;
                        }
                    }
                }
                self.expect("]")?;
                e = match e {
                    Expr::Index(b, mut k) => {
                        k.extend(keys);
                        Expr::Index(b, k)
                    }
                    other => Expr::Index(Box::new(other), keys),
                };
            } else if self.eat("++") {
                e = Expr::Post("++", Box::new(e));
            } else if self.eat("--") {
                e = Expr::Post("--", Box::new(e));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let line = self.line();
        match self.bump() {
            Some(Tok::Cap(c)) => Ok(Expr::Cap(c)),
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Regex(r)) => Ok(Expr::Re(r)),
            Some(Tok::Ident(i)) => {
                if self.eat("(") {
                    let mut args = Vec::new();
                    if !self.is(")") {
                        loop {
                            args.push(self.expr(2)?);
                            if !self.eat(",") {
                                break;
                            }
                        }
                    }
                    self.expect(")")?;
                    Ok(Expr::Call(i, args))
                } else {
                    Ok(Expr::Ident(i))
                }
            }
            Some(Tok::Punct("(")) => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Some(t) => {
                self.at -= 1;
                let _ = t;
                Err((line, format!("unexpected {}", self.shown())))
            }
            None => Err((line, "unexpected end of the file".into())),
        }
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Ident(s) | Tok::Num(s) => s.clone(),
        Tok::Cap(s) => format!("${s}"),
        Tok::Str(s) => format!("\"{s}\""),
        Tok::Regex(s) => format!("/{s}/"),
        Tok::Punct(p) => (*p).to_string(),
        Tok::Newline => String::new(),
    }
}

/// mtail-like text of an expression, for reports.
fn show(e: &Expr) -> String {
    match e {
        Expr::Cap(c) => format!("${c}"),
        Expr::Num(n) => n.clone(),
        Expr::Str(s) => format!("{s:?}"),
        Expr::Re(r) => format!("/{r}/"),
        Expr::Ident(i) => i.clone(),
        Expr::Call(f, a) => format!("{f}({})", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        Expr::Index(b, k) => format!(
            "{}[{}]",
            show(b),
            k.iter().map(show).collect::<Vec<_>>().join(", ")
        ),
        Expr::Bin(op, a, b) => {
            let side = |e: &Expr| match e {
                Expr::Bin(..) | Expr::Assign(..) => format!("({})", show(e)),
                _ => show(e),
            };
            if *op == "+" && matches!(&**a, Expr::Re(_) | Expr::Ident(_) | Expr::Bin("+", ..)) {
                format!("{} + {}", show(a), show(b))
            } else {
                format!("{} {op} {}", side(a), side(b))
            }
        }
        Expr::Un(op, a) => format!("{op}{}", show(a)),
        Expr::Post(op, a) => format!("{}{op}", show(a)),
        Expr::Assign(op, a, b) => format!("{} {op} {}", show(a), show(b)),
    }
}

/// One capturing group of a regex: where it is and its name.
#[derive(Debug, Clone)]
struct Group {
    /// Byte offset of `(`.
    open: usize,
    /// Byte offset just after the `(?P<name>` or `(`.
    body: usize,
    /// Byte offset of the matching `)`.
    close: usize,
    name: Option<String>,
    /// False for `(?:...)` and `(?i:...)` (listed by `all_groups` only).
    capturing: bool,
}

/// The capturing groups of `re`, in order of their `(`; None when the
/// parentheses do not balance.
fn groups(re: &str) -> Option<Vec<Group>> {
    Some(
        all_groups(re)?
            .into_iter()
            .filter(|g| g.capturing)
            .collect(),
    )
}

/// Every group of `re`, capturing or not (flag-only `(?i)` left out).
fn all_groups(re: &str) -> Option<Vec<Group>> {
    let b = re.as_bytes();
    let mut out: Vec<Group> = Vec::new();
    let mut stack: Vec<Option<usize>> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' => {
                // A class: skip to its `]`, minding `[:alpha:]`, escapes and
                // a leading `]` or `^]`.
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                let mut depth = 1;
                while i < b.len() && depth > 0 {
                    match b[i] {
                        b'\\' => i += 1,
                        b'[' if b.get(i + 1) == Some(&b':') => {
                            if let Some(end) = re[i + 2..].find(":]") {
                                i += end + 3;
                            }
                        }
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'(' => {
                let rest = &re[i..];
                let named = ["(?P<", "(?<"]
                    .iter()
                    .find(|p| rest.starts_with(**p))
                    .and_then(|p| {
                        let after = &rest[p.len()..];
                        after
                            .find('>')
                            .map(|e| (after[..e].to_string(), p.len() + e + 1))
                    });
                if let Some((name, len)) = named {
                    stack.push(Some(out.len()));
                    out.push(Group {
                        open: i,
                        body: i + len,
                        close: 0,
                        name: Some(name),
                        capturing: true,
                    });
                    i += len;
                } else if let Some(after) = rest.strip_prefix("(?") {
                    // `(?:` or `(?flags:` opens a group; `(?flags)` does not.
                    let colon = after
                        .find([':', ')'])
                        .filter(|&k| after.as_bytes().get(k) == Some(&b':'));
                    match colon {
                        Some(k) => {
                            stack.push(Some(out.len()));
                            out.push(Group {
                                open: i,
                                body: i + 2 + k + 1,
                                close: 0,
                                name: None,
                                capturing: false,
                            });
                        }
                        None => stack.push(None),
                    }
                    i += 2;
                } else {
                    stack.push(Some(out.len()));
                    out.push(Group {
                        open: i,
                        body: i + 1,
                        close: 0,
                        name: None,
                        capturing: true,
                    });
                    i += 1;
                }
            }
            b')' => {
                match stack.pop() {
                    Some(Some(g)) => out.get_mut(g)?.close = i,
                    Some(None) => {}
                    None => return None,
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if stack.is_empty() {
        Some(out)
    } else {
        None
    }
}

/// Does `re` end in an unescaped `$`?
fn ends_anchored(re: &str) -> bool {
    let t = re.trim_end();
    if !t.ends_with('$') {
        return false;
    }
    let backslashes = t[..t.len() - 1]
        .chars()
        .rev()
        .take_while(|c| *c == '\\')
        .count();
    backslashes.is_multiple_of(2)
}

/// A top-level `|` outside groups and classes?
fn has_top_alternation(re: &str) -> bool {
    let b = re.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    let mut class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !class => class = true,
            b']' if class => class = false,
            b'(' if !class => depth += 1,
            b')' if !class => depth -= 1,
            b'|' if !class && depth == 0 => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

fn wrap(re: &str) -> String {
    if has_top_alternation(re) {
        format!("(?:{re})")
    } else {
        re.to_string()
    }
}

/// What a condition becomes.
enum Cond {
    /// A regex on the line.
    Regex(String),
    /// A capture of the enclosing regex equal to a literal: the group is
    /// narrowed to the literal.
    CapEq(String, String),
    /// A capture of digits compared `> 0` or `!= 0`: the group is
    /// narrowed to digits that are not all zeros.
    CapNonZero(String),
    /// A capture written `.*` or `.+` matched against a regex: the group
    /// becomes that regex.
    CapMatch(String, String),
    /// Not translatable: why.
    No(String),
    /// `getfilename() =~ ...`: reported, the block translated as if it held.
    AsIfTrue(String),
}

#[derive(Debug, Clone)]
struct Decl {
    kind: String,
    /// The name written in the pipeline file.
    exposed: String,
    labels: Vec<String>,
    hidden: bool,
}

struct Tr<'a> {
    file: &'a str,
    consts: HashMap<String, String>,
    defs: HashMap<String, Vec<Stmt>>,
    decls: HashMap<String, Decl>,
    metrics: Vec<Metric>,
    rules: Vec<Rule>,
    /// Emits of statements outside every block (run on every line).
    top_emits: Vec<Emit>,
    top_notes: Vec<String>,
    trailer: Vec<String>,
    reports: Vec<Report>,
    caveats: Vec<Report>,
    inline_depth: usize,
    /// Decorated blocks inlined so far (bounded: a hostile program could
    /// ask for exponentially many).
    inlined: usize,
    /// The rules of one nested `otherwise`, written after all others.
    deferred: Vec<Rule>,
    /// A nested `otherwise` was written (there can be one).
    deferred_used: bool,
}

/// The enclosing conditions of a block.
#[derive(Clone, Default)]
struct Ctx {
    /// The combined regex; None at the top level.
    regex: Option<String>,
    /// Numbered groups renamed: level's (n -> name), innermost last.
    numbered: Vec<HashMap<String, String>>,
    depth: usize,
    /// Inside `otherwise` or `else`: a nested condition cannot be one regex.
    in_else: bool,
}

impl Tr<'_> {
    fn report(&mut self, line: usize, what: String) -> String {
        let note = format!("not translated: {}:{line}: {what}", self.file);
        self.reports.push(Report {
            file: self.file.to_string(),
            line,
            what,
        });
        note
    }

    /// A regex expression: literals and consts joined with `+`.
    fn regex_of(&self, e: &Expr) -> Result<String, String> {
        match e {
            Expr::Re(r) => Ok(r.clone()),
            Expr::Ident(n) => self
                .consts
                .get(n)
                .cloned()
                .ok_or_else(|| format!("`{n}` is not a const regex")),
            Expr::Bin("+", a, b) => Ok(format!("{}{}", self.regex_of(a)?, self.regex_of(b)?)),
            other => Err(format!("`{}` is not a regex", show(other))),
        }
    }

    fn cond_of(&self, e: &Expr) -> Cond {
        if let Ok(r) = self.regex_of(e) {
            return Cond::Regex(r);
        }
        match e {
            Expr::Bin("=~", a, _) if matches!(&**a, Expr::Call(f, _) if f == "getfilename") => {
                Cond::AsIfTrue(format!(
                    "condition `{}`: one weir pipeline reads its own files; the block is \
                     translated as if it held for every line (set the pipeline's paths)",
                    show(e)
                ))
            }
            Expr::Bin("==", a, b) => match (&**a, &**b) {
                (Expr::Cap(c), Expr::Str(s)) | (Expr::Str(s), Expr::Cap(c)) => {
                    Cond::CapEq(c.clone(), s.clone())
                }
                _ => Cond::No(format!(
                    "condition `{}` (regex-log conditions are regexes on the line)",
                    show(e)
                )),
            },
            Expr::Bin(">" | "!=", a, b) if matches!((&**a, &**b), (Expr::Cap(_), Expr::Num(n)) if n == "0") => {
                match &**a {
                    Expr::Cap(c) => Cond::CapNonZero(c.clone()),
                    _ => Cond::No(show(e)),
                }
            }
            Expr::Bin("=~", a, b) if matches!(&**a, Expr::Cap(_)) && self.regex_of(b).is_ok() => {
                match (&**a, self.regex_of(b)) {
                    (Expr::Cap(c), Ok(r)) => Cond::CapMatch(c.clone(), r),
                    _ => Cond::No(show(e)),
                }
            }
            Expr::Bin("=~" | "!~", a, _) if matches!(&**a, Expr::Cap(_)) => Cond::No(format!(
                "condition `{}`: a regex on one capture (write it into the line's regex)",
                show(e)
            )),
            _ => Cond::No(format!(
                "condition `{}` (regex-log conditions are regexes on the line; encode it in \
                 the regex)",
                show(e)
            )),
        }
    }

    /// The capture name regex-log knows for `$c` in `ctx`.
    fn cap_name(&self, c: &str, ctx: &Ctx) -> Option<String> {
        if c.chars().all(|d| d.is_ascii_digit()) {
            if c == "0" {
                return None;
            }
            let name = ctx.numbered.iter().rev().find_map(|m| m.get(c).cloned())?;
            // A branch dropped by a narrowing takes its groups with it.
            let gs = groups(ctx.regex.as_deref()?)?;
            gs.iter()
                .any(|g| g.name.as_deref() == Some(name.as_str()))
                .then_some(name)
        } else {
            let re = ctx.regex.as_deref()?;
            let gs = groups(re)?;
            gs.iter()
                .any(|g| g.name.as_deref() == Some(c))
                .then(|| c.to_string())
        }
    }

    /// A value expression over captures and numbers, as regex-log reads
    /// it; Err with the construct that cannot be.
    fn value_of(&self, e: &Expr, ctx: &Ctx) -> Result<Value, String> {
        fn go(t: &Tr<'_>, e: &Expr, ctx: &Ctx, depth: usize) -> Result<String, String> {
            if depth > MAX_DEPTH {
                return Err("expression nested too deeply".into());
            }
            match e {
                Expr::Cap(c) => t
                    .cap_name(c, ctx)
                    .ok_or_else(|| format!("`${c}` is no capture of an enclosing regex")),
                Expr::Num(n) => match n.parse::<f64>() {
                    Ok(v) if v.is_finite() => Ok(n.clone()),
                    _ => Err(format!("`{n}` is not a decimal number")),
                },
                Expr::Bin(op @ ("+" | "-" | "*" | "/"), a, b) => Ok(format!(
                    "({} {op} {})",
                    go(t, a, ctx, depth + 1)?,
                    go(t, b, ctx, depth + 1)?
                )),
                Expr::Un("-", a) => Ok(format!("-{}", go(t, a, ctx, depth + 1)?)),
                Expr::Ident(v) => Err(format!("the variable `{v}` (state between lines)")),
                Expr::Call(f, _) => Err(format!("the function `{f}()`")),
                other => Err(format!("`{}`", show(other))),
            }
        }
        if let Expr::Num(n) = e {
            if let Ok(v) = n.parse::<f64>() {
                if v.is_finite() {
                    return Ok(Value::Num(v));
                }
            }
        }
        if let Expr::Un("-", a) = e {
            if let Expr::Num(n) = &**a {
                if let Ok(v) = n.parse::<f64>() {
                    if v.is_finite() {
                        return Ok(Value::Num(-v));
                    }
                }
            }
        }
        let s = go(self, e, ctx, 0)?;
        // Outer parentheses are noise: `(a - b)` -> `a - b`.
        let s = match s.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
            Some(inner) if balanced(inner) => inner.to_string(),
            _ => s,
        };
        Ok(Value::Expr(s))
    }

    /// The label template for one key of `x[...]`.
    fn label_of(&self, e: &Expr, ctx: &Ctx) -> Result<(String, Option<Xform>), String> {
        if let Expr::Call(f, args) = e {
            if let ("tolower" | "toupper", [Expr::Cap(c)]) = (f.as_str(), args.as_slice()) {
                let n = self
                    .cap_name(c, ctx)
                    .ok_or_else(|| format!("`${c}` is no capture of an enclosing regex"))?;
                let step = if f == "tolower" { "lower" } else { "upper" };
                return Ok((format!("${{{n}}}"), Some((n, step))));
            }
        }
        self.plain_label(e, ctx).map(|l| (l, None))
    }

    fn plain_label(&self, e: &Expr, ctx: &Ctx) -> Result<String, String> {
        match e {
            Expr::Cap(c) => self
                .cap_name(c, ctx)
                .map(|n| format!("${{{n}}}"))
                .ok_or_else(|| format!("`${c}` is no capture of an enclosing regex")),
            Expr::Str(s) if !s.contains("${") => Ok(s.clone()),
            Expr::Num(n) => Ok(n.clone()),
            Expr::Ident(v) => Err(format!(
                "the variable `{v}` as a label (state between lines)"
            )),
            Expr::Call(f, _) => Err(format!("the function `{f}()` in a label")),
            other => Err(format!("`{}` as a label", show(other))),
        }
    }

    /// A statement as an emit action; Err with the report.
    fn emit_of(&self, e: &Expr, ctx: &Ctx) -> Result<(Emit, Vec<Xform>), String> {
        let (target, op, rhs): (&Expr, &str, Option<&Expr>) = match e {
            Expr::Post(op, t) => (t, op, None),
            Expr::Assign(op, t, v) => (t, op, Some(v)),
            Expr::Call(f, _) => {
                return Err(match f.as_str() {
                    "strptime" | "settime" | "timestamp" => format!(
                        "`{}`: times from the log (samples carry the scrape time)",
                        show(e)
                    ),
                    _ => format!("`{}`: the function `{f}()`", show(e)),
                })
            }
            other => return Err(format!("`{}`: not a metric update", show(other))),
        };
        let (name, keys) = match target {
            Expr::Ident(n) => (n, &[][..]),
            Expr::Index(b, k) => match &**b {
                Expr::Ident(n) => (n, &k[..]),
                _ => return Err(format!("`{}`: not a metric update", show(e))),
            },
            _ => return Err(format!("`{}`: not a metric update", show(e))),
        };
        let Some(d) = self.decls.get(name) else {
            return Err(format!("`{}`: `{name}` is not declared", show(e)));
        };
        if d.hidden || d.kind == "text" {
            return Err(format!(
                "`{}`: the hidden variable `{name}` (state between lines)",
                show(e)
            ));
        }
        if keys.len() != d.labels.len() {
            return Err(format!(
                "`{}`: {} key(s) for {} label(s) of `{name}`",
                show(e),
                keys.len(),
                d.labels.len()
            ));
        }
        let mut labels = Vec::new();
        let mut xforms: Vec<Xform> = Vec::new();
        for (l, k) in d.labels.iter().zip(keys) {
            let (t, x) = self
                .label_of(k, ctx)
                .map_err(|w| format!("`{}`: {w}", show(e)))?;
            labels.push((l.clone(), t));
            xforms.extend(x);
        }
        let val = |x: &Expr| {
            self.value_of(x, ctx)
                .map_err(|w| format!("`{}`: {w}", show(e)))
        };
        let kind = if d.kind == "timer" { "gauge" } else { &d.kind };
        let (value, op) = match (kind, op, rhs) {
            ("counter", "++", _) => (None, None),
            ("counter", "+=", Some(v)) => (Some(val(v)?), None),
            ("gauge", "=", Some(v)) => (Some(val(v)?), None),
            ("gauge", "++", _) => (Some(Value::Num(1.0)), Some("add")),
            ("gauge", "--", _) => (Some(Value::Num(-1.0)), Some("add")),
            ("gauge", "+=", Some(v)) => (Some(val(v)?), Some("add")),
            ("gauge", "-=", Some(v)) => (
                Some(match val(v)? {
                    Value::Num(n) => Value::Num(-n),
                    Value::Expr(s) => Value::Expr(format!("-({s})")),
                }),
                Some("add"),
            ),
            ("histogram", "=", Some(v)) => (Some(val(v)?), None),
            (k, op, _) => {
                return Err(format!(
                    "`{}`: `{op}` on a {k} (regex-log adds to counters, sets or adds to \
                     gauges and observes into histograms)",
                    show(e)
                ))
            }
        };
        Ok((
            Emit {
                metric: self.exposed(name),
                labels,
                value,
                op,
            },
            xforms,
        ))
    }

    fn exposed(&self, name: &str) -> String {
        self.decls
            .get(name)
            .map(|d| d.exposed.clone())
            .unwrap_or_else(|| metric_name(name))
    }

    fn declare(&mut self, s: &Stmt) {
        let Stmt::Decl {
            line,
            hidden,
            kind,
            name,
            labels,
            alias,
            buckets,
            extra,
        } = s
        else {
            return;
        };
        let mut notes = Vec::new();
        let shown = alias.clone().unwrap_or_else(|| name.clone());
        let exposed = metric_name(&shown);
        self.decls.insert(
            name.clone(),
            Decl {
                kind: kind.clone(),
                exposed: exposed.clone(),
                labels: labels.clone(),
                hidden: *hidden,
            },
        );
        if *hidden || kind == "text" {
            let what = format!(
                "`{}{kind} {name}`: a hidden or text variable (state between lines)",
                if *hidden { "hidden " } else { "" }
            );
            let n = self.report(*line, what);
            self.top_notes.push(n);
            return;
        }
        if exposed != shown {
            notes.push(self.report(
                *line,
                format!("the name \"{shown}\" is no Prometheus name: written as \"{exposed}\""),
            ));
        }
        for x in extra {
            notes.push(self.report(*line, format!("`{x}` on `{name}`")));
        }
        let kind_out = match kind.as_str() {
            "counter" => "counter",
            "histogram" => "histogram",
            _ => "gauge",
        };
        if self.metrics.iter().any(|m| m.name == exposed) {
            let n = self.report(*line, format!("`{name}` declared twice"));
            self.top_notes.push(n);
            return;
        }
        let m = Metric {
            name: exposed,
            kind: kind_out,
            help: format!("{kind} {name} ({}:{line})", self.file),
            labels: labels.clone(),
            buckets: (kind == "histogram" && !buckets.is_empty()).then(|| buckets.clone()),
            notes,
        };
        self.metrics.push(m);
    }

    /// Translate statements under `ctx`. `rule` is the index of the rule
    /// of the enclosing block (None at the top level).
    fn walk(&mut self, stmts: &[Stmt], ctx: &Ctx, rule: Option<usize>) {
        // Did a sibling condition before an `otherwise` fail to translate?
        let mut sibling_skipped = false;
        let mut conds_seen = 0usize;
        let mut sibling_regexes: Vec<String> = Vec::new();
        for s in stmts {
            match s {
                Stmt::Decl { .. } => self.declare(s),
                Stmt::Const { line, name, value } => match self.regex_of(value) {
                    Ok(r) => {
                        self.consts.insert(name.clone(), r);
                    }
                    Err(w) => {
                        let n = self.report(*line, format!("const `{name}`: {w}"));
                        self.top_notes.push(n);
                    }
                },
                Stmt::Def { name, body, .. } => {
                    self.defs.insert(name.clone(), body.clone());
                }
                Stmt::Deco { line, name, body } => {
                    let Some(def) = self.defs.get(name).cloned() else {
                        let n = self.report(*line, format!("`@{name}`: no `def {name}` before it"));
                        self.top_notes.push(n);
                        continue;
                    };
                    self.inlined += 1;
                    if self.inline_depth > 8 || self.inlined > 1000 {
                        let n = self.report(
                            *line,
                            format!("`@{name}`: decorators nested too deeply or used too often"),
                        );
                        self.top_notes.push(n);
                        continue;
                    }
                    // The decorated block goes where the def says `next`.
                    let spliced = splice_next(&def, body);
                    self.inline_depth += 1;
                    self.walk(&spliced, ctx, rule);
                    self.inline_depth -= 1;
                    conds_seen += 1;
                }
                Stmt::Keyword { line, word, text } => {
                    if word == "next" && self.inline_depth > 0 {
                        continue;
                    }
                    let what = match word.as_str() {
                        "del" => format!("`{text}`: deleting series (state between lines)"),
                        "stop" => format!("`{text}`: ending the program early"),
                        _ => format!("`{text}`"),
                    };
                    let n = self.report(*line, what);
                    self.note_at(rule, n);
                }
                Stmt::Expr { line, e } => match self.emit_of(e, ctx) {
                    Ok((em, xf)) => match rule.and_then(|r| self.rules.get_mut(r)) {
                        Some(r) => match add_transforms(r, &em, &xf) {
                            Ok(()) => r.emits.push(em),
                            Err(w) => {
                                let n = self.report(*line, format!("`{}`: {w}", show(e)));
                                self.note_at(rule, n);
                            }
                        },
                        None if xf.is_empty() => self.top_emits.push(em),
                        None => {
                            let n = self.report(*line, format!("`{}`: no capture", show(e)));
                            self.note_at(rule, n);
                        }
                    },
                    Err(w) => {
                        let n = self.report(*line, w);
                        self.note_at(rule, n);
                    }
                },
                Stmt::Cond {
                    line,
                    cond,
                    body,
                    else_body,
                } => {
                    conds_seen += 1;
                    let made = self.cond_block(*line, cond, body, ctx, rule);
                    match made {
                        // `getfilename()`: translated as if it held, so no
                        // regex says which lines it took.
                        Some(m) if Some(m) == rule => sibling_skipped = true,
                        Some(m) => {
                            if let Some(re) = self.rules.get(m).and_then(|r| r.regex.clone()) {
                                sibling_regexes.push(re);
                            }
                        }
                        None => sibling_skipped = true,
                    }
                    if let Some((eline, ebody)) = else_body {
                        // Exact only when the condition is the first rule
                        // written and nothing before could match.
                        let exact = ctx.regex.is_none()
                            && made.is_some()
                            && conds_seen == 1
                            && made == Some(0);
                        if exact {
                            self.else_block(*eline, ebody, ctx);
                        } else {
                            let n = self.report(
                                *eline,
                                "`else` here (regex-log's `else = true` follows every earlier \
                                 rule, not one condition)"
                                    .into(),
                            );
                            self.note_at(rule, n);
                        }
                    }
                }
                Stmt::Otherwise { line, body } => {
                    let nested = ctx.regex.is_some() || rule.is_some();
                    let enclosing = ctx.regex.clone().filter(|r| !r.is_empty());
                    if let (true, Some(re), false, true, false) = (
                        nested,
                        enclosing,
                        sibling_skipped,
                        !self.deferred_used,
                        ctx.in_else,
                    ) {
                        self.nested_otherwise(*line, body, ctx, re, &sibling_regexes);
                        continue;
                    }
                    if nested {
                        let n = self.report(
                            *line,
                            "nested `otherwise` (only one nested otherwise per program, after \
                             conditions that all translated, can be written: its rules go \
                             last)"
                                .into(),
                        );
                        self.note_at(rule, n);
                        continue;
                    }
                    if sibling_skipped {
                        let n = self.report(
                            *line,
                            "`otherwise` after a condition that was not translated: it would \
                             also take the lines that condition matched"
                                .into(),
                        );
                        self.note_at(rule, n);
                        continue;
                    }
                    self.else_block(*line, body, ctx);
                }
            }
        }
    }

    /// A nested `otherwise`: after every other rule, one `stop` rule per
    /// sibling condition (the lines they matched go no further), then the
    /// enclosing regex with the otherwise block's actions. Written last,
    /// the stops keep those lines from nothing else.
    fn nested_otherwise(
        &mut self,
        line: usize,
        body: &[Stmt],
        ctx: &Ctx,
        enclosing: String,
        siblings: &[String],
    ) {
        self.deferred_used = true;
        let start = self.rules.len();
        for re in siblings {
            self.rules.push(Rule {
                name: format!("{}:{line}:sibling", short(self.file)),
                regex: Some(re.clone()),
                stop: true,
                notes: vec![format!(
                    "for the `otherwise` at {}:{line}: a line its sibling condition matched \
                     stops here",
                    self.file
                )],
                ..Default::default()
            });
        }
        let idx = self.rules.len();
        self.rules.push(Rule {
            name: format!("{}:{line}", short(self.file)),
            regex: Some(enclosing.clone()),
            notes: vec![format!(
                "`otherwise` at {}:{line}: the enclosing regex, reached only by lines no \
                 sibling condition matched (these rules are written last)",
                self.file
            )],
            ..Default::default()
        });
        let inner = Ctx {
            regex: Some(enclosing),
            numbered: ctx.numbered.clone(),
            depth: ctx.depth + 1,
            in_else: false,
        };
        self.walk(body, &inner, Some(idx));
        let group: Vec<Rule> = self.rules.drain(start..).collect();
        self.deferred.extend(group);
    }

    fn note_at(&mut self, rule: Option<usize>, note: String) {
        match rule.and_then(|r| self.rules.get_mut(r)) {
            Some(r) => r.notes.push(note),
            None => self.trailer.push(note),
        }
    }

    fn else_block(&mut self, line: usize, body: &[Stmt], ctx: &Ctx) {
        let idx = self.rules.len();
        self.rules.push(Rule {
            name: format!("{}:{line}", short(self.file)),
            else_: true,
            ..Default::default()
        });
        let inner = Ctx {
            regex: Some(String::new()),
            numbered: ctx.numbered.clone(),
            depth: ctx.depth + 1,
            in_else: true,
        };
        self.walk(body, &inner, Some(idx));
    }

    /// A condition block: its rule (returned) and the rules of its nested
    /// blocks; None when the condition could not be translated.
    fn cond_block(
        &mut self,
        line: usize,
        cond: &Expr,
        body: &[Stmt],
        ctx: &Ctx,
        parent: Option<usize>,
    ) -> Option<usize> {
        if ctx.in_else {
            let n = self.report(
                line,
                format!(
                    "condition `{}` inside `otherwise` or `else` (an else rule has no regex \
                     to combine it with)",
                    show(cond)
                ),
            );
            self.note_at(parent, n);
            return None;
        }
        let outer = ctx.regex.clone().unwrap_or_default();
        let mut numbered = ctx.numbered.clone();
        let mut approx = false;
        // `$1 == "x"`: the group's name (numbered groups have one here).
        let named = |c: String| self.cap_name(&c, ctx).unwrap_or(c);
        let cond_t = match self.cond_of(cond) {
            Cond::CapEq(c, l) => Cond::CapEq(named(c), l),
            Cond::CapNonZero(c) => Cond::CapNonZero(named(c)),
            Cond::CapMatch(c, r) => Cond::CapMatch(named(c), r),
            other => other,
        };
        let combined = match cond_t {
            Cond::Regex(r) => {
                approx = !outer.is_empty() && !r.is_empty();
                let (r, names) = name_numbered(&r, ctx.depth + 1);
                numbered.push(names);
                match combine(&outer, &r) {
                    Ok(c) => c,
                    Err(w) => {
                        let n = self.report(line, format!("nested condition /{r}/: {w}"));
                        self.note_at(parent, n);
                        return None;
                    }
                }
            }
            Cond::CapEq(c, lit) => match narrow(&outer, &c, &lit) {
                Some(r) => r,
                None => {
                    let n = self.report(
                        line,
                        format!(
                            "condition `${c} == {lit:?}`: `${c}` is no named capture of the \
                             enclosing regex"
                        ),
                    );
                    self.note_at(parent, n);
                    return None;
                }
            },
            Cond::CapNonZero(c) => match narrow_nonzero(&outer, &c) {
                Some(r) => r,
                None => {
                    let n = self.report(
                        line,
                        format!(
                            "condition `{}`: `${c}` is no capture of digits (`\\d+`) of the \
                             enclosing regex",
                            show(cond)
                        ),
                    );
                    self.note_at(parent, n);
                    return None;
                }
            },
            Cond::CapMatch(c, r) => {
                let (r, names) = name_numbered(&r, ctx.depth + 1);
                numbered.push(names);
                match narrow_match(&outer, &c, &r) {
                    Some(x) => x,
                    None => {
                        let n = self.report(
                            line,
                            format!(
                                "condition `{}`: `${c}` is no capture written `.*` or `.+` of \
                                 the enclosing regex (write the regex into it)",
                                show(cond)
                            ),
                        );
                        self.note_at(parent, n);
                        return None;
                    }
                }
            }
            Cond::No(w) => {
                let n = self.report(line, w);
                self.note_at(parent, n);
                return None;
            }
            Cond::AsIfTrue(w) => {
                let n = self.report(line, w);
                self.note_at(parent, n);
                self.walk(body, ctx, parent);
                return parent;
            }
        };
        if let Err(e) = regex::Regex::new(&combined) {
            let msg = e.to_string();
            let first = msg.lines().last().unwrap_or("").trim().to_string();
            let n = self.report(
                line,
                format!("regex /{combined}/ does not compile: {first}"),
            );
            self.note_at(parent, n);
            return None;
        }
        let idx = self.rules.len();
        let mut notes = Vec::new();
        if approx {
            let what = "nested condition: its regex is looked for after the enclosing one's \
                        match (a line where the two overlap is not counted)";
            notes.push(format!("note: {}:{line}: {what}", self.file));
            self.caveats.push(Report {
                file: self.file.to_string(),
                line,
                what: what.to_string(),
            });
        }
        self.rules.push(Rule {
            name: format!("{}:{line}", short(self.file)),
            regex: Some(combined.clone()),
            notes,
            ..Default::default()
        });
        let inner = Ctx {
            regex: Some(combined),
            numbered,
            depth: ctx.depth + 1,
            in_else: false,
        };
        self.walk(body, &inner, Some(idx));
        Some(idx)
    }
}

fn short(file: &str) -> String {
    std::path::Path::new(file)
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| file.to_string())
}

fn balanced(s: &str) -> bool {
    let mut d = 0i32;
    for c in s.chars() {
        match c {
            '(' => d += 1,
            ')' => {
                d -= 1;
                if d < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    d == 0
}

/// The line of each declaration, by its exposed name.
fn decl_lines(stmts: &[Stmt]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for s in stmts {
        match s {
            Stmt::Decl {
                line, name, alias, ..
            } => {
                out.insert(metric_name(alias.as_deref().unwrap_or(name)), *line);
            }
            Stmt::Cond { body, .. }
            | Stmt::Otherwise { body, .. }
            | Stmt::Def { body, .. }
            | Stmt::Deco { body, .. } => out.extend(decl_lines(body)),
            _ => {}
        }
    }
    out
}

/// A capture to lower- or upper-case for a rule (`tolower($1)`).
type Xform = (String, &'static str);

/// The captures an emit reads: in label templates and in its value.
fn captures_used(e: &Emit) -> Vec<String> {
    let mut out = Vec::new();
    for (_, t) in &e.labels {
        let mut rest = t.as_str();
        while let Some(i) = rest.find("${") {
            let after = &rest[i + 2..];
            match after.find('}') {
                Some(j) => {
                    out.push(after[..j].to_string());
                    rest = &after[j + 1..];
                }
                None => break,
            }
        }
    }
    if let Some(Value::Expr(x)) = &e.value {
        out.extend(
            x.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
                .map(str::to_string),
        );
    }
    out
}

/// Record `xf` on the rule as `transform`s, unless the capture is also
/// read as it is (a transform changes every use in the rule).
fn add_transforms(r: &mut Rule, em: &Emit, xf: &[Xform]) -> Result<(), String> {
    let mut used: Vec<String> = r.emits.iter().flat_map(captures_used).collect();
    let this = captures_used(em);
    for (c, step) in xf {
        match r.transforms.iter().find(|(k, _)| k == c) {
            Some((_, s)) if s != step => {
                return Err(format!("`{c}` is both lower- and upper-cased in one rule"))
            }
            Some(_) => {}
            None if used.contains(c) || this.iter().filter(|u| *u == c).count() > 1 => {
                return Err(format!(
                    "`{c}` is used both as it is and case-changed in one rule"
                ))
            }
            None => {}
        }
    }
    for u in &this {
        let changed_here = xf.iter().any(|(c, _)| c == u);
        if !changed_here && r.transforms.iter().any(|(k, _)| k == u) {
            return Err(format!(
                "`{u}` is used both as it is and case-changed in one rule"
            ));
        }
    }
    for (c, step) in xf {
        if !r.transforms.iter().any(|(k, _)| k == c) {
            r.transforms.push((c.clone(), step));
        }
    }
    used.extend(this);
    Ok(())
}

/// The def's body with every `next` replaced by the decorated block.
fn splice_next(def: &[Stmt], body: &[Stmt]) -> Vec<Stmt> {
    let mut out = Vec::new();
    for s in def {
        match s {
            Stmt::Keyword { word, .. } if word == "next" => out.extend(body.iter().cloned()),
            Stmt::Cond {
                line,
                cond,
                body: b,
                else_body,
            } => out.push(Stmt::Cond {
                line: *line,
                cond: cond.clone(),
                body: splice_next(b, body),
                else_body: else_body.as_ref().map(|(l, e)| (*l, splice_next(e, body))),
            }),
            Stmt::Otherwise { line, body: b } => out.push(Stmt::Otherwise {
                line: *line,
                body: splice_next(b, body),
            }),
            other => out.push(other.clone()),
        }
    }
    out
}

/// Give the unnamed groups of `re` names (`g1`, or `g2_1` at depth 2), so
/// that `$1` can be a capture name; the map is number -> name.
fn name_numbered(re: &str, depth: usize) -> (String, HashMap<String, String>) {
    let mut names = HashMap::new();
    let Some(gs) = groups(re) else {
        return (re.to_string(), names);
    };
    let mut out = String::new();
    let mut last = 0;
    for (i, g) in gs.iter().enumerate() {
        let n = i + 1;
        match &g.name {
            Some(name) => {
                names.insert(n.to_string(), name.clone());
            }
            None => {
                let name = if depth <= 1 {
                    format!("g{n}")
                } else {
                    format!("g{depth}_{n}")
                };
                out.push_str(&re[last..g.open]);
                out.push_str(&format!("(?P<{name}>"));
                last = g.body;
                names.insert(n.to_string(), name);
            }
        }
    }
    out.push_str(&re[last..]);
    (out, names)
}

/// The AND of an enclosing regex and a nested one, as one regex.
fn combine(outer: &str, inner: &str) -> Result<String, String> {
    if outer.is_empty() {
        return Ok(inner.to_string());
    }
    if inner.is_empty() {
        return Ok(outer.to_string());
    }
    if inner.starts_with('^') {
        return Err("both it and the enclosing regex are anchored at the line's start".into());
    }
    if ends_anchored(outer) {
        return Err("the enclosing regex is anchored at the line's end".into());
    }
    Ok(format!("{}.*?{}", wrap(outer), wrap(inner)))
}

/// `outer` with the group named `cap` narrowed to the literal `lit`.
/// Positions of the `|` of `re[start..end]` that are not inside a group
/// or class.
fn top_bars(re: &str, start: usize, end: usize) -> Vec<usize> {
    let b = re.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut class = false;
    let mut i = start;
    while i < end.min(b.len()) {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !class => {
                class = true;
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b'[' if class && b.get(i + 1) == Some(&b':') => {
                if let Some(e) = re.get(i + 2..).and_then(|r| r.find(":]")) {
                    i += e + 3;
                }
            }
            b']' if class => class = false,
            b'(' if !class => depth += 1,
            b')' if !class => depth -= 1,
            b'|' if !class && depth == 0 => out.push(i),
            _ => {}
        }
        i += 1;
    }
    out
}

/// `re` rewritten so that the group named `cap` must take part in every
/// match: a condition on it holds only for lines where it did. An
/// enclosing alternation keeps only the branch that holds it, and an
/// optional quantifier on it or an enclosing group goes (`*` becomes
/// `+`). None when that cannot be done (`{0,n}`).
fn make_required(re: &str, cap: &str) -> Option<String> {
    let mut re = re.to_string();
    'again: for _ in 0..100 {
        let all = all_groups(&re)?;
        let g = all.iter().find(|g| g.name.as_deref() == Some(cap))?.clone();
        let mut levels: Vec<Group> = all
            .iter()
            .filter(|e| e.open < g.open && e.close > g.close)
            .cloned()
            .collect();
        levels.sort_by_key(|e| std::cmp::Reverse(e.open));
        // The group itself (its quantifier), the enclosing groups from
        // the innermost out, then the whole regex.
        let mut chain = vec![g.clone()];
        chain.extend(levels);
        for (k, e) in chain.iter().enumerate() {
            if k > 0 {
                let bars = top_bars(&re, e.body, e.close);
                if !bars.is_empty() {
                    let mut from = e.body;
                    let mut to = e.close;
                    for &bar in &bars {
                        if bar < g.open {
                            from = bar + 1;
                        } else {
                            to = bar;
                            break;
                        }
                    }
                    re = format!("{}{}{}", &re[..e.body], &re[from..to], &re[e.close..]);
                    continue 'again;
                }
            }
            let after = re.get(e.close + 1..).unwrap_or("");
            let cut = if after.starts_with("??") || after.starts_with("*?") {
                2
            } else if after.starts_with('?') || after.starts_with('*') {
                1
            } else if after.starts_with("{0") {
                return None;
            } else {
                0
            };
            if cut > 0 {
                let plus = if after.starts_with('*') { "+" } else { "" };
                re = format!("{}{plus}{}", &re[..=e.close], &re[e.close + 1 + cut..]);
                continue 'again;
            }
        }
        let bars = top_bars(&re, 0, re.len());
        if !bars.is_empty() {
            let mut from = 0;
            let mut to = re.len();
            for &bar in &bars {
                if bar < g.open {
                    from = bar + 1;
                } else {
                    to = bar;
                    break;
                }
            }
            re = re[from..to].to_string();
            continue 'again;
        }
        return Some(re);
    }
    None
}

/// `outer` with the group named `cap`, written `.*` or `.+` (lazy too),
/// replaced by `re` (unanchored ends padded with `.*`).
fn narrow_match(outer: &str, cap: &str, re: &str) -> Option<String> {
    let outer = &make_required(outer, cap)?;
    let gs = groups(outer)?;
    let g = gs.iter().find(|g| g.name.as_deref() == Some(cap))?;
    if !matches!(outer.get(g.body..g.close)?, ".*" | ".+" | ".*?" | ".+?") {
        return None;
    }
    let (head, rest) = match re.strip_prefix('^') {
        Some(r) => ("", r),
        None => (".*?", re),
    };
    let (body, tail) = if ends_anchored(rest) {
        (&rest[..rest.trim_end().len() - 1], "")
    } else {
        (rest, ".*")
    };
    Some(format!(
        "{}{head}(?:{body}){tail}{}",
        &outer[..g.body],
        &outer[g.close..]
    ))
}

fn narrow(outer: &str, cap: &str, lit: &str) -> Option<String> {
    let outer = &make_required(outer, cap)?;
    let gs = groups(outer)?;
    let g = gs.iter().find(|g| g.name.as_deref() == Some(cap))?;
    Some(format!(
        "{}{}{}",
        &outer[..g.body],
        regex::escape(lit),
        &outer[g.close..]
    ))
}

/// `outer` with the group named `cap`, written `\d+`, narrowed to
/// numbers other than 0.
fn narrow_nonzero(outer: &str, cap: &str) -> Option<String> {
    let outer = &make_required(outer, cap)?;
    let gs = groups(outer)?;
    let g = gs.iter().find(|g| g.name.as_deref() == Some(cap))?;
    if outer.get(g.body..g.close)? != "\\d+" {
        return None;
    }
    Some(format!(
        "{}0*[1-9]\\d*{}",
        &outer[..g.body],
        &outer[g.close..]
    ))
}

/// A counter `x` exposed as `x_total` clashes with a family declared
/// `x_total` (mtail allows both): the one without the suffix is renamed.
fn rename_clashes(tr: &mut Tr<'_>, lines: &HashMap<String, usize>) {
    let names: Vec<String> = tr.metrics.iter().map(|m| m.name.clone()).collect();
    for i in 0..tr.metrics.len() {
        let m = &tr.metrics[i];
        if m.kind != "counter" || m.name.ends_with("_total") {
            continue;
        }
        let exposed = format!("{}_total", m.name);
        if !names.contains(&exposed) {
            continue;
        }
        let old = m.name.clone();
        let mut new = if m.labels.is_empty() {
            format!("{old}_count")
        } else {
            format!("{old}_by_{}", m.labels.join("_"))
        };
        while names.contains(&new) || names.contains(&format!("{new}_total")) {
            new.push('_');
        }
        let line = lines.get(&old).copied().unwrap_or(1);
        let note = tr.report(
            line,
            format!(
                "counter \"{old}\" would be exposed as \"{exposed}\", the name of another \
                 family: written as \"{new}\""
            ),
        );
        if let Some(m) = tr.metrics.get_mut(i) {
            m.name = new.clone();
            m.notes.push(note);
        }
        for r in &mut tr.rules {
            for e in &mut r.emits {
                if e.metric == old {
                    e.metric = new.clone();
                }
            }
        }
    }
}

/// Parse and translate one mtail program.
pub(super) fn translate(file: &str, text: &str) -> (Vec<Pipeline>, Vec<Report>) {
    let mut reports = Vec::new();
    let toks = lex(text, file, &mut reports);
    let mut p = Parser {
        toks,
        at: 0,
        depth: 0,
        file,
        reports: &mut reports,
    };
    let prog = p.block(false);
    let mut tr = Tr {
        file,
        consts: HashMap::new(),
        defs: HashMap::new(),
        decls: HashMap::new(),
        metrics: Vec::new(),
        rules: Vec::new(),
        top_emits: Vec::new(),
        top_notes: Vec::new(),
        trailer: Vec::new(),
        reports: Vec::new(),
        caveats: Vec::new(),
        inline_depth: 0,
        inlined: 0,
        deferred: Vec::new(),
        deferred_used: false,
    };
    // Syntax reports first, with notes in the output.
    let syntax: Vec<String> = reports
        .iter()
        .map(|r| format!("not translated: {}:{}: {}", r.file, r.line, r.what))
        .collect();
    tr.top_notes.extend(syntax);
    tr.walk(&prog, &Ctx::default(), None);
    let lines: HashMap<String, usize> = decl_lines(&prog);
    rename_clashes(&mut tr, &lines);
    if !tr.top_emits.is_empty() {
        let emits = std::mem::take(&mut tr.top_emits);
        tr.rules.push(Rule {
            name: format!("{}:every-line", short(file)),
            regex: Some(String::new()),
            emits,
            notes: vec!["statements outside every block run on every line".into()],
            ..Default::default()
        });
    }
    let deferred = std::mem::take(&mut tr.deferred);
    tr.rules.extend(deferred);
    // Rules that record nothing are needed only before an `else` rule.
    let last_else = tr.rules.iter().rposition(|r| r.else_);
    let mut i = 0;
    tr.rules.retain(|r| {
        let keep = !r.emits.is_empty()
            || !r.notes.is_empty()
            || r.stop
            || last_else.is_some_and(|e| i < e)
            || r.else_;
        i += 1;
        keep
    });
    reports.extend(tr.reports);
    reports.sort_by_key(|r| r.line);
    let mut notes = tr.top_notes;
    if tr.rules.is_empty() && !tr.metrics.is_empty() {
        // Declarations with nothing updating them.
        notes.push("no rule updates these metrics".into());
    }
    let name = pipeline_name(file);
    let pipeline = Pipeline {
        source: format!(
            "{{ type = \"file\", paths = [\"/var/log/{name}.log\"] }}   # the log(s) mtail read with --logs"
        ),
        name,
        from_file: file.to_string(),
        notes,
        metrics: tr.metrics,
        patterns: Vec::new(),
        rules: tr.rules,
        trailer: tr.trailer,
        caveats: tr.caveats,
    };
    (vec![pipeline], reports)
}

#[cfg(test)]
mod tests {
    use super::super::{import_text, From};
    use super::*;

    fn run(text: &str) -> (String, Vec<Report>) {
        let i = import_text(From::Mtail, "t.mtail", text);
        // Whatever came in, the output is TOML.
        toml::from_str::<toml::Table>(&i.toml).unwrap_or_else(|e| panic!("{e}\n{}", i.toml));
        (i.toml, i.reports)
    }

    #[test]
    fn counters_labels_consts_and_concatenation() {
        let (t, r) = run(r#"
counter hits by verb, code
counter bytes_sent
gauge depth
histogram latency buckets 0.1, 1, 10
const VERB /(?P<verb>[A-Z]+)/
/^/ + VERB + / (?P<code>\d+) (?P<size>\d+) (?P<ms>\d+)ms q=(\d+)$/ {
  hits[$verb][$code]++
  bytes_sent += $size
  latency = $ms / 1000
  depth = $5
}
"#);
        assert!(r.is_empty(), "{r:?}");
        assert!(t.contains(r#"regex = '^(?P<verb>[A-Z]+) (?P<code>\d+) (?P<size>\d+) (?P<ms>\d+)ms q=(?P<g5>\d+)$'"#), "{t}");
        assert!(
            t.contains(r#"{ metric = 'hits', labels = { verb = '${verb}', code = '${code}' } }"#),
            "{t}"
        );
        assert!(
            t.contains("{ metric = 'bytes_sent', value = 'size' }"),
            "{t}"
        );
        assert!(
            t.contains("{ metric = 'latency', value = 'ms / 1000' }"),
            "{t}"
        );
        assert!(
            // Groups are numbered as in Go, named ones too: `$5` is the fifth.
            t.contains("{ metric = 'depth', value = 'g5' }"),
            "{t}"
        );
        assert!(t.contains("buckets = [0.1, 1, 10]"), "{t}");
    }

    #[test]
    fn nesting_otherwise_and_capture_equality() {
        let (t, r) = run(r#"
counter ok_total
counter get_total
counter other_total
/^(?P<method>\w+) (?P<path>\S+) / {
  $method == "GET" {
    get_total++
  }
  / ok$/ {
    ok_total++
  }
}
otherwise {
  other_total++
}
"#);
        assert!(r.is_empty(), "{r:?}");
        assert!(
            t.contains(r#"regex = '^(?P<method>GET) (?P<path>\S+) '"#),
            "{t}"
        );
        assert!(
            t.contains(r#"regex = '^(?P<method>\w+) (?P<path>\S+) .*? ok$'"#),
            "{t}"
        );
        assert!(t.contains("else = true"), "{t}");
        // The parent rule is kept (empty) so that `otherwise` sees it.
        assert!(
            t.contains(r#"regex = '^(?P<method>\w+) (?P<path>\S+) '"#),
            "{t}"
        );
    }

    #[test]
    fn untranslatable_constructs_are_reported_with_lines() {
        let (t, r) = run(r#"counter a by x
hidden gauge start by pid
/(?P<x>\d+) (?P<t>\S+)/ {
  strptime($t, "2006")
  $x > 10 {
    a[$x]++
  }
  start[$x] = timestamp()
  del start[$x]
  a[strtol($x, 16)]++
}
getfilename() =~ /foo/ {
  a["1"]++
}
"#);
        let lines: Vec<usize> = r.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 4, 5, 8, 9, 10, 12], "{r:?}");
        assert!(
            t.contains("# not translated: t.mtail:5: condition `$x > 10`"),
            "{t}"
        );
        // The getfilename body is still translated.
        assert!(t.contains("labels = { x = '1' }"), "{t}");
    }

    #[test]
    fn a_nested_otherwise_goes_last_behind_stop_rules() {
        let (t, r) = run(r#"counter hits by path
counter other
/^(?P<method>\w+) (?P<path>\S+)$/ {
  $path == "/healthz" {
  }
  otherwise {
    hits[$path]++
  }
}
/x/ {
  other++
}
"#);
        assert!(r.is_empty(), "{r:?}");
        let x = t.find("regex = 'x'").expect("the /x/ rule");
        let stop = t
            .find("regex = '^(?P<method>\\w+) (?P<path>/healthz)$'\nstop = true")
            .unwrap_or_else(|| panic!("{t}"));
        let body = t
            .find("regex = '^(?P<method>\\w+) (?P<path>\\S+)$'\nemit = [\n  { metric = 'hits'")
            .unwrap_or_else(|| panic!("{t}"));
        assert!(x < stop && stop < body, "{t}");
    }

    #[test]
    fn a_narrowed_capture_must_take_part() {
        assert_eq!(
            narrow_nonzero(r"^a ((?P<n>\d+)|-) b$", "n").as_deref(),
            Some(r"^a ((?P<n>0*[1-9]\d*)) b$")
        );
        assert_eq!(
            narrow(r"x(?:, (?P<p>\w+))? y|z", "p", "q").as_deref(),
            Some(r"x(?:, (?P<p>q)) y")
        );
        assert_eq!(
            narrow(r"(?:(?P<p>\w)[|])*", "p", "q").as_deref(),
            Some(r"(?:(?P<p>q)[|])+")
        );
        assert_eq!(narrow(r"(?P<p>a){0,2}", "p", "a"), None);
        assert_eq!(
            narrow_match(r"^(?P<m>.*)$", "m", r"^(?P<g2_1>\w+) x").as_deref(),
            Some(r"^(?P<m>(?:(?P<g2_1>\w+) x).*)$")
        );
        assert_eq!(narrow_match(r"(?P<m>\S+)", "m", "a"), None);
        assert_eq!(
            narrow(r"(?i)(?P<p>a)", "p", "b").as_deref(),
            Some("(?i)(?P<p>b)")
        );
    }

    #[test]
    fn tolower_in_a_label_is_a_transform() {
        let (t, r) = run(r#"counter c by verb
counter d by verb
/^(\w+) (?P<v>\w+)/ {
  c[tolower($1)]++
  d[$1]++
}
"#);
        assert!(t.contains("transform = { g1 = \"lower\" }"), "{t}");
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].what.contains("both as it is and case-changed"),
            "{r:?}"
        );
    }

    #[test]
    fn decorators_are_inlined() {
        let (t, r) = run(r#"counter n
def pre {
  /^\S+ (?P<host>\S+) / {
    next
  }
}
@pre {
  /ERR/ {
    n++
  }
}
"#);
        assert!(r.is_empty(), "{r:?}");
        assert!(t.contains(r#"regex = '^\S+ (?P<host>\S+) .*?ERR'"#), "{t}");
    }

    #[test]
    fn never_panics_on_garbage_or_truncation() {
        let sample = r#"counter a by x
const C /(?P<x>\w+)/
/^/ + C + /$/ { a[$x]++ $x == "q" { a["z"] += 1 } }
otherwise { a["o"]++ }
"#;
        for n in 0..=sample.len() {
            if sample.is_char_boundary(n) {
                let _ = run(&sample[..n]);
            }
        }
        // Deterministic pseudo-random bytes.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"{}()[]/+-=$\"#\n abc123_@,<>!&|counter gauge by otherwise";
        for _ in 0..300 {
            let mut s = Vec::new();
            for _ in 0..(x % 200) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(3) {
                    s.push((x >> 8) as u8);
                } else {
                    s.push(alphabet[(x as usize >> 4) % alphabet.len()]);
                }
            }
            let _ = run(&String::from_utf8_lossy(&s));
        }
        // A decorator that uses itself many times: bounded, not exponential.
        let bomb = format!("def a {{\n{}}}\n@a {{\n}}\n", "@a {\n}\n".repeat(20));
        let (_, r) = run(&bomb);
        assert!(r.iter().any(|r| r.what.contains("too often")), "{r:?}");
        let deep = "(".repeat(100_000);
        let _ = run(&deep);
        let deep = "/a/ {".repeat(10_000);
        let _ = run(&deep);
    }
}
