//! `GET /admin/v1/routes`: the route table in force, and which route a model would reach.
//!
//! Read-only and secret-free: backends are shown by name, kind and address (a password in a
//! URL is redacted), never by key or header value. `?model=X` answers through
//! `routing::explain`, on the very lookup that serves requests, so it cannot disagree with them.

use actix_web::HttpRequest;
use actix_web::web::{Data, Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::config::BackendSettings;
use crate::error::GatewayError;
use crate::routing::RouteTable;
use crate::routing::explain::{RouteAnswer, explain};
use crate::state::AppState;
use crate::telemetry::redacted_url;

/// `?model=`.
#[derive(Deserialize, IntoParams)]
pub struct RouteQuery {
    /// A model name as a client would send it: answer which route, backend and upstream model
    /// name it gets, instead of the whole table.
    pub model: Option<String>,
}

/// The route table in force.
#[derive(Serialize, ToSchema)]
pub struct RouteTableView {
    /// SHA-256 (hex) of the routes file in force, as in `/health`.
    pub sha256: String,
    /// Routes, longest prefix first (the order in which they are tried).
    pub routes: Vec<RouteView>,
    /// Backends by name.
    pub backends: Vec<BackendView>,
}

/// One route.
#[derive(Serialize, ToSchema)]
pub struct RouteView {
    /// Model-name prefix; `""` is the catch-all.
    pub prefix: String,
    /// The backend serving it (the primary one when it has several).
    pub backend: String,
    /// That backend's kind.
    pub kind: &'static str,
    /// Every backend of the route, weighted ones first, then the fallbacks in order.
    pub backends: Vec<String>,
    /// Whether the prefix is removed before the request goes upstream.
    pub strip_prefix: bool,
    /// Models advertised by `/v1/models`, without the prefix.
    pub models: Vec<String>,
    /// Whether the backend's own models are listed too.
    pub discover: bool,
}

/// One backend, without its credentials.
#[derive(Serialize, ToSchema)]
pub struct BackendView {
    /// The `[backends.<name>]` table's name.
    pub name: String,
    /// `openai`, `ollama`, `proxy`, `echo` or `redis`.
    pub kind: &'static str,
    /// Where it sends requests (`base_url`, or the Redis URL), any password redacted.
    pub target: Option<String>,
}

/// Either the whole table or one answer.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum RoutesResponse {
    /// Without `?model=`.
    Table(RouteTableView),
    /// With `?model=`.
    Answer(RouteAnswer),
}

/// Shows the route table in force, or with `?model=` which route, backend and upstream model
/// name that model gets (404 `model_not_found` when no route serves it, as a request would).
/// With `[auth]` it takes the admin token, like the rest of `/admin/v1`.
#[utoipa::path(
    get,
    path = "/admin/v1/routes",
    tag = "operations",
    security((), ("admin_token" = [])),
    params(RouteQuery),
    responses(
        (status = 200, body = RoutesResponse),
        (status = 401, description = "With `[auth]`: a missing or wrong admin token", body = crate::schema::ErrorBody),
        (status = 404, description = "No route serves the model", body = crate::schema::ErrorBody),
    )
)]
pub async fn show_routes(
    req: HttpRequest,
    state: Data<AppState>,
    query: Query<RouteQuery>,
) -> Result<Json<RoutesResponse>, GatewayError> {
    // With `[auth]` the table is for operators: the admin token, as for the rest of /admin/v1.
    if let Some(auth) = &state.auth {
        auth.check_admin(req.headers())?;
    }
    let table = state.routes.load();
    match &query.model {
        Some(model) => Ok(Json(RoutesResponse::Answer(answer(&table, model)?))),
        None => Ok(Json(RoutesResponse::Table(view(
            &table,
            state.reload.loaded().sha256.clone(),
        )))),
    }
}

/// Where `model` goes, or the 404 a request for it gets.
fn answer(table: &RouteTable, model: &str) -> Result<RouteAnswer, GatewayError> {
    explain(table, model).ok_or_else(|| GatewayError::ModelNotFound {
        model: model.to_owned(),
    })
}

fn view(table: &RouteTable, sha256: String) -> RouteTableView {
    let mut routes: Vec<RouteView> = table
        .routes()
        .iter()
        .map(|r| RouteView {
            prefix: r.prefix.clone(),
            backend: r.backend_name.clone(),
            kind: r.primary().backend.kind(),
            backends: r.members.iter().map(|m| m.name.clone()).collect(),
            strip_prefix: r.strip_prefix,
            models: r.models.clone(),
            discover: r.discover,
        })
        .collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    let mut backends: Vec<BackendView> = table
        .backend_settings()
        .map(|(name, settings)| BackendView {
            name: name.to_owned(),
            kind: settings.kind(),
            target: target(settings),
        })
        .collect();
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    RouteTableView {
        sha256,
        routes,
        backends,
    }
}

fn target(settings: &BackendSettings) -> Option<String> {
    match settings {
        BackendSettings::OpenAI(http)
        | BackendSettings::Proxy(http)
        | BackendSettings::Ollama(http) => Some(redacted_url(&http.base_url)),
        BackendSettings::Batch(batch) => Some(redacted_url(&batch.http.base_url)),
        BackendSettings::Redis(redis) => {
            use secrecy::ExposeSecret;
            url::Url::parse(redis.url.expose_secret())
                .ok()
                .map(|url| redacted_url(&url))
        }
        BackendSettings::Echo => None,
    }
}
