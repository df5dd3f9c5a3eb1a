//! The hostile-client run of issue 11, against the real binary on loopback: hundreds of
//! connections declare the largest body allowed and trickle it a byte at a time. The gateway's
//! memory stays bounded, normal requests keep being answered, and the timeouts close every
//! trickling connection.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::serve_cli::serve;

const CONNECTIONS: usize = 300;
const DECLARED: usize = 32 * 1024 * 1024;
/// A generous bound on what the run may add to the gateway's RSS. Reserving each declared
/// body, as the gateway once did, costs gigabytes here.
const RSS_GROWTH_BOUND_KIB: u64 = 256 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Declares `DECLARED` bytes and sends one every 200 ms; true once the gateway answered or
/// closed the connection, false if it still held it after 100 bytes (20 s).
async fn trickle(addr: String) -> bool {
    let Ok(mut socket) = TcpStream::connect(&addr).await else {
        return false;
    };
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: {DECLARED}\r\n\r\n{{\""
    );
    if socket.write_all(head.as_bytes()).await.is_err() {
        return true;
    }
    let mut buf = [0u8; 1024];
    for _ in 0..100 {
        // Pacing, not synchronisation: wait up to 200 ms for the gateway to answer (a 408) or
        // close the connection.
        let read = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf));
        if read.await.is_ok() {
            return true;
        }
        if socket.write_all(b"a").await.is_err() {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_declaring_large_bodies_leave_memory_bounded_and_service_up() {
    // Arrange: the real binary, with short timeouts so that the run is short.
    let routes = "[server]\nrequest_body_timeout = \"3s\"\nrequest_head_timeout = \"3s\"\n\
                  [backends.echo]\nkind = \"echo\"\n[[routes]]\nprefix = \"echo/\"\nbackend = \"echo\"\n";
    let served = serve(routes).await;
    let pid = served.child.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let chat = json!({"model": "echo/x", "messages": [{"role": "user", "content": "hi"}]});
    let url = format!("{}/v1/chat/completions", served.base);
    assert_eq!(
        client.post(&url).json(&chat).send().await.unwrap().status(),
        200
    );
    let before = rss_kib(pid);

    // Act: the trickling connections, and normal requests among them.
    let addr = served.base.trim_start_matches("http://").to_owned();
    let mut tricklers = JoinSet::new();
    for _ in 0..CONNECTIONS {
        tricklers.spawn(trickle(addr.clone()));
    }
    let mut peak = before;
    for _ in 0..20 {
        let response = client.post(&url).json(&chat).send().await.unwrap();
        assert_eq!(response.status(), 200, "a normal request during the run");
        peak = peak.max(rss_kib(pid));
    }
    let mut closed = 0;
    while let Some(done) = tricklers.join_next().await {
        peak = peak.max(rss_kib(pid));
        closed += usize::from(done.unwrap());
    }

    // Assert
    let growth = peak.saturating_sub(before);
    #[allow(clippy::print_stderr)] // The measured figure is part of what this test reports.
    {
        eprintln!(
            "hostile clients: {CONNECTIONS} connections declaring {DECLARED} bytes: RSS {before} KiB before, {peak} KiB at peak (+{growth} KiB)"
        );
    }
    assert_eq!(
        closed, CONNECTIONS,
        "every trickling connection was closed by the gateway"
    );
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "RSS grew by {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
    assert_eq!(
        client.post(&url).json(&chat).send().await.unwrap().status(),
        200
    );
}
