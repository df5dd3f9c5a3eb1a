//! What the gateway's own Files and Batches handlers share: whether the gateway serves the
//! API itself (else the request is relayed as before), whose files and batches a request
//! sees, and the list pages' query.

use std::sync::Arc;

use actix_web::HttpRequest;
use serde::Deserialize;

use super::caller::Caller;
use crate::batches::Batches;
use crate::error::GatewayError;
use crate::state::AppState;

/// The gateway's own Batch API, unless it has none (no store) or `default_backend` has one of
/// its own (`batch = "upstream"`), which then gets every Files and Batches request as before.
pub fn own_api(state: &AppState) -> Option<&Arc<Batches>> {
    let upstream = state.routes.load().server.batches_upstream;
    state.batches.as_ref().filter(|_| !upstream)
}

/// What a handler of the gateway's own API works with: the API and whose files and batches the
/// authenticated caller sees; `None` when the request is to be relayed instead (`own_api`).
pub async fn own_api_for(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<(Arc<Batches>, String)>, GatewayError> {
    let Some(batches) = own_api(state) else {
        return Ok(None);
    };
    let batches = batches.clone();
    let caller = super::caller::authenticate(req, state).await?;
    Ok(Some((batches, owner(&caller, req))))
}

/// Whose files and batches the caller sees: its project's with `[auth]`, else those sent with
/// the same `Authorization` (hashed, as `Idempotency-Key` scopes are).
pub fn owner(caller: &Caller, req: &HttpRequest) -> String {
    match caller {
        Some(grant) => format!("project:{}", grant.project_id),
        None => crate::idempotency::scope_of(None, req.headers()),
    }
}

/// `?after=&limit=` (and for files `purpose=`, `order=`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The last id of the previous page.
    pub after: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Files only.
    pub purpose: Option<String>,
    /// Files only: `desc` (newest first, the only order kept).
    pub order: Option<String>,
}

impl ListQuery {
    /// The request's query, or a 400 naming what is wrong.
    pub fn of(req: &HttpRequest) -> Result<ListQuery, GatewayError> {
        actix_web::web::Query::<ListQuery>::from_query(req.query_string())
            .map(actix_web::web::Query::into_inner)
            .map_err(|e| GatewayError::InvalidField {
                param: None,
                message: format!("the query string is not valid: {e}"),
            })
    }

    /// `limit`, between 1 and `most`; `default` when absent.
    pub fn limit(&self, default: i64, most: i64) -> Result<i64, GatewayError> {
        match self.limit {
            None => Ok(default),
            Some(n) if (1..=most).contains(&n) => Ok(n),
            Some(n) => Err(GatewayError::InvalidField {
                param: Some("limit".to_owned()),
                message: format!("`limit` must be between 1 and {most}, not {n}"),
            }),
        }
    }
}
