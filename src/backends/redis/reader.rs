//! Reading one result stream (`openai-rq:stream:<id>`) on the gateway side, entry by entry,
//! and relaying it as the client's body.
//!
//! Reads are pulled by the client: nothing is read ahead of what the client consumes, and a
//! client that goes away drops the reader, which closes its connection (so Redis abandons the
//! blocked `XREAD`) and deletes the job, so the worker stops relaying at its next claim refresh.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::streams::StreamReadReply;
use tokio::time::Instant;

use super::job::{self, Entry};
use super::pool::{Lease, Pool};
use super::{REDIS_GRACE, block_ms, failure_of, forget_job, queue_unavailable};
use crate::backends::ByteStream;
use crate::error::GatewayError;

/// A result stream being read.
pub struct ResultReader {
    lease: Lease,
    pool: Pool,
    backend: Arc<str>,
    job_id: String,
    entry_id: String,
    key: String,
    last_id: String,
    queue: VecDeque<Entry>,
    timeout: Duration,
    timed_out: bool,
    bad_entry: Option<String>,
    /// The stream reached its end (`done` or `error`) and was cleaned up.
    finished: bool,
    /// The body stream has yielded its last item.
    ended: bool,
    /// Bytes were relayed to the client (a second `head` can then no longer be hidden).
    sent_data: bool,
}

impl ResultReader {
    /// A reader of job `job_id`'s result stream, on `lease`.
    pub fn new(
        lease: Lease,
        pool: Pool,
        backend: Arc<str>,
        job_id: String,
        entry_id: String,
        timeout: Duration,
    ) -> Self {
        ResultReader {
            lease,
            pool,
            backend,
            key: job::stream_key(&job_id),
            job_id,
            entry_id,
            last_id: "0".to_owned(),
            queue: VecDeque::new(),
            timeout,
            timed_out: false,
            bad_entry: None,
            finished: false,
            ended: false,
            sent_data: false,
        }
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Takes in one `XREAD` reply; `None` means its `BLOCK` ran out.
    pub fn push_reply(&mut self, reply: Option<StreamReadReply>) {
        let Some(reply) = reply else {
            self.timed_out = true;
            return;
        };
        for id in reply.keys.into_iter().flat_map(|k| k.ids) {
            self.last_id = id.id.clone();
            let data: Option<Vec<u8>> = id.get("data");
            match data.as_deref().map(job::decode_entry) {
                Some(Ok(entry)) => self.queue.push_back(entry),
                Some(Err(message)) => {
                    self.bad_entry = Some(message);
                    return;
                }
                // Entries without `data` are not ours to interpret: skipped.
                None => {}
            }
        }
    }

    /// The next entry, waiting for it up to the backend's `timeout`.
    pub async fn next_entry(&mut self) -> Result<Entry, GatewayError> {
        loop {
            if let Some(entry) = self.queue.pop_front() {
                return Ok(entry);
            }
            if let Some(message) = self.bad_entry.take() {
                return Err(GatewayError::UpstreamProtocol {
                    backend: self.backend.to_string(),
                    message,
                });
            }
            if self.timed_out {
                return Err(GatewayError::UpstreamTimeout {
                    backend: self.backend.to_string(),
                    phase: if self.sent_data {
                        "the next stream event"
                    } else {
                        "the worker's answer"
                    },
                });
            }
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(64)
                .arg("BLOCK")
                .arg(block_ms(self.timeout))
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&self.last_id);
            let read = tokio::time::timeout(self.timeout + REDIS_GRACE, self.lease.cmd(&cmd));
            match read.await {
                Ok(Ok(reply)) => self.push_reply(reply),
                Ok(Err(err)) => return Err(queue_unavailable(&self.backend, &err)),
                Err(_) => self.timed_out = true,
            }
        }
    }

    /// The stream reached its end: delete it now rather than leave it to its TTL.
    pub async fn finish(&mut self) {
        self.finished = true;
        self.ended = true;
        let del = redis::cmd("DEL").arg(&self.key).to_owned();
        let _ = tokio::time::timeout(REDIS_GRACE, self.lease.cmd::<()>(&del)).await;
    }

    /// The rest of the stream as the client's body: `data` bytes until `done`; a failure
    /// becomes the stream's last item, an error.
    pub fn into_stream(self) -> ByteStream {
        Box::pin(futures::stream::unfold(self, |mut reader| async move {
            if reader.ended {
                return None;
            }
            let item = reader.next_body_item().await?;
            Some((item, reader))
        }))
    }

    async fn next_body_item(&mut self) -> Option<Result<Bytes, GatewayError>> {
        loop {
            let entry = match self.next_entry().await {
                Ok(entry) => entry,
                Err(err) => {
                    self.ended = true;
                    return Some(Err(err));
                }
            };
            match entry {
                Entry::Data(bytes) => {
                    self.sent_data = true;
                    return Some(Ok(bytes));
                }
                Entry::Done => {
                    self.finish().await;
                    return None;
                }
                Entry::Error {
                    status,
                    headers,
                    body,
                } => {
                    self.finish().await;
                    let err = failure_of(&self.backend, status, &headers, body, &self.job_id);
                    return Some(Err(match err {
                        // An upstream status after a 2xx head is not a pass-through any more.
                        GatewayError::UpstreamStatus { status, body, .. } => {
                            GatewayError::UpstreamUnreachable {
                                backend: self.backend.to_string(),
                                message: format!(
                                    "the answer broke off with status {status}: {}",
                                    String::from_utf8_lossy(&body)
                                        .chars()
                                        .take(300)
                                        .collect::<String>()
                                ),
                            }
                        }
                        other => other,
                    }));
                }
                // A re-run's `head` before anything was relayed is harmless: skip it. After
                // text was relayed, what follows would be a second answer spliced onto the
                // first (the Python worker re-runs such streams): end with an error instead.
                Entry::Head { .. } if self.sent_data => {
                    self.ended = true;
                    return Some(Err(GatewayError::UpstreamProtocol {
                        backend: self.backend.to_string(),
                        message: "the worker restarted this answer after part of it was sent; \
                                  the rest is not relayed, to avoid duplicated text"
                            .to_owned(),
                    }));
                }
                Entry::Head { .. } | Entry::Other => {}
            }
        }
    }
}

impl Drop for ResultReader {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Abandoned (client gone, timeout, Redis error): take the job back so that no worker
        // keeps generating an answer nobody reads. Best effort, off the request path.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        let entry_id = std::mem::take(&mut self.entry_id);
        let key = std::mem::take(&mut self.key);
        handle.spawn(async move {
            let deadline = Instant::now() + REDIS_GRACE;
            if let Ok(mut lease) = pool.lease(deadline).await {
                forget_job(&mut lease, &entry_id, Some(&key)).await;
            }
        });
    }
}
