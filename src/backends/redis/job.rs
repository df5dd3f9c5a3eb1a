//! The openai-rq 0.1.2 wire format: key names, the job, the non-stream result and the entries
//! of a result stream, with their encoders and lenient decoders. Pure: no I/O, no clocks.
//!
//! Both halves of Switchyard's Redis transport (the gateway's `RedisBackend` and
//! `switchyard worker`) and both halves of the Python package speak exactly this, so each can be
//! swapped for the other. `shared/docs/openai-rq-protocol.md` is the reference.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapters::sse;
use crate::backends::http::{is_hop_by_hop, is_not_forwarded_up};

/// The stream every job is added to.
pub const REQUESTS_STREAM: &str = "openai-rq:requests";
/// Where jobs that cannot be run go, with the reason.
pub const DEAD_LETTER_STREAM: &str = "openai-rq:dead-letter";
/// The default consumer group on `REQUESTS_STREAM`.
pub const DEFAULT_GROUP: &str = "openai-rq";
/// Approximate cap of the request stream and of each result stream (as the Python package).
pub const STREAM_MAXLEN: u64 = 10_000;

/// Body of the synthetic 502 a dead-lettered stream job ends with (as the Python worker).
pub const DEAD_LETTERED_STREAM_BODY: &str = "openai-rq: dead-lettered";
/// Body of the synthetic 502 result of a dead-lettered non-stream job (as the Python worker).
pub const DEAD_LETTERED_RESULT_BODY: &str = "openai-rq: job exceeded max_retries (dead-lettered)";

/// Header values replaced with `<redacted>` when a job is copied to the dead-letter stream:
/// jobs from the Python client carry its `authorization`.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "api-key",
    "x-api-key",
];

/// `openai-rq:result:<id>`: the list a non-stream result is pushed onto.
pub fn result_key(id: &str) -> String {
    format!("openai-rq:result:{id}")
}

/// `openai-rq:stream:<id>`: the stream a stream result is written to.
pub fn stream_key(id: &str) -> String {
    format!("openai-rq:stream:{id}")
}

/// A fresh job id: a uuid4 as 32 lowercase hex digits, as the Python client makes them.
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether a request header may be frozen into a job: not one that describes the connection,
/// and not the client's credential for the *gateway* (the worker owns the upstream one).
pub fn header_goes_in_job(name: &str) -> bool {
    !(is_not_forwarded_up(name) || CREDENTIAL_HEADERS.contains(&name))
}

/// Whether a response header is kept in a result (the body is stored whole and the reader
/// frames it, so no framing header is).
pub fn header_goes_in_result(name: &str) -> bool {
    !is_hop_by_hop(name)
}

/// Headers as the wire has them: lowercase names, repeated headers joined with `", "`.
pub type WireHeaders = BTreeMap<String, String>;

/// Adds one header to a wire map, joining a repeated name's values.
pub fn push_header(headers: &mut WireHeaders, name: &str, value: &[u8]) {
    let value = String::from_utf8_lossy(value);
    headers
        .entry(name.to_ascii_lowercase())
        .and_modify(|v| {
            v.push_str(", ");
            v.push_str(&value);
        })
        .or_insert_with(|| value.into_owned());
}

#[derive(Serialize)]
struct JobWire<'a> {
    id: &'a str,
    method: &'a str,
    path: &'a str,
    headers: &'a WireHeaders,
    body_b64: String,
    stream: bool,
}

/// Encodes a job (the `data` of a request-stream entry).
pub fn encode_job(
    id: &str,
    method: &str,
    path: &str,
    headers: &WireHeaders,
    body: &[u8],
    stream: bool,
) -> String {
    let job = JobWire {
        id,
        method,
        path,
        headers,
        body_b64: B64.encode(body),
        stream,
    };
    // A struct of strings and a map of strings always serialises.
    serde_json::to_string(&job).unwrap_or_default()
}

/// A job as the worker runs it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The client's id for it (names the result keys).
    pub id: String,
    /// HTTP method.
    pub method: String,
    /// Path with `/v1` and the query string.
    pub path: String,
    /// Request headers, lowercase.
    pub headers: WireHeaders,
    /// Request body.
    pub body: Bytes,
    /// Whether the client waits on a result stream rather than a result list.
    pub stream: bool,
}

/// Why a job cannot be run, and what is known of its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadJob {
    /// What is wrong, for the dead-letter entry and the log.
    pub reason: String,
    /// The job id, when one could be read and is safe as part of a key.
    pub id: Option<String>,
    /// Whether the client waits on a stream, when the job says.
    pub stream: Option<bool>,
}

