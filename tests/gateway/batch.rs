//! The `batch` backend end to end: a real gateway, its SQLite store, a fake Files + Batches
//! upstream (support/batch_upstream.rs), clients through the official SDK and reqwest.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::batch_upstream::BatchUpstream;
use crate::support::postgres::TestPostgres;
use crate::support::python::run_pytest;
use crate::support::spawn_gateway;
use crate::support::wait::eventually;

fn routes(store: &str, upstream: &str) -> String {
    format!(
        r#"
[store]
url = "{store}"

[backends.cheap]
kind = "batch"
base_url = "{upstream}"
api_key = "sk-upstream"
window = "200ms"
poll = "100ms"
max_lines = 60

[[routes]]
prefix = "cheap/"
backend = "cheap"
"#
    )
}

fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("store.db").display())
}

/// The SDK suite against a gateway on `store`; returns the upstream for more checks.
async fn sdk_suite(store: &str) -> BatchUpstream {
    let upstream = BatchUpstream::start().await;
    upstream.release();
    let gw = spawn_gateway(&routes(store, &upstream.base_url)).await;

    run_pytest(
        "test_batch.py",
        &[("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base))],
    )
    .await;

    assert_eq!(upstream.sent_twice(), Vec::<String>::new());
    assert!(
        !upstream.broke_the_rules(),
        "one model per file, ending in a newline"
    );
    // 200 chats, 10 embeddings, FAIL/LOSE/fine, EXPIRE/fine, one response; the stream never
    // became a line.
    assert_eq!(upstream.lines_sent(), 216);
    assert!(!upstream.was_sent("x"));
    // 50 lines per key and model came at once: `max_lines` split them.
    assert!(
        upstream.largest_batch() <= 60,
        "{}",
        upstream.largest_batch()
    );
    upstream
}

#[tokio::test]
async fn sdk_clients_get_their_own_lines_and_the_upstream_sees_each_once() {
    let dir = tempfile::tempdir().unwrap();
    sdk_suite(&sqlite(&dir)).await;

    // No credential (the upstream's or a client's) is in the store, nor the clients' keys.
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["sk-upstream", "sk-a", "sk-b"] {
            assert!(!text.contains(secret), "{secret} is in the store");
        }
    }
}

#[tokio::test]
async fn sdk_clients_get_their_own_lines_over_postgres() {
    let pg = TestPostgres::start();
    sdk_suite(&pg.url).await;
    let dump = pg.dump();
    for secret in ["sk-upstream", "sk-a", "sk-b"] {
        assert!(!dump.contains(secret), "{secret} is in the store");
    }
}

fn chat(text: &str, model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "stream": false})
}

/// Sends the 20 keyed requests to `base`, each on its own task.
fn send_all(base: &str) -> Vec<tokio::task::JoinHandle<Result<reqwest::Response, reqwest::Error>>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    (0..20)
        .map(|i| {
            let model = if i % 2 == 0 {
                "cheap/gpt-a"
            } else {
                "cheap/gpt-b"
            };
            let request = client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth("sk-client")
                .header("idempotency-key", format!("key-{i}"))
                .json(&chat(&format!("restart-{i}"), model))
                .send();
            tokio::spawn(request)
        })
        .collect()
}

#[tokio::test]
async fn after_a_kill_9_every_retry_gets_its_answer_and_nothing_is_sent_twice() {
    // Arrange: the first batch creation is answered only after the gateway is dead (the batch
    // exists upstream; the gateway never learnt its id), and no batch completes yet.
    let dir = tempfile::tempdir().unwrap();
    let upstream = BatchUpstream::start().await;
    upstream.hold_next_create(Duration::from_secs(120));
    let toml = routes(&sqlite(&dir), &upstream.base_url);
    let mut dead = crate::serve_cli::serve(&toml).await;
    let lost = send_all(&dead.base);
    let created = || async { upstream.creates() == 1 };
    eventually(Duration::from_secs(30), "the first batch created", created).await;
    // The dispatcher waits on the held creation, so the other model's lines are still ours.
    assert_eq!(upstream.creates(), 1);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    for request in lost {
        assert!(
            request.await.unwrap().is_err(),
            "the client lost its connection"
        );
    }

    // Act: the gateway starts again on the same store; every client retries with its key.
    let again = crate::serve_cli::serve(&toml).await;
    upstream.release();
    let retries = send_all(&again.base);

    // Assert: each got its own answer; the held batch was found by its metadata, not created
    // again.
    for (i, retry) in retries.into_iter().enumerate() {
        let response = retry.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("echo: restart-{i}")
        );
    }
    assert_eq!(upstream.sent_twice(), Vec::<String>::new());
    assert_eq!(upstream.lines_sent(), 20);
    assert!(!upstream.created_twice(), "{:#?}", upstream.describe());
}
