//! Time limits on one upstream exchange: `first_byte_timeout` until the response headers (and,
//! for a stream, its first read), `idle_timeout` between two reads of a body, and
//! `request_timeout` for a whole non-streamed response, headers and body together.
//!
//! The limits are checked while the body is pulled (`TimedBody`), so they hold whether the body
//! is relayed as it arrives or held to be converted; no task or timer outlives the body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::response::{Chunks, UpstreamResponse};
use crate::config::HttpSettings;
use crate::error::GatewayError;

/// How a response body is paced, which decides the limits on its reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Events as they are generated: the first read within `first_byte_timeout` of the
    /// request, then `idle_timeout` between reads, and no limit on the whole.
    Stream,
    /// A whole answer: `idle_timeout` between reads, and all of it within `request_timeout` of
    /// the request.
    Whole,
}

/// The three limits of an HTTP backend.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    first_byte: Duration,
    idle: Duration,
    total: Duration,
}

impl Timeouts {
    /// The limits configured for a backend.
    pub fn new(settings: &HttpSettings) -> Self {
        Timeouts {
            first_byte: settings.first_byte_timeout,
            idle: settings.idle_timeout,
            total: settings.request_timeout,
        }
    }

    /// When the response headers must have arrived, for a request sent at `started`.
    pub fn headers_deadline(&self, started: Instant, stream: bool) -> Instant {
        let first_byte = started + self.first_byte;
        if stream {
            first_byte
        } else {
            first_byte.min(started + self.total)
        }
    }

    /// The body of `response` with the limits of `pace` applied to its reads.
    pub fn body(
        &self,
        backend: Arc<str>,
        response: UpstreamResponse,
        pace: Pace,
    ) -> impl Stream<Item = Result<Bytes, GatewayError>> + Send + use<> {
        // The limits count from the request, not from the headers.
        let started = response.started();
        let (first_deadline, total) = match pace {
            Pace::Stream => (started + self.first_byte, None),
            Pace::Whole => {
                let total = started + self.total;
                ((Instant::now() + self.idle).min(total), Some(total))
            }
        };
        TimedBody {
            inner: response.into_body(),
            backend,
            deadline: first_deadline,
            sleep: Box::pin(tokio::time::sleep_until(first_deadline)),
            idle: self.idle,
            total,
            phase: match pace {
                Pace::Stream => "the first event",
                Pace::Whole => "the response body",
            },
            done: false,
        }
    }
}

struct TimedBody {
    inner: Chunks,
    backend: Arc<str>,
    /// The next deadline: the first read's, then the earlier of the idle limit and the
    /// whole-body limit.
    deadline: Instant,
    /// Fires at `deadline` or earlier. A read only moves `deadline`: re-arming the timer on
    /// every read (a stream's every event) cost more than the read, so the timer is moved on
    /// when it fires early instead.
    sleep: Pin<Box<Sleep>>,
    idle: Duration,
    total: Option<Instant>,
    phase: &'static str,
    done: bool,
}

impl TimedBody {
    /// Waits for the deadline: a timeout once it has passed, else the timer set to it (reads
    /// since the timer was set moved it later).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, GatewayError>>> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= self.deadline {
                self.done = true;
                return Poll::Ready(Some(Err(self.timeout())));
            }
            let deadline = self.deadline;
            self.sleep.as_mut().reset(deadline);
        }
    }

    fn timeout(&self) -> GatewayError {
        GatewayError::UpstreamTimeout {
            backend: self.backend.to_string(),
            phase: self.phase,
        }
    }

    fn after_read(&mut self) {
        let mut next = Instant::now() + self.idle;
        if let Some(total) = self.total {
            next = next.min(total);
        }
        self.deadline = next;
        // Only a later deadline can wait for the timer: after a stream's first read, the idle
        // limit may fall before the first-byte deadline it is armed at.
        if next < self.sleep.deadline() {
            self.sleep.as_mut().reset(next);
        }
        if self.phase == "the first event" {
            self.phase = "the next part of the body";
        }
    }
}

