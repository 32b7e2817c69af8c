//! The endpoint locked down, tried with real clients: curl with and
//! without credentials and client certificates, openssl s_client after a
//! certificate change, a client that sends its headers a byte at a time,
//! and an allow-list that excludes us.
use crate::support::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1, a client certificate, and a
/// client certificate from another CA.
fn make_certs(dir: &Path) {
    sh(
        dir,
        r#"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rogue-ca -keyout rogue.key -out rogue.pem 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > san.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
for name in server server2; do
  openssl req -newkey rsa:2048 -nodes -subj /CN=$name -keyout $name.key -out $name.csr 2>/dev/null
  openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out $name.pem 2>/dev/null
done
openssl req -newkey rsa:2048 -nodes -subj /CN=prometheus -keyout client.key -out client.csr 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=intruder -keyout bad.key -out bad.csr 2>/dev/null
openssl x509 -req -in bad.csr -CA rogue.pem -CAkey rogue.key -CAcreateserial -days 2 -extfile client.ext -out bad.pem 2>/dev/null
cp server.pem tls.pem; cp server.key tls.key
"#,
    );
}

fn hash(password: &str) -> String {
    let mut child = Command::new(WEIR)
        .args(["hash-password", "--cost", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("weir hash-password");
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("hash");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// curl's HTTP status, or 0 when the connection or handshake failed.
fn curl(args: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn wait_listening(port: u16, agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if agent.log_text().contains("ready: ")
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("agent not up: {}", agent.log_text());
}

#[test]
fn tls_mtls_basic_bearer_and_admin_credentials() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    make_certs(dir);
    std::fs::write(dir.join("read.token"), "read-token-123\n").expect("w");
    std::fs::write(dir.join("admin.token"), "admin-token-456\n").expect("w");
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("agent.toml"),
        format!(
            r#"[server]
reload_endpoint = true
[server.tls]
cert_file = "../tls.pem"
key_file = "../tls.key"
client_ca_file = "../ca.pem"
[server.auth]
basic = {{ prometheus = "{}" }}
bearer_token_files = ["../read.token"]
[server.admin_auth]
bearer_token_files = ["../admin.token"]

[pipeline.lines]
plugin = "regex-log"
source = {{ type = "stdin" }}
[[pipeline.lines.config.metrics]]
name = "x_total"
type = "counter"
[[pipeline.lines.config.rules]]
regex = "x"
[[pipeline.lines.config.rules.emit]]
metric = "x_total"
"#,
            hash("correct horse")
        ),
    )
    .expect("w");
    let agent = Agent::spawn(&conf, &dir.join("state"));
    wait_listening(agent.port, &agent);
    let url = format!("https://127.0.0.1:{}/metrics", agent.port);
    let ca = dir.join("ca.pem");
    let (ca, cert, key) = (
        ca.to_str().expect("path"),
        dir.join("client.pem"),
        dir.join("client.key"),
    );
    let (cert, key) = (cert.to_str().expect("path"), key.to_str().expect("path"));
    let mtls = ["--cacert", ca, "--cert", cert, "--key", key];

    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = mtls.to_vec();
        a.extend_from_slice(extra);
        a.push(&url);
        curl(&a)
    };
    assert_eq!(with(&["-u", "prometheus:correct horse"]), 200);
    assert_eq!(with(&["-u", "prometheus:wrong"]), 401);
    assert_eq!(with(&["-u", "nobody:correct horse"]), 401);
    assert_eq!(with(&[]), 401);
    assert_eq!(with(&["-H", "Authorization: Bearer read-token-123"]), 200);
    assert_eq!(with(&["-H", "Authorization: Bearer nope"]), 401);
    // /health stays open (still over TLS with a client certificate).
    let health = format!("https://127.0.0.1:{}/health", agent.port);
    let mut a: Vec<&str> = mtls.to_vec();
    a.push(&health);
    assert_eq!(curl(&a), 200);
    // No client certificate, or one from another CA: no handshake.
    assert_eq!(
        curl(&["--cacert", ca, "-u", "prometheus:correct horse", &url]),
        0
    );
    let (bad, badkey) = (dir.join("bad.pem"), dir.join("bad.key"));
    assert_eq!(
        curl(&[
            "--cacert",
            ca,
            "--cert",
            bad.to_str().expect("p"),
            "--key",
            badkey.to_str().expect("p"),
            "-u",
            "prometheus:correct horse",
            &url
        ]),
        0
    );
    // The server certificate does not verify without our CA.
    assert_eq!(
        curl(&[
            "--cert",
            cert,
            "--key",
            key,
            "-u",
            "prometheus:correct horse",
            &url
        ]),
        0
    );
    // Plain HTTP to the TLS port gets nothing useful.
    assert_eq!(curl(&[&url.replace("https", "http")]), 0);

    // Admin route: read credentials are not enough.
    let reload = format!("https://127.0.0.1:{}/-/reload", agent.port);
    assert_eq!(
        with_post(
            &mtls,
            &["-H", "Authorization: Bearer read-token-123"],
            &reload
        ),
        401
    );
    assert_eq!(
        with_post(
            &mtls,
            &["-H", "Authorization: Bearer admin-token-456"],
            &reload
        ),
        200
    );

    // Certificate reload: a new certificate is served without a restart.
    let subject = || {
        let out = Command::new("sh")
            .args(["-c", &format!(
                "openssl s_client -connect 127.0.0.1:{} -CAfile {ca} -cert {cert} -key {key} </dev/null 2>/dev/null | openssl x509 -noout -subject",
                agent.port
            )])
            .output()
            .expect("s_client");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(subject().contains("CN = server"), "{}", subject());
    std::thread::sleep(Duration::from_millis(1100));
    sh(dir, "cp server2.key tls.key.new && cp server2.pem tls.pem.new && mv tls.key.new tls.key && mv tls.pem.new tls.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !subject().contains("CN = server2") {
        assert!(
            Instant::now() < deadline,
            "certificate not reloaded: {}",
            subject()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(with(&["-u", "prometheus:correct horse"]), 200);
    // Secrets never reach the log.
    let log = agent.log_text();
    assert!(
        !log.contains("read-token-123")
            && !log.contains("admin-token-456")
            && !log.contains("correct horse")
    );
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}

fn with_post(mtls: &[&str], extra: &[&str], url: &str) -> u16 {
    let mut a: Vec<&str> = mtls.to_vec();
    a.extend_from_slice(extra);
    a.extend_from_slice(&["-X", "POST", url]);
    curl(&a)
}

#[test]
fn slow_headers_are_cut_off_and_the_allow_list_applies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let conf = tmp.path().join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(
        conf.join("agent.toml"),
        "[server]\nheader_timeout = \"1s\"\nmax_connections = 4\n",
    )
    .expect("w");
    let agent = Agent::start(&conf, &tmp.path().join("state"));
    // A client that sends its request line a byte every 200 ms.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", agent.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let start = Instant::now();
    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n";
    let mut cut = false;
    for b in req.iter() {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        cut || n == 0 || answer.starts_with("HTTP/1.1 408"),
        "slow client was served: {answer:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "cut off after {:?}",
        start.elapsed()
    );
    // Meanwhile others are served.
    assert!(agent
        .scrape()
        .get(
            "weir_build_info",
            &[("version", env!("CARGO_PKG_VERSION")), ("wit", "0.1.0")]
        )
        .is_some());

    // An allow-list without loopback: we are refused.
    let tmp2 = tempfile::tempdir().expect("tempdir");
    let conf2 = tmp2.path().join("conf");
    std::fs::create_dir_all(&conf2).expect("mkdir");
    std::fs::write(
        conf2.join("agent.toml"),
        "[server]\nallow = [\"10.0.0.0/8\"]\n",
    )
    .expect("w");
    let other = Agent::spawn(&conf2, &tmp2.path().join("state"));
    wait_listening(other.port, &other);
    assert_eq!(
        curl(&[&format!("http://127.0.0.1:{}/metrics", other.port)]),
        0
    );
}
