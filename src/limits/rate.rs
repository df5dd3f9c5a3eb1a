//! Rate limits per caller: requests and tokens per minute, and requests in progress at once.
//!
//! Requests and tokens are paced with GCRA (the generic cell rate algorithm): each caller has a
//! "theoretical arrival time" (TAT) per budget, moved forward by one emission interval
//! (a minute divided by the limit) per request or token; a request is admitted while the TAT
//! stays within a minute of now, so a full minute's budget may be spent in a burst and comes
//! back evenly. One number per budget, updated lock-free (compare-and-swap).
//!
//! Tokens are unknown until the answer: a request is admitted while any token of the budget
//! is left, and the tokens it actually used are charged after it (`Admitted::charge`). A large
//! answer can therefore overdraw the budget; the caller then waits until it has paid it back
//! (the debt is capped at a day).
//!
//! With `[limits] redis_url` the two budgets live in Redis (`shared`), checked by one atomic
//! script per request with Redis's own clock, so every instance draws on the same budget.
//! `max_concurrent` is counted in each instance's memory.
//!
//! Not here: the gateway-wide admission limits (`crate::limits`, 503s), who the caller is
//! (`crate::auth`), HTTP (the handlers turn a refusal into a 429 with OpenAI's headers).

mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use shared::SharedLimits;

use crate::config::RateLimit;
use crate::error::{GatewayError, RateLimited};

/// One minute, the window of every per-minute budget, in nanoseconds.
const MINUTE: u64 = 60_000_000_000;
/// The longest a caller can be made to wait after overdrawing its token budget.
const MAX_DEBT: u64 = 24 * 60 * MINUTE;
/// Callers whose budgets are kept in memory; an idle caller's budget is full again after a
/// minute anyway, so evicting it loses nothing.
const CAPACITY: u64 = 100_000;

/// Monotonic nanoseconds, injectable so tests move time instead of sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Nanoseconds since an arbitrary fixed origin.
    fn now(&self) -> u64;
}

/// The process's monotonic clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One caller's budgets in this process.
#[derive(Debug, Default)]
struct Bucket {
    requests: AtomicU64,
    tokens: AtomicU64,
    in_flight: AtomicU32,
}

/// Where request and token budgets are kept.
#[derive(Debug)]
enum Budgets {
    Local,
    Shared(SharedLimits),
}

/// The rate limiter of a running gateway.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: moka::sync::Cache<String, Arc<Bucket>>,
    clock: Arc<dyn Clock>,
    budgets: Budgets,
    refused: AtomicU64,
}

/// What a budget looks like after a check, for the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The limit per minute.
    pub limit: u64,
    /// What is left of it now.
    pub remaining: u64,
    /// Nanoseconds until it is whole again.
    pub reset: u64,
}

/// An admitted request: holds its concurrency place until dropped, and is charged its tokens.
#[derive(Debug)]
pub struct Admitted {
    bucket: Option<Arc<Bucket>>,
    scope: String,
    limit: RateLimit,
    clock: Arc<dyn Clock>,
    shared: Option<SharedLimits>,
    /// The request budget after this request.
    pub requests: Option<Budget>,
    /// The token budget before this request's tokens.
    pub tokens: Option<Budget>,
    concurrent: bool,
}

impl RateLimiter {
    /// Budgets kept in this process.
    pub fn local(clock: Arc<dyn Clock>) -> Self {
        RateLimiter {
            buckets: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(Duration::from_secs(120))
                .build(),
            clock,
            budgets: Budgets::Local,
            refused: AtomicU64::new(0),
        }
    }

    /// Budgets kept in Redis, shared by every instance using it.
    pub fn shared(shared: SharedLimits) -> Self {
        RateLimiter {
            budgets: Budgets::Shared(shared),
            ..RateLimiter::local(Arc::new(SystemClock::default()))
        }
    }

