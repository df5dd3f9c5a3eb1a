//! `/v1/responses` and legacy `/v1/completions` on backends without them: the Responses API
//! through a chat completion (Ollama, echo, an `openai` backend marked `responses =
//! "translate"`), legacy completions through Ollama's `/api/generate` and echo; and relayed as
//! they are to backends that have them. Ollama's answers are documented transcripts
//! (tests/fixtures/upstream/ollama) cut in awkward network pieces; expectations are computed
//! from the transcripts, not from the gateway.

use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, body_string, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::ollama_upstream::{OllamaUpstream, Pieces, fixture};
use crate::support::python::run_pytest;
use crate::support::{TestGateway, openai_routes, spawn_gateway};

fn routes(ollama: &str) -> String {
    format!(
        r#"
[server]
max_body_bytes = 65536

[backends.local]
kind = "ollama"
base_url = "{ollama}"
connect_timeout = "2s"

[backends.echo]
kind = "echo"

[[routes]]
prefix = "local/"
backend = "local"

[[routes]]
prefix = "echo/"
backend = "echo"
"#
    )
}

async fn setup(pieces: Pieces) -> (OllamaUpstream, TestGateway) {
    let upstream = OllamaUpstream::start(pieces).await;
    let gateway = spawn_gateway(&routes(&upstream.base_url)).await;
    (upstream, gateway)
}

/// The text and final line of an Ollama transcript (`message.content` or `response` pieces).
fn transcript(name: &str) -> (String, Value) {
    let mut text = String::new();
    let mut last = Value::Null;
    for line in fixture(name)
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let v: Value = serde_json::from_slice(line).unwrap();
        let piece = v["message"]["content"].as_str().or(v["response"].as_str());
        text.push_str(piece.unwrap_or_default());
        last = v;
    }
    (text, last)
}

/// Each event of a Responses stream: its `event:` name and its data.
async fn events(response: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let body = response.bytes().await.unwrap();
    switchyard::adapters::sse::events(&body)
        .map(|e| {
            let e = switchyard::adapters::sse::decode(e);
            let name = String::from_utf8(e.event.expect("event: field").to_vec()).unwrap();
            (
                name,
                serde_json::from_slice(&e.data.expect("data")).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_response_from_ollama_has_the_transcripts_text_and_usage() {
    // Arrange
    let (upstream, gw) = setup(Pieces::SplitLines).await;
    upstream.reply("/api/chat", None, Some(false), 200, fixture("chat.json"));
    let (text, done) = transcript("chat.json");

    // Act
    let response = gw
        .post_json(
            "/v1/responses",
            &json!({"model": "local/llama3.2", "instructions": "Be brief.",
                    "input": "Hello!", "max_output_tokens": 50, "metadata": {"run": "7"}}),
        )
        .await;

    // Assert: a response object the client reads as OpenAI's ...
    assert_eq!(response.status(), 200);
    let r: Value = response.json().await.unwrap();
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "local/llama3.2");
    assert_eq!(r["metadata"], json!({"run": "7"}));
    assert_eq!(r["output"][0]["type"], "message");
    assert_eq!(r["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(r["output"][0]["content"][0]["text"], text.as_str());
    assert_eq!(r["usage"]["input_tokens"], done["prompt_eval_count"]);
    assert_eq!(r["usage"]["output_tokens"], done["eval_count"]);
    // ... from one chat request to Ollama carrying the instructions and the input.
    let sent = upstream.last("/api/chat").body;
    assert_eq!(sent["model"], "llama3.2");
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}])
    );
    assert_eq!(sent["options"]["num_predict"], 50);
    assert_eq!(sent["stream"], false);
}

#[tokio::test]
async fn a_streamed_response_is_the_responses_event_sequence_however_ollama_splits_it() {
    let (text, done) = transcript("chat_stream.ndjson");
    for pieces in Pieces::ALL {
        // Arrange
        let (upstream, gw) = setup(pieces).await;
        upstream.reply(
            "/api/chat",
            None,
            Some(true),
            200,
            fixture("chat_stream.ndjson"),
        );

        // Act
        let response = gw
            .post_json(
                "/v1/responses",
                &json!({"model": "local/llama3.2", "input": "Why is the sky blue?", "stream": true}),
            )
            .await;
        let events = events(response).await;

        // Assert: the order the SDKs expect, numbered from 0, the transcript's text and usage.
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ],
            "{pieces:?}"
        );
        assert_eq!(
            names[names.len() - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ],
            "{pieces:?}"
        );
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["sequence_number"], i, "{pieces:?}");
            assert_eq!(data["type"], name.as_str());
        }
        let deltas: String = events
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, text, "{pieces:?}");
        let completed = &events.last().unwrap().1["response"];
        assert_eq!(completed["output"][0]["content"][0]["text"], text.as_str());
        assert_eq!(
            completed["usage"]["input_tokens"],
            done["prompt_eval_count"]
        );
        assert_eq!(completed["usage"]["output_tokens"], done["eval_count"]);
        assert_eq!(completed["id"], events[0].1["response"]["id"]);
    }
}

