//! Ollama's NDJSON chat stream → OpenAI `chat.completion.chunk` events.
//!
//! Each line is one JSON object (docs/api.md, "Generate a chat completion", streaming). The
//! events follow OpenAI's order: a first chunk with the role, then content, reasoning and
//! tool-call deltas as lines arrive, then on the `done: true` line a chunk with the finish
//! reason, the usage chunk when the client asked for it, and `data: [DONE]`. An `{"error": …}`
//! line (sent with HTTP 200) ends the stream with an OpenAI error event; so does a stream that
//! stops before its `done` line, since its answer may be cut short.

use super::wire::ChatResponse;
use super::{error_message, finish_reason, text, tool_call_arguments, tool_call_id};
use crate::adapters::chunk::{ChunkWriter, DeltaRef};
use crate::adapters::stream::{DONE_EVENT, Emitter, Flow, Framing, StreamAdapter};
use crate::error::GatewayError;
use crate::schema::Usage;
use crate::schema::chunk::{FunctionCallDelta, ToolCallDelta};

/// The per-stream state of one Ollama chat stream.
#[derive(Debug)]
pub struct ChatStream {
    writer: ChunkWriter,
    backend: String,
    started: bool,
    tool_calls: u32,
}

impl ChatStream {
    /// A stream answering `model` (the name the client sent), with a usage chunk when
    /// `include_usage`.
    pub fn new(model: &str, include_usage: bool, backend: &str) -> Self {
        ChatStream {
            writer: ChunkWriter::new(model, include_usage),
            backend: backend.to_owned(),
            started: false,
            tool_calls: 0,
        }
    }
}

impl StreamAdapter for ChatStream {
    const FRAMING: Framing = Framing::Ndjson;

    fn on_frame(&mut self, line: &[u8], out: &mut Emitter) -> Result<Flow, GatewayError> {
        let chunk: ChatResponse<'_> =
            serde_json::from_slice(line).map_err(|e| GatewayError::UpstreamProtocol {
                backend: self.backend.clone(),
                message: format!("stream line: {e}"),
            })?;
        if let Some(error) = chunk.error {
            return Err(GatewayError::UpstreamFailed {
                backend: self.backend.clone(),
                message: error_message(error),
            });
        }
        let buf = out.buf();
        if !self.started {
            self.started = true;
            let role = DeltaRef {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaRef::default()
            };
            self.writer.write_delta(buf, role, None);
        }
        if let Some(message) = &chunk.message {
            if let Some(thinking) = text(&message.thinking) {
                let delta = DeltaRef {
                    reasoning_content: Some(thinking),
                    ..DeltaRef::default()
                };
                self.writer.write_delta(buf, delta, None);
            }
            if let Some(content) = text(&message.content) {
                let delta = DeltaRef {
                    content: Some(content),
                    ..DeltaRef::default()
                };
                self.writer.write_delta(buf, delta, None);
            }
            if let Some(calls) = message.tool_calls.as_deref().filter(|c| !c.is_empty()) {
                // Ollama sends each call whole: one delta carries id, name and all arguments.
                let deltas: Vec<ToolCallDelta> = calls
                    .iter()
                    .map(|call| {
                        let index = self.tool_calls;
                        self.tool_calls += 1;
                        ToolCallDelta {
                            index,
                            id: Some(tool_call_id(call)),
                            kind: Some("function".to_owned()),
                            function: Some(FunctionCallDelta {
                                name: Some(call.function.name.clone().into_owned()),
                                arguments: Some(tool_call_arguments(call)),
                            }),
                        }
                    })
                    .collect();
                let delta = DeltaRef {
                    tool_calls: Some(&deltas),
                    ..DeltaRef::default()
                };
                self.writer.write_delta(buf, delta, None);
            }
        }
        if !chunk.done {
            return Ok(Flow::Continue);
        }
        let reason = finish_reason(self.tool_calls > 0, chunk.done_reason.as_deref());
        self.writer
            .write_delta(buf, DeltaRef::default(), Some(reason));
        self.writer.write_usage(
            buf,
            Usage::new(
                chunk.prompt_eval_count.unwrap_or(0),
                chunk.eval_count.unwrap_or(0),
            ),
        );
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
    use async_openai::types::chat::{CreateChatCompletionStreamResponse, FinishReason};
    use bytes::Bytes;

    // docs/api.md, "Chat Request (Streaming)": the documented lines, shortened to three
    // deltas, with the final line's statistics.
    const STREAM: &str = concat!(
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The","images":null},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":" sky is"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":" blue \"because\"\n"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done_reason":"length","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}"#,
        "\n"
    );

    /// Feeds `stream` in pieces of `size` bytes; returns the client's data payloads.
    fn run(stream: &[u8], size: usize, include_usage: bool) -> Vec<String> {
        let mut n = Normalizer::new(ChatStream::new("local/llama3.2", include_usage, "b"), "b");
        let mut out = Vec::new();
        for piece in stream.chunks(size) {
            out.extend(n.push(Bytes::copy_from_slice(piece)).unwrap_or_default());
        }
        out.extend(n.end().unwrap_or_default());
        data_payloads(&out)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect()
    }

