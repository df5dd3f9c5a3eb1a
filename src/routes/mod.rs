//! HTTP handlers only; each file is one endpoint family. `configure` is THE route list, used by
//! the server and the tests alike.

mod accounting;
pub mod admin;
pub mod batch_lines;
pub mod batches;
mod body;
mod caller;
pub mod chat;
pub mod completions;
pub mod docs;
pub mod embeddings;
pub mod files;
mod forward;
pub mod health;
mod idempotent;
pub mod metrics;
pub mod models;
pub mod openapi;
mod optional_api;
mod own_api;
pub mod passthrough;
mod reply;
pub mod responses;
pub mod route_table;
mod via_chat;

pub use body::parse_request;

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};

use crate::error::GatewayError;

/// Registers every route.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/v1/chat/completions")
            .route(web::post().to(chat::chat_completions))
            // Other methods on this path (e.g. OpenAI's stored-completions listing) are relayed.
            .default_service(web::to(passthrough::relay)),
    )
    .service(
        web::resource("/v1/embeddings")
            .route(web::post().to(embeddings::create_embeddings))
            .default_service(web::to(passthrough::relay)),
    )
    .service(
        web::resource("/v1/responses")
            .route(web::post().to(responses::create_response))
            // Other methods (OpenAI's retrieve, cancel, input items) are relayed.
            .default_service(web::to(passthrough::relay)),
    )
    .service(
        web::resource("/v1/completions")
            .route(web::post().to(completions::create_completion))
            .default_service(web::to(passthrough::relay)),
    )
    .service(web::resource("/v1/models").route(web::get().to(models::list_models)))
    .service(web::resource("/v1/models/{model:.+}").route(web::get().to(models::retrieve_model)))
    .service(web::resource("/health").route(web::get().to(health::health)))
    .service(web::resource("/metrics").route(web::get().to(metrics::scrape)))
    .service(web::resource("/admin/v1/routes").route(web::get().to(route_table::show_routes)))
    .service(web::resource("/openapi.json").route(web::get().to(docs::openapi_json)))
    .service(web::resource("/docs").route(web::get().to(docs::docs_page)))
    .service(web::resource("/docs/").route(web::get().to(docs::docs_slash)))
    .service(web::resource("/docs/{file:.+}").route(web::get().to(docs::docs_asset)))
    .configure(configure_files_and_batches)
    .service(web::resource("/v1/{tail:.*}").to(passthrough::relay))
    .configure(configure_admin)
    .default_service(web::to(unknown_url));
}

/// `/v1/files` and `/v1/batches`: the gateway's own, or relayed (`own_api`). Other methods on
/// these paths are relayed as any other `/v1` request.
fn configure_files_and_batches(cfg: &mut ServiceConfig) {
    let relay = || web::to(passthrough::relay);
    cfg.service(
        web::resource("/v1/files")
            .route(web::post().to(files::create_file))
            .route(web::get().to(files::list_files))
            .default_service(relay()),
    )
    .service(
        web::resource("/v1/files/{file_id}")
            .route(web::get().to(files::retrieve_file))
            .route(web::delete().to(files::delete_file))
            .default_service(relay()),
    )
    .service(
        web::resource("/v1/files/{file_id}/content")
            .route(web::get().to(files::file_content))
            .default_service(relay()),
    )
    .service(
        web::resource("/v1/batches")
            .route(web::post().to(batches::create_batch))
            .route(web::get().to(batches::list_batches))
            .default_service(relay()),
    )
    .service(
        web::resource("/v1/batches/{batch_id}")
            .route(web::get().to(batches::retrieve_batch))
            .default_service(relay()),
    )
    .service(
        web::resource("/v1/batches/{batch_id}/cancel")
            .route(web::post().to(batches::cancel_batch))
            .default_service(relay()),
    );
}

/// `/admin/v1` (answers only with `[auth]` on).
fn configure_admin(cfg: &mut ServiceConfig) {
    cfg.service(
        web::resource("/admin/v1/projects")
            .route(web::post().to(admin::create_project))
            .route(web::get().to(admin::list_projects)),
    )
    .service(
        web::resource("/admin/v1/projects/{id}")
            .route(web::get().to(admin::get_project))
            .route(web::patch().to(admin::update_project))
            .route(web::delete().to(admin::delete_project)),
    )
    .service(
        web::resource("/admin/v1/projects/{id}/credentials/{backend}")
            .route(web::put().to(admin::put_credential))
            .route(web::delete().to(admin::delete_credential)),
    )
    .service(
        web::resource("/admin/v1/projects/{id}/keys")
            .route(web::post().to(admin::create_key))
            .route(web::get().to(admin::list_keys)),
    )
    .service(web::resource("/admin/v1/keys/{id}").route(web::delete().to(admin::revoke_key)))
    .service(web::resource("/admin/v1/usage").route(web::get().to(admin::usage)))
    .service(
        web::resource("/admin/v1/projects/{id}/rate_limit")
            .route(web::put().to(admin::set_project_rate_limit)),
    )
    .service(
        web::resource("/admin/v1/keys/{id}/rate_limit")
            .route(web::put().to(admin::set_key_rate_limit)),
    );
}

async fn unknown_url(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::UnknownUrl {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    })
}
