//! Multi-line records: lines joined after framing, before the batch is
//! built, so that a stack trace reaches the plugin as one string (its lines
//! joined by `\n`) and counts once.
//!
//! A [`Joiner`] takes the framed lines of one stream (one file, one
//! command, stdin) and holds at most one unfinished record. The record is
//! passed on when a line arrives that does not continue it, when the stream
//! ends, or when no line came for the timeout (asked by the source through
//! [`Joiner::deadline`]). Bounded: a record keeps at most `max_lines` lines
//! and `max_bytes` bytes; its further lines are read and dropped (so the
//! trace still counts once), and the record is counted as cut.
//!
//! Checkpoints: while a record is unfinished, the place to resume is its
//! first line ([`Joiner::resume`]), so that a restart reads the record
//! again whole: never split, never doubled.
//!
//! The presets are small state machines rather than one regex each,
//! because whether a line continues a trace depends on the line before it
//! (a Python exception line follows indented frames; a blank line belongs
//! to a Go dump, not to an ordinary line).
use super::framing::Lines;
use crate::config::{MultilinePreset, MultilineRule, MultilineSettings};
use regex::Regex;
use std::sync::LazyLock;
use std::time::Instant;

/// Where a preset stands inside the record being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not inside a trace.
    Plain,
    /// Python: after `Traceback (most recent call last):` or a frame.
    PyFrames,
    /// Python: right after the exception line that ends a traceback.
    PyException,
    /// Python: after a chaining message or a blank line between tracebacks.
    PyChain,
    /// Go: inside a panic's or fatal error's dump.
    GoTrace,
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this file, tested below.
    Regex::new(pattern).unwrap_or_else(|e| panic!("preset regex {pattern}: {e}"))
}

/// Java: indented lines (`\tat ...`, `\t... 3 more`, `\tSuppressed: ...`),
/// `Caused by: ...`, and an exception's class line (`java.lang.X: msg`,
/// `com.example.FooError`) after the message that logged it.
static JAVA_CONTINUE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:[ \t]+\S|Caused by: |(?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*(?:Exception|Error|Throwable)(?::|$))",
    )
});
/// Python: the line that ends a traceback (`ValueError: bad`, `KeyError`,
/// `mod.sub.CustomError: x`).
static PY_EXCEPTION: LazyLock<Regex> = LazyLock::new(|| re(r"^[A-Za-z_][\w.]*(?::.*)?$"));
/// Go: a frame's function line (`main.main()`, `net/http.(*conn).serve(0xc0)`).
static GO_FUNCTION: LazyLock<Regex> = LazyLock::new(|| re(r"^\S+\(.*\)$"));
/// Go: a goroutine's header (`goroutine 1 [running]:`).
static GO_GOROUTINE: LazyLock<Regex> = LazyLock::new(|| re(r"^goroutine \d+ .*\]:$"));

const PY_TRACEBACK: &str = "Traceback (most recent call last):";
const PY_CHAINS: [&str; 2] = [
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
];

fn indented(line: &str) -> bool {
    line.starts_with([' ', '\t']) && !line.trim().is_empty()
}

/// The state a record starting with `line` is in.
fn first_state(preset: Option<MultilinePreset>, line: &str) -> State {
    match preset {
        Some(MultilinePreset::Python) if line.trim_end() == PY_TRACEBACK => State::PyFrames,
        Some(MultilinePreset::Go)
            if line.starts_with("panic: ") || line.starts_with("fatal error: ") =>
        {
            State::GoTrace
        }
        _ => State::Plain,
    }
}

/// Whether `line` continues a record in `state`, and the state after it.
fn python_step(state: State, line: &str) -> Option<State> {
    let line = line.trim_end();
    if line == PY_TRACEBACK {
        return Some(State::PyFrames);
    }
    match state {
        State::PyFrames if indented(line) => Some(State::PyFrames),
        State::PyFrames if PY_EXCEPTION.is_match(line) => Some(State::PyException),
        State::PyException | State::PyChain if line.is_empty() || PY_CHAINS.contains(&line) => {
            Some(State::PyChain)
        }
        _ => None,
    }
}

fn go_step(state: State, line: &str) -> Option<State> {
    if state != State::GoTrace || line.starts_with("panic: ") || line.starts_with("fatal error: ") {
        return None;
    }
    let part = line.trim().is_empty()
        || line.starts_with([' ', '\t'])
        || line.starts_with("created by ")
        || line.starts_with("[signal ")
        || line.starts_with("runtime stack:")
        || line.starts_with("...")
        || GO_GOROUTINE.is_match(line)
        || GO_FUNCTION.is_match(line);
    part.then_some(State::GoTrace)
}

/// Joins framed lines into records; see the module documentation.
#[derive(Debug)]
pub struct Joiner {
    settings: MultilineSettings,
    /// The unfinished record, its lines joined by `\n`.
    record: String,
    /// Lines in `record` (0: no record).
    lines: usize,
    /// Where its first line starts in the stream.
    start: u64,
    /// It dropped lines or bytes (past `max_lines` or `max_bytes`).
    dropped: bool,
    state: State,
    /// When its last line came.
    touched: Instant,
}

