//! A Responses request → the chat completion request that carries it to the backend.
//!
//! `instructions` becomes a leading system message; input items become messages in order, with
//! consecutive function calls (and the assistant text just before them) merged into one
//! assistant turn and each output a `tool` message; function tools, `tool_choice` and
//! `text.format` take their chat shapes. What needs state the gateway does not keep
//! (`previous_response_id`, `store: true`, `conversation`, `background`, stored `prompt`s) is a
//! 400 naming the field; Responses-only settings the chat API has no place for are dropped;
//! every other unknown field passes on (Ollama's `keep_alive`, `top_k`, ...).

use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::schema::chat::{
    AssistantMessage, ContentPart, FunctionCall, FunctionDefinition, FunctionName, ImageUrl,
    InstructionMessage, JsonSchemaFormat, NamedToolChoice, ResponseFormat, StreamOptions, Tool,
    ToolCall, ToolChoice, ToolKind, ToolMessage, UserMessage,
};
use crate::schema::responses::{
    InputContent, InputItem, InputMessage, InputPart, InputRole, ResponseInput, ResponseToolChoice,
    ResponsesRequest, TextFormat,
};
use crate::schema::{ChatCompletionRequest, ChatMessage, MessageContent};

/// Fields that need conversation state kept by the server: refused, with why.
const REFUSED: &[(&str, &str)] = &[
    (
        "conversation",
        "the gateway keeps no conversations; send the whole conversation in `input`",
    ),
    (
        "prompt",
        "the gateway keeps no stored prompts; send the instructions and input themselves",
    ),
];

/// Responses-only settings with no chat-completion counterpart: not sent on.
const DROPPED: &[&str] = &[
    "include",
    "truncation",
    "reasoning",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "stream_options",
    "max_tool_calls",
    "top_logprobs",
    "background",
];

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        param: Some(param.to_owned()),
        message: message.into(),
    }
}

/// The chat completion request for `request`, addressed to `model` (the name the upstream
/// knows), streamed with a usage chunk when the client asked for a stream.
pub fn chat_request(
    request: &ResponsesRequest,
    model: &str,
) -> Result<ChatCompletionRequest, GatewayError> {
    refuse_state(request)?;
    let stream = request.is_stream();
    Ok(ChatCompletionRequest {
        model: model.to_owned(),
        messages: messages(request),
        stream: Some(stream),
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        temperature: request.temperature,
        top_p: request.top_p,
        n: None,
        stop: None,
        // `max_tokens` rather than `max_completion_tokens`: older OpenAI-compatible servers
        // know only the former, and every backend here maps it.
        max_tokens: request.max_output_tokens,
        max_completion_tokens: None,
        presence_penalty: None,
        frequency_penalty: None,
        logit_bias: None,
        logprobs: None,
        top_logprobs: None,
        seed: None,
        user: request.user.clone(),
        tools: request.tools.as_ref().map(|tools| {
            tools
                .iter()
                .map(|t| Tool {
                    kind: "function".to_owned(),
                    function: Some(FunctionDefinition {
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters: t.parameters.clone(),
                        strict: t.strict,
                    }),
                    extra: Map::new(),
                })
                .collect()
        }),
        tool_choice: request.tool_choice.as_ref().map(tool_choice),
        parallel_tool_calls: request.parallel_tool_calls,
        response_format: request
            .text
            .as_ref()
            .and_then(|t| t.format.as_ref())
            .map(response_format),
        extra: passed_on(&request.extra),
    })
}

/// A clear 400 for what would need state the gateway does not keep.
fn refuse_state(request: &ResponsesRequest) -> Result<(), GatewayError> {
    if request.previous_response_id.is_some() {
        return Err(invalid(
            "previous_response_id",
            "the gateway keeps no responses to continue from; send the whole conversation in \
             `input` (and `store: false`)",
        ));
    }
    if request.store == Some(true) {
        return Err(invalid(
            "store",
            "the gateway stores no responses: `store` must be false or absent",
        ));
    }
    if request.extra.get("background") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "background",
            "background responses need stored state the gateway does not keep",
        ));
    }
    for (field, why) in REFUSED {
        if request.extra.get(*field).is_some_and(|v| !v.is_null()) {
            return Err(invalid(field, *why));
        }
    }
    Ok(())
}

