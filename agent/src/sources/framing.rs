//! Line framing shared by every line source (files, commands, stdin, a
//! command's standard error, `weir test`): one routine, so that long
//! lines, CRLF and a last line without a newline are handled the same
//! whatever the bytes come from.
//!
//! Bounded by construction: a [`Framer`] holds at most `max + 1` bytes of
//! an unfinished line, whatever arrives. A line longer than `max` bytes is
//! passed on cut to its first `max` bytes (at a character boundary) as
//! soon as it is known to be too long, counted as cut, and the rest of it
//! is skipped as it arrives, so one 256 MiB line, or an endless stream
//! without a newline, costs no more memory than a line of `max` bytes.
//!
//! Rules, the same for every source:
//! - a line ends at `\n`; one `\r` right before it is dropped (CRLF), and
//!   does not count towards `max`; a `\r` elsewhere is kept;
//! - invalid UTF-8 becomes U+FFFD;
//! - a last line without a newline is passed on only when its source says
//!   the stream ended ([`Framer::finish`]): at a command's exit, at the end
//!   of stdin, when a rotated file is let go. A file being followed keeps it
//!   until the writer finishes it.

/// Lines framed from a byte stream, ready for a [`super::Batch`].
#[derive(Debug, Default)]
pub struct Lines {
    /// Decoded lines, without terminators.
    pub lines: Vec<String>,
    /// Where each line starts in the stream (byte offset).
    pub offsets: Vec<u64>,
    /// How many of `lines` were cut at `max` bytes.
    pub cut: u64,
    /// How many of `lines` are multi-line records that dropped lines or
    /// bytes past their `max_lines` or `max_bytes` (see
    /// [`super::multiline`]).
    pub records_cut: u64,
}

impl Lines {
    fn push(&mut self, line: String, offset: u64, cut: bool) {
        self.lines.push(line);
        self.offsets.push(offset);
        if cut {
            self.cut += 1;
        }
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Where reading a stream can resume without losing or repeating a line:
/// the offset, and whether the bytes from there up to the next newline
/// belong to a line already passed on cut (to be skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Resume {
    /// Byte offset in the stream.
    pub offset: u64,
    /// Skip up to the next newline first.
    pub skip: bool,
}

/// Splits a byte stream into lines of at most `max` bytes; see the module
/// documentation for the rules.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    /// Bytes of the unfinished line, at most `max + 1` (one more than
    /// `max`, so that a line of exactly `max` bytes plus `\r` is not cut
    /// before its `\n` arrives).
    partial: Vec<u8>,
    /// The unfinished line was passed on cut: drop bytes up to `\n`.
    skipping: bool,
    /// Offset where the unfinished line starts.
    start: u64,
    /// Offset after the last byte fed.
    pos: u64,
}

impl Framer {
    /// A framer for lines of at most `max` bytes (at least 1), starting at
    /// `from` in the stream.
    pub fn new(max: usize, from: Resume) -> Self {
        Framer {
            max: max.max(1),
            partial: Vec::new(),
            skipping: from.skip,
            start: from.offset,
            pos: from.offset,
        }
    }

    /// Offset after the last byte fed.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes held for an unfinished line (at most `max + 1`).
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Where to resume after the lines passed on so far.
    pub fn resume(&self) -> Resume {
        if self.skipping {
            Resume {
                offset: self.pos,
                skip: true,
            }
        } else {
            Resume {
                offset: self.start,
                skip: false,
            }
        }
    }

    /// Frame `data`, the next bytes of the stream, into `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Lines) {
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let piece = &rest[..nl];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                let (line, cut) = decode_line(piece, self.max);
                out.push(line, self.start, cut);
            } else {
                let total = self.partial.len() + piece.len();
                let room = (self.max + 1).saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
                let (line, cut) = if total > self.max + 1 {
                    // Too long whatever its last byte is.
                    (decode_line(&self.partial[..self.max], self.max).0, true)
                } else {
                    decode_line(&self.partial, self.max)
                };
                out.push(line, self.start, cut);
                self.partial.clear();
            }
            self.pos += nl as u64 + 1;
            self.start = self.pos;
            rest = &rest[nl + 1..];
        }
        self.pos += rest.len() as u64;
        if self.skipping || rest.is_empty() {
            return;
        }
        let room = (self.max + 1).saturating_sub(self.partial.len());
        if rest.len() <= room {
            self.partial.extend_from_slice(rest);
            return;
        }
        // Longer than max + 1 bytes with no end in sight: pass the first
        // `max` bytes on now, skip the rest of the line as it comes.
        self.partial.extend_from_slice(&rest[..room]);
        let (line, _) = decode_line(&self.partial[..self.max], self.max);
        out.push(line, self.start, true);
        self.partial.clear();
        self.skipping = true;
    }

    /// The stream ended: an unfinished last line is complete.
    pub fn finish(&mut self, out: &mut Lines) {
        if !self.skipping && !self.partial.is_empty() {
            let (line, cut) = decode_line(&self.partial, self.max);
            out.push(line, self.start, cut);
        }
        self.partial.clear();
        self.skipping = false;
        self.start = self.pos;
    }
}

