//! Issue 15's per-request work, piece by piece: one rate-limit check (all three kinds, a
//! caller seen before), and reading usage from a relayed stream and a JSON answer.
//!
//! `cargo bench --bench usage_limits`. The whole-gateway cost is the load bench's
//! `switchyard+usage` and `switchyard+limits` rows (benches/load/run.py).

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use switchyard::backends::ByteStream;
use switchyard::config::RateLimit;
use switchyard::limits::rate::{RateLimiter, SystemClock};
use switchyard::usage::Metered;

fn rate_limit_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let limiter = RateLimiter::local(Arc::new(SystemClock::default()));
    let limit = RateLimit {
        requests_per_minute: Some(60_000_000),
        tokens_per_minute: Some(60_000_000),
        max_concurrent: Some(1_000_000),
    };
    c.bench_function("rate_limit/check_and_charge", |b| {
        b.to_async(&rt).iter(|| async {
            let admitted = limiter
                .check("key:k-0123:route:mock/", &limit)
                .await
                .unwrap();
            admitted.charge(black_box(31));
            black_box(admitted.requests)
        })
    });
}

fn stream(reads: &[Bytes]) -> ByteStream {
    let reads: Vec<_> = reads.iter().cloned().map(Ok).collect();
    Box::pin(futures::stream::iter(reads))
}

fn usage_meter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let chunk = Bytes::from_static(b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word \"},\"finish_reason\":null}],\"usage\":null}\n\n");
    let last = Bytes::from_static(b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":20,\"total_tokens\":32}}\n\ndata: [DONE]\n\n");
    let mut reads = vec![chunk; 20];
    reads.push(last);
    for (name, strip) in [
        ("stream_20_chunks_kept", false),
        ("stream_20_chunks_stripped", true),
    ] {
        c.bench_function(&format!("usage_meter/{name}"), |b| {
            b.to_async(&rt).iter(|| async {
                let metered = Metered::new(
                    stream(&reads),
                    strip,
                    Box::new(|end| {
                        black_box(end.tokens);
                    }),
                );
                metered
                    .map(|r| r.unwrap().len())
                    .fold(0, |a, n| async move { a + n })
                    .await
            })
        });
    }
    let json = Bytes::from_static(b"{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"mock-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"This is a fixed answer.\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":19,\"total_tokens\":31}}");
    c.bench_function("usage_meter/json_answer", |b| {
        b.to_async(&rt).iter(|| async {
            let metered = Metered::json(
                stream(std::slice::from_ref(&json)),
                Box::new(|end| {
                    black_box(end.tokens);
                }),
            );
            metered
                .map(|r| r.unwrap().len())
                .fold(0, |a, n| async move { a + n })
                .await
        })
    });
}

criterion_group!(benches, rate_limit_check, usage_meter);
criterion_main!(benches);
