//! Server-sent-event framing: cut a byte stream at event boundaries without copying.
//!
//! Upstream network reads do not respect event boundaries: one read may hold half an event or
//! several. `SseFramer` hands back only whole events, as slices of the reads that carried them
//! (zero-copy when a read ends on a boundary, the common case), and keeps the unfinished tail.
//! It does not decode fields: the OpenAI relay forwards frames as bytes, and decoding (for the
//! adapters that convert formats) is `events`' job. Both LF and CRLF framing are recognised.

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into whole SSE events.
#[derive(Debug, Default)]
pub struct SseFramer {
    pending: BytesMut,
}

impl SseFramer {
    /// A framer with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one read; returns every whole event completed by it (possibly several), if any.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.pending.is_empty() {
            return match last_event_end(&chunk) {
                Some(end) if end == chunk.len() => Some(chunk),
                Some(end) => {
                    self.pending.extend_from_slice(&chunk[end..]);
                    Some(chunk.slice(..end))
                }
                None => {
                    self.pending.extend_from_slice(&chunk);
                    None
                }
            };
        }
        // A boundary may straddle the two reads: look back up to three bytes ("\r\n\r|\n").
        let from = self.pending.len().saturating_sub(3);
        self.pending.extend_from_slice(&chunk);
        let end = last_event_end(&self.pending[from..])?;
        Some(self.pending.split_to(from + end).freeze())
    }

    /// What is left when the stream ends: an event that lacked its closing blank line.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.pending.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// The index just past the last blank line (`\n\n` or `\r\n\r\n`) in `buf`.
fn last_event_end(buf: &[u8]) -> Option<usize> {
    memchr::memrchr_iter(b'\n', buf).find_map(|i| {
        let blank = (i >= 1 && buf[i - 1] == b'\n')
            || (i >= 3 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n' && buf[i - 3] == b'\r');
        blank.then_some(i + 1)
    })
}

/// The `data:` payloads of the whole events in `frames`, in order (multi-line `data:` joined
/// with `\n`, comments and other fields skipped).
pub fn data_payloads(frames: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for raw_line in frames.split(|&b| b == b'\n') {
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.is_empty() {
            if let Some(data) = current.take() {
                out.push(data);
            }
            continue;
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            match &mut current {
                Some(data) => {
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
                None => current = Some(value.to_vec()),
            }
        }
    }
    if let Some(data) = current {
        out.push(data);
    }
    out
}

/// Whether the last event in `frames` is `data: [DONE]`.
pub fn ends_with_done(frames: &[u8]) -> bool {
    let trimmed = frames.trim_ascii_end();
    let last_event_start = last_event_end(trimmed).unwrap_or(0);
    data_payloads(&trimmed[last_event_start..])
        .last()
        .is_some_and(|d| d.trim_ascii() == b"[DONE]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut SseFramer, pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pieces {
            if let Some(b) = framer.push(Bytes::copy_from_slice(p)) {
                out.extend_from_slice(&b);
            }
        }
        out
    }

    #[test]
    fn whole_events_pass_through_and_partial_ones_wait() {
        let mut f = SseFramer::new();
        assert_eq!(
            f.push(Bytes::from_static(b"data: a\n\ndata: b\n\n"))
                .unwrap(),
            &b"data: a\n\ndata: b\n\n"[..]
        );
        assert_eq!(
            f.push(Bytes::from_static(b"data: c\n\ndata: d")).unwrap(),
            &b"data: c\n\n"[..]
        );
        assert!(f.push(Bytes::from_static(b"\n")).is_none());
        assert_eq!(
            f.push(Bytes::from_static(b"\n")).unwrap(),
            &b"data: d\n\n"[..]
        );
        assert!(f.finish().is_none());
    }

    #[test]
    fn crlf_boundaries_split_anywhere_are_found() {
        let stream = b"data: x\r\n\r\ndata: y\r\n\r\n";
        for cut in 0..stream.len() {
            let mut f = SseFramer::new();
            let out = feed(&mut f, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(out, stream, "cut at {cut}");
        }
        let mut f = SseFramer::new();
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(feed(&mut f, &bytewise), stream);
    }

    #[test]
    fn a_trailing_event_without_blank_line_is_returned_by_finish() {
        let mut f = SseFramer::new();
        assert!(f.push(Bytes::from_static(b"data: [DONE]")).is_none());
        assert_eq!(f.finish().unwrap(), &b"data: [DONE]"[..]);
    }

    #[test]
    fn payloads_join_multiline_data_and_skip_comments() {
        let p =
            data_payloads(b": keep-alive\n\nevent: x\ndata: {\"a\":\ndata: 1}\n\ndata:[DONE]\n\n");
        assert_eq!(p, vec![b"{\"a\":\n1}".to_vec(), b"[DONE]".to_vec()]);
        assert!(ends_with_done(b"data: {}\n\ndata: [DONE]\n\n"));
        assert!(ends_with_done(b"data: [DONE]\r\n\r\n"));
        assert!(!ends_with_done(b"data: [DONE]\n\ndata: {}\n\n"));
    }
}
