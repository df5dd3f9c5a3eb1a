//! `GET /health`: liveness and the loaded route table, for operators and load balancers.

use actix_web::web::{Data, Json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Gateway status.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the gateway answers.
    pub status: &'static str,
    /// Routes in the table in force.
    pub routes: usize,
    /// When the table in force was loaded (Unix seconds).
    pub loaded_at: u64,
}

/// Reports liveness and the route table in force.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health(state: Data<AppState>) -> Json<Health> {
    let table = state.routes.load();
    Json(Health {
        status: "ok",
        routes: table.routes().len(),
        loaded_at: table.loaded_at,
    })
}
