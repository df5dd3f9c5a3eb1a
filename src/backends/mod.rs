//! Backends: transport to an inference server, one module per kind.
//!
//! A backend carries an already-shaped OpenAI request upstream and hands back the reply, already
//! normalised to the OpenAI wire format by the kind's adapter. Dispatch is over the closed enum
//! `AnyBackend`: adding a kind means adding a variant, and the compiler lists every `match` to
//! extend. No routing and no HTTP-server concerns here.

pub mod batch;
mod echo;
mod h1_conn;
mod h1_pool;
pub mod http;
mod ollama;
mod openai;
mod proxy;
pub mod redis;
mod response;
mod thread_client;
mod timing;
pub mod upstream_path;

use std::future::Future;

use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use bytes::Bytes;

pub use batch::BatchBackend;
pub use echo::EchoBackend;
pub use ollama::OllamaBackend;
pub use openai::OpenAIBackend;
pub use proxy::ProxyBackend;
pub use redis::RedisBackend;

pub use crate::adapters::stream::ByteStream;
pub use crate::schema::DiscoveredModel;

use crate::config::{BackendConfig, BackendSettings, ResponsesMode};
use crate::error::GatewayError;
use crate::schema::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};

/// Which OpenAI endpoint a call is for.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// `POST /v1/completions` (legacy), for backends that answer it themselves.
    Completions,
    /// Anything else under `/v1`, relayed raw: the method and the path below `/v1` with its query.
    Raw {
        /// Request method.
        method: &'a Method,
        /// Path below `/v1`, query included (`/files?purpose=batch`).
        path_and_query: &'a str,
    },
}

impl Endpoint<'_> {
    /// The path below the backend's base URL.
    pub fn path(&self) -> &str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Completions => "/completions",
            Endpoint::Raw { path_and_query, .. } => path_and_query,
        }
    }

    /// The path of a typed endpoint, fixed for the process (its URL can be joined once).
    pub fn static_path(&self) -> Option<&'static str> {
        match self {
            Endpoint::ChatCompletions => Some("/chat/completions"),
            Endpoint::Embeddings => Some("/embeddings"),
            Endpoint::Completions => Some("/completions"),
            Endpoint::Raw { .. } => None,
        }
    }
}

