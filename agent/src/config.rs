//! The config directory: every `*.toml` file in it, parsed strictly.
//!
//! A file may hold any number of `[pipeline.NAME]` tables, and at most one
//! file of the directory holds `[server]` and `[agent]`. Every error names
//! the file, the line and the key, and all errors of a directory are
//! reported together.
mod locate;
pub mod redact;
pub mod settings;
pub use locate::{at_pipeline, error_key, key_line, setting_line};
use serde::Deserialize;
pub use settings::*;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where the endpoint listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9731";

/// One configuration error, located.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key, as a dotted path, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A plugin, as a pipeline names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginRef {
    /// One of the plugins built into the agent.
    Builtin(String),
    /// A `.wasm` file (absolute path, resolved against the pipeline file).
    Path(PathBuf),
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginRef::Builtin(n) => write!(f, "{n}"),
            PluginRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Where a file source starts in a file it has no checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Only lines written from now on (files present at startup).
    #[default]
    End,
    /// Everything in the file.
    Beginning,
}

/// How the lines of a file are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineFormat {
    /// As the application wrote them.
    #[default]
    Plain,
    /// A container runtime's CRI log (containerd, CRI-O):
    /// `TIMESTAMP STREAM P|F TEXT`, long lines split into `P` parts.
    Cri,
    /// Docker's json-file log: `{"log":"TEXT\n","stream":..,"time":..}`,
    /// long lines split into parts without the `\n`.
    Docker,
}

/// Labels a container log's path gives (`/var/log/pods/NAMESPACE_POD_UID/CONTAINER/N.log`).
pub const CONTAINER_LABELS: [&str; 4] = ["namespace", "pod", "container", "pod_uid"];

/// What a pipeline reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// Follow files matching globs.
    File {
        /// Paths or glob patterns (absolute, or relative to the pipeline file).
        paths: Vec<String>,
        /// Where to start in files without a checkpoint.
        start_at: StartAt,
        /// How lines are written (plain, or a container runtime's log).
        format: LineFormat,
        /// Names from [`CONTAINER_LABELS`] added to every series, with the
        /// values the path of the file a line came from gives (`cri` and
        /// `docker` only).
        labels: Vec<String>,
    },
    /// Read the agent's standard input.
    Stdin,
    /// Run a command and read its standard output.
    Exec {
        /// Program and arguments; no shell.
        command: Vec<String>,
        /// Names of the agent's environment variables the command gets,
        /// beyond `PATH`, `LANG`, `LC_ALL` and `TZ`; it gets no others.
        env: Vec<String>,
    },
    /// Follow the systemd journal through `journalctl`; each entry is one
    /// line, a JSON object as `journalctl -o json` prints it.
    Journald {
        /// journalctl match terms (`FIELD=value`, or `+` between groups).
        matches: Vec<String>,
        /// A directory of journal files; `None`: the system journal.
        directory: Option<String>,
        /// Where to start without a saved cursor.
        start_at: StartAt,
        /// How often, while no entry matches, the journal's last cursor
        /// is saved so that a restart does not look at the skipped
        /// entries again.
        cursor_interval: Duration,
    },
    /// Poll an HTTP endpoint; each response is a snapshot.
    Http(Box<HttpSettings>),
    /// Scan the process table; each scan is a snapshot.
    Process {
        /// Time between scans.
        interval: Duration,
        /// Scan at scrape time instead, when the last scan is older than this.
        max_age: Option<Duration>,
    },
}

impl SourceSpec {
    /// The source kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::File { .. } => "file",
            SourceSpec::Stdin => "stdin",
            SourceSpec::Exec { .. } => "exec",
            SourceSpec::Journald { .. } => "journald",
            SourceSpec::Http(_) => "http",
            SourceSpec::Process { .. } => "process",
        }
    }
}

/// One pipeline, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// Unique name.
    pub name: String,
    /// The file that defines it.
    pub file: PathBuf,
    /// Line of its table.
    pub line: usize,
    /// The plugin.
    pub plugin: PluginRef,
    /// The plugin's settings, as JSON text for `init`.
    pub plugin_config: String,
    /// The source.
    pub source: SourceSpec,
    /// Sandbox limits.
    pub limits: Limits,
    /// Cap on the pipeline's series.
    pub max_series: usize,
    /// Constant labels added to every series of the pipeline.
    pub labels: BTreeMap<String, String>,
    /// Longest line handed to the plugin; longer ones are cut.
    pub max_line_bytes: usize,
    /// Most lines per plugin call.
    pub batch_lines: usize,
    /// How a line source joins lines into multi-line records; `None`:
    /// every line is a record.
    pub multiline: Option<MultilineSettings>,
    /// Whether the series values are kept in the checkpoint with the read
    /// positions, so that counters go on across restarts (`persist_values`,
    /// default true; file and journald sources only, the others have no
    /// positions to pair them with).
    pub persist_values: bool,
    /// Series without an update for this long are dropped
    /// (`expire_after`; log sources only, `None` by default: kept until
    /// the pipeline goes).
    pub expire_after: Option<Duration>,
}

impl PipelineSpec {
    /// Whether `other` asks for the same pipeline: every setting equal.
    /// Where it is written (file, line) does not count, so a comment added
    /// above it, or a table added before it, does not restart it.
    pub fn same_settings(&self, other: &PipelineSpec) -> bool {
        let here = PipelineSpec {
            file: other.file.clone(),
            line: other.line,
            ..self.clone()
        };
        here == *other
    }

    /// The labels the host adds to every family the plugin declares, in
    /// order: the constant labels, then the source's labels (a container
    /// log's `namespace`, `pod`, ...).
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.labels.keys().cloned().collect();
        names.extend(self.source_labels().iter().cloned());
        names
    }

    /// The source's labels: values per file, from its path.
    pub fn source_labels(&self) -> &[String] {
        match &self.source {
            SourceSpec::File { labels, .. } => labels,
            _ => &[],
        }
    }
}

/// Agent-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    /// Listen address of the endpoint.
    pub listen: SocketAddr,
    /// Where checkpoints and compiled plugins are kept.
    pub state_dir: Option<PathBuf>,
    /// Whether `POST /-/reload` is served.
    pub reload_endpoint: bool,
    /// TLS, credentials, allow-list.
    pub security: SecuritySettings,
    /// Client limits.
    pub limits: ServerLimits,
    /// Remote-write targets.
    pub remote_write: Vec<RemoteWriteSettings>,
    /// OTLP/HTTP targets.
    pub otlp: Vec<OtlpSettings>,
    /// Where the agent-wide keys were written: the file holding `[server]`,
    /// `[agent]` and `[[remote_write]]`, and the line of each key
    /// (`server`, `server.listen`, `server.tls`, `agent.state_dir`,
    /// `remote_write[0]`, ...), for errors that a reload raises about them.
    pub origin: Origin,
}

/// The file and lines of the agent-wide keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Origin {
    /// The file; `None` when no file has agent-wide settings.
    pub file: Option<PathBuf>,
    /// Key (dotted) to 1-based line.
    pub lines: BTreeMap<String, usize>,
}

impl Origin {
    /// An error about `key`, located at the key's line, or at the nearest
    /// enclosing key's (`server.auth.basic` falls back to `server.auth`,
    /// then `server`).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let mut k = key;
        let line = loop {
            if let Some(l) = self.lines.get(k) {
                break Some(*l);
            }
            match k.rfind(['.', '[']) {
                Some(i) => k = &k[..i],
                None => break None,
            }
        };
        ConfigError {
            file: self
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from("(defaults)")),
            line,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

/// A whole config directory.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Agent-wide settings.
    pub settings: AgentSettings,
    /// Pipelines by name.
    pub pipelines: BTreeMap<String, PipelineSpec>,
}

