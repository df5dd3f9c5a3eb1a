//! Every failure a client can see, as an OpenAI error body with the right status.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::net::free_port;
use crate::support::{openai_routes, spawn_gateway};

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    for key in ["message", "type", "param", "code"] {
        assert!(
            body["error"].get(key).is_some(),
            "error body lacks `{key}`: {body}"
        );
    }
    (status, body)
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages":[{"role":"user","content":"hi"}]})
}

#[tokio::test]
async fn an_unknown_model_is_404_model_not_found() {
    let gw = spawn_gateway(&openai_routes("http://127.0.0.1:9/v1", "")).await;
    let (status, body) = error_of(
        gw.post_json("/v1/chat/completions", &chat("nobody/knows"))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nobody/knows")
    );
}

#[tokio::test]
async fn malformed_json_and_schema_violations_are_400_naming_the_field() {
    let gw = spawn_gateway(&openai_routes("http://127.0.0.1:9/v1", "")).await;
    let response = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("content-type", "application/json")
        .body("{\"model\": \"echo/x\", \"messages\": [")
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    let (status, body) = error_of(
        gw.post_json("/v1/chat/completions", &json!({"model":"echo/x","messages":[{"role":"user","content":"x"}],"temperature":"warm"}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "temperature");

    let (status, body) = error_of(
        gw.post_json("/v1/chat/completions", &json!({"messages":[]}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("model"),
        "{body}"
    );

    let (status, body) = error_of(
        gw.post_json("/v1/embeddings", &json!({"model":"echo/x","input":{"a":1}}))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("input"))
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let routes = format!(
        "[server]\nmax_body_bytes = 1024\n{}",
        openai_routes("http://127.0.0.1:9/v1", "")
    );
    let gw = spawn_gateway(&routes).await;
    let big = "x".repeat(4096);
    let (status, body) = error_of(gw.post_json("/v1/chat/completions", &chat(&big)).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn upstream_errors_pass_through_with_status_body_and_rate_limit_headers() {
    // Arrange
    let upstream = MockServer::start().await;
    let upstream_body = json!({"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}});
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(upstream_body.clone())
                .insert_header("retry-after", "7")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "7s"),
        )
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;

    // Act
    let response = gw
        .post_json("/v1/chat/completions", &chat("up/gpt-4o"))
        .await;

    // Assert
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
    assert_eq!(response.headers()["x-ratelimit-reset-requests"], "7s");
    assert_eq!(response.json::<Value>().await.unwrap(), upstream_body);
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_and_a_slow_one_504() {
    let gw = spawn_gateway(&openai_routes(
        &format!("http://127.0.0.1:{}/v1", free_port()),
        "",
    ))
    .await;
    let (status, body) = error_of(
        gw.post_json("/v1/chat/completions", &chat("up/gpt-4o"))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_unreachable"))
    );

    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(
        &format!("{}/v1", upstream.uri()),
        "request_timeout = \"300ms\"",
    ))
    .await;
    let (status, body) = error_of(
        gw.post_json("/v1/chat/completions", &chat("up/gpt-4o"))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
}

#[tokio::test]
async fn unknown_paths_are_404_in_openai_shape_and_requests_carry_an_id() {
    let gw = spawn_gateway(&openai_routes("http://127.0.0.1:9/v1", "")).await;
    let response = gw.get("/v2/whatever").await;
    assert!(response.headers().contains_key("x-request-id"));
    let (status, body) = error_of(response).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_url"))
    );
}

#[tokio::test]
async fn an_upstream_error_body_too_large_to_hold_is_a_502_not_unbounded_memory() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("x".repeat(5 * 1024 * 1024)))
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;
    let (status, body) = error_of(
        gw.post_json("/v1/chat/completions", &chat("up/gpt-4o"))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_protocol_error"))
    );
}

#[tokio::test]
async fn an_unreachable_backend_with_a_password_in_its_url_is_reported_without_it() {
    // Arrange
    let base = format!("http://user:hunter2@127.0.0.1:{}/v1", free_port());
    let gw = spawn_gateway(&openai_routes(&base, "api_key = \"sk-backend-secret\"")).await;

    // Act: a typed endpoint and a pass-through one.
    let chat = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"up/gpt-4o","messages":[{"role":"user","content":"hi"}]}),
        )
        .await;
    let raw = gw
        .post_json("/v1/responses", &json!({"model":"up/gpt-4o","input":"hi"}))
        .await;

    // Assert: 502s that say why, and carry no credential.
    for response in [chat, raw] {
        assert_eq!(response.status(), 502);
        let body = response.text().await.unwrap();
        assert!(body.contains("upstream_unreachable"), "{body}");
        assert!(
            !body.contains("hunter2") && !body.contains("sk-backend-secret"),
            "{body}"
        );
    }
}
