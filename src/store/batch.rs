//! The `batch` backend's rows: waiting lines, the batches they went into, their answers, and
//! the lease that lets one dispatcher per backend work at a time. Every change of a line's
//! state is guarded by its current state, so two dispatchers can never put one line into two
//! batches or settle it twice.

use sqlx::Row;

use super::{Store, StoreError};

/// A client request to record as a waiting line.
#[derive(Debug, Clone)]
pub struct NewLine {
    /// The line's `custom_id` if it is new (a UUID).
    pub id: String,
    /// Ties a retry to the line already recorded for it.
    pub request_key: String,
    /// Backend name.
    pub backend: String,
    /// Hash of credential, endpoint and model: lines of one group go into one batch.
    pub group: String,
    /// `/v1/chat/completions`, ...
    pub endpoint: String,
    /// The line's body.
    pub body: String,
    /// Unix milliseconds.
    pub now: i64,
}

/// A line of a batch, as sent.
#[derive(Debug, Clone)]
pub struct SentLine {
    /// `custom_id`.
    pub id: String,
    /// The line's body.
    pub body: String,
}

/// A line's answer, once it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineOutcome {
    /// HTTP status of the answer.
    pub status: i64,
    /// The answer's body (JSON).
    pub body: String,
}

/// What becomes of the lines of an ended batch that got no answer.
#[derive(Debug, Clone, Copy)]
pub enum Unanswered<'a> {
    /// They fail with this answer.
    Fail(&'a LineOutcome),
    /// They wait for another batch, as if they had arrived at `since` (a whole window more).
    WaitAgain {
        /// Unix milliseconds.
        since: i64,
    },
}

/// A batch the dispatcher still works on.
#[derive(Debug, Clone)]
pub struct BatchJobRow {
    /// The gateway's id (sent as metadata).
    pub id: String,
    /// The endpoint of every line.
    pub endpoint: String,
    /// The upstream batch id once created; `None` while only the intent is recorded.
    pub upstream_id: Option<String>,
    /// The current pause between polls, in milliseconds.
    pub pause: i64,
}

