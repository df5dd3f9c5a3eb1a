//! The OpenAPI 3.1 document, derived from the code: the `#[utoipa::path]` annotations on the
//! handlers in `routes/` and the `ToSchema` derives in `schema/`. Nothing here is written by
//! hand but the prose and the list of what goes in.
//!
//! `switchyard openapi` prints [`to_json`]; `openapi/openapi.json` is its committed output and a
//! test fails when the two differ. `GET /openapi.json` serves the same document with the live
//! route table's model names added as examples ([`with_route_examples`]).

use serde_json::Value;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ObjectBuilder, RefOr, Type};

use crate::routes;
use crate::schema;

/// The document's prose: what the gateway is, and what the operations below do not show.
const DESCRIPTION: &str = "\
An OpenAI-compatible gateway. Clients written for the OpenAI API change only their base URL; \
Switchyard routes each request, by the prefix of its `model` (the longest matching prefix of \
`routes.toml` wins), to the backend serving that model and answers in OpenAI's wire format.

**Errors.** Every error the gateway produces has the body \
`{\"error\":{\"message\",\"type\",\"param\",\"code\"}}` (`ErrorBody`). An upstream's own \
non-2xx answer is passed through with its status, body and `retry-after` / `x-ratelimit-*` \
headers. A failure after a stream has started becomes one `data: {\"error\":{...}}` event, then \
the stream closes.

**Streaming.** With `\"stream\": true`, `POST /v1/chat/completions` answers \
`text/event-stream`: each event is `data: ` followed by one `ChatCompletionChunk` as JSON, and \
the stream ends with `data: [DONE]`. `POST /v1/completions` streams `TextCompletion`s the same \
way; `POST /v1/responses` streams the Responses API's events (`event: <type>`, then `data: ` \
and the `ResponseStreamEvent`), from `response.created` to `response.completed`.

**Responses and legacy completions on every backend.** `POST /v1/responses` and \
`POST /v1/completions` are described as the gateway serves them for backends that do not have \
them: the Responses API through a chat completion (`ollama`, `echo`, and `openai` backends with \
`responses = \"translate\"`), legacy completions through Ollama's `/api/generate` or the echo \
backend. A route to a backend that has the endpoint relays the body as it is.

**Files and Batches.** With a store, the gateway serves `/v1/files` and `/v1/batches` \
itself: a batch's lines run as live requests on their routes, whatever the backend. When \
`[server] default_backend` has `batch = \"upstream\"`, or without a store, they are relayed \
like the requests below.

**Pass-through.** Any other request under `/v1/` (`/v1/audio/...`, other methods on the \
paths below, and endpoints OpenAI adds later) is relayed raw to an `openai` or `proxy` backend: the one routing the top-level `model` \
of a JSON body, else `[server] default_backend`. Its request and response are the upstream's \
own, so they are not described here; without a backend to relay to, the answer is 404 \
`unknown_url`.

**Gateway keys.** With `[auth]` in routes.toml, every `/v1` request needs `Authorization: Bearer sk-sy-…`, a key made through `/admin/v1`: a missing, unknown, expired or revoked key is 401 `invalid_api_key`, a model outside the key's scope 403 `model_not_permitted`, a key whose `max_requests` are used up 429 `max_requests_reached`, and an unknown key while the store is down 503 `store_unavailable`. `/v1/models` lists only what the key may use.

**Idempotency-Key.** With a store (`[store]`, `[auth]` or `[idempotency]`), a non-streamed \
chat, embeddings, responses or completions request carrying `Idempotency-Key` runs once per \
key and caller: a repeat while it runs waits for it, a repeat after it gets the kept answer \
(status, `content-type`, `openai-*` headers, body) with `idempotent-replayed: true`, without \
reaching the upstream. Answers are kept for `[idempotency] ttl` (24 h).

**Request ids.** Every response carries `x-request-id`: the client's own when it sent one \
(up to 128 characters), else a new UUID.";

