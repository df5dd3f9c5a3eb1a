//! Raw relay of endpoints the gateway does not model, to `proxy` (and `openai`) backends.

use serde_json::{Value, json};
use wiremock::matchers::{body_string, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::spawn_gateway;

fn proxy_routes(uri: &str) -> String {
    format!(
        r#"
[server]
default_backend = "raw"
[backends.raw]
kind = "proxy"
base_url = "{uri}/v1"
api_key = "sk-proxy"
[[routes]]
prefix = "raw/"
backend = "raw"
"#
    )
}

#[tokio::test]
async fn a_request_without_a_model_goes_to_the_default_backend_with_its_query() {
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/files"))
        .and(query_param("purpose", "batch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object":"list","data":[]})))
        .expect(1)
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&proxy_routes(&upstream.uri())).await;
    let response = gw.get("/v1/files?purpose=batch").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["object"], "list");
    let received = &upstream.received_requests().await.unwrap()[0];
    assert_eq!(received.headers["authorization"], "Bearer sk-proxy");
}

#[tokio::test]
async fn a_request_with_a_model_is_routed_by_it_and_any_status_relayed_raw() {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .and(body_string(r#"{"model":"o3","input":"hi"}"#))
        .respond_with(ResponseTemplate::new(418).set_body_string("short and stout"))
        .expect(1)
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&proxy_routes(&upstream.uri())).await;
    let response = gw
        .client
        .post(format!("{}/v1/responses", gw.base))
        .header("content-type", "application/json")
        .body(r#"{"model":"raw/o3","input":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.text().await.unwrap(), "short and stout");
}

#[tokio::test]
async fn without_a_model_or_default_backend_the_path_is_unknown() {
    let gw = spawn_gateway(
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"\"\nbackend = \"e\"\n",
    )
    .await;
    let response = gw.get("/v1/files").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_url"
    );
    let response = gw
        .post_json("/v1/audio/speech", &json!({"model":"tts-1","input":"x"}))
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "unsupported_endpoint"
    );
}

/// Sends `request` as raw bytes (so the target reaches the gateway exactly as written, which
/// reqwest's URL parsing would normalise) and returns the status code and the body.
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let text = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .expect("the gateway answers a raw request within 10 s");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn paths_that_would_leave_the_base_url_are_refused_and_nothing_reaches_the_upstream() {
    // Arrange: an upstream that answers anything, behind a proxy backend (the default one)
    // and an openai backend chosen by the body's model, both with their own key.
    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("reached"))
        .mount(&upstream)
        .await;
    let routes = format!(
        "{}\n[backends.up]\nkind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-openai\"\n\
         [[routes]]\nprefix = \"up/\"\nbackend = \"up\"\n",
        proxy_routes(&upstream.uri()),
        upstream.uri()
    );
    let gw = spawn_gateway(&routes).await;
    let host = format!("Host: {}\r\nConnection: close\r\n", gw.addr);
    let body = r#"{"model":"up/gpt-4o"}"#;
    let requests = [
        format!("GET /v1/../../admin/secret HTTP/1.1\r\n{host}\r\n"),
        format!("GET /v1/%2e%2e/%2e%2e/admin HTTP/1.1\r\n{host}\r\n"),
        format!("GET /v1/%2E%2e/%2e%2E/admin HTTP/1.1\r\n{host}\r\n"),
        format!("GET /v1/files/%252e%252e/%252e%252e/admin HTTP/1.1\r\n{host}\r\n"),
        format!("GET /v1/..\\..\\admin HTTP/1.1\r\n{host}\r\n"),
        format!("GET http://x/v1/../../admin HTTP/1.1\r\n{host}\r\n"),
        format!(
            "POST /v1/../../admin/secret HTTP/1.1\r\n{host}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        format!(
            "POST /v1/%2e%2e/%2e%2e/admin HTTP/1.1\r\n{host}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    ];

    for request in &requests {
        // Act
        let (status, body) = raw_http(gw.addr, request).await;

        // Assert: the gateway's own 400, in OpenAI's shape.
        assert_eq!(status, 400, "{request:?} -> {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], "invalid_path", "{body}");
    }
    let reached = upstream.received_requests().await.unwrap();
    assert!(
        reached.is_empty(),
        "the upstream saw {:?}",
        reached
            .iter()
            .map(|r| r.url.to_string())
            .collect::<Vec<_>>()
    );

    // An ordinary path still goes through.
    let (status, body) = raw_http(
        gw.addr,
        &format!("GET /v1/files/file-1/content HTTP/1.1\r\n{host}\r\n"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "reached"));
}

#[tokio::test]
async fn a_duplicate_or_non_string_model_is_refused_not_sent_to_the_default_backend() {
    // Arrange: a default backend with its own key, which these clients did not ask for.
    let upstream = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_string("reached"))
        .mount(&upstream)
        .await;
    let gw = spawn_gateway(&proxy_routes(&upstream.uri())).await;

    for body in [
        r#"{"model":"raw/o3","model":"other/x","input":"hi"}"#,
        r#"{"model":["raw/o3"],"input":"hi"}"#,
        r#"{"model":{"name":"raw/o3"},"input":"hi"}"#,
        r#"{"model":42,"input":"hi"}"#,
    ] {
        // Act
        let response = gw
            .client
            .post(format!("{}/v1/responses", gw.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();

        // Assert: a 400 naming `model`.
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], "model", "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    assert!(upstream.received_requests().await.unwrap().is_empty());
}
