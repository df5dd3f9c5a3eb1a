//! Shared HTTP transport of the `openai`, `ollama` and `proxy` kinds: a plain `http://` upstream
//! through the per-thread HTTP/1.1 pool (`h1_pool`), any other (TLS, HTTP/2, a proxy from the
//! environment) through pooled reqwest clients, one per thread (`thread_client`); header
//! filtering both ways, timeouts, and upstream failures mapped to errors.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{
    HeaderMap as ActixHeaders, HeaderName as ActixName, HeaderValue as ActixValue,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::BoxFuture;
use reqwest::header::{ACCEPT_ENCODING, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;

use super::h1_pool::{H1Pool, SendError};
use super::response::UpstreamResponse;
use super::thread_client::{self, ThreadClients};
use super::timing::{Pace, Timeouts};
use super::{ByteStream, Endpoint, UpstreamAuth, upstream_path};
use crate::adapters::stream::Reads;
use crate::config::HttpSettings;
use crate::error::GatewayError;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus those the
/// gateway sets itself. None of them is forwarded in either direction, over HTTP or Redis.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Request headers not forwarded upstream: the gateway asks for identity encoding so that it
/// can parse SSE frames, and HTTP/2 pseudo-state is its own.
const NOT_FORWARDED_UP: &[&str] = &["accept-encoding", "expect"];

/// The largest error body or model list read from an upstream (they are a few KiB).
pub(crate) const MAX_SMALL_BODY: usize = 4 * 1024 * 1024;

/// The largest successful body the gateway holds to convert or parse (Ollama answers, model
/// lists); large embedding batches in JSON run to tens of MiB.
pub(crate) const MAX_HELD_BODY: usize = 256 * 1024 * 1024;

/// Whether a header describes one connection (never forwarded, in either direction).
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Whether a client request header is one an upstream request must not carry (hop-by-hop, or
/// an encoding/expectation the relaying client sets itself).
pub(crate) fn is_not_forwarded_up(name: &str) -> bool {
    is_hop_by_hop(name) || NOT_FORWARDED_UP.contains(&name)
}

/// The header names a message's `Connection` headers list (RFC 9110 §7.6.1): hop-by-hop for
/// that message, so never forwarded either, in either direction. Lowercase; empty, without
/// allocating, when there is no such header.
pub(crate) fn connection_options<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut names = Vec::new();
    for value in values {
        for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if !token.is_empty() {
                names.push(String::from_utf8_lossy(token).to_ascii_lowercase());
            }
        }
    }
    names
}

/// Why a request failed, from an error's cause chain (which, unlike reqwest's own message,
/// does not repeat the URL).
pub(crate) fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut message = String::new();
    let mut source = err.source();
    while let Some(cause) = source {
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if message.is_empty() {
        message = "the request failed".to_owned();
    }
    message
}

/// The one way an upstream HTTP client is built, for the gateway's backends and the worker
/// alike: `connect_timeout`, no Nagle delay, and no redirects (a redirect would carry the
/// credential elsewhere).
pub(crate) fn client_builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
}

/// The one header filter of requests going upstream (the gateway's backends and the worker):
/// appends to `out` the `headers` that may go, that is all but hop-by-hop ones, those their
/// `connection` values name, and `Authorization` unless `keep_authorization`.
pub(crate) fn forward_headers<'a>(
    out: &mut HeaderMap,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    connection: impl IntoIterator<Item = &'a [u8]>,
    keep_authorization: bool,
) {
    let named = connection_options(connection);
    for (name, value) in headers {
        if is_not_forwarded_up(name)
            || (name == "authorization" && !keep_authorization)
            || named.iter().any(|x| x == name)
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            out.append(name, value);
        }
    }
}

