//! An OpenAI-shaped chat upstream that counts the requests it receives by their first
//! message's content (a batch test puts each line's `custom_id` there), and holds those whose
//! content is in its hold set until they are released, so a test can keep a batch's line in
//! flight while it cancels the batch or kills the gateway.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::net::read_request;
use super::wait::eventually;

#[derive(Default)]
struct Shared {
    counts: HashMap<String, usize>,
    hold: HashSet<String>,
    /// Held requests whose client hung up.
    hang_ups: usize,
}

/// A running held upstream.
pub struct HeldUpstream {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    released: watch::Sender<bool>,
}

impl HeldUpstream {
    /// Starts it, holding requests whose content is one of `hold` until `release`.
    pub async fn start(hold: &[&str]) -> HeldUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let shared = Arc::new(Mutex::new(Shared {
            hold: hold.iter().map(|s| (*s).to_owned()).collect(),
            ..Shared::default()
        }));
        let (released, gate) = watch::channel(false);
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (state, mut gate) = (state.clone(), gate.clone());
                tokio::spawn(async move {
                    let request = read_request(&mut socket).await;
                    let Some(said) = content(&request) else {
                        return;
                    };
                    let held = {
                        let mut shared = state.lock().unwrap();
                        *shared.counts.entry(said.clone()).or_default() += 1;
                        shared.hold.contains(&said)
                    };
                    if held {
                        let mut byte = [0u8; 1];
                        tokio::select! {
                            _ = gate.wait_for(|open| *open) => {}
                            _ = socket.read(&mut byte) => {
                                state.lock().unwrap().hang_ups += 1;
                                return;
                            }
                        }
                    }
                    let _ = socket.write_all(&answer(&said)).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        HeldUpstream {
            base_url,
            shared,
            released,
        }
    }

    /// Lets the held requests (and later ones) through.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// How many requests carried `content`.
    pub fn count(&self, content: &str) -> usize {
        self.shared
            .lock()
            .unwrap()
            .counts
            .get(content)
            .copied()
            .unwrap_or(0)
    }

    /// Every content seen, with its count.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.shared.lock().unwrap().counts.clone()
    }

    /// Waits (bounded: 30 s) until a request with `content` arrived.
    pub async fn wait_for(&self, content: &str) {
        let what = format!("the upstream received {content}");
        eventually(Duration::from_secs(30), &what, || async {
            self.count(content) > 0
        })
        .await;
    }

    /// Waits (bounded: 30 s) until the gateway hung up on `n` held requests.
    pub async fn wait_hang_ups(&self, n: usize) {
        let what = format!("the gateway hung up on {n} held requests");
        eventually(Duration::from_secs(30), &what, || async {
            self.shared.lock().unwrap().hang_ups >= n
        })
        .await;
    }
}

/// The first message's content of a chat request.
fn content(request: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(request);
    let (_, body) = text.split_once("\r\n\r\n")?;
    let body: Value = serde_json::from_str(body).ok()?;
    Some(body["messages"][0]["content"].as_str()?.to_owned())
}

fn answer(said: &str) -> Vec<u8> {
    let body = json!({
        "id": "chatcmpl-held", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("answer to {said}")}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
