//! Replaying one job against the inference server and writing its answer back to Redis: the
//! part of `switchyard worker` that runs inside a job's task.
//!
//! Every key is written together with its `EXPIRE` (a stream key has a TTL from its first
//! entry), and a job's last write, its `XACK` and the `XDEL` of the job go in one `MULTI`, so a
//! worker that dies can never leave an answered job pending (it would be run twice).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use url::Url;

use crate::adapters::sse::SseFramer;
use crate::backends::redis::job::{self, Entry, Job, WireHeaders};
use crate::backends::{http, upstream_path};

/// Largest batch of SSE bytes held before a flush, whatever the window.
const MAX_BATCH: usize = 32 * 1024;

/// How one job ended, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (any status) and the answer was written.
    Answered(u16),
    /// The upstream could not be reached or broke off; a 502 was written.
    Failed,
    /// A re-run of a stream that already had output: ended with an error, not re-run.
    Interrupted,
    /// A re-run of a job already answered in full: only acknowledged.
    AlreadyAnswered,
    /// Redis refused the answer; the job stays pending for a later attempt.
    RedisLost,
}

/// The worker's HTTP side: where and how jobs are replayed.
#[derive(Debug)]
pub struct Upstream {
    /// Pooled HTTP client.
    pub client: reqwest::Client,
    /// `--openai-base-url`.
    pub base: Url,
    /// `Authorization: Bearer <--openai-api-key>`, marked sensitive.
    pub auth: Option<HeaderValue>,
    /// `--openai-header` pairs, values marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Time allowed for response headers, a whole body, and between two stream reads.
    pub timeout: Duration,
}

/// What a job task needs from Redis.
pub struct Sink {
    /// Shared connection for writes (never blocking commands).
    pub conn: ConnectionManager,
    /// The consumer group.
    pub group: String,
    /// TTL of result keys.
    pub ttl_s: u64,
    /// Coalescing window of stream entries.
    pub flush: Duration,
}

impl Upstream {
    /// A job's headers minus hop-by-hop ones (and those its `Connection` names), with the
    /// worker's key and `--openai-header`s applied.
    fn request_headers(&self, job: &WireHeaders) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(job.len() + self.headers.len() + 1);
        // The job's own `Authorization` goes when the worker has no key of its own (the
        // gateway never writes one; a Python client may).
        http::forward_headers(
            &mut headers,
            job.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            job.get("connection").map(|v| v.as_bytes()),
            true,
        );
        if let Some(auth) = &self.auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }

    /// Sends a job upstream (to `url`, from `join_url`) and waits for the response headers.
    async fn call(&self, job: &Job, url: Url) -> Result<reqwest::Response, String> {
        let method = reqwest::Method::from_bytes(job.method.as_bytes())
            .map_err(|_| format!("invalid method {:?}", job.method))?;
        let request = self
            .client
            .request(method, url)
            .headers(self.request_headers(&job.headers))
            .body(job.body.clone());
        match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(error_chain(&err)),
            Err(_) => Err("timed out waiting for the response headers".to_owned()),
        }
    }
}

/// The upstream URL of a job: its path below `/v1` is appended to `--openai-base-url`, so a
/// server mounted under a prefix is reached and `/v1` is never doubled. With a base URL that
/// has no path, the job's path goes to the origin as it is (the Python worker's rule).
///
/// Whoever can write to Redis can submit jobs, but never outside the base URL, where the
/// worker's credential would follow: a path with a `.`/`..` segment or a backslash (in any
/// encoding), and one outside `/v1` when the base URL has a path, are refused.
pub fn join_url(base: &Url, path_and_query: &str) -> Result<Url, &'static str> {
    // The job's whole path is checked (so one that does not start with `/` is refused even
    // when nothing is left of it below `/v1`).
    upstream_path::check(path_and_query)?;
    let base_path = base.path().trim_end_matches('/');
    if base_path.is_empty() {
        return http::join_below(base, "", path_and_query);
    }
    let below_v1 = path_and_query
        .strip_prefix("/v1")
        .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?']));
    match below_v1 {
        Some(rest) => http::join_below(base, base_path, rest),
        None => Err("the path is outside `/v1`, so outside the worker's base URL"),
    }
}