#[tokio::test]
async fn a_stream_that_fails_midway_ends_with_response_failed_and_an_error_event() {
    // Arrange: Ollama's documented mid-stream failure, an error line sent with HTTP 200.
    let (upstream, gw) = setup(Pieces::ByteByByte).await;
    upstream.reply(
        "/api/chat",
        None,
        Some(true),
        200,
        fixture("chat_stream_error.ndjson"),
    );

    // Act
    let response = gw
        .post_json(
            "/v1/responses",
            &json!({"model": "local/llama3.2", "input": "hi", "stream": true}),
        )
        .await;
    let events = events(response).await;

    // Assert: the text so far, then the failure, and nothing after it.
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[names.len() - 2..],
        ["response.failed", "error"],
        "{names:?}"
    );
    assert!(!names.contains(&"response.completed"));
    let failed = &events[events.len() - 2].1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["output"][0]["content"][0]["text"], "The sky");
    let error = &events.last().unwrap().1;
    assert_eq!(error["error"]["code"], "upstream_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("an error was encountered while running the model"),
        "{error}"
    );
}

#[tokio::test]
async fn what_needs_stored_state_or_cannot_be_translated_is_a_clear_400() {
    let (_upstream, gw) = setup(Pieces::SeveralLines).await;
    for (body, param) in [
        (
            json!({"model": "echo/x", "input": "hi", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "echo/x", "input": "hi", "store": true}),
            "store",
        ),
        (
            json!({"model": "echo/x", "input": "hi", "conversation": "conv_1"}),
            "conversation",
        ),
        (
            json!({"model": "echo/x", "input": [{"type": "reasoning", "summary": []}]}),
            "input[0]",
        ),
        (
            json!({"model": "echo/x", "input": "hi", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (json!({"model": "echo/x"}), "."),
    ] {
        let response = gw.post_json("/v1/responses", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
        if param != "." {
            assert_eq!(error["error"]["param"], param, "{body}");
        }
    }
}

#[tokio::test]
async fn hostile_bodies_on_the_new_endpoints_get_openai_errors_never_a_5xx() {
    let (_upstream, gw) = setup(Pieces::SeveralLines).await;
    let huge = "x".repeat(70_000);
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for endpoint in ["/v1/responses", "/v1/completions"] {
        for (body, status) in [
            (
                format!(r#"{{"model":"echo/x","input":"{huge}","prompt":"p"}}"#),
                413,
            ),
            (r#"{"model":"echo/x","input":"#.to_owned(), 400),
            (
                format!(r#"{{"model":"echo/x","input":{nested},"prompt":{nested}}}"#),
                400,
            ),
            (r#"{"model":5,"input":"hi","prompt":"p"}"#.to_owned(), 400),
            (
                r#"{"model":"nowhere/x","input":"hi","prompt":"p"}"#.to_owned(),
                404,
            ),
        ] {
            let response = gw
                .client
                .post(format!("{}{endpoint}", gw.base))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                status,
                "{endpoint} {}",
                &body[..40.min(body.len())]
            );
            let error: Value = response.json().await.unwrap();
            assert!(error["error"]["message"].is_string(), "{error}");
        }
    }
    // Several prompts (a batch) or token ids: one prompt per request.
    for prompt in [json!(["a", "b"]), json!([[1, 2]])] {
        let response = gw
            .post_json(
                "/v1/completions",
                &json!({"model": "echo/x", "prompt": prompt}),
            )
            .await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        let param = error["error"]["param"].as_str().unwrap();
        assert!(param.starts_with("prompt"), "{error}");
    }
}

#[tokio::test]
async fn legacy_completions_go_to_ollama_generate_streamed_and_not_with_usage() {
    for pieces in Pieces::ALL {
        // Arrange
        let (upstream, gw) = setup(pieces).await;
        upstream.reply(
            "/api/generate",
            None,
            Some(false),
            200,
            fixture("generate.json"),
        );
        upstream.reply(
            "/api/generate",
            None,
            Some(true),
            200,
            fixture("generate_stream.ndjson"),
        );

        // Act: one plain, one streamed.
        let plain = gw
            .post_json(
                "/v1/completions",
                &json!({"model": "local/llama3.2", "prompt": "Why is the sky blue?",
                        "max_tokens": 20, "suffix": "."}),
            )
            .await;
        let sent = upstream.last("/api/generate").body;
        let streamed = gw
            .post_json(
                "/v1/completions",
                &json!({"model": "local/llama3.2", "prompt": ["Why?"], "stream": true,
                        "stream_options": {"include_usage": true}}),
            )
            .await;

        // Assert
        let (text, done) = transcript("generate.json");
        let plain: Value = plain.json().await.unwrap();
        assert_eq!(plain["object"], "text_completion");
        assert_eq!(plain["model"], "local/llama3.2");
        assert_eq!(plain["choices"][0]["text"], text.as_str());
        assert_eq!(plain["choices"][0]["finish_reason"], "stop");
        assert_eq!(plain["usage"]["prompt_tokens"], done["prompt_eval_count"]);
        assert_eq!(plain["usage"]["completion_tokens"], done["eval_count"]);
        assert_eq!(
            sent,
            json!({"model": "llama3.2", "prompt": "Why is the sky blue?", "suffix": ".",
                   "options": {"num_predict": 20}, "stream": false})
        );
        let (text, done) = transcript("generate_stream.ndjson");
        let payloads = crate::support::sse_payloads(streamed).await;
        assert_eq!(payloads.last().unwrap(), "[DONE]", "{pieces:?}");
        let chunks: Vec<Value> = payloads[..payloads.len() - 1]
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect();
        let got: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(got, text, "{pieces:?}");
        assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!(usage["completion_tokens"], done["eval_count"]);
        assert_eq!(usage["prompt_tokens"], done["prompt_eval_count"]);
    }
}

#[tokio::test]
async fn an_openai_backend_translates_when_marked_and_relays_otherwise() {
    // Arrange: an older OpenAI-compatible server with chat completions only, marked
    // `translate`; and one with its own Responses API and legacy completions (the default).
    let old = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({"model": "gpt-4o", "stream": false,
            "messages": [{"role": "user", "content": "hi"}]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})))
        .expect(1)
        .mount(&old)
        .await;
    let chunks = [
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "hel"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ];
    let sse: String = chunks
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .chain(["data: [DONE]\n\n".to_owned()])
        .collect();
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "gpt-4o", "stream": true,
            "stream_options": {"include_usage": true}})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .expect(1)
        .mount(&old)
        .await;
    let translating = spawn_gateway(&openai_routes(
        &format!("{}/v1", old.uri()),
        "responses = \"translate\"",
    ))
    .await;
    let new = MockServer::start().await;
    for endpoint in ["/v1/responses", "/v1/completions"] {
        Mock::given(method("POST"))
            .and(path(endpoint))
            .and(body_string(
                r#"{"model":"gpt-4o","input":"hi","prompt":["a","b"]}"#,
            ))
            .respond_with(ResponseTemplate::new(200).set_body_string("upstream's own"))
            .expect(1)
            .mount(&new)
            .await;
    }
    let native = spawn_gateway(&openai_routes(&format!("{}/v1", new.uri()), "")).await;

    // Act
    let translated = translating
        .post_json(
            "/v1/responses",
            &json!({"model": "up/gpt-4o", "input": "hi"}),
        )
        .await;

    let streamed = translating
        .post_json(
            "/v1/responses",
            &json!({"model": "up/gpt-4o", "input": "hi", "stream": true}),
        )
        .await;

    // Assert: translated both ways, plain and streamed ...
    assert_eq!(translated.status(), 200);
    let r: Value = translated.json().await.unwrap();
    assert_eq!(r["output"][0]["content"][0]["text"], "hello");
    assert_eq!(r["usage"]["total_tokens"], 4);
    let events = events(streamed).await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.completed");
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], "hello");
    assert_eq!(last["response"]["usage"]["output_tokens"], 2);
    // ... or relayed byte for byte (the batch prompt a translating route would refuse).
    for endpoint in ["/v1/responses", "/v1/completions"] {
        let relayed = native
            .client
            .post(format!("{}{endpoint}", native.base))
            .header("content-type", "application/json")
            .body(r#"{"model":"up/gpt-4o","input":"hi","prompt":["a","b"]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(relayed.status(), 200, "{endpoint}");
        assert_eq!(relayed.text().await.unwrap(), "upstream's own");
    }
}

#[tokio::test]
async fn the_openai_sdks_and_the_agents_sdk_run_against_ollama_and_echo_routes() {
    // Arrange: transcripts for every request the Python tests make.
    let (upstream, gw) = setup(Pieces::SplitLines).await;
    upstream.reply("/api/chat", None, Some(false), 200, fixture("chat.json"));
    upstream.reply(
        "/api/chat",
        None,
        Some(true),
        200,
        fixture("chat_stream.ndjson"),
    );
    // A tool round trip: the model calls the tool, then answers once given its output.
    for (stream, call, answer) in [
        (false, "chat_tools.json", "chat.json"),
        (true, "chat_tools_stream.ndjson", "chat_stream.ndjson"),
    ] {
        upstream.reply(
            "/api/chat",
            Some("llama3.2-tools"),
            Some(stream),
            200,
            fixture(call),
        );
        upstream.reply_when_body_has(
            "/api/chat",
            "\"role\":\"tool\"",
            Some(stream),
            fixture(answer),
        );
    }
    upstream.reply(
        "/api/chat",
        Some("broken"),
        Some(true),
        200,
        fixture("chat_stream_error.ndjson"),
    );
    upstream.reply(
        "/api/generate",
        None,
        Some(false),
        200,
        fixture("generate.json"),
    );
    upstream.reply(
        "/api/generate",
        None,
        Some(true),
        200,
        fixture("generate_stream.ndjson"),
    );

    // Act + Assert (in Python).
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/ollama");
    run_pytest(
        "test_responses.py",
        &[
            ("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base)),
            ("OLLAMA_FIXTURES", fixtures.display().to_string()),
        ],
    )
    .await;
}
