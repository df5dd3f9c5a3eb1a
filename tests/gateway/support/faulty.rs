//! A fake OpenAI-compatible upstream whose behaviour the test sets and changes: healthy, or one
//! of the faults a failover must survive (500, 429 with `retry-after`, a stall before the
//! headers or before the first event, a stall or a reset mid-stream). It counts the requests it
//! received. Every response closes its connection, so each request is one connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::net::read_request;

/// How the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A chat completion (or a stream of two chunks) whose text is `answer from <name>`.
    Healthy,
    /// HTTP 500 with an OpenAI-shaped error.
    Status500,
    /// HTTP 429 with `retry-after: <seconds>`.
    RateLimited(u64),
    /// Reads the request and never answers.
    StallBeforeHeaders,
    /// Sends the headers of a stream, then nothing (a request for no stream: no headers).
    StallBeforeFirstEvent,
    /// Sends the headers and one chunk (`partial from <name>`), then nothing.
    StallMidStream,
    /// Sends the headers and one chunk, then resets the connection.
    ResetMidStream,
}

/// A running fault-injecting upstream.
pub struct FaultyUpstream {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    fault: Arc<Mutex<Fault>>,
    hits: Arc<AtomicUsize>,
}

/// How long a stalling upstream holds a connection: far longer than any test's timeouts.
const HOLD: Duration = Duration::from_secs(60);

impl FaultyUpstream {
    /// Starts one named `name` (the name is in its answers).
    pub async fn start(name: &str, fault: Fault) -> FaultyUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let fault = Arc::new(Mutex::new(fault));
        let hits = Arc::new(AtomicUsize::new(0));
        let (f, h, name) = (fault.clone(), hits.clone(), name.to_owned());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (f, h, name) = (f.clone(), h.clone(), name.clone());
                tokio::spawn(async move { serve(socket, &name, &f, &h).await });
            }
        });
        FaultyUpstream {
            base_url,
            fault,
            hits,
        }
    }

    /// Changes how it answers from the next request on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve(mut socket: TcpStream, name: &str, fault: &Mutex<Fault>, hits: &AtomicUsize) {
    let request = read_request(&mut socket).await;
    if request.is_empty() {
        return;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let fault = *fault.lock().unwrap();
    let stream = String::from_utf8_lossy(&request).contains("\"stream\":true");
    let head = |status: &str, extra: &str, content_type: &str| {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\nconnection: close\r\n{extra}\r\n"
        )
    };
    let sse = "text/event-stream";
    let reply = match fault {
        Fault::Healthy if stream => {
            let mut text = head("200 OK", "", sse);
            text.push_str(&chunk("answer from "));
            text.push_str(&chunk(name));
            text.push_str("data: [DONE]\n\n");
            text
        }
        Fault::Healthy => {
            let body = completion(&format!("answer from {name}"));
            let extra = format!("content-length: {}\r\n", body.len());
            head("200 OK", &extra, "application/json") + &body
        }
        Fault::Status500 => error_reply("500 Internal Server Error", "", "boom"),
        Fault::RateLimited(secs) => error_reply(
            "429 Too Many Requests",
            &format!("retry-after: {secs}\r\n"),
            "slow down",
        ),
        Fault::StallBeforeFirstEvent if stream => {
            let _ = socket.write_all(head("200 OK", "", sse).as_bytes()).await;
            tokio::time::sleep(HOLD).await;
            return;
        }
        Fault::StallBeforeHeaders | Fault::StallBeforeFirstEvent => {
            tokio::time::sleep(HOLD).await;
            return;
        }
        Fault::StallMidStream | Fault::ResetMidStream => {
            let text = head("200 OK", "", sse) + &chunk(&format!("partial from {name}"));
            let _ = socket.write_all(text.as_bytes()).await;
            let _ = socket.flush().await;
            if fault == Fault::ResetMidStream {
                // Linger 0: the close is a reset, as when the box dies.
                let _ = socket.set_zero_linger();
                drop(socket);
            } else {
                tokio::time::sleep(HOLD).await;
            }
            return;
        }
    };
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.shutdown().await;
}

fn error_reply(status: &str, extra: &str, message: &str) -> String {
    let body = format!(
        r#"{{"error":{{"message":"{message}","type":"server_error","param":null,"code":null}}}}"#
    );
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

fn chunk(text: &str) -> String {
    let json = serde_json::json!({
        "id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]
    });
    format!("data: {json}\n\n")
}

fn completion(text: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    })
    .to_string()
}