impl Joiner {
    /// A joiner with these settings.
    pub fn new(settings: MultilineSettings) -> Self {
        Joiner {
            settings,
            record: String::new(),
            lines: 0,
            start: 0,
            dropped: false,
            state: State::Plain,
            touched: Instant::now(),
        }
    }

    fn preset(&self) -> Option<MultilinePreset> {
        match self.settings.rule {
            MultilineRule::Preset(p) => Some(p),
            _ => None,
        }
    }

    /// Whether `line` continues the unfinished record; the preset's state
    /// after it when it does.
    fn step(&self, line: &str) -> Option<State> {
        match &self.settings.rule {
            MultilineRule::Start(re) => (!re.is_match(line)).then_some(State::Plain),
            MultilineRule::Continue(re) => re.is_match(line).then_some(State::Plain),
            MultilineRule::Preset(MultilinePreset::Java) => {
                JAVA_CONTINUE.is_match(line).then_some(State::Plain)
            }
            MultilineRule::Preset(MultilinePreset::Python) => python_step(self.state, line),
            MultilineRule::Preset(MultilinePreset::Go) => go_step(self.state, line),
        }
    }

    /// Join `framed` lines; returns the records they completed, each at
    /// the offset of its first line. Lines cut by the framer stay counted
    /// in the result's `cut`.
    pub fn join(&mut self, framed: Lines) -> Lines {
        let mut out = Lines {
            cut: framed.cut,
            ..Lines::default()
        };
        if framed.is_empty() {
            return out;
        }
        for (line, offset) in framed.lines.into_iter().zip(framed.offsets) {
            if self.lines > 0 {
                if let Some(state) = self.step(&line) {
                    self.state = state;
                    self.append(&line);
                    continue;
                }
                self.emit(&mut out);
            }
            self.state = first_state(self.preset(), &line);
            self.start = offset;
            if line.len() <= self.settings.max_bytes {
                // Most records are one line: moved in, not copied.
                self.record = line;
                self.lines = 1;
            } else {
                self.lines = 0;
                self.record.clear();
                self.append(&line);
            }
        }
        self.touched = Instant::now();
        out
    }

    /// Add a line to the record, within `max_lines` and `max_bytes`.
    fn append(&mut self, line: &str) {
        let max_bytes = self.settings.max_bytes;
        if self.lines >= self.settings.max_lines.max(1) {
            self.dropped = true;
            return;
        }
        let sep = usize::from(self.lines > 0);
        let room = max_bytes.saturating_sub(self.record.len() + sep);
        if self.lines > 0 && room == 0 {
            self.dropped = true;
            return;
        }
        if sep == 1 {
            self.record.push('\n');
        }
        if line.len() <= room {
            self.record.push_str(line);
        } else {
            let mut end = room;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            self.record.push_str(&line[..end]);
            self.dropped = true;
        }
        self.lines += 1;
    }

    fn emit(&mut self, out: &mut Lines) {
        if self.lines == 0 {
            return;
        }
        out.lines.push(std::mem::take(&mut self.record));
        out.offsets.push(self.start);
        if std::mem::take(&mut self.dropped) {
            out.records_cut += 1;
        }
        self.lines = 0;
        self.state = State::Plain;
    }

    /// Pass the unfinished record on (the stream ended, or it timed out).
    pub fn flush(&mut self) -> Lines {
        let mut out = Lines::default();
        self.emit(&mut out);
        out
    }

    /// When the unfinished record is to be passed on if no line comes;
    /// `None` without one.
    pub fn deadline(&self) -> Option<Instant> {
        (self.lines > 0).then(|| self.touched + self.settings.timeout)
    }

