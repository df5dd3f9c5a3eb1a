//! A fake Files + Batches upstream following OpenAI's shapes: `POST /files` (multipart,
//! `purpose=batch`), `POST /batches`, `GET /batches/{id}`, `GET /batches` (for a restart's
//! lookup) and `GET /files/{id}/content`. Its batches misbehave as real ones do:
//! - the very first batch fails with `token_limit_exceeded`;
//! - output lines come back shuffled, with a malformed line and a stranger's line among them;
//! - a request whose text holds `FAIL` is answered in the error file with a 400;
//! - a request holding `LOSE` is in neither file; one holding `EXPIRE` makes its batch
//!   `expired` with the other lines' output;
//! - a batch completes only once `release` was called (and after two polls).
//!
//! It records every line it was sent, by the request's text, so a test can check that no
//! request was sent twice, and whether a file ever mixed two models.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

#[derive(Default)]
struct State {
    files: HashMap<String, Vec<u8>>,
    batches: Vec<Batch>,
    /// Request text → how many times a batch that ran (did not fail) held it.
    sent: HashMap<String, usize>,
    mixed_models: bool,
    creates: usize,
    released: bool,
    /// Hold the answer to the next `POST /batches` this long (the batch is created anyway).
    hold_next_create: Option<Duration>,
    uploads_without_newline: usize,
}

struct Batch {
    id: String,
    lines: Vec<Value>,
    metadata: Value,
    polls: usize,
    failed_once: bool,
    ended: Option<Value>,
}

/// A running fake.
#[derive(Clone)]
pub struct BatchUpstream {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    _server: Arc<MockServer>,
}

struct Responder(Arc<Mutex<State>>);

impl BatchUpstream {
    /// Starts it; batches stay `in_progress` until `release`.
    pub async fn start() -> BatchUpstream {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        BatchUpstream {
            base_url: format!("{}/v1", server.uri()),
            state,
            _server: Arc::new(server),
        }
    }

    /// Lets batches complete.
    pub fn release(&self) {
        self.state.lock().unwrap().released = true;
    }

    /// Holds the reply to the next batch creation (as if the gateway died waiting for it).
    pub fn hold_next_create(&self, hold: Duration) {
        self.state.lock().unwrap().hold_next_create = Some(hold);
    }

    /// Each batch created: its metadata and its lines' texts (for failure messages).
    pub fn describe(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .batches
            .iter()
            .map(|b| {
                format!(
                    "{} {} {:?}",
                    b.id,
                    b.metadata,
                    b.lines.iter().map(text_of).collect::<Vec<_>>()
                )
            })
            .collect()
    }

    /// Whether two batches were created for one gateway batch (the same metadata).
    pub fn created_twice(&self) -> bool {
        let state = self.state.lock().unwrap();
        let mut ids: Vec<String> = state
            .batches
            .iter()
            .map(|b| b.metadata.to_string())
            .collect();
        ids.sort();
        ids.dedup();
        ids.len() < state.batches.len()
    }

    /// How many batches were created.
    pub fn creates(&self) -> usize {
        self.state.lock().unwrap().creates
    }

    /// How many lines batches that ran held, in all.
    pub fn lines_sent(&self) -> usize {
        self.state.lock().unwrap().sent.values().sum()
    }

