//! Usage records (issue 15): one per request, with the upstream's own token counts, for plain
//! and streamed answers over the openai, ollama and redis backends; a streaming client sees the
//! usage chunk exactly when it asked for it; no secret ever lands in a record.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::auth::{ADMIN_TOKEN, BACKEND_KEY, MASTER_KEY};
use crate::support::ollama_upstream::{OllamaUpstream, Pieces, fixture};
use crate::support::redis::{RunningWorker, TestRedis, worker_config};
use crate::support::wait::eventually;
use crate::support::{TestGateway, spawn_gateway, sse_payloads};

/// The counts the fake OpenAI upstream reports for every answer.
const PROMPT: u64 = 11;
const COMPLETION: u64 = 7;
const CACHED: u64 = 3;
const REASONING: u64 = 2;

fn upstream_usage() -> Value {
    json!({"prompt_tokens": PROMPT, "completion_tokens": COMPLETION,
        "total_tokens": PROMPT + COMPLETION,
        "prompt_tokens_details": {"cached_tokens": CACHED},
        "completion_tokens_details": {"reasoning_tokens": REASONING}})
}

/// An OpenAI-like upstream that behaves as OpenAI does with `include_usage`: `"usage":null` on
/// every chunk, then a usage chunk without choices.
struct UsageUpstream;

impl Respond for UsageUpstream {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if body["stream"] != json!(true) {
            return ResponseTemplate::new(200).set_body_json(json!({"id":"c",
                "object":"chat.completion","created":1,"model":body["model"],
                "choices":[{"index":0,"message":{"role":"assistant","content":"hello"},
                "finish_reason":"stop"}],"usage": upstream_usage()}));
        }
        let with_usage = body["stream_options"]["include_usage"] == json!(true);
        let mut sse = String::new();
        for word in ["hel", "lo"] {
            let mut chunk = json!({"id":"c","object":"chat.completion.chunk","created":1,
                "model":"m","choices":[{"index":0,"delta":{"content":word},"finish_reason":null}]});
            if with_usage {
                chunk["usage"] = Value::Null;
            }
            sse.push_str(&format!("data: {chunk}\n\n"));
        }
        if with_usage {
            let last = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m",
                "choices":[],"usage": upstream_usage()});
            sse.push_str(&format!("data: {last}\n\n"));
        }
        sse.push_str("data: [DONE]\n\n");
        ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream")
    }
}

async fn usage_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(UsageUpstream)
        .mount(&upstream)
        .await;
    upstream
}

fn log_path(gw: &TestGateway) -> PathBuf {
    gw.routes_path.parent().unwrap().join("usage.jsonl")
}

/// The records written so far, by request id.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON record"))
        .collect()
}

/// Waits (bounded) until `n` records are written, and returns them.
async fn wait_records(path: &Path, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(10), "usage records written", || async {
        records(path).len() >= n
    })
    .await;
    records(path)
}

fn record<'a>(records: &'a [Value], id: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["request_id"] == id)
        .unwrap_or_else(|| panic!("no record for {id} in {records:?}"))
}

async fn chat(gw: &TestGateway, id: &str, body: Value) -> reqwest::Response {
    gw.client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn ask(model: &str, stream: bool, include_usage: Option<bool>) -> Value {
    let mut body = json!({"model": model, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]});
    if let Some(include) = include_usage {
        body["stream_options"] = json!({"include_usage": include});
    }
    body
}

/// The usage chunks a streamed answer carried (chunks whose `usage` is not null).
async fn usage_chunks(response: reqwest::Response) -> (Vec<Value>, usize) {
    assert_eq!(response.status(), 200);
    let payloads = sse_payloads(response).await;
    let raw_mentions = payloads.iter().filter(|p| p.contains("\"usage\"")).count();
    let chunks = payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter(|c| !c["usage"].is_null())
        .collect();
    (chunks, raw_mentions)
}

