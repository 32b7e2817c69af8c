//! Polling an HTTP endpoint: GET, or POST with a body; http and https
//! (rustls, webpki roots plus an optional custom CA, verification off only
//! when asked); headers; basic and bearer auth with secrets read from an
//! environment variable or a file at each poll and never logged; a timeout,
//! a body size limit and the accepted status codes.
use std::io::Read;

/// The settings and secrets of an HTTP source, as the config builds them.
pub use crate::config::{Auth, HttpSettings, Secret};

/// Why a poll failed; `reason()` labels `weir_source_errors_total`.
#[derive(Debug, Clone, PartialEq)]
pub enum PollError {
    /// Could not connect.
    Connect(String),
    /// TLS handshake or certificate failure.
    Tls(String),
    /// Past the timeout.
    Timeout,
    /// Status not accepted.
    Status(u16),
    /// Body over the limit.
    TooLarge(usize),
    /// Too many redirects, or one to another origin.
    Redirect(String),
    /// A secret could not be read.
    Secret(String),
    /// Anything else.
    Other(String),
}

impl PollError {
    /// Label value.
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::Connect(_) => "connect",
            PollError::Tls(_) => "tls",
            PollError::Timeout => "timeout",
            PollError::Status(_) => "status",
            PollError::TooLarge(_) => "too_large",
            PollError::Redirect(_) => "redirect",
            PollError::Secret(_) => "secret",
            PollError::Other(_) => "other",
        }
    }

    /// Every reason, for pre-registered series.
    pub const REASONS: [&'static str; 8] = [
        "connect",
        "tls",
        "timeout",
        "status",
        "too_large",
        "redirect",
        "secret",
        "other",
    ];
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::Connect(e) => write!(f, "cannot connect: {e}"),
            PollError::Tls(e) => write!(f, "TLS failed: {e}"),
            PollError::Timeout => write!(f, "timed out"),
            PollError::Status(s) => write!(f, "status {s} not accepted"),
            PollError::TooLarge(n) => write!(f, "body larger than {n} bytes"),
            PollError::Redirect(e) => write!(f, "redirects: {e}"),
            PollError::Secret(e) => write!(f, "{e}"),
            PollError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// A fetched response.
pub struct Fetched {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Redirects followed before a poll fails as `redirect`.
const MAX_REDIRECTS: usize = 10;

/// Whether a redirect from `from` to `to` may be followed: only to the same
/// host and port with the same scheme, or from `http` to `https` on the same
/// host. Anything else would send the configured `headers` (API keys, tokens)
/// and `auth` to a host the operator did not name, so the poll fails instead
/// and the log says where the redirect pointed.
fn same_origin_or_upgrade(from: &reqwest::Url, to: &reqwest::Url) -> Result<(), String> {
    let same_host = from.host_str() == to.host_str();
    let same_port = from.port_or_known_default() == to.port_or_known_default();
    let same_scheme = from.scheme() == to.scheme();
    let upgrade = from.scheme() == "http" && to.scheme() == "https";
    if same_host && ((same_scheme && same_port) || upgrade) {
        return Ok(());
    }
    Err(format!(
        "redirect to another origin ({}://{}) not followed: headers and credentials \
         are only sent to the configured host",
        to.scheme(),
        to.host_str().map_or_else(String::new, |h| match to.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    ))
}

/// A configured client. Create it on the thread that polls: the blocking
/// client must not live inside an async runtime.
pub struct Poller {
    client: reqwest::blocking::Client,
    settings: HttpSettings,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Poller {
    /// Build the client.
    pub fn new(settings: HttpSettings) -> Result<Self, String> {
        // The URL is written in log lines (redacted) and handed to the
        // plugin: no user info in it, by the rule for every URL.
        crate::config::redact::check_url(&settings.url).map_err(|e| format!("url {e}"))?;
        let mut b = reqwest::blocking::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let from = attempt.previous().last();
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match from.map(|f| same_origin_or_upgrade(f, attempt.url())) {
                    Some(Err(why)) => attempt.error(why),
                    _ => attempt.follow(),
                }
            }))
            // A Referer would carry the polled URL, query secrets included,
            // to wherever the redirect points.
            .referer(false)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if settings.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let client = b
            .build()
            .map_err(|e| format!("building the HTTP client: {}", chain(&e)))?;
        Ok(Poller { client, settings })
    }