    /// Admits one request of the caller `scope` under `limit`, or refuses it with a 429.
    pub async fn check(&self, scope: &str, limit: &RateLimit) -> Result<Admitted, GatewayError> {
        let checked = self.take(scope, limit).await;
        if checked.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    /// Requests refused with a 429 so far (for `/metrics`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    async fn take(&self, scope: &str, limit: &RateLimit) -> Result<Admitted, GatewayError> {
        let bucket = self.buckets.get_with_by_ref(scope, Arc::default);
        let concurrent = match limit.max_concurrent {
            Some(max) => take_place(&bucket, max)?,
            None => false,
        };
        let mut admitted = Admitted {
            bucket: Some(bucket),
            scope: scope.to_owned(),
            limit: *limit,
            clock: self.clock.clone(),
            shared: None,
            requests: None,
            tokens: None,
            concurrent,
        };
        match &self.budgets {
            Budgets::Local => admitted.check_local()?,
            Budgets::Shared(shared) => {
                let (requests, tokens) = shared.check(scope, limit).await?;
                admitted.requests = requests;
                admitted.tokens = tokens;
                admitted.shared = Some(shared.clone());
            }
        }
        Ok(admitted)
    }
}

/// A place among the caller's requests in progress, or a 429.
fn take_place(bucket: &Bucket, max: u32) -> Result<bool, GatewayError> {
    let taken = bucket
        .in_flight
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
    match taken {
        Ok(_) => Ok(true),
        Err(_) => Err(GatewayError::RateLimited(Box::new(RateLimited {
            limit: "max_concurrent",
            retry_after_secs: 1,
            headers: Vec::new(),
        }))),
    }
}

impl Admitted {
    fn check_local(&mut self) -> Result<(), GatewayError> {
        let Some(bucket) = self.bucket.clone() else {
            return Ok(());
        };
        let now = self.clock.now();
        let tokens = match self.limit.tokens_per_minute {
            Some(limit) => Some(peek(&bucket.tokens, now, limit).map_err(|wait| {
                refusal(
                    "tokens_per_minute",
                    wait,
                    None,
                    Some(exhausted(&bucket.tokens, now, limit)),
                )
            })?),
            None => None,
        };
        let requests = match self.limit.requests_per_minute {
            Some(limit) => Some(take(&bucket.requests, now, limit).map_err(|wait| {
                refusal(
                    "requests_per_minute",
                    wait,
                    Some(exhausted(&bucket.requests, now, limit)),
                    tokens,
                )
            })?),
            None => None,
        };
        self.requests = requests;
        self.tokens = tokens;
        Ok(())
    }

    /// Charges the tokens the request used to the caller's token budget.
    pub fn charge(&self, tokens: u64) {
        let Some(per_minute) = self.limit.tokens_per_minute else {
            return;
        };
        if tokens == 0 {
            return;
        }
        match (&self.shared, &self.bucket) {
            (Some(shared), _) => shared.charge(&self.scope, per_minute, tokens),
            (None, Some(bucket)) => {
                let cost = interval(per_minute).saturating_mul(tokens);
                let now = self.clock.now();
                let _ = bucket
                    .tokens
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                        Some(
                            tat.max(now)
                                .saturating_add(cost)
                                .min(now.saturating_add(MAX_DEBT)),
                        )
                    });
            }
            (None, None) => {}
        }
    }

    /// Gives back the request this admission took: another of the request's budgets refused
    /// it, and a refused request counts against none of them.
    pub async fn refund(&self) {
        let Some(per_minute) = self.limit.requests_per_minute else {
            return;
        };
        let step = interval(per_minute);
        match (&self.shared, &self.bucket) {
            (Some(shared), _) => shared.refund(&self.scope, per_minute).await,
            (None, Some(bucket)) => {
                let _ = bucket
                    .requests
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                        Some(tat.saturating_sub(step))
                    });
            }
            (None, None) => {}
        }
    }

    /// Whether tokens are counted for this request (so its usage must be read).
    pub fn counts_tokens(&self) -> bool {
        self.limit.tokens_per_minute.is_some()
    }
}

