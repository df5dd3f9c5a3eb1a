//! The rows of the gateway's own batches (`crate::batches`): each batch's status, times and
//! counts, and each line's place in the input file and its result. A line changes state only
//! from the state it is read in, so two runners (gateways sharing the store) never run one
//! line twice or count it twice.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// A batch as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnBatchRow {
    /// `batch_<uuid>`.
    pub id: String,
    /// Whose it is (as its files).
    pub owner: String,
    /// Hex SHA-256 of the gateway key that created it, with `[auth]`.
    pub key_hash: Option<String>,
    /// `/v1/chat/completions`, ...
    pub endpoint: String,
    /// The input file.
    pub input_file_id: String,
    /// OpenAI's status name.
    pub status: String,
    /// JSON array of `{code, line, message, param}` when validation failed.
    pub errors: Option<String>,
    /// JSON object.
    pub metadata: Option<String>,
    /// How long its output and error files are kept (`output_expires_after`), if set.
    pub output_keep_seconds: Option<i64>,
    /// Set once finalized.
    pub output_file_id: Option<String>,
    /// Set once finalized.
    pub error_file_id: Option<String>,
    /// Unix seconds of each step (`created_at`, `in_progress_at`, ...), in the column order.
    pub times: BatchTimes,
    /// Lines in all, done, failed.
    pub counts: BatchCounts,
}

/// A batch's timestamps (unix seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchTimes {
    #[allow(missing_docs)]
    pub created_at: i64,
    #[allow(missing_docs)]
    pub in_progress_at: Option<i64>,
    #[allow(missing_docs)]
    pub expires_at: i64,
    #[allow(missing_docs)]
    pub finalizing_at: Option<i64>,
    #[allow(missing_docs)]
    pub completed_at: Option<i64>,
    #[allow(missing_docs)]
    pub failed_at: Option<i64>,
    #[allow(missing_docs)]
    pub expired_at: Option<i64>,
    #[allow(missing_docs)]
    pub cancelling_at: Option<i64>,
    #[allow(missing_docs)]
    pub cancelled_at: Option<i64>,
}

/// `request_counts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Lines in the input file.
    pub total: i64,
    /// Lines answered with a 2xx.
    pub completed: i64,
    /// Lines that ended otherwise.
    pub failed: i64,
}

/// Where one line is in the input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSpan {
    /// 1-based line number.
    pub line: i64,
    /// Its `custom_id`.
    pub custom_id: String,
    /// Byte offset of the line.
    pub at: i64,
    /// Its length in bytes (without the newline).
    pub len: i64,
}

/// A line's result, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLineRow {
    /// 1-based line number.
    pub line: i64,
    /// The output line.
    pub result: String,
}

/// The columns every read takes, as a literal for `concat!`.
macro_rules! batch_columns {
    () => {
        "id, owner, key_hash, endpoint, input_file_id, status, errors, metadata, \
    output_keep_seconds, output_file_id, error_file_id, created_at, in_progress_at, expires_at, finalizing_at, \
    completed_at, failed_at, expired_at, cancelling_at, cancelled_at, total, completed, failed"
    };
}

fn batch_of(row: &AnyRow) -> Result<OwnBatchRow, StoreError> {
    Ok(OwnBatchRow {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        key_hash: row.try_get("key_hash")?,
        endpoint: row.try_get("endpoint")?,
        input_file_id: row.try_get("input_file_id")?,
        status: row.try_get("status")?,
        errors: row.try_get("errors")?,
        metadata: row.try_get("metadata")?,
        output_keep_seconds: row.try_get("output_keep_seconds")?,
        output_file_id: row.try_get("output_file_id")?,
        error_file_id: row.try_get("error_file_id")?,
        times: BatchTimes {
            created_at: row.try_get("created_at")?,
            in_progress_at: row.try_get("in_progress_at")?,
            expires_at: row.try_get("expires_at")?,
            finalizing_at: row.try_get("finalizing_at")?,
            completed_at: row.try_get("completed_at")?,
            failed_at: row.try_get("failed_at")?,
            expired_at: row.try_get("expired_at")?,
            cancelling_at: row.try_get("cancelling_at")?,
            cancelled_at: row.try_get("cancelled_at")?,
        },
        counts: BatchCounts {
            total: row.try_get("total")?,
            completed: row.try_get("completed")?,
            failed: row.try_get("failed")?,
        },
    })
}

