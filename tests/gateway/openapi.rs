//! The OpenAPI document and the docs page: the committed file is what the binary generates,
//! the gateway serves it with its own models as examples, the page and its assets come from the
//! binary with the right headers, an independent validator accepts the document, Schemathesis
//! finds nothing against the echo backend, and headless Chromium renders the page offline.
//!
//! The Python tools (openapi-spec-validator, Schemathesis, Playwright driving Debian's
//! chromium) run from here, against a gateway this test starts on a free loopback port and
//! stops when it ends: one place owns the gateway's life, no PID files, and a missing tool is a
//! failure with instructions, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::auth::{ADMIN_TOKEN, auth_routes};
use crate::support::python::{python, run_pytest};
use crate::support::spawn_gateway;

/// The one command that rewrites the committed document.
const REGENERATE: &str = "cargo run --quiet -- openapi > openapi/openapi.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn committed() -> String {
    std::fs::read_to_string(root().join("openapi/openapi.json")).unwrap_or_else(|e| {
        panic!("openapi/openapi.json unreadable ({e}); create it with `{REGENERATE}`")
    })
}

/// Echo under `echo/`, and a second route whose model is listed first, so the examples of the
/// served document visibly come from this table.
const ROUTES: &str = r#"
# `/metrics` is documented, so it is served here too.
[metrics]

[backends.echo]
kind = "echo"

[[routes]]
prefix = "local/"
backend = "echo"
models = ["qwen3-8b"]

[[routes]]
prefix = "echo/"
backend = "echo"
models = ["hello"]
"#;

#[test]
fn the_committed_document_is_what_switchyard_openapi_prints() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = committed();
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(g, c)| g != c)
            .map_or_else(|| "their lengths".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "openapi/openapi.json differs from `switchyard openapi` (first at {line}): the API \
             changed. Regenerate it with `{REGENERATE}` and commit it."
        );
    }
    let spec: Value = serde_json::from_str(&generated).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[tokio::test]
