//! `GET /metrics`: the gateway's Prometheus metrics (`observe::metrics`), in OpenMetrics text.
//!
//! On the main listener by default, where `[auth]` asks for the admin token (a scrape reveals
//! project names and traffic); on `[metrics] listen` when set, without a token (bind it to an
//! address only the scraper reaches), and then not on the main listener at all. Without
//! `[metrics]` the path does not exist (404 `unknown_url`).

use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};

use crate::error::GatewayError;
use crate::observe::metrics::CONTENT_TYPE;
use crate::schema::ErrorBody;
use crate::state::AppState;

/// The gateway's Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Metrics in OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, description = "With `[auth]`: missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No `[metrics]`, or they are served on `[metrics] listen` (`unknown_url`)", body = ErrorBody),
    ))]
pub async fn scrape(req: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let metrics = match &state.metrics {
        Some(metrics) if state.metrics_listen.is_none() => metrics,
        _ => {
            return Err(GatewayError::UnknownUrl {
                method: req.method().to_string(),
                path: req.path().to_owned(),
            });
        }
    };
    if let Some(auth) = &state.auth {
        auth.check_admin(req.headers())?;
    }
    Ok(render(metrics))
}

/// `/metrics` on `[metrics] listen`.
pub async fn scrape_apart(state: Data<AppState>) -> HttpResponse {
    match &state.metrics {
        Some(metrics) => render(metrics),
        None => HttpResponse::NotFound().finish(),
    }
}

fn render(metrics: &crate::observe::Metrics) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics.render())
}
