//! Upstreams that break HTTP itself, against the gateway's own HTTP/1.1 client (plain `http://`
//! upstreams): each failure is bounded, told to the client as an OpenAI-shaped 502 or a broken
//! body, and never leaks into another request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::net::read_request;
use crate::support::raw_upstream::{RawUpstream, write_then_hold};
use crate::support::{chat_body, openai_routes, spawn_gateway};

/// Far beyond the test's wait: a failure must come from the bytes, not from a timer.
const PATIENT: &str = "request_timeout = \"60s\"\nfirst_byte_timeout = \"60s\"";

fn chat() -> Value {
    chat_body("up/gpt-4o", "hi", false)
}

/// A whole HTTP/1.1 chat answer whose `id` is `id`.
fn answer(id: &str) -> Vec<u8> {
    let body = json!({
        "id": id, "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": id},
                     "finish_reason": "stop"}]
    })
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends a chat request; the status and error body, within 10 s.
async fn refused(routes: &str) -> (u16, Value) {
    let gateway = spawn_gateway(routes).await;
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        gateway.post_json("/v1/chat/completions", &chat()),
    )
    .await
    .expect("answered within 10 s, not at a timeout");
    let status = response.status().as_u16();
    (status, response.json().await.expect("an OpenAI error body"))
}

/// An upstream that answers with `first`, then `line` `times` times, then holds the connection.
async fn writing_without_end(first: &'static [u8], line: String, times: usize) -> RawUpstream {
    RawUpstream::start(move |mut socket, _| {
        let line = line.clone();
        async move {
            let _ = socket.write_all(first).await;
            for _ in 0..times {
                if socket.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    })
    .await
}

/// Sends a chat request to a gateway in front of `upstream`: its 502 error body.
async fn unreachable(upstream: &RawUpstream) -> Value {
    let (status, body) = refused(&openai_routes(&upstream.base_url, PATIENT)).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_unreachable", "{body}");
    body
}

#[tokio::test]
async fn a_response_head_that_never_ends_is_a_502_not_unbounded_memory_or_a_wait() {
    // 8 MB of header lines, never a blank line.
    let line = format!("x-pad: {}\r\n", "a".repeat(1000));
    unreachable(&writing_without_end(b"HTTP/1.1 200 OK\r\n", line, 8000).await).await;
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_a_502() {
    let upstream = RawUpstream::start(|socket, _| async move {
        write_then_hold(socket, b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    })
    .await;
    unreachable(&upstream).await;
}

#[tokio::test]
async fn a_body_cut_short_reaches_the_client_as_a_broken_body_not_a_short_success() {
    let full = String::from_utf8(answer("whole")).unwrap();
    let (head, body) = full.split_once("\r\n\r\n").unwrap();
    let chunked = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n",
        body.len() / 2,
        &body[..body.len() / 2]
    );
    let short_by_length = format!("{head}\r\n\r\n{}", &body[..body.len() / 2]);
    for cut in [chunked, short_by_length] {
        // The upstream sends half its answer, then closes the connection.
        let upstream = RawUpstream::start(move |mut socket, _| {
            let cut = cut.clone();
            async move {
                let _ = socket.write_all(cut.as_bytes()).await;
            }
        })
        .await;
        let gateway = spawn_gateway(&openai_routes(&upstream.base_url, PATIENT)).await;
        let sent = gateway
            .client
            .post(format!("{}/v1/chat/completions", gateway.base))
            .json(&chat())
            .send();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            // Before any byte reached the client, the connection is closed without an answer;
            // after, the body breaks off. Either way an SDK raises a connection error.
            match sent.await {
                Err(err) => Err(err.to_string()),
                Ok(response) => response.bytes().await.map_err(|e| e.to_string()),
            }
        })
        .await
        .expect("the answer ended within 10 s");
        assert!(
            outcome.is_err(),
            "a half answer was delivered as whole: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn bytes_an_upstream_sends_after_its_answer_never_answer_the_next_request() {
    // Each connection's first request is answered, followed by a second, unrequested answer;
    // any later request on that connection would get that one, then `later`.
    let connections = Arc::new(AtomicUsize::new(0));
    let opened = connections.clone();
    let upstream = RawUpstream::start(move |mut socket, _| {
        opened.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut first = answer("first");
            first.extend_from_slice(&answer("smuggled"));
            if socket.write_all(&first).await.is_err() {
                return;
            }
            loop {
                if read_request(&mut socket).await.is_empty()
                    || socket.write_all(&answer("later")).await.is_err()
                {
                    return;
                }
            }
        }
    })
    .await;
    let gateway = spawn_gateway(&openai_routes(&upstream.base_url, PATIENT)).await;
    for _ in 0..3 {
        let body: Value = gateway
            .post_json("/v1/chat/completions", &chat())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["id"], "first", "{body}");
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        3,
        "a connection that sent too much is not reused"
    );
}

#[tokio::test]
async fn an_upstream_that_only_ever_says_continue_is_a_502_not_a_wait() {
    let continues = "HTTP/1.1 100 Continue\r\n\r\n".to_owned();
    let body = unreachable(&writing_without_end(b"", continues, 1000).await).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("informational")),
        "{body}"
    );
}

#[tokio::test]
async fn a_stream_whose_chunk_framing_breaks_ends_with_an_error_event_after_the_good_events() {
    let event = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}"#;
    let good = format!("{event}\n\n");
    let wire = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{good}\r\nnot-hex\r\n",
        good.len()
    );
    let upstream = RawUpstream::start(move |socket, _| {
        let wire = wire.clone();
        async move { write_then_hold(socket, wire.as_bytes()).await }
    })
    .await;
    let gateway = spawn_gateway(&openai_routes(&upstream.base_url, PATIENT)).await;
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        gateway.post_json("/v1/chat/completions", &chat_body("up/gpt-4o", "hi", true)),
    )
    .await
    .expect("answered within 10 s");
    assert_eq!(response.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream ended within 10 s, not at a timeout")
        .unwrap_or_default();
    let content = text.find("\"content\":\"ok\"").expect(&text);
    let error = text.find("\"error\"").expect(&text);
    assert!(content < error, "{text}");
    assert!(text.contains("chunk size"), "{text}");
    assert!(
        !text.contains("[DONE]"),
        "a broken stream must not end as if whole: {text}"
    );
}
