//! OpenAI requests → Ollama's `/api/chat` and `/api/embed` bodies.
//!
//! Built from the typed request (Ollama's body differs in shape, so the client's bytes cannot
//! be forwarded). What OpenAI models maps to its Ollama counterpart (docs/ollama-api.md,
//! "Mapping"); request fields Ollama understands and OpenAI does not (`keep_alive`, `think`,
//! `options`, Ollama option names such as `top_k` sent at the top level) pass through from
//! `extra`; what Ollama cannot do is refused with a 400 naming the field, never dropped silently.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::wire::{ChatRequest, EmbedInput, EmbedRequest, FunctionOut, Message, ToolCallOut};
use crate::error::GatewayError;
use crate::schema::chat::{ContentPart, ResponseFormat, Stop, ToolChoice, ToolChoiceMode};
use crate::schema::{
    ChatCompletionRequest, ChatMessage, EmbeddingInput, EmbeddingRequest, MessageContent,
};

/// Top-level request fields of `/api/chat` that OpenAI's API does not have, passed through.
const CHAT_PASSTHROUGH: &[&str] = &["keep_alive", "think"];

/// Top-level request fields of `/api/embed` that OpenAI's API does not have, passed through.
const EMBED_PASSTHROUGH: &[&str] = &["keep_alive", "truncate", "options"];

/// Ollama's `options` (Modelfile parameters) that OpenAI's API has no field for. Clients of
/// OpenAI-compatible servers send them as top-level extra fields (`extra_body={"top_k": 20}`);
/// they move into `options`.
const OPTION_NAMES: &[&str] = &[
    "num_predict",
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
    "num_keep",
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "numa",
];

pub(super) fn invalid(param: impl Into<String>, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        param: Some(param.into()),
        message: message.into(),
    }
}

/// The `/api/chat` body for `request`, addressed to `model` (the name the upstream knows).
pub fn chat_request(
    request: &ChatCompletionRequest,
    model: &str,
    stream: bool,
) -> Result<Bytes, GatewayError> {
    if request.n.is_some_and(|n| n > 1) {
        return Err(invalid(
            "n",
            "kind `ollama` generates one choice per request; `n` must be 1",
        ));
    }
    if let Some(ResponseFormat::Other(_)) = &request.response_format {
        return Err(invalid(
            "response_format",
            "kind `ollama` takes `response_format` as text, json_object or json_schema",
        ));
    }
    let body = ChatRequest {
        model,
        messages: messages(&request.messages)?,
        tools: tools(request)?,
        format: format(request),
        options: options(request)?,
        stream,
        logprobs: request.logprobs,
        top_logprobs: request.top_logprobs,
        passthrough: pick(&request.extra, CHAT_PASSTHROUGH),
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal {
            message: format!("serialising an Ollama chat request: {e}"),
        })
}

/// The `/api/embed` body for `request`, addressed to `model`.
pub fn embed_request(request: &EmbeddingRequest, model: &str) -> Result<Bytes, GatewayError> {
    let input = match &request.input {
        EmbeddingInput::Text(text) => EmbedInput::One(text),
        EmbeddingInput::Texts(texts) => EmbedInput::Many(texts),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenArrays(_) => {
            return Err(invalid(
                "input",
                "kind `ollama` embeds text; token-id input is not supported",
            ));
        }
    };
    let body = EmbedRequest {
        model,
        input,
        dimensions: request.dimensions,
        passthrough: pick(&request.extra, EMBED_PASSTHROUGH),
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal {
            message: format!("serialising an Ollama embed request: {e}"),
        })
}

pub(super) fn pick(extra: &Map<String, Value>, names: &[&str]) -> Map<String, Value> {
    names
        .iter()
        .filter_map(|&name| extra.get(name).map(|v| (name.to_owned(), v.clone())))
        .collect()
}

