//! What the Redis hop adds: latency (p50, p99) of a chat call and of a 20-chunk stream, one
//! request at a time, called directly and through each pair, all in one run:
//!
//! - Switchyard pair: HTTP client → `switchyard serve` (redis backend) → Redis →
//!   `switchyard worker` → upstream;
//! - Python pair: `OpenAIRQ` → Redis → `openai-rq worker` → upstream (timed from Python,
//!   against Python's own direct call, so each client's overhead cancels out);
//! - mixed: `OpenAIRQ` → Redis → `switchyard worker` (the worker swapped alone).
//!
//! Also the CPU time each worker process spends per request (from /proc). Everything runs on
//! loopback: a redis-server started here, a fast in-process upstream (fixed 422-byte chat
//! completion; 20 content chunks), release builds. Run: `cargo bench --bench redis_hop`
//! (needs redis-server, and the venv of scripts/test.sh for the Python rows).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const N: usize = 2000;
const WARMUP: usize = 200;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// utime + stime of the process so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }
}

const CHAT: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog, and then it jumps again, just to be sure that everybody saw it. Twice, for good measure, okay."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":25,"total_tokens":37},"system_fingerprint":"fp_bench_000000"}"#;

fn sse() -> String {
    let mut body = String::new();
    for i in 0..20 {
        body.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i:02} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    body.push_str("data: [DONE]\n\n");
    body
}

/// A keep-alive HTTP/1.1 upstream answering chat (JSON or a 20-chunk stream) at once.
async fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stream_body = sse();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let stream_body = stream_body.clone();
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = &buf[end + 4..end + 4 + length];
                    let stream = body.windows(13).any(|w| w == b"\"stream\":true")
                        || body.windows(14).any(|w| w == b"\"stream\": true");
                    let response = if stream {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{stream_body}",
                            stream_body.len()
                        )
                    } else {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CHAT}",
                            CHAT.len()
                        )
                    };
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    buf.drain(..end + 4 + length);
                }
            });
        }
    });
    port
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50).as_secs_f64() * 1e3, at(0.99).as_secs_f64() * 1e3)
}

async fn measure(client: &reqwest::Client, url: &str, body: &str) -> (f64, f64) {
    let mut samples = Vec::with_capacity(N);
    for i in 0..WARMUP + N {
        let started = Instant::now();
        let r = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let bytes = r.bytes().await.unwrap();
        assert!(bytes.len() > 400);
        if i >= WARMUP {
            samples.push(started.elapsed());
        }
    }
    percentiles(samples)
}

fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on {port}");
}

fn python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    p.exists().then_some(p)
}

