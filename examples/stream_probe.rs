//! Streaming load probe for the load bench: wrk cannot time the first event of a stream.
//!
//! `stream_probe URL CONCURRENCY SECONDS BODY` runs a closed loop of streamed requests and prints
//! one JSON line: requests, errors, time to first event and to the end (p50/p99/p99.9 in µs).
//! `stream_probe URL N hold BODY` opens N streams, prints `{"held":N}` once every one has its
//! first event, and keeps them open until stdin closes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::io::Read;
use std::time::{Duration, Instant};

use futures::StreamExt;

async fn one(client: &reqwest::Client, url: &str, body: &str) -> Option<(u64, u64)> {
    let started = Instant::now();
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
    let mut stream = response.bytes_stream();
    let mut first = None;
    let mut done = false;
    while let Some(part) = stream.next().await {
        let part = part.ok()?;
        if first.is_none() && part.windows(5).any(|w| w == b"data:") {
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, n, mode, body) = (
        args[1].clone(),
        args[2].parse::<usize>().unwrap(),
        args[3].clone(),
        args[4].clone(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()
        .unwrap();
    if mode == "hold" {
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
        return;
    }
    let seconds: u64 = mode.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                match one(&client, &url, &body).await {
                    Some(t) => ok.push(t),
                    None => errors += 1,
                }
            }
            (ok, errors)
        }));
    }
    let (mut firsts, mut ends, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (ok, e) = t.await.unwrap();
        errors += e;
        for (f, d) in ok {
            firsts.push(f);
            ends.push(d);
        }
    }
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