impl Stream for TimedBody {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.after_read();
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(message))) => {
                self.done = true;
                Poll::Ready(Some(Err(GatewayError::UpstreamUnreachable {
                    backend: self.backend.to_string(),
                    message,
                })))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => self.poll_deadline(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            first_byte: Duration::from_secs(30),
            idle: Duration::from_secs(5),
            total: Duration::from_secs(60),
        }
    }

    /// A response whose body sends one byte per second, `n` times.
    fn trickled(n: usize) -> UpstreamResponse {
        let chunks = futures::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((Ok::<_, String>(Bytes::from_static(b"x")), i + 1))
        });
        UpstreamResponse::from_stream(chunks, Instant::now())
    }

    /// The bytes read before the body ended, and how it ended.
    async fn drain(t: Timeouts, response: UpstreamResponse, pace: Pace) -> (usize, String) {
        let mut body = std::pin::pin!(t.body(Arc::from("b"), response, pace));
        let mut read = 0;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => read += bytes.len(),
                Err(err) => return (read, err.to_string()),
            }
        }
        (read, "end".to_owned())
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_is_cut_off_at_the_total_however_steadily_it_trickles() {
        let t = Timeouts {
            total: Duration::from_secs(10),
            ..timeouts()
        };
        let (read, end) = drain(t, trickled(100), Pace::Whole).await;
        assert!(read < 100, "{read}");
        assert!(
            end.contains("timed out waiting for the response body"),
            "{end}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_has_no_total_but_its_first_read_and_each_gap_are_bounded() {
        let t = Timeouts {
            total: Duration::from_secs(10),
            first_byte: Duration::from_secs(3),
            idle: Duration::from_secs(2),
        };
        // One byte a second for 100 s: far past the total, within every gap.
        assert_eq!(
            drain(t, trickled(100), Pace::Stream).await,
            (100, "end".into())
        );
        let slow_start = Timeouts {
            first_byte: Duration::from_millis(500),
            ..t
        };
        let (read, end) = drain(slow_start, trickled(100), Pace::Stream).await;
        assert_eq!(read, 0);
        assert!(end.contains("the first event"), "{end}");
        let stalls = Timeouts {
            idle: Duration::from_millis(500),
            ..t
        };
        let (read, end) = drain(stalls, trickled(100), Pace::Stream).await;
        assert_eq!(read, 1);
        assert!(end.contains("the next part of the body"), "{end}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_limit_after_the_first_read_holds_though_the_first_byte_limit_is_later() {
        let t = Timeouts {
            first_byte: Duration::from_secs(100),
            idle: Duration::from_secs(2),
            ..timeouts()
        };
        // One byte after a second, then nothing (the upstream hangs).
        let chunks = futures::stream::once(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, String>(Bytes::from_static(b"x"))
        })
        .chain(futures::stream::pending());
        let hanging = UpstreamResponse::from_stream(chunks, Instant::now());
        let started = Instant::now();
        let (read, end) = drain(t, hanging, Pace::Stream).await;
        assert_eq!(read, 1);
        assert!(end.contains("the next part of the body"), "{end}");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(3),
            "1 s, then the 2 s idle limit"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn steady_reads_keep_moving_the_idle_deadline() {
        // Each gap (1 s) is within the idle limit (1.5 s) though the sum is far past it.
        let t = Timeouts {
            first_byte: Duration::from_secs(2),
            idle: Duration::from_millis(1500),
            ..timeouts()
        };
        assert_eq!(
            drain(t, trickled(20), Pace::Stream).await,
            (20, "end".into())
        );
    }

    #[test]
    fn headers_of_a_whole_answer_are_bounded_by_the_total_too() {
        let t = Timeouts {
            total: Duration::from_secs(10),
            ..timeouts()
        };
        let now = Instant::now();
        assert_eq!(
            t.headers_deadline(now, false),
            now + Duration::from_secs(10)
        );
        assert_eq!(t.headers_deadline(now, true), now + Duration::from_secs(30));
    }
}
