//! Gateway keys in tests: a routes.toml with `[store]` and `[auth]`, and the admin API calls
//! the tests make.

use serde_json::{Value, json};

use super::TestGateway;

/// The admin token of every test gateway with `[auth]`.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// 32 bytes of 7, base64: the test master key.
pub const MASTER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
/// The `up` backend's own `api_key`, which a project credential must override.
pub const BACKEND_KEY: &str = "sk-backend-own-key-0000";

/// A routes.toml with the store at `store_url`, keys on, `echo/` and `up/` (an openai backend at
/// `upstream` whose own key is `BACKEND_KEY`).
pub fn auth_routes(store_url: &str, upstream: &str) -> String {
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
base_url = "{upstream}"
api_key = "{BACKEND_KEY}"

[[routes]]
prefix = "echo/"
backend = "echo"
models = ["hello"]

[[routes]]
prefix = "up/"
backend = "up"
models = ["gpt-4o"]
"#
    )
}

impl TestGateway {
    /// An admin API call; returns the status and the JSON body (Null when empty).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/admin/v1{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("gateway reachable");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates a project; returns its id.
    pub async fn create_project(&self, name: &str, models: &[&str]) -> String {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                "/projects",
                Some(json!({"name": name, "models": models})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Mints a key; returns (id, key).
    pub async fn create_key(&self, project: &str, spec: Value) -> (String, String) {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/projects/{project}/keys"),
                Some(spec),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// A chat request to `model` with gateway key `key`; returns the status.
    pub async fn chat_as(&self, key: &str, model: &str) -> u16 {
        self.client
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("gateway reachable")
            .status()
            .as_u16()
    }
}
