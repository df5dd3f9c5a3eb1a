//! A chat completion (`chat.completion`) → the `response` object.
//!
//! The chat completion is parsed leniently (only what the response needs), since it may come
//! from any OpenAI-compatible server: the message's text becomes one message item with an
//! `output_text` part (a `refusal` part when the model refused), each tool call a
//! `function_call` item, usage `input_tokens` / `output_tokens`, and the finish reason the
//! `status` (`length` is `incomplete` with `max_output_tokens`).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use super::{Ending, ResponseShell, call_item, item_id, message_item};
use crate::error::GatewayError;
use crate::schema::responses::ResponseUsage;

#[derive(Deserialize)]
struct ChatWire<'a> {
    #[serde(borrow, default)]
    choices: Vec<ChoiceWire<'a>>,
    #[serde(default)]
    usage: Option<UsageWire>,
}

#[derive(Deserialize)]
struct ChoiceWire<'a> {
    #[serde(borrow)]
    message: MessageWire<'a>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageWire<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallWire>>,
}

#[derive(Deserialize)]
struct ToolCallWire {
    #[serde(default)]
    id: Option<String>,
    function: FunctionWire,
}

#[derive(Deserialize)]
struct FunctionWire {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

/// The usage block of a chat completion or chunk.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct UsageWire {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

impl From<UsageWire> for ResponseUsage {
    fn from(u: UsageWire) -> Self {
        ResponseUsage::new(u.prompt_tokens, u.completion_tokens)
    }
}

/// The `response` object, as JSON bytes, for the chat completion `body`.
pub fn response_from_chat(
    body: &[u8],
    shell: &ResponseShell,
    backend: &str,
) -> Result<Bytes, GatewayError> {
    let chat: ChatWire<'_> =
        serde_json::from_slice(body).map_err(|e| GatewayError::UpstreamProtocol {
            backend: backend.to_owned(),
            message: format!("chat completion: {e}"),
        })?;
    let Some(choice) = chat.choices.into_iter().next() else {
        return Err(GatewayError::UpstreamProtocol {
            backend: backend.to_owned(),
            message: "chat completion without a choice".to_owned(),
        });
    };
    let ending = Ending::from_finish_reason(choice.finish_reason.as_deref());
    let status = ending.item_status();
    let message = choice.message;
    let mut output = Vec::new();
    let text = message.content.map(Cow::into_owned).unwrap_or_default();
    let refusal = message.refusal.map(Cow::into_owned);
    let calls = message.tool_calls.unwrap_or_default();
    if !text.is_empty() || refusal.is_some() || calls.is_empty() {
        output.push(message_item(item_id("msg"), status, text, refusal));
    }
    output.extend(calls.into_iter().map(|call| {
        let call_id = call
            .id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| item_id("call"));
        let arguments = call.function.arguments.unwrap_or_else(|| "{}".to_owned());
        call_item(
            item_id("fc"),
            status,
            call_id,
            call.function.name,
            arguments,
        )
    }));
    let response = shell.response(ending, output, chat.usage.map(ResponseUsage::from));
    to_bytes(&response)
}

/// A value the gateway built, as JSON bytes.
pub(super) fn to_bytes<T: serde::Serialize>(value: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal {
            message: format!("serialising a response: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::responses::{OutputItem, Response, ResponsesRequest};
    use serde_json::json;

    /// The text of the message items of `output`.
    pub(super) fn output_text(output: &[OutputItem]) -> String {
        use crate::schema::responses::OutputContent;
        output
            .iter()
            .filter_map(|item| match item {
                OutputItem::Message { content, .. } => Some(content),
                OutputItem::FunctionCall { .. } => None,
            })
            .flatten()
            .filter_map(|c| match c {
                OutputContent::OutputText { text, .. } => Some(text.as_str()),
                OutputContent::Refusal { .. } => None,
            })
            .collect()
    }

    fn shell() -> ResponseShell {
        let request: ResponsesRequest = serde_json::from_value(json!({
            "model": "local/llama3.2", "input": "hi", "metadata": {"k": "v"},
            "max_output_tokens": 9
        }))
        .unwrap();
        ResponseShell::new(&request, "local/llama3.2")
    }

    fn convert(chat: serde_json::Value) -> Response {
        let body = serde_json::to_vec(&chat).unwrap();
        serde_json::from_slice(&response_from_chat(&body, &shell(), "b").unwrap()).unwrap()
    }

    #[test]
    fn text_becomes_a_message_item_with_usage_and_the_request_echoed() {
        let r = convert(
            json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
            "model": "llama3.2", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "The sky is blue."}}],
            "usage": {"prompt_tokens": 26, "completion_tokens": 5, "total_tokens": 31}}),
        );
        assert_eq!(
            (r.object.as_str(), r.status.as_str()),
            ("response", "completed")
        );
        assert!(r.id.starts_with("resp_"));
        assert_eq!(output_text(&r.output), "The sky is blue.");
        let usage = r.usage.unwrap();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.total_tokens),
            (26, 5, 31)
        );
        assert_eq!(
            (r.model.as_str(), r.max_output_tokens),
            ("local/llama3.2", Some(9))
        );
        assert_eq!(r.metadata.get("k").map(String::as_str), Some("v"));
        assert!(r.incomplete_details.is_none() && r.error.is_none());
    }

    #[test]
    fn tool_calls_become_function_call_items_and_length_is_incomplete() {
        let r = convert(
            json!({"choices": [{"finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}]}),
        );
        assert_eq!(r.output.len(), 1, "no empty message next to the call");
        let OutputItem::FunctionCall {
            call_id,
            name,
            arguments,
            status,
            ..
        } = &r.output[0]
        else {
            panic!("{:?}", r.output)
        };
        assert_eq!(
            (
                call_id.as_str(),
                name.as_str(),
                arguments.as_str(),
                status.as_str()
            ),
            ("call_9", "get_weather", "{\"city\":\"Paris\"}", "completed")
        );
        let r = convert(json!({"choices": [{"finish_reason": "length",
            "message": {"role": "assistant", "content": "The sky"}}]}));
        assert_eq!(r.status, "incomplete");
        assert_eq!(r.incomplete_details.unwrap().reason, "max_output_tokens");
    }

    #[test]
    fn a_body_that_is_not_a_chat_completion_is_a_protocol_error() {
        for body in [&b"not json"[..], br#"{"choices":[]}"#] {
            let err = response_from_chat(body, &shell(), "b").unwrap_err();
            assert!(
                matches!(err, GatewayError::UpstreamProtocol { .. }),
                "{err}"
            );
        }
    }
}
