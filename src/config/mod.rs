//! routes.toml: reading and validation. `serve`, `check` and hot reload all reach it through
//! `crate::routing::load_table`, which also builds the backends, so a file that `check` accepts
//! is exactly a file the gateway accepts.
//!
//! Three stages: `raw` (serde mirror of the file) → `validate` (this module's `Config`) →
//! `crate::routing::RouteTable` (runtime, with HTTP clients).

mod env;
mod raw;
pub mod schema;
pub mod starter;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use secrecy::{SecretBox, SecretString};
use url::Url;

pub use env::{has_reference, is_one_reference, redacted_defaults};
pub use validate::validate;

/// A validated routes.toml.
#[derive(Debug)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[backends.*]`, by name.
    pub backends: Vec<BackendConfig>,
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteConfig>,
    /// `[store]`, defaulted when a feature needs a store and the file has none.
    pub store: Option<StoreConfig>,
    /// `[auth]`: gateway keys are on when present.
    pub auth: Option<AuthConfig>,
    /// `[idempotency]`, defaults applied (in force whenever a store is open).
    pub idempotency: IdempotencyConfig,
    /// `[metrics]`: Prometheus metrics are on when present.
    pub metrics: Option<MetricsConfig>,
    /// `[usage]`: usage records are written when present.
    pub usage: Option<UsageConfig>,
    /// `[limits]`: where rate-limit budgets are kept.
    pub limits: LimitsConfig,
    /// `[batches]`, defaults applied (in force whenever a store is open).
    pub batches: BatchesConfig,
}

/// `[batches]`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchesConfig {
    /// Where files are kept; `None`: beside the store (see `files::default_dir`).
    pub dir: Option<std::path::PathBuf>,
    /// Largest upload.
    pub max_file_bytes: u64,
    /// Most lines in one input file.
    pub max_lines: usize,
    /// Lines in flight across batches.
    pub concurrency: usize,
    /// Lines in flight in one batch.
    pub per_batch: usize,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        BatchesConfig {
            dir: None,
            max_file_bytes: 200 * 1024 * 1024,
            max_lines: 50_000,
            concurrency: 4,
            per_batch: 2,
        }
    }
}

/// `[idempotency]`, with defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// How long an answer is kept.
    pub ttl: Duration,
    /// Largest answer body kept.
    pub max_answer_bytes: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl: Duration::from_secs(24 * 60 * 60),
            max_answer_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `/metrics` on a listener of its own instead of the main one.
    pub listen: Option<SocketAddr>,
}

/// `[server.cors]`: which origins' pages may call the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`"*"`).
    Any,
    /// These origins, each `scheme://host[:port]` exactly as browsers send it.
    List(Vec<String>),
}

/// `[usage]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    /// The JSONL log, if any (records also go to the store with `[auth]`).
    pub log: Option<UsageLog>,
    /// How many records may wait for the writer before new ones are dropped.
    pub queue: usize,
}

/// `[usage] log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageLog {
    /// `"-"`: one JSON object per line on stdout.
    Stdout,
    /// A file, appended to (relative paths resolved against the file's directory).
    File(std::path::PathBuf),
}

/// `[limits]`.
#[derive(Debug, Clone, Default)]
pub struct LimitsConfig {
    /// Redis keeping the request and token budgets shared by every instance; `None` keeps them
    /// in this process.
    pub redis_url: Option<SecretString>,
}

/// A caller's rate limits (`rate_limit = { … }`, or set through the admin API); `None` is no
/// limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute (charged from each answer's usage).
    pub tokens_per_minute: Option<u64>,
    /// Requests in progress at once.
    pub max_concurrent: Option<u32>,
}

impl RateLimit {
    /// The largest per-minute budget: one request or token per microsecond, the resolution the
    /// shared (Redis) budgets keep.
    pub const MAX_PER_MINUTE: u64 = 60_000_000;
    /// The most requests in progress one caller may be allowed.
    pub const MAX_CONCURRENT: u32 = 1_000_000;
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database URL, a relative SQLite path made absolute; may hold a password.
    pub url: SecretString,
    /// The URL with any password replaced, for display.
    pub display: String,
}

/// `[auth]`.
#[derive(Debug)]
pub struct AuthConfig {
    /// Seals upstream credentials at rest.
    pub master_key: SecretBox<[u8; 32]>,
    /// Earlier master keys, able to open credentials sealed under them.
    pub previous_master_keys: Vec<SecretBox<[u8; 32]>>,
    /// Guards `/admin/v1`.
    pub admin_token: SecretString,
}

/// `[server] tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: std::path::PathBuf,
    /// PEM private key.
    pub key: std::path::PathBuf,
}

