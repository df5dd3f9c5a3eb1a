//! The Responses API through a chat completion, for backends without a Responses API of their
//! own: the typed request becomes a chat completion request (`adapters::responses`), goes
//! through the route's backend exactly as a `/v1/chat/completions` request would, and its answer
//! (whole, or the normalised chunk stream) becomes a `response` object or the Responses events.

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderValue};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::caller::{self, Caller};
use super::forward::with_model;
use crate::adapters::responses::{self, ResponseShell, ResponsesStream};
use crate::adapters::stream::{Reads, normalize};
use crate::backends::{Endpoint, ParsedRequest, ReplyBody, UpstreamCall, UpstreamReply};
use crate::error::GatewayError;
use crate::routing::{Resolved, failover};
use crate::schema::ResponsesRequest;

/// The largest chat completion held to convert (a whole answer is a few KiB to a few MiB).
const MAX_CHAT_BODY: usize = 64 * 1024 * 1024;

/// Serves `request` on the route `resolved` through a chat completion; the caller was admitted.
/// `trying` is told which backend and model name each attempt takes.
pub async fn reply_via_chat(
    req: &HttpRequest,
    caller: &Caller,
    resolved: Resolved<'_>,
    request: &ResponsesRequest,
    mut trying: impl FnMut(&str, &str),
) -> Result<UpstreamReply, GatewayError> {
    let chat = responses::chat_request(request, resolved.upstream_model)?;
    let body = serde_json::to_vec(&chat).map_err(|e| GatewayError::Internal {
        message: format!("serialising a chat request: {e}"),
    })?;
    let backend = resolved.route.backend_name.as_str();
    tracing::debug!(model = %request.model, backend, "routed through chat completions");
    let body = Bytes::from(body);
    // Through the route's backends as a chat completion would go, failover included; a
    // backend with its own name for the model gets it spliced into the chat body.
    let reply = failover::send(resolved, |backend, upstream_model| {
        trying(backend, upstream_model);
        Ok(UpstreamCall {
            endpoint: Endpoint::ChatCompletions,
            body: with_model(&body, resolved.upstream_model, upstream_model)?,
            stream: request.is_stream(),
            client_headers: req.headers(),
            parsed: ParsedRequest::Chat(&chat),
            client_model: &request.model,
            upstream_model,
            auth: caller::upstream_auth(caller, backend),
        })
    })
    .await?;
    let shell = ResponseShell::new(request, &request.model);
    let body = match (reply.body, request.is_stream()) {
        (ReplyBody::EventStream(chunks), true) => ReplyBody::EventStream(normalize(
            chunks,
            ResponsesStream::new(shell, backend),
            backend,
            // The chat stream already sends whatever it had ready: pending means it has none.
            Reads::Direct,
        )),
        (ReplyBody::EventStream(_), false) | (ReplyBody::Full(_) | ReplyBody::Raw(..), true) => {
            return Err(GatewayError::UpstreamProtocol {
                backend: backend.to_owned(),
                message: "the chat completion did not come back streamed as asked".to_owned(),
            });
        }
        (whole, false) => {
            let chat = whole_body(whole, backend).await?;
            ReplyBody::Full(responses::response_from_chat(&chat, &shell, backend)?)
        }
    };
    let mut headers = reply.headers;
    // The body is the gateway's own: the upstream's length and type no longer describe it.
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(UpstreamReply {
        status: reply.status,
        headers,
        body,
    })
}

/// A non-streamed reply's whole body, up to `MAX_CHAT_BODY`.
async fn whole_body(body: ReplyBody, backend: &str) -> Result<Bytes, GatewayError> {
    let mut stream = match body {
        ReplyBody::Full(bytes) => return Ok(bytes),
        ReplyBody::Raw(stream, _) | ReplyBody::EventStream(stream) => stream,
    };
    let mut whole = BytesMut::new();
    while let Some(read) = stream.next().await {
        whole.extend_from_slice(&read?);
        if whole.len() > MAX_CHAT_BODY {
            return Err(GatewayError::UpstreamProtocol {
                backend: backend.to_owned(),
                message: format!("a chat completion over {MAX_CHAT_BODY} bytes"),
            });
        }
    }
    Ok(whole.freeze())
}
