//! `kind = "batch"`: requests gathered into OpenAI Batch API jobs, at half the price, each
//! client answered with its own line when the batch is done.
//!
//! The transport is the store, not a connection: `send` records the request as a waiting
//! line (`crate::store`) and waits until the line has an answer; the dispatcher
//! (`dispatch`) sends the lines as batches, polls them and writes each line's answer. A
//! client that comes back with the same `Idempotency-Key` (and the same request) finds the
//! line it already has, so a dropped connection or a gateway restart never sends a request
//! twice.
//!
//! Not here: HTTP to the Files and Batches endpoints (`upstream`), reading their files
//! (`lines`).

mod dispatch;
mod lines;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use bytes::Bytes;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{Backend, DiscoveredModel, Endpoint, ReplyBody, UpstreamCall, UpstreamReply};
use crate::auth::store_unavailable;
use crate::auth::token::hex;
use crate::config::BatchSettings;
use crate::error::GatewayError;
use crate::idempotency::digest;
use crate::store::{LineOutcome, NewLine, Store};

/// The longest pause between two reads of a waiting line's state when no local dispatcher
/// announces it (the batch runs on another gateway instance).
const MAX_WAIT_POLL: Duration = Duration::from_secs(2);

/// A batch backend.
#[derive(Debug)]
pub struct BatchBackend {
    shared: Arc<Shared>,
}

/// What the backend and its dispatcher share.
#[derive(Debug)]
struct Shared {
    name: String,
    store: Store,
    upstream: upstream::FilesAndBatches,
    settings: BatchSettings,
    /// Hash of the upstream credential: lines are grouped by it without storing it.
    credential: String,
    /// Moves each time the local dispatcher answered lines, waking the waiting clients.
    answered: watch::Sender<u64>,
}

impl BatchBackend {
    /// Builds the backend; its dispatcher starts when a runtime runs (`serve`, not `check`).
    pub fn new(name: &str, settings: &BatchSettings) -> Result<Self, String> {
        let url = settings
            .store_url
            .0
            .as_ref()
            .ok_or_else(|| format!("backend `{name}`: kind `batch` needs a store"))?;
        let store = Store::connect_lazy(url.expose_secret())
            .map_err(|e| format!("backend `{name}`: {e}"))?;
        let upstream = upstream::FilesAndBatches::new(name, &settings.http)?;
        let key = settings
            .http
            .api_key
            .as_ref()
            .map_or("", |k| k.expose_secret());
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            store,
            upstream,
            settings: settings.clone(),
            credential: hex(&Sha256::digest(key.as_bytes())),
            answered: watch::channel(0).0,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            dispatch::spawn(Arc::downgrade(&shared));
        }
        Ok(BatchBackend { shared })
    }
}

impl Backend for BatchBackend {
    async fn send(&self, call: UpstreamCall<'_>) -> Result<UpstreamReply, GatewayError> {
        let shared = &self.shared;
        let endpoint = batch_endpoint(&shared.name, call.endpoint)?;
        let line = lines::request_line(&call.body, call.stream)?;
        let new = NewLine {
            id: uuid::Uuid::new_v4().to_string(),
            request_key: request_key(call.client_headers, endpoint, &line.body),
            backend: shared.name.clone(),
            group: hex(&digest(&[
                shared.credential.as_bytes(),
                endpoint.as_bytes(),
                line.model.as_bytes(),
            ])),
            endpoint: endpoint.to_owned(),
            body: line.body,
            now: now_ms(),
        };
        let id = shared
            .store
            .record_batch_line(&new)
            .await
            .map_err(store_unavailable)?;
        let outcome = shared.wait_for(&id).await?;
        reply(outcome)
    }

    async fn list_models(&self) -> Result<Vec<DiscoveredModel>, GatewayError> {
        Ok(Vec::new())
    }
}

impl Shared {
    /// Waits until line `id` has its answer: woken by the local dispatcher, else by polling.
    async fn wait_for(&self, id: &str) -> Result<LineOutcome, GatewayError> {
        let mut answered = self.answered.subscribe();
        let mut pause = Duration::from_millis(50);
        loop {
            answered.borrow_and_update();
            let found = self.store.batch_line_outcome(id).await;
            if let Some(outcome) = found.map_err(store_unavailable)? {
                return Ok(outcome);
            }
            let _ = tokio::time::timeout(pause, answered.changed()).await;
            pause = (pause * 2).min(MAX_WAIT_POLL);
        }
    }
}

/// The Batch API's name for the endpoint; the others cannot be batched.
fn batch_endpoint(name: &str, endpoint: Endpoint<'_>) -> Result<&'static str, GatewayError> {
    match endpoint {
        Endpoint::ChatCompletions => Ok("/v1/chat/completions"),
        Endpoint::Embeddings => Ok("/v1/embeddings"),
        Endpoint::Completions => Ok("/v1/completions"),
        Endpoint::Raw {
            method,
            path_and_query,
        } if method == actix_web::http::Method::POST && path_and_query == "/responses" => {
            Ok("/v1/responses")
        }
        Endpoint::Raw { path_and_query, .. } => Err(GatewayError::UnsupportedEndpoint {
            backend: name.to_owned(),
            endpoint: format!("/v1{path_and_query}"),
        }),
    }
}

/// Ties a retry to its line: the caller (its `Authorization`, hashed), its `Idempotency-Key`
/// and the request. Without a key every request is a line of its own.
fn request_key(headers: &HeaderMap, endpoint: &str, body: &str) -> String {
    let Some(key) = headers.get(crate::idempotency::KEY_HEADER) else {
        return uuid::Uuid::new_v4().to_string();
    };
    let caller = headers
        .get(header::AUTHORIZATION)
        .map_or(&[][..], HeaderValue::as_bytes);
    hex(&digest(&[
        caller,
        key.as_bytes(),
        endpoint.as_bytes(),
        body.as_bytes(),
    ]))
}

/// The line's answer as the client's reply: a 2xx as a body, anything else as the upstream's
/// error, passed through with its status.
fn reply(outcome: LineOutcome) -> Result<UpstreamReply, GatewayError> {
    let status = u16::try_from(outcome.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = Bytes::from(outcome.body);
    if !status.is_success() {
        return Err(GatewayError::UpstreamStatus {
            status,
            headers,
            body,
        });
    }
    Ok(UpstreamReply {
        status,
        headers,
        body: ReplyBody::Full(body),
    })
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
