//! Every settings type the agent's modules take, built by [`crate::config`]
//! and owned here so that the config is a leaf: the server, the sources,
//! the sandbox and remote write depend on these types, never the other way.
use ipnet::IpNet;
use regex::Regex;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Resource limits of one plugin instance (the sandbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory (and tables) in bytes.
    pub memory_bytes: usize,
    /// Deadline for one call (`init` included).
    pub call_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
        }
    }
}

/// Where a secret comes from. Read at each use, so a rotated secret is
/// picked up, and never written to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable of the agent.
    Env(String),
    /// A file (trailing line breaks removed).
    File(PathBuf),
}

impl Secret {
    /// The secret's value now: the variable's value, or the file's
    /// contents without trailing line breaks. The one rule for every
    /// secret (server tokens, HTTP sources, remote write). Empty is an
    /// error. Errors name the variable or the file, never the value.
    pub fn read(&self) -> Result<String, String> {
        let v = match self {
            Secret::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))?
            }
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?,
        };
        if v.is_empty() {
            return Err(match self {
                Secret::Env(n) => format!("environment variable {n} is empty"),
                Secret::File(p) => format!("secret file {} is empty", p.display()),
            });
        }
        Ok(v)
    }
}

/// Client authentication (HTTP sources, remote write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// `Authorization: Bearer`.
    Bearer(Secret),
}

/// Settings of an HTTP source.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// URL to fetch.
    pub url: String,
    /// `GET` or `POST`.
    pub method: String,
    /// Request body (POST).
    pub body: Option<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// Authentication.
    pub auth: Option<Auth>,
    /// Deadline of the whole request, body included.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_body_bytes: usize,
    /// Accepted status codes; empty means 200–299.
    pub accept_status: Vec<u16>,
    /// PEM file with extra root certificates.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (never by default).
    pub insecure_skip_verify: bool,
    /// Time between polls.
    pub interval: Duration,
    /// Poll at scrape time instead, when the last poll is older than this.
    pub max_age: Option<Duration>,
}

/// Settings of one remote-write target.
#[derive(Debug, Clone)]
pub struct RemoteWriteSettings {
    /// Name for metrics and logs (defaults to the URL's host).
    pub name: String,
    /// Receiver URL, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Time between collections.
    pub interval: Duration,
    /// Request timeout.
    pub timeout: Duration,
    /// Extra headers (e.g. `X-Scope-OrgID`).
    pub headers: BTreeMap<String, String>,
    /// Basic or bearer auth.
    pub auth: Option<Auth>,
    /// Labels added to every series (unless the series has them).
    pub external_labels: BTreeMap<String, String>,
    /// Keep only metric names matching one of these (empty: all).
    pub keep: Vec<Regex>,
    /// Drop metric names matching one of these.
    pub drop: Vec<Regex>,
    /// Most samples held while the receiver is unreachable.
    pub max_queue_samples: usize,
    /// Most samples per request.
    pub max_samples_per_send: usize,
    /// PEM CA bundle for https receivers.
    pub ca_file: Option<PathBuf>,
}

impl PartialEq for RemoteWriteSettings {
    fn eq(&self, o: &Self) -> bool {
        // Regex has no PartialEq: compare the patterns.
        let re = |a: &[Regex], b: &[Regex]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_str() == y.as_str())
        };
        self.name == o.name
            && self.url == o.url
            && self.interval == o.interval
            && self.timeout == o.timeout
            && self.headers == o.headers
            && self.auth == o.auth
            && self.external_labels == o.external_labels
            && re(&self.keep, &o.keep)
            && re(&self.drop, &o.drop)
            && self.max_queue_samples == o.max_queue_samples
            && self.max_samples_per_send == o.max_samples_per_send
            && self.ca_file == o.ca_file
    }
}

/// Body compression of OTLP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `Content-Encoding: gzip` (the default, as for the OpenTelemetry
    /// Collector's otlphttp exporter).
    Gzip,
    /// No compression.
    None,
}

/// Body encoding of OTLP requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// Binary protobuf, `application/x-protobuf` (the default).
    Protobuf,
    /// The OTLP JSON encoding, `application/json`.
    Json,
}

/// Settings of one OTLP/HTTP target.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// Name for metrics and logs (defaults to the endpoint's host:port).
    pub name: String,
    /// Full URL, e.g. `http://127.0.0.1:4318/v1/metrics`.
    pub endpoint: String,
    /// Time between collections.
    pub interval: Duration,
    /// Request timeout.
    pub timeout: Duration,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Basic or bearer auth.
    pub auth: Option<Auth>,
    /// Resource attributes given in the config; `service.name = "weir"`
    /// and `host.name` (the host name) are added unless given here.
    pub resource_attributes: BTreeMap<String, String>,
    /// Keep only families whose name matches one of these (empty: all).
    pub keep: Vec<Regex>,
    /// Drop families whose name matches one of these.
    pub drop: Vec<Regex>,
    /// Most data points held while the receiver is unreachable.
    pub max_queue_points: usize,
    /// Most data points per request.
    pub max_points_per_send: usize,
    /// Body compression.
    pub compression: Compression,
    /// Body encoding.
    pub encoding: OtlpEncoding,
    /// PEM CA bundle for https receivers.
    pub ca_file: Option<PathBuf>,
}