fn messages(input: &[ChatMessage]) -> Result<Vec<Message<'_>>, GatewayError> {
    // Ollama names a tool result by function name, OpenAI by call id: remember the calls.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::with_capacity(input.len());
    for (i, message) in input.iter().enumerate() {
        let at = |field: &str| format!("messages[{i}].{field}");
        let converted = match message {
            ChatMessage::System(m) | ChatMessage::Developer(m) => {
                Message::new("system", text_only(&m.content, &at("content"))?)
            }
            ChatMessage::User(m) => {
                let (content, images) = text_and_images(&m.content, &at("content"))?;
                let mut user = Message::new("user", content);
                user.images = images;
                user
            }
            ChatMessage::Assistant(m) => {
                let content = match &m.content {
                    Some(c) => text_only(c, &at("content"))?,
                    None => Cow::Borrowed(""),
                };
                let mut assistant = Message::new("assistant", content);
                assistant.thinking = m.extra.get("reasoning_content").and_then(Value::as_str);
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    call_names.insert(&call.id, &call.function.name);
                    assistant.tool_calls.push(ToolCallOut {
                        function: FunctionOut {
                            name: &call.function.name,
                            arguments: arguments_object(
                                &call.function.arguments,
                                &at(&format!("tool_calls[{j}].function.arguments")),
                            )?,
                        },
                    });
                }
                assistant
            }
            ChatMessage::Tool(m) => {
                let mut tool = Message::new("tool", text_only(&m.content, &at("content"))?);
                tool.tool_name = call_names.get(m.tool_call_id.as_str()).copied();
                tool
            }
            ChatMessage::Function(m) => {
                let mut tool = Message::new(
                    "tool",
                    Cow::Borrowed(m.content.as_deref().unwrap_or_default()),
                );
                tool.tool_name = Some(&m.name);
                tool
            }
        };
        out.push(converted);
    }
    Ok(out)
}

/// An OpenAI arguments string as the JSON object Ollama expects (`""` is no arguments).
fn arguments_object<'a>(arguments: &'a str, param: &str) -> Result<&'a RawValue, GatewayError> {
    let trimmed = arguments.trim();
    if trimmed.is_empty() {
        return serde_json::from_str("{}").map_err(|e| invalid(param, e.to_string()));
    }
    match serde_json::from_str::<&RawValue>(trimmed) {
        Ok(raw) if raw.get().starts_with('{') => Ok(raw),
        _ => Err(invalid(
            param,
            "tool-call arguments must be a JSON object encoded as a string",
        )),
    }
}

/// Text parts joined with `\n` (as vLLM joins them); anything else is refused.
fn text_only<'a>(content: &'a MessageContent, param: &str) -> Result<Cow<'a, str>, GatewayError> {
    let (text, images) = text_and_images(content, param)?;
    if images.is_empty() {
        Ok(text)
    } else {
        Err(invalid(param, "only user messages may carry images"))
    }
}

/// The text parts joined with `\n`, and the base64 data of the image parts.
fn text_and_images<'a>(
    content: &'a MessageContent,
    param: &str,
) -> Result<(Cow<'a, str>, Vec<&'a str>), GatewayError> {
    let parts = match content {
        MessageContent::Text(text) => return Ok((Cow::Borrowed(text), Vec::new())),
        MessageContent::Parts(parts) => parts,
    };
    let mut texts: Vec<&str> = Vec::with_capacity(parts.len());
    let mut images = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => texts.push(text),
            ContentPart::ImageUrl { image_url } => {
                images.push(image_data(&image_url.url).ok_or_else(|| {
                    invalid(
                        format!("{param}[{j}].image_url.url"),
                        "kind `ollama` takes images inline only: a `data:image/...;base64,` URL",
                    )
                })?);
            }
            ContentPart::InputAudio { .. } => {
                return Err(invalid(
                    format!("{param}[{j}]"),
                    "kind `ollama` does not take audio input",
                ));
            }
            ContentPart::File { .. } => {
                return Err(invalid(
                    format!("{param}[{j}]"),
                    "kind `ollama` does not take file input",
                ));
            }
            ContentPart::Other(map) => {
                let kind = map.get("type").and_then(Value::as_str).unwrap_or("?");
                return Err(invalid(
                    format!("{param}[{j}]"),
                    format!("kind `ollama` does not take content parts of type `{kind}`"),
                ));
            }
        }
    }
    let text = match texts.as_slice() {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.join("\n")),
    };
    Ok((text, images))
}

/// The base64 payload of a `data:<mime>;base64,<data>` URL.
fn image_data(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    (meta.ends_with(";base64") && !data.is_empty()).then_some(data)
}

fn tools(request: &ChatCompletionRequest) -> Result<Vec<&crate::schema::chat::Tool>, GatewayError> {
    let mut all = Vec::new();
    for (i, tool) in request.tools.iter().flatten().enumerate() {
        match &tool.function {
            Some(_) if tool.kind == "function" => all.push(tool),
            _ => {
                return Err(invalid(
                    format!("tools[{i}]"),
                    format!(
                        "kind `ollama` takes only function tools, not `{}`",
                        tool.kind
                    ),
                ));
            }
        }
    }
    match &request.tool_choice {
        // Ollama has no tool_choice: "none" is honoured by not offering the tools at all.
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => Ok(Vec::new()),
        // A named function: offer only that one.
        Some(ToolChoice::Named(named)) => {
            let chosen: Vec<_> = all
                .into_iter()
                .filter(|t| {
                    t.function
                        .as_ref()
                        .is_some_and(|f| f.name == named.function.name)
                })
                .collect();
            if chosen.is_empty() {
                return Err(invalid(
                    "tool_choice",
                    format!(
                        "`tool_choice` names `{}`, which is not in `tools`",
                        named.function.name
                    ),
                ));
            }
            Ok(chosen)
        }
        // "auto" and "required" (which Ollama cannot enforce) offer every tool.
        Some(ToolChoice::Mode(_)) | None => Ok(all),
        Some(ToolChoice::Other(_)) => Err(invalid(
            "tool_choice",
            "kind `ollama` takes `tool_choice` as none, auto, required or a named function"
                .to_owned(),
        )),
    }
}

