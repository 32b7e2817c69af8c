//! What may be written where others read it. Every URL weir is given
//! passes [`check_url`]; every URL and command line that goes into a log
//! line, an error message, a label value or a plugin's input goes through
//! [`url`], [`text`] or [`argv`] first.
//!
//! Secrets belong in the settings made for them (`basic_auth` with
//! `password_file` or `password_env`, `bearer_token_file`, `headers`),
//! which are never logged; a URL and a command line are logged, so
//! whatever looks secret in them is replaced by [`REDACTED`].

/// What a secret is replaced with.
pub const REDACTED: &str = "REDACTED";

/// The rule for every URL weir takes:
/// `http://` or `https://`, a host, and no user name or password, which
/// would be logged (the error points to the auth settings instead). Errors
/// never repeat what would be secret.
pub fn check_url(raw: &str) -> Result<(), String> {
    let shown = url(raw);
    let lower = raw.trim_start().to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("\"{shown}\" is not an http:// or https:// URL"));
    }
    // The URL standard's parser skips extra slashes after the scheme
    // (`http:///w` becomes host `w`), so an empty authority is caught on
    // the text as written.
    let after_scheme = &raw.trim_start()[lower.find("://").map_or(0, |i| i + 3)..];
    if after_scheme.is_empty() || after_scheme.starts_with(['/', '?', '#', '\\']) {
        return Err(format!("\"{shown}\" has no host"));
    }
    let u = reqwest::Url::parse(raw).map_err(|e| format!("\"{shown}\" is not a URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "\"{shown}\" holds a user name or password, which would be logged; use basic_auth with password_file or password_env (or bearer_token_file) instead"
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{shown}\" has no host"));
    }
    Ok(())
}

