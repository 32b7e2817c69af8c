//! Test plugin: every call returns `updates` updates (default ten
//! million), each adding 1 to `test_flood_total`. It uses the WIT bindings
//! directly, without the SDK, whose `Output` would merge them into one:
//! the whole list crosses into the host as the plugin built it.
//!
//! Settings: `updates = N`.
use serde::Deserialize;

wit_bindgen::generate!({
    // The frozen interface the agent loads.
    path: "../../../wit/v0.1.0",
    world: "log-plugin",
});

use exports::weir::plugin::log::{Batch, Guest};
use weir::plugin::host::{log, Level};
use weir::plugin::types::{Change, Family, MetricKind, Output, Update};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "ten_million")]
    updates: u32,
}

fn ten_million() -> u32 {
    10_000_000
}

thread_local! {
    static UPDATES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The list one call returns.
pub fn flood(n: u32) -> Vec<Update> {
    (0..n)
        .map(|_| Update {
            family: 0,
            labels: Vec::new(),
            change: Change::Add(1.0),
        })
        .collect()
}

struct Flood;

impl Guest for Flood {
    fn init(config: String) -> Result<Vec<Family>, String> {
        let cfg: Config = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        UPDATES.with(|u| u.set(cfg.updates));
        Ok(vec![Family {
            name: "test_flood_total".into(),
            kind: MetricKind::Counter,
            help: "One per update the plugin sent.".into(),
            unit: String::new(),
            labels: Vec::new(),
            buckets: Vec::new(),
        }])
    }

    fn on_lines(batch: Batch) -> Result<Output, String> {
        let n = UPDATES.with(|u| u.get());
        if cfg!(target_arch = "wasm32") {
            log(
                Level::Info,
                &format!("sending {n} updates for {} lines", batch.lines.len()),
            );
        }
        Ok(Output {
            updates: flood(n),
            rejected: 0,
            declare: Vec::new(),
        })
    }
}

export!(Flood);

#[cfg(test)]
mod tests {
    #[test]
    fn builds_one_update_per_count() {
        let u = super::flood(3);
        assert_eq!(u.len(), 3);
        assert!(u.iter().all(|u| u.family == 0 && u.labels.is_empty()));
    }
}