    fn chunks(payloads: &[String]) -> Vec<CreateChatCompletionStreamResponse> {
        payloads
            .iter()
            .filter(|p| *p != "[DONE]")
            .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p}")))
            .collect()
    }

    #[test]
    fn every_split_of_the_stream_gives_the_same_canonical_chunks() {
        let whole = run(STREAM.as_bytes(), STREAM.len(), true);
        for size in 1..STREAM.len() {
            let split = run(STREAM.as_bytes(), size, true);
            assert_eq!(split.len(), whole.len(), "pieces of {size}");
            // Ids and timestamps differ per stream; compare everything else.
            for (a, b) in split.iter().zip(&whole) {
                let (mut a, mut b): (serde_json::Value, serde_json::Value) = (
                    serde_json::from_str(a).unwrap_or_default(),
                    serde_json::from_str(b).unwrap_or_default(),
                );
                for v in [&mut a, &mut b] {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("id");
                        o.remove("created");
                    }
                }
                assert_eq!(a, b, "pieces of {size}");
            }
        }
    }

    #[test]
    fn role_then_content_then_finish_then_usage_then_done() {
        let payloads = run(STREAM.as_bytes(), 7, true);
        assert_eq!(payloads.last().unwrap(), "[DONE]");
        let chunks = chunks(&payloads);
        assert_eq!(chunks.len(), 6, "{payloads:#?}");
        assert!(
            chunks
                .iter()
                .all(|c| c.model == "local/llama3.2" && c.id == chunks[0].id)
        );
        assert!(chunks[0].choices[0].delta.role.is_some());
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "The sky is blue \"because\"\n");
        assert_eq!(
            chunks[4].choices[0].finish_reason,
            Some(FinishReason::Length)
        );
        assert!(chunks[5].choices.is_empty());
        let usage = chunks[5].usage.as_ref().unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (26, 282, 308)
        );
        let without = run(STREAM.as_bytes(), 64, false);
        assert!(without.iter().all(|p| !p.contains("usage")), "{without:#?}");
        assert_eq!(without.len(), 6);
    }

    #[test]
    fn tool_calls_become_indexed_deltas_and_finish_with_tool_calls() {
        // docs/api.md, "Chat request (with tools)": the tool call arrives whole in one line,
        // arguments as an object; `done_reason` stays "stop".
        let stream = concat!(
            r#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.123648Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_current_weather","arguments":{"format":"celsius","location":"Paris, FR"}}},{"id":"call_up","function":{"name":"get_time","arguments":{}}}]},"done":false}"#,
            "\n",
            r#"{"model":"llama3.2","created_at":"2024-07-22T20:33:28.223648Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"prompt_eval_count":122,"eval_count":33}"#,
            "\n"
        );
        let chunks = chunks(&run(stream.as_bytes(), 3, false));
        let calls = chunks[1].choices[0].delta.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].index, 0);
        assert_eq!(calls[1].index, 1);
        assert!(calls[0].id.as_deref().unwrap().starts_with("call_"));
        assert_eq!(calls[1].id.as_deref(), Some("call_up"));
        let f = calls[0].function.as_ref().unwrap();
        assert_eq!(f.name.as_deref(), Some("get_current_weather"));
        let args: serde_json::Value =
            serde_json::from_str(f.arguments.as_deref().unwrap()).unwrap();
        assert_eq!(
            args,
            serde_json::json!({"format":"celsius","location":"Paris, FR"})
        );
        assert_eq!(
            chunks.last().unwrap().choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
    }

    #[test]
    fn thinking_is_streamed_as_reasoning_content() {
        let stream = concat!(
            r#"{"model":"qwen3","created_at":"2025-05-29T09:35:56.836222Z","message":{"role":"assistant","content":"","thinking":"Let me think"},"done":false}"#,
            "\n",
            r#"{"model":"qwen3","created_at":"2025-05-29T09:35:57.836222Z","message":{"role":"assistant","content":"4"},"done":false}"#,
            "\n",
            r#"{"model":"qwen3","created_at":"2025-05-29T09:35:58.836222Z","message":{"role":"assistant","content":""},"done":true}"#,
            "\n"
        );
        let payloads = run(stream.as_bytes(), 11, false);
        let v: serde_json::Value = serde_json::from_str(&payloads[1]).unwrap();
        assert_eq!(
            v["choices"][0]["delta"]["reasoning_content"],
            "Let me think"
        );
        let last: serde_json::Value = serde_json::from_str(&payloads[3]).unwrap();
        assert_eq!(
            last["choices"][0]["finish_reason"], "stop",
            "no done_reason: stop"
        );
    }

    #[test]
    fn an_error_line_with_http_200_is_one_error_event_and_the_end() {
        // docs/api.md, "Errors": a mid-stream failure is a last line with only `error`.
        let stream = concat!(
            r#"{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The"},"done":false}"#,
            "\n",
            r#"{"error":"an error was encountered while running the model"}"#,
            "\n"
        );
        for size in [1, 5, stream.len()] {
            let payloads = run(stream.as_bytes(), size, true);
            assert_eq!(payloads.len(), 3, "{payloads:#?}");
            let body: crate::schema::ErrorBody = serde_json::from_str(&payloads[2]).unwrap();
            assert!(
                body.error
                    .message
                    .contains("an error was encountered while running the model"),
                "{body:?}"
            );
            assert_eq!(body.error.code.as_deref(), Some("upstream_error"));
        }
    }

    #[test]
    fn a_stream_cut_before_done_ends_with_an_error_not_a_silent_stop() {
        let cut = STREAM.lines().take(2).collect::<Vec<_>>().join("\n");
        let payloads = run(cut.as_bytes(), 10, false);
        assert!(
            payloads.last().unwrap().contains("final `done` line"),
            "{payloads:#?}"
        );
        assert!(!payloads.iter().any(|p| p == "[DONE]"));
        let garbage = run(
            b"{\"model\":\"x\",\"message\":{\"content\":\"a\"}}\nnot json\n",
            4,
            false,
        );
        assert!(garbage.last().unwrap().contains("upstream_protocol_error"));
    }
}
