//! Timing headers, llm-proxy's contract (the openai-proxy team's `llm-proxy benchmark`):
//!
//! - an answer relayed from an upstream (errors and streams included) carries
//!   `x-upstream-request-start` (just before the upstream send) and `x-upstream-request-stop`
//!   (when the upstream's response headers arrived), in decimal Unix-epoch nanoseconds; the
//!   tool computes the gateway's own latency as `(start - its send time) + (its header arrival
//!   - stop)`;
//! - an answer the gateway makes itself carries `x-proxy-received-at` and
//!   `x-proxy-final-response-at` (RFC 3339, nanoseconds, UTC), whose difference the tool takes
//!   as the gateway's latency;
//! - both carry `server-timing: upstream;dur=…, gateway;dur=…` (milliseconds).
//!
//! One wall-clock read per request (`Received`): every other instant is read from the
//! monotonic clock and placed on the wall clock from there, so the stamps of one answer can
//! never run backwards. Values are formatted on the stack; only the header values allocate.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

/// Just before the upstream send (decimal Unix-epoch nanoseconds).
pub const UPSTREAM_START: HeaderName = HeaderName::from_static("x-upstream-request-start");
/// When the upstream's response headers arrived (decimal Unix-epoch nanoseconds).
pub const UPSTREAM_STOP: HeaderName = HeaderName::from_static("x-upstream-request-stop");
/// When the gateway received the request (RFC 3339, nanoseconds, UTC).
pub const PROXY_RECEIVED: HeaderName = HeaderName::from_static("x-proxy-received-at");
/// When the gateway's own answer was ready (RFC 3339, nanoseconds, UTC).
pub const PROXY_FINAL: HeaderName = HeaderName::from_static("x-proxy-final-response-at");
/// `upstream;dur=…, gateway;dur=…`.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Every header the gateway stamps: a client may not send them (they are removed from the
/// request, so never forwarded upstream nor echoed), and an upstream's are replaced.
pub const STAMPED: [HeaderName; 5] = [
    UPSTREAM_START,
    UPSTREAM_STOP,
    PROXY_RECEIVED,
    PROXY_FINAL,
    SERVER_TIMING,
];

/// When a request arrived, on both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    at: Instant,
    unix: Duration,
}

impl Received {
    /// Now: the request's one wall-clock read.
    pub fn now() -> Self {
        let at = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Received { at, unix }
    }

    /// The monotonic instant of arrival.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// `t` on the wall clock, as time since the Unix epoch.
    fn unix_of(&self, t: Instant) -> Duration {
        match t.checked_duration_since(self.at) {
            Some(after) => self.unix + after,
            None => self.unix.saturating_sub(self.at - t),
        }
    }
}

/// Stamps an answer ready at `ready`: the upstream pair when it was relayed from an upstream
/// whose headers arrived (`upstream`), the gateway's own pair otherwise.
pub fn stamp(
    headers: &mut HeaderMap,
    received: &Received,
    upstream: Option<(Instant, Instant)>,
    ready: Instant,
) {
    let total = ready.saturating_duration_since(received.at);
    let timing = match upstream {
        Some((start, stop)) => {
            headers.insert(UPSTREAM_START, nanos(received.unix_of(start)));
            headers.insert(UPSTREAM_STOP, nanos(received.unix_of(stop)));
            let upstream = stop - start;
            server_timing(Some(upstream), total.saturating_sub(upstream))
        }
        None => {
            headers.insert(PROXY_RECEIVED, rfc3339(received.unix));
            headers.insert(PROXY_FINAL, rfc3339(received.unix_of(ready)));
            server_timing(None, total)
        }
    };
    headers.insert(SERVER_TIMING, timing);
}

