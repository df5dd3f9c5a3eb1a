//! Newline-delimited JSON framing: cut a byte stream at line ends without copying.
//!
//! The NDJSON counterpart of `sse::SseFramer`: a network read may end in the middle of a line or
//! carry several lines. `LineFramer` hands back only whole lines, as a slice of the read that
//! completed them (zero-copy when a read ends on `\n`, the common case), and keeps the unfinished
//! tail. Decoding the JSON of each line is the format adapter's job (`ollama::ChatStream`).

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into whole `\n`-terminated lines.
#[derive(Debug, Default)]
pub struct LineFramer {
    pending: BytesMut,
}

impl LineFramer {
    /// A framer with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one read; returns every whole line it completed (possibly several), if any.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.pending.is_empty() {
            return match memchr::memrchr(b'\n', &chunk) {
                Some(i) if i + 1 == chunk.len() => Some(chunk),
                Some(i) => {
                    self.pending.extend_from_slice(&chunk[i + 1..]);
                    Some(chunk.slice(..=i))
                }
                None => {
                    self.pending.extend_from_slice(&chunk);
                    None
                }
            };
        }
        // Only the new bytes can hold the line end that completes the pending line.
        let from = self.pending.len();
        self.pending.extend_from_slice(&chunk);
        let end = memchr::memrchr(b'\n', &chunk)?;
        Some(self.pending.split_to(from + end + 1).freeze())
    }

    /// What is left when the stream ends: a last line that lacked its `\n`, if it has content.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.pending.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }

    /// Bytes held back waiting for a line end.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// The non-blank lines of `lines`, each without its `\n` or `\r\n`.
pub fn lines(lines: &[u8]) -> impl Iterator<Item = &[u8]> {
    lines
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.trim_ascii().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut LineFramer, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            if let Some(b) = framer.push(Bytes::copy_from_slice(p)) {
                out.extend_from_slice(&b);
            }
        }
        out
    }

    #[test]
    fn whole_lines_pass_through_without_copying_and_partial_ones_wait() {
        let mut f = LineFramer::new();
        let read = Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n");
        let out = f.push(read.clone()).unwrap();
        assert_eq!(out.as_ptr(), read.as_ptr(), "the read itself, not a copy");
        assert_eq!(
            f.push(Bytes::from_static(b"{\"c\":3}\n{\"d\"")).unwrap(),
            &b"{\"c\":3}\n"[..]
        );
        assert!(f.push(Bytes::from_static(b":4}")).is_none());
        assert_eq!(f.pending_len(), 7);
        assert_eq!(
            f.push(Bytes::from_static(b"\n")).unwrap(),
            &b"{\"d\":4}\n"[..]
        );
        assert!(f.finish().is_none());
    }

    #[test]
    fn every_cut_of_a_stream_gives_back_the_same_lines() {
        let stream = b"{\"a\":\"x\"}\r\n\n{\"b\":2}\n{\"c\":3}\n";
        for cut in 0..stream.len() {
            let mut f = LineFramer::new();
            let out = feed(&mut f, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(out, stream, "cut at {cut}");
        }
        let mut f = LineFramer::new();
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(feed(&mut f, &bytewise), stream);
        let found: Vec<&[u8]> = lines(stream).collect();
        assert_eq!(
            found,
            vec![&b"{\"a\":\"x\"}"[..], b"{\"b\":2}", b"{\"c\":3}"]
        );
    }

    #[test]
    fn a_last_line_without_newline_is_returned_by_finish() {
        let mut f = LineFramer::new();
        assert!(f.push(Bytes::from_static(b"{\"done\":true}")).is_none());
        assert_eq!(f.finish().unwrap(), &b"{\"done\":true}"[..]);
        let mut f = LineFramer::new();
        assert!(f.push(Bytes::from_static(b"  \r")).is_none());
        assert!(f.finish().is_none(), "whitespace is not a line");
    }
}