fn assert_tokens(record: &Value, prompt: u64, completion: u64) {
    assert_eq!(record["usage"]["prompt_tokens"], prompt, "{record}");
    assert_eq!(record["usage"]["completion_tokens"], completion, "{record}");
    assert_eq!(
        record["usage"]["total_tokens"],
        prompt + completion,
        "{record}"
    );
}

#[tokio::test]
async fn records_carry_the_openai_upstreams_counts_and_streams_show_usage_only_when_asked() {
    // Arrange
    let upstream = usage_upstream().await;
    let gw = spawn_gateway(&format!(
        r#"
[usage]
log = "usage.jsonl"

[backends.up]
kind = "openai"
base_url = "{}"

[[routes]]
prefix = "up/"
backend = "up"
"#,
        upstream.uri()
    ))
    .await;

    // Act
    let plain = chat(&gw, "plain", ask("up/gpt-4o", false, None)).await;
    let (unasked, unasked_mentions) =
        usage_chunks(chat(&gw, "unasked", ask("up/gpt-4o", true, None)).await).await;
    let (refused, _) =
        usage_chunks(chat(&gw, "refused", ask("up/gpt-4o", true, Some(false))).await).await;
    let (asked, _) =
        usage_chunks(chat(&gw, "asked", ask("up/gpt-4o", true, Some(true))).await).await;

    // Assert: the client saw exactly what it asked for.
    assert_eq!(plain.status(), 200);
    assert!(unasked.is_empty() && refused.is_empty());
    assert_eq!(
        unasked_mentions, 0,
        "a client that did not ask saw a usage field"
    );
    assert_eq!(asked.len(), 1, "exactly one usage chunk: {asked:?}");
    assert_eq!(asked[0]["usage"], upstream_usage());
    // The upstream was asked for usage every time it streamed.
    for req in upstream.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        if body["stream"] == json!(true) {
            assert_eq!(body["stream_options"]["include_usage"], true, "{body}");
        }
    }
    // One record per request, each with the upstream's own counts.
    let records = wait_records(&log_path(&gw), 4).await;
    assert_eq!(records.len(), 4);
    for (id, streamed) in [
        ("plain", false),
        ("unasked", true),
        ("refused", true),
        ("asked", true),
    ] {
        let r = record(&records, id);
        assert_tokens(r, PROMPT, COMPLETION);
        assert_eq!(r["usage"]["cached_tokens"], CACHED);
        assert_eq!(r["usage"]["reasoning_tokens"], REASONING);
        assert_eq!(r["streamed"], streamed);
        assert_eq!(r["status"], 200);
        assert_eq!(
            (
                &r["model"],
                &r["upstream_model"],
                &r["route"],
                &r["backend"]
            ),
            (
                &json!("up/gpt-4o"),
                &json!("gpt-4o"),
                &json!("up/"),
                &json!("up")
            )
        );
        assert_eq!(r["endpoint"], "chat.completions");
        assert!(r["upstream_ms"].as_f64().unwrap() >= 0.0);
        assert!(r["duration_ms"].as_f64().unwrap() >= r["gateway_ms"].as_f64().unwrap());
        assert_eq!(r["ttft_ms"].is_number(), streamed, "{r}");
    }
}

