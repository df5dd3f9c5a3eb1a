//! Streaming through the `openai` backend: event-by-event relay, cancellation, canonical end.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::paced_sse::{PacedSse, Seen};
use crate::support::raw_upstream::{RawUpstream, Saw};
use crate::support::{openai_routes, spawn_gateway, sse_payloads, stream_text};

fn chunk(text: &str) -> Vec<u8> {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n"
    )
    .into_bytes()
}

fn stream_request() -> serde_json::Value {
    json!({"model":"up/m","stream":true,"messages":[{"role":"user","content":"hi"}]})
}

#[tokio::test]
async fn the_first_event_reaches_the_client_before_the_upstream_sends_its_last() {
    // Arrange: the upstream writes each event only when released.
    let events = vec![chunk("one"), chunk("two"), b"data: [DONE]\n\n".to_vec()];
    let mut upstream = PacedSse::start(events, false).await;
    let gw = spawn_gateway(&openai_routes(&upstream.base_url, "")).await;

    // Act: release only the first event, then read from the client side.
    let response = gw
        .post_json("/v1/chat/completions", &stream_request())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(matches!(upstream.next_seen().await, Seen::Request(_)));
    upstream.release().await;
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("the first event arrived while the upstream held back the rest")
        .expect("stream open")
        .expect("bytes");

    // Assert: it is the first event, and the upstream has not written the second yet.
    assert_eq!(first, chunk("one"));
    assert_eq!(upstream.next_seen().await, Seen::Wrote(0));
    assert!(upstream.log.try_recv().is_err(), "nothing else written yet");

    upstream.release_all(2).await;
    let mut rest = Vec::new();
    while let Some(part) = body.next().await {
        rest.extend_from_slice(&part.unwrap());
    }
    let mut expected = chunk("two");
    expected.extend_from_slice(b"data: [DONE]\n\n");
    assert_eq!(rest, expected);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_cancels_the_upstream_request() {
    // Arrange
    let mut upstream = PacedSse::start(vec![chunk("one")], true).await;
    let gw = spawn_gateway(&openai_routes(&upstream.base_url, "")).await;
    let response = gw
        .post_json("/v1/chat/completions", &stream_request())
        .await;
    assert!(matches!(upstream.next_seen().await, Seen::Request(_)));
    upstream.release().await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(first, chunk("one"));

    // Act: the client goes away.
    drop(body);

    // Assert: the upstream's next writes fail, within the paced server's bounded loop.
    assert_eq!(upstream.next_seen().await, Seen::Wrote(0));
    assert_eq!(upstream.next_seen().await, Seen::ClientGone);
}

#[tokio::test]
async fn a_stream_that_ends_without_done_still_ends_with_done() {
    let events = vec![chunk("a"), chunk("b")];
    let mut upstream = PacedSse::start(events, false).await;
    let gw = spawn_gateway(&openai_routes(&upstream.base_url, "")).await;
    let response = gw
        .post_json("/v1/chat/completions", &stream_request())
        .await;
    assert!(matches!(upstream.next_seen().await, Seen::Request(_)));
    upstream.release_all(2).await;
    let payloads = sse_payloads(response).await;
    assert_eq!(stream_text(&payloads), "ab");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn crlf_framed_events_split_across_reads_are_relayed_whole() {
    let events = vec![
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\r".to_vec(),
        b"\n\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"y\"}}]}\r\n\r\ndata: [DO"
            .to_vec(),
        b"NE]\r\n\r\n".to_vec(),
    ];
    let mut upstream = PacedSse::start(events, false).await;
    let gw = spawn_gateway(&openai_routes(&upstream.base_url, "")).await;
    let response = gw
        .post_json("/v1/chat/completions", &stream_request())
        .await;
    assert!(matches!(upstream.next_seen().await, Seen::Request(_)));
    upstream.release_all(3).await;
    let payloads = sse_payloads(response).await;
    assert_eq!(stream_text(&payloads), "xy");
    assert_eq!(payloads.iter().filter(|p| *p == "[DONE]").count(), 1);
}

#[tokio::test]
async fn the_echo_backend_streams_word_by_word_with_usage() {
    let gw = spawn_gateway(&openai_routes("http://127.0.0.1:9/v1", "")).await;
    let response = gw
        .post_json(
            "/v1/chat/completions",
            &json!({"model":"echo/hello","stream":true,"stream_options":{"include_usage":true},
                    "messages":[{"role":"user","content":"the quick brown fox"}]}),
        )
        .await;
    let payloads = sse_payloads(response).await;
    assert_eq!(stream_text(&payloads), "the quick brown fox");
    let usage: serde_json::Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 4);
}

#[tokio::test]
async fn events_that_arrive_in_one_read_one_http_chunk_each_reach_the_client_in_order_and_whole() {
    // Arrange: an upstream that sends 200 events, each in its own HTTP chunk (as inference
    // servers do), all in one write, so that the gateway reads many at once.
    let mut body = Vec::new();
    for i in 0..200 {
        let event = chunk(&format!("t{i} "));
        body.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
        body.extend_from_slice(&event);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
    let mut upstream = RawUpstream::start(move |mut socket, _| {
        let body = body.clone();
        async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            let mut all = head.as_bytes().to_vec();
            all.extend_from_slice(&body);
            let _ = socket.write_all(&all).await;
            let _ = socket.flush().await;
        }
    })
    .await;
    let gw = spawn_gateway(&openai_routes(&upstream.base_url, "")).await;

    // Act
    let response = gw
        .post_json("/v1/chat/completions", &stream_request())
        .await;
    assert!(matches!(upstream.next().await, Saw::Request(_)));
    let payloads = sse_payloads(response).await;

    // Assert: every event, whole and in order, then one [DONE].
    let expected: String = (0..200).map(|i| format!("t{i} ")).collect();
    assert_eq!(stream_text(&payloads), expected);
    assert_eq!(payloads.len(), 201);
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
}
