//! Non-streamed chat and embeddings through the `openai` backend against a wiremock upstream.

use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{chat_body, openai_routes, spawn_gateway};

fn completion_body() -> serde_json::Value {
    json!({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",
           "choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
           "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}})
}

#[tokio::test]
async fn extra_body_fields_reach_the_upstream_byte_for_byte_with_only_the_model_rewritten() {
    // Arrange
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body()))
        .expect(1)
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;
    let sent = r#"{"model":"up/gpt-4o",  "messages":[{"role":"user","content":"hi"}],"guided_json":{"type":"object","properties":{"a":{"type":"integer"}}},"top_k":7,"chat_template_kwargs":{"enable_thinking":false}}"#;

    // Act
    let response = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, completion_body(), "upstream body relayed unchanged");
    let received = upstream.received_requests().await.unwrap();
    let expected = sent.replacen(r#""up/gpt-4o""#, r#""gpt-4o""#, 1);
    assert_eq!(String::from_utf8_lossy(&received[0].body), expected);
}

#[tokio::test]
async fn a_route_without_strip_prefix_forwards_the_clients_bytes_untouched() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body()))
        .mount(&upstream)
        .await;
    let routes = format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\n[[routes]]\nprefix = \"vllm/\"\nbackend = \"up\"\nstrip_prefix = false\n",
        upstream.uri()
    );
    let gw = spawn_gateway(&routes).await;
    let sent = "{\n  \"model\": \"vllm/qwen\",\n  \"messages\": [{\"role\":\"user\",\"content\":\"x\"}]\n}";
    let response = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = upstream.received_requests().await.unwrap();
    assert_eq!(received[0].body, sent.as_bytes());
}

#[tokio::test]
async fn the_backend_key_replaces_the_clients_and_hop_by_hop_headers_stay_behind() {
    // Arrange
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-backend"))
        .and(header("openai-organization", "org-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body()))
        .expect(1)
        .mount(&upstream)
        .await;
    let keys = "api_key = \"sk-backend\"\nheaders = { \"OpenAI-Organization\" = \"org-1\" }";
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), keys)).await;

    // Act
    let response = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("authorization", "Bearer sk-client")
        .header("x-custom", "kept")
        .header("proxy-authorization", "Basic secret")
        .header("te", "trailers")
        .json(&json!({"model":"up/gpt-4o","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 200);
    let received = &upstream.received_requests().await.unwrap()[0];
    assert_eq!(received.headers["x-custom"], "kept");
    assert!(received.headers.get("proxy-authorization").is_none());
    assert!(received.headers.get("te").is_none());
    let host = received.headers["host"].to_str().unwrap();
    assert_ne!(
        host,
        gw.addr.to_string(),
        "the client's Host is not forwarded"
    );
}

#[tokio::test]
async fn the_upstream_gets_the_host_of_its_base_url_unless_the_backend_sets_one() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body()))
        .mount(&upstream)
        .await;
    let base = format!("{}/v1", upstream.uri());
    let authority = upstream.uri().trim_start_matches("http://").to_owned();
    for (keys, expected) in [
        ("", authority.as_str()),
        (
            "headers = { \"Host\" = \"models.internal\" }",
            "models.internal",
        ),
    ] {
        let gw = spawn_gateway(&openai_routes(&base, keys)).await;
        let response = gw
            .post_json("/v1/chat/completions", &chat_body("up/gpt-4o", "hi", false))
            .await;
        assert_eq!(response.status(), 200);
        let received = upstream.received_requests().await.unwrap();
        let last = received.last().unwrap();
        assert_eq!(last.headers["host"], expected, "{keys}");
        assert_eq!(last.headers.get_all("host").iter().count(), 1, "{keys}");
    }
}

#[tokio::test]
async fn headers_named_by_connection_stay_behind_in_both_directions() {
    // Arrange: an upstream whose `Connection` names one of its own response headers.
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion_body())
                .insert_header("connection", "x-upstream-hop")
                .insert_header("x-upstream-hop", "internal")
                .insert_header("x-upstream-kept", "yes"),
        )
        .expect(1)
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;

    // Act: a client whose `Connection` names two of its request headers.
    let response = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .header("connection", "keep-alive, X-Client-Hop")
        .header("connection", "x-other-hop")
        .header("x-client-hop", "for the gateway only")
        .header("x-other-hop", "also")
        .header("x-client-kept", "yes")
        .json(&json!({"model":"up/gpt-4o","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-upstream-hop").is_none());
    assert_eq!(response.headers()["x-upstream-kept"], "yes");
    let received = &upstream.received_requests().await.unwrap()[0];
    assert!(received.headers.get("x-client-hop").is_none());
    assert!(received.headers.get("x-other-hop").is_none());
    assert_eq!(received.headers["x-client-kept"], "yes");
}

#[tokio::test]
async fn without_a_backend_key_the_clients_authorization_passes_through() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-client"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion_body()))
        .expect(1)
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;
    let response = gw
        .client
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth("sk-client")
        .json(&json!({"model":"up/gpt-4o","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn embeddings_are_routed_with_the_model_rewritten() {
    let upstream = MockServer::start().await;
    let answer = json!({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,0.25]}],
                        "model":"text-embedding-3-small","usage":{"prompt_tokens":1,"total_tokens":1}});
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(body_json(
            json!({"model":"text-embedding-3-small","input":["a"],"dimensions":2}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
        .expect(1)
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&openai_routes(&format!("{}/v1", upstream.uri()), "")).await;
    let response = gw
        .post_json(
            "/v1/embeddings",
            &json!({"model":"up/text-embedding-3-small","input":["a"],"dimensions":2}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), answer);
}
