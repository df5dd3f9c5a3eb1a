//! The gateway's own Files and Batches API (`/v1/files`, `/v1/batches`) for backends without a
//! Batch API: the official Python SDK's whole flow on echo and Ollama, validation, cancel,
//! expiry, a restart mid-batch, projects kept apart, and hostile clients.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard::auth::clock::ManualClock;

use crate::support::auth::auth_routes;
use crate::support::held_upstream::HeldUpstream;
use crate::support::ollama_upstream::{OllamaUpstream, Pieces, fixture};
use crate::support::python::run_pytest;
use crate::support::{TestGateway, spawn_gateway, spawn_gateway_with_clock};

const BOUNDARY: &str = "switchyard-test-boundary";

fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("store.db").display())
}

/// A store, echo, and an `openai` backend `held` at `upstream`, with `[batches]` `extra`.
fn routes(store: &str, upstream: &str, batches: &str) -> String {
    format!(
        r#"
[store]
url = "{store}"

[batches]
{batches}

[backends.echo]
kind = "echo"

[backends.held]
kind = "openai"
base_url = "{upstream}"

[[routes]]
prefix = "echo/"
backend = "echo"

[[routes]]
prefix = "held/"
backend = "held"
"#
    )
}

/// A `multipart/form-data` body with `purpose` and `file`.
fn form(purpose: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A chat line whose message is its own `custom_id` (what `HeldUpstream` counts).
fn chat_line(id: &str, model: &str) -> String {
    json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": model, "messages": [{"role": "user", "content": id}]}})
    .to_string()
}

fn jsonl(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

/// A client of the gateway at `base` with gateway key (or upstream key) `key`.
struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    fn new(base: &str, key: &str) -> Client {
        Client {
            base: base.to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(&self.key).send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    async fn upload_raw(&self, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}/v1/files", self.base))
            .header("content-type", content_type)
            .body(body);
        self.send(request).await
    }

    /// Uploads `data` as a batch file; its id.
    async fn upload(&self, data: &[u8]) -> String {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let (status, file) = self.upload_raw(&content_type, form("batch", data)).await;
        assert_eq!(status, 200, "{file}");
        file["id"].as_str().unwrap().to_owned()
    }

    async fn create(&self, file: &str) -> Value {
        let body = json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                          "completion_window": "24h"});
        let (status, batch) = self.post("/v1/batches", body).await;
        assert_eq!(status, 200, "{batch}");
        batch
    }

    /// Polls batch `id` (bounded: 60 s) until its status is `status`.
    async fn wait_status(&self, id: &str, status: &str) -> Value {
        let path = format!("/v1/batches/{id}");
        for _ in 0..1200 {
            let (_, batch) = self.get(&path).await;
            if batch["status"] == status {
                return batch;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "batch {id} not {status} within 60 s: {:?}",
            self.get(&path).await
        );
    }

    /// The lines of file `id`, by `custom_id`.
    async fn lines(&self, id: &Value) -> std::collections::HashMap<String, Value> {
        let Some(id) = id.as_str() else {
            return Default::default();
        };
        let url = format!("{}/v1/files/{id}/content", self.base);
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|l| (l["custom_id"].as_str().unwrap().to_owned(), l))
            .collect()
    }
}

