//! `POST /v1/responses` request and response types: the part of OpenAI's Responses API that the
//! gateway translates to a chat completion for backends without a Responses API of their own.
//!
//! The request types are strict where translation needs them to be (an item or part this
//! gateway cannot translate is a 400 naming it) and keep unknown top-level fields in `extra`.
//! Routes to a backend with its own Responses API never parse these: their body is relayed.
//! The response types are what the gateway writes; field names follow OpenAI's spec.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

/// A Responses API request, as far as a translating backend serves it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ResponsesRequest {
    /// Model name, `prefix/model` as routed by `routes.toml`.
    #[schema(example = "echo/hello")]
    pub model: String,
    /// The input: a user message as a string, or a list of items.
    pub input: ResponseInput,
    /// A system message put before the input.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Function tools the model may call.
    #[serde(default)]
    pub tools: Option<Vec<FunctionTool>>,
    /// Which tool, if any, the model must call.
    #[serde(default)]
    pub tool_choice: Option<ResponseToolChoice>,
    /// The output format (`text.format`).
    #[serde(default)]
    pub text: Option<TextConfig>,
    /// Upper bound on generated tokens.
    #[serde(default, deserialize_with = "super::integer::optional")]
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Stream the answer as Responses server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Up to 16 string pairs, returned on the response.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Allow several function calls in one turn.
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// End-user identifier.
    #[serde(default)]
    pub user: Option<String>,
    /// Continuing a stored response needs state the gateway does not keep: only `null` is
    /// served (send the whole conversation in `input` instead).
    #[serde(default)]
    #[schema(value_type = NullOnly)]
    pub previous_response_id: Option<String>,
    /// The gateway stores no responses: only `false` (or absent) is served.
    #[serde(default)]
    #[schema(value_type = FalseOnly)]
    pub store: Option<bool>,
    /// Every field not modelled above, passed on to the chat completion (`top_k`,
    /// `keep_alive`, ...) unless it belongs to the Responses API only (see the README).
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: Map<String, Value>,
}

impl ResponsesRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// The schema of `previous_response_id` on a translated route: `null` only.
pub struct NullOnly;

impl utoipa::PartialSchema for NullOnly {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Null)
            .description(Some(
                "Only `null`: the gateway keeps no responses to continue from. Send the whole \
                 conversation in `input`.",
            ))
            .into()
    }
}

impl ToSchema for NullOnly {}

/// The schema of `store` on a translated route: `false` (or `null`) only.
pub struct FalseOnly;

impl utoipa::PartialSchema for FalseOnly {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
            .enum_values(Some([Value::Bool(false), Value::Null]))
            .description(Some(
                "Only `false` or `null`: the gateway stores no responses.",
            ))
            .into()
    }
}

impl ToSchema for FalseOnly {}

/// `input`: text (one user message) or items.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ResponseInput {
    /// One user message.
    Text(String),
    /// Messages, function calls and function call outputs, in order.
    Items(Vec<InputItem>),
}

/// One input item: a message, a function call the model made, or its output.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum InputItem {
    /// A message (`type` may be left out).
    Message(InputMessage),
    /// A function call from an earlier turn.
    FunctionCall(FunctionCallItem),
    /// The output of a function call.
    FunctionCallOutput(FunctionCallOutputItem),
}

/// A message item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InputMessage {
    /// `message`, or absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MessageType>,
    /// Who speaks.
    pub role: InputRole,
    /// Text, or content parts.
    pub content: InputContent,
}

/// The `type` of a message item.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    /// A message.
    Message,
}

/// The role of a message item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputRole {
    /// The end user.
    User,
    /// The model's earlier turn.
    Assistant,
    /// Instructions (older models).
    System,
    /// Instructions (newer models).
    Developer,
}

/// A function call item from an earlier turn.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionCallItem {
    /// `function_call`.
    #[serde(rename = "type")]
    pub kind: FunctionCallType,
    /// The id the output item refers to.
    pub call_id: String,
    /// The function's name.
    pub name: String,
    /// The arguments, as a JSON string.
    pub arguments: String,
}

/// The `type` of a function call item.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunctionCallType {
    /// A function call.
    FunctionCall,
}

/// The output of a function call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionCallOutputItem {
    /// `function_call_output`.
    #[serde(rename = "type")]
    pub kind: FunctionCallOutputType,
    /// The call this answers.
    pub call_id: String,
    /// The result: text, or text parts.
    pub output: InputContent,
}

