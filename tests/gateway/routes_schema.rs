//! routes.toml for editors and operators: the committed JSON Schema is what `switchyard schema`
//! prints, an independent validator and Taplo agree with `check`, `switchyard init` writes files
//! that `check` accepts, and `GET /admin/v1/routes` shows the table in force without a secret.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::python::run_pytest;
use crate::support::spawn_gateway;

const REGENERATE: &str = "cargo run --quiet -- schema > openapi/routes.schema.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn switchyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn the_committed_schema_is_what_switchyard_schema_prints() {
    let out = switchyard(&["schema"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(root().join("openapi/routes.schema.json"))
        .unwrap_or_else(|e| panic!("openapi/routes.schema.json unreadable ({e}): `{REGENERATE}`"));
    assert!(
        committed == String::from_utf8(out.stdout).unwrap(),
        "openapi/routes.schema.json differs from `switchyard schema`: the config types changed; \
         regenerate it with `{REGENERATE}` and commit it"
    );
}

#[test]
fn the_shipped_routes_toml_points_editors_at_the_committed_schema() {
    let shipped = std::fs::read_to_string(root().join("routes.toml")).unwrap();
    assert_eq!(
        shipped.lines().next(),
        Some("#:schema ./openapi/routes.schema.json")
    );
}

#[tokio::test]
async fn an_independent_validator_agrees_with_check_on_shape() {
    run_pytest(
        "test_routes_schema.py",
        &[
            ("SWITCHYARD_ROOT", root().display().to_string()),
            (
                "SWITCHYARD_SCHEMA",
                root()
                    .join("openapi/routes.schema.json")
                    .display()
                    .to_string(),
            ),
            (
                "SWITCHYARD_BIN",
                env!("CARGO_BIN_EXE_switchyard").to_owned(),
            ),
        ],
    )
    .await;
}

/// Taplo's CLI, installed by scripts/test.sh from npm (`@taplo/cli`) under `.tools/`.
fn taplo() -> PathBuf {
    let path = std::env::var_os("SWITCHYARD_TAPLO")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/node_modules/.bin/taplo"));
    assert!(
        path.exists(),
        "taplo missing at {} (CI={}): run `bash scripts/test.sh`, which installs @taplo/cli from \
         npm, or set SWITCHYARD_TAPLO",
        path.display(),
        std::env::var("CI").unwrap_or_default()
    );
    path
}

/// `taplo lint` on `file`, which names its schema with a `#:schema` line as editors read it.
fn taplo_lint(file: &Path) -> Output {
    Command::new(taplo())
        .arg("lint")
        .arg(file)
        .current_dir(file.parent().unwrap())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn taplo_lints_the_shipped_file_by_its_schema_line_and_underlines_a_wrong_kind() {
    let out = taplo_lint(&root().join("routes.toml"));
    assert!(
        out.status.success(),
        "taplo refused routes.toml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same directive in a copy with a wrong kind and an unknown key: both are reported.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("routes.toml");
    let text = std::fs::read_to_string(root().join("routes.toml"))
        .unwrap()
        .replacen(
            "#:schema ./openapi/routes.schema.json",
            &format!(
                "#:schema {}",
                root().join("openapi/routes.schema.json").display()
            ),
            1,
        )
        .replacen("kind = \"echo\"", "kind = \"ecko\"\nretries = 3", 1);
    std::fs::write(&broken, text).unwrap();
    let out = taplo_lint(&broken);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "taplo accepted a wrong kind");
    assert!(
        report.contains("ecko") && report.contains("retries"),
        "{report}"
    );
}

#[test]
fn init_writes_a_file_check_accepts_for_every_kind_and_taplo_reads_its_schema() {
    for kinds in [
        &["echo"][..],
        &["openai"],
        &["ollama"],
        &["redis"],
        &["proxy"],
        &["openai", "ollama", "redis", "echo", "proxy"],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.toml");
        let mut args = vec!["init", "--output", file.to_str().unwrap()];
        for kind in kinds {
            args.extend(["--backend", kind]);
        }
        let out = switchyard(&args);
        assert!(out.status.success(), "init {kinds:?}: {out:?}");
        let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("check")
            .arg(&file)
            // The starter files refer to these; unset they must still load (or have defaults).
            .env("OPENAI_API_KEY", "sk-test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "check refused init {kinds:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lint = taplo_lint(&file);
        assert!(
            lint.status.success(),
            "taplo refused init {kinds:?}: {}",
            String::from_utf8_lossy(&lint.stderr)
        );
    }
}

#[test]
fn init_never_replaces_a_file_unless_forced_and_refuses_an_unknown_kind() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, "# mine\n").unwrap();
    let out = switchyard(&["init", "--output", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
    let out = switchyard(&["init", "--force", "--output", file.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("[backends.echo]")
    );
    let out = switchyard(&["init", "--backend", "vllm", "--output", "-"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend kind `vllm`"));
}

const ROUTES: &str = r#"
[backends.up]
kind = "openai"
base_url = "http://user:pa55word-in-url@127.0.0.1:9/v1"
api_key = "sk-never-shown-1234"
headers = { "x-secret-header" = "header-value-never-shown" }

[backends.echo]
kind = "echo"

[[routes]]
prefix = "up/"
backend = "up"
models = ["gpt-4o"]

[[routes]]
prefix = "up/raw/"
backend = "up"
strip_prefix = false

[[routes]]
prefix = "echo/"
backend = "echo"
"#;

#[tokio::test]
async fn the_route_table_in_force_is_shown_without_a_secret() {
    let gw = spawn_gateway(ROUTES).await;
    let response = gw.get("/admin/v1/routes").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for secret in [
        "pa55word-in-url",
        "sk-never-shown-1234",
        "header-value-never-shown",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let table: Value = serde_json::from_str(&text).unwrap();
    let prefixes: Vec<&str> = table["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect();
    assert_eq!(prefixes[0], "up/raw/", "longest prefix first: {prefixes:?}");
    assert_eq!(table["backends"][1]["name"], "up");
    assert_eq!(table["backends"][1]["kind"], "openai");
    assert_eq!(
        table["backends"][1]["target"],
        "http://user:%3Credacted%3E@127.0.0.1:9/v1"
    );
    let health: Value = gw.get("/health").await.json().await.unwrap();
    assert_eq!(table["sha256"], health["config"]["sha256"]);
}

#[tokio::test]
async fn a_model_is_answered_with_the_route_backend_and_upstream_name_serving_would_use() {
    let gw = spawn_gateway(ROUTES).await;
    let answer: Value = gw
        .get("/admin/v1/routes?model=up/gpt-4o")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["prefix"], "up/");
    assert_eq!(answer["backend"], "up");
    assert_eq!(answer["kind"], "openai");
    assert_eq!(answer["upstream_model"], "gpt-4o");
    let answer: Value = gw
        .get("/admin/v1/routes?model=up/raw/m%201")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["prefix"], "up/raw/");
    assert_eq!(answer["upstream_model"], "up/raw/m 1");
    // No route: the same 404 a request for that model gets.
    let response = gw.get("/admin/v1/routes?model=nowhere/x").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    let served = gw
        .post_json(
            "/v1/chat/completions",
            &serde_json::json!({"model": "nowhere/x", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(served.status(), 404);
}

#[test]
fn check_resolve_answers_as_serving_would_and_fails_for_a_model_without_route() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, ROUTES).unwrap();
    let path = file.to_str().unwrap();
    let out = switchyard(&[
        "check",
        path,
        "--resolve",
        "up/raw/x",
        "--resolve",
        "up/gpt-4o",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout
            .contains("up/raw/x -> route \"up/raw/\" -> backend up (openai) as model \"up/raw/x\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("up/gpt-4o -> route \"up/\" -> backend up (openai) as model \"gpt-4o\""),
        "{stdout}"
    );
    let out = switchyard(&["check", path, "--resolve", "nowhere/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nowhere/x -> no route"));
}
