//! Usage rows: per project, key and model, per minute; summed into on write, grouped on read.

use sqlx::Row;

use super::{Store, StoreError};

/// One (minute, project, key, model) row's sums, written or read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSums {
    /// Requests.
    pub requests: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Total tokens.
    pub total_tokens: i64,
    /// Cached prompt tokens.
    pub cached_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
}

/// Where a row belongs: Unix minute, project id, key id, model (`""` for none).
pub type UsageKey = (i64, String, String, String);

/// How read rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// By model.
    Model,
    /// By key id.
    Key,
    /// By UTC day (the group is the day's Unix minute of midnight).
    Day,
}

/// Which rows to read: `None` is no filter; minutes are Unix minutes, `to` excluded.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    /// Project id.
    pub project: Option<String>,
    /// Key id.
    pub key: Option<String>,
    /// First minute.
    pub from: Option<i64>,
    /// Minute after the last.
    pub to: Option<i64>,
}

/// The most groups one read returns.
pub const MAX_GROUPS: i64 = 10_000;

impl Store {
    /// Adds `rows` to the stored sums, in one transaction.
    pub async fn add_usage(&self, rows: &[(UsageKey, UsageSums)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for ((minute, project, key, model), s) in rows {
            sqlx::query(
                "INSERT INTO usage_minutes (minute, project_id, key_id, model, requests, \
                 prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (minute, project_id, key_id, model) DO UPDATE SET \
                 requests = usage_minutes.requests + excluded.requests, \
                 prompt_tokens = usage_minutes.prompt_tokens + excluded.prompt_tokens, \
                 completion_tokens = usage_minutes.completion_tokens + excluded.completion_tokens, \
                 total_tokens = usage_minutes.total_tokens + excluded.total_tokens, \
                 cached_tokens = usage_minutes.cached_tokens + excluded.cached_tokens, \
                 reasoning_tokens = usage_minutes.reasoning_tokens + excluded.reasoning_tokens",
            )
            .bind(minute)
            .bind(project)
            .bind(key)
            .bind(model)
            .bind(s.requests)
            .bind(s.prompt_tokens)
            .bind(s.completion_tokens)
            .bind(s.total_tokens)
            .bind(s.cached_tokens)
            .bind(s.reasoning_tokens)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The sums of the rows `filter` selects, grouped by `group`, in group order.
    pub async fn usage(
        &self,
        filter: &UsageFilter,
        group: UsageGroup,
    ) -> Result<Vec<(String, UsageSums)>, StoreError> {
        // Only these fixed texts are ever spliced into the SQL; every value is bound.
        let column = match group {
            UsageGroup::Model => "model",
            UsageGroup::Key => "key_id",
            UsageGroup::Day => "CAST((minute / 1440) * 1440 AS BIGINT)",
        };
        let sum = |c: &str| format!("CAST(SUM({c}) AS BIGINT) AS {c}");
        let sql = format!(
            "SELECT CAST({column} AS TEXT) AS grp, {}, {}, {}, {}, {}, {} FROM usage_minutes \
             WHERE ($1 IS NULL OR project_id = $1) AND ($2 IS NULL OR key_id = $2) \
             AND ($3 IS NULL OR minute >= $3) AND ($4 IS NULL OR minute < $4) \
             GROUP BY {column} ORDER BY {column} LIMIT {MAX_GROUPS}",
            sum("requests"),
            sum("prompt_tokens"),
            sum("completion_tokens"),
            sum("total_tokens"),
            sum("cached_tokens"),
            sum("reasoning_tokens"),
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&filter.project)
            .bind(&filter.key)
            .bind(filter.from)
            .bind(filter.to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("grp")?,
                    UsageSums {
                        requests: row.try_get("requests")?,
                        prompt_tokens: row.try_get("prompt_tokens")?,
                        completion_tokens: row.try_get("completion_tokens")?,
                        total_tokens: row.try_get("total_tokens")?,
                        cached_tokens: row.try_get("cached_tokens")?,
                        reasoning_tokens: row.try_get("reasoning_tokens")?,
                    },
                ))
            })
            .collect()
    }
}
