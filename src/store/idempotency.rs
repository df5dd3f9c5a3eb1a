//! Answers kept for `Idempotency-Key` repeats: claimed by one run, finished with the answer,
//! expired after a TTL. Every step is one statement, so gateway instances sharing the database
//! agree on who runs a key without any lock held across a request.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};

/// A claim to insert: the first request with a key.
#[derive(Debug, Clone)]
pub struct ClaimRow {
    /// Hex SHA-256 of the caller's scope and the client's key.
    pub id: String,
    /// Hex SHA-256 of method, path and body.
    pub fingerprint: String,
    /// The run claiming it.
    pub owner: String,
    /// Unix seconds until which the claim holds without being renewed.
    pub lease_until: i64,
    /// Unix seconds after which the row is forgotten.
    pub expires_at: i64,
}

/// A row as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRow {
    /// Hex SHA-256 of method, path and body of the request that claimed it.
    pub fingerprint: String,
    /// `running`, `done` or `not_kept`.
    pub state: String,
    /// The answer's status (`done`).
    pub status: Option<i64>,
    /// The answer's kept headers, as stored (`done`).
    pub headers: Option<String>,
    /// The answer's body, as stored (`done`).
    pub body: Option<String>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The caller's run owns the key now: first request, or a dead owner's lease ran out.
    Owner,
    /// Another run has or had it.
    Existing(AnswerRow),
    /// The row went away between two statements (its answer expired): claim again.
    Gone,
}

fn answer(row: &AnyRow) -> Result<AnswerRow, StoreError> {
    Ok(AnswerRow {
        fingerprint: row.try_get("fingerprint")?,
        state: row.try_get("state")?,
        status: row.try_get("status")?,
        headers: row.try_get("headers")?,
        body: row.try_get("body")?,
    })
}

impl Store {
    /// Claims `claim.id` for `claim.owner` when nobody holds it, or takes it over when its
    /// holder stopped renewing before `now`; otherwise reads what is there.
    pub async fn claim_idempotent(
        &self,
        claim: &ClaimRow,
        now: i64,
    ) -> Result<Claimed, StoreError> {
        // Expired, unless a run still holds its lease (an answer's expiry counts from when it
        // is kept, so only a run outliving the TTL meets this).
        sqlx::query(
            "DELETE FROM idempotent_answers WHERE id = $1 AND expires_at <= $2 \
             AND (state <> 'running' OR lease_until < $2)",
        )
        .bind(&claim.id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotent_answers (id, fingerprint, state, owner, lease_until, \
             expires_at) VALUES ($1, $2, 'running', $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&claim.id)
        .bind(&claim.fingerprint)
        .bind(&claim.owner)
        .bind(claim.lease_until)
        .bind(claim.expires_at)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claimed::Owner);
        }
        let taken = sqlx::query(
            "UPDATE idempotent_answers SET owner = $2, lease_until = $3 WHERE id = $1 \
             AND state = 'running' AND lease_until < $4 AND fingerprint = $5",
        )
        .bind(&claim.id)
        .bind(&claim.owner)
        .bind(claim.lease_until)
        .bind(now)
        .bind(&claim.fingerprint)
        .execute(&self.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Claimed::Owner);
        }
        Ok(self
            .idempotent_answer(&claim.id)
            .await?
            .map_or(Claimed::Gone, Claimed::Existing))
    }

    /// The row `id`, if any.
    pub async fn idempotent_answer(&self, id: &str) -> Result<Option<AnswerRow>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, state, status, headers, body FROM idempotent_answers \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(answer).transpose()
    }

    /// Extends `owner`'s claim on `id`; false when it is no longer its own.
    pub async fn renew_idempotent(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE idempotent_answers SET lease_until = $3 WHERE id = $1 AND owner = $2 \
             AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(lease_until)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the end of `owner`'s run on `id`: `state` `done` with the answer, or
    /// `not_kept` without one, kept until `expires_at`.
    pub async fn finish_idempotent(
        &self,
        id: &str,
        owner: &str,
        state: &str,
        answer: Option<(i64, &str, &str)>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let (status, headers, body) = match answer {
            Some((status, headers, body)) => (Some(status), Some(headers), Some(body)),
            None => (None, None, None),
        };
        sqlx::query(
            "UPDATE idempotent_answers SET state = $3, status = $4, headers = $5, body = $6, \
             expires_at = $7 WHERE id = $1 AND owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .bind(state)
        .bind(status)
        .bind(headers)
        .bind(body)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives up `owner`'s claim on `id`, so that the next request with the key runs.
    pub async fn release_idempotent(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotent_answers WHERE id = $1 AND owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets every row expired by `now`; returns how many.
    pub async fn purge_idempotent(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM idempotent_answers WHERE expires_at <= $1 \
             AND (state <> 'running' OR lease_until < $1)",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str, fingerprint: &str, now: i64) -> ClaimRow {
        ClaimRow {
            id: "row".into(),
            fingerprint: fingerprint.into(),
            owner: owner.into(),
            lease_until: now + 30,
            expires_at: now + 60,
        }
    }

    #[tokio::test]
    async fn one_owner_at_a_time_until_its_lease_or_the_answers_expiry_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();

        // The first claim owns the row; a second sees it running.
        assert_eq!(
            store
                .claim_idempotent(&claim("a", "f", 0), 0)
                .await
                .unwrap(),
            Claimed::Owner
        );
        let Claimed::Existing(row) = store
            .claim_idempotent(&claim("b", "f", 1), 1)
            .await
            .unwrap()
        else {
            panic!("the row is a's");
        };
        assert_eq!(row.state, "running");
        // Past the TTL but within a renewed lease, a running row is never treated as expired.
        assert!(store.renew_idempotent("row", "a", 100).await.unwrap());
        assert!(matches!(
            store
                .claim_idempotent(&claim("b", "f", 70), 70)
                .await
                .unwrap(),
            Claimed::Existing(_)
        ));
        // Once the lease runs out the row is taken over, and the old owner can no longer settle it.
        assert_eq!(
            store
                .claim_idempotent(&claim("b", "f", 101), 101)
                .await
                .unwrap(),
            Claimed::Owner
        );
        store
            .finish_idempotent("row", "a", "done", Some((200, "[]", "YQ==")), 200)
            .await
            .unwrap();
        store
            .finish_idempotent("row", "b", "done", Some((201, "[]", "Yg==")), 200)
            .await
            .unwrap();
        let kept = store.idempotent_answer("row").await.unwrap().unwrap();
        assert_eq!(
            (kept.state.as_str(), kept.status, kept.body.as_deref()),
            ("done", Some(201), Some("Yg=="))
        );
        // A done row is never taken over; after its expiry it is purged.
        assert!(!store.renew_idempotent("row", "b", 500).await.unwrap());
        assert!(matches!(
            store
                .claim_idempotent(&claim("c", "f", 199), 199)
                .await
                .unwrap(),
            Claimed::Existing(_)
        ));
        assert_eq!(store.purge_idempotent(200).await.unwrap(), 1);
        assert_eq!(
            store
                .claim_idempotent(&claim("c", "f", 200), 200)
                .await
                .unwrap(),
            Claimed::Owner
        );
        store.release_idempotent("row", "c").await.unwrap();
        assert!(store.idempotent_answer("row").await.unwrap().is_none());
    }
}
