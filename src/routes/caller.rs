//! The caller's gateway key, for the handlers that relay: checked once at the start of a
//! request, then admitted per model. Without `[auth]` both steps let everything through and the
//! client's own `Authorization` is handled as it always was.

use std::sync::Arc;

use actix_web::HttpRequest;

use crate::auth::Grant;
use crate::backends::UpstreamAuth;
use crate::error::GatewayError;
use crate::state::AppState;

/// Who is calling: `None` when `[auth]` is off.
pub type Caller = Option<Arc<Grant>>;

/// Checks the request's key before anything else is read (an unauthenticated client does not
/// get to upload a body).
pub async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Caller, GatewayError> {
    match &state.auth {
        Some(auth) => auth.authenticate(req.headers()).await.map(Some),
        None => Ok(None),
    }
}

/// Refuses a model outside the key's scope, before any route is looked up (so a refusal says
/// nothing about which routes exist).
pub fn check_scope(caller: &Caller, model: &str) -> Result<(), GatewayError> {
    match caller {
        Some(grant) if !grant.permits(model) => Err(GatewayError::ModelNotPermitted {
            model: model.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Counts the request against the key's cap: once per request, whichever of its route's
/// backends end up trying it.
pub async fn admit(state: &AppState, caller: &Caller, model: &str) -> Result<(), GatewayError> {
    match (&state.auth, caller) {
        (Some(auth), Some(grant)) => auth.admit(grant, model).await,
        _ => Ok(()),
    }
}

/// The credential that goes upstream to `backend`: the project's for it, else the backend's
/// own; never the caller's gateway key.
pub fn upstream_auth<'c>(caller: &'c Caller, backend: &str) -> UpstreamAuth<'c> {
    match caller {
        Some(grant) => UpstreamAuth::Gateway(grant.credential(backend)),
        None => UpstreamAuth::Client,
    }
}
