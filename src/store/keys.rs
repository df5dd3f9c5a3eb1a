//! Gateway keys: stored by SHA-256 only, looked up by it, counted atomically.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, bump_revision, decode_models, encode_models};

/// A key to insert (its secret is not here, only its hash).
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Its id (a UUID).
    pub id: String,
    /// The project it belongs to.
    pub project_id: String,
    /// A name for people.
    pub name: Option<String>,
    /// The visible start of the key.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// Its model scope; `None` is the project's.
    pub models: Option<Vec<String>>,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<i64>,
    /// How many requests it may make in all.
    pub max_requests: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A key as listed (never its secret nor its hash).
#[derive(Debug, Clone)]
pub struct KeyRow {
    /// Its id.
    pub id: String,
    /// Its project.
    pub project_id: String,
    /// A name for people.
    pub name: Option<String>,
    /// The visible start of the key.
    pub prefix: String,
    /// Its own scope, if narrower than the project's.
    pub models: Option<Vec<String>>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Request cap.
    pub max_requests: Option<i64>,
    /// Requests counted so far.
    pub used_requests: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// What authentication needs about a key, read in one query.
#[derive(Debug, Clone)]
pub struct KeyGrantRow {
    /// The key's id.
    pub id: String,
    /// Its project.
    pub project_id: String,
    /// Hex SHA-256 of the key, compared again in constant time by the caller.
    pub hash: String,
    /// The key's own scope.
    pub models: Option<Vec<String>>,
    /// The project's scope.
    pub project_models: Vec<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Request cap.
    pub max_requests: Option<i64>,
    /// The key's rate limit (JSON), if set.
    pub rate_limit: Option<String>,
    /// Its project's rate limit (JSON), if set.
    pub project_rate_limit: Option<String>,
}

fn optional_models(row: &AnyRow, column: &str) -> Result<Option<Vec<String>>, StoreError> {
    row.try_get::<Option<String>, _>(column)?
        .as_deref()
        .map(decode_models)
        .transpose()
}

fn key(row: &AnyRow) -> Result<KeyRow, StoreError> {
    Ok(KeyRow {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        models: optional_models(row, "models")?,
        expires_at: row.try_get("expires_at")?,
        max_requests: row.try_get("max_requests")?,
        used_requests: row.try_get("used_requests")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Inserts a key.
    pub async fn insert_key(&self, k: &NewKey) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO gateway_keys (id, project_id, name, prefix, hash, models, expires_at, \
             max_requests, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&k.id)
        .bind(&k.project_id)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(k.models.as_deref().map(encode_models))
        .bind(k.expires_at)
        .bind(k.max_requests)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A project's keys, oldest first.
    pub async fn keys(&self, project: &str) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, project_id, name, prefix, models, expires_at, max_requests, \
             used_requests, created_at FROM gateway_keys WHERE project_id = $1 \
             ORDER BY created_at, id",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key).collect()
    }

    /// Deletes (revokes) a key; false when it did not exist.
    pub async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM gateway_keys WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The key whose SHA-256 is `hash`, with its project's scope.
    pub async fn key_grant(&self, hash: &str) -> Result<Option<KeyGrantRow>, StoreError> {
        let row = sqlx::query(
            "SELECT k.id, k.project_id, k.hash, k.models, p.models AS project_models, \
             k.expires_at, k.max_requests, k.rate_limit, p.rate_limit AS project_rate_limit \
             FROM gateway_keys k \
             JOIN projects p ON p.id = k.project_id WHERE k.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(KeyGrantRow {
            id: row.try_get("id")?,
            project_id: row.try_get("project_id")?,
            hash: row.try_get("hash")?,
            models: optional_models(&row, "models")?,
            project_models: decode_models(&row.try_get::<String, _>("project_models")?)?,
            expires_at: row.try_get("expires_at")?,
            max_requests: row.try_get("max_requests")?,
            rate_limit: row.try_get("rate_limit")?,
            project_rate_limit: row.try_get("project_rate_limit")?,
        }))
    }

    /// Counts one request against a capped key, atomically across instances: one conditional
    /// `UPDATE`, so two gateways racing for the last request cannot both get it. False when the
    /// cap is reached (or the key is gone).
    pub async fn consume_request(&self, key_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE gateway_keys SET used_requests = used_requests + 1 \
             WHERE id = $1 AND (max_requests IS NULL OR used_requests < max_requests)",
        )
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
