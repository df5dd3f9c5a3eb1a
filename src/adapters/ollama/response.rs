//! Ollama's whole (non-streamed) responses → OpenAI's: chat completions, embeddings, the model
//! list, and error bodies.

use actix_web::http::StatusCode;
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::wire::{ChatResponse, EmbedResponse, ErrorResponse, TagsResponse};
use super::{error_message, finish_reason, text, tool_call_arguments, tool_call_id};
use crate::adapters::chunk::completion;
use crate::error::GatewayError;
use crate::schema::DiscoveredModel;
use crate::schema::chat::{FunctionCall, ResponseMessage, ToolCall, ToolKind};
use crate::schema::embeddings::EmbeddingUsage;
use crate::schema::{ErrorBody, Usage};

/// Longest upstream text quoted in an error message.
const MAX_QUOTED: usize = 512;

fn protocol(backend: &str, what: &str, err: impl std::fmt::Display) -> GatewayError {
    GatewayError::UpstreamProtocol {
        backend: backend.to_owned(),
        message: format!("{what}: {err}"),
    }
}

/// A `/api/chat` response as an OpenAI `chat.completion` answering `model` (the client's name).
pub fn chat_response(body: &[u8], model: &str, backend: &str) -> Result<Bytes, GatewayError> {
    let response: ChatResponse<'_> =
        serde_json::from_slice(body).map_err(|e| protocol(backend, "chat response", e))?;
    if let Some(error) = response.error {
        return Err(GatewayError::UpstreamFailed {
            backend: backend.to_owned(),
            message: error_message(error),
        });
    }
    let message = response
        .message
        .ok_or_else(|| protocol(backend, "chat response", "no `message`"))?;
    let tool_calls: Vec<ToolCall> = message
        .tool_calls
        .iter()
        .flatten()
        .map(|call| ToolCall {
            id: tool_call_id(call),
            kind: ToolKind::Function,
            function: FunctionCall {
                name: call.function.name.clone().into_owned(),
                arguments: tool_call_arguments(call),
            },
        })
        .collect();
    let content = text(&message.content).map(str::to_owned);
    let finish = finish_reason(!tool_calls.is_empty(), response.done_reason.as_deref());
    let completion = completion(
        model,
        ResponseMessage {
            role: "assistant".to_owned(),
            // OpenAI's `content` is null on a turn that only calls tools; Ollama sends "".
            content: match content {
                None if tool_calls.is_empty() => Some(String::new()),
                other => other,
            },
            reasoning_content: text(&message.thinking).map(str::to_owned),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        },
        finish,
        Usage::new(
            response.prompt_eval_count.unwrap_or(0),
            response.eval_count.unwrap_or(0),
        ),
    );
    serde_json::to_vec(&completion)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal {
            message: format!("serialising a chat completion: {e}"),
        })
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut<'a>>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingOut<'a> {
    object: &'static str,
    index: usize,
    embedding: EmbeddingData<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingData<'a> {
    /// Ollama's array, relayed as written.
    Floats(&'a RawValue),
    /// Little-endian `f32`s in standard base64, as OpenAI encodes them.
    Base64(String),
}

/// A `/api/embed` response as OpenAI's embedding list answering `model`. `inputs` is how many
/// embeddings were asked for; `base64` answers `encoding_format: "base64"`.
pub fn embed_response(
    body: &[u8],
    model: &str,
    inputs: usize,
    base64: bool,
    backend: &str,
) -> Result<Bytes, GatewayError> {
    let response: EmbedResponse<'_> =
        serde_json::from_slice(body).map_err(|e| protocol(backend, "embed response", e))?;
    if let Some(error) = response.error {
        return Err(GatewayError::UpstreamFailed {
            backend: backend.to_owned(),
            message: error_message(error),
        });
    }
    if response.embeddings.len() != inputs {
        return Err(protocol(
            backend,
            "embed response",
            format!(
                "{} embeddings for {inputs} inputs",
                response.embeddings.len()
            ),
        ));
    }
    let mut data = Vec::with_capacity(inputs);
    for (index, raw) in response.embeddings.into_iter().enumerate() {
        let embedding = if base64 {
            let floats: Vec<f32> =
                serde_json::from_str(raw.get()).map_err(|e| protocol(backend, "embedding", e))?;
            let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
            EmbeddingData::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            if !raw.get().starts_with('[') {
                return Err(protocol(backend, "embedding", "not an array"));
            }
            EmbeddingData::Floats(raw)
        };
        data.push(EmbeddingOut {
            object: "embedding",
            index,
            embedding,
        });
    }
    let tokens = response.prompt_eval_count.unwrap_or(0);
    let list = EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    serde_json::to_vec(&list)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal {
            message: format!("serialising an embedding list: {e}"),
        })
}

