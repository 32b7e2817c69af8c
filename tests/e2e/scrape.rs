//! The `/metrics` endpoint as scrapers use it: gzip when the scraper asks
//! for it (Prometheus always does), the same samples either way.
use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One GET of `/metrics` with the given extra header lines; the response
/// head (lower-cased) and the raw body bytes.
fn get(port: u16, headers: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&resp[..at]).to_ascii_lowercase();
    (head, resp[at + 4..].to_vec())
}

fn has_header(head: &str, line: &str) -> bool {
    head.lines().any(|l| l.trim() == line)
}

#[test]
fn metrics_are_gzipped_when_asked_and_the_samples_are_the_same() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let log = tmp.path().join("app.log");
    let lines: String = (0..2000).map(|i| format!("user-{i} ok\n")).collect();
    std::fs::write(&log, lines).expect("write");
    std::fs::write(
        dir.join("app.toml"),
        format!(
            r#"[pipeline.app]
plugin = "regex-log"
source = {{ type = "file", paths = [{log:?}], start_at = "beginning" }}
[[pipeline.app.config.metrics]]
name = "app_users_total"
type = "counter"
labels = ["user"]
help = "Lines by user."
[[pipeline.app.config.rules]]
regex = '^(?P<user>\S+) ok$'
emit = [{{ metric = "app_users_total" }}]
"#
        ),
    )
    .expect("write");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    agent.wait_for(30, "2000 users", |s| {
        s.get("app_users_total", &[("user", "user-1999")]) == Some(1.0)
    });

    let (plain_head, plain) = get(agent.port, "");
    assert!(plain_head.starts_with("http/1.1 200"), "{plain_head}");
    assert!(!plain_head.contains("content-encoding"), "{plain_head}");
    assert!(
        has_header(&plain_head, "vary: accept, accept-encoding"),
        "{plain_head}"
    );

    for (ask, om) in [
        ("Accept-Encoding: gzip\r\n", false),
        ("Accept-Encoding: deflate, GZIP;q=0.5\r\n", false),
        (
            "Accept-Encoding: gzip\r\nAccept: application/openmetrics-text;version=1.0.0\r\n",
            true,
        ),
    ] {
        let (head, body) = get(agent.port, ask);
        assert!(has_header(&head, "content-encoding: gzip"), "{ask}: {head}");
        assert!(
            has_header(&head, "vary: accept, accept-encoding"),
            "{ask}: {head}"
        );
        // Chunked or sized, the body is one gzip stream.
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(&body)
        } else {
            body
        };
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{ask}: not gzip: {e}"));
        assert!(
            body.len() * 4 < text.len(),
            "{ask}: {} of {}",
            body.len(),
            text.len()
        );
        if om {
            assert!(text.ends_with("# EOF\n"), "{ask}: not OpenMetrics");
        } else {
            // Self-metrics move between scrapes; the pipeline's do not.
            let ours = |t: &str| -> Vec<String> {
                t.lines()
                    .filter(|l| l.starts_with("app_users_total{"))
                    .map(str::to_string)
                    .collect()
            };
            let plain = String::from_utf8_lossy(&plain).into_owned();
            assert_eq!(ours(&text), ours(&plain), "{ask}");
            assert_eq!(ours(&text).len(), 2000, "{ask}");
        }
    }

    let (head, _) = get(agent.port, "Accept-Encoding: gzip;q=0, identity\r\n");
    assert!(!head.contains("content-encoding"), "{head}");
}

/// The body of a chunked response.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let at = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..at])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[at + 2..at + 2 + size]);
        b = &b[at + 2 + size + 2..];
    }
}

/// `[server] max_scrape_bytes`: a larger exposition is answered 500 with
/// the reason, never cut short, and counted; raising the limit by a reload
/// serves it again.
#[test]
fn a_scrape_over_max_scrape_bytes_is_refused_whole_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let server = |max: &str| format!("[server]\nmax_scrape_bytes = {max}\n");
    std::fs::write(dir.join("server.toml"), server("\"1MiB\"")).expect("write");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let (head, _) = get(agent.port, "");
    assert!(head.starts_with("http/1.1 200"), "{head}");

    std::fs::write(dir.join("server.toml"), server("2000")).expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (head, body) = loop {
        let (head, body) = get(agent.port, "Accept-Encoding: gzip\r\n");
        if head.starts_with("http/1.1 500") || std::time::Instant::now() > deadline {
            break (head, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let body = String::from_utf8_lossy(&body);
    assert!(
        head.starts_with("http/1.1 500"),
        "{head}\n{}",
        agent.log_text()
    );
    assert!(body.contains("max_scrape_bytes = 2000"), "{body}");
    assert!(!body.contains("# TYPE"), "a partial exposition: {body}");
    let log = agent.log_text();
    assert_eq!(
        log.matches("larger than [server] max_scrape_bytes").count(),
        1,
        "{log}"
    );

    std::fs::write(dir.join("server.toml"), server("\"16MiB\"")).expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !get(agent.port, "").0.starts_with("http/1.1 200") {
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after raising the limit:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = agent.scrape();
    assert!(
        s.get("weir_scrape_limit_exceeded_total", &[]) >= Some(1.0),
        "{}",
        s.text
    );

    std::fs::write(dir.join("server.toml"), server("0")).expect("write");
    agent.wait_for(30, "the reload refused", |s| {
        s.get("weir_config_last_reload_successful", &[]) == Some(0.0)
    });
    let log = agent.log_text();
    assert!(
        log.contains("server.toml:2: server.max_scrape_bytes"),
        "{log}"
    );
}
