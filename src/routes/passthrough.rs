//! Any other `/v1/*` request (files, audio, batches, responses, future endpoints): relayed raw.
//!
//! The backend is chosen by the body's top-level `model` when it has one, else by
//! `[server] default_backend`. Only backends that speak HTTP (openai, proxy) can relay.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::body::read_body;
use super::caller;
use super::reply::respond;
use crate::backends::{Backend, Endpoint, ParsedRequest, UpstreamCall};
use crate::error::GatewayError;
use crate::routing::rewrite::{peek_model, replace_model};
use crate::state::AppState;

/// Relays the request to the backend its model (or the default backend) names.
pub async fn relay(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let caller = caller::authenticate(&req, &state).await?;
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
    // A request naming no model is admitted only for a key whose scope holds the catch-all `""`.
    caller::check_scope(&caller, model.as_deref().unwrap_or_default())?;
    let (backend, backend_name, body, client_model) = match &model {
        Some(model) => {
            let resolved = table
                .resolve(model)
                .ok_or_else(|| GatewayError::ModelNotFound {
                    model: model.clone(),
                })?;
            let body = if resolved.rewrites(model) {
                replace_model(&body, model, resolved.upstream_model)?
            } else {
                body
            };
            (
                resolved.route.backend.clone(),
                resolved.route.backend_name.as_str(),
                body,
                model.as_str(),
            )
        }
        None => {
            let name = table.server.default_backend.as_deref().unwrap_or_default();
            let backend = table
                .backend(name)
                .ok_or_else(|| GatewayError::UnknownUrl {
                    method: req.method().to_string(),
                    path: path.to_owned(),
                })?;
            (backend.clone(), name, body, "")
        }
    };
    let auth = caller::admit(&state, &caller, client_model, backend_name).await?;
    let reply = backend
        .send(UpstreamCall {
            endpoint: Endpoint::Raw {
                method: req.method(),
                path_and_query: &path_and_query,
            },
            body,
            stream: false,
            client_headers: req.headers(),
            parsed: ParsedRequest::Opaque,
            client_model,
            auth,
        })
        .await?;
    Ok(respond(reply))
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}