/// The 400 a job gets when its path is refused, OpenAI-shaped like the gateway's own.
fn refused_path(path: &str, reason: &str) -> (u16, WireHeaders, Bytes) {
    let message = format!("the path `{path}` is not allowed: {reason}");
    let body =
        crate::schema::ErrorBody::new(message, "invalid_request_error", None, Some("invalid_path"));
    let headers = WireHeaders::from([("content-type".to_owned(), "application/json".to_owned())]);
    (400, headers, body.to_bytes())
}

/// Replays one job and writes its answer. `redelivered` says an earlier attempt may have
/// written part of it.
pub async fn replay(
    up: &Upstream,
    sink: &mut Sink,
    entry_id: &str,
    job: &Job,
    redelivered: bool,
) -> Outcome {
    let url = match join_url(&up.base, &job.path) {
        Ok(url) => url,
        Err(reason) => return refuse(sink, entry_id, job, reason).await,
    };
    if job.stream {
        replay_stream(up, sink, entry_id, job, url, redelivered).await
    } else {
        replay_full(up, sink, entry_id, job, url).await
    }
}

/// Answers a job whose path is refused with a 400, as the gateway answers such a request.
async fn refuse(sink: &mut Sink, entry_id: &str, job: &Job, reason: &str) -> Outcome {
    tracing::warn!(job = %job.id, reason, "job refused: its path could leave the base URL");
    let (status, headers, body) = refused_path(&job.path, reason);
    let pipe = if job.stream {
        let key = job::stream_key(&job.id);
        sink.entry(&key, &job::encode_error(status, &headers, &body))
    } else {
        sink.result(&job.id, &job::encode_result(status, &headers, &body))
    };
    sink.finish(pipe, entry_id, Outcome::Answered(status)).await
}

async fn replay_full(
    up: &Upstream,
    sink: &mut Sink,
    entry_id: &str,
    job: &Job,
    url: Url,
) -> Outcome {
    let (status, headers, body, outcome) = match up.call(job, url).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = result_headers(response.headers());
            match tokio::time::timeout(up.timeout, response.bytes()).await {
                Ok(Ok(body)) => (status, headers, body, Outcome::Answered(status)),
                Ok(Err(err)) => failure(&format!("openai-rq backend error: {}", error_chain(&err))),
                Err(_) => failure("openai-rq backend error: timed out reading the body"),
            }
        }
        Err(reason) => failure(&format!("openai-rq backend error: {reason}")),
    };
    let pipe = sink.result(&job.id, &job::encode_result(status, &headers, &body));
    sink.finish(pipe, entry_id, outcome).await
}

fn failure(text: &str) -> (u16, WireHeaders, Bytes, Outcome) {
    (
        502,
        job::text_plain(),
        Bytes::from(text.to_owned()),
        Outcome::Failed,
    )
}

async fn replay_stream(
    up: &Upstream,
    sink: &mut Sink,
    entry_id: &str,
    job: &Job,
    url: Url,
    redelivered: bool,
) -> Outcome {
    let key = job::stream_key(&job.id);
    if redelivered && let Some(outcome) = after_earlier_attempt(sink, entry_id, &key).await {
        return outcome;
    }
    let response = match up.call(job, url).await {
        Ok(response) => response,
        Err(reason) => {
            let body = format!("openai-rq stream error: {reason}");
            let pipe = sink.entry(
                &key,
                &job::encode_error(502, &job::text_plain(), body.as_bytes()),
            );
            return sink.finish(pipe, entry_id, Outcome::Failed).await;
        }
    };
    let status = response.status().as_u16();
    let headers = result_headers(response.headers());
    if sink
        .write(sink.entry(&key, &job::encode_head(status, &headers)))
        .await
        .is_err()
    {
        return Outcome::RedisLost;
    }
    if !(200..300).contains(&status) {
        let body = match tokio::time::timeout(up.timeout, response.bytes()).await {
            Ok(Ok(body)) => body,
            _ => Bytes::new(),
        };
        let pipe = sink.entry(&key, &job::encode_error(status, &headers, &body));
        return sink.finish(pipe, entry_id, Outcome::Answered(status)).await;
    }
    relay_body(sink, entry_id, &key, response, status).await
}

