//! Reading a request body under the `[server]` limits, so that every refusal is a `GatewayError`
//! in OpenAI's shape (not actix's plain text): larger than `max_body_bytes` is a 413, slower than
//! `request_body_timeout` a 408, and past the gateway-wide `max_buffered_body_bytes` a 503.
//!
//! Memory follows the bytes that arrived, never the declared `Content-Length`: a client that
//! declares 32 MiB and sends 2 bytes costs 2 bytes.

use actix_web::HttpRequest;
use actix_web::http::header;
use actix_web::web::Payload;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::config::ServerConfig;
use crate::error::GatewayError;
use crate::limits::{Held, Limits};

/// The whole body and its share of the body budget (given back when dropped, so keep it while
/// the body is in use), or the limit it broke.
pub async fn read_body(
    req: &HttpRequest,
    payload: Payload,
    server: &ServerConfig,
    limits: &Limits,
) -> Result<(Bytes, Held), GatewayError> {
    read_body_within(req, payload, server.max_body_bytes, server, limits).await
}

/// `read_body` with a limit of its own, lower than `max_body_bytes` (the admin API's bodies).
pub async fn read_body_within(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
    server: &ServerConfig,
    limits: &Limits,
) -> Result<(Bytes, Held), GatewayError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let timeout = server.request_body_timeout;
    match tokio::time::timeout(timeout, collect(payload, limit, limits)).await {
        Ok(result) => result,
        Err(_) => Err(GatewayError::RequestTimeout {
            phase: "body",
            limit_secs: timeout.as_secs().max(1),
        }),
    }
}

async fn collect(
    mut payload: Payload,
    limit: usize,
    limits: &Limits,
) -> Result<(Bytes, Held), GatewayError> {
    let mut held = Held::none();
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| GatewayError::InvalidJson {
            message: format!("the request body could not be read: {e}"),
        })?;
        let len = first.as_ref().map_or(0, Bytes::len) + rest.as_ref().map_or(0, BytesMut::len);
        if len + chunk.len() > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        limits.hold_body_bytes(&mut held, chunk.len())?;
        // Most bodies arrive in one piece: keep it as is and only copy when a second arrives.
        // The buffer grows with what arrives (amortised doubling), never to the declared size.
        match (&first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(f.len() + chunk.len());
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    let body = match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(first), None) => first,
        (None, None) => Bytes::new(),
    };
    Ok((body, held))
}

/// Parses a request body into `T`, naming the field at fault when it does not fit.
pub fn parse_request<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    // Path tracking costs on every value; bodies are almost always valid, so parse without it
    // and pay for it only to explain a failure.
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(_) => Err(explain::<T>(body)),
    }
}

/// The error of a body that does not parse as `T`, with the path of the field at fault.
fn explain<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> GatewayError {
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(_) => GatewayError::Internal {
            message: "a body failed to parse once and parsed the second time".to_owned(),
        },
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                GatewayError::InvalidJson {
                    message: inner.to_string(),
                }
            } else {
                GatewayError::InvalidField {
                    param: (path != ".").then_some(path),
                    message: strip_position(&inner.to_string()),
                }
            }
        }
    }
}

// serde_json appends " at line 1 column 57" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
