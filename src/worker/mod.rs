//! `switchyard worker`: consumes openai-rq jobs through the consumer group and replays them
//! against the local inference server (see `relay`), fixing the Python worker's failure modes:
//!
//! - a worker takes only as many jobs as it has free slots, reclaimed jobs included, so no job
//!   waits inside a busy worker while others are idle;
//! - a running job's claim is refreshed on a timer (`XCLAIM … JUSTID`, only while this consumer
//!   still owns it), so a long job is never reclaimed and run twice by a live worker; a job whose
//!   claim was lost, or that its client abandoned, is stopped;
//! - reclaiming is one non-blocking step of the loop, never a run of jobs one by one;
//! - a job that cannot be read is dead-lettered at once, with its reason, and its client, when
//!   it can be identified, gets a 502 rather than a hang;
//! - SIGTERM stops taking jobs and lets running ones finish up to a deadline.
//!
//! Tests drive `Worker::step`; the CLI runs `run_until_stopped`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamReadReply;
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod claims;
mod config;
mod dead_letter;
pub mod metrics;
mod relay;
mod stats;

pub use self::config::{WorkerConfig, default_consumer};
pub use self::stats::{Stats, StatsSnapshot};

use self::claims::{ReclaimSchedule, refresh_claims, refresh_every};
use self::relay::{Sink, Upstream};
use self::stats::{log_stats, report_stats};
use crate::backends::http;
use crate::backends::redis::job;

/// Longest pause between two attempts while Redis is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What one `step` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// A job (by its openai-rq id) was started in a free slot; its answer is written when the
    /// replay ends.
    Replayed(String),
    /// This many orphaned jobs were claimed; the next steps start them (or dead-letter them).
    Reclaimed(usize),
    /// A job (by its request-stream entry id) was dead-lettered.
    DeadLettered(String),
    /// Nothing to do (no job within the block time, stopping, or Redis unreachable).
    Idle,
}

/// What job tasks and the claim refresher share.
struct Shared {
    upstream: Upstream,
    conn: ConnectionManager,
    group: String,
    consumer: String,
    result_ttl_s: u64,
    stream_flush: Duration,
    stats: Stats,
    /// Running jobs by request-stream entry id.
    running: Mutex<HashMap<String, CancellationToken>>,
}

/// An entry taken from the group, holding the slot it will run in.
struct Taken {
    entry_id: String,
    data: Option<Vec<u8>>,
    deliveries: u64,
    slot: OwnedSemaphorePermit,
}

/// A worker: one consumer of the group.
pub struct Worker {
    cfg: WorkerConfig,
    shared: Arc<Shared>,
    reader: ConnectionManager,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    taken: VecDeque<Taken>,
    reclaims: ReclaimSchedule,
    group_ready: bool,
    backoff: Duration,
    redis_down_since: Option<Instant>,
    stop: CancellationToken,
    /// Cancels the running jobs themselves (shutdown deadline passed).
    abort_jobs: CancellationToken,
    /// Ends the claim refresher with the worker.
    refresher: CancellationToken,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.refresher.cancel();
    }
}

