//! Projects and their sealed upstream credentials.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, bump_revision, decode_models, encode_models};

/// A project as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    /// Its id (a UUID).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The model-name prefixes its keys may use.
    pub models: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A sealed upstream credential (ciphertext only; `crate::auth` opens it).
#[derive(Debug, Clone)]
pub struct CredentialRow {
    /// The project.
    pub project_id: String,
    /// The backend it is for.
    pub backend: String,
    /// The sealed value.
    pub sealed: String,
}

fn project(row: &AnyRow) -> Result<ProjectRow, StoreError> {
    Ok(ProjectRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        models: decode_models(&row.try_get::<String, _>("models")?)?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Inserts a project; a taken name is `Conflict`.
    pub async fn insert_project(&self, p: &ProjectRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO projects (id, name, models, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&p.id)
            .bind(&p.name)
            .bind(encode_models(&p.models))
            .bind(p.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "a project with this name"))?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every project, oldest first.
    pub async fn projects(&self) -> Result<Vec<ProjectRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, models, created_at FROM projects ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(project).collect()
    }

    /// One project, if it exists.
    pub async fn project(&self, id: &str) -> Result<Option<ProjectRow>, StoreError> {
        let row = sqlx::query("SELECT id, name, models, created_at FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(project).transpose()
    }

    /// Replaces a project's name and models; false when it does not exist.
    pub async fn update_project(&self, p: &ProjectRow) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE projects SET name = $1, models = $2 WHERE id = $3")
            .bind(&p.name)
            .bind(encode_models(&p.models))
            .bind(&p.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "a project with this name"))?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a project with its keys and credentials; false when it does not exist.
    pub async fn delete_project(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM gateway_keys WHERE project_id = $1",
            "DELETE FROM upstream_credentials WHERE project_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores (or replaces) a sealed credential.
    pub async fn put_credential(&self, c: &CredentialRow, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM upstream_credentials WHERE project_id = $1 AND backend = $2")
            .bind(&c.project_id)
            .bind(&c.backend)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO upstream_credentials (project_id, backend, sealed, updated_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&c.project_id)
        .bind(&c.backend)
        .bind(&c.sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a credential; false when there was none.
    pub async fn delete_credential(
        &self,
        project: &str,
        backend: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("DELETE FROM upstream_credentials WHERE project_id = $1 AND backend = $2")
                .bind(project)
                .bind(backend)
                .execute(&mut *tx)
                .await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// A project's credentials, or every project's when `project` is `None`.
    pub async fn credentials(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        let query = match project {
            Some(id) => sqlx::query(
                "SELECT project_id, backend, sealed FROM upstream_credentials WHERE project_id = $1",
            )
            .bind(id),
            None => sqlx::query("SELECT project_id, backend, sealed FROM upstream_credentials"),
        };
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(CredentialRow {
                    project_id: row.try_get("project_id")?,
                    backend: row.try_get("backend")?,
                    sealed: row.try_get("sealed")?,
                })
            })
            .collect()
    }

    /// Replaces every sealed credential in one transaction (master-key rotation): either all
    /// are re-sealed or none is.
    pub async fn reseal_credentials(&self, rows: &[CredentialRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for c in rows {
            sqlx::query(
                "UPDATE upstream_credentials SET sealed = $1 WHERE project_id = $2 AND backend = $3",
            )
            .bind(&c.sealed)
            .bind(&c.project_id)
            .bind(&c.backend)
            .execute(&mut *tx)
            .await?;
        }
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Names what a unique violation was about.
pub(super) fn conflict(err: sqlx::Error, what: &'static str) -> StoreError {
    match StoreError::from(err) {
        StoreError::Conflict(_) => StoreError::Conflict(what),
        other => other,
    }
}
