//! The gateway's database (`[store]`): SQLite by default, PostgreSQL when several instances share
//! state. One schema and one code path for both, through sqlx's `Any` driver with portable SQL
//! (`$1` placeholders, TEXT and BIGINT columns only); versioned migrations are embedded in the
//! binary and applied when the store opens.
//!
//! Only data access lives here: rows in, rows out. What a key may do, and what is secret about
//! it, is `crate::auth`'s business; HTTP handlers never use the store directly.

mod batch;
mod idempotency;
mod keys;
mod own_batches;
mod own_files;
mod projects;
mod rate_limits;
mod usage;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

pub use batch::{BatchJobRow, LineOutcome, NewLine, SentLine, Unanswered};
pub use idempotency::{AnswerRow, ClaimRow, Claimed};
pub use keys::{KeyGrantRow, KeyRow, NewKey};
pub use own_batches::{BatchCounts, BatchLineRow, BatchTimes, LineSpan, OwnBatchRow};
pub use own_files::OwnFileRow;
pub use projects::{CredentialRow, ProjectRow};
pub use rate_limits::LimitOwner;
pub use usage::{MAX_GROUPS, UsageFilter, UsageGroup, UsageKey, UsageSums};

/// The migrations, in order. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "projects and keys",
        include_str!("migrations/0001_projects_and_keys.sql"),
    ),
    (
        2,
        "idempotent answers",
        include_str!("migrations/0002_idempotency.sql"),
    ),
    (3, "usage", include_str!("migrations/0003_usage.sql")),
    (
        4,
        "rate limits",
        include_str!("migrations/0004_rate_limits.sql"),
    ),
    (
        5,
        "batch backend",
        include_str!("migrations/0005_batch.sql"),
    ),
    (
        6,
        "own files and batches",
        include_str!("migrations/0006_files_and_batches.sql"),
    ),
];

/// How long a request waits for a database connection before the store counts as down: a
/// stopped PostgreSQL must turn into a prompt 503, not a hung request.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or failed the query; the caller may retry later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was broken (a project name already taken).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The migrations could not be applied.
    #[error("cannot migrate the store: {0}")]
    Migrate(String),
    /// A stored value does not have the shape this version writes.
    #[error("the store holds an unreadable value: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict("it"),
            // sqlx's messages name the operation and the server's reason, never the URL.
            _ => StoreError::Unavailable(err.to_string()),
        }
    }
}

/// An open store: a connection pool with the schema migrated.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Opens (creating a SQLite file when missing) and migrates the store at `url`
    /// (`sqlite://path` or `postgres://user:pw@host/db`).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let pool = pool_options().connect(&pool_url(url)).await?;
        if is_sqlite {
            // WAL: readers do not block the writer, so several instances (or processes, such as
            // `switchyard admin` next to a running gateway) share the file. It persists in it.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// A store at `url` that connects on first use and applies no migrations: for parts built
    /// without a runtime (backends), in a gateway whose start opened the store with `open`.
    pub fn connect_lazy(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let pool = pool_options().connect_lazy(&pool_url(url))?;
        Ok(Store { pool })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// The revision of projects, credentials and keys; it moves on every change to any of them.
    pub async fn auth_revision(&self) -> Result<i64, StoreError> {
        let revision: i64 = sqlx::query_scalar("SELECT revision FROM auth_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(revision)
    }

    /// Closes the pool (the tests' way to stop using a database they are about to remove).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn pool_options() -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// `url`, with `mode=rwc` for SQLite (create the file when missing) unless it chose a mode.
fn pool_url(url: &str) -> String {
    match url.split_once('?') {
        _ if !url.starts_with("sqlite:") => url.to_owned(),
        None => format!("{url}?mode=rwc"),
        Some((_, query)) if !query.contains("mode=") => format!("{url}&mode=rwc"),
        Some(_) => url.to_owned(),
    }
}

/// Increments the revision inside the transaction making a change, so the change and its
/// announcement commit together.
async fn bump_revision(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StoreError> {
    sqlx::query("UPDATE auth_revision SET revision = revision + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A list of model prefixes as stored (a JSON array in a TEXT column).
fn encode_models(models: &[String]) -> String {
    serde_json::to_string(models).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_models(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("model list: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, max_requests: Option<i64>) -> NewKey {
        NewKey {
            id: id.into(),
            project_id: "p".into(),
            name: None,
            prefix: "sk-sy-abcdefgh".into(),
            hash: format!("hash-of-{id}"),
            models: None,
            expires_at: None,
            max_requests,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn migrations_apply_once_changes_move_the_revision_and_caps_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        // A second opener (another instance, the CLI) finds the schema in place.
        let again = Store::open(&url).await.unwrap();
        let start = again.auth_revision().await.unwrap();
        let project = ProjectRow {
            id: "p".into(),
            name: "team".into(),
            models: vec!["echo/".into()],
            created_at: 1,
        };
        store.insert_project(&project).await.unwrap();
        assert!(matches!(
            store
                .insert_project(&ProjectRow {
                    id: "q".into(),
                    ..project.clone()
                })
                .await,
            Err(StoreError::Conflict(_))
        ));
        store.insert_key(&key("k", Some(2))).await.unwrap();
        assert_eq!(again.auth_revision().await.unwrap(), start + 2);
        let counted = [
            store.consume_request("k").await.unwrap(),
            again.consume_request("k").await.unwrap(),
            store.consume_request("k").await.unwrap(),
        ];
        assert_eq!(counted, [true, true, false]);
        let grant = again.key_grant("hash-of-k").await.unwrap().unwrap();
        assert_eq!(
            (grant.project_models, grant.max_requests),
            (vec!["echo/".to_owned()], Some(2))
        );
        assert!(store.delete_project("p").await.unwrap());
        assert!(again.key_grant("hash-of-k").await.unwrap().is_none());
    }
}
