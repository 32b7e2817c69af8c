//! The `weir` command.
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weir::agent::Agent;
use weir::config;
use weir::reload::Reloader;
use weir::runtime::Runtime;

// Output that never panics: `weir test ... | head` closes stdout early,
// and a closed pipe must not become a backtrace. A reader that went away
// (EPIPE) is not an error; any other write error (a full disk, /dev/full)
// is kept, and `main` reports it and exits 1, so output is never lost
// without a word.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($t)*) {
            write_failed(e);
        }
    }};
}
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            write_failed(e);
        }
    }};
}

/// The first error writing standard output, other than a closed pipe.
static WRITE_ERROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn write_failed(e: std::io::Error) {
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        let _ = WRITE_ERROR.set(e.to_string());
    }
}

/// Flush standard output; the command's exit code, or 1 with a one-line
/// reason when some of its output could not be written.
fn finish_output(code: ExitCode) -> ExitCode {
    use std::io::Write as _;
    if let Err(e) = std::io::stdout().lock().flush() {
        write_failed(e);
    }
    match WRITE_ERROR.get() {
        Some(e) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "error: cannot write to standard output: {e}"
            );
            ExitCode::FAILURE
        }
        None => code,
    }
}

macro_rules! err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Sources on the host, WebAssembly plugins, one Prometheus endpoint."
)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (or a tracing filter).
    #[arg(long, global = true, default_value = "info", env = "WEIR_LOG")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Directory of pipeline files (*.toml).
        #[arg(long, short = 'c', env = "WEIR_CONFIG_DIR")]
        config_dir: PathBuf,
        /// Listen address; overrides [server] listen. Default 127.0.0.1:9731.
        #[arg(long, env = "WEIR_LISTEN")]
        listen: Option<SocketAddr>,
        /// Where checkpoints and compiled plugins are kept; overrides
        /// [agent] state_dir. Default: $STATE_DIRECTORY, else
        /// $XDG_STATE_HOME/weir or ~/.local/state/weir.
        #[arg(long, env = "WEIR_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Validate a config directory, running every plugin's init; exit
    /// non-zero with every error found.
    Check {
        /// Directory of pipeline files (*.toml).
        #[arg(long, short = 'c')]
        config_dir: PathBuf,
    },
    /// Run one plugin over sample input on stdin and print the exposition.
    ///
    /// Either a pipeline of a config directory as configured
    /// (`--config-dir DIR --pipeline NAME`: its plugin, settings, limits,
    /// constant labels, series cap, line framing), or one plugin with its
    /// settings (`--plugin P [--plugin-config F] [--source S]`). The output
    /// ends with the rejected, refused and failed counts as comment lines.
    Test {
        /// Config directory holding the pipeline (with --pipeline).
        #[arg(long, short = 'c', requires = "pipeline", conflicts_with_all = ["plugin", "plugin_config", "source", "memory_limit"])]
        config_dir: Option<PathBuf>,
        /// Pipeline to run (with --config-dir).
        #[arg(long, requires = "config_dir")]
        pipeline: Option<String>,
        /// Built-in plugin name or path to a .wasm.
        #[arg(long, required_unless_present = "config_dir")]
        plugin: Option<String>,
        /// Plugin settings: a TOML file, or JSON if it ends in .json.
        #[arg(long)]
        plugin_config: Option<PathBuf>,
        /// What the input is (with --plugin): log lines, an HTTP response
        /// body, or (process) nothing: a live scan of this host. With
        /// --pipeline the pipeline's source says.
        #[arg(long, value_enum)]
        source: Option<SourceKind>,
        /// Input file; default: standard input.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Compare with this file instead of printing; WEIR_BLESS=1
        /// rewrites it.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Memory limit of the plugin, e.g. 64MiB (with --plugin; a
        /// pipeline has its own).
        #[arg(long)]
        memory_limit: Option<String>,
    },
    /// Show what a plugin targets, imports and exports, and the families
    /// it declares for a config.
    Inspect {
        /// Built-in plugin name or path to a .wasm.
        plugin: String,
        /// Plugin settings: a TOML file, or JSON if it ends in .json.
        #[arg(long)]
        plugin_config: Option<PathBuf>,
    },
    /// Read a password on stdin and print its bcrypt hash, for
    /// [server.auth] basic.
    HashPassword {
        /// bcrypt cost.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// The agent's saved state: list file checkpoints, or forget one
    /// pipeline's so that its files are read again as start_at says.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// Write a weir pipeline file (regex-log rules) from mtail programs
    /// or a grok_exporter config. What cannot be translated is reported
    /// on stderr with file and line and marked in the output; the exit
    /// code is 0 when everything translated, 2 when something was
    /// reported (the file is written either way).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Plugin authoring.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Internal: compile the component on stdin for this agent's engine
    /// and write the code to stdout (the agent runs this in a child
    /// process, see `runtime::compile_in_child_process`).
    #[command(name = "compile-plugin", hide = true)]
    CompilePlugin,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a self-contained plugin project (SDK and WIT included) that
    /// builds, has a test, sample input and a pipeline to run it.
    New {
        /// Project name: lowercase letters, digits, '-' and '_'.
        name: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Language of the plugin.
        #[arg(long, value_enum, default_value_t = PluginLang::Rust)]
        lang: PluginLang,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// mtail programs (*.mtail); each becomes a pipeline.
    Mtail {
        /// The programs.
        #[arg(required = true)]
        programs: Vec<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// A grok_exporter config file (YAML, config_version 2 or 3).
    GrokExporter {
        /// The config file.
        config: PathBuf,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// List every pipeline's file checkpoints: file, offset, what is left.
    List {
        #[command(flatten)]
        at: StateDir,
    },
    /// Forget one pipeline's file checkpoints (stop the agent first).
    Reset {
        /// Pipeline name.
        pipeline: String,
        #[command(flatten)]
        at: StateDir,
    },
}

#[derive(clap::Args)]
struct StateDir {
    /// State directory; default: as `weir run` finds it.
    #[arg(long, env = "WEIR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Config directory whose `[agent] state_dir` to use.
    #[arg(long, short = 'c', env = "WEIR_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
}

impl StateDir {
    /// The same order as `weir run`: the option, the config's
    /// `[agent] state_dir`, then the environment's default.
    fn resolve(&self) -> Result<PathBuf, String> {
        if let Some(d) = &self.state_dir {
            return Ok(d.clone());
        }
        if let Some(c) = &self.config_dir {
            match config::load_dir(c) {
                Ok(cfg) => {
                    if let Some(d) = cfg.settings.state_dir {
                        return Ok(d);
                    }
                }
                Err(errors) => {
                    return Err(format!(
                        "{}: {}",
                        c.display(),
                        errors.first().map(|e| e.to_string()).unwrap_or_default()
                    ))
                }
            }
        }
        default_state_dir().ok_or_else(|| "no state directory: give --state-dir".to_string())
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum PluginLang {
    Rust,
    Python,
    Js,
}

#[derive(Clone, Copy, ValueEnum)]
enum SourceKind {
    Log,
    Http,
    Process,
}

fn init_logging(level: &str, format: LogFormat) {
    // A bare level applies to weir; dependencies (wasmtime, cranelift)
    // stay at warn unless a full filter asks for more.
    let level = match level {
        "error" => "error".to_string(),
        "warn" | "info" | "debug" | "trace" => format!("warn,weir={level}"),
        filter => filter.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a person at a terminal, not in journald or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn default_state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
        // systemd's StateDirectory= may list several; take the first.
        let d = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        if !d.is_empty() {
            return Some(PathBuf::from(d));
        }
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return Some(PathBuf::from(d).join("weir"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/weir"))
}

fn main() -> ExitCode {
    let code = run_command();
    finish_output(code)
}

fn run_command() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CompilePlugin = cli.command {
        return match weir::runtime::compile_stdin_to_stdout() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                err!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(&cli.log_level, cli.log_format);
    // The running image, also when the file was replaced since it started.
    weir::runtime::compile_in_child_process(PathBuf::from("/proc/self/exe"));
    match cli.command {
        // Handled above, before logging starts.
        Command::CompilePlugin => ExitCode::SUCCESS,
        Command::Run {
            config_dir,
            listen,
            state_dir,
        } => run(&config_dir, listen, state_dir),
        Command::Check { config_dir } => check(&config_dir),
        Command::Test {
            config_dir,
            pipeline,
            plugin,
            plugin_config,
            source,
            input,
            expect,
            memory_limit,
        } => {
            let world = match source.unwrap_or(SourceKind::Log) {
                SourceKind::Log => weir::runtime::World::Log,
                SourceKind::Http => weir::runtime::World::Http,
                SourceKind::Process => weir::runtime::World::Process,
            };
            let mut limits = weir::runtime::Limits::default();
            if let Some(m) = memory_limit {
                match config::parse_size(&toml::Value::String(m)) {
                    Ok(n) => limits.memory_bytes = n,
                    Err(e) => {
                        err!("error: --memory-limit: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let target = match (&config_dir, &pipeline, &plugin) {
                (Some(dir), Some(name), _) => weir::tools::TestTarget::Pipeline { dir, name },
                (_, _, Some(plugin)) => weir::tools::TestTarget::Plugin {
                    plugin,
                    config: plugin_config.as_deref(),
                    source: world,
                    limits,
                },
                _ => {
                    err!("error: give --config-dir and --pipeline, or --plugin");
                    return ExitCode::from(2);
                }
            };
            let out = match &input {
                Some(f) => match std::fs::File::open(f) {
                    Ok(file) => weir::tools::run_test(target, file),
                    Err(e) => Err(anyhow::anyhow!("--input {}: {e}", f.display())),
                },
                None => weir::tools::run_test(target, std::io::stdin()),
            };
            match (out, expect) {
                (Ok(text), None) => {
                    out!("{text}");
                    ExitCode::SUCCESS
                }
                (Ok(text), Some(file)) => match weir::tools::expect(&text, &file) {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::FAILURE,
                    Err(e) => {
                        err!("error: {e:#}");
                        ExitCode::FAILURE
                    }
                },
                (Err(e), _) => {
                    err!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Inspect {
            plugin,
            plugin_config,
        } => match weir::tools::inspect(&plugin, plugin_config.as_deref()) {
            Ok((text, failure)) => {
                out!("{text}");
                match failure {
                    None => ExitCode::SUCCESS,
                    Some(why) => {
                        err!("error: {why}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                err!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::HashPassword { cost } => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err()
                || line.trim_end_matches(['\n', '\r']).is_empty()
            {
                err!("error: give the password on standard input");
                return ExitCode::FAILURE;
            }
            match bcrypt::hash(line.trim_end_matches(['\n', '\r']), cost) {
                Ok(h) => {
                    outln!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    err!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::State { command } => {
            let result = match &command {
                StateCommand::List { at } => at
                    .resolve()
                    .map_err(anyhow::Error::msg)
                    .and_then(|d| weir::tools::state_list(&d)),
                StateCommand::Reset { at, pipeline } => at
                    .resolve()
                    .map_err(anyhow::Error::msg)
                    .and_then(|d| weir::tools::state_reset(&d, pipeline)),
            };
            match result {
                Ok(text) => {
                    out!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    err!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Import { command } => {
            let (from, files, output) = match &command {
                ImportCommand::Mtail { programs, output } => (
                    weir::tools::import::From::Mtail,
                    programs.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
                    output,
                ),
                ImportCommand::GrokExporter { config, output } => (
                    weir::tools::import::From::GrokExporter,
                    vec![config.as_path()],
                    output,
                ),
            };
            let imported = match weir::tools::import::import(from, &files) {
                Ok(i) => i,
                Err(e) => {
                    err!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            // Reports and notes of each file, in line order.
            let mut all: Vec<(&str, usize, String)> = imported
                .reports
                .iter()
                .map(|r| (r.file.as_str(), r.line, r.to_string()))
                .chain(imported.notes.iter().map(|n| {
                    (
                        n.file.as_str(),
                        n.line,
                        format!("{}:{}: note: {}", n.file, n.line, n.what),
                    )
                }))
                .collect();
            all.sort_by_key(|(f, l, _)| {
                (files.iter().position(|p| p.display().to_string() == *f), *l)
            });
            for (_, _, line) in &all {
                err!("{line}");
            }
            match output {
                Some(f) => {
                    if let Err(e) = std::fs::write(f, &imported.toml) {
                        err!("error: writing {}: {e}", f.display());
                        return ExitCode::FAILURE;
                    }
                }
                None => out!("{}", imported.toml),
            }
            if imported.reports.is_empty() {
                ExitCode::SUCCESS
            } else {
                err!(
                    "weir import: {} construct(s) not translated; each is marked `# not translated:` in the output",
                    imported.reports.len()
                );
                ExitCode::from(2)
            }
        }
        Command::Plugin {
            command: PluginCommand::New { name, dir, lang },
        } => {
            let lang = match lang {
                PluginLang::Rust => weir::tools::Lang::Rust,
                PluginLang::Python => weir::tools::Lang::Python,
                PluginLang::Js => weir::tools::Lang::Js,
            };
            match weir::tools::plugin_new(&name, &dir, lang) {
                Ok(d) => {
                    let build = match lang {
                        weir::tools::Lang::Rust => {
                            "cargo test && cargo build --release --target wasm32-wasip2"
                        }
                        _ => "see README.md to build the component",
                    };
                    outln!(
                    "created {}\n  cd {}\n  {build}\n  weir test --config-dir weir --pipeline {name} --input sample.log",
                    d.display(),
                    d.display()
                );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    err!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(dir: &Path) -> ExitCode {
    let dir = &config::absolute_dir(dir);
    let fail = |errors: &[String]| {
        for e in errors {
            err!("error: {e}");
        }
        err!("{}: {} error(s)", dir.display(), errors.len());
        ExitCode::FAILURE
    };
    let cfg = match config::load_dir(dir) {
        Ok(c) => c,
        Err(errors) => {
            return fail(&errors.iter().map(|e| e.to_string()).collect::<Vec<_>>());
        }
    };
    let rt = match Runtime::new(None) {
        Ok(rt) => rt,
        Err(e) => {
            err!("error: cannot start the WebAssembly runtime: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The same builder and the same server and remote-write checks as a
    // reload, so that check and reload accept the same files and word the
    // same failure alike; nothing is bound or started.
    let agent = Agent::new(rt, dir, None);
    let mut errors = Vec::new();
    match agent.plan(&cfg) {
        Ok(plan) => {
            for p in plan.built() {
                let spec = p.spec();
                outln!(
                    "ok: pipeline \"{}\" ({} source, plugin {}): {} families",
                    spec.name,
                    spec.source.kind(),
                    spec.plugin,
                    p.decls().len()
                );
            }
        }
        Err(e) => errors.extend(e),
    }
    if let Err(e) = weir::server::Live::build(weir::server::ServerSettings::of(&cfg.settings), None)
    {
        errors.push(cfg.settings.origin.error("server.tls", e).to_string());
    }
    for (i, rw) in cfg.settings.remote_write.iter().enumerate() {
        if let Err(e) = weir::remote_write::client(rw) {
            errors.push(
                cfg.settings
                    .origin
                    .error(&format!("remote_write[{i}]"), e)
                    .to_string(),
            );
        }
    }
    for (i, o) in cfg.settings.otlp.iter().enumerate() {
        if let Err(e) = weir::push::client(o) {
            errors.push(
                cfg.settings
                    .origin
                    .error(&format!("otlp[{i}]"), e)
                    .to_string(),
            );
        }
    }
    if errors.is_empty() {
        outln!(
            "{}: {} pipeline(s) valid",
            dir.display(),
            cfg.pipelines.len()
        );
        ExitCode::SUCCESS
    } else {
        fail(&errors)
    }
}

fn run(dir: &Path, listen: Option<SocketAddr>, state_dir: Option<PathBuf>) -> ExitCode {
    // Absolute once, here: the watcher, the landing page and every path of
    // the config are this path's descendants, whatever the working
    // directory was and however the directory was written.
    let dir = &config::absolute_dir(dir);
    let cfg = match config::load_dir(dir) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                tracing::error!("{e}");
            }
            tracing::error!("{}: {} error(s); not starting", dir.display(), errors.len());
            return ExitCode::FAILURE;
        }
    };
    weir::reload::warn_if_others_may_write(dir, &cfg);
    // With --state-dir (or WEIR_STATE_DIR) the key does not decide, so a
    // reload that changes it changes nothing: None tells the reloader so.
    let started_state_dir = match state_dir {
        Some(_) => None,
        None => Some(cfg.settings.state_dir.clone()),
    };
    let state_dir = state_dir
        .map(|d| std::path::absolute(&d).unwrap_or(d))
        .or(cfg.settings.state_dir.clone())
        .or_else(default_state_dir);
    // Compiled plugins from the state directory run as native code: it is
    // checked (owner, mode, links) before anything in it is used.
    // The lock is held until the process ends.
    let (plugin_cache, checkpoint_dir, _state_lock) = match &state_dir {
        None => (None, None, None),
        Some(d) => {
            let opened = weir::state::StateDir::open(d).and_then(|s| {
                let lock = s.lock()?;
                Ok((
                    s.subdir("plugins")?,
                    std::sync::Arc::new(s.subdir("checkpoints")?),
                    lock,
                ))
            });
            match opened {
                Ok((p, c, l)) => (Some(p), Some(c), Some(l)),
                Err(e) => {
                    tracing::error!("{e}; not starting");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let listen_fixed = listen.is_some();
    let listen = listen.unwrap_or(cfg.settings.listen);
    let rt = match Runtime::new(plugin_cache) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the WebAssembly runtime: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let agent = Agent::new(rt, dir, checkpoint_dir);
    let tokio_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-io")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let live =
        match weir::server::Live::build(weir::server::ServerSettings::of(&cfg.settings), None) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{}", cfg.settings.origin.error("server.tls", e));
                return ExitCode::FAILURE;
            }
        };
    let scheme = if live.security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let handle = tokio_rt.handle().clone();
    tokio_rt.block_on(async move {
        // First of all: a SIGTERM (systemctl stop) or SIGHUP (logrotate's
        // postrotate) that arrives while the pipelines start would
        // otherwise end the process by the signal's default action,
        // without its final checkpoint; caught here, it is handled once
        // the start is over.
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot install SIGHUP handler: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot install SIGTERM handler: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match weir::server::bind_std(listen) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel(8);
        let ctx = weir::server::ServerCtx::new(agent.clone(), reload_tx, live);
        let server = match weir::server::Server::start(handle, ctx, listener, listen_fixed) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            version = weir::agent::VERSION,
            config_dir = %dir.display(),
            state_dir = ?state_dir,
            "weir listening on {scheme}://{listen}/metrics"
        );
        let reloader = Reloader::new(agent.clone(), Some(server.clone()), started_state_dir);
        if let Err(e) = weir::reload::spawn(reloader.clone()) {
            tracing::warn!("cannot watch the config directory ({e}); reload with SIGHUP");
        }
        let r = reloader.clone();
        let first = tokio::task::spawn_blocking(move || r.reload()).await;
        match first {
            Ok(Ok(s)) => {
                tracing::info!("ready: {} pipeline(s)", s.pipelines.added.len());
                // Once per process (not per listener, which a reload may
                // replace), and once there are pipelines to sample.
                tokio::spawn(weir::server::status::sample_forever(agent.clone()));
            }
            _ => {
                tracing::error!("the configuration could not be loaded; not starting");
                return ExitCode::FAILURE;
            }
        }
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let r = reloader.clone();
                    let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                }
                Some(reply) = reload_rx.recv() => {
                    let r = reloader.clone();
                    let res = tokio::task::spawn_blocking(move || r.reload()).await;
                    let msg = match res {
                        Ok(Ok(o)) => Ok(o.line()),
                        Ok(Err(errs)) => Err(format!("reload failed; everything keeps running as it was:\n{}\n", errs.join("\n"))),
                        Err(_) => Err("reload failed\n".to_string()),
                    };
                    let _ = reply.send(msg);
                }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: shutting down"); break; }
            }
        }
        server.stop();
        let (a, r) = (agent.clone(), reloader.clone());
        let _ = tokio::task::spawn_blocking(move || {
            r.shutdown();
            a.shutdown()
        })
        .await;
        // (A checkpoint that could not be written was logged as such.)
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
