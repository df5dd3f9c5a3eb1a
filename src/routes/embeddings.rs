//! `POST /v1/embeddings`.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::forward::forward;
use crate::error::GatewayError;
use crate::schema::{EmbeddingRequest, ErrorBody};
use crate::state::AppState;

/// Creates embeddings for one or more inputs.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "embeddings",
    request_body(
        description = "The OpenAI embeddings request. Fields not listed are forwarded to the backend byte for byte.",
        content((EmbeddingRequest = "application/json", example = json!({
            "model": "echo/hello",
            "input": ["hello world", "goodbye"]
        }))),
    ),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "With a store (`[store]`, `[auth]` or `[idempotency]`), the request runs once per key and caller: a repeat while it runs waits for it, a repeat after it gets the kept answer marked `idempotent-replayed: true`, the same key with another request is a 409. 1 to 255 visible ASCII characters, no spaces (else 400, with or without a store); not with `stream: true` (400).")),
    responses(
        (status = 200, description = "One embedding per input, in input order", body = crate::schema::EmbeddingResponse),
        (status = 400, description = "Malformed JSON, or a field that does not fit the schema (`param` names it)", body = ErrorBody),
        (status = 404, description = "No route serves the model (`model_not_found`), or its backend has no embeddings (`unsupported_endpoint`)", body = ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used for another request (`idempotency_key_reused`), or its first answer was too large to keep (`idempotent_answer_not_kept`)", body = ErrorBody),
        (status = 413, description = "Body over `[server] max_body_bytes` (`request_too_large`)", body = ErrorBody),
        (status = 502, description = "Upstream unreachable (`upstream_unreachable`) or its answer was not valid (`upstream_protocol_error`)", body = ErrorBody),
        (status = 504, description = "Upstream timed out (`upstream_timeout`)", body = ErrorBody),
        (status = "default", description = "The upstream's own error answer, passed through with its status, body and `retry-after` / `x-ratelimit-*` headers (OpenAI's error shape for OpenAI-compatible upstreams)", body = ErrorBody),
    )
)]
pub async fn create_embeddings(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    forward::<EmbeddingRequest>(req, payload, state).await
}
