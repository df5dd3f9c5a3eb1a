//! `/v1/batches`: the gateway's own Batch API (`crate::batches`). Relayed as before when the
//! gateway does not serve it itself (`own_api`).

use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::body::{parse_request, read_body_within};
use super::caller::{self, Caller};
use super::own_api::{ListQuery, own_api, own_api_for, owner};
use super::passthrough;
use crate::auth::token;
use crate::error::GatewayError;
use crate::schema::ErrorBody;
use crate::schema::batch_api::{Batch, CreateBatch, ListPage};
use crate::state::AppState;

/// Largest `POST /v1/batches` body (ids, endpoint, 16 metadata pairs).
const MAX_CREATE_BYTES: usize = 64 * 1024;

/// The hex SHA-256 of the caller's gateway key, under which the batch's lines run.
fn key_hash(caller: &Caller, req: &HttpRequest) -> Option<String> {
    caller.as_ref()?;
    token::bearer(req.headers()).map(|key| token::hex(&token::hash(key)))
}

/// Creates a batch of an uploaded file; its lines run in the background.
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "batches",
    request_body(content = CreateBatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The batch, `validating`", body = Batch),
        (status = 400, description = "An unknown endpoint, a window other than `24h`, too much metadata, or a file not uploaded for batches", body = ErrorBody),
        (status = 404, description = "No such input file for this caller (`not_found`)", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn create_batch(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some(batches) = own_api(&state) else {
        return passthrough::relay(req, payload, state).await;
    };
    let caller = caller::authenticate(&req, &state).await?;
    let table = state.routes.load_full();
    let (body, _held) = read_body_within(
        &req,
        payload,
        MAX_CREATE_BYTES,
        &table.server,
        &state.limits,
    )
    .await?;
    let request: CreateBatch = parse_request(&body)?;
    let batch = batches
        .create(&owner(&caller, &req), key_hash(&caller, &req), request)
        .await?;
    Ok(HttpResponse::Ok().json(batch))
}

/// One of the caller's batches, its `request_counts` current.
#[utoipa::path(
    get,
    path = "/v1/batches/{batch_id}",
    tag = "batches",
    params(("batch_id" = String, Path, pattern = "^batch_[0-9a-f]{32}$", description = "The batch's id")),
    responses(
        (status = 200, description = "The batch", body = Batch),
        (status = 404, description = "No such batch for this caller (`not_found`)", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn retrieve_batch(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let id = req.match_info().get("batch_id").unwrap_or_default();
    let batch = batches.get(&owner, id).await?;
    Ok(HttpResponse::Ok().json(batch))
}

/// Cancels one of the caller's batches: `cancelling`, then `cancelled` once the lines in
/// flight are abandoned; unfinished lines go to the error file.
#[utoipa::path(
    post,
    path = "/v1/batches/{batch_id}/cancel",
    tag = "batches",
    params(("batch_id" = String, Path, pattern = "^batch_[0-9a-f]{32}$", description = "The batch's id")),
    responses(
        (status = 200, description = "The batch, `cancelling` (or already `cancelled`)", body = Batch),
        (status = 404, description = "No such batch for this caller (`not_found`)", body = ErrorBody),
        (status = 409, description = "The batch already ended (`conflict`)", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn cancel_batch(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let id = req.match_info().get("batch_id").unwrap_or_default();
    let batch = batches.cancel(&owner, id).await?;
    Ok(HttpResponse::Ok().json(batch))
}

/// Lists the caller's batches, newest first.
#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "batches",
    params(
        ("after" = Option<String>, Query, description = "The last id of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 100 (default 20)"),
    ),
    responses(
        (status = 200, description = "A page of batches", body = ListPage<Batch>),
        (status = 400, description = "A `limit` out of range or an unknown parameter", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn list_batches(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let query = ListQuery::of(&req)?;
    let limit = query.limit(20, 100)?;
    if query.purpose.is_some() || query.order.is_some() {
        return Err(GatewayError::InvalidField {
            param: None,
            message: "`/v1/batches` takes `after` and `limit` only".to_owned(),
        });
    }
    let page = batches.list(&owner, query.after.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(page))
}
