//! Plugins built into the agent binary. agent/build.rs compiles the guest
//! crates in `plugins/` to components and embeds them here.
include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of a built-in plugin.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN_PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}
