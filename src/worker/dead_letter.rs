//! Dead-letters: a job that cannot be run goes to the capped, expiring dead-letter stream with
//! its reason, and its client, when the job says who that is, gets a 502 rather than a hang.

use std::sync::atomic::Ordering;

use super::{StepOutcome, Worker};
use crate::backends::redis::job;

/// Dead-letter entries are kept this long after the last one was added.
const DEAD_LETTER_TTL_S: u64 = 7 * 24 * 3600;

impl Worker {
    /// Moves a job to the (capped, expiring) dead-letter stream with its reason, releases its
    /// client with a 502 when the job says who that is, and acknowledges it, in one `MULTI`.
    pub(super) async fn dead_letter(
        &mut self,
        entry_id: &str,
        data: &[u8],
        reason: &str,
        id: Option<&str>,
        stream: Option<bool>,
    ) -> StepOutcome {
        let stored = job::redact_job(data).map_or_else(|| data.to_vec(), String::into_bytes);
        let ttl = self.shared.result_ttl_s;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(job::DEAD_LETTER_STREAM)
            .arg("MAXLEN")
            .arg(self.cfg.dead_letter_maxlen.max(1))
            .arg("*")
            .arg("data")
            .arg(stored)
            .arg("reason")
            .arg(reason)
            .arg("entry")
            .arg(entry_id)
            .arg("consumer")
            .arg(&self.cfg.consumer)
            .ignore()
            .cmd("EXPIRE")
            .arg(job::DEAD_LETTER_STREAM)
            .arg(DEAD_LETTER_TTL_S)
            .ignore();
        if let Some(id) = id {
            let max_retries = reason.starts_with("delivered");
            // Unknown `stream`: answer on both; the unread one expires.
            if stream != Some(false) {
                let body = if max_retries {
                    job::DEAD_LETTERED_STREAM_BODY.to_owned()
                } else {
                    format!("openai-rq: job dead-lettered: {reason}")
                };
                let key = job::stream_key(id);
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(job::STREAM_MAXLEN)
                    .arg("*")
                    .arg("data")
                    .arg(job::encode_error(502, &job::text_plain(), body.as_bytes()))
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .ignore();
            }
            if stream != Some(true) {
                let body = if max_retries {
                    job::DEAD_LETTERED_RESULT_BODY.to_owned()
                } else {
                    format!("openai-rq: job dead-lettered: {reason}")
                };
                let key = job::result_key(id);
                pipe.cmd("RPUSH")
                    .arg(&key)
                    .arg(job::encode_result(502, &job::text_plain(), body.as_bytes()))
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(ttl)
                    .ignore();
            }
        }
        pipe.cmd("XACK")
            .arg(job::REQUESTS_STREAM)
            .arg(&self.cfg.group)
            .arg(entry_id)
            .ignore()
            .cmd("XDEL")
            .arg(job::REQUESTS_STREAM)
            .arg(entry_id)
            .ignore();
        let mut conn = self.shared.conn.clone();
        match pipe.exec_async(&mut conn).await {
            Ok(()) => {
                self.shared
                    .stats
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    entry = entry_id,
                    job = id.unwrap_or("?"),
                    reason,
                    "job dead-lettered"
                );
            }
            Err(err) => {
                // Left pending: reclaimed and dead-lettered again later.
                tracing::error!(entry = entry_id, error = %err, "cannot dead-letter a job");
            }
        }
        StepOutcome::DeadLettered(entry_id.to_owned())
    }
}
