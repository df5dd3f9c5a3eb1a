//! Server-sent-event framing: cut a byte stream at event boundaries without copying.
//!
//! Upstream network reads do not respect event boundaries: one read may hold half an event or
//! several. `SseFramer` hands back only whole events, as slices of the reads that carried them
//! (zero-copy when a read ends on a boundary, the common case), and keeps the unfinished tail.
//! It does not decode fields: the OpenAI relay forwards canonical frames as bytes; `events` and
//! `decode` read the fields when a frame must be looked into or re-framed. Both LF and CRLF
//! framing are recognised.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// Writes one server-sent event, `[event: <name>\n]data: <payload>\n\n`, into `out`: the one
/// place the gateway frames an event. `payload` writes the data in place (a serialiser writing
/// straight into `out` costs no intermediate buffer); it must not write a line break, which
/// would end the `data:` field (JSON serialisers escape theirs).
pub fn write_event(out: &mut BytesMut, event: Option<&str>, payload: impl FnOnce(&mut BytesMut)) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"data: ");
    payload(out);
    out.extend_from_slice(b"\n\n");
}

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

    /// Bytes held back waiting for the end of an event.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// What is left when the stream ends: an event that lacked its closing blank line.
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.pending.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// The index just past the last blank line (`\n\n` or `\r\n\r\n`) in `buf`.
fn last_event_end(buf: &[u8]) -> Option<usize> {
    // The common case, a read that ends an event, without a backward search.
    if buf.ends_with(b"\n\n") {
        return Some(buf.len());
    }
    memchr::memrchr_iter(b'\n', buf).find_map(|i| {
        let blank = (i >= 1 && buf[i - 1] == b'\n')
            || (i >= 3 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n' && buf[i - 3] == b'\r');
        blank.then_some(i + 1)
    })
}

/// One decoded event: its fields, borrowed from the frame where possible.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `data:` lines joined with `\n` (borrowed when there is one line); `None` without any.
    pub data: Option<Cow<'a, [u8]>>,
    /// The last `event:` value, if any.
    pub event: Option<&'a [u8]>,
    /// The first comment line (`: keep-alive`), without its colon.
    pub comment: Option<&'a [u8]>,
}

/// The events in `frames` (whole events as `SseFramer` hands them out), each as its raw lines.
/// Blank lines separate events; LF and CRLF line ends are both accepted.
pub fn events(frames: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = frames;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            // Skip blank lines before the event.
            let (line, after) = split_line(rest);
            if line.is_empty() {
                rest = after;
                continue;
            }
            let start = rest;
            let mut len = 0;
            let mut cursor = rest;
            while !cursor.is_empty() {
                let (line, after) = split_line(cursor);
                if line.is_empty() {
                    break;
                }
                len = start.len() - after.len();
                cursor = after;
            }
            rest = cursor;
            return Some(&start[..len]);
        }
    })
}

/// The first line of `buf` (without `\n` or `\r\n`) and what follows it.
fn split_line(buf: &[u8]) -> (&[u8], &[u8]) {
    let (line, after) = match memchr::memchr(b'\n', buf) {
        Some(i) => (&buf[..i], &buf[i + 1..]),
        None => (buf, &buf[buf.len()..]),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), after)
}

/// Decodes the fields of one event (as `events` yields them), following the SSE specification:
/// `field: value` with one optional space after the colon, `:` starting a comment.
pub fn decode(event: &[u8]) -> Event<'_> {
    let mut out = Event::default();
    let mut rest = event;
    while !rest.is_empty() {
        let (line, after) = split_line(rest);
        rest = after;
        if let Some(comment) = line.strip_prefix(b":") {
            out.comment.get_or_insert(comment);
            continue;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &line[line.len()..]),
        };
        match field {
            b"data" => match &mut out.data {
                None => out.data = Some(Cow::Borrowed(value)),
                Some(data) => {
                    let data = data.to_mut();
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
            },
            b"event" => out.event = Some(value),
            // `id` and `retry` mean nothing to an OpenAI stream.
            _ => {}
        }
    }
    out
}

/// The `data:` payloads of the whole events in `frames`, in order (multi-line `data:` joined
/// with `\n`, comments and other fields skipped).
pub fn data_payloads(frames: &[u8]) -> Vec<Vec<u8>> {
    events(frames)
        .filter_map(|e| decode(e).data.map(Cow::into_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_event_frames_data_and_an_optional_event_name() {
        let mut out = BytesMut::new();
        write_event(&mut out, None, |b| b.extend_from_slice(b"{\"a\":1}"));
        write_event(&mut out, Some("response.done"), |b| {
            b.extend_from_slice(b"{}")
        });
        assert_eq!(
            &out[..],
            b"data: {\"a\":1}\n\nevent: response.done\ndata: {}\n\n"
        );
        // What it writes is what the framer cuts back into events.
        let frames = out.freeze();
        assert_eq!(events(&frames).count(), 2);
    }

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
    }

    #[test]
    fn events_split_at_blank_lines_and_decode_every_field() {
        let frames =
            b"\r\n: ping\r\n\r\nevent: error\r\ndata:{\"a\":\r\ndata:  1}\r\nid: 7\r\n\r\ndata\n\n";
        let found: Vec<&[u8]> = events(frames).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            decode(found[0]),
            Event {
                comment: Some(b" ping"),
                ..Event::default()
            }
        );
        let e = decode(found[1]);
        assert_eq!(e.event, Some(&b"error"[..]));
        assert_eq!(e.data.as_deref(), Some(&b"{\"a\":\n 1}"[..]));
        assert_eq!(decode(found[2]).data.as_deref(), Some(&b""[..]));
        assert!(matches!(decode(b"data: x").data, Some(Cow::Borrowed(_))));
    }
}
