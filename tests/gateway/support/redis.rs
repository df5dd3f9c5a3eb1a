//! Real parts for the Redis transport tests: a `redis-server` on a free loopback port (killed by
//! PID on drop), `switchyard worker` and `openai-rq worker` processes (killed by PID on drop),
//! in-process workers, and a held upstream whose every request waits for the test's go.
//!
//! A missing `redis-server` (or Python venv) fails the test with instructions: never a skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use secrecy::SecretString;
use switchyard::worker::{Worker, WorkerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::net::{free_port, parse_request, read_request};

/// A redis-server this test started.
pub struct TestRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `redis://127.0.0.1:port/0`.
    pub url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn redis_server_path() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server is not installed (CI={}): the Redis transport tests need a real one. \
             Run `bash scripts/test.sh` (it installs it with apt-get), or `apt-get install -y \
             redis-server`.",
            std::env::var("CI").unwrap_or_default()
        )
    })
}

impl TestRedis {
    /// Starts a redis-server without persistence on a free port and waits until it answers.
    pub async fn start() -> TestRedis {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut redis = TestRedis {
            port,
            url: format!("redis://127.0.0.1:{port}/0"),
            child: None,
            dir,
        };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let child = Command::new(redis_server_path())
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        // Bounded: 200 × 25 ms = 5 s.
        for _ in 0..200 {
            if let Ok(mut c) = self.try_conn().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "redis-server did not answer on port {} within 5 s",
            self.port
        );
    }

    async fn try_conn(&self) -> redis::RedisResult<MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str())?;
        client.get_multiplexed_async_connection().await
    }

    /// A connection for the test's own checks.
    pub async fn conn(&self) -> MultiplexedConnection {
        self.try_conn().await.expect("connect to the test redis")
    }

    /// Kills the server (SIGKILL, by PID) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh one (empty, no persistence) on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Every key and its TTL in seconds (-1: none).
    pub async fn keys_with_ttl(&self) -> Vec<(String, i64)> {
        let mut c = self.conn().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        let mut out = Vec::new();
        for k in keys {
            let ttl: i64 = redis::cmd("TTL").arg(&k).query_async(&mut c).await.unwrap();
            out.push((k, ttl));
        }
        out.sort();
        out
    }

    /// Everything Redis holds, as text (`DEBUG`-free: a dump of every key's content).
    pub async fn dump_text(&self) -> String {
        let mut c = self.conn().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        let mut out = String::new();
        for k in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&k)
                .query_async(&mut c)
                .await
                .unwrap();
            let mut cmd = match kind.as_str() {
                "stream" => redis::cmd("XRANGE"),
                "list" => redis::cmd("LRANGE"),
                _ => redis::cmd("DUMP"),
            };
            cmd.arg(&k);
            match kind.as_str() {
                "stream" => cmd.arg("-").arg("+"),
                "list" => cmd.arg(0).arg(-1),
                _ => &mut cmd,
            };
            let value: redis::Value = cmd.query_async(&mut c).await.unwrap();
            out.push_str(&format!("{k}: {value:?}\n"));
        }
        out
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process this test started, killed by PID (SIGKILL) on drop.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its log lines, when they are read (`spawn_switchyard_worker`).
    log: Option<mpsc::UnboundedReceiver<String>>,
}

impl Proc {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, by PID, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM by PID.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits (at most 10 s) until the process logs a line containing `message`.
    pub async fn wait_for_log(&mut self, message: &str) {
        let log = self.log.as_mut().expect("a process whose log is read");
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = log.recv().await {
                if line.contains(message) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            seen,
            Ok(true),
            "process {} did not log {message:?}",
            self.pid()
        );
    }

    /// Waits (bounded) for the process to exit; its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let steps = within.as_millis() / 50;
        for _ in 0..steps {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("process {} did not exit within {within:?}", self.pid());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `switchyard worker` (this build's binary) as a process.
pub fn spawn_switchyard_worker(redis_url: &str, base_url: &str, extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "worker",
            "--redis-url",
            redis_url,
            "--openai-base-url",
            base_url,
        ])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard worker");
    Proc {
        log: Some(read_log(&mut child)),
        child,
    }
}

/// The child's stderr, line by line, both passed on to the test's own stderr (as an inherited
/// one would be) and sent to the returned receiver.
fn read_log(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    use std::io::{BufRead, Write};
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            // Passed on as an inherited stderr would show it (the tests' output shows it on a
            // failure).
            let _ = writeln!(std::io::stderr(), "{line}");
            let _ = tx.send(line);
        }
    });
    rx
}

