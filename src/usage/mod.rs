//! Usage accounting: what each request cost, recorded off the request path.
//!
//! Every request served by the typed flow (chat, embeddings, legacy completions) yields one
//! `Record`: who asked (project, key id: never the key), for what (model as asked and as sent,
//! route, backend), how it went (status, streamed or not, latencies) and its tokens, read from
//! the answer as it passes (`meter`, `tokens`). A streamed request whose client did not ask for
//! usage asks the upstream for it anyway (`ask`) and the extra chunk is removed again.
//!
//! Records leave the request through a bounded queue: a full queue drops the record and counts
//! it (`Stats::dropped`), and never makes a request wait. One task drains the queue into the
//! sinks (`sink`): JSONL in a file or on stdout (`[usage] log`), and the store (with `[auth]`),
//! summed per project, key, model and minute and read back by `report`. Shutdown flushes them
//! (`close`).
//!
//! Not here: HTTP (the handlers in `crate::routes` build records), rate limits
//! (`crate::limits::rate`, which the handlers charge with the same tokens).

mod ask;
mod line;
pub mod meter;
pub mod report;
mod sink;
pub mod tokens;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub use ask::ask_for_usage;
pub use meter::{Metered, StreamEnd};
pub use tokens::Tokens;

use crate::config::UsageConfig;
use crate::observe::Metrics;
use crate::store::Store;

/// One request's usage, as written to the log (one JSON object per line).
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When the request arrived, RFC 3339 UTC.
    pub time: String,
    /// The same, in Unix minutes (the store's rows).
    #[serde(skip)]
    pub minute: i64,
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// The caller's project id, with `[auth]`.
    pub project: Option<String>,
    /// The caller's key id (never the key), with `[auth]`.
    pub key_id: Option<String>,
    /// `chat.completions`, `embeddings` or `completions`.
    pub endpoint: &'static str,
    /// The model as the client asked for it.
    pub model: String,
    /// The model as sent upstream.
    pub upstream_model: Option<String>,
    /// The route's prefix.
    pub route: Option<String>,
    /// The backend that answered (the last one tried).
    pub backend: Option<String>,
    /// The status the client got.
    pub status: u16,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// Tokens, when the answer reported them.
    pub usage: Option<Tokens>,
    /// From the upstream send to its response headers (failover attempts included), ms.
    pub upstream_ms: Option<f64>,
    /// The gateway's own time before the upstream send (body, keys, routing, limits), ms.
    pub gateway_ms: f64,
    /// From arrival to the first bytes of a stream, ms.
    pub ttft_ms: Option<f64>,
    /// From arrival to the answer's end, ms.
    pub duration_ms: f64,
}

/// Token sums per project and model, split by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTotals {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// Cached prompt tokens.
    pub cached: u64,
    /// Reasoning tokens.
    pub reasoning: u64,
}

/// Counters of the recorder, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records written to the sink.
    pub written: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Store rows (minute, project, key, model) that could not be written.
    pub store_failed: AtomicU64,
    /// Tokens of written records by (project, model); `""` for no project.
    tokens: Mutex<BTreeMap<(String, String), TokenTotals>>,
}

impl Stats {
    /// Token sums of the written records, by (project, model).
    pub fn tokens_by_project_model(&self) -> BTreeMap<(String, String), TokenTotals> {
        self.tokens.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Counts a written record.
    fn count(&self, record: &Record) {
        self.written.fetch_add(1, Ordering::Relaxed);
        let (Some(usage), Ok(mut sums)) = (record.usage, self.tokens.lock()) else {
            return;
        };
        let key = (
            record.project.clone().unwrap_or_default(),
            record.model.clone(),
        );
        let sum = sums.entry(key).or_default();
        sum.prompt += usage.prompt_tokens;
        sum.completion += usage.completion_tokens;
        sum.cached += usage.cached_tokens;
        sum.reasoning += usage.reasoning_tokens;
    }
}

/// Takes records from requests to the sink.
#[derive(Debug, Default)]
pub struct Recorder {
    queue: Option<mpsc::Sender<Record>>,
    stats: Arc<Stats>,
    stop: Arc<Notify>,
    /// Tells the writer its queue is half full (it is not woken per record).
    filling: Arc<Notify>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Also counts dropped records for `/metrics`, when `[metrics]` is on.
    metrics: Option<Arc<Metrics>>,
}

impl Recorder {
    /// A recorder that records nothing (no `[usage]`).
    pub fn off() -> Self {
        Recorder::default()
    }