/// The OpenAPI document of the gateway.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::chat::chat_completions,
        routes::embeddings::create_embeddings,
        routes::responses::create_response,
        routes::completions::create_completion,
        routes::models::list_models,
        routes::models::retrieve_model,
        routes::health::health,
        routes::metrics::scrape,
        routes::route_table::show_routes,
        routes::docs::openapi_json,
        routes::docs::docs_page,
        routes::admin::create_project,
        routes::admin::list_projects,
        routes::admin::get_project,
        routes::admin::update_project,
        routes::admin::delete_project,
        routes::admin::put_credential,
        routes::admin::delete_credential,
        routes::admin::create_key,
        routes::admin::list_keys,
        routes::admin::revoke_key,
        routes::admin::usage,
        routes::admin::set_project_rate_limit,
        routes::admin::set_key_rate_limit,
        routes::files::create_file,
        routes::files::list_files,
        routes::files::retrieve_file,
        routes::files::file_content,
        routes::files::delete_file,
        routes::batches::create_batch,
        routes::batches::list_batches,
        routes::batches::retrieve_batch,
        routes::batches::cancel_batch,
    ),
    // Types reached only through a media type other than JSON are listed so they get a name.
    components(schemas(schema::ChatCompletionChunk, schema::ResponseStreamEvent)),
    tags(
        (name = "chat", description = "Chat completions, plain or streamed."),
        (name = "embeddings", description = "Vector embeddings of text or token arrays."),
        (name = "responses", description = "The Responses API, on every backend kind."),
        (name = "completions", description = "Legacy text completions, on every backend kind."),
        (name = "models", description = "The models the route table serves, prefixes included."),
        (name = "operations", description = "Liveness and the loaded route table."),
        (name = "docs", description = "This document and the page that renders it."),
        (name = "batches", description = "The Files and Batches API, served by the gateway for backends without one (with a store; see the README's \"Files and Batches API\")."),
        (name = "admin", description = "Projects, upstream credentials and gateway keys (with `[auth]` on; `Authorization: Bearer <admin_token>`)."),
    ),
    modifiers(&Prose, &RequestIdHeader, &Security),
)]
pub struct ApiDoc;

struct Prose;

impl Modify for Prose {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.description = Some(DESCRIPTION.to_owned());
    }
}

/// Declares the two bearer schemes: gateway keys on `/v1` (when `[auth]` is on) and the admin
/// token on `/admin/v1`.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Adds the `x-request-id` header to every response: the middleware sets it on all of them.
struct RequestIdHeader;

impl Modify for RequestIdHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let header = HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "The request's id: the client's `x-request-id` when it sent one, else a new UUID.",
            ))
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        response
                            .headers
                            .insert("x-request-id".to_owned(), header.clone());
                    }
                }
            }
        }
    }
}

/// The document as pretty JSON with a final newline: exactly `openapi/openapi.json`.
pub fn to_json() -> String {
    // Serialising a `Value` cannot fail; an empty document would fail every test.
    let mut json = serde_json::to_string_pretty(&to_value()).unwrap_or_default();
    json.push('\n');
    json
}

/// The document as a JSON value, the base that `GET /openapi.json` extends.
pub fn to_value() -> Value {
    let mut spec = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    widen_unsigned_32(&mut spec);
    add_stream_event_schema(&mut spec);
    open_response_format(&mut spec);
    sorted(spec)
}

/// `response_format` is one of the modelled formats, or an object of any other `type`
/// (forwarded as sent). utoipa describes the catch-all variant with a tag of its own (`"type":
/// "other"`), which is not what is accepted, and as `oneOf`, which a modelled format would
/// break by also fitting the catch-all: the last item becomes the catch-all's own schema, and
/// `oneOf` becomes `anyOf`.
fn open_response_format(spec: &mut Value) {
    let Some(Value::Object(format)) = spec.pointer_mut("/components/schemas/ResponseFormat") else {
        return;
    };
    if let Some(Value::Array(mut items)) = format.remove("oneOf") {
        if let Some(last) = items.last_mut() {
            *last = serde_json::json!({ "$ref": "#/components/schemas/OtherResponseFormat" });
        }
        format.insert("anyOf".to_owned(), Value::Array(items));
    }
}

/// The streamed endpoints: path, the schema of one event, what its `data` carries, and the
/// SSE field naming the event's type (the Responses API's `event:`), if any.
const STREAMS: [(&str, &str, &str, Option<&str>); 3] = [
    (
        "/v1/chat/completions",
        "ChatCompletionStreamEvent",
        "ChatCompletionChunk",
        None,
    ),
    (
        "/v1/completions",
        "TextCompletionStreamEvent",
        "TextCompletion",
        None,
    ),
    (
        "/v1/responses",
        "ResponseStreamServerSentEvent",
        "ResponseStreamEvent",
        Some("The event's `type`, e.g. `response.output_text.delta`."),
    ),
];