impl PartialEq for OtlpSettings {
    fn eq(&self, o: &Self) -> bool {
        let re = |a: &[Regex], b: &[Regex]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_str() == y.as_str())
        };
        self.name == o.name
            && self.endpoint == o.endpoint
            && self.interval == o.interval
            && self.timeout == o.timeout
            && self.headers == o.headers
            && self.auth == o.auth
            && self.resource_attributes == o.resource_attributes
            && re(&self.keep, &o.keep)
            && re(&self.drop, &o.drop)
            && self.max_queue_points == o.max_queue_points
            && self.max_points_per_send == o.max_points_per_send
            && self.compression == o.compression
            && self.encoding == o.encoding
            && self.ca_file == o.ca_file
    }
}

/// How a line source joins lines into multi-line records (a pipeline's
/// `multiline`): a Java or Python stack trace, a Go panic, a multi-line
/// statement reaches the plugin as one string, its lines joined by `\n`.
#[derive(Debug, Clone, PartialEq)]
pub struct MultilineSettings {
    /// Which lines belong to the record before them.
    pub rule: MultilineRule,
    /// Most lines kept in one record (at least 1); the record's further
    /// lines are read and dropped.
    pub max_lines: usize,
    /// Most bytes kept in one record, line feeds included (at least 64).
    pub max_bytes: usize,
    /// An unfinished record is passed on when no line came for this long.
    pub timeout: Duration,
}

/// The rule of a [`MultilineSettings`].
#[derive(Debug, Clone)]
pub enum MultilineRule {
    /// A line matching the pattern starts a record; any other line
    /// continues the record before it.
    Start(Regex),
    /// A line matching the pattern continues the record before it; any
    /// other line starts one.
    Continue(Regex),
    /// A built-in rule for one language's traces.
    Preset(MultilinePreset),
}

impl PartialEq for MultilineRule {
    fn eq(&self, o: &Self) -> bool {
        // Regex has no PartialEq: compare the patterns.
        match (self, o) {
            (MultilineRule::Start(a), MultilineRule::Start(b))
            | (MultilineRule::Continue(a), MultilineRule::Continue(b)) => a.as_str() == b.as_str(),
            (MultilineRule::Preset(a), MultilineRule::Preset(b)) => a == b,
            _ => false,
        }
    }
}

/// Built-in multi-line rules (see `sources::multiline` for what each
/// recognises).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultilinePreset {
    /// JVM stack traces: `\tat ...`, `Caused by: ...`, `... 3 more`, and
    /// an exception's class line after the message that logged it.
    Java,
    /// Python tracebacks, chained ones included.
    Python,
    /// Go panics and fatal errors with their goroutine dumps.
    Go,
}

impl MultilinePreset {
    /// Every preset, by its config name.
    pub const ALL: [(&'static str, MultilinePreset); 3] = [
        ("java", MultilinePreset::Java),
        ("python", MultilinePreset::Python),
        ("go", MultilinePreset::Go),
    ];
}

/// Limits on the endpoint's clients.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time allowed to send request headers (and the TLS handshake).
    pub header_timeout: Duration,
    /// Time allowed to answer one request.
    pub request_timeout: Duration,
    /// Largest `/metrics` body (uncompressed bytes) served; a larger one
    /// is answered 500 and counted, never truncated. `None`: no limit.
    pub max_scrape_bytes: Option<usize>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_scrape_bytes: None,
        }
    }
}

/// TLS settings of the endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

/// Credentials accepted for a set of routes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuthSettings {
    /// User name to bcrypt hash.
    pub basic: BTreeMap<String, String>,
    /// Accepted bearer tokens (read from files or environment at load).
    pub bearer_tokens: Vec<String>,
}

impl AuthSettings {
    /// Whether any credential is configured.
    pub fn is_empty(&self) -> bool {
        self.basic.is_empty() && self.bearer_tokens.is_empty()
    }
}

/// Everything the endpoint enforces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecuritySettings {
    /// TLS, if any.
    pub tls: Option<TlsSettings>,
    /// Credentials for every route but `/health`.
    pub auth: AuthSettings,
    /// Credentials for admin routes (`/-/reload`); when empty, admin
    /// routes take the read credentials and loopback peers only.
    pub admin_auth: AuthSettings,
    /// Networks allowed to connect; empty means any.
    pub allow: Vec<IpNet>,
    /// Host names (in the `Host` header) served besides IP addresses and
    /// `localhost`; see `server::security::host_allowed`.
    pub allowed_hosts: Vec<String>,
}

/// Whether `n` is a valid Prometheus metric name (`[a-zA-Z_][a-zA-Z0-9_]*`;
/// colons are for recording rules, not exporters).
pub fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `n` is a valid Prometheus label name that is not reserved
/// (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`; Prometheus data
/// model). The config checks constant labels with it, the store every
/// label a plugin declares.
pub fn valid_label_name(n: &str) -> bool {
    valid_metric_name(n) && !n.starts_with("__")
}
