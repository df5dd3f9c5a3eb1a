//! `kind = "ollama"`: an Ollama server by its native API (`/api/chat`, `/api/generate`,
//! `/api/embed`, `/api/tags`), so that Ollama-only features (`keep_alive`, `think`, `options`)
//! stay in reach and an OpenAI client cannot tell the answer came from Ollama.
//!
//! Transport only: the request and response conversions are `adapters::ollama`, and streams go
//! through the shared normalisation layer (`adapters::stream`) with the NDJSON chat adapter.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use bytes::Bytes;
use futures::future::BoxFuture;

use super::http::{self, HttpUpstream};
use super::response::UpstreamResponse;
use super::timing::Pace;
use super::{
    Backend, DiscoveredModel, Endpoint, ParsedRequest, ReplyBody, UpstreamAuth, UpstreamCall,
    UpstreamReply,
};
use crate::adapters::ollama::{self, ChatStream, GenerateStream};
use crate::adapters::stream::{StreamAdapter, normalize};
use crate::config::HttpSettings;
use crate::error::GatewayError;
use crate::schema::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest, EncodingFormat};

/// An Ollama backend.
#[derive(Debug)]
pub struct OllamaBackend {
    http: HttpUpstream,
}

impl OllamaBackend {
    /// Builds the backend and its connection pool.
    pub fn new(name: &str, settings: &HttpSettings) -> Result<Self, String> {
        Ok(OllamaBackend {
            http: HttpUpstream::new(name, settings)?,
        })
    }

    async fn chat(
        &self,
        call: &UpstreamCall<'_>,
        request: &ChatCompletionRequest,
    ) -> Result<UpstreamReply, GatewayError> {
        let body = ollama::chat_request(request, call.upstream_model, call.stream)?;
        let adapter =
            || ChatStream::new(call.client_model, request.include_usage(), self.http.name());
        self.exchange(call, "/api/chat", body, adapter, ollama::chat_response)
            .await
    }

    async fn generate(
        &self,
        call: &UpstreamCall<'_>,
        request: &CompletionRequest,
    ) -> Result<UpstreamReply, GatewayError> {
        let body = ollama::generate_request(request, call.upstream_model, call.stream)?;
        let adapter =
            || GenerateStream::new(call.client_model, request.include_usage(), self.http.name());
        self.exchange(
            call,
            "/api/generate",
            body,
            adapter,
            ollama::generate_response,
        )
        .await
    }

    /// Posts a native request and shapes the answer: a stream through the NDJSON `adapter`
    /// (made only when streaming), a whole body through `convert`.
    async fn exchange<A>(
        &self,
        call: &UpstreamCall<'_>,
        path: &str,
        body: Bytes,
        adapter: impl FnOnce() -> A,
        convert: fn(&[u8], &str, &str) -> Result<Bytes, GatewayError>,
    ) -> Result<UpstreamReply, GatewayError>
    where
        A: StreamAdapter + Send + Unpin + 'static,
    {
        let response = self
            .post(path, body, call.client_headers, call.stream, call.auth)
            .await?;
        let status = http::status_of(&response);
        let headers = json_headers(response.headers());
        let body = if call.stream {
            let stream = self.http.body_stream(response, Pace::Stream);
            ReplyBody::EventStream(normalize(
                stream,
                adapter(),
                self.http.name(),
                self.http.reads(),
            ))
        } else {
            let body = self.http.read_body(response, http::MAX_HELD_BODY).await?;
            ReplyBody::Full(convert(&body, call.client_model, self.http.name())?)
        };
        Ok(UpstreamReply {
            status,
            headers,
            body,
        })
    }

    async fn embed(
        &self,
        call: &UpstreamCall<'_>,
        request: &EmbeddingRequest,
    ) -> Result<UpstreamReply, GatewayError> {
        let body = ollama::embed_request(request, call.upstream_model)?;
        let response = self
            .post("/api/embed", body, call.client_headers, false, call.auth)
            .await?;
        let status = http::status_of(&response);
        let headers = json_headers(response.headers());
        let body = self.http.read_body(response, http::MAX_HELD_BODY).await?;
        let body = ollama::embed_response(
            &body,
            call.client_model,
            request.input.len(),
            request.encoding_format == Some(EncodingFormat::Base64),
            self.http.name(),
        )?;
        Ok(UpstreamReply {
            status,
            headers,
            body: ReplyBody::Full(body),
        })
    }

    /// POSTs a JSON body; a non-2xx answer becomes an OpenAI-shaped error with its status.
    async fn post(
        &self,
        path: &str,
        body: Bytes,
        client_headers: &HeaderMap,
        stream: bool,
        auth: UpstreamAuth<'_>,
    ) -> Result<UpstreamResponse, GatewayError> {
        // The body is the gateway's own JSON, whatever the client's request looked like.
        let mut headers = client_headers.clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let response = self
            .http
            .send(reqwest::Method::POST, path, body, &headers, stream, auth)
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(response).await)
        }
    }

    /// Ollama's `{"error": "..."}` answer in OpenAI's shape, with Ollama's status and headers
    /// (`retry-after` included). Boxed, as `HttpUpstream::status_error` is.
    fn status_error(&self, response: UpstreamResponse) -> BoxFuture<'_, GatewayError> {
        Box::pin(async move {
            let status = http::status_of(&response);
            let headers = json_headers(response.headers());
            match self.http.read_body(response, http::MAX_SMALL_BODY).await {
                Ok(body) => GatewayError::UpstreamStatus {
                    status,
                    headers,
                    body: ollama::error_body(status, &body).to_bytes(),
                },
                Err(err) => err,
            }
        })
    }
}

/// The upstream's response headers, with the content type of the gateway's JSON answer.
fn json_headers(upstream: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut headers = http::response_headers(upstream);
    // The body is the gateway's own: the upstream's encoding and length describe other bytes.
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

impl Backend for OllamaBackend {
    async fn send(&self, call: UpstreamCall<'_>) -> Result<UpstreamReply, GatewayError> {
        match (call.endpoint, call.parsed) {
            (Endpoint::ChatCompletions, ParsedRequest::Chat(request)) => {
                self.chat(&call, request).await
            }
            (Endpoint::Embeddings, ParsedRequest::Embeddings(request)) => {
                self.embed(&call, request).await
            }
            (Endpoint::Completions, ParsedRequest::Completion(request)) => {
                self.generate(&call, request).await
            }
            (endpoint, _) => Err(GatewayError::UnsupportedEndpoint {
                backend: self.http.name().to_owned(),
                endpoint: format!("/v1{}", endpoint.path()),
            }),
        }
    }

    async fn list_models(&self) -> Result<Vec<DiscoveredModel>, GatewayError> {
        let response = self
            .http
            .send(
                reqwest::Method::GET,
                "/api/tags",
                Bytes::new(),
                &HeaderMap::new(),
                false,
                UpstreamAuth::Client,
            )
            .await?;
        if !response.status().is_success() {
            return Err(self.status_error(response).await);
        }
        let body = self.http.read_body(response, http::MAX_SMALL_BODY).await?;
        ollama::tags(&body, self.http.name())
    }
}