/// Describes `text/event-stream` the way OpenAPI 3.2 (and tools reading 3.1 documents, such as
/// Schemathesis) read it: the schema is that of one event, an object whose `data` is a string;
/// here a chunk as JSON, the final `[DONE]` of the chat and legacy streams, or an `ErrorBody`
/// when a chat or legacy stream fails after it started (a Responses stream fails with events of
/// its own). utoipa 5 has no `contentSchema` nor `const`, so these few keywords are added to
/// its output here; everything they reference is derived.
fn add_stream_event_schema(spec: &mut Value) {
    let json_of = |name: &str, description: &str| {
        serde_json::json!({
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": { "$ref": format!("#/components/schemas/{name}") },
            "description": description,
        })
    };
    for (path, event_schema, chunk, event_field) in STREAMS {
        let mut data = vec![json_of(chunk, "One event's content, as JSON.")];
        let mut event = serde_json::json!({
            "type": "object",
            "description": "One server-sent event of a stream: the line `data: <data>` (after \
                `event: <event>` where there is one), then a blank line.",
            "required": ["data"],
        });
        if let Some(description) = event_field {
            event["properties"]["event"] =
                serde_json::json!({ "type": "string", "description": description });
        } else {
            data.push(serde_json::json!({
                "const": "[DONE]", "description": "The last event of a complete stream." }));
            data.push(json_of(
                "ErrorBody",
                "A failure after the stream started; the stream closes after this event.",
            ));
        }
        event["properties"]["data"] = serde_json::json!({ "anyOf": data });
        if let Some(Value::Object(schemas)) = spec.pointer_mut("/components/schemas") {
            schemas.insert(event_schema.to_owned(), event);
        }
        let pointer = format!(
            "/paths/{}/post/responses/200/content/text~1event-stream",
            path.replace('/', "~1")
        );
        if let Some(media) = spec.pointer_mut(&pointer) {
            media["schema"] =
                serde_json::json!({ "$ref": format!("#/components/schemas/{event_schema}") });
        }
    }
}

/// utoipa 5 renders `u32` as `format: int32, minimum: 0`, whose implied maximum (2^31 - 1) is
/// half of what the gateway accepts: a client sending `max_tokens: 3000000000` is valid. State
/// the real range. (No signed 32-bit integer in the API has `minimum: 0`.)
fn widen_unsigned_32(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("int32")
                && map.get("minimum").and_then(Value::as_u64) == Some(0)
            {
                map.insert("format".to_owned(), Value::from("int64"));
                map.insert("maximum".to_owned(), Value::from(u32::MAX));
            }
            map.values_mut().for_each(widen_unsigned_32);
        }
        Value::Array(items) => items.iter_mut().for_each(widen_unsigned_32),
        _ => {}
    }
}

/// `value` with every object's keys in order, so the output is the same whichever way
/// `serde_json` is built (its `preserve_order` feature may be switched on by another crate).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Where `with_route_examples` puts the live model names: each request schema's `model`.
const MODEL_FIELDS: [&str; 4] = [
    "ChatCompletionRequest",
    "EmbeddingRequest",
    "ResponsesRequest",
    "CompletionRequest",
];