    /// The settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Fetch once.
    pub fn poll(&self) -> Result<Fetched, PollError> {
        let started = std::time::Instant::now();
        let s = &self.settings;
        let mut req = if s.method.eq_ignore_ascii_case("POST") {
            self.client
                .post(&s.url)
                .body(s.body.clone().unwrap_or_default())
        } else {
            self.client.get(&s.url)
        };
        for (k, v) in &s.headers {
            req = req.header(k, v);
        }
        match &s.auth {
            Some(Auth::Basic { username, password }) => {
                let p = password.read().map_err(PollError::Secret)?;
                req = req.basic_auth(username, Some(p));
            }
            Some(Auth::Bearer(token)) => {
                let t = token.read().map_err(PollError::Secret)?;
                req = req.bearer_auth(t);
            }
            None => {}
        }
        let resp = req.send().map_err(|e| classify(e, &s.url))?;
        let status = resp.status().as_u16();
        let accepted = if s.accept_status.is_empty() {
            (200..300).contains(&status)
        } else {
            s.accept_status.contains(&status)
        };
        if !accepted {
            return Err(PollError::Status(status));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > s.max_body_bytes as u64)
        {
            return Err(PollError::TooLarge(s.max_body_bytes));
        }
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        // The client's timeout bounds the request up to the headers, then
        // each read of the body; the deadline bounds the body as a whole.
        let mut body = Vec::new();
        let mut limited = resp.take(s.max_body_bytes as u64 + 1);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match limited.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(body_error(&e, &s.url)),
            };
            body.extend_from_slice(&chunk[..n]);
            if started.elapsed() > s.timeout {
                return Err(PollError::Timeout);
            }
        }
        if body.len() > s.max_body_bytes {
            return Err(PollError::TooLarge(s.max_body_bytes));
        }
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

/// Why reading a body failed: the deadline passed (the whole request has
/// one), or something else, with the causes spelled out (and the URL's
/// secrets hidden).
fn body_error(e: &std::io::Error, url: &str) -> PollError {
    let mut timed_out = e.kind() == std::io::ErrorKind::TimedOut;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<reqwest::Error>() {
            timed_out |= r.is_timeout();
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        cur = c.source();
    }
    if timed_out {
        PollError::Timeout
    } else {
        PollError::Other(format!(
            "reading the body: {}",
            crate::config::redact::text(&chain(e), url)
        ))
    }
}

