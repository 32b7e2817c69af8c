//! The HTTP endpoint: `/metrics`, `/health`, `/ready`, the status page at
//! `/` and `/api/v1/status` ([`status`]), and `POST /-/reload` when enabled; TLS, authentication, an
//! allow-list and limits from [`security`]. Every `[server]` setting is
//! read per connection or request from one swappable cell ([`Live`]), so
//! that a reload applies it whole.
pub mod conns;
pub mod security;
pub mod status;
use crate::agent::Agent;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Content type of the 0.0.4 text format.
pub const TEXT_04: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest life of one connection (keep-alive included).
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// Limits on clients; settings of `[server]`.
pub use crate::config::ServerLimits;

/// The server's security, built from settings before a reload commits.
pub struct Security {
    /// TLS, if configured.
    pub tls: Option<Arc<security::Tls>>,
    /// Credentials for reading.
    pub read: Arc<security::Guard>,
    /// Credentials for admin routes, if separate.
    pub admin: Option<Arc<security::Guard>>,
    /// Allowed networks.
    pub allow: Vec<ipnet::IpNet>,
    /// Host names served besides IP addresses and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// Limits.
    pub limits: ServerLimits,
}

impl Security {
    /// Build from settings; TLS files are read now, errors name them.
    pub fn new(s: security::SecuritySettings, limits: ServerLimits) -> Result<Self, String> {
        let tls = s.tls.map(security::Tls::new).transpose()?.map(Arc::new);
        let admin = if s.admin_auth.is_empty() {
            None
        } else {
            Some(Arc::new(security::Guard::new(s.admin_auth)))
        };
        Ok(Security {
            tls,
            read: Arc::new(security::Guard::new(s.auth)),
            admin,
            allow: s.allow,
            allowed_hosts: s.allowed_hosts,
            limits,
        })
    }
}

/// Every `[server]` setting in effect, as one value: requests and
/// connections read the current one from [`ServerCtx::live`], and a reload
/// replaces it whole, so a request never sees half of a change.
pub struct Live {
    /// The settings it was built from.
    pub settings: ServerSettings,
    /// TLS, credentials, allow-list and limits, built.
    pub security: Security,
    /// Changes whenever TLS is switched on, off or to other files: a kept
    /// connection accepted under another TLS setup is closed.
    tls_generation: u64,
}

/// The `[server]` settings the endpoint applies live.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// TLS, credentials, allow-list.
    pub security: security::SecuritySettings,
    /// Client limits.
    pub limits: ServerLimits,
    /// Whether `POST /-/reload` is served.
    pub reload_endpoint: bool,
}

impl ServerSettings {
    /// The server settings of a configuration.
    pub fn of(s: &crate::config::AgentSettings) -> Self {
        ServerSettings {
            security: s.security.clone(),
            limits: s.limits.clone(),
            reload_endpoint: s.reload_endpoint,
        }
    }

    /// The keys that differ, as `server.KEY` (no values: they may be
    /// secrets).
    pub fn changed_keys(&self, new: &ServerSettings) -> Vec<&'static str> {
        let (a, b) = (&self.security, &new.security);
        let mut out = Vec::new();
        let mut diff = |k: &'static str, d: bool| {
            if d {
                out.push(k)
            }
        };
        diff("server.tls", a.tls != b.tls);
        diff("server.auth", a.auth != b.auth);
        diff("server.admin_auth", a.admin_auth != b.admin_auth);
        diff("server.allow", a.allow != b.allow);
        diff("server.allowed_hosts", a.allowed_hosts != b.allowed_hosts);
        diff(
            "server.max_connections",
            self.limits.max_connections != new.limits.max_connections,
        );
        diff(
            "server.header_timeout",
            self.limits.header_timeout != new.limits.header_timeout,
        );
        diff(
            "server.request_timeout",
            self.limits.request_timeout != new.limits.request_timeout,
        );
        diff(
            "server.max_scrape_bytes",
            self.limits.max_scrape_bytes != new.limits.max_scrape_bytes,
        );
        diff(
            "server.reload_endpoint",
            self.reload_endpoint != new.reload_endpoint,
        );
        out
    }
}