/// Names of the built-in plugins.
pub const BUILTINS: &[&str] = &[
    "regex-log",
    "json-log",
    "json-stats",
    "prometheus-text",
    "process-groups",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    server: Option<Spanned<RawServer>>,
    agent: Option<Spanned<RawAgent>>,
    #[serde(default)]
    remote_write: Vec<Spanned<RawRemoteWrite>>,
    #[serde(default)]
    otlp: Vec<Spanned<RawOtlp>>,
    #[serde(default)]
    pipeline: BTreeMap<Spanned<String>, Spanned<RawPipeline>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    #[serde(default)]
    reload_endpoint: bool,
    tls: Option<Spanned<RawTls>>,
    auth: Option<Spanned<RawAuth>>,
    admin_auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    max_connections: Option<usize>,
    header_timeout: Option<toml::Value>,
    request_timeout: Option<toml::Value>,
    max_scrape_bytes: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteWrite {
    url: String,
    name: Option<String>,
    interval: Option<toml::Value>,
    timeout: Option<toml::Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    basic_auth: Option<RawBasicAuth>,
    bearer_token_env: Option<String>,
    bearer_token_file: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
    max_queue_samples: Option<usize>,
    max_samples_per_send: Option<usize>,
    ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: String,
    name: Option<String>,
    interval: Option<toml::Value>,
    timeout: Option<toml::Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    basic_auth: Option<RawBasicAuth>,
    bearer_token_env: Option<String>,
    bearer_token_file: Option<String>,
    #[serde(default)]
    resource_attributes: BTreeMap<String, String>,
    #[serde(default)]
    keep: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
    max_queue_points: Option<usize>,
    max_points_per_send: Option<usize>,
    compression: Option<String>,
    encoding: Option<String>,
    ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: String,
    key_file: String,
    client_ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    /// user -> bcrypt hash (`weir hash-password`).
    #[serde(default)]
    basic: BTreeMap<String, String>,
    #[serde(default)]
    bearer_token_files: Vec<String>,
    bearer_token_env: Option<String>,
}

fn read_auth(raw: Option<RawAuth>, base: &Path, key: &str, errs: &mut Vec<String>) -> AuthSettings {
    let mut out = AuthSettings::default();
    let Some(raw) = raw else { return out };
    for (user, hash) in raw.basic {
        if !hash.starts_with("$2") {
            errs.push(format!(
                "{key}.basic.{user}: not a bcrypt hash (make one with `weir hash-password`)"
            ));
        }
        out.basic.insert(user, hash);
    }
    // Read now, at each load: the endpoint compares tokens per request.
    let secrets = raw
        .bearer_token_files
        .into_iter()
        .map(|f| ("bearer_token_files", Secret::File(base.join(f))))
        .chain(
            raw.bearer_token_env
                .map(|v| ("bearer_token_env", Secret::Env(v))),
        );
    for (k, s) in secrets {
        match s.read() {
            Ok(t) => out.bearer_tokens.push(t),
            Err(e) => errs.push(format!("{key}.{k}: {e}")),
        }
    }
    out
}

/// A secret given by `*_env` or `*_file` (relative to the config file):
/// the one rule for every secret of the config. Both is an error.
fn secret_of(
    base: &Path,
    env: Option<String>,
    file: Option<String>,
) -> Result<Option<Secret>, String> {
    match (env, file) {
        (Some(e), None) => Ok(Some(Secret::Env(e))),
        (None, Some(f)) => Ok(Some(Secret::File(base.join(f)))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err("give the secret by _env or by _file, not both".to_string()),
    }
}

/// Whether every `headers` entry can be sent as an HTTP header: a token
/// for the name, and a value without line breaks or other control
/// characters (which would end the header early, or be refused at every
/// request). The error gives the name and what is wrong, never the value,
/// which may be a secret.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), (String, String)> {
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err((
                name.clone(),
                format!("\"{name}\" is not an HTTP header name (letters, digits and -)"),
            ));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err((
                name.clone(),
                "the value holds a line break or another control character, which an HTTP header cannot carry".into(),
            ));
        }
    }
    Ok(())
}

/// The client authentication of an HTTP source or a remote-write target;
/// an error names the key (relative to the table) and what is wrong.
fn client_auth(
    base: &Path,
    basic: Option<RawBasicAuth>,
    bearer_env: Option<String>,
    bearer_file: Option<String>,
) -> Result<Option<Auth>, (&'static str, String)> {
    let bearer = secret_of(base, bearer_env, bearer_file).map_err(|e| ("bearer_token_env", e))?;
    let Some(b) = basic else {
        return Ok(bearer.map(Auth::Bearer));
    };
    if bearer.is_some() {
        return Err((
            "bearer_token_env",
            "basic_auth and a bearer token exclude each other".into(),
        ));
    }
    match secret_of(base, b.password_env, b.password_file) {
        Ok(Some(p)) => Ok(Some(Auth::Basic {
            username: b.username,
            password: p,
        })),
        Ok(None) => Err(("basic_auth", "needs password_env or password_file".into())),
        Err(e) => Err(("basic_auth", e)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    state_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    plugin: Spanned<String>,
    source: Spanned<RawSource>,
    #[serde(default)]
    config: Option<toml::Table>,
    memory_limit: Option<Spanned<toml::Value>>,
    call_timeout: Option<Spanned<toml::Value>>,
    max_series: Option<usize>,
    max_line_bytes: Option<Spanned<toml::Value>>,
    batch_lines: Option<usize>,
    multiline: Option<Spanned<toml::Value>>,
    persist_values: Option<Spanned<bool>>,
    expire_after: Option<Spanned<toml::Value>>,
    labels: Option<Spanned<BTreeMap<String, String>>>,
}

// Parsed once per reload; boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawSource {
    File {
        paths: Vec<String>,
        #[serde(default)]
        start_at: StartAt,
        format: Option<String>,
        labels: Option<Vec<String>>,
    },
    Stdin {},
    Exec {
        command: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
    },
    Journald {
        #[serde(default)]
        matches: Vec<String>,
        directory: Option<String>,
        #[serde(default)]
        start_at: StartAt,
        cursor_interval: Option<toml::Value>,
    },
    Http {
        url: String,
        method: Option<String>,
        body: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        basic_auth: Option<RawBasicAuth>,
        bearer_token_env: Option<String>,
        bearer_token_file: Option<String>,
        timeout: Option<toml::Value>,
        interval: Option<toml::Value>,
        max_age: Option<toml::Value>,
        max_body_bytes: Option<toml::Value>,
        #[serde(default)]
        accept_status: Vec<u16>,
        ca_file: Option<String>,
        #[serde(default)]
        insecure_skip_verify: bool,
    },
    Process {
        interval: Option<toml::Value>,
        max_age: Option<toml::Value>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password_env: Option<String>,
    password_file: Option<String>,
}

/// Where, in the table that starts at `span` in `text` (a `[[table]]` or
/// `[table]` header), the user wrote `key` (the first part of a dotted
/// path such as `headers.X-Token` is enough): the first line that assigns
/// it (`key =`, `key.x =`) or opens it as a sub-table (`[table.key]`),
/// before the next table's header. The table's header when no line does,
/// so an error always has a line. serde keeps one span per table (its
/// header), not per key; this finds the key's line without wrapping every
/// field in `Spanned`.
fn key_span(text: &str, span: &std::ops::Range<usize>, key: &str) -> std::ops::Range<usize> {
    let first = key.split(['.', '[']).next().unwrap_or(key);
    let header = |line: &str| -> Option<String> {
        let t = line.trim();
        t.starts_with('[').then(|| {
            t.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
    };
    let start = span.start.min(text.len());
    let Some(body) = text.get(start..) else {
        return span.clone();
    };
    let mut lines = body.split_inclusive('\n');
    let Some(own) = lines.next().and_then(header) else {
        return span.clone();
    };
    let mut at = start + body.split_inclusive('\n').next().map_or(0, str::len);
    for line in lines {
        let t = line.trim_start();
        let off = at + (line.len() - t.len());
        at += line.len();
        if let Some(h) = header(t) {
            let sub = h.strip_prefix(&own).and_then(|r| r.strip_prefix('.'));
            match sub {
                Some(sub) if !t.starts_with("[[") => {
                    if sub.split('.').next().map(str::trim) == Some(first) {
                        return off..off + t.len();
                    }
                    continue;
                }
                _ => break,
            }
        }
        if t.strip_prefix(first)
            .is_some_and(|r| r.trim_start().starts_with(['=', '.']))
        {
            return off..off + t.len();
        }
    }
    span.clone()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// How often a journald source with `matches` saves the journal's last
/// cursor while no entry matches, unless `cursor_interval` says.
pub const DEFAULT_CURSOR_INTERVAL: Duration = Duration::from_secs(5);

/// Whether `term` is a journalctl match term: `FIELD=value` (FIELD made of
/// upper-case letters, digits and `_`, not starting with a digit, as
/// journald field names are) or `+` (OR between groups). The error says
/// what is wrong.
pub fn check_journal_match(term: &str) -> Result<(), &'static str> {
    if term == "+" {
        return Ok(());
    }
    let Some((field, _value)) = term.split_once('=') else {
        return Err("a match is FIELD=value (like _SYSTEMD_UNIT=nginx.service) or +");
    };
    if field.is_empty() {
        return Err("the field name before '=' is empty");
    }
    if field.starts_with(|c: char| c.is_ascii_digit())
        || !field
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("journal field names are upper-case letters, digits and '_'");
    }
    if term.contains('\0') || term.contains('\n') {
        return Err("a match cannot hold a NUL or a line feed");
    }
    Ok(())
}

/// The shortest duration any key takes (intervals, timeouts, `max_age`):
/// the one minimum policy of the config. Shorter values are typos (`10`
/// meant as milliseconds is ten seconds; `"1us"` is not a unit), and loops
/// faster than this would only spin.
pub const MIN_DURATION: Duration = Duration::from_millis(10);

/// Parse a duration (see [`parse_duration`]) and hold it to
/// [`MIN_DURATION`].
pub fn parse_duration_key(v: &toml::Value) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d < MIN_DURATION {
        return Err(format!("at least {}ms", MIN_DURATION.as_millis()));
    }
    Ok(d)
}

/// Parse a duration: `250ms`, `1s`, `2m`, `1h`, or a number of seconds.
pub fn parse_duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
        toml::Value::Float(f) if *f >= 0.0 && f.is_finite() => Ok(Duration::from_secs_f64(*f)),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: f64 = num.parse().map_err(|_| {
                format!("\"{s}\" is not a duration (like \"500ms\", \"2s\", \"1m\")")
            })?;
            let secs = match unit.trim() {
                "ms" => n / 1000.0,
                "s" | "" => n,
                "m" => n * 60.0,
                "h" => n * 3600.0,
                u => return Err(format!("unknown duration unit \"{u}\" (ms, s, m, h)")),
            };
            Ok(Duration::from_secs_f64(secs))
        }
        _ => Err("expected a duration like \"500ms\" or \"2s\"".into()),
    }
}

