#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
//! Test plugin. Counts lines into `test_lines_total`; a line that contains
//! one of the trigger words makes the call misbehave:
//!
//! - `TRAP`: panic (a trap, with panic=abort);
//! - `LOOP`: spin forever (the host's epoch deadline must end it);
//! - `ALLOC`: allocate without bound (the host's memory limit must end it);
//! - `RECURSE`: recurse without bound (the host's wasm stack limit must
//!   end it);
//! - `INVALID`: besides counting the line, send updates the host must
//!   refuse: a label value too many, a negative counter add, NaN, +Inf, and
//!   a family index that was never declared (one of each per call);
//! - `LONG`: with `by_line`, count the line under a label value of 1 MiB;
//! - `PROBE <port>`: try to read a file, an environment variable and the
//!   arguments, and to connect to 127.0.0.1:<port> and bind a socket, all
//!   of which the sandbox must deny; counted in
//!   `test_probe_total{what,result}` and told on stderr;
//! - `PRINT <n>`: write `n` lines to stdout and `n` to stderr.
//!
//! Settings (the pipeline's `config`, all optional):
//! - `fail_init = "message"`: `init` returns that error;
//! - `loop_in_init = true`: `init` spins forever;
//! - `trap_always = true`: every call traps, whatever its lines;
//! - `help_bytes = N`: the help text of `test_lines_total` is N bytes long;
//! - `by_line = true`: also count each line under its own label value in
//!   `test_by_line_total{line}` (a label-cardinality bomb).
use serde::Deserialize;
use weir_sdk::{Batch, Families, FamilyId, LogPlugin, Output};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    fail_init: Option<String>,
    #[serde(default)]
    loop_in_init: bool,
    #[serde(default)]
    trap_always: bool,
    #[serde(default)]
    help_bytes: usize,
    #[serde(default)]
    by_line: bool,
}

struct Misbehave {
    lines: FamilyId,
    by_line: Option<FamilyId>,
    probes: FamilyId,
    trap_always: bool,
    calls: u64,
}

const NO_LABELS: &[&str] = &[];

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Recurse without bound, with small frames that live on the wasm stack
/// (not in linear memory), so the host's stack limit is what ends it.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    std::hint::black_box(recurse(depth + 1)).wrapping_mul(31) ^ depth
}

/// What one sandbox probe found: `Ok(what it got)` means the sandbox let
/// it through; `Err(why)` that it was denied.
fn probes(port: u16) -> Vec<(&'static str, Result<String, String>)> {
    let file = std::fs::read_to_string("/etc/passwd")
        .map(|t| format!("{} bytes", t.len()))
        .map_err(|e| e.to_string());
    let env = match std::env::vars().next() {
        Some((k, _)) => Ok(format!("variable {k}")),
        None => match std::env::var("HOME") {
            Ok(v) => Ok(format!("HOME={v}")),
            Err(e) => Err(e.to_string()),
        },
    };
    let args = match std::env::args().count() {
        0 => Err("no arguments".to_string()),
        n => Ok(format!("{n} arguments")),
    };
    let dir = std::fs::read_dir("/")
        .map(|d| format!("{} entries in /", d.count()))
        .map_err(|e| e.to_string());
    let connect = std::net::TcpStream::connect(("127.0.0.1", port))
        .map(|s| format!("connected from {:?}", s.local_addr()))
        .map_err(|e| e.to_string());
    let bind = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map(|l| format!("bound {:?}", l.local_addr()))
        .map_err(|e| e.to_string());
    vec![
        ("file", file),
        ("env", env),
        ("args", args),
        ("dir", dir),
        ("connect", connect),
        ("bind", bind),
    ]
}