impl Live {
    /// Build the live settings; `old` lends the parts that did not change
    /// (the TLS setup with its certificate reloading, the credential
    /// caches, the connection slots). Fails naming the TLS file.
    pub fn build(settings: ServerSettings, old: Option<&Live>) -> Result<Live, String> {
        let mut security = Security::new(
            security::SecuritySettings {
                // TLS is read below only when it changed.
                tls: None,
                ..settings.security.clone()
            },
            settings.limits.clone(),
        )?;
        let mut tls_generation = 0;
        match old {
            Some(old) if old.settings.security.tls == settings.security.tls => {
                security.tls = old.security.tls.clone();
                tls_generation = old.tls_generation;
            }
            _ => {
                security.tls = settings
                    .security
                    .tls
                    .clone()
                    .map(security::Tls::new)
                    .transpose()?
                    .map(Arc::new);
                if let Some(old) = old {
                    tls_generation = old.tls_generation + 1;
                }
            }
        }
        if let Some(old) = old {
            let (a, b) = (&old.settings.security, &settings.security);
            if a.auth == b.auth {
                security.read = old.security.read.clone();
            }
            if a.admin_auth == b.admin_auth {
                security.admin = old.security.admin.clone();
            }
        }
        Ok(Live {
            settings,
            security,
            tls_generation,
        })
    }
}

/// What the server asks of the rest of the agent.
pub struct ServerCtx {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Where reload requests go (answered with the outcome).
    pub reload: mpsc::Sender<tokio::sync::oneshot::Sender<Result<String, String>>>,
    live: RwLock<Arc<Live>>,
    /// Where password checks run and failed logins are counted; kept
    /// across reloads (the per-peer failure counts stay).
    pub gate: security::Gate,
}

impl ServerCtx {
    /// A context serving `live`.
    pub fn new(
        agent: Arc<Agent>,
        reload: mpsc::Sender<tokio::sync::oneshot::Sender<Result<String, String>>>,
        live: Live,
    ) -> Arc<Self> {
        Arc::new(ServerCtx {
            agent,
            reload,
            live: RwLock::new(Arc::new(live)),
            gate: security::Gate::default(),
        })
    }

    /// The settings in effect now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().clone()
    }
}

/// The endpoint as a reload sees it: the settings cell and the listening
/// socket, both replaceable.
pub struct Server {
    ctx: Arc<ServerCtx>,
    rt: tokio::runtime::Handle,
    /// `--listen` given on the command line: `[server] listen` is not used.
    listen_fixed: bool,
    listening: Mutex<(SocketAddr, tokio::task::JoinHandle<()>)>,
}

/// A server change computed before anything changes: the new settings
/// built, the new address already bound.
pub struct ServerPlan {
    live: Option<Live>,
    listener: Option<(SocketAddr, std::net::TcpListener)>,
    /// The keys that change, as `server.KEY`.
    pub changed: Vec<&'static str>,
    /// Changes not applied, with the reason (a `--listen` override).
    pub ignored: Vec<String>,
}

/// Bind a listening socket now (so that errors show before anything
/// changes).
pub fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

impl Server {
    /// Serve `live` on `listener` on the runtime `rt`. `listen_fixed` says
    /// the address came from `--listen` and reloads do not move it.
    pub fn start(
        rt: tokio::runtime::Handle,
        ctx: Arc<ServerCtx>,
        listener: std::net::TcpListener,
        listen_fixed: bool,
    ) -> std::io::Result<Arc<Server>> {
        let addr = listener.local_addr()?;
        let task = {
            let _g = rt.enter();
            let l = TcpListener::from_std(listener)?;
            rt.spawn(serve(l, ctx.clone()))
        };
        Ok(Arc::new(Server {
            ctx,
            rt,
            listen_fixed,
            listening: Mutex::new((addr, task)),
        }))
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.listening.lock().0
    }

    /// The context (settings cell) served.
    pub fn ctx(&self) -> &Arc<ServerCtx> {
        &self.ctx
    }

