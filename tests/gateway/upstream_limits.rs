//! Misbehaving upstreams (issue 11): each is bounded in time, and what the client gets is told.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::raw_upstream::{RawUpstream, Saw, never_answer, write_then_hold};
use crate::support::{chat_body, openai_routes, spawn_gateway, sse_payloads, stream_text};

const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";

fn chat(stream: bool) -> Value {
    chat_body("up/gpt-4o", "hi", stream)
}

/// A raw HTTP/1.1 POST with a JSON body.
fn raw_post(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The OpenAI error in an SSE payload, or a panic naming what came instead.
fn error_code(payload: &str) -> String {
    let v: Value = serde_json::from_str(payload).unwrap_or_else(|_| panic!("not JSON: {payload}"));
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {payload}"))
        .to_owned()
}

#[tokio::test]
async fn a_client_that_leaves_before_the_upstream_answers_cancels_the_upstream_request() {
    let cases = [
        ("/v1/chat/completions", chat(false)),
        ("/v1/chat/completions", chat(true)),
        (
            "/v1/responses",
            json!({"model": "up/gpt-4o", "input": "hi"}),
        ),
    ];
    for (path, body) in cases {
        // Arrange: an upstream that never answers, and a timeout far beyond the test's wait.
        let mut upstream = RawUpstream::start(never_answer).await;
        let keys = "request_timeout = \"60s\"\nfirst_byte_timeout = \"60s\"";
        let gateway = spawn_gateway(&openai_routes(&upstream.base_url, keys)).await;
        let mut client = TcpStream::connect(gateway.addr).await.unwrap();
        client.write_all(&raw_post(path, &body)).await.unwrap();
        assert!(matches!(upstream.next().await, Saw::Request(_)));
        // Act: the client goes away while the gateway waits for the upstream's headers.
        drop(client);
        // Assert: the upstream request is closed at once (within the 10 s `next` allows).
        assert_eq!(upstream.next().await, Saw::Closed, "{path} {body}");
    }
}

#[tokio::test]
async fn a_non_streamed_body_trickled_past_request_timeout_is_cut_off() {
    // 30 bytes at one per 200 ms: 6 s, against a whole-response limit of 1 s.
    let upstream = RawUpstream::start(|mut socket, _| async move {
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 30\r\n\r\n";
        let _ = socket.write_all(head.as_bytes()).await;
        for _ in 0..30 {
            if socket.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let keys = "request_timeout = \"1s\"";
    let gateway = spawn_gateway(&openai_routes(&upstream.base_url, keys)).await;
    let response = gateway
        .post_json("/v1/chat/completions", &chat(false))
        .await;
    assert_eq!(response.status(), 200);
    // The whole body would arrive after 6 s; the gateway ends the response at 1 s instead, so
    // the client sees a truncated body, not a complete one.
    assert!(response.bytes().await.is_err());
}

#[tokio::test]
async fn a_stream_whose_first_event_never_comes_ends_with_a_timeout_event() {
    let upstream =
        RawUpstream::start(|socket, _| write_then_hold(socket, SSE_HEAD.as_bytes())).await;
    let keys = "first_byte_timeout = \"1s\"\nidle_timeout = \"60s\"";
    let gateway = spawn_gateway(&openai_routes(&upstream.base_url, keys)).await;
    let payloads = sse_payloads(gateway.post_json("/v1/chat/completions", &chat(true)).await).await;
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    assert_eq!(error_code(&payloads[0]), "upstream_timeout");
    assert!(payloads[0].contains("first event"), "{payloads:?}");
}

#[tokio::test]
async fn a_stream_that_stalls_between_events_ends_with_a_timeout_event() {
    let event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n";
    let bytes = format!("{SSE_HEAD}{event}");
    let upstream = RawUpstream::start(move |socket, _| {
        let bytes = bytes.clone();
        async move { write_then_hold(socket, bytes.as_bytes()).await }
    })
    .await;
    let keys = "first_byte_timeout = \"60s\"\nidle_timeout = \"1s\"";
    let gateway = spawn_gateway(&openai_routes(&upstream.base_url, keys)).await;
    let payloads = sse_payloads(gateway.post_json("/v1/chat/completions", &chat(true)).await).await;
    assert_eq!(stream_text(&payloads), "a");
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert_eq!(error_code(&payloads[1]), "upstream_timeout");
}

#[tokio::test]
async fn the_client_stream_ends_at_done_although_the_upstream_holds_its_body_open() {
    let events =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
    let bytes = format!("{SSE_HEAD}{events}");
    let upstream = RawUpstream::start(move |socket, _| {
        let bytes = bytes.clone();
        async move { write_then_hold(socket, bytes.as_bytes()).await }
    })
    .await;
    // Today's default keys: the upstream would hold the client for 30 s.
    let keys = "request_timeout = \"30s\"";
    let gateway = spawn_gateway(&openai_routes(&upstream.base_url, keys)).await;
    let response = gateway.post_json("/v1/chat/completions", &chat(true)).await;
    let payloads = tokio::time::timeout(Duration::from_secs(10), sse_payloads(response))
        .await
        .expect("the client's response ended at [DONE]");
    assert_eq!(stream_text(&payloads), "a");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_gzip_encoded_stream_reaches_the_client_decoded_and_without_the_encoding_header() {
    let events = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"zipped\"}}]}\n\ndata: [DONE]\n\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(events.as_bytes()).unwrap();
    let body = gz.finish().unwrap();
    let mut upstream = RawUpstream::start(move |mut socket, _| {
        let body = body.clone();
        async move {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
        }
    })
    .await;
    let gateway = spawn_gateway(&openai_routes(&upstream.base_url, "")).await;
    let response = gateway.post_json("/v1/chat/completions", &chat(true)).await;
    assert!(
        response.headers().get("content-encoding").is_none(),
        "{response:?}"
    );
    let payloads = sse_payloads(response).await;
    assert_eq!(stream_text(&payloads), "zipped");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let Saw::Request(request) = upstream.next().await else {
        panic!("no request")
    };
    assert!(
        request
            .to_ascii_lowercase()
            .contains("accept-encoding: identity"),
        "{request}"
    );
}

#[tokio::test]
async fn a_stream_event_that_is_not_json_or_not_utf8_becomes_an_error_event_and_ends_it() {
    let good = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n".as_slice();
    for garbage in [
        b"data: not json\n\n".as_slice(),
        b"data: {\"choices\":\"\xff\xfe\"}\n\n".as_slice(),
    ] {
        let mut bytes = SSE_HEAD.as_bytes().to_vec();
        bytes.extend_from_slice(good);
        bytes.extend_from_slice(garbage);
        bytes.extend_from_slice(good);
        bytes.extend_from_slice(b"data: [DONE]\n\n");
        let upstream = RawUpstream::start(move |socket, _| {
            let bytes = bytes.clone();
            async move { write_then_hold(socket, &bytes).await }
        })
        .await;
        let gateway = spawn_gateway(&openai_routes(&upstream.base_url, "")).await;
        let response = gateway.post_json("/v1/chat/completions", &chat(true)).await;
        let body = response.bytes().await.unwrap();
        let payloads: Vec<String> = switchyard::adapters::sse::data_payloads(&body)
            .into_iter()
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .collect();
        assert_eq!(payloads.len(), 2, "{payloads:?}");
        assert_eq!(stream_text(&payloads), "a");
        assert_eq!(error_code(&payloads[1]), "upstream_protocol_error");
    }
}
