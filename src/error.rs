//! `GatewayError`: every failure a client can see, grouped by whose fault it is, mapped to an
//! HTTP status and an OpenAI error body in exactly one place (`to_openai`).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpResponse, ResponseError};
use bytes::Bytes;

use crate::schema::ErrorBody;

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    // --- the client's fault ---
    /// The body is not JSON.
    #[error("the request body is not valid JSON: {message}")]
    InvalidJson {
        /// The parser's message.
        message: String,
    },
    /// The JSON does not fit the schema.
    #[error("invalid value{}: {message}", param.as_deref().map(|p| format!(" for `{p}`")).unwrap_or_default())]
    InvalidField {
        /// Path of the field at fault (`messages[0].content`).
        param: Option<String>,
        /// What is wrong with it.
        message: String,
    },
    /// No route matches the model.
    #[error("the model `{model}` does not exist or no route serves it")]
    ModelNotFound {
        /// The model the client asked for.
        model: String,
    },
    /// The body exceeds `[server] max_body_bytes`.
    #[error("the request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The client did not send its request (head or body) within the configured time.
    #[error("the request {phase} did not arrive within {limit_secs} s")]
    RequestTimeout {
        /// `body`.
        phase: &'static str,
        /// The configured limit, in whole seconds (at least 1 shown).
        limit_secs: u64,
    },
    /// A gateway-wide limit is reached (`max_concurrent_requests`, `max_buffered_body_bytes`):
    /// the request is refused at once, to be retried later.
    #[error("the gateway is at its limit of {limit}; retry later")]
    Overloaded {
        /// Which limit, as the routes.toml key names it.
        limit: &'static str,
    },
    /// No handler for this method and path.
    #[error("invalid URL ({method} {path})")]
    UnknownUrl {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
    /// A relayed path that could leave the backend's base URL (`..`, `%2e%2e`, a backslash).
    #[error("the path `{path}` is not allowed: {reason}")]
    UnsafePath {
        /// The request path as sent.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The backend chosen cannot serve this endpoint (e.g. `/v1/files` on `echo`).
    #[error("the backend `{backend}` does not serve {endpoint}")]
    UnsupportedEndpoint {
        /// Backend name.
        backend: String,
        /// Endpoint path.
        endpoint: String,
    },

    // --- the caller's credentials (`[auth]`) ---
    /// No gateway key, or an unknown, expired or revoked one.
    #[error("invalid API key: the key is missing, unknown, expired or revoked")]
    InvalidApiKey,
    /// `/admin/v1` without the right admin token.
    #[error("invalid admin token")]
    InvalidAdminToken,
    /// The key may not use this model. The message names only the model asked for, never
    /// which prefixes exist or who may use them.
    #[error("this key may not use the model `{model}`")]
    ModelNotPermitted {
        /// The model the client asked for.
        model: String,
    },
    /// The key's `max_requests` are used up.
    #[error("this key has used all the requests it was allowed")]
    RequestLimitReached,
    /// A per-caller rate limit (`requests_per_minute`, `tokens_per_minute`, `max_concurrent`)
    /// is reached; the client may retry after the time it is told.
    #[error("rate limit reached: {}; retry after {} s", .0.limit, .0.retry_after_secs)]
    RateLimited(Box<RateLimited>),
    /// An admin resource that does not exist.
    #[error("no {what} with id `{id}`")]
    NotFound {
        /// `project`, `key` or `credential`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// An admin change that conflicts with what exists (a project name already taken).
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
    },
    /// The request's `Idempotency-Key` cannot be honoured (`crate::idempotency`).
    #[error("{0}")]
    Idempotency(IdempotencyRefusal),
    /// The store could not be asked about a key it had not cached, could not count a request,
    /// or could not claim an `Idempotency-Key`; clients should retry later.
    #[error("the store is unavailable: {message}")]
    StoreUnavailable {
        /// Why, for the log.
        message: String,
    },

    // --- the upstream's fault ---
    /// The upstream could not be reached.
    #[error("backend `{backend}` is unreachable: {message}")]
    UpstreamUnreachable {
        /// Backend name.
        backend: String,
        /// Why (connection refused, DNS, TLS, ...).
        message: String,
    },
    /// The upstream did not answer in time.
    #[error("backend `{backend}` timed out waiting for {phase}")]
    UpstreamTimeout {
        /// Backend name.
        backend: String,
        /// `response headers`, `response body` or `the next stream event`.
        phase: &'static str,
    },
    /// The upstream answered with a non-2xx status: passed through verbatim.
    #[error("backend answered with status {status}")]
    UpstreamStatus {
        /// The upstream's status.
        status: StatusCode,
        /// The upstream's headers (already filtered of hop-by-hop headers).
        headers: HeaderMap,
        /// The upstream's body.
        body: Bytes,
    },
    /// The upstream reported a failure in a successful response: an error line or event in a
    /// stream (Ollama sends `{"error": ...}` with HTTP 200), or an error body with status 200.
    #[error("backend `{backend}` reported an error: {message}")]
    UpstreamFailed {
        /// Backend name.
        backend: String,
        /// The upstream's own message.
        message: String,
    },
    /// The upstream sent something that is not valid for its protocol.
    #[error("backend `{backend}` sent an invalid response: {message}")]
    UpstreamProtocol {
        /// Backend name.
        backend: String,
        /// What was wrong.
        message: String,
    },

    // --- the Redis transport's ---
    /// The queue's workers gave up on the job (`--max-retries` deliveries, or a job they could
    /// not read) and moved it to the dead-letter stream.
    #[error("the request was dead-lettered by the queue's workers (job {job_id})")]
    DeadLettered {
        /// The openai-rq job id, to find it in `openai-rq:dead-letter`.
        job_id: String,
    },
    /// Redis could not be reached, so the request could not be queued or its answer read.
    #[error("backend `{backend}`: the request queue is unavailable: {message}")]
    QueueUnavailable {
        /// Backend name.
        backend: String,
        /// Why (connection refused, reset, ...), never the URL.
        message: String,
    },

    // --- ours ---
    /// A bug or an unexpected state; the message is logged, not sent.
    #[error("internal error: {message}")]
    Internal {
        /// What happened, for the log.
        message: String,
    },
}

/// Why a request's `Idempotency-Key` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyRefusal {
    /// Empty, too long or not visible ASCII.
    #[error(
        "the Idempotency-Key header must be 1 to {max} visible ASCII characters, no spaces",
        max = crate::error::MAX_IDEMPOTENCY_KEY_BYTES
    )]
    InvalidKey,
    /// Sent with `stream: true`: a stream is not kept, so it could not be replayed.
    #[error(
        "an Idempotency-Key cannot be used with `stream: true` (a stream is not kept to be \
         replayed); send it without the header, or without streaming"
    )]
    WithStream,
    /// The key was first used for another request.
    #[error(
        "this Idempotency-Key was already used for a different request (method, path or body); \
         use a new key"
    )]
    DifferentRequest,
    /// The first request's answer was too large to keep.
    #[error(
        "the first request with this Idempotency-Key completed, but its answer was larger than \
         [idempotency] max_answer_bytes and was not kept; use a new key to run it again"
    )]
    AnswerNotKept,
}

