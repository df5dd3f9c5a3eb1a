//! `GET /v1/models` and `GET /v1/models/{model}`.

use actix_web::HttpRequest;
use actix_web::web::{Data, Json};

use super::caller::{self, Caller};
use crate::error::GatewayError;
use crate::schema::{Model, ModelList};
use crate::state::AppState;

/// Lists every model the route table serves, prefixed as clients must name them.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    responses((status = 200, description = "The models, in OpenAI's list shape", body = ModelList))
)]
pub async fn list_models(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<Json<ModelList>, GatewayError> {
    let caller = caller::authenticate(&req, &state).await?;
    let table = state.routes.load_full();
    Ok(Json(ModelList {
        object: "list".to_owned(),
        data: visible_models(&caller, table.models().await),
    }))
}

/// The models the caller's key may use (all of them without `[auth]`).
fn visible_models(caller: &Caller, mut models: Vec<Model>) -> Vec<Model> {
    if let Some(grant) = caller {
        models.retain(|m| grant.permits(&m.id));
    }
    models
}

/// Describes one listed model; model names may contain `/`, raw or as `%2F`.
#[utoipa::path(
    get,
    path = "/v1/models/{model}",
    tag = "models",
    params(("model" = String, Path, description = "Model name, prefix included")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "Not listed (`model_not_found`)", body = crate::schema::ErrorBody),
    )
)]
pub async fn retrieve_model(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<Json<Model>, GatewayError> {
    let raw = req.match_info().get("model").unwrap_or_default();
    let id = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let caller = caller::authenticate(&req, &state).await?;
    let table = state.routes.load_full();
    visible_models(&caller, table.models().await)
        .into_iter()
        .find(|m| m.id == id)
        .map(Json)
        .ok_or_else(|| GatewayError::ModelNotFound {
            model: id.into_owned(),
        })
}
