//! A fast OpenAI-shaped mock upstream for the load bench (benches/load/run.py).
//!
//! `POST /v1/chat/completions` answers a fixed 423-byte-class ChatCompletion, or, when the body
//! has `"stream":true`, an SSE stream of `MOCK_CHUNKS` content chunks (default 20) and
//! `data: [DONE]`. Body fields (extra_body fields, relayed by the gateway verbatim) shape it:
//! - none: the whole stream is one HTTP chunk (the "batched" shape);
//! - `"mock_chunked":true`: one HTTP chunk per event, as inference servers send tokens; with no
//!   pause they leave in as few writes as the socket takes, so the gateway's reads hold several;
//! - `"mock_pause_ms":N`: one chunk per event, N ms apart (one write each);
//! - `"mock_events":N`: N content chunks instead of `MOCK_CHUNKS`.
//!
//! `GET /stats` reports how many requests it served, so the bench can check the upstream really
//! saw every request.
//!
//! Usage: `mock_upstream ADDR [WORKERS]`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::web::{Bytes, Data};
use actix_web::{App, HttpResponse, HttpServer, web};

const COMPLETION: &str = r#"{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"This is a fixed answer from the mock upstream, long enough to look like a short reply."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":19,"total_tokens":31}}"#;

struct Mock {
    served: AtomicU64,
    chunks: Arc<Vec<Bytes>>,
    whole_stream: Bytes,
}

/// `n` content chunks and `data: [DONE]`, one `Bytes` per event.
fn stream_chunks(n: usize) -> Vec<Bytes> {
    let mut chunks: Vec<Bytes> = (0..n).map(|i| Bytes::from(chunk(i))).collect();
    chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
    chunks
}

fn chunk(i: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"mock-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
    )
}

/// The number after `"<field>":` in a request body.
fn number_field(body: &[u8], field: &str) -> Option<u64> {
    let key = format!("\"{field}\":");
    let key = key.as_bytes();
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: String = body[at..]
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    digits.parse().ok()
}

async fn chat(body: Bytes, mock: Data<Arc<Mock>>) -> HttpResponse {
    mock.served.fetch_add(1, Ordering::Relaxed);
    let stream = body.windows(13).any(|w| w == b"\"stream\":true")
        || body.windows(14).any(|w| w == b"\"stream\": true");
    if !stream {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(COMPLETION);
    }
    let pause = number_field(&body, "mock_pause_ms").unwrap_or(0);
    let chunked = body.windows(19).any(|w| w == b"\"mock_chunked\":true");
    let events = number_field(&body, "mock_events").map(|n| n as usize);
    match (pause, chunked, events) {
        (0, false, None) => HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(mock.whole_stream.clone()),
        (ms, _, events) => {
            let chunks = match events {
                Some(n) => Arc::new(stream_chunks(n)),
                None => mock.chunks.clone(),
            };
            let paced = futures::stream::unfold(0usize, move |i| {
                let chunks = chunks.clone();
                async move {
                    if i >= chunks.len() {
                        return None;
                    }
                    if i > 0 && ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    Some((Ok::<Bytes, actix_web::Error>(chunks[i].clone()), i + 1))
                }
            });
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .streaming(paced)
        }
    }
}

async fn stats(mock: Data<Arc<Mock>>) -> HttpResponse {
    HttpResponse::Ok().body(mock.served.load(Ordering::Relaxed).to_string())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    let n: usize = std::env::var("MOCK_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let chunks = Arc::new(stream_chunks(n));
    let whole_stream = Bytes::from(chunks.iter().flat_map(|c| c.to_vec()).collect::<Vec<u8>>());
    let mock = Data::new(Arc::new(Mock {
        served: AtomicU64::new(0),
        chunks,
        whole_stream,
    }));
    println!("mock upstream on {addr}");
    HttpServer::new(move || {
        App::new()
            .app_data(mock.clone())
            .route("/v1/chat/completions", web::post().to(chat))
            .route("/stats", web::get().to(stats))
    })
    .workers(workers)
    .backlog(4096)
    .max_connections(100_000)
    .bind(addr)?
    .run()
    .await
}
