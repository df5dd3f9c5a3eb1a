//! `AppState`: what every handler shares, cloned cheaply into each actix worker.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Auth;
use crate::batches::Batches;
use crate::idempotency::Idempotency;
use crate::limits::Limits;
use crate::limits::rate::{RateLimiter, SystemClock};
use crate::observe::Metrics;
use crate::routing::RouteTable;
use crate::routing::reload::{ReloadStatus, Reloadable};
use crate::usage::Recorder;

/// Shared state of the running gateway.
#[derive(Clone)]
pub struct AppState {
    /// The route table in force. Handlers take an owned snapshot (`load_full`) that the whole
    /// request, stream included, keeps; a reload swaps in a new table without touching it.
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// Which file version is in force and how reloads went.
    pub reload: Arc<ReloadStatus>,
    /// Gateway-wide budgets (requests in progress, request-body bytes), fixed at start.
    pub limits: Limits,
    /// Gateway keys, when `[auth]` is on; `None` serves everyone, as without it.
    pub auth: Option<Arc<Auth>>,
    /// `Idempotency-Key` handling, whenever the gateway has a store; `None` ignores the header.
    pub idempotency: Option<Arc<Idempotency>>,
    /// Prometheus metrics, when `[metrics]` is on (fixed at start).
    pub metrics: Option<Arc<Metrics>>,
    /// `[metrics] listen`: `/metrics` is served there, and not on the main listener.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Usage records (`[usage]`), fixed at start.
    pub usage: Arc<Recorder>,
    /// Per-caller rate limits (the routes' `rate_limit`, budgets per `[limits]`).
    pub rate: Arc<RateLimiter>,
    /// The gateway's own Files and Batches API, whenever it has a store (fixed at start).
    pub batches: Option<Arc<Batches>>,
}

impl AppState {
    /// State serving `table`, loaded as described by `reload`.
    pub fn new(table: RouteTable, reload: ReloadStatus) -> Self {
        AppState {
            limits: Limits::new(&table.server),
            routes: Arc::new(ArcSwap::from_pointee(table)),
            reload: Arc::new(reload),
            auth: None,
            idempotency: None,
            metrics: None,
            metrics_listen: None,
            usage: Arc::new(Recorder::off()),
            rate: Arc::new(RateLimiter::local(Arc::new(SystemClock::default()))),
            batches: None,
        }
    }

    /// What a reload of the routes file swaps: this state's table and reload status (and the
    /// metrics that count reloads).
    pub fn reloadable(&self) -> Reloadable {
        Reloadable {
            routes: self.routes.clone(),
            status: self.reload.clone(),
            metrics: self.metrics.clone(),
        }
    }
}
