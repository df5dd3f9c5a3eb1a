//! `kind = "redis"`: requests cross a Redis queue as openai-rq 0.1.2 jobs and are answered by
//! `switchyard worker` (or the Python `openai-rq worker`) next to the inference server.
//!
//! The gateway side lives here: freeze the request into a job (model already rewritten,
//! connection headers and every credential left out), `XADD` it, then wait for the answer on
//! the same dedicated connection, in one round trip: `BLPOP` of the result list, or `XREAD` of
//! the result stream relayed entry by entry as the client reads. Only the transport differs
//! from the `openai` kind: streams go through the same `adapters::openai` relay.
//! The wire format is `job`; the worker half is `worker`.

pub mod job;
mod pickup;
mod pool;
mod reader;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use redis::streams::StreamReadReply;
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::time::Instant;

use self::job::{Answer, WireHeaders, WorkerFailure};
use self::pool::{Lease, Pool};
use self::reader::ResultReader;
use super::{Backend, DiscoveredModel, Endpoint, ReplyBody, UpstreamCall, UpstreamReply, http};
use crate::adapters::openai::relay_events;
use crate::adapters::stream::Reads;
use crate::config::RedisSettings;
use crate::error::GatewayError;

/// Time allowed beyond the wait itself for Redis to answer a command, before it counts as down.
const REDIS_GRACE: Duration = Duration::from_secs(5);

/// How long a request may spend getting a Redis connection before it is answered 503.
const CONNECT_BUDGET: Duration = Duration::from_secs(5);

/// The gateway's side of an openai-rq queue.
#[derive(Debug)]
pub struct RedisBackend {
    name: Arc<str>,
    pool: Pool,
    timeout: Duration,
    pickup_timeout: Duration,
}

impl RedisBackend {
    /// Builds the backend; no connection is made until the first request.
    pub fn new(name: &str, settings: &RedisSettings) -> Result<Self, String> {
        let client = redis::Client::open(settings.url.expose_secret())
            .map_err(|e| format!("backend `{name}`: invalid `redis_url` ({})", e.category()))?;
        Ok(RedisBackend {
            name: Arc::from(name),
            pool: Pool::new(client),
            timeout: settings.timeout,
            pickup_timeout: settings.pickup_timeout,
        })
    }

    fn unavailable(&self, err: &redis::RedisError) -> GatewayError {
        queue_unavailable(&self.name, err)
    }

    /// Queues a job and waits for its answer; `stream` picks the result stream.
    async fn relay(&self, job: OutgoingJob) -> Result<UpstreamReply, GatewayError> {
        let deadline = Instant::now() + self.timeout;
        // Reconnecting rides out a Redis restart, but an outage is a quick 503 for the client
        // (which its SDK retries), not a wait of the whole `timeout`.
        let connect_by = deadline.min(Instant::now() + CONNECT_BUDGET);
        let lease = self
            .pool
            .lease(connect_by)
            .await
            .map_err(|e| self.unavailable(&e))?;
        self.queue_and_wait(lease, &job, deadline)
            .await
            .map_err(|e| self.unavailable(&e))?
    }

    /// `XADD`, then the first wait. Two round trips, not one pipeline: in a pipeline Redis
    /// runs the blocking read even when `XADD` fails (READONLY after a failover, OOM), and the
    /// client would wait its whole `timeout` for a job that was never queued.
    async fn queue_and_wait(
        &self,
        mut lease: Lease,
        job: &OutgoingJob,
        deadline: Instant,
    ) -> redis::RedisResult<Result<UpstreamReply, GatewayError>> {
        let mut add = redis::cmd("XADD");
        add.arg(job::REQUESTS_STREAM)
            .arg("MAXLEN")
            .arg("~")
            .arg(job::STREAM_MAXLEN)
            .arg("*")
            .arg("data")
            .arg(&job.data);
        crate::observe::exchange::sent();
        let entry_id: String = match tokio::time::timeout(REDIS_GRACE, lease.cmd(&add)).await {
            Ok(added) => added?,
            Err(_) => return Ok(Err(self.timeout_error("Redis to queue the job"))),
        };
        if job.stream {
            let first: Option<StreamReadReply> = match self
                .wait_answer(&mut lease, job, &entry_id, deadline)
                .await?
            {
                Ok(first) => first,
                Err(err) => return Ok(Err(err)),
            };
            crate::observe::exchange::answered();
            let mut reader = ResultReader::new(
                lease,
                self.pool.clone(),
                self.name.clone(),
                job.id.clone(),
                entry_id,
                self.timeout,
            );
            reader.push_reply(first);
            Ok(self.stream_reply(reader, job.endpoint_is_raw).await)
        } else {
            let popped: Option<(String, Vec<u8>)> = match self
                .wait_answer(&mut lease, job, &entry_id, deadline)
                .await?
            {
                Ok(popped) => popped,
                Err(err) => return Ok(Err(err)),
            };
            crate::observe::exchange::answered();
            let Some((_, raw)) = popped else {
                // Nobody will read the answer now: take the job back so no worker runs it
                // (or, when one already is, so its claim lapses and it stops).
                forget_job(&mut lease, &entry_id, None).await;
                return Ok(Err(self.timeout_error("the worker's answer")));
            };
            Ok(match job::decode_result(&raw) {
                Ok(answer) => self.full_reply(answer, &job.id),
                Err(message) => Err(self.protocol_error(message)),
            })
        }
    }

