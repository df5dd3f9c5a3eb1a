//! `kind = "proxy"`: a raw relay. Any method and path under `/v1` goes to the backend's base URL
//! as it came; the answer, whatever its status, comes back byte for byte as it arrives.

use super::http::{self, HttpUpstream};
use super::openai::list_openai_models;
use super::{Backend, DiscoveredModel, Endpoint, ReplyBody, UpstreamCall, UpstreamReply};
use crate::config::HttpSettings;
use crate::error::GatewayError;

/// A raw pass-through backend.
#[derive(Debug)]
pub struct ProxyBackend {
    http: HttpUpstream,
}

impl ProxyBackend {
    /// Builds the backend and its connection pool.
    pub fn new(name: &str, settings: &HttpSettings) -> Result<Self, String> {
        Ok(ProxyBackend {
            http: HttpUpstream::new(name, settings)?,
        })
    }
}

impl Backend for ProxyBackend {
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
                false,
                call.auth,
            )
            .await?;
        let status = http::status_of(&response);
        let headers = http::response_headers(response.headers());
        let length = response.content_length();
        let pace = http::pace_of(&response);
        Ok(UpstreamReply {
            status,
            headers,
            body: ReplyBody::Raw(self.http.body_stream(response, pace), length),
        })
    }

    async fn list_models(&self) -> Result<Vec<DiscoveredModel>, GatewayError> {
        list_openai_models(&self.http).await
    }
}
