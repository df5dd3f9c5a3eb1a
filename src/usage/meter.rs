//! Reading a relayed answer's usage on its way to the client, without holding it up.
//!
//! A JSON answer is read once (`tokens::in_json`). A stream is wrapped: each read the client
//! pulls is relayed as the same `Bytes` unless it can hold a usage value, which one vectorised
//! scan for `"usage"` decides; only then are its events looked into. Reads reach the wrapper
//! in canonical framing, whole events each (`adapters::stream` guarantees both), so an event
//! never straddles two reads.
//!
//! When the gateway asked the upstream for usage on the client's behalf (`strip`), the
//! usage-only chunk is removed and so is each chunk's `"usage":null`, so the client sees the
//! stream it asked for. A usage value on a chunk that also carries choices is left in place:
//! removing it would mean rewriting the chunk.
//!
//! A JSON answer relayed as it comes (`json`) is not held either: only the bytes from its last
//! `"usage"` key on are kept (at most 64 KiB), and parsed when the body ends.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use memchr::memmem;

use super::tokens::{self, Tokens};
use crate::adapters::sse;
use crate::backends::ByteStream;
use crate::error::GatewayError;

/// What a finished (or abandoned) stream reports.
#[derive(Debug, Clone, Copy)]
pub struct StreamEnd {
    /// The usage it carried, if any.
    pub tokens: Option<Tokens>,
    /// When its first bytes went to the client.
    pub first_byte: Option<Instant>,
}

/// A relayed body whose usage is read as it passes; `done` runs once when it ends, fails or
/// is dropped (the client went away).
pub struct Metered {
    inner: ByteStream,
    strip: bool,
    /// `Some` for a JSON body: its bytes from the last `"usage"` key on.
    json: Option<JsonTail>,
    end: StreamEnd,
    done: Option<Box<dyn FnOnce(StreamEnd) + Send>>,
}

/// The most bytes kept after a JSON body's `"usage"` key: far more than a usage object takes.
const MAX_TAIL: usize = 64 * 1024;

/// The key a JSON body's usage follows.
const USAGE_KEY: &[u8] = b"\"usage\"";
/// Searchers for the key, built once (building one costs more than a short search).
static USAGE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(USAGE_KEY));
static USAGE_BACKWARDS: LazyLock<memmem::FinderRev<'static>> =
    LazyLock::new(|| memmem::FinderRev::new(USAGE_KEY));
static EVENT_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n\n"));

/// A chunk's usage when it has none yet.
const NULL_USAGE: &[u8] = b"\"usage\":null";

/// One byte less than the key: the most of it a read can end with.
const EDGE: usize = USAGE_KEY.len() - 1;

/// The end of a JSON body from its last `"usage"` key, as the body streams past.
#[derive(Debug, Default)]
struct JsonTail {
    tail: BytesMut,
    /// The body's last bytes so far (`carry[..carried]`), for a key cut in two by the network.
    carry: [u8; EDGE],
    carried: usize,
}

impl JsonTail {
    fn push(&mut self, read: &[u8]) {
        // A key that starts in the bytes carried over and ends in this read.
        let head = &read[..read.len().min(EDGE)];
        let mut joined = [0u8; 2 * EDGE];
        joined[..self.carried].copy_from_slice(&self.carry[..self.carried]);
        joined[self.carried..self.carried + head.len()].copy_from_slice(head);
        let joined = &joined[..self.carried + head.len()];
        if let Some(at) = USAGE.find(joined).filter(|at| *at < self.carried) {
            self.tail.clear();
            self.tail.extend_from_slice(&self.carry[at..self.carried]);
        }
        match USAGE_BACKWARDS.rfind(read) {
            Some(at) => {
                self.tail.clear();
                self.tail
                    .extend_from_slice(&read[at..read.len().min(at + MAX_TAIL)]);
            }
            None if !self.tail.is_empty() => {
                let room = MAX_TAIL.saturating_sub(self.tail.len());
                self.tail.extend_from_slice(&read[..read.len().min(room)]);
            }
            None => {}
        }
        // The body's last bytes, however short the reads.
        let mut last = [0u8; 2 * EDGE];
        let kept = &self.carry[..self.carried];
        let recent = &read[read.len().saturating_sub(EDGE)..];
        last[..kept.len()].copy_from_slice(kept);
        last[kept.len()..kept.len() + recent.len()].copy_from_slice(recent);
        let len = kept.len() + recent.len();
        let from = len.saturating_sub(EDGE);
        self.carried = len - from;
        self.carry[..self.carried].copy_from_slice(&last[from..len]);
    }

