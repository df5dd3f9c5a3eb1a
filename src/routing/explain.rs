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
    /// The route's primary backend (the first of its `backends`).
    pub backend: String,
    /// The primary backend's kind.
    pub kind: &'static str,
    /// The model name the primary backend receives.
    pub upstream_model: String,
    /// Every backend the request may reach, weighted ones first, then the fallbacks in order,
    /// each with the model name it receives.
    pub candidates: Vec<Candidate>,
}

/// One backend a request may reach.
#[derive(Debug, Serialize, ToSchema)]
pub struct Candidate {
    /// Backend name.
    pub backend: String,
    /// Its kind.
    pub kind: &'static str,
    /// The model name it receives.
    pub upstream_model: String,
    /// Tried only when every weighted backend failed or is ejected.
    pub fallback: bool,
}

/// The route, backend and upstream model name `model` gets; `None` when no route serves it.
pub fn explain(table: &RouteTable, model: &str) -> Option<RouteAnswer> {
    let resolved = table.resolve(model)?;
    let route = resolved.route;
    let candidates: Vec<Candidate> = route
        .members
        .iter()
        .enumerate()
        .map(|(index, member)| Candidate {
            backend: member.name.clone(),
            kind: member.backend.kind(),
            upstream_model: member.model(resolved.upstream_model).to_owned(),
            fallback: route.is_fallback(index),
        })
        .collect();
    let primary = route.primary();
    Some(RouteAnswer {
        model: model.to_owned(),
        prefix: route.prefix.clone(),
        backend: primary.name.clone(),
        kind: primary.backend.kind(),
        upstream_model: primary.model(resolved.upstream_model).to_owned(),
        candidates,
    })
}
