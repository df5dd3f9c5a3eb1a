//! Timing headers (llm-proxy's contract), CORS and `/metrics`, as a client, a browser and a
//! Prometheus scraper see them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::auth::{ADMIN_TOKEN, auth_routes};
use crate::support::net::free_port;
use crate::support::python::run_pytest;
use crate::support::{TestGateway, openai_routes, spawn_gateway};

/// How long the fake upstream waits before its response headers.
const DELAY: Duration = Duration::from_millis(300);

fn completion() -> serde_json::Value {
    json!({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
           "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]})
}

const STREAM: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n";

fn unix_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

fn header_ns(response: &reqwest::Response, name: &str) -> i128 {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", response.headers()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn header_time(response: &reqwest::Response, name: &str) -> time::OffsetDateTime {
    let text = response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", response.headers()))
        .to_str()
        .unwrap();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// What `llm-proxy benchmark` computes from one answer: (upstream, proxy) latency.
struct Split {
    upstream: i128,
    proxy: i128,
    /// The upstream send, after the client's send.
    start_after_send: i128,
}

/// Sends `body` as llm-proxy does: its clock read just before the send, and again when the
/// response headers are in.
async fn timed_chat(gw: &TestGateway, body: serde_json::Value) -> (reqwest::Response, Split) {
    let sent = unix_ns();
    let response = gw.post_json("/v1/chat/completions", &body).await;
    let arrived = unix_ns();
    let start = header_ns(&response, "x-upstream-request-start");
    let stop = header_ns(&response, "x-upstream-request-stop");
    let split = Split {
        upstream: stop - start,
        proxy: (start - sent) + (arrived - stop),
        start_after_send: start - sent,
    };
    (response, split)
}

fn assert_split(split: &Split, what: &str) {
    let delay = DELAY.as_nanos() as i128;
    assert!(
        split.upstream >= delay,
        "{what}: upstream {} < the delay",
        split.upstream
    );
    assert!(split.proxy >= 0, "{what}: proxy time {} < 0", split.proxy);
    assert!(
        split.proxy < delay,
        "{what}: proxy time {} counts the upstream's",
        split.proxy
    );
}

#[tokio::test]
async fn llm_proxys_formula_splits_the_upstreams_delay_from_the_gateways_time() {
    // Arrange: an upstream that takes DELAY before its headers, for a body, a stream and an
    // error.
    let upstream = MockServer::start().await;
    for (model, reply) in [
        (
            "plain",
            ResponseTemplate::new(200).set_body_json(completion()),
        ),
        (
            "stream",
            ResponseTemplate::new(200).set_body_raw(STREAM, "text/event-stream"),
        ),
        (
            "broken",
            ResponseTemplate::new(503)
                .set_body_json(json!({"error":{"message":"busy","type":"server_error"}})),
        ),
    ] {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(wiremock::matchers::body_partial_json(
                json!({"model": model}),
            ))
            .respond_with(reply.set_delay(DELAY))
            .mount(&upstream)
            .await;
    }
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;
    let ask = |model: &str, stream: bool| {
        json!({"model": format!("up/{model}"), "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    };

    // Act + Assert: each answer relayed from the upstream carries the upstream pair.
    let (response, split) = timed_chat(&gw, ask("plain", false)).await;
    assert_eq!(response.status(), 200);
    assert_split(&split, "plain");
    let server_timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        server_timing.starts_with("upstream;dur=") && server_timing.contains(", gateway;dur="),
        "{server_timing}"
    );
    assert!(response.headers().get("x-proxy-received-at").is_none());

    let (response, split) = timed_chat(&gw, ask("stream", true)).await;
    assert_eq!(response.status(), 200);
    assert_split(&split, "stream");
    assert!(response.text().await.unwrap().contains("[DONE]"));

    let (response, split) = timed_chat(&gw, ask("broken", false)).await;
    assert_eq!(
        response.status(),
        503,
        "the upstream's error passes through"
    );
    assert_split(&split, "upstream error");
}

#[tokio::test]
async fn after_failover_the_timing_is_the_answering_attempts() {
    // Arrange: the first backend fails after DELAY, the second answers at once.
    let (slow_fail, quick) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_delay(DELAY))
        .mount(&slow_fail)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion()))
        .mount(&quick)
        .await;
    let routes = format!(
        r#"
[backends.a]
kind = "openai"
base_url = "{}/v1"
[backends.b]
kind = "openai"
base_url = "{}/v1"
[[routes]]
prefix = "m/"
backend = "a"
fallback = ["b"]
"#,
        slow_fail.uri(),
        quick.uri()
    );
    let gw = spawn_gateway(&routes).await;

    // Act
    let (response, split) = timed_chat(
        &gw,
        json!({"model": "m/x", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;

    // Assert: b answered, and its send came after a's whole failed attempt.
    assert_eq!(response.status(), 200);
    assert!(
        split.start_after_send >= DELAY.as_nanos() as i128,
        "the start is the failed attempt's, not the answering one's"
    );
    assert!(split.proxy >= 0);
}

#[tokio::test]
async fn the_gateways_own_answers_carry_when_it_received_and_answered_them() {
    let gw = spawn_gateway(&openai_routes("http://127.0.0.1:9/v1", "")).await;
    for (body, status) in [
        (
            json!({"model": "echo/hello", "messages": [{"role": "user", "content": "hi"}]}),
            200,
        ),
        (
            json!({"model": "nobody/knows", "messages": [{"role": "user", "content": "hi"}]}),
            404,
        ),
    ] {
        let before = time::OffsetDateTime::now_utc();
        let response = gw.post_json("/v1/chat/completions", &body).await;
        let after = time::OffsetDateTime::now_utc();
        assert_eq!(response.status(), status);
        let received = header_time(&response, "x-proxy-received-at");
        let answered = header_time(&response, "x-proxy-final-response-at");
        assert!(before <= received && received <= answered && answered <= after);
        assert!(response.headers().get("x-upstream-request-start").is_none());
        let server_timing = response.headers()["server-timing"].to_str().unwrap();
        assert!(server_timing.starts_with("gateway;dur="), "{server_timing}");
    }
}

#[tokio::test]
async fn a_client_sent_timing_header_is_neither_forwarded_upstream_nor_echoed() {
    // Arrange
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion()))
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;
    let forged = [
        ("x-upstream-request-start", "1"),
        ("x-upstream-request-stop", "2"),
        ("x-proxy-received-at", "1999-01-01T00:00:00Z"),
        ("x-proxy-final-response-at", "1999-01-01T00:00:00Z"),
        ("server-timing", "upstream;dur=0"),
    ];
    for model in ["up/gpt-4o", "echo/hello"] {
        let mut request = gw
            .client
            .post(format!("{}/v1/chat/completions", gw.base))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}));
        for (name, value) in forged {
            request = request.header(name, value);
        }

        // Act
        let response = request.send().await.unwrap();

        // Assert: the gateway's own values, never the client's.
        assert_eq!(response.status(), 200);
        for (name, value) in forged {
            for seen in response.headers().get_all(name) {
                assert_ne!(seen.to_str().unwrap(), value, "{model}: {name} echoed");
            }
        }
    }
    let received = upstream.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    for (name, _) in forged {
        assert!(
            !received[0].headers.contains_key(name),
            "{name} forwarded upstream"
        );
    }
}

