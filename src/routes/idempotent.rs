//! `Idempotency-Key` around the inference handlers (chat, embeddings, responses, completions):
//! the HTTP side of `crate::idempotency`. A keyed request runs once; its answer is read into
//! memory (up to `[idempotency] max_answer_bytes`) to be kept, and repeats are answered from it
//! with `idempotent-replayed: true`.

use std::error::Error as StdError;

use actix_web::body::{BodyStream, BoxBody, MessageBody};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::caller::Caller;
use crate::error::{GatewayError, IdempotencyRefusal};
use crate::idempotency::{
    self, Answer, Begun, Keyed, REPLAYED_HEADER, Run, is_kept_header, is_worth_keeping,
};
use crate::state::AppState;

/// Serves the request with the future `serve` makes, once per `Idempotency-Key` when the client
/// sent one and the gateway has a store. `stream` says whether the client asked for a stream
/// (only asked when there is a key): a stream is not kept, so a key with one is a 400.
///
/// `serve` makes the future only where it is awaited: a future passed in, awaited, and boxed
/// for the keyed path, is held three times over in this function's own, which every request
/// then builds and moves (the request's future is several KiB).
pub(super) async fn once<F>(
    req: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    body: &Bytes,
    stream: impl FnOnce() -> bool,
    serve: impl FnOnce() -> F,
) -> Result<HttpResponse, GatewayError>
where
    F: Future<Output = Result<HttpResponse, GatewayError>>,
{
    // Bounded even when it is ignored: a hostile header is refused the same way everywhere.
    let key = idempotency::key_of(req.headers())?;
    let (Some(keys), Some(key)) = (&state.idempotency, key) else {
        return serve().await;
    };
    if stream() {
        return Err(GatewayError::Idempotency(IdempotencyRefusal::WithStream));
    }
    let scope = idempotency::scope_of(caller.as_deref().map(|g| g.key_id.as_str()), req.headers());
    let keyed = Keyed {
        scope: &scope,
        key,
        method: req.method().as_str(),
        path: req.path(),
        body,
    };
    let run = match Box::pin(keys.begin(keyed)).await? {
        Begun::Replay(answer) => return Ok(replay(answer)),
        Begun::Run(run) => run,
    };
    // The keyed path's futures are boxed so that the common one stays small.
    let outcome = run.renewing(Box::pin(serve())).await;
    Box::pin(settle(run, outcome, keys.max_answer_bytes())).await
}

/// Whether a body asks for a stream (`"stream": true` at the top level), read loosely: a body
/// that does not parse is not a stream here, and its handler says what is wrong with it.
pub(super) fn asks_for_stream(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(default)]
        stream: serde_json::Value,
    }
    serde_json::from_slice::<Peek>(body).is_ok_and(|p| p.stream == serde_json::Value::Bool(true))
}

/// Keeps the run's answer when it is final, else gives the key up for a retry.
async fn settle(
    run: Run,
    outcome: Result<HttpResponse, GatewayError>,
    limit: usize,
) -> Result<HttpResponse, GatewayError> {
    match outcome {
        Ok(response) if is_worth_keeping(response.status().as_u16()) => {
            Ok(keep_response(run, response, limit).await)
        }
        // The upstream's verdict on the request (a 400, a 404): as final as a success.
        Err(GatewayError::UpstreamStatus {
            status,
            headers,
            body,
        }) if is_worth_keeping(status.as_u16()) => {
            let answer = Answer {
                status: status.as_u16(),
                headers: kept_headers(&headers),
                body,
            };
            keep(run, &answer, limit).await;
            Err(GatewayError::UpstreamStatus {
                status,
                headers,
                body: answer.body,
            })
        }
        other => {
            run.give_up().await;
            other
        }
    }
}

