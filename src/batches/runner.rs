//! Running batches: each unfinished batch in the store is driven by one task per gateway
//! instance, step by step through its statuses; its lines are claimed in the store (so two
//! instances never run one line), sent through the `LineSender` at most `per_batch` at once and
//! `concurrency` across batches, and each result is written as it comes, so a restart resumes
//! where the batch was. A line in flight when its gateway died is not sent again: once its
//! claim lapses it goes to the error file as interrupted (a line runs at most once).

use std::collections::HashSet;
use std::io::SeekFrom;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::output::{self, Unrun};
use super::validate::{self, FileLimits};
use super::{Batches, ENDPOINTS, LineAnswer, LineRequest, LineSender};
use crate::auth::store_unavailable;
use crate::error::GatewayError;
use crate::schema::batch_api::BatchError;
use crate::store::{LineSpan, OwnBatchRow};

/// How long a line's claim holds without renewal (seconds of the store's clock).
const CLAIM_SECONDS: i64 = 10;
/// How often claims are renewed, and how often a batch's status is read again while its lines
/// run (a cancel on another instance, the window's end).
const RENEW_EVERY: Duration = Duration::from_secs(3);
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How often the store is asked for batches to drive (created on another instance).
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// What drives batches on this instance.
struct Runner {
    batches: Arc<Batches>,
    sender: Arc<dyn LineSender>,
    /// Lines in flight across every batch.
    global: Arc<Semaphore>,
    /// This instance's name on its claims.
    id: String,
}

/// Drives every unfinished batch, forever.
pub(super) async fn run(batches: Arc<Batches>, sender: Arc<dyn LineSender>) {
    let runner = Arc::new(Runner {
        global: Arc::new(Semaphore::new(batches.settings.concurrency.max(1))),
        batches,
        sender,
        id: uuid::Uuid::new_v4().to_string(),
    });
    tokio::spawn(renew_claims(runner.clone()));
    let active = Arc::new(Mutex::new(HashSet::new()));
    loop {
        match runner.batches.store.unfinished_own_batches().await {
            Ok(ids) => {
                for id in ids {
                    let fresh = active.lock().is_ok_and(|mut a| a.insert(id.clone()));
                    if fresh {
                        let (runner, active) = (runner.clone(), active.clone());
                        tokio::spawn(async move {
                            runner.drive(&id).await;
                            let _ = active.lock().map(|mut a| a.remove(&id));
                        });
                    }
                }
            }
            Err(err) => tracing::warn!(%err, "cannot read the batches to run"),
        }
        tokio::select! {
            _ = runner.batches.wake.notified() => {}
            _ = tokio::time::sleep(SCAN_EVERY) => {}
        }
    }
}

async fn renew_claims(runner: Arc<Runner>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let until = runner.now() + CLAIM_SECONDS;
        if let Err(err) = runner
            .batches
            .store
            .renew_own_claims(&runner.id, until)
            .await
        {
            tracing::warn!(%err, "cannot renew the claims of running batch lines");
        }
    }
}

impl Runner {
    fn now(&self) -> i64 {
        self.batches.files.now()
    }

    /// Takes batch `id` through its statuses until it ends.
    async fn drive(&self, id: &str) {
        loop {
            let row = match self.batches.store.own_batch(None, id).await {
                Ok(Some(row)) => row,
                Ok(None) => return,
                Err(err) => {
                    pause(id, &store_unavailable(err)).await;
                    continue;
                }
            };
            let step = match row.status.as_str() {
                "validating" => self.validate(&row).await,
                "in_progress" => self.run_lines(&row).await,
                "cancelling" => self.end_early(&row, Unrun::Cancelled).await,
                "finalizing" => self.finish(&row, ("completed", "completed_at")).await,
                _ => return,
            };
            if let Err(err) = step {
                pause(id, &err).await;
            }
        }
    }

