//! The gateway's own Batch API (`/v1/batches`) for routes whose backends have none (echo,
//! Ollama, OpenAI-compatible servers such as vLLM, the Redis transport): a batch's input file
//! (`crate::files`) is checked as OpenAI checks it (`validate`), then its lines run as live
//! requests would, through a `LineSender` (the routes' one routing and dispatch step, with the
//! key's scope, rate limits and usage), at most `per_batch` at once per batch and
//! `concurrency` across all (`runner`); each result is kept in the store as it comes, and the
//! output and error files are written at the end, in OpenAI's shapes (`output`).
//!
//! Statuses: `validating` -> `in_progress` -> `finalizing` -> `completed`; `failed` (a bad
//! file); `cancelling` -> `cancelled`; `expired` at the end of the 24 h window. Unfinished
//! lines of a cancelled or expired batch go to its error file.

mod output;
mod runner;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::auth::store_unavailable;
use crate::error::GatewayError;
use crate::files::Files;
use crate::schema::batch_api::{Batch, BatchErrors, CreateBatch, ListPage, RequestCounts};
use crate::store::{BatchTimes, OwnBatchRow, Store};

/// The endpoints a batch may be for.
pub const ENDPOINTS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/responses",
];
/// The only completion window (OpenAI's).
const WINDOW_SECONDS: i64 = 24 * 60 * 60;

/// How batches run (`[batches]`, with defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Lines in flight at once across every batch of this gateway.
    pub concurrency: usize,
    /// Lines in flight at once in one batch.
    pub per_batch: usize,
    /// Most lines in one input file.
    pub max_lines: usize,
    /// Largest line (the gateway's `max_body_bytes`).
    pub max_line_bytes: usize,
}

/// One line to run, as a live request.
#[derive(Debug, Clone)]
pub struct LineRequest {
    /// `/v1/chat/completions`, ...
    pub endpoint: &'static str,
    /// The line's `body`.
    pub body: Bytes,
    /// The gateway key the batch was created with (hex SHA-256), with `[auth]`.
    pub key_hash: Option<String>,
}

/// A line's answer, as a live client would have got it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineAnswer {
    /// HTTP status.
    pub status: u16,
    /// The request id the gateway gave it.
    pub request_id: String,
    /// The body (JSON; a non-JSON body as a string).
    pub body: serde_json::Value,
}

/// Runs lines through the gateway's live request path (implemented by `crate::routes`, which
/// owns that path; the runner only needs to hand a line over and await its answer).
pub trait LineSender: Send + Sync {
    /// Runs `line`; dropping the future abandons it (cancel, expiry).
    fn send(&self, line: LineRequest) -> BoxFuture<'static, LineAnswer>;
}

/// The Batch API of a running gateway.
pub struct Batches {
    store: Store,
    files: Arc<Files>,
    settings: BatchSettings,
    /// Woken when a batch is created or cancelled on this instance.
    wake: Notify,
}

fn not_found(id: &str) -> GatewayError {
    GatewayError::NotFound {
        what: "batch",
        id: id.to_owned(),
    }
}

fn invalid(param: &str, message: String) -> GatewayError {
    GatewayError::InvalidField {
        param: Some(param.to_owned()),
        message,
    }
}

impl Batches {
    /// Batches over `store`, their files in `files`.
    pub fn new(store: Store, files: Arc<Files>, settings: BatchSettings) -> Batches {
        Batches {
            store,
            files,
            settings,
            wake: Notify::new(),
        }
    }

    /// The file store.
    pub fn files(&self) -> &Arc<Files> {
        &self.files
    }

