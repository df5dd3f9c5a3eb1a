//! Throughput of the stream-normalisation layer, in MB/s (of upstream bytes) and chunks/s.
//!
//! - `ndjson_to_sse`: an Ollama `/api/chat` stream (documented line shape, 2,000 deltas) turned
//!   into OpenAI chunks, read one line per network read (how Ollama flushes) and in 16 KiB reads.
//! - `sse_reframe`: an OpenAI-compatible stream through the identity relay: canonical events one
//!   per read (the zero-copy path), the same stream cut into 100-byte reads (events split across
//!   reads), and CRLF framing with keep-alive comments (decoded and re-framed).
//!
//! Each case is measured twice, once per throughput unit: criterion reports one unit per group.
//! Run: `cargo bench --bench adapters`.

// Bench setup builds fixed data: a failure there is a broken bench, stated by unwrap.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

use switchyard::adapters::ollama::ChatStream;
use switchyard::adapters::openai::OpenAIRelay;
use switchyard::adapters::stream::{Normalizer, StreamAdapter};

const DELTAS: usize = 2_000;

const WORDS: &[&str] = &[
    "The",
    " sky",
    " is",
    " blue",
    " because",
    " of",
    " Rayleigh",
    " scattering",
    ".",
    "\n\n",
    "Shorter",
    " wavelengths",
    " scatter",
    " more",
    " —",
    " that’s",
    " why",
    ".",
];

/// An Ollama chat stream: one line per token, then the final statistics line.
fn ollama_stream() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..DELTAS {
        let line = serde_json::json!({
            "model": "llama3.2",
            "created_at": format!("2023-08-04T08:52:19.{:09}-07:00", i * 1000),
            "message": {"role": "assistant", "content": WORDS[i % WORDS.len()]},
            "done": false
        });
        serde_json::to_writer(&mut out, &line).unwrap();
        out.push(b'\n');
    }
    out.extend_from_slice(
        br#"{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":2000,"eval_duration":4535599000}"#,
    );
    out.push(b'\n');
    out
}

/// An OpenAI-compatible stream, as vLLM or OpenAI frame it, with `line_end` between lines.
fn openai_stream(line_end: &str, keep_alive_every: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..DELTAS {
        if keep_alive_every > 0 && i % keep_alive_every == 0 {
            out.push_str(&format!(": keep-alive{line_end}{line_end}"));
        }
        let chunk = serde_json::json!({
            "id": "chatcmpl-8c9f5d6e0e4a4b0c9d5f6e7a8b9c0d1e",
            "object": "chat.completion.chunk",
            "created": 1_717_000_000,
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "choices": [{"index": 0, "delta": {"content": WORDS[i % WORDS.len()]}, "logprobs": null, "finish_reason": null}]
        });
        out.push_str(&format!("data: {chunk}{line_end}{line_end}"));
    }
    out.push_str(&format!("data: [DONE]{line_end}{line_end}"));
    out.into_bytes()
}

/// `stream` as network reads: at each `boundary` (one frame per read) or every `size` bytes.
fn reads_by_frame(stream: &[u8], boundary: &[u8]) -> Vec<Bytes> {
    let whole = Bytes::copy_from_slice(stream);
    let mut reads = Vec::new();
    let mut start = 0;
    while let Some(i) = memchr::memmem::find(&stream[start..], boundary) {
        let end = start + i + boundary.len();
        reads.push(whole.slice(start..end));
        start = end;
    }
    if start < stream.len() {
        reads.push(whole.slice(start..));
    }
    reads
}

fn reads_by_size(stream: &[u8], size: usize) -> Vec<Bytes> {
    let whole = Bytes::copy_from_slice(stream);
    (0..stream.len())
        .step_by(size)
        .map(|i| whole.slice(i..(i + size).min(stream.len())))
        .collect()
}

/// Pushes every read through a fresh normaliser; returns the bytes sent to the client.
fn run<A: StreamAdapter>(adapter: A, reads: &[Bytes]) -> usize {
    let mut n = Normalizer::new(adapter, "bench");
    let mut sent = 0;
    for read in reads {
        sent += n.push(read.clone()).map_or(0, |b| b.len());
    }
    sent + n.end().map_or(0, |b| b.len())
}

struct Case {
    name: &'static str,
    reads: Vec<Bytes>,
    bytes: u64,
    frames: u64,
    ollama: bool,
}

fn cases() -> Vec<Case> {
    let ollama = ollama_stream();
    let canonical = openai_stream("\n", 0);
    let crlf = openai_stream("\r\n", 50);
    let frames = DELTAS as u64 + 1;
    vec![
        Case {
            name: "ndjson_to_sse/line_per_read",
            reads: reads_by_frame(&ollama, b"\n"),
            bytes: ollama.len() as u64,
            frames,
            ollama: true,
        },
        Case {
            name: "ndjson_to_sse/16KiB_reads",
            reads: reads_by_size(&ollama, 16 * 1024),
            bytes: ollama.len() as u64,
            frames,
            ollama: true,
        },
        Case {
            name: "sse_reframe/canonical_event_per_read",
            reads: reads_by_frame(&canonical, b"\n\n"),
            bytes: canonical.len() as u64,
            frames,
            ollama: false,
        },
        Case {
            name: "sse_reframe/canonical_100B_reads",
            reads: reads_by_size(&canonical, 100),
            bytes: canonical.len() as u64,
            frames,
            ollama: false,
        },
        Case {
            name: "sse_reframe/crlf_keepalive_event_per_read",
            reads: reads_by_frame(&crlf, b"\r\n\r\n"),
            bytes: crlf.len() as u64,
            frames,
            ollama: false,
        },
    ]
}

/// Each case must be measured on its success path: the whole stream, ending in `[DONE]`.
fn check(case: &Case) {
    let mut n_ollama = Normalizer::new(ChatStream::new("m", true, "bench"), "bench");
    let mut n_openai = Normalizer::new(OpenAIRelay::new("bench"), "bench");
    let mut out = Vec::new();
    for read in &case.reads {
        let sent = if case.ollama {
            n_ollama.push(read.clone())
        } else {
            n_openai.push(read.clone())
        };
        out.extend(sent.unwrap_or_default());
    }
    out.extend(
        if case.ollama {
            n_ollama.end()
        } else {
            n_openai.end()
        }
        .unwrap_or_default(),
    );
    let events = switchyard::adapters::sse::data_payloads(&out);
    assert!(
        out.ends_with(b"data: [DONE]\n\n") && events.len() as u64 >= case.frames,
        "{}: {} events",
        case.name,
        events.len()
    );
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    cases.iter().for_each(check);
    for (unit, throughput) in [
        (
            "MBps",
            (|case: &Case| Throughput::BytesDecimal(case.bytes)) as fn(&Case) -> Throughput,
        ),
        ("chunks", |case: &Case| Throughput::Elements(case.frames)),
    ] {
        let mut group = c.benchmark_group(format!("adapters_{unit}"));
        group.measurement_time(Duration::from_secs(4));
        for case in &cases {
            group.throughput(throughput(case));
            group.bench_with_input(BenchmarkId::from_parameter(case.name), case, |b, case| {
                if case.ollama {
                    b.iter(|| {
                        run(
                            ChatStream::new("local/llama3.2", true, "bench"),
                            black_box(&case.reads),
                        )
                    });
                } else {
                    b.iter(|| run(OpenAIRelay::new("bench"), black_box(&case.reads)));
                }
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