    /// Checks the input file: the batch starts with its lines recorded, or fails.
    async fn validate(&self, row: &OwnBatchRow) -> Result<(), GatewayError> {
        let files = &self.batches.files;
        let file = match files.open_file(&row.owner, &row.input_file_id).await {
            Ok((_, file)) => file,
            Err(GatewayError::NotFound { .. }) => return self.input_gone(row).await,
            Err(err) => return Err(err),
        };
        let limits = FileLimits {
            max_lines: self.batches.settings.max_lines,
            max_line_bytes: self.batches.settings.max_line_bytes,
        };
        let checked = validate::check(BufReader::new(file), &row.endpoint, limits)
            .await
            .map_err(|e| internal(&e))?;
        let store = &self.batches.store;
        match checked {
            Ok(valid) => {
                store
                    .start_own_batch(&row.id, &valid.lines, self.now())
                    .await
            }
            Err(errors) => {
                let text = serde_json::to_string(&errors).unwrap_or_default();
                store
                    .fail_own_batch(&row.id, &text, self.now())
                    .await
                    .map(|()| true)
            }
        }
        .map(|_| ())
        .map_err(store_unavailable)
    }

    /// A batch whose input file was deleted (or expired) before it was checked: `failed`.
    async fn input_gone(&self, row: &OwnBatchRow) -> Result<(), GatewayError> {
        let error = BatchError {
            code: "file_not_found".to_owned(),
            line: None,
            message: format!("The input file `{}` no longer exists.", row.input_file_id),
            param: Some("input_file_id".to_owned()),
        };
        let text = serde_json::to_string(&[error]).unwrap_or_default();
        let store = &self.batches.store;
        store
            .fail_own_batch(&row.id, &text, self.now())
            .await
            .map_err(store_unavailable)
    }