/// Parse a size: `64MiB`, `512KiB`, `1GiB`, `10MB`, or a number of bytes.
pub fn parse_size(v: &toml::Value) -> Result<usize, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as usize),
        toml::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: usize = num
                .parse()
                .map_err(|_| format!("\"{s}\" is not a size (like \"64MiB\")"))?;
            let mult: usize = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "KB" | "kB" => 1000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                u => {
                    return Err(format!(
                        "unknown size unit \"{u}\" (KiB, MiB, GiB, KB, MB, GB)"
                    ))
                }
            };
            n.checked_mul(mult)
                .ok_or_else(|| format!("\"{s}\" is too large"))
        }
        _ => Err("expected a size like \"64MiB\"".into()),
    }
}

/// `kind` with its indefinite article, for messages: "an exec", "a file".
fn with_article(kind: &str) -> String {
    let vowel = kind.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// Defaults of `multiline`: a trace of 500 lines (deep Java stacks are
/// shorter), 256 KiB, and a writer that finishes a record within 1 s.
pub const MULTILINE_MAX_LINES: usize = 500;
/// See [`MULTILINE_MAX_LINES`].
pub const MULTILINE_MAX_BYTES: usize = 256 << 10;
/// See [`MULTILINE_MAX_LINES`].
pub const MULTILINE_TIMEOUT: Duration = Duration::from_secs(1);

/// A pipeline's `multiline` value: a preset's name, or a table with one of
/// `start`, `continue` or `preset` and the limits. An error names the key
/// under `multiline` (`""` for the value as a whole) and what is wrong.
fn multiline_of(v: &toml::Value) -> Result<MultilineSettings, (String, String)> {
    let presets = || {
        MultilinePreset::ALL
            .iter()
            .map(|(n, _)| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let preset = |k: &str, name: &str| {
        MultilinePreset::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| MultilineRule::Preset(*p))
            .ok_or_else(|| {
                (
                    k.to_string(),
                    format!("no preset \"{name}\" (presets: {})", presets()),
                )
            })
    };
    let mut out = MultilineSettings {
        rule: MultilineRule::Preset(MultilinePreset::Java),
        max_lines: MULTILINE_MAX_LINES,
        max_bytes: MULTILINE_MAX_BYTES,
        timeout: MULTILINE_TIMEOUT,
    };
    let table = match v {
        toml::Value::String(name) => {
            out.rule = preset("", name)?;
            return Ok(out);
        }
        toml::Value::Table(t) => t,
        _ => {
            return Err((
                String::new(),
                format!(
                    "expected a preset ({}) or a table like {{ start = \"^\\\\d{{4}}-\" }}",
                    presets()
                ),
            ))
        }
    };
    let mut rule = None;
    for (k, v) in table {
        let text = || {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| (k.clone(), "expected a string".to_string()))
        };
        let regex = |p: String| {
            regex::Regex::new(&p).map_err(|e| (k.clone(), format!("invalid regex: {e}")))
        };
        let this =
            match k.as_str() {
                "start" => Some(MultilineRule::Start(regex(text()?)?)),
                "continue" => Some(MultilineRule::Continue(regex(text()?)?)),
                "preset" => Some(preset(k, &text()?)?),
                "max_lines" => {
                    match v.as_integer() {
                        Some(n) if (1..=1_000_000).contains(&n) => out.max_lines = n as usize,
                        _ => return Err((k.clone(), "a number of lines from 1 to 1000000".into())),
                    }
                    None
                }
                "max_bytes" => {
                    match parse_size(v) {
                        Ok(n) if n >= 64 => out.max_bytes = n,
                        Ok(_) => return Err((k.clone(), "at least 64".into())),
                        Err(e) => return Err((k.clone(), e)),
                    }
                    None
                }
                "timeout" => {
                    out.timeout = parse_duration_key(v).map_err(|e| (k.clone(), e))?;
                    None
                }
                _ => return Err((
                    k.clone(),
                    "unknown key (keys: start, continue, preset, max_lines, max_bytes, timeout)"
                        .into(),
                )),
            };
        if let Some(r) = this {
            if rule.is_some() {
                return Err((
                    k.clone(),
                    "give one of start, continue or preset, not two".into(),
                ));
            }
            rule = Some(r);
        }
    }
    out.rule = rule.ok_or_else(|| {
        (
            String::new(),
            "needs one of start (a regex a record's first line matches), continue (a regex \
             its other lines match) or preset"
                .to_string(),
        )
    })?;
    Ok(out)
}

fn valid_pipeline_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A push target's name when none is given: the URL's host and port
/// (a label value and in every log line, so never the path or
/// credentials), or `fallback`.
fn host_port(url: &str, fallback: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_else(|| fallback.to_string())
}

/// A push target's `keep` or `drop` patterns; an invalid one is an error
/// at its key.
/// The keys every push target (`[[remote_write]]`, `[[otlp]]`) has, as
/// written.
struct RawPushCommon<'a> {
    interval: Option<toml::Value>,
    timeout: Option<toml::Value>,
    headers: &'a BTreeMap<String, String>,
    keep: &'a [String],
    drop: &'a [String],
    basic_auth: Option<RawBasicAuth>,
    bearer_token_env: Option<String>,
    bearer_token_file: Option<String>,
}

/// Those keys checked; errors at each key's line.
struct PushCommon {
    interval: Duration,
    timeout: Duration,
    keep: Vec<regex::Regex>,
    drop: Vec<regex::Regex>,
    auth: Option<Auth>,
}

/// Check the keys every push target has: `interval` (default 15 s),
/// `timeout` (10 s), `headers`, `keep`, `drop` and the client auth.
fn push_common(
    ctx: &mut FileCtx<'_>,
    span: &std::ops::Range<usize>,
    key: &str,
    base: &Path,
    raw: RawPushCommon<'_>,
) -> PushCommon {
    let text = ctx.text;
    let mut dur =
        |k: &str, v: Option<toml::Value>, d: Duration| match v.map(|v| parse_duration_key(&v)) {
            None => d,
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                ctx.err(Some(key_span(text, span, k)), &format!("{key}.{k}"), e);
                d
            }
        };
    let interval = dur("interval", raw.interval, Duration::from_secs(15));
    let timeout = dur("timeout", raw.timeout, Duration::from_secs(10));
    if let Err((name, e)) = check_headers(raw.headers) {
        ctx.err(
            Some(key_span(text, span, "headers")),
            &format!("{key}.headers.{name}"),
            e,
        );
    }
    let keep = push_regexes(ctx, span, key, "keep", raw.keep);
    let drop = push_regexes(ctx, span, key, "drop", raw.drop);
    let auth = push_auth(
        ctx,
        span,
        key,
        client_auth(
            base,
            raw.basic_auth,
            raw.bearer_token_env,
            raw.bearer_token_file,
        ),
    );
    PushCommon {
        interval,
        timeout,
        keep,
        drop,
        auth,
    }
}

fn push_regexes(
    ctx: &mut FileCtx<'_>,
    span: &std::ops::Range<usize>,
    key: &str,
    k: &str,
    v: &[String],
) -> Vec<regex::Regex> {
    v.iter()
        .filter_map(|r| match regex::Regex::new(r) {
            Ok(x) => Some(x),
            Err(e) => {
                ctx.err(
                    Some(key_span(ctx.text, span, k)),
                    &format!("{key}.{k}"),
                    format!("invalid regex: {e}"),
                );
                None
            }
        })
        .collect()
}

/// A push target's auth. A target is pushed to from the moment it loads:
/// a secret that cannot be read now is a config error at its key, not a
/// stream of refused pushes. It is read again at each push, so a rotated
/// secret is picked up.
fn push_auth(
    ctx: &mut FileCtx<'_>,
    span: &std::ops::Range<usize>,
    key: &str,
    auth: Result<Option<Auth>, (&'static str, String)>,
) -> Option<Auth> {
    let text = ctx.text;
    match auth {
        Ok(Some(a)) => {
            let (secret, k) = match &a {
                Auth::Basic { password, .. } => (password, "basic_auth"),
                Auth::Bearer(s) => (
                    s,
                    match s {
                        Secret::Env(_) => "bearer_token_env",
                        Secret::File(_) => "bearer_token_file",
                    },
                ),
            };
            match secret.read() {
                Ok(_) => Some(a),
                Err(m) => {
                    ctx.err(Some(key_span(text, span, k)), &format!("{key}.{k}"), m);
                    None
                }
            }
        }
        Ok(None) => None,
        Err((k, m)) => {
            ctx.err(Some(key_span(text, span, k)), &format!("{key}.{k}"), m);
            None
        }
    }
}

struct FileCtx<'a> {
    path: &'a Path,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl FileCtx<'_> {
    fn err(&mut self, span: Option<std::ops::Range<usize>>, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.path.to_path_buf(),
            line: span.map(|s| line_of(self.text, s.start)),
            key: if key.is_empty() {
                None
            } else {
                Some(key.to_string())
            },
            message: message.into(),
        });
    }
}

/// What a config directory yields before cross-file checks.
struct Parsed {
    server: Option<(PathBuf, AgentSettingsPart)>,
    pipelines: Vec<PipelineSpec>,
}

#[derive(Default)]
struct AgentSettingsPart {
    listen: Option<SocketAddr>,
    reload_endpoint: bool,
    state_dir: Option<PathBuf>,
    security: SecuritySettings,
    limits: ServerLimits,
    remote_write: Vec<RemoteWriteSettings>,
    otlp: Vec<OtlpSettings>,
    lines: BTreeMap<String, usize>,
}

