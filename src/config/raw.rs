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
    /// Time allowed for the response headers, and between two reads of the body.
    pub request_timeout: Option<Spanned<String>>,
    /// `kind = "redis"`: the Redis holding the openai-rq queue (`redis://`, `rediss://`).
    pub redis_url: Option<Spanned<String>>,
    /// `kind = "redis"`: how long a client waits for its result (and between stream entries).
    pub timeout: Option<Spanned<String>>,
    /// `kind = "redis"`: how long a job may wait for a worker to take it before it is withdrawn
    /// from the queue and the request fails over.
    pub pickup_timeout: Option<Spanned<String>>,
    /// HTTP kinds: how long an idle pooled connection is kept (below the upstream's keep-alive).
    pub pool_idle_timeout: Option<Spanned<String>>,
    /// Consecutive failures that take the backend out of rotation (passive health).
    pub eject_after: Option<Spanned<i64>>,
    /// The first ejection's length; it doubles while the backend keeps failing its probe.
    pub eject_cooldown: Option<Spanned<String>>,
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Model-name prefix; `""` matches everything.
    pub prefix: Spanned<String>,
    /// Name of a `[backends.<name>]` table: the one-backend form of `backends`.
    pub backend: Option<Spanned<String>>,
    /// Backends sharing the route's load by weight.
    pub backends: Option<Spanned<Vec<RawWeightedBackend>>>,
    /// Backends tried in order, only when every weighted backend failed or is ejected.
    pub fallback: Option<Vec<Spanned<String>>>,
    /// Most upstream attempts for one request (default: one per backend of the route).
    pub max_attempts: Option<Spanned<i64>>,
    /// Extra attempts allowed over 10 s, in percent of the route's requests (default 20).
    pub retry_budget: Option<Spanned<i64>>,
    /// The model name sent to a given backend, by backend name, instead of the client's.
    pub upstream_models: Option<BTreeMap<String, Spanned<String>>>,
    /// Remove the prefix before the request goes upstream (default true).
    pub strip_prefix: Option<bool>,
    /// Models advertised by `/v1/models`, without the prefix.
    pub models: Option<Vec<Spanned<String>>>,
    /// Also list the backend's own models.
    pub discover: Option<bool>,
}

/// One entry of a route's `backends = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedBackend {
    /// Name of a `[backends.<name>]` table.
    pub name: Spanned<String>,
    /// Share of the route's requests relative to the other entries (default 1).
    pub weight: Option<Spanned<i64>>,
}
