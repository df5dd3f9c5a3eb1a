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