/// The one URL rule of upstream requests: `base` with `path_and_query` (query included)
/// appended to its path `base_path` (no trailing `/`); an empty path is the base URL itself.
/// Refused, rather than resolved, when the path could leave the base URL (a `.`/`..` segment
/// or a backslash, in any encoding): the upstream's credential goes with the request.
pub(crate) fn join_below(
    base: &url::Url,
    base_path: &str,
    path_and_query: &str,
) -> Result<url::Url, &'static str> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    if !path.is_empty() {
        upstream_path::check(path)?;
    }
    let mut url = base.clone();
    let mut full = String::with_capacity(base_path.len() + path.len());
    full.push_str(base_path);
    full.push_str(path);
    url.set_path(&full);
    url.set_query(query);
    if !upstream_path::is_under(&url, base_path) {
        return Err("it leaves the base URL");
    }
    Ok(url)
}

/// A configured HTTP upstream.
#[derive(Debug)]
pub struct HttpUpstream {
    name: Arc<str>,
    transport: Transport,
    /// Parsed once: building each request's URL from it skips URL and IDNA parsing of the host.
    base: url::Url,
    /// `base`'s path without a trailing `/` (e.g. `/v1`), joined with each request's path.
    base_path: String,
    /// The URLs of the typed endpoints, joined once: joining is a URL parse per request.
    joined: Vec<Joined>,
    api_key: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeouts: Timeouts,
}

/// One typed endpoint's URL, joined once.
#[derive(Debug)]
struct Joined {
    path: &'static str,
    url: url::Url,
    /// Its path and query, as an HTTP/1.1 request line takes them.
    origin: http::Uri,
}

/// One request to send, whichever client carries it.
struct Outgoing<'a> {
    method: reqwest::Method,
    /// Below the base URL, query included.
    path: &'a str,
    body: Bytes,
    client_headers: &'a ActixHeaders,
    auth: UpstreamAuth<'a>,
}

/// Which client carries a backend's requests.
#[derive(Debug)]
enum Transport {
    /// A plain `http://` upstream, no proxy: the per-thread HTTP/1.1 pool.
    Local {
        pool: Arc<H1Pool>,
        /// `host[:port]` of the base URL.
        host: HeaderValue,
    },
    /// Anything else (TLS and HTTP/2 by ALPN, a proxy from the environment, a user in the
    /// URL): reqwest.
    Reqwest {
        clients: Box<ThreadClients>,
        /// The same settings without a pool: the one retry after a keep-alive race goes on a
        /// new connection, never on another pooled one that may be just as stale.
        fresh: reqwest::Client,
    },
}

