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
use crate::backends::{Backend, Endpoint, ParsedRequest, UpstreamCall};
use crate::error::GatewayError;
use crate::routing::failover;
use crate::routing::rewrite::peek_model;
use crate::state::AppState;

/// Relays the request to the backend its model (or the default backend) names.
pub async fn relay(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let table = state.routes.load_full();
    let body = read_body(&req, payload, table.server.max_body_bytes).await?;
    let path = req.path();
    let below_v1 = path.strip_prefix("/v1").unwrap_or(path);
    let path_and_query = match req.query_string() {
        "" => below_v1.to_owned(),
        query => format!("{below_v1}?{query}"),
    };
    let model = if is_json(&req) {
        peek_model(&body)
    } else {
        None
    };
    let endpoint = Endpoint::Raw {
        method: req.method(),
        path_and_query: &path_and_query,
    };
    let call = |body: Bytes, client_model| UpstreamCall {
        endpoint,
        body,
        stream: false,
        client_headers: req.headers(),
        parsed: ParsedRequest::Opaque,
        client_model,
    };
    let reply = match &model {
        Some(model) => {
            let resolved = table
                .resolve(model)
                .ok_or_else(|| GatewayError::ModelNotFound {
                    model: model.clone(),
                })?;
            failover::send(resolved, |upstream_model| {
                Ok(call(with_model(&body, model, upstream_model)?, model))
            })
            .await?
        }
        None => {
            let backend = table
                .server
                .default_backend
                .as_deref()
                .and_then(|name| table.backend(name))
                .ok_or_else(|| GatewayError::UnknownUrl {
                    method: req.method().to_string(),
                    path: path.to_owned(),
                })?;
            backend.send(call(body, "")).await?
        }
    };
    Ok(respond(reply))
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
