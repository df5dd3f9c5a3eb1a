//! Dead-letters: a job that cannot be run goes to the capped, expiring dead-letter stream with
//! its reason, and its client, when the job says who that is, gets a 502 rather than a hang.
//!
//! The decisions (`admit`: run or dead-letter; `client_answers`: which keys tell the client
//! what) are pure functions, tested without Redis; `Worker::dead_letter` only writes them.

use std::sync::atomic::Ordering;

use super::{StepOutcome, Worker};
use crate::backends::redis::job::{self, Job};

/// Dead-letter entries are kept this long after the last one was added.
const DEAD_LETTER_TTL_S: u64 = 7 * 24 * 3600;

/// Why a job is dead-lettered, and what is known of its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeadLetter {
    /// The reason, stored with the entry and logged.
    pub(super) reason: String,
    /// Whether it ran out of deliveries (it could be read, but kept failing).
    pub(super) out_of_retries: bool,
    /// The openai-rq job id, when the entry says it: its client is answered.
    pub(super) id: Option<String>,
    /// Whether the client waits on a stream; `None` when unknown.
    pub(super) stream: Option<bool>,
}

/// Whether an entry taken from the group, its `data` field as read and delivered `deliveries`
/// times, is run or dead-lettered: unreadable entries at once, readable ones once delivered
/// more than `max_retries` times.
pub(super) fn admit(
    data: Option<&[u8]>,
    deliveries: u64,
    max_retries: u64,
) -> Result<Job, DeadLetter> {
    let Some(data) = data else {
        return Err(DeadLetter {
            reason: "the entry has no `data` field".to_owned(),
            out_of_retries: false,
            id: None,
            stream: None,
        });
    };
    let job = job::decode_job(data).map_err(|bad| DeadLetter {
        reason: bad.reason,
        out_of_retries: false,
        id: bad.id,
        stream: bad.stream,
    })?;
    if deliveries > max_retries {
        return Err(DeadLetter {
            reason: format!("delivered {deliveries} times, more than --max-retries {max_retries}"),
            out_of_retries: true,
            id: Some(job.id),
            stream: Some(job.stream),
        });
    }
    Ok(job)
}

/// Where a dead-lettered job's client is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ClientAnswer {
    /// An `error` entry on the job's result stream (`XADD`), for a streaming client.
    Stream {
        /// The stream's key.
        key: String,
        /// The entry's `data`.
        data: String,
    },
    /// A result on the job's result list (`RPUSH`), for a non-streaming client.
    Result {
        /// The list's key.
        key: String,
        /// The result JSON.
        data: String,
    },
}

/// The 502s that release a dead-lettered job's client: none when the job names no client; on
/// the stream or the list as the job says, on both when it does not say (the unread one
/// expires).
pub(super) fn client_answers(letter: &DeadLetter) -> Vec<ClientAnswer> {
    let Some(id) = letter.id.as_deref() else {
        return Vec::new();
    };
    let why = || format!("openai-rq: job dead-lettered: {}", letter.reason);
    let mut answers = Vec::with_capacity(2);
    if letter.stream != Some(false) {
        let body = match letter.out_of_retries {
            true => job::DEAD_LETTERED_STREAM_BODY.to_owned(),
            false => why(),
        };
        answers.push(ClientAnswer::Stream {
            key: job::stream_key(id),
            data: job::encode_error(502, &job::text_plain(), body.as_bytes()),
        });
    }
    if letter.stream != Some(true) {
        let body = match letter.out_of_retries {
            true => job::DEAD_LETTERED_RESULT_BODY.to_owned(),
            false => why(),
        };
        answers.push(ClientAnswer::Result {
            key: job::result_key(id),
            data: job::encode_result(502, &job::text_plain(), body.as_bytes()),
        });
    }
    answers
}