/// Whether the environment names an HTTP proxy (reqwest's variables): then plain `http://`
/// upstreams go through reqwest, which honours it and `NO_PROXY`.
fn proxy_in_env() -> bool {
    ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

impl Transport {
    fn new(name: &str, settings: &HttpSettings) -> Result<Self, String> {
        let base = &settings.base_url;
        if base.scheme() == "http"
            && base.username().is_empty()
            && base.password().is_none()
            && !proxy_in_env()
        {
            let mut host = base.host_str().unwrap_or_default().to_owned();
            if let Some(port) = base.port() {
                host.push_str(&format!(":{port}"));
            }
            if let (Some(pool), Ok(host)) = (
                H1Pool::new(base, settings.connect_timeout, settings.pool_idle_timeout),
                HeaderValue::from_str(&host),
            ) {
                return Ok(Transport::Local { pool, host });
            }
        }
        let connect_timeout = settings.connect_timeout;
        let tls = thread_client::shared_tls().map_err(|e| format!("backend `{name}`: {e}"))?;
        let builder =
            move || client_builder(connect_timeout).tls_backend_preconfigured(tls.clone());
        let refused =
            |e: reqwest::Error| format!("backend `{name}`: cannot build the HTTP client: {e}");
        let fresh = builder()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(refused)?;
        let pool_idle_timeout = settings.pool_idle_timeout;
        let clients =
            ThreadClients::new(move || builder().pool_idle_timeout(pool_idle_timeout).build())
                .map_err(refused)?;
        Ok(Transport::Reqwest {
            clients: Box::new(clients),
            fresh,
        })
    }
}

impl HttpUpstream {
    /// Builds the client for one backend.
    pub fn new(name: &str, settings: &HttpSettings) -> Result<Self, String> {
        let transport = Transport::new(name, settings)?;
        let api_key = match &settings.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                    .map_err(|_| {
                    format!("backend `{name}`: `api_key` is not a valid header value")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let headers = settings
            .headers
            .iter()
            .filter_map(|(n, v)| {
                let name = HeaderName::from_bytes(n.as_str().as_bytes()).ok()?;
                let mut value = HeaderValue::from_bytes(v.as_bytes()).ok()?;
                value.set_sensitive(true);
                Some((name, value))
            })
            .collect();
        let base_path = settings.base_url.path().trim_end_matches('/').to_owned();
        let joined = [
            Endpoint::ChatCompletions,
            Endpoint::Embeddings,
            Endpoint::Completions,
        ]
        .iter()
        .filter_map(|endpoint| {
            let path = endpoint.static_path()?;
            let url = join_below(&settings.base_url, &base_path, path).ok()?;
            let origin = http::Uri::try_from(&url[url::Position::BeforePath..]).ok()?;
            Some(Joined { path, url, origin })
        })
        .collect();
        Ok(HttpUpstream {
            name: Arc::from(name),
            transport,
            base: settings.base_url.clone(),
            base_path,
            joined,
            api_key,
            headers,
            timeouts: Timeouts::new(settings),
        })
    }

    /// The backend's name, for errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How a response body reaches the task that reads it.
    pub fn reads(&self) -> Reads {
        match self.transport {
            Transport::Local { .. } => Reads::Direct,
            Transport::Reqwest { .. } => Reads::HandedOver,
        }
    }

    /// Sends a request and waits for the response headers, within `first_byte_timeout` (and,
    /// unless a stream was asked for, within `request_timeout`).
    ///
    /// A pooled connection that the upstream closed as it sat idle fails the request with
    /// "connection closed before message completed" and no response byte: the upstream never
    /// took the request in. That request is sent once more, on a new connection, within the
    /// same deadline.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Bytes,
        client_headers: &ActixHeaders,
        stream: bool,
        auth: UpstreamAuth<'_>,
    ) -> Result<UpstreamResponse, GatewayError> {
        let outgoing = Outgoing {
            method,
            path,
            body,
            client_headers,
            auth,
        };
        match &self.transport {
            Transport::Local { pool, host } => self.send_direct(pool, host, outgoing, stream).await,
            Transport::Reqwest { clients, fresh } => {
                self.send_reqwest(clients, fresh, outgoing, stream).await
            }
        }
    }

    /// `send` through this thread's HTTP/1.1 pool.
    async fn send_direct(
        &self,
        pool: &Arc<H1Pool>,
        host: &HeaderValue,
        out: Outgoing<'_>,
        stream: bool,
    ) -> Result<UpstreamResponse, GatewayError> {
        let uri = self.origin(out.path)?;
        // The request is built once; again only for the rare resend.
        let request = || {
            let mut request = http::Request::new(out.body.clone());
            *request.method_mut() = out.method.clone();
            *request.uri_mut() = uri.clone();
            let headers = request.headers_mut();
            *headers = self.upstream_headers(out.client_headers, out.auth);
            // A `Host` the backend's `headers` set wins, as it does through reqwest.
            headers
                .entry(http::header::HOST)
                .or_insert_with(|| host.clone());
            request
        };
        let started = tokio::time::Instant::now();
        let deadline = self.timeouts.headers_deadline(started, stream);
        crate::observe::exchange::sent();
        match tokio::time::timeout_at(deadline, pool.send(request)).await {
            Ok(Ok((head, body))) => {
                crate::observe::exchange::answered();
                Ok(UpstreamResponse::local(head, body, started))
            }
            Ok(Err(SendError::ConnectTimeout)) => Err(self.timeout("a connection")),
            Ok(Err(err)) => Err(GatewayError::UpstreamUnreachable {
                backend: self.name.to_string(),
                message: err.describe(),
            }),
            Err(_) => Err(self.timeout("response headers")),
        }
    }

    /// `send` through this thread's reqwest client.
    async fn send_reqwest(
        &self,
        clients: &ThreadClients,
        fresh: &reqwest::Client,
        out: Outgoing<'_>,
        stream: bool,
    ) -> Result<UpstreamResponse, GatewayError> {
        // The URL is moved into the first request (no copy on the hot path) and built again
        // only for the rare resend.
        let request = |client: &reqwest::Client, url: url::Url| {
            client
                .request(out.method.clone(), url)
                .headers(self.upstream_headers(out.client_headers, out.auth))
                .body(out.body.clone())
                .send()
        };
        // This thread's client, built here on its first request: before the clock starts, so
        // that building it never eats into the upstream's time.
        let client = clients.get();
        let started = tokio::time::Instant::now();
        let deadline = self.timeouts.headers_deadline(started, stream);
        crate::observe::exchange::sent();
        let first = request(client, self.url(out.path)?);
        let sent = match tokio::time::timeout_at(deadline, first).await {
            Ok(Err(err)) if is_stale_connection(&err) => {
                tracing::debug!(backend = %self.name, "pooled connection closed under the request; resending on a new one");
                let again = request(fresh, self.url(out.path)?);
                tokio::time::timeout_at(deadline, again).await
            }
            sent => sent,
        };
        match sent {
            Ok(Ok(response)) => {
                crate::observe::exchange::answered();
                Ok(UpstreamResponse::reqwest(response, started))
            }
            Ok(Err(err)) => Err(self.map_error(&err, "response headers")),
            Err(_) => Err(self.timeout("response headers")),
        }
    }

    /// `base_url` joined with a path below `/v1` (query included). Refused, rather than
    /// resolved, when the path could leave the base URL: the backend's credential goes with it.
    fn url(&self, path_and_query: &str) -> Result<url::Url, GatewayError> {
        if let Some(joined) = self.joined.iter().find(|j| j.path == path_and_query) {
            return Ok(joined.url.clone());
        }
        join_below(&self.base, &self.base_path, path_and_query).map_err(|reason| {
            GatewayError::UnsafePath {
                path: path_and_query.to_owned(),
                reason,
            }
        })
    }

    /// The path and query of `url`, as a request line takes them.
    fn origin(&self, path_and_query: &str) -> Result<http::Uri, GatewayError> {
        if let Some(joined) = self.joined.iter().find(|j| j.path == path_and_query) {
            return Ok(joined.origin.clone());
        }
        let url = self.url(path_and_query)?;
        http::Uri::try_from(&url[url::Position::BeforePath..]).map_err(|_| {
            GatewayError::UnsafePath {
                path: path_and_query.to_owned(),
                reason: "it is not a valid request target",
            }
        })
    }

    /// The client's headers minus hop-by-hop ones, with the credential `auth` picks and the
    /// backend's headers applied.
    fn upstream_headers(&self, client: &ActixHeaders, auth: UpstreamAuth<'_>) -> HeaderMap {
        let project_key = match auth {
            UpstreamAuth::Client => None,
            UpstreamAuth::Gateway(project) => project,
        };
        let keep_client_auth = matches!(auth, UpstreamAuth::Client) && self.api_key.is_none();
        let mut out = HeaderMap::with_capacity(client.len() + self.headers.len() + 1);
        forward_headers(
            &mut out,
            client.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            client.get_all("connection").map(|v| v.as_bytes()),
            keep_client_auth,
        );
        // The gateway frames streams itself, so it asks for the bytes as they are (and decodes
        // gzip from an upstream that compresses anyway).
        out.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Some(key) = project_key.or(self.api_key.as_ref()) {
            out.insert(AUTHORIZATION, key.clone());
        }
        for (name, value) in &self.headers {
            out.insert(name.clone(), value.clone());
        }
        out
    }

    /// Reads a whole response body that the gateway must hold (to convert or to parse it),
    /// bounded in time like any non-streamed body and in size by `limit`: an upstream that
    /// sends more is a protocol error, not a reason to grow memory without bound.
    pub async fn read_body(
        &self,
        response: UpstreamResponse,
        limit: usize,
    ) -> Result<Bytes, GatewayError> {
        let too_large = || GatewayError::UpstreamProtocol {
            backend: self.name.to_string(),
            message: format!("the response body exceeds {limit} bytes"),
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut chunks =
            std::pin::pin!(self.timeouts.body(self.name.clone(), response, Pace::Whole));
        // Most bodies arrive in one read: keep it as is, copy only when a second arrives.
        let mut first: Option<Bytes> = None;
        let mut rest = BytesMut::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            let held = first.as_ref().map_or(0, Bytes::len) + rest.len();
            if held + chunk.len() > limit {
                return Err(too_large());
            }
            match &first {
                None => first = Some(chunk),
                Some(f) => {
                    if rest.is_empty() {
                        rest.extend_from_slice(f);
                    }
                    rest.extend_from_slice(&chunk);
                }
            }
        }
        Ok(if rest.is_empty() {
            first.unwrap_or_default()
        } else {
            rest.freeze()
        })
    }

    /// The response body as a stream of chunks, its reads bounded as `pace` says.
    pub fn body_stream(&self, response: UpstreamResponse, pace: Pace) -> ByteStream {
        Box::pin(self.timeouts.body(self.name.clone(), response, pace))
    }

    /// A non-2xx response turned into a verbatim pass-through error. Boxed: error answers are
    /// rare, and reading one's body inline would make every send's future that much larger,
    /// and a future is copied whole each time it is moved, on every request.
    pub fn status_error(&self, response: UpstreamResponse) -> BoxFuture<'_, GatewayError> {
        Box::pin(async move {
            let status = status_of(&response);
            let headers = response_headers(response.headers());
            match self.read_body(response, MAX_SMALL_BODY).await {
                Ok(body) => GatewayError::UpstreamStatus {
                    status,
                    headers,
                    body,
                },
                Err(err) => err,
            }
        })
    }

    fn map_error(&self, err: &reqwest::Error, phase: &'static str) -> GatewayError {
        map_reqwest_error(&self.name, err, phase)
    }

    fn timeout(&self, phase: &'static str) -> GatewayError {
        GatewayError::UpstreamTimeout {
            backend: self.name.to_string(),
            phase,
        }
    }
}

/// Whether a request failed because its connection was closed before any response came back,
/// the signature of a keep-alive race (hyper's "connection closed before message completed").
/// When the close was seen before hyper started writing the request, hyper reports it as
/// canceled, the close its cause, and hands the request back: it never left, so it is resent
/// too (hyper-util resends it itself only from a reused connection, not from a new one that a
/// slow moment let the upstream close as idle). A refused connection is not one: it was never
/// established.
fn is_stale_connection(err: &reqwest::Error) -> bool {
    if err.is_connect() || err.is_timeout() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(hyper_err) = cause.downcast_ref::<hyper::Error>() {
            return hyper_err.is_incomplete_message() || hyper_err.is_canceled();
        }
        source = cause.source();
    }
    false
}