/// The number after a trigger word, e.g. `PRINT 100`.
fn arg_after(line: &str, word: &str) -> Option<u64> {
    let rest = &line[line.find(word)? + word.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

impl LogPlugin for Misbehave {
    fn init(config: &str, families: &mut Families) -> Result<Self, String> {
        let cfg: Config = serde_json::from_str(config).map_err(|e| e.to_string())?;
        if let Some(msg) = cfg.fail_init {
            return Err(msg);
        }
        if cfg.loop_in_init {
            spin();
        }
        let help = if cfg.help_bytes > 0 {
            "h".repeat(cfg.help_bytes)
        } else {
            "Lines without a trigger word.".to_string()
        };
        let lines = families.counter("test_lines_total", &help, &[]);
        let by_line = cfg
            .by_line
            .then(|| families.counter("test_by_line_total", "Lines by their text.", &["line"]));
        let probes = families.counter(
            "test_probe_total",
            "Sandbox probes by what was tried and whether it was denied.",
            &["what", "result"],
        );
        Ok(Misbehave {
            lines,
            by_line,
            probes,
            trap_always: cfg.trap_always,
            calls: 0,
        })
    }

    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
        self.calls += 1;
        if self.trap_always {
            panic!("asked to trap on every call");
        }
        for line in &batch.lines {
            if line.contains("TRAP") {
                panic!("asked to trap");
            } else if line.contains("LOOP") {
                spin();
            } else if line.contains("ALLOC") {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            } else if line.contains("RECURSE") {
                let n = recurse(0);
                out.add(self.lines, NO_LABELS, n as f64);
            } else if line.contains("INVALID") {
                // Each on a series of its own: the SDK merges updates to
                // one series, and must not fold these into valid ones.
                out.add(self.lines, &["one too many"], 1.0);
                out.add(self.probes, &["invalid", "negative"], -1.0);
                out.set(self.probes, &["invalid", "nan"], f64::NAN);
                out.add(self.probes, &["invalid", "infinite"], f64::INFINITY);
                out.add(FamilyId(99), NO_LABELS, 1.0);
            } else if line.contains("PROBE") {
                let port = arg_after(line, "PROBE").unwrap_or(9) as u16;
                for (what, result) in probes(port) {
                    let verdict = if result.is_ok() { "allowed" } else { "denied" };
                    eprintln!("probe {what}: {verdict}: {}", result.unwrap_or_else(|e| e));
                    out.add(self.probes, &[what, verdict], 1.0);
                }
            } else if line.contains("PRINT") {
                let n = arg_after(line, "PRINT").unwrap_or(1);
                for i in 0..n {
                    println!("to stdout {i} of {n}");
                    eprintln!("to stderr {i} of {n}");
                }
            }
            if let Some(by_line) = self.by_line {
                if line.contains("LONG") {
                    // Unique per call, so each LONG line is a new series.
                    let mut value = format!("{} {} ", self.calls, line);
                    value.extend(std::iter::repeat_n(
                        'x',
                        (1 << 20) - value.len().min(1 << 20),
                    ));
                    out.add(by_line, &[value.as_str()], 1.0);
                } else {
                    out.add(by_line, &[line.as_str()], 1.0);
                }
            }
            out.add(self.lines, NO_LABELS, 1.0);
        }
        Ok(())
    }
}

weir_sdk::export_log_plugin!(Misbehave);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_and_declares_what_the_settings_ask() {
        let mut f = Families::default();
        let mut p = Misbehave::init(r#"{"by_line": true, "help_bytes": 10}"#, &mut f)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.len(), 3);
        assert_eq!(f.name(FamilyId(1)), Some("test_by_line_total"));
        let mut out = Output::new();
        let batch = Batch {
            origin: "t".into(),
            lines: vec!["a".into(), "b".into(), "a".into()],
        };
        p.on_lines(&batch, &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        // test_lines_total merged into one update, plus two by_line series.
        assert_eq!(out.len(), 3);
        assert_eq!(arg_after("x PRINT 30 y", "PRINT"), Some(30));
        assert!(Misbehave::init(r#"{"fail_init": "no"}"#, &mut Families::default()).is_err());
    }
}
