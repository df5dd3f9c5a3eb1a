//! The Redis transport end to end, with a real redis-server on a free loopback port: the
//! gateway's `redis` backend, `switchyard worker` (in process, and as a process where a test
//! kills or signals it), and the Python `openai-rq` 0.1.2 package on either side.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard::worker::{StepOutcome, Worker};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::python::run_pytest;
use crate::support::redis::{
    HeldUpstream, RunningWorker, Step, TestRedis, redis_routes, spawn_python_worker,
    spawn_switchyard_worker, worker_config,
};
use crate::support::wait::{self, eventually};
use crate::support::{TestGateway, chat_body, spawn_gateway, sse_payloads, stream_text};

const WORKER_KEY: &str = "sk-worker-secret-1234";
const LONG: Duration = Duration::from_secs(20);
/// How long a Python client may take to start and send its first request on a loaded machine.
const PYTHON_START: Duration = Duration::from_secs(90);

fn chat(model: &str, prompt: &str, stream: bool) -> Value {
    chat_body(model, prompt, stream)
}

fn sse_body(pieces: &[&str]) -> String {
    let mut body = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let delta = if i == 0 {
            json!({"role": "assistant", "content": p})
        } else {
            json!({"content": p})
        };
        let chunk = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m-1",
            "choices":[{"index":0,"delta":delta,"finish_reason":null}]});
        body.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m-1",
        "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
    body.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    body
}

