//! A record as one line of the JSONL log.
//!
//! The log's writer turns every request into a line, so this is on the per-request bill:
//! `serde_json` spent most of a record's cost escaping the keys, which never change. Here the
//! keys are written as they are and only the values are escaped (and only when one holds a
//! byte that needs it). The line is exactly what `Record`'s `Serialize` gives; a test holds
//! the two together.

use super::{Record, Tokens};

/// Appends `record` to `out` as one JSON object (no newline).
pub fn write(record: &Record, out: &mut Vec<u8>) {
    key(out, b"{\"time\":");
    string(out, &record.time);
    key(out, b",\"request_id\":");
    string(out, &record.request_id);
    key(out, b",\"project\":");
    optional_string(out, record.project.as_deref());
    key(out, b",\"key_id\":");
    optional_string(out, record.key_id.as_deref());
    key(out, b",\"endpoint\":");
    string(out, record.endpoint);
    key(out, b",\"model\":");
    string(out, &record.model);
    key(out, b",\"upstream_model\":");
    optional_string(out, record.upstream_model.as_deref());
    key(out, b",\"route\":");
    optional_string(out, record.route.as_deref());
    key(out, b",\"backend\":");
    optional_string(out, record.backend.as_deref());
    key(out, b",\"status\":");
    number(out, record.status);
    key(out, b",\"streamed\":");
    let streamed: &[u8] = if record.streamed { b"true" } else { b"false" };
    key(out, streamed);
    key(out, b",\"usage\":");
    match &record.usage {
        Some(tokens) => write_tokens(tokens, out),
        None => key(out, b"null"),
    }
    key(out, b",\"upstream_ms\":");
    optional_number(out, record.upstream_ms);
    key(out, b",\"gateway_ms\":");
    number(out, record.gateway_ms);
    key(out, b",\"ttft_ms\":");
    optional_number(out, record.ttft_ms);
    key(out, b",\"duration_ms\":");
    number(out, record.duration_ms);
    key(out, b"}");
}

fn write_tokens(tokens: &Tokens, out: &mut Vec<u8>) {
    key(out, b"{\"prompt_tokens\":");
    number(out, tokens.prompt_tokens);
    key(out, b",\"completion_tokens\":");
    number(out, tokens.completion_tokens);
    key(out, b",\"total_tokens\":");
    number(out, tokens.total_tokens);
    key(out, b",\"cached_tokens\":");
    number(out, tokens.cached_tokens);
    key(out, b",\"reasoning_tokens\":");
    number(out, tokens.reasoning_tokens);
    key(out, b"}");
}

/// Fixed JSON text.
fn key(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(text);
}

fn string(out: &mut Vec<u8>, value: &str) {
    let plain = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing a `str` to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

fn optional_string(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => string(out, value),
        None => key(out, b"null"),
    }
}

/// An integer, or a float as `serde_json` writes it (a non-finite one as `null`).
fn number(out: &mut Vec<u8>, value: impl serde::Serialize) {
    // Writing a number to a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, &value);
}

fn optional_number(out: &mut Vec<u8>, value: Option<f64>) {
    match value {
        Some(value) => number(out, value),
        None => key(out, b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            time: "2026-11-30T12:00:00.123456789Z".into(),
            minute: 0,
            request_id: "4f1c2a9e-0000-4000-8000-000000000000".into(),
            project: Some("proj_1".into()),
            key_id: None,
            endpoint: "chat.completions",
            model: "up/m".into(),
            upstream_model: Some("m".into()),
            route: Some("up/".into()),
            backend: None,
            status: 429,
            streamed: true,
            usage: Some(Tokens {
                prompt_tokens: 12,
                completion_tokens: 19,
                total_tokens: 31,
                cached_tokens: 2,
                reasoning_tokens: 0,
            }),
            upstream_ms: Some(16.534686),
            gateway_ms: 0.010796,
            ttft_ms: None,
            duration_ms: 16.789683999999998,
        }
    }

    fn line(record: &Record) -> String {
        let mut out = Vec::new();
        write(record, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_line_is_what_serde_writes() {
        let mut record = record();
        assert_eq!(line(&record), serde_json::to_string(&record).unwrap());
        record.usage = None;
        record.upstream_ms = None;
        record.ttft_ms = Some(f64::NAN);
        record.project = None;
        record.backend = Some("b".into());
        record.streamed = false;
        assert_eq!(line(&record), serde_json::to_string(&record).unwrap());
    }

    #[test]
    fn what_a_client_sent_is_escaped() {
        let mut record = record();
        // The model and request id come from the client.
        record.model = "a\"b\\c\nd\u{1}é\u{2028}".into();
        record.request_id = "\"}{\"status\":200".into();
        let text = line(&record);
        assert_eq!(text, serde_json::to_string(&record).unwrap());
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["model"], "a\"b\\c\nd\u{1}é\u{2028}");
        assert_eq!(parsed["status"], 429);
    }
}
