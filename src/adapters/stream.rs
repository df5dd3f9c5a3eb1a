//! The stream-normalisation layer every backend kind goes through: upstream bytes in, canonical
//! OpenAI server-sent events out.
//!
//! Three parts, kept apart so each can be tested (and benchmarked) alone:
//! - **framing**: `SseFramer` (events, LF or CRLF) or `LineFramer` (NDJSON lines) cuts the
//!   upstream's reads, however the network split them, into whole frames;
//! - **a `StreamAdapter`**, one per upstream format and per stream: pure, synchronous, holding the
//!   stream's state (completion id, tool-call indexes, usage); it turns frames into OpenAI events;
//! - **`Normalizer`**, which drives the two, caps how much an unfinished frame may hold, and owns
//!   the rules every stream obeys: the stream ends with `data: [DONE]`, or, when the upstream
//!   fails (a transport error or an error it reports), with exactly one OpenAI error event after
//!   which nothing else is sent and the upstream is let go.
//!
//! `normalize` wraps a `Normalizer` around an upstream `ByteStream`; it adds no task and no
//! buffer: each client poll pulls one upstream read through. After a failure it drops the
//! upstream at once; at `[DONE]` it ends the client's stream and reads the rest of the upstream
//! body in the background (bounded: 5 s, 64 KiB) so the connection is reused.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use super::ndjson::{self, LineFramer};
use super::sse::{self, SseFramer};
use crate::error::GatewayError;

/// A byte stream relayed to the client.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, GatewayError>> + Send>>;

/// The canonical end of an OpenAI stream.
pub const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

/// The largest unfinished frame held back; more is an upstream protocol error, not a reason to
/// grow memory without bound.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// How an upstream frames its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Server-sent events (`text/event-stream`).
    Sse,
    /// Newline-delimited JSON (`application/x-ndjson`).
    Ndjson,
}

/// What an adapter wants after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The stream's end (`data: [DONE]`) has been written: stop reading the upstream.
    End,
    /// An upstream error event, already OpenAI-shaped, has been written verbatim: stop. The
    /// message is for the log.
    Failed(String),
}

/// A pure, per-stream converter from upstream frames to OpenAI events.
///
/// An `Err` from any method ends the stream with that error's OpenAI event (written by the
/// `Normalizer`, never by the adapter), so every failure a client sees has the same shape.
pub trait StreamAdapter {
    /// The framing of the upstream body.
    const FRAMING: Framing;

    /// One whole frame: an SSE event's lines, or one NDJSON line (without its line end).
    fn on_frame(&mut self, frame: &[u8], out: &mut Emitter) -> Result<Flow, GatewayError>;

