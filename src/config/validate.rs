//! `RawConfig` → `Config`: parse URLs and durations, resolve `${ENV}`, cross-check names.
//!
//! Collects every error rather than stopping at the first, each as `file:line:col: message`, so
//! one run of `switchyard check` shows everything that is wrong.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use toml::Spanned;
use url::Url;

mod auth;
mod batch;
mod batches;
mod idempotency;
mod observe;
mod usage;

use super::raw::{RawBackend, RawConfig, RawRoute, RawServer, RawWeightedBackend};
use super::{
    BackendConfig, BackendSettings, Config, ConfigError, ConfigErrors, HealthSettings,
    HttpSettings, RedisSettings, ResponsesMode, RouteConfig, ServerConfig, WeightedBackend, env,
};

const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(600);
// Eight bodies of the default `max_body_bytes` at once.
const DEFAULT_MAX_BUFFERED_BODY_BYTES: usize = 256 * 1024 * 1024;
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 4_096;
const DEFAULT_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(60);
// A non-streamed generation sends its headers only when it is done.
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Common upstream keep-alive timeouts are 5 s (uvicorn behind vLLM, llama.cpp, Node): a pooled
/// connection is dropped before the upstream closes it, which avoids most keep-alive races.
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// A free worker takes a job within milliseconds; a job still queued after this finds the fleet
/// gone or saturated, and is better served by failing over than by waiting on.
const DEFAULT_PICKUP_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_EJECT_AFTER: u32 = 5;
const DEFAULT_EJECT_COOLDOWN: Duration = Duration::from_secs(5);
/// Largest `weight` of a route's backend: ratios finer than 1:1000 mean nothing for load.
const MAX_WEIGHT: i64 = 1000;
/// Finagle's default: failovers may add a fifth to a route's upstream requests.
const DEFAULT_RETRY_BUDGET: u32 = 20;
/// 100% lets every request fail over once; more only serves routes with many backends.
const MAX_RETRY_BUDGET: i64 = 1000;
/// Most backends in one route (weighted and fallback): failover tracks them in a 64-bit set.
const MAX_ROUTE_BACKENDS: usize = 64;

/// Turns a file's text into a validated `Config`, or every error found in it.
pub fn validate(
    source: &str,
    file: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut v = Validator {
        source,
        file,
        lookup,
        errors: Vec::new(),
    };
    let raw: RawConfig = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(err) => {
            let span = err.span().unwrap_or(0..0);
            v.error(span, err.message().trim_end());
            return Err(ConfigErrors(v.errors));
        }
    };
    let server = v.server(&raw.server, &raw);
    let mut backends: Vec<BackendConfig> = raw
        .backends
        .iter()
        .filter_map(|(name, backend)| v.backend(name, backend))
        .collect();
    let routes = v.routes(&raw);
    if routes.is_empty() {
        // Also what a half-written file looks like to a reload: never serve it.
        v.error(
            0..0,
            "the file defines no [[routes]]; every request would be refused",
        );
    }
    let auth = raw.auth.as_ref().map(|a| v.auth(a));
    let idempotency = v.idempotency(raw.idempotency.as_ref());
    let needs_store = auth.is_some()
        || raw.idempotency.is_some()
        || raw.batches.is_some()
        || batch::any(&backends);
    let store = v.store(raw.store.as_ref(), needs_store);
    batch::give_store(&mut backends, store.as_ref());
    let metrics = raw.metrics.as_ref().map(|m| v.metrics(m.get_ref()));
    let usage = raw.usage.as_ref().and_then(|u| v.usage(u, store.is_some()));
    let limits = v.limits(raw.limits.as_ref());
    let batches = v.batches(raw.batches.as_ref());
    if v.errors.is_empty() {
        Ok(Config {
            server,
            backends,
            routes,
            store,
            auth: auth.flatten(),
            idempotency,
            metrics,
            usage,
            limits,
            batches,
        })
    } else {
        Err(ConfigErrors(v.errors))
    }
}

