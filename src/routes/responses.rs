//! `POST /v1/responses`: relayed to backends with a Responses API of their own (`openai` with
//! `responses = "native"`, the default; `proxy`; `redis`), served through a chat completion for
//! the others (`ollama`, `echo`, `openai` with `responses = "translate"`).

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::accounting::Visit;
use super::caller::{self, Caller};
use super::optional_api::{OptionalEndpoint, Routed, relay_or_serve};
use super::via_chat::reply_via_chat;
use crate::backends::{OptionalApi, UpstreamReply};
use crate::error::GatewayError;
use crate::routing::Resolved;
use crate::schema::{ErrorBody, ResponsesRequest};
use crate::state::AppState;

/// Creates a model response, streamed as Responses server-sent events when `stream` is true.
#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "responses",
    request_body(
        description = "The Responses API request, as far as a route served through a chat completion takes it (`ollama`, `echo`, `openai` with `responses = \"translate\"`). Fields not listed pass on to the chat completion (`top_k`, `keep_alive`, ...). Routes to backends with a Responses API of their own relay the body as it is.",
        content((ResponsesRequest = "application/json", examples(
            ("plain" = (summary = "Text in, text out", value = json!({
                "model": "echo/hello",
                "instructions": "Answer briefly.",
                "input": "hi there"
            }))),
            ("tool_round_trip" = (summary = "A function call's output sent back", value = json!({
                "model": "echo/hello",
                "input": [
                    {"role": "user", "content": "Weather in Paris?"},
                    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "22C and sunny"}
                ],
                "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
            }))),
            ("stream" = (summary = "Streamed", value = json!({
                "model": "echo/hello",
                "input": "hi there",
                "stream": true
            }))),
        ))),
    ),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "With a store (`[store]`, `[auth]` or `[idempotency]`), the request runs once per key and caller: a repeat while it runs waits for it, a repeat after it gets the kept answer marked `idempotent-replayed: true`, the same key with another request is a 409. 1 to 255 visible ASCII characters, no spaces (else 400, with or without a store); not with `stream: true` (400).")),
    responses(
        (status = 200, description = "A `response` (`application/json`), or with `stream: true` a `text/event-stream` of `ResponseStreamEvent`s, each `event: <type>` and `data: <json>`, from `response.created` to `response.completed` (or `response.incomplete`). A failure after the stream started is `response.failed` then an `error` event, and the stream closes.", content(
            (crate::schema::Response = "application/json"),
            (crate::schema::ResponseStreamEvent = "text/event-stream"),
        )),
        (status = 400, description = "Malformed JSON, a field that does not fit the schema (`param` names it), or what needs state the gateway does not keep (`previous_response_id`, `store: true`, `conversation`, `background`, `prompt`)", body = ErrorBody),
        (status = 404, description = "No route serves the model (`model_not_found`)", body = ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used for another request (`idempotency_key_reused`), or its first answer was too large to keep (`idempotent_answer_not_kept`)", body = ErrorBody),
        (status = 413, description = "Body over `[server] max_body_bytes` (`request_too_large`)", body = ErrorBody),
        (status = 502, description = "Upstream unreachable (`upstream_unreachable`) or its answer was not valid (`upstream_protocol_error`)", body = ErrorBody),
        (status = 504, description = "Upstream timed out (`upstream_timeout`)", body = ErrorBody),
        (status = "default", description = "The upstream's own error answer, in OpenAI's error shape", body = ErrorBody),
    )
)]
pub async fn create_response(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    relay_or_serve::<ResponsesRequest>(req, payload, state).await
}

impl OptionalEndpoint for ResponsesRequest {
    const API: OptionalApi = OptionalApi::Responses;

    /// Through a chat completion, on the route's backends.
    /// Under the caller's rate limits, with its usage recorded, as a typed request.
    async fn serve(routed: Routed<'_>, request: Self) -> Result<HttpResponse, GatewayError> {
        let Routed {
            req,
            state,
            caller,
            resolved,
            ..
        } = routed;
        let streamed = request.is_stream();
        let mut visit = Visit::start(req, state, caller, &request.model, "responses", streamed);
        let outcome = through_chat(state, caller, req, resolved, &request, &mut visit).await;
        visit.finish(outcome)
    }
}

/// The accounted part of `serve`: rate limits, the key's cap, then the chat completion.
async fn through_chat(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    resolved: Resolved<'_>,
    request: &ResponsesRequest,
    visit: &mut Visit,
) -> Result<UpstreamReply, GatewayError> {
    visit
        .admit(state, caller, resolved.route, &request.model)
        .await?;
    caller::admit(state, caller, &request.model).await?;
    visit.sending();
    let trying = |backend: &str, upstream_model: &str| visit.trying(backend, upstream_model);
    reply_via_chat(req, caller, resolved, request, trying).await
}
