//! `switchyard admin` as the real binary, on the store directly: projects, credentials (from
//! stdin), keys, and a master-key rotation after which a gateway holding only the new key still
//! sends the project's credential upstream.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::auth::ADMIN_TOKEN;
use crate::support::spawn_gateway_in;

const OLD_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const NEW_KEY: &str = "CAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAg=";
const CREDENTIAL: &str = "sk-cli-stored-credential";

fn routes(upstream: &str, master: &str, previous: &[&str]) -> String {
    let previous: Vec<String> = previous.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[store]\nurl = \"sqlite://keys.db\"\n[auth]\nmaster_key = \"{master}\"\n\
         previous_master_keys = [{}]\nadmin_token = \"{ADMIN_TOKEN}\"\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{upstream}/v1\"\n\
         [[routes]]\nprefix = \"up/\"\nbackend = \"up\"\n",
        previous.join(", ")
    )
}

fn admin(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("admin")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_cli_manages_keys_and_rotates_the_master_key_without_a_running_gateway() {
    // Arrange: an upstream that answers only for the stored credential.
    let upstream = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", format!("Bearer {CREDENTIAL}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]
        })))
        .mount(&upstream)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.toml");
    std::fs::write(&config, routes(&upstream.uri(), OLD_KEY, &[])).unwrap();

    // Act: a project, its credential (from stdin, never an argument), a key.
    let project = ok_json(&admin(
        &config,
        &["create-project", "--name", "team-a", "--model", "up/"],
        None,
    ));
    let id = project["id"].as_str().unwrap();
    ok_json(&admin(
        &config,
        &["set-credential", id, "up"],
        Some(&format!("{CREDENTIAL}\n")),
    ));
    let key = ok_json(&admin(&config, &["create-key", id, "--name", "svc"], None));
    let secret = key["key"].as_str().unwrap().to_owned();
    let listed = admin(&config, &["list-keys", id], None);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&secret));
    assert_eq!(ok_json(&listed)[0]["prefix"], key["prefix"]);
    // The SQLite file landed beside routes.toml, holding neither secret.
    let db = std::fs::read(dir.path().join("keys.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(!db.contains(CREDENTIAL) && !db.contains(&secret));

    // Rotate: the new key in force, the old one only to open what it sealed.
    std::fs::write(&config, routes(&upstream.uri(), NEW_KEY, &[OLD_KEY])).unwrap();
    assert_eq!(
        ok_json(&admin(&config, &["rotate-master-key"], None))["resealed"],
        1
    );
    assert_eq!(
        ok_json(&admin(&config, &["rotate-master-key"], None))["resealed"],
        0
    );

    // Assert: a gateway that knows only the new key sends the credential upstream.
    std::fs::write(&config, routes(&upstream.uri(), NEW_KEY, &[])).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let gw = spawn_gateway_in(
        &text,
        std::sync::Arc::new(switchyard::auth::clock::SystemClock),
        dir,
    )
    .await;
    assert_eq!(gw.chat_as(&secret, "up/gpt-4o").await, 200);
    assert_eq!(upstream.received_requests().await.unwrap().len(), 1);

    // Revoking through the CLI is seen by the running gateway.
    let key_id = key["id"].as_str().unwrap();
    ok_json(&admin(&gw.routes_path, &["revoke-key", key_id], None));
    let revoked = std::time::Instant::now();
    while gw.chat_as(&secret, "up/gpt-4o").await != 401 {
        assert!(revoked.elapsed() < std::time::Duration::from_secs(5));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn without_auth_the_cli_says_there_is_nothing_to_manage() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routes.toml");
    std::fs::write(
        &config,
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"e/\"\nbackend = \"e\"\n",
    )
    .unwrap();
    let out = admin(&config, &["list-projects"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [auth] table"));
    assert!(!dir.path().join("switchyard.db").exists());
}