fn format(request: &ChatCompletionRequest) -> Option<Cow<'_, Value>> {
    match &request.response_format {
        Some(ResponseFormat::JsonObject) => Some(Cow::Owned(Value::from("json"))),
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(match &json_schema.schema {
            Some(schema) => Cow::Owned(Value::Object(schema.clone())),
            None => Cow::Owned(Value::from("json")),
        }),
        Some(ResponseFormat::Text) => None,
        // Refused before the request is built (in `chat_request`).
        Some(ResponseFormat::Other(_)) => None,
        // A client speaking Ollama's own `format` directly.
        None => request.extra.get("format").map(Cow::Borrowed),
    }
}

fn options(request: &ChatCompletionRequest) -> Result<Map<String, Value>, GatewayError> {
    let mapped = [
        ("temperature", request.temperature.map(float)),
        ("top_p", request.top_p.map(float)),
        ("seed", request.seed.map(Value::from)),
        (
            "num_predict",
            request
                .max_completion_tokens
                .or(request.max_tokens)
                .map(Value::from),
        ),
        ("presence_penalty", request.presence_penalty.map(float)),
        ("frequency_penalty", request.frequency_penalty.map(float)),
        ("stop", request.stop.as_ref().map(stop_list)),
    ];
    merge_options(mapped, &request.extra)
}

/// `stop` as Ollama's list.
pub(super) fn stop_list(stop: &Stop) -> Value {
    match stop {
        Stop::One(s) => Value::from(vec![s.clone()]),
        Stop::Many(list) => Value::from(list.clone()),
    }
}

/// Ollama's `options`: the `mapped` OpenAI fields that are set, then Ollama option names sent
/// as extra top-level fields, then an explicit `options` object, whose entries win.
pub(super) fn merge_options<'a>(
    mapped: impl IntoIterator<Item = (&'a str, Option<Value>)>,
    extra: &Map<String, Value>,
) -> Result<Map<String, Value>, GatewayError> {
    let mut options = Map::new();
    let mut set = |name: &str, value: Option<Value>| {
        if let Some(value) = value {
            options.insert(name.to_owned(), value);
        }
    };
    for (name, value) in mapped {
        set(name, value);
    }
    for &name in OPTION_NAMES {
        set(name, extra.get(name).cloned());
    }
    // An explicit Ollama `options` object is the most specific: its entries win.
    match extra.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(explicit)) => {
            options.extend(explicit.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Some(_) => {
            return Err(invalid(
                "options",
                "`options` must be an object of Ollama model parameters",
            ));
        }
    }
    Ok(options)
}