/// `spec` with the model names the route table serves (`models`, prefixes included) as the
/// examples of every `model` field and parameter, and the routed `prefixes` named in their
/// descriptions. The first model also replaces the model of the request examples, so that
/// "Try it out" on the docs page sends a request this gateway can route.
pub fn with_route_examples(mut spec: Value, models: &[String], prefixes: &[String]) -> Value {
    let examples: Vec<Value> = models.iter().cloned().map(Value::String).collect();
    let routed = if prefixes.iter().any(String::is_empty) {
        " This gateway has a catch-all route: every name is routed.".to_owned()
    } else if prefixes.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = prefixes.iter().map(|p| format!("`{p}`")).collect();
        format!(" Prefixes this gateway routes: {}.", list.join(", "))
    };
    let annotate = |field: &mut Value| {
        if let Value::Object(field) = field {
            if !examples.is_empty() {
                field.insert("examples".to_owned(), Value::Array(examples.clone()));
            }
            if let Some(Value::String(description)) = field.get_mut("description") {
                description.push_str(&routed);
            }
        }
    };
    for name in MODEL_FIELDS {
        if let Some(field) =
            spec.pointer_mut(&format!("/components/schemas/{name}/properties/model"))
        {
            annotate(field);
        }
    }
    if let Some(Value::Array(params)) =
        spec.pointer_mut("/paths/~1v1~1models~1{model}/get/parameters")
    {
        for param in params.iter_mut().filter(|p| p["name"] == "model") {
            if let Some(schema) = param.get_mut("schema") {
                annotate(schema);
            }
        }
    }
    if let Some(first) = models.first() {
        for path in [
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/responses",
            "/v1/completions",
        ] {
            let pointer = format!(
                "/paths/{}/post/requestBody/content/application~1json",
                path.replace('/', "~1")
            );
            let Some(Value::Object(media)) = spec.pointer_mut(&pointer) else {
                continue;
            };
            // `example`, or each `value` of `examples`.
            let bodies = media
                .iter_mut()
                .flat_map(|(key, value)| match (key.as_str(), value) {
                    ("example", body) => vec![body],
                    ("examples", Value::Object(named)) => named
                        .values_mut()
                        .filter_map(|e| e.get_mut("value"))
                        .collect(),
                    _ => Vec::new(),
                });
            for body in bodies {
                if let Some(model) = body.get_mut("model") {
                    *model = Value::String(first.clone());
                }
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_names_every_endpoint() {
        let spec = to_value();
        assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/responses",
            "/v1/completions",
            "/v1/models",
            "/v1/models/{model}",
            "/health",
            "/metrics",
            "/openapi.json",
            "/docs",
        ] {
            assert!(spec["paths"].get(path).is_some(), "{path} missing");
        }
    }

    #[test]
    fn streaming_is_documented_as_chunks_and_errors_as_error_bodies() {
        let spec = to_value();
        let chat = &spec["paths"]["/v1/chat/completions"]["post"]["responses"];
        assert_eq!(
            chat["200"]["content"]["text/event-stream"]["schema"]["$ref"],
            "#/components/schemas/ChatCompletionStreamEvent"
        );
        let data =
            &spec["components"]["schemas"]["ChatCompletionStreamEvent"]["properties"]["data"];
        assert_eq!(
            data["anyOf"][0]["contentSchema"]["$ref"],
            "#/components/schemas/ChatCompletionChunk"
        );
        assert_eq!(data["anyOf"][1]["const"], "[DONE]");
        assert!(spec["components"]["schemas"]["ChatCompletionChunk"].is_object());
        assert_eq!(
            chat["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ChatCompletion"
        );
        for status in ["400", "404", "413", "502", "504"] {
            assert_eq!(
                chat[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{status}"
            );
        }
    }

    #[test]
    fn unsigned_32_bit_fields_state_their_real_range() {
        let spec = to_value();
        let n = &spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]["n"];
        assert_eq!(n["maximum"], u32::MAX);
        assert_eq!(n["minimum"], 0);
        assert!(!spec.to_string().contains("int32"));
    }

    #[test]
    fn unmodelled_request_fields_are_allowed() {
        let spec = to_value();
        let request = &spec["components"]["schemas"]["ChatCompletionRequest"];
        assert_ne!(request["additionalProperties"], Value::Bool(false));
        assert!(request.get("additionalProperties").is_some(), "{request}");
    }

    #[test]
    fn route_examples_name_the_models_and_prefixes() {
        let models = vec!["echo/hello".to_owned(), "up/gpt-4o".to_owned()];
        let prefixes = vec!["echo/".to_owned(), "up/".to_owned()];
        let spec = with_route_examples(to_value(), &models, &prefixes);
        let field = &spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"];
        assert_eq!(
            field["examples"],
            serde_json::json!(["echo/hello", "up/gpt-4o"])
        );
        assert!(
            field["description"]
                .as_str()
                .unwrap()
                .ends_with("Prefixes this gateway routes: `echo/`, `up/`.")
        );
        let param = &spec["paths"]["/v1/models/{model}"]["get"]["parameters"][0]["schema"];
        assert_eq!(param["examples"][1], "up/gpt-4o");
        let body = &spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(body["examples"]["plain"]["value"]["model"], "echo/hello");
        assert_eq!(body["examples"]["stream"]["value"]["model"], "echo/hello");
        let models = vec!["up/gpt-4o".to_owned()];
        let spec = with_route_examples(to_value(), &models, &prefixes);
        let body =
            &spec["paths"]["/v1/embeddings"]["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(body["example"]["model"], "up/gpt-4o");
        // Without routes the document is the committed one, unchanged.
        assert_eq!(with_route_examples(to_value(), &[], &[]), to_value());
    }
}
