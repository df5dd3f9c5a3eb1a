//! `POST /v1/chat/completions` request and response types.
//!
//! These types validate a request at the edge (a 400 names the field at fault), tell the router
//! which model is asked for and document the API. They are not used to re-serialise what the
//! client sent: the gateway forwards the client's own bytes. Fields not modelled here land in
//! `extra` so that a backend which rebuilds the body (Ollama) still sees them.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};

use super::chunk::Usage;

/// A chat completion request, as the OpenAI API defines it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// Model name, `prefix/model` as routed by `routes.toml`.
    #[schema(example = "echo/hello")]
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options, e.g. `{"include_usage": true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// How many choices to generate.
    #[serde(
        default,
        deserialize_with = "super::integer::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub n: Option<u32>,
    /// Up to 4 sequences where generation stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens`; still widely used.
    #[serde(
        default,
        deserialize_with = "super::integer::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_tokens: Option<u32>,
    /// Upper bound on generated tokens.
    #[serde(
        default,
        deserialize_with = "super::integer::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_completion_tokens: Option<u32>,
    /// -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Token id to bias, -100 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Map<String, Value>>,
    /// Return log probabilities of the output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// How many most likely tokens to return at each position.
    #[serde(
        default,
        deserialize_with = "super::integer::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub top_logprobs: Option<u32>,
    /// Seed for best-effort deterministic sampling.
    #[serde(
        default,
        deserialize_with = "super::integer::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub seed: Option<i64>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Which tool, if any, the model must call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Allow several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Output format: text, JSON object or a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Every field not modelled above (`guided_json`, `top_k`, `keep_alive`, ...), kept verbatim.
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streaming client asked for a final usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The text of the last user message (its text parts joined), if any.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages.iter().rev().find_map(|m| match m {
            ChatMessage::User(u) => Some(u.content.text()),
            _ => None,
        })
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk carrying `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Unmodelled options.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop sequence.
    One(String),
    /// Several stop sequences.
    Many(Vec<String>),
}

/// One message of the conversation, tagged by `role`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    /// Instructions from the application (older models).
    System(InstructionMessage),
    /// Instructions from the application (newer models).
    Developer(InstructionMessage),
    /// The end user's turn.
    User(UserMessage),
    /// The model's earlier turn, possibly with tool calls.
    Assistant(AssistantMessage),
    /// The result of a tool call.
    Tool(ToolMessage),
    /// Deprecated function result.
    Function(FunctionMessage),
}

/// A `system` or `developer` message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstructionMessage {
    /// Text, or text parts.
    pub content: MessageContent,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Unmodelled fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `user` message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserMessage {
    /// Text, or parts (text, image_url, input_audio, file).
    pub content: MessageContent,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Unmodelled fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An `assistant` message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessage {
    /// Text or parts; absent or null when the turn only called tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// A refusal, when the model refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls the model made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Unmodelled fields (`function_call`, `reasoning_content`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `tool` message: a tool call's result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolMessage {
    /// The result, as text or text parts.
    pub content: MessageContent,
    /// The id of the call this answers.
    pub tool_call_id: String,
    /// Unmodelled fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A deprecated `function` message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionMessage {
    /// The function's result.
    pub content: Option<String>,
    /// The function's name.
    pub name: String,
}

/// Message content: a plain string or an array of typed parts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Typed parts.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text parts, joined; other parts are left out.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(t) => t.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

// A hand-written visitor because serde's untagged enums answer any mismatch with "data did not
// match any variant", which tells a client nothing.
impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = MessageContent;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(MessageContent::Parts(parts))
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

/// One content part, tagged by `type`.
///
/// A part whose `type` this gateway models must have that type's fields (a 400 names what is
/// missing); a part of any other `type` (vLLM's `video_url`, a provider's own) is forwarded as
/// sent. Parsing goes through `KnownPart`, so a known part with a wrong shape is an error rather
/// than silently falling through to `Other`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL or `data:` URI.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// Base64 audio.
    InputAudio {
        /// The audio.
        input_audio: InputAudio,
    },
    /// A file by id or inline data.
    File {
        /// The file.
        file: Map<String, Value>,
    },
    /// A refusal (assistant content only).
    Refusal {
        /// The refusal text.
        refusal: String,
    },
    /// A part type this gateway does not model (e.g. vLLM's `video_url`); forwarded as sent.
    #[serde(untagged)]
    Other(Map<String, Value>),
}

/// The part types `KnownPart` models, by their `type`.
const KNOWN_PART_TYPES: [&str; 5] = ["text", "image_url", "input_audio", "file", "refusal"];

/// The modelled part types, for parsing and for the schema (their docs are the ones shown).
#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL or `data:` URI.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// Base64 audio.
    InputAudio {
        /// The audio.
        input_audio: InputAudio,
    },
    /// A file by id (`file_id`) or inline (`file_data`, `filename`).
    File {
        /// The file.
        file: Map<String, Value>,
    },
    /// A refusal (assistant content only).
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

impl From<KnownPart> for ContentPart {
    fn from(part: KnownPart) -> Self {
        match part {
            KnownPart::Text { text } => ContentPart::Text { text },
            KnownPart::ImageUrl { image_url } => ContentPart::ImageUrl { image_url },
            KnownPart::InputAudio { input_audio } => ContentPart::InputAudio { input_audio },
            KnownPart::File { file } => ContentPart::File { file },
            KnownPart::Refusal { refusal } => ContentPart::Refusal { refusal },
        }
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let part = Map::<String, Value>::deserialize(deserializer)?;
        match part.get("type") {
            Some(Value::String(kind)) if KNOWN_PART_TYPES.contains(&kind.as_str()) => {
                KnownPart::deserialize(Value::Object(part))
                    .map(ContentPart::from)
                    .map_err(de::Error::custom)
            }
            Some(Value::String(_)) => Ok(ContentPart::Other(part)),
            Some(_) => Err(de::Error::custom(
                "invalid type: `type` of a content part must be a string",
            )),
            None => Err(de::Error::missing_field("type")),
        }
    }
}

impl utoipa::PartialSchema for ContentPart {
    fn schema() -> RefOr<Schema> {
        // The modelled parts as KnownPart's derive describes them, plus any other `type`:
        // `anyOf` rather than `oneOf` because a modelled part also fits the catch-all shape.
        let mut any = AnyOfBuilder::new().description(Some(
            "One content part, tagged by `type`. Parts of a `type` not listed here (e.g. vLLM's \
             `video_url`) are forwarded to the backend as sent.",
        ));
        match KnownPart::schema() {
            RefOr::T(Schema::OneOf(known)) => {
                for item in known.items {
                    any = any.item(item);
                }
            }
            other => any = any.item(other),
        }
        any.item(
            ObjectBuilder::new()
                .description(Some("A part of another `type`, forwarded as sent."))
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .examples([Value::from("video_url")]),
                )
                .required("type"),
        )
        .into()
    }
}

impl ToSchema for ContentPart {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <KnownPart as ToSchema>::schemas(schemas);
    }
}

/// `image_url` of an image part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageUrl {
    /// `https://…` or `data:image/png;base64,…`.
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `input_audio` of an audio part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InputAudio {
    /// Base64 audio data.
    pub data: String,
    /// `wav` or `mp3`.
    pub format: String,
}