    /// The first wait for the answer (the first stream entries, or the whole result). Waits
    /// of at most `pickup_timeout` at first: when one ends empty and no worker has taken the
    /// job, the job is withdrawn and the request fails (and fails over); once taken, the wait
    /// goes on to the deadline. `None` when the deadline passed without an answer.
    async fn wait_answer<T: redis::FromRedisValue>(
        &self,
        lease: &mut Lease,
        job: &OutgoingJob,
        entry_id: &str,
        deadline: Instant,
    ) -> redis::RedisResult<Result<Option<T>, GatewayError>> {
        let mut taken = false;
        loop {
            let now = Instant::now();
            let until = if taken {
                deadline
            } else {
                deadline.min(now + self.pickup_timeout)
            };
            let wait = until.saturating_duration_since(now);
            let pipe = answer_wait(job, wait);
            let guarded = tokio::time::timeout(wait + REDIS_GRACE, lease.pipe(&pipe)).await;
            let (reply,): (Option<T>,) = match guarded {
                Ok(reply) => reply?,
                Err(_) => return Ok(Err(self.timeout_error("the worker's answer"))),
            };
            if reply.is_some() || taken || Instant::now() >= deadline {
                return Ok(Ok(reply));
            }
            if pickup::withdraw_unless_taken(lease, entry_id).await? {
                tracing::warn!(backend = %self.name, job = %job.id, "no worker took the job within pickup_timeout: withdrawn");
                return Ok(Err(self.timeout_error("a worker to take the job")));
            }
            taken = true;
        }
    }

    fn full_reply(&self, answer: Answer, job_id: &str) -> Result<UpstreamReply, GatewayError> {
        let status = status_of(answer.status);
        if !status.is_success() {
            return Err(self.failure(answer.status, &answer.headers, answer.body, job_id));
        }
        Ok(UpstreamReply {
            status,
            headers: actix_headers(&answer.headers),
            body: ReplyBody::Full(answer.body),
        })
    }