/// An `f32` as the JSON number the client wrote: `0.9`, not `0.8999999761581421` (its exact
/// `f64` widening).
pub(super) fn float(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn convert(request: Value, stream: bool) -> Result<Value, GatewayError> {
        let request: ChatCompletionRequest = serde_json::from_value(request).unwrap();
        chat_request(&request, "llama3.2", stream).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn roles_content_images_tools_and_tool_results_map_to_ollama_messages() {
        let out = convert(
            json!({"model":"local/llama3.2","messages":[
                {"role":"developer","content":[{"type":"text","text":"Be brief."}]},
                {"role":"user","content":[
                    {"type":"text","text":"What is in this picture?"},
                    {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
                    {"type":"text","text":"And the weather in Paris?"}]},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"call_9","type":"function","function":{"name":"get_current_weather","arguments":"{\"location\":\"Paris, FR\",\"format\":\"celsius\"}"}}]},
                {"role":"tool","tool_call_id":"call_9","content":"22"}
            ],
            "tools":[{"type":"function","function":{"name":"get_current_weather","description":"Get the weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]}),
            false,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "model":"llama3.2",
                "messages":[
                    {"role":"system","content":"Be brief."},
                    {"role":"user","content":"What is in this picture?\nAnd the weather in Paris?","images":["iVBORw0KGgo="]},
                    {"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_current_weather","arguments":{"location":"Paris, FR","format":"celsius"}}}]},
                    {"role":"tool","content":"22","tool_name":"get_current_weather"}
                ],
                "tools":[{"type":"function","function":{"name":"get_current_weather","description":"Get the weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],
                "stream":false
            })
        );
    }

    #[test]
    fn sampling_fields_become_options_and_ollama_fields_pass_through() {
        let out = convert(
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],
                "temperature":0.5,"top_p":0.9,"seed":42,"stop":"END","max_tokens":10,
                "max_completion_tokens":64,"presence_penalty":0.25,"frequency_penalty":0.5,
                "top_k":20,"keep_alive":"10m","think":"low","guided_json":{"x":1},
                "options":{"num_ctx":8192,"temperature":0.75},"stream":true,
                "logprobs":true,"top_logprobs":2}),
            true,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "model":"llama3.2",
                "messages":[{"role":"user","content":"hi"}],
                "options":{"temperature":0.75,"top_p":0.9,"seed":42,"num_predict":64,
                    "presence_penalty":0.25,"frequency_penalty":0.5,"stop":["END"],"top_k":20,"num_ctx":8192},
                "stream":true,
                "logprobs":true,
                "top_logprobs":2,
                "keep_alive":"10m",
                "think":"low"
            })
        );
    }

    #[test]
    fn response_format_becomes_format() {
        let base = json!({"model":"m","messages":[{"role":"user","content":"hi"}]});
        let with = |rf: Value| {
            let mut r = base.clone();
            r["response_format"] = rf;
            convert(r, false).unwrap()["format"].clone()
        };
        assert_eq!(with(json!({"type":"json_object"})), json!("json"));
        let schema =
            json!({"type":"object","properties":{"age":{"type":"integer"}},"required":["age"]});
        assert_eq!(
            with(json!({"type":"json_schema","json_schema":{"name":"person","schema":schema}})),
            schema
        );
        assert_eq!(with(json!({"type":"text"})), Value::Null);
    }

    #[test]
    fn tool_choice_none_hides_tools_and_a_named_choice_narrows_them() {
        let tool = |n: &str| json!({"type":"function","function":{"name":n}});
        let req = |choice: Value| {
            json!({"model":"m","messages":[{"role":"user","content":"x"}],
                "tools":[tool("a"),tool("b")],"tool_choice":choice})
        };
        assert!(
            convert(req(json!("none")), false)
                .unwrap()
                .get("tools")
                .is_none()
        );
        assert_eq!(
            convert(
                req(json!({"type":"function","function":{"name":"b"}})),
                false
            )
            .unwrap()["tools"],
            json!([tool("b")])
        );
        assert_eq!(
            convert(req(json!("required")), false).unwrap()["tools"],
            json!([tool("a"), tool("b")])
        );
        let err = convert(
            req(json!({"type":"function","function":{"name":"c"}})),
            false,
        )
        .unwrap_err();
        assert!(
            matches!(err, GatewayError::InvalidField { param: Some(p), .. } if p == "tool_choice")
        );
    }

    #[test]
    fn what_ollama_cannot_do_is_a_400_naming_the_field() {
        let param = |request: Value| match convert(request, false) {
            Err(GatewayError::InvalidField { param, .. }) => param.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            param(json!({"model":"m","messages":[{"role":"user","content":[
                {"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]}]})),
            "messages[0].content[0].image_url.url"
        );
        assert_eq!(
            param(json!({"model":"m","messages":[{"role":"user","content":"x"}],"n":2})),
            "n"
        );
        assert_eq!(
            param(
                json!({"model":"m","messages":[{"role":"assistant","tool_calls":[
                {"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]})
            ),
            "messages[0].tool_calls[0].function.arguments"
        );
        assert_eq!(
            param(json!({"model":"m","messages":[{"role":"user","content":"x"}],"options":5})),
            "options"
        );
        let request: EmbeddingRequest =
            serde_json::from_value(json!({"model":"m","input":[1,2,3]})).unwrap();
        assert!(matches!(
            embed_request(&request, "m"),
            Err(GatewayError::InvalidField { param: Some(p), .. }) if p == "input"
        ));
    }

    #[test]
    fn embeddings_carry_input_dimensions_and_ollama_fields() {
        let request: EmbeddingRequest = serde_json::from_value(json!({"model":"local/all-minilm",
            "input":["Why is the sky blue?","Why is the grass green?"],"dimensions":256,
            "encoding_format":"base64","truncate":false,"keep_alive":"1m","user":"u"}))
        .unwrap();
        let out: Value =
            serde_json::from_slice(&embed_request(&request, "all-minilm").unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"model":"all-minilm","input":["Why is the sky blue?","Why is the grass green?"],
                "dimensions":256,"keep_alive":"1m","truncate":false})
        );
    }
}
