//! Shared test support: a real gateway on 127.0.0.1:0 with a temporary routes.toml, and fake
//! upstreams (wiremock, and a paced SSE server for what wiremock cannot do).

pub mod auth;
pub mod batch_upstream;
pub mod faulty;
pub mod gated_upstream;
pub mod held_upstream;
pub mod net;
pub mod ollama_upstream;
pub mod paced_sse;
pub mod postgres;
pub mod python;
pub mod raw_upstream;
pub mod redis;
pub mod test_ca;
pub mod tls_upstream;
pub mod wait;

use std::net::{SocketAddr, TcpListener};

use std::sync::Arc;

use switchyard::auth::clock::{Clock, SystemClock};
use switchyard::server;

/// A running gateway.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// A plain HTTP client.
    pub client: reqwest::Client,
    /// The routes.toml it loaded and watches.
    pub routes_path: std::path::PathBuf,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// `POST {base}{path}` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("gateway reachable")
    }

    /// `GET {base}{path}`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("gateway reachable")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        // Stop accepting at once; the test runtime's end takes the rest down.
        let handle = self.handle.clone();
        drop(handle.stop(false));
    }
}

/// Starts a gateway serving `routes_toml`. `{gateway}` in the text is replaced with the
/// gateway's own base URL (so a route can point an HTTP backend back at the gateway).
pub async fn spawn_gateway(routes_toml: &str) -> TestGateway {
    spawn_gateway_with_clock(routes_toml, Arc::new(SystemClock)).await
}

/// `spawn_gateway` with the clock that judges key expiry.
pub async fn spawn_gateway_with_clock(routes_toml: &str, clock: Arc<dyn Clock>) -> TestGateway {
    let dir = tempfile::tempdir().expect("temp dir");
    spawn_gateway_in(routes_toml, clock, dir).await
}

/// `spawn_gateway` with its routes.toml in `dir` (where a relative SQLite store lands).
pub async fn spawn_gateway_in(
    routes_toml: &str,
    clock: Arc<dyn Clock>,
    dir: tempfile::TempDir,
) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let base = format!("http://{addr}");
    let routes_path = dir.path().join("routes.toml");
    let text = routes_toml.replace("{gateway}", &base);
    let text = if text.contains("[server]") {
        text.replacen("[server]", "[server]\nworkers = 1", 1)
    } else {
        format!("[server]\nworkers = 1\n{text}")
    };
    std::fs::write(&routes_path, text).expect("write routes.toml");
    let state = server::load_state_with_clock(&routes_path, clock)
        .await
        .unwrap_or_else(|e| panic!("test routes.toml invalid: {e}"));
    let srv = server::start(listener, state).expect("start gateway");
    let handle = srv.handle();
    tokio::spawn(srv);
    TestGateway {
        addr,
        base,
        // Bounded: a gateway that never answers fails the test instead of hanging the suite.
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("client"),
        routes_path,
        handle,
        _dir: dir,
    }
}

/// A routes.toml with one `openai` backend `up` at `base_url` under prefix `up/`, and echo.
pub fn openai_routes(base_url: &str, extra_backend_keys: &str) -> String {
    format!(
        r#"
[backends.up]
kind = "openai"
base_url = "{base_url}"
connect_timeout = "2s"
{extra_backend_keys}

[backends.echo]
kind = "echo"

[[routes]]
prefix = "up/"
backend = "up"
models = ["gpt-4o"]

[[routes]]
prefix = "echo/"
backend = "echo"
models = ["hello"]
"#
    )
}

/// Reads an SSE body to the end and returns its `data:` payloads.
pub async fn sse_payloads(response: reqwest::Response) -> Vec<String> {
    let body = response.bytes().await.expect("body");
    switchyard::adapters::sse::data_payloads(&body)
        .into_iter()
        .map(|d| String::from_utf8(d).expect("utf-8"))
        .collect()
}

/// The `content` deltas of an SSE chat stream, concatenated.
pub fn stream_text(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| p.as_str() != "[DONE]")
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The body of a chat completion request: one user message, `prompt`, to `model`.
pub fn chat_body(model: &str, prompt: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
    })
}