#[tokio::test]
async fn records_carry_ollamas_counts_for_plain_and_streamed_answers() {
    // Arrange: an Ollama-like upstream replaying documented transcripts.
    let upstream = OllamaUpstream::start(Pieces::SeveralLines).await;
    upstream.reply("/api/chat", None, Some(false), 200, fixture("chat.json"));
    upstream.reply(
        "/api/chat",
        None,
        Some(true),
        200,
        fixture("chat_stream.ndjson"),
    );
    let counts = |name: &str| {
        let text = String::from_utf8(fixture(name)).unwrap();
        let last: Value = serde_json::from_str(text.trim().lines().last().unwrap()).unwrap();
        (
            last["prompt_eval_count"].as_u64().unwrap(),
            last["eval_count"].as_u64().unwrap(),
        )
    };
    let gw = spawn_gateway(&format!(
        r#"
[usage]
log = "usage.jsonl"

[backends.local]
kind = "ollama"
base_url = "{}"

[[routes]]
prefix = "local/"
backend = "local"
"#,
        upstream.base_url
    ))
    .await;

    // Act
    let plain = chat(&gw, "plain", ask("local/llama3.2", false, None)).await;
    let (unasked, mentions) =
        usage_chunks(chat(&gw, "unasked", ask("local/llama3.2", true, None)).await).await;
    let (asked, _) =
        usage_chunks(chat(&gw, "asked", ask("local/llama3.2", true, Some(true))).await).await;

    // Assert
    assert_eq!(plain.status(), 200);
    assert_eq!((unasked.len(), mentions), (0, 0));
    assert_eq!(asked.len(), 1);
    let records = wait_records(&log_path(&gw), 3).await;
    let (prompt, completion) = counts("chat.json");
    assert_tokens(record(&records, "plain"), prompt, completion);
    let (prompt, completion) = counts("chat_stream.ndjson");
    assert_tokens(record(&records, "unasked"), prompt, completion);
    assert_tokens(record(&records, "asked"), prompt, completion);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_counts_relayed_through_the_redis_transport() {
    // Arrange: redis, an in-process worker in front of the OpenAI-like upstream, the gateway.
    let redis = TestRedis::start().await;
    let upstream = usage_upstream().await;
    let worker = RunningWorker::start(worker_config(&redis.url, &format!("{}/v1", upstream.uri())));
    let gw = spawn_gateway(&format!(
        r#"
[usage]
log = "usage.jsonl"

[backends.dc]
kind = "redis"
redis_url = "{}"
timeout = "30s"

[[routes]]
prefix = "dc/"
backend = "dc"
"#,
        redis.url
    ))
    .await;

    // Act
    let plain = chat(&gw, "plain", ask("dc/m", false, None)).await;
    let (unasked, mentions) =
        usage_chunks(chat(&gw, "unasked", ask("dc/m", true, None)).await).await;
    let (asked, _) = usage_chunks(chat(&gw, "asked", ask("dc/m", true, Some(true))).await).await;

    // Assert
    assert_eq!(plain.status(), 200);
    assert_eq!((unasked.len(), mentions), (0, 0));
    assert_eq!(asked.len(), 1);
    let records = wait_records(&log_path(&gw), 3).await;
    for id in ["plain", "unasked", "asked"] {
        let r = record(&records, id);
        assert_tokens(r, PROMPT, COMPLETION);
        assert_eq!(r["backend"], "dc");
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn an_upstreams_absurd_counts_are_bounded_and_no_secret_reaches_a_record() {
    // Arrange: keys on; the upstream claims more tokens than exist, or negative ones.
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let usage = if body["model"] == "huge" {
                json!({"prompt_tokens": u64::MAX, "completion_tokens": 1,
                    "total_tokens": u64::MAX})
            } else {
                json!({"prompt_tokens": -5, "completion_tokens": 1, "total_tokens": -4})
            };
            ResponseTemplate::new(200).set_body_json(json!({"id":"c","object":"chat.completion",
                "created":1,"model":"m","choices":[],"usage":usage}))
        })
        .mount(&upstream)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let gw = crate::support::spawn_gateway_in(
        &format!(
            r#"
[usage]
log = "usage.jsonl"

[store]
url = "sqlite://keys.db"

[auth]
master_key = "{MASTER_KEY}"
admin_token = "{ADMIN_TOKEN}"

[backends.up]
kind = "openai"
base_url = "{}"
api_key = "{BACKEND_KEY}"

[[routes]]
prefix = "up/"
backend = "up"
"#,
            upstream.uri()
        ),
        std::sync::Arc::new(switchyard::auth::clock::SystemClock),
        dir,
    )
    .await;
    let project = gw.create_project("team", &["up/"]).await;
    let (key_id, key) = gw.create_key(&project, json!({})).await;

    // Act
    for model in ["up/huge", "up/negative"] {
        let status = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(&key)
            .header("x-request-id", model)
            .json(&ask(model, false, None))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }

    // Assert: clamped, or left out rather than guessed; who asked is named by ids only.
    let records = wait_records(&log_path(&gw), 2).await;
    let huge = record(&records, "up/huge");
    assert_eq!(
        huge["usage"]["prompt_tokens"],
        switchyard::usage::tokens::MAX_TOKENS
    );
    assert!(record(&records, "up/negative")["usage"].is_null());
    for r in &records {
        assert_eq!(
            (&r["project"], &r["key_id"]),
            (&json!(project), &json!(key_id))
        );
    }
    let text = std::fs::read_to_string(log_path(&gw)).unwrap();
    for secret in [key.as_str(), BACKEND_KEY, ADMIN_TOKEN, MASTER_KEY] {
        assert!(!text.contains(secret), "a secret in the usage log");
    }
}

#[tokio::test]
async fn the_admin_api_and_cli_report_usage_summed_in_the_store_and_refuse_bogus_queries() {
    // Arrange: keys on, usage to the store only; two keys of one project.
    let upstream = usage_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = crate::support::spawn_gateway_in(
        &format!(
            r#"
[usage]

[store]
url = "sqlite://keys.db"

[auth]
master_key = "{MASTER_KEY}"
admin_token = "{ADMIN_TOKEN}"

[backends.up]
kind = "openai"
base_url = "{}"

[[routes]]
prefix = "up/"
backend = "up"
"#,
            upstream.uri()
        ),
        std::sync::Arc::new(switchyard::auth::clock::SystemClock),
        dir,
    )
    .await;
    let project = gw.create_project("team", &["up/"]).await;
    let (a_id, a) = gw.create_key(&project, json!({})).await;
    let (b_id, b) = gw.create_key(&project, json!({})).await;

    // Act: a sends 2 requests (one streamed, without asking for usage), b sends 1.
    for (key, model, stream) in [(&a, "up/x", false), (&a, "up/y", true), (&b, "up/x", false)] {
        let response = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(key)
            .json(&ask(model, stream, None))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }

    // Assert: by model, by key, by day; from the API and from the CLI alike.
    let by = |group: &str| format!("/usage?group_by={group}&project={project}");
    eventually(
        Duration::from_secs(10),
        "usage summed in the store",
        || async {
            gw.admin(reqwest::Method::GET, &by("model"), None).await.1["data"][0]["requests"] == 2
        },
    )
    .await;
    let (status, models) = gw.admin(reqwest::Method::GET, &by("model"), None).await;
    assert_eq!(status, 200);
    let groups: Vec<(&str, u64, u64)> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap(),
                g["requests"].as_u64().unwrap(),
                g["total_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    let total = PROMPT + COMPLETION;
    assert_eq!(groups, [("up/x", 2, 2 * total), ("up/y", 1, total)]);
    let (_, keys) = gw.admin(reqwest::Method::GET, &by("key"), None).await;
    let mut expected = vec![(a_id.clone(), 2), (b_id.clone(), 1)];
    expected.sort();
    let got: Vec<(String, u64)> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    let (_, days) = gw.admin(reqwest::Method::GET, &by("day"), None).await;
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert_eq!(days["data"][0]["group"], today);
    assert_eq!(days["data"][0]["cached_tokens"], 3 * CACHED);
    let (_, only_b) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/usage?key={b_id}&from={today}"),
            None,
        )
        .await;
    assert_eq!(only_b["data"][0]["requests"], 1);
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["admin", "--config"])
        .arg(&gw.routes_path)
        .args(["usage", "--group-by", "key", "--project", &project])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(serde_json::from_slice::<Value>(&cli.stdout).unwrap(), keys);

    // Hostile queries: each a 400 naming what is wrong.
    let long = "p".repeat(200);
    for (query, param) in [
        ("group_by=week", json!("group_by")),
        ("from=yesterday", json!("from")),
        ("to=-5", json!("to")),
        ("from=2026-12-01&to=2026-11-01", json!("to")),
        (&*format!("project={long}"), json!("project")),
        ("bogus=1", Value::Null),
        ("group_by=model&group_by=key", Value::Null),
    ] {
        let (status, body) = gw
            .admin(reqwest::Method::GET, &format!("/usage?{query}"), None)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["param"], param, "{query}: {body}");
    }
}

