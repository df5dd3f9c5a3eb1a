//! The flow of the endpoints that some backends have and others do not (`/v1/responses`,
//! `/v1/completions`): authenticate, read, take the model, check the key's scope, route; then
//! relay the body as it is where the route's backend has the API of its own, or hand the typed
//! request to the gateway's own way of serving it.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::body::parse_request;
use super::body::read_body;
use super::caller::{self, Caller};
use super::forward::{model_of, route};
use super::idempotent;
use super::passthrough::relay_resolved;
use crate::backends::OptionalApi;
use crate::error::GatewayError;
use crate::routing::{Resolved, RouteTable};
use crate::state::AppState;

/// An endpoint that the route's backend may or may not have.
pub(super) trait OptionalEndpoint: DeserializeOwned {
    /// Which API it is, as backends declare it.
    const API: OptionalApi;

    /// Serves the parsed request on a route whose backend lacks the API. The model is within
    /// the caller's scope; the request is not yet counted against the key's cap.
    async fn serve(routed: Routed<'_>, request: Self) -> Result<HttpResponse, GatewayError>;
}

/// A request that has been read and routed.
pub(super) struct Routed<'a> {
    /// The client's request.
    pub req: &'a HttpRequest,
    /// The gateway.
    pub state: &'a AppState,
    /// Whose key it carries.
    pub caller: &'a Caller,
    /// Its route.
    pub resolved: Resolved<'a>,
    /// Its body, as the client sent it.
    pub body: Bytes,
}

/// Serves one request to an optional endpoint `T` end to end.
pub(super) async fn relay_or_serve<T: OptionalEndpoint>(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let caller = caller::authenticate(&req, &state).await?;
    let table = state.routes.load_full();
    // `_held` keeps the body's share of the body budget until the upstream has answered.
    let (body, _held) = read_body(&req, payload, &table.server, &state.limits).await?;
    let stream = || idempotent::asks_for_stream(&body);
    let serve = || route_and_serve::<T>(&req, &state, &caller, &table, body.clone());
    idempotent::once(&req, &state, &caller, &body, stream, serve).await
}

/// Routes the read request and serves it: relayed, or by `T`'s own way.
pub(super) async fn route_and_serve<T: OptionalEndpoint>(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    table: &RouteTable,
    body: Bytes,
) -> Result<HttpResponse, GatewayError> {
    let model = model_of::<T>(&body)?;
    let resolved = route(caller, table, &model)?;
    if resolved.route.primary().backend.relays(T::API) {
        return relay_resolved(req, state, caller, resolved, body, &model).await;
    }
    let request: T = parse_request(&body)?;
    let routed = Routed {
        req,
        state,
        caller,
        resolved,
        body,
    };
    T::serve(routed, request).await
}
