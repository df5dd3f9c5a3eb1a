//! The identity adapter for OpenAI-compatible streams: canonical frames pass through as bytes.
//!
//! A read whose events are already in OpenAI's canonical framing (`data: <json>\n\n`, LF line
//! ends, nothing else) is relayed as the very `Bytes` the upstream sent: the adapter only peeks,
//! with one vectorised scan, at whether it holds the end (`data: [DONE]`) or could hold an error.
//! Anything else (CRLF, multi-line `data:`, comments, `event:`/`id:` fields, an error event) is
//! decoded and re-framed canonically, event by event. An upstream error event ends the stream:
//! relayed verbatim when already OpenAI-shaped (`{"error":{"message":…}}`), else turned into the
//! gateway's OpenAI error event. A stream that ends without `data: [DONE]` gets one.

use std::sync::LazyLock;

use bytes::{BufMut, Bytes};
use memchr::memmem;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json_check::JsonSequence;
use super::sse;
use super::stream::ByteStream;
use super::stream::{Emitter, Flow, Framing, Reads, StreamAdapter, normalize};
use crate::error::GatewayError;

pub use super::stream::DONE_EVENT;

/// The searcher for `"error"`, built once: building one per look cost more than the search.
static ERROR_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"error\""));

/// Relays an upstream SSE body event by event, in canonical framing.
pub fn relay_events(upstream: ByteStream, backend: &str, reads: Reads) -> ByteStream {
    normalize(upstream, OpenAIRelay::new(backend), backend, reads)
}

/// The per-stream state of the identity relay.
#[derive(Debug)]
pub struct OpenAIRelay {
    backend: String,
    /// Checks each event's payload, resuming where it agrees with the one before.
    json: JsonSequence,
}

impl OpenAIRelay {
    /// A relay for one stream from `backend`.
    pub fn new(backend: &str) -> Self {
        OpenAIRelay {
            backend: backend.to_owned(),
            json: JsonSequence::default(),
        }
    }

    fn upstream_error(&self, data: &[u8], out: &mut Emitter) -> Result<Flow, GatewayError> {
        #[derive(Deserialize)]
        struct Wrapper<'a> {
            #[serde(borrow)]
            error: &'a RawValue,
        }
        #[derive(Deserialize)]
        struct Object {
            message: String,
        }
        let failed = |message: String| GatewayError::UpstreamFailed {
            backend: self.backend.clone(),
            message,
        };
        let Ok(wrapper) = serde_json::from_slice::<Wrapper<'_>>(data) else {
            // `event: error` with a payload that is not `{"error": …}`.
            return Err(failed(String::from_utf8_lossy(data).trim().to_owned()));
        };
        if let Ok(object) = serde_json::from_str::<Object>(wrapper.error.get()) {
            // Already OpenAI's shape (OpenAI, vLLM, llama.cpp): the upstream's words, verbatim.
            write_data_event(out, data);
            return Ok(Flow::Failed(object.message));
        }
        let message = serde_json::from_str::<String>(wrapper.error.get())
            .unwrap_or_else(|_| wrapper.error.get().to_owned());
        // `{"error": "text"}` (TGI and others): reshaped so the SDKs read a message.
        Err(failed(message))
    }
}

impl StreamAdapter for OpenAIRelay {
    const FRAMING: Framing = Framing::Sse;

    fn on_frames(&mut self, frames: Bytes, out: &mut Emitter) -> Result<Flow, GatewayError> {
        match scan_canonical(&frames, &mut self.json) {
            Some(ends_with_done) => {
                out.pass(frames);
                Ok(if ends_with_done {
                    Flow::End
                } else {
                    Flow::Continue
                })
            }
            _ => {
                for event in sse::events(&frames) {
                    let flow = self.on_frame(event, out)?;
                    if flow != Flow::Continue {
                        return Ok(flow);
                    }
                }
                Ok(Flow::Continue)
            }
        }
    }

    fn on_frame(&mut self, frame: &[u8], out: &mut Emitter) -> Result<Flow, GatewayError> {
        let event = sse::decode(frame);
        let Some(data) = event.data else {
            // A comment-only event is a keep-alive: pass it on, so that whatever sits between
            // the client and the gateway sees the same liveness as the gateway does.
            if let Some(comment) = event.comment {
                let buf = out.buf();
                buf.put_u8(b':');
                buf.extend_from_slice(comment);
                buf.extend_from_slice(b"\n\n");
            }
            return Ok(Flow::Continue);
        };
        if data.trim_ascii() == b"[DONE]" {
            out.extend(DONE_EVENT);
            return Ok(Flow::End);
        }
        if event.event == Some(b"error") || is_error_payload(&data) {
            return self.upstream_error(&data, out);
        }
        if !data.trim_ascii().is_empty() {
            // A chunk that does not parse would reach the client as if fine, and its SDK
            // would fail on it or, worse, skip it.
            if !self.json.is_json(&data) {
                return Err(GatewayError::UpstreamProtocol {
                    backend: self.backend.clone(),
                    message: "a stream event's data is not UTF-8 JSON".to_owned(),
                });
            }
            write_data_event(out, &data);
        }
        Ok(Flow::Continue)
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), GatewayError> {
        // The stream ended without `data: [DONE]` (on_frames ends the stream when it sees one).
        out.extend(DONE_EVENT);
        Ok(())
    }
}

