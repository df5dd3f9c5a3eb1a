//! The rate limits set on projects and keys (JSON text, written and read as given).

use super::{Store, StoreError, bump_revision};

/// Whose limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOwner {
    /// A project (every key of it, together).
    Project,
    /// One key.
    Key,
}

impl Store {
    /// Sets (or with `None` removes) the rate limit of project or key `id`; false when there is
    /// no such row. Moves the revision, so every instance reloads its grants.
    pub async fn set_rate_limit(
        &self,
        owner: LimitOwner,
        id: &str,
        limit: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = match owner {
            LimitOwner::Project => "UPDATE projects SET rate_limit = $1 WHERE id = $2",
            LimitOwner::Key => "UPDATE gateway_keys SET rate_limit = $1 WHERE id = $2",
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(sql)
            .bind(limit)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
