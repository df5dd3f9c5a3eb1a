//! `POST /v1/chat/completions`.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::forward::forward;
use crate::error::GatewayError;
use crate::schema::ChatCompletionRequest;
use crate::state::AppState;

/// Creates a chat completion, streamed as server-sent events when `stream` is true.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "chat",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "A chat completion, or with `stream: true` a `text/event-stream` of `chat.completion.chunk` events ending with `data: [DONE]`", body = crate::schema::ChatCompletion),
        (status = 400, description = "Malformed JSON or a field that does not fit the schema", body = crate::schema::ErrorBody),
        (status = 404, description = "No route serves the model (`model_not_found`)", body = crate::schema::ErrorBody),
        (status = 413, description = "Body over `max_body_bytes`", body = crate::schema::ErrorBody),
        (status = 502, description = "Upstream unreachable", body = crate::schema::ErrorBody),
        (status = 504, description = "Upstream timed out", body = crate::schema::ErrorBody),
    )
)]
pub async fn chat_completions(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    forward::<ChatCompletionRequest>(req, payload, state).await
}
