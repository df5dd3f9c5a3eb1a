//! Live routes.toml: rewrites under load, by in-place write and by rename-over.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::routing::reload::sha256_hex;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::wait::eventually;
use crate::support::{TestGateway, spawn_gateway};

/// An upstream whose every answer, plain or streamed, says `letter`.
async fn upstream(letter: &str) -> MockServer {
    let server = MockServer::start().await;
    let sse = format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{letter}\"}},\"finish_reason\":null}}]}}\n\ndata: [DONE]\n\n"
    );
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"stream": true})))
        .respond_with(ResponseTemplate::new(200).set_body_raw(sse, "text/event-stream"))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id":"c","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":letter},"finish_reason":"stop"}]})))
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

fn table(backend: &str, uri: &str, extra: &str) -> String {
    format!(
        "[backends.{backend}]\nkind = \"openai\"\nbase_url = \"{uri}/v1\"\n{extra}\n[[routes]]\nprefix = \"m/\"\nbackend = \"{backend}\"\n"
    )
}

/// One request, plain or streamed; the letter of the upstream that answered.
async fn ask(gw: &TestGateway, stream: bool) -> Result<String, String> {
    let body = json!({"model":"m/x","stream":stream,"messages":[{"role":"user","content":"hi"}]});
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        gw.post_json("/v1/chat/completions", &body).await.bytes(),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    if stream {
        let payloads = switchyard::adapters::sse::data_payloads(&response);
        let done = payloads.last().is_some_and(|p| p == b"[DONE]");
        let letter = crate::support::stream_text(
            &payloads
                .into_iter()
                .map(|p| String::from_utf8_lossy(&p).into_owned())
                .collect::<Vec<_>>(),
        );
        if done && !letter.is_empty() {
            Ok(letter)
        } else {
            Err(format!("bad stream: {text}"))
        }
    } else {
        serde_json::from_slice::<Value>(&response)
            .ok()
            .and_then(|v| {
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .ok_or_else(|| format!("bad response: {text}"))
    }
}

async fn health(gw: &TestGateway) -> Value {
    gw.get("/health").await.json().await.unwrap()
}

/// Polls `/health` (bounded: 10 s) until `done` holds.
async fn wait_for(gw: &TestGateway, what: &str, done: impl Fn(&Value) -> bool) {
    let ten_s = Duration::from_secs(10);
    eventually(ten_s, what, || async { done(&health(gw).await) }).await;
}

fn write(path: &std::path::Path, text: &str, rename_over: bool) {
    if rename_over {
        let tmp = path.with_extension("toml.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

struct Outcome {
    started: Instant,
    ended: Instant,
    result: Result<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rewrites_under_load_drop_nothing_and_invalid_versions_never_serve() {
    // Arrange: one prefix, two valid tables pointing it at A or B, and an invalid table that
    // would point it at C if it were ever accepted.
    let (a, b, c) = (
        upstream("A").await,
        upstream("B").await,
        upstream("C").await,
    );
    let table_a = table("a", &a.uri(), "");
    let table_b = table("b", &b.uri(), "");
    let broken = table(
        "c",
        &c.uri(),
        "retries = 3 # not a key: the whole file must be refused",
    );
    let gw = Arc::new(spawn_gateway(&table_a).await);
    write(&gw.routes_path, &table_a, false);
    wait_for(&gw, "the initial table", |h| {
        h["config"]["sha256"] == sha256_hex(&table_a)
    })
    .await;
    let succeeded_before = health(&gw).await["config"]["reloads"]["succeeded"]
        .as_u64()
        .unwrap();

    // A steady bounded load: 4 clients, alternating plain and streamed requests.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for n in 0..4 {
        let (gw, stop) = (gw.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = n;
            while !stop.load(Ordering::Relaxed) && outcomes.len() < 20_000 {
                let started = Instant::now();
                let result = ask(&gw, i % 2 == 0).await;
                outcomes.push(Outcome {
                    started,
                    ended: Instant::now(),
                    result,
                });
                i += 1;
            }
            outcomes
        }));
    }

    // Act: 50 rewrites: B, broken, A, broken, ...; in-place and rename-over in turn.
    // Windows: (letter, from, to) during which one valid table was in force.
    let mut windows: Vec<(&str, Instant, Instant)> = Vec::new();
    let mut current = ("A", Instant::now());
    for i in 0..50 {
        let rename_over = (i / 2) % 2 == 1;
        match i % 4 {
            1 | 3 => {
                let failed_before = health(&gw).await["config"]["reloads"]["failed"]
                    .as_u64()
                    .unwrap();
                write(&gw.routes_path, &broken, rename_over);
                wait_for(&gw, "the broken edit to be refused", |h| {
                    h["config"]["reloads"]["failed"].as_u64().unwrap() > failed_before
                })
                .await;
                let h = health(&gw).await;
                let expected = if current.0 == "A" { &table_a } else { &table_b };
                assert_eq!(
                    h["config"]["sha256"],
                    sha256_hex(expected),
                    "a broken edit took effect"
                );
                let error = h["config"]["last_error"]["errors"][0].as_str().unwrap();
                assert!(
                    error.contains("routes.toml:4:1: unknown field `retries`"),
                    "{error}"
                );
            }
            _ => {
                let (letter, text) = if i % 4 == 0 {
                    ("B", &table_b)
                } else {
                    ("A", &table_a)
                };
                windows.push((current.0, current.1, Instant::now()));
                write(&gw.routes_path, text, rename_over);
                wait_for(&gw, "the new table", |h| {
                    h["config"]["sha256"] == sha256_hex(text)
                })
                .await;
                current = (letter, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    windows.push((current.0, current.1, Instant::now()));
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }

    // Assert: nothing failed, C never answered, and each request that ran wholly inside one
    // table's window was answered by that table's upstream.
    let failures: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        c.received_requests().await.unwrap().is_empty(),
        "the broken table served traffic"
    );
    let mut checked = 0;
    for o in &outcomes {
        if let Some((letter, _, _)) = windows
            .iter()
            .find(|(_, from, to)| *from <= o.started && o.ended <= *to)
        {
            assert_eq!(
                o.result.as_deref(),
                Ok(*letter),
                "answered by the wrong upstream"
            );
            checked += 1;
        } else {
            assert!(matches!(o.result.as_deref(), Ok("A" | "B")));
        }
    }
    assert!(
        checked >= 100,
        "only {checked} of {} requests fell inside a stable window",
        outcomes.len()
    );
    let h = health(&gw).await;
    let succeeded = h["config"]["reloads"]["succeeded"].as_u64().unwrap() - succeeded_before;
    assert_eq!(
        (succeeded, h["config"]["reloads"]["failed"].as_u64()),
        (25, Some(25))
    );
    let models: Value = gw.get("/v1/models").await.json().await.unwrap();
    assert_eq!(models["object"], "list");
}

#[tokio::test]
async fn models_reflect_a_reload_at_once() {
    let gw = spawn_gateway("[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"e/\"\nbackend = \"e\"\nmodels = [\"one\"]\n").await;
    let next = "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"e/\"\nbackend = \"e\"\nmodels = [\"one\", \"two\"]\n";
    write(&gw.routes_path, next, true);
    wait_for(&gw, "the new table", |h| {
        h["config"]["sha256"] == sha256_hex(next)
    })
    .await;
    let models: Value = gw.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e/one", "e/two"]);
}