    /// Several whole frames, as one read completed them. The default hands each to `on_frame`;
    /// an adapter that can pass frames through untouched overrides it to avoid any copy.
    fn on_frames(&mut self, frames: Bytes, out: &mut Emitter) -> Result<Flow, GatewayError> {
        match Self::FRAMING {
            Framing::Sse => {
                for frame in sse::events(&frames) {
                    let flow = self.on_frame(frame, out)?;
                    if flow != Flow::Continue {
                        return Ok(flow);
                    }
                }
            }
            Framing::Ndjson => {
                for frame in ndjson::lines(&frames) {
                    let flow = self.on_frame(frame, out)?;
                    if flow != Flow::Continue {
                        return Ok(flow);
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// The upstream ended cleanly without the adapter having ended the stream: write what
    /// closes it (a final usage chunk, `data: [DONE]`), or refuse a truncated stream.
    fn finish(&mut self, out: &mut Emitter) -> Result<(), GatewayError>;

    /// Writes what ends a failed stream. The default is OpenAI's chat error event
    /// (`data: {"error":{...}}`); a format with failure events of its own (the Responses API's)
    /// writes those instead.
    fn write_failure(&mut self, err: &GatewayError, out: &mut Emitter) {
        let (_, body) = err.to_openai();
        sse::write_event(out.buf(), None, |buf| {
            buf.extend_from_slice(&body.to_bytes())
        });
    }
}

/// Collects the bytes an adapter emits for one upstream read.
///
/// Passing through a frame the adapter did not change costs no copy when it is the read's only
/// output (the OpenAI relay's common case); anything else is appended to one buffer, so a read
/// becomes a single write to the client.
#[derive(Debug, Default)]
pub struct Emitter {
    whole: Option<Bytes>,
    buf: BytesMut,
}

impl Emitter {
    /// Emits `bytes` as they are.
    pub fn pass(&mut self, bytes: Bytes) {
        if self.whole.is_none() && self.buf.is_empty() {
            self.whole = Some(bytes);
        } else {
            self.buf().extend_from_slice(&bytes);
        }
    }

    /// Emits a copy of `bytes`.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf().extend_from_slice(bytes);
    }

    /// The buffer to write events into (after anything already emitted).
    pub fn buf(&mut self) -> &mut BytesMut {
        if let Some(whole) = self.whole.take() {
            self.buf.extend_from_slice(&whole);
        }
        &mut self.buf
    }

    /// How many bytes were emitted since the last take.
    pub fn len(&self) -> usize {
        self.whole.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    /// Whether nothing was emitted since the last take.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything emitted since the last take, if anything.
    pub fn take(&mut self) -> Option<Bytes> {
        match self.whole.take() {
            Some(whole) => Some(whole),
            None if self.buf.is_empty() => None,
            None => Some(self.buf.split().freeze()),
        }
    }
}

enum Framer {
    Sse(SseFramer),
    Lines(LineFramer),
}

impl Framer {
    fn push(&mut self, read: Bytes) -> Option<Bytes> {
        match self {
            Framer::Sse(f) => f.push(read),
            Framer::Lines(f) => f.push(read),
        }
    }

    fn finish(&mut self) -> Option<Bytes> {
        match self {
            Framer::Sse(f) => f.finish(),
            Framer::Lines(f) => f.finish(),
        }
    }

    fn pending_len(&self) -> usize {
        match self {
            Framer::Sse(f) => f.pending_len(),
            Framer::Lines(f) => f.pending_len(),
        }
    }
}

/// Drives framing and an adapter over one stream, synchronously: reads in, client bytes out.
pub struct Normalizer<A> {
    adapter: A,
    framer: Framer,
    out: Emitter,
    backend: String,
    closed: bool,
    failed: bool,
    failure: Option<String>,
}

impl<A: StreamAdapter> Normalizer<A> {
    /// A normaliser for one stream from `backend` (named in errors).
    pub fn new(adapter: A, backend: &str) -> Self {
        Normalizer {
            adapter,
            framer: match A::FRAMING {
                Framing::Sse => Framer::Sse(SseFramer::new()),
                Framing::Ndjson => Framer::Lines(LineFramer::new()),
            },
            out: Emitter::default(),
            backend: backend.to_owned(),
            closed: false,
            failed: false,
            failure: None,
        }
    }

    /// Feeds one upstream read; returns the bytes for the client, if it completed anything.
    pub fn push(&mut self, read: Bytes) -> Option<Bytes> {
        if self.closed {
            return None;
        }
        if let Some(frames) = self.framer.push(read) {
            let flow = self.adapter.on_frames(frames, &mut self.out);
            self.settle(flow);
        }
        if !self.closed && self.framer.pending_len() > MAX_FRAME_BYTES {
            self.fail(GatewayError::UpstreamProtocol {
                backend: self.backend.clone(),
                message: format!("a stream frame exceeds {MAX_FRAME_BYTES} bytes"),
            });
        }
        self.out.take()
    }

    /// The upstream ended cleanly: flushes an unterminated last frame, then lets the adapter
    /// close the stream.
    pub fn end(&mut self) -> Option<Bytes> {
        if self.closed {
            return self.out.take();
        }
        if let Some(rest) = self.framer.finish() {
            let flow = self.adapter.on_frames(rest, &mut self.out);
            self.settle(flow);
        }
        if !self.closed {
            self.closed = true;
            if let Err(err) = self.adapter.finish(&mut self.out) {
                self.fail(err);
            }
        }
        self.out.take()
    }

    /// The upstream failed (transport error, timeout): one error event, then the stream closes.
    pub fn upstream_failed(&mut self, err: GatewayError) -> Option<Bytes> {
        if !self.closed {
            self.fail(err);
        }
        self.out.take()
    }

    /// Whether nothing more will be read or sent.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the stream closed on a failure (rather than on its end).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Why the stream failed, once, for the log.
    pub fn take_failure(&mut self) -> Option<String> {
        self.failure.take()
    }

    fn settle(&mut self, flow: Result<Flow, GatewayError>) {
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::End) => self.closed = true,
            Ok(Flow::Failed(message)) => {
                self.closed = true;
                self.failed = true;
                self.failure = Some(message);
            }
            Err(err) => self.fail(err),
        }
    }

    fn fail(&mut self, err: GatewayError) {
        self.closed = true;
        self.failed = true;
        self.adapter.write_failure(&err, &mut self.out);
        self.failure = Some(err.to_string());
    }
}

/// How an upstream body reaches the task that relays it, which decides what its `Pending`
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Read from the socket in the relaying task itself (the HTTP/1.1 pool of plain `http://`
    /// upstreams): pending means nothing more has arrived.
    Direct,
    /// Handed over one chunk at a time by another task (reqwest's connection task, the Redis
    /// reader): pending may only mean that task has not run yet.
    HandedOver,
}

/// Normalises an upstream body into canonical OpenAI SSE with `adapter`.
pub fn normalize<A>(upstream: ByteStream, adapter: A, backend: &str, reads: Reads) -> ByteStream
where
    A: StreamAdapter + Send + Unpin + 'static,
{
    Box::pin(Normalized {
        upstream,
        upstream_done: false,
        inner: Normalizer::new(adapter, backend),
        batch: Emitter::default(),
        grew_since_yield: false,
        reads,
    })
}

/// The most a batch of ready events holds before it is sent without waiting for more.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The client side of a normalised stream: sends what is ready at once, in one body chunk.
///
/// Every event ready before the stream would wait leaves in one chunk, hence one write to the
/// client's socket (the HTTP server flushes whenever the body is pending). When the body is
/// handed over by another task (`Reads::HandedOver`), "ready" includes what that task can hand
/// over without waiting for the network: it passes the body on one chunk at a time, so when
/// the upstream is pending after a read, the stream yields once to the scheduler and looks
/// again; only when a look finds nothing new does it send. An event that arrived alone
/// therefore leaves after one scheduler pass, never waiting for the next event. A body read
/// directly needs no such look: pending there means the socket had nothing more.
struct Normalized<A> {
    upstream: ByteStream,
    upstream_done: bool,
    inner: Normalizer<A>,
    /// What is ready for the client and not sent yet.
    batch: Emitter,
    /// Whether `batch` grew since the stream last yielded to the scheduler.
    grew_since_yield: bool,
    reads: Reads,
}

impl<A: StreamAdapter + Unpin> Normalized<A> {
    /// Logs a failure once, lets a failed upstream go, and adds `bytes` to the batch.
    fn collect(&mut self, bytes: Option<Bytes>) {
        if let Some(reason) = self.inner.take_failure() {
            tracing::error!(backend = %self.inner.backend, error = %reason, "stream failed");
        }
        if self.inner.failed() && !self.upstream_done {
            // Nothing more is wanted from a failed upstream: close its connection now.
            self.upstream = Box::pin(futures::stream::empty());
            self.upstream_done = true;
        }
        if let Some(bytes) = bytes {
            self.batch.pass(bytes);
            self.grew_since_yield = true;
        }
    }

    /// The stream is closed: sends what is left, then ends. The client's answer is complete at
    /// `[DONE]`; what the upstream still sends (only its body's terminator, from a well-behaved
    /// server) is read in the background so that its connection goes back to the pool instead
    /// of being closed.
    fn close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, GatewayError>>> {
        if !self.upstream_done {
            self.upstream_done = true;
            // Most often the terminator came with `[DONE]`: then it is read here, with no task.
            let mut read = 0;
            loop {
                match self.upstream.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(chunk))) if read + chunk.len() <= DRAIN_BYTES => {
                        read += chunk.len();
                    }
                    Poll::Pending => {
                        let rest = std::mem::replace(
                            &mut self.upstream,
                            Box::pin(futures::stream::empty()),
                        );
                        drain_in_background(rest, read);
                        break;
                    }
                    // The end, a failure, or too much: done with this upstream either way.
                    _ => break,
                }
            }
        }
        Poll::Ready(self.batch.take().map(Ok))
    }