/// A tool the model may call: a function, or a tool type this gateway does not model (OpenAI's
/// `custom` tools, say), which is forwarded as sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    /// `function`, or another tool type.
    #[serde(rename = "type")]
    #[schema(example = "function")]
    pub kind: String,
    /// The function, for `function` tools (a backend that builds its own request, such as
    /// `ollama`, refuses a function tool without it; others forward it as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    /// The other fields of a tool of another type.
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: Map<String, Value>,
}

/// The kind of a tool; only functions exist in the chat API.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    /// A function tool.
    Function,
}

/// A function's name, description and JSON-schema parameters.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionDefinition {
    /// Function name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments (an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// Enforce the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode, a named function, or a form this gateway does not model
/// (`allowed_tools`, `custom`), forwarded as sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(ToolChoiceMode),
    /// `{"type":"function","function":{"name":…}}`.
    Named(NamedToolChoice),
    /// Another form, forwarded as sent.
    Other(Map<String, Value>),
}

/// The string forms of `tool_choice`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    /// Never call a tool.
    None,
    /// The model decides.
    Auto,
    /// Call at least one tool.
    Required,
}

/// A named function choice.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolKind,
    /// Which function.
    pub function: FunctionName,
}

/// A function's name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionName {
    /// Function name.
    pub name: String,
}

/// A call the model made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ToolCall {
    /// Call id, echoed back by the tool message.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolKind,
    /// Name and JSON-string arguments.
    pub function: FunctionCall,
}

/// A function call's name and arguments.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments, as a JSON string.
    pub arguments: String,
}

/// `response_format`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON conforming to a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
    /// A format this gateway does not model (vLLM's `structural_tag`, say), forwarded as sent.
    #[serde(untagged)]
    #[schema(value_type = OtherResponseFormat)]
    Other(OtherResponseFormat),
}

/// The modelled formats, as serde's derive reads them.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

// By hand: serde's tagged enums also take a number as the tag (`"type": 0` would read as
// `text`), and the catch-all must only take what the derive cannot.
impl<'de> Deserialize<'de> for ResponseFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut format = Map::<String, Value>::deserialize(deserializer)?;
        let kind = match format.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => {
                return Err(de::Error::custom(
                    "`type` of `response_format` must be a string",
                ));
            }
            None => return Err(de::Error::missing_field("type")),
        };
        if matches!(kind.as_str(), "text" | "json_object" | "json_schema") {
            let known =
                KnownFormat::deserialize(Value::Object(format)).map_err(de::Error::custom)?;
            return Ok(match known {
                KnownFormat::Text => ResponseFormat::Text,
                KnownFormat::JsonObject => ResponseFormat::JsonObject,
                KnownFormat::JsonSchema { json_schema } => {
                    ResponseFormat::JsonSchema { json_schema }
                }
            });
        }
        format.remove("type");
        Ok(ResponseFormat::Other(OtherResponseFormat {
            kind,
            rest: format,
        }))
    }
}

