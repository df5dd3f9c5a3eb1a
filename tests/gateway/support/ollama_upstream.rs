//! An Ollama-like upstream that replays recorded transcripts (tests/fixtures/upstream/ollama)
//! in awkward network pieces: byte by byte, lines cut in the middle, several lines at once.
//!
//! Each piece is its own HTTP chunk, written and flushed on a `TCP_NODELAY` socket before the
//! next, as Ollama's Go server flushes each line. (wiremock writes a body in one go, so it
//! cannot show that the gateway copes with a line split across reads.) Replies are chosen by
//! path, and optionally by the request's `model` and `stream` (Ollama streams unless
//! `"stream": false`); every request is recorded for assertions on what the gateway sent.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::net::read_request;

/// How a body is cut into network writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pieces {
    /// One byte per write (UTF-8 sequences split too).
    ByteByByte,
    /// Cuts in the middle of every line: each write ends half-way through a line.
    SplitLines,
    /// Three whole lines per write.
    SeveralLines,
}

impl Pieces {
    /// Every way of cutting.
    pub const ALL: [Pieces; 3] = [Pieces::ByteByByte, Pieces::SplitLines, Pieces::SeveralLines];

    /// `body` cut into writes.
    pub fn cut(self, body: &[u8]) -> Vec<&[u8]> {
        match self {
            Pieces::ByteByByte => body.chunks(1).collect(),
            Pieces::SplitLines => {
                let mut cuts = Vec::new();
                let mut start = 0;
                for line in body.split_inclusive(|&b| b == b'\n') {
                    cuts.push(start + line.len() / 2);
                    start += line.len();
                }
                let mut pieces = Vec::new();
                let mut from = 0;
                for cut in cuts.into_iter().filter(|&c| c > 0) {
                    pieces.push(&body[from..cut]);
                    from = cut;
                }
                pieces.push(&body[from..]);
                pieces.retain(|p| !p.is_empty());
                pieces
            }
            Pieces::SeveralLines => {
                let lines: Vec<&[u8]> = body.split_inclusive(|&b| b == b'\n').collect();
                lines
                    .chunks(3)
                    .map(|group| {
                        let len: usize = group.iter().map(|l| l.len()).sum();
                        let start = group[0].as_ptr() as usize - body.as_ptr() as usize;
                        &body[start..start + len]
                    })
                    .collect()
            }
        }
    }
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `GET`.
    pub method: String,
    /// `/api/chat`.
    pub path: String,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// The raw head, lower-cased, for header checks.
    pub head: String,
}

struct Rule {
    path: String,
    model: Option<String>,
    stream: Option<bool>,
    /// Applies only to requests whose raw body contains this.
    needle: Option<String>,
    status: u16,
    headers: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    requests: Vec<Recorded>,
}

/// A running Ollama-like upstream.
pub struct OllamaUpstream {
    /// `http://127.0.0.1:port`: Ollama's root, as `base_url` takes it.
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
}

/// A transcript from tests/fixtures/upstream/ollama.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upstream/ollama")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