impl Store {
    /// Records a new batch (status `validating`).
    pub async fn insert_own_batch(&self, batch: &OwnBatchRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO own_batches (id, owner, key_hash, endpoint, input_file_id, status, \
             metadata, output_keep_seconds, created_at, expires_at, total, completed, failed) \
             VALUES ($1, $2, $3, $4, $5, 'validating', $6, $7, $8, $9, 0, 0, 0)",
        )
        .bind(&batch.id)
        .bind(&batch.owner)
        .bind(&batch.key_hash)
        .bind(&batch.endpoint)
        .bind(&batch.input_file_id)
        .bind(&batch.metadata)
        .bind(batch.output_keep_seconds)
        .bind(batch.times.created_at)
        .bind(batch.times.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Batch `id`, when `owner` has it (`None` for the runner, which works on every owner's).
    pub async fn own_batch(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> Result<Option<OwnBatchRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            batch_columns!(),
            " FROM own_batches WHERE id = $1 AND ($2 = '' OR owner = $2)"
        ))
        .bind(id)
        .bind(owner.unwrap_or(""))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(batch_of).transpose()
    }

    /// `owner`'s batches, newest first, after batch `after` (a cursor of the same owner: an
    /// unknown or a stranger's id gives an empty page), at most `limit`.
    pub async fn own_batches(
        &self,
        owner: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<OwnBatchRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            batch_columns!(),
            " FROM own_batches WHERE owner = $1 AND ($2 = '' OR \
             (created_at, id) < (SELECT created_at, id FROM own_batches WHERE id = $2 \
             AND owner = $1)) ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(owner)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_of).collect()
    }