/// The `type` of a function call output item.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunctionCallOutputType {
    /// A function call's output.
    FunctionCallOutput,
}

/// Message content: a string or content parts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum InputContent {
    /// Plain text.
    Text(String),
    /// Typed parts.
    Parts(Vec<InputPart>),
}

/// One content part, by its `type`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum InputPart {
    /// `input_text`, or `output_text` (the model's earlier text).
    Text(TextPart),
    /// The model's earlier refusal.
    Refusal(RefusalPart),
    /// An image.
    Image(ImagePart),
}

/// A text part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TextPart {
    /// `input_text` or `output_text`.
    #[serde(rename = "type")]
    pub kind: TextPartType,
    /// The text.
    pub text: String,
}

/// The `type` of a text part.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TextPartType {
    /// Text from the user or the application.
    InputText,
    /// The model's earlier text.
    OutputText,
}

/// A refusal part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefusalPart {
    /// `refusal`.
    #[serde(rename = "type")]
    pub kind: RefusalType,
    /// The refusal text.
    pub refusal: String,
}

/// The `type` of a refusal part.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusalType {
    /// A refusal.
    Refusal,
}

/// An image part.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImagePart {
    /// `input_image`.
    #[serde(rename = "type")]
    pub kind: ImageType,
    /// The image as a URL or a `data:image/...;base64,` URL.
    pub image_url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The `type` of an image part.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageType {
    /// An image.
    InputImage,
}

/// A function tool (the only tool type a translated route serves).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionTool {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: FunctionType,
    /// Function name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments (an object).
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    /// Enforce the schema exactly.
    #[serde(default)]
    pub strict: Option<bool>,
}

/// The `type` of a function tool or a named tool choice.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunctionType {
    /// A function.
    Function,
}

/// `tool_choice`: a mode or a named function.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ResponseToolChoice {
    /// `none`, `auto` or `required`.
    Mode(crate::schema::chat::ToolChoiceMode),
    /// `{"type":"function","name":…}`.
    Function(NamedFunction),
}

/// A named function choice.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NamedFunction {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: FunctionType,
    /// The function.
    pub name: String,
}

/// `text`: output options.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TextConfig {
    /// The output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
}

/// `text.format`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON conforming to a schema.
    JsonSchema(TextJsonSchemaFormat),
}

/// A `json_schema` output format.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TextJsonSchemaFormat {
    /// Schema name.
    pub name: String,
    /// The JSON schema (an object).
    pub schema: Map<String, Value>,
    /// What the schema is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Enforce exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A response object (`object: "response"`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Response {
    /// `resp_…`.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `completed`, `incomplete` (cut short, see `incomplete_details`), `failed` or
    /// `in_progress` (on the first events of a stream).
    pub status: String,
    /// Why it failed, for `failed`.
    pub error: Option<ResponseError>,
    /// Why it is incomplete, for `incomplete`.
    pub incomplete_details: Option<IncompleteDetails>,
    /// The request's instructions.
    pub instructions: Option<String>,
    /// The request's `max_output_tokens`.
    pub max_output_tokens: Option<u32>,
    /// The model, as the client named it.
    pub model: String,
    /// Messages and function calls the model produced.
    pub output: Vec<OutputItem>,
    /// Whether several calls per turn were allowed.
    pub parallel_tool_calls: bool,
    /// Always `null`: the gateway keeps no responses.
    pub previous_response_id: Option<String>,
    /// Always `false`.
    pub store: bool,
    /// The request's temperature.
    pub temperature: Option<f32>,
    /// The request's `text` options (`{"format":{"type":"text"}}` by default).
    pub text: TextConfig,
    /// The request's tool choice (`auto` by default).
    pub tool_choice: ResponseToolChoice,
    /// The request's tools.
    pub tools: Vec<FunctionTool>,
    /// The request's `top_p`.
    pub top_p: Option<f32>,
    /// Always `disabled`.
    pub truncation: String,
    /// Token counts (`null` until the end of a stream).
    pub usage: Option<ResponseUsage>,
    /// The request's metadata.
    pub metadata: BTreeMap<String, String>,
    /// The request's `user`.
    pub user: Option<String>,
}

/// Why a response failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResponseError {
    /// `server_error`.
    pub code: String,
    /// What happened.
    pub message: String,
}

/// Why a response is incomplete.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncompleteDetails {
    /// `max_output_tokens` (the chat completion's `length`) or `content_filter`.
    pub reason: String,
}

