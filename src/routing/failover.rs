//! Failover: one request tried on a route's backends in turn until one answers, but only before
//! the first byte of an answer reaches the client.
//!
//! Order: a weighted pick among the admitted weighted backends, then the other admitted
//! weighted ones, then the fallbacks in file order; each backend at most once, at most
//! `max_attempts` in all, extra attempts drawn from the route's retry budget. What fails over is
//! what `GatewayError::is_retryable` says (unreachable, timeout, 5xx, 429, a stream whose first
//! event is an error); anything else (a 400, a 404) is the answer. Once a reply is handed back,
//! it is never restarted elsewhere: a stream that fails later ends with the normaliser's error
//! event.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::health::Admission;
use super::table::{Member, Resolved, Route};
use crate::backends::{Backend, ByteStream, ReplyBody, UpstreamCall, UpstreamReply};
use crate::error::GatewayError;

/// Longest backoff before an extra attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Base of the exponential backoff (from the second failover on).
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Longest `retry-after` honoured: a backend is never set aside for longer on its own word.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Most bytes held while waiting for a stream's first event (keep-alive comments before it).
const MAX_HELD_BEFORE_FIRST_EVENT: usize = 64 * 1024;

/// Sends a resolved request to its route's backends, failing over before the first byte.
/// `call` builds the call for one backend from its name and the model name it expects.
pub async fn send<'r: 'c, 'c>(
    resolved: Resolved<'r>,
    mut call: impl FnMut(&'r str, &'r str) -> Result<UpstreamCall<'c>, GatewayError>,
) -> Result<UpstreamReply, GatewayError> {
    let route = resolved.route;
    // Only a route that can fail over spends its budget: a one-backend route (the common case)
    // takes no lock here.
    if route.max_attempts > 1 {
        route.budget.record_request(Instant::now());
    }
    let mut tried = Tried::default();
    let mut last_error = None;
    for attempt in 0..route.max_attempts {
        let now = Instant::now();
        let Some((index, admission)) = route.next(&tried, now, attempt == 0) else {
            break;
        };
        tried.insert(index);
        // A probe whose request ends without a verdict (the client left, a 400) must not keep
        // the backend half-open for ever: dropping this lets the next request probe.
        let _probe = (admission == Admission::Probe).then(|| ProbeRelease(&route.members[index]));
        if attempt > 0 {
            if !route.budget.try_retry(now) {
                tracing::warn!(route = %route.prefix, "retry budget spent: no further attempt");
                break;
            }
            backoff(attempt).await;
        }
        let member = &route.members[index];
        // With no attempt left to fail over to, a stream goes out as soon as its headers come.
        let may_fail_over = attempt + 1 < route.max_attempts.min(route.members.len());
        crate::observe::exchange::attempt(&route.prefix, &member.name);
        let call = call(&member.name, member.model(resolved.upstream_model));
        let outcome = attempt_one(member, call, may_fail_over).await;
        match outcome {
            Ok(reply) => {
                member.health.record_success(&member.name);
                if attempt > 0 {
                    tracing::warn!(backend = %member.name, attempt, "answered after failover");
                }
                return Ok(reply);
            }
            Err(err) if err.is_retryable() => {
                record_failure(member, &err);
                tracing::warn!(backend = %member.name, error = %err, "attempt failed before the first byte");
                last_error = Some(err);
            }
            Err(err) => return Err(err),
        }
    }
    // A first attempt always finds a backend (`Route::next`), so there is a last error.
    Err(last_error.unwrap_or_else(|| GatewayError::Internal {
        message: format!("route `{}` tried no backend", route.prefix),
    }))
}

/// One attempt: the backend's reply. When another attempt could follow, a stream's first event
/// is read before the reply is handed back (so the client's headers wait for it), so that a
/// stream failing before it is a failure before the first byte.
async fn attempt_one(
    member: &Member,
    call: Result<UpstreamCall<'_>, GatewayError>,
    may_fail_over: bool,
) -> Result<UpstreamReply, GatewayError> {
    let reply = member.backend.send(call?).await?;
    match reply.body {
        ReplyBody::EventStream(stream) if may_fail_over => {
            let stream = first_event(stream, &member.name).await?;
            Ok(UpstreamReply {
                body: ReplyBody::EventStream(stream),
                ..reply
            })
        }
        body => Ok(UpstreamReply { body, ..reply }),
    }
}

fn record_failure(member: &Member, err: &GatewayError) {
    match err.retry_after() {
        Some(wait) => member
            .health
            .record_retry_after(&member.name, Instant::now() + wait.min(MAX_RETRY_AFTER)),
        None if err.is_rate_limit() => member.health.release_probe(),
        None => member.health.record_failure(&member.name, Instant::now()),
    }
}

