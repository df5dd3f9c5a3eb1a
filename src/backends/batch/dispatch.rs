//! The dispatcher of one batch backend: gathers waiting lines into batches, creates them
//! upstream, polls them, and writes each line's answer. It works only while it holds the
//! backend's lease in the store, so several gateway instances never dispatch at once, and
//! every step is recorded before the next, so a restart carries on where the store says:
//! - a batch is recorded (`intent`) with its lines before it is created; one still `intent`
//!   after a restart is looked up by its metadata (`GET /batches`) and created only if absent;
//! - a running batch is polled with a doubling pause; `failed` with `token_limit_exceeded`
//!   puts its lines back to wait; `completed`, `expired` and `cancelled` answer every line
//!   from the output and error files, and fail the lines found in neither.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::lines::{answer_of, failure, input_file};
use super::upstream::{BatchObject, Fault};
use super::{Shared, now_ms};
use crate::store::{BatchJobRow, SentLine, Unanswered};

/// How long answers are kept for clients coming back with their key.
const RESULT_TTL_MS: i64 = 48 * 3600 * 1000;
/// The input file stays under OpenAI's 200 MB.
const MAX_INPUT_BYTES: usize = 190 * 1024 * 1024;
/// The dispatcher's lease: another instance takes over only after it ran out unrenewed.
const LEASE_MS: i64 = 30_000;

/// Runs the dispatcher for as long as the backend exists.
pub fn spawn(shared: Weak<Shared>) {
    let owner = uuid::Uuid::new_v4().to_string();
    tokio::spawn(async move {
        loop {
            // A tick first: the gateway's start migrates the store meanwhile.
            let Some(pause) = shared.upgrade().map(|this| this.tick()) else {
                return;
            };
            tokio::time::sleep(pause).await;
            let Some(this) = shared.upgrade() else { return };
            if let Err(err) = this.dispatch_once(&owner).await {
                tracing::warn!(backend = %this.name, error = %err, "batch dispatcher");
            }
        }
    });
}

impl Shared {
    /// How often the dispatcher looks at the store: well inside the window and the poll.
    fn tick(&self) -> Duration {
        let shortest = self.settings.window.min(self.settings.poll) / 2;
        shortest.clamp(Duration::from_millis(20), Duration::from_secs(5))
    }

    async fn dispatch_once(self: &Arc<Self>, owner: &str) -> Result<(), String> {
        if !self.hold_lease(owner).await? {
            return Ok(());
        }
        let now = now_ms();
        let due = self.store.due_batches(&self.name, now).await;
        for job in due.map_err(|e| e.to_string())? {
            if let Err(err) = self.work_on(&job).await {
                tracing::warn!(backend = %self.name, batch = %job.id, error = %err, "batch");
            }
            // Renewed after each step, which may take long (a large file): stop if it is gone.
            if !self.hold_lease(owner).await? {
                return Ok(());
            }
        }
        self.send_ripe_groups(now).await?;
        self.store
            .purge_batches(now)
            .await
            .map_err(|e| e.to_string())
    }

    /// Takes or renews the dispatcher lease; false while another instance holds it.
    async fn hold_lease(&self, owner: &str) -> Result<bool, String> {
        let now = now_ms();
        let held = self
            .store
            .take_batch_lease(&self.name, owner, now + LEASE_MS, now);
        held.await.map_err(|e| e.to_string())
    }

    /// Forms and creates a batch for every group whose window is over (or that is full).
    async fn send_ripe_groups(&self, now: i64) -> Result<(), String> {
        let window = millis(self.settings.window);
        let max_lines = i64::try_from(self.settings.max_lines).unwrap_or(i64::MAX);
        let groups = self
            .store
            .ripe_batch_groups(&self.name, now.saturating_sub(window), max_lines)
            .await
            .map_err(|e| e.to_string())?;
        for (group, endpoint) in groups {
            let id = uuid::Uuid::new_v4().to_string();
            let limits = (max_lines, MAX_INPUT_BYTES);
            let of = (self.name.as_str(), group.as_str(), endpoint.as_str());
            let formed = self.store.form_batch(of, &id, limits, now);
            let lines = formed.await.map_err(|e| e.to_string())?;
            if lines.is_empty() {
                continue;
            }
            let job = BatchJobRow {
                id,
                endpoint,
                upstream_id: None,
                pause: 0,
            };
            // Left as `intent` on failure: the next tick looks it up, and creates it if absent.
            if let Err(err) = self.create(&job, Some(lines)).await {
                tracing::warn!(backend = %self.name, batch = %job.id, error = %err, "batch");
            }
        }
        Ok(())
    }

    async fn work_on(&self, job: &BatchJobRow) -> Result<(), String> {
        match &job.upstream_id {
            None => self.create(job, None).await,
            Some(upstream_id) => {
                let batch = self
                    .upstream
                    .get(upstream_id)
                    .await
                    .map_err(|f| f.message)?;
                self.on_status(job, &batch).await
            }
        }
    }

