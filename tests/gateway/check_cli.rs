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
