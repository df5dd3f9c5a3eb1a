//! Building OpenAI chat chunks and completions, shared by every adapter that produces them
//! (echo, Ollama), so all speak one canonical shape. Chunks are serialised from borrowed views
//! straight into the stream's output buffer: no owned copy of the id, model or text per chunk.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::sse;
use crate::schema::chat::{ChatChoice, ResponseMessage};
use crate::schema::chunk::ToolCallDelta;
use crate::schema::{ChatCompletion, Usage};

/// What one chunk adds to the message, borrowed from wherever the adapter read it.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct DeltaRef<'a> {
    /// `assistant`, on the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    /// A piece of the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// A piece of the model's reasoning (`reasoning_content`, as DeepSeek and vLLM name it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<&'a str>,
    /// Tool calls, each with its index in the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<&'a [ToolCallDelta]>,
}

/// The wire shape of `ChatCompletionChunk`, borrowed, so that writing a chunk copies nothing
/// but the bytes it serialises.
#[derive(Serialize)]
struct ChunkRef<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChoiceRef<'a>],
    // Absent unless asked for; then `null` on every chunk but the usage chunk (OpenAI's shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChoiceRef<'a> {
    index: u32,
    delta: DeltaRef<'a>,
    finish_reason: Option<&'a str>,
}

/// Writes the chunks of one streamed completion: same id, created and model on each.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl ChunkWriter {
    /// A writer for a new completion answering `model` (the name the client used).
    pub fn new(model: &str, include_usage: bool) -> Self {
        ChunkWriter {
            id: completion_id(),
            created: unix_now(),
            model: model.to_owned(),
            include_usage,
        }
    }

    /// Appends one chunk event carrying `delta` (and `finish_reason`, on the choice's last).
    pub fn write_delta(
        &self,
        out: &mut BytesMut,
        delta: DeltaRef<'_>,
        finish_reason: Option<&str>,
    ) {
        let choices = [ChoiceRef {
            index: 0,
            delta,
            finish_reason,
        }];
        self.write(out, &choices, None);
    }

    /// Appends the usage chunk (no choices), or nothing when the client did not ask for it.
    pub fn write_usage(&self, out: &mut BytesMut, usage: Usage) {
        if self.include_usage {
            self.write(out, &[], Some(usage));
        }
    }

    /// The first chunk: the assistant role, no content.
    pub fn role(&self) -> Bytes {
        self.delta(
            DeltaRef {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaRef::default()
            },
            None,
        )
    }

    /// A content delta.
    pub fn content(&self, text: &str) -> Bytes {
        self.delta(
            DeltaRef {
                content: Some(text),
                ..DeltaRef::default()
            },
            None,
        )
    }

    /// Any delta, with an optional finish reason.
    pub fn delta(&self, delta: DeltaRef<'_>, finish_reason: Option<&str>) -> Bytes {
        let mut out = BytesMut::with_capacity(256);
        self.write_delta(&mut out, delta, finish_reason);
        out.freeze()
    }

    /// The chunk that closes the choice.
    pub fn finish(&self, reason: &str) -> Bytes {
        self.delta(DeltaRef::default(), Some(reason))
    }

    /// The usage chunk (no choices), or nothing when the client did not ask for it.
    pub fn usage(&self, usage: Usage) -> Option<Bytes> {
        let mut out = BytesMut::new();
        self.write_usage(&mut out, usage);
        (!out.is_empty()).then(|| out.freeze())
    }

    fn write(&self, out: &mut BytesMut, choices: &[ChoiceRef<'_>], usage: Option<Usage>) {
        let chunk = ChunkRef {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage: self.include_usage.then_some(usage),
        };
        // Serialising borrowed strings and numbers into memory cannot fail.
        sse::write_event(out, None, |buf| {
            let _ = serde_json::to_writer(buf.writer(), &chunk);
        });
    }
}

/// A complete (non-streamed) chat completion with one choice, `message`.
pub fn completion(
    model: &str,
    message: ResponseMessage,
    finish_reason: &str,
    usage: Usage,
) -> ChatCompletion {
    ChatCompletion {
        id: completion_id(),
        object: "chat.completion".to_owned(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![ChatChoice {
            index: 0,
            message,
            finish_reason: Some(finish_reason.to_owned()),
        }],
        usage: Some(usage),
    }
}

/// The assistant message of a plain text answer.
pub fn text_message(content: String) -> ResponseMessage {
    ResponseMessage {
        role: "assistant".to_owned(),
        content: Some(content),
        reasoning_content: None,
        tool_calls: None,
    }
}

/// A fresh `chatcmpl-…` id.
pub fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_null_until_the_usage_chunk_when_asked_for() {
        let w = ChunkWriter::new("echo/x", true);
        let c = String::from_utf8(w.content("hi").to_vec()).unwrap();
        assert!(c.contains("\"usage\":null"), "{c}");
        let u = String::from_utf8(w.usage(Usage::new(1, 2)).unwrap().to_vec()).unwrap();
        assert!(
            u.contains("\"choices\":[]") && u.contains("\"total_tokens\":3"),
            "{u}"
        );
        let w = ChunkWriter::new("echo/x", false);
        assert!(
            !String::from_utf8(w.content("hi").to_vec())
                .unwrap()
                .contains("usage")
        );
        assert!(w.usage(Usage::new(1, 2)).is_none());
    }

    #[test]
    fn every_chunk_kind_is_a_valid_chat_completion_chunk_for_async_openai() {
        use async_openai::types::chat::CreateChatCompletionStreamResponse;
        let w = ChunkWriter::new("local/x \"quoted\"", true);
        let calls = [ToolCallDelta {
            index: 0,
            id: Some("call_1".into()),
            kind: Some("function".into()),
            function: Some(crate::schema::chunk::FunctionCallDelta {
                name: Some("f".into()),
                arguments: Some("{\"a\":1}".into()),
            }),
        }];
        let mut out = BytesMut::new();
        w.write_delta(
            &mut out,
            DeltaRef {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaRef::default()
            },
            None,
        );
        w.write_delta(
            &mut out,
            DeltaRef {
                reasoning_content: Some("hmm"),
                ..DeltaRef::default()
            },
            None,
        );
        w.write_delta(
            &mut out,
            DeltaRef {
                tool_calls: Some(&calls),
                ..DeltaRef::default()
            },
            None,
        );
        w.write_delta(&mut out, DeltaRef::default(), Some("tool_calls"));
        w.write_usage(&mut out, Usage::new(3, 4));
        let payloads = crate::adapters::sse::data_payloads(&out);
        assert_eq!(payloads.len(), 5);
        let chunks: Vec<CreateChatCompletionStreamResponse> = payloads
            .iter()
            .map(|p| serde_json::from_slice(p).unwrap())
            .collect();
        assert!(
            chunks
                .iter()
                .all(|c| c.id == chunks[0].id && c.model == "local/x \"quoted\"")
        );
        let call = &chunks[2].choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.id.as_deref(), Some("call_1"));
        assert_eq!(
            call.function.as_ref().unwrap().arguments.as_deref(),
            Some("{\"a\":1}")
        );
        assert!(chunks[3].choices[0].finish_reason.is_some());
        assert_eq!(chunks[4].usage.as_ref().unwrap().total_tokens, 7);
        let reasoning: serde_json::Value = serde_json::from_slice(&payloads[1]).unwrap();
        assert_eq!(reasoning["choices"][0]["delta"]["reasoning_content"], "hmm");
        assert!(reasoning["usage"].is_null());
    }
}
