//! `/v1/files`: the gateway's own file store (`crate::files`) for batch input files, and the
//! output and error files its batches write. Relayed as before when the gateway does not serve
//! the Batch API itself (`own_api`).

use actix_multipart::Multipart;
use actix_web::web::{Data, Payload};
use actix_web::{HttpRequest, HttpResponse};
use futures::StreamExt;

use super::own_api::{ListQuery, own_api_for};
use super::passthrough;
use crate::batches::page;
use crate::error::GatewayError;
use crate::files::{Files, Upload};
use crate::schema::ErrorBody;
use crate::schema::batch_api::{FileDeleted, FileObject, ListPage};
use crate::state::AppState;
use crate::store::OwnFileRow;

/// Largest non-file form field (`purpose`, `expires_after[...]`).
const MAX_FIELD_BYTES: usize = 1024;
/// Most form fields in one upload.
const MAX_FIELDS: usize = 8;

fn file_object(row: OwnFileRow) -> FileObject {
    FileObject {
        id: row.id,
        object: "file".to_owned(),
        bytes: row.bytes,
        created_at: row.created_at,
        expires_at: row.expires_at,
        filename: row.filename,
        purpose: row.purpose,
        status: "processed".to_owned(),
    }
}

fn multipart_error(message: impl std::fmt::Display) -> GatewayError {
    GatewayError::InvalidField {
        param: None,
        message: format!("the multipart/form-data body is not valid: {message}"),
    }
}

/// Uploads a batch input file (`multipart/form-data`: `purpose=batch` and `file`).
#[utoipa::path(
    post,
    path = "/v1/files",
    tag = "batches",
    request_body(description = "`multipart/form-data` with `purpose` (`batch`) and `file` (a JSONL file of `BatchRequestInput` lines), at most `[batches] max_file_bytes`.", content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The file", body = FileObject),
        (status = 400, description = "Not multipart, no `file`, or a `purpose` other than `batch`", body = ErrorBody),
        (status = 413, description = "Over `[batches] max_file_bytes` (`request_too_large`)", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn create_file(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let files = batches.files();
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // The form's own bytes (boundaries, headers, `purpose`) come on top of the file's.
    if declared.is_some_and(|n| n > files.max_bytes.saturating_add(64 * 1024)) {
        return Err(too_large(files));
    }
    let timeout = state.routes.load().server.request_body_timeout;
    let form = Multipart::new(req.headers(), payload);
    let (upload, purpose, filename, keep) = tokio::time::timeout(timeout, read_form(form, files))
        .await
        .map_err(|_| GatewayError::RequestTimeout {
            phase: "body",
            limit_secs: timeout.as_secs().max(1),
        })??;
    let row = files
        .keep(upload, (&owner, &filename, &purpose), keep)
        .await?;
    Ok(HttpResponse::Ok().json(file_object(row)))
}

fn too_large(files: &Files) -> GatewayError {
    GatewayError::BodyTooLarge {
        limit: usize::try_from(files.max_bytes).unwrap_or(usize::MAX),
    }
}

/// Reads the form: the file streamed to disk (capped), `purpose` and `expires_after` checked;
/// the file, its purpose, its name and how long to keep it.
async fn read_form(
    mut form: Multipart,
    files: &Files,
) -> Result<(Upload, String, String, i64), GatewayError> {
    let (mut upload, mut purpose, mut filename) = (None, None, String::new());
    let (mut anchor, mut seconds) = (None, None);
    let mut fields = 0;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(multipart_error)?;
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(multipart_error(format!("more than {MAX_FIELDS} fields")));
        }
        match field.name() {
            Some("file") if upload.is_none() => {
                filename = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .unwrap_or("upload.jsonl")
                    .chars()
                    .take(255)
                    .collect();
                let mut into = files.begin(files.max_bytes).await?;
                while let Some(chunk) = field.next().await {
                    into.write(&chunk.map_err(multipart_error)?).await?;
                }
                upload = Some(into);
            }
            Some("purpose") => {
                let text = field_text(&mut field).await?;
                purpose = Some(text);
            }
            Some("expires_after[anchor]") => anchor = Some(field_text(&mut field).await?),
            Some("expires_after[seconds]") => seconds = Some(field_text(&mut field).await?),
            // Other fields are read (bounded) and ignored, as OpenAI ignores them.
            _ => {
                field_text(&mut field).await?;
            }
        }
    }
    let keep = match (anchor, seconds) {
        (None, None) => crate::files::KEEP_SECONDS,
        (anchor, seconds) => {
            let seconds = seconds
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0);
            let anchor = anchor.unwrap_or_default();
            crate::files::keep_seconds(&anchor, seconds, "expires_after")?
        }
    };
    let purpose = purpose.ok_or_else(|| missing("purpose"))?;
    if purpose != "batch" {
        return Err(GatewayError::InvalidField {
            param: Some("purpose".to_owned()),
            message: format!(
                "the gateway keeps files for its Batch API only: `purpose` must be `batch`, not `{purpose}`"
            ),
        });
    }
    let upload = upload.ok_or_else(|| missing("file"))?;
    Ok((upload, purpose, filename, keep))
}

