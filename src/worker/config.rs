//! What `switchyard worker` is configured with, and its defaults.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::backends::redis::job;

/// Everything `switchyard worker` is configured with.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The Redis holding the queue (may hold a password).
    pub redis_url: SecretString,
    /// The inference server, OpenAI-SDK style (`http://localhost:8000/v1`).
    pub openai_base_url: Url,
    /// Sent as `Authorization: Bearer`, replacing any the job carries.
    pub openai_api_key: Option<SecretString>,
    /// Extra upstream headers, replacing the job's of the same name.
    pub openai_headers: Vec<(String, SecretString)>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Consumer group.
    pub group: String,
    /// This worker's consumer name.
    pub consumer: String,
    /// Coalescing window of stream entries.
    pub stream_flush: Duration,
    /// TTL of result keys, in seconds.
    pub result_ttl_s: u64,
    /// Deliveries beyond this dead-letter a job.
    pub max_retries: u64,
    /// A job pending this long without a claim refresh is an orphan, reclaimed.
    pub reclaim_idle: Duration,
    /// How long running jobs may finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Time allowed for upstream response headers, a whole body, and between stream reads.
    pub upstream_timeout: Duration,
    /// Cap of the dead-letter stream.
    pub dead_letter_maxlen: u64,
    /// Longest `XREADGROUP BLOCK`.
    pub block: Duration,
}

impl WorkerConfig {
    /// The defaults of `switchyard worker` (those of openai-rq where it has the flag).
    pub fn new(redis_url: SecretString, openai_base_url: Url) -> Self {
        WorkerConfig {
            redis_url,
            openai_base_url,
            openai_api_key: None,
            openai_headers: Vec::new(),
            concurrency: 16,
            group: job::DEFAULT_GROUP.to_owned(),
            consumer: default_consumer(),
            stream_flush: Duration::from_millis(50),
            result_ttl_s: 600,
            max_retries: 3,
            reclaim_idle: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            upstream_timeout: Duration::from_secs(600),
            dead_letter_maxlen: 10_000,
            block: Duration::from_secs(1),
        }
    }
}

/// `<hostname>/<pid>`, as the Python worker names itself.
pub fn default_consumer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}/{}", std::process::id())
}
