//! The WebAssembly runtime: one engine, compiled plugins, sandboxed
//! instances with a memory limit and a deadline on every call.
pub mod bindings;

use anyhow::{anyhow, bail, Context, Result};
use bindings::{host, types};
use sha2::{Digest, Sha256};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances; call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which source kind a plugin consumes, from the interface it exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `weir:plugin/log`
    Log,
    /// `weir:plugin/http`
    Http,
    /// `weir:plugin/process`
    Process,
}

impl World {
    /// The world's name in WIT.
    pub fn as_str(self) -> &'static str {
        match self {
            World::Log => "log",
            World::Http => "http",
            World::Process => "process",
        }
    }
}

/// The WIT package version this agent implements.
pub const WIT_VERSION: &str = "0.1.0";
/// Largest compiled plugin read back from the cache (a componentize-py
/// plugin compiles to tens of MiB).
const MAX_CACHED_BYTES: u64 = 1 << 30;

/// The engine and linker, shared by every pipeline.
pub struct Runtime {
    engine: Engine,
    /// The engine's configuration, for the short-lived engines that
    /// compile (see [`Runtime::compile`]).
    config: Config,
    linker: Linker<State>,
    cache_dir: Option<crate::state::StateDir>,
    stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled plugin, ready to instantiate.
#[derive(Clone)]
pub struct PluginCode {
    /// Name for messages: a built-in name or the file path.
    pub name: String,
    /// First 12 hex digits of the SHA-256 of the component bytes.
    pub hash: String,
    /// The interface it exports.
    pub world: World,
    component: Component,
}

/// Resource limits of one instance; they are settings of the pipeline.
pub use crate::config::Limits;

/// Per-store state: the sandbox's WASI context (deny-all) and limits.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    tag: Arc<str>,
    log_budget: LogBudget,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// At most this many plugin log lines per second per instance.
const LOG_LINES_PER_SEC: u32 = 20;

struct LogBudget {
    window: Instant,
    used: u32,
    suppressed: u32,
}

impl LogBudget {
    fn allow(&mut self) -> (bool, u32) {
        if self.window.elapsed() >= Duration::from_secs(1) {
            let s = self.suppressed;
            self.window = Instant::now();
            self.used = 0;
            self.suppressed = 0;
            self.used += 1;
            return (true, s);
        }
        if self.used < LOG_LINES_PER_SEC {
            self.used += 1;
            (true, 0)
        } else {
            self.suppressed += 1;
            (false, 0)
        }
    }
}

fn plugin_log(tag: &str, level: host::Level, message: &str) {
    let message: String = message.chars().take(4096).collect();
    match level {
        host::Level::Trace => tracing::trace!(plugin = tag, "{message}"),
        host::Level::Debug => tracing::debug!(plugin = tag, "{message}"),
        host::Level::Info => tracing::info!(plugin = tag, "{message}"),
        host::Level::Warn => tracing::warn!(plugin = tag, "{message}"),
        host::Level::Error => tracing::error!(plugin = tag, "{message}"),
    }
}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        let (ok, suppressed) = self.log_budget.allow();
        if suppressed > 0 {
            tracing::warn!(
                plugin = &*self.tag,
                "{suppressed} plugin log lines suppressed"
            );
        }
        if ok {
            plugin_log(&self.tag, level, &message);
        }
    }
}

/// Memory limiter that remembers it said no, so that the trap that follows
/// is reported as a memory-limit hit rather than a generic trap.
struct Limiter {
    max: usize,
    current: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes reached",
                self.max
            )));
        }
        self.current = desired;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// WASI stdout/stderr of a plugin: complete lines go to the agent log,
/// tagged with the pipeline and rate-limited.
struct PluginOutput {
    tag: Arc<str>,
    stream: &'static str,
}

impl wasmtime_wasi::cli::IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            tag: self.tag.clone(),
            stream: self.stream,
            buf: Vec::new(),
            budget: LogBudget {
                window: Instant::now(),
                used: 0,
                suppressed: 0,
            },
        })
    }
}

