//! `RawConfig`: serde structs mirroring routes.toml key for key, with spans for messages.
//!
//! Nothing is interpreted here: no URL parsing, no `${ENV}`, no cross-references. Unknown keys
//! are refused by `deny_unknown_fields`, so a typo is an error with a position, never ignored.
//!
//! The same structs generate routes.toml's JSON Schema (`switchyard schema`, committed as
//! `openapi/routes.schema.json`): their `///` comments are the descriptions an editor shows on
//! hover, so they say what the README's configuration tables say. `toml::Spanned<T>` has no
//! schema of its own, hence the `with = …` on every spanned field.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// What humantime accepts as a duration: one or more `<number><unit>` groups, e.g. `"5s"`,
/// `"250ms"`, `"1m 30s"`.
pub const DURATION_PATTERN: &str = r"^\s*[0-9]+\s*[a-zA-Zµ]+(\s*[0-9]+\s*[a-zA-Zµ]+)*\s*$";

/// The backend kinds, as written in `kind = "…"` (the schema's enum; `validate` checks the same).
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: `kind` is read as a spanned string for messages.
pub enum KindName {
    /// OpenAI-compatible HTTP: OpenAI, vLLM, SGLang, TGI, llama.cpp.
    #[serde(rename = "openai")]
    OpenAI,
    /// Ollama's native API.
    Ollama,
    /// Raw relay of any `/v1/*` request.
    Proxy,
    /// Built in, no network: answers with the last user message.
    Echo,
    /// Jobs on a Redis queue, answered by `switchyard worker` or openai-rq workers.
    Redis,
    /// Requests gathered into OpenAI Batch API jobs (Files + Batches), answered when done.
    Batch,
}

/// The values of `responses = "…"` (the schema's enum; `validate` checks the same).
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used, as for `KindName`.
pub enum ResponsesModeName {
    /// Relay `/v1/responses` to the backend as it is.
    Native,
    /// Translate it to a chat completion and back.
    Translate,
}

/// The values of `batch = "…"` (the schema's enum; `validate` checks the same).
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used, as for `KindName`.
pub enum BatchApiName {
    /// `/v1/files` and `/v1/batches` go to this backend's own Batch API.
    Upstream,
}

/// Switchyard's routes file: which backend serves which model-name prefix. Every key is
/// documented in README.md ("Configuration: routes.toml").
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Switchyard routes.toml")]
pub struct RawConfig {
    /// Settings of the gateway process.
    #[serde(default)]
    pub server: RawServer,
    /// Upstreams by name, referred to by `[[routes]] backend`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawBackend>")]
    pub backends: BTreeMap<String, Spanned<RawBackend>>,
    /// Model-name prefixes and the backend serving each. The longest matching prefix wins.
    #[serde(default)]
    #[schemars(with = "Vec<RawRoute>")]
    pub routes: Vec<Spanned<RawRoute>>,
    /// `[store]`: the gateway's database (keys now; usage and batches next). Opened only when
    /// a feature needs it (`[auth]`).
    #[schemars(with = "Option<RawStore>")]
    pub store: Option<Spanned<RawStore>>,
    /// `[auth]`: projects and gateway keys; its presence turns keys on.
    #[schemars(with = "Option<RawAuth>")]
    pub auth: Option<Spanned<RawAuth>>,
    /// `[idempotency]`: how long and how large `Idempotency-Key` answers are kept. Honoured
    /// whenever the gateway has a store; this section opens the default one when there is none.
    #[schemars(with = "Option<RawIdempotency>")]
    pub idempotency: Option<Spanned<RawIdempotency>>,
    /// `[metrics]`: Prometheus metrics at `/metrics`; its presence (even empty) turns them on.
    #[schemars(with = "Option<RawMetrics>")]
    pub metrics: Option<Spanned<RawMetrics>>,
    /// `[usage]`: one record per request (tokens, latencies, who asked), written as JSONL
    /// and, with `[auth]`, summed in the store.
    #[schemars(with = "Option<RawUsage>")]
    pub usage: Option<Spanned<RawUsage>>,
    /// `[limits]`: where the rate limits' budgets are kept.
    pub limits: Option<RawLimits>,
    /// `[batches]`: the gateway's own Files and Batches API (on whenever a store is open;
    /// this section opens the default one when there is none).
    #[schemars(with = "Option<RawBatches>")]
    pub batches: Option<Spanned<RawBatches>>,
}

