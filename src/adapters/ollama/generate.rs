//! Legacy completions (`/v1/completions`) ↔ Ollama's `/api/generate`.
//!
//! The request carries the prompt (and `suffix`) with the same `options` mapping as chat; the
//! answer's `response` text becomes a `text_completion`, streamed line by line as
//! `text_completion` events, with usage from `prompt_eval_count` / `eval_count` and the finish
//! reason from `done_reason` (docs/api.md, "Generate a completion").

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::request::{float, merge_options, pick, stop_list};
use super::{error_message, finish_reason};
use crate::adapters::stream::{DONE_EVENT, Emitter, Flow, Framing, StreamAdapter};
use crate::adapters::text_completion::{TextCompletionWriter, refuse_unservable};
use crate::error::GatewayError;
use crate::schema::{CompletionRequest, Usage};

/// Top-level fields of `/api/generate` that OpenAI's API does not have, passed through.
const GENERATE_PASSTHROUGH: &[&str] = &[
    "keep_alive",
    "think",
    "system",
    "template",
    "raw",
    "format",
    "images",
];

/// `POST /api/generate` body.
#[derive(Serialize)]
struct GenerateRequest<'a> {
    model: &'a str,
    prompt: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    suffix: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    options: Map<String, Value>,
    /// Always sent: Ollama streams unless told `false`.
    stream: bool,
    #[serde(flatten)]
    passthrough: Map<String, Value>,
}

/// A `/api/generate` response, or one line of its stream.
#[derive(Deserialize)]
struct GenerateResponse<'a> {
    #[serde(borrow, default)]
    response: Option<Cow<'a, str>>,
    #[serde(default)]
    done: bool,
    #[serde(borrow, default)]
    done_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

impl GenerateResponse<'_> {
    fn usage(&self) -> Usage {
        Usage::new(
            self.prompt_eval_count.unwrap_or(0),
            self.eval_count.unwrap_or(0),
        )
    }
}

/// The `/api/generate` body for `request`, addressed to `model` (the name the upstream knows).
pub fn generate_request(
    request: &CompletionRequest,
    model: &str,
    stream: bool,
) -> Result<Bytes, GatewayError> {
    refuse_unservable(request)?;
    let mapped = [
        ("temperature", request.temperature.map(float)),
        ("top_p", request.top_p.map(float)),
        ("seed", request.seed.map(Value::from)),
        ("num_predict", request.max_tokens.map(Value::from)),
        ("presence_penalty", request.presence_penalty.map(float)),
        ("frequency_penalty", request.frequency_penalty.map(float)),
        ("stop", request.stop.as_ref().map(stop_list)),
    ];
    let body = GenerateRequest {
        model,
        prompt: request.prompt_text(),
        suffix: request.suffix.as_deref(),
        options: merge_options(mapped, &request.extra)?,
        stream,
        passthrough: pick(&request.extra, GENERATE_PASSTHROUGH),
    };
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal {
            message: format!("serialising an Ollama generate request: {e}"),
        })
}

/// The `text_completion` for a non-streamed `/api/generate` answer.
pub fn generate_response(body: &[u8], model: &str, backend: &str) -> Result<Bytes, GatewayError> {
    let answer: GenerateResponse<'_> =
        serde_json::from_slice(body).map_err(|e| GatewayError::UpstreamProtocol {
            backend: backend.to_owned(),
            message: format!("generate response: {e}"),
        })?;
    if let Some(error) = answer.error {
        return Err(GatewayError::UpstreamFailed {
            backend: backend.to_owned(),
            message: error_message(error),
        });
    }
    let writer = TextCompletionWriter::new(model, false);
    let text = answer.response.as_deref().unwrap_or_default();
    let reason = finish_reason(false, answer.done_reason.as_deref());
    Ok(writer.whole(text, reason, answer.usage()))
}

/// The per-stream state of one `/api/generate` stream.
#[derive(Debug)]
pub struct GenerateStream {
    writer: TextCompletionWriter,
    backend: String,
}

impl GenerateStream {
    /// A stream answering `model` (the name the client sent), with a usage event when
    /// `include_usage`.
    pub fn new(model: &str, include_usage: bool, backend: &str) -> Self {
        GenerateStream {
            writer: TextCompletionWriter::new(model, include_usage),
            backend: backend.to_owned(),
        }
    }
}

impl StreamAdapter for GenerateStream {
    const FRAMING: Framing = Framing::Ndjson;