/// One output item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    /// An assistant message.
    Message {
        /// `msg_…`.
        id: String,
        /// `in_progress`, `completed` or `incomplete`.
        status: String,
        /// Always `assistant`.
        role: String,
        /// Its text (one `output_text` part, or a `refusal`).
        content: Vec<OutputContent>,
    },
    /// A function call the client should run and answer with a `function_call_output`.
    FunctionCall {
        /// `fc_…`.
        id: String,
        /// `in_progress` or `completed`.
        status: String,
        /// The id to answer with.
        call_id: String,
        /// The function's name.
        name: String,
        /// The arguments, as a JSON string.
        arguments: String,
    },
}

/// One part of an output message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputContent {
    /// Text.
    OutputText {
        /// The text.
        text: String,
        /// Always empty.
        annotations: Vec<Value>,
    },
    /// A refusal.
    Refusal {
        /// The refusal text.
        refusal: String,
    },
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct ResponseUsage {
    /// Tokens in the input.
    pub input_tokens: u64,
    /// Cached input tokens (always 0 here).
    pub input_tokens_details: InputTokensDetails,
    /// Tokens generated.
    pub output_tokens: u64,
    /// Reasoning tokens (always 0 here).
    pub output_tokens_details: OutputTokensDetails,
    /// Sum of both.
    pub total_tokens: u64,
}

/// `input_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct InputTokensDetails {
    /// Input tokens read from a cache.
    pub cached_tokens: u64,
}

/// `output_tokens_details`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
pub struct OutputTokensDetails {
    /// Tokens spent reasoning.
    pub reasoning_tokens: u64,
}

impl ResponseUsage {
    /// Usage from input and output counts.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        ResponseUsage {
            input_tokens,
            input_tokens_details: InputTokensDetails::default(),
            output_tokens,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: input_tokens + output_tokens,
        }
    }
}

/// One event of a streamed response (`text/event-stream`): the SSE `event:` field names its
/// `type`, and `sequence_number` counts from 0. In order: `response.created`,
/// `response.in_progress`; per output item `response.output_item.added`, then for a message
/// `response.content_part.added`, `response.output_text.delta`…, `response.output_text.done`,
/// `response.content_part.done`, or for a function call
/// `response.function_call_arguments.delta`…, `response.function_call_arguments.done`; then
/// `response.output_item.done`; last `response.completed` (or `response.incomplete`). A
/// failure after the stream started is `response.failed`, then an `error` event, and the
/// stream closes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResponseStreamEvent {
    /// The event's type, e.g. `response.output_text.delta`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Position in the stream, from 0.
    pub sequence_number: u64,
    /// The other fields of the event (`response`, `item`, `delta`, `output_index`, ...).
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub fields: Map<String, Value>,
}

// --- parsing: hand-written where serde's derives would accept what the schema refuses ---

// `input` and `content`: a string or an array, with the message serde's untagged enums cannot
// give ("data did not match any variant" tells a client nothing).
macro_rules! string_or_list {
    ($ty:ident, $item:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        Ok($ty::Text(v.to_owned()))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$ty, A::Error> {
                        let mut items: Vec<$item> = Vec::new();
                        while let Some(item) = seq.next_element()? {
                            items.push(item);
                        }
                        Ok($ty::Items(items))
                    }
                }
                deserializer.deserialize_any(V)
            }
        }
    };
}

string_or_list!(
    ResponseInput,
    InputItem,
    "a string or an array of input items"
);

impl<'de> Deserialize<'de> for InputContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ContentList::deserialize(deserializer)? {
            ContentList::Text(text) => Ok(InputContent::Text(text)),
            ContentList::Items(parts) => Ok(InputContent::Parts(parts)),
        }
    }
}

/// `InputContent` as the macro builds it.
enum ContentList {
    Text(String),
    Items(Vec<InputPart>),
}
string_or_list!(
    ContentList,
    InputPart,
    "a string or an array of content parts"
);

