//! A kept answer: status, the headers that describe it, body; and how it is stored.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

use crate::error::GatewayError;
use crate::store::AnswerRow;

/// An answer as kept for repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The headers that describe the answer itself (`is_kept_header`), not the moment it was
    /// sent (rate limits, dates, the request id).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// Whether an answer with `status` is kept, or the key given up so that a repeat runs again:
/// answers are kept, except those that say "try again" (408, 409, 429 and every 5xx).
pub fn is_worth_keeping(status: u16) -> bool {
    status < 500 && !matches!(status, 408 | 409 | 429)
}

/// Whether a response header is kept with the answer: its content type and the upstream's
/// `openai-*` headers (model, organization, processing time, version).
pub fn is_kept_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-type")
        || name
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("openai-"))
}

impl Answer {
    /// The row's columns: status, headers as a JSON array of pairs, body in base64 (the
    /// schema has TEXT columns only, on SQLite and PostgreSQL alike).
    pub(super) fn to_row(&self) -> (i64, String, String) {
        let headers = serde_json::to_string(&self.headers).unwrap_or_else(|_| "[]".to_owned());
        (i64::from(self.status), headers, STANDARD.encode(&self.body))
    }

    /// The answer in a `done` row.
    pub(super) fn from_row(row: &AnswerRow) -> Result<Answer, GatewayError> {
        let corrupt = |what: &str| GatewayError::Internal {
            message: format!("a kept idempotent answer has an unreadable {what}"),
        };
        let status = row
            .status
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| corrupt("status"))?;
        let headers = row
            .headers
            .as_deref()
            .and_then(|h| serde_json::from_str(h).ok())
            .ok_or_else(|| corrupt("header list"))?;
        let body = row
            .body
            .as_deref()
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(|| corrupt("body"))?;
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_a_row() {
        let answer = Answer {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"{\"a\":\"\\u0000\xff\"}"),
        };
        let (status, headers, body) = answer.to_row();
        let row = AnswerRow {
            fingerprint: "f".into(),
            state: "done".into(),
            status: Some(status),
            headers: Some(headers),
            body: Some(body),
        };
        assert_eq!(Answer::from_row(&row).unwrap(), answer);
        let broken = AnswerRow {
            body: Some("not base64!".into()),
            ..row
        };
        assert!(matches!(
            Answer::from_row(&broken),
            Err(GatewayError::Internal { .. })
        ));
    }

    #[test]
    fn only_final_answers_and_descriptive_headers_are_kept() {
        let kept: Vec<u16> = [200, 201, 400, 404, 408, 409, 422, 429, 500, 502, 503]
            .into_iter()
            .filter(|s| is_worth_keeping(*s))
            .collect();
        assert_eq!(kept, [200, 201, 400, 404, 422]);
        assert!(is_kept_header("Content-Type"));
        assert!(is_kept_header("openai-processing-ms"));
        assert!(!is_kept_header("x-ratelimit-remaining-requests"));
        assert!(!is_kept_header("x-request-id"));
        assert!(!is_kept_header("date"));
    }
}