    /// Runs the batch's lines until none is left, or the batch is cancelled or expires.
    async fn run_lines(&self, row: &OwnBatchRow) -> Result<(), GatewayError> {
        let store = &self.batches.store;
        let mut running: JoinSet<(LineSpan, LineAnswer)> = JoinSet::new();
        loop {
            if self.now() >= row.times.expires_at {
                running.abort_all();
                return self.end_early(row, Unrun::Expired).await;
            }
            self.settle(row, false, Unrun::Interrupted).await?;
            self.start_lines(row, &mut running).await?;
            if running.is_empty()
                && store
                    .open_own_lines(&row.id)
                    .await
                    .map_err(store_unavailable)?
                    == 0
            {
                let moved = ("finalizing", "finalizing_at");
                store
                    .move_own_batch(&row.id, &["in_progress"], moved, self.now())
                    .await
                    .map_err(store_unavailable)?;
                return Ok(());
            }
            tokio::select! {
                Some(Ok((span, answer))) = running.join_next() => {
                    let (ok, result) = output::answered(&span.custom_id, &answer);
                    store
                        .finish_own_line(&row.id, span.line, "running", (ok, &result))
                        .await
                        .map_err(store_unavailable)?;
                }
                _ = tokio::time::sleep(LOOK_EVERY) => {
                    let now = store.own_batch(None, &row.id).await.map_err(store_unavailable)?;
                    if now.is_none_or(|r| r.status != "in_progress") {
                        // Cancelled (here or on another instance): abandon what is in flight.
                        running.abort_all();
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Claims and starts lines while the batch and the gateway have room for them.
    async fn start_lines(
        &self,
        row: &OwnBatchRow,
        running: &mut JoinSet<(LineSpan, LineAnswer)>,
    ) -> Result<(), GatewayError> {
        let Some(endpoint) = ENDPOINTS.iter().find(|e| **e == row.endpoint) else {
            return Err(internal(
                &"a batch for an endpoint the gateway does not run",
            ));
        };
        while running.len() < self.batches.settings.per_batch.max(1) {
            let Ok(permit) = self.global.clone().try_acquire_owned() else {
                break;
            };
            let until = self.now() + CLAIM_SECONDS;
            let claimed = self
                .batches
                .store
                .claim_own_lines(&row.id, &self.id, until, 1)
                .await
                .map_err(store_unavailable)?;
            let Some(span) = claimed.into_iter().next() else {
                break;
            };
            let Ok(body) = self.read_line(row, &span).await else {
                let result = output::unrun(&span.custom_id, Unrun::InputGone);
                let store = &self.batches.store;
                store
                    .finish_own_line(&row.id, span.line, "running", (false, &result))
                    .await
                    .map_err(store_unavailable)?;
                continue;
            };
            let line = LineRequest {
                endpoint,
                body,
                key_hash: row.key_hash.clone(),
            };
            running.spawn(send(self.sender.clone(), line, span, permit));
        }
        Ok(())
    }

    /// The line's body, read from the input file at its place.
    async fn read_line(&self, row: &OwnBatchRow, span: &LineSpan) -> Result<Bytes, GatewayError> {
        let (_, mut file) = self
            .batches
            .files
            .open_file(&row.owner, &row.input_file_id)
            .await?;
        let at = u64::try_from(span.at).unwrap_or(0);
        let mut line = vec![0; usize::try_from(span.len).unwrap_or(0)];
        file.seek(SeekFrom::Start(at))
            .await
            .map_err(|e| internal(&e))?;
        file.read_exact(&mut line).await.map_err(|e| internal(&e))?;
        #[derive(serde::Deserialize)]
        struct Input<'a> {
            #[serde(borrow)]
            body: &'a serde_json::value::RawValue,
        }
        let input: Input = serde_json::from_slice(&line).map_err(|e| internal(&e))?;
        Ok(Bytes::copy_from_slice(input.body.get().as_bytes()))
    }

    /// Puts the lines no runner will finish in the error file: every open line when the batch
    /// ends early (`all`), else those whose runner died mid-flight.
    async fn settle(&self, row: &OwnBatchRow, all: bool, why: Unrun) -> Result<(), GatewayError> {
        let store = &self.batches.store;
        loop {
            let stranded = store
                .stranded_own_lines(&row.id, all, self.now())
                .await
                .map_err(store_unavailable)?;
            if stranded.is_empty() {
                return Ok(());
            }
            for (span, state) in stranded {
                let result = output::unrun(&span.custom_id, why);
                store
                    .finish_own_line(&row.id, span.line, &state, (false, &result))
                    .await
                    .map_err(store_unavailable)?;
            }
            if !all {
                return Ok(());
            }
        }
    }

    /// Ends a cancelled or expired batch: its open lines in the error file, then its files.
    async fn end_early(&self, row: &OwnBatchRow, why: Unrun) -> Result<(), GatewayError> {
        self.settle(row, true, why).await?;
        let end = match why {
            Unrun::Expired => ("expired", "expired_at"),
            _ => ("cancelled", "cancelled_at"),
        };
        self.finish(row, end).await
    }

    /// Writes the output and error files and ends the batch as `status`.
    async fn finish(&self, row: &OwnBatchRow, status: (&str, &str)) -> Result<(), GatewayError> {
        let (store, files) = (&self.batches.store, &*self.batches.files);
        let keep = row
            .output_keep_seconds
            .unwrap_or(crate::files::KEEP_SECONDS);
        let whose = (row.id.as_str(), row.owner.as_str(), keep);
        let output = output::write_file(store, files, whose, true).await?;
        let errors = output::write_file(store, files, whose, false).await?;
        let ended = store
            .end_own_batch(
                &row.id,
                status,
                (output.as_deref(), errors.as_deref()),
                self.now(),
            )
            .await
            .map_err(store_unavailable)?;
        if !ended {
            // Another instance ended it first, with files of its own.
            for id in output.iter().chain(errors.iter()) {
                let _ = files.delete(&row.owner, id).await;
            }
        }
        Ok(())
    }
}

/// Sends one line, holding its place in the global bound until it is answered.
async fn send(
    sender: Arc<dyn LineSender>,
    line: LineRequest,
    span: LineSpan,
    _permit: OwnedSemaphorePermit,
) -> (LineSpan, LineAnswer) {
    let answer = sender.send(line).await;
    (span, answer)
}

fn internal(err: &dyn std::fmt::Display) -> GatewayError {
    GatewayError::Internal {
        message: format!("batch runner: {err}"),
    }
}

/// A step that failed (the store down, a file unreadable) is logged and tried again later.
async fn pause(id: &str, err: &GatewayError) {
    tracing::warn!(batch = id, %err, "a batch step failed; it is tried again");
    tokio::time::sleep(SCAN_EVERY).await;
}