/// `Some(ends_with_done)` when `frames` is already canonical and needs no look inside: LF line
/// ends only, one `data: ` line per event whose payload is JSON, `[DONE]` (if any) last, and
/// no `"error"` anywhere (a cheap over-approximation of "might be an error event": the slow
/// path decides). A read with a payload that does not parse goes the slow way too, which
/// relays the events before it and then fails on it.
fn scan_canonical(frames: &[u8], json: &mut JsonSequence) -> Option<bool> {
    if !frames.ends_with(b"\n\n")
        || memchr::memchr(b'\r', frames).is_some()
        || ERROR_KEY.find(frames).is_some()
    {
        return None;
    }
    let mut start = 0;
    let mut previous_blank = true;
    let mut done = false;
    for newline in memchr::memchr_iter(b'\n', frames) {
        let line = &frames[start..newline];
        start = newline + 1;
        if line.is_empty() {
            // An empty event (a blank line after a blank line, or first) is dropped by the
            // slow path; relaying it here would make the output depend on how reads split.
            if previous_blank {
                return None;
            }
            previous_blank = true;
            continue;
        }
        // A second line in one event (multi-line data, `event:`, ...) or anything after [DONE].
        let payload = line.strip_prefix(b"data: ")?;
        if !previous_blank || done {
            return None;
        }
        previous_blank = false;
        done = payload == b"[DONE]";
        if !done && !json.is_json(payload) {
            return None;
        }
    }
    Some(done)
}

/// Whether a data payload is `{"error": <non-null>, ...}`.
fn is_error_payload(data: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    ERROR_KEY.find(data).is_some()
        && serde_json::from_slice::<Probe<'_>>(data)
            .ok()
            .and_then(|p| p.error)
            .is_some_and(|e| e.get() != "null")
}