fn missing(param: &str) -> GatewayError {
    GatewayError::InvalidField {
        param: Some(param.to_owned()),
        message: format!("the form has no `{param}` field"),
    }
}

/// A small form field's text (at most `MAX_FIELD_BYTES`).
async fn field_text(field: &mut actix_multipart::Field) -> Result<String, GatewayError> {
    let bytes = field
        .bytes(MAX_FIELD_BYTES)
        .await
        .map_err(|_| multipart_error(format!("a field over {MAX_FIELD_BYTES} bytes")))?
        .map_err(multipart_error)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| multipart_error("a field that is not UTF-8"))
}

/// Lists the caller's files, newest first.
#[utoipa::path(
    get,
    path = "/v1/files",
    tag = "batches",
    params(
        ("after" = Option<String>, Query, description = "The last id of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 10000 (default 10000)"),
        ("purpose" = Option<String>, Query, description = "Only files of this purpose"),
        ("order" = Option<String>, Query, description = "`desc` (the only order)"),
    ),
    responses(
        (status = 200, description = "A page of files", body = ListPage<FileObject>),
        (status = 400, description = "A `limit` out of range, `order=asc`, or an unknown parameter", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn list_files(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let query = ListQuery::of(&req)?;
    let limit = query.limit(10_000, 10_000)?;
    if query.order.as_deref().is_some_and(|o| o != "desc") {
        return Err(GatewayError::InvalidField {
            param: Some("order".to_owned()),
            message: "the gateway lists files newest first only: `order` must be `desc`".to_owned(),
        });
    }
    let rows = batches
        .files()
        .list(
            &owner,
            query.after.as_deref(),
            query.purpose.as_deref(),
            limit + 1,
        )
        .await?;
    let data: Vec<FileObject> = rows.into_iter().map(file_object).collect();
    Ok(HttpResponse::Ok().json(page(data, limit, |f| f.id.clone())))
}

/// One of the caller's files.
#[utoipa::path(
    get,
    path = "/v1/files/{file_id}",
    tag = "batches",
    params(("file_id" = String, Path, pattern = "^file-[0-9a-f]{32}$", description = "The file's id")),
    responses(
        (status = 200, description = "The file", body = FileObject),
        (status = 404, description = "No such file for this caller (`not_found`)", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn retrieve_file(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let id = req.match_info().get("file_id").unwrap_or_default();
    let row = batches.files().get(&owner, id).await?;
    Ok(HttpResponse::Ok().json(file_object(row)))
}

/// The bytes of one of the caller's files, streamed.
#[utoipa::path(
    get,
    path = "/v1/files/{file_id}/content",
    tag = "batches",
    params(("file_id" = String, Path, pattern = "^file-[0-9a-f]{32}$", description = "The file's id")),
    responses(
        (status = 200, description = "The file's bytes (`application/octet-stream`)", content_type = "application/octet-stream"),
        (status = 404, description = "No such file for this caller (`not_found`)", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn file_content(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let id = req.match_info().get("file_id").unwrap_or_default();
    let (row, file) = batches.files().open_file(&owner, id).await?;
    let body = tokio_util::io::ReaderStream::new(file);
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .no_chunking(u64::try_from(row.bytes).unwrap_or(0))
        .streaming(body))
}

/// Deletes one of the caller's files.
#[utoipa::path(
    delete,
    path = "/v1/files/{file_id}",
    tag = "batches",
    params(("file_id" = String, Path, pattern = "^file-[0-9a-f]{32}$", description = "The file's id")),
    responses(
        (status = 200, description = "Deleted", body = FileDeleted),
        (status = 404, description = "No such file for this caller (`not_found`)", body = ErrorBody),
        (status = "default", description = "Relayed instead (no store, or a `default_backend` with `batch = \"upstream\"`): the upstream's answer, 404 `unknown_url` without a `default_backend`, 400 `invalid_path` for an unsafe path", body = ErrorBody),
    )
)]
pub async fn delete_file(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Some((batches, owner)) = own_api_for(&req, &state).await? else {
        return passthrough::relay(req, payload, state).await;
    };
    let id = req.match_info().get("file_id").unwrap_or_default();
    batches.files().delete(&owner, id).await?;
    Ok(HttpResponse::Ok().json(FileDeleted {
        id: id.to_owned(),
        object: "file".to_owned(),
        deleted: true,
    }))
}
