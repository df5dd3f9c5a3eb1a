//! Load probe for the load bench, for what wrk cannot measure.
//!
//! - `stream_probe URL CONCURRENCY SECONDS BODY` runs a closed loop of requests and prints one
//!   JSON line: requests, errors, time to the first byte of the body (for a stream: its first
//!   event) and to the end, p50/p99/p99.9 in µs.
//! - `stream_probe URL N hold BODY` opens N streams, prints `{"held":N}` once every one has its
//!   first event, and keeps them open until stdin closes.
//!
//! A request counts only when its status is 2xx and, for a stream, it ended with `data: [DONE]`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::io::Read;
use std::time::{Duration, Instant};

use futures::StreamExt;

async fn one(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    started: Instant,
) -> Option<(u64, u64)> {
    let stream = body.contains("\"stream\":true");
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let mut parts = response.bytes_stream();
    let mut first = None;
    let mut done = !stream;
    while let Some(part) = parts.next().await {
        let part = part.ok()?;
        if first.is_none() && !part.is_empty() {
            first = Some(started.elapsed().as_micros() as u64);
        }
        done |= part.windows(12).any(|w| w == b"data: [DONE]");
    }
    done.then(|| (first.unwrap_or(0), started.elapsed().as_micros() as u64))
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(results: Vec<Option<(u64, u64)>>, seconds: u64) {
    let errors = results.iter().filter(|r| r.is_none()).count();
    let (mut firsts, mut ends): (Vec<u64>, Vec<u64>) = results.into_iter().flatten().unzip();
    firsts.sort_unstable();
    ends.sort_unstable();
    println!(
        "{{\"requests\":{},\"errors\":{},\"seconds\":{},\"first_p50\":{},\"first_p99\":{},\"first_p999\":{},\"end_p50\":{},\"end_p99\":{},\"end_p999\":{}}}",
        ends.len(),
        errors,
        seconds,
        pct(&firsts, 50.0),
        pct(&firsts, 99.0),
        pct(&firsts, 99.9),
        pct(&ends, 50.0),
        pct(&ends, 99.0),
        pct(&ends, 99.9)
    );
}

async fn hold(client: reqwest::Client, url: String, n: usize, body: String) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(n);
    for _ in 0..n {
        let (client, url, body, tx) = (client.clone(), url.clone(), body.clone(), tx.clone());
        tokio::spawn(async move {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let mut stream = response.bytes_stream();
            let _ = stream.next().await;
            tx.send(()).await.unwrap();
            while stream.next().await.is_some() {}
        });
    }
    for _ in 0..n {
        rx.recv().await.unwrap();
    }
    println!("{{\"held\":{n}}}");
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .unwrap();
}

async fn closed_loop(client: reqwest::Client, url: String, n: usize, seconds: u64, body: String) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while Instant::now() < deadline {
                out.push(one(&client, &url, &body, Instant::now()).await);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    report(all, seconds);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, n, mode, body) = (
        args[1].clone(),
        args[2].parse::<u64>().unwrap(),
        args[3].clone(),
        args[4].clone(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    match mode.as_str() {
        "hold" => hold(client, url, n as usize, body).await,
        seconds => closed_loop(client, url, n as usize, seconds.parse().unwrap(), body).await,
    }
}