/// Decodes the `data` of a request-stream entry, naming the first problem found.
pub fn decode_job(data: &[u8]) -> Result<Job, BadJob> {
    let value: Value = serde_json::from_slice(data).map_err(|e| BadJob {
        reason: format!("the job is not valid JSON: {e}"),
        id: None,
        stream: None,
    })?;
    let Value::Object(map) = value else {
        return Err(BadJob {
            reason: "the job is not a JSON object".to_owned(),
            id: None,
            stream: None,
        });
    };
    let id = map
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_safe_id(id))
        .map(str::to_owned);
    let stream = map.get("stream").and_then(truthy);
    let bad = |reason: String| BadJob {
        reason,
        id: id.clone(),
        stream,
    };
    let text = |key: &str| -> Result<&str, BadJob> {
        match map.get(key) {
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(bad(format!("field `{key}` must be a string"))),
            None => Err(bad(format!("field `{key}` is missing"))),
        }
    };
    let raw_id = text("id")?;
    let Some(job_id) = id.clone() else {
        return Err(bad(format!(
            "field `id` must be 1 to 128 letters, digits, `-` or `_`, not {raw_id:?}"
        )));
    };
    let method = text("method")?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(bad(format!(
            "field `method` is not an HTTP method: {method:?}"
        )));
    }
    let path = text("path")?;
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad(
            "field `path` must be an absolute path such as /v1/chat/completions".to_owned(),
        ));
    }
    let body = B64
        .decode(text("body_b64")?)
        .map_err(|e| bad(format!("field `body_b64` is not valid base64: {e}")))?;
    let mut headers = WireHeaders::new();
    match map.get("headers") {
        Some(Value::Object(h)) => {
            for (name, value) in h {
                let Value::String(value) = value else {
                    return Err(bad(format!("header `{name}` must have a string value")));
                };
                push_header(&mut headers, name, value.as_bytes());
            }
        }
        Some(_) => return Err(bad("field `headers` must be an object".to_owned())),
        None => return Err(bad("field `headers` is missing".to_owned())),
    }
    let Some(stream) = stream else {
        return Err(bad(match map.get("stream") {
            None => "field `stream` is missing".to_owned(),
            Some(_) => "field `stream` must be a boolean".to_owned(),
        }));
    };
    Ok(Job {
        id: job_id,
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        headers,
        body: Bytes::from(body),
        stream,
    })
}

/// The job with credential header values replaced, for the dead-letter stream; `None` when the
/// data is not a JSON object (it is then stored as it came).
pub fn redact_job(data: &[u8]) -> Option<String> {
    let mut value: Value = serde_json::from_slice(data).ok()?;
    let headers = value.get_mut("headers")?.as_object_mut()?;
    for (name, v) in headers.iter_mut() {
        if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            *v = Value::String("<redacted>".to_owned());
        }
    }
    serde_json::to_string(&value).ok()
}

