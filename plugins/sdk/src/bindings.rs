//! All `generate!` calls of the SDK, one module per world.
//!
//! Options, and why:
//! - `path` points at the frozen WIT folder this SDK version targets.
//! - `runtime_path` lets plugin crates depend on `weir-sdk` alone.
//! - `pub_export_macro` + `export_macro_name` let the SDK's own macros
//!   (`export_log_plugin!`, ...) expand the generated export glue inside
//!   the plugin crate.
//! - `with` makes the http and process worlds reuse the `types` and `host`
//!   bindings of the log world, so one `Family` / `Output` type serves all.
#![allow(missing_docs)]

pub mod log_world {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "log-plugin",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_log",
        default_bindings_module: "weir_sdk::__private::log_world",
    });
}

pub mod http_world {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "http-plugin",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_http",
        default_bindings_module: "weir_sdk::__private::http_world",
        with: {
            "weir:plugin/types@0.1.0": crate::bindings::log_world::weir::plugin::types,
            "weir:plugin/host@0.1.0": crate::bindings::log_world::weir::plugin::host,
        },
    });
}

pub mod process_world {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "process-plugin",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
        pub_export_macro: true,
        export_macro_name: "export_process",
        default_bindings_module: "weir_sdk::__private::process_world",
        with: {
            "weir:plugin/types@0.1.0": crate::bindings::log_world::weir::plugin::types,
            "weir:plugin/host@0.1.0": crate::bindings::log_world::weir::plugin::host,
        },
    });
}