    /// Waits for the head of a result stream, then hands the rest over as a body stream.
    async fn stream_reply(
        &self,
        mut reader: ResultReader,
        raw: bool,
    ) -> Result<UpstreamReply, GatewayError> {
        let (status, headers) = loop {
            match reader.next_entry().await? {
                job::Entry::Head { status, headers } => break (status, headers),
                job::Entry::Error {
                    status,
                    headers,
                    body,
                } => {
                    reader.finish().await;
                    return Err(self.failure(status, &headers, body, reader.job_id()));
                }
                job::Entry::Other => {}
                job::Entry::Data(_) | job::Entry::Done => {
                    return Err(self
                        .protocol_error("the result stream did not start with `head`".to_owned()));
                }
            }
        };
        if !(200..300).contains(&status) {
            // An upstream error: its body follows in one `error` entry.
            let body = loop {
                match reader.next_entry().await? {
                    job::Entry::Error { body, .. } => break body,
                    job::Entry::Data(bytes) => break bytes,
                    job::Entry::Done => break Bytes::new(),
                    job::Entry::Head { .. } | job::Entry::Other => {}
                }
            };
            reader.finish().await;
            return Err(self.failure(status, &headers, body, reader.job_id()));
        }
        let is_sse = headers
            .get("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body_stream = reader.into_stream();
        let body = if is_sse && !raw {
            ReplyBody::EventStream(relay_events(body_stream, &self.name, Reads::HandedOver))
        } else {
            ReplyBody::Raw(body_stream, None)
        };
        Ok(UpstreamReply {
            status: status_of(status),
            headers: actix_headers(&headers),
            body,
        })
    }

    fn failure(
        &self,
        status: u16,
        headers: &WireHeaders,
        body: Bytes,
        job_id: &str,
    ) -> GatewayError {
        failure_of(&self.name, status, headers, body, job_id)
    }

    fn timeout_error(&self, phase: &'static str) -> GatewayError {
        GatewayError::UpstreamTimeout {
            backend: self.name.to_string(),
            phase,
        }
    }

    fn protocol_error(&self, message: String) -> GatewayError {
        GatewayError::UpstreamProtocol {
            backend: self.name.to_string(),
            message,
        }
    }
}

/// A non-2xx answer: a worker's own failure (dead-lettered, upstream unreachable) becomes the
/// gateway's error; an upstream's answer passes through with its status, headers and body.
fn failure_of(
    backend: &str,
    status: u16,
    headers: &WireHeaders,
    body: Bytes,
    job_id: &str,
) -> GatewayError {
    match job::worker_failure(status, headers, &body) {
        Some(WorkerFailure::DeadLettered) => GatewayError::DeadLettered {
            job_id: job_id.to_owned(),
        },
        Some(WorkerFailure::Failed(message)) => GatewayError::UpstreamUnreachable {
            backend: backend.to_owned(),
            message,
        },
        None => GatewayError::UpstreamStatus {
            status: status_of(status),
            headers: actix_headers(headers),
            body,
        },
    }
}

/// A job ready to queue.
struct OutgoingJob {
    id: String,
    data: String,
    stream: bool,
    endpoint_is_raw: bool,
}

impl Backend for RedisBackend {
    async fn send(&self, call: UpstreamCall<'_>) -> Result<UpstreamReply, GatewayError> {
        let (method, endpoint_is_raw) = match call.endpoint {
            Endpoint::Raw { method, .. } => (method.as_str(), true),
            Endpoint::ChatCompletions | Endpoint::Embeddings | Endpoint::Completions => {
                ("POST", false)
            }
        };
        let stream =
            call.stream || (endpoint_is_raw && wants_stream(call.client_headers, &call.body));
        let mut path = String::with_capacity(3 + call.endpoint.path().len());
        path.push_str("/v1");
        path.push_str(call.endpoint.path());
        let id = job::new_job_id();
        let data = job::encode_job(
            &id,
            method,
            &path,
            &job_headers(call.client_headers),
            &call.body,
            stream,
        );
        self.relay(OutgoingJob {
            id,
            data,
            stream,
            endpoint_is_raw,
        })
        .await
    }