/// What a re-delivered stream job's earlier attempt left decides what happens now: `None` to
/// run it (nothing was written), else the outcome of answering it without a re-run.
async fn after_earlier_attempt(sink: &mut Sink, entry_id: &str, key: &str) -> Option<Outcome> {
    match sink.earlier_attempt(key).await {
        Ok(Earlier::Nothing) => None,
        Ok(Earlier::Answered) => Some(
            sink.finish(redis::pipe(), entry_id, Outcome::AlreadyAnswered)
                .await,
        ),
        Ok(Earlier::PartOfAnswer) => {
            let text = "openai-rq: the worker relaying this stream stopped after part of \
                        the answer was sent; it is not re-run, to avoid duplicated text";
            let pipe = sink.entry(key, &job::encode_stream_failure(text));
            Some(sink.finish(pipe, entry_id, Outcome::Interrupted).await)
        }
        Err(_) => Some(Outcome::RedisLost),
    }
}

/// Relays a 2xx stream's body to the job's result stream in batches (see `Batcher`), then its
/// end: `done`, or an error entry when the upstream broke off.
async fn relay_body(
    sink: &mut Sink,
    entry_id: &str,
    key: &str,
    response: reqwest::Response,
    status: u16,
) -> Outcome {
    let mut body = response.bytes_stream();
    let mut batcher = Batcher::new(sink.flush);
    loop {
        let deadline = batcher.deadline();
        let next = tokio::select! {
            chunk = body.next() => chunk,
            _ = sleep_until(deadline), if deadline.is_some() => {
                if let Some(bytes) = batcher.take() && sink.write(sink.entry(key, &job::encode_data(&bytes))).await.is_err() {
                    return Outcome::RedisLost;
                }
                continue;
            }
        };
        match next {
            Some(Ok(chunk)) => {
                if let Some(bytes) = batcher.push(chunk, Instant::now())
                    && sink
                        .write(sink.entry(key, &job::encode_data(&bytes)))
                        .await
                        .is_err()
                {
                    return Outcome::RedisLost;
                }
            }
            Some(Err(err)) => {
                let mut pipe = redis::pipe();
                if let Some(bytes) = batcher.finish() {
                    pipe = sink.entry_into(pipe, key, &job::encode_data(&bytes));
                }
                let text = format!("openai-rq stream error: {}", error_chain(&err));
                let pipe = sink.entry_into(pipe, key, &job::encode_stream_failure(&text));
                return sink.finish(pipe, entry_id, Outcome::Failed).await;
            }
            None => {
                let mut pipe = redis::pipe();
                if let Some(bytes) = batcher.finish() {
                    pipe = sink.entry_into(pipe, key, &job::encode_data(&bytes));
                }
                let pipe = sink.entry_into(pipe, key, job::encode_done());
                return sink.finish(pipe, entry_id, Outcome::Answered(status)).await;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

/// What an earlier attempt at a stream job left in its result stream.
enum Earlier {
    Nothing,
    PartOfAnswer,
    Answered,
}

impl Sink {
    /// `RPUSH` of a non-stream result with its `EXPIRE`, as a pipeline.
    fn result(&self, job_id: &str, result: &str) -> redis::Pipeline {
        let key = job::result_key(job_id);
        let mut pipe = redis::pipe();
        pipe.cmd("RPUSH")
            .arg(&key)
            .arg(result)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.ttl_s)
            .ignore();
        pipe
    }

    /// `XADD` of one entry to a result stream with its `EXPIRE`, as a pipeline.
    fn entry(&self, key: &str, data: &str) -> redis::Pipeline {
        self.entry_into(redis::pipe(), key, data)
    }

    fn entry_into(&self, mut pipe: redis::Pipeline, key: &str, data: &str) -> redis::Pipeline {
        pipe.cmd("XADD")
            .arg(key)
            .arg("MAXLEN")
            .arg("~")
            .arg(job::STREAM_MAXLEN)
            .arg("*")
            .arg("data")
            .arg(data)
            .ignore()
            .cmd("EXPIRE")
            .arg(key)
            .arg(self.ttl_s)
            .ignore();
        pipe
    }

    async fn write(&mut self, pipe: redis::Pipeline) -> redis::RedisResult<()> {
        pipe.exec_async(&mut self.conn).await
    }

    /// Writes the job's last entries, acknowledges and deletes the job, all in one `MULTI`.
    async fn finish(
        &mut self,
        mut pipe: redis::Pipeline,
        entry_id: &str,
        outcome: Outcome,
    ) -> Outcome {
        pipe.atomic()
            .cmd("XACK")
            .arg(job::REQUESTS_STREAM)
            .arg(&self.group)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(job::REQUESTS_STREAM)
            .arg(entry_id)
            .ignore();
        // One retry rides out a reconnection (the manager reconnects in the background).
        for attempt in 0..2 {
            match pipe.exec_async(&mut self.conn).await {
                Ok(()) => return outcome,
                Err(err) if attempt == 0 => {
                    tracing::debug!(error = %err, "writing an answer failed; retrying once");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot write an answer to Redis; the job stays pending");
                }
            }
        }
        Outcome::RedisLost
    }

    async fn earlier_attempt(&mut self, key: &str) -> redis::RedisResult<Earlier> {
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut self.conn)
            .await?;
        let mut earlier = Earlier::Nothing;
        for id in entries.ids {
            let data: Option<Vec<u8>> = id.get("data");
            match data.as_deref().map(job::decode_entry) {
                Some(Ok(Entry::Done | Entry::Error { .. })) => return Ok(Earlier::Answered),
                Some(Ok(Entry::Data(_))) => earlier = Earlier::PartOfAnswer,
                _ => {}
            }
        }
        Ok(earlier)
    }
}

/// Batches SSE bytes into stream entries: cut only at event boundaries (LF or CRLF framing);
/// an entry goes out at once when the last one is older than the window (so the first event of
/// a stream is never held), else when the window since the last entry closes, on a timer,
/// whether or not more bytes arrive. Pure: the caller owns the clock and the timer.
#[derive(Debug)]
pub struct Batcher {
    framer: SseFramer,
    batch: BytesMut,
    last_flush: Option<Instant>,
    window: Duration,
}

impl Batcher {
    /// A batcher with the given coalescing window.
    pub fn new(window: Duration) -> Self {
        Batcher {
            framer: SseFramer::new(),
            batch: BytesMut::new(),
            last_flush: None,
            window,
        }
    }

    /// Feeds one read; returns a batch to write now, if one is due.
    pub fn push(&mut self, chunk: Bytes, now: Instant) -> Option<Bytes> {
        let events = self.framer.push(chunk)?;
        self.batch.extend_from_slice(&events);
        let due = match self.last_flush {
            None => true,
            Some(at) => now >= at + self.window,
        };
        (due || self.batch.len() >= MAX_BATCH).then(|| self.flush(now))
    }

    /// When the held batch must be written, if one is held.
    pub fn deadline(&self) -> Option<Instant> {
        if self.batch.is_empty() {
            return None;
        }
        Some(
            self.last_flush
                .map_or_else(Instant::now, |at| at + self.window),
        )
    }

    /// The held batch (the timer fired).
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.batch.is_empty()).then(|| self.flush(Instant::now()))
    }

    /// Everything left at the end of the body, a last event without its blank line included.
    pub fn finish(&mut self) -> Option<Bytes> {
        if let Some(rest) = self.framer.finish() {
            self.batch.extend_from_slice(&rest);
        }
        (!self.batch.is_empty()).then(|| self.batch.split().freeze())
    }

    fn flush(&mut self, now: Instant) -> Bytes {
        self.last_flush = Some(now);
        self.batch.split().freeze()
    }
}

