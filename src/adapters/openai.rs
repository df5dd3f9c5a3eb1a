//! The identity adapter for OpenAI-compatible streams: frames pass through as bytes.
//!
//! It only peeks: at whether the stream ended with `data: [DONE]` (appended when missing, so
//! every client sees a proper end) and at upstream failures mid-stream (turned into one OpenAI
//! error event, after which the stream closes). Nothing is re-serialised.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::sse::{SseFramer, ends_with_done};
use crate::backends::ByteStream;
use crate::error::GatewayError;

/// The canonical end of an OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// Relays an upstream SSE body event by event.
pub fn relay_events(upstream: ByteStream, backend: &str) -> ByteStream {
    Box::pin(EventRelay {
        upstream,
        framer: SseFramer::new(),
        saw_done: false,
        finished: false,
        backend: backend.to_owned(),
    })
}

struct EventRelay {
    upstream: ByteStream,
    framer: SseFramer,
    saw_done: bool,
    finished: bool,
    backend: String,
}

impl Stream for EventRelay {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while !this.finished {
            match this.upstream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(events) = this.framer.push(chunk) {
                        this.saw_done = ends_with_done(&events);
                        return Poll::Ready(Some(Ok(events)));
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.finished = true;
                    tracing::error!(backend = %this.backend, error = %err, "upstream stream failed");
                    return Poll::Ready(Some(Ok(err.to_sse_event())));
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    let mut tail = BytesMut::new();
                    if let Some(partial) = this.framer.finish() {
                        tail.extend_from_slice(&partial);
                        tail.extend_from_slice(b"\n\n");
                        this.saw_done = ends_with_done(&tail);
                    }
                    if !this.saw_done {
                        tail.extend_from_slice(DONE_EVENT);
                    }
                    return Poll::Ready(Some(Ok(tail.freeze())));
                }
            }
        }
        Poll::Ready(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    async fn collect(chunks: Vec<Result<&'static [u8], GatewayError>>) -> String {
        let upstream: ByteStream = Box::pin(stream::iter(
            chunks.into_iter().map(|c| c.map(Bytes::from_static)),
        ));
        let out: Vec<_> = relay_events(upstream, "b").collect().await;
        let bytes: Vec<u8> = out.into_iter().flat_map(|r| r.unwrap().to_vec()).collect();
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn a_complete_stream_passes_through_unchanged() {
        let out = collect(vec![Ok(b"data: {\"a\":1}\n\ndata: [DO"), Ok(b"NE]\n\n")]).await;
        assert_eq!(out, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    }

    #[tokio::test]
    async fn a_stream_without_done_gets_one() {
        let out = collect(vec![Ok(b"data: {\"a\":1}\n\ndata: {\"b\":2}")]).await;
        assert_eq!(
            out,
            "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"
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
