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
    /// `[store]`: the gateway's database.
    pub store: Option<Spanned<RawStore>>,
    /// `[auth]`: gateway keys; its presence turns them on.
    pub auth: Option<Spanned<RawAuth>>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite://path` (relative to the file's directory) or `postgres://…`.
    pub url: Spanned<String>,
}

/// `[auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// 32 bytes in base64: seals upstream credentials at rest.
    pub master_key: Spanned<String>,
    /// Earlier master keys, still able to open credentials until they are re-sealed.
    pub previous_master_keys: Option<Vec<Spanned<String>>>,
    /// Bearer token guarding `/admin/v1`.
    pub admin_token: Spanned<String>,
}

/// `[server] tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain file.
    pub cert: Spanned<String>,
    /// PEM private key file.
    pub key: Spanned<String>,
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
    /// Serve HTTPS with these files.
    pub tls: Option<Spanned<RawTls>>,
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
