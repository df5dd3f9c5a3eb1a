//! routes.toml's JSON Schema, generated from the raw config types (`switchyard schema`).
//!
//! Editors (Taplo / Even Better TOML, and through it Neovim and Helix) read it to complete keys,
//! show each key's description on hover and underline a wrong kind, a wrong type or an unknown
//! key as the operator types. It describes the file's *shape*; `switchyard check` remains the
//! judge of values (URLs resolve, names cross-reference, `${VAR}`s are set).

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::raw::RawConfig;

/// Where the committed copy lives, relative to the repository root.
pub const COMMITTED_PATH: &str = "openapi/routes.schema.json";

/// Keys each kind takes beyond `kind`, and the one it requires; the schema forbids every other
/// backend key, as `validate` does (a new raw key must be listed here for the kinds taking it).
const KIND_KEYS: &[(&str, &[&str], Option<&str>)] = &[
    ("openai", OPENAI_KEYS, Some("base_url")),
    ("ollama", HTTP_KEYS, Some("base_url")),
    ("proxy", PROXY_KEYS, Some("base_url")),
    ("echo", HEALTH_KEYS, None),
    ("redis", REDIS_KEYS, Some("redis_url")),
    ("batch", BATCH_KEYS, Some("base_url")),
];
const BATCH_KEYS: &[&str] = &[
    "base_url",
    "api_key",
    "window",
    "poll",
    "max_lines",
    "eject_after",
    "eject_cooldown",
];
/// Passive health applies to every kind.
const HEALTH_KEYS: &[&str] = &["eject_after", "eject_cooldown"];
const REDIS_KEYS: &[&str] = &[
    "redis_url",
    "timeout",
    "pickup_timeout",
    "eject_after",
    "eject_cooldown",
];
const OPENAI_KEYS: &[&str] = &[
    "base_url",
    "api_key",
    "headers",
    "connect_timeout",
    "request_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "pool_idle_timeout",
    "eject_after",
    "eject_cooldown",
    "responses",
    "batch",
];
const PROXY_KEYS: &[&str] = &[
    "base_url",
    "api_key",
    "headers",
    "connect_timeout",
    "request_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "pool_idle_timeout",
    "eject_after",
    "eject_cooldown",
    "batch",
];
const HTTP_KEYS: &[&str] = &[
    "base_url",
    "api_key",
    "headers",
    "connect_timeout",
    "request_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "pool_idle_timeout",
    "eject_after",
    "eject_cooldown",
];

/// The schema as pretty JSON with a trailing newline (what the committed file holds).
pub fn to_json() -> String {
    let mut text = serde_json::to_string_pretty(&schema_value()).unwrap_or_default();
    text.push('\n');
    text
}

fn schema_value() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<RawConfig>();
    let mut value = schema.to_value();
    if let Some(backend) = value.pointer_mut("/definitions/RawBackend") {
        add_per_kind_rules(backend);
    }
    if let Some(route) = value.pointer_mut("/definitions/RawRoute") {
        // A route names its backend one way or the other (`validate` says which is missing).
        route["anyOf"] = json!([{ "required": ["backend"] }, { "required": ["backends"] }]);
    }
    value
}

/// `kind` decides which other keys a backend takes: one `if kind == K then …` per kind, so an
/// editor underlines `redis_url` on an `openai` backend, or a missing `base_url`.
fn add_per_kind_rules(backend: &mut Value) {
    let all_keys: Vec<String> = backend["properties"]
        .as_object()
        .map(|properties| {
            properties
                .keys()
                .filter(|key| key.as_str() != "kind")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let rules: Vec<Value> = KIND_KEYS
        .iter()
        .map(|(kind, keys, required)| {
            let forbidden: serde_json::Map<String, Value> = all_keys
                .iter()
                .filter(|key| !keys.contains(&key.as_str()))
                .map(|key| (key.clone(), Value::Bool(false)))
                .collect();
            let mut then = json!({ "properties": forbidden });
            if let Some(required) = required {
                then["required"] = json!([required]);
            }
            json!({
                "if": { "properties": { "kind": { "const": kind } }, "required": ["kind"] },
                "then": then,
            })
        })
        .collect();
    if let Some(object) = backend.as_object_mut() {
        object.insert("allOf".to_owned(), Value::Array(rules));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_the_enum_has_rules_and_every_raw_key_is_described() {
        let schema = schema_value();
        let kinds = schema
            .pointer("/definitions/KindName")
            .map(|k| k.to_string())
            .unwrap_or_default();
        for (kind, _, _) in KIND_KEYS {
            assert!(
                kinds.contains(&format!("\"{kind}\"")),
                "{kind} not in {kinds}"
            );
        }
        let backend = schema
            .pointer("/definitions/RawBackend/properties")
            .unwrap();
        for (key, property) in backend.as_object().unwrap() {
            assert!(
                property.get("description").is_some(),
                "backend key `{key}` has no description: {property}"
            );
            assert!(
                key == "kind"
                    || KIND_KEYS
                        .iter()
                        .any(|(_, keys, _)| keys.contains(&key.as_str())),
                "backend key `{key}` is taken by no kind in KIND_KEYS"
            );
        }
    }
}
