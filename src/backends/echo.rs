//! `kind = "echo"`: no network. Answers chat with the last user message (streamed word by word),
//! legacy completions with the prompt, and embeddings with deterministic vectors; the
//! out-of-the-box backend and a load-test target.
//!
//! The shipped routes.toml serves it to anyone, so its work is bounded the way OpenAI bounds
//! embeddings (inputs per request; dimensions, capped by `adapters::echo::dimensions`), plus a
//! cap on the numbers one answer holds: a small request must never become a huge answer. Chat
//! and completion output is proportional to the input by construction (see
//! `adapters::echo::pieces`).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use bytes::Bytes;
use futures::stream;

use super::{
    Backend, DiscoveredModel, Endpoint, ParsedRequest, ReplyBody, UpstreamCall, UpstreamReply,
};
use crate::adapters::echo;
use crate::adapters::text_completion::refuse_unservable;
use crate::error::GatewayError;
use crate::schema::EmbeddingRequest;

/// Inputs one embeddings request may carry (OpenAI's own limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;
/// Numbers one embeddings answer may hold (inputs × dimensions): at most about 6 MB of JSON.
pub const MAX_EMBEDDING_VALUES: usize = 256 * 1024;

/// Refuses an embeddings request whose answer would exceed echo's bounds, naming the field.
fn check_embeddings(request: &EmbeddingRequest) -> Result<(), GatewayError> {
    let invalid = |param: &str, message: String| GatewayError::InvalidField {
        param: Some(param.to_owned()),
        message,
    };
    let inputs = request.input.len();
    if inputs > MAX_EMBEDDING_INPUTS {
        return Err(invalid(
            "input",
            format!("{inputs} inputs; at most {MAX_EMBEDDING_INPUTS} are allowed per request"),
        ));
    }
    if request.dimensions == Some(0) {
        return Err(invalid("dimensions", "must be at least 1".to_owned()));
    }
    let dims = echo::dimensions(request);
    if inputs.saturating_mul(dims) > MAX_EMBEDDING_VALUES {
        return Err(invalid(
            "dimensions",
            format!(
                "{inputs} inputs of {dims} dimensions exceed the echo backend's \
                 {MAX_EMBEDDING_VALUES} numbers per answer"
            ),
        ));
    }
    Ok(())
}

/// The echo backend.
#[derive(Debug)]
pub struct EchoBackend {
    name: String,
}

impl EchoBackend {
    /// An echo backend called `name`.
    pub fn new(name: &str) -> Self {
        EchoBackend {
            name: name.to_owned(),
        }
    }

    fn unsupported(&self, endpoint: &str) -> GatewayError {
        GatewayError::UnsupportedEndpoint {
            backend: self.name.clone(),
            endpoint: format!("/v1{endpoint}"),
        }
    }
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

impl Backend for EchoBackend {
    async fn send(&self, call: UpstreamCall<'_>) -> Result<UpstreamReply, GatewayError> {
        let body = match (call.endpoint, call.parsed) {
            (Endpoint::ChatCompletions, ParsedRequest::Chat(request)) if call.stream => {
                let events = echo::chat_chunks(request, call.client_model);
                ReplyBody::EventStream(Box::pin(stream::iter(
                    events.into_iter().map(Ok::<Bytes, GatewayError>),
                )))
            }
            (Endpoint::ChatCompletions, ParsedRequest::Chat(request)) => {
                ReplyBody::Full(echo::chat_completion(request, call.client_model))
            }
            (Endpoint::Embeddings, ParsedRequest::Embeddings(request)) => {
                check_embeddings(request)?;
                ReplyBody::Full(echo::embeddings(request, call.client_model))
            }
            (Endpoint::Completions, ParsedRequest::Completion(request)) => {
                refuse_unservable(request)?;
                if call.stream {
                    let events = echo::completion_events(request, call.client_model);
                    ReplyBody::EventStream(Box::pin(stream::iter(
                        events.into_iter().map(Ok::<Bytes, GatewayError>),
                    )))
                } else {
                    ReplyBody::Full(echo::completion(request, call.client_model))
                }
            }
            (endpoint, _) => return Err(self.unsupported(endpoint.path())),
        };
        Ok(UpstreamReply {
            status: StatusCode::OK,
            headers: json_headers(),
            body,
        })
    }

    async fn list_models(&self) -> Result<Vec<DiscoveredModel>, GatewayError> {
        Ok(Vec::new())
    }
}