fn passed_on(extra: &Map<String, Value>) -> Map<String, Value> {
    extra
        .iter()
        .filter(|(k, _)| !DROPPED.contains(&k.as_str()) && !REFUSED.iter().any(|(r, _)| r == k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn messages(request: &ResponsesRequest) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    if let Some(instructions) = &request.instructions {
        out.push(ChatMessage::System(InstructionMessage {
            content: MessageContent::Text(instructions.clone()),
            name: None,
            extra: Map::new(),
        }));
    }
    let items = match &request.input {
        ResponseInput::Text(text) => {
            out.push(user(MessageContent::Text(text.clone())));
            return out;
        }
        ResponseInput::Items(items) => items,
    };
    for item in items {
        match item {
            InputItem::Message(m) => out.push(message(m)),
            InputItem::FunctionCall(call) => {
                let call = ToolCall {
                    id: call.call_id.clone(),
                    kind: ToolKind::Function,
                    function: FunctionCall {
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    },
                };
                // The chat API wants one assistant turn holding every call the model made.
                match out.last_mut() {
                    Some(ChatMessage::Assistant(turn)) => {
                        turn.tool_calls.get_or_insert_with(Vec::new).push(call);
                    }
                    _ => out.push(ChatMessage::Assistant(AssistantMessage {
                        content: None,
                        refusal: None,
                        name: None,
                        tool_calls: Some(vec![call]),
                        extra: Map::new(),
                    })),
                }
            }
            InputItem::FunctionCallOutput(output) => out.push(ChatMessage::Tool(ToolMessage {
                content: content(&output.output),
                tool_call_id: output.call_id.clone(),
                extra: Map::new(),
            })),
        }
    }
    out
}

fn user(content: MessageContent) -> ChatMessage {
    ChatMessage::User(UserMessage {
        content,
        name: None,
        extra: Map::new(),
    })
}

fn message(m: &InputMessage) -> ChatMessage {
    let content = content(&m.content);
    let instruction = |content| InstructionMessage {
        content,
        name: None,
        extra: Map::new(),
    };
    match m.role {
        InputRole::User => user(content),
        InputRole::System => ChatMessage::System(instruction(content)),
        InputRole::Developer => ChatMessage::Developer(instruction(content)),
        InputRole::Assistant => ChatMessage::Assistant(AssistantMessage {
            content: Some(content),
            refusal: None,
            name: None,
            tool_calls: None,
            extra: Map::new(),
        }),
    }
}

fn content(content: &InputContent) -> MessageContent {
    match content {
        InputContent::Text(text) => MessageContent::Text(text.clone()),
        InputContent::Parts(parts) => MessageContent::Parts(
            parts
                .iter()
                .map(|part| match part {
                    InputPart::Text(t) => ContentPart::Text {
                        text: t.text.clone(),
                    },
                    InputPart::Refusal(r) => ContentPart::Refusal {
                        refusal: r.refusal.clone(),
                    },
                    InputPart::Image(image) => ContentPart::ImageUrl {
                        image_url: ImageUrl {
                            url: image.image_url.clone(),
                            detail: image.detail.clone(),
                        },
                    },
                })
                .collect(),
        ),
    }
}

fn tool_choice(choice: &ResponseToolChoice) -> ToolChoice {
    match choice {
        ResponseToolChoice::Mode(mode) => ToolChoice::Mode(*mode),
        ResponseToolChoice::Function(named) => ToolChoice::Named(NamedToolChoice {
            kind: ToolKind::Function,
            function: FunctionName {
                name: named.name.clone(),
            },
        }),
    }
}

fn response_format(format: &TextFormat) -> ResponseFormat {
    match format {
        TextFormat::Text => ResponseFormat::Text,
        TextFormat::JsonObject => ResponseFormat::JsonObject,
        TextFormat::JsonSchema(schema) => ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: schema.name.clone(),
                description: schema.description.clone(),
                schema: Some(schema.schema.clone()),
                strict: schema.strict,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(request: Value) -> Result<Value, GatewayError> {
        let request: ResponsesRequest = serde_json::from_value(request).unwrap();
        chat_request(&request, "llama3.2").map(|c| serde_json::to_value(c).unwrap())
    }

    #[test]
    fn a_tool_round_trip_becomes_one_assistant_turn_and_a_tool_message() {
        let out = convert(json!({
            "model": "local/llama3.2",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather",
                 "arguments": "{\"city\":\"Paris\"}", "id": "fc_1", "status": "completed"},
                {"type": "function_call", "call_id": "call_2", "name": "get_time",
                 "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "22C"},
                {"type": "function_call_output", "call_id": "call_2",
                 "output": [{"type": "input_text", "text": "noon"}]}
            ],
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                       "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": "required",
            "text": {"format": {"type": "json_schema", "name": "w",
                                "schema": {"type": "object"}}},
            "max_output_tokens": 64,
            "stream": true,
            "include": ["message.output_text.logprobs"],
            "top_k": 20
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "call_2", "type": "function",
                         "function": {"name": "get_time", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
                    {"role": "tool", "tool_call_id": "call_2",
                     "content": [{"type": "text", "text": "noon"}]}
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 64,
                "tools": [{"type": "function", "function": {"name": "get_weather",
                    "description": "Weather", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": "required",
                "response_format": {"type": "json_schema", "json_schema": {"name": "w",
                    "schema": {"type": "object"}}},
                "top_k": 20
            })
        );
    }

    #[test]
    fn text_input_images_and_an_assistant_turn_keep_their_roles() {
        let out = convert(json!({
            "model": "m",
            "input": [
                {"role": "developer", "content": "d"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA==",
                     "detail": "low"}]},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "a cat", "annotations": []}]}
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_object"}}
        }))
        .unwrap();
        assert_eq!(
            out["messages"][0],
            json!({"role": "developer", "content": "d"})
        );
        assert_eq!(
            out["messages"][1]["content"][1],
            json!({"type": "image_url",
                   "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}})
        );
        assert_eq!(out["messages"][2]["role"], "assistant");
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert_eq!(out["response_format"], json!({"type": "json_object"}));
        assert_eq!(out["stream"], false);
        assert!(out.get("stream_options").is_none());
        let out = convert(json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!(out["messages"], json!([{"role": "user", "content": "hi"}]));
    }

    #[test]
    fn what_needs_stored_state_is_a_400_naming_the_field() {
        for (field, value) in [
            ("previous_response_id", json!("resp_1")),
            ("store", json!(true)),
            ("conversation", json!("conv_1")),
            ("background", json!(true)),
            ("prompt", json!({"id": "pmpt_1"})),
        ] {
            let mut body = json!({"model": "m", "input": "hi"});
            body[field] = value;
            match convert(body) {
                Err(GatewayError::InvalidField { param, .. }) => {
                    assert_eq!(param.as_deref(), Some(field))
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        // What is harmless passes: store false, a null id, background false.
        let ok = json!({"model": "m", "input": "hi", "store": false,
                        "previous_response_id": null, "background": false});
        assert!(convert(ok).is_ok());
    }
}
