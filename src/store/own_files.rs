//! The rows of the gateway's own files (`crate::files`): whose each file is, its name, size and
//! expiry. The bytes are on disk, not here.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// One file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnFileRow {
    /// `file-<uuid>`.
    pub id: String,
    /// Whose it is (`project:<id>` or `client:<hash>`).
    pub owner: String,
    /// `batch` (uploaded) or `batch_output` (written by a batch).
    pub purpose: String,
    /// The name the client gave it.
    pub filename: String,
    /// Its size.
    pub bytes: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The columns every read takes, as a literal for `concat!`.
macro_rules! file_columns {
    () => {
        "id, owner, purpose, filename, bytes, created_at, expires_at"
    };
}

fn file_of(row: &AnyRow) -> Result<OwnFileRow, StoreError> {
    Ok(OwnFileRow {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        purpose: row.try_get("purpose")?,
        filename: row.try_get("filename")?,
        bytes: row.try_get("bytes")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    /// Records a file whose bytes are in place.
    pub async fn insert_own_file(&self, file: &OwnFileRow) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO own_files (",
            file_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&file.id)
        .bind(&file.owner)
        .bind(&file.purpose)
        .bind(&file.filename)
        .bind(file.bytes)
        .bind(file.created_at)
        .bind(file.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// File `id` if `owner` has it and it has not expired at `now`.
    pub async fn own_file(
        &self,
        owner: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<OwnFileRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM own_files WHERE id = $1 AND owner = $2 AND expires_at > $3"
        ))
        .bind(id)
        .bind(owner)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(file_of).transpose()
    }

    /// `owner`'s unexpired files, newest first, after file `after` (a cursor), at most `limit`,
    /// of `purpose` when given.
    pub async fn own_files(
        &self,
        owner: &str,
        after: Option<&str>,
        purpose: Option<&str>,
        (limit, now): (i64, i64),
    ) -> Result<Vec<OwnFileRow>, StoreError> {
        // The cursor is a row of the same owner: a stranger's id or an unknown one gives an
        // empty page (never a glimpse of where another owner's file sits in the order).
        let rows = sqlx::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM own_files WHERE owner = $1 AND expires_at > $2 \
             AND ($3 = '' OR purpose = $3) AND ($4 = '' OR (created_at, id) < \
             (SELECT created_at, id FROM own_files WHERE id = $4 AND owner = $1)) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(owner)
        .bind(now)
        .bind(purpose.unwrap_or(""))
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_of).collect()
    }

    /// Deletes `owner`'s file `id`; false when there was none.
    pub async fn delete_own_file(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM own_files WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes the rows of files expired at `now`; their ids, so their bytes can go too.
    pub async fn purge_own_files(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM own_files WHERE expires_at <= $1 LIMIT 1000")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        for id in &ids {
            sqlx::query("DELETE FROM own_files WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(ids)
    }
}
