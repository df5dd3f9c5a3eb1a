//! The keep-alive race: an upstream closes a connection that sat idle for its keep-alive time
//! just as the gateway sends a request on it from its pool. The request is lost in the crossing
//! (the upstream never read it): the connection closes before any byte of an answer.
//! The gateway resends such a request once on a new connection, so no client sees the race.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::support::net::read_request;
use crate::support::spawn_gateway;

const TASKS: u64 = 20;
const PER_TASK: u64 = 100;
/// The upstream's keep-alive time.
const KEEP_ALIVE: Duration = Duration::from_millis(200);
/// On loopback a close reaches the client at once, so the crossing is modelled: a request that
/// arrives in the last 20 ms before the keep-alive time (a round trip on a real network) is
/// taken to have crossed the upstream's close, which drops it unanswered.
const CROSSING: Duration = Duration::from_millis(20);
/// How long a new connection may wait for its first request. The keep-alive time applies
/// between requests, as nginx's `keepalive_timeout` and uvicorn's `timeout_keep_alive` do; a
/// new connection gets a header timeout instead, a bound against hanging and not a speed test:
/// with 200 ms here, a loaded machine that stalled the gateway that long between connecting
/// and writing lost the request on a connection that never was idle in a pool.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(10);

/// Serves keep-alive connections, closing each after `KEEP_ALIVE` idle; counts the crossings.
async fn upstream(crossed: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, crossed.clone()));
        }
    });
    base
}

async fn serve(mut socket: TcpStream, crossed: Arc<AtomicUsize>) {
    let body = json!({
        "id": "chatcmpl-k", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                     "finish_reason": "stop"}]
    })
    .to_string();
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut first = true;
    loop {
        let idle_since = Instant::now();
        let wait = if first {
            FIRST_REQUEST_WAIT
        } else {
            KEEP_ALIVE
        };
        let Ok(request) = tokio::time::timeout(wait, read_request(&mut socket)).await else {
            return; // idle for the keep-alive time: close
        };
        if request.is_empty() {
            return;
        }
        if !first && idle_since.elapsed() >= KEEP_ALIVE - CROSSING {
            crossed.fetch_add(1, Ordering::SeqCst);
            return; // closed under the request: never read, never answered
        }
        first = false;
        if socket.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_closing_idle_connections_after_200ms_costs_no_request() {
    // Arrange: a gateway whose pool keeps connections far longer than the upstream does.
    let crossed = Arc::new(AtomicUsize::new(0));
    let base = upstream(crossed.clone()).await;
    let gw = spawn_gateway(&format!(
        "[backends.ka]\nkind = \"openai\"\nbase_url = \"{base}\"\npool_idle_timeout = \"30s\"\n[[routes]]\nprefix = \"ka/\"\nbackend = \"ka\"\n"
    ))
    .await;
    let body = json!({"model": "ka/m", "messages": [{"role": "user", "content": "hi"}]});

    // Act: 2000 requests from 20 clients, each waiting 150 to 250 ms between two requests.
    let failures: Vec<u16> = futures::stream::iter(0..TASKS)
        .map(|task| {
            let (gw, body) = (&gw, &body);
            async move {
                let mut failed = Vec::new();
                for i in 0..PER_TASK {
                    let status = gw.post_json("/v1/chat/completions", body).await.status();
                    if status != 200 {
                        failed.push(status.as_u16());
                    }
                    // Pacing of the load, not synchronisation.
                    let gap = 150 + (task * 37 + i * 53) % 101;
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                }
                failed
            }
        })
        .buffer_unordered(TASKS as usize)
        .concat()
        .await;

    // Assert: the race happened, and no client saw it.
    assert!(
        crossed.load(Ordering::SeqCst) > 0,
        "the race never happened"
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}