struct LineWriter {
    tag: Arc<str>,
    stream: &'static str,
    buf: Vec<u8>,
    budget: LogBudget,
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        this.buf.extend_from_slice(data);
        while let Some(nl) = this.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = this.buf.drain(..=nl).collect();
            let (ok, suppressed) = this.budget.allow();
            if suppressed > 0 {
                tracing::warn!(
                    plugin = &*this.tag,
                    stream = this.stream,
                    "{suppressed} plugin output lines suppressed"
                );
            }
            if ok {
                let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                let text: String = text.chars().take(4096).collect();
                tracing::warn!(plugin = &*this.tag, stream = this.stream, "{text}");
            }
        }
        if this.buf.len() > 64 << 10 {
            this.buf.clear();
        }
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// What `describe` found.
pub struct Description {
    /// The world, or why none fits.
    pub world: Result<World, String>,
    /// Imported interface names.
    pub imports: Vec<String>,
    /// Exported interface names.
    pub exports: Vec<String>,
    /// Whether every import is provided by the agent.
    pub link: Result<(), String>,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The plugin returned an error value.
    Plugin(String),
    /// The plugin trapped (panic, unreachable, bad memory access, ...).
    Trap(String),
    /// The call ran past its deadline.
    Timeout,
    /// The plugin tried to grow memory past its limit.
    Memory,
}

impl CallError {
    /// Label value used in self-metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::Plugin(_) => "plugin_error",
            CallError::Trap(_) => "trap",
            CallError::Timeout => "timeout",
            CallError::Memory => "memory_limit",
        }
    }

    /// Every [`CallError::reason`], for pre-registered series.
    pub const REASONS: [&'static str; 4] = ["trap", "timeout", "memory_limit", "plugin_error"];

    /// Whether the instance can no longer be used.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, CallError::Plugin(_))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Plugin(m) => write!(f, "plugin returned an error: {m}"),
            CallError::Trap(m) => write!(f, "plugin trapped: {m}"),
            CallError::Timeout => write!(f, "plugin call exceeded its deadline"),
            CallError::Memory => write!(f, "plugin exceeded its memory limit"),
        }
    }
}

enum Exports {
    Log(bindings::log::LogPlugin),
    Http(bindings::http::HttpPlugin),
    Process(bindings::process::ProcessPlugin),
}

/// What `init` returned.
pub struct Declaration {
    /// Families, as the plugin sent them.
    pub families: Vec<types::Family>,
    /// For process plugins: the fields to read.
    pub process_fields: Option<bindings::process::exports::weir::plugin::process::Fields>,
}

/// One sandboxed instance of a plugin. Not shared: one thread owns it.
pub struct Instance {
    store: Store<State>,
    exports: Exports,
    limits: Limits,
}

/// Give the memory the compiler freed back to the kernel. Cranelift
/// allocates tens of MiB while it compiles a component and frees it all,
/// but glibc's allocator keeps freed memory in its arenas (one per
/// compiling thread), so a first start on a fresh state directory would
/// keep that much more RSS for the rest of the agent's life than a start
/// with the compiled plugins cached. `malloc_trim(0)` returns the free
/// pages of every arena (glibc >= 2.8, `man 3 malloc_trim`). Other
/// allocators (musl) do not need or have it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns pages the allocator holds free; it
    // takes no pointer and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

// The agent engine's configuration, shared with the compiling child
// process ([`compile_stdin_to_stdout`]) and with `agent/build.rs`.
mod engine_config;
use engine_config::engine_config;

/// The hidden subcommand that [`compile_in_child`] runs.
pub const COMPILE_SUBCOMMAND: &str = "compile-plugin";

/// What a compiling child writes before the compiled bytes, so that output
/// of anything else (a binary without the subcommand) is never taken for
/// compiled code.
const COMPILED_MAGIC: &[u8] = b"weir-compiled-plugin/1\n";

