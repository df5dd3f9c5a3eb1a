//! A batch's results in OpenAI's shape (`BatchRequestOutput`, one JSON line each), and its
//! output and error files written from them.

use serde_json::json;

use super::LineAnswer;
use crate::error::GatewayError;
use crate::files::Files;
use crate::store::Store;

/// Results read from the store per query while a file is written.
const PAGE: i64 = 500;

/// Why a line never got an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrun {
    /// The batch was cancelled first.
    Cancelled,
    /// The completion window ended first.
    Expired,
    /// It was in flight when its gateway stopped; it is not sent again.
    Interrupted,
    /// Its input file was deleted while the batch ran.
    InputGone,
}

impl Unrun {
    fn code_and_message(self) -> (&'static str, &'static str) {
        match self {
            Unrun::Cancelled => (
                "batch_cancelled",
                "This request was not executed because the batch was cancelled.",
            ),
            Unrun::Expired => (
                "batch_expired",
                "This request could not be executed before the completion window expired.",
            ),
            Unrun::Interrupted => (
                "batch_line_interrupted",
                "The gateway stopped while this request was in flight; it was not sent again, \
                 so it ran at most once.",
            ),
            Unrun::InputGone => (
                "input_file_deleted",
                "The batch's input file was deleted before this request was read.",
            ),
        }
    }
}

/// The output line of an answered request, and whether it goes to the output file (2xx).
pub fn answered(custom_id: &str, answer: &LineAnswer) -> (bool, String) {
    let line = json!({
        "id": request_line_id(),
        "custom_id": custom_id,
        "response": {
            "status_code": answer.status,
            "request_id": answer.request_id,
            "body": answer.body,
        },
        "error": null,
    });
    ((200..300).contains(&answer.status), line.to_string())
}

/// The error-file line of a request that never got an answer.
pub fn unrun(custom_id: &str, why: Unrun) -> String {
    let (code, message) = why.code_and_message();
    json!({
        "id": request_line_id(),
        "custom_id": custom_id,
        "response": null,
        "error": {"code": code, "message": message},
    })
    .to_string()
}

fn request_line_id() -> String {
    format!("batch_req_{}", uuid::Uuid::new_v4().simple())
}

/// Writes the results of batch `id` that went to the output file (`ok`) or the error file
/// into a new file of `owner`'s, kept `keep_seconds`; none when there are no such results.
pub async fn write_file(
    store: &Store,
    files: &Files,
    (id, owner, keep_seconds): (&str, &str, i64),
    ok: bool,
) -> Result<Option<String>, GatewayError> {
    let mut upload = None;
    let mut after = 0;
    loop {
        let rows = store
            .own_line_results(id, ok, after, PAGE)
            .await
            .map_err(crate::auth::store_unavailable)?;
        let Some(last) = rows.last() else { break };
        after = last.line;
        if upload.is_none() {
            upload = Some(files.begin(u64::MAX).await?);
        }
        if let Some(upload) = upload.as_mut() {
            for row in &rows {
                upload.write(row.result.as_bytes()).await?;
                upload.write(b"\n").await?;
            }
        }
    }
    let Some(upload) = upload else {
        return Ok(None);
    };
    let name = if ok { "output" } else { "error" };
    let filename = format!("{id}_{name}.jsonl");
    let whose = (owner, filename.as_str(), "batch_output");
    let file = files.keep(upload, whose, keep_seconds).await?;
    Ok(Some(file.id))
}
