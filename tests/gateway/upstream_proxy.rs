//! A proxy named in the environment (`HTTP_PROXY`) carries plain `http://` upstream requests, as
//! for any program built on reqwest or curl: the gateway's own HTTP/1.1 pool is only for
//! upstreams it reaches directly.

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::serve_cli::serve_with_env;
use crate::support::raw_upstream::{RawUpstream, Saw};

#[tokio::test]
async fn an_http_proxy_in_the_environment_carries_plain_http_upstream_requests() {
    let answer = json!({
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "via proxy"},
                     "finish_reason": "stop"}]
    })
    .to_string();
    let mut proxy = RawUpstream::start(move |mut socket, _| {
        let answer = answer.clone();
        async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                answer.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    let proxy_url = proxy.base_url.trim_end_matches("/v1").to_owned();
    // A host that resolves nowhere: only the proxy can reach it.
    let routes = "[backends.far]\nkind = \"openai\"\nbase_url = \"http://upstream.invalid:9/v1\"\n\
                  [[routes]]\nprefix = \"far/\"\nbackend = \"far\"\n";
    let served = serve_with_env(routes, &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "")]).await;

    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", served.base))
        .json(&json!({"model": "far/m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "via proxy");
    let Saw::Request(request) = proxy.next().await else {
        panic!("the proxy saw no request")
    };
    // A proxy is sent the absolute URL.
    assert!(
        request.starts_with("POST http://upstream.invalid:9/v1/chat/completions HTTP/1.1"),
        "{request}"
    );
}