/// The executable that compiles plugins in a child process, once set.
static CHILD_COMPILER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Compile plugins in child processes of `exe`, which must be this weir
/// binary (the agent passes `/proc/self/exe`, the running image even
/// when the file was replaced since). Without this call (library users,
/// tests) plugins compile in the calling process.
pub fn compile_in_child_process(exe: PathBuf) {
    let _ = CHILD_COMPILER.set(exe);
}

/// What a compiling child writes before the compiler's refusal of a
/// component (a message), for the same reason.
const REFUSED_MAGIC: &[u8] = b"weir-compile-refused/1\n";

/// `weir compile-plugin`: read a component from standard input, compile it
/// with the agent's engine configuration, write [`COMPILED_MAGIC`] and the
/// serialized code to standard output; when the compiler refuses the
/// component, [`REFUSED_MAGIC`] and its message, and return false (the
/// process exits 1). Errors: a standard stream fails.
pub fn compile_stdin_to_stdout() -> Result<bool> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .context("reading the component")?;
    let compiled = Engine::new(&engine_config()).and_then(|e| e.precompile_component(&bytes));
    let mut out = std::io::stdout().lock();
    let ok = compiled.is_ok();
    match compiled {
        Ok(code) => out
            .write_all(COMPILED_MAGIC)
            .and_then(|()| out.write_all(&code)),
        Err(e) => out
            .write_all(REFUSED_MAGIC)
            .and_then(|()| out.write_all(format!("{e:#}").as_bytes())),
    }
    .and_then(|()| out.flush())
    .context("writing the compiled plugin")?;
    Ok(ok)
}

