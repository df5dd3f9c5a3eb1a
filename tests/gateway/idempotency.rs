//! `Idempotency-Key` over the openai backend, on SQLite and PostgreSQL: a repeat is answered
//! from the kept answer and never reaches the upstream; a repeat while the first runs waits
//! for it (on the same instance and on another); another request under the same key is a 409;
//! keys are the caller's own; answers expire; what cannot be kept is said so.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use switchyard::auth::clock::ManualClock;

use crate::support::auth::{ADMIN_TOKEN, MASTER_KEY};
use crate::support::gated_upstream::GatedUpstream;
use crate::support::postgres::TestPostgres;
use crate::support::python::run_pytest;
use crate::support::wait::eventually;
use crate::support::{TestGateway, spawn_gateway, spawn_gateway_with_clock};

/// A gateway with a store at `store_url` (keys off), `up/` on the openai backend at `upstream`.
fn routes(store_url: &str, upstream: &str, extra: &str) -> String {
    format!(
        r#"
[server]
{extra}

[store]
url = "{store_url}"

[idempotency]
max_answer_bytes = 1024

[backends.up]
kind = "openai"
base_url = "{upstream}"

[[routes]]
prefix = "up/"
backend = "up"
"#
    )
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("store.db").display())
}

/// What a client sees of one answer.
#[derive(Debug)]
struct Seen {
    status: u16,
    replayed: bool,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn post(gw: &TestGateway, path: &str, key: &str, auth: &str, body: &Value) -> Seen {
    let response = gw
        .client
        .post(format!("{}{path}", gw.base))
        .header("idempotency-key", key)
        .bearer_auth(auth)
        .json(body)
        .send()
        .await
        .expect("gateway reachable");
    let headers = response.headers().clone();
    Seen {
        status: response.status().as_u16(),
        replayed: headers.get("idempotent-replayed") == Some(&HeaderValue::from_static("true")),
        headers,
        body: response.json().await.unwrap_or(Value::Null),
    }
}

fn chat(content: &str) -> Value {
    json!({"model": "up/gpt-4o", "messages": [{"role": "user", "content": content}]})
}

async fn chat_with(gw: &TestGateway, key: &str, content: &str) -> Seen {
    post(gw, "/v1/chat/completions", key, "sk-client", &chat(content)).await
}

fn assert_error(seen: &Seen, status: u16, code: &str) {
    assert_eq!(seen.status, status, "{seen:?}");
    assert_eq!(seen.body["error"]["code"], code, "{seen:?}");
    assert!(seen.body["error"]["message"].is_string(), "{seen:?}");
    assert_eq!(seen.body["error"]["type"], "invalid_request_error");
}

/// Repeats, conflicts, scoping and the limits, on one store.
async fn suite(store_url: &str) {
    let upstream = GatedUpstream::start(true).await;
    let gw = spawn_gateway(&routes(store_url, &upstream.base_url, "")).await;

    // A repeat gets the kept answer: same body, its descriptive headers, marked as a replay.
    let first = chat_with(&gw, "k-1", "hi").await;
    let again = chat_with(&gw, "k-1", "hi").await;
    assert_eq!((first.status, first.replayed), (200, false), "{first:?}");
    assert_eq!((again.status, again.replayed), (200, true), "{again:?}");
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["content-type"], "application/json");
    assert_eq!(again.headers["openai-processing-ms"], "1");
    assert!(
        again
            .headers
            .get("x-ratelimit-remaining-requests")
            .is_none()
    );
    assert_eq!(upstream.seen(), 1, "the repeat never reached the upstream");

    // The same key with another body is a 409, and reaches nothing.
    assert_error(
        &chat_with(&gw, "k-1", "bye").await,
        409,
        "idempotency_key_reused",
    );
    assert_eq!(upstream.seen(), 1);

    // Another client (another Authorization) has keys of its own.
    let other = post(&gw, "/v1/chat/completions", "k-1", "sk-other", &chat("hi")).await;
    assert_eq!((other.status, other.replayed), (200, false), "{other:?}");
    assert_ne!(other.body["id"], first.body["id"]);
    assert_eq!(upstream.seen(), 2);

    every_inference_endpoint_replays(&gw, &upstream).await;
    only_final_answers_are_kept(&gw, &upstream).await;
    hostile_keys_are_refused(&gw, &upstream).await;
}

