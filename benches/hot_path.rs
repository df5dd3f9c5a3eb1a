//! The gateway's per-request work, piece by piece: route lookup, parsing and forwarding a body,
//! and relaying SSE.
//!
//! `cargo bench --bench hot_path`. Figures are in the README's Performance section.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use std::hint::black_box;
use switchyard::adapters::openai::relay_events;
use switchyard::adapters::stream::Reads;
use switchyard::backends::ByteStream;
use switchyard::config;
use switchyard::routes::parse_request;
use switchyard::routing::RouteTable;
use switchyard::routing::rewrite::replace_model;
use switchyard::schema::ChatCompletionRequest;

fn table_with(n: usize) -> RouteTable {
    let mut src = String::from("[backends.e]\nkind = \"echo\"\n");
    for i in 0..n {
        // Varied lengths, as real prefixes are ("openai/", "team-a/vllm/", ...).
        src.push_str(&format!(
            "[[routes]]\nprefix = \"team-{i}/{}\"\nbackend = \"e\"\n",
            "x/".repeat(i % 7)
        ));
    }
    let config = config::validate(&src, "bench.toml", &|_| None).expect("valid");
    RouteTable::build(&config).expect("table")
}

fn route_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [10, 1000] {
        let table = table_with(n);
        let model = format!("team-{}/{}gpt-4o", n / 2, "x/".repeat((n / 2) % 7));
        assert!(table.resolve(&model).is_some());
        group.bench_with_input(BenchmarkId::new("hit", n), &model, |b, m| {
            b.iter(|| black_box(table.resolve(black_box(m)).map(|r| r.upstream_model.len())))
        });
        group.bench_with_input(BenchmarkId::new("miss", n), "unrouted/model", |b, m| {
            b.iter(|| black_box(table.resolve(black_box(m)).is_none()))
        });
    }
    group.finish();
}

/// A chat request of about `size` bytes: a realistic head, then one long user message.
fn request_of(size: usize) -> Bytes {
    let head = r#"{"model":"openai/gpt-4o","temperature":0.2,"stream":false,"guided_json":{"type":"object"},"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"model":{"type":"string"}}}}}],"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let filler = "lorem ipsum dolor sit amet ".repeat(size / 27 + 1);
    let mut body = String::with_capacity(size + 64);
    body.push_str(head);
    body.push_str(&filler[..size.saturating_sub(head.len() + tail.len())]);
    body.push_str(tail);
    Bytes::from(body)
}

fn parse_and_forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_and_forward");
    for size in [1024, 256 * 1024] {
        let body = request_of(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        // What the gateway does: typed parse (validation, routing), then splice the new model
        // name into the client's bytes.
        group.bench_with_input(
            BenchmarkId::new("typed_parse_then_splice", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let req: ChatCompletionRequest = parse_request(body).expect("valid");
                    let out = replace_model(body, &req.model, &req.model["openai/".len()..])
                        .expect("spliced");
                    black_box(out.len())
                })
            },
        );
        // The alternative the style guide asks to compare: a Value round-trip.
        group.bench_with_input(
            BenchmarkId::new("typed_parse_then_value_roundtrip", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let req: ChatCompletionRequest = parse_request(body).expect("valid");
                    let mut value: serde_json::Value = serde_json::from_slice(body).expect("json");
                    value["model"] =
                        serde_json::Value::String(req.model["openai/".len()..].to_owned());
                    black_box(serde_json::to_vec(&value).expect("serialise").len())
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("splice_only", size), &body, |b, body| {
            b.iter(|| {
                black_box(
                    replace_model(body, "openai/gpt-4o", "gpt-4o")
                        .expect("spliced")
                        .len(),
                )
            })
        });
        group.bench_with_input(
            BenchmarkId::new("typed_parse_only", size),
            &body,
            |b, body| {
                b.iter(|| {
                    black_box(
                        parse_request::<ChatCompletionRequest>(body)
                            .expect("valid")
                            .messages
                            .len(),
                    )
                })
            },
        );
    }
    group.finish();
}