    /// Compute the change to `cfg`'s server settings: build TLS and
    /// credentials, bind a new `listen` address. Errors are located at the
    /// key; nothing served changes.
    pub fn plan(&self, cfg: &crate::config::AgentSettings) -> Result<ServerPlan, Vec<String>> {
        let live = self.ctx.live();
        let new = ServerSettings::of(cfg);
        let mut errors = Vec::new();
        let mut plan = ServerPlan {
            live: None,
            listener: None,
            changed: live.settings.changed_keys(&new),
            ignored: Vec::new(),
        };
        if !plan.changed.is_empty() {
            match Live::build(new, Some(&live)) {
                Ok(l) => plan.live = Some(l),
                Err(e) => errors.push(cfg.origin.error("server.tls", e).to_string()),
            }
        }
        let addr = self.addr();
        if cfg.listen != addr {
            if self.listen_fixed {
                if cfg.origin.lines.contains_key("server.listen") {
                    plan.ignored.push(format!(
                        "server.listen = \"{}\" not applied: --listen {addr} overrides it",
                        cfg.listen
                    ));
                }
            } else {
                match bind_std(cfg.listen) {
                    Ok(l) => {
                        plan.listener = Some((cfg.listen, l));
                        plan.changed.push("server.listen");
                    }
                    Err(e) => errors.push(
                        cfg.origin
                            .error(
                                "server.listen",
                                format!(
                                    "cannot listen on {}: {e}; still serving on {addr}",
                                    cfg.listen
                                ),
                            )
                            .to_string(),
                    ),
                }
            }
        }
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }

    /// Apply a plan: swap the settings, then serve the new address and
    /// close the old one (connections already accepted finish).
    pub fn commit(&self, plan: ServerPlan) {
        if let Some(live) = plan.live {
            *self.ctx.live.write() = Arc::new(live);
        }
        if let Some((addr, l)) = plan.listener {
            let _g = self.rt.enter();
            match TcpListener::from_std(l) {
                Ok(l) => {
                    let task = self.rt.spawn(serve(l, self.ctx.clone()));
                    let (old, old_task) =
                        std::mem::replace(&mut *self.listening.lock(), (addr, task));
                    old_task.abort();
                    tracing::info!("now listening on {addr}; closed {old}");
                }
                Err(e) => tracing::error!("cannot serve on {addr}: {e}"),
            }
        }
    }

    /// Stop accepting.
    pub fn stop(&self) {
        self.listening.lock().1.abort();
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::UNAUTHORIZED, "text/plain", "unauthorized\n");
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"weir\", charset=\"UTF-8\""),
    );
    r
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(ctype) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// Whether the client prefers OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    // (q, position) of the best range each format matches; RFC 9110
    // 12.5.1: types and parameter names are case-insensitive, q defaults
    // to 1, q=0 means "not acceptable". A tie goes to the range listed
    // first.
    let mut om: Option<(u32, usize)> = None;
    let mut text: Option<(u32, usize)> = None;
    for (pos, part) in accept.split(',').enumerate() {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1000u32;
        let mut version: Option<String> = None;
        for param in it {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = parse_qvalue(v).unwrap_or(0),
                "version" => version = Some(v.to_string()),
                _ => {}
            }
        }
        if q == 0 {
            continue;
        }
        let v = version.as_deref();
        let slot = match media.as_str() {
            // weir writes OpenMetrics 1.0.0 only.
            "application/openmetrics-text" if matches!(v, None | Some("1.0.0")) => &mut om,
            "text/plain" if matches!(v, None | Some("0.0.4")) => &mut text,
            "text/*" | "*/*" => &mut text,
            _ => continue,
        };
        if slot.is_none_or(|(best, _)| q > best) {
            *slot = Some((q, pos));
        }
    }
    match (om, text) {
        (Some(_), None) => true,
        (Some((qo, po)), Some((qt, pt))) => qo > qt || (qo == qt && po < pt),
        _ => false,
    }
}

/// Why a `/metrics` body was not served.
enum ScrapeError {
    /// (bytes, `max_scrape_bytes`).
    TooLarge(usize, usize),
    Gzip(std::io::Error),
}

/// Whether an `Accept-Encoding` header (RFC 9110 12.5.3) takes gzip:
/// `gzip` or `x-gzip` (case-insensitive), or `*` when gzip is not named,
/// with a q-value above 0. Prometheus sends `Accept-Encoding: gzip` on
/// every scrape.
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(v) = accept_encoding else {
        return false;
    };
    let mut named: Option<bool> = None;
    let mut star: Option<bool> = None;
    for part in v.split(',') {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1000u32;
        for param in it {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = parse_qvalue(v.trim()).unwrap_or(0);
                }
            }
        }
        match coding.as_str() {
            "gzip" | "x-gzip" => named = Some(named.unwrap_or(false) || q > 0),
            "*" => star = Some(q > 0),
            _ => {}
        }
    }
    named.or(star).unwrap_or(false)
}