impl Worker {
    /// A worker for `cfg`. Redis is connected lazily (and reconnected) by the first steps.
    pub fn new(cfg: WorkerConfig) -> Result<Worker, String> {
        let client = redis::Client::open(cfg.redis_url.expose_secret())
            .map_err(|e| format!("invalid --redis-url ({})", e.category()))?;
        let manager = |response_timeout| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(response_timeout)
                .set_max_delay(Duration::from_secs(2))
                .set_number_of_retries(3);
            ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| format!("cannot set up the Redis connection ({})", e.category()))
        };
        // Writes share one multiplexed connection; blocking reads get their own.
        let conn = manager(Some(Duration::from_secs(10)))?;
        // A blocking read waits at most `block`; past that (plus slack) the connection is
        // half-open, and without a bound the loop, and SIGTERM with it, would wait forever.
        let reader = manager(Some(cfg.block + Duration::from_secs(5)))?;
        let upstream = build_upstream(&cfg)?;
        let shared = Arc::new(Shared {
            upstream,
            conn,
            group: cfg.group.clone(),
            consumer: cfg.consumer.clone(),
            result_ttl_s: cfg.result_ttl_s.max(1),
            stream_flush: cfg.stream_flush,
            stats: Stats::default(),
            running: Mutex::new(HashMap::new()),
        });
        let refresher = CancellationToken::new();
        tokio::spawn(refresh_claims(
            shared.clone(),
            refresh_every(cfg.reclaim_idle),
            refresher.clone(),
        ));
        Ok(Worker {
            slots: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            shared,
            reader,
            tasks: TaskTracker::new(),
            taken: VecDeque::new(),
            reclaims: ReclaimSchedule::new(Instant::now(), cfg.reclaim_idle),
            group_ready: false,
            backoff: Duration::from_millis(100),
            redis_down_since: None,
            stop: CancellationToken::new(),
            abort_jobs: CancellationToken::new(),
            refresher,
            cfg,
        })
    }

    /// A token that, once cancelled, makes the worker stop taking jobs.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The outcome counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Reads the counters while `run_until_stopped` owns the worker (for its metrics).
    pub fn stats_reader(&self) -> impl Fn() -> StatsSnapshot + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.stats.snapshot()
    }

    /// Jobs running now.
    pub fn in_flight(&self) -> usize {
        self.shared.running.lock().map_or(0, |r| r.len())
    }

    /// Whether the next `step` looks for orphans first (its reclaim timer is due).
    pub fn reclaim_due(&self) -> bool {
        self.reclaims.due(Instant::now())
    }

    /// Waits until every started job has ended (for tests and shutdown).
    pub async fn wait_idle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Does one unit of work: start one job already taken; else reclaim orphans when due;
    /// else wait for a free slot and read as many new jobs as there are free slots.
    pub async fn step(&mut self) -> StepOutcome {
        if let Some(taken) = self.taken.pop_front() {
            return self.dispatch(taken).await;
        }
        if self.stop.is_cancelled() {
            return StepOutcome::Idle;
        }
        if !self.group_ready {
            if let Err(err) = self.ensure_group().await {
                self.redis_down(&err).await;
                return StepOutcome::Idle;
            }
            self.group_ready = true;
        }
        if self.reclaims.due(Instant::now()) {
            match self.reclaim().await {
                Ok(0) => {}
                Ok(n) => return StepOutcome::Reclaimed(n),
                Err(err) => {
                    self.reclaims.failed(Instant::now());
                    self.redis_down(&err).await;
                    return StepOutcome::Idle;
                }
            }
        }
        let first = tokio::select! {
            slot = self.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return StepOutcome::Idle,
            },
            () = self.stop.cancelled() => return StepOutcome::Idle,
        };
        let mut slots = vec![first];
        while let Ok(slot) = self.slots.clone().try_acquire_owned() {
            slots.push(slot);
        }
        match self.read_new(slots).await {
            Ok(()) => {}
            Err(err) => {
                self.redis_down(&err).await;
                return StepOutcome::Idle;
            }
        }
        if self.stop.is_cancelled() && !self.taken.is_empty() {
            // Delivered while the stop signal arrived: hand them straight to other workers.
            let ids: Vec<String> = self.taken.drain(..).map(|t| t.entry_id).collect();
            self.release(&ids).await;
            return StepOutcome::Idle;
        }
        match self.taken.pop_front() {
            Some(taken) => self.dispatch(taken).await,
            None => StepOutcome::Idle,
        }
    }

    /// Runs `step` until the stop token is cancelled (SIGTERM/SIGINT in the CLI), then lets
    /// running jobs finish for up to `shutdown_timeout`. Jobs still running then are stopped and
    /// released at once for other workers; their entries stay pending, never acknowledged.
    pub async fn run_until_stopped(mut self) -> StatsSnapshot {
        let consumer = self.cfg.consumer.clone();
        tracing::info!(
            group = %self.cfg.group,
            consumer = %consumer,
            concurrency = self.cfg.concurrency,
            backend = %crate::telemetry::redacted_url(&self.cfg.openai_base_url),
            "switchyard worker started"
        );
        tokio::spawn(report_stats(self.shared.clone(), self.refresher.clone()));
        while !self.stop.is_cancelled() || !self.taken.is_empty() {
            self.step().await;
        }
        tracing::info!(
            in_flight = self.in_flight(),
            deadline_s = self.cfg.shutdown_timeout.as_secs_f64(),
            "stopping: no new jobs; waiting for running ones"
        );
        self.tasks.close();
        if tokio::time::timeout(self.cfg.shutdown_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            let left: Vec<String> = self
                .shared
                .running
                .lock()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            tracing::warn!(
                jobs = left.len(),
                "shutdown deadline passed: stopping running jobs and releasing them to other workers"
            );
            self.abort_jobs.cancel();
            self.tasks.wait().await;
            self.release(&left).await;
        }
        let stats = self.stats();
        log_stats("worker stopped", &stats);
        stats
    }

    async fn ensure_group(&mut self) -> redis::RedisResult<()> {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(job::REQUESTS_STREAM)
            .arg(&self.cfg.group)
            .arg("0")
            .arg("MKSTREAM")
            .exec_async(&mut self.reader)
            .await;
        match created {
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// `XREADGROUP` of up to one new entry per slot held; unused slots are given back.
    async fn read_new(&mut self, mut slots: Vec<OwnedSemaphorePermit>) -> redis::RedisResult<()> {
        let until_reclaim = self.reclaims.wait_until_due(Instant::now());
        let block = self
            .cfg
            .block
            .min(until_reclaim)
            .max(Duration::from_millis(1));
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg("COUNT")
            .arg(slots.len())
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(1000))
            .arg("STREAMS")
            .arg(job::REQUESTS_STREAM)
            .arg(">")
            .query_async(&mut self.reader)
            .await;
        let reply = reply?;
        self.redis_up();
        for id in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let Some(slot) = slots.pop() else { break };
            self.taken.push_back(Taken {
                data: id.get("data"),
                entry_id: id.id,
                deliveries: 1,
                slot,
            });
        }
        Ok(())
    }

    /// Starts one taken job in its slot, or dead-letters it.
    async fn dispatch(&mut self, taken: Taken) -> StepOutcome {
        let job = match dead_letter::admit(
            taken.data.as_deref(),
            taken.deliveries,
            self.cfg.max_retries,
        ) {
            Ok(job) => job,
            Err(letter) => {
                let data = taken.data.as_deref().unwrap_or_default();
                return self.dead_letter(&taken.entry_id, data, &letter).await;
            }
        };
        let cancel = self.abort_jobs.child_token();
        if let Ok(mut running) = self.shared.running.lock() {
            running.insert(taken.entry_id.clone(), cancel.clone());
        }
        let shared = self.shared.clone();
        let job_id = job.id.clone();
        let redelivered = taken.deliveries > 1;
        let slot = taken.slot;
        let entry_id = taken.entry_id;
        self.tasks.spawn(async move {
            let _slot = slot;
            run_job(shared, entry_id, job, redelivered, cancel).await;
        });
        StepOutcome::Replayed(job_id)
    }

    /// Makes jobs this worker gives up immediately reclaimable by others (idle time set far
    /// past the reclaim threshold), without counting a delivery.
    async fn release(&mut self, entry_ids: &[String]) {
        if entry_ids.is_empty() {
            return;
        }
        let idle = u64::try_from(self.cfg.reclaim_idle.as_millis())
            .unwrap_or(u64::MAX / 2)
            .saturating_mul(10);
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(job::REQUESTS_STREAM)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(0)
            .arg(entry_ids)
            .arg("IDLE")
            .arg(idle)
            .arg("JUSTID");
        let mut conn = self.shared.conn.clone();
        if let Err(err) = cmd.exec_async(&mut conn).await {
            tracing::warn!(error = %err, "cannot release jobs; they are reclaimed after the idle time");
        }
    }

    async fn redis_down(&mut self, err: &redis::RedisError) {
        if err.code() == Some("NOGROUP") {
            // Redis lost the group (restarted without persistence), whichever command saw it
            // first: make it again at the next step.
            self.group_ready = false;
        }
        match self.redis_down_since {
            None => {
                self.redis_down_since = Some(Instant::now());
                tracing::error!(error = %err, "Redis unavailable; retrying with backoff");
            }
            Some(_) => tracing::debug!(error = %err, "Redis still unavailable"),
        }
        tokio::select! {
            () = tokio::time::sleep(self.backoff) => {}
            () = self.stop.cancelled() => {}
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn redis_up(&mut self) {
        if let Some(since) = self.redis_down_since.take() {
            tracing::info!(
                down_ms = since.elapsed().as_millis() as u64,
                "Redis reachable again"
            );
        }
        self.backoff = Duration::from_millis(100);
    }
}

async fn run_job(
    shared: Arc<Shared>,
    entry_id: String,
    job: job::Job,
    redelivered: bool,
    cancel: CancellationToken,
) {
    shared.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let mut sink = Sink {
        conn: shared.conn.clone(),
        group: shared.group.clone(),
        ttl_s: shared.result_ttl_s,
        flush: shared.stream_flush,
    };
    // Cancelling drops the replay, and with it the upstream connection: the server stops.
    let outcome = tokio::select! {
        outcome = relay::replay(&shared.upstream, &mut sink, &entry_id, &job, redelivered) => Some(outcome),
        () = cancel.cancelled() => None,
    };
    if let Ok(mut running) = shared.running.lock() {
        running.remove(&entry_id);
    }
    shared.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Some(outcome) => {
            shared.stats.count(outcome);
            tracing::debug!(job = %job.id, path = %job.path, stream = job.stream, ?outcome, elapsed_ms, "job done");
        }
        None => {
            shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(job = %job.id, elapsed_ms, "job stopped before its end");
        }
    }
}

fn build_upstream(cfg: &WorkerConfig) -> Result<Upstream, String> {
    let client = http::client_builder(Duration::from_secs(5))
        .read_timeout(cfg.upstream_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let auth = match &cfg.openai_api_key {
        Some(key) => {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| "--openai-api-key is not a valid header value".to_owned())?;
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    let mut headers = Vec::with_capacity(cfg.openai_headers.len());
    for (name, value) in &cfg.openai_headers {
        let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("--openai-header: `{name}` is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value.expose_secret().trim())
            .map_err(|_| format!("--openai-header: the value of `{name}` is not valid"))?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    Ok(Upstream {
        client,
        base: cfg.openai_base_url.clone(),
        auth,
        headers,
        timeout: cfg.upstream_timeout,
    })
}
