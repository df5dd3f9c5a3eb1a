//! Gateway-wide admission limits, shared by every connection and worker: how many requests are
//! in progress at once (`[server] max_concurrent_requests`) and how many bytes of request bodies
//! are held at once (`[server] max_buffered_body_bytes`).
//!
//! Past a limit a request is refused at once with a 503 and `retry-after` rather than queued:
//! a queue would hold the very memory and connections the limits protect. The limits are read
//! when the server starts; a reload does not change them (like `listen` and `workers`).
//!
//! Per-caller rate limits (requests and tokens per minute, 429s) are a different concept, in
//! `rate`.

pub mod rate;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, Data};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::config::ServerConfig;
use crate::error::GatewayError;

/// The gateway's shared budgets.
#[derive(Debug, Clone)]
pub struct Limits {
    requests: Arc<Semaphore>,
    body_bytes: Arc<Semaphore>,
}

/// A share of a budget, given back when dropped.
#[derive(Debug)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Limits {
    /// The budgets `[server]` configures.
    pub fn new(server: &ServerConfig) -> Self {
        let budget = |n: usize| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)));
        Limits {
            requests: budget(server.max_concurrent_requests),
            body_bytes: budget(server.max_buffered_body_bytes),
        }
    }

    /// A place for one more request in progress, or `Overloaded`.
    pub fn admit_request(&self) -> Result<Held, GatewayError> {
        take(&self.requests, 1, "max_concurrent_requests")
    }

    /// Grows `held` by `bytes` of request body, or `Overloaded` when the budget is spent.
    pub fn hold_body_bytes(&self, held: &mut Held, bytes: usize) -> Result<(), GatewayError> {
        if bytes == 0 {
            return Ok(());
        }
        let more = take(&self.body_bytes, bytes, "max_buffered_body_bytes")?;
        match (&mut held.0, more.0) {
            (Some(permit), Some(more)) => permit.merge(more),
            (slot, more) => *slot = more,
        }
        Ok(())
    }
}

impl Held {
    /// Nothing held yet.
    pub fn none() -> Self {
        Held(None)
    }
}

/// Middleware: admits a request under `max_concurrent_requests`, or answers 503 at once. The
/// place is held until the response body ends, so a stream counts for as long as it runs.
pub async fn admit(
    limits: Data<Limits>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let held = match limits.admit_request() {
        Ok(held) => held,
        Err(err) => return Ok(req.error_response(err)),
    };
    let response = next.call(req).await?;
    Ok(response.map_body(|_, body| {
        BoxBody::new(HeldBody {
            body: BoxBody::new(body),
            _held: held,
        })
    }))
}

/// A response body that keeps its request's place until it is dropped.
struct HeldBody {
    body: BoxBody,
    _held: Held,
}

impl MessageBody for HeldBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

fn take(budget: &Arc<Semaphore>, n: usize, limit: &'static str) -> Result<Held, GatewayError> {
    // More than the whole budget can never be granted: refused like a spent budget.
    let n = u32::try_from(n).map_err(|_| GatewayError::Overloaded { limit })?;
    match budget.clone().try_acquire_many_owned(n) {
        Ok(permit) => Ok(Held(Some(permit))),
        Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
            Err(GatewayError::Overloaded { limit })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(requests: usize, bytes: usize) -> Limits {
        Limits {
            requests: Arc::new(Semaphore::new(requests)),
            body_bytes: Arc::new(Semaphore::new(bytes)),
        }
    }

    #[test]
    fn body_bytes_are_given_back_when_the_body_is_dropped() {
        let limits = limits(1, 10);
        let mut first = Held::none();
        limits.hold_body_bytes(&mut first, 6).unwrap();
        limits.hold_body_bytes(&mut first, 4).unwrap();
        let mut second = Held::none();
        assert!(matches!(
            limits.hold_body_bytes(&mut second, 1),
            Err(GatewayError::Overloaded {
                limit: "max_buffered_body_bytes"
            })
        ));
        drop(first);
        limits.hold_body_bytes(&mut second, 10).unwrap();
    }

    #[test]
    fn requests_past_the_limit_are_refused_until_one_ends() {
        let limits = limits(1, 10);
        let one = limits.admit_request().unwrap();
        assert!(limits.admit_request().is_err());
        drop(one);
        assert!(limits.admit_request().is_ok());
    }
}