/// `[server]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address from the file, if any.
    pub listen: Option<SocketAddr>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Backend for pass-through requests whose body names no model.
    pub default_backend: Option<String>,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout: Duration,
    /// HTTP worker threads; `None` is one per core.
    pub workers: Option<usize>,
    /// Bytes of request bodies held at once, across all connections.
    pub max_buffered_body_bytes: usize,
    /// Open client connections, across all workers.
    pub max_connections: usize,
    /// Requests in progress at once, streams included.
    pub max_concurrent_requests: usize,
    /// Time allowed for a request's head, on every request of a connection.
    pub request_head_timeout: Duration,
    /// Time allowed for a request's whole body.
    pub request_body_timeout: Duration,
    /// Serve HTTPS with these files (read at start, re-read when they change).
    pub tls: Option<TlsConfig>,
    /// `[server.cors]`; `None` grants no other origin anything.
    pub cors: Option<CorsOrigins>,
    /// `default_backend` has `batch = "upstream"`: `/v1/files` and `/v1/batches` are relayed
    /// to it rather than served by the gateway.
    pub batches_upstream: bool,
}

/// One `[backends.<name>]`.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// The table's name.
    pub name: String,
    /// Where the table is in the file (1-based line and column), for a fault found only when
    /// the backend is built.
    pub line: usize,
    /// See `line`.
    pub col: usize,
    /// Kind-specific settings.
    pub settings: BackendSettings,
    /// When passive health checking takes it out of rotation.
    pub health: HealthSettings,
}

/// Passive health checking of one backend: when it is ejected, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Consecutive failures that eject the backend.
    pub eject_after: u32,
    /// The first ejection's length; it doubles at each failed probe, up to a cap.
    pub cooldown: Duration,
}

/// Settings by backend kind. Equality decides whether a reload may keep a backend's client.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendSettings {
    /// An OpenAI-compatible HTTP server.
    OpenAI(HttpSettings),
    /// Any HTTP server, relayed raw.
    Proxy(HttpSettings),
    /// An Ollama server, by its native API (`base_url` is its root, e.g. `http://127.0.0.1:11434`).
    Ollama(HttpSettings),
    /// The built-in echo backend.
    Echo,
    /// Jobs on a Redis queue, answered by `switchyard worker` or openai-rq workers.
    Redis(RedisSettings),
    /// Requests gathered into OpenAI Batch API jobs.
    Batch(BatchSettings),
}

impl BackendSettings {
    /// The `kind` as written in routes.toml.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendSettings::OpenAI(_) => "openai",
            BackendSettings::Proxy(_) => "proxy",
            BackendSettings::Ollama(_) => "ollama",
            BackendSettings::Echo => "echo",
            BackendSettings::Redis(_) => "redis",
            BackendSettings::Batch(_) => "batch",
        }
    }
}

/// Settings shared by the HTTP backend kinds.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Upstream base URL; request paths are joined below it.
    pub base_url: Url,
    /// Backend key, sent as `Authorization: Bearer`; `None` passes the client's through.
    pub api_key: Option<SecretString>,
    /// The key as written (`${OPENAI_API_KEY}`), for display.
    pub api_key_source: Option<String>,
    /// Extra headers, values marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for a whole non-streamed response (headers and body).
    pub request_timeout: Duration,
    /// Time allowed until the response headers, and for a stream until its first read.
    pub first_byte_timeout: Duration,
    /// Time allowed between two reads of a response body.
    pub idle_timeout: Duration,
    /// How long an idle pooled connection is kept for reuse.
    pub pool_idle_timeout: Duration,
    /// `kind = "openai"`: how `/v1/responses` is served (`Native` for the other kinds).
    pub responses: ResponsesMode,
}

/// `responses = "native" | "translate"` of an `openai` backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponsesMode {
    /// The server has its own Responses API: requests are relayed as they are.
    #[default]
    Native,
    /// The server has chat completions only: requests are translated to them and back.
    Translate,
}

// By hand because `SecretString` deliberately has no `PartialEq`: a changed key must rebuild.
impl PartialEq for HttpSettings {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.base_url == other.base_url
            && self.api_key.as_ref().map(ExposeSecret::expose_secret)
                == other.api_key.as_ref().map(ExposeSecret::expose_secret)
            && self.headers == other.headers
            && self.connect_timeout == other.connect_timeout
            && self.request_timeout == other.request_timeout
            && self.first_byte_timeout == other.first_byte_timeout
            && self.idle_timeout == other.idle_timeout
            && self.pool_idle_timeout == other.pool_idle_timeout
            && self.responses == other.responses
    }
}

/// Settings of `kind = "redis"`.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The connection URL; it may hold a password, so it is kept secret.
    pub url: SecretString,
    /// The URL as written (`${REDIS_URL}`), for display.
    pub url_source: String,
    /// How long a client waits for its result, and between two entries of a stream.
    pub timeout: Duration,
    /// How long a job may wait for a worker to take it before it is withdrawn.
    pub pickup_timeout: Duration,
}

