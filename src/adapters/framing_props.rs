//! Property tests over the stream framers and the OpenAI relay on top of them: whatever bytes
//! an upstream sends, framing never panics, and where the network split them never changes
//! what the client gets.

use bytes::Bytes;
use proptest::prelude::*;

use super::ndjson::{self, LineFramer};
use super::openai::OpenAIRelay;
use super::sse::{self, SseFramer};
use super::stream::Normalizer;

/// Upstream-like bytes: the pieces SSE and NDJSON are made of, mixed with arbitrary bytes.
fn upstream_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"{\"choices\":[{\"delta\":{\"content\":\"a\"}}]}".to_vec()),
        Just(b"{\"error\":{\"message\":\"m\"}}".to_vec()),
        Just(b"{\"error\":\"text\"}".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b": keep-alive".to_vec()),
        Just(b"event: error".to_vec()),
        Just(b"id: 1".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// `input` cut at `cuts` (taken modulo its length), in order.
fn split(input: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([input.len()]) {
        pieces.push(Bytes::copy_from_slice(&input[start..point]));
        start = point;
    }
    pieces
}

/// The frames a framer yields for `reads`, each as its own bytes.
fn frames<F>(reads: Vec<Bytes>, mut push: F, finish: impl FnOnce() -> Option<Bytes>) -> Vec<u8>
where
    F: FnMut(Bytes) -> Option<Bytes>,
{
    let mut out = Vec::new();
    for read in reads {
        out.extend_from_slice(&push(read).unwrap_or_default());
    }
    out.extend_from_slice(&finish().unwrap_or_default());
    out
}

fn sse_events(reads: Vec<Bytes>) -> Vec<Vec<u8>> {
    let mut framer = SseFramer::new();
    let mut events = Vec::new();
    for read in reads {
        if let Some(frames) = framer.push(read) {
            events.extend(sse::events(&frames).map(<[u8]>::to_vec));
        }
    }
    if let Some(rest) = framer.finish() {
        events.extend(sse::events(&rest).map(<[u8]>::to_vec));
    }
    events
}

fn ndjson_lines(reads: Vec<Bytes>) -> Vec<Vec<u8>> {
    let mut framer = LineFramer::new();
    let out = frames(reads, |r| framer.push(r), || None);
    let mut lines: Vec<Vec<u8>> = ndjson::lines(&out).map(<[u8]>::to_vec).collect();
    if let Some(rest) = framer.finish() {
        lines.extend(ndjson::lines(&rest).map(<[u8]>::to_vec));
    }
    lines
}

fn relayed(reads: Vec<Bytes>) -> Vec<u8> {
    let mut relay = Normalizer::new(OpenAIRelay::new("b"), "b");
    let mut out = Vec::new();
    for read in reads {
        out.extend_from_slice(&relay.push(read).unwrap_or_default());
    }
    out.extend_from_slice(&relay.end().unwrap_or_default());
    out
}

proptest! {
    // Failures are turned into named unit tests next to the code they concern, not persisted
    // to a file outside the source tree.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn sse_events_do_not_depend_on_where_reads_split(
        input in upstream_bytes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = sse_events(vec![Bytes::from(input.clone())]);
        prop_assert_eq!(whole, sse_events(split(&input, &cuts)));
    }

    #[test]
    fn ndjson_lines_do_not_depend_on_where_reads_split(
        input in upstream_bytes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = ndjson_lines(vec![Bytes::from(input.clone())]);
        prop_assert_eq!(whole, ndjson_lines(split(&input, &cuts)));
    }

    #[test]
    fn the_relayed_stream_does_not_depend_on_where_reads_split(
        input in upstream_bytes(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = relayed(vec![Bytes::from(input.clone())]);
        prop_assert_eq!(whole, relayed(split(&input, &cuts)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_framer_or_the_relay(
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let _ = sse_events(split(&input, &cuts));
        let _ = ndjson_lines(split(&input, &cuts));
        let out = relayed(split(&input, &cuts));
        // Whatever came in, what goes out ends as a stream must: [DONE] or one error event.
        let text = String::from_utf8_lossy(&out);
        prop_assert!(text.ends_with("data: [DONE]\n\n") || text.contains("\"error\""), "{}", text);
        for event in sse::events(&out) {
            let _ = sse::decode(event);
        }
    }
}