/// Python's `bool(job["stream"])` for the values a job can carry.
fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Null => Some(false),
        Value::Number(n) => Some(n.as_f64().is_some_and(|f| f != 0.0)),
        Value::String(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Ids become part of Redis keys: keep them to a plain, bounded alphabet.
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A non-stream result (the one element pushed onto `openai-rq:result:<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultWire {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: WireHeaders,
    /// Response body, base64.
    pub body_b64: String,
}

/// Encodes a non-stream result.
pub fn encode_result(status: u16, headers: &WireHeaders, body: &[u8]) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        status: u16,
        headers: &'a WireHeaders,
        body_b64: String,
    }
    serde_json::to_string(&Out {
        status,
        headers,
        body_b64: B64.encode(body),
    })
    .unwrap_or_default()
}

/// A decoded non-stream result.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: WireHeaders,
    /// Response body.
    pub body: Bytes,
}

/// Decodes a non-stream result; the error says what is wrong with it.
pub fn decode_result(data: &[u8]) -> Result<Answer, String> {
    let wire: ResultWire =
        serde_json::from_slice(data).map_err(|e| format!("unreadable result: {e}"))?;
    let body = B64
        .decode(&wire.body_b64)
        .map_err(|e| format!("result body is not valid base64: {e}"))?;
    Ok(Answer {
        status: wire.status,
        headers: wire.headers,
        body: Bytes::from(body),
    })
}

/// One entry of a result stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The backend's status and headers.
    Head {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: WireHeaders,
    },
    /// Raw SSE bytes (may hold several events, or part of one).
    Data(Bytes),
    /// Normal end.
    Done,
    /// Terminal failure, with a whole body.
    Error {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: WireHeaders,
        /// Response body.
        body: Bytes,
    },
    /// An entry kind this version does not know: skipped, as the Python client does.
    Other,
}

#[derive(Deserialize)]
struct EntryWire {
    t: String,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    headers: Option<WireHeaders>,
    #[serde(default)]
    b: Option<String>,
}

/// Decodes the `data` of a result-stream entry.
pub fn decode_entry(data: &[u8]) -> Result<Entry, String> {
    let wire: EntryWire =
        serde_json::from_slice(data).map_err(|e| format!("unreadable stream entry: {e}"))?;
    let bytes = |b: Option<String>| -> Result<Bytes, String> {
        B64.decode(b.unwrap_or_default())
            .map(Bytes::from)
            .map_err(|e| format!("stream entry bytes are not valid base64: {e}"))
    };
    Ok(match wire.t.as_str() {
        "head" => Entry::Head {
            status: wire.status.ok_or("a `head` entry without `status`")?,
            headers: wire.headers.unwrap_or_default(),
        },
        "data" => Entry::Data(bytes(wire.b)?),
        "done" => Entry::Done,
        "error" => Entry::Error {
            status: wire.status.unwrap_or(502),
            headers: wire.headers.unwrap_or_default(),
            body: bytes(wire.b)?,
        },
        _ => Entry::Other,
    })
}

/// Encodes a `head` entry.
pub fn encode_head(status: u16, headers: &WireHeaders) -> String {
    serde_json::json!({"t": "head", "status": status, "headers": headers}).to_string()
}

/// Encodes a `data` entry.
pub fn encode_data(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 24);
    out.push_str(r#"{"t":"data","b":""#);
    B64.encode_string(bytes, &mut out);
    out.push_str(r#""}"#);
    out
}

/// Encodes the `done` entry.
pub fn encode_done() -> &'static str {
    r#"{"t":"done"}"#
}

/// Encodes an `error` entry.
pub fn encode_error(status: u16, headers: &WireHeaders, body: &[u8]) -> String {
    serde_json::json!({"t": "error", "status": status, "headers": headers, "b": B64.encode(body)})
        .to_string()
}

/// Headers of the synthetic failures a worker writes (`content-type: text/plain`).
pub fn text_plain() -> WireHeaders {
    WireHeaders::from([("content-type".to_owned(), "text/plain".to_owned())])
}

/// The `error` entry a worker writes when a stream fails after its `head`: the body is one SSE
/// event, `data: {"error":{...}}` and its blank line. The Python openai-rq client appends an
/// `error` entry's body to the stream's bytes, and the OpenAI SDK behind it ignores bytes that
/// are not SSE but raises `APIError` on an error event; so a broken stream raises instead of
/// ending quietly with a partial answer. `text` starts with `openai-rq`, so `worker_failure`
/// tells it apart from an inference server's own error.
pub fn encode_stream_failure(text: &str) -> String {
    let body = crate::schema::ErrorBody::new(text, "api_error", None, Some("upstream_error"));
    let mut event = bytes::BytesMut::new();
    sse::write_event(&mut event, None, |buf| {
        buf.extend_from_slice(&body.to_bytes())
    });
    let headers = WireHeaders::from([("content-type".to_owned(), "text/event-stream".to_owned())]);
    encode_error(502, &headers, &event)
}

/// The message of a worker's SSE failure event (see `encode_stream_failure`).
fn stream_failure_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Event {
        error: Message,
    }
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let json = body.strip_prefix(b"data: ")?.trim_ascii_end();
    let event: Event = serde_json::from_slice(json).ok()?;
    event
        .error
        .message
        .starts_with("openai-rq")
        .then_some(event.error.message)
}

/// What a failure reported by a worker (rather than by the inference server) means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerFailure {
    /// The job was dead-lettered.
    DeadLettered,
    /// The worker could not complete the call; the text says why.
    Failed(String),
}

/// Recognises the synthetic 502s that workers (this one and the Python one) write, as opposed
/// to an inference server's own 502, which passes through untouched.
pub fn worker_failure(status: u16, headers: &WireHeaders, body: &[u8]) -> Option<WorkerFailure> {
    let content_type = headers.get("content-type").map_or("", String::as_str);
    if status == 502 && content_type.starts_with("text/event-stream") {
        let message: String = stream_failure_message(body)?.chars().take(500).collect();
        return Some(WorkerFailure::Failed(message));
    }
    if status != 502 || !content_type.starts_with("text/plain") || !body.starts_with(b"openai-rq") {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    if text.contains("dead-lettered") {
        return Some(WorkerFailure::DeadLettered);
    }
    let reason: String = text.chars().take(500).collect();
    Some(WorkerFailure::Failed(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_round_trips_and_reads_python_spacing() {
        let mut headers = WireHeaders::new();
        push_header(&mut headers, "Content-Type", b"application/json");
        push_header(&mut headers, "x-multi", b"a");
        push_header(&mut headers, "x-multi", b"b");
        let text = encode_job(
            "abc123",
            "POST",
            "/v1/chat/completions?x=1",
            &headers,
            b"{}",
            true,
        );
        let job = decode_job(text.as_bytes()).unwrap();
        assert_eq!(job.id, "abc123");
        assert_eq!(job.path, "/v1/chat/completions?x=1");
        assert_eq!(job.headers["content-type"], "application/json");
        assert_eq!(job.headers["x-multi"], "a, b");
        assert_eq!(&job.body[..], b"{}");
        assert!(job.stream);
        let python = br#"{"id": "9f2c", "method": "GET", "path": "/v1/models", "headers": {}, "body_b64": "", "stream": false}"#;
        let job = decode_job(python).unwrap();
        assert!(job.body.is_empty() && !job.stream && job.method == "GET");
    }

    #[test]
    fn bad_jobs_name_the_problem_and_keep_what_identifies_the_client() {
        let err = decode_job(b"not json").unwrap_err();
        assert!(err.reason.contains("not valid JSON") && err.id.is_none());
        let err = decode_job(br#"{"id":"ab12","stream":true}"#).unwrap_err();
        assert_eq!(err.reason, "field `method` is missing");
        assert_eq!((err.id.as_deref(), err.stream), (Some("ab12"), Some(true)));
        let err = decode_job(br#"{"id":"ab12","method":"POST","path":"/v1/x","headers":{},"body_b64":"%%%","stream":false}"#).unwrap_err();
        assert!(err.reason.contains("base64"), "{}", err.reason);
        let err = decode_job(br#"{"id":"../../x","method":"POST"}"#).unwrap_err();
        assert!(err.id.is_none() && err.reason.contains("`id`"), "{err:?}");
        let err =
            decode_job(br#"{"id":"ab","method":"POST","path":"/v1/x","headers":{},"body_b64":""}"#)
                .unwrap_err();
        assert_eq!(
            (err.reason.as_str(), err.stream),
            ("field `stream` is missing", None)
        );
    }

    #[test]
    fn credentials_are_redacted_from_dead_letters() {
        let out = redact_job(
            br#"{"id":"a","headers":{"authorization":"Bearer sk-secret","accept":"x"}}"#,
        )
        .unwrap();
        assert!(!out.contains("sk-secret") && out.contains("<redacted>") && out.contains("accept"));
        assert!(redact_job(b"garbage").is_none());
    }

    #[test]
    fn entries_round_trip_and_unknown_kinds_are_skipped() {
        let h = text_plain();
        assert_eq!(
            decode_entry(encode_head(200, &h).as_bytes()).unwrap(),
            Entry::Head {
                status: 200,
                headers: h.clone()
            }
        );
        assert_eq!(
            decode_entry(encode_data(b"data: x\r\n\r\n").as_bytes()).unwrap(),
            Entry::Data(Bytes::from_static(b"data: x\r\n\r\n"))
        );
        assert_eq!(decode_entry(encode_done().as_bytes()).unwrap(), Entry::Done);
        let python = br#"{"t": "error", "status": 502, "headers": {"content-type": "text/plain"}, "b": "b3BlbmFpLXJxOiBkZWFkLWxldHRlcmVk"}"#;
        let Entry::Error { status, body, .. } = decode_entry(python).unwrap() else {
            panic!()
        };
        assert_eq!((status, &body[..]), (502, &b"openai-rq: dead-lettered"[..]));
        assert_eq!(decode_entry(br#"{"t": "attempt"}"#).unwrap(), Entry::Other);
    }

    #[test]
    fn worker_failures_are_told_apart_from_upstream_502s() {
        let plain = text_plain();
        assert_eq!(
            worker_failure(502, &plain, DEAD_LETTERED_RESULT_BODY.as_bytes()),
            Some(WorkerFailure::DeadLettered)
        );
        assert!(matches!(
            worker_failure(502, &plain, b"openai-rq backend error: refused"),
            Some(WorkerFailure::Failed(_))
        ));
        let json = WireHeaders::from([("content-type".into(), "application/json".into())]);
        assert_eq!(worker_failure(502, &json, b"openai-rq"), None);
        // The SSE form written after a stream's head, and an upstream's own SSE 502, told apart.
        let Ok(Entry::Error {
            status,
            headers,
            body,
        }) = decode_entry(encode_stream_failure("openai-rq stream error: reset").as_bytes())
        else {
            panic!("an error entry")
        };
        assert!(body.starts_with(b"data: {\"error\":") && body.ends_with(b"\n\n"));
        assert_eq!(
            worker_failure(status, &headers, &body),
            Some(WorkerFailure::Failed(
                "openai-rq stream error: reset".into()
            ))
        );
        let sse = WireHeaders::from([("content-type".into(), "text/event-stream".into())]);
        let upstream = br#"data: {"error":{"message":"overloaded"}}"#;
        assert_eq!(worker_failure(502, &sse, upstream), None);
        assert_eq!(
            worker_failure(500, &plain, b"openai-rq backend error"),
            None
        );
    }
}
