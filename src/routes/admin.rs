//! `/admin/v1`: projects, their upstream credentials and their gateway keys, and usage, guarded by
//! `[auth] admin_token`. Each handler checks the token, parses, and calls the one matching
//! function of `crate::auth::admin` (the same ones `switchyard admin` calls). Without `[auth]`
//! these paths do not exist (404 `unknown_url`), exactly as before.

use actix_web::web::{Data, Json, Path, Payload};
use actix_web::{HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;

use super::body::read_body_within;
use crate::auth::Auth;
use crate::auth::admin::{
    CreatedKey, CredentialSpec, KeyInfo, KeySpec, Project, ProjectPatch, ProjectSpec,
};
use crate::auth::rate_limits::RateLimitSpec;
use crate::error::GatewayError;
use crate::schema::ErrorBody;
use crate::state::AppState;
use crate::store::LimitOwner;
use crate::usage::report::{UsageQuery, UsageReport, report};

/// Admin bodies are a few small fields: anything bigger is refused before it is parsed.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The key checker, once the admin token is checked.
fn admin<'s>(req: &HttpRequest, state: &'s AppState) -> Result<&'s Auth, GatewayError> {
    let auth = state
        .auth
        .as_deref()
        .ok_or_else(|| GatewayError::UnknownUrl {
            method: req.method().to_string(),
            path: req.path().to_owned(),
        })?;
    auth.check_admin(req.headers())?;
    Ok(auth)
}

async fn parse<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: Payload,
    state: &AppState,
) -> Result<T, GatewayError> {
    let server = state.routes.load().server.clone();
    let (body, _held) =
        read_body_within(req, payload, MAX_ADMIN_BODY, &server, &state.limits).await?;
    // serde would also fill a struct from a JSON array; the API takes objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(GatewayError::InvalidField {
            param: None,
            message: "the body must be a JSON object".to_owned(),
        });
    }
    super::body::parse_request(&body)
}

/// Creates a project.
#[utoipa::path(post, path = "/admin/v1/projects", tag = "admin", security(("admin_token" = [])),
    request_body = ProjectSpec,
    responses(
        (status = 201, description = "Created", body = Project),
        (status = 400, description = "A field is invalid (`param` names it)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "`[auth]` is off: no admin API (`unknown_url`)", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn create_project(
    req: HttpRequest,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let auth = admin(&req, &state)?;
    let spec: ProjectSpec = parse(&req, payload, &state).await?;
    Ok(HttpResponse::Created().json(auth.create_project(spec).await?))
}

/// Lists the projects.
#[utoipa::path(get, path = "/admin/v1/projects", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every project", body = Vec<Project>),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "`[auth]` is off: no admin API (`unknown_url`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn list_projects(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<Json<Vec<Project>>, GatewayError> {
    Ok(Json(admin(&req, &state)?.list_projects().await?))
}

