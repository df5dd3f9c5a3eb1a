//! Ollama's native wire types (`/api/chat`, `/api/embed`, `/api/tags`), as documented in
//! Ollama's docs/api.md. Requests are borrowed views of the client's typed request; responses
//! are parsed leniently (only what the adapter needs, every field optional that Ollama may
//! omit) and borrow their strings from the upstream bytes where JSON escaping allows.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::schema::chat::Tool;

/// `POST /api/chat` body.
#[derive(Debug, Serialize)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<&'a Tool>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Cow<'a, Value>>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    /// Always sent: Ollama streams unless told `false`.
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Request fields Ollama understands that OpenAI does not model (`keep_alive`, `think`).
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

/// One message of `/api/chat`.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    pub role: &'static str,
    pub content: Cow<'a, str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// A message with only a role and content.
    pub fn new(role: &'static str, content: Cow<'a, str>) -> Self {
        Message {
            role,
            content,
            images: Vec::new(),
            thinking: None,
            tool_calls: Vec::new(),
            tool_name: None,
        }
    }
}

/// A tool call of an earlier assistant turn, arguments as a JSON object (not a string).
#[derive(Debug, Serialize)]
pub struct ToolCallOut<'a> {
    pub function: FunctionOut<'a>,
}

/// The function of a `ToolCallOut`.
#[derive(Debug, Serialize)]
pub struct FunctionOut<'a> {
    pub name: &'a str,
    pub arguments: &'a RawValue,
}

/// `POST /api/embed` body.
#[derive(Debug, Serialize)]
pub struct EmbedRequest<'a> {
    pub model: &'a str,
    pub input: EmbedInput<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    /// `truncate`, `keep_alive`, `options`.
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

/// `input`: one text or several.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EmbedInput<'a> {
    One(&'a str),
    Many(&'a [String]),
}

/// A `/api/chat` response, or one line of its stream.
#[derive(Debug, Deserialize)]
pub struct ChatResponse<'a> {
    #[serde(borrow, default)]
    pub message: Option<MessageIn<'a>>,
    #[serde(default)]
    pub done: bool,
    /// `stop`, `length`, `load`, `unload`; absent on older servers.
    #[serde(borrow, default)]
    pub done_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// A failure reported in a 200 response (the last line of a stream).
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

/// The assistant message of a response, or its delta in a stream line.
#[derive(Debug, Deserialize)]
pub struct MessageIn<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub thinking: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCallIn<'a>>>,
}

/// A tool call as Ollama reports it: complete, never fragmented, arguments as an object.
#[derive(Debug, Deserialize)]
pub struct ToolCallIn<'a> {
    /// Newer servers may send an id; the documented shape has none.
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub function: FunctionIn<'a>,
}

/// The function of a `ToolCallIn`.
#[derive(Debug, Deserialize)]
pub struct FunctionIn<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub arguments: Option<&'a RawValue>,
}

/// A `/api/embed` response.
#[derive(Debug, Deserialize)]
pub struct EmbedResponse<'a> {
    /// Kept raw: relayed as they are in float mode, decoded only for base64.
    #[serde(borrow)]
    pub embeddings: Vec<&'a RawValue>,
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

/// A `/api/tags` response.
#[derive(Debug, Deserialize)]
pub struct TagsResponse {
    #[serde(default)]
    pub models: Vec<TagModel>,
}

/// One installed model.
#[derive(Debug, Deserialize)]
pub struct TagModel {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub modified_at: Option<String>,
}

/// Ollama's error body, `{"error": "..."}`.
#[derive(Debug, Deserialize)]
pub struct ErrorResponse<'a> {
    #[serde(borrow)]
    pub error: &'a RawValue,
}