// An item is a message when its `type` is `message`, null or absent, else what its `type` says.
impl<'de> Deserialize<'de> for InputItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let item = Map::<String, Value>::deserialize(deserializer)?;
        let kind = match item.get("type") {
            None | Some(Value::Null) => "message".to_owned(),
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => {
                return Err(de::Error::custom(
                    "`type` of an input item must be a string",
                ));
            }
        };
        let item = Value::Object(item);
        match kind.as_str() {
            "message" => InputMessage::deserialize(item).map(InputItem::Message),
            "function_call" => FunctionCallItem::deserialize(item).map(InputItem::FunctionCall),
            "function_call_output" => {
                FunctionCallOutputItem::deserialize(item).map(InputItem::FunctionCallOutput)
            }
            other => {
                return Err(de::Error::custom(format!(
                    "input items of type `{other}` are not supported on this route (message, \
                     function_call and function_call_output are)"
                )));
            }
        }
        .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for InputPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let part = Map::<String, Value>::deserialize(deserializer)?;
        let kind = match part.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => {
                return Err(de::Error::custom(
                    "`type` of a content part must be a string",
                ));
            }
            None => return Err(de::Error::missing_field("type")),
        };
        let part = Value::Object(part);
        match kind.as_str() {
            "input_text" | "output_text" => TextPart::deserialize(part).map(InputPart::Text),
            "refusal" => RefusalPart::deserialize(part).map(InputPart::Refusal),
            "input_image" => ImagePart::deserialize(part).map(InputPart::Image),
            other => {
                return Err(de::Error::custom(format!(
                    "content parts of type `{other}` are not supported on this route \
                     (input_text, output_text, refusal and input_image are)"
                )));
            }
        }
        .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for TextFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let format = Map::<String, Value>::deserialize(deserializer)?;
        match format.get("type") {
            Some(Value::String(kind)) => match kind.as_str() {
                "text" => Ok(TextFormat::Text),
                "json_object" => Ok(TextFormat::JsonObject),
                "json_schema" => TextJsonSchemaFormat::deserialize(Value::Object(format))
                    .map(TextFormat::JsonSchema)
                    .map_err(de::Error::custom),
                other => Err(de::Error::custom(format!(
                    "unknown variant `{other}`, expected one of `text`, `json_object`, \
                     `json_schema`"
                ))),
            },
            Some(_) => Err(de::Error::custom(
                "`type` of `text.format` must be a string",
            )),
            None => Err(de::Error::missing_field("type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ResponsesRequest, String> {
        let de = &mut serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn every_item_kind_parses_and_unknown_fields_are_kept() {
        let req = parse(
            r#"{"model":"m","instructions":"be brief","input":[
                {"role":"user","content":"weather?","type":null},
                {"type":"message","role":"user","content":[{"type":"input_text","text":"and"},
                    {"type":"input_image","image_url":"data:image/png;base64,AA=="}]},
                {"type":"message","role":"assistant","id":"msg_1","status":"completed",
                    "content":[{"type":"output_text","text":"ok","annotations":[]}]},
                {"type":"function_call","call_id":"c1","name":"f","arguments":"{}","id":"fc_1"},
                {"type":"function_call_output","call_id":"c1","output":"22"}],
            "tools":[{"type":"function","name":"f","parameters":{"type":"object"},"strict":true}],
            "tool_choice":{"type":"function","name":"f"},
            "text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"}}},
            "max_output_tokens":5.0,"metadata":{"k":"v"},"top_k":3}"#,
        )
        .unwrap();
        let ResponseInput::Items(items) = &req.input else {
            panic!()
        };
        assert_eq!(items.len(), 5);
        assert!(matches!(items[3], InputItem::FunctionCall(_)));
        assert!(matches!(items[4], InputItem::FunctionCallOutput(_)));
        assert_eq!(req.max_output_tokens, Some(5));
        assert!(req.extra.contains_key("top_k"));
        assert!(matches!(
            req.text.unwrap().format,
            Some(TextFormat::JsonSchema(_))
        ));
    }

    #[test]
    fn what_cannot_be_translated_is_refused_with_its_path() {
        for (body, want) in [
            (r#"{"model":"m"}"#, ".: missing field `input`"),
            (r#"{"model":"m","input":5}"#, "input: invalid type"),
            (
                r#"{"model":"m","input":[{"type":"reasoning","summary":[]}]}"#,
                "input[0]: input items of type `reasoning`",
            ),
            (
                r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file"}]}]}"#,
                "input[0]: content parts of type `input_file`",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#,
                "tools[0].type: unknown variant `web_search`",
            ),
            (
                r#"{"model":"m","input":"x","text":{"format":{"type":0}}}"#,
                "text.format: `type` of `text.format` must be a string",
            ),
            (
                r#"{"model":"m","input":"x","metadata":{"k":1}}"#,
                "metadata.k: invalid type",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.starts_with(want), "{body}: {err}");
        }
    }
}