/// Response headers kept in a result.
fn result_headers(headers: &HeaderMap) -> WireHeaders {
    let mut out = WireHeaders::new();
    let named =
        http::connection_options(headers.get_all("connection").iter().map(|v| v.as_bytes()));
    for (name, value) in headers {
        if job::header_goes_in_result(name.as_str()) && !named.iter().any(|x| x == name.as_str()) {
            job::push_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    out
}

/// Why a request failed, from its cause chain, without the URL.
fn error_chain(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    crate::backends::http::cause_chain(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_joined_below_the_base_url_without_doubling_v1() {
        let j = |base: &str, path: &str| {
            join_url(&Url::parse(base).unwrap(), path)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            j("http://localhost:8000/v1", "/v1/chat/completions"),
            "http://localhost:8000/v1/chat/completions"
        );
        assert_eq!(
            j("http://h:1/v1/", "/v1/files?purpose=batch"),
            "http://h:1/v1/files?purpose=batch"
        );
        assert_eq!(
            j("https://h/openai/v1", "/v1/embeddings"),
            "https://h/openai/v1/embeddings"
        );
        assert_eq!(j("http://h:8000", "/v1/models"), "http://h:8000/v1/models");
        assert_eq!(
            j("http://h/api", "/v1/chat/completions"),
            "http://h/api/chat/completions"
        );
        assert_eq!(j("http://h/v1", "/v1?x=1"), "http://h/v1?x=1");
        assert_eq!(j("http://h:8000", "/health"), "http://h:8000/health");
    }

    #[test]
    fn job_headers_named_by_connection_and_the_jobs_credential_stay_behind() {
        let up = Upstream {
            client: reqwest::Client::new(),
            base: Url::parse("http://h/v1").unwrap(),
            auth: Some(HeaderValue::from_static("Bearer sk-worker")),
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
        };
        let job = WireHeaders::from([
            ("connection".to_owned(), "X-Hop, keep-alive".to_owned()),
            ("x-hop".to_owned(), "1".to_owned()),
            ("te".to_owned(), "trailers".to_owned()),
            ("authorization".to_owned(), "Bearer sk-client".to_owned()),
            ("x-kept".to_owned(), "1".to_owned()),
        ]);
        let out = up.request_headers(&job);
        let mut names: Vec<&str> = out.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "x-kept"]);
        assert_eq!(out["authorization"], "Bearer sk-worker");
    }

    #[test]
    fn a_job_path_that_would_leave_the_base_url_is_refused() {
        let base = Url::parse("http://h:8000/v1").unwrap();
        for path in [
            "/v1/../../admin/x",
            "/v1/%2e%2e/%2e%2e/admin",
            "/v1/%2E%2e/admin",
            "/v1/..\\..\\admin",
            "/health",
            "/v10/x",
            "@evil.example/v1/x",
        ] {
            assert!(join_url(&base, path).is_err(), "{path}");
        }
        let root = Url::parse("http://h:8000").unwrap();
        assert!(join_url(&root, "/v1/../admin").is_err());
    }

    #[test]
    fn the_first_event_goes_at_once_and_later_ones_within_the_window() {
        let window = Duration::from_millis(50);
        let mut b = Batcher::new(window);
        let t0 = Instant::now();
        // First event: written at once, not held for the next one.
        assert_eq!(
            b.push(Bytes::from_static(b"data: 1\n\n"), t0).unwrap(),
            &b"data: 1\n\n"[..]
        );
        // Second event 10 ms later: held, with a timer at the end of the window.
        assert!(
            b.push(
                Bytes::from_static(b"data: 2\n\n"),
                t0 + Duration::from_millis(10)
            )
            .is_none()
        );
        assert_eq!(b.deadline(), Some(t0 + window));
        // The timer fires with no new bytes: the held event goes.
        assert_eq!(b.take().unwrap(), &b"data: 2\n\n"[..]);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn crlf_events_are_cut_at_their_boundary_not_held_to_the_end() {
        let mut b = Batcher::new(Duration::from_millis(50));
        let t0 = Instant::now();
        assert_eq!(
            b.push(Bytes::from_static(b"data: a\r\n\r\ndata: b"), t0)
                .unwrap(),
            &b"data: a\r\n\r\n"[..]
        );
        let later = t0 + Duration::from_millis(60);
        assert_eq!(
            b.push(Bytes::from_static(b"\r\n\r\n"), later).unwrap(),
            &b"data: b\r\n\r\n"[..]
        );
        assert!(b.push(Bytes::from_static(b"data: [DONE]"), later).is_none());
        assert_eq!(b.finish().unwrap(), &b"data: [DONE]"[..]);
    }
}
