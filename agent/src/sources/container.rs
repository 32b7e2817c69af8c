//! Container logs: the files a container runtime writes for Kubernetes
//! (`format = "cri"`, containerd and CRI-O) or Docker's json-file driver
//! (`format = "docker"`), decoded back into the lines the application
//! wrote, before multi-line joining and the plugin.
//!
//! - CRI: `2026-12-03T10:00:00.123456789Z stdout F text`; a line longer
//!   than the runtime's buffer (16 KiB) is written as `P` (partial) parts
//!   and a last `F` part, which are joined again here.
//! - Docker: `{"log":"text\n","stream":"stdout","time":"..."}`; a long line
//!   is split into parts whose `log` does not end with `\n`.
//!
//! Parts are joined per file. While a line is unfinished, complete lines
//! of the other stream that come meanwhile are held back, so that lines
//! are passed on in the order their first parts were written and the
//! checkpoint can stay at the unfinished line's first part
//! ([`Decoder::pending_start`]): a restart reads it again whole. Bounded:
//! a joined line is cut at `max_line_bytes`, and at most four times that
//! is held back; past it the unfinished line is passed on as it is.
//!
//! A line that is not in the format is dropped and counted
//! (`weir_source_lines_invalid_total`).
//!
//! Labels: [`path_labels`] reads `namespace`, `pod`, `container` and
//! `pod_uid` from the kubelet's paths.
use super::framing::Lines;
use crate::config::LineFormat;
use serde::Deserialize;

/// A line joined from parts, not finished yet.
#[derive(Debug)]
struct Partial {
    stderr: bool,
    text: String,
    /// Offset of its first part.
    start: u64,
    cut: bool,
}

/// Decodes a container runtime's log lines; see the module documentation.
#[derive(Debug)]
pub struct Decoder {
    format: LineFormat,
    max: usize,
    partial: Option<Partial>,
    /// Complete lines that came after the unfinished one.
    held: Lines,
    held_bytes: usize,
}

/// One decoded part: its stream, whether more parts follow, its text.
struct Part<'a> {
    stderr: bool,
    partial: bool,
    text: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    stream: Option<std::borrow::Cow<'a, str>>,
}

/// A CRI line's stream (stderr or not), whether it is partial, and where
/// its text starts.
fn cri_split(line: &str) -> Option<(bool, bool, usize)> {
    let mut it = line.splitn(4, ' ');
    let ts = it.next()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let start = (ts.len() + stream.len() + tag.len() + 3).min(line.len());
    // RFC 3339: `2026-12-03T10:00:00.1Z` at the least.
    if ts.len() < 20 || !ts.as_bytes()[0].is_ascii_digit() || ts.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let stderr = match stream {
        "stdout" => false,
        "stderr" => true,
        _ => return None,
    };
    // Tags are `:`-separated; the first says partial or full.
    let partial = match tag.split(':').next() {
        Some("P") => true,
        Some("F") => false,
        _ => return None,
    };
    Some((stderr, partial, start))
}

fn docker(line: &str) -> Option<Part<'_>> {
    let d: DockerLine<'_> = serde_json::from_str(line).ok()?;
    let stderr = d.stream.as_deref() == Some("stderr");
    let (text, partial) = match d.log {
        std::borrow::Cow::Borrowed(s) => match s.strip_suffix('\n') {
            Some(t) => (
                std::borrow::Cow::Borrowed(t.strip_suffix('\r').unwrap_or(t)),
                false,
            ),
            None => (std::borrow::Cow::Borrowed(s), true),
        },
        std::borrow::Cow::Owned(mut s) => {
            let partial = !s.ends_with('\n');
            if !partial {
                s.pop();
                if s.ends_with('\r') {
                    s.pop();
                }
            }
            (std::borrow::Cow::Owned(s), partial)
        }
    };
    Some(Part {
        stderr,
        partial,
        text,
    })
}

/// `s` cut to at most `max` bytes at a character boundary; whether it was.
fn push_bounded(into: &mut String, s: &str, max: usize) -> bool {
    let room = max.saturating_sub(into.len());
    if s.len() <= room {
        into.push_str(s);
        return false;
    }
    let mut end = room;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    into.push_str(&s[..end]);
    true
}

