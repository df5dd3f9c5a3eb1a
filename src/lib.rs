//! Switchyard: an OpenAI-compatible gateway that routes each request, by model-name prefix, to
//! the backend serving that model.
//!
//! # Request flow (`POST /v1/chat/completions`)
//! 1. **Middleware** (`telemetry::request_span`): request id → tracing span.
//! 2. **Read the body** (`routes::body`) under `[server] max_body_bytes`; over it is a 413.
//! 3. **Snapshot the table**: `state.routes.load_full()`; the whole request, its stream
//!    included, keeps that table even if a reload swaps in another.
//! 4. **Parse** into `schema::ChatCompletionRequest` with the path of a bad field (400 names it
//!    in `param`). The typed value validates and routes; it is not re-serialised.
//! 5. **Resolve** the model by longest prefix (`routing::RouteTable::resolve`), or 404
//!    `model_not_found`.
//! 6. **Rewrite**: when the route strips its prefix, only the top-level `model` value of the
//!    client's bytes is replaced (`routing::rewrite`); otherwise the bytes go as they came.
//! 7. **Send** through the route's backend (`backends::AnyBackend`), which owns transport and
//!    normalises the answer to OpenAI's wire format with its adapter (`adapters`).
//! 8. **Respond** (`routes::reply`): upstream non-2xx pass through verbatim (status, body,
//!    rate-limit headers); streams are relayed event by event. When the client goes away, actix
//!    drops the stream, which drops the upstream body and closes that connection: cancellation
//!    by ownership, with no task to clean up.

pub mod adapters;
pub mod auth;
pub mod backends;
pub mod cli;
pub mod config;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod routing;
pub mod schema;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