/// `raw` with its user name and password, each query value and the
/// fragment replaced by [`REDACTED`]:
/// `http://REDACTED@host:9100/stats?api_key=REDACTED`. Works on text that
/// does not parse as a URL too.
pub fn url(raw: &str) -> String {
    let (scheme, rest) = match raw.find("://") {
        Some(i) => (&raw[..i + 3], &raw[i + 3..]),
        None => ("", raw),
    };
    // The authority ends at the first '/', '?' or '#'; user info is what
    // comes before its last '@'.
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let host = match authority.rfind('@') {
        Some(i) => format!("{REDACTED}@{}", &authority[i + 1..]),
        None => authority.to_string(),
    };
    let (before_fragment, had_fragment) = match tail.find('#') {
        Some(i) => (&tail[..i], true),
        None => (tail, false),
    };
    let mut out = format!("{scheme}{host}");
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            out.push_str(&redact_query(query));
        }
        None => out.push_str(before_fragment),
    }
    if had_fragment {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{k}={REDACTED}"),
            None if pair.is_empty() => String::new(),
            // A bare value (`?s3cr3t`) may be the secret itself.
            None => REDACTED.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The parts of `raw` that [`url`] hides: the user info, its password and
/// each query value and fragment, longest first.
fn secret_parts(raw: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let rest = raw.split_once("://").map_or(raw, |(_, r)| r);
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if let Some(i) = rest[..auth_end].rfind('@') {
        let info = &rest[..i];
        parts.push(info.to_string());
        if let Some((_, pass)) = info.split_once(':') {
            parts.push(pass.to_string());
        }
    }
    let tail = &rest[auth_end..];
    let (before_fragment, fragment) = tail.split_once('#').unwrap_or((tail, ""));
    parts.push(fragment.to_string());
    if let Some((_, query)) = before_fragment.split_once('?') {
        parts.push(query.to_string());
        for pair in query.split('&') {
            let v = pair.split_once('=').map_or(pair, |(_, v)| v);
            parts.push(v.to_string());
            // Clients print decoded values too.
            if let Ok(d) = urlencoding_decode(v) {
                parts.push(d);
            }
        }
    }
    // Short values ("1", "json") are left alone: replacing them everywhere
    // would garble the text and they are not secrets worth the name.
    parts.retain(|p| p.len() >= 4);
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.dedup();
    parts
}

fn urlencoding_decode(v: &str) -> Result<String, ()> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
                out.push(u8::from_str_radix(h, 16).map_err(|_| ())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// `text` (an HTTP client's error, say) with every appearance of `raw_url`
/// and of its secret parts replaced: the whole URL by its [`url`] form,
/// then user info, password and query values by [`REDACTED`].
pub fn text(text: &str, raw_url: &str) -> String {
    if raw_url.is_empty() {
        return text.to_string();
    }
    let mut out = text.replace(raw_url, &url(raw_url));
    // The client may print the URL normalised (`http://host/` for
    // `http://host`), so the parts are replaced one by one too.
    if let Ok(parsed) = reqwest::Url::parse(raw_url) {
        out = out.replace(parsed.as_str(), &url(parsed.as_str()));
    }
    for part in secret_parts(raw_url) {
        out = out.replace(&part, REDACTED);
    }
    out
}

/// Whether an option, header or variable name looks like it holds a secret
/// (`--password`, `api_key`, `X-Auth-Token`, `DB_PASS`...).
pub fn secret_name(name: &str) -> bool {
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
        "cookie",
        "session",
        "signature",
        "private",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A command line for the log: arguments joined by spaces, with the value
/// of every secret-looking option replaced (`--password=REDACTED`,
/// `--token REDACTED`, `DB_PASSWORD=REDACTED`, `-H 'Authorization:
/// REDACTED'`, `--header=Authorization: REDACTED`, `-pREDACTED`, `-p
/// REDACTED`), the password of a `user:password` pair given to `-u`,
/// `--user` or `--proxy-user` (curl, wget) replaced (`-u admin:REDACTED`),
/// and URLs passed through [`url`]. It errs on the side of hiding: `-p`
/// is a password for mysql and sshpass but a port for others, and is
/// hidden either way.
pub fn argv(command: &[String]) -> String {
    let mut out = Vec::with_capacity(command.len());
    let mut next = Hide::Nothing;
    for arg in command {
        let this = std::mem::replace(&mut next, Hide::Nothing);
        out.push(match this {
            Hide::All => REDACTED.to_string(),
            Hide::Password => user_password(arg),
            Hide::Nothing => redact_arg(arg, &mut next),
        });
    }
    out.join(" ")
}

/// What to hide of the next argument.
enum Hide {
    Nothing,
    All,
    /// It is `user:password`: the password.
    Password,
}

/// Option names whose value is `user:password`.
fn is_user_option(name: &str) -> bool {
    matches!(
        name,
        "-u" | "-U" | "--user" | "--proxy-user" | "--http-user"
    )
}

/// `user:password` with the password hidden; a value without `:` is left
/// (curl then asks for the password).
fn user_password(value: &str) -> String {
    match value.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => value.to_string(),
    }
}

/// `Name: value` with the value hidden when the name looks secret
/// (`Authorization`, `X-Api-Key`, `Cookie`), or None when it is not a
/// header of that kind.
fn secret_header(arg: &str) -> Option<String> {
    let (name, _) = arg.split_once(':')?;
    (!name.is_empty()
        && !name.contains([' ', '/', '='])
        && !arg[name.len()..].starts_with("://")
        && secret_name(name))
    .then(|| format!("{name}: {REDACTED}"))
}

fn redact_arg(arg: &str, next: &mut Hide) -> String {
    // --name=value, -name=value, NAME=value
    if let Some((name, value)) = arg.split_once('=') {
        if !name.is_empty() && !name.contains([' ', ':', '/']) {
            if secret_name(name) {
                return format!("{name}={REDACTED}");
            }
            if is_user_option(name) {
                return format!("{name}={}", user_password(value));
            }
            // --header=Authorization: Basic ...
            if let Some(h) = secret_header(value) {
                return format!("{name}={h}");
            }
        }
    }
    // "Header: value" (curl -H, wget --header)
    if let Some(h) = secret_header(arg) {
        return h;
    }
    if is_user_option(arg) {
        *next = Hide::Password;
        return arg.to_string();
    }
    if !arg.starts_with("--") {
        // -uadmin:pw
        if let Some(v) = arg.strip_prefix("-u").or_else(|| arg.strip_prefix("-U")) {
            if v.contains(':') {
                return format!("{}{}", &arg[..2], user_password(v));
            }
        }
        // -HAuthorization: ...
        if let Some(h) = arg.strip_prefix("-H").and_then(secret_header) {
            return format!("-H{h}");
        }
        // -p VALUE, -pVALUE (mysql, sshpass); -P likewise. `-pass` and
        // `-password` (openssl, influx) are options whose value follows.
        if let Some(rest) = arg.strip_prefix("-p").or_else(|| arg.strip_prefix("-P")) {
            let lower = rest.to_ascii_lowercase();
            if rest.is_empty() || lower.starts_with("ass") || lower.starts_with("wd") {
                *next = Hide::All;
                return arg.to_string();
            }
            return format!("{}{REDACTED}", &arg[..2]);
        }
    }
    // --password VALUE
    if arg.starts_with('-') && !arg.contains('=') && secret_name(arg) {
        *next = Hide::All;
        return arg.to_string();
    }
    match arg.find("://") {
        Some(i) => {
            // The URL starts after the last separator before the scheme.
            let start = arg[..i].rfind(['=', ' ', '\'', '"']).map_or(0, |j| j + 1);
            let end = arg[i..].find([' ', '\'', '"']).map_or(arg.len(), |j| i + j);
            format!("{}{}{}", &arg[..start], url(&arg[start..end]), &arg[end..])
        }
        None => arg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_user_info_query_values_and_fragments() {
        assert_eq!(
            url("http://user:hunter2@host:9/api/v1/write?api_key=s3cr3t&x=1#frag"),
            "http://REDACTED@host:9/api/v1/write?api_key=REDACTED&x=REDACTED#REDACTED"
        );
        assert_eq!(url("https://host/stats"), "https://host/stats");
        assert_eq!(url("https://host?tok"), "https://host?REDACTED");
        assert_eq!(url("not a url?k=v"), "not a url?k=REDACTED");
        // An '@' in the path is not user info.
        assert_eq!(url("http://h/a@b"), "http://h/a@b");
    }

    #[test]
    fn one_rule_for_every_url() {
        assert!(check_url("http://127.0.0.1:9100/metrics").is_ok());
        assert!(check_url("HTTPS://example.com/x?q=1").is_ok());
        let e = check_url("http://user:hunter2@host/api/v1/write").unwrap_err();
        assert!(e.contains("basic_auth") && !e.contains("hunter2"), "{e}");
        let e = check_url("http://user@host/").unwrap_err();
        assert!(e.contains("user name"), "{e}");
        let e = check_url("ftp://host/?k=secretvalue").unwrap_err();
        assert!(e.contains("http://") && !e.contains("secretvalue"), "{e}");
        assert!(check_url("http://").is_err());
        for no_host in [
            "http:///w",
            "https:////api/v1/write",
            "http://?x",
            "http:///",
        ] {
            let e = check_url(no_host).unwrap_err();
            assert!(e.contains("has no host"), "{no_host}: {e}");
        }
    }

    #[test]
    fn client_errors_are_scrubbed() {
        let raw = "http://127.0.0.1:9/stats?api_key=s3cr3t%2Bkey";
        let err = "error sending request for url (http://127.0.0.1:9/stats?api_key=s3cr3t%2Bkey): connection refused; key s3cr3t+key";
        let t = text(err, raw);
        assert!(!t.contains("s3cr3t"), "{t}");
        assert!(
            t.contains("http://127.0.0.1:9/stats?api_key=REDACTED"),
            "{t}"
        );
        let t = text("for url (http://h/)", "http://u:pw12@h");
        assert!(!t.contains("pw12"), "{t}");
    }

    #[test]
    fn command_lines_hide_secret_options() {
        let c: Vec<String> = [
            "mysqladmin",
            "--password=hunter2",
            "--token",
            "abc123",
            "DB_PASS=xyz",
            "-H",
            "Authorization: Bearer qwerty",
            "https://u:pw@host/x?key=k1",
            "--url=http://h/?sig=v2",
            "--verbose",
            "plain",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let shown = argv(&c);
        for secret in ["hunter2", "abc123", "xyz", "qwerty", "pw@", "k1", "v2"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.starts_with("mysqladmin --password=REDACTED --token REDACTED DB_PASS=REDACTED -H Authorization: REDACTED https://REDACTED@host/x?key=REDACTED --url=http://h/?sig=REDACTED --verbose plain"),
            "{shown}"
        );
    }

    #[test]
    fn every_form_of_a_password_option_is_hidden() {
        let shown = |args: &[&str]| argv(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let cases: &[(&[&str], &str)] = &[
            (
                &["curl", "--header=Authorization: Basic c2VjcmV0"],
                "curl --header=Authorization: REDACTED",
            ),
            (
                &["curl", "-HX-Api-Key: k3yk3y"],
                "curl -HX-Api-Key: REDACTED",
            ),
            (
                &["curl", "--user=admin:hunter2"],
                "curl --user=admin:REDACTED",
            ),
            (
                &["curl", "-u", "admin:hunter2", "x"],
                "curl -u admin:REDACTED x",
            ),
            (
                &["curl", "--user", "admin:hunter2"],
                "curl --user admin:REDACTED",
            ),
            (&["curl", "-uadmin:hunter2"], "curl -uadmin:REDACTED"),
            (
                &["curl", "--proxy-user", "p:hunter2"],
                "curl --proxy-user p:REDACTED",
            ),
            (
                &["mysql", "-phunter2", "-h", "db"],
                "mysql -pREDACTED -h db",
            ),
            (&["mysql", "-p", "hunter2"], "mysql -p REDACTED"),
            (&["mysqladmin", "-P", "hunter2"], "mysqladmin -P REDACTED"),
            (
                &["sshpass", "-p123456", "ssh", "h"],
                "sshpass -pREDACTED ssh h",
            ),
            (
                &["openssl", "-pass", "pass:hunter2"],
                "openssl -pass REDACTED",
            ),
            (
                &["influx", "-password", "hunter2"],
                "influx -password REDACTED",
            ),
            (&["curl", "-u", "admin"], "curl -u admin"),
        ];
        for (args, want) in cases {
            let got = shown(args);
            assert_eq!(&got, want, "{args:?}");
            assert!(
                !got.contains("hunter2") && !got.contains("c2VjcmV0") && !got.contains("k3yk3y")
            );
        }
    }
}