    /// The request texts sent more than once (must be none).
    pub fn sent_twice(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        let mut twice: Vec<String> = state
            .sent
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(t, _)| t.clone())
            .collect();
        twice.sort();
        twice
    }

    /// Whether the same text was ever sent once (a request the upstream got).
    pub fn was_sent(&self, text: &str) -> bool {
        self.state.lock().unwrap().sent.contains_key(text)
    }

    /// The most lines a batch held.
    pub fn largest_batch(&self) -> usize {
        let state = self.state.lock().unwrap();
        state
            .batches
            .iter()
            .map(|b| b.lines.len())
            .max()
            .unwrap_or(0)
    }

    /// Whether an input file mixed models, or did not end in a newline.
    pub fn broke_the_rules(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.mixed_models || state.uploads_without_newline > 0
    }
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        let path = request.url.path().trim_start_matches("/v1").to_owned();
        let method = request.method.as_str();
        match (method, path.as_str()) {
            ("POST", "/files") => upload(&mut state, request),
            ("POST", "/batches") => create(&mut state, request),
            ("GET", "/batches") => {
                let data: Vec<Value> = state
                    .batches
                    .iter()
                    .map(|b| object(b, "in_progress", None))
                    .collect();
                ResponseTemplate::new(200)
                    .set_body_json(json!({"object": "list", "data": data, "has_more": false}))
            }
            ("GET", p) if p.starts_with("/batches/") => poll(&mut state, &p["/batches/".len()..]),
            ("GET", p) if p.starts_with("/files/") && p.ends_with("/content") => {
                let id = &p["/files/".len()..p.len() - "/content".len()];
                match state.files.get(id) {
                    Some(bytes) => ResponseTemplate::new(200).set_body_bytes(bytes.clone()),
                    None => ResponseTemplate::new(404),
                }
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

fn upload(state: &mut State, request: &Request) -> ResponseTemplate {
    let body = String::from_utf8_lossy(&request.body).into_owned();
    assert!(
        body.contains("name=\"purpose\"\r\n\r\nbatch\r\n"),
        "purpose=batch"
    );
    let Some(start) = body.find("application/jsonl\r\n\r\n") else {
        return ResponseTemplate::new(400);
    };
    let rest = &body[start + "application/jsonl\r\n\r\n".len()..];
    let Some(end) = rest.rfind("\r\n--") else {
        return ResponseTemplate::new(400);
    };
    let jsonl = &rest[..end];
    if !jsonl.ends_with('\n') {
        state.uploads_without_newline += 1;
    }
    let id = format!("file-{}", state.files.len());
    state.files.insert(id.clone(), jsonl.as_bytes().to_vec());
    ResponseTemplate::new(200)
        .set_body_json(json!({"id": id, "object": "file", "purpose": "batch"}))
}

fn create(state: &mut State, request: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["completion_window"], "24h");
    let file = state.files[body["input_file_id"].as_str().unwrap()].clone();
    let lines: Vec<Value> = String::from_utf8(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut models: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["body"]["model"].as_str())
        .collect();
    models.dedup();
    // One model per file, and the upstream's own name for it (the route's prefix stripped).
    state.mixed_models |= models.len() > 1 || models.iter().any(|m| m.contains('/'));
    for line in &lines {
        assert_eq!(line["url"], body["endpoint"]);
    }
    if models.contains(&"refused") {
        let error = json!({"error": {"message": "model `refused` is not available for batch", "type": "invalid_request_error", "param": null, "code": null}});
        return ResponseTemplate::new(400).set_body_json(error);
    }
    state.creates += 1;
    let batch = Batch {
        id: format!("batch_{}", state.batches.len()),
        lines,
        metadata: body["metadata"].clone(),
        polls: 0,
        // OpenAI's queue limit, the first time only.
        failed_once: state.creates > 1,
        ended: None,
    };
    let reply = object(&batch, "validating", None);
    state.batches.push(batch);
    let template = ResponseTemplate::new(200).set_body_json(reply);
    match state.hold_next_create.take() {
        Some(hold) => template.set_delay(hold),
        None => template,
    }
}

fn poll(state: &mut State, id: &str) -> ResponseTemplate {
    let released = state.released;
    let Some(index) = state.batches.iter().position(|b| b.id == id) else {
        return ResponseTemplate::new(404);
    };
    let batch = &mut state.batches[index];
    batch.polls += 1;
    if !batch.failed_once {
        batch.failed_once = true;
        let errors = json!({"object": "list", "data": [{"code": "token_limit_exceeded", "message": "Enqueued token limit reached", "param": null, "line": null}]});
        return ResponseTemplate::new(200).set_body_json(object(batch, "failed", Some(errors)));
    }
    if !released || batch.polls < 2 {
        let status = ["in_progress", "finalizing", "a_status_from_the_future"][batch.polls % 3];
        return ResponseTemplate::new(200).set_body_json(object(batch, status, None));
    }
    if let Some(ended) = &batch.ended {
        return ResponseTemplate::new(200).set_body_json(ended.clone());
    }
    let expired = batch.lines.iter().any(|l| text_of(l).contains("EXPIRE"));
    let (output, errors) = answers(&batch.lines);
    let (output_id, error_id) = (format!("{id}-out"), format!("{id}-err"));
    let mut reply = object(batch, if expired { "expired" } else { "completed" }, None);
    reply["output_file_id"] = json!(output_id);
    reply["error_file_id"] = json!(error_id);
    batch.ended = Some(reply.clone());
    for line in batch.lines.iter().map(text_of).collect::<Vec<_>>() {
        *state.sent.entry(line).or_default() += 1;
    }
    state.files.insert(output_id, output);
    state.files.insert(error_id, errors);
    ResponseTemplate::new(200).set_body_json(reply)
}

/// The output and error files of `lines`, shuffled, with a malformed and a stranger's line.
fn answers(lines: &[Value]) -> (Vec<u8>, Vec<u8>) {
    let mut output = vec![
        "{not json".to_owned(),
        json!({"custom_id": "someone-else", "response": {"status_code": 200, "body": {}}})
            .to_string(),
    ];
    let mut errors = Vec::new();
    for line in lines {
        let text = text_of(line);
        let id = &line["custom_id"];
        if text.contains("LOSE") || text.contains("EXPIRE") {
            continue;
        }
        if text.contains("FAIL") {
            let body = json!({"error": {"message": format!("refused: {text}"), "type": "invalid_request_error", "param": null, "code": "bad_line"}});
            errors.push(json!({"id": "r", "custom_id": id, "response": {"status_code": 400, "request_id": "q", "body": body}, "error": null}).to_string());
            continue;
        }
        let body = answer(line, &text);
        output.push(json!({"id": "r", "custom_id": id, "response": {"status_code": 200, "request_id": "q", "body": body}, "error": null, "a_field_from_the_future": 1}).to_string());
    }
    fastrand::shuffle(&mut output);
    let join = |v: Vec<String>| {
        v.into_iter()
            .map(|l| l + "\n")
            .collect::<String>()
            .into_bytes()
    };
    (join(output), join(errors))
}

fn answer(line: &Value, text: &str) -> Value {
    let model = line["body"]["model"].clone();
    if line["url"] == "/v1/responses" {
        let content =
            json!([{"type": "output_text", "text": format!("echo: {text}"), "annotations": []}]);
        return json!({"id": "resp_1", "object": "response", "created_at": 0, "model": model,
            "status": "completed", "parallel_tool_calls": false, "tool_choice": "auto", "tools": [],
            "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": content}]});
    }
    if line["url"] == "/v1/embeddings" {
        return json!({"object": "list", "model": model, "usage": {"prompt_tokens": 1, "total_tokens": 1},
            "data": [{"object": "embedding", "index": 0, "embedding": [text.len() as f64, 0.5]}]});
    }
    json!({"id": format!("chatcmpl-{}", line["custom_id"].as_str().unwrap_or("")), "object": "chat.completion",
        "created": 0, "model": model, "system_fingerprint": null,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
            "message": {"role": "assistant", "content": format!("echo: {text}"), "refusal": null, "annotations": null}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
}

/// The request's text: its last message's content, or its input.
fn text_of(line: &Value) -> String {
    let body = &line["body"];
    let text = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["content"].clone())
        .unwrap_or_else(|| body["input"].clone());
    text.as_str().unwrap_or_default().to_owned()
}

fn object(batch: &Batch, status: &str, errors: Option<Value>) -> Value {
    json!({"id": batch.id, "object": "batch", "endpoint": batch.lines.first().map(|l| l["url"].clone()),
        "status": status, "input_file_id": "f", "completion_window": "24h", "output_file_id": null,
        "error_file_id": null, "errors": errors, "metadata": batch.metadata,
        "request_counts": {"total": batch.lines.len(), "completed": 0, "failed": 0}})
}
