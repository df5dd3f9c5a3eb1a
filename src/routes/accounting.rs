//! What one request through the typed flow costs and may spend: its caller's rate limits on
//! the route (`limits::rate`), and its usage record (`usage`), filled in as the request goes
//! and written when its answer ends (a stream's end, or the client going away).
//!
//! The handlers call it at fixed points (`start`, `admit`, `prepare`, `sending`, then `respond`
//! or `failed`); the rules live in `usage` and `limits`, this only carries the request's facts
//! to them.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use bytes::Bytes;
use time::format_description::well_known::Rfc3339;

use super::caller::Caller;
use super::reply::respond;
use crate::backends::{ReplyBody, UpstreamReply};
use crate::config::RateLimit;
use crate::error::GatewayError;
use crate::limits::rate::{self, Admitted};
use crate::observe::Metrics;
use crate::observe::metrics::{self, TokenKind};
use crate::routing::Route;
use crate::schema::chat::StreamOptions;
use crate::state::AppState;
use crate::telemetry::RequestId;
use crate::usage::{self, Metered, Record, Recorder, StreamEnd};

/// One request's accounting, from arrival to the end of its answer.
pub struct Visit {
    recorder: Arc<Recorder>,
    record: Record,
    received: Instant,
    sent: Option<Instant>,
    /// The budgets the request was admitted under (key, project, route), most often none.
    admitted: Vec<Admitted>,
    /// The gateway asked the upstream for usage the client did not ask for.
    asked: bool,
    /// Where the answer's tokens are counted for `/metrics`, when `[metrics]` is on.
    token_series: Option<TokenSeries>,
}

/// A request's token series in `/metrics`: its project and its model's label.
struct TokenSeries {
    metrics: Arc<Metrics>,
    project: String,
    model: String,
}

impl TokenSeries {
    fn count(&self, tokens: &usage::tokens::Tokens) {
        for (kind, n) in [
            (TokenKind::prompt, tokens.prompt_tokens),
            (TokenKind::completion, tokens.completion_tokens),
            (TokenKind::cached, tokens.cached_tokens),
            (TokenKind::reasoning, tokens.reasoning_tokens),
        ] {
            if n > 0 {
                self.metrics.tokens_of(&self.project, &self.model, kind, n);
            }
        }
    }
}

impl Visit {
    /// Starts accounting for a request for `model` at `endpoint`.
    pub fn start(
        req: &HttpRequest,
        state: &AppState,
        caller: &Caller,
        model: &str,
        endpoint: &'static str,
        streamed: bool,
    ) -> Self {
        // Without a sink nothing is recorded: the record's text is not even built.
        let on = state.usage.is_on();
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .filter(|_| on)
            .map(|id| id.0.to_string())
            .unwrap_or_default();
        let now = time::OffsetDateTime::now_utc();
        let grant = caller.as_ref().filter(|_| on);
        Visit {
            recorder: state.usage.clone(),
            record: Record {
                time: if on {
                    now.format(&Rfc3339).unwrap_or_default()
                } else {
                    String::new()
                },
                minute: now.unix_timestamp().div_euclid(60),
                request_id,
                project: grant.map(|g| g.project_id.clone()),
                key_id: grant.map(|g| g.key_id.clone()),
                endpoint,
                model: if on { model.to_owned() } else { String::new() },
                upstream_model: None,
                route: None,
                backend: None,
                status: 0,
                streamed,
                usage: None,
                upstream_ms: None,
                gateway_ms: 0.0,
                ttft_ms: None,
                duration_ms: 0.0,
            },
            received: Instant::now(),
            sent: None,
            admitted: Vec::new(),
            asked: false,
            token_series: None,
        }
    }

    /// Takes the request from each budget it falls under: its key's and its project's (set
    /// through the admin API) and the route's `rate_limit` (per key with `[auth]`, else the
    /// route's own); the first one spent refuses it with a 429.
    pub async fn admit(
        &mut self,
        state: &AppState,
        caller: &Caller,
        route: &Route,
        model: &str,
    ) -> Result<(), GatewayError> {
        if self.recorder.is_on() {
            self.record.route = Some(route.prefix.clone());
        }
        let label = metrics::model_label(model, &route.prefix, &route.models);
        self.admit_under(state, caller, Some(route), label).await
    }

