//! `RawConfig`: serde structs mirroring routes.toml key for key, with spans for messages.
//!
//! Nothing is interpreted here: no URL parsing, no `${ENV}`, no cross-references. Unknown keys
//! are refused by `deny_unknown_fields`, so a typo is an error with a position, never ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: RawServer,
    /// `[backends.<name>]`.
    #[serde(default)]
    pub backends: BTreeMap<String, Spanned<RawBackend>>,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on.
    pub listen: Option<Spanned<String>>,
    /// Largest request body accepted.
    pub max_body_bytes: Option<Spanned<i64>>,
    /// Backend for pass-through requests that name no model.
    pub default_backend: Option<Spanned<String>>,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_timeout: Option<Spanned<String>>,
    /// HTTP worker threads (default: one per core).
    pub workers: Option<Spanned<i64>>,
    /// Bytes of request bodies held at once, across all connections.
    pub max_buffered_body_bytes: Option<Spanned<i64>>,
    /// Open client connections, across all workers.
    pub max_connections: Option<Spanned<i64>>,
    /// Requests in progress at once (a stream counts until it ends).
    pub max_concurrent_requests: Option<Spanned<i64>>,
    /// Time allowed for a request's head, on every request of a connection.
    pub request_head_timeout: Option<Spanned<String>>,
    /// Time allowed for a request's whole body.
    pub request_body_timeout: Option<Spanned<String>>,
}

/// `[backends.<name>]`: the union of every kind's keys; `validate` checks which apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// `openai`, `ollama`, `proxy`, `echo` or `redis`.
    pub kind: Spanned<String>,
    /// Upstream base URL, `/v1` included for OpenAI-compatible servers.
    pub base_url: Option<Spanned<String>>,
    /// Key sent as `Authorization: Bearer`.
    pub api_key: Option<Spanned<String>>,
    /// Extra headers sent upstream.
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Option<Spanned<String>>,
    /// Time allowed for a whole non-streamed response, headers and body.
    pub request_timeout: Option<Spanned<String>>,
    /// Time allowed until the response headers (for a stream: until its first event).
    pub first_byte_timeout: Option<Spanned<String>>,
    /// Time allowed between two reads of a response body.
    pub idle_timeout: Option<Spanned<String>>,
    /// `kind = "redis"`: the Redis holding the openai-rq queue (`redis://`, `rediss://`).
    pub redis_url: Option<Spanned<String>>,
    /// `kind = "redis"`: how long a client waits for its result (and between stream entries).
    pub timeout: Option<Spanned<String>>,
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Model-name prefix; `""` matches everything.
    pub prefix: Spanned<String>,
    /// Name of a `[backends.<name>]` table.
    pub backend: Spanned<String>,
    /// Remove the prefix before the request goes upstream (default true).
    pub strip_prefix: Option<bool>,
    /// Models advertised by `/v1/models`, without the prefix.
    pub models: Option<Vec<Spanned<String>>>,
    /// Also list the backend's own models.
    pub discover: Option<bool>,
}