struct Validator<'a> {
    source: &'a str,
    file: &'a str,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(self.source, span.start);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            col,
            message: message.into(),
        });
    }

    fn server(&mut self, raw: &RawServer, whole: &RawConfig) -> ServerConfig {
        let listen = raw
            .listen
            .as_ref()
            .and_then(|l| match l.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(
                        l.span(),
                        format!(
                            "`listen` must be an address such as 127.0.0.1:8080, not `{}`",
                            l.get_ref()
                        ),
                    );
                    None
                }
            });
        let max_body_bytes = self.positive(
            raw.max_body_bytes.as_ref(),
            "max_body_bytes",
            DEFAULT_MAX_BODY_BYTES,
        );
        let workers = match &raw.workers {
            Some(n) if !(1..=1024).contains(n.get_ref()) => {
                self.error(n.span(), "`workers` must be between 1 and 1024");
                None
            }
            Some(n) => usize::try_from(*n.get_ref()).ok(),
            None => None,
        };
        let default_backend = raw.default_backend.as_ref().map(|name| {
            if !whole.backends.contains_key(name.get_ref()) {
                self.error(
                    name.span(),
                    format!(
                        "`default_backend` names `{}`, which is not a [backends.*] table",
                        name.get_ref()
                    ),
                );
            }
            name.get_ref().clone()
        });
        let shutdown_timeout = self
            .duration(raw.shutdown_timeout.as_ref(), "shutdown_timeout")
            .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
        let tls = raw.tls.as_ref().map(|t| self.tls(t));
        let cors = raw.cors.as_ref().map(|c| self.cors(c.get_ref()));
        ServerConfig {
            listen,
            max_body_bytes,
            default_backend,
            shutdown_timeout,
            workers,
            max_buffered_body_bytes: self.positive(
                raw.max_buffered_body_bytes.as_ref(),
                "max_buffered_body_bytes",
                DEFAULT_MAX_BUFFERED_BODY_BYTES,
            ),
            max_connections: self.positive(
                raw.max_connections.as_ref(),
                "max_connections",
                DEFAULT_MAX_CONNECTIONS,
            ),
            max_concurrent_requests: self.positive(
                raw.max_concurrent_requests.as_ref(),
                "max_concurrent_requests",
                DEFAULT_MAX_CONCURRENT_REQUESTS,
            ),
            request_head_timeout: self
                .duration(raw.request_head_timeout.as_ref(), "request_head_timeout")
                .unwrap_or(DEFAULT_REQUEST_HEAD_TIMEOUT),
            request_body_timeout: self
                .duration(raw.request_body_timeout.as_ref(), "request_body_timeout")
                .unwrap_or(DEFAULT_REQUEST_BODY_TIMEOUT),
            tls,
            cors,
            batches_upstream: batches::upstream(raw, whole),
        }
    }

    /// A count or size that must be at least 1; `default` when absent (or wrong, after the
    /// error is recorded).
    fn positive(&mut self, value: Option<&Spanned<i64>>, key: &str, default: usize) -> usize {
        match value {
            Some(n) if *n.get_ref() <= 0 => {
                self.error(n.span(), format!("`{key}` must be a positive number"));
                default
            }
            Some(n) => usize::try_from(*n.get_ref()).unwrap_or(usize::MAX),
            None => default,
        }
    }

    fn backend(&mut self, name: &str, raw: &Spanned<RawBackend>) -> Option<BackendConfig> {
        let backend = raw.get_ref();
        let kind = backend.kind.get_ref().as_str();
        let settings = match kind {
            "openai" | "proxy" | "ollama" => {
                if kind != "openai" {
                    self.forbid(&backend.responses, "responses", kind);
                }
                self.forbid(&backend.redis_url, "redis_url", kind);
                self.forbid(&backend.timeout, "timeout", kind);
                self.forbid(&backend.pickup_timeout, "pickup_timeout", kind);
                self.forbid_batch_keys(backend, kind);
                if kind == "ollama" {
                    self.forbid(&backend.batch, "batch", kind);
                }
                self.batch_api(backend.batch.as_ref());
                let mut http = self.http_settings(name, backend)?;
                match kind {
                    "openai" => {
                        http.responses = self.responses_mode(backend.responses.as_ref());
                        BackendSettings::OpenAI(http)
                    }
                    "ollama" => BackendSettings::Ollama(http),
                    _ => BackendSettings::Proxy(http),
                }
            }
            "echo" => {
                self.forbid(&backend.batch, "batch", kind);
                self.forbid(&backend.responses, "responses", kind);
                self.forbid(&backend.base_url, "base_url", kind);
                self.forbid(&backend.api_key, "api_key", kind);
                self.forbid(&backend.connect_timeout, "connect_timeout", kind);
                self.forbid(&backend.request_timeout, "request_timeout", kind);
                self.forbid(&backend.first_byte_timeout, "first_byte_timeout", kind);
                self.forbid(&backend.idle_timeout, "idle_timeout", kind);
                self.forbid(&backend.redis_url, "redis_url", kind);
                self.forbid(&backend.timeout, "timeout", kind);
                self.forbid(&backend.pickup_timeout, "pickup_timeout", kind);
                self.forbid(&backend.pool_idle_timeout, "pool_idle_timeout", kind);
                self.forbid_batch_keys(backend, kind);
                if backend.headers.is_some() {
                    self.error(
                        raw.span(),
                        format!("backend `{name}`: `headers` does not apply to kind `echo`"),
                    );
                }
                BackendSettings::Echo
            }
            "redis" => {
                self.forbid(&backend.batch, "batch", kind);
                self.forbid(&backend.responses, "responses", kind);
                self.forbid_batch_keys(backend, kind);
                BackendSettings::Redis(self.redis_settings(name, raw)?)
            }
            "batch" => {
                self.forbid(&backend.batch, "batch", kind);
                BackendSettings::Batch(self.batch_settings(name, raw)?)
            }
            other => {
                self.error(
                    backend.kind.span(),
                    format!("backend `{name}`: unknown kind `{other}` (expected one of: openai, ollama, proxy, echo, redis, batch)"),
                );
                return None;
            }
        };
        let (line, col) = line_col(self.source, raw.span().start);
        let health = self.health_settings(backend);
        Some(BackendConfig {
            name: name.to_owned(),
            line,
            col,
            settings,
            health,
        })
    }

    fn responses_mode(&mut self, value: Option<&Spanned<String>>) -> ResponsesMode {
        match value.map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("native", _)) => ResponsesMode::Native,
            Some(("translate", _)) => ResponsesMode::Translate,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("`responses` must be \"native\" or \"translate\", not `{other}`"),
                );
                ResponsesMode::Native
            }
        }
    }

    fn health_settings(&mut self, raw: &RawBackend) -> HealthSettings {
        let eject_after = match &raw.eject_after {
            Some(n) if !(1..=1_000_000).contains(n.get_ref()) => {
                self.error(
                    n.span(),
                    "`eject_after` must be between 1 and 1000000 failures",
                );
                DEFAULT_EJECT_AFTER
            }
            Some(n) => u32::try_from(*n.get_ref()).unwrap_or(DEFAULT_EJECT_AFTER),
            None => DEFAULT_EJECT_AFTER,
        };
        let cooldown = self
            .duration(raw.eject_cooldown.as_ref(), "eject_cooldown")
            .unwrap_or(DEFAULT_EJECT_COOLDOWN);
        HealthSettings {
            eject_after,
            cooldown,
        }
    }

    fn forbid<T>(&mut self, value: &Option<Spanned<T>>, key: &str, kind: &str) {
        if let Some(v) = value {
            self.error(v.span(), format!("`{key}` does not apply to kind `{kind}`"));
        }
    }

    fn http_settings(&mut self, name: &str, raw: &RawBackend) -> Option<HttpSettings> {
        let Some(base) = &raw.base_url else {
            self.error(
                raw.kind.span(),
                format!(
                    "backend `{name}`: kind `{}` needs a `base_url`",
                    raw.kind.get_ref()
                ),
            );
            return None;
        };
        let base_url = self.resolve(base).and_then(|text| match Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            Ok(url) => {
                // Shown without its password: this message reaches logs and `/health`.
                let shown = crate::telemetry::redacted_url(&url);
                self.error(
                    base.span(),
                    format!(
                        "`base_url` must be an http:// or https:// URL with a host, not `{shown}`"
                    ),
                );
                None
            }
            Err(err) => {
                self.error(base.span(), format!("`base_url` is not a valid URL: {err}"));
                None
            }
        });
        let api_key = raw.api_key.as_ref().and_then(|key| {
            let value = self.resolve(key)?;
            // Sent as `Authorization: Bearer <key>`: a CR/LF or other control character would
            // make every request fail. The message never quotes the value.
            if HeaderValue::from_str(&format!("Bearer {value}")).is_err() {
                self.error(
                    key.span(),
                    "`api_key` contains characters not allowed in an HTTP header (a newline or \
                     another control character)",
                );
                return None;
            }
            Some((SecretString::from(value), key.get_ref().clone()))
        });
        let headers = self.upstream_headers(raw);
        let connect_timeout = self.duration(raw.connect_timeout.as_ref(), "connect_timeout");
        let request_timeout = self.duration(raw.request_timeout.as_ref(), "request_timeout");
        let first_byte_timeout =
            self.duration(raw.first_byte_timeout.as_ref(), "first_byte_timeout");
        let idle_timeout = self.duration(raw.idle_timeout.as_ref(), "idle_timeout");
        let pool_idle_timeout = self.duration(raw.pool_idle_timeout.as_ref(), "pool_idle_timeout");
        Some(HttpSettings {
            base_url: base_url?,
            api_key: api_key.as_ref().map(|(secret, _)| secret.clone()),
            api_key_source: api_key.map(|(_, source)| source),
            headers,
            connect_timeout: connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            first_byte_timeout: first_byte_timeout.unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT),
            idle_timeout: idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
            pool_idle_timeout: pool_idle_timeout.unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
            responses: ResponsesMode::Native,
        })
    }

    /// `headers = {…}`: every name and value checked, values marked sensitive.
    fn upstream_headers(&mut self, raw: &RawBackend) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        for (header, value) in raw.headers.iter().flatten() {
            let Ok(header_name) = HeaderName::from_bytes(header.as_bytes()) else {
                self.error(
                    value.span(),
                    format!("`{header}` is not a valid HTTP header name"),
                );
                continue;
            };
            let Some(text) = self.resolve(value) else {
                continue;
            };
            match HeaderValue::from_str(&text) {
                Ok(mut v) => {
                    // Header values often carry credentials: keep them out of Debug output.
                    v.set_sensitive(true);
                    headers.push((header_name, v));
                }
                Err(_) => self.error(
                    value.span(),
                    format!("the value of header `{header}` is not a valid HTTP header value"),
                ),
            }
        }
        headers
    }

    fn redis_settings(&mut self, name: &str, raw: &Spanned<RawBackend>) -> Option<RedisSettings> {
        let backend = raw.get_ref();
        // The worker owns the inference server's address and credential: none of the HTTP keys
        // has a meaning on the gateway side of the queue.
        self.forbid(&backend.base_url, "base_url", "redis");
        self.forbid(&backend.api_key, "api_key", "redis");
        self.forbid(&backend.connect_timeout, "connect_timeout", "redis");
        self.forbid(&backend.request_timeout, "request_timeout", "redis");
        self.forbid(&backend.first_byte_timeout, "first_byte_timeout", "redis");
        self.forbid(&backend.idle_timeout, "idle_timeout", "redis");
        self.forbid(&backend.pool_idle_timeout, "pool_idle_timeout", "redis");
        if backend.headers.is_some() {
            self.error(
                raw.span(),
                format!(
                    "backend `{name}`: `headers` does not apply to kind `redis` (the worker sets \
                     upstream headers with --openai-header)"
                ),
            );
        }
        let timeout = self.duration(backend.timeout.as_ref(), "timeout");
        let pickup_timeout = self.duration(backend.pickup_timeout.as_ref(), "pickup_timeout");
        let Some(url) = &backend.redis_url else {
            self.error(
                backend.kind.span(),
                format!("backend `{name}`: kind `redis` needs a `redis_url`"),
            );
            return None;
        };
        let text = self.resolve(url)?;
        let scheme_ok = text.starts_with("redis://")
            || text.starts_with("rediss://")
            || text.starts_with("unix://")
            || text.starts_with("redis+unix://");
        if !scheme_ok {
            self.error(
                url.span(),
                "`redis_url` must be a redis://, rediss:// or unix:// URL",
            );
            return None;
        }
        if let Err(err) = redis::Client::open(text.as_str()) {
            // The message of a parse error never repeats the URL (it may hold a password).
            self.error(
                url.span(),
                format!("`redis_url` is not a valid Redis URL ({})", err.category()),
            );
            return None;
        }
        Some(RedisSettings {
            url: SecretString::from(text),
            url_source: url.get_ref().clone(),
            timeout: timeout.unwrap_or(DEFAULT_REDIS_TIMEOUT),
            pickup_timeout: pickup_timeout.unwrap_or(DEFAULT_PICKUP_TIMEOUT),
        })
    }

    fn resolve(&mut self, value: &Spanned<String>) -> Option<String> {
        match env::interpolate(value.get_ref(), self.lookup) {
            Ok(text) => Some(text),
            Err(message) => {
                self.error(value.span(), message);
                None
            }
        }
    }

    fn duration(&mut self, value: Option<&Spanned<String>>, key: &str) -> Option<Duration> {
        let value = value?;
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(value.span(), format!("`{key}` must be longer than zero"));
                None
            }
            Err(err) => {
                self.error(
                    value.span(),
                    format!("`{key}` must be a duration such as \"5s\" or \"250ms\": {err}"),
                );
                None
            }
        }
    }

    fn routes(&mut self, raw: &RawConfig) -> Vec<RouteConfig> {
        let mut seen = HashSet::new();
        let mut routes = Vec::with_capacity(raw.routes.len());
        for route in &raw.routes {
            let r: &RawRoute = route.get_ref();
            let prefix = r.prefix.get_ref();
            if !seen.insert(prefix.as_str()) {
                self.error(
                    r.prefix.span(),
                    format!(
                        "duplicate prefix `{prefix}`: each prefix may appear in one route only"
                    ),
                );
            }
            let (backends, fallback) = self.route_backends(route, raw);
            let mut models = Vec::new();
            let mut seen_models = HashSet::new();
            for model in r.models.iter().flatten() {
                if model.get_ref().is_empty() {
                    self.error(model.span(), "a model name must not be empty");
                } else if !seen_models.insert(model.get_ref().as_str()) {
                    self.error(
                        model.span(),
                        format!("model `{}` is listed twice", model.get_ref()),
                    );
                } else {
                    models.push(model.get_ref().clone());
                }
            }
            let max_attempts = self.max_attempts(r, backends.len() + fallback.len());
            let retry_budget_percent = self.retry_budget(r);
            let upstream_models = self.upstream_models(r, &backends, &fallback);
            routes.push(RouteConfig {
                prefix: prefix.clone(),
                backends,
                fallback,
                max_attempts,
                retry_budget_percent,
                upstream_models,
                strip_prefix: r.strip_prefix.unwrap_or(true),
                models,
                discover: r.discover.unwrap_or(false),
                rate_limit: r.rate_limit.as_ref().map(|l| self.rate_limit(l)),
            });
        }
        routes
    }
}