#[tokio::test]
async fn the_python_sdk_runs_whole_batches_on_echo_and_ollama() {
    let dir = tempfile::tempdir().unwrap();
    let ollama = OllamaUpstream::start(Pieces::SeveralLines).await;
    ollama.reply("/api/chat", None, Some(false), 200, fixture("chat.json"));
    ollama.fail_when_body_has(
        "/api/chat",
        "please fail",
        500,
        fixture("error_runner.json"),
    );
    let toml = format!(
        "{}\n[backends.ollama]\nkind = \"ollama\"\nbase_url = \"{}\"\n\n\
         [[routes]]\nprefix = \"ollama/\"\nbackend = \"ollama\"\n",
        routes(&sqlite(&dir), "http://127.0.0.1:9/v1", ""),
        ollama.base_url
    );
    let gw = spawn_gateway(&toml).await;
    run_pytest(
        "test_own_batches.py",
        &[
            ("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base)),
            ("SWITCHYARD_MODELS", "echo/hello,ollama/llama3".to_owned()),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_bad_file_fails_the_batch_with_each_problem_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let gw = spawn_gateway(&routes(&sqlite(&dir), "http://127.0.0.1:9/v1", "")).await;
    let client = Client::new(&gw.base, "sk-a");
    let embeddings = json!({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                            "body": {"model": "echo/x", "input": "hi"}});
    let file = jsonl(&[
        chat_line("a", "echo/x"),
        "{not json".to_owned(),
        embeddings.to_string(),
        chat_line("a", "echo/x"),
        chat_line("b", "echo/other"),
    ]);
    let id = client.upload(&file).await;

    let batch = client.create(&id).await;
    let failed = client
        .wait_status(batch["id"].as_str().unwrap(), "failed")
        .await;

    let problems: Vec<(Value, Value)> = failed["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["code"].clone(), e["line"].clone()))
        .collect();
    let want = [
        ("invalid_json_line", 2),
        ("mismatched_endpoint", 3),
        ("duplicate_custom_id", 4),
        ("mismatched_model", 5),
    ];
    let want: Vec<(Value, Value)> = want.iter().map(|(c, l)| (json!(c), json!(l))).collect();
    assert_eq!(problems, want, "{failed}");
    assert_eq!(failed["errors"]["object"], "list");
    assert!(
        failed["errors"]["data"][0]["message"]
            .as_str()
            .unwrap()
            .len()
            > 10
    );
    assert!(failed["failed_at"].is_i64() && failed["output_file_id"].is_null());
    // Refused before any file is read, as OpenAI refuses them.
    for (field, value) in [("endpoint", "/v1/moderations"), ("completion_window", "1h")] {
        let mut body = json!({"input_file_id": id, "endpoint": "/v1/chat/completions",
                              "completion_window": "24h"});
        body[field] = json!(value);
        let (status, error) = client.post("/v1/batches", body).await;
        assert_eq!(
            (status, &error["error"]["param"]),
            (400, &json!(field)),
            "{error}"
        );
    }
}

#[tokio::test]
async fn cancel_mid_run_abandons_the_lines_in_flight_and_runs_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..5).map(|i| format!("line-{i}")).collect();
    let held: Vec<&str> = ids.iter().map(String::as_str).collect();
    let upstream = HeldUpstream::start(&held).await;
    let gw = spawn_gateway(&routes(&sqlite(&dir), &upstream.base_url, "per_batch = 2")).await;
    let client = Client::new(&gw.base, "sk-a");
    let lines: Vec<String> = ids.iter().map(|id| chat_line(id, "held/m")).collect();
    let batch = client.create(&client.upload(&jsonl(&lines)).await).await;
    let id = batch["id"].as_str().unwrap();
    upstream.wait_for("line-0").await;
    upstream.wait_for("line-1").await;

    let (status, cancelling) = client
        .post(&format!("/v1/batches/{id}/cancel"), json!({}))
        .await;

    assert_eq!(status, 200, "{cancelling}");
    assert!(matches!(
        cancelling["status"].as_str(),
        Some("cancelling" | "cancelled")
    ));
    let cancelled = client.wait_status(id, "cancelled").await;
    upstream.wait_hang_ups(2).await;
    let errors = client.lines(&cancelled["error_file_id"]).await;
    assert_eq!(errors.len(), 5, "{errors:?}");
    for line in errors.values() {
        assert_eq!(line["error"]["code"], "batch_cancelled");
        assert!(line["response"].is_null());
    }
    assert_eq!(
        cancelled["request_counts"],
        json!({"total": 5, "completed": 0, "failed": 5})
    );
    assert!(cancelled["output_file_id"].is_null() && cancelled["cancelled_at"].is_i64());
    let sent: Vec<String> = upstream.counts().into_keys().collect();
    assert_eq!(
        sent.len(),
        2,
        "only the two lines in flight were sent: {sent:?}"
    );
    let (status, _) = client
        .post(&format!("/v1/batches/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "cancelling a cancelled batch answers it again");
}

#[tokio::test]
async fn a_batch_past_its_window_expires_with_its_unfinished_lines_in_the_error_file() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = HeldUpstream::start(&["slow-0"]).await;
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let toml = routes(&sqlite(&dir), &upstream.base_url, "per_batch = 1");
    let gw = spawn_gateway_with_clock(&toml, clock.clone()).await;
    let client = Client::new(&gw.base, "sk-a");
    let lines: Vec<String> = (0..3)
        .map(|i| chat_line(&format!("slow-{i}"), "held/m"))
        .collect();
    let batch = client.create(&client.upload(&jsonl(&lines)).await).await;
    assert_eq!(batch["expires_at"], json!(1_800_000_000 + 24 * 3600));
    upstream.wait_for("slow-0").await;

    clock.advance(24 * 3600);

    let expired = client
        .wait_status(batch["id"].as_str().unwrap(), "expired")
        .await;
    assert_eq!(expired["expired_at"], json!(1_800_000_000 + 24 * 3600));
    let errors = client.lines(&expired["error_file_id"]).await;
    let codes: Vec<&Value> = errors.values().map(|l| &l["error"]["code"]).collect();
    assert_eq!(codes, vec![&json!("batch_expired"); 3]);
    assert_eq!(
        upstream.counts().len(),
        1,
        "no line started after the window ended"
    );
}

#[tokio::test]
async fn a_gateway_killed_mid_batch_finishes_it_on_restart_without_running_a_line_twice() {
    // Arrange: one line at a time; line 3 is held upstream when the gateway is killed.
    let dir = tempfile::tempdir().unwrap();
    let upstream = HeldUpstream::start(&["line-3"]).await;
    let toml = routes(
        &sqlite(&dir),
        &upstream.base_url,
        "concurrency = 1\nper_batch = 1",
    );
    let mut first = crate::serve_cli::serve(&toml).await;
    let client = Client::new(&first.base, "sk-a");
    let lines: Vec<String> = (0..6)
        .map(|i| chat_line(&format!("line-{i}"), "held/m"))
        .collect();
    let batch = client.create(&client.upload(&jsonl(&lines)).await).await;
    let id = batch["id"].as_str().unwrap().to_owned();
    upstream.wait_for("line-3").await;

    // Act: kill -9, then start again on the same store and files.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    upstream.release();
    let second = crate::serve_cli::serve(&toml).await;
    let client = Client::new(&second.base, "sk-a");

    // Assert: the batch completes; every line reached the upstream exactly once, and the one
    // in flight at the kill is reported as interrupted rather than sent again.
    let done = client.wait_status(&id, "completed").await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 6, "completed": 5, "failed": 1})
    );
    let outputs = client.lines(&done["output_file_id"]).await;
    let errors = client.lines(&done["error_file_id"]).await;
    for i in [0, 1, 2, 4, 5] {
        let line = &outputs[&format!("line-{i}")];
        let content = &line["response"]["body"]["choices"][0]["message"]["content"];
        assert_eq!(content, &json!(format!("answer to line-{i}")));
    }
    assert_eq!(errors["line-3"]["error"]["code"], "batch_line_interrupted");
    for i in 0..6 {
        assert_eq!(upstream.count(&format!("line-{i}")), 1, "line-{i}");
    }
}

