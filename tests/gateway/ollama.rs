//! The `ollama` backend against an Ollama-like upstream that replays documented transcripts
//! (tests/fixtures/upstream/ollama; each file's source in Ollama's docs/api.md is listed in its
//! README) in awkward network pieces: byte by byte, lines cut in half, several lines at once.
//!
//! The gateway's answers are checked strictly: parsed with async-openai's types (which require
//! every field OpenAI always sends) and compared with what the transcript itself says, computed
//! here from the fixture independently of the gateway.

use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, CreateChatCompletionResponse,
    CreateChatCompletionStreamResponse, FinishReason, Role,
};
use async_openai::types::embeddings::{CreateBase64EmbeddingResponse, CreateEmbeddingResponse};
use async_openai::types::models::ListModelResponse;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::net::free_port;
use crate::support::ollama_upstream::{OllamaUpstream, Pieces, fixture};
use crate::support::paced_sse::{PacedSse, Seen};
use crate::support::python::run_pytest;
use crate::support::{TestGateway, spawn_gateway, sse_payloads};

fn routes(base_url: &str) -> String {
    format!(
        r#"
[backends.local]
kind = "ollama"
base_url = "{base_url}"
connect_timeout = "2s"

[[routes]]
prefix = "local/"
backend = "local"
models = ["llama3.2"]
discover = true
"#
    )
}

async fn setup(pieces: Pieces) -> (OllamaUpstream, TestGateway) {
    let upstream = OllamaUpstream::start(pieces).await;
    let gateway = spawn_gateway(&routes(&upstream.base_url)).await;
    (upstream, gateway)
}

/// What a transcript itself says: the text, `done_reason` and token counts.
#[derive(Debug, Default)]
struct Transcript {
    text: String,
    done_reason: Option<String>,
    prompt_tokens: u32,
    completion_tokens: u32,
}

fn transcript(name: &str) -> Transcript {
    let bytes = fixture(name);
    let mut t = Transcript::default();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        t.text
            .push_str(v["message"]["content"].as_str().unwrap_or_default());
        if v["done"] == true {
            t.done_reason = v["done_reason"].as_str().map(str::to_owned);
            t.prompt_tokens = v["prompt_eval_count"].as_u64().unwrap() as u32;
            t.completion_tokens = v["eval_count"].as_u64().unwrap() as u32;
        }
    }
    t
}

/// A streamed answer, read to its end: the data payloads (`[DONE]` included) and the chunks.
async fn read_stream(
    response: reqwest::Response,
) -> (Vec<String>, Vec<CreateChatCompletionStreamResponse>) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let payloads = sse_payloads(response).await;
    let chunks = payloads
        .iter()
        .filter(|p| !p.starts_with("[DONE]") && !p.contains("\"error\""))
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("{e}: {p}")))
        .collect();
    (payloads, chunks)
}

fn streamed_text(chunks: &[CreateChatCompletionStreamResponse]) -> String {
    chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect()
}

#[tokio::test]
async fn a_chat_is_answered_as_a_chat_completion_however_the_network_splits_it() {
    let expected = transcript("chat.json");
    for pieces in Pieces::ALL {
        // Arrange
        let (upstream, gw) = setup(pieces).await;
        upstream.reply("/api/chat", None, Some(false), 200, fixture("chat.json"));

        // Act
        let response = gw
            .post_json(
                "/v1/chat/completions",
                &json!({"model":"local/llama3.2","messages":[
                        {"role":"system","content":"You are terse."},
                        {"role":"user","content":"why is the sky blue?"}],
                    "temperature":0.2,"max_tokens":300,"stop":["\n\n"],"seed":7,
                    "keep_alive":"10m","top_k":40,"guided_json":{"type":"object"}}),
            )
            .await;

        // Assert: what the client sees ...
        assert_eq!(response.status(), 200, "{pieces:?}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: CreateChatCompletionResponse = response.json().await.unwrap();
        assert_eq!(body.object, "chat.completion");
        assert!(body.id.starts_with("chatcmpl-"), "{}", body.id);
        assert_eq!(body.model, "local/llama3.2", "the name the client sent");
        assert_eq!(body.choices.len(), 1);
        let choice = &body.choices[0];
        assert_eq!(choice.message.role, Role::Assistant);
        assert_eq!(
            choice.message.content.as_deref(),
            Some(expected.text.as_str())
        );
        assert_eq!(
            expected.done_reason, None,
            "this transcript is an older server's"
        );
        assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
        let usage = body.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (26, 298, 324)
        );

        // ... and what Ollama was sent.
        let sent = upstream.last("/api/chat");
        assert_eq!(sent.method, "POST");
        assert!(sent.head.contains("content-type: application/json"));
        assert_eq!(
            sent.body,
            json!({"model":"llama3.2","messages":[
                    {"role":"system","content":"You are terse."},
                    {"role":"user","content":"why is the sky blue?"}],
                "options":{"temperature":0.2,"num_predict":300,"stop":["\n\n"],"seed":7,"top_k":40},
                "stream":false,"keep_alive":"10m"})
        );
    }
}

