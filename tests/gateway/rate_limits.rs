//! Rate limits per caller (issue 15): the SDK's `RateLimitError` with OpenAI's headers, tokens
//! charged from the answers' usage, an upstream's own 429 untouched, and one budget shared by
//! two gateway instances through one real Redis.

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::python::run_pytest;
use crate::support::redis::TestRedis;
use crate::support::{TestGateway, spawn_gateway};

async fn chat(gw: &TestGateway, model: &str) -> reqwest::Response {
    gw.post_json(
        "/v1/chat/completions",
        &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
}

#[tokio::test]
async fn the_python_sdk_gets_rate_limit_error_with_the_headers_openai_sends() {
    // Arrange: `limited/` allows 2 requests a minute; `busy/`'s upstream is itself limiting.
    let busy = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-limit-requests", "500")
                .insert_header("retry-after", "7")
                .set_body_json(json!({"error": {"message": "upstream says slow down",
                    "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
        )
        .mount(&busy)
        .await;
    let gw = spawn_gateway(&format!(
        r#"
[backends.echo]
kind = "echo"

[backends.busy]
kind = "openai"
base_url = "{}"

[[routes]]
prefix = "limited/"
backend = "echo"
rate_limit = {{ requests_per_minute = 2 }}

[[routes]]
prefix = "busy/"
backend = "busy"
"#,
        busy.uri()
    ))
    .await;

    // Act + Assert (in Python)
    run_pytest(
        "test_rate_limits.py",
        &[("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base))],
    )
    .await;
}

#[tokio::test]
async fn tokens_are_charged_from_the_answers_usage_until_the_minutes_budget_is_spent() {
    // Arrange: each answer reports 18 tokens; the route allows 20 a minute.
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id":"c",
            "object":"chat.completion","created":1,"model":"m","choices":[],
            "usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}})))
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&format!(
        r#"
[backends.up]
kind = "openai"
base_url = "{}"

[[routes]]
prefix = "up/"
backend = "up"
rate_limit = {{ tokens_per_minute = 20 }}
"#,
        upstream.uri()
    ))
    .await;

    // Act: the first answer leaves 2 tokens: a request is still admitted, and overdraws.
    let first = chat(&gw, "up/m").await;
    let second = chat(&gw, "up/m").await;
    let third = chat(&gw, "up/m").await;

    // Assert
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-remaining-tokens"], "20");
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["x-ratelimit-remaining-tokens"], "2");
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["x-ratelimit-limit-tokens"], "20");
    assert_eq!(third.headers()["x-ratelimit-remaining-tokens"], "0");
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens_per_minute")
    );
    assert_eq!(upstream.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_one_redis_enforce_one_budget() {
    // Arrange: two gateways, one Redis, 5 requests a minute on `limited/`.
    let redis = TestRedis::start().await;
    let routes = format!(
        r#"
[limits]
redis_url = "{}"

[backends.echo]
kind = "echo"

[[routes]]
prefix = "limited/"
backend = "echo"
rate_limit = {{ requests_per_minute = 5 }}
"#,
        redis.url
    );
    let a = spawn_gateway(&routes).await;
    let b = spawn_gateway(&routes).await;

    // Act: 10 requests, alternating between the instances.
    let mut statuses = Vec::new();
    for i in 0..10 {
        let gw = if i % 2 == 0 { &a } else { &b };
        statuses.push(chat(gw, "limited/hi").await.status().as_u16());
    }

    // Assert: 5 answered in total, not 5 per instance.
    let answered = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((answered, refused), (5, 5), "{statuses:?}");
    let last = chat(&b, "limited/hi").await;
    assert_eq!(last.headers()["x-ratelimit-remaining-requests"], "0");
    assert!(last.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn limits_set_through_the_admin_api_bind_a_projects_keys_together_and_bogus_ones_are_refused()
{
    // Arrange: keys on; a project with two keys.
    use crate::support::auth::auth_routes;
    use reqwest::Method;
    let gw = spawn_gateway(&auth_routes("sqlite://keys.db", "http://127.0.0.1:9")).await;
    let project = gw.create_project("team", &["echo/"]).await;
    let (_, a) = gw.create_key(&project, json!({})).await;
    let (b_id, b) = gw.create_key(&project, json!({})).await;

    // Act: 3 requests a minute for the whole project.
    let limit = format!("/projects/{project}/rate_limit");
    let (status, body) = gw
        .admin(Method::PUT, &limit, Some(json!({"requests_per_minute": 3})))
        .await;
    assert_eq!((status, body), (200, json!({"requests_per_minute": 3})));
    let statuses = [
        gw.chat_as(&a, "echo/hi").await,
        gw.chat_as(&a, "echo/hi").await,
        gw.chat_as(&b, "echo/hi").await,
        gw.chat_as(&b, "echo/hi").await,
        gw.chat_as(&a, "echo/hi").await,
    ];

    // Assert: the keys drew on one budget.
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // A key's own limit applies on top; `{}` removes the project's.
    let (status, _) = gw.admin(Method::PUT, &limit, Some(json!({}))).await;
    assert_eq!(status, 200);
    assert_eq!(gw.chat_as(&b, "echo/hi").await, 200);
    let key_limit = format!("/keys/{b_id}/rate_limit");
    let (status, _) = gw
        .admin(
            Method::PUT,
            &key_limit,
            Some(json!({"requests_per_minute": 1})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(gw.chat_as(&b, "echo/hi").await, 200);
    assert_eq!(gw.chat_as(&b, "echo/hi").await, 429);
    assert_eq!(gw.chat_as(&a, "echo/hi").await, 200);

    // Hostile values: each a 400 naming the field (or 404 for no such key).
    for (body, param) in [
        (
            json!({"requests_per_minute": -1}),
            json!("requests_per_minute"),
        ),
        (
            json!({"tokens_per_minute": 60_000_001}),
            json!("tokens_per_minute"),
        ),
        (json!({"max_concurrent": 0}), json!("max_concurrent")),
        (
            json!({"requests_per_minute": 1e30}),
            json!("requests_per_minute"),
        ),
        (
            json!({"requests_per_minute": 18446744073709551615u64}),
            json!("requests_per_minute"),
        ),
    ] {
        let (status, error) = gw.admin(Method::PUT, &key_limit, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
    }
    let (status, _) = gw
        .admin(Method::PUT, &key_limit, Some(json!({"per_hour": 5})))
        .await;
    assert_eq!(status, 400);
    let (status, _) = gw
        .admin(Method::PUT, "/keys/no-such-key/rate_limit", Some(json!({})))
        .await;
    assert_eq!(status, 404);
    // The refused values changed nothing: b is still at 1 a minute, and spent.
    assert_eq!(gw.chat_as(&b, "echo/hi").await, 429);
}

#[tokio::test]
async fn a_limits_redis_that_never_answers_or_is_gone_admits_requests_after_its_timeout() {
    // Arrange: one "Redis" that accepts connections and never answers, one port with nothing
    // behind it; each route's budget of 1 a minute lives in one of them.
    use crate::support::net::free_port;
    use crate::support::wait::within;
    use std::time::Duration;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    let routes = |port: u16| {
        format!(
            r#"
[limits]
redis_url = "redis://127.0.0.1:{port}/0"

[backends.echo]
kind = "echo"

[[routes]]
prefix = "limited/"
backend = "echo"
rate_limit = {{ requests_per_minute = 1 }}
"#
        )
    };
    let hung = spawn_gateway(&routes(silent_port)).await;
    let gone = spawn_gateway(&routes(free_port())).await;

    // Act + assert: every request is answered (the limits cannot be read, so nothing is
    // refused: failing open is the documented choice), within the Redis timeout's bound.
    for gw in [&hung, &gone] {
        for _ in 0..2 {
            let answer = within(Duration::from_secs(10), "an answer", chat(gw, "limited/hi")).await;
            assert_eq!(answer.status(), 200);
            assert!(
                !answer
                    .headers()
                    .contains_key("x-ratelimit-remaining-requests")
            );
        }
    }
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_by_one_budget_counts_against_none_here_and_in_redis() {
    // Arrange: a key allowed 2 requests a minute; `narrow/` allows 1 per key, `wide/` has no
    // limit of its own. Once with budgets in this process, once in a real Redis.
    use crate::support::auth::auth_routes;
    let redis = TestRedis::start().await;
    for shared in [false, true] {
        let limits = if shared {
            format!("[limits]\nredis_url = \"{}\"\n", redis.url)
        } else {
            String::new()
        };
        let routes = format!(
            "{limits}{}\n[[routes]]\nprefix = \"narrow/\"\nbackend = \"echo\"\n\
             rate_limit = {{ requests_per_minute = 1 }}\n\n[[routes]]\nprefix = \"wide/\"\nbackend = \"echo\"\n",
            auth_routes("sqlite://keys.db", "http://127.0.0.1:9")
        );
        let gw = spawn_gateway(&routes).await;
        let project = gw.create_project("team", &["narrow/", "wide/"]).await;
        let (key_id, key) = gw.create_key(&project, json!({})).await;
        let path = format!("/keys/{key_id}/rate_limit");
        let limit = json!({"requests_per_minute": 2});
        assert_eq!(
            gw.admin(reqwest::Method::PUT, &path, Some(limit)).await.0,
            200
        );

        // Act: `narrow/` twice (its second is refused by the route's budget), then `wide/`.
        let statuses = [
            gw.chat_as(&key, "narrow/hi").await,
            gw.chat_as(&key, "narrow/hi").await,
            gw.chat_as(&key, "wide/hi").await,
            gw.chat_as(&key, "wide/hi").await,
        ];

        // Assert: the refused request did not use the key's budget: `wide/` gets its second.
        assert_eq!(statuses, [200, 429, 200, 429], "shared in Redis: {shared}");
    }
}
