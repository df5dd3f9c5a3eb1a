//! OpenAI wire types: what clients send and receive. No I/O and no routing here.

pub mod chat;
pub mod chunk;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod integer;
pub mod models;
pub mod responses;

pub use chat::{ChatCompletion, ChatCompletionRequest, ChatMessage, MessageContent};
pub use chunk::{ChatCompletionChunk, Usage};
pub use completions::{CompletionRequest, TextCompletion};
pub use embeddings::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EncodingFormat};
pub use error::{ErrorBody, ErrorObject};
pub use models::{Model, ModelList};
pub use responses::{Response, ResponseStreamEvent, ResponsesRequest};

use crate::error::GatewayError;

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