#[tokio::test]
async fn a_streamed_chat_is_canonical_openai_sse_however_the_network_splits_it() {
    let expected = transcript("chat_stream.ndjson");
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
                "/v1/chat/completions",
                &json!({"model":"local/llama3.2","stream":true,
                    "stream_options":{"include_usage":true},
                    "messages":[{"role":"user","content":"why is the sky blue?"}]}),
            )
            .await;
        let (payloads, chunks) = read_stream(response).await;

        // Assert: role first, the transcript's exact text, one finish, usage, then [DONE].
        assert_eq!(payloads.last().unwrap(), "[DONE]", "{pieces:?}");
        assert_eq!(payloads.len(), chunks.len() + 1);
        assert!(
            chunks
                .iter()
                .all(|c| c.id == chunks[0].id && c.model == "local/llama3.2")
        );
        assert!(chunks.iter().all(|c| c.object == "chat.completion.chunk"));
        assert_eq!(chunks[0].choices[0].delta.role, Some(Role::Assistant));
        assert_eq!(streamed_text(&chunks), expected.text, "{pieces:?}");
        let finishes: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.finish_reason)
            .collect();
        assert_eq!(finishes, [FinishReason::Stop]);
        let (last, before) = chunks.split_last().unwrap();
        assert!(last.choices.is_empty());
        let usage = last.usage.as_ref().unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (expected.prompt_tokens, expected.completion_tokens)
        );
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens
        );
        assert!(before.iter().all(|c| c.usage.is_none()));
        for p in &payloads[..payloads.len() - 2] {
            assert!(
                p.contains("\"usage\":null"),
                "OpenAI's shape: usage null until the end: {p}"
            );
        }
        assert_eq!(upstream.last("/api/chat").body["stream"], true);
    }
}

#[tokio::test]
async fn the_first_delta_reaches_the_client_before_ollama_writes_its_next_line() {
    // Arrange: an upstream that writes each NDJSON line only when released (the paced server
    // ignores the path, so its `/v1` base URL serves as Ollama's root here).
    let lines: Vec<Vec<u8>> = fixture("chat_stream.ndjson")
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let mut upstream = PacedSse::start(lines.clone(), false).await;
    let gw = spawn_gateway(&routes(&upstream.base_url)).await;
    let response = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"local/llama3.2","stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let Seen::Request(request) = upstream.next_seen().await else {
        panic!("no request")
    };
    assert!(String::from_utf8_lossy(&request).contains("\"stream\":true"));

    // Act: release one line, read until its delta arrives.
    upstream.release().await;
    let mut body = response.bytes_stream();
    let mut received = Vec::new();
    for _ in 0..10 {
        let part = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .expect("the first delta arrived while the upstream held back the rest")
            .expect("stream open")
            .expect("bytes");
        received.extend_from_slice(&part);
        if String::from_utf8_lossy(&received).contains("\"content\":\"The\"") {
            break;
        }
    }

    // Assert: the delta is here, and the upstream has written nothing after the first line.
    assert!(String::from_utf8_lossy(&received).contains("\"content\":\"The\""));
    assert_eq!(upstream.next_seen().await, Seen::Wrote(0));
    assert!(upstream.log.try_recv().is_err(), "nothing else written yet");
    upstream.release_all(lines.len() - 1).await;
    while let Some(part) = body.next().await {
        received.extend_from_slice(&part.unwrap());
    }
    let payloads: Vec<String> = switchyard::adapters::sse::data_payloads(&received)
        .into_iter()
        .map(|p| String::from_utf8(p).unwrap())
        .collect();
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    let chunks: Vec<CreateChatCompletionStreamResponse> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(
        streamed_text(&chunks),
        transcript("chat_stream.ndjson").text
    );
}

