//! Any other `/v1/*` request (files, audio, batches, responses, future endpoints): relayed raw.
//!
//! The backend is chosen by the body's top-level `model` when it has one, else by
//! `[server] default_backend`. Only backends that speak HTTP (openai, proxy) can relay.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::accounting::Visit;
use super::body::read_body;
use super::caller::{self, Caller};
use super::forward::{CallShape, route, send_routed};
use super::idempotent;
use crate::backends::{
    Backend, Endpoint, ParsedRequest, UpstreamCall, UpstreamReply, upstream_path,
};
use crate::error::GatewayError;
use crate::routing::rewrite::peek_model;
use crate::routing::{Resolved, RouteTable};
use crate::state::AppState;

/// Relays the request to the backend its model (or the default backend) names.
pub async fn relay(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let path = req.path();
    // Refused before the body is read: nothing about this request may reach an upstream.
    upstream_path::check(path.strip_prefix("/v1").unwrap_or(path)).map_err(|reason| {
        GatewayError::UnsafePath {
            path: path.to_owned(),
            reason,
        }
    })?;
    let caller = caller::authenticate(&req, &state).await?;
    let table = state.routes.load_full();
    // `_held` keeps the body's share of the body budget until the upstream has answered.
    let (body, _held) = read_body(&req, payload, &table.server, &state.limits).await?;
    let model = if is_json(&req) {
        peek_model(&body)?
    } else {
        None
    };
    match &model {
        Some(model) => {
            let resolved = route(&caller, &table, model)?;
            relay_resolved(&req, &state, &caller, resolved, body, model).await
        }
        None => {
            // A request naming no model is admitted only for a key whose scope holds the
            // catch-all `""`.
            caller::check_scope(&caller, "")?;
            relay_to_default(&req, &state, &caller, &table, body).await
        }
    }
}

/// Relays the request, its body already read and its model in the caller's scope, to the
/// route `resolved` for `model`, failing over between the route's backends before the first
/// byte; under the caller's rate limits, with its usage recorded as for typed requests.
pub(super) async fn relay_resolved(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    resolved: Resolved<'_>,
    body: Bytes,
    model: &str,
) -> Result<HttpResponse, GatewayError> {
    // Read only when a record needs it: the body is relayed, never parsed, otherwise.
    let streamed = state.usage.is_on() && idempotent::asks_for_stream(&body);
    let mut visit = Visit::start(req, state, caller, model, usage_name(req), streamed);
    let outcome = relay_accounted(req, state, caller, resolved, body, model, &mut visit).await;
    visit.finish(outcome)
}

async fn relay_accounted(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    resolved: Resolved<'_>,
    body: Bytes,
    model: &str,
    visit: &mut Visit,
) -> Result<UpstreamReply, GatewayError> {
    visit.admit(state, caller, resolved.route, model).await?;
    caller::admit(state, caller, model).await?;
    let path_and_query = path_and_query(req);
    let shape = CallShape {
        endpoint: raw_endpoint(req, &path_and_query),
        stream: false,
        parsed: ParsedRequest::Opaque,
    };
    visit.sending();
    let trying = |backend: &str, upstream_model: &str| visit.trying(backend, upstream_model);
    send_routed(req, caller, resolved, model, &body, shape, trying).await
}

/// The endpoint as usage records name it.
fn usage_name(req: &HttpRequest) -> &'static str {
    match req.path() {
        "/v1/responses" => "responses",
        "/v1/completions" => "completions",
        _ => "raw",
    }
}

/// Relays the request to `default_backend` (no route, so nothing to fail over to), under
/// the caller's key and project rate limits, with its usage recorded (no model, no route).
async fn relay_to_default(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    table: &RouteTable,
    body: Bytes,
) -> Result<HttpResponse, GatewayError> {
    let unknown = || GatewayError::UnknownUrl {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    };
    let name = table
        .server
        .default_backend
        .as_deref()
        .ok_or_else(unknown)?;
    let backend = table.backend(name).ok_or_else(unknown)?;
    let mut visit = Visit::start(req, state, caller, "", usage_name(req), false);
    let outcome = async {
        visit.admit_unrouted(state, caller).await?;
        caller::admit(state, caller, "").await?;
        crate::observe::exchange::attempt(crate::observe::metrics::NONE, name);
        let path_and_query = path_and_query(req);
        let call = UpstreamCall {
            endpoint: raw_endpoint(req, &path_and_query),
            body,
            stream: false,
            client_headers: req.headers(),
            parsed: ParsedRequest::Opaque,
            client_model: "",
            upstream_model: "",
            auth: caller::upstream_auth(caller, name),
        };
        visit.sending();
        visit.trying(name, "");
        backend.send(call).await
    }
    .await;
    visit.finish(outcome)
}

/// The request's path below `/v1`, with its query.
fn path_and_query(req: &HttpRequest) -> String {
    let path = req.path();
    let below_v1 = path.strip_prefix("/v1").unwrap_or(path);
    match req.query_string() {
        "" => below_v1.to_owned(),
        query => format!("{below_v1}?{query}"),
    }
}

/// The request's method and path, relayed as they are.
fn raw_endpoint<'a>(req: &'a HttpRequest, path_and_query: &'a str) -> Endpoint<'a> {
    Endpoint::Raw {
        method: req.method(),
        path_and_query,
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