    /// Creates `job` upstream: `lines` when it was just formed; otherwise it may have been
    /// created before a restart, so it is looked up first. A refusal answers its lines with
    /// a 502; any other failure is tried again after a growing pause.
    async fn create(&self, job: &BatchJobRow, lines: Option<Vec<SentLine>>) -> Result<(), String> {
        let poll = millis(self.settings.poll);
        let fault = match self.find_or_create(job, lines).await {
            Ok(created) => {
                let recorded =
                    self.store
                        .batch_created(&job.id, &created.id, now_ms() + poll, poll);
                return recorded.await.map_err(|e| e.to_string());
            }
            Err(fault) => fault,
        };
        if let Some(status) = fault.refused {
            // The upstream's own words stay in the log: they may quote what the client sent.
            let message = format!("the upstream refused the batch (status {status})");
            let outcome = failure(502, &message, Some("batch_refused"));
            let ended = self.store.end_batch(
                &job.id,
                Unanswered::Fail(&outcome),
                now_ms() + RESULT_TTL_MS,
            );
            ended.await.map_err(|e| e.to_string())?;
            self.answered.send_modify(|n| *n = n.wrapping_add(1));
        } else {
            let pause = job
                .pause
                .saturating_mul(2)
                .clamp(poll, poll.saturating_mul(10));
            let later = self.store.batch_next_poll(&job.id, now_ms() + pause, pause);
            later.await.map_err(|e| e.to_string())?;
        }
        Err(fault.message)
    }

    async fn find_or_create(
        &self,
        job: &BatchJobRow,
        lines: Option<Vec<SentLine>>,
    ) -> Result<BatchObject, Fault> {
        if let Some(lines) = lines {
            return self.upload_and_create(job, &lines).await;
        }
        if let Some(found) = self.upstream.find(&job.id).await? {
            return Ok(found);
        }
        let lines = self.store.batch_lines(&job.id).await;
        let lines = lines.map_err(|e| Fault::transient(e.to_string()))?;
        self.upload_and_create(job, &lines).await
    }

    async fn upload_and_create(
        &self,
        job: &BatchJobRow,
        lines: &[SentLine],
    ) -> Result<BatchObject, Fault> {
        let file_id = self
            .upstream
            .upload(input_file(&job.endpoint, lines))
            .await?;
        self.upstream.create(&file_id, &job.endpoint, &job.id).await
    }

    async fn on_status(&self, job: &BatchJobRow, batch: &BatchObject) -> Result<(), String> {
        let expires_at = now_ms() + RESULT_TTL_MS;
        match batch.status.as_str() {
            "completed" | "expired" | "cancelled" => self.settle(job, batch).await?,
            "failed" if token_limit_exceeded(batch) => {
                // Too many tokens queued upstream at once: the lines wait a window again, then
                // go in another batch.
                let again = Unanswered::WaitAgain { since: now_ms() };
                let requeued = self.store.end_batch(&job.id, again, expires_at).await;
                requeued.map_err(|e| e.to_string())?;
            }
            "failed" => {
                let (message, code) = first_error(batch);
                let outcome = failure(502, &message, code.as_deref());
                let ended = self
                    .store
                    .end_batch(&job.id, Unanswered::Fail(&outcome), expires_at)
                    .await;
                ended.map_err(|e| e.to_string())?;
            }
            // validating, in_progress, finalizing, cancelling, and statuses yet unknown.
            _ => {
                let poll = millis(self.settings.poll);
                let pause = job
                    .pause
                    .saturating_mul(2)
                    .clamp(poll, poll.saturating_mul(10));
                let next = self.store.batch_next_poll(&job.id, now_ms() + pause, pause);
                return next.await.map_err(|e| e.to_string());
            }
        }
        self.answered.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Answers every line of an ended batch from its output and error files; the lines found
    /// in neither fail.
    async fn settle(&self, job: &BatchJobRow, batch: &BatchObject) -> Result<(), String> {
        let expires_at = now_ms() + RESULT_TTL_MS;
        for file_id in [&batch.output_file_id, &batch.error_file_id]
            .into_iter()
            .flatten()
        {
            let content = self
                .upstream
                .content(file_id)
                .await
                .map_err(|f| f.message)?;
            for text in content.split(|b| *b == b'\n') {
                let Some((line, outcome)) = std::str::from_utf8(text).ok().and_then(answer_of)
                else {
                    continue;
                };
                let answered = self
                    .store
                    .answer_batch_line(&job.id, &line, &outcome, expires_at);
                answered.await.map_err(|e| e.to_string())?;
            }
        }
        let message = format!(
            "the batch ended ({}) without an answer for this request",
            batch.status
        );
        let rest = failure(502, &message, Some("batch_line_unanswered"));
        let ended = self
            .store
            .end_batch(&job.id, Unanswered::Fail(&rest), expires_at)
            .await;
        ended.map_err(|e| e.to_string())
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn token_limit_exceeded(batch: &BatchObject) -> bool {
    batch.errors.as_ref().is_some_and(|errors| {
        errors
            .data
            .iter()
            .any(|e| e.code.as_deref() == Some("token_limit_exceeded"))
    })
}

fn first_error(batch: &BatchObject) -> (String, Option<String>) {
    let first = batch.errors.as_ref().and_then(|e| e.data.first());
    let message = first
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| "the batch failed".to_owned());
    (message, first.and_then(|e| e.code.clone()))
}
