//! Canonical chat completion chunks (SSE) → the Responses event sequence.
//!
//! The input is what the normalisation layer makes of any backend's chat stream: `data:` chunks
//! ending with `data: [DONE]`, or with one `data: {"error":…}` event. The output is what the
//! OpenAI SDKs read from `/v1/responses`: `response.created`, `response.in_progress`; for the
//! text `response.output_item.added`, `response.content_part.added`, one
//! `response.output_text.delta` per chunk, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`; for each tool call
//! `response.output_item.added`, `response.function_call_arguments.delta`…,
//! `response.function_call_arguments.done`, `response.output_item.done`; then
//! `response.completed` (or `response.incomplete`) with the whole response and its usage. Each
//! event is `event: <type>` and `data: <json>` with a `sequence_number` counting from 0.
//!
//! A failure (the chat stream's error event, or a chat stream that ends without `[DONE]`) is
//! `response.failed` followed by an `error` event, then the stream closes: the Agents SDK stops
//! on the first, and the `openai` SDK raises `APIError` on the second (its `error` object).

use std::borrow::Cow;

use bytes::BufMut;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::response::UsageWire;
use super::{Ending, ResponseShell, call_item, item_id, message_item};
use crate::adapters::sse;
use crate::adapters::stream::{Emitter, Flow, Framing, StreamAdapter};
use crate::error::GatewayError;
use crate::schema::ErrorObject;
use crate::schema::responses::{OutputItem, ResponseUsage};

#[derive(Deserialize)]
struct ChunkWire<'a> {
    #[serde(borrow, default)]
    choices: Vec<ChoiceWire<'a>>,
    #[serde(default)]
    usage: Option<UsageWire>,
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ChoiceWire<'a> {
    #[serde(borrow, default)]
    delta: Option<DeltaWire<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DeltaWire<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<CallDeltaWire<'a>>>,
}

#[derive(Deserialize)]
struct CallDeltaWire<'a> {
    #[serde(default)]
    index: u32,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<FunctionDeltaWire<'a>>,
}

#[derive(Deserialize)]
struct FunctionDeltaWire<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// A text delta event's fields, borrowed (the one event per chunk on the hot path).
#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: u32,
    delta: &'a str,
    logprobs: [(); 0],
}

/// An arguments delta event's fields, borrowed.
#[derive(Serialize)]
struct ArgumentsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
}

/// Writes one event, `event: <kind>` and its data with its type and sequence number, and
/// counts it.
fn write_event<T: Serialize>(sequence: &mut u64, out: &mut Emitter, kind: &str, fields: T) {
    #[derive(Serialize)]
    struct Event<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        sequence_number: u64,
        #[serde(flatten)]
        fields: T,
    }
    let event = Event {
        kind,
        sequence_number: *sequence,
        fields,
    };
    // Serialising the gateway's own values into memory cannot fail.
    sse::write_event(out.buf(), Some(kind), |buf| {
        let _ = serde_json::to_writer(buf.writer(), &event);
    });
    *sequence += 1;
}

/// The per-stream state of one translated Responses stream.
#[derive(Debug)]
pub struct ResponsesStream {
    shell: ResponseShell,
    backend: String,
    sequence: u64,
    started: bool,
    output: Vec<OutputItem>,
    open: Option<Open>,
    finish_reason: Option<String>,
    usage: Option<ResponseUsage>,
}

impl ResponsesStream {
    /// A stream of the response `shell` describes, from `backend` (named in errors).
    pub fn new(shell: ResponseShell, backend: &str) -> Self {
        ResponsesStream {
            shell,
            backend: backend.to_owned(),
            sequence: 0,
            started: false,
            output: Vec::new(),
            open: None,
            finish_reason: None,
            usage: None,
        }
    }

    fn emit<T: Serialize>(&mut self, out: &mut Emitter, kind: &str, fields: T) {
        write_event(&mut self.sequence, out, kind, fields);
    }

