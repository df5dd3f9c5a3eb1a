//! One integration binary (one link on two cores): the gateway served for real on loopback,
//! with fake upstreams.

// Test code states its expectations with unwrap/expect/panic: a failed one is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod admin_cli;
mod async_openai_client;
mod auth;
mod batch;
mod chat;
mod check_cli;
mod client_limits;
mod echo_limits;
mod errors;
mod failover;
mod hostile_clients;
mod hostile_upstreams;
mod hot_reload;
mod idempotency;
mod keep_alive;
mod models;
mod observe;
mod ollama;
mod openapi;
mod own_batches;
mod passthrough;
mod python_sdk;
mod rate_limits;
mod redis_pickup;
mod redis_transport;
mod responses;
mod routes_schema;
mod secrets_scan;
mod serve_cli;
mod streaming;
mod tls;
mod upstream_limits;
mod upstream_proxy;
mod upstream_tls;
mod usage;
