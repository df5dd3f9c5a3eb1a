//! Streamed chat completion chunks (`chat.completion.chunk`) and the usage block.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One server-sent event of a streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// Completion id, the same on every chunk of a stream.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds, the same on every chunk.
    pub created: u64,
    /// The model, as the client named it.
    pub model: String,
    /// Deltas; empty on the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// `null` on every chunk but the last one when `include_usage` is on (OpenAI's shape);
    /// absent otherwise.
    #[serde(default, skip_serializing_if = "UsageField::is_absent")]
    #[schema(value_type = Option<Usage>)]
    pub usage: UsageField,
}

/// The three states of a chunk's `usage`: absent, `null`, or a value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "Option<Usage>")]
pub enum UsageField {
    /// Not serialised (the client did not ask for usage).
    #[default]
    Absent,
    /// Serialised as `null` (usage comes in a later chunk).
    Null,
    /// The usage block.
    Value(Usage),
}

impl UsageField {
    fn is_absent(&self) -> bool {
        matches!(self, UsageField::Absent)
    }
}

impl From<Option<Usage>> for UsageField {
    fn from(value: Option<Usage>) -> Self {
        value.map_or(UsageField::Null, UsageField::Value)
    }
}

impl Serialize for UsageField {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UsageField::Value(u) => u.serialize(s),
            UsageField::Absent | UsageField::Null => s.serialize_none(),
        }
    }
}

/// One choice's delta.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChunkChoice {
    /// Position among the choices.
    pub index: u32,
    /// What this chunk adds.
    pub delta: Delta,
    /// Set on the choice's last chunk.
    pub finish_reason: Option<String>,
}

/// The part of the message a chunk adds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Delta {
    /// `assistant`, on the first chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A piece of the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A piece of the model's reasoning, for backends that expose it (Ollama's `thinking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Pieces of tool calls, by index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a tool call in a stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolCallDelta {
    /// Which call this piece belongs to.
    pub index: u32,
    /// Call id, on the call's first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, on the call's first piece.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and a piece of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// Name (first piece) and a piece of the JSON-string arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct FunctionCallDelta {
    /// Function name, on the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the arguments string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated (0 for embeddings, which omit it).
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of both.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage from prompt and completion counts.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}