#[tokio::test]
async fn another_project_cannot_read_list_download_or_cancel_a_batch_or_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let toml = auth_routes(&sqlite(&dir), "http://127.0.0.1:9/v1");
    let gw = spawn_gateway(&toml).await;
    let (a, b) = (
        gw.create_project("a", &["echo/"]).await,
        gw.create_project("b", &["echo/"]).await,
    );
    let (_, key_a) = gw.create_key(&a, json!({})).await;
    let (_, key_b) = gw.create_key(&b, json!({})).await;
    let (owner, stranger) = (Client::new(&gw.base, &key_a), Client::new(&gw.base, &key_b));
    let file = owner.upload(&jsonl(&[chat_line("x", "echo/hello")])).await;
    let batch = owner.create(&file).await;
    let id = batch["id"].as_str().unwrap();
    let done = owner.wait_status(id, "completed").await;
    let output = done["output_file_id"].as_str().unwrap();

    for path in [
        format!("/v1/files/{file}"),
        format!("/v1/files/{file}/content"),
        format!("/v1/files/{output}/content"),
        format!("/v1/batches/{id}"),
    ] {
        let (status, error) = stranger.get(&path).await;
        assert_eq!(
            (status, &error["error"]["code"]),
            (404, &json!("not_found")),
            "{path}"
        );
    }
    let (status, _) = stranger
        .post(&format!("/v1/batches/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 404);
    let delete = stranger.http.delete(format!("{}/v1/files/{file}", gw.base));
    assert_eq!(stranger.send(delete).await.0, 404);
    let body = json!({"input_file_id": file, "endpoint": "/v1/chat/completions",
                      "completion_window": "24h"});
    assert_eq!(stranger.post("/v1/batches", body).await.0, 404);
    assert_eq!(stranger.get("/v1/files").await.1["data"], json!([]));
    assert_eq!(stranger.get("/v1/batches").await.1["data"], json!([]));
    let anonymous = Client::new(&gw.base, "");
    for path in ["/v1/files", "/v1/batches", &format!("/v1/batches/{id}")] {
        assert_eq!(anonymous.get(path).await.0, 401, "{path} without a key");
    }
    // The owner still has everything.
    assert_eq!(owner.get(&format!("/v1/files/{file}")).await.0, 200);
    assert_eq!(owner.get("/v1/batches").await.1["data"][0]["id"], json!(id));
    assert_eq!(owner.lines(&done["output_file_id"]).await.len(), 1);
}

/// An OpenAI-shaped error with `status` (and `param`, when given).
fn assert_error(what: &str, (status, body): (u16, Value), want: u16, param: Option<&str>) {
    assert_eq!(status, want, "{what}: {body}");
    let error = &body["error"];
    assert!(
        error["message"].is_string() && error["type"].is_string(),
        "{what}: {body}"
    );
    if let Some(param) = param {
        assert_eq!(error["param"], json!(param), "{what}: {body}");
    }
}

#[tokio::test]
async fn hostile_uploads_ids_and_queries_get_openai_shaped_errors() {
    let dir = tempfile::tempdir().unwrap();
    let batches = "max_file_bytes = 2000\nmax_lines = 3";
    let toml = routes(&sqlite(&dir), "http://127.0.0.1:9/v1", batches)
        .replace("[store]", "[server]\nmax_body_bytes = 400\n\n[store]");
    let gw = spawn_gateway(&toml).await;
    let client = Client::new(&gw.base, "sk-a");
    let multipart = format!("multipart/form-data; boundary={BOUNDARY}");

    let big = vec![b'x'; 5000];
    assert_error(
        "declared too large",
        client.upload_raw(&multipart, form("batch", &big)).await,
        413,
        None,
    );
    assert_error(
        "streamed too large",
        upload_streamed(&gw, &multipart, form("batch", &big)).await,
        413,
        None,
    );
    assert_error(
        "not multipart",
        client.upload_raw("application/json", b"{}".to_vec()).await,
        400,
        None,
    );
    assert_error(
        "no boundary",
        client
            .upload_raw("multipart/form-data", form("batch", b"x"))
            .await,
        400,
        None,
    );
    let garbage = b"--elsewhere\r\nnonsense\r\n\r\n".repeat(50);
    assert_error(
        "garbage",
        client.upload_raw(&multipart, garbage).await,
        400,
        None,
    );
    assert_error(
        "other purpose",
        client.upload_raw(&multipart, form("fine-tune", b"x")).await,
        400,
        Some("purpose"),
    );
    let no_file = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{BOUNDARY}--\r\n"
    );
    assert_error(
        "no file",
        client.upload_raw(&multipart, no_file.into_bytes()).await,
        400,
        Some("file"),
    );

    // Too many lines, and a line over `max_body_bytes`: the batch fails, naming why.
    let many: Vec<String> = (0..4)
        .map(|i| chat_line(&i.to_string(), "echo/x"))
        .collect();
    let huge = chat_line(&"y".repeat(500), "echo/x");
    for (lines, code) in [(many, "too_many_requests"), (vec![huge], "line_too_large")] {
        let batch = client.create(&client.upload(&jsonl(&lines)).await).await;
        let failed = client
            .wait_status(batch["id"].as_str().unwrap(), "failed")
            .await;
        assert_eq!(failed["errors"]["data"][0]["code"], code, "{failed}");
    }

    for path in [
        "/v1/files/file-zzz",
        "/v1/files/..%2F..%2Fetc%2Fpasswd",
        "/v1/files/file-0123456789abcdef0123456789abcdef/content",
        "/v1/batches/batch_nope",
        "/v1/batches/%00",
    ] {
        assert_error(path, client.get(path).await, 404, None);
    }
    assert_error(
        "cancel unknown",
        client.post("/v1/batches/batch_x/cancel", json!({})).await,
        404,
        None,
    );
    for path in [
        "/v1/files?limit=0",
        "/v1/files?limit=10001",
        "/v1/batches?limit=101",
        "/v1/batches?limit=-1",
    ] {
        assert_error(path, client.get(path).await, 400, Some("limit"));
    }
    assert_error(
        "limit=abc",
        client.get("/v1/batches?limit=abc").await,
        400,
        None,
    );
    assert_error(
        "unknown key",
        client.get("/v1/batches?colour=red").await,
        400,
        None,
    );
    let body = json!({"input_file_id": "file-x", "endpoint": "/v1/chat/completions",
                      "completion_window": "24h", "metadata": {"k": "v".repeat(513)}});
    assert_error(
        "metadata",
        client.post("/v1/batches", body).await,
        400,
        Some("metadata"),
    );
    // Auth off: a client with another Authorization is another owner.
    let file = client.upload(&jsonl(&[chat_line("z", "echo/x")])).await;
    let other = Client::new(&gw.base, "sk-b");
    assert_error(
        "other client",
        other.get(&format!("/v1/files/{file}")).await,
        404,
        None,
    );
}