    fn tokens(&self) -> Option<Tokens> {
        tokens::after_usage_key(&self.tail)
    }
}

impl Metered {
    /// Wraps an event stream; `strip` when the client did not ask for usage itself.
    pub fn new(inner: ByteStream, strip: bool, done: Box<dyn FnOnce(StreamEnd) + Send>) -> Self {
        Metered {
            inner,
            strip,
            json: None,
            end: StreamEnd {
                tokens: None,
                first_byte: None,
            },
            done: Some(done),
        }
    }

    /// Wraps a JSON body relayed as it comes.
    pub fn json(inner: ByteStream, done: Box<dyn FnOnce(StreamEnd) + Send>) -> Self {
        let mut metered = Metered::new(inner, false, done);
        metered.json = Some(JsonTail::default());
        metered
    }

    /// The read as the client gets it, noting any usage in it.
    fn inspect(&mut self, read: Bytes) -> Bytes {
        if USAGE.find(&read).is_none() {
            return read;
        }
        // Copy on write: `out` exists only once an event had to change.
        let mut out: Option<BytesMut> = None;
        let mut start = 0;
        while start < read.len() {
            let end = EVENT_END
                .find(&read[start..])
                .map_or(read.len(), |i| start + i + 2);
            let event = &read[start..end];
            let kept = self.event(event);
            match (kept, &mut out) {
                (Kept::Same, None) => {}
                (Kept::Same, Some(out)) => out.extend_from_slice(event),
                (changed, slot) => {
                    let out = slot.get_or_insert_with(|| BytesMut::from(&read[..start]));
                    if let Kept::Without(range) = changed {
                        out.extend_from_slice(&event[..range.start]);
                        out.extend_from_slice(&event[range.end..]);
                    }
                }
            }
            start = end;
        }
        out.map_or(read, BytesMut::freeze)
    }

    /// What becomes of one event.
    fn event(&mut self, event: &[u8]) -> Kept {
        let Some(at) = USAGE.find(event) else {
            return Kept::Same;
        };
        // OpenAI-compatible upstreams asked for usage put `"usage":null` on every chunk but
        // the last: seen at a glance, with no parse.
        if event[at..].starts_with(NULL_USAGE) {
            return match null_usage(event, at) {
                Some(range) if self.strip => Kept::Without(range),
                _ => Kept::Same,
            };
        }
        let Some(data) = sse::decode(event).data else {
            return Kept::Same;
        };
        if let Some((tokens, has_choices)) = tokens::in_chunk(&data) {
            self.end.tokens = Some(tokens);
            return if self.strip && !has_choices {
                Kept::Dropped
            } else {
                Kept::Same
            };
        }
        if let Some(tokens) = tokens::in_response_event(&data) {
            self.end.tokens = Some(tokens);
            return Kept::Same;
        }
        Kept::Same
    }

    /// Reports the end once: the body's end, or the drop that follows it (or replaces it).
    fn finish(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        if let Some(json) = &self.json {
            self.end.tokens = json.tokens();
        }
        done(self.end);
    }
}

/// What an event becomes on its way to the client.
enum Kept {
    Same,
    Dropped,
    /// The event without these bytes (`,"usage":null`).
    Without(std::ops::Range<usize>),
}