/// Run `exe compile-plugin` over `bytes`. The outer error means the child
/// could not do the work (it did not start, died by a signal, or wrote
/// something else): the caller compiles itself. The inner error is the
/// compiler's refusal of the component, final.
fn compile_in_child(exe: &Path, bytes: &[u8]) -> Result<Result<Vec<u8>>> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .arg(COMPILE_SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdin = child.stdin.take();
    let output = std::thread::scope(|s| {
        // Written from a second thread while this one reads, so that
        // neither side waits on a full pipe.
        s.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A child that exits early closes the pipe; its status
                // says why.
                let _ = stdin.write_all(bytes);
            }
        });
        child.wait_with_output()
    })
    .context("waiting for the compiling process")?;
    if let Some(message) = output.stdout.strip_prefix(REFUSED_MAGIC) {
        return Ok(Err(anyhow!("{}", String::from_utf8_lossy(message))));
    }
    match output.stdout.strip_prefix(COMPILED_MAGIC) {
        Some(code) if output.status.success() => Ok(Ok(code.to_vec())),
        _ => Err(anyhow!(
            "the compiling process ended with {} and no compiled plugin: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

impl Runtime {
    /// Build the engine, start the epoch ticker, and link the host
    /// interfaces. `cache_dir` (a checked directory of the state
    /// directory) holds compiled plugins between runs.
    pub fn new(cache_dir: Option<crate::state::StateDir>) -> Result<Arc<Self>> {
        let config = engine_config();
        let engine = Engine::new(&config).map_err(|e| anyhow!("{e}"))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow!("{e}"))?;
        host::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| anyhow!("{e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the epoch ticker")?;
        Ok(Arc::new(Runtime {
            engine,
            config,
            linker,
            cache_dir,
            stop,
        }))
    }

    /// Compile a component (or load it from the cache) and find its world.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<PluginCode> {
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let component = self.compile_cached(&hex, bytes)?;
        let world = self.world_of(&component)?;
        // Resolve every import now, so a plugin that needs what the host
        // does not give fails at load with a clear message.
        self.linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{e}"))
            .context("the plugin imports something the agent does not provide")?;
        Ok(PluginCode {
            name: name.to_string(),
            hash: hex[..12].to_string(),
            world,
            component,
        })
    }

    fn compile_cached(&self, hex: &str, bytes: &[u8]) -> Result<Component> {
        if let Some(code) = crate::builtin::precompiled(bytes) {
            // SAFETY: wasmtime runs this as native code unchecked. It was
            // compiled by agent/build.rs from the built-in plugin these
            // bytes equal, and is part of this binary: as trusted as the
            // agent's own code. The engine checks that it was compiled
            // for a compatible configuration and CPU.
            match unsafe { Component::deserialize(&self.engine, code) } {
                Ok(c) => {
                    crate::builtin::release_resident_pages();
                    return Ok(c);
                }
                Err(e) => tracing::debug!("compiling a built-in plugin at start: {e:#}"),
            }
        }
        let Some(dir) = &self.cache_dir else {
            let serialized = self.compile(bytes)?;
            // SAFETY: produced just now by an engine of this configuration.
            return unsafe { Component::deserialize(&self.engine, &serialized) }
                .map_err(|e| anyhow!("{e:#}"));
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut h);
        let compat = std::hash::Hasher::finish(&h);
        let name = format!("{hex}-{compat:016x}.cwasm");
        let path = dir.path().join(&name);
        match dir.read(&name, MAX_CACHED_BYTES) {
            Ok(Some(cached)) => {
                // SAFETY: wasmtime runs this as native code unchecked. The
                // file passed `StateDir::read`: a regular file owned by the
                // agent's user, writable by no one else, in directories
                // owned by that user and writable by no one else, opened
                // without following links; so only this agent's user (or
                // root) wrote it, and the engine hash in the name matches.
                match unsafe { Component::deserialize(&self.engine, &cached) } {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "discarding an unusable cached plugin, compiling it again: {e}");
                        let _ = dir.discard(&name);
                    }
                }
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(path = %path.display(), "discarding an untrusted cached plugin ({why}), compiling it again");
                if let Err(e) = dir.discard(&name) {
                    tracing::warn!(path = %path.display(), "cannot remove it: {e}");
                }
            }
        }
        let serialized = self.compile(bytes)?;
        if let Err(e) = dir.write(&name, &serialized) {
            tracing::warn!(path = %path.display(), "cannot cache the compiled plugin: {e}");
        }
        // SAFETY: produced just now by an engine of this configuration.
        let component = unsafe { Component::deserialize(&self.engine, &serialized) }
            .map_err(|e| anyhow!("{e:#}"));
        // The compiled bytes, read from the child in growing buffers, are
        // copied into the component's own mapping: give their pages back.
        drop(serialized);
        release_freed_memory();
        component
    }

    /// Compile a component to native code, serialized as
    /// `Engine::precompile_component` makes it, in a child process when the
    /// agent's binary registered itself with [`compile_in_child_process`]:
    /// Cranelift allocates tens of MiB while it compiles, and a process
    /// that exits gives all of it back, where an allocator keeps part of
    /// what it freed (and an engine its compiler's working state) for the
    /// rest of the agent's life. A first start on a fresh state directory
    /// then ends with the RSS of a start with compiled plugins cached
    /// (`bench/first-start-rss.sh`). When the child cannot run (no
    /// `/proc`, a process limit), the same compile runs here, in a
    /// short-lived engine, and the freed memory is trimmed.
    fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        if let Some(exe) = CHILD_COMPILER.get() {
            match compile_in_child(exe, bytes) {
                Ok(Ok(compiled)) => return Ok(compiled),
                Ok(Err(refused)) => return Err(refused),
                Err(e) => tracing::debug!("compiling in this process: {e:#}"),
            }
        }
        let mut config = self.config.clone();
        // Parallel compilation runs on rayon's global pool, whose threads
        // (and their allocator arenas) would stay for the agent's life.
        config.parallel_compilation(false);
        let compiled = Engine::new(&config)
            .and_then(|e| e.precompile_component(bytes))
            .map_err(|e| anyhow!("{e:#}"));
        release_freed_memory();
        compiled
    }

    fn world_of(&self, component: &Component) -> Result<World> {
        let ty = component.component_type();
        let mut found = Vec::new();
        for (name, _) in ty.exports(&self.engine) {
            found.push(name.to_string());
            let Some(rest) = name.strip_prefix("weir:plugin/") else {
                continue;
            };
            let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
            let world = match iface {
                "log" => World::Log,
                "http" => World::Http,
                "process" => World::Process,
                _ => continue,
            };
            let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
            if major_minor(version) != major_minor(WIT_VERSION) {
                bail!(
                    "the plugin is built against weir:plugin@{version}; this agent loads weir:plugin@{WIT_VERSION}"
                );
            }
            return Ok(world);
        }
        bail!(
            "the component exports no weir:plugin interface (log, http or process); it exports: [{}]",
            found.join(", ")
        )
    }

    /// What a component imports and exports, and which world it targets,
    /// without linking it (for `weir inspect`).
    pub fn describe(&self, bytes: &[u8]) -> Result<Description> {
        let component = Component::new(&self.engine, bytes).map_err(|e| anyhow!("{e:#}"))?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let world = self.world_of(&component).map_err(|e| format!("{e:#}"));
        let link = self
            .linker
            .instantiate_pre(&component)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        Ok(Description {
            world,
            imports,
            exports,
            link,
        })
    }

    /// The engine, for tests and tools.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