/// The longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

impl IdempotencyRefusal {
    fn status(self) -> StatusCode {
        match self {
            IdempotencyRefusal::InvalidKey | IdempotencyRefusal::WithStream => {
                StatusCode::BAD_REQUEST
            }
            IdempotencyRefusal::DifferentRequest | IdempotencyRefusal::AnswerNotKept => {
                StatusCode::CONFLICT
            }
        }
    }

    fn code(self) -> &'static str {
        match self {
            IdempotencyRefusal::InvalidKey => "invalid_idempotency_key",
            IdempotencyRefusal::WithStream => "idempotency_key_with_stream",
            IdempotencyRefusal::DifferentRequest => "idempotency_key_reused",
            IdempotencyRefusal::AnswerNotKept => "idempotent_answer_not_kept",
        }
    }

    fn param(self) -> Option<&'static str> {
        match self {
            IdempotencyRefusal::WithStream => Some("stream"),
            _ => None,
        }
    }
}

/// What a 429 of the gateway's rate limits tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The limit reached, as routes.toml names it.
    pub limit: &'static str,
    /// Whole seconds until a retry can succeed (`retry-after`).
    pub retry_after_secs: u64,
    /// The `x-ratelimit-*` headers, as OpenAI sends them.
    pub headers: Vec<(&'static str, String)>,
}

