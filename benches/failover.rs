//! The added latency of a failover: a chat request through the real gateway to a loopback
//! upstream, directly, and through a route whose first backend refuses connections (a closed
//! loopback port), so that every request fails over once before it is answered.
//!
//! `cargo bench --bench failover`. Figures are in the README's Performance section.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::net::TcpListener as StdListener;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const BODY: &str = r#"{"model":"MODEL","messages":[{"role":"user","content":"hi"}]}"#;

/// A keep-alive upstream answering every request with the same small chat completion.
async fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    base
}

async fn serve(mut socket: TcpStream) {
    let body = r#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // One request per read is enough for these small bodies on loopback.
        let read = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if socket.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn closed_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the gateway with a `direct/` route and a `failover/` route whose weighted backend
/// refuses; returns its base URL and the temp dir holding its routes file.
async fn gateway(upstream: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    // Never ejected and an unlimited budget: every request meets the refusal and fails over.
    let routes = format!(
        r#"
[server]
workers = 1
[backends.up]
kind = "openai"
base_url = "{upstream}"
[backends.refuse]
kind = "openai"
base_url = "http://127.0.0.1:{}/v1"
eject_after = 1000000
[[routes]]
prefix = "direct/"
backend = "up"
[[routes]]
prefix = "failover/"
backend = "refuse"
fallback = ["up"]
retry_budget = 1000
"#,
        closed_port()
    );
    std::fs::write(&path, routes).unwrap();
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = switchyard::server::load_state(&path).await.unwrap();
    tokio::spawn(switchyard::server::start(listener, state).unwrap());
    (base, dir)
}

fn failover_latency(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let (base, _dir) = rt.block_on(async {
        let up = upstream().await;
        gateway(&up).await
    });
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("chat_through_gateway");
    for route in ["direct", "failover"] {
        let body = BODY.replace("MODEL", &format!("{route}/m"));
        let url = format!("{base}/v1/chat/completions");
        group.bench_function(route, |b| {
            b.to_async(&rt).iter(|| async {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, failover_latency);
criterion_main!(benches);
