//! The agent engine's configuration, in a file of its own so that
//! `agent/build.rs` (which precompiles the built-in plugins) includes the
//! very same code: what it compiles loads in the agent only when both
//! configurations agree (`Component::deserialize` checks the engine's
//! compatibility hash and refuses otherwise).

/// Every setting the agent's wasmtime engine runs with.
pub fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    // Plugins get a small stack: deep recursion traps instead of eating
    // the host thread's stack.
    config.max_wasm_stack(1 << 20);
    config
}
