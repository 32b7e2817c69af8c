//! Test plugin built against `weir:plugin@1.0.0` (a copy of the 0.1.0 WIT
//! under another major version, in `wit/`). It counts lines and is
//! otherwise correct; an agent that loads 0.1.0 must refuse it at load
//! time, naming both versions.
wit_bindgen::generate!({
    path: "wit",
    world: "log-plugin",
});

use exports::weir::plugin::log::{Batch, Guest};
use weir::plugin::types::{Change, Family, MetricKind, Output, Update};

struct OtherMajor;

impl Guest for OtherMajor {
    fn init(_config: String) -> Result<Vec<Family>, String> {
        Ok(vec![Family {
            name: "test_lines_total".into(),
            kind: MetricKind::Counter,
            help: "Lines.".into(),
            unit: String::new(),
            labels: Vec::new(),
            buckets: Vec::new(),
        }])
    }

    fn on_lines(batch: Batch) -> Result<Output, String> {
        Ok(Output {
            updates: vec![Update {
                family: 0,
                labels: Vec::new(),
                change: Change::Add(batch.lines.len() as f64),
            }],
            rejected: 0,
            declare: Vec::new(),
        })
    }
}

export!(OtherMajor);

#[cfg(test)]
mod tests {
    use super::*;

    // Loading it is the test (tests/e2e/hostile.rs); natively, it counts.
    #[test]
    fn counts_lines() {
        let out = OtherMajor::on_lines(Batch {
            origin: "t".into(),
            lines: vec!["a".into(), "b".into()],
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(out.updates[0].change, Change::Add(n) if n == 2.0));
    }
}
