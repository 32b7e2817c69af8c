//! Who may read the endpoint: TLS (with certificate reload and optional
//! client certificates), basic auth with bcrypt hashes, bearer tokens, an
//! allow-list of networks, and separate credentials for admin routes.
use base64::Engine;
use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;

/// The settings this module enforces, as the config builds them.
pub use crate::config::{AuthSettings, SecuritySettings, TlsSettings};

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Serves TLS and reloads the certificate when its files change.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<(
        Arc<rustls::ServerConfig>,
        Option<SystemTime>,
        Option<SystemTime>,
    )>,
}

fn load_config(s: &TlsSettings) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.cert_file)
        .map_err(|e| format!("{}: {e}", s.cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", s.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", s.cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&s.key_file)
        .map_err(|e| format!("{}: {e}", s.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &s.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", s.cert_file.display()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Tls {
    /// Load the certificate now; errors name the file.
    pub fn new(settings: TlsSettings) -> Result<Self, String> {
        let cfg = load_config(&settings)?;
        let (c, k) = (mtime(&settings.cert_file), mtime(&settings.key_file));
        Ok(Tls {
            current: RwLock::new((Arc::new(cfg), c, k)),
            settings,
        })
    }

    /// The acceptor to use for a new connection: reloaded first if the
    /// certificate or key file changed (a failed reload keeps the old one).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let (c, k) = (
            mtime(&self.settings.cert_file),
            mtime(&self.settings.key_file),
        );
        {
            let cur = self.current.read();
            if cur.1 == c && cur.2 == k {
                return tokio_rustls::TlsAcceptor::from(cur.0.clone());
            }
        }
        let mut cur = self.current.write();
        match load_config(&self.settings) {
            Ok(cfg) => {
                tracing::info!(cert = %self.settings.cert_file.display(), "TLS certificate reloaded");
                *cur = (Arc::new(cfg), c, k);
            }
            Err(e) => {
                tracing::error!("TLS certificate not reloaded, keeping the old one: {e}");
                cur.1 = c;
                cur.2 = k;
            }
        }
        tokio_rustls::TlsAcceptor::from(cur.0.clone())
    }
}

/// Checks credentials. Bearer tokens are kept as SHA-256 digests and
/// compared in constant time; basic-auth passwords are checked by bcrypt,
/// and a header bcrypt accepted is remembered by a keyed hash (never the
/// header itself, which holds the password) so that a scrape every few
/// seconds does not pay for bcrypt each time.
pub struct Guard {
    basic: BTreeMap<String, String>,
    bearer: Vec<[u8; 32]>,
    /// A configured hash of the most common cost, checked for unknown
    /// users so that they take as long as a wrong password.
    decoy: Option<String>,
    key: [u8; 32],
    accepted: Mutex<HashSet<[u8; 32]>>,
}

/// The outcome of a check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// 401 with a challenge.
    Unauthorized,
}