async fn every_inference_endpoint_replays(gw: &TestGateway, upstream: &GatedUpstream) {
    let requests = [
        ("/v1/embeddings", json!({"model": "up/e", "input": "hello"})),
        ("/v1/responses", json!({"model": "up/r", "input": "hello"})),
        (
            "/v1/completions",
            json!({"model": "up/c", "prompt": "hello"}),
        ),
    ];
    for (path, body) in requests {
        let before = upstream.seen();
        let key = format!("k{path}");
        let first = post(gw, path, &key, "sk-client", &body).await;
        let again = post(gw, path, &key, "sk-client", &body).await;
        assert_eq!(
            (first.status, first.replayed),
            (200, false),
            "{path}: {first:?}"
        );
        assert_eq!(
            (again.status, again.replayed),
            (200, true),
            "{path}: {again:?}"
        );
        assert_eq!(again.body, first.body, "{path}");
        assert_eq!(upstream.seen(), before + 1, "{path}");
    }
}

async fn only_final_answers_are_kept(gw: &TestGateway, upstream: &GatedUpstream) {
    // The upstream's 400 is its verdict on the request: kept and replayed.
    let before = upstream.seen();
    let refused = chat_with(gw, "k-reject", "reject").await;
    let again = chat_with(gw, "k-reject", "reject").await;
    assert_eq!(
        (refused.status, again.status, again.replayed),
        (400, 400, true)
    );
    assert_eq!(again.body, refused.body);
    assert_eq!(upstream.seen(), before + 1);

    // A 503 says "try again": the key is given up and the repeat runs.
    let before = upstream.seen();
    let failed = chat_with(gw, "k-fail", "fail").await;
    let retried = chat_with(gw, "k-fail", "fail").await;
    assert_eq!(
        (failed.status, retried.status, retried.replayed),
        (503, 503, false)
    );
    assert!(
        upstream.seen() >= before + 2,
        "the retry reached the upstream"
    );

    // An answer over `max_answer_bytes` reaches its client whole but is not kept: a repeat
    // is told so rather than run twice.
    let before = upstream.seen();
    let big = chat_with(gw, "k-big", "big").await;
    assert_eq!(big.status, 200);
    assert_eq!(
        big.body["choices"][0]["message"]["content"]
            .as_str()
            .map(str::len),
        Some(2000)
    );
    assert_error(
        &chat_with(gw, "k-big", "big").await,
        409,
        "idempotent_answer_not_kept",
    );
    assert_eq!(upstream.seen(), before + 1);
}

async fn hostile_keys_are_refused(gw: &TestGateway, upstream: &GatedUpstream) {
    let before = upstream.seen();
    let long = "k".repeat(256);
    assert_error(
        &chat_with(gw, &long, "hi").await,
        400,
        "invalid_idempotency_key",
    );
    let non_ascii = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header(
            "idempotency-key",
            HeaderValue::from_bytes(b"k\xc3\xa9").unwrap(),
        )
        .json(&chat("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(non_ascii.status(), 400);
    // A stream is not kept, so it cannot take a key.
    let mut stream = chat("hi");
    stream["stream"] = json!(true);
    let streamed = post(gw, "/v1/chat/completions", "k-stream", "sk-client", &stream).await;
    assert_error(&streamed, 400, "idempotency_key_with_stream");
    assert_eq!(streamed.body["error"]["param"], "stream");
    let mut relayed = json!({"model": "up/r", "input": "hello", "stream": true});
    let streamed = post(gw, "/v1/responses", "k-stream", "sk-client", &relayed).await;
    assert_error(&streamed, 400, "idempotency_key_with_stream");
    // The longest key accepted works.
    relayed["stream"] = json!(false);
    let longest = "k".repeat(255);
    let ok = post(gw, "/v1/responses", &longest, "sk-client", &relayed).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(upstream.seen(), before + 1);
}

#[tokio::test]
async fn repeats_conflicts_and_limits_over_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(&sqlite_url(&dir)).await;
    // Neither the clients' credentials nor their keys are in the database files (rows are named
    // by a hash of both).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for secret in [&b"sk-client"[..], b"sk-other", b"k-1", b"k-reject"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} found in the store",
                String::from_utf8_lossy(secret)
            );
        }
    }
}

#[tokio::test]
async fn repeats_conflicts_and_limits_over_postgres() {
    let pg = TestPostgres::start();
    suite(&pg.url).await;
}

/// Sends `GET /health` until the gateway refuses it for having `max_concurrent_requests` in
/// progress (bounded: 10 s): then every request sent before is being served.
async fn wait_until_full(gw: &TestGateway) {
    let full = || async { gw.get("/health").await.status() == 503 };
    eventually(
        Duration::from_secs(10),
        "the requests all in progress",
        full,
    )
    .await;
}

