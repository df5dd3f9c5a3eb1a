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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamReadReply};
use reqwest::header::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::job;
use super::relay::{self, Outcome, Sink, Upstream};

/// Dead-letter entries are kept this long after the last one was added.
const DEAD_LETTER_TTL_S: u64 = 7 * 24 * 3600;
/// Longest pause between two attempts while Redis is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Refreshes this consumer's claim on running jobs; reports those it no longer owns (another
/// worker reclaimed them) and those deleted from the stream (their client gave up, so they are
/// acknowledged here).
const REFRESH_CLAIMS: &str = r"
local stolen, deleted = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    table.insert(deleted, id)
  else
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    if #p == 1 and p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    else
      table.insert(stolen, id)
    end
  end
end
return {stolen, deleted}
";

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

/// Counters of a worker's outcomes.
#[derive(Debug, Default)]
pub struct Stats {
    answered_2xx: AtomicU64,
    answered_other: AtomicU64,
    failed: AtomicU64,
    interrupted: AtomicU64,
    already_answered: AtomicU64,
    redis_lost: AtomicU64,
    abandoned: AtomicU64,
    dead_lettered: AtomicU64,
    reclaimed: AtomicU64,
    in_flight: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Answered by the upstream with a 2xx.
    pub answered_2xx: u64,
    /// Answered by the upstream with another status (passed through).
    pub answered_other: u64,
    /// Upstream unreachable or broke off: a 502 written.
    pub failed: u64,
    /// Re-runs of streams that had output: ended with an error instead.
    pub interrupted: u64,
    /// Re-runs of jobs already answered: acknowledged only.
    pub already_answered: u64,
    /// Answers Redis did not take.
    pub redis_lost: u64,
    /// Stopped: the claim was lost, the client gave up, or the shutdown deadline passed.
    pub abandoned: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Orphans claimed from other consumers.
    pub reclaimed: u64,
    /// Running now.
    pub in_flight: u64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            answered_2xx: g(&self.answered_2xx),
            answered_other: g(&self.answered_other),
            failed: g(&self.failed),
            interrupted: g(&self.interrupted),
            already_answered: g(&self.already_answered),
            redis_lost: g(&self.redis_lost),
            abandoned: g(&self.abandoned),
            dead_lettered: g(&self.dead_lettered),
            reclaimed: g(&self.reclaimed),
            in_flight: g(&self.in_flight),
        }
    }

    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Answered(status) if (200..300).contains(&status) => &self.answered_2xx,
            Outcome::Answered(_) => &self.answered_other,
            Outcome::Failed => &self.failed,
            Outcome::Interrupted => &self.interrupted,
            Outcome::AlreadyAnswered => &self.already_answered,
            Outcome::RedisLost => &self.redis_lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
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
    next_reclaim: Instant,
    reclaim_cursor: String,
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
            next_reclaim: Instant::now(),
            reclaim_cursor: "0-0".to_owned(),
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
        if Instant::now() >= self.next_reclaim {
            match self.reclaim().await {
                Ok(0) => {}
                Ok(n) => return StepOutcome::Reclaimed(n),
                Err(err) => {
                    // A failed reclaim must not keep the loop from reading new jobs (and from
                    // recreating a lost group): try again only after a full interval.
                    self.next_reclaim = Instant::now() + reclaim_every(self.cfg.reclaim_idle);
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
        let until_reclaim = self.next_reclaim.saturating_duration_since(Instant::now());
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

    /// Claims orphans (pending longer than `reclaim_idle`), no more than free slots.
    async fn reclaim(&mut self) -> redis::RedisResult<usize> {
        let interval = reclaim_every(self.cfg.reclaim_idle);
        let mut slots = Vec::new();
        while let Ok(slot) = self.slots.clone().try_acquire_owned() {
            slots.push(slot);
        }
        if slots.is_empty() {
            // Busy: orphans wait for a worker with room.
            self.next_reclaim = Instant::now() + interval;
            return Ok(0);
        }
        let idle_ms = u64::try_from(self.cfg.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(job::REQUESTS_STREAM)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(idle_ms)
            .arg(&self.reclaim_cursor)
            .arg("COUNT")
            .arg(slots.len())
            .query_async(&mut self.reader)
            .await?;
        self.redis_up();
        if !reply.deleted_ids.is_empty() {
            tracing::warn!(
                count = reply.deleted_ids.len(),
                "pending jobs were trimmed from the request stream before any worker finished them"
            );
        }
        if reply.next_stream_id == "0-0" {
            self.reclaim_cursor = "0-0".to_owned();
            self.next_reclaim = Instant::now() + interval;
        } else {
            // More to scan: continue at the next step.
            self.reclaim_cursor = reply.next_stream_id;
            self.next_reclaim = Instant::now();
        }
        if reply.claimed.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(job::REQUESTS_STREAM)
                .arg(&self.cfg.group)
                .arg(&id.id)
                .arg(&id.id)
                .arg(1);
        }
        let pending: Vec<Vec<(String, String, u64, u64)>> =
            pipe.query_async(&mut self.reader).await?;
        let n = reply.claimed.len();
        for (id, info) in reply.claimed.into_iter().zip(pending) {
            let Some(slot) = slots.pop() else { break };
            let deliveries = info.first().map_or(1, |p| p.3);
            self.taken.push_back(Taken {
                data: id.get("data"),
                entry_id: id.id,
                deliveries,
                slot,
            });
        }
        self.shared
            .stats
            .reclaimed
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::info!(count = n, "reclaimed orphaned jobs");
        Ok(n)
    }

    /// Starts one taken job in its slot, or dead-letters it.
    async fn dispatch(&mut self, taken: Taken) -> StepOutcome {
        let Some(data) = taken.data else {
            let reason = "the entry has no `data` field";
            return self
                .dead_letter(&taken.entry_id, b"", reason, None, None)
                .await;
        };
        let job = match job::decode_job(&data) {
            Ok(job) => job,
            Err(bad) => {
                return self
                    .dead_letter(
                        &taken.entry_id,
                        &data,
                        &bad.reason,
                        bad.id.as_deref(),
                        bad.stream,
                    )
                    .await;
            }
        };
        if taken.deliveries > self.cfg.max_retries {
            let reason = format!(
                "delivered {} times, more than --max-retries {}",
                taken.deliveries, self.cfg.max_retries
            );
            return self
                .dead_letter(
                    &taken.entry_id,
                    &data,
                    &reason,
                    Some(&job.id),
                    Some(job.stream),
                )
                .await;
        }
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

    /// Moves a job to the (capped, expiring) dead-letter stream with its reason, releases its
    /// client with a 502 when the job says who that is, and acknowledges it, in one `MULTI`.
    async fn dead_letter(
        &mut self,
        entry_id: &str,
        data: &[u8],
        reason: &str,
        id: Option<&str>,
        stream: Option<bool>,
    ) -> StepOutcome {
        let stored = job::redact_job(data).map_or_else(|| data.to_vec(), String::into_bytes);
        let ttl = self.shared.result_ttl_s;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(job::DEAD_LETTER_STREAM)
            .arg("MAXLEN")
            .arg(self.cfg.dead_letter_maxlen.max(1))
            .arg("*")
            .arg("data")
            .arg(stored)
            .arg("reason")
            .arg(reason)
            .arg("entry")
            .arg(entry_id)
            .arg("consumer")
            .arg(&self.cfg.consumer)
            .ignore()
            .cmd("EXPIRE")
            .arg(job::DEAD_LETTER_STREAM)
            .arg(DEAD_LETTER_TTL_S)
            .ignore();
        if let Some(id) = id {
            let max_retries = reason.starts_with("delivered");
            // Unknown `stream`: answer on both; the unread one expires.
            if stream != Some(false) {
                let body = if max_retries {
                    job::DEAD_LETTERED_STREAM_BODY.to_owned()
                } else {
                    format!("openai-rq: job dead-lettered: {reason}")
                };
                let key = job::stream_key(id);
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(job::STREAM_MAXLEN)
                    .arg("*")
                    .arg("data")
                    .arg(job::encode_error(502, &job::text_plain(), body.as_bytes()))
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .ignore();
            }
            if stream != Some(true) {
                let body = if max_retries {
                    job::DEAD_LETTERED_RESULT_BODY.to_owned()
                } else {
                    format!("openai-rq: job dead-lettered: {reason}")
                };
                let key = job::result_key(id);
                pipe.cmd("RPUSH")
                    .arg(&key)
                    .arg(job::encode_result(502, &job::text_plain(), body.as_bytes()))
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .ignore();
            }
        }
        pipe.cmd("XACK")
            .arg(job::REQUESTS_STREAM)
            .arg(&self.cfg.group)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(job::REQUESTS_STREAM)
            .arg(entry_id)
            .ignore();
        let mut conn = self.shared.conn.clone();
        match pipe.exec_async(&mut conn).await {
            Ok(()) => {
                self.shared
                    .stats
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    entry = entry_id,
                    job = id.unwrap_or("?"),
                    reason,
                    "job dead-lettered"
                );
            }
            Err(err) => {
                // Left pending: reclaimed and dead-lettered again later.
                tracing::error!(entry = entry_id, error = %err, "cannot dead-letter a job");
            }
        }
        StepOutcome::DeadLettered(entry_id.to_owned())
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

/// Keeps running jobs' claims fresh; stops jobs whose claim was lost or whose client left.
async fn refresh_claims(shared: Arc<Shared>, every: Duration, end: CancellationToken) {
    let script = redis::Script::new(REFRESH_CLAIMS);
    let mut conn = shared.conn.clone();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = end.cancelled() => return,
        }
        let ids: Vec<String> = match shared.running.lock() {
            Ok(running) if !running.is_empty() => running.keys().cloned().collect(),
            _ => continue,
        };
        let result: redis::RedisResult<(Vec<String>, Vec<String>)> = script
            .key(job::REQUESTS_STREAM)
            .arg(&shared.group)
            .arg(&shared.consumer)
            .arg(&ids)
            .invoke_async(&mut conn)
            .await;
        let (stolen, deleted) = match result {
            Ok(lists) => lists,
            Err(err) => {
                tracing::debug!(error = %err, "cannot refresh claims");
                continue;
            }
        };
        let Ok(running) = shared.running.lock() else {
            continue;
        };
        for id in &stolen {
            tracing::warn!(entry = %id, "another worker took over this job; stopping it here");
            if let Some(token) = running.get(id) {
                token.cancel();
            }
        }
        for id in &deleted {
            tracing::info!(entry = %id, "the client no longer waits for this job; stopping it");
            if let Some(token) = running.get(id) {
                token.cancel();
            }
        }
    }
}

/// Claims are refreshed four times per idle period, so a live worker's job never looks idle.
fn refresh_every(idle: Duration) -> Duration {
    (idle / 4).max(Duration::from_millis(25))
}

/// Orphans are looked for twice per idle period.
fn reclaim_every(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_millis(50))
}

fn build_upstream(cfg: &WorkerConfig) -> Result<Upstream, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(cfg.upstream_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
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

/// One line with the counters every minute, when they changed.
async fn report_stats(shared: Arc<Shared>, end: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    let mut last = shared.stats.snapshot();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = end.cancelled() => return,
        }
        let now = shared.stats.snapshot();
        if now != last {
            log_stats("worker counters", &now);
            last = now;
        }
    }
}

fn log_stats(message: &str, s: &StatsSnapshot) {
    tracing::info!(
        answered_2xx = s.answered_2xx,
        answered_other = s.answered_other,
        failed = s.failed,
        interrupted = s.interrupted,
        already_answered = s.already_answered,
        redis_lost = s.redis_lost,
        abandoned = s.abandoned,
        dead_lettered = s.dead_lettered,
        reclaimed = s.reclaimed,
        in_flight = s.in_flight,
        "{message}"
    );
}
