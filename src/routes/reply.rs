//! Turning a backend's `UpstreamReply` into the HTTP response.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};

use crate::backends::{ReplyBody, UpstreamReply};
use crate::observe::Relayed;

/// The response for a successful upstream reply.
pub fn respond(reply: UpstreamReply) -> HttpResponse {
    let mut response = HttpResponse::build(reply.status);
    // Its timing headers are the upstream exchange's (`observe::timing`).
    response.extensions_mut().insert(Relayed);
    let is_events = matches!(reply.body, ReplyBody::EventStream(_));
    for (name, value) in &reply.headers {
        // An event stream's bytes and framing are the gateway's own (headers set below): the
        // upstream's encoding and length describe other bytes.
        if is_events && is_framing_header(name) {
            continue;
        }
        response.append_header((name.clone(), value.clone()));
    }
    match reply.body {
        ReplyBody::Full(bytes) => response.body(bytes),
        ReplyBody::EventStream(stream) => response
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            // Tell buffering reverse proxies (nginx) in front of us to pass events through.
            .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
            .streaming(stream),
        ReplyBody::Raw(stream, Some(length)) => response.no_chunking(length).streaming(stream),
        ReplyBody::Raw(stream, None) => response.streaming(stream),
    }
}

/// Headers that describe the bytes of a body, which the gateway sets for bodies it writes.
fn is_framing_header(name: &header::HeaderName) -> bool {
    name == header::CONTENT_TYPE
        || name == header::CACHE_CONTROL
        || name == header::CONTENT_ENCODING
        || name == header::CONTENT_LENGTH
}