impl OllamaUpstream {
    /// Starts the upstream on a loopback port; it writes every body cut as `pieces` says.
    pub async fn start(pieces: Pieces) -> OllamaUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, state.clone(), pieces));
            }
        });
        OllamaUpstream { base_url, shared }
    }

    /// Answers requests to `path` with `status` and `body`. A rule naming a `model` or a
    /// `stream` value applies only to matching requests; the most specific rule wins, and
    /// among equals the latest.
    pub fn reply(
        &self,
        path: &str,
        model: Option<&str>,
        stream: Option<bool>,
        status: u16,
        body: Vec<u8>,
    ) {
        self.reply_with_headers(path, model, stream, status, &[], body);
    }

    /// `reply`, with extra response headers.
    pub fn reply_with_headers(
        &self,
        path: &str,
        model: Option<&str>,
        stream: Option<bool>,
        status: u16,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) {
        let headers = headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect();
        self.shared.lock().unwrap().rules.push(Rule {
            path: path.to_owned(),
            model: model.map(str::to_owned),
            stream,
            needle: None,
            status,
            headers,
            body,
        });
    }

    /// `reply`, for requests whose raw body contains `needle` (the second turn of a tool round
    /// trip carries the tool's result, say); more specific than a rule without one.
    pub fn reply_when_body_has(
        &self,
        path: &str,
        needle: &str,
        stream: Option<bool>,
        body: Vec<u8>,
    ) {
        self.shared.lock().unwrap().rules.push(Rule {
            path: path.to_owned(),
            model: None,
            stream,
            needle: Some(needle.to_owned()),
            status: 200,
            headers: String::new(),
            body,
        });
    }

    /// Answers requests to `path` whose raw body contains `needle` with `status` and `body`
    /// (an upstream failing one request of many).
    pub fn fail_when_body_has(&self, path: &str, needle: &str, status: u16, body: Vec<u8>) {
        self.shared.lock().unwrap().rules.push(Rule {
            path: path.to_owned(),
            model: None,
            stream: None,
            needle: Some(needle.to_owned()),
            status,
            headers: String::new(),
            body,
        });
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The last request to `path`.
    pub fn last(&self, path: &str) -> Recorded {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no request to {path}"))
    }
}

async fn serve(mut socket: TcpStream, shared: Arc<Mutex<Shared>>, pieces: Pieces) {
    let _ = socket.set_nodelay(true);
    let raw = read_request(&mut socket).await;
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_owned();
    let path = words.next().unwrap_or_default().to_owned();
    let raw_body = String::from_utf8_lossy(&raw[split + 4..]).to_string();
    let body: Value = serde_json::from_slice(&raw[split + 4..]).unwrap_or(Value::Null);
    let model = body["model"].as_str().map(str::to_owned);
    // Ollama's default: a chat streams unless the body says `"stream": false`.
    let stream = body["stream"].as_bool().unwrap_or(true);
    let (status, headers, reply) = {
        let mut shared = shared.lock().unwrap();
        shared.requests.push(Recorded {
            method,
            path: path.clone(),
            body,
            head: head.to_ascii_lowercase(),
        });
        let rule = shared
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.path == path
                    && r.model.as_ref().is_none_or(|m| Some(m) == model.as_ref())
                    && r.stream.is_none_or(|s| s == stream)
                    && r.needle
                        .as_ref()
                        .is_none_or(|n| raw_body.contains(n.as_str()))
            })
            .max_by_key(|(i, r)| {
                let specific = [r.model.is_some(), r.stream.is_some(), r.needle.is_some()];
                (specific.iter().filter(|s| **s).count(), *i)
            })
            .map(|(_, r)| (r.status, r.headers.clone(), r.body.clone()));
        rule.unwrap_or_else(|| {
            (
                500,
                String::new(),
                format!("{{\"error\":\"the test set no reply for {path}\"}}").into_bytes(),
            )
        })
    };
    let content_type = if status == 200 && path == "/api/chat" && stream {
        "application/x-ndjson"
    } else {
        "application/json; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n{headers}transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for piece in pieces.cut(&reply) {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        if socket.write_all(&chunk).await.is_err() || socket.flush().await.is_err() {
            return;
        }
        // Let the gateway read this piece before the next is written.
        tokio::task::yield_now().await;
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let _ = socket.shutdown().await;
}

#[test]
fn pieces_cover_the_body_exactly() {
    let body = b"{\"a\":1}\n{\"b\":22}\n{\"c\":333}\n{\"d\":4}\n";
    for p in Pieces::ALL {
        let pieces = p.cut(body);
        assert_eq!(pieces.concat(), body, "{p:?}");
        assert!(pieces.len() > 1, "{p:?}");
    }
    let split = Pieces::SplitLines.cut(body);
    assert_eq!(split[0], b"{\"a\"");
    assert_eq!(split[1], b":1}\n{\"b\"");
    assert_eq!(Pieces::SeveralLines.cut(body).len(), 2);
}
