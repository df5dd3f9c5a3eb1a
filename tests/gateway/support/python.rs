//! Runs a Python test file from tests/python in the project's venv against a live gateway.
//!
//! The venv (`.venv`, made by scripts/test.sh) holds the real `openai` package. A missing venv
//! is a failure with instructions, never a skip: a test that cannot run must not pass.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The venv's python.
pub fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("SWITCHYARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "Python venv missing at {} (CI={}): run `bash scripts/test.sh`, which creates it with the \
         real `openai` package, or set SWITCHYARD_PYTHON",
        python.display(),
        std::env::var("CI").unwrap_or_default()
    );
    python
}

/// Runs `pytest tests/python/<file>` with `env`, asserting that every test passed.
pub async fn run_pytest(file: &str, env: &[(&str, String)]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(python());
    cmd.current_dir(&root).args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        &format!("tests/python/{file}"),
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Bounded: a client that waits forever (openai-rq reads with BLOCK 0) fails the test
    // instead of hanging the suite; kill_on_drop ends pytest when the timeout drops it.
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("pytest {file} still running after 600 s"))
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pytest {file} failed:\n{stdout}\n{stderr}"
    );
    // pytest exits 5 when it collected nothing; success must mean tests ran and passed, and
    // none was skipped.
    assert!(
        stdout.contains("passed") && !stdout.contains("skipped"),
        "pytest {file} ran no tests or skipped some:\n{stdout}"
    );
}
