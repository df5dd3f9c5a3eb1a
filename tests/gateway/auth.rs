//! Projects and gateway keys (`[auth]`): the SDK's view on SQLite and PostgreSQL, expiry on an
//! injected clock, revocation across instances, a store that goes away, the admin API as a
//! hostile client sees it, and a gateway without `[auth]` that is exactly as before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use switchyard::auth::clock::{ManualClock, SystemClock};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::auth::{ADMIN_TOKEN, BACKEND_KEY, auth_routes};
use crate::support::postgres::TestPostgres;
use crate::support::python::run_pytest;
use crate::support::{TestGateway, spawn_gateway, spawn_gateway_in, spawn_gateway_with_clock};

const PROJECT_CREDENTIAL: &str = "sk-project-team-a-credential";

/// An upstream that answers only for the project's credential.
async fn credential_checking_upstream() -> MockServer {
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header(
            "authorization",
            format!("Bearer {PROJECT_CREDENTIAL}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "from the upstream"}}]
        })))
        .mount(&upstream)
        .await;
    upstream
}

async fn sdk_suite(store_url: &str) {
    let upstream = credential_checking_upstream().await;
    let gw = spawn_gateway(&auth_routes(store_url, &format!("{}/v1", upstream.uri()))).await;
    run_pytest(
        "test_auth.py",
        &[
            ("SWITCHYARD_BASE", gw.base.clone()),
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            (
                "SWITCHYARD_PROJECT_CREDENTIAL",
                PROJECT_CREDENTIAL.to_owned(),
            ),
        ],
    )
    .await;
    // Every request the upstream saw carried the project's credential: never the backend's own
    // key, never the client's gateway key.
    let received = upstream.received_requests().await.unwrap();
    assert!(!received.is_empty());
    for request in received {
        let auth = request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(auth, format!("Bearer {PROJECT_CREDENTIAL}"));
        assert!(!auth.contains("sk-sy-") && !auth.contains(BACKEND_KEY));
    }
}

#[tokio::test]
async fn the_python_sdk_sees_scopes_key_errors_caps_and_the_project_credential_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sdk_suite(&format!(
        "sqlite://{}",
        dir.path().join("keys.db").display()
    ))
    .await;
}

#[tokio::test]
async fn the_python_sdk_sees_scopes_key_errors_caps_and_the_project_credential_on_postgres() {
    let pg = TestPostgres::start();
    sdk_suite(&pg.url).await;
}

#[tokio::test]
async fn an_expired_key_is_refused_once_the_injected_clock_passes_its_expiry() {
    // Arrange: a gateway whose clock only moves when told to.
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000));
    let routes = auth_routes(
        &format!("sqlite://{}", dir.path().join("k.db").display()),
        "http://127.0.0.1:9/v1",
    );
    let gw = spawn_gateway_with_clock(&routes, clock.clone()).await;
    let project = gw.create_project("ci", &["echo/"]).await;
    let (_, key) = gw.create_key(&project, json!({"expires_in": "1h"})).await;
    // Act + Assert: valid until the last second of its hour, refused from then on.
    assert_eq!(gw.chat_as(&key, "echo/hello").await, 200);
    clock.advance(3599);
    assert_eq!(gw.chat_as(&key, "echo/hello").await, 200);
    clock.advance(1);
    assert_eq!(gw.chat_as(&key, "echo/hello").await, 401);
}