/// The `x-ratelimit-*` headers of a request admitted under `budgets`, as OpenAI sends them:
/// of each kind, the budget with the least left.
pub fn headers(budgets: &[Admitted]) -> Vec<(&'static str, String)> {
    let least = |pick: fn(&Admitted) -> Option<Budget>| {
        budgets.iter().filter_map(pick).min_by_key(|b| b.remaining)
    };
    budget_headers(least(|a| a.requests), least(|a| a.tokens))
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let (true, Some(bucket)) = (self.concurrent, &self.bucket) {
            bucket.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A minute divided by `per_minute`: the cost of one request or token, in nanoseconds.
fn interval(per_minute: u64) -> u64 {
    (MINUTE / per_minute.max(1)).max(1)
}

/// GCRA: the theoretical arrival time after one more cell of `interval` at `now`, or the
/// nanoseconds to wait until it would be admitted.
pub fn gcra(tat: u64, now: u64, interval: u64) -> Result<u64, u64> {
    let next = tat.max(now).saturating_add(interval);
    let allowed_at = next.saturating_sub(MINUTE);
    if allowed_at > now {
        Err(allowed_at - now)
    } else {
        Ok(next)
    }
}

/// The budget at `now` given its `tat`.
fn budget(tat: u64, now: u64, limit: u64) -> Budget {
    let reset = tat.saturating_sub(now);
    Budget {
        limit,
        remaining: (MINUTE.saturating_sub(reset) / interval(limit)).min(limit),
        reset,
    }
}

/// Takes one request from the budget in `cell`: its state after, or the wait.
fn take(cell: &AtomicU64, now: u64, limit: u64) -> Result<Budget, u64> {
    let step = interval(limit);
    let mut wait = 0;
    let taken = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
        gcra(tat, now, step).map_err(|w| wait = w).ok()
    });
    match taken {
        Ok(before) => Ok(budget(before.max(now) + step, now, limit)),
        Err(_) => Err(wait),
    }
}

/// Whether a token is left in the budget in `cell` (taking none): its state, or the wait.
fn peek(cell: &AtomicU64, now: u64, limit: u64) -> Result<Budget, u64> {
    let tat = cell.load(Ordering::Acquire);
    gcra(tat, now, interval(limit)).map(|_| budget(tat, now, limit))
}

fn exhausted(cell: &AtomicU64, now: u64, limit: u64) -> Budget {
    budget(cell.load(Ordering::Acquire), now, limit)
}

/// The 429 for the budget `limit` (its routes.toml key), to be retried after `wait` ns.
pub fn refusal(
    limit: &'static str,
    wait: u64,
    requests: Option<Budget>,
    tokens: Option<Budget>,
) -> GatewayError {
    GatewayError::RateLimited(Box::new(RateLimited {
        limit,
        retry_after_secs: wait.div_ceil(1_000_000_000).max(1),
        headers: budget_headers(requests, tokens),
    }))
}

fn budget_headers(requests: Option<Budget>, tokens: Option<Budget>) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    if let Some(b) = requests {
        headers.push(("x-ratelimit-limit-requests", b.limit.to_string()));
        headers.push(("x-ratelimit-remaining-requests", b.remaining.to_string()));
        headers.push(("x-ratelimit-reset-requests", reset_text(b.reset)));
    }
    if let Some(b) = tokens {
        headers.push(("x-ratelimit-limit-tokens", b.limit.to_string()));
        headers.push(("x-ratelimit-remaining-tokens", b.remaining.to_string()));
        headers.push(("x-ratelimit-reset-tokens", reset_text(b.reset)));
    }
    headers
}

