//! Where a model name goes, for operators: `switchyard check --resolve MODEL` and
//! `GET /admin/v1/routes?model=MODEL`. Built on `RouteTable::resolve`, the lookup that serves
//! requests, so a dry run can never disagree with serving.

use serde::Serialize;
use utoipa::ToSchema;

use super::RouteTable;

/// Where one model name goes.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteAnswer {
    /// The model name asked about.
    pub model: String,
    /// The prefix of the route that serves it.
    pub prefix: String,
    /// The backend it reaches.
    pub backend: String,
    /// The backend's kind.
    pub kind: &'static str,
    /// The model name the backend receives.
    pub upstream_model: String,
}

/// The route, backend and upstream model name `model` gets; `None` when no route serves it.
pub fn explain(table: &RouteTable, model: &str) -> Option<RouteAnswer> {
    let resolved = table.resolve(model)?;
    Some(RouteAnswer {
        model: model.to_owned(),
        prefix: resolved.route.prefix.clone(),
        backend: resolved.route.backend_name.clone(),
        kind: resolved.route.backend.kind(),
        upstream_model: resolved.upstream_model.to_owned(),
    })
}
