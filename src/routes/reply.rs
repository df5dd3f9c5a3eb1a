//! Turning a backend's `UpstreamReply` into the HTTP response.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};

use crate::backends::{ReplyBody, UpstreamReply};
use crate::observe::Relayed;

/// The response for a successful upstream reply.
pub fn respond(reply: UpstreamReply) -> HttpResponse {
    let UpstreamReply {
        status,
        mut headers,
        body,
    } = reply;
    if matches!(body, ReplyBody::EventStream(_)) {
        // An event stream's bytes and framing are the gateway's own (headers set below): the
        // upstream's encoding and length describe other bytes.
        headers.retain(|name, _| !is_framing_header(name) && name != "x-accel-buffering");
    }
    let mut response = HttpResponse::build(status);
    // Its timing headers are the upstream exchange's (`observe::timing`).
    response.extensions_mut().insert(Relayed);
    let mut response = match body {
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
    };
    // The upstream's headers, moved in: the builder would copy each one it is given.
    let own = response.headers_mut();
    for (name, value) in headers {
        own.append(name, value);
    }
    response
}

/// Headers that describe the bytes of a body, which the gateway sets for bodies it writes.
fn is_framing_header(name: &header::HeaderName) -> bool {
    name == header::CONTENT_TYPE
        || name == header::CACHE_CONTROL
        || name == header::CONTENT_ENCODING
        || name == header::CONTENT_LENGTH
}
