//! `POST /v1/chat/completions`.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::forward::forward;
use crate::error::GatewayError;
use crate::schema::{ChatCompletionRequest, ErrorBody};
use crate::state::AppState;

/// Creates a chat completion, streamed as server-sent events when `stream` is true.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "chat",
    request_body(
        description = "The OpenAI chat completion request. Fields not listed are forwarded to the backend byte for byte (`top_k`, `guided_json`, ...).",
        content((ChatCompletionRequest = "application/json", examples(
            ("plain" = (summary = "One answer", value = json!({
                "model": "echo/hello",
                "messages": [{"role": "user", "content": "hi there"}]
            }))),
            ("stream" = (summary = "Streamed, with a final usage chunk", value = json!({
                "model": "echo/hello",
                "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": "hi there"}
                ]
            }))),
        ))),
    ),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "With a store (`[store]`, `[auth]` or `[idempotency]`), the request runs once per key and caller: a repeat while it runs waits for it, a repeat after it gets the kept answer marked `idempotent-replayed: true`, the same key with another request is a 409. 1 to 255 visible ASCII characters, no spaces (else 400, with or without a store); not with `stream: true` (400).")),
    responses(
        (status = 200, description = "A chat completion (`application/json`), or with `stream: true` a `text/event-stream` whose events are each `data: ` and one `ChatCompletionChunk`, ending with `data: [DONE]`. A failure after the stream started is one `data: {\"error\":{...}}` event (`ErrorBody`), then the stream closes.", content(
            (crate::schema::ChatCompletion = "application/json"),
            (crate::schema::ChatCompletionChunk = "text/event-stream"),
        )),
        (status = 400, description = "Malformed JSON, or a field that does not fit the schema (`param` names it)", body = ErrorBody),
        (status = 404, description = "No route serves the model (`model_not_found`), or its backend has no chat completions (`unsupported_endpoint`)", body = ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used for another request (`idempotency_key_reused`), or its first answer was too large to keep (`idempotent_answer_not_kept`)", body = ErrorBody),
        (status = 413, description = "Body over `[server] max_body_bytes` (`request_too_large`)", body = ErrorBody),
        (status = 502, description = "Upstream unreachable (`upstream_unreachable`) or its answer was not valid (`upstream_protocol_error`)", body = ErrorBody),
        (status = 504, description = "Upstream timed out (`upstream_timeout`)", body = ErrorBody),
        (status = "default", description = "The upstream's own error answer, passed through with its status, body and `retry-after` / `x-ratelimit-*` headers (OpenAI's error shape for OpenAI-compatible upstreams)", body = ErrorBody),
    )
)]
pub async fn chat_completions(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    forward::<ChatCompletionRequest>(req, payload, state).await
}
