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
    /// The `message` of each JSON log line after the listening one (`serve` only).
    log: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Waits (at most 10 s) until the server logs `message`.
    pub(crate) async fn wait_for_log(&mut self, message: &str) {
        let log = self.log.as_mut().expect("a server started by `serve`");
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = log.recv().await {
                if line == message {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(seen, Ok(true), "the server did not log {message:?}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn serve(routes: &str) -> Served {
    serve_with_env(routes, &[]).await
}

/// `serve` with extra environment variables for the child.
pub(crate) async fn serve_with_env(routes: &str, env: &[(&str, &str)]) -> Served {
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
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (log_tx, log) = tokio::sync::mpsc::unbounded_channel();
    let addr = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let addr = lines
            .by_ref()
            .take(50)
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .find(|v| v["message"] == "switchyard listening")
            .and_then(|v| v["addr"].as_str().map(str::to_owned));
        // Keep draining so the child never blocks on a full pipe; tests may wait for a line.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(message) = v["message"].as_str()
                {
                    let _ = log_tx.send(message.to_owned());
                }
            }
        });
        addr
    })
    .await
    .unwrap()
    .expect("the server logs the address it listens on");
    let served = Served {
        child,
        base: format!("http://{addr}"),
        log: Some(log),
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
    served
        .wait_for_log("SIGTERM received; starting graceful shutdown")
        .await;
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

#[tokio::test]
async fn a_newline_in_a_client_model_name_cannot_forge_a_text_log_line() {
    // Arrange: the real binary with the default text log format, at debug (client faults).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(
        &path,
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"echo/\"\nbackend = \"e\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a log line")
    };
    let listening = (0..50)
        .map(|_| next_line())
        .find(|l| l.contains("switchyard listening"))
        .expect("the server logs the address it listens on");
    let addr = listening
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let served = Served {
        child,
        base: format!("http://{addr}"),
        log: None,
        _dir: dir,
    };

    // Act: a model name carrying a forged log line.
    let forged = "ERROR switchyard: forged line";
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", served.base))
        .json(&json!({"model": format!("nope\n{forged}\r\n"), "messages": [{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // Assert: the refusal is logged on one line, the newline escaped; no line is the forgery.
    let mut seen = Vec::new();
    let refused = loop {
        let line = next_line();
        assert!(
            !line.starts_with(forged),
            "forged line in the log: {seen:#?}"
        );
        seen.push(line.clone());
        if line.contains("request refused") {
            break line;
        }
        assert!(seen.len() < 100, "no refusal logged: {seen:#?}");
    };
    assert!(
        refused.contains(r"nope\nERROR switchyard: forged line\r\n"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_trace_log_kept_beside_the_config_does_not_loop_reloads() {
    // Arrange: the real binary logging at trace level into a file in the config's directory,
    // so every reload attempt writes there (on the old watcher, every write there reloaded).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    let table = |prefix: &str| {
        format!(
            "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"{prefix}\"\nbackend = \"e\"\n"
        )
    };
    std::fs::write(&path, table("a/")).unwrap();
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&path)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut addr = None;
    for _ in 0..400 {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        addr = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "switchyard listening")
            .and_then(|v| v["addr"].as_str().map(str::to_owned));
        if addr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let served = Served {
        child,
        base: format!("http://{}", addr.expect("the server logs its address")),
        log: None,
        _dir: dir,
    };
    let health = || async {
        reqwest::get(format!("{}/health", served.base))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };

    // Act: one real edit of the config.
    std::fs::write(&path, table("b/")).unwrap();

    // Assert: it is picked up, and the log's own writes caused no reload attempt.
    let mut reloads = Value::Null;
    for _ in 0..400 {
        reloads = health().await["config"]["reloads"].clone();
        if reloads["succeeded"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(reloads["succeeded"], 1, "{reloads}");
    // Every /health answer and every reload attempt writes to the log: with a watcher that
    // reacts to it, attempts follow within one debounce window (at most 400 ms) and keep
    // coming. Watch for a second (bounded): none may come.
    for _ in 0..40 {
        let now = health().await["config"]["reloads"].clone();
        assert_eq!(now["unchanged"], 0, "the log file triggered reloads: {now}");
        assert_eq!(
            (&now["succeeded"], &now["failed"]),
            (&json!(1), &json!(0)),
            "{now}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
