//! Who may read the endpoint: TLS (with certificate reload and optional
//! client certificates), basic auth with bcrypt hashes, bearer tokens, an
//! allow-list of networks, and separate credentials for admin routes.
use base64::Engine;
use ipnet::IpNet;
use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

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

/// Checks credentials; remembers what bcrypt accepted so a scrape every
/// few seconds does not pay for bcrypt each time.
pub struct Guard {
    auth: AuthSettings,
    accepted: Mutex<HashSet<String>>,
}

/// The outcome of a check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// 401 with a challenge.
    Unauthorized,
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Guard {
    /// A guard for these credentials.
    pub fn new(auth: AuthSettings) -> Self {
        Guard {
            auth,
            accepted: Mutex::new(HashSet::new()),
        }
    }

    /// Whether any credential is required.
    pub fn enabled(&self) -> bool {
        !self.auth.is_empty()
    }

    /// Check an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        if !self.enabled() {
            return Verdict::Allow;
        }
        let Some(h) = authorization else {
            return Verdict::Unauthorized;
        };
        if let Some(token) = h.strip_prefix("Bearer ") {
            let ok = self
                .auth
                .bearer_tokens
                .iter()
                .any(|t| ct_eq(t.as_bytes(), token.trim().as_bytes()));
            return if ok {
                Verdict::Allow
            } else {
                Verdict::Unauthorized
            };
        }
        let Some(b64) = h.strip_prefix("Basic ") else {
            return Verdict::Unauthorized;
        };
        if self.accepted.lock().contains(h) {
            return Verdict::Allow;
        }
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return Verdict::Unauthorized;
        };
        let Ok(raw) = String::from_utf8(raw) else {
            return Verdict::Unauthorized;
        };
        let Some((user, pass)) = raw.split_once(':') else {
            return Verdict::Unauthorized;
        };
        let Some(hash) = self.auth.basic.get(user) else {
            // Spend the same time as a wrong password, so user names
            // cannot be probed by timing.
            let _ = bcrypt::verify(
                pass,
                "$2b$10$abcdefghijklmnopqrstuuCxmPRBHUjMThsMRRpnlSqB3yi4qnKaa",
            );
            return Verdict::Unauthorized;
        };
        if bcrypt::verify(pass, hash).unwrap_or(false) {
            let mut acc = self.accepted.lock();
            if acc.len() > 1024 {
                acc.clear();
            }
            acc.insert(h.to_string());
            Verdict::Allow
        } else {
            Verdict::Unauthorized
        }
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

    #[test]
    fn basic_and_bearer() {
        let hash = bcrypt::hash("s3cret", 4).expect("hash");
        let g = Guard::new(AuthSettings {
            basic: [("prom".to_string(), hash)].into_iter().collect(),
            bearer_tokens: vec!["tok-1".into()],
        });
        let b = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert_eq!(g.check(Some(&b("prom", "s3cret"))), Verdict::Allow);
        assert_eq!(g.check(Some(&b("prom", "s3cret"))), Verdict::Allow);
        assert_eq!(g.check(Some(&b("prom", "wrong"))), Verdict::Unauthorized);
        assert_eq!(g.check(Some(&b("nobody", "s3cret"))), Verdict::Unauthorized);
        assert_eq!(g.check(Some("Bearer tok-1")), Verdict::Allow);
        assert_eq!(g.check(Some("Bearer tok-2")), Verdict::Unauthorized);
        assert_eq!(g.check(None), Verdict::Unauthorized);
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
