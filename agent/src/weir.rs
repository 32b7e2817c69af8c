//! weir: a telemetry agent. Sources on the host read logs, HTTP endpoints
//! and the process table; WebAssembly plugins turn what was read into
//! metric updates; one Prometheus endpoint serves everything.
//!
//! The data path, module by module: [`config`] (parse, validate, diff) →
//! [`sources`] (file tail, ...) → [`runtime`] (engine, instances, limits)
//! → [`store`] (series state) → [`server`] (HTTP endpoint), with
//! [`pipeline`] running one source and plugin, and [`agent`] owning the
//! set of pipelines and reloads.
pub mod agent;
pub mod builtin;
pub mod config;
pub mod exposition;
pub mod pipeline;
pub mod reload;
pub mod remote_write;
pub mod runtime;
pub mod server;
pub mod sources;
pub mod stats;
pub mod store;
pub mod tools;
