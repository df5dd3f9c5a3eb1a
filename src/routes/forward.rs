//! The flow shared by the typed endpoints (chat completions, embeddings, legacy completions on
//! backends that answer them): read, parse, resolve, rewrite the model, send, respond. See the crate documentation for the whole request flow.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::body::{parse_request, read_body};
use super::caller::{self, Caller};
use super::idempotent;
use super::reply::respond;
use crate::backends::{Endpoint, ParsedRequest, UpstreamCall, UpstreamReply};
use crate::error::GatewayError;
use crate::routing::rewrite::{peek_model, replace_model};
use crate::routing::{Resolved, RouteTable, failover};
use crate::schema::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};
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

impl RoutedRequest for CompletionRequest {
    const ENDPOINT: Endpoint<'static> = Endpoint::Completions;
    fn model(&self) -> &str {
        &self.model
    }
    fn stream(&self) -> bool {
        self.is_stream()
    }
    fn parsed(&self) -> ParsedRequest<'_> {
        ParsedRequest::Completion(self)
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
    // `_held` keeps the body's share of the body budget until the upstream has answered.
    let (body, _held) = read_body(&req, payload, &table.server, &state.limits).await?;
    let request: T = parse_request(&body)?;
    let serve = send(&req, &state, &caller, &table, body.clone(), &request);
    idempotent::once(&req, &state, &caller, &body, || request.stream(), serve).await
}

/// Resolves `request`'s model and sends it (its bytes, `body`) through its route's backends,
/// once the caller's key may use that model and has a request left.
pub async fn send<T: RoutedRequest>(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    table: &RouteTable,
    body: Bytes,
    request: &T,
) -> Result<HttpResponse, GatewayError> {
    let resolved = route(caller, table, request.model())?;
    send_resolved(req, state, caller, resolved, body, request).await
}

/// Sends `request` (its bytes, `body`) on its route `resolved`, once the caller's key has a
/// request left.
pub async fn send_resolved<T: RoutedRequest>(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    resolved: Resolved<'_>,
    body: Bytes,
    request: &T,
) -> Result<HttpResponse, GatewayError> {
    let model = request.model();
    caller::admit(state, caller, model).await?;
    let shape = CallShape {
        endpoint: T::ENDPOINT,
        stream: request.stream(),
        parsed: request.parsed(),
    };
    let reply = send_routed(req, caller, resolved, model, &body, shape).await?;
    Ok(respond(reply))
}

/// The routing step of every request that names a model, typed or relayed: the caller's scope
/// first (a refusal says nothing about which routes exist, 403), then the route serving `model`
/// by longest prefix, or 404 `model_not_found`.
pub fn route<'a>(
    caller: &Caller,
    table: &'a RouteTable,
    model: &'a str,
) -> Result<Resolved<'a>, GatewayError> {
    caller::check_scope(caller, model)?;
    let resolved = table
        .resolve(model)
        .ok_or_else(|| GatewayError::ModelNotFound {
            model: model.to_owned(),
        })?;
    tracing::debug!(model, route = %resolved.route.prefix, "routed");
    Ok(resolved)
}

/// What an `UpstreamCall` holds besides the route: the endpoint and the request's typed view.
pub struct CallShape<'a> {
    /// Which endpoint.
    pub endpoint: Endpoint<'a>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The typed request (`Opaque` when relayed).
    pub parsed: ParsedRequest<'a>,
}

/// Sends the client's `body` (naming `model`) through `resolved`'s backends, failing over
/// before the first byte; each backend gets the body with its own model name spliced in.
pub async fn send_routed<'a>(
    req: &'a HttpRequest,
    caller: &'a Caller,
    resolved: Resolved<'a>,
    model: &'a str,
    body: &Bytes,
    shape: CallShape<'a>,
) -> Result<UpstreamReply, GatewayError> {
    failover::send(resolved, |backend, upstream_model| {
        Ok(UpstreamCall {
            endpoint: shape.endpoint,
            body: with_model(body, model, upstream_model)?,
            stream: shape.stream,
            client_headers: req.headers(),
            parsed: shape.parsed,
            client_model: model,
            upstream_model,
            auth: caller::upstream_auth(caller, backend),
        })
    })
    .await
}

/// The body's model, read without the typed parse (a route that relays the body never needs
/// it); when there is none, the error of `T`'s parse, which names what is wrong.
pub fn model_of<T: for<'de> serde::Deserialize<'de>>(body: &[u8]) -> Result<String, GatewayError> {
    if let Some(model) = peek_model(body)? {
        return Ok(model);
    }
    parse_request::<T>(body)?;
    Err(GatewayError::InvalidField {
        param: Some("model".to_owned()),
        message: "`model` must be a string".to_owned(),
    })
}

/// The body for an upstream that expects `upstream_model`: the client's bytes when the name is
/// the same, else with only the top-level `model` value replaced.
pub fn with_model(
    body: &bytes::Bytes,
    client_model: &str,
    upstream_model: &str,
) -> Result<bytes::Bytes, GatewayError> {
    if upstream_model == client_model {
        Ok(body.clone())
    } else {
        replace_model(body, client_model, upstream_model)
    }
}
