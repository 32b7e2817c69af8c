//! Every `bindgen!` of the host, in one place.
//!
//! Why the options are what they are:
//! - One module per world. The log world is generated first and owns the
//!   shared `types` and `host` interfaces; the http and process worlds map
//!   those onto it with `with`, so one `Family`/`Update` type serves all
//!   three and one `Host` impl is linked once.
//! - Synchronous bindings: each pipeline's plugin runs on its own thread,
//!   and epoch interruption bounds every call, so async buys nothing.
//! - Imports are not trappable: `host.log` cannot fail.
//!
//! When `weir:plugin@0.2.0` ships, its bindings go in a sibling module and
//! these stay, with `From` conversions into the newest types.

/// `weir:plugin@0.1.0`, world `log-plugin` (and the shared interfaces).
pub mod log {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "log-plugin",
    });
}

/// `weir:plugin@0.1.0`, world `http-plugin`.
pub mod http {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "http-plugin",
        with: {
            "weir:plugin/types": super::log::weir::plugin::types,
            "weir:plugin/host": super::log::weir::plugin::host,
        },
    });
}

/// `weir:plugin@0.1.0`, world `process-plugin`.
pub mod process {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "process-plugin",
        with: {
            "weir:plugin/types": super::log::weir::plugin::types,
            "weir:plugin/host": super::log::weir::plugin::host,
        },
    });
}

pub use log::weir::plugin::host;
pub use log::weir::plugin::types;