/// `data: <payload>\n\n` on one line. A line break inside a JSON payload can only be
/// whitespace between tokens (JSON strings escape theirs), so it becomes a space; other
/// payloads keep their lines as several `data:` lines, as SSE defines.
fn write_data_event(out: &mut Emitter, data: &[u8]) {
    let buf = out.buf();
    let json = matches!(data.trim_ascii_start().first(), Some(b'{' | b'['));
    buf.reserve(data.len() + 8);
    sse::write_event(buf, None, |buf| {
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                buf.extend_from_slice(if json { b" " } else { b"\ndata: " });
            }
            buf.extend_from_slice(line);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::stream::Normalizer;
    use futures::{StreamExt, stream};

    async fn collect(chunks: Vec<Result<&'static [u8], GatewayError>>) -> String {
        let upstream: ByteStream = Box::pin(stream::iter(
            chunks.into_iter().map(|c| c.map(Bytes::from_static)),
        ));
        let out: Vec<_> = relay_events(upstream, "b", Reads::HandedOver)
            .collect()
            .await;
        let bytes: Vec<u8> = out.into_iter().flat_map(|r| r.unwrap().to_vec()).collect();
        String::from_utf8(bytes).unwrap()
    }

    /// Feeds `stream` cut into pieces of `size` bytes; returns the client's bytes.
    fn relay_in_pieces(stream: &[u8], size: usize) -> String {
        let mut n = Normalizer::new(OpenAIRelay::new("b"), "b");
        let mut out = Vec::new();
        for piece in stream.chunks(size) {
            out.extend(n.push(Bytes::copy_from_slice(piece)).unwrap_or_default());
        }
        out.extend(n.end().unwrap_or_default());
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn a_complete_stream_passes_through_unchanged() {
        let out = collect(vec![Ok(b"data: {\"a\":1}\n\ndata: [DO"), Ok(b"NE]\n\n")]).await;
        assert_eq!(out, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    }

    #[test]
    fn a_canonical_read_is_relayed_as_the_same_bytes() {
        let mut n = Normalizer::new(OpenAIRelay::new("b"), "b");
        let read = Bytes::from_static(b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\n");
        let out = n.push(read.clone()).unwrap();
        assert_eq!(out.as_ptr(), read.as_ptr(), "no copy");
        assert_eq!(out.len(), read.len());
    }

    #[tokio::test]
    async fn a_stream_without_done_gets_one() {
        let out = collect(vec![Ok(b"data: {\"a\":1}\n\ndata: {\"b\":2}")]).await;
        assert_eq!(
            out,
            "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"
        );
    }

    #[test]
    fn crlf_multiline_data_comments_and_fields_come_out_canonical_however_split() {
        let upstream = b": keep-alive\r\n\r\nid: 1\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nretry: 5\r\n\r\ndata:{\"b\":2}\r\n\r\ndata: [DONE]\r\n\r\n";
        let expected = ": keep-alive\n\ndata: {\"a\": 1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        for size in 1..=upstream.len() {
            assert_eq!(
                relay_in_pieces(upstream, size),
                expected,
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn blank_lines_between_events_are_dropped_however_reads_split() {
        // Found by the property tests: a read of only blank lines took the zero-copy path and
        // was relayed, while the same bytes inside a larger read were dropped.
        let upstream = b"\n\ndata: {\"a\":1}\n\n\n\ndata: [DONE]\n\n";
        for size in 1..=upstream.len() {
            assert_eq!(
                relay_in_pieces(upstream, size),
                "data: {\"a\":1}\n\ndata: [DONE]\n\n",
                "pieces of {size}"
            );
        }
    }

    #[test]
    fn an_event_that_is_not_utf8_json_ends_the_stream_after_the_events_before_it() {
        for garbage in [
            &b"data: not json\n\n"[..],
            &b"data: {\"a\":\"\xff\"}\n\n"[..],
        ] {
            let mut upstream = b"data: {\"a\":1}\n\n".to_vec();
            upstream.extend_from_slice(garbage);
            upstream.extend_from_slice(b"data: {\"b\":2}\n\ndata: [DONE]\n\n");
            for size in 1..=upstream.len() {
                let out = relay_in_pieces(&upstream, size);
                let payloads = sse::data_payloads(out.as_bytes());
                assert_eq!(payloads.len(), 2, "pieces of {size}: {out}");
                assert_eq!(payloads[0], b"{\"a\":1}");
                assert!(out.contains("upstream_protocol_error"), "{out}");
            }
        }
    }

    #[test]
    fn nothing_after_done_is_relayed() {
        let out = relay_in_pieces(
            b"data: {\"a\":1}\n\ndata: [DONE]\n\ndata: {\"late\":1}\n\n",
            64,
        );
        assert_eq!(out, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    }

    #[test]
    fn an_openai_shaped_error_event_is_relayed_verbatim_and_ends_the_stream() {
        let upstream = b"data: {\"a\":1}\n\ndata: {\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\ndata: [DONE]\n\n";
        let out = relay_in_pieces(upstream, 7);
        assert_eq!(
            out,
            "data: {\"a\":1}\n\ndata: {\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n"
        );
    }

    #[test]
    fn a_bare_string_error_is_reshaped_into_an_openai_error() {
        let out = relay_in_pieces(
            b"data: {\"error\":\"Input validation error\",\"error_type\":\"validation\"}\n\n",
            5,
        );
        let payloads = sse::data_payloads(out.as_bytes());
        assert_eq!(payloads.len(), 1, "{out}");
        let body: crate::schema::ErrorBody = serde_json::from_slice(&payloads[0]).unwrap();
        assert!(body.error.message.contains("Input validation error"));
        assert_eq!(body.error.code.as_deref(), Some("upstream_error"));
        let out = relay_in_pieces(b"event: error\ndata: overloaded\n\n", 100);
        assert!(
            out.contains("overloaded") && !out.contains("[DONE]"),
            "{out}"
        );
    }

    #[test]
    fn content_that_mentions_error_is_not_an_error() {
        let upstream = b"data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\n";
        assert_eq!(
            relay_in_pieces(upstream, 1000),
            "data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\ndata: [DONE]\n\n"
        );
    }

    #[tokio::test]
    async fn a_failure_mid_stream_becomes_an_error_event_and_ends_it() {
        let err = GatewayError::UpstreamTimeout {
            backend: "b".into(),
            phase: "the next part of the body",
        };
        let out = collect(vec![
            Ok(b"data: {\"a\":1}\n\n"),
            Err(err),
            Ok(b"data: never\n\n"),
        ])
        .await;
        assert!(
            out.starts_with("data: {\"a\":1}\n\ndata: {\"error\":{"),
            "{out}"
        );
        assert!(
            out.contains("upstream_timeout") && !out.contains("never") && !out.contains("[DONE]"),
            "{out}"
        );
    }
}