/// `[batches]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBatches {
    /// Where uploaded and output files are kept (relative to the routes file's directory);
    /// default: beside a SQLite store (`<db file>.files`), else `switchyard-files`.
    #[schemars(with = "Option<String>")]
    pub dir: Option<Spanned<String>>,
    /// Largest upload, in bytes (default 209715200, OpenAI's 200 MB batch input limit).
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub max_file_bytes: Option<Spanned<i64>>,
    /// Most lines in one input file (default and most 50000, OpenAI's limit).
    #[schemars(with = "Option<u32>", range(min = 1, max = 50000))]
    pub max_lines: Option<Spanned<i64>>,
    /// Lines in flight at once across all batches (default 4).
    #[schemars(with = "Option<u32>", range(min = 1, max = 1024))]
    pub concurrency: Option<Spanned<i64>>,
    /// Lines in flight at once in one batch (default 2).
    #[schemars(with = "Option<u32>", range(min = 1, max = 1024))]
    pub per_batch: Option<Spanned<i64>>,
}

/// `[idempotency]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdempotency {
    /// How long an answer is kept for repeats of its `Idempotency-Key` (default `"24h"`).
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub ttl: Option<Spanned<String>>,
    /// Largest answer body kept, in bytes (default 4194304, 4 MiB); a larger answer reaches its
    /// client but is not kept, and a repeat gets a 409 `idempotent_answer_not_kept`.
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub max_answer_bytes: Option<Spanned<i64>>,
}

/// `[metrics]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `/metrics` on this address of its own (e.g. `127.0.0.1:9100`, no key asked)
    /// instead of on the main listener (where `[auth]` asks for the admin token).
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
}

/// `[server.cors]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    /// Origins whose pages may call the gateway, each as `scheme://host[:port]`
    /// (`["https://app.example"]`), or `["*"]` for any.
    #[schemars(with = "Vec<String>")]
    pub allowed_origins: Vec<Spanned<String>>,
}

/// `[usage]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// `"-"` for stdout, or a file appended to (relative to the routes file's directory).
    /// Without it records go only to the store, which `[auth]` opens.
    #[schemars(with = "Option<String>")]
    pub log: Option<Spanned<String>>,
    /// Records that may wait for the writer; past it new records are dropped and counted,
    /// never waited for (default 10000).
    #[schemars(with = "Option<u32>", range(min = 1, max = 1_000_000))]
    pub queue: Option<Spanned<i64>>,
}

/// `[limits]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Redis URL (`redis://…`, `${VAR}` allowed) keeping request and token budgets shared by
    /// every instance; without it each instance keeps its own.
    #[schemars(with = "Option<String>")]
    pub redis_url: Option<Spanned<String>>,
}

/// A route's `rate_limit = { … }`: each caller's budget (per key with `[auth]`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Requests per minute (a minute's worth may come in a burst).
    #[schemars(with = "Option<u64>", range(min = 1, max = 60_000_000))]
    pub requests_per_minute: Option<Spanned<i64>>,
    /// Tokens per minute, charged from each answer's usage.
    #[schemars(with = "Option<u64>", range(min = 1, max = 60_000_000))]
    pub tokens_per_minute: Option<Spanned<i64>>,
    /// Requests in progress at once (in each instance).
    #[schemars(with = "Option<u32>", range(min = 1, max = 1_000_000))]
    pub max_concurrent: Option<Spanned<i64>>,
}

/// `[store]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite://path` (relative to the file's directory; the default `sqlite://switchyard.db`)
    /// or `postgres://user:pw@host/db` when several gateway instances share state. `${VAR}`
    /// allowed; a password is never printed.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
}

/// `[auth]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// 32 bytes in base64 (use `"${SWITCHYARD_MASTER_KEY}"`): seals upstream credentials at
    /// rest (AES-256-GCM).
    #[schemars(with = "String")]
    pub master_key: Spanned<String>,
    /// Earlier master keys, still able to open credentials until `switchyard admin
    /// rotate-master-key` re-seals them.
    #[schemars(with = "Option<Vec<String>>")]
    pub previous_master_keys: Option<Vec<Spanned<String>>>,
    /// Bearer token guarding `/admin/v1` (use `"${SWITCHYARD_ADMIN_TOKEN}"`).
    #[schemars(with = "String")]
    pub admin_token: Spanned<String>,
}

