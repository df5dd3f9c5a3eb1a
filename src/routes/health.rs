//! `GET /health`: liveness, the routes file version in force and how reloads went.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::web::{Data, Json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::routing::health::HealthView;
use crate::state::AppState;

/// Gateway status.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the gateway answers.
    pub status: &'static str,
    /// Routes in the table in force.
    pub routes: usize,
    /// The routes file in force.
    pub config: ConfigStatus,
    /// Each backend's passive health, by name.
    pub backends: BTreeMap<String, HealthView>,
}

/// The routes file in force and its reload history.
#[derive(Serialize, ToSchema)]
pub struct ConfigStatus {
    /// Path of the file watched.
    pub path: String,
    /// SHA-256 (hex) of the text in force; compare with `sha256sum routes.toml`.
    pub sha256: String,
    /// When it was loaded (Unix seconds).
    pub loaded_at: u64,
    /// The last refused reload since the version in force, if any.
    pub last_error: Option<ReloadError>,
    /// Reloads by result.
    pub reloads: ReloadCounts,
}

/// A refused reload.
#[derive(Serialize, ToSchema)]
pub struct ReloadError {
    /// When (Unix seconds).
    pub at: u64,
    /// SHA-256 of the refused text, if it could be read.
    pub sha256: Option<String>,
    /// Every fault, `file:line:col: message`.
    pub errors: Vec<String>,
}

/// Reload counters since start.
#[derive(Serialize, ToSchema)]
pub struct ReloadCounts {
    /// New table swapped in.
    pub succeeded: u64,
    /// Refused; the last good table kept serving.
    pub failed: u64,
    /// The file had not changed.
    pub unchanged: u64,
}

/// Reports liveness and the routes file in force.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health(state: Data<AppState>) -> Json<Health> {
    let table = state.routes.load();
    let routes = table.routes().len();
    let backends = table.health(Instant::now()).into_iter().collect();
    let status = &state.reload;
    let loaded = status.loaded();
    Json(Health {
        status: "ok",
        routes,
        backends,
        config: ConfigStatus {
            path: status.path().display().to_string(),
            sha256: loaded.sha256.clone(),
            loaded_at: loaded.at,
            last_error: status.last_error().map(|f| ReloadError {
                at: f.at,
                sha256: f.sha256.clone(),
                errors: f.errors.clone(),
            }),
            reloads: ReloadCounts {
                succeeded: status.succeeded.load(Ordering::Relaxed),
                failed: status.failed.load(Ordering::Relaxed),
                unchanged: status.unchanged.load(Ordering::Relaxed),
            },
        },
    })
}
