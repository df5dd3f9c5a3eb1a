//! The flow shared by the typed endpoints (chat completions, embeddings, legacy completions on
//! backends that answer them): read, parse, resolve, rewrite the model, send, respond. See the crate documentation for the whole request flow.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;

use super::accounting::Visit;
use super::body::{parse_request, read_body};
use super::caller::{self, Caller};
use super::idempotent;
use crate::backends::{Endpoint, ParsedRequest, UpstreamCall, UpstreamReply};
use crate::error::GatewayError;
use crate::routing::rewrite::{peek_model, replace_model};
use crate::routing::{Resolved, RouteTable, failover};
use crate::schema::chat::StreamOptions;
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
    /// Its `stream_options`, when the endpoint has them (so the gateway can ask for usage).
    fn stream_options(&mut self) -> Option<&mut Option<StreamOptions>> {
        None
    }
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
    fn stream_options(&mut self) -> Option<&mut Option<StreamOptions>> {
        Some(&mut self.stream_options)
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
    fn stream_options(&mut self) -> Option<&mut Option<StreamOptions>> {
        Some(&mut self.stream_options)
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
    let mut request: T = parse_request(&body)?;
    let stream = request.stream();
    let request = &mut request;
    let serve = || {
        let request = request;
        send(&req, &state, &caller, &table, body.clone(), request)
    };
    idempotent::once(&req, &state, &caller, &body, || stream, serve).await
}

/// Resolves `request`'s model and sends it (its bytes, `body`) through its route's backends,
/// once the caller's key may use that model, is within its rate limits and has a request
/// left; its usage is recorded when the answer ends (`accounting`).
pub async fn send<T: RoutedRequest>(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    table: &RouteTable,
    body: Bytes,
    request: &mut T,
) -> Result<HttpResponse, GatewayError> {
    // Owned: the typed request may be changed on the way (to ask for usage) while its route,
    // resolved from the name, is in use.
    let model = request.model().to_owned();
    let resolved = route(caller, table, &model)?;
    send_resolved(req, state, caller, resolved, body, request).await
}

/// Sends `request` (its bytes, `body`) on its route `resolved`, once the caller is within its
/// rate limits and its key has a request left; its usage is recorded when the answer ends
/// (`accounting`).
pub async fn send_resolved<T: RoutedRequest>(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    resolved: Resolved<'_>,
    body: Bytes,
    request: &mut T,
) -> Result<HttpResponse, GatewayError> {
    let endpoint = usage_name(T::ENDPOINT);
    let mut visit = Visit::start(
        req,
        state,
        caller,
        request.model(),
        endpoint,
        request.stream(),
    );
    let outcome = relay(req, state, caller, resolved, body, request, &mut visit).await;
    visit.finish(outcome)
}

/// The accounted part of `send_resolved`: rate limits, the key's cap, usage asked for, then
/// the route's backends.
async fn relay<T: RoutedRequest>(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    resolved: Resolved<'_>,
    body: Bytes,
    request: &mut T,
    visit: &mut Visit,
) -> Result<UpstreamReply, GatewayError> {
    let model = request.model().to_owned();
    visit.admit(state, caller, resolved.route, &model).await?;
    caller::admit(state, caller, &model).await?;
    let body = visit.prepare(body, request.stream_options())?;
    visit.sending();
    let shape = CallShape {
        endpoint: T::ENDPOINT,
        stream: request.stream(),
        parsed: request.parsed(),
    };
    let trying = |backend: &str, upstream_model: &str| visit.trying(backend, upstream_model);
    send_routed(req, caller, resolved, &model, &body, shape, trying).await
}

/// The endpoint as usage records name it.
fn usage_name(endpoint: Endpoint<'_>) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "chat.completions",
        Endpoint::Embeddings => "embeddings",
        Endpoint::Completions => "completions",
        Endpoint::Raw { .. } => "raw",
    }
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
/// before the first byte; each backend gets the body with its own model name spliced in, and
/// `trying` is told which backend and model name each attempt takes.
pub async fn send_routed<'a>(
    req: &'a HttpRequest,
    caller: &'a Caller,
    resolved: Resolved<'a>,
    model: &'a str,
    body: &Bytes,
    shape: CallShape<'a>,
    mut trying: impl FnMut(&str, &str),
) -> Result<UpstreamReply, GatewayError> {
    failover::send(resolved, |backend, upstream_model| {
        trying(backend, upstream_model);
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
