//! Building OpenAI chat chunks and completions, shared by every adapter that produces them
//! (echo now, native formats such as Ollama's later), so all speak one canonical shape.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use crate::schema::chat::{ChatChoice, ResponseMessage};
use crate::schema::chunk::{ChunkChoice, Delta, UsageField};
use crate::schema::{ChatCompletion, ChatCompletionChunk, Usage};

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

    /// The first chunk: the assistant role, no content.
    pub fn role(&self) -> Bytes {
        self.delta(
            Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
                tool_calls: None,
            },
            None,
        )
    }

    /// A content delta.
    pub fn content(&self, text: &str) -> Bytes {
        self.delta(
            Delta {
                content: Some(text.to_owned()),
                ..Delta::default()
            },
            None,
        )
    }

    /// Any delta, with an optional finish reason.
    pub fn delta(&self, delta: Delta, finish_reason: Option<&str>) -> Bytes {
        self.event(
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            None,
        )
    }

    /// The chunk that closes the choice.
    pub fn finish(&self, reason: &str) -> Bytes {
        self.delta(Delta::default(), Some(reason))
    }

    /// The usage chunk (no choices), or nothing when the client did not ask for it.
    pub fn usage(&self, usage: Usage) -> Option<Bytes> {
        self.include_usage
            .then(|| self.event(Vec::new(), Some(usage)))
    }

    fn event(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> Bytes {
        let chunk = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: match (self.include_usage, usage) {
                (_, Some(u)) => UsageField::Value(u),
                (true, None) => UsageField::Null,
                (false, None) => UsageField::Absent,
            },
        };
        sse_event(&chunk)
    }
}

/// A complete (non-streamed) chat completion with one text choice.
pub fn completion(
    model: &str,
    content: String,
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
            message: ResponseMessage {
                role: "assistant".to_owned(),
                content: Some(content),
                tool_calls: None,
            },
            finish_reason: Some(finish_reason.to_owned()),
        }],
        usage: Some(usage),
    }
}

/// `data: <json>\n\n`.
pub fn sse_event<T: Serialize>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    // Serialising our own schema types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
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
}