    fn start(&mut self, out: &mut Emitter) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.shell.response(Ending::InProgress, Vec::new(), None);
        self.emit(out, "response.created", json!({ "response": response }));
        self.emit(out, "response.in_progress", json!({ "response": response }));
    }

    fn text(&mut self, delta: &str, out: &mut Emitter) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            self.close("completed", out);
            self.open_message(out);
        }
        let output_index = self.output.len();
        let Some(Open::Message { id, text }) = &mut self.open else {
            return;
        };
        text.push_str(delta);
        let fields = TextDelta {
            item_id: id,
            output_index,
            content_index: 0,
            delta,
            logprobs: [],
        };
        write_event(
            &mut self.sequence,
            out,
            "response.output_text.delta",
            fields,
        );
    }

    fn open_message(&mut self, out: &mut Emitter) {
        let id = item_id("msg");
        let output_index = self.output.len();
        let item = json!({"id": id, "type": "message", "status": "in_progress",
                          "role": "assistant", "content": []});
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        );
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        self.emit(
            out,
            "response.content_part.added",
            json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": part}),
        );
        self.open = Some(Open::Message {
            id,
            text: String::new(),
        });
    }

    fn call(&mut self, delta: CallDeltaWire<'_>, out: &mut Emitter) {
        let same = matches!(&self.open, Some(Open::Call { index, .. }) if *index == delta.index);
        let (name, arguments) = match delta.function {
            Some(f) => (f.name, f.arguments),
            None => (None, None),
        };
        if !same {
            self.close("completed", out);
            let call_id = match delta.id {
                Some(id) if !id.is_empty() => id.into_owned(),
                _ => item_id("call"),
            };
            self.open_call(
                delta.index,
                call_id,
                name.unwrap_or_default().into_owned(),
                out,
            );
        }
        let Some(piece) = arguments.filter(|a| !a.is_empty()) else {
            return;
        };
        let output_index = self.output.len();
        let Some(Open::Call { id, arguments, .. }) = &mut self.open else {
            return;
        };
        arguments.push_str(&piece);
        let fields = ArgumentsDelta {
            item_id: id,
            output_index,
            delta: &piece,
        };
        let kind = "response.function_call_arguments.delta";
        write_event(&mut self.sequence, out, kind, fields);
    }

    fn open_call(&mut self, index: u32, call_id: String, name: String, out: &mut Emitter) {
        let id = item_id("fc");
        let item = call_item(
            id.clone(),
            "in_progress",
            call_id.clone(),
            name.clone(),
            String::new(),
        );
        let output_index = self.output.len();
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        );
        self.open = Some(Open::Call {
            id,
            index,
            call_id,
            name,
            arguments: String::new(),
        });
    }

    /// Ends the open item, if any, with `status`.
    fn close(&mut self, status: &str, out: &mut Emitter) {
        let output_index = self.output.len();
        let item = match self.open.take() {
            None => return,
            Some(Open::Message { id, text }) => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let at = json!({"item_id": id, "output_index": output_index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                self.emit(out, "response.output_text.done", done);
                let mut part_done = at;
                part_done["part"] = part;
                self.emit(out, "response.content_part.done", part_done);
                message_item(id, status, text, None)
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                let fields = json!({"item_id": id, "output_index": output_index,
                                    "name": name, "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", fields);
                call_item(id, status, call_id, name, arguments)
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        );
        self.output.push(item);
    }

    /// The chat stream's end: close the items and send the whole response.
    fn complete(&mut self, out: &mut Emitter) {
        let ending = Ending::from_finish_reason(self.finish_reason.as_deref());
        if self.open.is_none() && self.output.is_empty() {
            // Nothing was generated: still one (empty) message, as a whole response has.
            self.open_message(out);
        }
        self.close(ending.item_status(), out);
        let kind = match ending {
            Ending::Incomplete(_) => "response.incomplete",
            _ => "response.completed",
        };
        let response = self
            .shell
            .response(ending, std::mem::take(&mut self.output), self.usage);
        self.emit(out, kind, json!({ "response": response }));
    }

    /// `response.failed` with what was generated so far, then the `error` event.
    fn fail(&mut self, error: ErrorObject, out: &mut Emitter) {
        self.start(out);
        let mut output = std::mem::take(&mut self.output);
        match self.open.take() {
            Some(Open::Message { id, text }) => {
                output.push(message_item(id, "incomplete", text, None));
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            }) => output.push(call_item(id, "incomplete", call_id, name, arguments)),
            None => {}
        }
        let failed = Ending::Failed(error.message.clone());
        let response = self.shell.response(failed, output, self.usage);
        self.emit(out, "response.failed", json!({ "response": response }));
        let fields = json!({"code": error.code, "message": error.message,
                            "param": error.param, "error": error});
        self.emit(out, "error", fields);
    }

    fn protocol_error(&self, message: String) -> GatewayError {
        GatewayError::UpstreamProtocol {
            backend: self.backend.clone(),
            message,
        }
    }
}

impl StreamAdapter for ResponsesStream {
    const FRAMING: Framing = Framing::Sse;

    fn on_frame(&mut self, frame: &[u8], out: &mut Emitter) -> Result<Flow, GatewayError> {
        let Some(data) = sse::decode(frame).data else {
            // A comment (keep-alive): nothing to translate.
            return Ok(Flow::Continue);
        };
        self.start(out);
        if &*data == b"[DONE]" {
            self.complete(out);
            return Ok(Flow::End);
        }
        let chunk: ChunkWire<'_> = serde_json::from_slice(&data)
            .map_err(|e| self.protocol_error(format!("chat completion chunk: {e}")))?;
        if let Some(error) = chunk.error {
            // The chat stream has logged its failure; this only changes its shape.
            self.fail(error, out);
            return Ok(Flow::End);
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                for text in [delta.content, delta.refusal].into_iter().flatten() {
                    if !text.is_empty() {
                        self.text(&text, out);
                    }
                }
                for call in delta.tool_calls.into_iter().flatten() {
                    self.call(call, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason.into_owned());
            }
        }
        Ok(Flow::Continue)
    }

    fn finish(&mut self, _out: &mut Emitter) -> Result<(), GatewayError> {
        // The normalised chat stream always ends with [DONE] or an error event.
        Err(self.protocol_error("the chat stream ended before `[DONE]`".to_owned()))
    }

    fn write_failure(&mut self, err: &GatewayError, out: &mut Emitter) {
        let (_, body) = err.to_openai();
        self.fail(body.error, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::stream::Normalizer;
    use crate::schema::responses::ResponsesRequest;
    use bytes::Bytes;
    use serde_json::Value;

    /// A chat stream as the normalisation layer writes it: role, text in three chunks, two
    /// tool calls (the first's arguments in two pieces), finish, usage, [DONE].
    const CHAT: &str = concat!(
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Let me"},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" check \"it\""},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null}"#,
        "\n\n",
        r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#,
        "\n\n",
        "data: [DONE]\n\n"
    );

    fn shell() -> ResponseShell {
        let request: ResponsesRequest =
            serde_json::from_str(r#"{"model":"local/m","input":"hi","stream":true}"#).unwrap();
        ResponseShell::new(&request, "local/m")
    }

    /// Feeds `stream` in reads of `size` bytes; returns each event's `event:` name and data.
    fn run(stream: &[u8], size: usize) -> Vec<(String, Value)> {
        let mut n = Normalizer::new(ResponsesStream::new(shell(), "b"), "b");
        let mut out = Vec::new();
        for piece in stream.chunks(size) {
            out.extend(n.push(Bytes::copy_from_slice(piece)).unwrap_or_default());
        }
        out.extend(n.end().unwrap_or_default());
        sse::events(&out)
            .map(|e| {
                let e = sse::decode(e);
                let name = String::from_utf8(e.event.unwrap().to_vec()).unwrap();
                (name, serde_json::from_slice(&e.data.unwrap()).unwrap())
            })
            .collect()
    }

    #[test]
    fn text_and_tool_calls_become_the_responses_event_sequence_however_reads_are_split() {
        let whole = run(CHAT.as_bytes(), CHAT.len());
        let names: Vec<&str> = whole.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in whole.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i);
        }
        assert_eq!(whole[6].1["text"], "Let me check \"it\"");
        assert_eq!(whole[12].1["arguments"], "{\"city\":\"Paris\"}");
        let done = &whole[18].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["usage"]["input_tokens"], 12);
        assert_eq!(done["usage"]["output_tokens"], 7);
        assert_eq!(done["output"][1]["call_id"], "call_1");
        assert_eq!(done["output"][2]["name"], "get_time");
        assert_eq!(done["id"], whole[0].1["response"]["id"]);
        // Every split gives the same events, ids aside.
        let strip = |events: Vec<(String, Value)>| -> Vec<String> {
            events
                .into_iter()
                .map(|(n, d)| format!("{n} {} {}", d["delta"], d["sequence_number"]))
                .collect()
        };
        let expected = strip(whole);
        for size in [1, 7, 64] {
            assert_eq!(
                strip(run(CHAT.as_bytes(), size)),
                expected,
                "reads of {size}"
            );
        }
    }

    #[test]
    fn length_ends_incomplete_and_an_empty_answer_still_has_a_message() {
        let chat = concat!(
            r#"data: {"choices":[{"index":0,"delta":{"content":"The"},"finish_reason":"length"}]}"#,
            "\n\ndata: [DONE]\n\n"
        );
        let events = run(chat.as_bytes(), 5);
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        let events = run(b"data: [DONE]\n\n", 3);
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.completed");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "");
    }

    #[test]
    fn a_failure_mid_stream_is_response_failed_then_an_error_event_and_nothing_after() {
        let chat = concat!(
            r#"data: {"choices":[{"index":0,"delta":{"content":"The sky"}}]}"#,
            "\n\n",
            r#"data: {"error":{"message":"backend `b` reported an error: model crashed","type":"api_error","param":null,"code":"upstream_error"}}"#,
            "\n\n",
            r#"data: {"choices":[{"index":0,"delta":{"content":"never"}}]}"#,
            "\n\n"
        );
        let events = run(chat.as_bytes(), 11);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[names.len() - 2..],
            ["response.failed", "error"],
            "{names:?}"
        );
        let failed = &events[events.len() - 2].1["response"];
        assert_eq!(failed["status"], "failed");
        assert!(
            failed["error"]["message"]
                .as_str()
                .unwrap()
                .contains("model crashed")
        );
        assert_eq!(failed["output"][0]["content"][0]["text"], "The sky");
        let error = &events[events.len() - 1].1;
        assert_eq!(error["code"], "upstream_error");
        assert_eq!(error["error"]["code"], "upstream_error");
        assert!(!events.iter().any(|(_, d)| d["delta"] == "never"));
    }

    #[test]
    fn a_chat_stream_cut_short_or_garbled_fails_the_same_way() {
        for chat in [
            &br#"data: {"choices":[{"index":0,"delta":{"content":"x"}}]}"#[..],
            b"data: {not json\n\n",
        ] {
            let events = run(chat, 4);
            let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names[names.len() - 2..], ["response.failed", "error"]);
            assert_eq!(
                events.last().unwrap().1["error"]["code"],
                "upstream_protocol_error"
            );
        }
    }
}
