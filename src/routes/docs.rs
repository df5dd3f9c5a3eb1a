//! `GET /openapi.json` and the API reference page `GET /docs`, served from the binary.
//!
//! The page is Swagger UI from the npm package `swagger-ui-dist`, vendored under
//! `openapi/ui/swagger-ui-dist/` (see the README, "API reference (OpenAPI)", for how to update
//! it) and embedded with `include_bytes!`: no CDN and no network, at build time or when the page
//! is viewed. Vendored files are served under a versioned path with a year-long immutable
//! cache; the page itself, its small initialiser and the document are `no-cache` with an ETag,
//! so a browser revalidates them and a new binary or route table shows at once.

use std::sync::LazyLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::Value;

use super::openapi;
use crate::error::GatewayError;
use crate::state::AppState;

/// The vendored `swagger-ui-dist` version; a unit test checks it against the vendored
/// `package.json`, so the versioned asset URLs (cached as immutable) change with the files.
macro_rules! swagger_ui_version {
    () => {
        "5.35.0"
    };
}

/// The vendored `swagger-ui-dist` version.
pub const SWAGGER_UI_VERSION: &str = swagger_ui_version!();

/// The directory under `/docs/` the vendored files are served from.
const VENDORED_DIR: &str = concat!("swagger-ui-", swagger_ui_version!());

macro_rules! vendored {
    ($file:literal) => {
        include_bytes!(concat!("../../openapi/ui/swagger-ui-dist/", $file))
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const PNG: &str = "image/png";
const JSON: &str = "application/json";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

// Swagger UI renders with inline styles and data: images; it fetches the document and, for
// "Try it out", the API from this origin only. No other origin is allowed anything.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// One file served from the binary.
struct Asset {
    bytes: Bytes,
    content_type: &'static str,
    cache_control: &'static str,
    etag: String,
}

impl Asset {
    fn new(bytes: Bytes, content_type: &'static str, cache_control: &'static str) -> Self {
        let etag = etag_of(&bytes);
        Asset {
            bytes,
            content_type,
            cache_control,
            etag,
        }
    }
}

/// The page. Its links are relative (`docs/…`, `openapi.json`), so it also works behind a
/// reverse proxy that mounts the gateway under a path prefix.
static PAGE: LazyLock<Asset> = LazyLock::new(|| {
    let html = include_str!("../../openapi/ui/index.html").replace("{{swagger_ui}}", VENDORED_DIR);
    Asset::new(Bytes::from(html), HTML, REVALIDATE)
});

/// Files under `/docs/`, by their path below it.
static ASSETS: LazyLock<Vec<(String, Asset)>> = LazyLock::new(|| {
    let vendored = |file: &str, bytes: &'static [u8], content_type| {
        (
            format!("{VENDORED_DIR}/{file}"),
            Asset::new(Bytes::from_static(bytes), content_type, IMMUTABLE),
        )
    };
    vec![
        vendored(
            "swagger-ui-bundle.js",
            vendored!("swagger-ui-bundle.js"),
            JS,
        ),
        vendored("swagger-ui.css", vendored!("swagger-ui.css"), CSS),
        vendored("favicon-32x32.png", vendored!("favicon-32x32.png"), PNG),
        // The bundle's header points here for the licences of what it bundles.
        vendored(
            "swagger-ui-bundle.js.LICENSE.txt",
            vendored!("swagger-ui-bundle.js.LICENSE.txt"),
            TEXT,
        ),
        vendored("LICENSE", vendored!("LICENSE"), TEXT),
        vendored("NOTICE", vendored!("NOTICE"), TEXT),
        (
            "init.js".to_owned(),
            Asset::new(
                Bytes::from_static(include_bytes!("../../openapi/ui/init.js")),
                JS,
                REVALIDATE,
            ),
        ),
    ]
});

/// The document without route examples, built once.
static SPEC: LazyLock<Value> = LazyLock::new(openapi::to_value);

/// Serves the OpenAPI document, with the models of the route table in force as examples.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document; the `model` fields list the models the route table in force serves as examples", content_type = "application/json", body = Object),
        (status = 304, description = "Unchanged since the ETag sent in `If-None-Match`"),
    )
)]
pub async fn openapi_json(req: HttpRequest, state: Data<AppState>) -> HttpResponse {
    let table = state.routes.load_full();
    let models: Vec<String> = table.models().await.into_iter().map(|m| m.id).collect();
    let prefixes: Vec<String> = table.routes().iter().map(|r| r.prefix.clone()).collect();
    let spec = openapi::with_route_examples(SPEC.clone(), &models, &prefixes);
    let bytes = match serde_json::to_vec(&spec) {
        Ok(bytes) => Bytes::from(bytes),
        Err(err) => {
            return actix_web::ResponseError::error_response(&GatewayError::Internal {
                message: format!("serialising the OpenAPI document: {err}"),
            });
        }
    };
    serve(&req, &Asset::new(bytes, JSON, REVALIDATE))
}

