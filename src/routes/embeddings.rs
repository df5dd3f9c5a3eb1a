//! `POST /v1/embeddings`.

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::forward::forward;
use crate::error::GatewayError;
use crate::schema::EmbeddingRequest;
use crate::state::AppState;

/// Creates embeddings for one or more inputs.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "embeddings",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "One embedding per input", body = crate::schema::EmbeddingResponse),
        (status = 400, description = "Malformed JSON or a field that does not fit the schema", body = crate::schema::ErrorBody),
        (status = 404, description = "No route serves the model (`model_not_found`)", body = crate::schema::ErrorBody),
        (status = 502, description = "Upstream unreachable", body = crate::schema::ErrorBody),
    )
)]
pub async fn create_embeddings(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    forward::<EmbeddingRequest>(req, payload, state).await
}
