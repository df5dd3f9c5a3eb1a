//! `/v1/models`: the union over routes, discovery, and a down backend not failing the list.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::net::free_port;
use crate::support::spawn_gateway;

#[tokio::test]
async fn the_listing_unites_configured_and_discovered_models_and_survives_a_dead_backend() {
    // Arrange
    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object":"list","data":[
            {"id":"qwen3-8b","object":"model","created":1700000000,"owned_by":"vllm"}]})),
        )
        .expect(1) // cached: two listings, one upstream call
        .mount(&upstream)
        .await;
    let routes = format!(
        r#"
[backends.vllm]
kind = "openai"
base_url = "{}/v1"
[backends.dead]
kind = "openai"
base_url = "http://127.0.0.1:{}/v1"
[backends.echo]
kind = "echo"
[[routes]]
prefix = "vllm/"
backend = "vllm"
models = ["pinned"]
discover = true
[[routes]]
prefix = "dead/"
backend = "dead"
models = ["gpt-4o"]
discover = true
[[routes]]
prefix = "echo/"
backend = "echo"
models = ["hello"]
"#,
        upstream.uri(),
        free_port()
    );
    let gw = spawn_gateway(&routes).await;

    // Act
    let list: Value = gw.get("/v1/models").await.json().await.unwrap();
    let again: Value = gw.get("/v1/models").await.json().await.unwrap();

    // Assert
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["vllm/pinned", "vllm/qwen3-8b", "dead/gpt-4o", "echo/hello"]
    );
    let qwen = &list["data"][1];
    assert_eq!(
        (qwen["created"].as_u64(), qwen["owned_by"].as_str()),
        (Some(1700000000), Some("vllm"))
    );
    assert_eq!(list, again);
}

#[tokio::test]
async fn a_listed_model_can_be_retrieved_by_its_full_name() {
    let gw = spawn_gateway("[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"echo/\"\nbackend = \"e\"\nmodels = [\"hello\"]\n").await;
    let model: Value = gw.get("/v1/models/echo/hello").await.json().await.unwrap();
    assert_eq!(
        (model["id"].as_str(), model["object"].as_str()),
        (Some("echo/hello"), Some("model"))
    );
    let encoded = gw.get("/v1/models/echo%2Fhello").await;
    assert_eq!(encoded.status(), 200);
    let missing = gw.get("/v1/models/echo/absent").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["code"],
        "model_not_found"
    );
}

#[tokio::test]
async fn a_backend_down_at_listing_time_is_listed_soon_after_it_comes_back() {
    // Arrange: a discovering route whose backend is down (its port closed) at first.
    let port = free_port();
    let gw = spawn_gateway(&format!(
        "[backends.late]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n[[routes]]\nprefix = \"late/\"\nbackend = \"late\"\ndiscover = true\n"
    ))
    .await;
    let ids = |list: Value| -> Vec<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(ids(gw.get("/v1/models").await.json().await.unwrap()).is_empty());

    // Act: the backend comes up on that port.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let upstream = MockServer::builder().listener(listener).start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"object":"list","data":[{"id":"qwen3-8b","object":"model"}]}),
            ),
        )
        .mount(&upstream)
        .await;

    // Assert: listed well within the 30 s a successful listing is cached for (the failure was
    // cached for 2 s); bounded polling, 100 ms apart.
    for _ in 0..100 {
        if ids(gw.get("/v1/models").await.json().await.unwrap()) == ["late/qwen3-8b"] {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the backend was still missing from /v1/models 10 s after it came back");
}
