//! Connection I/O that bounds the time a client takes to send each request head, on every
//! request of a keep-alive connection (actix's own `client_request_timeout` covers only the
//! first one, so a second head could be trickled forever).
//!
//! The wrapper watches only where heads begin and end: a head begins with the first byte read
//! after a response has started (or on a fresh connection) and ends at its blank line. While a
//! head is unfinished and no bytes are ready, a timer runs; when it fires the read fails with
//! `TimedOut` and actix closes the connection. Bodies are the handlers' to time
//! (`request_body_timeout`), since only they know how long a body is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Where the connection is in its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: idle time is the keep-alive timer's business.
    Between,
    /// Receiving a head: bounded by the deadline.
    Head,
    /// The head has arrived: the body and the answer are not timed here.
    AfterHead,
    /// Not HTTP/1 (an HTTP/2 connection, whose binary frames have no heads to watch).
    Off,
}

/// `io` with a deadline on each request head.
pub struct HeadDeadline<T> {
    io: T,
    limit: Duration,
    phase: Phase,
    /// The last significant byte read was a line feed (a second one ends the head).
    after_line_feed: bool,
    deadline: Pin<Box<Sleep>>,
}

impl<T> HeadDeadline<T> {
    /// Wraps a fresh connection.
    pub fn new(io: T, limit: Duration) -> Self {
        HeadDeadline {
            io,
            limit,
            phase: Phase::Between,
            after_line_feed: false,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    /// Wraps a connection that is not HTTP/1: nothing is watched or timed.
    pub fn off(io: T) -> Self {
        // The timer is never polled in this phase.
        let mut conn = Self::new(io, Duration::from_secs(86_400));
        conn.phase = Phase::Off;
        conn
    }

    /// Follows heads through the bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.phase == Phase::Off {
            return;
        }
        if self.phase == Phase::Between {
            self.phase = Phase::Head;
            self.after_line_feed = false;
            self.deadline.as_mut().reset(Instant::now() + self.limit);
        }
        if self.phase != Phase::Head {
            return;
        }
        // A head ends at an empty line: `\r\n\r\n`, or `\n\n` from lenient clients (a `\r`
        // changes nothing). Only the line feeds are looked at, found with `memchr`.
        let mut rest = bytes;
        if self.after_line_feed {
            match rest.iter().position(|&b| b != b'\r') {
                None => return,
                Some(at) if rest[at] == b'\n' => {
                    self.phase = Phase::AfterHead;
                    return;
                }
                Some(at) => rest = &rest[at..],
            }
        }
        for at in memchr::memchr_iter(b'\n', rest) {
            let after = &rest[at + 1..];
            match after.iter().position(|&b| b != b'\r') {
                None => {
                    self.after_line_feed = true;
                    return;
                }
                Some(next) if after[next] == b'\n' => {
                    self.phase = Phase::AfterHead;
                    return;
                }
                Some(_) => {}
            }
        }
        self.after_line_feed = false;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending if this.phase == Phase::Head => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request head did not arrive within request_head_timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // An answer has started, so the next bytes read begin the next head. An interim
        // `100 Continue` is not an answer: the body it invites follows.
        if self.phase != Phase::Off && !buf.starts_with(b"HTTP/1.1 1") {
            self.phase = Phase::Between;
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The byte-at-a-time rule `saw` implements: where the head ends, if it does.
    fn head_end(bytes: &[u8]) -> Option<usize> {
        let mut after_line_feed = false;
        for (at, &byte) in bytes.iter().enumerate() {
            match byte {
                b'\n' if after_line_feed => return Some(at),
                b'\n' => after_line_feed = true,
                b'\r' => {}
                _ => after_line_feed = false,
            }
        }
        None
    }

    proptest! {
        #[test]
        fn heads_end_where_the_byte_rule_says_however_the_reads_split_them(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()], 0..40),
            splits in proptest::collection::vec(0usize..40, 0..4),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let _timers = runtime.enter();
            let mut conn = HeadDeadline::new((), Duration::from_secs(1));
            let mut cuts: Vec<usize> = splits.into_iter().filter(|&c| c <= bytes.len()).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let (mut from, mut ended_in) = (0, None);
            for cut in cuts {
                conn.saw(&bytes[from..cut]);
                if ended_in.is_none() && conn.phase == Phase::AfterHead {
                    ended_in = Some((from, cut));
                }
                from = cut;
            }
            match head_end(&bytes) {
                Some(end) => {
                    let (from, cut) = ended_in.expect("the head ended");
                    prop_assert!(from <= end && end < cut, "{:?} ended in {}..{}", bytes, from, cut);
                }
                None => prop_assert!(ended_in.is_none(), "{:?}", bytes),
            }
        }
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn read_some(conn: &mut HeadDeadline<tokio::io::DuplexStream>) -> io::Result<usize> {
        let mut buf = [0u8; 256];
        conn.read(&mut buf).await
    }

    #[tokio::test(start_paused = true)]
    async fn each_head_of_a_connection_must_arrive_within_the_limit() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = HeadDeadline::new(server, Duration::from_secs(5));
        // A first request, answered: the head ended, so waiting after it is not timed.
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        read_some(&mut conn).await.unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        // A second head, trickled and never finished: the read fails once the limit passes.
        client.write_all(b"GET / HT").await.unwrap();
        read_some(&mut conn).await.unwrap();
        let err = read_some(&mut conn).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_head_and_an_interim_answer_leave_the_body_untimed() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = HeadDeadline::new(server, Duration::from_secs(5));
        client
            .write_all(b"POST / HTTP/1.1\nexpect: 100-continue\n\n")
            .await
            .unwrap();
        read_some(&mut conn).await.unwrap();
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        // Nothing more for far longer than the limit: still no error, just no data.
        let waited = tokio::time::timeout(Duration::from_secs(60), read_some(&mut conn)).await;
        assert!(waited.is_err(), "the read was still pending: {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_is_not_http1_is_never_timed() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut conn = HeadDeadline::off(server);
        // An HTTP/2 client's frames hold no blank line; nothing may time out on them.
        client.write_all(b"\x00\x00\x08\x06\x00").await.unwrap();
        read_some(&mut conn).await.unwrap();
        conn.write_all(b"\x00\x00\x00\x04\x01").await.unwrap();
        client.write_all(b"\x00\x00").await.unwrap();
        read_some(&mut conn).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(3600), read_some(&mut conn)).await;
        assert!(waited.is_err(), "no error, just no data: {waited:?}");
    }
}