#[tokio::test]
async fn a_concurrent_repeat_joins_the_running_request() {
    // Arrange: the upstream holds the first request; room for it and five repeats only.
    let dir = tempfile::tempdir().unwrap();
    let upstream = GatedUpstream::start(false).await;
    let extra = "max_concurrent_requests = 6";
    let gw = Arc::new(spawn_gateway(&routes(&sqlite_url(&dir), &upstream.base_url, extra)).await);
    let send = |gw: Arc<TestGateway>| tokio::spawn(async move { chat_with(&gw, "k", "hi").await });

    // Act: the first is at the upstream, the repeats are in progress, then the upstream answers.
    let first = send(gw.clone());
    upstream.wait_seen(1).await;
    let repeats: Vec<_> = (0..5).map(|_| send(gw.clone())).collect();
    wait_until_full(&gw).await;
    upstream.open();

    // Assert: one upstream request, one answer for all, the repeats marked.
    let first = first.await.unwrap();
    assert_eq!((first.status, first.replayed), (200, false));
    for repeat in repeats {
        let repeat = repeat.await.unwrap();
        assert_eq!((repeat.status, repeat.replayed), (200, true));
        assert_eq!(repeat.body, first.body);
    }
    assert_eq!(upstream.seen(), 1);
}

#[tokio::test]
async fn a_repeat_on_another_instance_waits_for_the_first() {
    // Arrange: two gateways on one PostgreSQL; the upstream holds the first request.
    let pg = TestPostgres::start();
    let upstream = GatedUpstream::start(false).await;
    let one = Arc::new(spawn_gateway(&routes(&pg.url, &upstream.base_url, "")).await);
    let extra = "max_concurrent_requests = 1";
    let two = Arc::new(spawn_gateway(&routes(&pg.url, &upstream.base_url, extra)).await);

    // Act: the first on instance one; the repeat on instance two, in progress; then the answer.
    let first = {
        let one = one.clone();
        tokio::spawn(async move { chat_with(&one, "k", "hi").await })
    };
    upstream.wait_seen(1).await;
    let repeat = {
        let two = two.clone();
        tokio::spawn(async move { chat_with(&two, "k", "hi").await })
    };
    wait_until_full(&two).await;
    upstream.open();

    // Assert: the repeat got the first's answer, which the upstream produced once.
    let (first, repeat) = (first.await.unwrap(), repeat.await.unwrap());
    assert_eq!(
        (first.status, repeat.status, repeat.replayed),
        (200, 200, true)
    );
    assert_eq!(repeat.body, first.body);
    assert_eq!(upstream.seen(), 1);
}

#[tokio::test]
async fn with_gateway_keys_a_key_never_sees_another_keys_answer() {
    // Arrange: keys on; two keys of one project.
    let dir = tempfile::tempdir().unwrap();
    let upstream = GatedUpstream::start(true).await;
    let toml = format!(
        "{}\n[auth]\nmaster_key = \"{MASTER_KEY}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n",
        routes(&sqlite_url(&dir), &upstream.base_url, "")
    );
    let gw = spawn_gateway(&toml).await;
    let project = gw.create_project("team", &["up/"]).await;
    let (_, alice) = gw.create_key(&project, json!({})).await;
    let (_, bob) = gw.create_key(&project, json!({})).await;
    let ask = |key: String| {
        let gw = &gw;
        async move { post(gw, "/v1/chat/completions", "shared", &key, &chat("hi")).await }
    };

    // Act: the same Idempotency-Key and body under each key, then Alice again.
    let (a, b, a_again) = (ask(alice.clone()).await, ask(bob).await, ask(alice).await);

    // Assert: Bob's request ran on its own; Alice's repeat is hers.
    assert_eq!((a.status, b.status, b.replayed), (200, 200, false), "{b:?}");
    assert_ne!(a.body["id"], b.body["id"]);
    assert_eq!((a_again.replayed, &a_again.body), (true, &a.body));
    assert_eq!(upstream.seen(), 2);
}

#[tokio::test]
async fn a_kept_answer_is_forgotten_after_its_ttl() {
    // Arrange: answers kept for a minute, on a clock the test moves.
    let dir = tempfile::tempdir().unwrap();
    let upstream = GatedUpstream::start(true).await;
    let clock = Arc::new(ManualClock::new(1_000_000));
    let toml = routes(&sqlite_url(&dir), &upstream.base_url, "")
        .replace("[idempotency]", "[idempotency]\nttl = \"60s\"");
    let gw = spawn_gateway_with_clock(&toml, clock.clone()).await;
    let first = chat_with(&gw, "k", "hi").await;

    // Act + Assert: kept within the minute, run again after it.
    clock.advance(59);
    assert!(chat_with(&gw, "k", "hi").await.replayed);
    clock.advance(2);
    let later = chat_with(&gw, "k", "hi").await;
    assert_eq!((later.status, later.replayed), (200, false));
    assert_ne!(later.body["id"], first.body["id"]);
    assert_eq!(upstream.seen(), 2);
}