#[tokio::test]
async fn usage_rows_sum_across_writers_and_group_alike_on_sqlite_and_postgresql() {
    use switchyard::store::{Store, UsageFilter, UsageGroup, UsageSums};

    let dir = tempfile::tempdir().unwrap();
    let pg = crate::support::postgres::TestPostgres::start();
    let sqlite = format!("sqlite://{}", dir.path().join("s.db").display());
    for url in [sqlite.as_str(), pg.url.as_str()] {
        // Arrange: two instances writing the same minute, project, key and model.
        let (a, b) = (
            Store::open(url).await.unwrap(),
            Store::open(url).await.unwrap(),
        );
        let sums = |n: i64| UsageSums {
            requests: n,
            prompt_tokens: 10 * n,
            completion_tokens: n,
            total_tokens: 11 * n,
            cached_tokens: 0,
            reasoning_tokens: 0,
        };
        let row = |minute: i64, model: &str, n: i64| {
            (
                (minute, "p".to_owned(), "k".to_owned(), model.to_owned()),
                sums(n),
            )
        };
        // Act
        a.add_usage(&[row(100, "m1", 1), row(1500, "m2", 4)])
            .await
            .unwrap();
        b.add_usage(&[row(100, "m1", 2)]).await.unwrap();
        // Assert
        let all = UsageFilter::default();
        let models = a.usage(&all, UsageGroup::Model).await.unwrap();
        assert_eq!(
            models,
            [("m1".to_owned(), sums(3)), ("m2".to_owned(), sums(4))],
            "{url}"
        );
        let days = b.usage(&all, UsageGroup::Day).await.unwrap();
        assert_eq!(
            days,
            [("0".to_owned(), sums(3)), ("1440".to_owned(), sums(4))],
            "{url}"
        );
        let later = UsageFilter {
            from: Some(1000),
            project: Some("p".into()),
            ..UsageFilter::default()
        };
        assert_eq!(
            a.usage(&later, UsageGroup::Key).await.unwrap(),
            [("k".to_owned(), sums(4))]
        );
        a.close().await;
        b.close().await;
    }
}