#[tokio::test]
async fn the_stream_framing_is_one_data_line_per_event() {
    // Arrange
    let (upstream, gw) = setup(Pieces::ByteByByte).await;
    upstream.reply("/api/chat", None, None, 200, fixture("chat_stream.ndjson"));

    // Act
    let body = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"local/llama3.2","stream":true,"messages":[{"role":"user","content":"x"}]}),
        )
        .await
        .text()
        .await
        .unwrap();

    // Assert
    let events: Vec<&str> = body.split_terminator("\n\n").collect();
    assert!(events.len() > 20);
    for event in &events {
        assert!(
            event.starts_with("data: ") && !event.contains('\n') && !event.contains('\r'),
            "{event:?}"
        );
    }
    assert!(body.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_length_cut_answer_finishes_with_length_and_sends_no_usage_unless_asked() {
    let expected = transcript("chat_stream_length.ndjson");
    let (upstream, gw) = setup(Pieces::SplitLines).await;
    upstream.reply(
        "/api/chat",
        None,
        Some(true),
        200,
        fixture("chat_stream_length.ndjson"),
    );
    let response = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"local/llama3.2","stream":true,"max_completion_tokens":4,
                "messages":[{"role":"user","content":"tell me a story"}]}),
        )
        .await;
    let (payloads, chunks) = read_stream(response).await;
    assert_eq!(streamed_text(&chunks), expected.text);
    assert_eq!(expected.done_reason.as_deref(), Some("length"));
    assert_eq!(
        chunks.last().unwrap().choices[0].finish_reason,
        Some(FinishReason::Length)
    );
    assert!(
        payloads.iter().all(|p| !p.contains("usage")),
        "{payloads:#?}"
    );
    assert_eq!(
        upstream.last("/api/chat").body["options"],
        json!({"num_predict":4})
    );
}

fn weather_tool() -> Value {
    json!({"type":"function","function":{"name":"get_current_weather",
        "description":"Get the current weather for a location",
        "parameters":{"type":"object","properties":{
            "location":{"type":"string","description":"The location to get the weather for, e.g. San Francisco, CA"},
            "format":{"type":"string","description":"The format to return the weather in, e.g. 'celsius' or 'fahrenheit'","enum":["celsius","fahrenheit"]}},
            "required":["location","format"]}}})
}

#[tokio::test]
async fn tool_calls_come_back_with_ids_and_json_string_arguments() {
    for pieces in Pieces::ALL {
        // Arrange
        let (upstream, gw) = setup(pieces).await;
        upstream.reply(
            "/api/chat",
            None,
            Some(false),
            200,
            fixture("chat_tools.json"),
        );

        // Act
        let response = gw
            .post_json(
                "/v1/chat/completions",
                &json!({"model":"local/llama3.2","tools":[weather_tool()],
                    "messages":[{"role":"user","content":"What is the weather today in Paris?"}]}),
            )
            .await;

        // Assert
        assert_eq!(response.status(), 200);
        let body: CreateChatCompletionResponse = response.json().await.unwrap();
        let choice = &body.choices[0];
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            choice.message.content, None,
            "OpenAI sends null beside tool calls"
        );
        let calls = choice.message.tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 1);
        let ChatCompletionMessageToolCalls::Function(call) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert!(
            call.id.starts_with("call_") && call.id.len() > 10,
            "{}",
            call.id
        );
        assert_eq!(call.function.name, "get_current_weather");
        let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap();
        assert_eq!(
            arguments,
            json!({"format":"celsius","location":"Paris, FR"})
        );
        assert_eq!(
            upstream.last("/api/chat").body["tools"],
            json!([weather_tool()])
        );
    }
}