/// Routes with several backends: `backend`/`backends`, `fallback`, `max_attempts`,
/// `upstream_models`.
impl Validator<'_> {
    /// The weighted backends and the fallbacks, every name checked to exist and to appear once.
    fn route_backends(
        &mut self,
        route: &Spanned<RawRoute>,
        raw: &RawConfig,
    ) -> (Vec<WeightedBackend>, Vec<String>) {
        let r = route.get_ref();
        let mut named: Vec<(&Spanned<String>, u32)> = Vec::new();
        match (&r.backend, &r.backends) {
            (Some(one), None) => named.push((one, 1)),
            (None, Some(list)) if list.get_ref().is_empty() => {
                self.error(list.span(), "`backends` must name at least one backend");
            }
            (None, Some(list)) => {
                for entry in list.get_ref() {
                    let weight = self.weight(entry);
                    named.push((&entry.name, weight));
                }
            }
            (Some(one), Some(_)) => self.error(
                one.span(),
                "a route takes `backend` or `backends`, not both",
            ),
            (None, None) => self.error(
                route.span(),
                "a route needs `backend = \"name\"` or `backends = [{ name = \"name\" }, ...]`",
            ),
        }
        let mut seen = HashSet::new();
        let mut check = |v: &mut Self, name: &Spanned<String>| {
            v.known_backend(name, raw);
            if !seen.insert(name.get_ref().clone()) {
                v.error(
                    name.span(),
                    format!("backend `{}` appears twice in this route", name.get_ref()),
                );
            }
        };
        let mut weighted = Vec::with_capacity(named.len());
        for (name, weight) in named {
            check(self, name);
            weighted.push(WeightedBackend {
                name: name.get_ref().clone(),
                weight,
            });
        }
        let mut fallback = Vec::new();
        for name in r.fallback.iter().flatten() {
            check(self, name);
            fallback.push(name.get_ref().clone());
        }
        if weighted.len() + fallback.len() > MAX_ROUTE_BACKENDS {
            self.error(
                route.span(),
                format!("a route may use at most {MAX_ROUTE_BACKENDS} backends"),
            );
        }
        (weighted, fallback)
    }

    fn weight(&mut self, entry: &RawWeightedBackend) -> u32 {
        match &entry.weight {
            Some(w) if !(1..=MAX_WEIGHT).contains(w.get_ref()) => {
                self.error(
                    w.span(),
                    format!("`weight` must be between 1 and {MAX_WEIGHT}"),
                );
                1
            }
            Some(w) => u32::try_from(*w.get_ref()).unwrap_or(1),
            None => 1,
        }
    }

    fn known_backend(&mut self, name: &Spanned<String>, raw: &RawConfig) {
        if raw.backends.contains_key(name.get_ref()) {
            return;
        }
        let known: Vec<&str> = raw.backends.keys().map(String::as_str).collect();
        self.error(
            name.span(),
            format!(
                "unknown backend `{}` (defined: {})",
                name.get_ref(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
    }

    fn max_attempts(&mut self, r: &RawRoute, backends: usize) -> usize {
        // Each backend is tried at most once per request, so more attempts than backends
        // would never be made.
        let most = backends.max(1);
        match &r.max_attempts {
            Some(n)
                if *n.get_ref() < 1
                    || usize::try_from(*n.get_ref()).unwrap_or(usize::MAX) > most =>
            {
                self.error(
                    n.span(),
                    format!("`max_attempts` must be between 1 and the route's {most} backend(s)"),
                );
                most
            }
            Some(n) => usize::try_from(*n.get_ref()).unwrap_or(most),
            None => most,
        }
    }

    fn retry_budget(&mut self, r: &RawRoute) -> u32 {
        match &r.retry_budget {
            Some(n) if !(0..=MAX_RETRY_BUDGET).contains(n.get_ref()) => {
                self.error(
                    n.span(),
                    format!("`retry_budget` must be a percentage between 0 and {MAX_RETRY_BUDGET}"),
                );
                DEFAULT_RETRY_BUDGET
            }
            Some(n) => u32::try_from(*n.get_ref()).unwrap_or(DEFAULT_RETRY_BUDGET),
            None => DEFAULT_RETRY_BUDGET,
        }
    }

    fn upstream_models(
        &mut self,
        r: &RawRoute,
        backends: &[WeightedBackend],
        fallback: &[String],
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (backend, model) in r.upstream_models.iter().flatten() {
            let in_route = backends.iter().any(|b| &b.name == backend)
                || fallback.iter().any(|f| f == backend);
            if !in_route {
                self.error(
                    model.span(),
                    format!("`upstream_models` names `{backend}`, which this route does not use"),
                );
            } else if model.get_ref().is_empty() {
                self.error(model.span(), "an upstream model name must not be empty");
            } else {
                out.insert(backend.clone(), model.get_ref().clone());
            }
        }
        out
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "sk-test".to_owned())
    }

    fn errors(source: &str) -> Vec<String> {
        match validate(source, "routes.toml", &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
[backends.oa]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key = "${KEY}"
headers = { "OpenAI-Organization" = "${ORG:-}" }
[backends.e]
kind = "echo"
[[routes]]
prefix = "openai/"
backend = "oa"
models = ["gpt-4o"]
[[routes]]
prefix = ""
backend = "e"
strip_prefix = false
"#;

    #[test]
    fn a_good_file_resolves_everything() {
        let config = validate(GOOD, "routes.toml", &env).unwrap();
        assert_eq!(config.server.listen.unwrap().port(), 9000);
        assert_eq!(config.routes.len(), 2);
        assert!(config.routes[0].strip_prefix && !config.routes[1].strip_prefix);
        let BackendSettings::OpenAI(http) = &config.backends[1].settings else {
            panic!()
        };
        assert_eq!(http.api_key_source.as_deref(), Some("${KEY}"));
        assert_eq!(http.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn each_fault_is_reported_at_its_line_and_column() {
        let src = "[backends.a]\nkind = \"openai\"\nbase_url = \"ftp://x\"\napi_key = \"${NOPE}\"\nconnect_timeout = \"soon\"\n[[routes]]\nprefix = \"a/\"\nbackend = \"b\"\n[[routes]]\nprefix = \"a/\"\nbackend = \"a\"\n";
        let errs = errors(src);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes.toml:3:12: `base_url` must be an http")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes.toml:4:11: environment variable `NOPE` is not set")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes.toml:5:19: `connect_timeout` must be a duration")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes.toml:8:11: unknown backend `b`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes.toml:10:10: duplicate prefix `a/`")),
            "{errs:#?}"
        );
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }

    #[test]
    fn kind_ollama_takes_the_http_keys() {
        let src = "[backends.local]\nkind = \"ollama\"\nbase_url = \"http://127.0.0.1:11434\"\napi_key = \"${KEY}\"\nrequest_timeout = \"30s\"\n[[routes]]\nprefix = \"local/\"\nbackend = \"local\"\n";
        let config = validate(src, "routes.toml", &env).unwrap();
        let BackendSettings::Ollama(http) = &config.backends[0].settings else {
            panic!("{:?}", config.backends[0].settings)
        };
        assert_eq!(http.base_url.as_str(), "http://127.0.0.1:11434/");
        assert_eq!(http.request_timeout, Duration::from_secs(30));
        assert_eq!(config.backends[0].settings.kind(), "ollama");
        let errs = errors("[backends.local]\nkind = \"ollama\"\n");
        assert!(
            errs[0].contains("kind `ollama` needs a `base_url`"),
            "{errs:?}"
        );
    }

    #[test]
    fn responses_is_native_or_translate_and_only_for_kind_openai() {
        let backend = |keys: &str| {
            format!("[backends.b]\n{keys}\n[[routes]]\nprefix = \"b/\"\nbackend = \"b\"\n")
        };
        let mode = |value: &str| {
            let src = backend(&format!(
                "kind = \"openai\"\nbase_url = \"http://h/v1\"\n{value}"
            ));
            match validate(&src, "routes.toml", &env).unwrap().backends[0].settings {
                BackendSettings::OpenAI(ref http) => http.responses,
                ref other => panic!("{other:?}"),
            }
        };
        assert_eq!(mode(""), ResponsesMode::Native);
        assert_eq!(mode("responses = \"native\""), ResponsesMode::Native);
        assert_eq!(mode("responses = \"translate\""), ResponsesMode::Translate);
        let errs = errors(&backend(
            "kind = \"openai\"\nbase_url = \"http://h/v1\"\nresponses = \"yes\"",
        ));
        assert_eq!(
            errs,
            ["routes.toml:4:13: `responses` must be \"native\" or \"translate\", not `yes`"]
        );
        for kind in [
            "kind = \"ollama\"\nbase_url = \"http://h\"",
            "kind = \"echo\"",
        ] {
            let errs = errors(&backend(&format!("{kind}\nresponses = \"translate\"")));
            assert!(
                errs.len() == 1 && errs[0].contains("`responses` does not apply to kind"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn limits_and_timeouts_have_defaults_and_refuse_nonsense_at_their_position() {
        let config = validate(GOOD, "routes.toml", &env).unwrap();
        assert_eq!(config.server.max_buffered_body_bytes, 256 * 1024 * 1024);
        assert_eq!(config.server.max_concurrent_requests, 4096);
        assert_eq!(config.server.request_body_timeout, Duration::from_secs(60));
        let BackendSettings::OpenAI(http) = &config.backends[1].settings else {
            panic!()
        };
        assert_eq!(http.first_byte_timeout, Duration::from_secs(600));
        assert_eq!(http.idle_timeout, Duration::from_secs(120));
        let src = "[server]\nmax_concurrent_requests = 0\nrequest_head_timeout = \"0s\"\n\
                   [backends.e]\nkind = \"echo\"\nidle_timeout = \"1s\"\n\
                   [[routes]]\nprefix = \"\"\nbackend = \"e\"\n";
        let errs = errors(src);
        assert_eq!(
            errs,
            [
                "routes.toml:2:27: `max_concurrent_requests` must be a positive number",
                "routes.toml:3:24: `request_head_timeout` must be longer than zero",
                "routes.toml:6:16: `idle_timeout` does not apply to kind `echo`",
            ],
            "{errs:#?}"
        );
    }

    #[test]
    fn unknown_keys_and_syntax_errors_have_positions() {
        let errs = errors("[backends.e]\nkind = \"echo\"\nbase_ulr = \"x\"\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("routes.toml:3:1: unknown field `base_ulr`"),
            "{errs:?}"
        );
        let errs = errors("[server]\nlisten = \n");
        assert!(errs[0].starts_with("routes.toml:2:"), "{errs:?}");
        let errs = errors("[backends.x]\nkind = \"grpc\"\n");
        assert!(errs[0].contains("unknown kind `grpc`"), "{errs:?}");
        assert!(errs[0].contains("ollama"), "{errs:?}");
    }

    #[test]
    fn an_empty_file_is_refused_rather_than_serving_nothing() {
        let errs = errors("");
        assert_eq!(
            errs,
            ["routes.toml:1:1: the file defines no [[routes]]; every request would be refused"]
        );
    }

    #[test]
    fn a_redis_backend_takes_its_url_from_the_environment_and_refuses_http_keys() {
        let env = |name: &str| (name == "REDIS_URL").then(|| "redis://:pw@redis:6379/0".to_owned());
        let good = "[backends.dc]\nkind = \"redis\"\nredis_url = \"${REDIS_URL}\"\ntimeout = \"90s\"\n[[routes]]\nprefix = \"dc/\"\nbackend = \"dc\"\n";
        let config = validate(good, "routes.toml", &env).unwrap();
        let BackendSettings::Redis(r) = &config.backends[0].settings else {
            panic!()
        };
        assert_eq!(r.timeout, Duration::from_secs(90));
        assert_eq!(r.url_source, "${REDIS_URL}");
        assert!(
            !format!("{r:?}").contains("pw"),
            "the password never prints"
        );

        let errs = errors(
            "[backends.dc]\nkind = \"redis\"\nredis_url = \"redis://r\"\nbase_url = \"http://x\"\napi_key = \"k\"\n",
        );
        assert!(
            errs.iter()
                .any(|e| e
                    .starts_with("routes.toml:4:12: `base_url` does not apply to kind `redis`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes.toml:5:11: `api_key` does not apply")),
            "{errs:?}"
        );
        let errs = errors("[backends.dc]\nkind = \"redis\"\n");
        assert!(errs[0].contains("needs a `redis_url`"), "{errs:?}");
        let errs = errors(
            "[backends.dc]\nkind = \"redis\"\nredis_url = \"http://r\"\ntimeout = \"soon\"\n[[routes]]\nprefix = \"\"\nbackend = \"dc\"\n",
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("routes.toml:3:13: `redis_url` must be a redis://")),
            "{errs:?}"
        );
        let errs = errors(
            "[backends.o]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nredis_url = \"redis://r\"\n",
        );
        assert!(
            errs[0].starts_with("routes.toml:4:13: `redis_url` does not apply to kind `openai`"),
            "{errs:?}"
        );
    }

    const FLEET: &str = r#"
[backends.a]
kind = "openai"
base_url = "http://a/v1"
pool_idle_timeout = "2s"
eject_after = 2
eject_cooldown = "1s"
[backends.b]
kind = "openai"
base_url = "http://b/v1"
[backends.dc]
kind = "redis"
redis_url = "redis://r"
pickup_timeout = "500ms"
[[routes]]
prefix = "llama/"
backends = [{ name = "a", weight = 3 }, { name = "dc" }]
fallback = ["b"]
max_attempts = 2
upstream_models = { b = "gpt-4o-mini" }
[[routes]]
prefix = "one/"
backend = "a"
"#;

    #[test]
    fn a_route_takes_weighted_backends_fallbacks_attempts_and_model_names() {
        let config = validate(FLEET, "routes.toml", &env).unwrap();
        let r = &config.routes[0];
        let weighted: Vec<(&str, u32)> = r
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.weight))
            .collect();
        assert_eq!(weighted, [("a", 3), ("dc", 1)]);
        assert_eq!(r.fallback, ["b"]);
        assert_eq!(r.max_attempts, 2);
        assert_eq!(r.upstream_models["b"], "gpt-4o-mini");
        // The one-backend form, with every attempt allowed by default.
        let one = &config.routes[1];
        assert_eq!((one.backends.len(), one.max_attempts), (1, 1));
        let a = &config.backends[0];
        assert_eq!(
            (a.health.eject_after, a.health.cooldown),
            (2, Duration::from_secs(1))
        );
        let BackendSettings::OpenAI(http) = &a.settings else {
            panic!()
        };
        assert_eq!(http.pool_idle_timeout, Duration::from_secs(2));
        let BackendSettings::Redis(redis) = &config.backends[2].settings else {
            panic!()
        };
        assert_eq!(redis.pickup_timeout, Duration::from_millis(500));
    }

    #[test]
    fn each_fault_of_a_several_backend_route_is_named_at_its_position() {
        let src = "[backends.a]\nkind = \"echo\"\n[backends.r]\nkind = \"redis\"\nredis_url = \"redis://r\"\npool_idle_timeout = \"1s\"\n[[routes]]\nprefix = \"x/\"\nbackend = \"a\"\nbackends = [{ name = \"a\" }]\n[[routes]]\nprefix = \"y/\"\nbackends = [{ name = \"a\", weight = 0 }, { name = \"nope\" }]\nfallback = [\"a\"]\nmax_attempts = 4\nupstream_models = { r = \"m\" }\n[[routes]]\nprefix = \"z/\"\n";
        let errs = errors(src);
        let expected = [
            "routes.toml:6:21: `pool_idle_timeout` does not apply to kind `redis`",
            "routes.toml:9:11: a route takes `backend` or `backends`, not both",
            "routes.toml:13:36: `weight` must be between 1 and 1000",
            "routes.toml:13:50: unknown backend `nope`",
            "routes.toml:14:13: backend `a` appears twice in this route",
            "routes.toml:15:16: `max_attempts` must be between 1 and the route's 3 backend(s)",
            "routes.toml:16:25: `upstream_models` names `r`, which this route does not use",
            "routes.toml:17:1: a route needs `backend",
        ];
        for e in expected {
            assert!(errs.iter().any(|got| got.starts_with(e)), "{e}\n{errs:#?}");
        }
        assert_eq!(errs.len(), expected.len(), "{errs:#?}");
    }
}