/// Starts the Python package's `openai-rq worker` console script from the venv.
pub fn spawn_python_worker(redis_url: &str, base_url: &str, extra: &[&str]) -> Proc {
    let python = super::python::python();
    let script = python.with_file_name("openai-rq");
    assert!(
        script.exists(),
        "{} missing: the venv needs openai-rq==0.1.2 (tests/python/requirements.txt); run \
         `bash scripts/test.sh`",
        script.display()
    );
    let child = Command::new(script)
        .args([
            "worker",
            "--redis-url",
            redis_url,
            "--openai-base-url",
            base_url,
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start openai-rq worker");
    Proc { child, log: None }
}

/// A worker config for in-process workers, with test-friendly timings.
pub fn worker_config(redis_url: &str, base_url: &str) -> WorkerConfig {
    let mut cfg = WorkerConfig::new(
        SecretString::from(redis_url.to_owned()),
        url::Url::parse(base_url).expect("base url"),
    );
    cfg.block = Duration::from_millis(200);
    // Each in-process worker its own consumer, as separate processes would be (the default,
    // `<hostname>/<pid>`, is the same for every worker in this test process).
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cfg.consumer = format!("{}/test-worker-{n}", cfg.consumer);
    cfg
}

/// An in-process worker running `run_until_stopped` on its own task.
pub struct RunningWorker {
    /// Cancel to stop it.
    pub stop: CancellationToken,
    handle: tokio::task::JoinHandle<switchyard::worker::StatsSnapshot>,
}

impl RunningWorker {
    /// Starts one.
    pub fn start(cfg: WorkerConfig) -> RunningWorker {
        let worker = Worker::new(cfg).expect("worker");
        let stop = worker.stop_token();
        let handle = tokio::spawn(worker.run_until_stopped());
        RunningWorker { stop, handle }
    }

    /// Stops it and waits for its drain; its final counters.
    pub async fn shutdown(mut self) -> switchyard::worker::StatsSnapshot {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(40), &mut self.handle)
            .await
            .expect("worker stopped in time")
            .expect("worker task")
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One request received by the held upstream, waiting for the test's go.
pub struct Held {
    /// Request path with query.
    pub path: String,
    /// Request headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Parsed JSON body (Null if none).
    pub body: serde_json::Value,
    step: mpsc::Sender<Step>,
    /// Reports `true` once the connection's writes failed (the caller went away).
    pub gone: mpsc::Receiver<()>,
}

/// What the held upstream writes next on one connection.
#[derive(Debug)]
pub enum Step {
    /// Response head (status, content type) for a stream.
    SseHead,
    /// One SSE event with this content delta.
    Event(String),
    /// `data: [DONE]` and close.
    Done,
    /// A whole JSON chat completion with this content, and close.
    Json(String),
    /// These bytes as they are.
    Raw(String),
}

impl Held {
    /// Writes the next step.
    pub async fn send(&self, step: Step) {
        self.step.send(step).await.expect("held connection alive");
    }

    /// The request's `messages[0].content`.
    pub fn prompt(&self) -> String {
        self.body["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// An upstream that hands each request to the test and writes only what it is told.
pub struct HeldUpstream {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    /// Requests as they arrive.
    pub requests: mpsc::Receiver<Held>,
}

impl HeldUpstream {
    /// Starts it (any number of connections, one request each).
    pub async fn start() -> HeldUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let (tx, requests) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_held(socket, tx.clone()));
            }
        });
        HeldUpstream { base_url, requests }
    }

    /// The next request, waiting at most `within`.
    pub async fn next(&mut self, within: Duration) -> Held {
        tokio::time::timeout(within, self.requests.recv())
            .await
            .expect("the upstream received a request in time")
            .expect("upstream open")
    }

    /// Asserts no request arrives for `quiet`.
    pub async fn assert_none_for(&mut self, quiet: Duration) {
        if let Ok(Some(held)) = tokio::time::timeout(quiet, self.requests.recv()).await {
            panic!("unexpected upstream request: {} {}", held.path, held.body);
        }
    }
}

async fn serve_held(mut socket: TcpStream, tx: mpsc::Sender<Held>) {
    let Some((path, headers, body)) = parse_request(&read_request(&mut socket).await) else {
        return;
    };
    let (step_tx, mut steps) = mpsc::channel(64);
    let (gone_tx, gone) = mpsc::channel(1);
    let held = Held {
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        step: step_tx,
        gone,
    };
    if tx.send(held).await.is_err() {
        return;
    }
    let mut buf = [0u8; 1];
    loop {
        let step = tokio::select! {
            step = steps.recv() => step,
            // The caller closed the connection while we were held.
            n = socket.read(&mut buf) => { if matches!(n, Ok(0) | Err(_)) { let _ = gone_tx.send(()).await; return; } continue; }
        };
        let Some(step) = step else { return };
        let bytes = match &step {
            Step::SseHead => {
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
                    .to_owned()
            }
            Step::Event(text) => format!(
                "data: {}\n\n",
                serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
                    "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
            ),
            Step::Done => "data: [DONE]\n\n".to_owned(),
            Step::Raw(text) => text.clone(),
            Step::Json(text) => {
                let body = serde_json::json!({"id":"c1","object":"chat.completion","created":1,"model":"m",
                    "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}]}).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        if socket.write_all(bytes.as_bytes()).await.is_err() || socket.flush().await.is_err() {
            let _ = gone_tx.send(()).await;
            return;
        }
        if matches!(step, Step::Done | Step::Json(_)) {
            let _ = socket.shutdown().await;
            return;
        }
    }
}

/// A routes.toml with a `redis` backend `dc` under prefix `dc/`.
pub fn redis_routes(redis_url: &str, timeout: &str) -> String {
    format!(
        r#"
[backends.dc]
kind = "redis"
redis_url = "{redis_url}"
timeout = "{timeout}"

[[routes]]
prefix = "dc/"
backend = "dc"
"#
    )
}
