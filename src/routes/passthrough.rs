//! Any other `/v1/*` request (files, audio, batches, responses, future endpoints): relayed raw.
//!
//! The backend is chosen by the body's top-level `model` when it has one, else by
//! `[server] default_backend`. Only backends that speak HTTP (openai, proxy) can relay.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::body::read_body;
use super::forward::with_model;
use super::reply::respond;
use crate::backends::{AnyBackend, Backend, Endpoint, ParsedRequest, UpstreamCall, upstream_path};
use crate::error::GatewayError;
use crate::routing::rewrite::peek_model;
use crate::routing::{Resolved, failover};
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
            let resolved = table
                .resolve(model)
                .ok_or_else(|| GatewayError::ModelNotFound {
                    model: model.clone(),
                })?;
            relay_resolved(&req, resolved, body, model).await
        }
        None => {
            let backend = table
                .server
                .default_backend
                .as_deref()
                .and_then(|name| table.backend(name))
                .ok_or_else(|| GatewayError::UnknownUrl {
                    method: req.method().to_string(),
                    path: req.path().to_owned(),
                })?;
            relay_to(&req, backend, body).await
        }
    }
}

/// Relays the request, its body already read, to the route `resolved` for `model`, failing
/// over between the route's backends before the first byte.
pub(super) async fn relay_resolved(
    req: &HttpRequest,
    resolved: Resolved<'_>,
    body: Bytes,
    model: &str,
) -> Result<HttpResponse, GatewayError> {
    let path_and_query = path_and_query(req);
    let reply = failover::send(resolved, |upstream_model| {
        let body = with_model(&body, model, upstream_model)?;
        Ok(raw_call(req, &path_and_query, body, model))
    })
    .await?;
    Ok(respond(reply))
}

/// Relays the request to `default_backend` (no route, so nothing to fail over to).
async fn relay_to(
    req: &HttpRequest,
    backend: &AnyBackend,
    body: Bytes,
) -> Result<HttpResponse, GatewayError> {
    let path_and_query = path_and_query(req);
    let reply = backend
        .send(raw_call(req, &path_and_query, body, ""))
        .await?;
    Ok(respond(reply))
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

fn raw_call<'a>(
    req: &'a HttpRequest,
    path_and_query: &'a str,
    body: Bytes,
    client_model: &'a str,
) -> UpstreamCall<'a> {
    UpstreamCall {
        endpoint: Endpoint::Raw {
            method: req.method(),
            path_and_query,
        },
        body,
        stream: false,
        client_headers: req.headers(),
        parsed: ParsedRequest::Opaque,
        client_model,
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
