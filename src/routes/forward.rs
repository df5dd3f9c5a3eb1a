//! The flow shared by the typed endpoints (chat completions, embeddings): read, parse, resolve,
//! rewrite the model, send, respond. See the crate documentation for the whole request flow.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::body::read_body;
use super::caller;
use super::reply::respond;
use crate::backends::{Backend, Endpoint, ParsedRequest, UpstreamCall};
use crate::error::GatewayError;
use crate::routing::rewrite::replace_model;
use crate::schema::{ChatCompletionRequest, EmbeddingRequest, parse_request};
use crate::state::AppState;

/// A typed request that names its model.
pub trait RoutedRequest: for<'de> serde::Deserialize<'de> {
    /// The endpoint it is for.
    const ENDPOINT: Endpoint<'static>;
    /// The model name as the client sent it.
    fn model(&self) -> &str;
    /// Whether the client asked for a stream.
    fn stream(&self) -> bool;
    /// The typed view handed to backends.
    fn parsed(&self) -> ParsedRequest<'_>;
}

impl RoutedRequest for ChatCompletionRequest {
    const ENDPOINT: Endpoint<'static> = Endpoint::ChatCompletions;
    fn model(&self) -> &str {
        &self.model
    }
    fn stream(&self) -> bool {
        self.is_stream()
    }
    fn parsed(&self) -> ParsedRequest<'_> {
        ParsedRequest::Chat(self)
    }
}

impl RoutedRequest for EmbeddingRequest {
    const ENDPOINT: Endpoint<'static> = Endpoint::Embeddings;
    fn model(&self) -> &str {
        &self.model
    }
    fn stream(&self) -> bool {
        false
    }
    fn parsed(&self) -> ParsedRequest<'_> {
        ParsedRequest::Embeddings(self)
    }
}

/// Serves one typed request end to end.
pub async fn forward<T: RoutedRequest>(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let caller = caller::authenticate(&req, &state).await?;
    // One snapshot for the whole request: a reload meanwhile does not change its route.
    let table = state.routes.load_full();
    let body = read_body(&req, payload, table.server.max_body_bytes).await?;
    let request: T = parse_request(&body)?;
    let model = request.model();
    caller::check_scope(&caller, model)?;
    let resolved = table
        .resolve(model)
        .ok_or_else(|| GatewayError::ModelNotFound {
            model: model.to_owned(),
        })?;
    let body = if resolved.rewrites(model) {
        replace_model(&body, model, resolved.upstream_model)?
    } else {
        body
    };
    let auth = caller::admit(&state, &caller, model, &resolved.route.backend_name).await?;
    tracing::debug!(model, backend = %resolved.route.backend_name, "routed");
    let reply = resolved
        .route
        .backend
        .send(UpstreamCall {
            endpoint: T::ENDPOINT,
            body,
            stream: request.stream(),
            client_headers: req.headers(),
            parsed: request.parsed(),
            client_model: model,
            auth,
        })
        .await?;
    Ok(respond(reply))
}