impl Store {
    /// Records `line`, or finds the line already recorded under its `request_key` (a retry);
    /// returns the line's id. An answered line past its expiry is replaced.
    pub async fn record_batch_line(&self, line: &NewLine) -> Result<String, StoreError> {
        sqlx::query(
            "DELETE FROM batch_lines WHERE request_key = $1 AND state = 'done' \
             AND expires_at <= $2",
        )
        .bind(&line.request_key)
        .bind(line.now)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "INSERT INTO batch_lines (id, request_key, backend, grp, endpoint, body, state, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 'waiting', $7, $7) \
             ON CONFLICT (request_key) DO NOTHING",
        )
        .bind(&line.id)
        .bind(&line.request_key)
        .bind(&line.backend)
        .bind(&line.group)
        .bind(&line.endpoint)
        .bind(&line.body)
        .bind(line.now)
        .execute(&self.pool)
        .await?;
        let id: String = sqlx::query_scalar("SELECT id FROM batch_lines WHERE request_key = $1")
            .bind(&line.request_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    /// The answer of line `id`, once it has one.
    pub async fn batch_line_outcome(&self, id: &str) -> Result<Option<LineOutcome>, StoreError> {
        let row =
            sqlx::query("SELECT status, result FROM batch_lines WHERE id = $1 AND state = 'done'")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LineOutcome {
            status: row.try_get::<Option<i64>, _>("status")?.unwrap_or(502),
            body: row
                .try_get::<Option<String>, _>("result")?
                .unwrap_or_default(),
        }))
    }

    /// Takes or renews `backend`'s dispatcher lease for `owner` until `until`; false while
    /// another owner's lease runs.
    pub async fn take_batch_lease(
        &self,
        backend: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO batch_leases (backend, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (backend) DO UPDATE SET owner = $2, lease_until = $3 \
             WHERE batch_leases.owner = $2 OR batch_leases.lease_until < $4",
        )
        .bind(backend)
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let holder: String =
            sqlx::query_scalar("SELECT owner FROM batch_leases WHERE backend = $1")
                .bind(backend)
                .fetch_one(&self.pool)
                .await?;
        Ok(holder == owner)
    }

    /// The groups of `backend` ready to go, with their endpoint: their oldest line waited
    /// since `since`, or they hold `full` lines.
    pub async fn ripe_batch_groups(
        &self,
        backend: &str,
        since: i64,
        full: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT grp, MIN(endpoint) AS endpoint FROM batch_lines WHERE backend = $1 \
             AND state = 'waiting' GROUP BY grp HAVING MIN(created_at) <= $2 OR COUNT(*) >= $3",
        )
        .bind(backend)
        .bind(since)
        .bind(full)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("grp")?, row.try_get("endpoint")?)))
            .collect()
    }

    /// Records batch `id` (state `intent`) holding the oldest waiting lines of `group` (all
    /// for `endpoint`), at most `max_lines` and `max_bytes` of bodies; returns the lines (none:
    /// nothing was waiting, and no batch is recorded).
    pub async fn form_batch(
        &self,
        (backend, group, endpoint): (&str, &str, &str),
        id: &str,
        (max_lines, max_bytes): (i64, usize),
        now: i64,
    ) -> Result<Vec<SentLine>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Written first, so that SQLite takes its write lock before reading: a transaction
        // that reads and then writes cannot wait for another writer and fails instead.
        sqlx::query(
            "INSERT INTO batch_jobs (id, backend, endpoint, state, next_poll, pause, created_at) \
             VALUES ($1, $2, $3, 'intent', $4, 0, $4)",
        )
        .bind(id)
        .bind(backend)
        .bind(endpoint)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT id, body FROM batch_lines WHERE backend = $1 AND grp = $2 \
             AND state = 'waiting' ORDER BY created_at LIMIT $3",
        )
        .bind(backend)
        .bind(group)
        .bind(max_lines)
        .fetch_all(&mut *tx)
        .await?;
        let (mut lines, mut bytes) = (Vec::new(), 0usize);
        for row in rows {
            let line = SentLine {
                id: row.try_get("id")?,
                body: row.try_get("body")?,
            };
            bytes += line.body.len() + line.id.len() + 64;
            if bytes > max_bytes && !lines.is_empty() {
                break;
            }
            // Guarded by its state: a line another dispatcher took is left to it.
            let taken = sqlx::query(
                "UPDATE batch_lines SET state = 'sent', batch_id = $2 WHERE id = $1 \
                 AND state = 'waiting'",
            )
            .bind(&line.id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() == 1 {
                lines.push(line);
            }
        }
        if !lines.is_empty() {
            tx.commit().await?;
        }
        Ok(lines)
    }

    /// The lines of batch `id` still waiting for their answer.
    pub async fn batch_lines(&self, id: &str) -> Result<Vec<SentLine>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, body FROM batch_lines WHERE batch_id = $1 AND state = 'sent' \
             ORDER BY created_at",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SentLine {
                    id: row.try_get("id")?,
                    body: row.try_get("body")?,
                })
            })
            .collect()
    }

    /// The batches of `backend` due for work at `now`.
    pub async fn due_batches(
        &self,
        backend: &str,
        now: i64,
    ) -> Result<Vec<BatchJobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, endpoint, upstream_id, pause FROM batch_jobs WHERE backend = $1 \
             AND state <> 'done' AND next_poll <= $2 ORDER BY created_at",
        )
        .bind(backend)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BatchJobRow {
                    id: row.try_get("id")?,
                    endpoint: row.try_get("endpoint")?,
                    upstream_id: row.try_get("upstream_id")?,
                    pause: row.try_get("pause")?,
                })
            })
            .collect()
    }

    /// Records that batch `id` runs upstream as `upstream_id`.
    pub async fn batch_created(
        &self,
        id: &str,
        upstream_id: &str,
        next_poll: i64,
        pause: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batch_jobs SET state = 'running', upstream_id = $2, next_poll = $3, \
             pause = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(upstream_id)
        .bind(next_poll)
        .bind(pause)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets when batch `id` is next looked at.
    pub async fn batch_next_poll(
        &self,
        id: &str,
        next_poll: i64,
        pause: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_jobs SET next_poll = $2, pause = $3 WHERE id = $1")
            .bind(id)
            .bind(next_poll)
            .bind(pause)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives line `line` of batch `batch` its answer, kept until `expires_at`.
    pub async fn answer_batch_line(
        &self,
        batch: &str,
        line: &str,
        outcome: &LineOutcome,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batch_lines SET state = 'done', status = $3, result = $4, expires_at = $5 \
             WHERE id = $1 AND batch_id = $2 AND state = 'sent'",
        )
        .bind(line)
        .bind(batch)
        .bind(outcome.status)
        .bind(&outcome.body)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends batch `id`, kept until `expires_at`; its lines still unanswered get what `rest`
    /// says.
    pub async fn end_batch(
        &self,
        id: &str,
        rest: Unanswered<'_>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        match rest {
            Unanswered::Fail(outcome) => sqlx::query(
                "UPDATE batch_lines SET state = 'done', status = $2, result = $3, \
                 expires_at = $4 WHERE batch_id = $1 AND state = 'sent'",
            )
            .bind(id)
            .bind(outcome.status)
            .bind(&outcome.body)
            .bind(expires_at),
            Unanswered::WaitAgain { since } => sqlx::query(
                "UPDATE batch_lines SET state = 'waiting', batch_id = NULL, created_at = $2 \
                 WHERE batch_id = $1 AND state = 'sent'",
            )
            .bind(id)
            .bind(since),
        }
        .execute(&mut *tx)
        .await?;
        // A done batch is never polled again: `next_poll` becomes its expiry.
        sqlx::query("UPDATE batch_jobs SET state = 'done', next_poll = $2 WHERE id = $1")
            .bind(id)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets answers and ended batches past their expiry at `now`.
    pub async fn purge_batches(&self, now: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM batch_lines WHERE state = 'done' AND expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM batch_jobs WHERE state = 'done' AND next_poll <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, now: i64) -> NewLine {
        NewLine {
            id: format!("id-{key}-{now}"),
            request_key: key.into(),
            backend: "cheap".into(),
            group: "g".into(),
            endpoint: "/v1/embeddings".into(),
            body: format!("{{\"input\":\"{key}\"}}"),
            now,
        }
    }

    async fn two_stores() -> (tempfile::TempDir, Store, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let (store, other) = (
            Store::open(&url).await.unwrap(),
            Store::open(&url).await.unwrap(),
        );
        (dir, store, other)
    }

    #[tokio::test]
    async fn one_dispatcher_holds_the_lease_until_it_runs_out() {
        let (_dir, store, other) = two_stores().await;
        assert!(store.take_batch_lease("cheap", "a", 100, 0).await.unwrap());
        assert!(!other.take_batch_lease("cheap", "b", 100, 50).await.unwrap());
        assert!(
            other
                .take_batch_lease("cheap", "b", 200, 101)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn one_batch_per_line_and_a_retry_finds_its_line() {
        let (_dir, store, other) = two_stores().await;

        // A retry (same request key) finds the line it has; a group ripens with its window.
        let first = store.record_batch_line(&line("k1", 10)).await.unwrap();
        assert_eq!(
            other.record_batch_line(&line("k1", 20)).await.unwrap(),
            first
        );
        store.record_batch_line(&line("k2", 30)).await.unwrap();
        assert!(
            store
                .ripe_batch_groups("cheap", 9, 5)
                .await
                .unwrap()
                .is_empty()
        );
        let ripe = store.ripe_batch_groups("cheap", 10, 5).await.unwrap();
        assert_eq!(ripe, [("g".to_owned(), "/v1/embeddings".to_owned())]);
        let group = ("cheap", "g", "/v1/embeddings");

        // Two dispatchers forming batches at once never share a line.
        let (a, b) = tokio::join!(
            store.form_batch(group, "b1", (1, 1 << 20), 40),
            other.form_batch(group, "b2", (5, 1 << 20), 40)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 2, "{a:?} {b:?}");

        // Answers settle only their own batch's lines; the rest of a batch ends with `rest`.
        let ok = LineOutcome {
            status: 200,
            body: "{}".into(),
        };
        let batch_of_first = if a.iter().any(|l| l.id == first) {
            "b1"
        } else {
            "b2"
        };
        store
            .answer_batch_line("elsewhere", &first, &ok, 99)
            .await
            .unwrap();
        assert_eq!(store.batch_line_outcome(&first).await.unwrap(), None);
        store
            .answer_batch_line(batch_of_first, &first, &ok, 99)
            .await
            .unwrap();
        assert_eq!(
            store.batch_line_outcome(&first).await.unwrap(),
            Some(ok.clone())
        );
        // A batch ended with its lines waiting again (token limit) puts the second line back.
        let batch_of_second = if a.iter().any(|l| l.id != first) {
            "b1"
        } else {
            "b2"
        };
        let again = Unanswered::WaitAgain { since: 50 };
        store.end_batch(batch_of_second, again, 99).await.unwrap();
        assert!(
            store
                .ripe_batch_groups("cheap", 49, 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.ripe_batch_groups("cheap", 50, 5).await.unwrap(), ripe);

        // Expired answers go; a key whose answer expired gets a new line.
        store.purge_batches(99).await.unwrap();
        assert_eq!(store.batch_line_outcome(&first).await.unwrap(), None);
        assert_ne!(
            store.record_batch_line(&line("k1", 100)).await.unwrap(),
            first
        );
    }
}
