//! `switchyard check`, run as the real binary.

use std::process::Command;

fn check(contents: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, contents).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(&file)
        .env_remove("SWITCHYARD_CONFIG")
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "routes.toml");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

#[test]
fn a_broken_file_is_refused_with_the_line_and_column_of_each_fault() {
    let (ok, _, stderr) = check(
        "[backends.a]\nkind = \"openai\"\nbase_url = \"not a url\"\n\n[[routes]]\nprefix = \"a/\"\nbackend = \"missing\"\n",
    );
    assert!(!ok, "check must exit non-zero");
    assert!(
        stderr.contains("routes.toml:3:12: `base_url` is not a valid URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes.toml:7:11: unknown backend `missing`"),
        "{stderr}"
    );
}

#[test]
fn unknown_keys_and_missing_variables_are_located() {
    let (ok, _, stderr) = check(
        "[backends.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\napi_key = \"${SWITCHYARD_TEST_SURELY_UNSET}\"\ntimeout = \"1s\"\n",
    );
    assert!(!ok);
    assert!(
        // `timeout` is a key of kind `redis`: on an `openai` backend it is refused by name.
        stderr.contains("routes.toml:5:11: `timeout` does not apply to kind `openai`"),
        "{stderr}"
    );
    let (ok, _, stderr) = check(
        "[backends.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\napi_key = \"${SWITCHYARD_TEST_SURELY_UNSET}\"\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains(
            "routes.toml:4:11: environment variable `SWITCHYARD_TEST_SURELY_UNSET` is not set"
        ),
        "{stderr}"
    );
}

#[test]
fn a_good_file_prints_the_route_table_without_secrets() {
    let (ok, stdout, _) = check(
        "[backends.oa]\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\napi_key = \"sk-literal-secret\"\n[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"openai/\"\nbackend = \"oa\"\nmodels = [\"gpt-4o\"]\n[[routes]]\nprefix = \"\"\nbackend = \"e\"\n",
    );
    assert!(ok);
    assert!(
        stdout.contains("openai/") && stdout.contains("gpt-4o") && stdout.contains("catch-all"),
        "{stdout}"
    );
    assert!(stdout.contains("api_key=<set>"), "{stdout}");
    assert!(!stdout.contains("sk-literal-secret"), "{stdout}");
}

