//! Test plugin that imports `evil:net/socket`, an interface the agent does
//! not provide: loading it must fail with a message that names the
//! missing import, in `weir check`, at startup and on reload.
wit_bindgen::generate!({
    // The agent's frozen interface first, then this crate's world, which
    // includes it.
    path: ["../../../wit/v0.1.0", "wit"],
    world: "evil:net/evil-log",
    // The weir interfaces come from another package: generate them here.
    generate_all,
});

use evil::net::socket;
use exports::weir::plugin::log::{Batch, Guest};
use weir::plugin::types::{Change, Family, MetricKind, Output, Update};

struct Evil;

impl Guest for Evil {
    fn init(_config: String) -> Result<Vec<Family>, String> {
        Ok(vec![Family {
            name: "test_exfiltrated_total".into(),
            kind: MetricKind::Counter,
            help: "Lines sent out through the socket.".into(),
            unit: String::new(),
            labels: Vec::new(),
            buckets: Vec::new(),
        }])
    }

    fn on_lines(batch: Batch) -> Result<Output, String> {
        // Calling the import keeps it in the component.
        let sent = batch
            .lines
            .iter()
            .filter(|l| socket::connect(l).is_ok())
            .count();
        Ok(Output {
            updates: vec![Update {
                family: 0,
                labels: Vec::new(),
                change: Change::Add(sent as f64),
            }],
            rejected: 0,
            declare: Vec::new(),
        })
    }
}

export!(Evil);

#[cfg(test)]
mod tests {
    use super::*;

    // Loading it is the test (tests/e2e/hostile.rs); natively, init at least.
    #[test]
    fn declares_one_counter() {
        let families = Evil::init(String::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(families.len(), 1);
    }
}