impl Worker {
    /// Moves a job to the (capped, expiring) dead-letter stream with its reason, releases its
    /// client with a 502 when the job says who that is, and acknowledges it, in one `MULTI`.
    pub(super) async fn dead_letter(
        &mut self,
        entry_id: &str,
        data: &[u8],
        letter: &DeadLetter,
    ) -> StepOutcome {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.store_dead_letter(&mut pipe, entry_id, data, &letter.reason);
        for answer in client_answers(letter) {
            self.answer_client(&mut pipe, answer);
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
                    job = letter.id.as_deref().unwrap_or("?"),
                    reason = %letter.reason,
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

    /// Adds the entry, credentials redacted, to the capped dead-letter stream and renews its TTL.
    fn store_dead_letter(
        &self,
        pipe: &mut redis::Pipeline,
        entry_id: &str,
        data: &[u8],
        reason: &str,
    ) {
        let stored = job::redact_job(data).map_or_else(|| data.to_vec(), String::into_bytes);
        pipe.cmd("XADD")
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
    }

    /// Writes one of `client_answers`, with the result TTL.
    fn answer_client(&self, pipe: &mut redis::Pipeline, answer: ClientAnswer) {
        let key = match answer {
            ClientAnswer::Stream { key, data } => {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(job::STREAM_MAXLEN)
                    .arg("*")
                    .arg("data")
                    .arg(data)
                    .ignore();
                key
            }
            ClientAnswer::Result { key, data } => {
                pipe.cmd("RPUSH").arg(&key).arg(data).ignore();
                key
            }
        };
        pipe.cmd("EXPIRE")
            .arg(key)
            .arg(self.shared.result_ttl_s)
            .ignore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::redis::job::{Entry, WireHeaders, decode_entry, decode_result};

    fn job_data(id: &str, stream: bool) -> Vec<u8> {
        job::encode_job(
            id,
            "POST",
            "/v1/chat/completions",
            &WireHeaders::new(),
            b"{}",
            stream,
        )
        .into_bytes()
    }

    /// The status and body text of each answer, with the key it goes to.
    fn decoded(answers: &[ClientAnswer]) -> Vec<(String, u16, String)> {
        answers
            .iter()
            .map(|a| match a {
                ClientAnswer::Stream { key, data } => match decode_entry(data.as_bytes()) {
                    Ok(Entry::Error { status, body, .. }) => (
                        key.clone(),
                        status,
                        String::from_utf8_lossy(&body).into_owned(),
                    ),
                    other => panic!("not an error entry: {other:?}"),
                },
                ClientAnswer::Result { key, data } => {
                    let answer = decode_result(data.as_bytes()).unwrap();
                    let body = String::from_utf8_lossy(&answer.body).into_owned();
                    (key.clone(), answer.status, body)
                }
            })
            .collect()
    }

    #[test]
    fn a_job_runs_until_delivered_more_than_max_retries_then_its_client_gets_a_502() {
        let data = job_data("ab12", true);
        for deliveries in 1..=3 {
            let job = admit(Some(&data), deliveries, 3).unwrap();
            assert_eq!(job.id, "ab12");
        }
        let letter = admit(Some(&data), 4, 3).unwrap_err();
        assert!(letter.out_of_retries);
        assert_eq!(
            letter.reason,
            "delivered 4 times, more than --max-retries 3"
        );
        assert_eq!(
            decoded(&client_answers(&letter)),
            [(
                job::stream_key("ab12"),
                502,
                job::DEAD_LETTERED_STREAM_BODY.to_owned()
            )]
        );
        let letter = admit(Some(&job_data("cd34", false)), 1, 0).unwrap_err();
        assert_eq!(
            decoded(&client_answers(&letter)),
            [(
                job::result_key("cd34"),
                502,
                job::DEAD_LETTERED_RESULT_BODY.to_owned()
            )]
        );
    }

    #[test]
    fn an_unreadable_entry_is_dead_lettered_at_once_and_answers_whoever_it_names() {
        // No `data` at all: no client to answer.
        let letter = admit(None, 1, 3).unwrap_err();
        assert!(!letter.out_of_retries && letter.reason.contains("no `data`"));
        assert!(client_answers(&letter).is_empty());
        // Not JSON: no client either, whatever the delivery count.
        let letter = admit(Some(b"not json"), 1, 3).unwrap_err();
        assert!(letter.id.is_none() && client_answers(&letter).is_empty());
        // An id but no `stream`: both the stream and the list get the 502, with the reason.
        let letter = admit(
            Some(br#"{"id":"ef56","method":"POST","path":"/v1/x","headers":{},"body_b64":""}"#),
            1,
            3,
        )
        .unwrap_err();
        let expected = "openai-rq: job dead-lettered: field `stream` is missing";
        assert_eq!(
            decoded(&client_answers(&letter)),
            [
                (job::stream_key("ef56"), 502, expected.to_owned()),
                (job::result_key("ef56"), 502, expected.to_owned()),
            ]
        );
        // A streaming client named by a job missing a field: the stream only.
        let letter = admit(Some(br#"{"id":"ab12","stream":true}"#), 1, 3).unwrap_err();
        let answers = decoded(&client_answers(&letter));
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, job::stream_key("ab12"));
    }
}