/// The kind of a client error, its text with the URL's secrets hidden
/// (the client's messages name the URL, query string included).
fn classify(e: reqwest::Error, url: &str) -> PollError {
    let text = crate::config::redact::text(&chain(&e), url);
    if e.is_timeout() {
        PollError::Timeout
    } else if e.is_redirect() {
        PollError::Redirect(text)
    } else if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
        PollError::Tls(text)
    } else if e.is_connect() {
        PollError::Connect(text)
    } else {
        PollError::Other(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn settings(url: &str) -> HttpSettings {
        HttpSettings {
            url: url.into(),
            method: "GET".into(),
            body: None,
            headers: BTreeMap::new(),
            auth: None,
            timeout: Duration::from_secs(1),
            max_body_bytes: 1024,
            accept_status: Vec::new(),
            ca_file: None,
            insecure_skip_verify: false,
            interval: Duration::from_secs(1),
            max_age: None,
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let e = Poller::new(settings("http://weir:hunter2@127.0.0.1:9/stats"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("basic_auth") && !e.contains("hunter2"), "{e}");
        assert!(Poller::new(settings("http://127.0.0.1:9/stats")).is_ok());
        assert!(Poller::new(settings("http://")).is_err());
    }

    #[test]
    fn body_errors_tell_timeouts_apart() {
        let t = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(body_error(&t, "http://h/"), PollError::Timeout);
        let inner = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline");
        let wrapped = std::io::Error::other(inner);
        assert_eq!(body_error(&wrapped, "http://h/"), PollError::Timeout);
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "cut short");
        assert_eq!(
            body_error(&std::io::Error::other(eof), "http://h/"),
            PollError::Other("reading the body: cut short".into())
        );
    }

    #[test]
    fn secrets_are_read_at_each_use() {
        let dir = std::env::temp_dir().join(format!("weir-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("token");
        std::fs::write(&f, "one\n").expect("write");
        let s = Secret::File(f.clone());
        assert_eq!(s.read(), Ok("one".to_string()));
        std::fs::write(&f, "two\r\n").expect("write");
        assert_eq!(s.read(), Ok("two".to_string()));
        let _ = std::fs::remove_dir_all(&dir);
        let e = Secret::Env("WEIR_TEST_SURELY_UNSET_VARIABLE".into())
            .read()
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("WEIR_TEST_SURELY_UNSET_VARIABLE is not set"),
            "{e}"
        );
    }

    /// A one-connection-at-a-time HTTP/1.0 server on 127.0.0.1 that answers
    /// its n-th request with `replies[n]` (the last one once they run out)
    /// and records each request head it got.
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;
    fn serve(replies: Vec<String>) -> (String, Seen) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("http://{}", l.local_addr().expect("addr"));
        let seen = Seen::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for (n, c) in l.incoming().enumerate() {
                let Ok(mut c) = c else { return };
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                if let Ok(mut v) = log.lock() {
                    v.push(String::from_utf8_lossy(&head).into_owned());
                }
                let r = replies
                    .get(n)
                    .or(replies.last())
                    .cloned()
                    .unwrap_or_default();
                let _ = c.write_all(r.as_bytes());
            }
        });
        (addr, seen)
    }

    fn heads(seen: &Seen) -> Vec<String> {
        seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    #[test]
    fn redirects_to_another_origin_are_refused_and_leak_nothing() {
        let ok = "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_string();
        let found = |loc: &str| {
            format!("HTTP/1.0 302 Found\r\nLocation: {loc}\r\nContent-Length: 0\r\n\r\n")
        };
        // Another port on the same host is another origin.
        let (other, other_seen) = serve(vec![ok.clone()]);
        let (first, first_seen) = serve(vec![found(&format!("{other}/stats"))]);
        let mut s = settings(&format!("{first}/stats?token=s3cret"));
        s.headers.insert("X-Api-Key".into(), "k3y".into());
        let e = Poller::new(s)
            .expect("poller")
            .poll()
            .err()
            .expect("refused");
        assert_eq!(e.reason(), "redirect", "{e}");
        assert!(e.to_string().contains("another origin"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert_eq!(heads(&first_seen).len(), 1);
        assert!(heads(&other_seen).is_empty(), "{:?}", heads(&other_seen));

        // A redirect within the origin is followed, headers kept, no Referer.
        let (same, same_seen) = serve(vec![found("/stats"), ok]);
        let mut s = settings(&format!("{same}/start?token=s3cret"));
        s.headers.insert("X-Api-Key".into(), "k3y".into());
        let got = Poller::new(s).expect("poller").poll();
        assert!(got.is_ok(), "{:?}", got.err());
        let h = heads(&same_seen);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h[1].starts_with("GET /stats "), "{h:?}");
        assert!(
            h[1].to_ascii_lowercase().contains("x-api-key: k3y"),
            "{h:?}"
        );
        assert!(!h[1].to_ascii_lowercase().contains("referer"), "{h:?}");
    }

    #[test]
    fn only_same_origin_and_https_upgrades_are_followed() {
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        let ok = |a: &str, b: &str| same_origin_or_upgrade(&u(a), &u(b)).is_ok();
        assert!(ok("http://h:8080/a", "http://h:8080/b"));
        assert!(ok("http://h/a", "https://h/b"));
        assert!(!ok("https://h/a", "http://h/b"), "a downgrade");
        assert!(!ok("http://h:8080/a", "http://h:8081/b"));
        assert!(!ok("http://h/a", "http://evil.example/b"));
        assert!(!ok("http://h/a", "http://h.evil.example/b"));
    }
}
