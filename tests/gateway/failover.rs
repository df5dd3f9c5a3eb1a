//! Routes with several backends: weighted choice, failover before the first byte (never after),
//! passive health ejection and recovery, the retry budget, and the SDK under load with faults.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::faulty::{Fault, FaultyUpstream};
use crate::support::net::free_port;
use crate::support::paced_sse::{PacedSse, Seen};
use crate::support::python::run_pytest;
use crate::support::wait::eventually;
use crate::support::{TestGateway, chat_body, spawn_gateway, sse_payloads, stream_text};

fn chat(model: &str, stream: bool) -> Value {
    chat_body(model, "hi", stream)
}

/// A `[backends.<name>]` table of kind openai at `base_url`, with extra keys.
fn backend(name: &str, base_url: &str, extra: &str) -> String {
    format!("[backends.{name}]\nkind = \"openai\"\nbase_url = \"{base_url}\"\n{extra}\n")
}

/// The answer text of a chat request, streamed or not, with its status.
async fn answer(gw: &TestGateway, model: &str, stream: bool) -> (u16, String) {
    let r = gw
        .post_json("/v1/chat/completions", &chat(model, stream))
        .await;
    let status = r.status().as_u16();
    if stream && status == 200 {
        return (status, stream_text(&sse_payloads(r).await));
    }
    let v: Value = r.json().await.unwrap();
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_owned);
    (status, text)
}