    /// The upstream is pending: sends the batch, unless it grew since the last look, in which
    /// case the stream yields once so that whatever is about to be ready joins it.
    fn on_pending(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, GatewayError>>> {
        if self.batch.is_empty() {
            return Poll::Pending;
        }
        if !self.grew_since_yield || self.reads == Reads::Direct {
            return Poll::Ready(self.batch.take().map(Ok));
        }
        self.grew_since_yield = false;
        // Polled once, tokio's yield defers this task's wake-up until the tasks already
        // scheduled (the upstream connection's among them) have run; it is then dropped.
        let yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = yielded.poll(cx);
        Poll::Pending
    }
}

impl<A: StreamAdapter + Unpin> Stream for Normalized<A> {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.inner.is_closed() {
                return this.close(cx);
            }
            if this.batch.len() >= MAX_BATCH_BYTES {
                return Poll::Ready(this.batch.take().map(Ok));
            }
            let out = match this.upstream.poll_next_unpin(cx) {
                Poll::Pending => return this.on_pending(cx),
                Poll::Ready(Some(Ok(read))) => this.inner.push(read),
                Poll::Ready(Some(Err(err))) => {
                    this.upstream_done = true;
                    this.inner.upstream_failed(err)
                }
                Poll::Ready(None) => {
                    this.upstream_done = true;
                    this.inner.end()
                }
            };
            this.collect(out);
        }
    }
}