fn switchyard_worker(redis_url: &str, upstream: &str) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "worker",
                "--redis-url",
                redis_url,
                "--openai-base-url",
                upstream,
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn python_worker(redis_url: &str, upstream: &str) -> Option<Proc> {
    let script = python()?.with_file_name("openai-rq");
    Some(Proc(
        Command::new(script)
            .args([
                "worker",
                "--redis-url",
                redis_url,
                "--openai-base-url",
                upstream,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    ))
}

/// Runs benches/openai_rq_pair.py: Python's direct call vs `OpenAIRQ` through Redis.
fn python_pair(redis_url: &str, upstream: &str) -> Option<serde_json::Value> {
    let out = Command::new(python()?)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/openai_rq_pair.py"))
        .args([redis_url, upstream, &N.to_string(), &WARMUP.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn main() {
    // `cargo bench` passes --bench; anything else (cargo test --benches) is a no-op here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = std::env::temp_dir().join(format!("redis-hop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let redis_port = free_port();
    let _redis = Proc(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server installed"),
    );
    wait_port(redis_port);
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let up_port = upstream().await;
    let up = format!("http://127.0.0.1:{up_port}/v1");
    let gw_port = free_port();
    std::fs::write(
        dir.join("routes.toml"),
        format!("[server]\nworkers = 1\n[backends.dc]\nkind = \"redis\"\nredis_url = \"{redis_url}\"\n[[routes]]\nprefix = \"dc/\"\nbackend = \"dc\"\n"),
    )
    .unwrap();
    let _gateway = Proc(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--config"])
            .arg(dir.join("routes.toml"))
            .args(["--listen", &format!("127.0.0.1:{gw_port}")])
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    wait_port(gw_port);
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let chat = r#"{"model":"dc/m","messages":[{"role":"user","content":"hi"}]}"#;
    let stream = r#"{"model":"dc/m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

    println!("Redis hop, one request at a time, {N} requests after {WARMUP} warm-up; ms");
    let direct_chat = measure(&client, &format!("{up}/chat/completions"), chat).await;
    let direct_stream = measure(&client, &format!("{up}/chat/completions"), stream).await;

    let worker = switchyard_worker(&redis_url, &up);
    let gw = format!("http://127.0.0.1:{gw_port}/v1/chat/completions");
    let cpu0 = worker.cpu();
    let sy_chat = measure(&client, &gw, chat).await;
    let sy_stream = measure(&client, &gw, stream).await;
    let sy_cpu = (worker.cpu() - cpu0).as_secs_f64() * 1e6 / (2 * (N + WARMUP)) as f64;

    // Same client, the Python worker (gateway → Python worker).
    drop(worker);
    let py_worker = python_worker(&redis_url, &up);
    let gw_py = if py_worker.is_some() {
        std::thread::sleep(Duration::from_millis(500));
        Some((
            measure(&client, &gw, chat).await,
            measure(&client, &gw, stream).await,
        ))
    } else {
        None
    };

    println!("| path | chat p50 | chat p99 | stream p50 | stream p99 | worker CPU/request |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, c: (f64, f64), s: (f64, f64), cpu: &str| {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {cpu} |",
            c.0, c.1, s.0, s.1
        );
    };
    row("direct (Rust client)", direct_chat, direct_stream, "");
    row(
        "Switchyard gateway → Redis → switchyard worker",
        sy_chat,
        sy_stream,
        &format!("{sy_cpu:.0} µs"),
    );
    if let Some((c, s)) = gw_py {
        row("Switchyard gateway → Redis → openai-rq worker", c, s, "");
    }
    println!(
        "added by the Switchyard pair: chat +{:.3} ms p50 / +{:.3} ms p99; stream +{:.3} ms p50 / +{:.3} ms p99",
        sy_chat.0 - direct_chat.0,
        sy_chat.1 - direct_chat.1,
        sy_stream.0 - direct_stream.0,
        sy_stream.1 - direct_stream.1
    );

    // The Python client's rows: its direct call, and OpenAIRQ against each worker.
    let Some(py_worker) = py_worker else {
        println!("(no .venv: Python rows skipped; run bash scripts/test.sh first)");
        return;
    };
    let cpu0 = py_worker.cpu();
    let py = python_pair(&redis_url, &up).unwrap();
    let py_cpu = (py_worker.cpu() - cpu0).as_secs_f64() * 1e6 / (2 * (N + WARMUP)) as f64;
    drop(py_worker);
    let worker = switchyard_worker(&redis_url, &up);
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = worker.cpu();
    let mixed = python_pair(&redis_url, &up).unwrap();
    let mixed_cpu = (worker.cpu() - cpu0).as_secs_f64() * 1e6 / (2 * (N + WARMUP)) as f64;
    let get =
        |v: &serde_json::Value, k: &str| (v[k][0].as_f64().unwrap(), v[k][1].as_f64().unwrap());
    row(
        "direct (Python openai SDK)",
        get(&py, "direct_chat"),
        get(&py, "direct_stream"),
        "",
    );
    row(
        "OpenAIRQ → Redis → openai-rq worker",
        get(&py, "rq_chat"),
        get(&py, "rq_stream"),
        &format!("{py_cpu:.0} µs"),
    );
    row(
        "OpenAIRQ → Redis → switchyard worker",
        get(&mixed, "rq_chat"),
        get(&mixed, "rq_stream"),
        &format!("{mixed_cpu:.0} µs"),
    );
    println!(
        "added by the Python pair: chat +{:.3} ms p50 / +{:.3} ms p99; stream +{:.3} ms p50 / +{:.3} ms p99",
        get(&py, "rq_chat").0 - get(&py, "direct_chat").0,
        get(&py, "rq_chat").1 - get(&py, "direct_chat").1,
        get(&py, "rq_stream").0 - get(&py, "direct_stream").0,
        get(&py, "rq_stream").1 - get(&py, "direct_stream").1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