// By hand for the same reason as `HttpSettings`.
impl PartialEq for RedisSettings {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.url.expose_secret() == other.url.expose_secret()
            && self.timeout == other.timeout
            && self.pickup_timeout == other.pickup_timeout
    }
}

/// A `batch` backend: where its Files + Batches API is, and how requests are gathered.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// `base_url` and `api_key` (required), read as for the HTTP kinds.
    pub http: HttpSettings,
    /// How long requests are gathered before they are sent.
    pub window: Duration,
    /// The first pause between two polls of a running batch.
    pub poll: Duration,
    /// Most lines in one batch.
    pub max_lines: usize,
    /// The store holding waiting requests, batches and results (`[store]`, or its default).
    pub store_url: StoreUrl,
}

/// The store's URL as a batch backend holds it: secret, and compared by value.
#[derive(Debug, Clone, Default)]
pub struct StoreUrl(pub Option<SecretString>);

impl PartialEq for StoreUrl {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.0.as_ref().map(ExposeSecret::expose_secret)
            == other.0.as_ref().map(ExposeSecret::expose_secret)
    }
}

/// One `[[routes]]`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Model-name prefix.
    pub prefix: String,
    /// Backends sharing the load by weight (names checked to exist); at least one.
    pub backends: Vec<WeightedBackend>,
    /// Backends tried in order once every weighted one failed or is ejected.
    pub fallback: Vec<String>,
    /// Most upstream attempts per request, at least 1.
    pub max_attempts: usize,
    /// Extra attempts allowed over the budget's window, in percent of the requests.
    pub retry_budget_percent: u32,
    /// Model name per backend name, replacing the client's (after prefix stripping).
    pub upstream_models: BTreeMap<String, String>,
    /// Strip the prefix from the model name upstream.
    pub strip_prefix: bool,
    /// Advertised model names, without the prefix.
    pub models: Vec<String>,
    /// Also list the backend's own models.
    pub discover: bool,
    /// Each caller's rate limits on this route (per key with `[auth]`, else for the route).
    pub rate_limit: Option<RateLimit>,
}

impl RouteConfig {
    /// Every backend name of the route: weighted ones first, then the fallbacks.
    pub fn backend_names(&self) -> impl Iterator<Item = &str> {
        self.backends
            .iter()
            .map(|b| b.name.as_str())
            .chain(self.fallback.iter().map(String::as_str))
    }
}

/// One entry of a route's `backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedBackend {
    /// Backend name.
    pub name: String,
    /// Relative share of the route's requests, at least 1.
    pub weight: u32,
}

/// One problem in a config file, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A digest of the settings read only at start (`[store]`, `[auth]`, `[idempotency]`, `[server] tls` paths,
/// `[server.cors]`, `[metrics]`), for
/// a reload to notice that they changed. Hex SHA-256; the secrets never leave it.
pub fn fixed_at_start(config: &Config) -> String {
    use secrecy::ExposeSecret;
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    if let Some(store) = &config.store {
        hash.update(b"store\0");
        hash.update(store.url.expose_secret().as_bytes());
    }
    if let Some(auth) = &config.auth {
        hash.update(b"\0auth\0");
        hash.update(auth.master_key.expose_secret());
        for key in &auth.previous_master_keys {
            hash.update(key.expose_secret());
        }
        hash.update(auth.admin_token.expose_secret().as_bytes());
    }
    hash.update(format!("\0idempotency\0{:?}", config.idempotency).as_bytes());
    if let Some(cors) = &config.server.cors {
        hash.update(format!("\0cors\0{cors:?}").as_bytes());
    }
    if let Some(metrics) = &config.metrics {
        hash.update(format!("\0metrics\0{metrics:?}").as_bytes());
    }
    if let Some(usage) = &config.usage {
        hash.update(format!("\0usage\0{usage:?}").as_bytes());
    }
    hash.update(format!("\0batches\0{:?}", config.batches).as_bytes());
    if let Some(url) = &config.limits.redis_url {
        hash.update(b"\0limits\0");
        hash.update(url.expose_secret().as_bytes());
    }
    if let Some(tls) = &config.server.tls {
        hash.update(b"\0tls\0");
        hash.update(tls.cert.as_os_str().as_encoded_bytes());
        hash.update(b"\0");
        hash.update(tls.key.as_os_str().as_encoded_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a config file's text.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            message: format!("cannot read the file: {err}"),
        }])
    })
}

/// Validates a config file's text, resolving `${ENV}` from the process environment.
pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigErrors> {
    validate(source, &path.display().to_string(), &|name| {
        std::env::var(name).ok()
    })
}
