//! An upstream's answer, whichever client carried it: the per-thread HTTP/1.1 pool of plain
//! `http://` upstreams (`h1_pool`) or reqwest (TLS, HTTP/2, a proxy from the environment).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use tokio::time::Instant;

use super::h1_pool::LocalBody;

/// The status, headers and body of an upstream's answer, and when its request was sent.
pub struct UpstreamResponse {
    head: http::response::Parts,
    body: Chunks,
    started: Instant,
}

/// A body's chunks; an error is its message (never the URL).
pub enum Chunks {
    /// Read straight from a pooled HTTP/1.1 connection.
    Local(LocalBody),
    /// Any other body (reqwest's, or one being decoded).
    Boxed(BoxStream<'static, Result<Bytes, String>>),
}

impl Stream for Chunks {
    type Item = Result<Bytes, String>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Chunks::Local(body) => body
                .poll_next_unpin(cx)
                .map(|item| item.map(|chunk| chunk.map_err(|e| e.to_string()))),
            Chunks::Boxed(body) => body.poll_next_unpin(cx),
        }
    }
}

impl UpstreamResponse {
    /// An answer from the HTTP/1.1 pool. A gzip-encoded body (sent although the gateway asked
    /// for identity) is decoded, as reqwest decodes it on the other path.
    pub fn local(head: http::response::Parts, body: LocalBody, started: Instant) -> Self {
        let gzip = head
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let mut response = UpstreamResponse {
            head,
            body: Chunks::Local(body),
            started,
        };
        if gzip {
            response.gunzip();
        }
        response
    }

    /// An answer reqwest carried.
    pub fn reqwest(response: reqwest::Response, started: Instant) -> Self {
        let (head, body) = http::Response::from(response).into_parts();
        let body = http_body_util::BodyDataStream::new(body)
            .map_err(|e| super::http::cause_chain(&e))
            .boxed();
        UpstreamResponse {
            head,
            body: Chunks::Boxed(body),
            started,
        }
    }

    /// The body decoded from gzip, in bounded reads (a small body that inflates to gigabytes
    /// is relayed, or refused by the reader's limit, a read at a time).
    fn gunzip(&mut self) {
        let body = std::mem::replace(
            &mut self.body,
            Chunks::Boxed(futures::stream::empty().boxed()),
        );
        let raw = tokio_util::io::StreamReader::new(body.map_err(std::io::Error::other));
        let decoded = async_compression::tokio::bufread::GzipDecoder::new(raw);
        self.body = Chunks::Boxed(
            tokio_util::io::ReaderStream::new(decoded)
                .map_err(|e| format!("cannot decode the gzip body: {e}"))
                .boxed(),
        );
        // They describe the encoded bytes.
        self.head.headers.remove(CONTENT_ENCODING);
        self.head.headers.remove(CONTENT_LENGTH);
    }

    /// The status.
    pub fn status(&self) -> http::StatusCode {
        self.head.status
    }

    /// The headers (hop-by-hop ones still in).
    pub fn headers(&self) -> &http::HeaderMap {
        &self.head.headers
    }

    /// The body's length, when the upstream said it.
    pub fn content_length(&self) -> Option<u64> {
        self.head
            .headers
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// When the request was sent: the body's time limits count from then.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The body, to be read once.
    pub fn into_body(self) -> Chunks {
        self.body
    }

    /// A response with `body`, for tests of what reads it.
    #[cfg(test)]
    pub fn from_stream(
        body: impl Stream<Item = Result<Bytes, String>> + Send + 'static,
        started: Instant,
    ) -> Self {
        let (head, ()) = http::Response::new(()).into_parts();
        UpstreamResponse {
            head,
            body: Chunks::Boxed(body.boxed()),
            started,
        }
    }
}