/// How long, and how many bytes, the rest of an upstream body is read after `[DONE]`.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);
const DRAIN_BYTES: usize = 64 * 1024;

/// Reads and discards the rest of `upstream`, bounded in time and bytes, off the client's
/// response; then drops it (which closes the connection if the body had not ended).
fn drain_in_background(mut upstream: ByteStream, mut read: usize) {
    // Outside a runtime (a synchronous caller) there is nothing to drain on: drop it.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let drain = async {
            while let Some(Ok(chunk)) = upstream.next().await {
                read += chunk.len();
                if read > DRAIN_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echoes each frame back as a data event and ends on `stop`.
    struct Upper;

    impl StreamAdapter for Upper {
        const FRAMING: Framing = Framing::Ndjson;
        fn on_frame(&mut self, frame: &[u8], out: &mut Emitter) -> Result<Flow, GatewayError> {
            match frame {
                b"stop" => {
                    out.extend(DONE_EVENT);
                    Ok(Flow::End)
                }
                b"bad" => Err(GatewayError::UpstreamProtocol {
                    backend: "b".into(),
                    message: "bad line".into(),
                }),
                line => {
                    out.extend(b"data: ");
                    out.extend(&line.to_ascii_uppercase());
                    out.extend(b"\n\n");
                    Ok(Flow::Continue)
                }
            }
        }
        fn finish(&mut self, _: &mut Emitter) -> Result<(), GatewayError> {
            Err(GatewayError::UpstreamProtocol {
                backend: "b".into(),
                message: "ended early".into(),
            })
        }
    }

    fn run(pieces: &[&[u8]]) -> String {
        let mut n = Normalizer::new(Upper, "b");
        let mut out = Vec::new();
        for p in pieces {
            out.extend(n.push(Bytes::copy_from_slice(p)).unwrap_or_default());
        }
        out.extend(n.end().unwrap_or_default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn frames_split_across_reads_are_whole_when_the_adapter_sees_them() {
        let out = run(&[b"a", b"b\ncd\r", b"\n\nst", b"op\nafter\n"]);
        assert_eq!(out, "data: AB\n\ndata: CD\n\ndata: [DONE]\n\n");
    }

    #[test]
    fn an_adapter_error_is_one_error_event_and_nothing_after_it() {
        let out = run(&[b"a\nbad\nc\n", b"d\n"]);
        assert!(out.starts_with("data: A\n\ndata: {\"error\":{"), "{out}");
        assert!(
            out.contains("bad line") && !out.contains("data: C"),
            "{out}"
        );
        assert_eq!(out.matches("data: ").count(), 2, "{out}");
    }

    #[test]
    fn finish_may_refuse_a_truncated_stream() {
        let out = run(&[b"a\n", b"b"]);
        assert!(
            out.starts_with("data: A\n\ndata: B\n\ndata: {\"error\""),
            "{out}"
        );
        assert!(out.contains("ended early"), "{out}");
    }

    #[test]
    fn a_frame_that_never_ends_is_cut_off_at_the_cap() {
        let mut n = Normalizer::new(Upper, "b");
        let big = Bytes::from(vec![b'x'; MAX_FRAME_BYTES / 2 + 1]);
        assert!(n.push(big.clone()).is_none());
        let out = n.push(big).unwrap();
        assert!(
            String::from_utf8_lossy(&out).contains("upstream_protocol_error"),
            "{out:?}"
        );
        assert!(n.is_closed() && n.end().is_none());
    }

    #[test]
    fn a_transport_failure_after_the_end_changes_nothing() {
        let mut n = Normalizer::new(Upper, "b");
        assert!(n.push(Bytes::from_static(b"stop\n")).is_some());
        let late = n.upstream_failed(GatewayError::UpstreamTimeout {
            backend: "b".into(),
            phase: "the next part of the body",
        });
        assert!(late.is_none());
    }

    #[tokio::test]
    async fn after_done_the_body_is_read_to_its_end_and_after_a_failure_it_is_dropped() {
        use futures::stream;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        async fn relay(reads: Vec<&'static [u8]>) -> (String, usize) {
            let pulled = Arc::new(AtomicUsize::new(0));
            let counter = pulled.clone();
            let upstream: ByteStream = Box::pin(
                stream::iter(reads.into_iter().map(|r| Ok(Bytes::from_static(r)))).inspect(
                    move |_| {
                        counter.fetch_add(1, Ordering::SeqCst);
                    },
                ),
            );
            let out: Vec<u8> = normalize(upstream, Upper, "b", Reads::HandedOver)
                .map(|r| r.unwrap().to_vec())
                .concat()
                .await;
            (
                String::from_utf8(out).unwrap(),
                pulled.load(Ordering::SeqCst),
            )
        }
        // The terminator (here: one more read) is consumed in the background, and what it
        // carries is not relayed.
        let (out, _) = relay(vec![b"a\nstop\n", b"junk\n"]).await;
        assert_eq!(out, "data: A\n\ndata: [DONE]\n\n");
        // After a failure nothing more is pulled.
        let (out, pulled) = relay(vec![b"a\nbad\n", b"more\n", b"stop\n"]).await;
        assert!(out.contains("bad line") && !out.contains("MORE"), "{out}");
        assert_eq!(pulled, 1);
    }

    #[tokio::test]
    async fn the_client_stream_ends_at_done_while_the_upstream_body_is_drained_apart() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        // An upstream that sends [DONE], then its terminator only much later (here: never
        // unless drained), like a server holding the connection open.
        let drained = Arc::new(AtomicBool::new(false));
        let flag = drained.clone();
        let upstream: ByteStream = Box::pin(
            futures::stream::iter([Ok(Bytes::from_static(b"a\nstop\n"))]).chain(
                futures::stream::once(async move {
                    flag.store(true, Ordering::SeqCst);
                    Ok(Bytes::from_static(b"tail\n"))
                })
                .chain(futures::stream::pending()),
            ),
        );
        // Bounded: before the fix this waited for the upstream to end.
        let out: Vec<u8> = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            normalize(upstream, Upper, "b", Reads::HandedOver)
                .map(|r| r.unwrap().to_vec())
                .concat(),
        )
        .await
        .expect("the client's stream ended at [DONE]");
        assert_eq!(out, b"data: A\n\ndata: [DONE]\n\n");
        for _ in 0..1000 {
            if drained.load(Ordering::SeqCst) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the rest of the upstream body was not read after [DONE]");
    }

    /// An upstream fed by a task through a one-slot channel: like an HTTP client's body, it
    /// hands over one read at a time, the next only after the task has run again.
    fn one_at_a_time() -> (ByteStream, tokio::sync::mpsc::Sender<Bytes>) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let upstream = futures::stream::unfold(rx, |mut rx| async move {
            let read = rx.recv().await?;
            Some((Ok(read), rx))
        });
        (Box::pin(upstream), tx)
    }

    #[tokio::test]
    async fn an_event_that_arrived_alone_is_sent_while_the_upstream_holds_back_the_rest() {
        let (upstream, tx) = one_at_a_time();
        let mut client = normalize(upstream, Upper, "b", Reads::HandedOver);
        tx.send(Bytes::from_static(b"first\n")).await.unwrap();
        // Bounded: the upstream sends nothing more until the client has the first event.
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), client.next())
            .await
            .expect("the first event did not wait for a second")
            .unwrap()
            .unwrap();
        assert_eq!(first, &b"data: FIRST\n\n"[..]);
        tx.send(Bytes::from_static(b"second\nstop\n"))
            .await
            .unwrap();
        let rest: Vec<u8> = client.map(|r| r.unwrap().to_vec()).concat().await;
        assert_eq!(rest, b"data: SECOND\n\ndata: [DONE]\n\n");
    }

    #[tokio::test]
    async fn a_body_read_directly_sends_what_it_has_on_the_poll_that_found_the_upstream_pending() {
        let (upstream, tx) = one_at_a_time();
        tx.send(Bytes::from_static(b"a\nb\n")).await.unwrap();
        let mut direct = normalize(upstream, Upper, "b", Reads::Direct);
        // No pass through the scheduler first: pending there means nothing more has arrived.
        let polled = futures::poll!(direct.next());
        assert!(
            matches!(&polled, Poll::Ready(Some(Ok(b))) if b == &b"data: A\n\ndata: B\n\n"[..]),
            "{polled:?}"
        );
        let (upstream, tx) = one_at_a_time();
        tx.send(Bytes::from_static(b"a\nb\n")).await.unwrap();
        let mut handed_over = normalize(upstream, Upper, "b", Reads::HandedOver);
        assert!(
            futures::poll!(handed_over.next()).is_pending(),
            "one look after a yield"
        );
    }

    #[tokio::test]
    async fn events_handed_over_one_at_a_time_without_waiting_leave_in_one_chunk_in_order() {
        let (upstream, tx) = one_at_a_time();
        let (hold, held) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            for read in [&b"a\n"[..], b"b\nc\n", b"d\n", b"e\n"] {
                tx.send(Bytes::from_static(read)).await.unwrap();
            }
            // The upstream then waits (for the network, say) before it ends the stream.
            let _ = held.await;
            tx.send(Bytes::from_static(b"stop\n")).await.unwrap();
        });
        let mut client = normalize(upstream, Upper, "b", Reads::HandedOver);
        let first = client.next().await.unwrap().unwrap();
        assert_eq!(
            first,
            &b"data: A\n\ndata: B\n\ndata: C\n\ndata: D\n\ndata: E\n\n"[..],
            "every read that was ready leaves in one chunk"
        );
        hold.send(()).unwrap();
        let rest: Vec<u8> = client.map(|r| r.unwrap().to_vec()).concat().await;
        assert_eq!(rest, b"data: [DONE]\n\n");
    }

    #[tokio::test]
    async fn a_batch_is_sent_once_it_reaches_its_cap() {
        let line = vec![b'x'; 1024];
        let reads = (0..(2 * MAX_BATCH_BYTES / 1024)).map(move |_| {
            let mut read = line.clone();
            read.push(b'\n');
            Ok(Bytes::from(read))
        });
        let upstream: ByteStream = Box::pin(futures::stream::iter(reads));
        let sizes: Vec<usize> = normalize(upstream, Upper, "b", Reads::HandedOver)
            .map(|r| r.unwrap().len())
            .collect()
            .await;
        assert!(sizes.len() > 1, "{sizes:?}");
        assert!(
            sizes.iter().all(|n| *n <= MAX_BATCH_BYTES + 1100),
            "{sizes:?}"
        );
    }

    #[test]
    fn the_emitter_passes_a_lone_frame_without_copying() {
        let mut e = Emitter::default();
        let frame = Bytes::from_static(b"data: x\n\n");
        e.pass(frame.clone());
        assert_eq!(e.take().unwrap().as_ptr(), frame.as_ptr());
        e.extend(b"a");
        e.pass(frame);
        e.extend(b"b");
        assert_eq!(e.take().unwrap(), &b"adata: x\n\nb"[..]);
        assert!(e.take().is_none());
    }
}