fn cors_routes(origins: &str) -> String {
    format!(
        "[server.cors]\nallowed_origins = {origins}\n{}",
        openai_routes("http://127.0.0.1:9/v1", "")
    )
}

async fn preflight(gw: &TestGateway, origin: &str) -> reqwest::Response {
    gw.client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/chat/completions", gw.base),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_listed_origin_is_granted_before_any_key_and_a_spoofed_one_gets_nothing() {
    // Arrange: keys on, one allowed origin.
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("cors.db").display());
    let routes = auth_routes(&store, "http://127.0.0.1:9/v1").replacen(
        "[store]",
        "[server.cors]\nallowed_origins = [\"https://app.example\"]\n\n[store]",
        1,
    );
    let gw = spawn_gateway(&routes).await;

    // Act + Assert: the preflight needs no key.
    let granted = preflight(&gw, "https://app.example").await;
    assert_eq!(granted.status(), 200);
    let headers = granted.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    assert!(headers["vary"].to_str().unwrap().contains("Origin"));

    // An actual request from the listed origin (refused for want of a key, still readable).
    let answer = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("origin", "https://app.example")
        .json(&json!({"model": "echo/hello", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in [
        "x-request-id",
        "x-ratelimit-remaining-requests",
        "retry-after",
        "x-upstream-request-start",
        "x-proxy-received-at",
        "server-timing",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    assert!(
        answer.headers()["vary"]
            .to_str()
            .unwrap()
            .contains("Origin")
    );

    // A spoofed origin: no grant on the preflight nor on the request.
    for spoofed in [
        "https://evil.example",
        "https://app.example.evil.example",
        "null",
    ] {
        let refused = preflight(&gw, spoofed).await;
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{spoofed}"
        );
        let answer = gw
            .client
            .get(format!("{}/health", gw.base))
            .header("origin", spoofed)
            .send()
            .await
            .unwrap();
        assert!(
            answer
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{spoofed}"
        );
    }
}

#[tokio::test]
async fn without_server_cors_no_origin_is_granted() {
    let gw = spawn_gateway(&openai_routes("http://127.0.0.1:9/v1", "")).await;
    let response = preflight(&gw, "https://app.example").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn any_origin_is_granted_with_a_wildcard() {
    let gw = spawn_gateway(&cors_routes("[\"*\"]")).await;
    let response = preflight(&gw, "https://anywhere.example").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn a_page_on_another_origin_streams_a_chat_through_cors_in_headless_chromium() {
    let chromium =
        std::env::var("SWITCHYARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing (CI={}): install Debian's chromium (scripts/test.sh does)",
        std::env::var("CI").unwrap_or_default()
    );
    // The page's origin: another loopback port, which the page's own server binds.
    let page_origin = format!("http://127.0.0.1:{}", free_port());
    let gw = spawn_gateway(&cors_routes(&format!("[\"{page_origin}\"]"))).await;
    run_pytest(
        "test_cors_page.py",
        &[
            ("SWITCHYARD_BASE", gw.base.clone()),
            ("SWITCHYARD_CHROMIUM", chromium),
            ("SWITCHYARD_PAGE_ORIGIN", page_origin),
        ],
    )
    .await;
}

fn metrics_routes() -> String {
    format!("[metrics]\n{}", openai_routes("http://127.0.0.1:9/v1", ""))
}

#[tokio::test]
async fn a_scrape_after_a_known_load_counts_exactly_what_was_sent() {
    let gw = spawn_gateway(&metrics_routes()).await;
    run_pytest("test_metrics.py", &[("SWITCHYARD_BASE", gw.base.clone())]).await;
}

#[tokio::test]
async fn metrics_on_their_own_listener_leave_the_main_one() {
    let port = free_port();
    let gw = spawn_gateway(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n{}",
        openai_routes("http://127.0.0.1:9/v1", "")
    ))
    .await;
    assert_eq!(gw.get("/metrics").await.status(), 404);
    gw.post_json(
        "/v1/chat/completions",
        &json!({"model": "echo/hello", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let scrape = gw
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    assert!(
        text.contains(r#"switchyard_requests_total{route="echo/",backend="echo",status="200"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn with_auth_a_scrape_on_the_main_listener_needs_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("m.db").display());
    let gw = spawn_gateway(&format!(
        "[metrics]\n{}",
        auth_routes(&store, "http://127.0.0.1:9/v1")
    ))
    .await;
    assert_eq!(gw.get("/metrics").await.status(), 401);
    let scrape = gw
        .client
        .get(format!("{}/metrics", gw.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().ends_with("# EOF\n"));
}

#[tokio::test]
async fn without_metrics_there_is_no_metrics_path() {
    let gw = spawn_gateway(&openai_routes("http://127.0.0.1:9/v1", "")).await;
    assert_eq!(gw.get("/metrics").await.status(), 404);
}

#[test]
fn check_locates_an_origin_a_browser_would_never_send_and_a_bad_metrics_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(
        &file,
        "[server.cors]\nallowed_origins = [\"https://app.example/\", \"https://ok.example\"]\n\n[metrics]\nlisten = \"localhost\"\n\n[backends.e]\nkind = \"echo\"\n\n[[routes]]\nprefix = \"\"\nbackend = \"e\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(&file)
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "routes.toml");
    assert!(!out.status.success());
    assert!(
        stderr.contains("routes.toml:2:20: `allowed_origins`: `https://app.example/` must be written as a browser sends it: `https://app.example`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes.toml:5:10: `[metrics] listen` must be an address"),
        "{stderr}"
    );
    assert!(!stderr.contains("ok.example"), "{stderr}");
}

#[tokio::test]
async fn the_worker_serves_its_job_counts_on_its_own_metrics_listener() {
    use crate::support::redis::{TestRedis, redis_routes, spawn_switchyard_worker};
    use crate::support::wait::eventually;
    // Arrange: a real Redis, an upstream, the worker as a process with --metrics-listen, and a
    // gateway queueing jobs for it (with its own metrics on).
    let redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion()))
        .mount(&upstream)
        .await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _worker = spawn_switchyard_worker(
        &redis.url,
        &format!("{}/v1", upstream.uri()),
        &["--metrics-listen", &listen],
    );
    let gw = spawn_gateway(&format!("[metrics]\n{}", redis_routes(&redis.url, "20s"))).await;

    // Act
    for _ in 0..2 {
        let response = gw
            .post_json(
                "/v1/chat/completions",
                &json!({"model": "dc/m", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("x-upstream-request-start"));
    }

    // Assert: the worker counts both jobs; the gateway counts both requests on its backend.
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/metrics");
    eventually(
        Duration::from_secs(20),
        "the worker's metrics count 2 jobs",
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let Ok(response) = client.get(&url).send().await else {
                    return false;
                };
                let text = response.text().await.unwrap_or_default();
                text.contains(r#"switchyard_worker_jobs_total{outcome="answered_2xx"} 2"#)
                    && text.contains("switchyard_worker_dead_lettered_jobs_total 0")
            }
        },
    )
    .await;
    let scrape = gw.get("/metrics").await.text().await.unwrap();
    assert!(
        scrape.contains(r#"switchyard_requests_total{route="dc/",backend="dc",status="200"} 2"#),
        "{scrape}"
    );
}

#[tokio::test]
async fn tokens_and_rate_limit_refusals_reach_the_metrics() {
    // Arrange: an upstream reporting usage, a route allowing 2 requests a minute, metrics on.
    let upstream = MockServer::start().await;
    let mut answer = completion();
    answer["usage"] = json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                             "prompt_tokens_details": {"cached_tokens": 2}});
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&upstream)
        .await;
    let routes = format!(
        "[metrics]\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n\n[[routes]]\n\
         prefix = \"up/\"\nbackend = \"up\"\nmodels = [\"gpt-4o\"]\n\
         rate_limit = {{ requests_per_minute = 2 }}\n",
        upstream.uri()
    );
    let gw = spawn_gateway(&routes).await;

    // Act: two answered requests, a third refused by the limit.
    let body = json!({"model": "up/gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let statuses = [
        gw.post_json("/v1/chat/completions", &body).await.status(),
        gw.post_json("/v1/chat/completions", &body).await.status(),
        gw.post_json("/v1/chat/completions", &body).await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 200, 429]);

    // Assert: the answers' tokens by kind, and the refusal, are in the scrape.
    let text = gw.get("/metrics").await.text().await.unwrap();
    for line in [
        r#"switchyard_tokens_total{project="-",model="up/gpt-4o",kind="prompt"} 14"#,
        r#"switchyard_tokens_total{project="-",model="up/gpt-4o",kind="completion"} 6"#,
        r#"switchyard_tokens_total{project="-",model="up/gpt-4o",kind="cached"} 4"#,
        r#"switchyard_rate_limited_requests_total{project="-",limit="requests_per_minute"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}