impl GatewayError {
    /// The status and OpenAI error body a client sees: the one mapping of errors to the wire.
    pub fn to_openai(&self) -> (StatusCode, ErrorBody) {
        use GatewayError::*;
        let invalid = "invalid_request_error";
        match self {
            InvalidJson { .. } => (
                StatusCode::BAD_REQUEST,
                ErrorBody::new(self.to_string(), invalid, None, Some("invalid_json")),
            ),
            InvalidField { param, .. } => (
                StatusCode::BAD_REQUEST,
                ErrorBody::new(self.to_string(), invalid, param.clone(), None),
            ),
            ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                ErrorBody::new(
                    self.to_string(),
                    invalid,
                    Some("model".into()),
                    Some("model_not_found"),
                ),
            ),
            BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody::new(self.to_string(), invalid, None, Some("request_too_large")),
            ),
            RequestTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                ErrorBody::new(self.to_string(), invalid, None, Some("request_timeout")),
            ),
            // 503 with `retry-after`: a temporary state of the gateway, which the SDKs retry.
            Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new(self.to_string(), "api_error", None, Some("overloaded")),
            ),
            UnknownUrl { .. } => (
                StatusCode::NOT_FOUND,
                ErrorBody::new(self.to_string(), invalid, None, Some("unknown_url")),
            ),
            UnsafePath { .. } => (
                StatusCode::BAD_REQUEST,
                ErrorBody::new(self.to_string(), invalid, None, Some("invalid_path")),
            ),
            UnsupportedEndpoint { .. } => (
                StatusCode::NOT_FOUND,
                ErrorBody::new(
                    self.to_string(),
                    invalid,
                    None,
                    Some("unsupported_endpoint"),
                ),
            ),
            InvalidApiKey | InvalidAdminToken => (
                StatusCode::UNAUTHORIZED,
                ErrorBody::new(self.to_string(), invalid, None, Some("invalid_api_key")),
            ),
            ModelNotPermitted { .. } => (
                StatusCode::FORBIDDEN,
                ErrorBody::new(
                    self.to_string(),
                    "permission_error",
                    Some("model".into()),
                    Some("model_not_permitted"),
                ),
            ),
            RequestLimitReached => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorBody::new(
                    self.to_string(),
                    "rate_limit_error",
                    None,
                    Some("max_requests_reached"),
                ),
            ),
            // OpenAI's own shape for its rate limits: the SDKs raise `RateLimitError`.
            RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorBody::new(
                    self.to_string(),
                    "requests",
                    None,
                    Some("rate_limit_exceeded"),
                ),
            ),
            NotFound { .. } => (
                StatusCode::NOT_FOUND,
                ErrorBody::new(self.to_string(), invalid, None, Some("not_found")),
            ),
            Conflict { .. } => (
                StatusCode::CONFLICT,
                ErrorBody::new(self.to_string(), invalid, None, Some("conflict")),
            ),
            Idempotency(refusal) => (
                refusal.status(),
                ErrorBody::new(
                    self.to_string(),
                    invalid,
                    refusal.param().map(str::to_owned),
                    Some(refusal.code()),
                ),
            ),
            // The message may carry the database's words: logged, not sent.
            StoreUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new(
                    "the store is unavailable; retry later",
                    "api_error",
                    None,
                    Some("store_unavailable"),
                ),
            ),
            UpstreamUnreachable { .. } => (
                StatusCode::BAD_GATEWAY,
                ErrorBody::new(
                    self.to_string(),
                    "api_error",
                    None,
                    Some("upstream_unreachable"),
                ),
            ),
            UpstreamTimeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                ErrorBody::new(
                    self.to_string(),
                    "api_error",
                    None,
                    Some("upstream_timeout"),
                ),
            ),
            UpstreamStatus { status, .. } => (
                *status,
                ErrorBody::new(self.to_string(), "api_error", None, None),
            ),
            UpstreamFailed { .. } => (
                StatusCode::BAD_GATEWAY,
                ErrorBody::new(self.to_string(), "api_error", None, Some("upstream_error")),
            ),
            UpstreamProtocol { .. } => (
                StatusCode::BAD_GATEWAY,
                ErrorBody::new(
                    self.to_string(),
                    "api_error",
                    None,
                    Some("upstream_protocol_error"),
                ),
            ),
            // 502 like any other upstream failure: the gateway worked, what stood behind it
            // (the workers, or the server they relay to) did not answer.
            DeadLettered { .. } => (
                StatusCode::BAD_GATEWAY,
                ErrorBody::new(self.to_string(), "api_error", None, Some("dead_lettered")),
            ),
            // 503: the queue itself is down, a temporary condition of the service path that
            // clients should retry later (the SDKs do, with backoff); 502 would blame a worker
            // or an upstream that was never reached.
            QueueUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorBody::new(
                    self.to_string(),
                    "api_error",
                    None,
                    Some("queue_unavailable"),
                ),
            ),
            Internal { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorBody::new("internal error", "api_error", None, None),
            ),
        }
    }

    /// Whether the client caused it (logged quietly) or the gateway could not serve it.
    pub fn is_client_fault(&self) -> bool {
        use GatewayError::*;
        matches!(
            self,
            InvalidJson { .. }
                | InvalidField { .. }
                | ModelNotFound { .. }
                | BodyTooLarge { .. }
                | RequestTimeout { .. }
                | UnknownUrl { .. }
                | UnsafePath { .. }
                | UnsupportedEndpoint { .. }
                | UpstreamStatus { .. }
                | InvalidApiKey
                | InvalidAdminToken
                | ModelNotPermitted { .. }
                | RequestLimitReached
                | RateLimited(_)
                | NotFound { .. }
                | Conflict { .. }
                | Idempotency(_)
        )
    }

    /// Whether another backend might answer where this one failed, before any byte of an
    /// answer was sent: the upstream was unreachable, slow, overloaded or broken. A client's
    /// mistake, or an upstream's 4xx verdict on the request itself, is the answer.
    pub fn is_retryable(&self) -> bool {
        use GatewayError::*;
        match self {
            UpstreamStatus { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            UpstreamUnreachable { .. }
            | UpstreamTimeout { .. }
            | UpstreamFailed { .. }
            | UpstreamProtocol { .. }
            | DeadLettered { .. }
            | QueueUnavailable { .. } => true,
            InvalidJson { .. }
            | InvalidField { .. }
            | ModelNotFound { .. }
            | BodyTooLarge { .. }
            | UnknownUrl { .. }
            | UnsafePath { .. }
            | UnsupportedEndpoint { .. }
            | RequestTimeout { .. }
            // The gateway's own admission and the caller's key: another backend would not
            // change them.
            | Overloaded { .. }
            | InvalidApiKey
            | InvalidAdminToken
            | ModelNotPermitted { .. }
            | RequestLimitReached
            | RateLimited(_)
            | NotFound { .. }
            | Conflict { .. }
            | Idempotency(_)
            | StoreUnavailable { .. }
            | Internal { .. } => false,
        }
    }

    /// Whether the upstream said it is rate-limiting (429): the box is alive, just busy.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, GatewayError::UpstreamStatus { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS)
    }

    /// How long the upstream asked to be left alone: `retry-after-ms` (OpenAI's), else
    /// `retry-after` in seconds, on a 429 or 503. An HTTP-date is not read (none of the
    /// inference servers sends one).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let GatewayError::UpstreamStatus {
            status, headers, ..
        } = self
        else {
            return None;
        };
        if *status != StatusCode::TOO_MANY_REQUESTS && *status != StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n >= 0.0)
        };
        number("retry-after-ms")
            .map(|ms| ms / 1000.0)
            .or_else(|| number("retry-after"))
            .map(|secs| std::time::Duration::from_secs_f64(secs.min(86_400.0)))
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        self.to_openai().0
    }

    fn error_response(&self) -> HttpResponse {
        // Log once, here at the edge, at a level that says whose problem it is: the caller's
        // (debug), an upstream that answered with a failure we pass on (warn), or a request
        // this gateway could not serve (error).
        match self {
            GatewayError::UpstreamStatus { status, .. }
                if status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS =>
            {
                tracing::warn!(error = %self, "upstream failure passed through");
            }
            _ if self.is_client_fault() => tracing::debug!(error = %self, "request refused"),
            _ => tracing::error!(error = %self, "request failed"),
        }
        if let GatewayError::UpstreamStatus {
            status,
            headers,
            body,
        } = self
        {
            let mut response = HttpResponse::build(*status);
            for (name, value) in headers {
                response.append_header((name.clone(), value.clone()));
            }
            return response.body(body.clone());
        }
        let (status, body) = self.to_openai();
        let mut response = HttpResponse::build(status);
        match self {
            GatewayError::Overloaded { .. } => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            // The rest of a body that did not arrive in time is not worth waiting for: the
            // connection is closed after this answer.
            GatewayError::RequestTimeout { .. } => {
                response.force_close();
            }
            // A used-up cap does not come back: tell the SDKs (which retry 429s) not to retry.
            GatewayError::RequestLimitReached => {
                response.insert_header(("x-should-retry", "false"));
            }
            GatewayError::RateLimited(limited) => {
                response.insert_header((header::RETRY_AFTER, limited.retry_after_secs));
                for (name, value) in &limited.headers {
                    response.insert_header((*name, value.as_str()));
                }
            }
            _ => {}
        }
        response
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .body(body.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_maps_to_the_status_and_code_the_sdks_expect() {
        let cases = [
            caller_errors(),
            more_caller_errors(),
            gateway_and_upstream_errors(),
            more_gateway_and_upstream_errors(),
            idempotency_errors(),
        ]
        .into_iter()
        .flatten();
        for (err, status, kind, code) in cases {
            let (s, body) = err.to_openai();
            assert_eq!(s.as_u16(), status, "{err:?}");
            assert_eq!(body.error.kind, kind, "{err:?}");
            assert_eq!(body.error.code.as_deref(), code, "{err:?}");
        }
    }

    /// An error, and the status, type and code it must map to.
    type Case = (GatewayError, u16, &'static str, Option<&'static str>);

    /// Errors of the caller's making.
    fn caller_errors() -> Vec<Case> {
        vec![
            (
                GatewayError::InvalidJson {
                    message: "eof".into(),
                },
                400,
                "invalid_request_error",
                Some("invalid_json"),
            ),
            (
                GatewayError::InvalidField {
                    param: Some("messages".into()),
                    message: "x".into(),
                },
                400,
                "invalid_request_error",
                None,
            ),
            (
                GatewayError::ModelNotFound { model: "m".into() },
                404,
                "invalid_request_error",
                Some("model_not_found"),
            ),
            (
                GatewayError::BodyTooLarge { limit: 1 },
                413,
                "invalid_request_error",
                Some("request_too_large"),
            ),
            (
                GatewayError::RequestTimeout {
                    phase: "body",
                    limit_secs: 1,
                },
                408,
                "invalid_request_error",
                Some("request_timeout"),
            ),
        ]
    }

    /// More errors of the caller's making.
    fn more_caller_errors() -> Vec<Case> {
        vec![
            (
                GatewayError::Overloaded {
                    limit: "max_concurrent_requests",
                },
                503,
                "api_error",
                Some("overloaded"),
            ),
            (
                GatewayError::UnknownUrl {
                    method: "GET".into(),
                    path: "/x".into(),
                },
                404,
                "invalid_request_error",
                Some("unknown_url"),
            ),
            (
                GatewayError::UnsafePath {
                    path: "/v1/../admin".into(),
                    reason: "a `..` segment",
                },
                400,
                "invalid_request_error",
                Some("invalid_path"),
            ),
            (
                GatewayError::UnsupportedEndpoint {
                    backend: "e".into(),
                    endpoint: "/v1/files".into(),
                },
                404,
                "invalid_request_error",
                Some("unsupported_endpoint"),
            ),
            (
                GatewayError::UpstreamUnreachable {
                    backend: "b".into(),
                    message: "refused".into(),
                },
                502,
                "api_error",
                Some("upstream_unreachable"),
            ),
            (
                GatewayError::UpstreamTimeout {
                    backend: "b".into(),
                    phase: "response headers",
                },
                504,
                "api_error",
                Some("upstream_timeout"),
            ),
        ]
    }

    /// Errors of the gateway, its store and its upstreams, mapped as above.
    fn gateway_and_upstream_errors() -> Vec<Case> {
        vec![
            (
                GatewayError::UpstreamFailed {
                    backend: "b".into(),
                    message: "model crashed".into(),
                },
                502,
                "api_error",
                Some("upstream_error"),
            ),
            (
                GatewayError::UpstreamProtocol {
                    backend: "b".into(),
                    message: "bad".into(),
                },
                502,
                "api_error",
                Some("upstream_protocol_error"),
            ),
            (
                GatewayError::DeadLettered {
                    job_id: "9f2c".into(),
                },
                502,
                "api_error",
                Some("dead_lettered"),
            ),
            (
                GatewayError::QueueUnavailable {
                    backend: "dc".into(),
                    message: "connection refused".into(),
                },
                503,
                "api_error",
                Some("queue_unavailable"),
            ),
            (
                GatewayError::Internal {
                    message: "secret detail".into(),
                },
                500,
                "api_error",
                None,
            ),
            (
                GatewayError::InvalidApiKey,
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
        ]
    }

    /// The refusals of an `Idempotency-Key`.
    fn idempotency_errors() -> Vec<Case> {
        vec![
            (
                GatewayError::Idempotency(IdempotencyRefusal::InvalidKey),
                400,
                "invalid_request_error",
                Some("invalid_idempotency_key"),
            ),
            (
                GatewayError::Idempotency(IdempotencyRefusal::WithStream),
                400,
                "invalid_request_error",
                Some("idempotency_key_with_stream"),
            ),
            (
                GatewayError::Idempotency(IdempotencyRefusal::DifferentRequest),
                409,
                "invalid_request_error",
                Some("idempotency_key_reused"),
            ),
            (
                GatewayError::Idempotency(IdempotencyRefusal::AnswerNotKept),
                409,
                "invalid_request_error",
                Some("idempotent_answer_not_kept"),
            ),
        ]
    }

    /// More errors of the gateway, its store and its upstreams.
    fn more_gateway_and_upstream_errors() -> Vec<Case> {
        vec![
            (
                GatewayError::InvalidAdminToken,
                401,
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            (
                GatewayError::ModelNotPermitted { model: "m".into() },
                403,
                "permission_error",
                Some("model_not_permitted"),
            ),
            (
                GatewayError::RequestLimitReached,
                429,
                "rate_limit_error",
                Some("max_requests_reached"),
            ),
            (
                GatewayError::RateLimited(Box::new(RateLimited {
                    limit: "requests_per_minute",
                    retry_after_secs: 3,
                    headers: Vec::new(),
                })),
                429,
                "requests",
                Some("rate_limit_exceeded"),
            ),
            (
                GatewayError::NotFound {
                    what: "key",
                    id: "k".into(),
                },
                404,
                "invalid_request_error",
                Some("not_found"),
            ),
            (
                GatewayError::Conflict {
                    message: "taken".into(),
                },
                409,
                "invalid_request_error",
                Some("conflict"),
            ),
            (
                GatewayError::StoreUnavailable {
                    message: "connection refused to db".into(),
                },
                503,
                "api_error",
                Some("store_unavailable"),
            ),
        ]
    }

    #[test]
    fn internal_details_are_not_sent() {
        let (_, body) = GatewayError::Internal {
            message: "secret detail".into(),
        }
        .to_openai();
        assert!(!body.error.message.contains("secret"));
    }

    #[test]
    fn the_model_not_found_body_names_the_model_and_param() {
        let (_, body) = GatewayError::ModelNotFound {
            model: "nope/x".into(),
        }
        .to_openai();
        assert!(body.error.message.contains("nope/x"));
        assert_eq!(body.error.param.as_deref(), Some("model"));
    }

    #[test]
    fn retry_after_is_read_from_429_and_503_only_and_hostile_values_are_ignored_or_capped() {
        let with = |status: u16, name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::HeaderName::from_static(name),
                header::HeaderValue::from_static(value),
            );
            GatewayError::UpstreamStatus {
                status: StatusCode::from_u16(status).unwrap(),
                headers,
                body: Bytes::new(),
            }
        };
        let secs = |e: GatewayError| e.retry_after().map(|d| d.as_secs_f64());
        assert_eq!(secs(with(429, "retry-after", "7")), Some(7.0));
        assert_eq!(secs(with(503, "retry-after-ms", "1500")), Some(1.5));
        assert_eq!(secs(with(500, "retry-after", "7")), None);
        assert_eq!(secs(with(429, "retry-after", "-3")), None);
        assert_eq!(secs(with(429, "retry-after", "soon")), None);
        assert_eq!(secs(with(429, "retry-after", "1e308")), Some(86_400.0));
        assert!(with(429, "x-other", "1").is_retryable());
        assert!(!with(400, "x-other", "1").is_retryable());
    }
}