    fn on_frame(&mut self, line: &[u8], out: &mut Emitter) -> Result<Flow, GatewayError> {
        let line: GenerateResponse<'_> =
            serde_json::from_slice(line).map_err(|e| GatewayError::UpstreamProtocol {
                backend: self.backend.clone(),
                message: format!("stream line: {e}"),
            })?;
        if let Some(error) = line.error {
            return Err(GatewayError::UpstreamFailed {
                backend: self.backend.clone(),
                message: error_message(error),
            });
        }
        let buf = out.buf();
        if let Some(text) = line.response.as_deref().filter(|t| !t.is_empty()) {
            self.writer.write_text(buf, text, None);
        }
        if !line.done {
            return Ok(Flow::Continue);
        }
        let reason = finish_reason(false, line.done_reason.as_deref());
        self.writer.write_text(buf, "", Some(reason));
        self.writer.write_usage(buf, line.usage());
        buf.extend_from_slice(DONE_EVENT);
        Ok(Flow::End)
    }

    fn finish(&mut self, _out: &mut Emitter) -> Result<(), GatewayError> {
        Err(super::ended_before_done(&self.backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::sse::data_payloads;
    use crate::adapters::stream::Normalizer;
    use crate::schema::TextCompletion;
    use serde_json::json;

    // docs/api.md, "Generate a completion" (streaming), shortened to three pieces.
    const STREAM: &str = concat!(
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","response":"The","done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","response":" sky","done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","response":" is \"blue\"","done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","response":"","done":true,"done_reason":"stop","context":[1,2,3],"total_duration":10706818083,"load_duration":6338219291,"prompt_eval_count":26,"prompt_eval_duration":130079000,"eval_count":259,"eval_duration":4232710000}"#,
        "\n"
    );

    fn request(body: Value) -> CompletionRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn the_prompt_suffix_and_sampling_fields_map_to_generate() {
        let req = request(
            json!({"model": "local/llama3.2", "prompt": ["Why is the sky blue?"],
            "suffix": "!", "max_tokens": 16, "temperature": 0.2, "stop": "\n",
            "top_k": 20, "keep_alive": "5m", "user": "u"}),
        );
        let out: Value =
            serde_json::from_slice(&generate_request(&req, "llama3.2", true).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"model": "llama3.2", "prompt": "Why is the sky blue?", "suffix": "!",
                   "options": {"num_predict": 16, "temperature": 0.2, "stop": ["\n"], "top_k": 20},
                   "stream": true, "keep_alive": "5m"})
        );
    }

    #[test]
    fn what_one_generate_call_cannot_do_is_refused_by_name() {
        for (field, value) in [
            ("n", json!(2)),
            ("best_of", json!(3)),
            ("echo", json!(true)),
            ("logprobs", json!(2)),
        ] {
            let mut body = json!({"model": "m", "prompt": "p"});
            body[field] = value;
            match generate_request(&request(body), "m", false) {
                Err(GatewayError::InvalidField { param, .. }) => {
                    assert_eq!(param.as_deref(), Some(field))
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_whole_answer_is_a_text_completion_with_usage() {
        let body = br#"{"model":"llama3.2","response":"The sky is blue.","done":true,"done_reason":"length","prompt_eval_count":26,"eval_count":5}"#;
        let out: TextCompletion =
            serde_json::from_slice(&generate_response(body, "local/llama3.2", "b").unwrap())
                .unwrap();
        assert_eq!(out.object, "text_completion");
        assert_eq!(out.choices[0].text, "The sky is blue.");
        assert_eq!(out.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(out.usage.unwrap().total_tokens, 31);
        let err = generate_response(br#"{"error":"boom"}"#, "m", "b").unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }

    #[test]
    fn the_stream_gives_the_same_events_however_its_lines_are_split() {
        let run = |size: usize| {
            let mut n = Normalizer::new(GenerateStream::new("local/llama3.2", true, "b"), "b");
            let mut out = Vec::new();
            for piece in STREAM.as_bytes().chunks(size) {
                out.extend(n.push(Bytes::copy_from_slice(piece)).unwrap_or_default());
            }
            out.extend(n.end().unwrap_or_default());
            data_payloads(&out)
        };
        for size in [1, 3, 40, STREAM.len()] {
            let payloads = run(size);
            assert_eq!(payloads.last().unwrap(), b"[DONE]", "reads of {size}");
            let events: Vec<TextCompletion> = payloads[..payloads.len() - 1]
                .iter()
                .map(|p| serde_json::from_slice(p).unwrap())
                .collect();
            let text: String = events
                .iter()
                .flat_map(|e| e.choices.iter().map(|c| c.text.as_str()))
                .collect();
            assert_eq!(text, "The sky is \"blue\"");
            assert_eq!(
                events[events.len() - 2].choices[0].finish_reason.as_deref(),
                Some("stop")
            );
            assert_eq!(events.last().unwrap().usage.unwrap().completion_tokens, 259);
        }
        let mut n = Normalizer::new(GenerateStream::new("m", false, "b"), "b");
        let mut out = n
            .push(Bytes::from_static(
                b"{\"response\":\"a\",\"done\":false}\n{\"error\":\"oom\"}\n",
            ))
            .unwrap()
            .to_vec();
        out.extend(n.end().unwrap_or_default());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("oom") && !text.contains("[DONE]"), "{text}");
    }
}