#[tokio::test]
async fn the_openai_python_sdk_retries_safely_with_an_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = GatedUpstream::start(true).await;
    let gw = spawn_gateway(&routes(&sqlite_url(&dir), &upstream.base_url, "")).await;
    run_pytest(
        "test_idempotency.py",
        &[("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base))],
    )
    .await;
    // One chat and one embeddings request reached the upstream; every repeat was answered
    // from what was kept.
    assert_eq!(upstream.seen(), 2);
}

#[tokio::test]
async fn without_a_store_a_key_is_ignored_but_still_bounded() {
    // Arrange: no [store], [auth] or [idempotency]: no database at all.
    let upstream = GatedUpstream::start(true).await;
    let toml = format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[[routes]]\nprefix = \"up/\"\nbackend = \"up\"\n",
        upstream.base_url
    );
    let gw = spawn_gateway(&toml).await;

    // Act + Assert: both requests run; a hostile key is refused all the same.
    let first = chat_with(&gw, "k", "hi").await;
    let again = chat_with(&gw, "k", "hi").await;
    assert_eq!(
        (first.status, again.status, again.replayed),
        (200, 200, false)
    );
    assert_eq!(upstream.seen(), 2);
    assert_error(
        &chat_with(&gw, &"k".repeat(256), "hi").await,
        400,
        "invalid_idempotency_key",
    );
    assert_error(
        &chat_with(&gw, "two words", "hi").await,
        400,
        "invalid_idempotency_key",
    );
    assert_eq!(upstream.seen(), 2);
}

#[tokio::test]
async fn a_key_held_by_a_killed_gateway_is_taken_over_once_its_lease_runs_out() {
    // Arrange: the real binary runs the first request (held at the upstream), then is killed
    // with SIGKILL, so nothing releases its claim.
    let dir = tempfile::tempdir().unwrap();
    let upstream = GatedUpstream::start(false).await;
    let toml = routes(&sqlite_url(&dir), &upstream.base_url, "");
    let mut dead = crate::serve_cli::serve(&toml).await;
    let first = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", dead.base))
        .header("idempotency-key", "k")
        .bearer_auth("sk-client")
        .json(&chat("hi"))
        .send();
    let first = tokio::spawn(first);
    upstream.wait_seen(1).await;
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    assert!(
        first.await.unwrap().is_err(),
        "the client lost its connection"
    );

    // Act: a retry on another gateway over the same store, while the dead run's lease holds.
    let clock = Arc::new(ManualClock::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    ));
    let extra = "max_concurrent_requests = 1";
    let toml = routes(&sqlite_url(&dir), &upstream.base_url, extra);
    let gw = Arc::new(spawn_gateway_with_clock(&toml, clock.clone()).await);
    let retry = {
        let gw = gw.clone();
        tokio::spawn(async move { chat_with(&gw, "k", "hi").await })
    };
    wait_until_full(&gw).await;
    assert_eq!(upstream.seen(), 1, "the retry waits while the lease holds");
    clock.advance(31);
    upstream.open();

    // Assert: the retry took the key over and ran; its answer is the one kept.
    let retry = retry.await.unwrap();
    assert_eq!((retry.status, retry.replayed), (200, false), "{retry:?}");
    assert_eq!(retry.body["id"], "chatcmpl-2");
    let again = chat_with(&gw, "k", "hi").await;
    assert_eq!((again.replayed, &again.body), (true, &retry.body));
    assert_eq!(upstream.seen(), 2);
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_key_for_the_retry() {
    // Arrange: a clock that never moves, so only a release (never the lease) can free a key.
    let dir = tempfile::tempdir().unwrap();
    let upstream = GatedUpstream::start(false).await;
    let toml = routes(&sqlite_url(&dir), &upstream.base_url, "");
    let gw = Arc::new(spawn_gateway_with_clock(&toml, Arc::new(ManualClock::new(1_000_000))).await);
    let first = {
        let gw = gw.clone();
        tokio::spawn(async move { chat_with(&gw, "k", "hi").await })
    };
    upstream.wait_seen(1).await;

    // Act: the client gives up (its connection closes, and the gateway cancels the upstream
    // request); it retries.
    first.abort();
    upstream.wait_hang_ups(1).await;
    upstream.open();
    let retry = chat_with(&gw, "k", "hi").await;

    // Assert: the retry ran rather than waiting on a run nobody will finish.
    assert_eq!((retry.status, retry.replayed), (200, false), "{retry:?}");
    assert_eq!(upstream.seen(), 2);
}
