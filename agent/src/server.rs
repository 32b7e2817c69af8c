//! The HTTP endpoint: `/metrics`, `/health`, `/ready`, the status page at
//! `/` and `/api/v1/status` ([`status`]), and `POST /-/reload` when enabled; TLS, authentication, an
//! allow-list and limits from [`security`].
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
use std::net::SocketAddr;
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

/// The server's security, built once at startup.
pub struct Security {
    /// TLS, if configured.
    pub tls: Option<security::Tls>,
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
        let tls = s.tls.map(security::Tls::new).transpose()?;
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

/// What the server asks of the rest of the agent.
pub struct ServerCtx {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Where reload requests go (answered with the outcome).
    pub reload: mpsc::Sender<tokio::sync::oneshot::Sender<Result<String, String>>>,
    /// TLS, credentials, allow-list and limits.
    pub security: Security,
    /// Where password checks run and failed logins are counted.
    pub gate: security::Gate,
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
    accept.split(',').any(|part| {
        let mut it = part.split(';');
        let media = it.next().unwrap_or("").trim();
        let q_zero = it.any(|p| p.trim().replace(' ', "") == "q=0");
        media == "application/openmetrics-text" && !q_zero
    })
}

async fn handle(
    ctx: Arc<ServerCtx>,
    conn: Arc<conns::Conn>,
    local: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let limits = &ctx.security.limits;
    let timeout = limits.request_timeout;
    let _serving = conn.serving(limits.max_connections);
    match tokio::time::timeout(timeout, route(ctx.clone(), local, peer, req)).await {
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
    local: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let agent = &ctx.agent;
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
    let sec = &ctx.security;
    // /health stays open for liveness probes; it tells nothing.
    if path != "/health" {
        let host = headers
            .get(hyper::header::HOST)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        if !security::host_allowed(host, local.ip().is_loopback(), &sec.allowed_hosts) {
            tracing::debug!(%peer, host = ?host, "request for a host name not served");
            return respond(
                StatusCode::MISDIRECTED_REQUEST,
                "text/plain",
                "this host name is not served here (a page using DNS rebinding?); list it in [server] allowed_hosts\n",
            );
        }
    }
    if path != "/health" {
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
            let agent = agent.clone();
            // Building the exposition takes locks and CPU: keep it off the
            // async workers.
            let body = tokio::task::spawn_blocking(move || {
                if om {
                    agent.openmetrics()
                } else {
                    agent.text()
                }
            })
            .await;
            match body {
                Ok(b) => respond(StatusCode::OK, if om { OPENMETRICS } else { TEXT_04 }, b),
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
            } else if !agent.reload_endpoint() {
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

/// Bind the listener (so errors show at startup).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn serve_conn<I>(
    io: I,
    ctx: Arc<ServerCtx>,
    conn: Arc<conns::Conn>,
    local: SocketAddr,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = ctx.security.limits.header_timeout;
    let c = conn.clone();
    let svc = service_fn(move |req| handle(ctx.clone(), c.clone(), local, peer, req));
    let http = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(16 << 10)
        .serve_connection(TokioIo::new(io), svc);
    let _ = tokio::time::timeout(MAX_CONNECTION_AGE, http).await;
}

/// Serve until the task is dropped. Connections are accepted at once and
/// kept in check by [`conns`]: the ones that have not sent a request yet
/// are at most `max_connections`, the longest-waiting closed first.
pub async fn serve(listener: TcpListener, ctx: Arc<ServerCtx>) {
    tokio::spawn(status::sample_forever(ctx.agent.clone()));
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
        if !security::allowed(&ctx.security.allow, peer.ip()) {
            tracing::debug!(%peer, "connection refused by the allow-list");
            drop(stream);
            continue;
        }
        let Some(conn) = conns.admit(ctx.security.limits.max_connections) else {
            tracing::debug!(%peer, "connection refused: every connection is serving a request");
            drop(stream);
            continue;
        };
        let conn = Arc::new(conn);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let work = async {
                match &ctx.security.tls {
                    Some(tls) => {
                        let acceptor = tls.acceptor();
                        let hs = tokio::time::timeout(
                            ctx.security.limits.header_timeout,
                            acceptor.accept(stream),
                        )
                        .await;
                        match hs {
                            Ok(Ok(s)) => {
                                serve_conn(s, ctx.clone(), conn.clone(), local, peer).await
                            }
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    None => serve_conn(stream, ctx.clone(), conn.clone(), local, peer).await,
                }
            };
            tokio::select! {
                _ = work => {}
                _ = conn.shed() => {
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
    use super::wants_openmetrics;

    #[test]
    fn negotiates_like_prometheus() {
        let prom3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert!(wants_openmetrics(Some(prom3)));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }
}
