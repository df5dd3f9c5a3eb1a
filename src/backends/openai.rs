//! `kind = "openai"`: OpenAI-compatible HTTP servers (OpenAI, vLLM, SGLang, TGI, llama.cpp).
//!
//! The request body goes upstream as the client sent it (model rewritten at most); streams are
//! re-framed event by event by `adapters::openai`, never buffered to the end.

use serde::Deserialize;

use super::http::{self, HttpUpstream};
use super::timing::Pace;
use super::{Backend, DiscoveredModel, Endpoint, ReplyBody, UpstreamCall, UpstreamReply};
use crate::adapters::openai::relay_events;
use crate::config::{HttpSettings, ResponsesMode};
use crate::error::GatewayError;

/// An OpenAI-compatible backend.
#[derive(Debug)]
pub struct OpenAIBackend {
    http: HttpUpstream,
    responses: ResponsesMode,
}

impl OpenAIBackend {
    /// Builds the backend and its connection pool.
    pub fn new(name: &str, settings: &HttpSettings) -> Result<Self, String> {
        Ok(OpenAIBackend {
            http: HttpUpstream::new(name, settings)?,
            responses: settings.responses,
        })
    }

    /// Whether `/v1/responses` is relayed to the server or translated to chat completions.
    pub fn responses(&self) -> ResponsesMode {
        self.responses
    }
}

impl Backend for OpenAIBackend {
    async fn send(&self, call: UpstreamCall<'_>) -> Result<UpstreamReply, GatewayError> {
        let method = match call.endpoint {
            Endpoint::Raw { method, .. } => http::method_of(method),
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Completions => {
                reqwest::Method::POST
            }
        };
        let response = self
            .http
            .send(
                method,
                call.endpoint.path(),
                call.body,
                call.client_headers,
                call.stream,
                call.auth,
            )
            .await?;
        if !response.status().is_success() {
            return Err(self.http.status_error(response).await);
        }
        let status = http::status_of(&response);
        let headers = http::response_headers(response.headers());
        let body = if call.stream && http::is_event_stream(&response) {
            ReplyBody::EventStream(relay_events(
                self.http.body_stream(response, Pace::Stream),
                self.http.name(),
                self.http.reads(),
            ))
        } else {
            // Nothing to convert: relay the body as it arrives, neither held nor copied.
            let length = response.content_length();
            let pace = http::pace_of(&response);
            ReplyBody::Raw(self.http.body_stream(response, pace), length)
        };
        Ok(UpstreamReply {
            status,
            headers,
            body,
        })
    }

    async fn list_models(&self) -> Result<Vec<DiscoveredModel>, GatewayError> {
        list_openai_models(&self.http).await
    }
}

#[derive(Deserialize)]
struct ModelListWire {
    data: Vec<ModelWire>,
}

#[derive(Deserialize)]
struct ModelWire {
    id: String,
    created: Option<u64>,
    owned_by: Option<String>,
}

/// `GET {base}/models`, parsed leniently: only `id` is required.
pub(super) async fn list_openai_models(
    http: &HttpUpstream,
) -> Result<Vec<DiscoveredModel>, GatewayError> {
    let no_headers = actix_web::http::header::HeaderMap::new();
    let response = http
        .send(
            reqwest::Method::GET,
            "/models",
            bytes::Bytes::new(),
            &no_headers,
            false,
            super::UpstreamAuth::Client,
        )
        .await?;
    if !response.status().is_success() {
        return Err(http.status_error(response).await);
    }
    let body = http.read_body(response, http::MAX_SMALL_BODY).await?;
    parse_model_list(&body, http.name())
}

/// An OpenAI-shaped `GET /v1/models` body, parsed leniently: only `id` is required.
pub(super) fn parse_model_list(
    body: &[u8],
    backend: &str,
) -> Result<Vec<DiscoveredModel>, GatewayError> {
    let list: ModelListWire =
        serde_json::from_slice(body).map_err(|e| GatewayError::UpstreamProtocol {
            backend: backend.to_owned(),
            message: format!("model list: {e}"),
        })?;
    Ok(list
        .data
        .into_iter()
        .map(|m| DiscoveredModel {
            id: m.id,
            created: m.created,
            owned_by: m.owned_by,
        })
        .collect())
}