    /// Opens the sinks (`config`'s log, and `store` when there is one) and starts draining
    /// into them. Must run in a tokio runtime.
    pub async fn start(config: &UsageConfig, store: Option<Store>) -> std::io::Result<Self> {
        let sink = sink::Sinks::open(config.log.as_ref(), store).await?;
        let (queue, records) = mpsc::channel(config.queue);
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(Notify::new());
        let filling = Arc::new(Notify::new());
        let signals = sink::Signals {
            stop: stop.clone(),
            filling: filling.clone(),
        };
        let writer = tokio::spawn(sink::drain(records, sink, stats.clone(), signals));
        Ok(Recorder {
            queue: Some(queue),
            stats,
            stop,
            filling,
            writer: Mutex::new(Some(writer)),
            metrics: None,
        })
    }

    /// The same recorder, also counting the records it drops in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Whether records are kept (and so usage must be read from every answer).
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `record`; drops and counts it when the queue is full.
    pub fn record(&self, record: Record) {
        let Some(queue) = &self.queue else {
            return;
        };
        if queue.try_send(record).is_ok() {
            if queue.capacity() * 2 <= queue.max_capacity() {
                self.filling.notify_one();
            }
        } else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.usage_dropped();
            }
        }
    }

    /// The recorder's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A recorder writing to `log` through a queue of `queue` records.
    #[cfg(test)]
    async fn for_test(log: &std::path::Path, queue: usize) -> Self {
        let config = UsageConfig {
            log: Some(crate::config::UsageLog::File(log.to_owned())),
            queue,
        };
        Recorder::start(&config, None).await.unwrap()
    }

    /// Writes out every queued record and stops the writer (at shutdown).
    pub async fn close(&self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            self.stop.notify_one();
            if let Err(err) = writer.await {
                tracing::error!(error = %err, "the usage writer failed");
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn record(id: &str) -> Record {
        Record {
            time: "2026-11-30T12:00:00Z".into(),
            minute: 0,
            request_id: id.into(),
            project: Some("p".into()),
            key_id: Some("k".into()),
            endpoint: "chat.completions",
            model: "up/m".into(),
            upstream_model: Some("m".into()),
            route: Some("up/".into()),
            backend: Some("up".into()),
            status: 200,
            streamed: false,
            usage: Some(Tokens {
                prompt_tokens: 2,
                completion_tokens: 1,
                total_tokens: 3,
                ..Tokens::default()
            }),
            upstream_ms: Some(1.0),
            gateway_ms: 0.1,
            ttft_ms: None,
            duration_ms: 1.2,
        }
    }

    /// Lets the writer task run as far as it can without time passing.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn written(recorder: &Recorder) -> u64 {
        recorder.stats().written.load(Ordering::Relaxed)
    }

    // Paused time: the writer's tick moves only when the test advances it.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_busy_writer_is_not_woken_per_record_but_drains_each_tick_or_at_half_a_queue() {
        // No log: no blocking file write runs beside the paused clock; `written` counts.
        let config = UsageConfig {
            log: None,
            queue: 8,
        };
        let recorder = Recorder::start(&config, None).await.unwrap();
        // After a quiet spell, the first record wakes the writer.
        recorder.record(record("r0"));
        settle().await;
        assert_eq!(written(&recorder), 1);
        // While it is busy, records wait for its tick...
        recorder.record(record("r1"));
        recorder.record(record("r2"));
        settle().await;
        assert_eq!(written(&recorder), 1);
        tokio::time::advance(sink::DRAIN_EVERY).await;
        settle().await;
        assert_eq!(written(&recorder), 3);
        // ...unless they fill half the queue.
        for i in 3..7 {
            recorder.record(record(&format!("r{i}")));
        }
        settle().await;
        assert_eq!(written(&recorder), 7);
        // A tick that finds nothing ends the busy spell: the next record wakes it again.
        tokio::time::advance(2 * sink::DRAIN_EVERY).await;
        settle().await;
        recorder.record(record("r7"));
        settle().await;
        assert_eq!(written(&recorder), 8);
        assert_eq!(recorder.stats().dropped.load(Ordering::Relaxed), 0);
        recorder.close().await;
    }

    // One thread: the writer cannot run while the test fills the queue.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts_and_shutdown_writes_what_was_queued() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("usage.jsonl");
        let recorder = Recorder::for_test(&log, 2).await;
        for i in 0..5 {
            recorder.record(record(&format!("r{i}")));
        }
        assert_eq!(recorder.stats().dropped.load(Ordering::Relaxed), 3);

        recorder.close().await;

        let text = std::fs::read_to_string(&log).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].to_string()
            })
            .collect();
        assert_eq!(ids, ["\"r0\"", "\"r1\""]);
        assert_eq!(recorder.stats().written.load(Ordering::Relaxed), 2);
        let sums = recorder.stats().tokens_by_project_model();
        assert_eq!(sums[&("p".to_owned(), "up/m".to_owned())].prompt, 4);
    }
}