/// Reads a normalised stream up to its first `data:` event. An error event there means the
/// stream failed before anything reached the client; otherwise the bytes read are put back in
/// front of the rest.
async fn first_event(mut stream: ByteStream, backend: &str) -> Result<ByteStream, GatewayError> {
    let mut held = BytesMut::new();
    loop {
        let Some(read) = stream.next().await else {
            return Ok(prepend(held.freeze(), stream));
        };
        let read = read?;
        if let Some(message) = leading_error(&held, &read) {
            return Err(GatewayError::UpstreamFailed {
                backend: backend.to_owned(),
                message,
            });
        }
        let has_data = memchr::memmem::find(&read, b"data:").is_some();
        if has_data && held.is_empty() {
            // The usual case: the first read holds the first event; put it back as it is.
            return Ok(prepend(read, stream));
        }
        held.extend_from_slice(&read);
        if has_data || held.len() > MAX_HELD_BEFORE_FIRST_EVENT {
            return Ok(prepend(held.freeze(), stream));
        }
    }
}

/// The message of an error event when it is the first event (only comments before it).
fn leading_error(held: &[u8], read: &[u8]) -> Option<String> {
    if !held.is_empty() && memchr::memmem::find(held, b"data:").is_some() {
        return None;
    }
    let start = memchr::memmem::find(read, b"data:")?;
    let rest = &read[start + 5..];
    let end = memchr::memmem::find(rest, b"\n\n").unwrap_or(rest.len());
    #[derive(serde::Deserialize)]
    struct Event {
        error: ErrorObject,
    }
    #[derive(serde::Deserialize)]
    struct ErrorObject {
        message: String,
    }
    serde_json::from_slice::<Event>(rest[..end].trim_ascii())
        .ok()
        .map(|e| e.error.message)
}

fn prepend(head: Bytes, rest: ByteStream) -> ByteStream {
    if head.is_empty() {
        return rest;
    }
    Box::pin(futures::stream::once(async move { Ok(head) }).chain(rest))
}

/// No wait before the first failover (a refusal by one box says nothing about the next); then
/// full jitter over an exponential ceiling, so that clients failing together spread out.
async fn backoff(attempt: usize) {
    if attempt < 2 {
        return;
    }
    let exp = u32::try_from(attempt - 2).unwrap_or(u32::MAX).min(10);
    let ceiling = BACKOFF_BASE.saturating_mul(1 << exp).min(MAX_BACKOFF);
    let wait = ceiling.mul_f64(fastrand::f64());
    tokio::time::sleep(wait).await;
}

/// Releases a probe admission when dropped (after a verdict it is already released).
struct ProbeRelease<'a>(&'a Member);

impl Drop for ProbeRelease<'_> {
    fn drop(&mut self) {
        self.0.health.release_probe();
    }
}

/// The backends already tried by one request (a route has at most 64).
#[derive(Default)]
struct Tried(u64);

impl Tried {
    fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }
    fn contains(&self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

impl Route {
    /// The next backend to try and how it was admitted. When nothing is admitted on a first
    /// attempt (the whole route ejected), the weighted pick ignores health: refusing every
    /// request would be worse than trying a backend that may have come back.
    fn next(&self, tried: &Tried, now: Instant, first: bool) -> Option<(usize, Admission)> {
        let mut skipped = Tried(tried.0);
        loop {
            let candidate = self
                .chooser
                .pick(|i| !skipped.contains(i) && self.members[i].health.is_available(now))
                .or_else(|| {
                    (self.weighted..self.members.len())
                        .find(|&i| !skipped.contains(i) && self.members[i].health.is_available(now))
                });
            let Some(i) = candidate else {
                return first
                    .then(|| self.chooser.pick(|i| !tried.contains(i)))
                    .flatten()
                    .map(|i| (i, Admission::Yes));
            };
            match self.members[i].health.admit(now) {
                Admission::No => skipped.insert(i),
                admission => return Some((i, admission)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_error_as_the_first_event_is_a_failure_before_the_first_byte() {
        let err = br#"data: {"error":{"message":"boom","type":"api_error"}}"#;
        assert_eq!(leading_error(b"", err).as_deref(), Some("boom"));
        assert_eq!(
            leading_error(b": keep-alive\n\n", err).as_deref(),
            Some("boom")
        );
        assert_eq!(leading_error(b"data: {\"id\":1}\n\n", err), None);
        assert_eq!(leading_error(b"", b"data: {\"id\":\"x\"}\n\n"), None);
    }

    #[tokio::test]
    async fn an_upstream_sending_only_comments_is_relayed_once_the_hold_is_full() {
        let comments = futures::stream::iter(
            std::iter::repeat_with(|| Ok(Bytes::from(vec![b':'; 1000])))
                .take(MAX_HELD_BEFORE_FIRST_EVENT / 1000 + 10),
        );
        let mut stream = first_event(Box::pin(comments), "b").await.unwrap();
        let head = stream.next().await.unwrap().unwrap();
        assert!(head.len() > MAX_HELD_BEFORE_FIRST_EVENT);
        assert!(head.len() <= MAX_HELD_BEFORE_FIRST_EVENT + 1000);
    }
}
