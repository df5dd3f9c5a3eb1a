//! The official `openai` Python SDK, unmodified but for base_url, against a live gateway.

use crate::support::python::run_pytest;
use crate::support::{openai_routes, spawn_gateway};

#[tokio::test]
async fn the_openai_python_sdk_works_unmodified() {
    // `up/` points back at the gateway itself: `up/echo/…` crosses the openai backend's real
    // HTTP and SSE relay, then the echo backend answers.
    let gw = spawn_gateway(&openai_routes("{gateway}/v1", "")).await;
    run_pytest(
        "test_sdk.py",
        &[("SWITCHYARD_BASE_URL", format!("{}/v1", gw.base))],
    )
    .await;
}