/// `body` compressed with gzip at the fastest level: a text exposition
/// shrinks about tenfold at it, and the scrape's CPU stays the agent's
/// smallest cost (figures in BENCHMARKS.md). flate2, not our own code.
fn gzipped(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_qvalue(v: &str) -> Option<u32> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let milli = format!("{frac:0<3}").parse::<u32>().ok()?;
    match int {
        "0" => Some(milli),
        "1" if milli == 0 => Some(1000),
        _ => None,
    }
}

async fn handle(
    ctx: Arc<ServerCtx>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let live = ctx.live();
    let timeout = live.security.limits.request_timeout;
    let _serving = conn.slot.serving(live.security.limits.max_connections);
    // Under another certificate now: answer, then close, so that the next
    // request handshakes with the new one.
    let stale = conn.tls_generation != live.tls_generation;
    match tokio::time::timeout(timeout, route(ctx.clone(), live, &conn, peer, req)).await {
        Ok(r) if stale => Ok(closing(r)),
        Ok(r) => Ok(r),
        Err(_) => Ok(respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "request timed out\n",
        )),
    }
}

async fn route(
    ctx: Arc<ServerCtx>,
    live: Arc<Live>,
    conn: &Conn,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let agent = &ctx.agent;
    // Settings are read per request, so a kept connection gets the new
    // credentials and allow-list at once; one accepted under another TLS
    // setup is closed (TLS switched on must not leave plain connections).
    if !security::allowed(&live.security.allow, peer.ip()) {
        return closing(respond(StatusCode::FORBIDDEN, "text/plain", "forbidden\n"));
    }
    if conn.tls_generation != live.tls_generation && conn.tls != live.security.tls.is_some() {
        return closing(respond(
            StatusCode::MISDIRECTED_REQUEST,
            "text/plain",
            "the server's TLS settings changed; connect again\n",
        ));
    }
    let path = req.uri().path();
    let headers = req.headers();
    // Two of these leave it open which one a proxy or the check saw.
    for h in [hyper::header::AUTHORIZATION, hyper::header::HOST] {
        if headers.get_all(&h).iter().count() > 1 {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                format!("more than one {h} header\n"),
            );
        }
    }
    let sec = &live.security;
    // /health stays open for liveness probes; it tells nothing.
    if path != "/health" {
        let host = headers
            .get(hyper::header::HOST)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        if !security::host_allowed(host, conn.local.ip().is_loopback(), &sec.allowed_hosts) {
            tracing::debug!(%peer, host = ?host, "request for a host name not served");
            return respond(
                StatusCode::MISDIRECTED_REQUEST,
                "text/plain",
                "this host name is not served here (a page using DNS rebinding?); list it in [server] allowed_hosts\n",
            );
        }
        let authorization = headers
            .get(hyper::header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let guard = if path.starts_with("/-/") {
            match &sec.admin {
                Some(admin) => Some(admin),
                None if !peer.ip().is_loopback() => None,
                None => Some(&sec.read),
            }
        } else {
            Some(&sec.read)
        };
        let decision = match guard {
            Some(g) => ctx.gate.authorize(g, authorization, peer, path).await,
            None => security::Decision::Unauthorized,
        };
        match decision {
            security::Decision::Allow => {}
            security::Decision::Unauthorized => return unauthorized(),
            security::Decision::TooMany => {
                let mut r = respond(
                    StatusCode::TOO_MANY_REQUESTS,
                    "text/plain",
                    "too many failed logins; try again later\n",
                );
                r.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("10"));
                return r;
            }
            security::Decision::Busy => {
                return respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "too many logins being checked; try again later\n",
                )
            }
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let accept = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let om = wants_openmetrics(accept);
            let gzip = accepts_gzip(
                req.headers()
                    .get(hyper::header::ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok()),
            );
            let agent = agent.clone();
            let limit = live.security.limits.max_scrape_bytes;
            // Building (and compressing) the exposition takes locks and
            // CPU: keep it off the async workers.
            let body = tokio::task::spawn_blocking(move || {
                let text = if om {
                    agent.openmetrics()
                } else {
                    agent.text()
                };
                let stats = &agent.stats;
                if let Some(max) = limit.filter(|&m| text.len() > m) {
                    stats.scrapes_over_limit.fetch_add(1, Ordering::Relaxed);
                    if !stats.last_scrape_over_limit[usize::from(om)].swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            bytes = text.len(),
                            max_scrape_bytes = max,
                            format = if om { "OpenMetrics" } else { "text 0.0.4" },
                            "/metrics refused: the exposition (uncompressed) is larger than [server] max_scrape_bytes (logged once per format until a scrape fits again)"
                        );
                    }
                    return Err(ScrapeError::TooLarge(text.len(), max));
                }
                if stats.last_scrape_over_limit[usize::from(om)].swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        format = if om { "OpenMetrics" } else { "text 0.0.4" },
                        "/metrics fits within max_scrape_bytes again"
                    );
                }
                if gzip {
                    gzipped(text.as_bytes())
                        .map(Bytes::from)
                        .map_err(ScrapeError::Gzip)
                } else {
                    Ok(Bytes::from(text))
                }
            })
            .await;
            match body {
                Ok(Ok(b)) => {
                    let mut r = respond(StatusCode::OK, if om { OPENMETRICS } else { TEXT_04 }, b);
                    let h = r.headers_mut();
                    // Caches and proxies between weir and the scraper must
                    // not serve one encoding to a client that asked for the
                    // other (RFC 9110 12.5.5).
                    h.insert(
                        hyper::header::VARY,
                        HeaderValue::from_static("Accept, Accept-Encoding"),
                    );
                    if gzip {
                        h.insert(
                            hyper::header::CONTENT_ENCODING,
                            HeaderValue::from_static("gzip"),
                        );
                    }
                    r
                }
                Ok(Err(ScrapeError::TooLarge(n, max))) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("the exposition is {n} bytes, larger than [server] max_scrape_bytes = {max}; nothing was sent (weir_scrape_limit_exceeded_total counts this)\n"),
                ),
                Ok(Err(ScrapeError::Gzip(e))) => {
                    tracing::warn!("cannot compress the exposition: {e}");
                    respond(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain",
                        "exposition failed\n",
                    )
                }
                Err(_) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "exposition failed\n",
                ),
            }
        }
        (&Method::GET | &Method::HEAD, "/health") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET | &Method::HEAD, "/ready") => {
            if agent.is_ready() {
                respond(StatusCode::OK, "text/plain", "ready\n")
            } else {
                respond(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
            }
        }
        (&Method::GET | &Method::HEAD, "/") => {
            let st = status::status(agent, status::rates());
            respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::html(&st),
            )
        }
        (&Method::GET | &Method::HEAD, "/api/v1/status") => {
            let st = status::status(agent, status::rates());
            respond(StatusCode::OK, "application/json", status::json(&st))
        }
        (&Method::POST, "/-/reload") => {
            if let Err(why) = security::not_a_form(req.headers()) {
                respond(StatusCode::FORBIDDEN, "text/plain", format!("{why}\n"))
            } else if !live.settings.reload_endpoint {
                respond(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "reload endpoint disabled; set reload_endpoint = true in [server]\n",
                )
            } else {
                tracing::info!(%peer, "reload requested over HTTP");
                let (tx, rx) = tokio::sync::oneshot::channel();
                if ctx.reload.send(tx).await.is_err() {
                    respond(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "shutting down\n",
                    )
                } else {
                    match rx.await {
                        Ok(Ok(msg)) => respond(StatusCode::OK, "text/plain", msg),
                        Ok(Err(msg)) => respond(StatusCode::BAD_REQUEST, "text/plain", msg),
                        Err(_) => respond(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            "shutting down\n",
                        ),
                    }
                }
            }
        }
        (_, "/metrics" | "/health" | "/ready" | "/" | "/api/v1/status") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics\n",
        ),
    }
}