fn parse_file(path: &Path, text: &str, errors: &mut Vec<ConfigError>) -> Parsed {
    let mut ctx = FileCtx { path, text, errors };
    let mut out = Parsed {
        server: None,
        pipelines: Vec::new(),
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.message().to_string();
            // serde names the key in its message ("unknown field `x`");
            // the span points at it.
            ctx.err(e.span(), "", msg);
            return out;
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    if raw.server.is_some()
        || raw.agent.is_some()
        || !raw.remote_write.is_empty()
        || !raw.otlp.is_empty()
    {
        let mut part = AgentSettingsPart::default();
        for (i, rw) in raw.remote_write.into_iter().enumerate() {
            let span = rw.span();
            let rw = rw.into_inner();
            let key = format!("remote_write[{i}]");
            part.lines.insert(key.clone(), line_of(text, span.start));
            let mut bad = |k: &str, m: String| {
                ctx.err(Some(key_span(text, &span, k)), &format!("{key}.{k}"), m)
            };
            if let Err(e) = redact::check_url(&rw.url) {
                bad("url", e);
            }
            if rw.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                bad(
                    "name",
                    "is empty; leave it out to take the URL's host and port, or give the target a name".into(),
                );
            }
            for (label, value) in &rw.external_labels {
                if !valid_label_name(label) {
                    bad(
                        &format!("external_labels.{label}"),
                        format!("\"{label}\" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with \"__\", which Prometheus reserves)"),
                    );
                } else if value.is_empty() {
                    bad(
                        &format!("external_labels.{label}"),
                        "is empty; Prometheus treats an empty label as no label, so leave it out"
                            .into(),
                    );
                }
            }
            let mut count = |k: &str, v: Option<usize>, d: usize| match v {
                None => d,
                Some(0) => {
                    bad(k, "must be at least 1".into());
                    d
                }
                Some(n) => n,
            };
            let max_queue_samples = count("max_queue_samples", rw.max_queue_samples, 500_000);
            let max_samples_per_send =
                count("max_samples_per_send", rw.max_samples_per_send, 2_000);
            let PushCommon {
                interval,
                timeout,
                keep,
                drop,
                auth,
            } = push_common(
                &mut ctx,
                &span,
                &key,
                base,
                RawPushCommon {
                    interval: rw.interval,
                    timeout: rw.timeout,
                    headers: &rw.headers,
                    keep: &rw.keep,
                    drop: &rw.drop,
                    basic_auth: rw.basic_auth,
                    bearer_token_env: rw.bearer_token_env,
                    bearer_token_file: rw.bearer_token_file,
                },
            );
            // The name is a label value and in every log line: from the
            // host and port only.
            let name = rw.name.unwrap_or_else(|| host_port(&rw.url, "remote"));
            // The name keys the target's figures (label `target`) and its
            // identity across reloads: two with one name would be one.
            if let Some(j) = part.remote_write.iter().position(|o| o.name == name) {
                ctx.err(
                    Some(key_span(text, &span, "name")),
                    &format!("{key}.name"),
                    format!(
                        "target name \"{name}\" is already taken by remote_write[{j}]; give each [[remote_write]] its own name"
                    ),
                );
            }
            part.remote_write.push(RemoteWriteSettings {
                name,
                url: rw.url,
                interval,
                timeout,
                headers: rw.headers,
                auth,
                external_labels: rw.external_labels,
                keep,
                drop,
                max_queue_samples,
                max_samples_per_send,
                ca_file: rw.ca_file.map(|f| base.join(f)),
            });
        }
        for (i, o) in raw.otlp.into_iter().enumerate() {
            let span = o.span();
            let o = o.into_inner();
            let key = format!("otlp[{i}]");
            part.lines.insert(key.clone(), line_of(text, span.start));
            let mut bad = |k: &str, m: String| {
                ctx.err(Some(key_span(text, &span, k)), &format!("{key}.{k}"), m)
            };
            if let Err(e) = redact::check_url(&o.endpoint) {
                bad("endpoint", e);
            }
            if o.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                bad(
                    "name",
                    "is empty; leave it out to take the endpoint's host and port, or give the target a name".into(),
                );
            }
            for k in o.resource_attributes.keys() {
                if k.is_empty() {
                    bad("resource_attributes", "an attribute name is empty".into());
                }
            }
            let mut count = |k: &str, v: Option<usize>, d: usize| match v {
                None => d,
                Some(0) => {
                    bad(k, "must be at least 1".into());
                    d
                }
                Some(n) => n,
            };
            let max_queue_points = count("max_queue_points", o.max_queue_points, 500_000);
            let max_points_per_send = count("max_points_per_send", o.max_points_per_send, 2_000);
            let compression = match o.compression.as_deref() {
                None | Some("gzip") => Compression::Gzip,
                Some("none") => Compression::None,
                Some(other) => {
                    bad(
                        "compression",
                        format!("\"{other}\" is not a compression: \"gzip\" or \"none\""),
                    );
                    Compression::Gzip
                }
            };
            let encoding = match o.encoding.as_deref() {
                None | Some("protobuf") => OtlpEncoding::Protobuf,
                Some("json") => OtlpEncoding::Json,
                Some(other) => {
                    bad(
                        "encoding",
                        format!("\"{other}\" is not an encoding: \"protobuf\" or \"json\""),
                    );
                    OtlpEncoding::Protobuf
                }
            };
            let PushCommon {
                interval,
                timeout,
                keep,
                drop,
                auth,
            } = push_common(
                &mut ctx,
                &span,
                &key,
                base,
                RawPushCommon {
                    interval: o.interval,
                    timeout: o.timeout,
                    headers: &o.headers,
                    keep: &o.keep,
                    drop: &o.drop,
                    basic_auth: o.basic_auth,
                    bearer_token_env: o.bearer_token_env,
                    bearer_token_file: o.bearer_token_file,
                },
            );
            let name = o.name.unwrap_or_else(|| host_port(&o.endpoint, "otlp"));
            if let Some(j) = part.otlp.iter().position(|t| t.name == name) {
                ctx.err(
                    Some(key_span(text, &span, "name")),
                    &format!("{key}.name"),
                    format!(
                        "target name \"{name}\" is already taken by otlp[{j}]; give each [[otlp]] its own name"
                    ),
                );
            }
            part.otlp.push(OtlpSettings {
                name,
                endpoint: o.endpoint,
                interval,
                timeout,
                headers: o.headers,
                auth,
                resource_attributes: o.resource_attributes,
                keep,
                drop,
                max_queue_points,
                max_points_per_send,
                compression,
                encoding,
                ca_file: o.ca_file.map(|f| base.join(f)),
            });
        }
        if let Some(server) = raw.server {
            let span = server.span();
            part.lines
                .insert("server".into(), line_of(text, span.start));
            let server = server.into_inner();
            for (k, s) in [
                ("server.tls", server.tls.as_ref().map(|t| t.span())),
                ("server.auth", server.auth.as_ref().map(|t| t.span())),
                (
                    "server.admin_auth",
                    server.admin_auth.as_ref().map(|t| t.span()),
                ),
                ("server.listen", server.listen.as_ref().map(|t| t.span())),
            ] {
                if let Some(s) = s {
                    part.lines.insert(k.into(), line_of(text, s.start));
                }
            }
            part.reload_endpoint = server.reload_endpoint;
            let mut errs = Vec::new();
            part.security.tls = server.tls.map(Spanned::into_inner).map(|t| TlsSettings {
                cert_file: base.join(t.cert_file),
                key_file: base.join(t.key_file),
                client_ca_file: t.client_ca_file.map(|c| base.join(c)),
            });
            part.security.auth = read_auth(
                server.auth.map(Spanned::into_inner),
                base,
                "server.auth",
                &mut errs,
            );
            part.security.admin_auth = read_auth(
                server.admin_auth.map(Spanned::into_inner),
                base,
                "server.admin_auth",
                &mut errs,
            );
            for a in &server.allow {
                let net = a
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
                match net {
                    Ok(n) => part.security.allow.push(n),
                    Err(_) => errs.push(format!(
                        "server.allow: \"{a}\" is not a network like 10.0.0.0/8"
                    )),
                }
            }
            for h in &server.allowed_hosts {
                let valid = !h.is_empty()
                    && h.len() <= 253
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if valid {
                    part.security.allowed_hosts.push(h.to_ascii_lowercase());
                } else {
                    errs.push(format!(
                        "server.allowed_hosts: \"{h}\" is not a host name like metrics.example (no port, no scheme)"
                    ));
                }
            }
            if let Some(n) = server.max_connections {
                part.limits.max_connections = n.max(1);
            }
            // Located at its own line, not the table's.
            let mut scrape_limit_error = None;
            if let Some(v) = &server.max_scrape_bytes {
                match parse_size(v.get_ref()) {
                    Ok(n) if n > 0 => part.limits.max_scrape_bytes = Some(n),
                    Ok(_) => {
                        scrape_limit_error = Some((
                            v.span(),
                            "must be more than 0 (leave it out for no limit)".to_string(),
                        ))
                    }
                    Err(e) => scrape_limit_error = Some((v.span(), e)),
                }
            }
            for (k, v, slot) in [
                (
                    "server.header_timeout",
                    server.header_timeout,
                    &mut part.limits.header_timeout,
                ),
                (
                    "server.request_timeout",
                    server.request_timeout,
                    &mut part.limits.request_timeout,
                ),
            ] {
                if let Some(v) = v {
                    match parse_duration_key(&v) {
                        Ok(d) => *slot = d,
                        Err(e) => errs.push(format!("{k}: {e}")),
                    }
                }
            }
            for e in errs {
                let (k, m) = e.split_once(": ").unwrap_or(("server", e.as_str()));
                ctx.err(Some(span.clone()), k, m.to_string());
            }
            if let Some((at, m)) = scrape_limit_error {
                ctx.err(Some(at), "server.max_scrape_bytes", m);
            }
            if let Some(listen) = server.listen {
                match listen.get_ref().parse::<SocketAddr>() {
                    Ok(a) => part.listen = Some(a),
                    Err(e) => ctx.err(
                        Some(listen.span()),
                        "server.listen",
                        format!(
                            "\"{}\" is not an address like 127.0.0.1:9731: {e}",
                            listen.get_ref()
                        ),
                    ),
                }
            }
        }
        if let Some(agent) = raw.agent {
            part.lines
                .insert("agent".into(), line_of(text, agent.span().start));
            if let Some(d) = agent.into_inner().state_dir {
                part.lines
                    .insert("agent.state_dir".into(), line_of(text, d.span().start));
                part.state_dir = Some(base.join(d.into_inner()));
            }
        }
        out.server = Some((path.to_path_buf(), part));
    }
    for (name, p) in raw.pipeline {
        let span = name.span();
        let name = name.into_inner();
        let key = format!("pipeline.{name}");
        if !valid_pipeline_name(&name) {
            ctx.err(
                Some(span.clone()),
                &key,
                "a pipeline name has 1 to 64 letters, digits, '_' or '-'",
            );
            continue;
        }
        let p = p.into_inner();
        let before = ctx.errors.len();
        let plugin_name = p.plugin.get_ref().trim().to_string();
        let plugin = if plugin_name.ends_with(".wasm") || plugin_name.contains('/') {
            let path = base.join(&plugin_name);
            PluginRef::Path(path)
        } else if BUILTINS.contains(&plugin_name.as_str()) {
            PluginRef::Builtin(plugin_name.clone())
        } else {
            ctx.err(
                Some(p.plugin.span()),
                &format!("{key}.plugin"),
                format!(
                    "no built-in plugin \"{plugin_name}\" (built-ins: {}); a custom plugin is a path ending in .wasm",
                    BUILTINS.join(", ")
                ),
            );
            PluginRef::Builtin(plugin_name.clone())
        };
        let source_span = p.source.span();
        let source = match p.source.into_inner() {
            RawSource::File {
                paths,
                start_at,
                format,
                labels,
            } => {
                if paths.is_empty() {
                    ctx.err(
                        Some(source_span.clone()),
                        &format!("{key}.source.paths"),
                        "a file source needs at least one path",
                    );
                }
                let paths = paths
                    .into_iter()
                    .map(|s| {
                        without_dot_dot(&base.join(s))
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect();
                let format = match format.as_deref() {
                    None | Some("plain") => LineFormat::Plain,
                    Some("cri") => LineFormat::Cri,
                    Some("docker") => LineFormat::Docker,
                    Some(f) => {
                        ctx.err(
                            Some(source_span.clone()),
                            &format!("{key}.source.format"),
                            format!("\"{f}\" is not a format (plain, cri, docker)"),
                        );
                        LineFormat::Plain
                    }
                };
                let labels = match (format, labels) {
                    (LineFormat::Plain, None) => Vec::new(),
                    (LineFormat::Plain, Some(_)) => {
                        ctx.err(
                            Some(source_span.clone()),
                            &format!("{key}.source.labels"),
                            "labels from the path are for container logs (format = \"cri\" or \"docker\")",
                        );
                        Vec::new()
                    }
                    // namespace, pod and container unless the pipeline
                    // sets them as constant labels.
                    (_, None) => CONTAINER_LABELS[..3]
                        .iter()
                        .filter(|n| {
                            !p.labels
                                .as_ref()
                                .is_some_and(|l| l.get_ref().contains_key(**n))
                        })
                        .map(|s| s.to_string())
                        .collect(),
                    (_, Some(names)) => {
                        for n in &names {
                            if !CONTAINER_LABELS.contains(&n.as_str()) {
                                ctx.err(
                                    Some(source_span.clone()),
                                    &format!("{key}.source.labels"),
                                    format!(
                                        "\"{n}\" is not a label a container log's path gives ({})",
                                        CONTAINER_LABELS.join(", ")
                                    ),
                                );
                            } else if p
                                .labels
                                .as_ref()
                                .is_some_and(|l| l.get_ref().contains_key(n))
                            {
                                ctx.err(
                                    Some(source_span.clone()),
                                    &format!("{key}.source.labels"),
                                    format!("\"{n}\" is also a constant label of the pipeline"),
                                );
                            }
                        }
                        let mut names = names;
                        names.dedup();
                        names
                    }
                };
                SourceSpec::File {
                    paths,
                    start_at,
                    format,
                    labels,
                }
            }
            RawSource::Stdin {} => SourceSpec::Stdin,
            RawSource::Exec { command, env } => {
                if command.is_empty() || command[0].is_empty() {
                    ctx.err(
                        Some(source_span.clone()),
                        &format!("{key}.source.command"),
                        "an exec source needs a command: [\"program\", \"arg\", ...]",
                    );
                }
                for name in &env {
                    let valid = name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        ctx.err(
                            Some(source_span.clone()),
                            &format!("{key}.source.env"),
                            format!("\"{name}\" is not an environment variable name (letters, digits and '_'); env lists the names of the agent's variables the command may see"),
                        );
                    }
                }
                SourceSpec::Exec { command, env }
            }
            RawSource::Journald {
                matches,
                directory,
                start_at,
                cursor_interval,
            } => {
                for m in &matches {
                    if let Err(why) = check_journal_match(m) {
                        ctx.err(
                            Some(source_span.clone()),
                            &format!("{key}.source.matches"),
                            format!("\"{m}\" is not a journalctl match: {why}"),
                        );
                    }
                }
                // journalctl takes "+" between two groups of matches; one at
                // either end or two in a row is a group with no match, which
                // journalctl refuses when the source starts.
                let plus_misplaced = matches.first().is_some_and(|m| m == "+")
                    || matches.last().is_some_and(|m| m == "+")
                    || matches.windows(2).any(|w| w[0] == "+" && w[1] == "+");
                if plus_misplaced {
                    ctx.err(
                        Some(source_span.clone()),
                        &format!("{key}.source.matches"),
                        "\"+\" goes between two groups of matches (like [\"_SYSTEMD_UNIT=a.service\", \"+\", \"_SYSTEMD_UNIT=b.service\"]), never first, last or twice in a row",
                    );
                }
                let directory = directory.map(|d| {
                    without_dot_dot(&base.join(d))
                        .to_string_lossy()
                        .into_owned()
                });
                let mut interval = DEFAULT_CURSOR_INTERVAL;
                if let Some(v) = &cursor_interval {
                    match parse_duration_key(v) {
                        Ok(d) => interval = d,
                        Err(e) => ctx.err(
                            Some(source_span.clone()),
                            &format!("{key}.source.cursor_interval"),
                            e,
                        ),
                    }
                }
                SourceSpec::Journald {
                    matches,
                    directory,
                    start_at,
                    cursor_interval: interval,
                }
            }
            RawSource::Http {
                url,
                method,
                body,
                headers,
                basic_auth,
                bearer_token_env,
                bearer_token_file,
                timeout,
                interval,
                max_age,
                max_body_bytes,
                accept_status,
                ca_file,
                insecure_skip_verify,
            } => {
                let skey = format!("{key}.source");
                let mut bad = |k: &str, m: String| {
                    ctx.err(Some(source_span.clone()), &format!("{skey}.{k}"), m)
                };
                if let Err(e) = redact::check_url(&url) {
                    bad("url", e);
                }
                if let Err((name, e)) = check_headers(&headers) {
                    bad(&format!("headers.{name}"), e);
                }
                let method = method.unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
                if method != "GET" && method != "POST" {
                    bad("method", format!("\"{method}\": GET or POST"));
                }
                let auth = match client_auth(base, basic_auth, bearer_token_env, bearer_token_file)
                {
                    Ok(a) => a,
                    Err((k, m)) => {
                        bad(k, m);
                        None
                    }
                };
                let mut dur = |k: &str, v: Option<toml::Value>, default: Duration| match v {
                    None => default,
                    Some(v) => match parse_duration_key(&v) {
                        Ok(d) => d,
                        Err(e) => {
                            bad(k, e);
                            default
                        }
                    },
                };
                let timeout = dur("timeout", timeout, Duration::from_secs(5));
                let interval = dur("interval", interval, Duration::from_secs(15));
                let max_age = max_age.map(|v| dur("max_age", Some(v), Duration::from_secs(5)));
                let max_body_bytes = match max_body_bytes.map(|v| parse_size(&v)) {
                    None => 10 << 20,
                    Some(Ok(n)) => n,
                    Some(Err(e)) => {
                        ctx.err(
                            Some(source_span.clone()),
                            &format!("{skey}.max_body_bytes"),
                            e,
                        );
                        0
                    }
                };
                SourceSpec::Http(Box::new(HttpSettings {
                    url,
                    method,
                    body,
                    headers,
                    auth,
                    timeout,
                    max_body_bytes,
                    accept_status,
                    ca_file: ca_file.map(|f| base.join(f)),
                    insecure_skip_verify,
                    interval,
                    max_age,
                }))
            }
            RawSource::Process { interval, max_age } => {
                let max_age = match max_age.map(|v| parse_duration_key(&v)) {
                    None => None,
                    Some(Ok(d)) => Some(d),
                    Some(Err(e)) => {
                        ctx.err(
                            Some(source_span.clone()),
                            &format!("{key}.source.max_age"),
                            e,
                        );
                        None
                    }
                };
                let interval = match interval.map(|v| parse_duration_key(&v)) {
                    None => Duration::from_secs(15),
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        ctx.err(
                            Some(source_span.clone()),
                            &format!("{key}.source.interval"),
                            e,
                        );
                        Duration::from_secs(15)
                    }
                };
                SourceSpec::Process { interval, max_age }
            }
        };
        let mut limits = Limits::default();
        if let Some(m) = &p.memory_limit {
            match parse_size(m.get_ref()) {
                Ok(n) if n >= 1 << 20 => limits.memory_bytes = n,
                Ok(_) => ctx.err(
                    Some(m.span()),
                    &format!("{key}.memory_limit"),
                    "at least 1MiB",
                ),
                Err(e) => ctx.err(Some(m.span()), &format!("{key}.memory_limit"), e),
            }
        }
        if let Some(t) = &p.call_timeout {
            match parse_duration_key(t.get_ref()) {
                Ok(d) => limits.call_timeout = d,
                Err(e) => ctx.err(Some(t.span()), &format!("{key}.call_timeout"), e),
            }
        }
        let mut max_line_bytes = 64 << 10;
        if let Some(m) = &p.max_line_bytes {
            match parse_size(m.get_ref()) {
                Ok(n) if n >= 64 => max_line_bytes = n,
                Ok(_) => ctx.err(
                    Some(m.span()),
                    &format!("{key}.max_line_bytes"),
                    "at least 64",
                ),
                Err(e) => ctx.err(Some(m.span()), &format!("{key}.max_line_bytes"), e),
            }
        }
        let checkpointed = matches!(
            source,
            SourceSpec::File { .. } | SourceSpec::Journald { .. }
        );
        let persist_values = match &p.persist_values {
            Some(v) if *v.get_ref() && !checkpointed => {
                ctx.err(
                    Some(v.span()),
                    &format!("{key}.persist_values"),
                    format!(
                        "{} source has no read positions to keep values with: \
                         persist_values is for file and journald sources",
                        with_article(source.kind())
                    ),
                );
                false
            }
            Some(v) => *v.get_ref(),
            None => checkpointed,
        };
        let expire_after = match &p.expire_after {
            None => None,
            Some(v) => {
                let k = format!("{key}.expire_after");
                let snapshot = matches!(source, SourceSpec::Http(_) | SourceSpec::Process { .. });
                match parse_duration_key(v.get_ref()) {
                    Err(e) => {
                        ctx.err(Some(v.span()), &k, e);
                        None
                    }
                    Ok(_) if snapshot => {
                        ctx.err(
                            Some(v.span()),
                            &k,
                            format!(
                                "{} source's series already leave when it stops reporting them: \
                                 expire_after is for sources of lines",
                                with_article(source.kind())
                            ),
                        );
                        None
                    }
                    Ok(d) => Some(d),
                }
            }
        };
        let multiline = match &p.multiline {
            None => None,
            Some(m) => {
                let mkey = format!("{key}.multiline");
                let line_source = matches!(
                    source,
                    SourceSpec::File { .. }
                        | SourceSpec::Exec { .. }
                        | SourceSpec::Stdin
                        | SourceSpec::Journald { .. }
                );
                if !line_source {
                    ctx.err(
                        Some(m.span()),
                        &mkey,
                        format!(
                            "a {} source reads no lines: multiline is for file, exec and stdin sources",
                            source.kind()
                        ),
                    );
                    None
                } else {
                    match multiline_of(m.get_ref()) {
                        Ok(s) => Some(s),
                        Err((k, msg)) => {
                            let full = if k.is_empty() {
                                mkey
                            } else {
                                format!("{mkey}.{k}")
                            };
                            // The line of the key itself, also in a
                            // `[pipeline.NAME.multiline]` table.
                            let line = key_line(text, &["pipeline", &name, "multiline", &k])
                                .unwrap_or_else(|| line_of(text, m.span().start));
                            ctx.errors.push(ConfigError {
                                file: path.to_path_buf(),
                                line: Some(line),
                                key: Some(full),
                                message: msg,
                            });
                            None
                        }
                    }
                }
            }
        };
        let labels = match p.labels {
            Some(labels) => {
                let span = labels.span();
                let labels = labels.into_inner();
                for l in labels.keys() {
                    if !valid_label_name(l) {
                        ctx.err(
                            Some(span.clone()),
                            &format!("{key}.labels.{l}"),
                            "not a valid label name",
                        );
                    } else if l == "le" || l == "quantile" {
                        // Every family of the pipeline gets the label: a
                        // histogram's buckets (le) or a summary's quantiles
                        // would clash with it.
                        ctx.err(
                            Some(span.clone()),
                            &format!("{key}.labels.{l}"),
                            format!("\"{l}\" is reserved (histogram buckets use le, summary quantiles use quantile); choose another name"),
                        );
                    }
                }
                labels
            }
            None => BTreeMap::new(),
        };
        let plugin_config = match &p.config {
            Some(t) => serde_json::to_string(t).unwrap_or_else(|_| "{}".into()),
            None => "{}".into(),
        };
        if ctx.errors.len() > before {
            continue;
        }
        out.pipelines.push(PipelineSpec {
            name,
            file: path.to_path_buf(),
            line: line_of(text, span.start),
            plugin,
            plugin_config,
            source,
            limits,
            max_series: p.max_series.unwrap_or(10_000),
            labels,
            max_line_bytes,
            batch_lines: p.batch_lines.unwrap_or(4096).clamp(1, 1 << 16),
            multiline,
            persist_values,
            expire_after,
        });
    }
    out
}

