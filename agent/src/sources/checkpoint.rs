//! The checkpoint file's framing: a header line that names the format's
//! version and carries a checksum and the length of the JSON body after
//! it, so that a file cut short (a full disk, a crash of the file system)
//! or damaged is recognised and ignored with a warning, never trusted and
//! never fatal.
//!
//! ```text
//! weir-checkpoint 2 crc32=1c291ca3 len=1234
//! {"files":[...],"journal_cursor":"...","series":{...}}
//! ```
//!
//! Version 1 is the bare JSON body that weir wrote before the header
//! existed (read positions only); it is still read, so an upgrade does not
//! read every log again. The checksum is CRC-32 (IEEE, as gzip and PNG
//! use), over the body bytes.

/// The first word of the header.
const MAGIC: &str = "weir-checkpoint";

/// The version written.
pub const VERSION: u32 = 2;

/// The header and `body`, ready to be written.
pub fn encode(body: &[u8]) -> Vec<u8> {
    let header = format!(
        "{MAGIC} {VERSION} crc32={:08x} len={}\n",
        crc32fast::hash(body),
        body.len()
    );
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The JSON body of a checkpoint file's bytes, or why they cannot be
/// trusted (said in a warning, after the file's path).
pub fn decode(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.first() == Some(&b'{') {
        // Version 1: a JSON body alone; serde_json checks it is whole.
        return Ok(bytes);
    }
    if bytes.is_empty() {
        return Err("it is empty (cut off while it was written?)".into());
    }
    let Some(rest) = bytes
        .strip_prefix(MAGIC.as_bytes())
        .and_then(|r| r.strip_prefix(b" "))
    else {
        return Err("it is not a weir checkpoint file (no header)".into());
    };
    let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
        return Err("its header is cut off".into());
    };
    let header = std::str::from_utf8(&rest[..nl]).map_err(|_| "its header is not text")?;
    let body = &rest[nl + 1..];
    let mut words = header.split(' ');
    let version: u32 = words
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("its header \"{header}\" has no version"))?;
    if version != VERSION {
        return Err(format!(
            "it is in format version {version}; this weir reads versions 1 and {VERSION} \
             (written by a newer weir?)"
        ));
    }
    let (mut crc, mut len) = (None, None);
    for w in words {
        if let Some(v) = w.strip_prefix("crc32=") {
            // Exactly as written (8 lowercase hex digits), so that no
            // changed byte reads as the same value.
            let hex = v.len() == 8 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            crc = hex.then(|| u32::from_str_radix(v, 16).ok()).flatten();
        } else if let Some(v) = w.strip_prefix("len=") {
            let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            len = digits.then(|| v.parse::<usize>().ok()).flatten();
        }
    }
    let (Some(crc), Some(len)) = (crc, len) else {
        return Err(format!(
            "its header \"{header}\" lacks a checksum or length"
        ));
    };
    if body.len() != len {
        return Err(format!(
            "it is cut off or has bytes added: {} bytes after the header, {len} written",
            body.len()
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err("its checksum does not match: it is damaged".into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_and_every_damage_is_seen() {
        let body = br#"{"files":[]}"#;
        let file = encode(body);
        assert_eq!(decode(&file), Ok(&body[..]));
        // Cut anywhere, or one bit flipped anywhere: refused.
        for cut in 0..file.len() {
            assert!(decode(&file[..cut]).is_err(), "cut at {cut} accepted");
        }
        for i in 0..file.len() {
            for bit in 0..8 {
                let mut bad = file.clone();
                bad[i] ^= 1 << bit;
                // A flip that leaves a version 1 body ({...}) is a
                // different file, read as such; none does here.
                assert!(decode(&bad).is_err(), "flip of bit {bit} at {i} accepted");
            }
        }
        let mut longer = file.clone();
        longer.extend_from_slice(b"\n");
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn version_1_is_read_and_a_newer_version_refused() {
        assert_eq!(decode(b"{\"files\":[]}"), Ok(&b"{\"files\":[]}"[..]));
        let e = decode(b"weir-checkpoint 3 crc32=00000000 len=0\n").expect_err("v3");
        assert!(e.contains("version 3"), "{e}");
        assert!(decode(b"").expect_err("empty").contains("empty"));
        assert!(decode(b"\0\0\0\0")
            .expect_err("zeros")
            .contains("not a weir"));
    }
}