/// A `response_format` of a type this gateway does not model, forwarded as sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OtherResponseFormat {
    /// The format's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its other fields.
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub rest: Map<String, Value>,
}

/// The `json_schema` of a structured-output request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    /// Schema name.
    pub name: String,
    /// What the schema is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema (an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Map<String, Value>>,
    /// Enforce exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A non-streamed chat completion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// Completion id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model, as the client named it.
    pub model: String,
    /// The generated choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChatChoice {
    /// Position among the choices.
    pub index: u32,
    /// The generated message.
    pub message: ResponseMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`.
    pub finish_reason: Option<String>,
}

/// The assistant message of a choice.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: String,
    /// The text, null when the model only called tools.
    pub content: Option<String>,
    /// The model's reasoning, for backends that expose it (Ollama's `thinking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls the model made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ChatCompletionRequest, String> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn every_role_and_content_shape_parses() {
        let req = parse(
            r#"{"model":"m","messages":[
                {"role":"system","content":"s"},
                {"role":"developer","content":[{"type":"text","text":"d"}]},
                {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}},{"type":"video_url","video_url":{"url":"x"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"42"}
            ],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
            "tool_choice":"auto","response_format":{"type":"json_object"},"stop":["x"],"guided_json":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(req.messages.len(), 5);
        assert_eq!(req.last_user_text().as_deref(), Some("look"));
        assert!(req.extra.contains_key("guided_json"));
    }

    #[test]
    fn newer_tool_and_format_shapes_parse_and_stay_verbatim_in_the_bytes() {
        let req = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],
            "tools":[{"type":"custom","custom":{"name":"grammar","format":{"type":"text"}}},
                     {"type":"function","function":{"name":"f"}}],
            "tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[]}},
            "response_format":{"type":"structural_tag","structures":[]}}"#,
        )
        .unwrap();
        let tools = req.tools.unwrap();
        assert_eq!(
            (tools[0].kind.as_str(), tools[0].function.is_none()),
            ("custom", true)
        );
        assert!(tools[0].extra.contains_key("custom"));
        assert!(matches!(req.tool_choice, Some(ToolChoice::Other(_))));
        assert!(matches!(
            req.response_format,
            Some(ResponseFormat::Other(_))
        ));
        for bad in [
            r#"{"json_schema":{}}"#,
            r#"{"type":0}"#,
            r#"{"type":"json_schema"}"#,
        ] {
            let body = format!(r#"{{"model":"m","messages":[],"response_format":{bad}}}"#);
            let err = parse(&body).unwrap_err();
            assert!(err.starts_with("response_format"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bad_field_is_named_with_its_path() {
        let err = parse(
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert!(err.starts_with("temperature:"), "{err}");
        let err = parse(r#"{"model":"m","messages":[{"role":"user","content":5}]}"#).unwrap_err();
        assert!(
            err.contains("a string or an array of content parts"),
            "{err}"
        );
        let err =
            parse(r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#).unwrap_err();
        assert!(err.contains("wizard"), "{err}");
        let err = parse(r#"{"messages":[]}"#).unwrap_err();
        assert!(err.contains("model"), "{err}");
    }

    #[test]
    fn a_known_part_must_have_its_fields_and_any_other_type_is_kept() {
        let part = |json: &str| serde_json::from_str::<ContentPart>(json);
        let err = part(r#"{"type":"text","text":5}"#).unwrap_err().to_string();
        assert!(err.contains("invalid type"), "{err}");
        let err = part(r#"{"type":"image_url"}"#).unwrap_err().to_string();
        assert!(err.contains("missing field `image_url`"), "{err}");
        let err = part(r#"{"text":"x"}"#).unwrap_err().to_string();
        assert!(err.contains("missing field `type`"), "{err}");
        assert!(part(r#"{"type":5}"#).is_err());
        assert!(matches!(
            part(r#"{"type":"video_url","video_url":{"url":"x"}}"#).unwrap(),
            ContentPart::Other(_)
        ));
        assert!(matches!(
            part(r#"{"type":"refusal","refusal":"no"}"#).unwrap(),
            ContentPart::Refusal { .. }
        ));
        // Every modelled type is routed to KnownPart (a type missing from the list would be
        // accepted with any shape).
        for kind in KNOWN_PART_TYPES {
            assert!(part(&format!(r#"{{"type":"{kind}"}}"#)).is_err(), "{kind}");
        }
    }

    #[test]
    fn a_part_round_trips_as_sent() {
        let json = r#"[{"type":"text","text":"a"},{"type":"video_url","video_url":{"url":"x"}}]"#;
        let parts: Vec<ContentPart> = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&parts).unwrap(), json);
    }
}