    async fn list_models(&self) -> Result<Vec<DiscoveredModel>, GatewayError> {
        let id = job::new_job_id();
        let data = job::encode_job(&id, "GET", "/v1/models", &WireHeaders::new(), b"", false);
        let reply = self
            .relay(OutgoingJob {
                id,
                data,
                stream: false,
                endpoint_is_raw: true,
            })
            .await?;
        let ReplyBody::Full(body) = reply.body else {
            return Ok(Vec::new());
        };
        super::openai::parse_model_list(&body, &self.name)
    }
}

/// The request headers frozen into a job: lowercase, repeated ones joined, connection-level
/// ones and every credential left out. The client's `Authorization` is the gateway's business
/// (a gateway key, or a dummy the SDK insists on); the inference server's credential belongs
/// to the worker, which adds it at relay time. So no secret is ever written to Redis.
pub fn job_headers(client: &HeaderMap) -> WireHeaders {
    let mut out = WireHeaders::new();
    let named = http::connection_options(client.get_all("connection").map(|v| v.as_bytes()));
    for (name, value) in client {
        if job::header_goes_in_job(name.as_str()) && !named.iter().any(|x| x == name.as_str()) {
            job::push_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    out
}

/// Whether a pass-through request asks for a stream, decided as the Python client does: an
/// `accept: text/event-stream`, or a truthy top-level `"stream"` in a JSON body.
fn wants_stream(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("accept").is_some_and(|v| v.starts_with("text/event-stream")) {
        return true;
    }
    if !header("content-type").is_some_and(|v| v.contains("application/json")) {
        return false;
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        stream: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(Probe {
            stream: Some(serde_json::Value::Bool(b)),
        }) => b,
        Ok(Probe {
            stream: Some(serde_json::Value::Number(n)),
        }) => n.as_f64().is_some_and(|f| f != 0.0),
        Ok(Probe {
            stream: Some(serde_json::Value::String(s)),
        }) => !s.is_empty(),
        _ => false,
    }
}

/// Deletes a job nobody waits for any more (and its result stream, if any). A worker running
/// it sees its claim lapse at the next refresh and stops relaying.
async fn forget_job(lease: &mut Lease, entry_id: &str, stream_key: Option<&str>) {
    let mut pipe = redis::pipe();
    pipe.cmd("XDEL")
        .arg(job::REQUESTS_STREAM)
        .arg(entry_id)
        .ignore();
    if let Some(key) = stream_key {
        pipe.cmd("DEL").arg(key).ignore();
    }
    let _ = tokio::time::timeout(REDIS_GRACE, lease.pipe::<()>(&pipe)).await;
}

/// A Redis failure as the client sees it. The message is the error's category and detail,
/// never the URL (which may hold a password).
pub(crate) fn queue_unavailable(backend: &str, err: &redis::RedisError) -> GatewayError {
    let text = err.to_string();
    // The URL (and its password) is never part of the message.
    let message = if text.contains("://") || text.contains('@') {
        err.category().to_owned()
    } else {
        text
    };
    GatewayError::QueueUnavailable {
        backend: backend.to_owned(),
        message,
    }
}

fn status_of(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// Wire headers as response headers, connection-level ones dropped.
fn actix_headers(wire: &WireHeaders) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(wire.len());
    let named = http::connection_options(wire.get("connection").map(|v| v.as_bytes()));
    for (name, value) in wire {
        if !job::header_goes_in_result(name)
            || named.contains(name)
            || name == "content-encoding" && value == "identity"
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.append(name, value);
        }
    }
    out
}

/// The blocking read of a job's answer: `XREAD` of its result stream, or `BLPOP` of its result.
fn answer_wait(job: &OutgoingJob, wait: Duration) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    if job.stream {
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(64)
            .arg("BLOCK")
            .arg(block_ms(wait))
            .arg("STREAMS")
            .arg(job::stream_key(&job.id))
            .arg("0");
    } else {
        pipe.cmd("BLPOP")
            .arg(job::result_key(&job.id))
            .arg(wait.as_secs_f64().max(0.01));
    }
    pipe
}

/// `XREAD BLOCK` milliseconds for a wait (0 would mean forever).
fn block_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_connection_headers_never_enter_a_job() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer sk-gateway-key"),
            ("x-api-key", "k"),
            ("cookie", "c"),
            ("connection", "keep-alive"),
            ("content-length", "2"),
            ("accept-encoding", "gzip"),
            ("content-type", "application/json"),
            ("x-request-id", "r1"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        h.append(
            HeaderName::from_static("x-multi"),
            HeaderValue::from_static("a"),
        );
        h.append(
            HeaderName::from_static("x-multi"),
            HeaderValue::from_static("b"),
        );
        h.append(
            HeaderName::from_static("connection"),
            HeaderValue::from_static("X-Hop"),
        );
        h.append(
            HeaderName::from_static("x-hop"),
            HeaderValue::from_static("named by connection"),
        );
        let out = job_headers(&h);
        let names: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(names, ["content-type", "x-multi", "x-request-id"]);
        assert_eq!(out["x-multi"], "a, b");
    }

    #[test]
    fn result_headers_named_by_connection_are_dropped() {
        let wire = WireHeaders::from([
            ("connection".to_owned(), "x-worker-hop, close".to_owned()),
            ("x-worker-hop".to_owned(), "1".to_owned()),
            ("x-kept".to_owned(), "1".to_owned()),
        ]);
        let out = actix_headers(&wire);
        assert!(out.get("x-worker-hop").is_none() && out.get("connection").is_none());
        assert_eq!(out.get("x-kept").unwrap(), "1");
    }

    #[test]
    fn pass_through_streams_are_recognised_like_the_python_client() {
        let json = |accept: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/json"),
            );
            if let Some(a) = accept {
                h.insert(
                    HeaderName::from_static("accept"),
                    HeaderValue::from_static(a),
                );
            }
            h
        };
        assert!(wants_stream(&json(None), br#"{"model":"m","stream":true}"#));
        assert!(!wants_stream(
            &json(None),
            br#"{"model":"m","stream":false}"#
        ));
        assert!(!wants_stream(&json(None), br#"{"model":"m"}"#));
        assert!(wants_stream(&json(Some("text/event-stream")), b""));
        assert!(!wants_stream(&HeaderMap::new(), br#"{"stream":true}"#));
    }
}