/// The models of a `/api/tags` response, with `modified_at` as their `created` time.
pub fn tags(body: &[u8], backend: &str) -> Result<Vec<DiscoveredModel>, GatewayError> {
    let response: TagsResponse =
        serde_json::from_slice(body).map_err(|e| protocol(backend, "model list", e))?;
    Ok(response
        .models
        .into_iter()
        .filter_map(|m| {
            let created = m.modified_at.as_deref().and_then(unix_seconds);
            Some(DiscoveredModel {
                id: m.name.or(m.model)?,
                created,
                owned_by: None,
            })
        })
        .collect())
}

/// Seconds since the epoch of an RFC 3339 time (`Z` or an offset, any fraction).
fn unix_seconds(text: &str) -> Option<u64> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(time.unix_timestamp()).ok()
}

/// The OpenAI error body for an Ollama error response (`{"error": "..."}`) with `status`.
///
/// Ollama answers an unknown model with 404 and `model '…' not found`: that is OpenAI's
/// `model_not_found`. A body that is not Ollama's JSON (a proxy's page, Go's plain
/// `404 page not found` for a wrong path) is quoted in the message instead.
pub fn error_body(status: StatusCode, body: &[u8]) -> ErrorBody {
    let ollama = serde_json::from_slice::<ErrorResponse<'_>>(body).ok();
    let message = match &ollama {
        Some(e) => error_message(e.error),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("the backend answered with status {status}")
            } else {
                let quoted: String = text.chars().take(MAX_QUOTED).collect();
                format!("the backend answered with status {status}: {quoted}")
            }
        }
    };
    let (kind, param, code) = match status.as_u16() {
        404 if ollama.is_some() => (
            "invalid_request_error",
            Some("model".to_owned()),
            Some("model_not_found"),
        ),
        400 | 404 | 413 | 422 => ("invalid_request_error", None, None),
        401 => ("authentication_error", None, None),
        403 => ("permission_error", None, None),
        429 => ("rate_limit_error", None, Some("rate_limit_exceeded")),
        _ => ("api_error", None, None),
    };
    ErrorBody::new(message, kind, param, code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn an_unknown_model_is_openais_model_not_found() {
        let body = error_body(
            StatusCode::NOT_FOUND,
            br#"{"error":"model 'llama3.2' not found"}"#,
        );
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"error":{"message":"model 'llama3.2' not found","type":"invalid_request_error","param":"model","code":"model_not_found"}})
        );
        let body = error_body(StatusCode::NOT_FOUND, b"404 page not found");
        assert_eq!(body.error.code, None);
        assert!(body.error.message.ends_with("404 page not found"));
        let body = error_body(StatusCode::BAD_GATEWAY, b"");
        assert_eq!(body.error.kind, "api_error");
        assert!(body.error.message.contains("502"));
    }

    #[test]
    fn tags_become_models_with_their_modification_time() {
        let models = tags(
            br#"{"models":[
                {"name":"codellama:13b","model":"codellama:13b","modified_at":"2023-11-04T14:56:49.277302595-07:00","size":7365960935},
                {"model":"llama3:latest","modified_at":"2023-12-07T09:32:18Z"},
                {"size":1}]}"#,
            "b",
        )
        .unwrap();
        let ids: Vec<_> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["codellama:13b", "llama3:latest"]);
        assert_eq!(models[0].created, Some(1_699_135_009));
        assert_eq!(models[1].created, Some(1_701_941_538));
    }

    #[test]
    fn base64_embeddings_are_little_endian_f32() {
        let out = embed_response(
            br#"{"model":"m","embeddings":[[0.5,-0.0017594862]],"prompt_eval_count":3}"#,
            "local/m",
            1,
            true,
            "b",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let mut expected = 0.5f32.to_le_bytes().to_vec();
        expected.extend((-0.001_759_486_2_f32).to_le_bytes());
        assert_eq!(raw, expected);
        assert_eq!(v["usage"], json!({"prompt_tokens":3,"total_tokens":3}));
        assert!(matches!(
            embed_response(br#"{"embeddings":[[1.0]]}"#, "m", 2, false, "b"),
            Err(GatewayError::UpstreamProtocol { .. })
        ));
    }
}
