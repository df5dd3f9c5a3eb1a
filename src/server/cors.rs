//! `[server.cors]`: which pages on other origins may call the gateway from a browser.
//!
//! The middleware answers a preflight (`OPTIONS` with `Access-Control-Request-Method`) itself,
//! before any key is asked for: a browser never sends credentials on a preflight. An answer
//! to an origin outside the list carries no grant (no `Access-Control-Allow-Origin`), so the
//! browser withholds it from the page; the request itself is served as for any client, since
//! CORS protects browsers' users, not the gateway. No cookies are involved (keys travel in
//! `Authorization`), so credentials mode is never granted.

use actix_cors::Cors;
use actix_web::middleware::Condition;

use crate::config::CorsOrigins;
use crate::observe::timing;

/// What a page may read of an answer beyond the CORS-safelisted headers: the request id, the
/// rate-limit headers (as OpenAI names them) and the timing headers.
const EXPOSED: [&str; 8] = [
    "x-request-id",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "retry-after",
];

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE_S: usize = 600;

/// The CORS middleware `[server.cors]` asks for; off (a pass-through) without it.
pub fn middleware(origins: Option<&CorsOrigins>) -> Condition<Cors> {
    match origins {
        Some(origins) => Condition::new(true, cors(origins)),
        None => Condition::new(false, Cors::default()),
    }
}

fn cors(origins: &CorsOrigins) -> Cors {
    let cors = match origins {
        CorsOrigins::Any => Cors::default().allow_any_origin().send_wildcard(),
        // Validated at load (`config::validate`): each is an origin as browsers send it.
        CorsOrigins::List(list) => list
            .iter()
            .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin)),
    };
    cors.allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_any_header()
        .expose_headers(EXPOSED.iter().copied())
        .expose_headers(timing::STAMPED.iter().cloned())
        .max_age(PREFLIGHT_MAX_AGE_S)
}
