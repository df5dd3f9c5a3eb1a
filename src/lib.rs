//! Switchyard: an OpenAI-compatible gateway that routes each request, by model-name prefix, to
//! the backend serving that model.
//!
//! # Request flow (`POST /v1/chat/completions`)
//! 1. **Middleware**: `telemetry::request_span` (request id → tracing span), then
//!    `observe::observe` (client-sent timing headers removed; on the way out the timing headers
//!    stamped and, with `[metrics]`, the request counted), then CORS (`[server.cors]`: a
//!    preflight is answered here, before any key), then `limits::admit` (at most
//!    `max_concurrent_requests` in progress, else a 503).
//!    **Gateway key** (with `[auth]`, `routes::caller::authenticate`): the bearer token's
//!    SHA-256 → the in-process cache (`auth`) → the store (`store`) on a miss; 401 before the
//!    body is read, 503 when an uncached key meets a store that is down.
//! 2. **Read the body** (`routes::body`) under `[server] max_body_bytes` (413),
//!    `request_body_timeout` (408) and the gateway-wide `max_buffered_body_bytes` (503).
//!    **Idempotency-Key** (with a store, `routes::idempotent` over `idempotency`): once the
//!    body is read (and, for the typed endpoints, parsed), a non-streamed request carrying one
//!    claims it in the store before it is routed; a repeat waits for that run or is answered
//!    from its kept answer without being routed at all.
//! 3. **Snapshot the table**: `state.routes.load_full()`; the whole request, its stream
//!    included, keeps that table even if a reload swaps in another.
//! 4. **Parse** into `schema::ChatCompletionRequest` with the path of a bad field (400 names it
//!    in `param`). The typed value validates and routes; it is not re-serialised.
//! 5. **Scope, then resolve**: with `[auth]`, a model outside the key's scope is a 403 before any
//!    route is looked up (`routes::caller::check_scope`). Then the model is resolved by longest
//!    prefix (`routing::RouteTable::resolve`), or 404 `model_not_found`; with `[auth]` the
//!    key's `max_requests` is counted in the store and the project's credential for the route's
//!    backend is chosen (`routes::caller::admit`).
//! 6. **Rewrite**: when the route strips its prefix, only the top-level `model` value of the
//!    client's bytes is replaced (`routing::rewrite`); otherwise the bytes go as they came.
//! 7. **Send** through the route's backend (`backends::AnyBackend`), which owns transport and
//!    normalises the answer to OpenAI's wire format with its adapter (`adapters`). A route with
//!    several backends picks one by weight and fails over to the others before the first byte
//!    of an answer (`routing::failover`), learning their health as it goes (`routing::health`).
//!    With `[auth]` the client's `Authorization` never goes upstream (`backends::UpstreamAuth`).
//! 8. **Respond** (`routes::reply`): upstream non-2xx pass through verbatim (status, body,
//!    rate-limit headers); streams are relayed event by event. When the client goes away, actix
//!    drops the stream, which drops the upstream body and closes that connection: cancellation
//!    by ownership, with no task to clean up.
//!
//! `POST /v1/responses` and legacy `POST /v1/completions` exist on some upstreams only, so they
//! resolve the model first (read from the body without the typed parse) and ask the backend
//! (`AnyBackend::relays`): one that has the endpoint gets the client's body as it is; for the
//! others the typed request is served by the backend itself (legacy completions on Ollama and
//! echo) or, for the Responses API, translated to a chat completion that takes steps 6 to 8
//! above, its answer translated back (`routes::via_chat`, `adapters::responses`).

pub mod adapters;
pub mod auth;
pub mod backends;
pub mod batches;
pub mod cli;
pub mod config;
pub mod error;
pub mod files;
pub mod idempotency;
pub mod limits;
pub mod observe;
pub mod routes;
pub mod routing;
pub mod schema;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod worker;