/// Reads the response's body to keep it, and answers with it.
async fn keep_response(run: Run, response: HttpResponse, limit: usize) -> HttpResponse {
    let (head, body) = response.into_parts();
    match collect(body, limit).await {
        Collected::Whole(bytes) => {
            let answer = Answer {
                status: head.status().as_u16(),
                headers: kept_headers(head.headers()),
                body: bytes,
            };
            keep(run, &answer, limit).await;
            head.set_body(answer.body).map_into_boxed_body()
        }
        Collected::TooLarge(body) => {
            log_store_failure(run.not_kept().await);
            head.set_body(body)
        }
        Collected::Failed(body) => {
            run.give_up().await;
            head.set_body(body)
        }
    }
}

async fn keep(run: Run, answer: &Answer, limit: usize) {
    if answer.body.len() > limit {
        log_store_failure(run.not_kept().await);
    } else {
        log_store_failure(run.keep(answer).await);
    }
}

/// The answer reaches its client even when it could not be kept; a repeat then finds the key
/// still claimed and waits for the claim's lease to run out, after which it runs again.
fn log_store_failure(result: Result<(), GatewayError>) {
    if let Err(err) = result {
        tracing::warn!(error = %err, "cannot keep an idempotent answer");
    }
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| is_kept_header(name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect()
}

/// A kept answer, marked as such.
fn replay(answer: Answer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    for (name, value) in &answer.headers {
        response.append_header((name.as_str(), value.as_str()));
    }
    response
        .insert_header((REPLAYED_HEADER, "true"))
        .body(answer.body)
}

/// A response body read for keeping.
enum Collected {
    /// All of it, within the limit.
    Whole(Bytes),
    /// Over the limit: what was read, then the rest, for the client.
    TooLarge(BoxBody),
    /// The body failed midway: what was read, then the failure, for the client.
    Failed(BoxBody),
}

type BodyError = Box<dyn StdError>;

async fn collect(body: BoxBody, limit: usize) -> Collected {
    let mut body = match body.try_into_bytes() {
        Ok(bytes) if bytes.len() <= limit => return Collected::Whole(bytes),
        Ok(bytes) => return Collected::TooLarge(BoxBody::new(bytes)),
        Err(body) => Box::pin(body),
    };
    let mut read = BytesMut::new();
    loop {
        match futures::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
            None => return Collected::Whole(read.freeze()),
            Some(Ok(chunk)) if read.len() + chunk.len() <= limit => read.extend_from_slice(&chunk),
            Some(Ok(chunk)) => {
                let head = futures::stream::iter([Ok(read.freeze()), Ok(chunk)]);
                let rest = futures::stream::poll_fn(move |cx| body.as_mut().poll_next(cx));
                return Collected::TooLarge(BoxBody::new(BodyStream::new(head.chain(rest))));
            }
            Some(Err(err)) => {
                let head = futures::stream::iter([Ok::<_, BodyError>(read.freeze()), Err(err)]);
                return Collected::Failed(BoxBody::new(BodyStream::new(head)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_top_level_stream_is_a_stream() {
        assert!(asks_for_stream(br#"{"model":"m","stream":true}"#));
        for body in [
            &br#"{"model":"m","stream":false}"#[..],
            br#"{"model":"m","stream":"true"}"#,
            br#"{"model":"m","x":{"stream":true}}"#,
            b"not json",
            b"",
        ] {
            assert!(!asks_for_stream(body), "{}", String::from_utf8_lossy(body));
        }
    }

    async fn chunks(parts: &'static [&'static [u8]]) -> BoxBody {
        let stream = futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, BodyError>(Bytes::from_static(p))),
        );
        BoxBody::new(BodyStream::new(stream))
    }

    #[tokio::test]
    async fn a_body_over_the_limit_still_reaches_the_client_whole() {
        let parts: &[&[u8]] = &[b"abc", b"def", b"ghi"];
        let Collected::Whole(all) = collect(chunks(parts).await, 9).await else {
            panic!("nine bytes fit a limit of nine");
        };
        assert_eq!(&all[..], b"abcdefghi");
        let Collected::TooLarge(body) = collect(chunks(parts).await, 4).await else {
            panic!("nine bytes do not fit a limit of four");
        };
        let relayed = actix_web::body::to_bytes(body).await.unwrap();
        assert_eq!(&relayed[..], b"abcdefghi");
    }
}