#[tokio::test]
async fn a_tool_result_goes_back_to_ollama_under_the_functions_name() {
    let (upstream, gw) = setup(Pieces::SeveralLines).await;
    upstream.reply("/api/chat", None, Some(false), 200, fixture("chat.json"));
    let response = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"local/llama3.2","tools":[weather_tool()],"messages":[
                {"role":"user","content":"What is the weather today in Paris?"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_abc","type":"function",
                    "function":{"name":"get_current_weather","arguments":"{\"format\":\"celsius\",\"location\":\"Paris, FR\"}"}}]},
                {"role":"tool","tool_call_id":"call_abc","content":"22 degrees"}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.last("/api/chat").body["messages"],
        json!([
            {"role":"user","content":"What is the weather today in Paris?"},
            {"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_current_weather",
                "arguments":{"format":"celsius","location":"Paris, FR"}}}]},
            {"role":"tool","content":"22 degrees","tool_name":"get_current_weather"}
        ])
    );
}

#[tokio::test]
async fn streamed_tool_calls_are_indexed_deltas_ending_in_tool_calls() {
    for pieces in Pieces::ALL {
        let (upstream, gw) = setup(pieces).await;
        upstream.reply(
            "/api/chat",
            None,
            Some(true),
            200,
            fixture("chat_tools_stream.ndjson"),
        );
        let response = gw
            .post_json(
                "/v1/chat/completions",
                &json!({"model":"local/llama3.2","stream":true,"tools":[weather_tool()],
                    "stream_options":{"include_usage":true},
                    "messages":[{"role":"user","content":"Weather in Paris and Lyon?"}]}),
            )
            .await;
        let (payloads, chunks) = read_stream(response).await;
        assert_eq!(payloads.last().unwrap(), "[DONE]");
        let calls: Vec<_> = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .collect();
        assert_eq!(calls.len(), 2, "{pieces:?}");
        assert_eq!((calls[0].index, calls[1].index), (0, 1));
        assert_ne!(calls[0].id, calls[1].id);
        let locations: Vec<String> = calls
            .iter()
            .map(|c| {
                let f = c.function.as_ref().unwrap();
                assert_eq!(f.name.as_deref(), Some("get_current_weather"));
                let args: Value = serde_json::from_str(f.arguments.as_deref().unwrap()).unwrap();
                args["location"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(locations, ["Paris, FR", "Lyon, FR"]);
        let finish = chunks
            .iter()
            .flat_map(|c| &c.choices)
            .find_map(|c| c.finish_reason);
        assert_eq!(finish, Some(FinishReason::ToolCalls));
        assert_eq!(
            chunks
                .last()
                .unwrap()
                .usage
                .as_ref()
                .unwrap()
                .completion_tokens,
            48
        );
    }
}

#[tokio::test]
async fn json_mode_and_json_schema_become_ollamas_format() {
    let (upstream, gw) = setup(Pieces::SplitLines).await;
    upstream.reply(
        "/api/chat",
        None,
        Some(false),
        200,
        fixture("chat_json.json"),
    );
    let schema = json!({"type":"object","properties":{"age":{"type":"integer"},
        "available":{"type":"boolean"}},"required":["age","available"]});
    for (format, expected) in [
        (json!({"type":"json_object"}), json!("json")),
        (
            json!({"type":"json_schema","json_schema":{"name":"friend","schema":schema}}),
            schema.clone(),
        ),
    ] {
        let response = gw
            .post_json(
                "/v1/chat/completions",
                &json!({"model":"local/llama3.1","response_format":format,"messages":[
                    {"role":"user","content":"Ollama is 22 years old and busy saving the world. Return a JSON object with the age and availability."}]}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: CreateChatCompletionResponse = response.json().await.unwrap();
        let content: Value =
            serde_json::from_str(body.choices[0].message.content.as_deref().unwrap()).unwrap();
        assert_eq!(content, json!({"age":22,"available":false}));
        assert_eq!(upstream.last("/api/chat").body["format"], expected);
        assert_eq!(upstream.last("/api/chat").body["model"], "llama3.1");
    }
}

/// The documented vectors, as the f32 values Ollama computed.
fn fixture_vectors(name: &str) -> Vec<Vec<f32>> {
    let v: Value = serde_json::from_slice(&fixture(name)).unwrap();
    serde_json::from_value(v["embeddings"].clone()).unwrap()
}

#[tokio::test]
async fn embeddings_come_back_as_floats_or_little_endian_base64() {
    let expected = fixture_vectors("embed_multiple.json");
    for pieces in Pieces::ALL {
        // Arrange
        let (upstream, gw) = setup(pieces).await;
        upstream.reply(
            "/api/embed",
            None,
            None,
            200,
            fixture("embed_multiple.json"),
        );
        let input = json!(["Why is the sky blue?", "Why is the grass green?"]);

        // Act + Assert: floats.
        let response = gw
            .post_json(
                "/v1/embeddings",
                &json!({"model":"local/all-minilm","input":input,"truncate":false}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: CreateEmbeddingResponse = response.json().await.unwrap();
        assert_eq!(body.object, "list");
        assert_eq!(body.model, "local/all-minilm");
        assert_eq!(body.data.len(), 2);
        for (i, item) in body.data.iter().enumerate() {
            assert_eq!(item.index as usize, i);
            assert_eq!(item.object, "embedding");
            assert_eq!(item.embedding, expected[i], "{pieces:?}");
        }
        assert_eq!(
            (body.usage.prompt_tokens, body.usage.total_tokens),
            (14, 14)
        );
        assert_eq!(
            upstream.last("/api/embed").body,
            json!({"model":"all-minilm","input":input,"truncate":false})
        );

        // Base64, as the official SDKs ask by default.
        let response = gw
            .post_json(
                "/v1/embeddings",
                &json!({"model":"local/all-minilm","input":input,"encoding_format":"base64"}),
            )
            .await;
        let body: CreateBase64EmbeddingResponse = response.json().await.unwrap();
        for (i, item) in body.data.iter().enumerate() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&item.embedding.0)
                .unwrap();
            let floats: Vec<f32> = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(floats, expected[i]);
        }
    }
}

#[tokio::test]
async fn a_single_string_input_is_embedded_once() {
    let (upstream, gw) = setup(Pieces::ByteByByte).await;
    upstream.reply("/api/embed", None, None, 200, fixture("embed.json"));
    let response = gw
        .post_json(
            "/v1/embeddings",
            &json!({"model":"local/all-minilm","input":"Why is the sky blue?"}),
        )
        .await;
    let body: CreateEmbeddingResponse = response.json().await.unwrap();
    assert_eq!(body.data.len(), 1);
    assert_eq!(body.data[0].embedding, fixture_vectors("embed.json")[0]);
    assert_eq!(body.usage.prompt_tokens, 8);
    assert_eq!(
        upstream.last("/api/embed").body["input"],
        "Why is the sky blue?"
    );

    // Token ids are OpenAI's, not Ollama's: refused before anything goes upstream.
    let before = upstream.requests().len();
    let response = gw
        .post_json(
            "/v1/embeddings",
            &json!({"model":"local/all-minilm","input":[[1,2,3]]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "input");
    assert_eq!(upstream.requests().len(), before);
}

#[tokio::test]
async fn discovery_lists_ollamas_models_under_the_prefix() {
    // Arrange
    let (upstream, gw) = setup(Pieces::SplitLines).await;
    upstream.reply("/api/tags", None, None, 200, fixture("tags.json"));

    // Act
    let response = gw.get("/v1/models").await;

    // Assert
    assert_eq!(response.status(), 200);
    let list: ListModelResponse = response.json().await.unwrap();
    let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "local/llama3.2",
            "local/codellama:13b",
            "local/llama3:latest"
        ]
    );
    // modified_at 2023-11-04T14:56:49.277302595-07:00 and 2023-12-07T09:32:18.757212583-08:00.
    assert_eq!(list.data[1].created, 1_699_135_009);
    assert_eq!(list.data[2].created, 1_701_970_338);
    assert!(list.data.iter().all(|m| m.owned_by == "local"));
    let sent = upstream.last("/api/tags");
    assert_eq!(sent.method, "GET");
}

#[tokio::test]
async fn a_missing_model_is_openais_404_model_not_found() {
    for stream in [false, true] {
        let (upstream, gw) = setup(Pieces::ByteByByte).await;
        upstream.reply(
            "/api/chat",
            None,
            None,
            404,
            fixture("error_model_not_found.json"),
        );
        let response = gw
            .post_json(
                "/v1/chat/completions",
                &json!({"model":"local/llama3.2","stream":stream,"messages":[{"role":"user","content":"hi"}]}),
            )
            .await;
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error":{"message":"model 'llama3.2' not found","type":"invalid_request_error",
                "param":"model","code":"model_not_found"}})
        );
    }
}

#[tokio::test]
async fn other_ollama_errors_keep_their_status_in_openai_shape() {
    let (upstream, gw) = setup(Pieces::SplitLines).await;
    upstream.reply("/api/chat", None, None, 500, fixture("error_runner.json"));
    upstream.reply(
        "/api/embed",
        None,
        None,
        400,
        br#"{"error":"input length exceeds the context length"}"#.to_vec(),
    );
    let response = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"local/llama3.2","messages":[{"role":"user","content":"hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error":{"message":"llama runner process has terminated: exit status 2",
            "type":"api_error","param":null,"code":null}})
    );
    let response = gw
        .post_json(
            "/v1/embeddings",
            &json!({"model":"local/all-minilm","input":"x"}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(
        body["error"]["message"],
        "input length exceeds the context length"
    );
}

#[tokio::test]
async fn a_busy_ollama_is_429_rate_limit_with_its_retry_after() {
    let (upstream, gw) = setup(Pieces::ByteByByte).await;
    upstream.reply_with_headers(
        "/api/chat",
        None,
        None,
        429,
        &[("retry-after", "3")],
        br#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#
            .to_vec(),
    );
    let response = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"local/llama3.2","stream":true,"messages":[{"role":"user","content":"hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("server busy")
    );
}

#[tokio::test]
async fn an_error_line_mid_stream_becomes_one_error_event_and_the_stream_closes() {
    for pieces in Pieces::ALL {
        // Arrange: HTTP 200, two deltas, then Ollama's `{"error": ...}` line.
        let (upstream, gw) = setup(pieces).await;
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
                "/v1/chat/completions",
                &json!({"model":"local/llama3.2","stream":true,"messages":[{"role":"user","content":"hi"}]}),
            )
            .await;
        let (payloads, chunks) = read_stream(response).await;

        // Assert: the text so far, then exactly one OpenAI error event, and no [DONE].
        assert_eq!(streamed_text(&chunks), "The sky");
        assert_eq!(payloads.len(), chunks.len() + 1, "{payloads:#?}");
        let error: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
        assert_eq!(error["error"]["type"], "api_error");
        assert_eq!(error["error"]["code"], "upstream_error");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("an error was encountered while running the model"),
            "{message}"
        );
        assert!(!payloads.iter().any(|p| p == "[DONE]"));
    }
}

#[tokio::test]
async fn an_unreachable_ollama_is_502_and_other_endpoints_are_refused() {
    let gw = spawn_gateway(&routes(&format!("http://127.0.0.1:{}", free_port()))).await;
    let response = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"local/llama3.2","messages":[{"role":"user","content":"hi"}]}),
        )
        .await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable");

    let response = gw
        .post_json(
            "/v1/files",
            &json!({"model":"local/llama3.2","purpose":"batch"}),
        )
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_endpoint");
}