/// Polls `gw` with `key` until it is refused; returns how long that took after `since`.
async fn refused_after(gw: &TestGateway, key: &str, since: Instant) -> Duration {
    loop {
        if gw.chat_as(key, "echo/hello").await == 401 {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the revoked key still works after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn revocation_reaches_the_other_instance(store_url: &str) {
    let routes = auth_routes(store_url, "http://127.0.0.1:9/v1");
    let a = spawn_gateway(&routes).await;
    let b = spawn_gateway(&routes).await;
    let project = a.create_project("svc", &["echo/"]).await;
    let (id, key) = a.create_key(&project, json!({})).await;
    // B learns the key from the store, then holds it in its cache.
    assert_eq!(b.chat_as(&key, "echo/hello").await, 200);
    assert_eq!(b.chat_as(&key, "echo/hello").await, 200);
    let (status, _) = a.admin(Method::DELETE, &format!("/keys/{id}"), None).await;
    assert_eq!(status, 204);
    let revoked = Instant::now();
    assert_eq!(
        a.chat_as(&key, "echo/hello").await,
        401,
        "the revoking instance at once"
    );
    let took = refused_after(&b, &key, revoked).await;
    assert!(
        took <= Duration::from_secs(1),
        "instance B refused the key only after {took:?}"
    );
}

#[tokio::test]
async fn a_key_revoked_through_one_instance_is_refused_by_another_within_a_second_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    revocation_reaches_the_other_instance(&format!(
        "sqlite://{}",
        dir.path().join("shared.db").display()
    ))
    .await;
}

#[tokio::test]
async fn a_key_revoked_through_one_instance_is_refused_by_another_within_a_second_on_postgres() {
    let pg = TestPostgres::start();
    revocation_reaches_the_other_instance(&pg.url).await;
}

#[tokio::test]
async fn with_postgres_stopped_cached_keys_answer_unknown_keys_get_503_and_all_recovers() {
    // Arrange: a key in use (so cached), then the database goes away.
    let pg = TestPostgres::start();
    let gw = spawn_gateway(&auth_routes(&pg.url, "http://127.0.0.1:9/v1")).await;
    let project = gw.create_project("svc", &["echo/"]).await;
    let (_, cached) = gw.create_key(&project, json!({})).await;
    let (_, fresh) = gw.create_key(&project, json!({})).await;
    assert_eq!(gw.chat_as(&cached, "echo/hello").await, 200);
    pg.stop();
    // Act + Assert: traffic goes on for the cached key; an unknown one cannot be judged.
    for _ in 0..5 {
        assert_eq!(gw.chat_as(&cached, "echo/hello").await, 200);
    }
    assert_eq!(gw.chat_as(&fresh, "echo/hello").await, 503);
    assert_eq!(gw.chat_as("sk-sy-not-a-key", "echo/hello").await, 503);
    // The database comes back: the gateway, never restarted, serves everything again.
    pg.resume();
    let back = Instant::now();
    while gw.chat_as(&fresh, "echo/hello").await != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the gateway did not recover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.chat_as(&cached, "echo/hello").await, 200);
    assert_eq!(gw.chat_as("sk-sy-not-a-key", "echo/hello").await, 401);
}

#[tokio::test]
async fn the_admin_api_refuses_bad_tokens_oversized_bodies_and_invalid_fields() {
    let dir = tempfile::tempdir().unwrap();
    let gw = spawn_gateway(&auth_routes(
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        "http://127.0.0.1:9/v1",
    ))
    .await;
    let url = format!("{}/admin/v1/projects", gw.base);
    // No token, a wrong token, and a gateway key are all 401.
    for token in [None, Some("wrong-token-wrong-token"), Some("sk-sy-AAAA")] {
        let mut request = gw.client.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    // A body over 64 KiB is refused before it is parsed.
    let huge = json!({"name": "x".repeat(70_000), "models": []});
    let (status, _) = gw.admin(Method::POST, "/projects", Some(huge)).await;
    assert_eq!(status, 413);
    // Fields are checked, with `param` naming the one at fault.
    let (status, body) = gw
        .admin(
            Method::POST,
            "/projects",
            Some(json!({"name": "", "models": []})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("name"))
    );
    let (status, _) = gw
        .admin(
            Method::POST,
            "/projects",
            Some(json!({"name": "a", "models": [], "owner": "x"})),
        )
        .await;
    assert_eq!(status, 400);
    let project = gw.create_project("team-a", &["echo/"]).await;
    let (status, _) = gw
        .admin(
            Method::POST,
            "/projects",
            Some(json!({"name": "team-a", "models": []})),
        )
        .await;
    assert_eq!(status, 409);
    let keys = format!("/projects/{project}/keys");
    for (spec, param) in [
        (json!({"models": ["up/"]}), "models"),
        (json!({"expires_in": "soon"}), "expires_in"),
        (json!({"expires_in": "0s"}), "expires_in"),
        (json!({"max_requests": 0}), "max_requests"),
    ] {
        let (status, body) = gw.admin(Method::POST, &keys, Some(spec)).await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    let (status, _) = gw
        .admin(Method::POST, "/projects/nope/keys", Some(json!({})))
        .await;
    assert_eq!(status, 404);
    let (status, body) = gw
        .admin(
            Method::PUT,
            &format!("/projects/{project}/credentials/up"),
            Some(json!({"api_key": "has space"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("api_key"))
    );
}

#[tokio::test]
async fn without_auth_the_gateway_is_as_before_and_opens_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    let routes =
        "[[routes]]\nprefix = \"echo/\"\nbackend = \"echo\"\n[backends.echo]\nkind = \"echo\"\n";
    let gw = spawn_gateway_in(routes, Arc::new(SystemClock), dir).await;
    // Any Authorization, or none, is served as before.
    assert_eq!(gw.chat_as("anything", "echo/hello").await, 200);
    assert_eq!(
        gw.post_json(
            "/v1/chat/completions",
            &json!({"model": "echo/x", "messages": [{"role": "user", "content": "a"}]})
        )
        .await
        .status(),
        200
    );
    // The admin API does not exist, and no database file appeared beside routes.toml.
    let (status, body) = gw.admin(Method::GET, "/projects", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_url"))
    );
    let files: Vec<_> = std::fs::read_dir(&dir_path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("routes.toml")]);
}

/// Every inference endpoint (chat, embeddings, Responses, legacy completions, pass-through) and
/// the route table view take the key's rules, not only chat: no endpoint is a way around them.
#[tokio::test]
async fn every_endpoint_refuses_a_missing_key_and_a_model_outside_the_scope() {
    let dir = tempfile::tempdir().unwrap();
    let gw = spawn_gateway(&auth_routes(
        &format!("sqlite://{}", dir.path().join("a.db").display()),
        "http://127.0.0.1:9/v1",
    ))
    .await;
    let project = gw.create_project("team", &["echo/", "up/"]).await;
    let (_, key) = gw.create_key(&project, json!({"models": ["echo/"]})).await;
    let requests = [
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        ),
        ("/v1/embeddings", json!({"input": "hi"})),
        ("/v1/responses", json!({"input": "hi"})),
        ("/v1/completions", json!({"prompt": "hi"})),
        ("/v1/audio/speech", json!({"input": "hi"})),
    ];
    for (path, body) in requests {
        let with_model = |model: &str| {
            let mut body = body.clone();
            body["model"] = json!(model);
            body
        };
        let send = |token: Option<&str>, body: serde_json::Value| {
            let mut request = gw.client.post(format!("{}{path}", gw.base)).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        let anonymous = send(None, with_model("echo/hello")).await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path} without a key");
        let outside = send(Some(&key), with_model("up/gpt-4o")).await.unwrap();
        assert_eq!(outside.status(), 403, "{path} outside the key's scope");
    }
    // Inside the scope, the newer endpoints answer as chat does.
    for (path, body) in [
        (
            "/v1/responses",
            json!({"model": "echo/hello", "input": "hi"}),
        ),
        (
            "/v1/completions",
            json!({"model": "echo/hello", "prompt": "hi"}),
        ),
    ] {
        let response = gw
            .client
            .post(format!("{}{path}", gw.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // The route table is for operators: a gateway key does not open it, the admin token does.
    let routes = format!("{}/admin/v1/routes", gw.base);
    let as_key = gw
        .client
        .get(&routes)
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(as_key.status(), 401);
    let as_admin = gw
        .client
        .get(&routes)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), 200);
}
