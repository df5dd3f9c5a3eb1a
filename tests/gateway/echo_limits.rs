//! The echo backend (served by the shipped routes.toml) tried as an amplifier: its work and its
//! answer stay bounded by the request, and oversized asks are clear 400s.

use serde_json::{Value, json};

use crate::support::{TestGateway, spawn_gateway};

async fn echo_gateway() -> TestGateway {
    spawn_gateway(
        "[backends.echo]\nkind = \"echo\"\n[[routes]]\nprefix = \"echo/\"\nbackend = \"echo\"\n",
    )
    .await
}

#[tokio::test]
async fn embeddings_beyond_the_bounds_are_400s_naming_the_field_and_dimensions_are_capped() {
    let gw = echo_gateway().await;
    let many: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    let cases = [
        (json!({"model":"echo/e","input":many}), "input"),
        (
            json!({"model":"echo/e","input":"x","dimensions":0}),
            "dimensions",
        ),
        (
            json!({"model":"echo/e","input":many[..2048],"dimensions":3072}),
            "dimensions",
        ),
    ];
    for (body, param) in cases {
        // Act
        let response = gw.post_json("/v1/embeddings", &body).await;

        // Assert
        assert_eq!(response.status(), 400, "{param}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    // At the bounds, the answer is served in full.
    let response = gw
        .post_json(
            "/v1/embeddings",
            &json!({"model":"echo/e","input":many[..2048]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["data"].as_array().unwrap().len(), 2048);
    // More dimensions than the largest model has are capped, as the README says.
    let response = gw
        .post_json(
            "/v1/embeddings",
            &json!({"model":"echo/e","input":"x","dimensions":100000}),
        )
        .await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["data"][0]["embedding"].as_array().unwrap().len(),
        3072
    );
}

#[tokio::test]
async fn a_streamed_echo_is_proportional_to_the_message() {
    // Arrange: 200 KB of one-letter words (one SSE event each would be ~100x the text).
    let gw = echo_gateway().await;
    let text = "a ".repeat(100_000);
    let request =
        json!({"model":"echo/x","stream":true,"messages":[{"role":"user","content":text}]});

    // Act
    let response = gw.post_json("/v1/chat/completions", &request).await;

    // Assert: the whole text comes back, in less than twice its size.
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    assert!(
        body.len() < 2 * text.len(),
        "{} bytes streamed for {} bytes of text",
        body.len(),
        text.len()
    );
    let payloads: Vec<String> = switchyard::adapters::sse::data_payloads(&body)
        .into_iter()
        .map(|d| String::from_utf8(d).unwrap())
        .collect();
    let spelled = crate::support::stream_text(&payloads);
    assert!(
        spelled == text,
        "the stream spelled {} bytes, not the {} sent",
        spelled.len(),
        text.len()
    );
}