fn classify(store: &mut Store<State>, e: wasmtime::Error) -> CallError {
    if store.data().limiter.hit {
        return CallError::Memory;
    }
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return CallError::Timeout;
    }
    // One log line: the trap itself ("wasm trap: call stack exhausted"),
    // without the wasm backtrace wasmtime wraps it in, which stays
    // available at debug level for plugin authors.
    if let Some(trap) = e.downcast_ref::<Trap>() {
        tracing::debug!("plugin trap: {e:?}");
        return CallError::Trap(trap.to_string());
    }
    let mut msg = format!("{e:#}").replace('\n', " ");
    if msg.len() > 2000 {
        msg.truncate(2000);
    }
    CallError::Trap(msg)
}

impl Instance {
    /// Instantiate a plugin in a fresh, deny-all sandbox. `tag` names the
    /// pipeline and plugin in log lines.
    pub fn new(rt: &Runtime, code: &PluginCode, limits: Limits, tag: &str) -> Result<Self> {
        let tag: Arc<str> = Arc::from(tag);
        // No preopened directories, no environment, no arguments, no
        // network: the default WasiCtx grants nothing but clocks and
        // randomness. Output goes to the agent log.
        let wasi = WasiCtxBuilder::new()
            .stdout(PluginOutput {
                tag: tag.clone(),
                stream: "stdout",
            })
            .stderr(PluginOutput {
                tag: tag.clone(),
                stream: "stderr",
            })
            .build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                max: limits.memory_bytes,
                current: 0,
                hit: false,
            },
            tag,
            log_budget: LogBudget {
                window: Instant::now(),
                used: 0,
                suppressed: 0,
            },
        };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(limits.call_timeout));
        let exports = match code.world {
            World::Log => Exports::Log(
                bindings::log::LogPlugin::instantiate(&mut store, &code.component, &rt.linker)
                    .map_err(|e| anyhow!("{e:#}"))?,
            ),
            World::Http => Exports::Http(
                bindings::http::HttpPlugin::instantiate(&mut store, &code.component, &rt.linker)
                    .map_err(|e| anyhow!("{e:#}"))?,
            ),
            World::Process => Exports::Process(
                bindings::process::ProcessPlugin::instantiate(
                    &mut store,
                    &code.component,
                    &rt.linker,
                )
                .map_err(|e| anyhow!("{e:#}"))?,
            ),
        };
        Ok(Instance {
            store,
            exports,
            limits,
        })
    }

    fn arm(&mut self) {
        self.store
            .set_epoch_deadline(ticks(self.limits.call_timeout));
    }

    /// Linear memory the instance holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.current
    }

    /// Call `init` with the plugin's settings as JSON text.
    pub fn init(&mut self, config: &str) -> Result<Declaration, CallError> {
        self.arm();
        let r = match &self.exports {
            Exports::Log(p) => p
                .weir_plugin_log()
                .call_init(&mut self.store, config)
                .map(|r| r.map(|families| (families, None))),
            Exports::Http(p) => p
                .weir_plugin_http()
                .call_init(&mut self.store, config)
                .map(|r| r.map(|families| (families, None))),
            Exports::Process(p) => p
                .weir_plugin_process()
                .call_init(&mut self.store, config)
                .map(|r| r.map(|d| (d.families, Some(d.fields)))),
        };
        match r {
            Ok(Ok((families, process_fields))) => Ok(Declaration {
                families,
                process_fields,
            }),
            Ok(Err(msg)) => Err(CallError::Plugin(msg)),
            Err(e) => Err(classify(&mut self.store, e)),
        }
    }

    /// Feed a batch of lines (log world).
    pub fn on_lines(
        &mut self,
        origin: &str,
        lines: &mut Vec<String>,
    ) -> Result<types::Output, CallError> {
        self.arm();
        let Exports::Log(p) = &self.exports else {
            return Err(CallError::Plugin("not a log plugin".into()));
        };
        let batch = bindings::log::exports::weir::plugin::log::Batch {
            origin: origin.to_string(),
            lines: std::mem::take(lines),
        };
        let result = p.weir_plugin_log().call_on_lines(&mut self.store, &batch);
        // The lines are handed back: a failed call can be retried.
        *lines = batch.lines;
        match result {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(m)) => Err(CallError::Plugin(m)),
            Err(e) => Err(classify(&mut self.store, e)),
        }
    }

    /// Feed an HTTP response (http world).
    pub fn on_response(
        &mut self,
        response: &bindings::http::exports::weir::plugin::http::Response,
    ) -> Result<types::Output, CallError> {
        self.arm();
        let Exports::Http(p) = &self.exports else {
            return Err(CallError::Plugin("not an http plugin".into()));
        };
        match p
            .weir_plugin_http()
            .call_on_response(&mut self.store, response)
        {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(m)) => Err(CallError::Plugin(m)),
            Err(e) => Err(classify(&mut self.store, e)),
        }
    }

    /// Feed a process scan (process world).
    pub fn on_scan(
        &mut self,
        scan: &bindings::process::exports::weir::plugin::process::Scan,
    ) -> Result<types::Output, CallError> {
        self.arm();
        let Exports::Process(p) = &self.exports else {
            return Err(CallError::Plugin("not a process plugin".into()));
        };
        match p.weir_plugin_process().call_on_scan(&mut self.store, scan) {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(m)) => Err(CallError::Plugin(m)),
            Err(e) => Err(classify(&mut self.store, e)),
        }
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// Read a plugin file, refusing what cannot be a component.
pub fn read_plugin_file(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!("{} is not a WebAssembly file", path.display());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program that is not weir's compiler is never taken for one: what
    /// it writes is not compiled code, and the caller compiles itself.
    #[test]
    fn output_without_the_marker_is_not_compiled_code() {
        for exe in ["/bin/true", "/bin/cat"] {
            let r = compile_in_child(Path::new(exe), b"\0asm not really");
            assert!(r.is_err(), "{exe}: {r:?}");
        }
        let r = compile_in_child(Path::new("/nonexistent/weir"), b"");
        assert!(r.is_err());
    }

    /// A child that says the compiler refused is final; one killed or
    /// crashed is not (the caller compiles itself).
    #[test]
    fn a_refusal_is_final_a_crash_is_not() {
        let dir = std::env::temp_dir().join(format!("weir-child-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).expect("write");
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .expect("chmod");
            p
        };
        let refuses = script(
            "refuses",
            "printf 'weir-compile-refused/1\\nbad section'; exit 1",
        );
        match compile_in_child(&refuses, b"x") {
            Ok(Err(e)) => assert_eq!(e.to_string(), "bad section"),
            other => panic!("{other:?}"),
        }
        let killed = script("killed", "kill -9 $$");
        assert!(compile_in_child(&killed, b"x").is_err());
        let marked = script("marked", "printf 'weir-compiled-plugin/1\\nCODE'");
        match compile_in_child(&marked, &[0u8; 200_000]) {
            Ok(Ok(code)) => assert_eq!(code, b"CODE"),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