/// The config files of a directory, in name order: `*.toml`, skipping
/// hidden files (editor swap files, `..data` of ConfigMap mounts).
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ConfigError {
        file: dir.to_path_buf(),
        line: None,
        key: None,
        message: format!("cannot read the config directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".toml") && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// `path` with its `..` resolved the way the kernel resolves them (the part
/// up to the last `..` through `canonicalize`, which follows links first,
/// as opening the path would), so that `conf/../app.log` is shown and
/// labelled `/…/app.log`, as the same file named without `..` is. A path
/// without `..`, or whose prefix does not exist yet, is kept as written:
/// its links are left for each open to follow, so a link switched later
/// still counts.
pub fn without_dot_dot(path: &Path) -> PathBuf {
    let comps: Vec<_> = path.components().collect();
    let Some(last) = comps
        .iter()
        .rposition(|c| matches!(c, std::path::Component::ParentDir))
    else {
        return path.to_path_buf();
    };
    let prefix: PathBuf = comps[..=last].iter().collect();
    match std::fs::canonicalize(&prefix) {
        Ok(p) => p.join(comps[last + 1..].iter().collect::<PathBuf>()),
        Err(_) => path.to_path_buf(),
    }
}

/// `dir` made absolute against the working directory, once, with `.`
/// components, repeated and trailing slashes removed; symlinks are kept
/// (not resolved), so that a ConfigMap mount's `..data` swap and a
/// re-pointed symlinked directory are followed. `./conf/`, `conf` and
/// `/abs/conf` all give the same path.
pub fn absolute_dir(dir: &Path) -> PathBuf {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.components().collect()
}

/// Load and validate a whole directory. Returns every error found.
pub fn load_dir(dir: &Path) -> Result<AgentConfig, Vec<ConfigError>> {
    let dir = &absolute_dir(dir);
    let files = config_files(dir).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut settings_from: Option<(PathBuf, AgentSettingsPart)> = None;
    let mut pipelines: BTreeMap<String, PipelineSpec> = BTreeMap::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(ConfigError {
                    file: f.clone(),
                    line: None,
                    key: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let parsed = parse_file(&f, &text, &mut errors);
        if let Some((file, part)) = parsed.server {
            if let Some((first, _)) = &settings_from {
                errors.push(ConfigError {
                    file,
                    line: None,
                    key: Some("server".into()),
                    message: format!(
                        "[server] and [agent] may appear in one file only; already in {}",
                        first.display()
                    ),
                });
            } else {
                settings_from = Some((file, part));
            }
        }
        for p in parsed.pipelines {
            if let Some(other) = pipelines.get(&p.name) {
                errors.push(ConfigError {
                    file: p.file.clone(),
                    line: Some(p.line),
                    key: Some(format!("pipeline.{}", p.name)),
                    message: format!(
                        "pipeline \"{}\" is already defined in {}:{}",
                        p.name,
                        other.file.display(),
                        other.line
                    ),
                });
                continue;
            }
            pipelines.insert(p.name.clone(), p);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (origin_file, part) = match settings_from {
        Some((f, p)) => (Some(f), p),
        None => (None, AgentSettingsPart::default()),
    };
    let listen = part.listen.unwrap_or_else(|| {
        DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9731)))
    });
    Ok(AgentConfig {
        settings: AgentSettings {
            listen,
            state_dir: part.state_dir,
            reload_endpoint: part.reload_endpoint,
            security: part.security,
            limits: part.limits,
            remote_write: part.remote_write,
            otlp: part.otlp,
            origin: Origin {
                file: origin_file,
                lines: part.lines,
            },
        },
        pipelines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn two_remote_write_targets_may_not_share_a_name() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "a.toml",
            "[[remote_write]]\nurl = \"http://127.0.0.1:2/api/v1/write\"\n\n[[remote_write]]\nurl = \"http://127.0.0.1:2/api/v1/push\"\n",
        );
        let Err(errs) = load_dir(d.path()) else {
            panic!("two targets named alike were accepted")
        };
        let texts: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            texts
                .iter()
                .any(|t| t.contains("a.toml:4: remote_write[1].name")
                    && t.contains("\"127.0.0.1:2\" is already taken by remote_write[0]")),
            "{texts:?}"
        );
        write(
            d.path(),
            "a.toml",
            "[[remote_write]]\nurl = \"http://127.0.0.1:2/api/v1/write\"\n\n[[remote_write]]\nname = \"second\"\nurl = \"http://127.0.0.1:2/api/v1/push\"\n",
        );
        assert!(load_dir(d.path()).is_ok());
    }

    #[test]
    fn remote_write_errors_are_at_the_line_of_their_key() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("pass"), "").expect("pass");
        write(
            d.path(),
            "a.toml",
            "[server]\n\n[[remote_write]]\nurl = \"http:///api/v1/write\"\nname = \"\"\nmax_samples_per_send = 0\nexternal_labels = { __name__ = \"x\", cluster = \"\" }\nbearer_token_env = \"WEIR_UNIT_SURELY_UNSET\"\n\n[[remote_write]]\nurl = \"http://127.0.0.1:2/w\"\nmax_queue_samples = 0\n[remote_write.basic_auth]\nusername = \"u\"\npassword_file = \"pass\"\n",
        );
        let errs: Vec<String> = load_dir(d.path())
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_string())
            .collect();
        for want in [
            "a.toml:4: remote_write[0].url: \"http:///api/v1/write\" has no host",
            "a.toml:5: remote_write[0].name: is empty",
            "a.toml:6: remote_write[0].max_samples_per_send: must be at least 1",
            "a.toml:7: remote_write[0].external_labels.__name__: \"__name__\" is not a label name",
            "a.toml:7: remote_write[0].external_labels.cluster: is empty",
            "a.toml:8: remote_write[0].bearer_token_env: environment variable WEIR_UNIT_SURELY_UNSET is not set",
            "a.toml:12: remote_write[1].max_queue_samples: must be at least 1",
            "remote_write[1].basic_auth: secret file",
        ] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}\n{errs:#?}");
        }
        assert_eq!(errs.len(), 8, "{errs:#?}");
    }

    #[test]
    fn otlp_errors_are_at_the_line_of_their_key() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "a.toml",
            "[server]\n\n[[otlp]]\nendpoint = \"http:///v1/metrics\"\nname = \"\"\nmax_points_per_send = 0\ncompression = \"zstd\"\nresource_attributes = { \"\" = \"x\" }\nbearer_token_env = \"WEIR_UNIT_SURELY_UNSET\"\nkeep = [\"(\"]\n\n[[otlp]]\nendpoint = \"http://127.0.0.1:4318/v1/metrics\"\nmax_queue_points = 0\ninterval = \"soon\"\nheaders = { \"Bad Name\" = \"v\" }\nencoding = \"xml\"\n\n[[otlp]]\nendpoint = \"http://127.0.0.1:4318/v1/metrics\"\n",
        );
        let errs: Vec<String> = load_dir(d.path())
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_string())
            .collect();
        for want in [
            "a.toml:4: otlp[0].endpoint: \"http:///v1/metrics\" has no host",
            "a.toml:5: otlp[0].name: is empty",
            "a.toml:6: otlp[0].max_points_per_send: must be at least 1",
            "a.toml:7: otlp[0].compression: \"zstd\" is not a compression",
            "a.toml:8: otlp[0].resource_attributes: an attribute name is empty",
            "a.toml:9: otlp[0].bearer_token_env: environment variable WEIR_UNIT_SURELY_UNSET is not set",
            "a.toml:10: otlp[0].keep: invalid regex",
            "a.toml:14: otlp[1].max_queue_points: must be at least 1",
            "a.toml:15: otlp[1].interval:",
            "a.toml:16: otlp[1].headers.Bad Name",
            "a.toml:17: otlp[1].encoding: \"xml\" is not an encoding",
            "a.toml:19: otlp[2].name: target name \"127.0.0.1:4318\" is already taken by otlp[1]",
        ] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}\n{errs:#?}");
        }
        assert_eq!(errs.len(), 12, "{errs:#?}");
    }

    #[test]
    fn otlp_defaults() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "a.toml",
            "[[otlp]]\nendpoint = \"http://127.0.0.1:4318/v1/metrics\"\nresource_attributes = { \"service.name\" = \"edge\" }\n",
        );
        let cfg = load_dir(d.path()).expect("valid");
        let o = &cfg.settings.otlp[0];
        assert_eq!(o.name, "127.0.0.1:4318");
        assert_eq!(o.interval, Duration::from_secs(15));
        assert_eq!(o.compression, Compression::Gzip);
        assert_eq!(o.max_queue_points, 500_000);
        assert_eq!(o.resource_attributes["service.name"], "edge");
    }

    #[test]
    fn journald_settings_and_their_errors() {
        let d = tempfile::tempdir().expect("tempdir");
        let head = "[pipeline.j]\nplugin = \"json-log\"\n";
        std::fs::create_dir(d.path().join("journal")).expect("journal dir");
        write(
            d.path(),
            "a.toml",
            &format!("{head}[pipeline.j.source]\ntype = \"journald\"\nmatches = [\"_SYSTEMD_UNIT=nginx.service\", \"+\", \"PRIORITY=3\"]\ndirectory = \"journal\"\ncursor_interval = \"2s\"\n"),
        );
        let cfg = load_dir(d.path()).expect("valid");
        match &cfg.pipelines["j"].source {
            SourceSpec::Journald {
                matches,
                directory,
                start_at,
                cursor_interval,
            } => {
                assert_eq!(matches.len(), 3);
                let want = d.path().join("journal").display().to_string();
                assert_eq!(directory.as_deref(), Some(want.as_str()));
                assert_eq!(*start_at, StartAt::End);
                assert_eq!(*cursor_interval, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        for (text, want) in [
            (
                "matches = [\"nginx\"]\n",
                "a.toml:3: pipeline.j.source.matches: \"nginx\" is not a journalctl match",
            ),
            (
                "matches = [\"unit=x\"]\n",
                "pipeline.j.source.matches: \"unit=x\" is not a journalctl match: journal field names",
            ),
            (
                "matches = [\"=x\"]\n",
                "pipeline.j.source.matches: \"=x\" is not a journalctl match: the field name",
            ),
            (
                "cursor_interval = \"1us\"\n",
                "a.toml:3: pipeline.j.source.cursor_interval:",
            ),
            ("paths = [\"x\"]\n", "unknown field `paths`"),
            (
                "matches = [\"+\", \"PRIORITY=3\"]\n",
                "a.toml:3: pipeline.j.source.matches: \"+\" goes between two groups",
            ),
            (
                "matches = [\"PRIORITY=3\", \"+\"]\n",
                "pipeline.j.source.matches: \"+\" goes between",
            ),
            (
                "matches = [\"PRIORITY=3\", \"+\", \"+\", \"PRIORITY=4\"]\n",
                "pipeline.j.source.matches: \"+\" goes between",
            ),
        ] {
            write(
                d.path(),
                "a.toml",
                &format!("{head}[pipeline.j.source]\ntype = \"journald\"\n{text}"),
            );
            let errs = load_dir(d.path()).err().unwrap_or_default();
            assert_eq!(errs.len(), 1, "{text}: {errs:?}");
            let got = errs[0].to_string();
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn expire_after_and_persist_values_and_their_errors() {
        let d = tempfile::tempdir().expect("tempdir");
        let file = "[pipeline.app]\nplugin = \"regex-log\"\nsource = { type = \"file\", paths = [\"x.log\"] }\n";
        write(
            d.path(),
            "a.toml",
            &format!("{file}expire_after = \"90m\"\n"),
        );
        let cfg = load_dir(d.path()).expect("valid");
        let p = &cfg.pipelines["app"];
        assert_eq!(p.expire_after, Some(Duration::from_secs(5400)));
        assert!(p.persist_values, "on by default for a file source");
        let http = "[pipeline.app]\nplugin = \"json-stats\"\nsource = { type = \"http\", url = \"http://127.0.0.1:1/\" }\n";
        for (text, want) in [
            (
                format!("{file}expire_after = \"0s\"\n"),
                "a.toml:4: pipeline.app.expire_after: at least 10ms",
            ),
            (
                format!("{file}expire_after = \"soon\"\n"),
                "a.toml:4: pipeline.app.expire_after:",
            ),
            (
                format!("{http}expire_after = \"1h\"\n"),
                "a.toml:4: pipeline.app.expire_after: a http source's series already leave",
            ),
            (
                format!("{http}persist_values = true\n"),
                "a.toml:4: pipeline.app.persist_values: a http source has no read positions",
            ),
        ] {
            write(d.path(), "a.toml", &text);
            let errs = load_dir(d.path()).expect_err("invalid");
            let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            assert!(all.iter().any(|e| e.contains(want)), "{text}: {all:?}");
        }
        write(d.path(), "a.toml", http);
        let cfg = load_dir(d.path()).expect("valid");
        assert!(
            !cfg.pipelines["app"].persist_values,
            "off for a polled source"
        );
    }

    #[test]
    fn multiline_settings_and_their_errors() {
        let d = tempfile::tempdir().expect("tempdir");
        let head = "[pipeline.app]\nplugin = \"regex-log\"\nsource = { type = \"file\", paths = [\"x.log\"] }\n";
        write(d.path(), "a.toml", &format!("{head}multiline = \"go\"\n"));
        let cfg = load_dir(d.path()).expect("valid");
        let m = cfg.pipelines["app"].multiline.clone().expect("multiline");
        assert_eq!(m.rule, MultilineRule::Preset(MultilinePreset::Go));
        assert_eq!(
            (m.max_lines, m.timeout),
            (MULTILINE_MAX_LINES, MULTILINE_TIMEOUT)
        );
        write(
            d.path(),
            "a.toml",
            &format!("{head}[pipeline.app.multiline]\nstart = '^\\d'\nmax_lines = 20\nmax_bytes = \"4KiB\"\ntimeout = \"250ms\"\n"),
        );
        let cfg = load_dir(d.path()).expect("valid");
        let m = cfg.pipelines["app"].multiline.clone().expect("multiline");
        assert_eq!(
            m.rule,
            MultilineRule::Start(regex::Regex::new(r"^\d").expect("re"))
        );
        assert_eq!((m.max_lines, m.max_bytes), (20, 4096));
        assert_eq!(m.timeout, Duration::from_millis(250));
        for (text, want) in [
            (
                "multiline = \"ruby\"\n",
                "a.toml:4: pipeline.app.multiline: no preset \"ruby\"",
            ),
            (
                "[pipeline.app.multiline]\nmax_lines = 5\nstart = '(['\n",
                "a.toml:6: pipeline.app.multiline.start: invalid regex",
            ),
            (
                "[pipeline.app.multiline]\nstart = 'a'\ncontinue = 'b'\n",
                "give one of start, continue or preset, not two",
            ),
            (
                "multiline = { max_lines = 3 }\n",
                "a.toml:4: pipeline.app.multiline: needs one of start",
            ),
            (
                "multiline = { preset = \"java\", timeout = \"1us\" }\n",
                "a.toml:4: pipeline.app.multiline.timeout:",
            ),
            (
                "[pipeline.app.multiline]\npreset = \"java\"\n\nmax_line = 3\n",
                "a.toml:7: pipeline.app.multiline.max_line: unknown key",
            ),
            (
                "multiline = { preset = \"java\", max_lines = 0 }\n",
                "pipeline.app.multiline.max_lines: a number of lines",
            ),
        ] {
            write(d.path(), "a.toml", &format!("{head}{text}"));
            let errs = load_dir(d.path()).err().unwrap_or_default();
            assert_eq!(errs.len(), 1, "{text}: {errs:?}");
            let got = errs[0].to_string();
            assert!(got.contains(want), "{text}: {got}");
        }
        write(
            d.path(),
            "a.toml",
            "[pipeline.p]\nplugin = \"process-groups\"\nsource = { type = \"process\" }\nmultiline = \"java\"\n",
        );
        let errs = load_dir(d.path()).err().unwrap_or_default();
        assert!(
            errs[0]
                .to_string()
                .contains("a.toml:4: pipeline.p.multiline: a process source reads no lines"),
            "{errs:?}"
        );
    }

    #[test]
    fn container_formats_and_their_labels() {
        let d = tempfile::tempdir().expect("tempdir");
        let head = "[pipeline.k]\nplugin = \"regex-log\"\n";
        write(
            d.path(),
            "a.toml",
            &format!("{head}source = {{ type = \"file\", paths = [\"/var/log/pods/*/*/*.log\"], format = \"cri\" }}\nlabels = {{ pod = \"fixed\" }}\n"),
        );
        let cfg = load_dir(d.path()).expect("valid");
        let spec = &cfg.pipelines["k"];
        assert_eq!(spec.source_labels(), ["namespace", "container"]);
        assert_eq!(spec.label_names(), ["pod", "namespace", "container"]);
        for (source, want) in [
            (
                "{ type = \"file\", paths = [\"x\"], format = \"json\" }",
                "a.toml:3: pipeline.k.source.format: \"json\" is not a format",
            ),
            (
                "{ type = \"file\", paths = [\"x\"], format = \"docker\", labels = [\"node\"] }",
                "pipeline.k.source.labels: \"node\" is not a label",
            ),
            (
                "{ type = \"file\", paths = [\"x\"], labels = [\"pod\"] }",
                "pipeline.k.source.labels: labels from the path are for container logs",
            ),
        ] {
            write(d.path(), "a.toml", &format!("{head}source = {source}\n"));
            let errs = load_dir(d.path()).err().unwrap_or_default();
            assert_eq!(errs.len(), 1, "{source}: {errs:?}");
            assert!(errs[0].to_string().contains(want), "{}", errs[0]);
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "a.toml",
            "[pipeline.web]\nplugin = \"regex-log\"\nsource = { type = \"file\", paths = [\"x.log\"] }\nbogus = 1\n",
        );
        write(
            d.path(),
            "b.toml",
            "[pipeline.api]\nplugin = \"nope\"\nsource = { type = \"stdin\" }\ncall_timeout = \"5 parsecs\"\n",
        );
        let errs = load_dir(d.path()).err().unwrap_or_default();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:#?}");
        assert!(
            text[0].contains("a.toml:4") && text[0].contains("bogus"),
            "{}",
            text[0]
        );
        assert!(
            text[1].contains("b.toml:2: pipeline.api.plugin") && text[1].contains("regex-log"),
            "{}",
            text[1]
        );
        assert!(
            text[2].contains("b.toml:4: pipeline.api.call_timeout"),
            "{}",
            text[2]
        );
    }

    #[test]
    fn headers_that_http_cannot_carry_are_refused_without_their_value() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "a.toml",
            "[pipeline.api]\nplugin = \"json-stats\"\nsource = { type = \"http\", url = \"http://127.0.0.1:1/\", headers = { X-Token = \"s3cret\\nX-Evil: 1\" } }\n\n[[remote_write]]\nurl = \"http://127.0.0.1:2/api/v1/write\"\nheaders = { \"Bad Name\" = \"v\" }\n",
        );
        let errs = load_dir(d.path()).err().unwrap_or_default();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{text:#?}");
        let src = text
            .iter()
            .find(|t| t.contains("a.toml:3: pipeline.api.source.headers.X-Token"))
            .expect("the source's header is refused");
        assert!(
            src.contains("line break") && !src.contains("s3cret"),
            "{src}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("a.toml:7: remote_write[0].headers.Bad Name")),
            "{text:#?}"
        );
    }

    #[test]
    fn reserved_and_invalid_pipeline_labels_are_refused_at_their_line() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "a.toml",
            "[pipeline.api]\nplugin = \"prometheus-text\"\n\nlabels = { le = \"oops\", quantile = \"x\", __name__ = \"y\", site = \"ok\" }\nsource = { type = \"stdin\" }\n",
        );
        let errs = load_dir(d.path()).err().unwrap_or_default();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:#?}");
        for k in ["le", "quantile", "__name__"] {
            assert!(
                text.iter()
                    .any(|t| t.contains(&format!("a.toml:4: pipeline.api.labels.{k}"))),
                "{k}: {text:#?}"
            );
        }
        assert!(text.iter().any(|t| t.contains("reserved")), "{text:#?}");
    }

    #[test]
    fn dot_dot_in_file_paths_is_resolved_as_the_kernel_would() {
        let d = tempfile::tempdir().expect("tempdir");
        let real = d.path().join("real/conf");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, d.path().join("conf")).expect("symlink");
        // conf/.. is real/, not d/: the link is followed first.
        assert_eq!(
            without_dot_dot(&d.path().join("conf/../app.log")),
            std::fs::canonicalize(d.path().join("real"))
                .expect("canon")
                .join("app.log")
        );
        let plain = d.path().join("conf/app-*.log");
        assert_eq!(without_dot_dot(&plain), plain);
        let missing = d.path().join("nowhere/../x.log");
        assert_eq!(without_dot_dot(&missing), missing);
    }

    #[test]
    fn duplicate_pipelines_and_settings_are_refused() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = "[pipeline.web]\nplugin = \"regex-log\"\nsource = { type = \"stdin\" }\n";
        write(
            d.path(),
            "a.toml",
            &format!("[server]\nlisten = \"127.0.0.1:1\"\n{p}"),
        );
        write(d.path(), "b.toml", &format!("[server]\n{p}"));
        write(d.path(), ".b.toml.swp", "garbage");
        let errs = load_dir(d.path()).err().unwrap_or_default();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{text:#?}");
        assert!(text
            .iter()
            .any(|t| t.contains("already defined in") && t.contains("a.toml:3")));
        assert!(text.iter().any(|t| t.contains("one file only")));
    }

    #[test]
    fn parses_a_pipeline_with_defaults_and_units() {
        let d = tempfile::tempdir().expect("tempdir");
        write(
            d.path(),
            "web.toml",
            "[pipeline.web]\nplugin = \"regex-log\"\nmemory_limit = \"32MiB\"\ncall_timeout = \"250ms\"\nlabels = { site = \"eu\" }\n[pipeline.web.source]\ntype = \"file\"\npaths = [\"logs/*.log\"]\nstart_at = \"beginning\"\n[pipeline.web.config]\nrules = []\n",
        );
        let cfg = load_dir(d.path()).expect("valid");
        let p = &cfg.pipelines["web"];
        assert_eq!(p.limits.memory_bytes, 32 << 20);
        assert_eq!(p.limits.call_timeout, Duration::from_millis(250));
        assert_eq!(p.plugin_config, "{\"rules\":[]}");
        assert_eq!(p.line, 1);
        assert_eq!(cfg.settings.listen.to_string(), DEFAULT_LISTEN);
        match &p.source {
            SourceSpec::File {
                paths, start_at, ..
            } => {
                assert!(paths[0].ends_with("logs/*.log") && paths[0].starts_with('/'));
                assert_eq!(*start_at, StartAt::Beginning);
            }
            other => panic!("unexpected source {other:?}"),
        }
    }
}
