//! The gateway's own batches' lines, run as live requests: the same typed parse, routing, key
//! scope, rate limits, usage records and dispatch as `/v1/chat/completions` and its siblings
//! (`forward::send`, `optional_api::route_and_serve`), so a line's answer is what the live
//! endpoint answers for the same request.
//!
//! Those steps take an `HttpRequest` (its headers go upstream; its id names the usage record),
//! which is tied to one thread; lines therefore run on a thread of their own with a local task
//! set, and the runner (`crate::batches`) hands them over through a channel. A line carries no
//! client headers: with `[auth]` the project's credentials go upstream as for any request of
//! its key; without it the backend's own `api_key` does (the gateway never stores a client's
//! `Authorization`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::http::header;
use actix_web::test::TestRequest;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::body::parse_request;
use super::caller::Caller;
use super::forward;
use super::idempotent::asks_for_stream;
use super::optional_api::route_and_serve;
use crate::batches::{LineAnswer, LineRequest, LineSender};
use crate::error::GatewayError;
use crate::schema::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ResponsesRequest};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// Largest answer kept for one line (a live client could read more; a batch keeps it).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Pauses while the gateway is at `max_concurrent_requests`: live traffic goes first.
const FIRST_WAIT: Duration = Duration::from_millis(50);
const LONGEST_WAIT: Duration = Duration::from_secs(1);

type Job = (LineRequest, oneshot::Sender<LineAnswer>);

/// Sends batch lines through the live request path, on a thread of its own.
pub struct LiveLines {
    jobs: mpsc::UnboundedSender<Job>,
}

impl LiveLines {
    /// Starts the lines' thread over `state`.
    pub fn start(state: AppState) -> std::io::Result<Arc<LiveLines>> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("batch-lines".to_owned())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    while let Some((line, reply)) = queue.recv().await {
                        tokio::task::spawn_local(run(state.clone(), line, reply));
                    }
                });
            })?;
        Ok(Arc::new(LiveLines { jobs }))
    }
}

impl LineSender for LiveLines {
    fn send(&self, line: LineRequest) -> BoxFuture<'static, LineAnswer> {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send((line, reply));
        async move {
            let gone = || failed(String::new(), &internal("the batch lines' thread stopped"));
            match sent {
                Ok(()) => answer.await.unwrap_or_else(|_| gone()),
                Err(_) => gone(),
            }
        }
        .boxed()
    }
}

/// Runs one line, unless its runner gives it up first (then the request is dropped, which
/// closes its upstream connection).
async fn run(state: AppState, line: LineRequest, mut reply: oneshot::Sender<LineAnswer>) {
    tokio::select! {
        answer = answer(&state, line) => {
            let _ = reply.send(answer);
        }
        () = reply.closed() => {}
    }
}

async fn answer(state: &AppState, line: LineRequest) -> LineAnswer {
    let request_id = uuid::Uuid::new_v4().to_string();
    let req = TestRequest::post()
        .uri(line.endpoint)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .to_http_request();
    req.extensions_mut()
        .insert(RequestId(Arc::from(request_id.as_str())));
    // A place among the gateway's requests in progress, as a live request takes: when the
    // gateway is full, the line waits rather than a live client being refused.
    let mut wait = FIRST_WAIT;
    let _place = loop {
        match state.limits.admit_request() {
            Ok(place) => break place,
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_WAIT);
            }
        }
    };
    match dispatch(state, &req, line).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = actix_web::body::to_bytes_limited(response.into_body(), MAX_ANSWER_BYTES);
            match body.await {
                Ok(Ok(bytes)) => LineAnswer {
                    status,
                    request_id,
                    body: json_or_text(&bytes),
                },
                Ok(Err(_)) => failed(request_id, &internal("the answer could not be read")),
                Err(_) => failed(request_id, &internal("the answer is over 64 MiB")),
            }
        }
        Err(err) => failed(request_id, &err),
    }
}

/// The live path of `line.endpoint`, under the key that created the batch.
async fn dispatch(
    state: &AppState,
    req: &actix_web::HttpRequest,
    line: LineRequest,
) -> Result<actix_web::HttpResponse, GatewayError> {
    let caller: Caller = match (&state.auth, &line.key_hash) {
        (Some(auth), Some(hash)) => Some(auth.grant_of_hex(hash).await?),
        (Some(_), None) => return Err(GatewayError::InvalidApiKey),
        (None, _) => None,
    };
    if asks_for_stream(&line.body) {
        return Err(GatewayError::InvalidField {
            param: Some("stream".to_owned()),
            message: "a batch line answers once: send it without `stream`".to_owned(),
        });
    }
    let table = state.routes.load_full();
    let body = line.body;
    match line.endpoint {
        "/v1/chat/completions" => {
            let mut request: ChatCompletionRequest = parse_request(&body)?;
            forward::send(req, state, &caller, &table, body, &mut request).await
        }
        "/v1/embeddings" => {
            let mut request: EmbeddingRequest = parse_request(&body)?;
            forward::send(req, state, &caller, &table, body, &mut request).await
        }
        "/v1/completions" => {
            route_and_serve::<CompletionRequest>(req, state, &caller, &table, body).await
        }
        _ => route_and_serve::<ResponsesRequest>(req, state, &caller, &table, body).await,
    }
}

fn json_or_text(bytes: &Bytes) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The answer a live client would get for `err`: an upstream's own error as it sent it, else
/// the gateway's status and OpenAI error body.
fn failed(request_id: String, err: &GatewayError) -> LineAnswer {
    let (status, body) = match err {
        GatewayError::UpstreamStatus { status, body, .. } => (status.as_u16(), json_or_text(body)),
        _ => {
            let (status, body) = err.to_openai();
            (
                status.as_u16(),
                serde_json::to_value(body).unwrap_or_default(),
            )
        }
    };
    LineAnswer {
        status,
        request_id,
        body,
    }
}

fn internal(message: &str) -> GatewayError {
    GatewayError::Internal {
        message: message.to_owned(),
    }
}
