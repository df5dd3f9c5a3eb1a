//! The Files and Batches API's wire types (`/v1/files`, `/v1/batches`), in OpenAI's shapes, as
//! the gateway serves them itself for backends without a Batch API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A file (`object: "file"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileObject {
    /// `file-` and 32 hex digits.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Size in bytes.
    pub bytes: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the file is gone after it.
    pub expires_at: i64,
    /// The name it was uploaded with.
    pub filename: String,
    /// `batch` (uploaded) or `batch_output` (a batch's output or error file).
    pub purpose: String,
    /// Always `processed` (deprecated by OpenAI, still required by its SDKs).
    pub status: String,
}

/// `GET /v1/files` and `GET /v1/batches`: a page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListPage<T> {
    /// Always `list`.
    pub object: String,
    /// The page.
    pub data: Vec<T>,
    /// The first item's id.
    pub first_id: Option<String>,
    /// The last item's id: pass it as `after` for the next page.
    pub last_id: Option<String>,
    /// Whether there is a next page.
    pub has_more: bool,
}

/// `DELETE /v1/files/{id}`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileDeleted {
    /// The file's id.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Always true.
    pub deleted: bool,
}

/// `POST /v1/batches`'s body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// A file uploaded with `purpose=batch`.
    pub input_file_id: String,
    /// `/v1/chat/completions`, `/v1/embeddings`, `/v1/completions` or `/v1/responses`: every
    /// line's `url` must be this.
    pub endpoint: String,
    /// Only `24h`.
    pub completion_window: String,
    /// Up to 16 pairs, keys up to 64 characters, values up to 512.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// How long the output and error files are kept (default 30 days).
    #[serde(default)]
    pub output_expires_after: Option<ExpiresAfter>,
}

/// A file's expiry: `seconds` (3600 to 2592000) after its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpiresAfter {
    /// Only `created_at`.
    pub anchor: Anchor,
    /// 3600 (1 hour) to 2592000 (30 days).
    pub seconds: i64,
}

/// What an expiry counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// The file's creation.
    CreatedAt,
}

/// One problem with a batch's input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchError {
    /// What kind of problem (`invalid_json_line`, `duplicate_custom_id`, ...).
    pub code: String,
    /// The 1-based line of the input file, when it is about one line.
    pub line: Option<i64>,
    /// What is wrong.
    pub message: String,
    /// The field at fault, when there is one.
    pub param: Option<String>,
}

/// `errors` of a batch whose input file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchErrors {
    /// Always `list`.
    pub object: String,
    /// The problems, at most 100.
    pub data: Vec<BatchError>,
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestCounts {
    /// Lines in the input file.
    pub total: i64,
    /// Lines answered with a 2xx.
    pub completed: i64,
    /// Lines in the error file.
    pub failed: i64,
}

/// A batch (`object: "batch"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Batch {
    /// `batch_` and 32 hex digits.
    pub id: String,
    /// Always `batch`.
    pub object: String,
    /// Every line's endpoint.
    pub endpoint: String,
    /// Set when the input file was refused (`status: failed`).
    pub errors: Option<BatchErrors>,
    /// The input file.
    pub input_file_id: String,
    /// Always `24h`.
    pub completion_window: String,
    /// `validating`, `failed`, `in_progress`, `finalizing`, `completed`, `expired`,
    /// `cancelling` or `cancelled`.
    pub status: String,
    /// The 2xx answers, once finalized (none when there were none).
    pub output_file_id: Option<String>,
    /// The other lines, once finalized (none when there were none).
    pub error_file_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub in_progress_at: Option<i64>,
    /// Unix seconds: the end of the completion window.
    pub expires_at: Option<i64>,
    /// Unix seconds.
    pub finalizing_at: Option<i64>,
    /// Unix seconds.
    pub completed_at: Option<i64>,
    /// Unix seconds.
    pub failed_at: Option<i64>,
    /// Unix seconds.
    pub expired_at: Option<i64>,
    /// Unix seconds.
    pub cancelling_at: Option<i64>,
    /// Unix seconds.
    pub cancelled_at: Option<i64>,
    /// Lines in all, done and failed, kept current while it runs.
    pub request_counts: RequestCounts,
    /// As given at creation.
    pub metadata: Option<BTreeMap<String, String>>,
}
