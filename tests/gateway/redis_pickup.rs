//! `pickup_timeout`: a route whose Redis workers are all gone fails over, and the job it gave
//! up on is withdrawn from the queue so that it never runs when a worker comes back.

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::support::faulty::{Fault, FaultyUpstream};
use crate::support::redis::{RunningWorker, TestRedis, worker_config};
use crate::support::{spawn_gateway, sse_payloads, stream_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_whose_workers_are_all_stopped_fails_over_and_the_withdrawn_job_never_runs() {
    // Arrange: a worker fleet that existed (its consumer group is there) and has stopped.
    let redis = TestRedis::start().await;
    let upstream = FaultyUpstream::start("behind-redis", Fault::Healthy).await;
    let worker = RunningWorker::start(worker_config(&redis.url, &upstream.base_url));
    let mut conn = redis.conn().await;
    crate::support::wait::eventually(
        std::time::Duration::from_secs(10),
        "the worker created its group",
        || {
            let mut conn = conn.clone();
            async move {
                let groups: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg("openai-rq:requests")
                    .query_async(&mut conn)
                    .await;
                matches!(groups, Ok(redis::Value::Array(g)) if !g.is_empty())
            }
        },
    )
    .await;
    worker.shutdown().await;
    let gw = spawn_gateway(&format!(
        r#"
[backends.dc]
kind = "redis"
redis_url = "{}"
timeout = "60s"
pickup_timeout = "300ms"
[backends.echo]
kind = "echo"
[[routes]]
prefix = "dc/"
backend = "dc"
fallback = ["echo"]
"#,
        redis.url
    ))
    .await;
    let ask = |stream: bool| {
        json!({"model": "dc/m", "stream": stream,
               "messages": [{"role": "user", "content": "is anyone there"}]})
    };

    // Act: with nobody taking jobs, plain and streamed requests.
    let plain: Value = gw
        .post_json("/v1/chat/completions", &ask(false))
        .await
        .json()
        .await
        .unwrap();
    let streamed = sse_payloads(gw.post_json("/v1/chat/completions", &ask(true)).await).await;

    // Assert: the fallback (echo) answered both, and no job is left in the queue.
    assert_eq!(plain["choices"][0]["message"]["content"], "is anyone there");
    assert_eq!(stream_text(&streamed), "is anyone there");
    let queued: usize = conn.xlen("openai-rq:requests").await.unwrap();
    assert_eq!(queued, 0, "a withdrawn job is still queued");

    // Act: a worker comes back; the next request is served through it.
    let worker = RunningWorker::start(worker_config(&redis.url, &upstream.base_url));
    let served: Value = gw
        .post_json("/v1/chat/completions", &ask(false))
        .await
        .json()
        .await
        .unwrap();

    // Assert: only that request reached the inference server; the withdrawn two never ran.
    assert_eq!(
        served["choices"][0]["message"]["content"],
        "answer from behind-redis"
    );
    let stats = worker.shutdown().await;
    assert_eq!(stats.answered_2xx, 1, "{stats:?}");
    assert_eq!(upstream.hits(), 1);
}
