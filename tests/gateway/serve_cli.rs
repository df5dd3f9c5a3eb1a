//! `switchyard serve` as the real binary: SIGHUP reloads, SIGTERM drains in-flight streams.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::paced_sse::{PacedSse, Seen};

/// A `switchyard serve` process, killed on drop if still running.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn serve(routes: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, routes).unwrap();
    // Port 0: the child binds a free port and logs the address it got.
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let addr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let addr = lines
            .by_ref()
            .take(50)
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .find(|v| v["message"] == "switchyard listening")
            .and_then(|v| v["addr"].as_str().map(str::to_owned));
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        addr
    })
    .await
    .unwrap()
    .expect("the server logs the address it listens on");
    let served = Served {
        child,
        base: format!("http://{addr}"),
        _dir: dir,
    };
    for _ in 0..200 {
        if reqwest::get(format!("{}/health", served.base))
            .await
            .is_ok()
        {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("switchyard serve did not come up");
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sighup_forces_a_reload_and_the_server_keeps_serving() {
    let served =
        serve("[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"e/\"\nbackend = \"e\"\n")
            .await;
    signal(&served.child, "HUP");
    let mut reloaded = false;
    for _ in 0..200 {
        let h: Value = reqwest::get(format!("{}/health", served.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["config"]["reloads"]["succeeded"] == 1 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reloaded, "SIGHUP did not reload");
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_then_exits() {
    // Arrange: a stream in flight through the real binary.
    let events = vec![
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n".to_vec(),
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}]}\n\n".to_vec(),
        b"data: [DONE]\n\n".to_vec(),
    ];
    let mut upstream = PacedSse::start(events, false).await;
    let routes = format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[[routes]]\nprefix = \"up/\"\nbackend = \"up\"\n",
        upstream.base_url
    );
    let mut served = serve(&routes).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", served.base))
        .json(&json!({"model":"up/m","stream":true,"messages":[{"role":"user","content":"x"}]}))
        .send()
        .await
        .unwrap();
    assert!(matches!(upstream.next_seen().await, Seen::Request(_)));
    upstream.release().await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"a\""));

    // Act: SIGTERM while the stream is open, then let the upstream finish.
    signal(&served.child, "TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    upstream.release_all(2).await;
    let mut rest = Vec::new();
    while let Some(part) = body.next().await {
        rest.extend_from_slice(&part.unwrap());
    }

    // Assert: the stream completed, and the process then exited cleanly.
    let rest = String::from_utf8(rest).unwrap();
    assert!(
        rest.contains("\"b\"") && rest.ends_with("data: [DONE]\n\n"),
        "{rest}"
    );
    let mut exited = None;
    for _ in 0..200 {
        if let Some(status) = served.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(exited.is_some_and(|s| s.success()), "exit: {exited:?}");
    assert!(
        reqwest::get(format!("{}/health", served.base))
            .await
            .is_err(),
        "no longer accepting"
    );
}