#[tokio::test]
async fn the_openai_python_sdk_reads_an_ollama_backed_stream_exactly() {
    // Arrange: transcripts for the SDK's stream, chat, tool-call and embedding requests.
    let (upstream, gw) = setup(Pieces::SplitLines).await;
    upstream.reply(
        "/api/chat",
        None,
        Some(true),
        200,
        fixture("chat_stream.ndjson"),
    );
    upstream.reply("/api/chat", None, Some(false), 200, fixture("chat.json"));
    upstream.reply(
        "/api/chat",
        Some("llama3.2-tools"),
        Some(false),
        200,
        fixture("chat_tools.json"),
    );
    upstream.reply(
        "/api/chat",
        Some("llama3.2-tools"),
        Some(true),
        200,
        fixture("chat_tools_stream.ndjson"),
    );
    upstream.reply(
        "/api/chat",
        Some("missing"),
        None,
        404,
        br#"{"error":"model 'missing' not found"}"#.to_vec(),
    );
    upstream.reply(
        "/api/chat",
        Some("broken"),
        Some(true),
        200,
        fixture("chat_stream_error.ndjson"),
    );
    upstream.reply(
        "/api/embed",
        None,
        None,
        200,
        fixture("embed_multiple.json"),
    );

    // Act + Assert (in Python).
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream/ollama");
    run_pytest(
        "test_ollama.py",
        &[
            ("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base)),
            ("OLLAMA_FIXTURES", fixtures.display().to_string()),
        ],
    )
    .await;
}