impl Decoder {
    /// A decoder for `format` (not [`LineFormat::Plain`]) and lines of at
    /// most `max` bytes.
    pub fn new(format: LineFormat, max: usize) -> Self {
        Decoder {
            format,
            max: max.max(1),
            partial: None,
            held: Lines::default(),
            held_bytes: 0,
        }
    }

    /// The part a framed line holds; `None` when it is not in the format.
    fn parse(&self, line: String) -> Option<Part<'static>> {
        match self.format {
            LineFormat::Cri => {
                let (stderr, partial, start) = cri_split(&line)?;
                // In place: the prefix is removed, the line's buffer kept.
                let mut text = line;
                text.drain(..start);
                Some(Part {
                    stderr,
                    partial,
                    text: text.into(),
                })
            }
            LineFormat::Docker => docker(&line).map(|p| Part {
                stderr: p.stderr,
                partial: p.partial,
                text: p.text.into_owned().into(),
            }),
            LineFormat::Plain => Some(Part {
                stderr: false,
                partial: false,
                text: line.into(),
            }),
        }
    }

    /// Decode framed lines; returns the application's lines (each at the
    /// offset of its first part) and how many lines were not in the format.
    pub fn decode(&mut self, framed: Lines) -> (Lines, u64) {
        let mut out = Lines {
            cut: framed.cut,
            ..Lines::default()
        };
        let mut invalid = 0;
        for (line, offset) in framed.lines.into_iter().zip(framed.offsets) {
            let Some(part) = self.parse(line) else {
                invalid += 1;
                continue;
            };
            self.part(part, offset, &mut out);
        }
        (out, invalid)
    }

    fn part(&mut self, part: Part<'_>, offset: u64, out: &mut Lines) {
        match &mut self.partial {
            Some(p) if p.stderr == part.stderr => {
                p.cut |= push_bounded(&mut p.text, &part.text, self.max);
                if !part.partial {
                    self.finish(out);
                }
            }
            Some(_) if !part.partial => {
                // The other stream, complete: after the unfinished line.
                let mut text = String::new();
                let cut = push_bounded(&mut text, &part.text, self.max);
                self.held_bytes += text.len();
                self.held.lines.push(text);
                self.held.offsets.push(offset);
                self.held.cut += u64::from(cut);
                if self.held_bytes > 4 * self.max {
                    self.finish(out);
                }
            }
            Some(_) => {
                // Both streams unfinished at once: the first is passed on
                // as it is.
                self.finish(out);
                self.part(part, offset, out);
            }
            None if part.partial => {
                let mut text = String::new();
                let cut = push_bounded(&mut text, &part.text, self.max);
                self.partial = Some(Partial {
                    stderr: part.stderr,
                    text,
                    start: offset,
                    cut,
                });
            }
            None => {
                let mut text = part.text.into_owned();
                let cut = text.len() > self.max;
                if cut {
                    let mut end = self.max;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                }
                out.lines.push(text);
                out.offsets.push(offset);
                out.cut += u64::from(cut);
            }
        }
    }

    /// Pass the unfinished line on, then the lines held after it.
    fn finish(&mut self, out: &mut Lines) {
        if let Some(p) = self.partial.take() {
            out.lines.push(p.text);
            out.offsets.push(p.start);
            out.cut += u64::from(p.cut);
        }
        let held = std::mem::take(&mut self.held);
        out.lines.extend(held.lines);
        out.offsets.extend(held.offsets);
        out.cut += held.cut;
        self.held_bytes = 0;
    }

    /// The file ends (let go, or truncated): an unfinished line is passed
    /// on as it is.
    pub fn flush(&mut self) -> Lines {
        let mut out = Lines::default();
        self.finish(&mut out);
        out
    }

    /// Where the unfinished line's first part starts, if there is one.
    pub fn pending_start(&self) -> Option<u64> {
        self.partial.as_ref().map(|p| p.start)
    }
}