/// Shows one project.
#[utoipa::path(get, path = "/admin/v1/projects/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id")),
    responses(
        (status = 200, description = "The project", body = Project),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such project, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn get_project(
    req: HttpRequest,
    id: Path<String>,
    state: Data<AppState>,
) -> Result<Json<Project>, GatewayError> {
    Ok(Json(admin(&req, &state)?.get_project(&id).await?))
}

/// Renames a project or changes its model prefixes.
#[utoipa::path(patch, path = "/admin/v1/projects/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id")),
    request_body = ProjectPatch,
    responses(
        (status = 200, description = "The project as changed", body = Project),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such project, or `[auth]` is off", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn update_project(
    req: HttpRequest,
    id: Path<String>,
    payload: Payload,
    state: Data<AppState>,
) -> Result<Json<Project>, GatewayError> {
    let auth = admin(&req, &state)?;
    let patch: ProjectPatch = parse(&req, payload, &state).await?;
    Ok(Json(auth.update_project(&id, patch).await?))
}

/// Deletes a project, its keys and its credentials.
#[utoipa::path(delete, path = "/admin/v1/projects/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such project, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn delete_project(
    req: HttpRequest,
    id: Path<String>,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    admin(&req, &state)?.delete_project(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Stores the project's upstream credential for a backend (write-only: never returned).
#[utoipa::path(put, path = "/admin/v1/projects/{id}/credentials/{backend}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id"), ("backend" = String, Path, description = "A `[backends.<name>]` of routes.toml", pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    request_body = CredentialSpec,
    responses(
        (status = 204, description = "Stored, sealed with the master key"),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such project, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn put_credential(
    req: HttpRequest,
    path: Path<(String, String)>,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let auth = admin(&req, &state)?;
    let spec: CredentialSpec = parse(&req, payload, &state).await?;
    let (id, backend) = path.into_inner();
    auth.put_credential(&id, &backend, spec).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes the project's credential for a backend.
#[utoipa::path(delete, path = "/admin/v1/projects/{id}/credentials/{backend}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id"), ("backend" = String, Path, description = "Backend name", pattern = "^[A-Za-z0-9_.-]{1,128}$")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such credential, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn delete_credential(
    req: HttpRequest,
    path: Path<(String, String)>,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let (id, backend) = path.into_inner();
    admin(&req, &state)?
        .delete_credential(&id, &backend)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mints a gateway key for a project; the answer is the only place the key is ever shown.
#[utoipa::path(post, path = "/admin/v1/projects/{id}/keys", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id")),
    request_body = KeySpec,
    responses(
        (status = 201, description = "Created; `key` is shown only here", body = CreatedKey),
        (status = 400, description = "A field is invalid (a scope outside the project's, a bad lifetime)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such project, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn create_key(
    req: HttpRequest,
    id: Path<String>,
    payload: Payload,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let auth = admin(&req, &state)?;
    let spec: KeySpec = parse(&req, payload, &state).await?;
    Ok(HttpResponse::Created().json(auth.create_key(&id, spec).await?))
}

/// Lists a project's keys (never their secrets).
#[utoipa::path(get, path = "/admin/v1/projects/{id}/keys", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id")),
    responses(
        (status = 200, description = "The keys", body = Vec<KeyInfo>),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such project, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn list_keys(
    req: HttpRequest,
    id: Path<String>,
    state: Data<AppState>,
) -> Result<Json<Vec<KeyInfo>>, GatewayError> {
    Ok(Json(admin(&req, &state)?.list_keys(&id).await?))
}

/// Revokes a key: every gateway instance refuses it within a second.
#[utoipa::path(delete, path = "/admin/v1/keys/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such key, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn revoke_key(
    req: HttpRequest,
    id: Path<String>,
    state: Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    admin(&req, &state)?.revoke_key(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Usage per model, key or day, summed from the records of every gateway instance sharing the
/// store (written within a second of each answer's end).
#[utoipa::path(get, path = "/admin/v1/usage", tag = "admin", security(("admin_token" = [])),
    params(UsageQuery),
    responses(
        (status = 200, description = "The sums", body = UsageReport),
        (status = 400, description = "A parameter is invalid or unknown (`param` names it)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "`[auth]` is off: no admin API (`unknown_url`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn usage(
    req: HttpRequest,
    state: Data<AppState>,
) -> Result<Json<UsageReport>, GatewayError> {
    let auth = admin(&req, &state)?;
    let query = actix_web::web::Query::<UsageQuery>::from_query(req.query_string())
        .map_err(|e| GatewayError::InvalidField {
            param: None,
            message: format!("invalid query: {e}"),
        })?
        .into_inner();
    Ok(Json(report(auth.store(), &query).await?))
}

/// Sets a project's rate limit, shared by all its keys (`{}` removes it).
#[utoipa::path(put, path = "/admin/v1/projects/{id}/rate_limit", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Project id")),
    request_body = RateLimitSpec,
    responses(
        (status = 200, description = "The limit now in force (every instance within a second)", body = RateLimitSpec),
        (status = 400, description = "A value is out of bounds (`param` names it)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such project, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn set_project_rate_limit(
    req: HttpRequest,
    id: Path<String>,
    payload: Payload,
    state: Data<AppState>,
) -> Result<Json<RateLimitSpec>, GatewayError> {
    let auth = admin(&req, &state)?;
    let spec: RateLimitSpec = parse(&req, payload, &state).await?;
    Ok(Json(
        auth.set_rate_limit(LimitOwner::Project, &id, spec).await?,
    ))
}

/// Sets a key's own rate limit (`{}` removes it).
#[utoipa::path(put, path = "/admin/v1/keys/{id}/rate_limit", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Key id")),
    request_body = RateLimitSpec,
    responses(
        (status = 200, description = "The limit now in force (every instance within a second)", body = RateLimitSpec),
        (status = 400, description = "A value is out of bounds (`param` names it)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such key, or `[auth]` is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn set_key_rate_limit(
    req: HttpRequest,
    id: Path<String>,
    payload: Payload,
    state: Data<AppState>,
) -> Result<Json<RateLimitSpec>, GatewayError> {
    let auth = admin(&req, &state)?;
    let spec: RateLimitSpec = parse(&req, payload, &state).await?;
    Ok(Json(auth.set_rate_limit(LimitOwner::Key, &id, spec).await?))
}