/// Turn raw line bytes into a string for the plugin: invalid UTF-8 becomes
/// U+FFFD, a trailing `\r` is dropped, a UTF-8 byte-order mark at the start
/// is dropped, and the line is cut at `max` bytes (at a character
/// boundary). Returns the line and whether it was cut.
pub fn decode_line(raw: &[u8], max: usize) -> (String, bool) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    // A UTF-8 byte-order mark (Windows tools write one at the start of a
    // file or stream; after copytruncate a writer may write it again) is not
    // part of the line: a rule anchored at `^` must still match.
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let (raw, cut) = if raw.len() > max {
        (&raw[..max], true)
    } else {
        (raw, false)
    };
    let mut s = String::from_utf8_lossy(raw).into_owned();
    if cut {
        // A cut can split a multi-byte character into U+FFFD, which may be
        // longer than the bytes it replaces: drop characters to fit.
        while s.len() > max {
            s.pop();
        }
    }
    (s, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(max: usize, chunks: &[&[u8]], eof: bool) -> (Lines, Framer) {
        let mut f = Framer::new(max, Resume::default());
        let mut out = Lines::default();
        for c in chunks {
            f.feed(c, &mut out);
        }
        if eof {
            f.finish(&mut out);
        }
        (out, f)
    }

    #[test]
    fn decodes_invalid_utf8_and_cuts_long_lines() {
        assert_eq!(decode_line(b"ok\r", 10), ("ok".to_string(), false));
        assert_eq!(
            decode_line(b"a\xffb", 10),
            ("a\u{fffd}b".to_string(), false)
        );
        let (s, cut) = decode_line("ééééé".as_bytes(), 5);
        assert!(cut && s.len() <= 5 && s.starts_with("éé"));
    }

    /// Whatever the chunking, the same lines, offsets and cut count.
    #[test]
    fn lines_do_not_depend_on_how_the_bytes_arrive() {
        let input: &[u8] =
            b"one\r\ntwo\nthree is long\r\nfour\rx\n\nsix-is-exactly\r\nseven-is-exactly\ntail";
        let (whole, _) = frame(14, &[input], true);
        assert_eq!(
            whole.lines,
            [
                "one",
                "two",
                "three is long",
                "four\rx",
                "",
                "six-is-exactly",
                "seven-is-exact",
                "tail"
            ]
        );
        assert_eq!(whole.offsets, [0, 5, 9, 24, 31, 32, 48, 65]);
        assert_eq!(whole.cut, 1);
        for size in 1..input.len() {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            let (got, _) = frame(14, &chunks, true);
            assert_eq!(got.lines, whole.lines, "chunks of {size}");
            assert_eq!(got.offsets, whole.offsets, "chunks of {size}");
            assert_eq!(got.cut, whole.cut, "chunks of {size}");
        }
    }

    /// An endless line holds no more than max + 1 bytes, is passed on cut
    /// once, and the next line after its newline is whole.
    #[test]
    fn an_endless_line_is_cut_once_and_memory_stays_bounded() {
        let mut f = Framer::new(64, Resume::default());
        let mut out = Lines::default();
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..256 {
            f.feed(&chunk, &mut out);
            assert!(f.pending() <= 65);
        }
        assert_eq!(out.lines, ["x".repeat(64)]);
        assert_eq!(out.cut, 1);
        assert!(f.resume().skip);
        f.feed(b"yy\nnext\n", &mut out);
        assert_eq!(out.lines.len(), 2);
        assert_eq!(out.lines[1], "next");
        assert_eq!(out.offsets[1], (256u64 << 16) + 3);
        // A stream that ends inside a cut line adds nothing more.
        f.feed(&chunk, &mut out);
        f.finish(&mut out);
        assert_eq!(out.lines.len(), 3);
    }

    #[test]
    fn resume_points_are_line_starts_or_skips() {
        let (_, f) = frame(8, &[b"ab\ncd"], false);
        assert_eq!(
            f.resume(),
            Resume {
                offset: 3,
                skip: false
            }
        );
        // Resuming inside a cut line skips its rest.
        let mut g = Framer::new(
            8,
            Resume {
                offset: 100,
                skip: true,
            },
        );
        let mut out = Lines::default();
        g.feed(b"rest of it\nnext\n", &mut out);
        assert_eq!(out.lines, ["next"]);
        assert_eq!(out.offsets, [111]);
    }
}