/// An upload sent chunked (no `content-length`), so only the bytes that arrive can be counted.
async fn upload_streamed(gw: &TestGateway, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(256).map(|c| Ok(c.to_vec())).collect();
    let response = gw
        .client
        .post(format!("{}/v1/files", gw.base))
        .header("content-type", content_type)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn over_postgres_batches_run_and_list_in_pages_newest_first() {
    let pg = crate::support::postgres::TestPostgres::start();
    let files = tempfile::tempdir().unwrap();
    let dir = format!("dir = \"{}\"", files.path().display());
    let gw = spawn_gateway(&routes(&pg.url, "http://127.0.0.1:9/v1", &dir)).await;
    let client = Client::new(&gw.base, "sk-a");
    let file = client.upload(&jsonl(&[chat_line("p", "echo/hello")])).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            client.create(&file).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }

    let mut done = Vec::new();
    for id in &ids {
        done.push(client.wait_status(id, "completed").await);
    }

    let outputs = client.lines(&done[0]["output_file_id"]).await;
    let content = &outputs["p"]["response"]["body"]["choices"][0]["message"]["content"];
    assert_eq!(content, "p");
    // One batch per page, following `after`, newest first.
    let mut listed = Vec::new();
    let mut after = String::new();
    for _ in 0..3 {
        let (status, page) = client.get(&format!("/v1/batches?limit=1{after}")).await;
        assert_eq!(status, 200, "{page}");
        let id = page["last_id"].as_str().unwrap().to_owned();
        assert_eq!(page["has_more"], json!(listed.len() < 2), "{page}");
        after = format!("&after={id}");
        listed.push(id);
    }
    ids.reverse();
    assert_eq!(listed, ids);
    let (_, all) = client.get("/v1/files").await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        4,
        "the upload and three outputs"
    );
}

