//! `POST /v1/completions` (legacy): relayed to backends that have it (OpenAI-compatible,
//! proxy, Redis), answered by the others themselves (Ollama's `/api/generate`, echo).

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::forward::send_resolved;
use super::optional_api::{OptionalEndpoint, Routed, relay_or_serve};
use crate::backends::OptionalApi;
use crate::error::GatewayError;
use crate::schema::{CompletionRequest, ErrorBody};
use crate::state::AppState;

/// Creates a legacy text completion, streamed as server-sent events when `stream` is true.
#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "completions",
    request_body(
        description = "The legacy completion request, as a route to an `ollama` or `echo` backend serves it. Routes to `openai`, `proxy` and `redis` backends relay the body as it is (the upstream's own API).",
        content((CompletionRequest = "application/json", examples(
            ("plain" = (summary = "One completion", value = json!({
                "model": "echo/hello",
                "prompt": "Say this is a test",
                "max_tokens": 16
            }))),
            ("stream" = (summary = "Streamed, with a final usage event", value = json!({
                "model": "echo/hello",
                "prompt": "Say this is a test",
                "stream": true,
                "stream_options": {"include_usage": true}
            }))),
        ))),
    ),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "With a store (`[store]`, `[auth]` or `[idempotency]`), the request runs once per key and caller: a repeat while it runs waits for it, a repeat after it gets the kept answer marked `idempotent-replayed: true`, the same key with another request is a 409. 1 to 255 visible ASCII characters, no spaces (else 400, with or without a store); not with `stream: true` (400).")),
    responses(
        (status = 200, description = "A `text_completion` (`application/json`), or with `stream: true` a `text/event-stream` whose events are each `data: ` and one `TextCompletion` (one piece of the text), then a usage event when `stream_options.include_usage` is set, then `data: [DONE]`. A failure after the stream started is one `data: {\"error\":{...}}` event (`ErrorBody`), then the stream closes.", content(
            (crate::schema::TextCompletion = "application/json"),
            (crate::schema::TextCompletion = "text/event-stream"),
        )),
        (status = 400, description = "Malformed JSON, a field that does not fit the schema (`param` names it), or what the backend cannot do (`n`, `best_of` over 1, `echo`, `logprobs`)", body = ErrorBody),
        (status = 404, description = "No route serves the model (`model_not_found`)", body = ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used for another request (`idempotency_key_reused`), or its first answer was too large to keep (`idempotent_answer_not_kept`)", body = ErrorBody),
        (status = 413, description = "Body over `[server] max_body_bytes` (`request_too_large`)", body = ErrorBody),
        (status = 502, description = "Upstream unreachable (`upstream_unreachable`) or its answer was not valid (`upstream_protocol_error`)", body = ErrorBody),
        (status = 504, description = "Upstream timed out (`upstream_timeout`)", body = ErrorBody),
        (status = "default", description = "The upstream's own error answer, in OpenAI's error shape", body = ErrorBody),
    )
)]
pub async fn create_completion(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    relay_or_serve::<CompletionRequest>(req, payload, state).await
}

impl OptionalEndpoint for CompletionRequest {
    const API: OptionalApi = OptionalApi::Completions;

    /// Ollama and echo answer legacy completions themselves, through the typed flow.
    async fn serve(routed: Routed<'_>, mut request: Self) -> Result<HttpResponse, GatewayError> {
        let Routed {
            req,
            state,
            caller,
            resolved,
            body,
            ..
        } = routed;
        send_resolved(req, state, caller, resolved, body, &mut request).await
    }
}