    /// Takes a request that has no route (relayed to `default_backend`) from its key's and
    /// its project's budgets.
    pub async fn admit_unrouted(
        &mut self,
        state: &AppState,
        caller: &Caller,
    ) -> Result<(), GatewayError> {
        self.admit_under(state, caller, None, metrics::NONE).await
    }

    async fn admit_under(
        &mut self,
        state: &AppState,
        caller: &Caller,
        route: Option<&Route>,
        model_label: &str,
    ) -> Result<(), GatewayError> {
        let grant = caller.as_deref();
        let project = grant.map_or("-", |g| g.project_id.as_str());
        if let Some(metrics) = &state.metrics {
            self.token_series = Some(TokenSeries {
                metrics: metrics.clone(),
                project: project.to_owned(),
                model: model_label.to_owned(),
            });
        }
        let scopes = [
            grant.and_then(|g| Some((format!("key:{}", g.key_id), g.key_rate_limit?))),
            grant.and_then(|g| Some((format!("project:{}", g.project_id), g.project_rate_limit?))),
            route.and_then(|route| {
                let limit = route.rate_limit?;
                Some(match grant {
                    Some(g) => (format!("key:{}:route:{}", g.key_id, route.prefix), limit),
                    None => (format!("route:{}", route.prefix), limit),
                })
            }),
        ];
        if scopes.iter().all(Option::is_none) {
            return Ok(());
        }
        // Boxed: most requests meet no budget, and the checks' future (a Redis round trip at
        // worst) would otherwise make every request's future that much larger to move.
        Box::pin(self.take_from_budgets(state, project, scopes)).await
    }