/// `namespace`, `pod`, `container` and `pod_uid` from a container log's
/// path, in [`crate::config::CONTAINER_LABELS`]' order:
///
/// - `/var/log/pods/NAMESPACE_POD_UID/CONTAINER/N.log` (and its rotated
///   `N.log.TIMESTAMP`), where the kubelet writes;
/// - `/var/log/containers/POD_NAMESPACE_CONTAINER-ID.log`, its links (no
///   pod UID there).
///
/// Kubernetes names have no `_`, so the parts split cleanly. A path of
/// neither shape gives empty values.
pub fn path_labels(path: &str) -> [String; 4] {
    fn name(q: Option<&std::path::Path>) -> &str {
        q.and_then(|q| q.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("")
    }
    let p = std::path::Path::new(path);
    let file = name(Some(p));
    let dir = p.parent();
    let container = name(dir);
    let pod_dir = name(dir.and_then(|d| d.parent()));
    let pod_parts: Vec<&str> = pod_dir.split('_').collect();
    if pod_parts.len() == 3 && !container.is_empty() && pod_parts.iter().all(|s| !s.is_empty()) {
        return [
            pod_parts[0].to_string(),
            pod_parts[1].to_string(),
            container.to_string(),
            pod_parts[2].to_string(),
        ];
    }
    let stem = file.strip_suffix(".log").unwrap_or(file);
    let parts: Vec<&str> = stem.split('_').collect();
    if parts.len() == 3 {
        let c = parts[2];
        // CONTAINER-ID, the ID 64 hex digits.
        let container = match c.rsplit_once('-') {
            Some((name, id)) if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => name,
            _ => c,
        };
        return [
            parts[1].to_string(),
            parts[0].to_string(),
            container.to_string(),
            String::new(),
        ];
    }
    Default::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(lines: &[&str]) -> Lines {
        let mut out = Lines::default();
        let mut at = 0;
        for l in lines {
            out.lines.push(l.to_string());
            out.offsets.push(at);
            at += l.len() as u64 + 1;
        }
        out
    }

    #[test]
    fn cri_parts_are_joined_and_other_streams_wait_behind_them() {
        let mut d = Decoder::new(LineFormat::Cri, 1024);
        let (out, bad) = d.decode(framed(&[
            "2026-12-03T10:00:00.000000001Z stdout F one",
            "2026-12-03T10:00:00.000000002Z stdout P lo",
            "2026-12-03T10:00:00.000000003Z stderr F err",
            "2026-12-03T10:00:00.000000004Z stdout P ng",
        ]));
        assert_eq!(bad, 0);
        assert_eq!(out.lines, ["one"]);
        assert_eq!(d.pending_start(), Some(44));
        let (out, bad) = d.decode(Lines {
            lines: vec![
                "2026-12-03T10:00:00.000000005Z stdout F  line".into(),
                "2026-12-03T10:00:00.000000006Z stdout F".into(),
                "not cri".into(),
                "2026-12-03T10:00:00Z stdin F x".into(),
            ],
            offsets: vec![176, 222, 262, 270],
            ..Lines::default()
        });
        assert_eq!(bad, 2);
        assert_eq!(out.lines, ["long line", "err", ""]);
        assert_eq!(out.offsets, [44, 87, 222]);
        assert_eq!(d.pending_start(), None);
    }

    #[test]
    fn docker_parts_escapes_and_limits() {
        let mut d = Decoder::new(LineFormat::Docker, 8);
        let (out, bad) = d.decode(framed(&[
            r#"{"log":"a \"q\"\n","stream":"stdout","time":"2026-12-03T10:00:00Z"}"#,
            r#"{"log":"part1-","stream":"stderr"}"#,
            r#"{"log":"part2\r\n","stream":"stderr"}"#,
            r#"{"nolog":1}"#,
            r#"{"log":"tail"}"#,
        ]));
        assert_eq!(bad, 1);
        assert_eq!(out.lines, ["a \"q\"", "part1-pa"]);
        assert_eq!(out.cut, 1);
        assert_eq!(d.flush().lines, ["tail"]);
    }

    #[test]
    fn labels_from_kubelet_paths() {
        assert_eq!(
            path_labels(
                "/var/log/pods/shop_web-7d9f_0f3c1a2b-1111-2222-3333-444455556666/nginx/0.log"
            ),
            [
                "shop",
                "web-7d9f",
                "nginx",
                "0f3c1a2b-1111-2222-3333-444455556666"
            ]
        );
        assert_eq!(
            path_labels("/var/log/pods/shop_web_u1/nginx/0.log.20261203-101010"),
            ["shop", "web", "nginx", "u1"]
        );
        let id = "a".repeat(64);
        assert_eq!(
            path_labels(&format!("/var/log/containers/web-7d9f_shop_nginx-{id}.log")),
            ["shop", "web-7d9f", "nginx", ""]
        );
        assert_eq!(path_labels("/var/log/app.log"), ["", "", "", ""]);
    }
}
