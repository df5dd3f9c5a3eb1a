//! The upstream exchange of the request in progress: the route and backend of its last
//! attempt, when that attempt was sent and when its response headers arrived.
//!
//! Recorded where each thing happens (`routing::failover` picks the backend, the transports in
//! `backends` send and receive) and read by `observe::middleware` once the answer is ready.
//! The record is task-local: a request is one task from middleware to handler, so nothing is
//! threaded through the backends' types. Outside a request (the worker, a model listing done in
//! the background, unit tests) recording does nothing.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Instant;

tokio::task_local! {
    static EXCHANGE: Rc<Exchange>;
}

/// One request's record.
#[derive(Debug, Default)]
pub struct Exchange {
    route: RefCell<Option<Arc<str>>>,
    backend: RefCell<Option<Arc<str>>>,
    sent: Cell<Option<Instant>>,
    answered: Cell<Option<Instant>>,
}

impl Exchange {
    /// The route prefix the request was sent on, if it reached one.
    pub fn route(&self) -> Option<Arc<str>> {
        self.route.borrow().clone()
    }

    /// The backend of the last attempt, if any.
    pub fn backend(&self) -> Option<Arc<str>> {
        self.backend.borrow().clone()
    }

    /// When the last attempt was sent and when its response headers arrived, if they did.
    pub fn upstream(&self) -> Option<(Instant, Instant)> {
        match (self.sent.get(), self.answered.get()) {
            (Some(sent), Some(answered)) if answered >= sent => Some((sent, answered)),
            _ => None,
        }
    }
}

/// Runs `future` (a request) with a fresh record, which the caller keeps to read afterwards.
pub fn scope<F: Future>(future: F) -> (Rc<Exchange>, impl Future<Output = F::Output>) {
    let exchange = Rc::new(Exchange::default());
    (exchange.clone(), EXCHANGE.scope(exchange, future))
}

/// A new attempt of the request, on `route` (a prefix) and `backend`: what an earlier attempt
/// measured no longer describes the answer.
pub fn attempt(route: &str, backend: &str) {
    let _ = EXCHANGE.try_with(|e| {
        let route = intern(route);
        let backend = intern(backend);
        *e.route.borrow_mut() = Some(route);
        *e.backend.borrow_mut() = Some(backend);
        e.sent.set(None);
        e.answered.set(None);
    });
}

/// The attempt's request is about to leave for the upstream.
pub fn sent() {
    let _ = EXCHANGE.try_with(|e| {
        e.sent.set(Some(Instant::now()));
        e.answered.set(None);
    });
}

/// The upstream's response headers (or the first answer of a queued job) have arrived.
pub fn answered() {
    let _ = EXCHANGE.try_with(|e| e.answered.set(Some(Instant::now())));
}

/// Most distinct names kept; route prefixes, backend names and projects come from the config
/// file and the store, so only a long life of renames could get near it.
const MAX_NAMES: usize = 4096;

static NAMES: LazyLock<RwLock<HashMap<Box<str>, Arc<str>>>> = LazyLock::new(Default::default);

/// A shared copy of `name` (a label value): after its first use, it allocates nothing.
pub(crate) fn intern(name: &str) -> Arc<str> {
    if let Some(found) = NAMES.read().ok().and_then(|n| n.get(name).cloned()) {
        return found;
    }
    let Ok(mut names) = NAMES.write() else {
        return Arc::from(name);
    };
    if names.len() >= MAX_NAMES {
        return Arc::from(name);
    }
    names
        .entry(Box::from(name))
        .or_insert_with(|| Arc::from(name))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_attempt_forgets_what_the_previous_one_measured() {
        let (exchange, run) = scope(async {
            attempt("openai/", "a");
            sent();
            answered();
            attempt("openai/", "b");
            sent();
        });
        run.await;
        assert_eq!(exchange.backend().as_deref(), Some("b"));
        assert_eq!(exchange.route().as_deref(), Some("openai/"));
        assert_eq!(exchange.upstream(), None, "b never answered");
    }

    #[tokio::test]
    async fn outside_a_request_recording_does_nothing() {
        attempt("r", "b");
        sent();
        answered();
        let (exchange, run) = scope(async {});
        run.await;
        assert!(exchange.route().is_none() && exchange.upstream().is_none());
    }

    #[test]
    fn names_are_shared_not_copied() {
        assert!(Arc::ptr_eq(&intern("shared/"), &intern("shared/")));
    }
}
