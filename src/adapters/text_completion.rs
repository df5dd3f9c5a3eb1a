//! Building legacy completions (`text_completion`) and their stream events, shared by the
//! adapters that produce them (Ollama's `/api/generate`, echo), the way `chunk` is for chat.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde_json::Value;

use super::chunk::unix_now;
use super::sse;
use crate::error::GatewayError;
use crate::schema::{CompletionRequest, Usage};

/// What a backend answering one completion per request cannot do: a 400 naming the field,
/// never silently dropped.
pub fn refuse_unservable(request: &CompletionRequest) -> Result<(), GatewayError> {
    let invalid = |param: &str, message: &str| GatewayError::InvalidField {
        param: Some(param.to_owned()),
        message: message.to_owned(),
    };
    let set = |name: &str| request.extra.get(name).filter(|v| !v.is_null());
    if request.n.is_some_and(|n| n != 1) {
        return Err(invalid("n", "one completion per request: `n` must be 1"));
    }
    if set("best_of").is_some_and(|v| v != &Value::from(1)) {
        return Err(invalid(
            "best_of",
            "one completion per request: `best_of` must be 1",
        ));
    }
    if set("echo") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "echo",
            "`echo: true` (the prompt repeated in the answer) is not supported",
        ));
    }
    if set("logprobs").is_some() {
        return Err(invalid(
            "logprobs",
            "`logprobs` is not supported on this route",
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct CompletionRef<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChoiceRef<'a>],
    // Absent unless asked for; then `null` on every event but the usage event (as OpenAI).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct ChoiceRef<'a> {
    text: &'a str,
    index: u32,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

/// Writes one completion, whole or as stream events: the same id, created and model on each.
#[derive(Debug, Clone)]
pub struct TextCompletionWriter {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl TextCompletionWriter {
    /// A writer for a new completion answering `model` (the name the client used); a stream
    /// ends with a usage event when `include_usage`.
    pub fn new(model: &str, include_usage: bool) -> Self {
        TextCompletionWriter {
            id: format!("cmpl-{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model: model.to_owned(),
            include_usage,
        }
    }

    /// Appends one stream event carrying `text` (and `finish_reason`, on the last).
    pub fn write_text(&self, out: &mut BytesMut, text: &str, finish_reason: Option<&str>) {
        let choices = [ChoiceRef {
            text,
            index: 0,
            logprobs: None,
            finish_reason,
        }];
        let usage = self.include_usage.then_some(None);
        self.write_event(out, &choices, usage);
    }

    /// Appends the usage event (no choices), or nothing when the client did not ask for it.
    pub fn write_usage(&self, out: &mut BytesMut, usage: Usage) {
        if self.include_usage {
            self.write_event(out, &[], Some(Some(usage)));
        }
    }

    /// The whole (non-streamed) completion, as JSON bytes.
    pub fn whole(&self, text: &str, finish_reason: &str, usage: Usage) -> Bytes {
        let choices = [ChoiceRef {
            text,
            index: 0,
            logprobs: None,
            finish_reason: Some(finish_reason),
        }];
        let mut out = BytesMut::with_capacity(text.len() + 256);
        self.write_json(&mut out, &choices, Some(Some(usage)));
        out.freeze()
    }

    fn write_event(
        &self,
        out: &mut BytesMut,
        choices: &[ChoiceRef<'_>],
        usage: Option<Option<Usage>>,
    ) {
        sse::write_event(out, None, |buf| self.write_json(buf, choices, usage));
    }

    fn write_json(
        &self,
        out: &mut BytesMut,
        choices: &[ChoiceRef<'_>],
        usage: Option<Option<Usage>>,
    ) {
        let completion = CompletionRef {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        // Serialising borrowed strings and numbers into memory cannot fail.
        let _ = serde_json::to_writer(out.writer(), &completion);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TextCompletion;

    #[test]
    fn events_and_the_whole_completion_are_text_completions_with_usage_when_asked() {
        let w = TextCompletionWriter::new("local/x \"q\"", true);
        let mut out = BytesMut::new();
        w.write_text(&mut out, "Hi", None);
        w.write_text(&mut out, "", Some("stop"));
        w.write_usage(&mut out, Usage::new(2, 1));
        let events: Vec<TextCompletion> = crate::adapters::sse::data_payloads(&out)
            .iter()
            .map(|p| serde_json::from_slice(p).unwrap())
            .collect();
        assert_eq!(events.len(), 3);
        assert!(
            events
                .iter()
                .all(|e| e.id == events[0].id && e.object == "text_completion")
        );
        assert_eq!(events[0].choices[0].text, "Hi");
        assert_eq!(events[1].choices[0].finish_reason.as_deref(), Some("stop"));
        assert_eq!(events[2].usage.unwrap().total_tokens, 3);
        let raw = String::from_utf8(out.to_vec()).unwrap();
        assert!(raw.contains("\"usage\":null"), "{raw}");
        let whole: TextCompletion =
            serde_json::from_slice(&w.whole("Hi", "length", Usage::new(2, 1))).unwrap();
        assert_eq!(whole.model, "local/x \"q\"");
        assert_eq!(whole.usage.unwrap().completion_tokens, 1);
        let quiet = TextCompletionWriter::new("m", false);
        let mut out = BytesMut::new();
        quiet.write_text(&mut out, "a", None);
        quiet.write_usage(&mut out, Usage::new(1, 1));
        assert!(!String::from_utf8(out.to_vec()).unwrap().contains("usage"));
    }
}