    /// The ids of batches a runner has work on (every status before an end).
    pub async fn unfinished_own_batches(&self) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar(
            "SELECT id FROM own_batches WHERE status IN \
             ('validating', 'in_progress', 'finalizing', 'cancelling') ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Moves batch `id` from `from` to `to`, stamping `time_column` with `now`; false when it
    /// was no longer in `from` (another runner, or a cancel, got there first).
    pub async fn move_own_batch(
        &self,
        id: &str,
        from: &[&str],
        (to, time_column): (&str, &str),
        now: i64,
    ) -> Result<bool, StoreError> {
        // `from` and `time_column` are this crate's constants, never a client's text.
        let from = from
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE own_batches SET status = $1, {time_column} = $2 WHERE id = $3 \
             AND status IN ({from})"
        )))
        .bind(to)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A batch whose input file failed validation: `failed`, with its errors (JSON).
    pub async fn fail_own_batch(&self, id: &str, errors: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE own_batches SET status = 'failed', errors = $1, failed_at = $2 \
             WHERE id = $3 AND status = 'validating'",
        )
        .bind(errors)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the lines of a validated batch and moves it to `in_progress`, at once; false
    /// when it was no longer `validating` (cancelled meanwhile).
    pub async fn start_own_batch(
        &self,
        id: &str,
        lines: &[LineSpan],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE own_batches SET status = 'in_progress', in_progress_at = $1, total = $2 \
             WHERE id = $3 AND status = 'validating'",
        )
        .bind(now)
        .bind(i64::try_from(lines.len()).unwrap_or(i64::MAX))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        for span in lines {
            sqlx::query(
                "INSERT INTO own_batch_lines (batch_id, line, custom_id, at, len, state) \
                 VALUES ($1, $2, $3, $4, $5, 'pending')",
            )
            .bind(id)
            .bind(span.line)
            .bind(&span.custom_id)
            .bind(span.at)
            .bind(span.len)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Claims up to `n` pending lines of batch `id` for `runner` until `until`.
    pub async fn claim_own_lines(
        &self,
        id: &str,
        runner: &str,
        until: i64,
        n: i64,
    ) -> Result<Vec<LineSpan>, StoreError> {
        let rows = sqlx::query(
            "SELECT line, custom_id, at, len FROM own_batch_lines WHERE batch_id = $1 \
             AND state = 'pending' ORDER BY line LIMIT $2",
        )
        .bind(id)
        .bind(n)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let span = LineSpan {
                line: row.try_get("line")?,
                custom_id: row.try_get("custom_id")?,
                at: row.try_get("at")?,
                len: row.try_get("len")?,
            };
            let taken = sqlx::query(
                "UPDATE own_batch_lines SET state = 'running', claimed_by = $1, \
                 claimed_until = $2 WHERE batch_id = $3 AND line = $4 AND state = 'pending'",
            )
            .bind(runner)
            .bind(until)
            .bind(id)
            .bind(span.line)
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                claimed.push(span);
            }
        }
        Ok(claimed)
    }

    /// Renews every claim `runner` holds until `until`.
    pub async fn renew_own_claims(&self, runner: &str, until: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE own_batch_lines SET claimed_until = $1 WHERE claimed_by = $2 \
             AND state = 'running'",
        )
        .bind(until)
        .bind(runner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records line `line`'s result and counts it, once: false when it was already done.
    /// `from` is the state it is taken from (`running` for a line this runner ran).
    pub async fn finish_own_line(
        &self,
        id: &str,
        line: i64,
        from: &str,
        (ok, result): (bool, &str),
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE own_batch_lines SET state = 'done', ok = $1, result = $2, claimed_by = NULL \
             WHERE batch_id = $3 AND line = $4 AND state = $5",
        )
        .bind(i64::from(ok))
        .bind(result)
        .bind(id)
        .bind(line)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let counter = if ok { "completed" } else { "failed" };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE own_batches SET {counter} = {counter} + 1 WHERE id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Lines of batch `id` that no runner will finish, with their state: every line not done
    /// when `all` (the batch ended early), else running ones whose claim lapsed before `now`
    /// (their gateway died). At most 1000 per call.
    pub async fn stranded_own_lines(
        &self,
        id: &str,
        all: bool,
        now: i64,
    ) -> Result<Vec<(LineSpan, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT line, custom_id, at, len, state FROM own_batch_lines WHERE batch_id = $1 \
             AND ((state = 'running' AND claimed_until < $2) OR (state <> 'done' AND $3 = 1)) \
             ORDER BY line LIMIT 1000",
        )
        .bind(id)
        .bind(now)
        .bind(i64::from(all))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let span = LineSpan {
                    line: row.try_get("line")?,
                    custom_id: row.try_get("custom_id")?,
                    at: row.try_get("at")?,
                    len: row.try_get("len")?,
                };
                Ok((span, row.try_get("state")?))
            })
            .collect()
    }

    /// How many lines of batch `id` are not done.
    pub async fn open_own_lines(&self, id: &str) -> Result<i64, StoreError> {
        let n = sqlx::query_scalar(
            "SELECT COUNT(*) FROM own_batch_lines WHERE batch_id = $1 AND state <> 'done'",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Results of batch `id` that went `ok` (or not), after line `after`, at most `limit`.
    pub async fn own_line_results(
        &self,
        id: &str,
        ok: bool,
        after: i64,
        limit: i64,
    ) -> Result<Vec<BatchLineRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT line, result FROM own_batch_lines WHERE batch_id = $1 AND state = 'done' \
             AND ok = $2 AND line > $3 ORDER BY line LIMIT $4",
        )
        .bind(id)
        .bind(i64::from(ok))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BatchLineRow {
                    line: row.try_get("line")?,
                    result: row
                        .try_get::<Option<String>, _>("result")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Ends batch `id` (from `finalizing`, `cancelling` or `in_progress`) as `status` with its
    /// files, stamping `time_column`; false when another runner ended it first.
    pub async fn end_own_batch(
        &self,
        id: &str,
        (status, time_column): (&str, &str),
        (output, error): (Option<&str>, Option<&str>),
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE own_batches SET status = $1, {time_column} = $2, output_file_id = $3, \
             error_file_id = $4 WHERE id = $5 AND status IN ('finalizing', 'cancelling', \
             'in_progress')"
        )))
        .bind(status)
        .bind(now)
        .bind(output)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