fn sse_relay(c: &mut Criterion) {
    // 20 content chunks + [DONE], like the load bench's stream, cut into reads of 1 event, of
    // 1.5 events (each read ends mid-event), and of the whole stream.
    let event = |i: usize| {
        format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token{i} \"}},\"finish_reason\":null}}]}}\n\n"
        )
    };
    let mut stream = String::new();
    for i in 0..20 {
        stream.push_str(&event(i));
    }
    stream.push_str("data: [DONE]\n\n");
    let stream = Bytes::from(stream);
    let one = event(0).len();
    let mut group = c.benchmark_group("sse_relay");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    for (name, read) in [
        ("read_per_event", one),
        ("reads_split_mid_event", one * 3 / 2),
        ("one_read", stream.len()),
    ] {
        let reads: Vec<Bytes> = stream.chunks(read).map(Bytes::copy_from_slice).collect();
        group.bench_function(name, |b| {
            b.iter(|| {
                let upstream: ByteStream =
                    Box::pin(futures::stream::iter(reads.clone().into_iter().map(Ok)));
                let out = futures::executor::block_on(
                    relay_events(upstream, "bench", Reads::Direct)
                        .fold(0, |n, e| async move { n + e.expect("ok").len() }),
                );
                black_box(out)
            })
        });
    }
    group.finish();
}

/// The gateway-key check on a cache hit: bearer parse, SHA-256, cache lookup, expiry check.
fn auth_check(c: &mut Criterion) {
    use secrecy::{SecretBox, SecretString};
    use switchyard::auth::Auth;
    use switchyard::auth::admin::{KeySpec, ProjectSpec};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let config = config::AuthConfig {
        master_key: SecretBox::new(Box::new([7; 32])),
        previous_master_keys: Vec::new(),
        admin_token: SecretString::from("bench-admin-token-0123456789".to_owned()),
    };
    let auth = rt.block_on(async {
        let store = switchyard::store::Store::open(&url).await.unwrap();
        let clock = std::sync::Arc::new(switchyard::auth::clock::SystemClock);
        Auth::new(store, &config, clock).await.unwrap()
    });
    let key = rt.block_on(async {
        let spec = ProjectSpec {
            name: "bench".into(),
            models: vec!["mock/".into()],
        };
        let project = auth.create_project(spec).await.unwrap();
        auth.create_key(
            &project.id,
            KeySpec {
                expires_in: Some("1h".into()),
                ..KeySpec::default()
            },
        )
        .await
        .unwrap()
        .key
    });
    let mut headers = actix_web::http::header::HeaderMap::new();
    headers.insert(
        actix_web::http::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    rt.block_on(auth.authenticate(&headers)).unwrap();
    c.bench_function("auth_check/cache_hit", |b| {
        b.iter(|| {
            let grant =
                futures::executor::block_on(auth.authenticate(black_box(&headers))).unwrap();
            black_box(grant.permits("mock/model"))
        })
    });
}

/// What `observe::observe` adds to a request: the timing headers, and with `[metrics]` the
/// request's counters and histograms (an existing series).
fn observe(c: &mut Criterion) {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use switchyard::observe::Metrics;
    use switchyard::observe::metrics::RequestSample;
    use switchyard::observe::timing::{Received, stamp};

    c.bench_function("observe/timing_headers", |b| {
        b.iter(|| {
            let received = Received::now();
            let start = received.at();
            let mut headers = actix_web::http::header::HeaderMap::new();
            stamp(
                &mut headers,
                &received,
                Some((start, start + Duration::from_micros(900))),
                Instant::now(),
            );
            black_box(headers.len())
        })
    });
    let metrics = Metrics::new();
    let route: Arc<str> = Arc::from("mock/");
    let sample = RequestSample {
        route: route.clone(),
        backend: Arc::from("mock"),
        status: 200,
        upstream: Some(Duration::from_micros(900)),
        to_head: Duration::from_micros(950),
    };
    c.bench_function("observe/metrics_per_request", |b| {
        b.iter(|| {
            metrics.request_started();
            metrics.request_answered(black_box(&sample));
            metrics.request_ended(&route, Duration::from_millis(1), false);
        })
    });
}

criterion_group!(
    benches,
    route_lookup,
    parse_and_forward,
    sse_relay,
    auth_check,
    observe
);
criterion_main!(benches);