#[tokio::test]
async fn batch_lines_take_the_keys_scope_rate_limits_and_usage_as_live_requests_do() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[usage]\n\n[[routes]]\nprefix = \"limited/\"\nbackend = \"echo\"\n\
         rate_limit = {{ requests_per_minute = 2 }}\n",
        auth_routes(&sqlite(&dir), "http://127.0.0.1:9/v1")
    );
    let gw = spawn_gateway(&toml).await;
    let project = gw.create_project("team", &["echo/", "limited/"]).await;
    let (_, key) = gw.create_key(&project, json!({})).await;
    let client = Client::new(&gw.base, &key);
    let limited: Vec<String> = (0..3)
        .map(|i| chat_line(&format!("l{i}"), "limited/x"))
        .collect();
    let outside = [chat_line("o", "up/gpt-4o")];

    let mut ended = Vec::new();
    for lines in [&limited[..], &outside[..]] {
        let batch = client.create(&client.upload(&jsonl(lines)).await).await;
        ended.push(
            client
                .wait_status(batch["id"].as_str().unwrap(), "completed")
                .await,
        );
    }

    // The route's rate limit lets two through and refuses the third with a 429, as live.
    let counts = &ended[0]["request_counts"];
    assert_eq!(counts, &json!({"total": 3, "completed": 2, "failed": 1}));
    let refused = client.lines(&ended[0]["error_file_id"]).await;
    let refused = refused.values().next().unwrap();
    assert_eq!(refused["response"]["status_code"], 429, "{refused}");
    assert_eq!(
        refused["response"]["body"]["error"]["code"],
        "rate_limit_exceeded"
    );
    // A model outside the project's scope is refused with 403, as live.
    let scoped = client.lines(&ended[1]["error_file_id"]).await;
    assert_eq!(scoped["o"]["response"]["status_code"], 403, "{scoped:?}");
    // Each line is a usage record of the project, as a live request is.
    let path = format!("/usage?group_by=model&project={project}");
    let recorded = || async {
        let (_, usage) = gw.admin(reqwest::Method::GET, &path, None).await;
        usage["data"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|row| row.to_string().contains("limited/x") && row["requests"] == 3)
    };
    crate::support::wait::eventually(Duration::from_secs(10), "three usage records", recorded)
        .await;
}
