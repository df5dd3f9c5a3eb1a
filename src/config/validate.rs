//! `RawConfig` → `Config`: parse URLs and durations, resolve `${ENV}`, cross-check names.
//!
//! Collects every error rather than stopping at the first, each as `file:line:col: message`, so
//! one run of `switchyard check` shows everything that is wrong.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use secrecy::SecretString;
use toml::Spanned;
use url::Url;

mod auth;

use super::raw::{RawBackend, RawConfig, RawRoute, RawServer};
use super::{
    BackendConfig, BackendSettings, Config, ConfigError, ConfigErrors, HttpSettings, RedisSettings,
    RouteConfig, ServerConfig, env,
};

const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(600);

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
    let backends: Vec<BackendConfig> = raw
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
    let store = v.store(raw.store.as_ref(), auth.is_some());
    if v.errors.is_empty() {
        Ok(Config {
            server,
            backends,
            routes,
            store,
            auth: auth.flatten(),
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
        let max_body_bytes = match &raw.max_body_bytes {
            Some(n) if *n.get_ref() <= 0 => {
                self.error(
                    n.span(),
                    "`max_body_bytes` must be a positive number of bytes",
                );
                DEFAULT_MAX_BODY_BYTES
            }
            Some(n) => usize::try_from(*n.get_ref()).unwrap_or(usize::MAX),
            None => DEFAULT_MAX_BODY_BYTES,
        };
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
        ServerConfig {
            listen,
            max_body_bytes,
            default_backend,
            shutdown_timeout,
            workers,
            tls,
        }
    }

    fn backend(&mut self, name: &str, raw: &Spanned<RawBackend>) -> Option<BackendConfig> {
        let backend = raw.get_ref();
        let kind = backend.kind.get_ref().as_str();
        let settings = match kind {
            "openai" | "proxy" | "ollama" => {
                self.forbid(&backend.redis_url, "redis_url", kind);
                self.forbid(&backend.timeout, "timeout", kind);
                let http = self.http_settings(name, backend)?;
                match kind {
                    "openai" => BackendSettings::OpenAI(http),
                    "ollama" => BackendSettings::Ollama(http),
                    _ => BackendSettings::Proxy(http),
                }
            }
            "echo" => {
                self.forbid(&backend.base_url, "base_url", kind);
                self.forbid(&backend.api_key, "api_key", kind);
                self.forbid(&backend.connect_timeout, "connect_timeout", kind);
                self.forbid(&backend.request_timeout, "request_timeout", kind);
                self.forbid(&backend.redis_url, "redis_url", kind);
                self.forbid(&backend.timeout, "timeout", kind);
                if backend.headers.is_some() {
                    self.error(
                        raw.span(),
                        format!("backend `{name}`: `headers` does not apply to kind `echo`"),
                    );
                }
                BackendSettings::Echo
            }
            "redis" => BackendSettings::Redis(self.redis_settings(name, raw)?),
            other => {
                self.error(
                    backend.kind.span(),
                    format!("backend `{name}`: unknown kind `{other}` (expected one of: openai, ollama, proxy, echo, redis)"),
                );
                return None;
            }
        };
        Some(BackendConfig {
            name: name.to_owned(),
            settings,
        })
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
                self.error(
                    base.span(),
                    format!(
                        "`base_url` must be an http:// or https:// URL with a host, not `{url}`"
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
            self.resolve(key)
                .map(|value| (SecretString::from(value), key.get_ref().clone()))
        });
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
        let connect_timeout = self.duration(raw.connect_timeout.as_ref(), "connect_timeout");
        let request_timeout = self.duration(raw.request_timeout.as_ref(), "request_timeout");
        Some(HttpSettings {
            base_url: base_url?,
            api_key: api_key.as_ref().map(|(secret, _)| secret.clone()),
            api_key_source: api_key.map(|(_, source)| source),
            headers,
            connect_timeout: connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        })
    }

    fn redis_settings(&mut self, name: &str, raw: &Spanned<RawBackend>) -> Option<RedisSettings> {
        let backend = raw.get_ref();
        // The worker owns the inference server's address and credential: none of the HTTP keys
        // has a meaning on the gateway side of the queue.
        self.forbid(&backend.base_url, "base_url", "redis");
        self.forbid(&backend.api_key, "api_key", "redis");
        self.forbid(&backend.connect_timeout, "connect_timeout", "redis");
        self.forbid(&backend.request_timeout, "request_timeout", "redis");
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
            if !raw.backends.contains_key(r.backend.get_ref()) {
                let known: Vec<&str> = raw.backends.keys().map(String::as_str).collect();
                self.error(
                    r.backend.span(),
                    format!(
                        "unknown backend `{}` (defined: {})",
                        r.backend.get_ref(),
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
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
            routes.push(RouteConfig {
                prefix: prefix.clone(),
                backend: r.backend.get_ref().clone(),
                strip_prefix: r.strip_prefix.unwrap_or(true),
                models,
                discover: r.discover.unwrap_or(false),
            });
        }
        routes
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
}
