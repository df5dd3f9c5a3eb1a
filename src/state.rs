//! `AppState`: what every handler shares, cloned cheaply into each actix worker.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::routing::RouteTable;

/// Shared state of the running gateway.
#[derive(Clone)]
pub struct AppState {
    /// The route table in force. Handlers take an owned snapshot (`load_full`) that the whole
    /// request, stream included, keeps; a reload swaps in a new table without touching it.
    pub routes: Arc<ArcSwap<RouteTable>>,
}

impl AppState {
    /// State serving `table`.
    pub fn new(table: RouteTable) -> Self {
        AppState {
            routes: Arc::new(ArcSwap::from_pointee(table)),
        }
    }
}