/// What a connection was accepted under, and its place among the
/// listener's connections.
struct Conn {
    tls: bool,
    tls_generation: u64,
    /// The address it was accepted on (the Host check trusts loopback).
    local: SocketAddr,
    slot: conns::Conn,
}

fn closing(mut r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    r.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn serve_conn<I>(
    io: I,
    ctx: Arc<ServerCtx>,
    conn: Arc<Conn>,
    peer: SocketAddr,
    header_timeout: Duration,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(ctx.clone(), conn.clone(), peer, req));
    let http = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(16 << 10)
        .serve_connection(TokioIo::new(io), svc);
    let _ = tokio::time::timeout(MAX_CONNECTION_AGE, http).await;
}

/// Accept on `listener` until the task is aborted, each connection under
/// the settings in effect when it arrives. Connections are accepted at
/// once and kept in check by [`conns`]: the ones that have not sent a
/// request yet are at most `max_connections`, and when more arrive one of
/// them is closed (see [`conns`] for which).
pub async fn serve(listener: TcpListener, ctx: Arc<ServerCtx>) {
    let local = listener
        .local_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let conns = Arc::new(conns::Conns::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to close.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let live = ctx.live();
        if !security::allowed(&live.security.allow, peer.ip()) {
            tracing::debug!(%peer, "connection refused by the allow-list");
            drop(stream);
            continue;
        }
        let Some(slot) = conns.admit(live.security.limits.max_connections) else {
            tracing::debug!(%peer, "connection refused: every connection is serving a request");
            drop(stream);
            continue;
        };
        let conn = Arc::new(Conn {
            tls: live.security.tls.is_some(),
            tls_generation: live.tls_generation,
            local,
            slot,
        });
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let header_timeout = live.security.limits.header_timeout;
            let stream = conn.slot.mark(stream);
            let work = async {
                match &live.security.tls {
                    Some(tls) => {
                        let acceptor = tls.acceptor();
                        let hs =
                            tokio::time::timeout(header_timeout, acceptor.accept(stream)).await;
                        match hs {
                            Ok(Ok(s)) => {
                                serve_conn(s, ctx.clone(), conn.clone(), peer, header_timeout).await
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    None => {
                        serve_conn(stream, ctx.clone(), conn.clone(), peer, header_timeout).await
                    }
                }
            };
            tokio::select! {
                _ = work => {}
                _ = conn.slot.shed() => {
                    tracing::debug!(%peer, "closed a connection that sent no request: others were waiting");
                }
            }
        });
        // Let the new connection read what it was sent before the next
        // accept: a scraper's request is usually there already.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn gzip_is_taken_as_accept_encoding_says() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZip;q=0.5")));
        assert!(accepts_gzip(Some("x-gzip")));
        assert!(accepts_gzip(Some("*")));
        assert!(accepts_gzip(Some("br;q=1, *;q=0.1")));
        assert!(!accepts_gzip(None));
        assert!(!accepts_gzip(Some("")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("gzip;q=0.000, *")));
        assert!(!accepts_gzip(Some("*;q=0")));
        assert!(!accepts_gzip(Some("gzip;q=2")));
        let body = "a_total 1\n".repeat(1000);
        let z = gzipped(body.as_bytes()).expect("gzip");
        assert!(z.len() < body.len() / 10, "{} bytes", z.len());
        let mut back = String::new();
        use std::io::Read as _;
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut back)
            .expect("gunzip");
        assert_eq!(back, body);
    }
    use super::{accepts_gzip, gzipped, wants_openmetrics};

    #[test]
    fn negotiates_like_prometheus() {
        let prom3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert!(wants_openmetrics(Some(prom3)));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
        // Prometheus 2.42's header.
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        // q-values are honoured, types and names matched in any case.
        assert!(!wants_openmetrics(Some(
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5"
        )));
        assert!(wants_openmetrics(Some(
            "APPLICATION/OPENMETRICS-TEXT; VERSION=1.0.0"
        )));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text; Q=0.9, text/plain; q=0.8"
        )));
        // A version weir does not write is not OpenMetrics 1.0.0.
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;version=2.0.0"
        )));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text; version=0.0.1"
        )));
        // A tie goes to the range listed first.
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text, text/plain"
        )));
        assert!(!wants_openmetrics(Some(
            "text/plain, application/openmetrics-text"
        )));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=abc"
        )));
        assert_eq!(super::parse_qvalue("0.5"), Some(500));
        assert_eq!(super::parse_qvalue("1.000"), Some(1000));
        assert_eq!(super::parse_qvalue("1.5"), None);
    }
}
