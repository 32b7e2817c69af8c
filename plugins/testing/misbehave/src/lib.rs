#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
//! Test plugin. Counts lines into `test_lines_total`; a line that contains
//! one of the trigger words makes the call misbehave:
//!
//! - `TRAP`: panic (a trap, with panic=abort);
//! - `LOOP`: spin forever (the host's epoch deadline must end it);
//! - `ALLOC`: allocate without bound (the host's memory limit must end it).
//!
//! Settings: `{"fail_init": "message"}` makes `init` return an error;
//! `{"loop_in_init": true}` spins in `init`.
use serde::Deserialize;
use weir_sdk::{Batch, Families, FamilyId, LogPlugin, Output};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    fail_init: Option<String>,
    #[serde(default)]
    loop_in_init: bool,
}

struct Misbehave {
    lines: FamilyId,
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
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
        let lines = families.counter("test_lines_total", "Lines without a trigger word.", &[]);
        Ok(Misbehave { lines })
    }

    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
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
            }
            out.add(self.lines, &[] as &[&str], 1.0);
        }
        Ok(())
    }
}

weir_sdk::export_log_plugin!(Misbehave);