/// What a check without bcrypt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Quick {
    /// Accepted (a bearer token, a remembered basic header, or no
    /// credentials needed).
    Allow,
    /// Refused, with why (for the log; never the credential itself).
    Deny(Failure),
    /// A basic-auth password bcrypt must check ([`Guard::verify`]).
    Bcrypt,
}

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization` header.
    Missing,
    /// Not `Basic` or `Bearer`, or not decodable.
    Malformed,
    /// A bearer token that is not configured.
    BadToken,
    /// A user name that is not configured (not repeated: it may be a
    /// password typed in the wrong field).
    UnknownUser,
    /// A configured user with a wrong password.
    BadPassword(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Missing => write!(f, "no credentials"),
            Failure::Malformed => write!(f, "malformed Authorization header"),
            Failure::BadToken => write!(f, "unknown bearer token"),
            Failure::UnknownUser => write!(f, "unknown user"),
            Failure::BadPassword(u) => write!(f, "wrong password for user \"{u}\""),
        }
    }
}

/// The scheme and the rest of an `Authorization` value; the scheme is
/// matched without regard to case (RFC 9110, section 11.1).
fn scheme_of(h: &str) -> Option<(&str, &str)> {
    let h = h.trim();
    let i = h.find([' ', '\t'])?;
    Some((&h[..i], h[i..].trim()))
}

fn bcrypt_cost(hash: &str) -> Option<u32> {
    hash.split('$').nth(2)?.parse().ok()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

impl Guard {
    /// A guard for these credentials.
    pub fn new(auth: AuthSettings) -> Self {
        let mut costs: BTreeMap<u32, usize> = BTreeMap::new();
        for h in auth.basic.values() {
            if let Some(c) = bcrypt_cost(h) {
                *costs.entry(c).or_default() += 1;
            }
        }
        // The most common cost; of equals, the highest.
        let cost = costs
            .iter()
            .max_by_key(|(c, n)| (**n, **c))
            .map(|(c, _)| *c);
        let decoy = auth
            .basic
            .values()
            .find(|h| bcrypt_cost(h) == cost)
            .cloned();
        let mut key = [0u8; 32];
        if getrandom::getrandom(&mut key).is_err() {
            // No randomness: the cache key is then only a hash, still
            // never the password itself.
            key = sha256(format!("{:?}", std::time::SystemTime::now()).as_bytes());
        }
        Guard {
            bearer: auth
                .bearer_tokens
                .iter()
                .map(|t| sha256(t.as_bytes()))
                .collect(),
            basic: auth.basic,
            decoy,
            key,
            accepted: Mutex::new(HashSet::new()),
        }
    }

    /// Whether any credential is required.
    pub fn enabled(&self) -> bool {
        !(self.basic.is_empty() && self.bearer.is_empty())
    }

    fn remembered(&self, header: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.key);
        h.update(header.trim().as_bytes());
        h.finalize().into()
    }

    /// Check an `Authorization` header value as far as it can be without
    /// bcrypt: fast, fine on an async worker.
    pub fn quick(&self, authorization: Option<&str>) -> Quick {
        if !self.enabled() {
            return Quick::Allow;
        }
        let Some(h) = authorization else {
            return Quick::Deny(Failure::Missing);
        };
        let Some((scheme, rest)) = scheme_of(h) else {
            return Quick::Deny(Failure::Malformed);
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            let d = sha256(rest.as_bytes());
            let ok = self
                .bearer
                .iter()
                .fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(&d));
            return if bool::from(ok) {
                Quick::Allow
            } else {
                Quick::Deny(Failure::BadToken)
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.basic.is_empty() {
            return Quick::Deny(Failure::Malformed);
        }
        if self.accepted.lock().contains(&self.remembered(h)) {
            return Quick::Allow;
        }
        Quick::Bcrypt
    }

    /// Check a basic-auth header with bcrypt (slow on purpose: call it off
    /// the async workers) and remember it when accepted.
    pub fn verify(&self, authorization: &str) -> Result<(), Failure> {
        let Some((_, b64)) = scheme_of(authorization) else {
            return Err(Failure::Malformed);
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|r| String::from_utf8(r).ok())
            .ok_or(Failure::Malformed)?;
        let (user, pass) = raw.split_once(':').ok_or(Failure::Malformed)?;
        let Some(hash) = self.basic.get(user) else {
            // Spend the time a wrong password takes, so that user names
            // cannot be probed by timing.
            if let Some(d) = &self.decoy {
                let _ = bcrypt::verify(pass, d);
            }
            return Err(Failure::UnknownUser);
        };
        if bcrypt::verify(pass, hash).unwrap_or(false) {
            let mut acc = self.accepted.lock();
            if acc.len() >= 1024 {
                acc.clear();
            }
            acc.insert(self.remembered(authorization));
            Ok(())
        } else {
            Err(Failure::BadPassword(user.to_string()))
        }
    }

    /// Check an `Authorization` header value, bcrypt included (blocking).
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        match self.quick(authorization) {
            Quick::Allow => Verdict::Allow,
            Quick::Deny(_) => Verdict::Unauthorized,
            Quick::Bcrypt => match authorization.map(|h| self.verify(h)) {
                Some(Ok(())) => Verdict::Allow,
                _ => Verdict::Unauthorized,
            },
        }
    }
}

/// Failed logins a peer may make in a burst before it is answered 429
/// without a check; one more is allowed per [`FAILURE_REFILL`].
const FAILURE_BURST: f64 = 10.0;
/// Time for one more allowed failure.
const FAILURE_REFILL: Duration = Duration::from_secs(1);
/// Peers tracked at most; beyond, those back at a full allowance are
/// forgotten (and, if that is not enough, all).
const MAX_PEERS: usize = 4096;
/// bcrypt checks waiting at most, from all peers together; beyond, 503 at
/// once. Each peer (an IPv4 address or an IPv6 /64) can hold at most
/// [`FAILURE_BURST`] of them, so it takes two or more peers to fill the
/// queue, and a login behind a full queue waits at most this many checks
/// (about 16 × 50 ms at bcrypt cost 10).
const MAX_BCRYPT_WAITING: usize = 16;
/// Failed logins logged per [`LOG_WINDOW`]; the rest are counted.
const LOGGED_FAILURES: u32 = 10;
/// See [`LOGGED_FAILURES`].
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// What the gate decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allow,
    /// 401 with a challenge.
    Unauthorized,
    /// 429: too many failed logins from this peer (or network).
    TooMany,
    /// 503: too many password checks waiting.
    Busy,
}

/// Where password checks run and failures are counted, shared by every
/// request (and kept across reloads): bcrypt runs on the blocking pool, one
/// check at a time, so that it can take at most one core and never an
/// async worker; a peer that keeps failing is answered 429 without a
/// check; failed logins are logged, rate-limited, with the peer.
pub struct Gate {
    bcrypt: tokio::sync::Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    peers: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    log: Mutex<(Instant, u32, u64)>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            bcrypt: tokio::sync::Semaphore::new(1),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            peers: Mutex::new(HashMap::new()),
            log: Mutex::new((Instant::now(), 0, 0)),
        }
    }
}

/// The key failures are counted under: the address, or for IPv6 its /64
/// (one host usually holds a whole /64).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Gate {
    /// The allowance left to `ip`, refilled for the time passed, with
    /// `charge` taken from it (never below 0). A peer not yet tracked
    /// starts at [`FAILURE_BURST`]; past [`MAX_PEERS`], peers back at a
    /// full allowance are forgotten (and, if that is not enough, all).
    fn charge(&self, ip: IpAddr, charge: f64) -> f64 {
        let mut peers = self.peers.lock();
        let key = peer_key(ip);
        if charge > 0.0 && !peers.contains_key(&key) && peers.len() >= MAX_PEERS {
            let now = Instant::now();
            peers.retain(|_, (t, at)| {
                *t + (now - *at).as_secs_f64() / FAILURE_REFILL.as_secs_f64() < FAILURE_BURST
            });
            if peers.len() >= MAX_PEERS {
                peers.clear();
            }
        }
        let entry = if charge > 0.0 {
            Some(peers.entry(key).or_insert((FAILURE_BURST, Instant::now())))
        } else {
            peers.get_mut(&key)
        };
        match entry {
            Some((tokens, at)) => {
                let refill = at.elapsed().as_secs_f64() / FAILURE_REFILL.as_secs_f64();
                *tokens = ((*tokens + refill).min(FAILURE_BURST) - charge).max(0.0);
                *at = Instant::now();
                *tokens
            }
            None => FAILURE_BURST,
        }
    }

    /// The allowance left to `ip`.
    fn allowance(&self, ip: IpAddr) -> f64 {
        self.charge(ip, 0.0)
    }

    /// Take one failure from `ip`'s allowance before a password check
    /// starts, so that a peer can have at most [`FAILURE_BURST`] checks
    /// queued or running: without it, a flood of concurrent wrong
    /// passwords all pass the allowance test before the first fails.
    /// False when nothing is left.
    fn reserve(&self, ip: IpAddr) -> bool {
        let mut peers = self.peers.lock();
        let key = peer_key(ip);
        let Some((tokens, at)) = peers.get_mut(&key) else {
            drop(peers);
            self.charge(ip, 1.0);
            return true;
        };
        let refill = at.elapsed().as_secs_f64() / FAILURE_REFILL.as_secs_f64();
        *tokens = (*tokens + refill).min(FAILURE_BURST);
        *at = Instant::now();
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Give back what [`Gate::reserve`] took: the check passed (or never
    /// ran).
    fn refund(&self, ip: IpAddr) {
        if let Some((tokens, _)) = self.peers.lock().get_mut(&peer_key(ip)) {
            *tokens = (*tokens + 1.0).min(FAILURE_BURST);
        }
    }

    /// Count a failed login (`charged`: its allowance was already taken
    /// by [`Gate::reserve`]) and log it, rate-limited.
    fn failed(&self, peer: SocketAddr, path: &str, why: &Failure, charged: bool) {
        if *why == Failure::Missing {
            tracing::debug!(%peer, path, "request without credentials");
            return;
        }
        if !charged {
            self.charge(peer.ip(), 1.0);
        }
        self.log(|| tracing::warn!(%peer, path, "authentication failed: {why}"));
    }

    fn log(&self, f: impl FnOnce()) {
        let mut l = self.log.lock();
        if l.0.elapsed() >= LOG_WINDOW {
            if l.2 > 0 {
                tracing::warn!("{} more failed logins not logged", l.2);
            }
            *l = (Instant::now(), 0, 0);
        }
        if l.1 < LOGGED_FAILURES {
            l.1 += 1;
            f();
        } else {
            l.2 += 1;
        }
    }

    /// Decide a request to `path` from `peer` carrying `authorization`.
    pub async fn authorize(
        &self,
        guard: &Arc<Guard>,
        authorization: Option<String>,
        peer: SocketAddr,
        path: &str,
    ) -> Decision {
        // A remembered header or a good token passes even while the peer
        // (or its network) is failing: a scraper next to an attacker is
        // still served.
        let failure = match guard.quick(authorization.as_deref()) {
            Quick::Allow => return Decision::Allow,
            Quick::Deny(f) => Some(f),
            Quick::Bcrypt => None,
        };
        if self.allowance(peer.ip()) < 1.0 {
            self.log(|| tracing::warn!(%peer, path, "too many failed logins; answering 429"));
            return Decision::TooMany;
        }
        if let Some(f) = failure {
            self.failed(peer, path, &f, false);
            return Decision::Unauthorized;
        }
        let Some(header) = authorization else {
            return Decision::Unauthorized;
        };
        if !self.reserve(peer.ip()) {
            self.log(|| tracing::warn!(%peer, path, "too many failed logins; answering 429"));
            return Decision::TooMany;
        }
        use std::sync::atomic::Ordering;
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_BCRYPT_WAITING {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.refund(peer.ip());
            self.log(
                || tracing::warn!(%peer, path, "too many password checks waiting; answering 503"),
            );
            return Decision::Busy;
        }
        let permit = self.bcrypt.acquire().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(_permit) = permit else {
            self.refund(peer.ip());
            return Decision::Busy;
        };
        let g = guard.clone();
        let result = tokio::task::spawn_blocking(move || g.verify(&header))
            .await
            .unwrap_or(Err(Failure::Malformed));
        match result {
            Ok(()) => {
                self.refund(peer.ip());
                Decision::Allow
            }
            Err(f) => {
                self.failed(peer, path, &f, true);
                Decision::Unauthorized
            }
        }
    }
}

/// Whether a request's `Host` may be served. A web page that points its
/// own name at 127.0.0.1 (DNS rebinding) can make a browser send requests
/// to the endpoint as if same-origin, but the `Host` header still carries
/// the page's name. So when the endpoint listens on loopback
/// (`bound_loopback`), or names are configured, only these are served: an
/// IP address (a page cannot have an IP address for a name and rebind it),
/// `localhost`, and the names in `allowed`, in any case, with any port.
/// Without `Host` (HTTP/1.0) the request is served: browsers always send
/// one.
pub fn host_allowed(host: Option<&str>, bound_loopback: bool, allowed: &[String]) -> bool {
    if !bound_loopback && allowed.is_empty() {
        return true;
    }
    let Some(host) = host else { return true };
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.chars().all(|c| c.is_ascii_digit()) => n,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Whether a state-changing request (`POST /-/reload`) was sent so that a
/// browser could not have sent it from another site: with
/// `Content-Type: application/json` or an `X-Weir-Reload` header (either
/// makes a browser ask first, which the endpoint never allows), and not
/// marked cross-site by the browser. A plain form POST or `fetch` without
/// these is refused. The error says what to send.
pub fn not_a_form(headers: &hyper::HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes();
        if !(site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none")) {
            return Err("refused: sent from another site");
        }
    }
    if let Some(v) = headers.get("x-weir-reload") {
        // Any value would stop a form; asking for `1` keeps `X-Weir-Reload: 0`
        // from meaning "reload".
        return if v.as_bytes().trim_ascii() == b"1" {
            Ok(())
        } else {
            Err("POST /-/reload: the header `X-Weir-Reload` must be `1`")
        };
    }
    let json = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err("POST /-/reload needs the header `X-Weir-Reload: 1` (or `Content-Type: application/json`), so that no web page can send it")
    }
}

/// Whether a peer is allowed by the allow-list.
pub fn allowed(allow: &[IpNet], peer: IpAddr) -> bool {
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    };
    allow.is_empty() || allow.iter().any(|n| n.contains(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    }

    #[test]
    fn basic_and_bearer() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let g = Guard::new(AuthSettings {
            basic: [("prom".to_string(), hash)].into_iter().collect(),
            bearer_tokens: vec!["tok-1".into()],
        });
        let b = basic;
        assert_eq!(g.check(Some(&b("prom", "s3cret"))), Verdict::Allow);
        assert_eq!(
            g.quick(Some(&b("prom", "s3cret"))),
            Quick::Allow,
            "remembered"
        );
        assert_eq!(g.check(Some(&b("prom", "wrong"))), Verdict::Unauthorized);
        assert_eq!(g.check(Some(&b("nobody", "s3cret"))), Verdict::Unauthorized);
        assert_eq!(g.check(Some("Bearer tok-1")), Verdict::Allow);
        assert_eq!(g.check(Some("Bearer tok-2")), Verdict::Unauthorized);
        assert_eq!(g.check(Some("Bearer tok-")), Verdict::Unauthorized);
        assert_eq!(g.check(None), Verdict::Unauthorized);
        // Schemes are case-insensitive (RFC 9110, 11.1).
        assert_eq!(g.check(Some("bearer tok-1")), Verdict::Allow);
        assert_eq!(g.check(Some("BEARER  tok-1")), Verdict::Allow);
        let lower = b("prom", "s3cret").replacen("Basic", "basic", 1);
        assert_eq!(g.check(Some(&lower)), Verdict::Allow);
        assert_eq!(g.quick(Some("Digest x")), Quick::Deny(Failure::Malformed));
        assert_eq!(g.quick(Some("Bearer")), Quick::Deny(Failure::Malformed));
        assert_eq!(
            g.verify(&b("prom", "nope")),
            Err(Failure::BadPassword("prom".into()))
        );
        assert_eq!(g.verify(&b("p4ssw0rd", "x")), Err(Failure::UnknownUser));
    }

    #[test]
    fn unknown_users_cost_what_the_configured_users_cost() {
        let g = Guard::new(AuthSettings {
            basic: [
                ("a".to_string(), bcrypt::hash("x", 4).expect("hash")),
                ("b".to_string(), bcrypt::hash("y", 6).expect("hash")),
                ("c".to_string(), bcrypt::hash("z", 6).expect("hash")),
            ]
            .into_iter()
            .collect(),
            bearer_tokens: vec![],
        });
        assert_eq!(g.decoy.as_deref().and_then(bcrypt_cost), Some(6));
    }

    #[tokio::test]
    async fn a_failing_peer_is_answered_429_but_a_remembered_header_passes() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let g = Arc::new(Guard::new(AuthSettings {
            basic: [("prom".to_string(), hash)].into_iter().collect(),
            bearer_tokens: vec![],
        }));
        let gate = Gate::default();
        let peer: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
        let good = basic("prom", "s3cret");
        assert_eq!(
            gate.authorize(&g, Some(good.clone()), peer, "/metrics")
                .await,
            Decision::Allow
        );
        let mut refused = 0;
        for _ in 0..20 {
            match gate
                .authorize(&g, Some(basic("prom", "guess")), peer, "/metrics")
                .await
            {
                Decision::TooMany => refused += 1,
                d => assert_eq!(d, Decision::Unauthorized),
            }
        }
        assert_eq!(refused, 10, "the burst is 10 failures");
        assert_eq!(
            gate.authorize(&g, Some(good), peer, "/metrics").await,
            Decision::Allow
        );
        // Another peer is not affected; the same /64 is.
        let other: SocketAddr = "10.0.0.2:5000".parse().expect("addr");
        assert_eq!(
            gate.authorize(&g, Some(basic("prom", "guess")), other, "/")
                .await,
            Decision::Unauthorized
        );
        assert_eq!(
            peer_key("2001:db8:1:2:3:4:5:6".parse().expect("ip")),
            peer_key("2001:db8:1:2:ffff::1".parse().expect("ip"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_concurrent_flood_runs_at_most_a_burst_of_checks_per_peer() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let g = Arc::new(Guard::new(AuthSettings {
            basic: [("prom".to_string(), hash)].into_iter().collect(),
            bearer_tokens: vec![],
        }));
        let gate = Arc::new(Gate::default());
        let flood = |ip: &str, n: usize| {
            let peer: SocketAddr = format!("{ip}:4000").parse().expect("addr");
            (0..n)
                .map(|i| {
                    let (g, gate) = (g.clone(), gate.clone());
                    let guess = basic("prom", &format!("guess{i}"));
                    tokio::spawn(async move { gate.authorize(&g, Some(guess), peer, "/").await })
                })
                .collect::<Vec<_>>()
        };
        // One peer, 200 wrong passwords at once: a burst of checks, the
        // rest 429 without one; none 503, since one peer cannot fill the
        // queue.
        let mut got = std::collections::BTreeMap::new();
        for t in flood("10.9.0.1", 200) {
            *got.entry(format!("{:?}", t.await.expect("task")))
                .or_insert(0) += 1;
        }
        assert_eq!(got.get("Unauthorized"), Some(&10), "{got:?}");
        assert_eq!(got.get("TooMany"), Some(&190), "{got:?}");
        assert_eq!(got.get("Busy"), None, "{got:?}");
        // Three peers at once cannot hold more than three bursts of checks,
        // and a correct login from a fourth peer is decided (allowed, or
        // told 503 if the queue is full) rather than left waiting behind
        // hundreds of checks.
        let mut tasks = flood("10.9.0.2", 100);
        tasks.extend(flood("10.9.0.3", 100));
        tasks.extend(flood("10.9.0.4", 100));
        let ok_peer: SocketAddr = "10.9.0.5:4000".parse().expect("addr");
        let good = gate
            .authorize(&g, Some(basic("prom", "s3cret")), ok_peer, "/")
            .await;
        let mut checked = 0;
        for t in tasks {
            let d = t.await.expect("task");
            if d == Decision::Unauthorized {
                checked += 1;
            }
        }
        assert!(checked <= 30, "{checked} checks ran for three peers");
        assert!(matches!(good, Decision::Allow | Decision::Busy), "{good:?}");
        // Once the flood is over, the fourth peer's login passes.
        assert_eq!(
            gate.authorize(&g, Some(basic("prom", "s3cret")), ok_peer, "/")
                .await,
            Decision::Allow
        );
    }

    #[test]
    fn host_names_a_rebinding_page_would_send_are_refused() {
        let ok = |h: &str| host_allowed(Some(h), true, &["metrics.example".into()]);
        for h in [
            "127.0.0.1",
            "127.0.0.1:9731",
            "10.1.2.3:80",
            "[::1]:9731",
            "localhost",
            "LocalHost:1",
            "localhost.",
            "metrics.example",
            "METRICS.example:9731",
        ] {
            assert!(ok(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:9731",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::1",
            "host:port",
            "",
        ] {
            assert!(!ok(h), "{h}");
        }
        assert!(host_allowed(None, true, &[]));
        assert!(host_allowed(Some("evil.example"), false, &[]));
        assert!(!host_allowed(
            Some("evil.example"),
            false,
            &["a.example".into()]
        ));
    }

    #[test]
    fn reload_needs_a_request_no_form_can_send() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = hyper::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, hyper::header::HeaderValue::from_static(v));
            }
            not_a_form(&m)
        };
        assert!(h(&[]).is_err());
        assert!(h(&[("content-type", "application/x-www-form-urlencoded")]).is_err());
        assert!(h(&[("content-type", "text/plain")]).is_err());
        assert!(h(&[("content-type", "Application/JSON; charset=utf-8")]).is_ok());
        assert!(h(&[("x-weir-reload", "1")]).is_ok());
        assert!(h(&[("x-weir-reload", "0")]).is_err());
        assert!(h(&[("x-weir-reload", "")]).is_err());
        assert!(h(&[("x-weir-reload", "1"), ("sec-fetch-site", "cross-site")]).is_err());
        assert!(h(&[("x-weir-reload", "1"), ("sec-fetch-site", "same-origin")]).is_ok());
    }

    #[test]
    fn allow_list_handles_mapped_v4() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        assert!(allowed(&nets, "10.1.2.3".parse().expect("ip")));
        assert!(allowed(&nets, "::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!allowed(&nets, "127.0.0.1".parse().expect("ip")));
        assert!(allowed(&[], "127.0.0.1".parse().expect("ip")));
    }
}