/// `[server] tls`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain file (re-read when it changes).
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    /// PEM private key file (re-read when it changes).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on (default `127.0.0.1:8080`); `--listen` / `SWITCHYARD_LISTEN`
    /// override it.
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    /// Largest request body accepted, in bytes (default 33554432, 32 MiB); larger is a 413
    /// `request_too_large`.
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub max_body_bytes: Option<Spanned<i64>>,
    /// Backend for pass-through requests (`/v1/files`, `/v1/audio/...`) whose body names no
    /// model. Without it such requests are 404 `unknown_url`.
    #[schemars(with = "Option<String>")]
    pub default_backend: Option<Spanned<String>>,
    /// Grace period for in-flight requests after SIGTERM/SIGINT (default `"30s"`).
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub shutdown_timeout: Option<Spanned<String>>,
    /// HTTP worker threads (default: one per core).
    #[schemars(with = "Option<u16>", range(min = 1, max = 1024))]
    pub workers: Option<Spanned<i64>>,
    /// Bytes of request bodies held at once, across all connections (default 268435456,
    /// 256 MiB); past it a request is a 503 `overloaded` with `retry-after`.
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub max_buffered_body_bytes: Option<Spanned<i64>>,
    /// Open client connections, across all workers (default 10000); past it new connections
    /// wait in the listen backlog.
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub max_connections: Option<Spanned<i64>>,
    /// Requests in progress at once, a stream counting until it ends (default 4096); past it a
    /// request is a 503 `overloaded` with `retry-after`.
    #[schemars(with = "Option<u64>", range(min = 1))]
    pub max_concurrent_requests: Option<Spanned<i64>>,
    /// Time allowed for a request's head, on every request of a connection (default `"10s"`);
    /// exceeded, the connection is closed.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub request_head_timeout: Option<Spanned<String>>,
    /// Time allowed for a request's whole body (default `"60s"`); exceeded is a 408
    /// `request_timeout` and the connection is closed.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub request_body_timeout: Option<Spanned<String>>,
    /// Serve HTTPS with these files (`{ cert = "…", key = "…" }`, PEM; HTTP/1.1 and HTTP/2
    /// by ALPN); renewed files are picked up by new connections without a restart.
    #[schemars(with = "Option<RawTls>")]
    pub tls: Option<Spanned<RawTls>>,
    /// `[server.cors]`: let pages on other origins call the gateway from a browser (off when
    /// absent).
    #[schemars(with = "Option<RawCors>")]
    pub cors: Option<Spanned<RawCors>>,
}

/// `[backends.<name>]`: the union of every kind's keys; `validate` checks which apply.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// `openai` (OpenAI-compatible HTTP: OpenAI, vLLM, SGLang, TGI, llama.cpp), `ollama`
    /// (Ollama's native API), `proxy` (raw relay), `echo` (built in, no network), `redis` (jobs
    /// on a Redis queue), `batch` (OpenAI Batch API jobs).
    #[schemars(with = "KindName")]
    pub kind: Spanned<String>,
    /// Kinds openai, ollama, proxy (required there). Upstream base URL *including* `/v1` for
    /// OpenAI-compatible servers; for `ollama`, the server's root (`http://127.0.0.1:11434`).
    /// The request path below `/v1` is appended. `${VAR}` allowed.
    #[schemars(with = "Option<String>")]
    pub base_url: Option<Spanned<String>>,
    /// Kinds openai, ollama, proxy. Sent upstream as `Authorization: Bearer <key>`, replacing
    /// the client's; absent, the client's `Authorization` passes through. Use `${VAR}` rather
    /// than writing the key into the file.
    #[schemars(with = "Option<String>")]
    pub api_key: Option<Spanned<String>>,
    /// Kinds openai, ollama, proxy. Extra headers sent upstream (they replace a client header
    /// of the same name). Values are treated as secrets (never logged or printed).
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
    /// Kinds openai, ollama, proxy. TCP/TLS connect timeout (default `"5s"`); exceeded is a 504.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub connect_timeout: Option<Spanned<String>>,
    /// Kinds openai, ollama, proxy. Time allowed for a whole non-streamed response, headers
    /// and body (default `"600s"`); exceeded is a 504 `upstream_timeout`. Streams have no total.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub request_timeout: Option<Spanned<String>>,
    /// Kinds openai, ollama, proxy. Time allowed until the response headers, and for a stream
    /// until its first read (default `"600s"`, enough for servers that answer a non-streamed
    /// generation only when done); exceeded is a 504, or a timeout error event on a stream.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub first_byte_timeout: Option<Spanned<String>>,
    /// Kinds openai, ollama, proxy. Time allowed between two reads of a response body (default
    /// `"120s"`); exceeded is a 504, or a timeout error event on a stream.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub idle_timeout: Option<Spanned<String>>,
    /// Kind redis (required there). `redis://[:password@]host:port/db`, `rediss://` for TLS;
    /// `${VAR}` allowed.
    #[schemars(with = "Option<String>")]
    pub redis_url: Option<Spanned<String>>,
    /// Kind openai. How `/v1/responses` reaches this backend: `native` (default) relays it as it
    /// is, for servers with a Responses API of their own; `translate` turns it into a chat
    /// completion and the answer back into a response, for servers without one.
    #[schemars(with = "Option<ResponsesModeName>")]
    pub responses: Option<Spanned<String>>,
    /// Kinds openai, proxy. `upstream`: the server has OpenAI's Files and Batches API; as the
    /// `[server] default_backend`, it gets `/v1/files` and `/v1/batches` relayed, instead of
    /// the gateway serving them itself.
    #[schemars(with = "Option<BatchApiName>")]
    pub batch: Option<Spanned<String>>,
    /// Kind redis. How long a client waits for its answer, and between two entries of a stream
    /// (default `"600s"`); exceeded is a 504 `upstream_timeout`.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub timeout: Option<Spanned<String>>,
    /// Kind redis. How long a job may wait for a worker to take it (default `"30s"`); past it,
    /// a job still untaken is withdrawn from the queue (it never runs later) and the request
    /// fails with a 504, so a route fails over when every worker is gone or busy.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub pickup_timeout: Option<Spanned<String>>,
    /// Kind batch. How long requests are gathered before they are sent as one batch (default
    /// `"60s"`), unless `max_lines` of them wait first.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub window: Option<Spanned<String>>,
    /// Kind batch. How often a running batch is polled (default `"30s"`); the pause doubles
    /// while the batch runs, up to ten times this.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub poll: Option<Spanned<String>>,
    /// Kind batch. Most requests in one batch (default and most 50000); the input file also
    /// stays under 200 MB.
    #[schemars(with = "Option<u32>", range(min = 1, max = 50000))]
    pub max_lines: Option<Spanned<i64>>,
    /// Kinds openai, ollama, proxy. How long an idle pooled connection to the upstream is kept
    /// (default `"3s"`, below the 5 s keep-alive of uvicorn, llama.cpp and Node).
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub pool_idle_timeout: Option<Spanned<String>>,
    /// All kinds. Consecutive failures (before the first byte) that take the backend out of
    /// rotation (default 5).
    #[schemars(with = "Option<u32>", range(min = 1, max = 1000000))]
    pub eject_after: Option<Spanned<i64>>,
    /// All kinds. How long the first ejection lasts (default `"5s"`); it doubles each time the
    /// backend fails its probe, up to 5 minutes.
    #[schemars(with = "Option<String>", pattern(DURATION_PATTERN))]
    pub eject_cooldown: Option<Spanned<String>>,
}