/// The API reference page (Swagger UI), rendering `/openapi.json`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    responses(
        (status = 200, description = "An HTML page rendering this document, with \"Try it out\" against this gateway; its scripts and styles are served by the gateway itself", content_type = "text/html", body = String),
        (status = 304, description = "Unchanged since the ETag sent in `If-None-Match`"),
    )
)]
pub async fn docs_page(req: HttpRequest) -> HttpResponse {
    let mut response = serve(&req, &PAGE);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

/// `GET /docs/` redirects to `/docs`, whose relative links assume no trailing slash.
pub async fn docs_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "../docs"))
        .finish()
}

/// A file the page loads, from below `/docs/`.
pub async fn docs_asset(req: HttpRequest) -> Result<HttpResponse, GatewayError> {
    let file = req.match_info().get("file").unwrap_or_default();
    ASSETS
        .iter()
        .find(|(path, _)| path == file)
        .map(|(_, asset)| serve(&req, asset))
        .ok_or_else(|| GatewayError::UnknownUrl {
            method: req.method().to_string(),
            path: req.path().to_owned(),
        })
}

/// The asset, or 304 when the client already holds this version.
fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == asset.etag || tag == "*")
        });
    let mut response = if fresh {
        HttpResponse::build(StatusCode::NOT_MODIFIED)
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, asset.cache_control))
        .insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        response.finish()
    } else {
        response
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .body(asset.bytes.clone())
    }
}

/// A strong ETag: FNV-1a (64 bits) of the bytes and their length. Not cryptographic; it only
/// has to change when the bytes do.
fn etag_of(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("\"{hash:016x}-{:x}\"", bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versioned_path_matches_the_vendored_package() {
        let package: Value = serde_json::from_slice(vendored!("package.json")).unwrap();
        assert_eq!(package["name"], "swagger-ui-dist");
        assert_eq!(
            package["version"], SWAGGER_UI_VERSION,
            "openapi/ui/swagger-ui-dist holds another version than swagger_ui_version!(): \
             update both with scripts/update-swagger-ui.sh"
        );
    }

    #[test]
    fn the_page_links_only_files_it_serves() {
        let html = std::str::from_utf8(&PAGE.bytes).unwrap();
        assert!(!html.contains("{{"), "unreplaced placeholder");
        assert!(
            !html.contains("//"),
            "the page must link nothing absolute: {html}"
        );
        for link in html
            .split(['"', '\''])
            .filter_map(|s| s.strip_prefix("docs/"))
        {
            assert!(
                ASSETS.iter().any(|(path, _)| path == link),
                "{link} is linked but not served"
            );
        }
    }

    #[test]
    fn etags_differ_when_bytes_do() {
        assert_ne!(etag_of(b"a"), etag_of(b"b"));
        assert_eq!(etag_of(b"a"), etag_of(b"a"));
    }
}
