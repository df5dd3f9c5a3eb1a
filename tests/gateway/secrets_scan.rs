//! The secrets scan: two real `switchyard serve` processes (text and JSON logs, debug level),
//! one on PostgreSQL and one on a SQLite file, each driven through every surface a gateway key or
//! an upstream credential touches (admin API, plain and streamed chat, the HTTP and Redis
//! backends, models, errors, revocation). Afterwards the database files and a dump, both logs,
//! every Redis key and value, and every response are searched for each secret: none may appear,
//! except a key in the one response that created it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::auth::{ADMIN_TOKEN, BACKEND_KEY, MASTER_KEY};
use crate::support::postgres::TestPostgres;
use crate::support::redis::{RunningWorker, TestRedis, worker_config};

const CREDENTIAL: &str = "sk-project-credential-scan-4242";

/// A `switchyard serve` process writing its log to a file, killed on drop.
struct Served {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(dir: &Path, routes: &str, format: &str) -> Served {
    let config = dir.join("routes.toml");
    std::fs::write(&config, routes).unwrap();
    let log = dir.join(format!("gateway.{format}.log"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            format,
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = listening_addr(&text) {
            return Served {
                child,
                base: format!("http://{addr}"),
                log,
            };
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "switchyard serve exited:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "switchyard serve did not log its address:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

fn listening_addr(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("switchyard listening"))?;
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return v["addr"].as_str().map(str::to_owned);
    }
    // Text logs may colour field names: drop ANSI escapes (`ESC [ … m`) before reading.
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    let start = plain.find("addr=")? + 5;
    Some(plain[start..].split_whitespace().next()?.to_owned())
}

fn routes(store_url: &str, upstream: &str, redis_url: &str) -> String {
    format!(
        r#"
[store]
url = "{store_url}"
[auth]
master_key = "{MASTER_KEY}"
admin_token = "{ADMIN_TOKEN}"
[backends.echo]
kind = "echo"
[backends.up]
kind = "openai"
base_url = "{upstream}/v1"
api_key = "{BACKEND_KEY}"
[backends.dc]
kind = "redis"
redis_url = "{redis_url}"
timeout = "20s"
[[routes]]
prefix = "echo/"
backend = "echo"
models = ["hello"]
[[routes]]
prefix = "up/"
backend = "up"
[[routes]]
prefix = "dc/"
backend = "dc"
"#
    )
}

/// Everything a client received, as text, plus the gateway keys made (the creation responses
/// themselves are not recorded: they are the one place a key may appear).
#[derive(Default)]
struct Seen {
    responses: String,
    keys: Vec<String>,
}

impl Seen {
    async fn call(
        &mut self,
        gw: &Served,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> u16 {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", gw.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        self.responses
            .push_str(&format!("{status} {:?}\n", response.headers()));
        self.responses.push_str(&response.text().await.unwrap());
        status
    }

    async fn admin(
        &mut self,
        gw: &Served,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> u16 {
        self.call(
            gw,
            method,
            &format!("/admin/v1{path}"),
            ADMIN_TOKEN,
            Some(body),
        )
        .await
    }

    async fn mint(&mut self, gw: &Served, project: &str, spec: Value) -> (String, String) {
        let response = reqwest::Client::new()
            .post(format!("{}/admin/v1/projects/{project}/keys", gw.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        let key = body["key"].as_str().unwrap().to_owned();
        self.keys.push(key.clone());
        (body["id"].as_str().unwrap().to_owned(), key)
    }

    async fn chat(&mut self, gw: &Served, key: &str, model: &str, stream: bool) -> u16 {
        let body = json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
        self.call(
            gw,
            reqwest::Method::POST,
            "/v1/chat/completions",
            key,
            Some(body),
        )
        .await
    }
}

/// Every surface, once, through `gw`.
async fn exercise(gw: &Served, seen: &mut Seen) {
    use reqwest::Method;
    let (status, project) = {
        let response = reqwest::Client::new()
            .post(format!("{}/admin/v1/projects", gw.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "scan", "models": ["echo/", "up/", "dc/"]}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 201);
    let project = project["id"].as_str().unwrap().to_owned();
    let put = seen
        .admin(
            gw,
            Method::PUT,
            &format!("/projects/{project}/credentials/up"),
            json!({"api_key": CREDENTIAL}),
        )
        .await;
    assert_eq!(put, 204);
    let (id, key) = seen.mint(gw, &project, json!({"name": "svc"})).await;
    let (_, capped) = seen
        .mint(gw, &project, json!({"max_requests": 1, "expires_in": "1h"}))
        .await;
    for (model, stream) in [
        ("echo/hello", false),
        ("echo/hello", true),
        ("up/gpt-4o", false),
        ("up/gpt-4o", true),
        ("dc/gpt-4o", false),
    ] {
        assert_eq!(
            seen.chat(gw, &key, model, stream).await,
            200,
            "{model} stream={stream}"
        );
    }
    assert_eq!(seen.chat(gw, &key, "other/model", false).await, 403);
    assert_eq!(
        seen.call(gw, Method::GET, "/v1/models", &key, None).await,
        200
    );
    // The gateway's own Files API (it has a store): the key's project's files, none yet.
    assert_eq!(
        seen.call(gw, Method::GET, "/v1/files", &key, None).await,
        200
    );
    assert_eq!(seen.chat(gw, &capped, "echo/hello", false).await, 200);
    assert_eq!(seen.chat(gw, &capped, "echo/hello", false).await, 429);
    assert_eq!(
        seen.call(
            gw,
            Method::GET,
            &format!("/admin/v1/projects/{project}/keys"),
            ADMIN_TOKEN,
            None
        )
        .await,
        200
    );
    assert_eq!(
        seen.call(
            gw,
            Method::GET,
            &format!("/admin/v1/projects/{project}"),
            ADMIN_TOKEN,
            None
        )
        .await,
        200
    );
    assert_eq!(seen.call(gw, Method::GET, "/health", &key, None).await, 200);
    assert_eq!(
        seen.call(
            gw,
            Method::DELETE,
            &format!("/admin/v1/keys/{id}"),
            ADMIN_TOKEN,
            None
        )
        .await,
        204
    );
    assert_eq!(seen.chat(gw, &key, "echo/hello", false).await, 401);
    assert_eq!(
        seen.call(gw, Method::GET, "/admin/v1/projects", &key, None)
            .await,
        401
    );
}

fn assert_clean(what: &str, haystack: &str, secrets: &[&str]) {
    assert!(!haystack.is_empty(), "{what} is empty: nothing was scanned");
    for secret in secrets {
        assert!(
            !haystack.contains(secret),
            "{what} holds a secret ({}…)",
            &secret[..10]
        );
    }
}

fn file_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn no_secret_is_left_in_the_databases_logs_redis_or_responses() {
    // Arrange: the real parts, and an upstream that answers anything.
    let pg = TestPostgres::start();
    let redis = TestRedis::start().await;
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]
        })))
        .mount(&upstream)
        .await;
    let _worker =
        RunningWorker::start(worker_config(&redis.url, &format!("{}/v1", upstream.uri())));
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let sqlite = dir_b.path().join("keys.db");
    let a = serve(
        dir_a.path(),
        &routes(&pg.url, &upstream.uri(), &redis.url),
        "text",
    )
    .await;
    let b = serve(
        dir_b.path(),
        &routes(
            &format!("sqlite://{}", sqlite.display()),
            &upstream.uri(),
            &redis.url,
        ),
        "json",
    )
    .await;

    // Act: every surface, on both.
    let mut seen = Seen::default();
    exercise(&a, &mut seen).await;
    exercise(&b, &mut seen).await;

    // Assert
    let mut secrets: Vec<&str> = vec![CREDENTIAL, ADMIN_TOKEN, MASTER_KEY];
    secrets.extend(seen.keys.iter().map(String::as_str));
    assert_clean("the responses", &seen.responses, &secrets);
    assert_clean("the text log", &file_text(&a.log), &secrets);
    assert_clean("the JSON log", &file_text(&b.log), &secrets);
    let mut sqlite_files = String::new();
    for suffix in ["", "-wal", "-shm"] {
        sqlite_files.push_str(&file_text(&PathBuf::from(format!(
            "{}{suffix}",
            sqlite.display()
        ))));
    }
    assert_clean("the SQLite files", &sqlite_files, &secrets);
    let dump = pg.dump();
    assert!(
        dump.contains("upstream_credentials"),
        "the dump holds the tables"
    );
    assert_clean("the PostgreSQL dump", &dump, &secrets);
    assert_clean("Redis", &redis.dump_text().await, &secrets);
    // The project's credential did travel, but only to the upstream.
    let received = upstream.received_requests().await.unwrap();
    assert!(received.iter().any(|r| {
        r.headers
            .get("authorization")
            .is_some_and(|v| v == format!("Bearer {CREDENTIAL}").as_str())
    }));
}