#[test]
fn a_password_in_a_base_url_is_not_printed() {
    let (ok, stdout, _) = check(
        "[backends.p]\nkind = \"proxy\"\nbase_url = \"https://user:hunter2@proxy.internal/v1\"\n[[routes]]\nprefix = \"\"\nbackend = \"p\"\n",
    );
    assert!(ok);
    assert!(
        stdout.contains("user:%3Credacted%3E@proxy.internal")
            || stdout.contains("user:<redacted>@proxy.internal"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[test]
fn the_shipped_routes_toml_is_valid() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml")).unwrap();
    let (ok, stdout, stderr) = check(&shipped);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("echo/"), "{stdout}");
}

/// `switchyard serve` on `file`: its exit status and stderr (bounded: killed after 20 s).
fn serve_refusal(file: &std::path::Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..800 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    child.kill().unwrap();
    let _ = child.wait();
    panic!("serve started with a file it must refuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_serve_and_reload_refuse_an_api_key_with_a_newline_at_the_same_position() {
    // Arrange: a key that cannot be a header value (a CR/LF would split the request).
    let bad = "[backends.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key = \"sk-1\\r\\nX-Injected: yes\"\n[[routes]]\nprefix = \"a/\"\nbackend = \"a\"\n";
    let expected = "routes.toml:4:11: `api_key` contains characters not allowed in an HTTP header";

    // Act + Assert: `check` refuses it, at its position, without quoting it...
    let (ok, _, stderr) = check(bad);
    assert!(!ok, "check must exit non-zero");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("X-Injected"), "{stderr}");

    // ...so does `serve`...
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, bad).unwrap();
    let (started, stderr) = serve_refusal(&file);
    assert!(!started);
    assert!(stderr.contains(expected), "{stderr}");

    // ...and so does a reload, at the same position (not "line 0").
    let gw = crate::support::spawn_gateway(
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"a/\"\nbackend = \"e\"\n",
    )
    .await;
    let text = bad.replacen("[backends.a]", "[server]\nworkers = 1\n[backends.a]", 1);
    std::fs::write(&gw.routes_path, &text).unwrap();
    let mut last_error = serde_json::Value::Null;
    for _ in 0..400 {
        let health: serde_json::Value = gw.get("/health").await.json().await.unwrap();
        last_error = health["config"]["last_error"].clone();
        if !last_error.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let first = last_error["errors"][0].as_str().unwrap_or_default();
    assert!(
        first.ends_with(
            "routes.toml:6:11: `api_key` contains characters not allowed in an HTTP header \
             (a newline or another control character)"
        ),
        "{last_error}"
    );
    assert!(
        !last_error.to_string().contains("X-Injected"),
        "{last_error}"
    );
}

#[test]
fn check_prints_no_default_of_a_secret_reference_nor_a_password_written_in_a_redis_url() {
    let (ok, stdout, stderr) = check(
        "[backends.oa]\nkind = \"openai\"\nbase_url = \"https://api.openai.com/v1\"\n\
         api_key = \"${SWITCHYARD_TEST_UNSET_KEY:-sk-default-secret}\"\n\
         [backends.q1]\nkind = \"redis\"\n\
         redis_url = \"${SWITCHYARD_TEST_UNSET_REDIS:-redis://:hunter2@127.0.0.1:6379}\"\n\
         [backends.q2]\nkind = \"redis\"\n\
         redis_url = \"redis://:hunter3@${SWITCHYARD_TEST_UNSET_HOST:-127.0.0.1}:6379\"\n\
         [[routes]]\nprefix = \"\"\nbackend = \"oa\"\n",
    );
    assert!(ok, "{stderr}");
    for secret in ["sk-default-secret", "hunter2", "hunter3"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    assert!(
        stdout.contains("api_key=${SWITCHYARD_TEST_UNSET_KEY:-<redacted>}"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_base_url_is_reported_without_its_password_by_check_and_health() {
    // Arrange: a base URL with a password that fails validation (not http/https).
    let bad = "[backends.a]\nkind = \"openai\"\nbase_url = \"ftp://user:hunter2@files.internal/v1\"\n[[routes]]\nprefix = \"a/\"\nbackend = \"a\"\n";

    // Act + Assert: `check` names the fault, without the password...
    let (ok, _, stderr) = check(bad);
    assert!(!ok);
    assert!(
        stderr.contains("`base_url` must be an http:// or https:// URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // ...and so does the unauthenticated /health after a refused reload.
    let gw = crate::support::spawn_gateway(
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"a/\"\nbackend = \"e\"\n",
    )
    .await;
    std::fs::write(&gw.routes_path, bad).unwrap();
    let mut last_error = serde_json::Value::Null;
    for _ in 0..400 {
        let health: serde_json::Value = gw.get("/health").await.json().await.unwrap();
        last_error = health["config"]["last_error"].clone();
        if !last_error.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let text = last_error.to_string();
    assert!(
        text.contains("`base_url` must be an http:// or https:// URL"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_route_with_weighted_backends_and_fallbacks_is_shown_as_such() {
    let (ok, stdout, _) = check(
        "[backends.a]\nkind = \"echo\"\n[backends.b]\nkind = \"echo\"\n[backends.c]\nkind = \"echo\"\n[[routes]]\nprefix = \"m/\"\nbackends = [{ name = \"a\", weight = 3 }, { name = \"b\" }]\nfallback = [\"c\"]\n",
    );
    assert!(ok);
    assert!(
        stdout.contains("m/ ") && stdout.contains("-> a*3, b*1 then c"),
        "{stdout}"
    );
}

#[test]
fn auth_and_store_are_validated_and_shown_without_their_secrets() {
    let master = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let good = format!(
        "[store]\nurl = \"postgres://gw:pg-secret-pw@127.0.0.1:5432/gw\"\n[auth]\n\
         master_key = \"{master}\"\nadmin_token = \"admin-token-0123456789\"\n\
         [backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"e/\"\nbackend = \"e\"\n"
    );
    let (ok, stdout, stderr) = check(&good);
    assert!(ok, "{stderr}");
    // The password is replaced (percent-encoded by the URL writer, as for `base_url`).
    assert!(
        stdout.contains("auth: on (store postgres://gw:%3Credacted%3E@127.0.0.1:5432/gw"),
        "{stdout}"
    );
    for secret in [master, "pg-secret-pw", "admin-token-0123456789"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}{stderr}"
        );
    }
    // A short master key, a short admin token and an unknown scheme, each named at its place.
    let bad = "[store]\nurl = \"mysql://x\"\n[auth]\nmaster_key = \"c2hvcnQ=\"\nadmin_token = \"short\"\n\
               [backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"e/\"\nbackend = \"e\"\n";
    let (ok, _, stderr) = check(bad);
    assert!(!ok);
    assert!(
        stderr.contains("routes.toml:2:7: `url` must be a sqlite:// or postgres:// URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes.toml:4:14: `master_key` must be 32 bytes in base64"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes.toml:5:15: `admin_token` must be at least 16 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("c2hvcnQ="), "{stderr}");
}
