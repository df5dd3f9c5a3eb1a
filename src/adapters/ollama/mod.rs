//! Ollama's native API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`) ↔ OpenAI's wire
//! format.
//!
//! The shapes are Ollama's documented API (docs/api.md; summarised with the mapping in
//! docs/ollama-api.md of this project's shared docs). `request` builds Ollama bodies from typed
//! OpenAI requests, `response` converts whole responses and error bodies, `stream` is the
//! `StreamAdapter` for the NDJSON chat stream, `generate` serves legacy completions. No I/O here: transport is `backends::ollama`.

mod generate;
mod request;
mod response;
mod stream;
mod wire;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use generate::{GenerateStream, generate_request, generate_response};
pub use request::{chat_request, embed_request};
pub use response::{chat_response, embed_response, error_body, tags};
pub use stream::ChatStream;

use wire::ToolCallIn;

/// OpenAI's `finish_reason` for an Ollama answer: `tool_calls` when the message called tools
/// (Ollama still says `stop`), `length` when `num_predict` cut it, else `stop` (also for
/// servers too old to send `done_reason`).
fn finish_reason(called_tools: bool, done_reason: Option<&str>) -> &'static str {
    match done_reason {
        _ if called_tools => "tool_calls",
        Some("length") => "length",
        _ => "stop",
    }
}

/// Non-empty text, or `None`.
fn text<'a>(value: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    value.as_deref().filter(|t| !t.is_empty())
}

/// The call's id when the server sent one (newer servers do), else a fresh `call_…` id, since
/// OpenAI clients send it back with the tool's result.
fn tool_call_id(call: &ToolCallIn<'_>) -> String {
    match call.id.as_deref() {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => format!("call_{}", uuid::Uuid::new_v4().simple()),
    }
}

/// The call's arguments as OpenAI's JSON string: Ollama's object, as written.
fn tool_call_arguments(call: &ToolCallIn<'_>) -> String {
    match call.function.arguments {
        None => "{}".to_owned(),
        Some(raw) if raw.get() == "null" => "{}".to_owned(),
        // A server that already sends a string: its content is the JSON text.
        Some(raw) if raw.get().starts_with('"') => {
            serde_json::from_str(raw.get()).unwrap_or_else(|_| raw.get().to_owned())
        }
        Some(raw) => raw.get().to_owned(),
    }
}

/// The failure of a stream that ended without its final `done: true` line, which Ollama always
/// sends after a complete answer.
fn ended_before_done(backend: &str) -> crate::error::GatewayError {
    crate::error::GatewayError::UpstreamProtocol {
        backend: backend.to_owned(),
        message: "the stream ended before its final `done` line".to_owned(),
    }
}

/// The message of an Ollama `error` value: a string as documented, or an object's `message`.
fn error_message(error: &RawValue) -> String {
    #[derive(Deserialize)]
    struct WithMessage {
        message: String,
    }
    if let Ok(text) = serde_json::from_str::<String>(error.get()) {
        return text;
    }
    if let Ok(object) = serde_json::from_str::<WithMessage>(error.get()) {
        return object.message;
    }
    error.get().to_owned()
}