fn map_reqwest_error(backend: &str, err: &reqwest::Error, phase: &'static str) -> GatewayError {
    if err.is_timeout() {
        return GatewayError::UpstreamTimeout {
            backend: backend.to_owned(),
            phase: if err.is_connect() {
                "a connection"
            } else {
                phase
            },
        };
    }
    // The chain says why ("connection refused"); the URL is left out of the message.
    let message = cause_chain(err);
    GatewayError::UpstreamUnreachable {
        backend: backend.to_owned(),
        message,
    }
}

/// The upstream status as actix's type (the two `http` crate versions differ).
pub fn status_of(response: &UpstreamResponse) -> StatusCode {
    StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// Upstream response headers for the client, hop-by-hop ones (and those the upstream's
/// `Connection` names) removed.
pub fn response_headers(upstream: &HeaderMap) -> ActixHeaders {
    let mut out = ActixHeaders::with_capacity(upstream.len());
    let named = connection_options(upstream.get_all("connection").iter().map(|v| v.as_bytes()));
    for (name, value) in upstream {
        let n = name.as_str();
        if is_hop_by_hop(n) || named.iter().any(|x| x == n) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            ActixName::from_bytes(n.as_bytes()),
            ActixValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    out
}

/// The method as reqwest's type.
pub fn method_of(method: &actix_web::http::Method) -> reqwest::Method {
    reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::POST)
}

/// How a body that is relayed untouched is paced: an event stream is a stream, whatever the
/// request asked for.
pub fn pace_of(response: &UpstreamResponse) -> Pace {
    if is_event_stream(response) {
        Pace::Stream
    } else {
        Pace::Whole
    }
}

/// Whether a response is a server-sent event stream.
pub fn is_event_stream(response: &UpstreamResponse) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn upstream(base: &str) -> HttpUpstream {
        let settings = HttpSettings {
            base_url: url::Url::parse(base).unwrap(),
            api_key: None,
            api_key_source: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            pool_idle_timeout: Duration::from_secs(1),
            responses: Default::default(),
        };
        HttpUpstream::new("t", &settings).unwrap()
    }

    #[test]
    fn with_auth_on_the_project_key_wins_and_the_client_key_never_goes_upstream() {
        let mut keyed = upstream("http://h:1/v1");
        keyed.api_key = Some(HeaderValue::from_static("Bearer backend-key"));
        let plain = upstream("http://h:1/v1");
        let mut client = ActixHeaders::new();
        client.insert(
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::HeaderValue::from_static("Bearer sk-sy-client"),
        );
        let project = HeaderValue::from_static("Bearer project-key");
        let sent = |u: &HttpUpstream, auth| {
            u.upstream_headers(&client, auth)
                .get(AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        // Without [auth]: as before, the backend key replaces the client's, else it passes.
        assert_eq!(
            sent(&keyed, UpstreamAuth::Client).as_deref(),
            Some("Bearer backend-key")
        );
        assert_eq!(
            sent(&plain, UpstreamAuth::Client).as_deref(),
            Some("Bearer sk-sy-client")
        );
        // With [auth]: the project's key, else the backend's, else nothing; never the client's.
        let gateway = UpstreamAuth::Gateway(Some(&project));
        assert_eq!(sent(&keyed, gateway).as_deref(), Some("Bearer project-key"));
        assert_eq!(
            sent(&keyed, UpstreamAuth::Gateway(None)).as_deref(),
            Some("Bearer backend-key")
        );
        assert_eq!(sent(&plain, UpstreamAuth::Gateway(None)), None);
    }

    #[test]
    fn request_paths_join_below_the_base_path_without_doubling_slashes() {
        assert_eq!(
            upstream("http://h:1/v1")
                .url("/chat/completions")
                .unwrap()
                .as_str(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            upstream("http://h:1/v1/")
                .url("/files?purpose=batch")
                .unwrap()
                .as_str(),
            "http://h:1/v1/files?purpose=batch"
        );
        assert_eq!(
            upstream("https://h/proxy/openai/v1")
                .url("/models")
                .unwrap()
                .as_str(),
            "https://h/proxy/openai/v1/models"
        );
        assert_eq!(
            upstream("http://h").url("/embeddings").unwrap().as_str(),
            "http://h/embeddings"
        );
    }

    #[test]
    fn the_typed_endpoints_urls_joined_once_are_those_joined_per_request() {
        for base in [
            "http://h:1/v1",
            "http://h:1/v1/",
            "https://h/proxy/openai/v1",
            "http://h",
        ] {
            let up = upstream(base);
            assert_eq!(up.joined.len(), 3, "{base}");
            for Joined { path, url, origin } in &up.joined {
                let joined = join_below(&up.base, &up.base_path, path).unwrap();
                assert_eq!(url, &joined, "{base}{path}");
                assert_eq!(&up.url(path).unwrap(), url);
                assert_eq!(origin.to_string(), &joined[url::Position::BeforePath..]);
            }
        }
    }

    #[test]
    fn a_path_that_would_leave_the_base_url_is_refused_not_resolved() {
        let up = upstream("http://h:1/v1");
        for path in ["/../../admin/secret", "/%2e%2E/admin", "/..\\admin"] {
            assert!(
                matches!(up.url(path), Err(GatewayError::UnsafePath { .. })),
                "{path}"
            );
        }
    }
}