/// A reset time as OpenAI writes it (Go's duration format): `120ms`, `1s`, `6m0s`, `1h2m3s`.
pub fn reset_text(nanos: u64) -> String {
    let millis = nanos.div_ceil(1_000_000);
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = millis.div_ceil(1000);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> (RateLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (RateLimiter::local(clock.clone()), clock)
    }

    fn rpm(n: u64) -> RateLimit {
        RateLimit {
            requests_per_minute: Some(n),
            ..RateLimit::default()
        }
    }

    fn refused_limit(err: GatewayError) -> (&'static str, u64) {
        match err {
            GatewayError::RateLimited(r) => (r.limit, r.retry_after_secs),
            other => panic!("not a rate limit: {other}"),
        }
    }

    #[tokio::test]
    async fn a_minutes_requests_pass_in_a_burst_then_come_back_evenly() {
        let (limiter, clock) = limiter();
        for left in (0..3).rev() {
            let admitted = limiter.check("k", &rpm(3)).await.unwrap();
            assert_eq!(admitted.requests.unwrap().remaining, left);
        }
        let refused = limiter.check("k", &rpm(3)).await.unwrap_err();
        assert_eq!(refused_limit(refused), ("requests_per_minute", 20));
        // Another caller has a budget of its own.
        limiter.check("other", &rpm(3)).await.unwrap();
        clock.advance(Duration::from_secs(19));
        assert!(limiter.check("k", &rpm(3)).await.is_err());
        clock.advance(Duration::from_secs(1));
        let admitted = limiter.check("k", &rpm(3)).await.unwrap();
        assert_eq!(admitted.requests.unwrap().reset, MINUTE);
    }

    #[tokio::test]
    async fn tokens_are_charged_after_the_answer_and_an_overdraft_is_waited_out() {
        let (limiter, clock) = limiter();
        let limit = RateLimit {
            tokens_per_minute: Some(600),
            ..RateLimit::default()
        };
        let first = limiter.check("k", &limit).await.unwrap();
        assert_eq!(first.tokens.unwrap().remaining, 600);
        first.charge(1200);
        let (which, wait) = refused_limit(limiter.check("k", &limit).await.unwrap_err());
        // 1200 tokens at 10 per second: 120 s of debt, of which a minute is the window.
        assert_eq!((which, wait), ("tokens_per_minute", 61));
        clock.advance(Duration::from_secs(61));
        let again = limiter.check("k", &limit).await.unwrap();
        assert_eq!(again.tokens.unwrap().remaining, 10);
        // A hostile upstream's count cannot push the wait past a day.
        again.charge(u64::MAX);
        clock.advance(Duration::from_secs(24 * 3600 + 1));
        assert!(limiter.check("k", &limit).await.is_ok());
    }

    #[tokio::test]
    async fn concurrent_places_come_back_when_the_request_ends() {
        let (limiter, _) = limiter();
        let limit = RateLimit {
            max_concurrent: Some(1),
            ..RateLimit::default()
        };
        let held = limiter.check("k", &limit).await.unwrap();
        assert_eq!(
            refused_limit(limiter.check("k", &limit).await.unwrap_err()).0,
            "max_concurrent"
        );
        drop(held);
        assert!(limiter.check("k", &limit).await.is_ok());
        assert_eq!(limiter.refused(), 1);
    }

    #[tokio::test]
    async fn a_refunded_request_is_back_in_its_budget() {
        let (limiter, _) = limiter();
        let refused_elsewhere = limiter.check("k", &rpm(2)).await.unwrap();
        refused_elsewhere.refund().await;
        for left in [1, 0] {
            let admitted = limiter.check("k", &rpm(2)).await.unwrap();
            assert_eq!(admitted.requests.unwrap().remaining, left);
        }
        assert!(limiter.check("k", &rpm(2)).await.is_err());
    }

    #[test]
    fn resets_are_written_the_way_openai_writes_them() {
        assert_eq!(reset_text(120_000_000), "120ms");
        assert_eq!(reset_text(1_000_000_000), "1s");
        assert_eq!(reset_text(360_000_000_000), "6m0s");
        assert_eq!(reset_text(3_723_000_000_000), "1h2m3s");
        assert_eq!(reset_text(0), "0ms");
    }
}