/// The typed view of the request, for backends that need more than bytes.
#[derive(Debug, Clone, Copy)]
pub enum ParsedRequest<'a> {
    /// A chat completion request.
    Chat(&'a ChatCompletionRequest),
    /// An embeddings request.
    Embeddings(&'a EmbeddingRequest),
    /// A legacy completion request.
    Completion(&'a CompletionRequest),
    /// A pass-through request: bytes only.
    Opaque,
}

/// One request to carry upstream.
#[derive(Debug)]
pub struct UpstreamCall<'a> {
    /// Which endpoint.
    pub endpoint: Endpoint<'a>,
    /// The body to send, model already rewritten for the upstream.
    pub body: Bytes,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The client's request headers; each backend filters what it forwards.
    pub client_headers: &'a HeaderMap,
    /// The typed request.
    pub parsed: ParsedRequest<'a>,
    /// The model name exactly as the client sent it (responses echo it back).
    pub client_model: &'a str,
    /// The name this backend knows the model by: the route's rewrite and the backend's own
    /// `model` applied (the name already spliced into `body`). Empty when no route was used.
    pub upstream_model: &'a str,
    /// Which `Authorization` goes upstream.
    pub auth: UpstreamAuth<'a>,
}

/// Which `Authorization` an HTTP backend sends upstream.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamAuth<'a> {
    /// Without `[auth]`: the backend's `api_key` when it has one, else the client's own header.
    Client,
    /// With `[auth]`: the client's header holds its gateway key and never goes upstream. The
    /// project's credential for this backend when it has one, else the backend's `api_key`.
    Gateway(Option<&'a reqwest::header::HeaderValue>),
}

/// The body of a reply.
pub enum ReplyBody {
    /// A complete body.
    Full(Bytes),
    /// Server-sent events in OpenAI's framing, relayed as they come.
    EventStream(ByteStream),
    /// Raw bytes relayed as they come (pass-through), with the length when known.
    Raw(ByteStream, Option<u64>),
}

/// What a backend answered.
pub struct UpstreamReply {
    /// HTTP status for the client.
    pub status: StatusCode,
    /// Response headers for the client, hop-by-hop headers removed.
    pub headers: HeaderMap,
    /// The body.
    pub body: ReplyBody,
}

/// An OpenAI endpoint that not every kind of upstream has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionalApi {
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/completions` (legacy).
    Completions,
}

/// What every backend kind does.
pub trait Backend {
    /// Carries one request upstream.
    fn send(
        &self,
        call: UpstreamCall<'_>,
    ) -> impl Future<Output = Result<UpstreamReply, GatewayError>> + Send;

    /// The backend's own model list, for `discover = true` routes.
    fn list_models(
        &self,
    ) -> impl Future<Output = Result<Vec<DiscoveredModel>, GatewayError>> + Send;
}

/// Every backend kind, built from config.
#[derive(Debug)]
pub enum AnyBackend {
    /// OpenAI-compatible HTTP.
    OpenAI(OpenAIBackend),
    /// Raw HTTP relay.
    Proxy(ProxyBackend),
    /// Ollama's native API.
    Ollama(OllamaBackend),
    /// Built-in echo.
    Echo(EchoBackend),
    /// An openai-rq queue on Redis.
    Redis(RedisBackend),
    /// OpenAI Batch API jobs.
    Batch(BatchBackend),
}

impl AnyBackend {
    /// Builds a backend (and its pooled HTTP client) from its config.
    pub fn build(config: &BackendConfig) -> Result<Self, String> {
        Ok(match &config.settings {
            BackendSettings::OpenAI(http) => {
                AnyBackend::OpenAI(OpenAIBackend::new(&config.name, http)?)
            }
            BackendSettings::Proxy(http) => {
                AnyBackend::Proxy(ProxyBackend::new(&config.name, http)?)
            }
            BackendSettings::Ollama(http) => {
                AnyBackend::Ollama(OllamaBackend::new(&config.name, http)?)
            }
            BackendSettings::Echo => AnyBackend::Echo(EchoBackend::new(&config.name)),
            BackendSettings::Redis(settings) => {
                AnyBackend::Redis(RedisBackend::new(&config.name, settings)?)
            }
            BackendSettings::Batch(settings) => {
                AnyBackend::Batch(BatchBackend::new(&config.name, settings)?)
            }
        })
    }

    /// Whether the upstream has `api` itself, so that the client's body is relayed to it as it
    /// is. Otherwise the gateway serves it: legacy completions through the backend's own
    /// `Endpoint::Completions`, the Responses API through a chat completion.
    pub fn relays(&self, api: OptionalApi) -> bool {
        match self {
            AnyBackend::OpenAI(b) => {
                api == OptionalApi::Completions || b.responses() == ResponsesMode::Native
            }
            AnyBackend::Proxy(_) | AnyBackend::Redis(_) | AnyBackend::Batch(_) => true,
            AnyBackend::Ollama(_) | AnyBackend::Echo(_) => false,
        }
    }

    /// `kind` as written in routes.toml.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyBackend::OpenAI(_) => "openai",
            AnyBackend::Proxy(_) => "proxy",
            AnyBackend::Ollama(_) => "ollama",
            AnyBackend::Echo(_) => "echo",
            AnyBackend::Redis(_) => "redis",
            AnyBackend::Batch(_) => "batch",
        }
    }
}

impl Backend for AnyBackend {
    async fn send(&self, call: UpstreamCall<'_>) -> Result<UpstreamReply, GatewayError> {
        match self {
            AnyBackend::OpenAI(b) => b.send(call).await,
            AnyBackend::Proxy(b) => b.send(call).await,
            AnyBackend::Ollama(b) => b.send(call).await,
            AnyBackend::Echo(b) => b.send(call).await,
            // Boxed: their futures (a queue's round trip) are the largest, and each request's
            // future is as large as the largest it may hold, whichever backend it uses.
            AnyBackend::Redis(b) => Box::pin(b.send(call)).await,
            AnyBackend::Batch(b) => Box::pin(b.send(call)).await,
        }
    }

    async fn list_models(&self) -> Result<Vec<DiscoveredModel>, GatewayError> {
        match self {
            AnyBackend::OpenAI(b) => b.list_models().await,
            AnyBackend::Proxy(b) => b.list_models().await,
            AnyBackend::Ollama(b) => b.list_models().await,
            AnyBackend::Echo(b) => b.list_models().await,
            AnyBackend::Redis(b) => b.list_models().await,
            AnyBackend::Batch(b) => b.list_models().await,
        }
    }
}