/// `[[routes]]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Model-name prefix. The longest matching prefix wins; `""` is a catch-all. Each prefix may
    /// appear once.
    #[schemars(with = "String")]
    pub prefix: Spanned<String>,
    /// The name of a `[backends.<name>]` table: the one-backend form of `backends`.
    #[schemars(with = "Option<String>")]
    pub backend: Option<Spanned<String>>,
    /// Backends sharing the route's load by weight (smooth weighted round-robin):
    /// `[{ name = "vllm-a", weight = 3 }, { name = "vllm-b" }]`.
    #[schemars(with = "Option<Vec<RawWeightedBackend>>")]
    pub backends: Option<Spanned<Vec<RawWeightedBackend>>>,
    /// Backend names tried in order, only when every weighted backend failed or is ejected.
    #[schemars(with = "Option<Vec<String>>")]
    pub fallback: Option<Vec<Spanned<String>>>,
    /// Most upstream attempts for one request, each backend at most once (default: every
    /// backend of the route).
    #[schemars(with = "Option<u32>", range(min = 1))]
    pub max_attempts: Option<Spanned<i64>>,
    /// Extra attempts (failovers) allowed over a sliding 10 s window, in percent of the route's
    /// requests, on top of a floor of 5 per second (default 20).
    #[schemars(with = "Option<u32>", range(max = 1000))]
    pub retry_budget: Option<Spanned<i64>>,
    /// The model name sent to a given backend, by backend name, instead of the one the route
    /// would send: `{ "vllm-a" = "meta-llama/Llama-3.1-8B" }`.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub upstream_models: Option<BTreeMap<String, Spanned<String>>>,
    /// Remove the prefix before the request goes upstream (default true): `openai/gpt-4o`
    /// reaches the backend as `gpt-4o`. When false, the client's body goes upstream byte for
    /// byte.
    pub strip_prefix: Option<bool>,
    /// Models advertised by `/v1/models`, without the prefix (`"gpt-4o"` is listed as
    /// `openai/gpt-4o`). Routing does not depend on this list.
    #[schemars(with = "Option<Vec<String>>")]
    pub models: Option<Vec<Spanned<String>>>,
    /// Also list the backend's own models under the prefix (default false). Cached 30 s; a
    /// backend that is down or slow is left out of the listing, never fails it.
    pub discover: Option<bool>,
    /// Each caller's rate limits on this route: `{ requests_per_minute = 60,
    /// tokens_per_minute = 100000, max_concurrent = 4 }` (per key with `[auth]`).
    pub rate_limit: Option<RawRateLimit>,
}

/// One entry of a route's `backends = [...]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedBackend {
    /// Name of a `[backends.<name>]` table.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Share of the route's requests relative to the other entries (default 1).
    #[schemars(with = "Option<u32>", range(min = 1, max = 1000))]
    pub weight: Option<Spanned<i64>>,
}