/// The bytes of `,"usage":null` (or `"usage":null,`) around the key found at `at`.
fn null_usage(event: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    if !event[at..].starts_with(NULL_USAGE) {
        return None;
    }
    let end = at + NULL_USAGE.len();
    if at > 0 && event[at - 1] == b',' {
        Some(at - 1..end)
    } else if event.get(end) == Some(&b',') {
        Some(at..end + 1)
    } else {
        None
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let item = match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(item) => item,
            };
            match item {
                Some(Ok(read)) => {
                    this.end.first_byte.get_or_insert_with(Instant::now);
                    if let Some(json) = &mut this.json {
                        json.push(&read);
                        return Poll::Ready(Some(Ok(read)));
                    }
                    let read = this.inspect(read);
                    // A read that held only the removed usage chunk: pull the next one.
                    if !read.is_empty() {
                        return Poll::Ready(Some(Ok(read)));
                    }
                }
                other => {
                    this.finish();
                    return Poll::Ready(other);
                }
            }
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::StreamExt;

    use super::*;

    async fn relay(reads: &[&str], strip: bool) -> (String, Option<Tokens>) {
        let reads: Vec<Result<Bytes, GatewayError>> = reads
            .iter()
            .map(|r| Ok(Bytes::copy_from_slice(r.as_bytes())))
            .collect();
        let seen = Arc::new(Mutex::new(None));
        let sink = seen.clone();
        let metered = Metered::new(
            Box::pin(futures::stream::iter(reads)),
            strip,
            Box::new(move |end| *sink.lock().unwrap() = Some(end.tokens)),
        );
        let out: Vec<_> = metered.map(|r| r.unwrap()).collect().await;
        let text = String::from_utf8(out.concat()).unwrap();
        let tokens = seen.lock().unwrap().expect("done ran");
        (text, tokens)
    }

    const CHUNK: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    #[tokio::test]
    async fn the_usage_chunk_is_read_and_kept_when_the_client_asked() {
        let (text, tokens) = relay(&[CHUNK, &format!("{USAGE}{DONE}")], false).await;
        assert_eq!(text, format!("{CHUNK}{USAGE}{DONE}"));
        assert_eq!(tokens.map(|t| t.total_tokens), Some(6));
    }

    #[tokio::test]
    async fn the_usage_the_gateway_asked_for_is_removed_wherever_the_reads_split() {
        let plain = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
        for reads in [
            vec![CHUNK.to_owned(), USAGE.to_owned(), DONE.to_owned()],
            vec![format!("{CHUNK}{USAGE}{DONE}")],
            vec![format!("{CHUNK}{USAGE}"), DONE.to_owned()],
        ] {
            let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
            let (text, tokens) = relay(&reads, true).await;
            assert_eq!(text, format!("{plain}{DONE}"));
            assert_eq!(tokens.map(|t| t.prompt_tokens), Some(4));
        }
    }

    #[tokio::test]
    async fn a_json_bodys_usage_is_found_wherever_the_reads_split() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"say \"usage\""}}],"usage": {"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        for cut in 1..body.len() {
            let seen = Arc::new(Mutex::new(None));
            let sink = seen.clone();
            let reads: Vec<Result<Bytes, GatewayError>> = body
                .chunks(cut)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let metered = Metered::json(
                Box::pin(futures::stream::iter(reads)),
                Box::new(move |end| *sink.lock().unwrap() = Some(end.tokens)),
            );
            let out: Vec<_> = metered.map(|r| r.unwrap()).collect().await;
            assert_eq!(out.concat(), body.to_vec());
            let tokens = seen.lock().unwrap().unwrap();
            assert_eq!(tokens.map(|t| t.total_tokens), Some(7), "reads of {cut}");
        }
    }

    #[tokio::test]
    async fn a_stream_without_usage_reports_none_and_passes_untouched() {
        let (text, tokens) = relay(&[CHUNK, DONE], false).await;
        assert_eq!(text, format!("{CHUNK}{DONE}"));
        assert_eq!(tokens, None);
    }
}