/// A small stack buffer that `write!` fills without allocating.
struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> Self {
        StackText {
            buf: [0; N],
            len: 0,
        }
    }

    /// `d` in milliseconds with three decimals (`12.345`), without the formatting machinery.
    fn millis(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut digits = itoa::Buffer::new();
        let _ = self.write_all(digits.format(us / 1000).as_bytes());
        let frac = us % 1000;
        let _ = self.write_all(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }

    fn value(&self) -> HeaderValue {
        // Only ASCII digits and punctuation are ever written.
        HeaderValue::from_bytes(&self.buf[..self.len])
            .unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

impl<const N: usize> Write for StackText<N> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let end = self.len + data.len();
        let slot = self
            .buf
            .get_mut(self.len..end)
            .ok_or(std::io::ErrorKind::WriteZero)?;
        slot.copy_from_slice(data);
        self.len = end;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decimal nanoseconds. In `u64` (until the year 2554): formatting a `u128` costs a 128-bit
/// division per digit.
fn nanos(unix: Duration) -> HeaderValue {
    let nanos = u64::try_from(unix.as_nanos()).unwrap_or(u64::MAX);
    let mut digits = itoa::Buffer::new();
    HeaderValue::from_str(digits.format(nanos)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `2026-11-30T12:00:00.123456789Z`: always nine fractional digits (Go's `RFC3339Nano` parser,
/// which llm-proxy uses, accepts any number).
fn rfc3339(unix: Duration) -> HeaderValue {
    let nanos = i128::try_from(unix.as_nanos()).unwrap_or(0);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return HeaderValue::from_static("1970-01-01T00:00:00.000000000Z");
    };
    let mut text = StackText::<40>::new();
    let _ = write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    );
    text.value()
}

/// `upstream;dur=12.345, gateway;dur=0.067`, in milliseconds with microsecond digits.
fn server_timing(upstream: Option<Duration>, gateway: Duration) -> HeaderValue {
    let mut text = StackText::<96>::new();
    if let Some(upstream) = upstream {
        let _ = text.write_all(b"upstream;dur=");
        text.millis(upstream);
        let _ = text.write_all(b", ");
    }
    let _ = text.write_all(b"gateway;dur=");
    text.millis(gateway);
    text.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &HeaderValue) -> &str {
        v.to_str().unwrap()
    }

    #[test]
    fn gateway_answers_carry_rfc3339_nanosecond_stamps_in_utc() {
        assert_eq!(
            text(&rfc3339(Duration::new(1_795_000_000, 5))),
            "2026-11-18T11:06:40.000000005Z"
        );
        assert_eq!(
            text(&rfc3339(Duration::ZERO)),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn server_timing_is_in_milliseconds() {
        assert_eq!(
            text(&server_timing(
                Some(Duration::from_micros(12_345)),
                Duration::from_micros(67)
            )),
            "upstream;dur=12.345, gateway;dur=0.067"
        );
        assert_eq!(
            text(&server_timing(None, Duration::from_secs(2))),
            "gateway;dur=2000.000"
        );
    }

    #[test]
    fn a_relayed_answer_gets_the_upstream_pair_and_its_stamps_agree_with_the_clock() {
        let received = Received::now();
        let start = received.at + Duration::from_millis(1);
        let stop = start + Duration::from_millis(250);
        let mut headers = HeaderMap::new();
        stamp(
            &mut headers,
            &received,
            Some((start, stop)),
            stop + Duration::from_millis(2),
        );
        let ns = |h: HeaderName| text(headers.get(h).unwrap()).parse::<u128>().unwrap();
        assert_eq!(ns(UPSTREAM_STOP) - ns(UPSTREAM_START), 250_000_000);
        assert_eq!(
            ns(UPSTREAM_START),
            (received.unix + Duration::from_millis(1)).as_nanos()
        );
        assert!(headers.get(&PROXY_RECEIVED).is_none());
        assert_eq!(
            text(headers.get(&SERVER_TIMING).unwrap()),
            "upstream;dur=250.000, gateway;dur=3.000"
        );
    }

    #[test]
    fn a_gateway_answer_gets_the_proxy_pair() {
        let received = Received::now();
        let mut headers = HeaderMap::new();
        stamp(&mut headers, &received, None, received.at);
        let received_at = text(headers.get(&PROXY_RECEIVED).unwrap());
        assert_eq!(received_at, text(headers.get(&PROXY_FINAL).unwrap()));
        assert!(received_at.ends_with('Z') && received_at.len() == 30);
        assert!(headers.get(&UPSTREAM_START).is_none());
    }
}
