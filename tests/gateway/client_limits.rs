//! Hostile clients (issue 11): slow or oversized requests are bounded in memory, time and
//! number, and refused in OpenAI's shape.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::paced_sse::{PacedSse, Seen};
use crate::support::{openai_routes, spawn_gateway};

const ECHO_ROUTES: &str =
    "[backends.echo]\nkind = \"echo\"\n[[routes]]\nprefix = \"echo/\"\nbackend = \"echo\"\n";

fn echo_chat() -> Value {
    json!({"model": "echo/x", "messages": [{"role": "user", "content": "hi"}]})
}

/// The head of a chat request declaring a body of `length` bytes.
fn head(length: usize) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    )
}

/// Reads what the gateway sends until it closes the connection (bounded: 10 s).
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the gateway did not close the connection within 10 s"
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_body_trickled_past_request_body_timeout_is_a_408_and_the_connection_closes() {
    let routes = format!("[server]\nrequest_body_timeout = \"1s\"\n{ECHO_ROUTES}");
    let gateway = spawn_gateway(&routes).await;
    let mut socket = TcpStream::connect(gateway.addr).await.unwrap();
    socket.write_all(head(100).as_bytes()).await.unwrap();
    socket.write_all(b"{\"model\":").await.unwrap();
    // The rest never comes: the gateway answers 408 and closes.
    let answer = read_until_closed(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn past_max_buffered_body_bytes_a_request_is_a_503_with_retry_after() {
    let routes = format!("[server]\nmax_buffered_body_bytes = 1000\n{ECHO_ROUTES}");
    let gateway = spawn_gateway(&routes).await;
    // Arrange: one connection holds 900 bytes of an unfinished body.
    let mut holder = TcpStream::connect(gateway.addr).await.unwrap();
    holder.write_all(head(5000).as_bytes()).await.unwrap();
    holder.write_all(&[b' '; 900]).await.unwrap();
    // Act: a request of 200 more bytes, retried (bounded) until the held bytes are counted.
    let padded = format!("{}{}", " ".repeat(150), echo_chat());
    let mut refused = None;
    for _ in 0..100 {
        let response = gateway
            .client
            .post(format!("{}/v1/chat/completions", gateway.base))
            .header("content-type", "application/json")
            .body(padded.clone())
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            refused = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Assert: 503, retry-after, OpenAI's shape; and once the holder leaves, requests pass.
    let refused = refused.expect("a request past the body budget was refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    drop(holder);
    let mut passed = false;
    for _ in 0..100 {
        let response = gateway
            .post_json("/v1/chat/completions", &echo_chat())
            .await;
        if response.status() == 200 {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(passed, "the budget was given back when the holder left");
}

#[tokio::test]
async fn past_max_concurrent_requests_a_request_is_a_503_until_a_stream_ends() {
    let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n".to_vec();
    let mut upstream = PacedSse::start(vec![event, b"data: [DONE]\n\n".to_vec()], false).await;
    let routes = openai_routes(&upstream.base_url, "").replacen(
        "[backends.up]",
        "[server]\nmax_concurrent_requests = 1\n\n[backends.up]",
        1,
    );
    let gateway = spawn_gateway(&routes).await;
    // Arrange: one stream in progress.
    let chat = json!({"model": "up/gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let stream = gateway.post_json("/v1/chat/completions", &chat).await;
    assert!(matches!(upstream.next_seen().await, Seen::Request(_)));
    // Act + Assert: a second request is refused while it runs...
    let refused = gateway
        .post_json("/v1/chat/completions", &echo_chat())
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.headers().contains_key("x-request-id"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    // ...and admitted once it has ended.
    upstream.release_all(2).await;
    stream.bytes().await.unwrap();
    let mut passed = false;
    for _ in 0..100 {
        if gateway
            .post_json("/v1/chat/completions", &echo_chat())
            .await
            .status()
            == 200
        {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(passed, "a request was admitted after the stream ended");
}

#[tokio::test]
async fn a_second_request_head_left_unfinished_on_a_kept_alive_connection_is_cut_off() {
    let routes = format!("[server]\nrequest_head_timeout = \"1s\"\n{ECHO_ROUTES}");
    let gateway = spawn_gateway(&routes).await;
    let mut socket = TcpStream::connect(gateway.addr).await.unwrap();
    // A first request, answered in full on a kept-alive connection.
    socket
        .write_all(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .expect("the first answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed after the first request");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    // The second head starts and never ends: the gateway closes the connection.
    socket
        .write_all(b"GET /health HTTP/1.1\r\nhost:")
        .await
        .unwrap();
    let rest = read_until_closed(&mut socket).await;
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );
}