    /// Creates a batch of `owner`'s file, to run under the key `key_hash` (with `[auth]`).
    pub async fn create(
        &self,
        owner: &str,
        key_hash: Option<String>,
        request: CreateBatch,
    ) -> Result<Batch, GatewayError> {
        check_request(&request)?;
        let file = self.files.get(owner, &request.input_file_id).await?;
        if file.purpose != "batch" {
            let message = format!("file `{}` was not uploaded with purpose `batch`", file.id);
            return Err(invalid("input_file_id", message));
        }
        let now = self.files.now();
        let output_keep_seconds = request.output_expires_after.map(|e| e.seconds);
        let metadata = request
            .metadata
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_default());
        let row = OwnBatchRow {
            id: format!("batch_{}", crate::files::sortable_hex()),
            owner: owner.to_owned(),
            key_hash,
            endpoint: request.endpoint,
            input_file_id: file.id,
            status: "validating".to_owned(),
            metadata,
            output_keep_seconds,
            times: BatchTimes {
                created_at: now,
                expires_at: now + WINDOW_SECONDS,
                ..BatchTimes::default()
            },
            ..OwnBatchRow::default()
        };
        self.store
            .insert_own_batch(&row)
            .await
            .map_err(store_unavailable)?;
        self.wake.notify_one();
        Ok(object(&row))
    }

    /// `owner`'s batch `id`, or 404.
    pub async fn get(&self, owner: &str, id: &str) -> Result<Batch, GatewayError> {
        Ok(object(&self.row(owner, id).await?))
    }

    async fn row(&self, owner: &str, id: &str) -> Result<OwnBatchRow, GatewayError> {
        if !is_batch_id(id) {
            return Err(not_found(id));
        }
        self.store
            .own_batch(Some(owner), id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| not_found(id))
    }

    /// `owner`'s batches, newest first, `limit` after the batch `after`.
    pub async fn list(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<ListPage<Batch>, GatewayError> {
        let rows = self
            .store
            .own_batches(owner, after, limit + 1)
            .await
            .map_err(store_unavailable)?;
        let data: Vec<Batch> = rows.iter().map(object).collect();
        Ok(page(data, limit, |b| b.id.clone()))
    }

    /// Cancels `owner`'s batch `id`: lines in flight are abandoned, the rest never run.
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Batch, GatewayError> {
        let row = self.row(owner, id).await?;
        let moved = self
            .store
            .move_own_batch(
                id,
                &["validating", "in_progress"],
                ("cancelling", "cancelling_at"),
                self.files.now(),
            )
            .await
            .map_err(store_unavailable)?;
        if !moved && !matches!(row.status.as_str(), "cancelling" | "cancelled") {
            return Err(GatewayError::Conflict {
                message: format!("Cannot cancel a batch with status `{}`.", row.status),
            });
        }
        self.wake.notify_waiters();
        self.get(owner, id).await
    }

    /// Starts running batches (this instance's and any other's left unfinished), sending their
    /// lines through `sender`.
    pub fn spawn_runner(batches: &Arc<Batches>, sender: Arc<dyn LineSender>) {
        tokio::spawn(runner::run(batches.clone(), sender));
    }
}

/// Whether `id` has the shape of one of this gateway's batch ids.
pub fn is_batch_id(id: &str) -> bool {
    id.strip_prefix("batch_")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A page of at most `limit` items out of `data` (which holds one more when there is more).
pub fn page<T>(mut data: Vec<T>, limit: i64, id: impl Fn(&T) -> String) -> ListPage<T> {
    let has_more = data.len() as i64 > limit;
    data.truncate(usize::try_from(limit).unwrap_or(0));
    ListPage {
        object: "list".to_owned(),
        first_id: data.first().map(&id),
        last_id: data.last().map(&id),
        data,
        has_more,
    }
}

/// OpenAI's checks of `POST /v1/batches`, before any file is read.
fn check_request(request: &CreateBatch) -> Result<(), GatewayError> {
    if !ENDPOINTS.contains(&request.endpoint.as_str()) {
        let message = format!(
            "`endpoint` must be one of {}, not `{}`",
            ENDPOINTS.join(", "),
            request.endpoint
        );
        return Err(invalid("endpoint", message));
    }
    if request.completion_window != "24h" {
        let message = "`completion_window` must be `24h`".to_owned();
        return Err(invalid("completion_window", message));
    }
    if let Some(after) = request.output_expires_after {
        crate::files::keep_seconds("created_at", after.seconds, "output_expires_after")?;
    }
    check_metadata(request.metadata.as_ref())
}

fn check_metadata(metadata: Option<&BTreeMap<String, String>>) -> Result<(), GatewayError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let too_big = metadata.len() > 16
        || metadata
            .iter()
            .any(|(k, v)| k.chars().count() > 64 || v.chars().count() > 512);
    if too_big {
        let message = "`metadata` holds at most 16 pairs, keys up to 64 characters and values \
             up to 512"
            .to_owned();
        return Err(invalid("metadata", message));
    }
    Ok(())
}

/// The batch object of `row`.
fn object(row: &OwnBatchRow) -> Batch {
    let errors = row.errors.as_deref().map(|text| BatchErrors {
        object: "list".to_owned(),
        data: serde_json::from_str(text).unwrap_or_default(),
    });
    let t = row.times;
    Batch {
        id: row.id.clone(),
        object: "batch".to_owned(),
        endpoint: row.endpoint.clone(),
        errors,
        input_file_id: row.input_file_id.clone(),
        completion_window: "24h".to_owned(),
        status: row.status.clone(),
        output_file_id: row.output_file_id.clone(),
        error_file_id: row.error_file_id.clone(),
        created_at: t.created_at,
        in_progress_at: t.in_progress_at,
        expires_at: Some(t.expires_at),
        finalizing_at: t.finalizing_at,
        completed_at: t.completed_at,
        failed_at: t.failed_at,
        expired_at: t.expired_at,
        cancelling_at: t.cancelling_at,
        cancelled_at: t.cancelled_at,
        request_counts: RequestCounts {
            total: row.counts.total,
            completed: row.counts.completed,
            failed: row.counts.failed,
        },
        metadata: row
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok()),
    }
}