async fn health_of(gw: &TestGateway, backend: &str) -> Value {
    let v: Value = gw.get("/health").await.json().await.unwrap();
    v["backends"][backend].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_before_the_first_byte_fails_over_and_the_client_never_knows() {
    // Arrange: one route per fault, each with the faulty backend first and `good` as fallback.
    let good = FaultyUpstream::start("good", Fault::Healthy).await;
    let faults = [
        ("e500", Fault::Status500),
        ("e429", Fault::RateLimited(30)),
        ("stall_headers", Fault::StallBeforeHeaders),
        ("stall_first", Fault::StallBeforeFirstEvent),
    ];
    let mut upstreams = Vec::new();
    // Never ejected here: every request must meet its fault.
    let keys = "first_byte_timeout = \"300ms\"\nidle_timeout = \"300ms\"\neject_after = 10000";
    let mut toml = backend("good", &good.base_url, "");
    let refused = format!("http://127.0.0.1:{}/v1", free_port());
    toml += &backend("refuse", &refused, keys);
    toml += "[[routes]]\nprefix = \"refuse/\"\nbackends = [{ name = \"refuse\" }]\nfallback = [\"good\"]\n";
    for (name, fault) in faults {
        let up = FaultyUpstream::start(name, fault).await;
        toml += &backend(name, &up.base_url, keys);
        toml += &format!(
            "[[routes]]\nprefix = \"{name}/\"\nbackends = [{{ name = \"{name}\" }}]\nfallback = [\"good\"]\n"
        );
        upstreams.push((name, up));
    }
    let gw = spawn_gateway(&toml).await;

    // Act and assert: plain and streamed, every request is answered by `good`, whole.
    for prefix in ["refuse", "e500", "e429", "stall_headers", "stall_first"] {
        for stream in [false, true] {
            let (status, text) = answer(&gw, &format!("{prefix}/m"), stream).await;
            assert_eq!(
                (status, text.as_str()),
                (200, "answer from good"),
                "{prefix} stream={stream}"
            );
        }
    }
    for (name, up) in &upstreams {
        // The 429 said "retry after 30 s": its backend was not asked again.
        let expected = if *name == "e429" { 1 } else { 2 };
        assert_eq!(up.hits(), expected, "{name}");
    }
    assert_eq!(good.hits(), 10);
    assert_eq!(health_of(&gw, "e429").await["state"], "waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_stream_ends_the_stream_with_an_error_and_is_never_restarted() {
    // Arrange
    let good = FaultyUpstream::start("good", Fault::Healthy).await;
    let stall = FaultyUpstream::start("stall", Fault::StallMidStream).await;
    let reset = FaultyUpstream::start("reset", Fault::ResetMidStream).await;
    let mut toml = backend("good", &good.base_url, "");
    for (name, up) in [("stall", &stall), ("reset", &reset)] {
        toml += &backend(
            name,
            &up.base_url,
            "first_byte_timeout = \"300ms\"\nidle_timeout = \"300ms\"",
        );
        toml += &format!(
            "[[routes]]\nprefix = \"{name}/\"\nbackend = \"{name}\"\nfallback = [\"good\"]\n"
        );
    }
    let gw = spawn_gateway(&toml).await;

    for name in ["stall", "reset"] {
        // Act
        let r = gw
            .post_json("/v1/chat/completions", &chat(&format!("{name}/m"), true))
            .await;
        assert_eq!(r.status(), 200);
        let payloads = sse_payloads(r).await;

        // Assert: the backend's own partial answer, then one error event, and nothing else.
        assert_eq!(stream_text(&payloads), format!("partial from {name}"));
        let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
        assert!(last["error"]["message"].is_string(), "{payloads:?}");
        assert_eq!(payloads.len(), 2, "{payloads:?}");
    }
    assert_eq!(good.hits(), 0, "a started answer was restarted elsewhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_requests_split_by_weight_within_one_percent() {
    // Arrange
    let ups = [
        FaultyUpstream::start("a", Fault::Healthy).await,
        FaultyUpstream::start("b", Fault::Healthy).await,
        FaultyUpstream::start("c", Fault::Healthy).await,
    ];
    let mut toml = String::new();
    for (name, up) in ["a", "b", "c"].iter().zip(&ups) {
        toml += &backend(name, &up.base_url, "");
    }
    toml += "[[routes]]\nprefix = \"w/\"\nbackends = [{ name = \"a\", weight = 3 }, { name = \"b\", weight = 1 }, { name = \"c\", weight = 1 }]\n";
    let gw = spawn_gateway(&toml).await;

    // Act: 3000 requests, 16 at a time.
    let statuses: Vec<u16> = futures::stream::iter(0..3000)
        .map(|_| {
            let gw = &gw;
            async move {
                gw.post_json("/v1/chat/completions", &chat("w/m", false))
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    // Assert: every one answered; 3:1:1 within 1% of the total (smooth weighted round-robin
    // is in fact exact per cycle of five).
    assert!(statuses.iter().all(|s| *s == 200));
    let hits: Vec<i64> = ups.iter().map(|u| u.hits() as i64).collect();
    for (got, want) in hits.iter().zip([1800, 600, 600]) {
        assert!((got - want).abs() <= 30, "{hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_backend_is_ejected_probed_and_back_in_rotation_once_healed() {
    // Arrange
    let flaky = FaultyUpstream::start("flaky", Fault::Status500).await;
    let steady = FaultyUpstream::start("steady", Fault::Healthy).await;
    let mut toml = backend(
        "flaky",
        &flaky.base_url,
        "eject_after = 3\neject_cooldown = \"300ms\"",
    );
    toml += &backend("steady", &steady.base_url, "");
    toml +=
        "[[routes]]\nprefix = \"p/\"\nbackends = [{ name = \"flaky\" }, { name = \"steady\" }]\n";
    let gw = spawn_gateway(&toml).await;

    // Act: five requests; the weighted turns give the flaky backend the 1st, 3rd and 5th.
    for _ in 0..5 {
        assert_eq!(
            answer(&gw, "p/m", false).await,
            (200, "answer from steady".into())
        );
    }

    // Assert: ejected after its third failure in a row, visible in /health.
    assert_eq!(flaky.hits(), 3);
    let h = health_of(&gw, "flaky").await;
    assert_eq!(
        (h["state"].as_str(), h["consecutive_failures"].as_u64()),
        (Some("ejected"), Some(3))
    );

    // Act: it heals; the next request after its cooldown is its probe.
    flaky.set(Fault::Healthy);
    eventually(
        Duration::from_secs(10),
        "flaky back in rotation",
        || async {
            answer(&gw, "p/m", false).await;
            health_of(&gw, "flaky").await["state"] == "healthy"
        },
    )
    .await;

    // Assert: back in the weighted rotation, half the requests each.
    let before = flaky.hits();
    for _ in 0..20 {
        assert_eq!(answer(&gw, "p/m", false).await.0, 200);
    }
    assert_eq!(flaky.hits() - before, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_whole_fleet_fails_the_retry_budget_caps_extra_upstream_requests() {
    // Arrange: two backends answering 500, never ejected, two attempts allowed per request.
    let a = FaultyUpstream::start("a", Fault::Status500).await;
    let b = FaultyUpstream::start("b", Fault::Status500).await;
    let keys = "eject_after = 10000";
    let mut toml = backend("a", &a.base_url, keys) + &backend("b", &b.base_url, keys);
    toml += "[[routes]]\nprefix = \"f/\"\nbackends = [{ name = \"a\" }, { name = \"b\" }]\nmax_attempts = 2\n";
    let gw = spawn_gateway(&toml).await;

    // Act: 300 requests, 16 at a time (well within the budget's 10 s window).
    let statuses: Vec<u16> = futures::stream::iter(0..300)
        .map(|_| {
            let gw = &gw;
            async move {
                gw.post_json("/v1/chat/completions", &chat("f/m", false))
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;

    // Assert: each client got the upstream's 500; the extra attempts stayed within the floor
    // (5/s over 10 s) plus 20% of the requests, far below the 300 that two attempts would cost.
    assert!(statuses.iter().all(|s| *s == 500));
    let extra = a.hits() + b.hits() - 300;
    assert!(
        (50..=110).contains(&extra),
        "{extra} extra upstream requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_under_load_is_answered_despite_every_fault() {
    // Arrange
    let good_a = FaultyUpstream::start("good-a", Fault::Healthy).await;
    let good_b = FaultyUpstream::start("good-b", Fault::Healthy).await;
    let e500 = FaultyUpstream::start("e500", Fault::Status500).await;
    let e429 = FaultyUpstream::start("e429", Fault::RateLimited(60)).await;
    let stall_headers = FaultyUpstream::start("stall-h", Fault::StallBeforeHeaders).await;
    let stall_first = FaultyUpstream::start("stall-f", Fault::StallBeforeFirstEvent).await;
    let stall_mid = FaultyUpstream::start("stall-mid", Fault::StallMidStream).await;
    let reset_mid = FaultyUpstream::start("reset-mid", Fault::ResetMidStream).await;
    let short = "first_byte_timeout = \"300ms\"\nidle_timeout = \"300ms\"";
    let refused = || format!("http://127.0.0.1:{}/v1", free_port());
    let mut toml = String::new();
    for (name, url, keys) in [
        ("good_a", good_a.base_url.clone(), ""),
        ("good_b", good_b.base_url.clone(), ""),
        ("e500", e500.base_url.clone(), ""),
        ("e429", e429.base_url.clone(), ""),
        ("stall_h", stall_headers.base_url.clone(), short),
        ("stall_f", stall_first.base_url.clone(), short),
        ("stall_mid", stall_mid.base_url.clone(), short),
        ("reset_mid", reset_mid.base_url.clone(), short),
        ("refuse", refused(), ""),
        ("refuse2", refused(), ""),
    ] {
        toml += &backend(name, &url, keys);
    }
    toml += r#"
[[routes]]
prefix = "mix/"
backends = [{ name = "good_a", weight = 2 }, { name = "e500" }, { name = "e429" }, { name = "stall_h" }, { name = "stall_f" }, { name = "refuse" }]
fallback = ["good_b"]
[[routes]]
prefix = "mid/"
backends = [{ name = "stall_mid" }, { name = "reset_mid" }]
[[routes]]
prefix = "down/"
backend = "refuse"
fallback = ["refuse2"]
"#;
    let gw = spawn_gateway(&toml).await;

    // Act
    run_pytest(
        "test_failover.py",
        &[("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base))],
    )
    .await;

    // Assert: the failing backends were ejected (the 429 one set aside), seen in /health.
    // Only requests already under way when the first 429 came back (8 clients at most) reach
    // it; none after, for the 60 s of its retry-after.
    assert!(e429.hits() <= 8, "asked {} times", e429.hits());
    assert_eq!(health_of(&gw, "e429").await["state"], "waiting");
    for name in ["e500", "stall_h", "stall_f", "refuse"] {
        let h = health_of(&gw, name).await;
        assert_ne!(h["state"], "healthy", "{name}: {h}");
    }
    assert!(good_a.hits() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_failover_route_the_first_event_still_reaches_the_client_before_the_next_is_written() {
    // Arrange: a paced stream as the weighted backend, a healthy fallback behind it.
    let event = |text: &str| {
        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
        format!("data: {chunk}\n\n").into_bytes()
    };
    let events = vec![event("Hel"), event("lo"), b"data: [DONE]\n\n".to_vec()];
    let mut paced = PacedSse::start(events, false).await;
    let good = FaultyUpstream::start("good", Fault::Healthy).await;
    let mut toml = backend("paced", &paced.base_url, "") + &backend("good", &good.base_url, "");
    toml += "[[routes]]\nprefix = \"p/\"\nbackend = \"paced\"\nfallback = [\"good\"]\n";
    let gw = spawn_gateway(&toml).await;
    let (client, url) = (
        gw.client.clone(),
        format!("{}/v1/chat/completions", gw.base),
    );
    let request = tokio::spawn(async move {
        client
            .post(url)
            .json(&chat("p/m", true))
            .send()
            .await
            .unwrap()
    });
    assert!(matches!(paced.next_seen().await, Seen::Request(_)));

    // Act: release the first event only, and read it.
    paced.release().await;
    let response = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("headers came with the first event")
        .unwrap();
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();

    // Assert: it is here while the upstream has written nothing more; the rest follows whole.
    assert!(
        String::from_utf8_lossy(&first).contains("\"Hel\""),
        "{first:?}"
    );
    assert_eq!(paced.next_seen().await, Seen::Wrote(0));
    assert!(
        paced.log.try_recv().is_err(),
        "the upstream wrote more already"
    );
    paced.release_all(2).await;
    let mut rest = first.to_vec();
    while let Some(part) = body.next().await {
        rest.extend_from_slice(&part.unwrap());
    }
    let payloads: Vec<String> = switchyard::adapters::sse::data_payloads(&rest)
        .into_iter()
        .map(|p| String::from_utf8(p).unwrap())
        .collect();
    assert_eq!(stream_text(&payloads), "Hello");
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(good.hits(), 0);
}