#[tokio::test]
async fn a_relayed_responses_request_is_recorded_and_rate_limited_like_a_chat() {
    // Arrange: a Responses API upstream reporting its usage; one request a minute on the route.
    let upstream = MockServer::start().await;
    let answer = json!({"id": "resp_1", "object": "response", "status": "completed",
        "output": [], "usage": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&format!(
        "[usage]\nlog = \"usage.jsonl\"\n\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\n\
         [[routes]]\nprefix = \"up/\"\nbackend = \"up\"\nrate_limit = {{ requests_per_minute = 1 }}\n",
        upstream.uri()
    ))
    .await;
    let body = json!({"model": "up/gpt-4o", "input": "hi"});

    // Act: the minute's one request, then one more.
    let first = gw.post_json("/v1/responses", &body).await.status();
    let second = gw.post_json("/v1/responses", &body).await.status();

    // Assert: the second is refused by the limit, and the first has a record with its tokens.
    assert_eq!((first.as_u16(), second.as_u16()), (200, 429));
    let written = wait_records(&log_path(&gw), 2).await;
    let answered = written
        .iter()
        .find(|r| r["status"] == 200)
        .unwrap_or_else(|| panic!("no record of the answered request in {written:?}"));
    assert_eq!(answered["endpoint"], "responses");
    assert_eq!(answered["usage"]["prompt_tokens"], 7);
    assert_eq!(answered["usage"]["completion_tokens"], 3);
    assert!(written.iter().any(|r| r["status"] == 429), "{written:?}");
}

#[tokio::test]
async fn a_responses_request_served_through_chat_is_recorded_and_rate_limited() {
    // Arrange: the echo backend has no Responses API (served through a chat completion).
    let gw = spawn_gateway(
        "[usage]\nlog = \"usage.jsonl\"\n\n[backends.echo]\nkind = \"echo\"\n\n[[routes]]\n\
         prefix = \"echo/\"\nbackend = \"echo\"\nrate_limit = { requests_per_minute = 1 }\n",
    )
    .await;
    let body = json!({"model": "echo/hi", "input": "two words"});

    // Act
    let first = gw.post_json("/v1/responses", &body).await;
    let first_status = first.status().as_u16();
    let answer: Value = first.json().await.unwrap();
    let second = gw.post_json("/v1/responses", &body).await.status().as_u16();

    // Assert: the limit binds, and the record carries the tokens the client was told.
    assert_eq!((first_status, second), (200, 429));
    let written = wait_records(&log_path(&gw), 2).await;
    let answered = written
        .iter()
        .find(|r| r["status"] == 200)
        .expect("a record of the answer");
    assert_eq!(answered["endpoint"], "responses");
    assert_eq!(
        answered["usage"]["prompt_tokens"],
        answer["usage"]["input_tokens"]
    );
    assert_eq!(
        answered["usage"]["completion_tokens"],
        answer["usage"]["output_tokens"]
    );
}

#[tokio::test]
async fn a_request_naming_no_model_is_rate_limited_by_its_key_and_recorded() {
    // Arrange: keys on; requests without a model go to `default_backend`; the key may make one
    // request a minute.
    use crate::support::auth::auth_routes;
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": []})),
        )
        .mount(&upstream)
        .await;
    let routes = format!(
        "[server]\ndefault_backend = \"up\"\n\n[usage]\nlog = \"usage.jsonl\"\n{}",
        auth_routes("sqlite://keys.db", &upstream.uri())
    );
    let gw = spawn_gateway(&routes).await;
    let project = gw.create_project("team", &[""]).await;
    let (key_id, key) = gw.create_key(&project, json!({})).await;
    let limit = json!({"requests_per_minute": 1});
    let path = format!("/keys/{key_id}/rate_limit");
    assert_eq!(
        gw.admin(reqwest::Method::PUT, &path, Some(limit)).await.0,
        200
    );
    let get = |id: &'static str| {
        gw.client
            .get(format!("{}/v1/vector_stores", gw.base))
            .bearer_auth(&key)
            .header("x-request-id", id)
            .send()
    };

    // Act: the minute's one request, then one more.
    let first = get("first").await.unwrap().status().as_u16();
    let second = get("second").await.unwrap();

    // Assert: the key's budget binds here too, and both requests have a record.
    assert_eq!((first, second.status().as_u16()), (200, 429));
    assert!(second.headers().contains_key("retry-after"));
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    let written = wait_records(&log_path(&gw), 2).await;
    let answered = record(&written, "first");
    assert_eq!(answered["status"], 200);
    assert_eq!(answered["endpoint"], "raw");
    assert_eq!(answered["backend"], "up");
    assert_eq!(answered["model"], "");
    assert_eq!(answered["upstream_model"], Value::Null);
    assert_eq!(answered["key_id"], key_id.as_str());
    assert_eq!(record(&written, "second")["status"], 429);
}
