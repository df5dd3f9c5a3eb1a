//! The middleware stamping timing headers on every answer and recording its metrics.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, Data};

use super::exchange::{self, Exchange, intern};
use super::metrics::{Metrics, NONE, RequestSample};
use super::timing::{self, Received};
use crate::error::GatewayError;

/// Marks a response as an upstream's answer relayed (`routes::reply`), as opposed to one the
/// gateway made itself; it decides which pair of timing headers the answer carries.
#[derive(Debug, Clone, Copy)]
pub struct Relayed;

/// What the middleware needs of the gateway (app data of its own, so that `observe` uses
/// nothing above it): the metrics, when `[metrics]` is on.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    /// Prometheus metrics; `None` stamps timing headers only.
    pub metrics: Option<Arc<Metrics>>,
}

/// Middleware: removes client-sent timing headers, then stamps the answer's own (upstream pair
/// when an upstream's answer is relayed, the gateway's pair otherwise) and, with `[metrics]`,
/// records the request until its body ends.
pub async fn observe<B: MessageBody + Unpin>(
    observer: Data<Observer>,
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<ObservedBody<B>>, actix_web::Error> {
    let received = Received::now();
    // Never forwarded upstream nor echoed: only the gateway says when things happened.
    for name in &timing::STAMPED {
        req.headers_mut().remove(name);
    }
    let mut ending = observer.metrics.as_ref().map(|metrics| {
        metrics.request_started();
        Ending {
            metrics: metrics.clone(),
            route: intern(NONE),
            received: received.at(),
            stream: false,
            first_seen: false,
        }
    });
    let (exchange, run) = exchange::scope(next.call(req));
    let mut res = run.await?;
    let ready = Instant::now();
    let upstream = if is_relayed(&res) {
        exchange.upstream()
    } else {
        None
    };
    timing::stamp(res.headers_mut(), &received, upstream, ready);
    if let Some(ending) = &mut ending {
        ending.answered(&exchange, &res, upstream, ready - received.at());
    }
    Ok(res.map_body(|_, body| ObservedBody { body, ending }))
}

/// Whether the answer is an upstream's: a reply relayed by `routes::reply`, or an upstream's
/// error status passed through.
fn is_relayed<B>(res: &ServiceResponse<B>) -> bool {
    res.response().extensions().contains::<Relayed>()
        || res
            .response()
            .error()
            .and_then(|e| e.as_error::<GatewayError>())
            .is_some_and(|e| matches!(e, GatewayError::UpstreamStatus { .. }))
}

fn is_event_stream<B>(res: &ServiceResponse<B>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// What is recorded when an answer's body ends (or is dropped: the client left).
struct Ending {
    metrics: Arc<Metrics>,
    route: Arc<str>,
    received: Instant,
    stream: bool,
    first_seen: bool,
}

impl Ending {
    /// Records the answer's head: its route, backend and status, and the times up to it.
    fn answered<B>(
        &mut self,
        exchange: &Exchange,
        res: &ServiceResponse<B>,
        upstream: Option<(Instant, Instant)>,
        to_head: Duration,
    ) {
        let route = exchange.route().unwrap_or_else(|| intern(NONE));
        self.metrics.request_answered(&RequestSample {
            route: route.clone(),
            backend: exchange.backend().unwrap_or_else(|| intern(NONE)),
            status: res.status().as_u16(),
            upstream: upstream.map(|(start, stop)| stop - start),
            to_head,
        });
        self.route = route;
        self.stream = is_event_stream(res);
        if self.stream {
            self.metrics.stream_opened();
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.metrics
            .request_ended(&self.route, self.received.elapsed(), self.stream);
    }
}

/// A response body that records its first bytes and its end.
pub struct ObservedBody<B> {
    body: B,
    ending: Option<Ending>,
}

impl<B: MessageBody + Unpin> MessageBody for ObservedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_next(cx);
        if let (Some(ending), Poll::Ready(Some(Ok(bytes)))) = (&mut this.ending, &polled)
            && ending.stream
            && !ending.first_seen
            && !bytes.is_empty()
        {
            ending.first_seen = true;
            ending
                .metrics
                .first_token(&ending.route, ending.received.elapsed());
        }
        polled
    }
}