    /// Takes the request from each budget in turn; one that refuses it gives it back to those
    /// that admitted it.
    async fn take_from_budgets(
        &mut self,
        state: &AppState,
        project: &str,
        scopes: [Option<(String, RateLimit)>; 3],
    ) -> Result<(), GatewayError> {
        for (scope, limit) in scopes.into_iter().flatten() {
            match state.rate.check(&scope, &limit).await {
                Ok(admitted) => self.admitted.push(admitted),
                Err(err) => {
                    // Refused by this budget: the ones that admitted it get it back.
                    for earlier in self.admitted.drain(..) {
                        earlier.refund().await;
                    }
                    if let (Some(metrics), GatewayError::RateLimited(refusal)) =
                        (&state.metrics, &err)
                        && let Some(which) = metrics::RateLimit::named(refusal.limit)
                    {
                        metrics.rate_limited(project, which);
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// The body to send: when usage is needed and a streaming client did not ask for it, the
    /// request is made to ask (`options` is the typed view's `stream_options`).
    pub fn prepare(
        &mut self,
        body: Bytes,
        options: Option<&mut Option<StreamOptions>>,
    ) -> Result<Bytes, GatewayError> {
        let wanted = self.recorder.is_on()
            || self.token_series.is_some()
            || self.admitted.iter().any(Admitted::counts_tokens);
        let Some(options) = options else {
            return Ok(body);
        };
        let client_asked = options.as_ref().and_then(|o| o.include_usage) == Some(true);
        if !wanted || !self.record.streamed || client_asked {
            return Ok(body);
        }
        self.asked = true;
        usage::ask_for_usage(&body, options)
    }

    /// Notes which backend is being tried, with which model name.
    pub fn trying(&mut self, backend: &str, upstream_model: &str) {
        if !self.recorder.is_on() {
            return;
        }
        if self.record.backend.as_deref() != Some(backend) {
            self.record.backend = Some(backend.to_owned());
        }
        // A request that names no model (relayed to `default_backend`) sends none either.
        if !upstream_model.is_empty()
            && self.record.upstream_model.as_deref() != Some(upstream_model)
        {
            self.record.upstream_model = Some(upstream_model.to_owned());
        }
    }

    /// Marks the moment the request goes upstream.
    pub fn sending(&mut self) {
        self.sent = Some(Instant::now());
    }

    /// The client's response for the upstream's `reply`; its usage is recorded when it ends.
    pub fn respond(mut self, mut reply: UpstreamReply) -> HttpResponse {
        // Nothing to record and no budget to charge or give back: the answer goes as it is.
        if !self.recorder.is_on() && self.admitted.is_empty() && self.token_series.is_none() {
            return respond(reply);
        }
        let answered = Instant::now();
        self.record.status = reply.status.as_u16();
        self.record.upstream_ms = self.sent.map(|s| ms(answered - s));
        let headers = rate::headers(&self.admitted);
        let closing = Closing::from(self);
        reply.body = match reply.body {
            ReplyBody::EventStream(stream) => {
                let strip = closing.asked;
                let done = Box::new(move |end: StreamEnd| closing.close(end));
                ReplyBody::EventStream(Box::pin(Metered::new(stream, strip, done)))
            }
            ReplyBody::Full(bytes) => {
                closing.close(StreamEnd {
                    tokens: usage::tokens::in_json(&bytes),
                    first_byte: None,
                });
                ReplyBody::Full(bytes)
            }
            // A JSON answer relayed as it comes (OpenAI-compatible upstreams).
            ReplyBody::Raw(body, length) => {
                let done = Box::new(move |end: StreamEnd| closing.close(end));
                ReplyBody::Raw(Box::pin(Metered::json(body, done)), length)
            }
        };
        let mut response = respond(reply);
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        response
    }

    /// Ends the visit with its request's outcome: the client's response for an upstream's
    /// reply, or the error, recorded.
    pub fn finish(
        self,
        outcome: Result<UpstreamReply, GatewayError>,
    ) -> Result<HttpResponse, GatewayError> {
        match outcome {
            Ok(reply) => Ok(self.respond(reply)),
            Err(err) => {
                self.failed(&err);
                Err(err)
            }
        }
    }

    /// Records a request that ended in `err` (refused, or the upstream failed).
    pub fn failed(mut self, err: &GatewayError) {
        self.record.status = match err {
            GatewayError::UpstreamStatus { status, .. } => status.as_u16(),
            _ => err.to_openai().0.as_u16(),
        };
        if let Some(sent) = self.sent {
            self.record.upstream_ms = Some(ms(sent.elapsed()));
        }
        Closing::from(self).close(StreamEnd {
            tokens: None,
            first_byte: None,
        });
    }
}

/// What is left to do when the answer ends: charge tokens, write the record, and (by being
/// dropped) give back the caller's concurrency place.
struct Closing {
    recorder: Arc<Recorder>,
    record: Record,
    received: Instant,
    admitted: Vec<Admitted>,
    asked: bool,
    token_series: Option<TokenSeries>,
}

impl From<Visit> for Closing {
    fn from(visit: Visit) -> Self {
        let mut record = visit.record;
        record.gateway_ms = ms(visit.sent.unwrap_or_else(Instant::now) - visit.received);
        Closing {
            recorder: visit.recorder,
            record,
            received: visit.received,
            admitted: visit.admitted,
            asked: visit.asked,
            token_series: visit.token_series,
        }
    }
}

impl Closing {
    fn close(self, end: StreamEnd) {
        let Closing {
            recorder,
            mut record,
            received,
            admitted,
            token_series,
            ..
        } = self;
        if let Some(tokens) = end.tokens {
            for budget in &admitted {
                budget.charge(tokens.total_tokens);
            }
            if let Some(series) = &token_series {
                series.count(&tokens);
            }
        }
        if end.tokens.is_none() && (200..300).contains(&record.status) && recorder.is_on() {
            tracing::debug!(model = %record.model, "the answer reported no usage");
        }
        record.usage = end.tokens;
        // Time to first token is a stream's measure; a JSON body's first bytes hold them all.
        record.ttft_ms = end
            .first_byte
            .filter(|_| record.streamed)
            .map(|t| ms(t - received));
        record.duration_ms = ms(received.elapsed());
        recorder.record(record);
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