/// The upstream the interop cases expect (tests/python/openai_rq_cases.py); every mock needs
/// the worker's key, so a pass shows the worker injected it.
async fn interop_upstream() -> MockServer {
    let server = MockServer::start().await;
    let bearer = format!("Bearer {WORKER_KEY}");
    let auth = || header("authorization", bearer.as_str());
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"model": "missing"})))
        .and(auth())
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "message": "no such model upstream", "type": "invalid_request_error",
            "param": "model", "code": "model_not_found"}})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(json!({"stream": true})))
        .and(auth())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(sse_body(&["one ", "two ", "three"]), "text/event-stream"),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "m-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from upstream"},
                "finish_reason": "stop"}]})))
        .with_priority(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "model": "m-1",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.5, 0.75]}],
            "usage": {"prompt_tokens": 1, "total_tokens": 1}})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/widgets/frobnicate"))
        .and(query_param("level", "3"))
        .and(body_partial_json(json!({"size": 7})))
        .and(auth())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"frobnicated": true})))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_openai_rq_client_is_served_by_switchyard_worker() {
    // Arrange: redis, the upstream, one in-process switchyard worker holding the key.
    let redis = TestRedis::start().await;
    let upstream = interop_upstream().await;
    let mut cfg = worker_config(&redis.url, &format!("{}/v1", upstream.uri()));
    cfg.openai_api_key = Some(WORKER_KEY.to_owned().into());
    let worker = RunningWorker::start(cfg);

    // Act: openai-rq's own OpenAIRQ client runs the five cases.
    run_pytest(
        "test_openai_rq_client.py",
        &[("REDIS_URL", redis.url.clone())],
    )
    .await;

    // Assert: the worker's key went upstream but never into Redis; results are gone or expiring.
    assert!(!redis.dump_text().await.contains(WORKER_KEY));
    for (key, ttl) in redis.keys_with_ttl().await {
        assert!(key == "openai-rq:requests" || ttl > 0, "{key} has no TTL");
    }
    let stats = worker.shutdown().await;
    assert_eq!(stats.answered_2xx + stats.answered_other, 5, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_gateway_is_served_by_the_python_openai_rq_worker() {
    // Arrange: redis, the upstream, the Python `openai-rq worker`, the gateway.
    let redis = TestRedis::start().await;
    let upstream = interop_upstream().await;
    let _worker = spawn_python_worker(
        &redis.url,
        &format!("{}/v1", upstream.uri()),
        &["--openai-api-key", WORKER_KEY],
    );
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;

    // Act: the official SDK runs the five cases against the gateway.
    run_pytest(
        "test_openai_rq_gateway.py",
        &[("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base))],
    )
    .await;

    // Assert: the Python worker leaves the jobs in the stream: none holds a credential.
    let dump = redis.dump_text().await;
    assert!(dump.contains("widgets/frobnicate"), "jobs are in the dump");
    assert!(!dump.contains("sk-client-key-never-in-redis"), "{dump}");
    assert!(!dump.contains(WORKER_KEY));
    assert!(
        !dump.to_ascii_lowercase().contains("authorization"),
        "{dump}"
    );
}

/// Echoes each request's prompt: chat as JSON or as a two-piece stream, embeddings as a
/// vector holding the input's length.
struct EchoUpstream;

impl Respond for EchoUpstream {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if req.url.path().ends_with("/embeddings") {
            let n = body["input"].as_str().unwrap_or_default().len();
            return ResponseTemplate::new(200).set_body_json(json!({"object":"list","model":"m",
                "data":[{"object":"embedding","index":0,"embedding":[n as f64]}],
                "usage":{"prompt_tokens":1,"total_tokens":1}}));
        }
        let prompt = body["messages"][0]["content"].as_str().unwrap_or_default();
        if body["stream"] == json!(true) {
            let (a, b) = prompt.split_at(prompt.len() / 2);
            return ResponseTemplate::new(200).set_body_raw(sse_body(&[a, b]), "text/event-stream");
        }
        ResponseTemplate::new(200).set_body_json(json!({"id":"c","object":"chat.completion",
            "created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant",
            "content":prompt},"finish_reason":"stop"}]}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchyard_on_both_halves_answers_200_mixed_requests_once_each_across_3_workers() {
    // Arrange
    let redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EchoUpstream)
        .mount(&upstream)
        .await;
    let base = format!("{}/v1", upstream.uri());
    let workers: Vec<RunningWorker> = (0..3)
        .map(|_| {
            let mut cfg = worker_config(&redis.url, &base);
            cfg.concurrency = 8;
            RunningWorker::start(cfg)
        })
        .collect();
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;

    // Act: 200 requests, a third each of chat, streamed chat and embeddings, 32 at a time.
    let results: Vec<(usize, bool)> = futures::stream::iter(0..200)
        .map(|i| {
            let gw = &gw;
            async move {
                let prompt = format!("request number {i}");
                let ok = match i % 3 {
                    0 => {
                        let r = gw
                            .post_json("/v1/chat/completions", &chat("dc/m", &prompt, false))
                            .await;
                        let v: Value = r.json().await.unwrap();
                        v["choices"][0]["message"]["content"] == json!(prompt)
                    }
                    1 => {
                        let r = gw
                            .post_json("/v1/chat/completions", &chat("dc/m", &prompt, true))
                            .await;
                        let payloads = sse_payloads(r).await;
                        stream_text(&payloads) == prompt
                            && payloads.last().map(String::as_str) == Some("[DONE]")
                    }
                    _ => {
                        let r = gw
                            .post_json("/v1/embeddings", &json!({"model":"dc/e","input":prompt}))
                            .await;
                        let v: Value = r.json().await.unwrap();
                        v["data"][0]["embedding"][0] == json!(prompt.len() as f64)
                    }
                };
                (i, ok)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    // Assert: every answer is its own request's; the upstream saw each request exactly once.
    let wrong: Vec<usize> = results
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(i, _)| *i)
        .collect();
    assert!(wrong.is_empty(), "wrong answers for requests {wrong:?}");
    let seen = upstream.received_requests().await.unwrap();
    let mut count: HashMap<String, usize> = HashMap::new();
    for req in &seen {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let prompt = body["messages"][0]["content"]
            .as_str()
            .or(body["input"].as_str())
            .unwrap()
            .to_owned();
        *count.entry(prompt).or_default() += 1;
    }
    assert_eq!(seen.len(), 200);
    assert!(
        count.values().all(|&n| n == 1),
        "a request reached the upstream twice"
    );
    let mut total = 0;
    for w in workers {
        let stats = w.shutdown().await;
        assert!(stats.answered_2xx > 0, "a worker took no job: {stats:?}");
        total += stats.answered_2xx;
    }
    assert_eq!(total, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_ten_times_the_reclaim_idle_time_reaches_the_upstream_once() {
    // Arrange: two workers that reclaim anything idle for 1 s; the upstream takes 10 s.
    let redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EchoUpstream.respond_delayed())
        .mount(&upstream)
        .await;
    let base = format!("{}/v1", upstream.uri());
    let workers: Vec<RunningWorker> = (0..2)
        .map(|_| {
            let mut cfg = worker_config(&redis.url, &base);
            cfg.reclaim_idle = Duration::from_secs(1);
            RunningWorker::start(cfg)
        })
        .collect();
    let gw = spawn_gateway(&redis_routes(&redis.url, "60s")).await;

    // Act
    let r = gw
        .post_json("/v1/chat/completions", &chat("dc/m", "slow one", false))
        .await;

    // Assert: answered, and the upstream was called once in the 10 s.
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "slow one");
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);
    let mut reclaimed = 0;
    for w in workers {
        reclaimed += w.shutdown().await.reclaimed;
    }
    assert_eq!(reclaimed, 0, "a live worker's job was reclaimed");
}

trait Delayed {
    fn respond_delayed(self) -> DelayedEcho;
}

impl Delayed for EchoUpstream {
    fn respond_delayed(self) -> DelayedEcho {
        DelayedEcho
    }
}

struct DelayedEcho;

impl Respond for DelayedEcho {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        EchoUpstream.respond(req).set_delay(Duration::from_secs(10))
    }
}

/// Sends a chat request through the gateway in the background, for tests that hold the worker
/// or the upstream while it waits.
fn chat_in_background(
    gw: &TestGateway,
    prompt: &str,
    stream: bool,
) -> tokio::task::JoinHandle<reqwest::Response> {
    let (client, base, body) = (
        gw.client.clone(),
        gw.base.clone(),
        chat("dc/m", prompt, stream),
    );
    tokio::spawn(async move {
        client
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
    })
}

/// Awaits a loop of worker steps, failing the test rather than hanging it when the loop does
/// not finish within `LONG`.
async fn within<T>(what: &str, steps: impl std::future::Future<Output = T>) -> T {
    wait::within(LONG, what, steps).await
}

async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(LONG, response.chunk())
            .await
            .expect("a chunk in time")
            .expect("read")
            .expect("stream still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_job_completes_through_another_or_ends_cleanly() {
    let redis = TestRedis::start().await;
    let mut upstream = HeldUpstream::start().await;
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;
    let fast_reclaim = ["--reclaim-idle-ms", "1000"];

    // 1. Non-stream job: A dies while the upstream works on it; B re-runs it; one answer.
    let mut a = spawn_switchyard_worker(&redis.url, &upstream.base_url, &fast_reclaim);
    let client = chat_in_background(&gw, "plain", false);
    let first = upstream.next(LONG).await;
    a.kill9();
    let mut b = spawn_switchyard_worker(&redis.url, &upstream.base_url, &fast_reclaim);
    let again = upstream.next(LONG).await;
    assert_eq!(again.prompt(), "plain");
    again.send(Step::Json("the one answer".into())).await;
    let r = tokio::time::timeout(LONG, client).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "the one answer");
    drop(first);
    b.kill9();

    // 2. Stream job, A killed before it wrote any output: B runs it; one coherent stream.
    let mut a = spawn_switchyard_worker(&redis.url, &upstream.base_url, &fast_reclaim);
    let client = {
        let (c, base) = (gw.client.clone(), gw.base.clone());
        tokio::spawn(async move {
            let r = c
                .post(format!("{base}/v1/chat/completions"))
                .json(&chat("dc/m", "stream early", true))
                .send()
                .await
                .unwrap();
            sse_payloads(r).await
        })
    };
    let first = upstream.next(LONG).await;
    a.kill9();
    let mut b = spawn_switchyard_worker(&redis.url, &upstream.base_url, &fast_reclaim);
    let again = upstream.next(LONG).await;
    for step in [
        Step::SseHead,
        Step::Event("alpha ".into()),
        Step::Event("beta".into()),
        Step::Done,
    ] {
        again.send(step).await;
    }
    let payloads = tokio::time::timeout(LONG, client).await.unwrap().unwrap();
    assert_eq!(stream_text(&payloads), "alpha beta");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    drop(first);
    b.kill9();

    // 3. Stream job, A killed after part of the answer reached the client: B does not re-run
    //    it (a second answer would be spliced on); the client's stream ends with an error.
    let mut a = spawn_switchyard_worker(&redis.url, &upstream.base_url, &fast_reclaim);
    let pending = chat_in_background(&gw, "stream late", true);
    let first = upstream.next(LONG).await;
    first.send(Step::SseHead).await;
    first.send(Step::Event("partial ".into())).await;
    let mut response = tokio::time::timeout(LONG, pending).await.unwrap().unwrap();
    let mut seen = read_until(&mut response, "partial ").await;
    a.kill9();
    let _b = spawn_switchyard_worker(&redis.url, &upstream.base_url, &fast_reclaim);
    let rest = tokio::time::timeout(LONG, response.bytes())
        .await
        .unwrap()
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&rest));
    let payloads: Vec<String> = switchyard::adapters::sse::data_payloads(seen.as_bytes())
        .into_iter()
        .map(|p| String::from_utf8(p).unwrap())
        .collect();
    assert_eq!(stream_text(&payloads), "partial ");
    let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not re-run"),
        "{last}"
    );
    upstream.assert_none_for(Duration::from_millis(2500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_fails_waiting_requests_cleanly_and_later_ones_succeed() {
    // Arrange
    let mut redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(
            json!({"messages": [{"content": "slow"}]}),
        ))
        .respond_with(DelayedEcho)
        .with_priority(1)
        .mount(&upstream)
        .await;
    Mock::given(method("POST"))
        .respond_with(EchoUpstream)
        .mount(&upstream)
        .await;
    // A short reclaim interval, so the first command to meet the restarted (empty) Redis may
    // be the reclaim's XAUTOCLAIM: the worker must still remake its group and go on.
    let mut cfg = worker_config(&redis.url, &format!("{}/v1", upstream.uri()));
    cfg.reclaim_idle = Duration::from_millis(500);
    let worker = RunningWorker::start(cfg);
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;
    let r = gw
        .post_json("/v1/chat/completions", &chat("dc/m", "before", false))
        .await;
    assert_eq!(r.status(), 200);

    // Act: a request waits on its answer while Redis is killed and restarted (empty).
    let waiting = chat_in_background(&gw, "slow", false);
    eventually(LONG, "the slow job reached the upstream", || async {
        upstream.received_requests().await.unwrap().len() >= 2
    })
    .await;
    redis.restart().await;

    // Assert: the waiting client gets a clear 503 at once, not a hang.
    let r = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("no hang")
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_unavailable");
    // Later requests succeed once both sides have reconnected (the worker remakes its group).
    let mut ok = false;
    for _ in 0..60 {
        let r = gw
            .post_json("/v1/chat/completions", &chat("dc/m", "after", false))
            .await;
        if r.status() == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "no request succeeded within 15 s of the restart");
    for i in 0..5 {
        let prompt = format!("after {i}");
        let r = gw
            .post_json("/v1/chat/completions", &chat("dc/m", &prompt, i % 2 == 0))
            .await;
        assert_eq!(r.status(), 200);
    }
    worker.shutdown().await;
}

async fn xadd(redis: &TestRedis, data: &str) -> String {
    let mut c = redis.conn().await;
    redis::cmd("XADD")
        .arg("openai-rq:requests")
        .arg("*")
        .arg("data")
        .arg(data)
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_jobs_are_dead_lettered_at_once_and_identified_clients_get_a_502() {
    // Arrange: a worker driven step by step; a dead-letter cap of 2.
    let redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EchoUpstream)
        .mount(&upstream)
        .await;
    let mut cfg = worker_config(&redis.url, &format!("{}/v1", upstream.uri()));
    cfg.dead_letter_maxlen = 2;
    let mut worker = Worker::new(cfg).unwrap();
    let mut c = redis.conn().await;

    // Act + Assert: garbage, then jobs lacking fields, each dead-lettered by one step.
    let e1 = xadd(&redis, "this is not json").await;
    assert_eq!(worker.step().await, StepOutcome::DeadLettered(e1));
    let e2 = xadd(&redis, r#"{"id":"abc123","stream":false,"method":"POST"}"#).await;
    assert_eq!(worker.step().await, StepOutcome::DeadLettered(e2));
    let e3 = xadd(
        &redis,
        r#"{"id":"def456","stream":true,"headers":{"authorization":"Bearer sk-python-client"}}"#,
    )
    .await;
    assert_eq!(worker.step().await, StepOutcome::DeadLettered(e3));

    // The non-stream client is released with a 502 naming the reason...
    let (_, raw): (String, Vec<u8>) = redis::cmd("BLPOP")
        .arg("openai-rq:result:abc123")
        .arg(1)
        .query_async(&mut c)
        .await
        .unwrap();
    let result: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(result["status"], 502);
    // ...and so is the stream client, with a terminal `error` entry.
    let dump = redis.dump_text().await;
    assert!(dump.contains("openai-rq:stream:def456"), "{dump}");
    // The dead-letter stream is capped (3 added, 2 kept), expires, keeps reasons, no secret.
    let len: usize = redis::cmd("XLEN")
        .arg("openai-rq:dead-letter")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(len, 2);
    let keys = redis.keys_with_ttl().await;
    for (key, ttl) in &keys {
        assert!(
            key == "openai-rq:requests" || *ttl > 0,
            "{key} has no TTL: {keys:?}"
        );
    }
    assert!(dump.contains("field `method` is missing"), "{dump}");
    assert!(!dump.contains("sk-python-client"), "{dump}");
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg("openai-rq:requests")
        .arg("openai-rq")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(pending.0, 0, "dead-lettered jobs are acknowledged");

    // The worker is alive: a good job after them runs.
    let gw = spawn_gateway(&redis_routes(&redis.url, "10s")).await;
    let client = chat_in_background(&gw, "still here", false);
    within("a job replayed", async {
        while !matches!(worker.step().await, StepOutcome::Replayed(_)) {}
    })
    .await;
    let r = tokio::time::timeout(LONG, client).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(worker.stats().dead_lettered, 3);
}

/// Takes the next job as a "ghost" consumer that then dies (never acknowledges), and makes it
/// look delivered `deliveries` times and long idle.
async fn ghost_takes_job(redis: &TestRedis, deliveries: u64) -> String {
    let mut c = redis.conn().await;
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("openai-rq:requests")
        .arg("openai-rq")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await;
    let mut id = None;
    for _ in 0..200 {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("openai-rq")
            .arg("ghost")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg("openai-rq:requests")
            .arg(">")
            .query_async(&mut c)
            .await
            .unwrap();
        if let Some(entry) = reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next())
        {
            id = Some(entry.id);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let id = id.expect("a job was queued");
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg("openai-rq:requests")
        .arg("openai-rq")
        .arg("ghost")
        .arg(0)
        .arg(&id)
        .arg("IDLE")
        .arg(600_000)
        .arg("RETRYCOUNT")
        .arg(deliveries)
        .arg("JUSTID")
        .query_async(&mut c)
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_max_retries_is_dead_lettered_and_its_client_gets_a_502() {
    let redis = TestRedis::start().await;
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;
    let mut cfg = worker_config(&redis.url, "http://127.0.0.1:9/v1");
    cfg.reclaim_idle = Duration::from_millis(500);
    let mut worker = Worker::new(cfg).unwrap();
    for stream in [false, true] {
        // Arrange: a client waits; a ghost worker took its job 3 times and died.
        let client = chat_in_background(&gw, "doomed", stream);
        let entry = ghost_takes_job(&redis, 3).await;

        // Act: the worker reclaims it (a 4th delivery) and dead-letters it.
        let mut outcomes = Vec::new();
        while !matches!(outcomes.last(), Some(StepOutcome::DeadLettered(_))) {
            outcomes.push(worker.step().await);
            assert!(outcomes.len() < 50, "{outcomes:?}");
        }

        // Assert
        assert!(
            outcomes.contains(&StepOutcome::Reclaimed(1)),
            "{outcomes:?}"
        );
        assert_eq!(outcomes.last(), Some(&StepOutcome::DeadLettered(entry)));
        let r = tokio::time::timeout(LONG, client).await.unwrap().unwrap();
        assert_eq!(r.status(), 502, "stream={stream}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "dead_lettered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_takes_no_more_jobs_than_free_slots_and_reclaims_within_them() {
    // Arrange: a worker with 2 slots; 4 clients waiting.
    let redis = TestRedis::start().await;
    let mut upstream = HeldUpstream::start().await;
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;
    let mut cfg = worker_config(&redis.url, &upstream.base_url);
    cfg.concurrency = 2;
    cfg.reclaim_idle = Duration::from_millis(300);
    let mut busy = Worker::new(cfg.clone()).unwrap();
    let send = |prompt: &'static str| chat_in_background(&gw, prompt, false);
    let clients: Vec<_> = ["j1", "j2", "j3", "j4"].into_iter().map(send).collect();
    let mut c = redis.conn().await;
    eventually(LONG, "4 jobs queued", || {
        let mut c = c.clone();
        async move {
            let n: usize = redis::cmd("XLEN")
                .arg("openai-rq:requests")
                .query_async(&mut c)
                .await
                .unwrap_or(0);
            n == 4
        }
    })
    .await;

    // Act: the worker takes two, then a third step must wait for a slot.
    let mut started = 0;
    within("two jobs started", async {
        while started < 2 {
            if let StepOutcome::Replayed(_) = busy.step().await {
                started += 1;
            }
        }
    })
    .await;
    let h1 = upstream.next(LONG).await;
    let h2 = upstream.next(LONG).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(800), busy.step())
            .await
            .is_err(),
        "a full worker took another job"
    );
    // Only two entries are pending on it: the other two are free for any worker.
    let pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg("openai-rq:requests")
        .arg("openai-rq")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(pending.0, 2);

    // A second worker with 2 slots: one orphan of a dead ghost is reclaimed alongside new work.
    let mut other = Worker::new(cfg).unwrap();
    let mut took = Vec::new();
    within("two jobs taken", async {
        while took.len() < 2 {
            match other.step().await {
                StepOutcome::Replayed(id) => took.push(id),
                StepOutcome::Idle => {}
                o => panic!("{o:?}"),
            }
        }
    })
    .await;
    let h3 = upstream.next(LONG).await;
    let h4 = upstream.next(LONG).await;
    // Four jobs run at once across the two workers; each answers its own client.
    for h in [h1, h2, h3, h4] {
        let p = h.prompt();
        h.send(Step::Json(format!("answer to {p}"))).await;
    }
    for (client, prompt) in clients.into_iter().zip(["j1", "j2", "j3", "j4"]) {
        let r = tokio::time::timeout(LONG, client).await.unwrap().unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            format!("answer to {prompt}")
        );
    }
    other.wait_idle().await;
    busy.wait_idle().await;

    // One slot busy with a new job; then two orphans of a dead ghost: only one is reclaimed
    // (one free slot), and it runs at once, alongside the job the loop started.
    let new_client = send("n1");
    within("a job replayed", async {
        while !matches!(other.step().await, StepOutcome::Replayed(_)) {}
    })
    .await;
    let held_new = upstream.next(LONG).await;
    let orphan_clients: Vec<_> = ["o1", "o2"].into_iter().map(send).collect();
    ghost_takes_job(&redis, 1).await;
    ghost_takes_job(&redis, 1).await;
    let outcome = within("a reclaim", async {
        loop {
            match other.step().await {
                StepOutcome::Idle => {}
                o => break o,
            }
        }
    })
    .await;
    assert_eq!(outcome, StepOutcome::Reclaimed(1));
    assert!(matches!(other.step().await, StepOutcome::Replayed(_)));
    let reclaimed = upstream.next(LONG).await;
    held_new.send(Step::Json("n".into())).await;
    reclaimed.send(Step::Json("o".into())).await;
    assert_eq!(
        tokio::time::timeout(LONG, new_client)
            .await
            .unwrap()
            .unwrap()
            .status(),
        200
    );
    other.wait_idle().await;
    // The second orphan is reclaimed once slots are free.
    let outcome = within("a reclaim", async {
        loop {
            match other.step().await {
                StepOutcome::Idle => {}
                o => break o,
            }
        }
    })
    .await;
    assert_eq!(outcome, StepOutcome::Reclaimed(1));
    assert!(matches!(other.step().await, StepOutcome::Replayed(_)));
    upstream.next(LONG).await.send(Step::Json("o".into())).await;
    for client in orphan_clients {
        assert_eq!(
            tokio::time::timeout(LONG, client)
                .await
                .unwrap()
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_running_jobs_takes_no_new_ones_and_releases_past_the_deadline() {
    let redis = TestRedis::start().await;
    let mut upstream = HeldUpstream::start().await;
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;
    let send = |prompt: &'static str| chat_in_background(&gw, prompt, false);

    // 1. A running job finishes after SIGTERM; a job queued after it is left for others.
    let mut w = spawn_switchyard_worker(
        &redis.url,
        &upstream.base_url,
        &["--shutdown-timeout", "20s"],
    );
    let running = send("running");
    let held = upstream.next(LONG).await;
    w.sigterm();
    // Queued only once the worker has stopped taking jobs.
    w.wait_for_log("stopping: no new jobs").await;
    let queued = send("queued");
    upstream.assert_none_for(Duration::from_millis(1500)).await;
    held.send(Step::Json("finished".into())).await;
    let r = tokio::time::timeout(LONG, running).await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(w.wait_exit(Duration::from_secs(10)).await.success());
    // The queued job is taken by the next worker.
    let mut next = spawn_switchyard_worker(
        &redis.url,
        &upstream.base_url,
        &["--shutdown-timeout", "1s"],
    );
    let held = upstream.next(LONG).await;
    assert_eq!(held.prompt(), "queued");

    // 2. Past the deadline the job is stopped (its upstream call closed) and released at once:
    //    another worker takes it well before the 60 s reclaim idle time.
    next.sigterm();
    assert!(next.wait_exit(Duration::from_secs(10)).await.success());
    let mut gone = held.gone;
    tokio::time::timeout(LONG, gone.recv())
        .await
        .expect("upstream call closed");
    let _last = spawn_switchyard_worker(&redis.url, &upstream.base_url, &[]);
    let again = upstream.next(LONG).await;
    assert_eq!(again.prompt(), "queued");
    again.send(Step::Json("finally".into())).await;
    let r = tokio::time::timeout(LONG, queued).await.unwrap().unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "finally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_flush_the_first_event_at_once_crlf_too_and_keys_expire_without_secrets() {
    // Arrange: a worker with a 300 ms coalescing window and the upstream key.
    let redis = TestRedis::start().await;
    let mut upstream = HeldUpstream::start().await;
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;
    let mut cfg = worker_config(&redis.url, &upstream.base_url);
    cfg.stream_flush = Duration::from_millis(300);
    cfg.openai_api_key = Some(WORKER_KEY.to_owned().into());
    let worker = RunningWorker::start(cfg);

    // Act: a streamed request, with the client's own credential.
    let pending = {
        let (c, base) = (gw.client.clone(), gw.base.clone());
        tokio::spawn(async move {
            c.post(format!("{base}/v1/chat/completions"))
                .bearer_auth("sk-gateway-client-secret")
                .json(&chat("dc/m", "crlf please", true))
                .send()
                .await
                .unwrap()
        })
    };
    let held = upstream.next(LONG).await;
    held.send(Step::SseHead).await;
    let mut response = tokio::time::timeout(LONG, pending).await.unwrap().unwrap();
    let event = |text: &str| {
        let chunk = json!({"id":"c","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]});
        Step::Raw(format!("data: {chunk}\r\n\r\n"))
    };
    held.send(event("first ")).await;

    // Assert: the first event arrives while the upstream has written nothing more...
    read_until(&mut response, "first ").await;
    // ...the second, CRLF-framed, arrives by the window's timer with nothing after it...
    held.send(event("second ")).await;
    read_until(&mut response, "second ").await;
    // ...and while the stream runs, its key already expires; no credential is in Redis.
    let keys = redis.keys_with_ttl().await;
    assert!(
        keys.iter()
            .any(|(k, ttl)| k.starts_with("openai-rq:stream:") && *ttl > 0),
        "{keys:?}"
    );
    let dump = redis.dump_text().await;
    assert!(!dump.contains("sk-gateway-client-secret") && !dump.contains(WORKER_KEY));
    let auth = held
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(
        auth.as_deref(),
        Some(format!("Bearer {WORKER_KEY}").as_str())
    );
    held.send(Step::Done).await;
    let rest = response.bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    // Finished: the result stream is gone, nothing lingers without a TTL.
    eventually(LONG, "the result stream is deleted", || async {
        redis.keys_with_ttl().await.iter().all(|(k, ttl)| {
            k == "openai-rq:requests" || *ttl > 0 && !k.starts_with("openai-rq:stream:")
        })
    })
    .await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_first_command_after_redis_lost_its_group_is_a_reclaim_recovers() {
    // Arrange: a worker stepped by hand, reclaiming often, and a gateway in front of it.
    let redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EchoUpstream)
        .mount(&upstream)
        .await;
    let mut cfg = worker_config(&redis.url, &format!("{}/v1", upstream.uri()));
    cfg.reclaim_idle = Duration::from_millis(100);
    let mut worker = Worker::new(cfg).unwrap();
    let gw = spawn_gateway(&redis_routes(&redis.url, "30s")).await;
    let send = |prompt: &'static str| chat_in_background(&gw, prompt, false);
    let first = send("before");
    within("the first job", async {
        while !matches!(worker.step().await, StepOutcome::Replayed(_)) {}
    })
    .await;
    assert_eq!(
        tokio::time::timeout(LONG, first)
            .await
            .unwrap()
            .unwrap()
            .status(),
        200
    );
    worker.wait_idle().await;

    // Act: Redis loses everything (as a restart without persistence does) and the reclaim
    // timer is due, so the next step's first command is XAUTOCLAIM, which meets NOGROUP.
    let mut c = redis.conn().await;
    let () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    eventually(LONG, "the reclaim timer is due", || async {
        worker.reclaim_due()
    })
    .await;
    let after = send("after");

    // Assert: the worker remakes its group and serves the new job.
    within("a job after the group was lost", async {
        while !matches!(worker.step().await, StepOutcome::Replayed(_)) {}
    })
    .await;
    assert_eq!(
        tokio::time::timeout(LONG, after)
            .await
            .unwrap()
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_path_leaves_the_base_url_gets_a_400_and_never_reaches_the_upstream() {
    // Arrange: an inference host that answers anything, and jobs written straight into Redis
    // (whoever can write there can submit jobs) with paths aiming above the worker's base URL.
    let redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("reached"))
        .mount(&upstream)
        .await;
    let mut worker =
        Worker::new(worker_config(&redis.url, &format!("{}/v1", upstream.uri()))).unwrap();
    let mut c = redis.conn().await;
    let job = |id: &str, path: &str, stream: bool| {
        json!({"id": id, "method": "GET", "path": path, "headers": {}, "body_b64": "", "stream": stream})
            .to_string()
    };

    // Act: one non-stream and one stream job, each replayed by a step.
    xadd(&redis, &job("aa11", "/v1/../../admin/x", false)).await;
    assert_eq!(worker.step().await, StepOutcome::Replayed("aa11".into()));
    xadd(&redis, &job("bb22", "/v1/%2e%2e/%2E%2e/admin", true)).await;
    assert_eq!(worker.step().await, StepOutcome::Replayed("bb22".into()));
    worker.wait_idle().await;

    // Assert: the non-stream client reads a 400 in OpenAI's shape...
    let (_, raw): (String, Vec<u8>) = redis::cmd("BLPOP")
        .arg("openai-rq:result:aa11")
        .arg(5)
        .query_async(&mut c)
        .await
        .unwrap();
    let result: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(result["status"], 400, "{result}");
    let body = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        result["body_b64"].as_str().unwrap(),
    )
    .unwrap();
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "invalid_path");
    // ...the stream client a terminal 400 entry...
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("openai-rq:stream:bb22")
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    let last: Vec<u8> = entries.ids.last().unwrap().get("data").unwrap();
    let last: Value = serde_json::from_slice(&last).unwrap();
    assert_eq!(
        (&last["t"], &last["status"]),
        (&json!("error"), &json!(400))
    );
    // ...and the inference host saw nothing, so never the worker's key.
    let reached = upstream.received_requests().await.unwrap();
    assert!(
        reached.is_empty(),
        "{:?}",
        reached
            .iter()
            .map(|r| r.url.to_string())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_raises_when_the_worker_ends_a_stream_with_an_error_after_output() {
    // Arrange: redis, an upstream the test drives, one in-process switchyard worker.
    let redis = TestRedis::start().await;
    let mut upstream = HeldUpstream::start().await;
    let worker = RunningWorker::start(worker_config(&redis.url, &upstream.base_url));

    // Act: openai-rq's Python client asks for a stream; the upstream sends part of the answer
    // and then breaks off mid-body (a chunked body cut short), so the worker ends the stream
    // with an error after output.
    let env = [("REDIS_URL", redis.url.clone())];
    let client = tokio::spawn(async move {
        run_pytest("test_openai_rq_stream_failure.py", &env).await;
    });
    // The job comes once a Python process has imported the SDKs: a bound, not a timing.
    let held = upstream.next(PYTHON_START).await;
    let event = format!(
        "data: {}\n\n",
        json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":"partial "},"finish_reason":null}]})
    );
    held.send(Step::Raw(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            .into(),
    ))
    .await;
    held.send(Step::Raw(format!("{:x}\r\n{event}\r\n", event.len())))
        .await;
    drop(held);

    // Assert: pytest saw the partial text, then `openai.APIError` (its assertions).
    tokio::time::timeout(LONG, client).await.unwrap().unwrap();
    let stats = worker.shutdown().await;
    assert_eq!(stats.failed, 1, "{stats:?}");
}