async fn openapi_json_is_the_committed_document_with_the_route_tables_models_as_examples() {
    // Arrange
    let gw = spawn_gateway(ROUTES).await;

    // Act
    let response = gw.get("/openapi.json").await;

    // Assert
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let etag = response.headers()["etag"].clone();
    let mut served: Value = response.json().await.unwrap();
    let listed: Vec<String> = gw.get("/v1/models").await.json::<Value>().await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["local/qwen3-8b", "echo/hello"]);
    let committed: Value = serde_json::from_str(&committed()).unwrap();
    let request = "/components/schemas/ChatCompletionRequest/properties/model";
    assert_eq!(
        served.pointer(&format!("{request}/examples")).unwrap(),
        &Value::from(listed.clone())
    );
    assert!(
        served
            .pointer(&format!("{request}/description"))
            .unwrap()
            .as_str()
            .unwrap()
            .ends_with("Prefixes this gateway routes: `local/`, `echo/`.")
    );
    let example = "/paths/~1v1~1chat~1completions/post/requestBody/content/application~1json/examples/plain/value/model";
    assert_eq!(served.pointer(example).unwrap(), "local/qwen3-8b");
    // Put back what the route table changed: the rest is the committed document, unchanged.
    for pointer in [
        request.to_owned(),
        "/components/schemas/EmbeddingRequest/properties/model".to_owned(),
        "/components/schemas/ResponsesRequest/properties/model".to_owned(),
        "/components/schemas/CompletionRequest/properties/model".to_owned(),
        "/paths/~1v1~1models~1{model}/get/parameters/0/schema".to_owned(),
    ] {
        let field = served
            .pointer_mut(&pointer)
            .unwrap()
            .as_object_mut()
            .unwrap();
        field.remove("examples").unwrap();
        let original = committed
            .pointer(&format!("{pointer}/description"))
            .cloned();
        match original {
            Some(description) => field.insert("description".into(), description),
            None => field.remove("description"),
        };
    }
    let responses = "/paths/~1v1~1responses/post/requestBody/content/application~1json/examples";
    let completions =
        "/paths/~1v1~1completions/post/requestBody/content/application~1json/examples";
    for pointer in [
        example.to_owned(),
        example.replace("/plain/", "/stream/"),
        "/paths/~1v1~1embeddings/post/requestBody/content/application~1json/example/model"
            .to_owned(),
        format!("{responses}/plain/value/model"),
        format!("{responses}/tool_round_trip/value/model"),
        format!("{responses}/stream/value/model"),
        format!("{completions}/plain/value/model"),
        format!("{completions}/stream/value/model"),
    ] {
        *served.pointer_mut(&pointer).unwrap() = committed.pointer(&pointer).unwrap().clone();
    }
    assert!(
        served == committed,
        "/openapi.json differs from openapi/openapi.json beyond the model examples"
    );

    // A client holding this version is told so.
    let again = gw
        .client
        .get(format!("{}/openapi.json", gw.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
}

#[tokio::test]
async fn the_docs_page_and_everything_it_links_come_from_the_binary_with_cache_headers() {
    // Arrange
    let gw = spawn_gateway(ROUTES).await;

    // Act
    let page = gw.get("/docs").await;

    // Assert: the page revalidates (a new binary shows at once) and allows no other origin.
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let etag = page.headers()["etag"].clone();
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http:") && !html.contains("https:") && !html.contains("//"),
        "{html}"
    );

    // Every script, style and icon it links is served, versioned files as immutable.
    let links: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.starts_with("docs/"))
        .collect();
    assert!(links.len() >= 4, "{links:?}");
    for link in links {
        let asset = gw.get(&format!("/{link}")).await;
        assert_eq!(asset.status(), 200, "{link}");
        let content_type = asset.headers()["content-type"].to_str().unwrap().to_owned();
        let expected = match Path::new(link).extension().and_then(|e| e.to_str()) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("png") => "image/png",
            other => panic!("unexpected asset {link} ({other:?})"),
        };
        assert_eq!(content_type, expected, "{link}");
        let cache = asset.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_owned();
        if link.starts_with("docs/swagger-ui-") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{link}");
        } else {
            assert_eq!(cache, "no-cache", "{link}");
        }
        assert!(!asset.bytes().await.unwrap().is_empty(), "{link}");
    }

    // Revalidation, the trailing-slash redirect, and an unknown file.
    let again = gw
        .client
        .get(format!("{}/docs", gw.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/docs/", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "../docs");
    let missing = gw.get("/docs/swagger-ui-0.0.0/swagger-ui-bundle.js").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
}

#[tokio::test]
async fn openapi_spec_validator_accepts_the_committed_and_the_served_document() {
    let gw = spawn_gateway(ROUTES).await;
    run_pytest("test_openapi.py", &[("SWITCHYARD_BASE", gw.base.clone())]).await;
}

/// Examples per operation and phase; with the fixed seed the run is the same every time.
const SCHEMATHESIS_MAX_EXAMPLES: &str = "100";
const SCHEMATHESIS_SEED: &str = "20260101";

/// Runs Schemathesis against the live gateway at `base` with `extra` arguments; asserts it found
/// nothing and tested at least `min_operations` operations.
async fn run_schemathesis(base: &str, extra: &[&str], min_operations: u32) {
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| SCHEMATHESIS_SEED.into());
    let mut cmd = Command::new(python());
    cmd.current_dir(root()).args([
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        "tests/python/schemathesis.toml",
        "run",
        &format!("{base}/openapi.json"),
        "--max-examples",
        SCHEMATHESIS_MAX_EXAMPLES,
        "--seed",
        &seed,
        "--workers",
        "1",
        "--continue-on-failure",
    ]);
    cmd.args(extra);

    // Act: every phase, every check (see tests/python/schemathesis.toml for the one exception).
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run python -m schemathesis.cli (is the venv from scripts/test.sh there?)");

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Schemathesis found problems (seed {seed}):\n{stdout}\n{stderr}"
    );
    // It must have run every operation, not passed by testing nothing.
    assert!(stdout.contains("No issues found"), "{stdout}\n{stderr}");
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested:"))
        .map(str::trim)
        .unwrap_or_default();
    assert!(
        tested.parse::<u32>().unwrap_or(0) >= min_operations,
        "operations tested: {tested:?}\n{stdout}"
    );
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_response_that_breaks_the_document() {
    // Arrange: only the echo backend, so every documented operation can answer for real. The
    // admin API needs `[auth]`; it has its own run below. `[batches]` opens a store, so the
    // gateway's own Files and Batches API answers for real.
    let gw = spawn_gateway(&format!("{ROUTES}\n[batches]\n")).await;
    run_schemathesis(&gw.base, &["--exclude-path-regex", "^/admin/"], 6).await;
}

#[tokio::test]
async fn schemathesis_finds_nothing_wrong_with_the_admin_api() {
    // Arrange: keys on, a SQLite store, the admin token on every request.
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("admin.db").display());
    let gw = spawn_gateway(&auth_routes(&store, "http://127.0.0.1:9/v1")).await;
    let token = format!("Authorization: Bearer {ADMIN_TOKEN}");
    run_schemathesis(
        &gw.base,
        &["--include-path-regex", "^/admin/", "--header", &token],
        10,
    )
    .await;
}

#[tokio::test]
async fn the_docs_page_renders_offline_in_headless_chromium_and_try_it_out_works() {
    let chromium =
        std::env::var("SWITCHYARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing (CI={}): install Debian's chromium (`apt-get install chromium`; \
         scripts/test.sh does it) or set SWITCHYARD_CHROMIUM",
        std::env::var("CI").unwrap_or_default()
    );
    let gw = spawn_gateway(ROUTES).await;
    let shots = root().join("target");
    for shot in ["docs-screenshot.png", "docs-try-it-out.png"] {
        let _ = std::fs::remove_file(shots.join(shot));
    }
    run_pytest(
        "test_docs_page.py",
        &[
            ("SWITCHYARD_BASE", gw.base.clone()),
            ("SWITCHYARD_CHROMIUM", chromium),
            ("SWITCHYARD_SCREENSHOT_DIR", shots.display().to_string()),
        ],
    )
    .await;
    for shot in ["docs-screenshot.png", "docs-try-it-out.png"] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot} is not a PNG");
    }
}