    /// Where the unfinished record starts: the stream must be read again
    /// from there to pass it on whole. `None` without one.
    pub fn pending_start(&self) -> Option<u64> {
        (self.lines > 0).then_some(self.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(rule: MultilineRule) -> MultilineSettings {
        MultilineSettings {
            rule,
            max_lines: 500,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(1),
        }
    }

    /// Records of `text` (lines at `\n`), the stream ending after it.
    fn records(s: MultilineSettings, text: &str) -> Vec<String> {
        let mut j = Joiner::new(s);
        let mut framed = Lines::default();
        let mut at = 0u64;
        for l in text.split_terminator('\n') {
            framed.lines.push(l.to_string());
            framed.offsets.push(at);
            at += l.len() as u64 + 1;
        }
        let mut out = j.join(framed).lines;
        out.extend(j.flush().lines);
        out
    }

    fn preset(p: MultilinePreset) -> MultilineSettings {
        settings(MultilineRule::Preset(p))
    }

    pub(crate) const JAVA: &str = "\
2026-12-03 10:00:00 INFO started
2026-12-03 10:00:01 ERROR request failed
java.lang.IllegalStateException: boom
\tat com.example.App.handle(App.java:42)
\tat com.example.App.main(App.java:10)
Caused by: java.io.IOException: disk
\tat com.example.Disk.read(Disk.java:7)
\t... 2 more
2026-12-03 10:00:02 INFO next
";

    #[test]
    fn java_traces_join_their_message_line() {
        let r = records(preset(MultilinePreset::Java), JAVA);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[1].starts_with("2026-12-03 10:00:01 ERROR"));
        assert!(r[1].ends_with("\t... 2 more"));
        assert_eq!(r[1].lines().count(), 7);
        assert_eq!(r[2], "2026-12-03 10:00:02 INFO next");
    }

    #[test]
    fn python_tracebacks_chained_and_after_their_message() {
        let text = "\
INFO:app:ok
ERROR:app:failed
Traceback (most recent call last):
  File \"a.py\", line 3, in <module>
    f()
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"a.py\", line 5, in <module>
    g()
    ^^^
ValueError: bad
INFO:app:next
Traceback (most recent call last):
  File \"b.py\", line 1, in <module>
RuntimeError
WARNING: a line that looks like an exception line
";
        let r = records(preset(MultilinePreset::Python), text);
        assert_eq!(r.len(), 4, "{r:#?}");
        assert!(r[1].starts_with("ERROR:app:failed\nTraceback"));
        assert!(r[1].ends_with("ValueError: bad"));
        assert_eq!(r[1].lines().count(), 13);
        // A traceback belongs to the line before it, whatever that is
        // (`logging.exception` writes its message first).
        assert!(r[2].starts_with("INFO:app:next\nTraceback") && r[2].ends_with("RuntimeError"));
        assert!(r[3].starts_with("WARNING"));
        // At a stream's start, a traceback is a record of its own.
        let r = records(
            preset(MultilinePreset::Python),
            &text[text.find("Traceback").unwrap_or(0)..],
        );
        assert!(r[0].starts_with("Traceback") && r[0].ends_with("ValueError: bad"));
    }

    #[test]
    fn go_panics_with_goroutine_dumps() {
        let text = "\
2026/12/03 10:00:00 listening on :8080
panic: runtime error: index out of range [5] with length 3

goroutine 1 [running]:
main.handler(0xc000012345, {0x4b2f00, 0x3})
\t/src/main.go:12 +0x1d
net/http.(*conn).serve(0xc0000a4000)
\t/usr/local/go/src/net/http/server.go:2092 +0x5d0
created by net/http.(*Server).Serve in goroutine 6
\t/usr/local/go/src/net/http/server.go:3285 +0x4b4
2026/12/03 10:00:01 restarted

a blank line above is its own record
";
        let r = records(preset(MultilinePreset::Go), text);
        assert_eq!(r.len(), 5, "{r:#?}");
        assert!(r[1].starts_with("panic: ") && r[1].ends_with("+0x4b4"));
        assert_eq!(r[1].lines().count(), 9);
        assert_eq!(r[2], "2026/12/03 10:00:01 restarted");
        assert_eq!(r[3], "");
    }

    /// Many records framed at once are split at every start (a peer
    /// bundled lines written together into one record).
    #[test]
    fn start_rule_splits_records_written_together() {
        let s = settings(MultilineRule::Start(re(r"^\d{4}-")));
        let r = records(s, "2026-a\n x\n2026-b\n2026-c\n y\n z\n");
        assert_eq!(r, ["2026-a\n x", "2026-b", "2026-c\n y\n z"]);
        let s = settings(MultilineRule::Continue(re(r"^\s")));
        let r = records(s, " orphan\na\n x\nb\n");
        assert_eq!(r, [" orphan", "a\n x", "b"]);
    }

    #[test]
    fn max_lines_and_max_bytes_drop_the_rest_of_a_record() {
        let mut s = settings(MultilineRule::Continue(re(r"^\s")));
        s.max_lines = 3;
        let mut j = Joiner::new(s.clone());
        let framed = Lines {
            lines: ["a", " 1", " 2", " 3", " 4", "b"]
                .map(String::from)
                .to_vec(),
            offsets: vec![0, 2, 5, 8, 11, 14],
            ..Lines::default()
        };
        let out = j.join(framed);
        assert_eq!(out.lines, ["a\n 1\n 2"]);
        assert_eq!(out.records_cut, 1);
        assert_eq!(j.pending_start(), Some(14));
        s.max_lines = 100;
        s.max_bytes = 8;
        let r = records(s, "abcdef\n 12345\nnext\n");
        assert_eq!(r, ["abcdef\n ", "next"]);
    }

    #[test]
    fn deadline_and_pending_start_follow_the_unfinished_record() {
        let mut j = Joiner::new(preset(MultilinePreset::Java));
        assert!(j.deadline().is_none());
        let framed = Lines {
            lines: vec!["x ERROR".into(), "\tat a".into()],
            offsets: vec![10, 18],
            ..Lines::default()
        };
        assert!(j.join(framed).is_empty());
        assert_eq!(j.pending_start(), Some(10));
        assert!(j.deadline().is_some());
        assert_eq!(j.flush().lines, ["x ERROR\n\tat a"]);
        assert!(j.deadline().is_none() && j.pending_start().is_none());
    }
}
