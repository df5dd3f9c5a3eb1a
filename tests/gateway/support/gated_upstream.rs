//! An OpenAI-shaped upstream that counts the requests it receives and answers them only while
//! its gate is open, so a test can hold a request in flight and see whether a repeat reached
//! the upstream. Each answer carries its request's number, so two runs never look alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::net::read_request;

/// A running gated upstream.
pub struct GatedUpstream {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    seen: Arc<AtomicUsize>,
    hang_ups: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
}

impl GatedUpstream {
    /// Starts it, its gate `open` or closed.
    pub async fn start(open: bool) -> GatedUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let seen = Arc::new(AtomicUsize::new(0));
        let (gate, _) = watch::channel(open);
        let hang_ups = Arc::new(AtomicUsize::new(0));
        let (counter, opened, hung_up) = (seen.clone(), gate.subscribe(), hang_ups.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (counter, mut opened) = (counter.clone(), opened.clone());
                let closed = hung_up.clone();
                tokio::spawn(async move {
                    let request = read_request(&mut socket).await;
                    if request.is_empty() {
                        return;
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut byte = [0u8; 1];
                    tokio::select! {
                        _ = opened.wait_for(|open| *open) => {}
                        // The gateway sends nothing more: a read ends only when it hangs up.
                        _ = socket.read(&mut byte) => {
                            closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    let _ = socket.write_all(&answer(&request, n)).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        GatedUpstream {
            base_url,
            seen,
            hang_ups,
            gate,
        }
    }

    /// Lets every held and future request through.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// How many requests reached it.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    /// Waits (bounded: 10 s) until it has received `n` requests.
    pub async fn wait_seen(&self, n: usize) {
        wait_count(&self.seen, n, "requests").await;
    }

    /// Waits (bounded: 10 s) until the gateway has hung up on `n` held requests.
    pub async fn wait_hang_ups(&self, n: usize) {
        wait_count(&self.hang_ups, n, "hang-ups").await;
    }
}

async fn wait_count(counter: &AtomicUsize, n: usize, what: &str) {
    let want = format!("the upstream saw {n} {what}");
    super::wait::eventually(Duration::from_secs(10), &want, || async {
        counter.load(Ordering::SeqCst) >= n
    })
    .await;
}

/// The HTTP answer to request number `n`: OpenAI's shape for its path. The first message's
/// content picks a failure: `reject` is a 400, `fail` a 503, `big` a 2000-character answer.
fn answer(request: &[u8], n: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("");
    let said = body["messages"][0]["content"].as_str().unwrap_or("");
    let (status, json) = match said {
        "reject" => (400, error("this request is refused")),
        "fail" => (503, error("overloaded")),
        "big" => (200, chat(n, model, &"x".repeat(2000))),
        _ if path.ends_with("/embeddings") => (200, embedding(n, model)),
        _ if path.ends_with("/responses") => (
            200,
            json!({"id": format!("resp_{n}"), "object": "response", "status": "completed", "model": model, "output": []}),
        ),
        _ if path.ends_with("/completions") && !path.ends_with("/chat/completions") => (
            200,
            json!({"id": format!("cmpl-{n}"), "object": "text_completion", "created": 1, "model": model,
                   "choices": [{"index": 0, "text": format!("answer {n}"), "finish_reason": "stop"}]}),
        ),
        _ => (200, chat(n, model, &format!("answer {n} to {said}"))),
    };
    let body = json.to_string();
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nopenai-processing-ms: {n}\r\n\
         x-ratelimit-remaining-requests: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        1000 - n,
        body.len()
    )
    .into_bytes()
}

fn chat(n: usize, model: &str, content: &str) -> Value {
    json!({
        "id": format!("chatcmpl-{n}"), "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
}

fn embedding(n: usize, model: &str) -> Value {
    json!({
        "object": "list", "model": model,
        "data": [{"object": "embedding", "index": 0, "embedding": [n as f64, 0.5]}],
        "usage": {"prompt_tokens": 1, "total_tokens": 1}
    })
}

fn error(message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
}
