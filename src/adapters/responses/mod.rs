//! The Responses API (`/v1/responses`) served through a chat completion, for backends without a
//! Responses API of their own: `request` turns a Responses request into a chat completion
//! request, `response` turns the chat completion back into a `response` object, and `stream`
//! is the `StreamAdapter` that turns the chat completion's canonical SSE chunks into the
//! Responses event sequence. Pure and synchronous; the flow that sends the chat completion is
//! `routes::translated`.

mod request;
mod response;
mod stream;

use std::collections::BTreeMap;

pub use request::chat_request;
pub use response::response_from_chat;
pub use stream::ResponsesStream;

use crate::adapters::chunk::unix_now;
use crate::schema::chat::ToolChoiceMode;
use crate::schema::responses::{
    FunctionTool, IncompleteDetails, OutputContent, OutputItem, Response, ResponseError,
    ResponseToolChoice, ResponseUsage, ResponsesRequest, TextConfig, TextFormat,
};

/// What a response repeats of its request, and its identity: one per request, shared by the
/// events of a stream.
#[derive(Debug, Clone)]
pub struct ResponseShell {
    id: String,
    created_at: u64,
    model: String,
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    parallel_tool_calls: bool,
    temperature: Option<f32>,
    top_p: Option<f32>,
    text: TextConfig,
    tool_choice: ResponseToolChoice,
    tools: Vec<FunctionTool>,
    metadata: BTreeMap<String, String>,
    user: Option<String>,
}

impl ResponseShell {
    /// The shell of the response to `request`, answering `model` (the name the client sent).
    pub fn new(request: &ResponsesRequest, model: &str) -> Self {
        ResponseShell {
            id: format!("resp_{}", uuid::Uuid::new_v4().simple()),
            created_at: unix_now(),
            model: model.to_owned(),
            instructions: request.instructions.clone(),
            max_output_tokens: request.max_output_tokens,
            parallel_tool_calls: request.parallel_tool_calls.unwrap_or(true),
            temperature: request.temperature,
            top_p: request.top_p,
            text: TextConfig {
                format: Some(
                    request
                        .text
                        .as_ref()
                        .and_then(|t| t.format.clone())
                        .unwrap_or(TextFormat::Text),
                ),
            },
            tool_choice: request
                .tool_choice
                .clone()
                .unwrap_or(ResponseToolChoice::Mode(ToolChoiceMode::Auto)),
            tools: request.tools.clone().unwrap_or_default(),
            metadata: request.metadata.clone().unwrap_or_default(),
            user: request.user.clone(),
        }
    }

    /// The response object in `state`, with `output` and `usage`.
    pub fn response(
        &self,
        state: Ending,
        output: Vec<OutputItem>,
        usage: Option<ResponseUsage>,
    ) -> Response {
        let (status, error, incomplete_details) = match state {
            Ending::InProgress => ("in_progress", None, None),
            Ending::Completed => ("completed", None, None),
            Ending::Incomplete(reason) => (
                "incomplete",
                None,
                Some(IncompleteDetails {
                    reason: reason.to_owned(),
                }),
            ),
            Ending::Failed(message) => (
                "failed",
                Some(ResponseError {
                    code: "server_error".to_owned(),
                    message,
                }),
                None,
            ),
        };
        Response {
            id: self.id.clone(),
            object: "response".to_owned(),
            created_at: self.created_at,
            status: status.to_owned(),
            error,
            incomplete_details,
            instructions: self.instructions.clone(),
            max_output_tokens: self.max_output_tokens,
            model: self.model.clone(),
            output,
            parallel_tool_calls: self.parallel_tool_calls,
            previous_response_id: None,
            store: false,
            temperature: self.temperature,
            text: self.text.clone(),
            tool_choice: self.tool_choice.clone(),
            tools: self.tools.clone(),
            top_p: self.top_p,
            truncation: "disabled".to_owned(),
            usage,
            metadata: self.metadata.clone(),
            user: self.user.clone(),
        }
    }
}

/// The state a response is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Still streaming.
    InProgress,
    /// Finished normally (`stop`, `tool_calls`).
    Completed,
    /// Cut short: `max_output_tokens` or `content_filter`.
    Incomplete(&'static str),
    /// Failed with this message.
    Failed(String),
}

impl Ending {
    /// The ending a chat completion's `finish_reason` means.
    pub fn from_finish_reason(reason: Option<&str>) -> Self {
        match reason {
            Some("length") => Ending::Incomplete("max_output_tokens"),
            Some("content_filter") => Ending::Incomplete("content_filter"),
            _ => Ending::Completed,
        }
    }

    /// The `status` of the output items the response ends with.
    fn item_status(&self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            _ => "incomplete",
        }
    }
}

/// A fresh output item id with `prefix` (`msg`, `fc`).
fn item_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A finished assistant message item.
fn message_item(id: String, status: &str, text: String, refusal: Option<String>) -> OutputItem {
    let content = match refusal {
        Some(refusal) if text.is_empty() => vec![OutputContent::Refusal { refusal }],
        _ => vec![OutputContent::OutputText {
            text,
            annotations: Vec::new(),
        }],
    };
    OutputItem::Message {
        id,
        status: status.to_owned(),
        role: "assistant".to_owned(),
        content,
    }
}

/// A finished function call item.
fn call_item(id: String, status: &str, call_id: String, name: String, args: String) -> OutputItem {
    OutputItem::FunctionCall {
        id,
        status: status.to_owned(),
        call_id,
        name,
        arguments: args,
    }
}
