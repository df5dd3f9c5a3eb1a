//! The worker's outcome counters, and the line that logs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use super::relay::Outcome;

/// Counters of a worker's outcomes.
#[derive(Debug, Default)]
pub struct Stats {
    answered_2xx: AtomicU64,
    pub(super) answered_other: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) interrupted: AtomicU64,
    pub(super) already_answered: AtomicU64,
    pub(super) redis_lost: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) reclaimed: AtomicU64,
    pub(super) in_flight: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Answered by the upstream with a 2xx.
    pub answered_2xx: u64,
    /// Answered by the upstream with another status (passed through).
    pub answered_other: u64,
    /// Upstream unreachable or broke off: a 502 written.
    pub failed: u64,
    /// Re-runs of streams that had output: ended with an error instead.
    pub interrupted: u64,
    /// Re-runs of jobs already answered: acknowledged only.
    pub already_answered: u64,
    /// Answers Redis did not take.
    pub redis_lost: u64,
    /// Stopped: the claim was lost, the client gave up, or the shutdown deadline passed.
    pub abandoned: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Orphans claimed from other consumers.
    pub reclaimed: u64,
    /// Running now.
    pub in_flight: u64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            answered_2xx: g(&self.answered_2xx),
            answered_other: g(&self.answered_other),
            failed: g(&self.failed),
            interrupted: g(&self.interrupted),
            already_answered: g(&self.already_answered),
            redis_lost: g(&self.redis_lost),
            abandoned: g(&self.abandoned),
            dead_lettered: g(&self.dead_lettered),
            reclaimed: g(&self.reclaimed),
            in_flight: g(&self.in_flight),
        }
    }

    pub(super) fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Answered(status) if (200..300).contains(&status) => &self.answered_2xx,
            Outcome::Answered(_) => &self.answered_other,
            Outcome::Failed => &self.failed,
            Outcome::Interrupted => &self.interrupted,
            Outcome::AlreadyAnswered => &self.already_answered,
            Outcome::RedisLost => &self.redis_lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One line with the counters every minute, when they changed.
pub(super) async fn report_stats(shared: Arc<Shared>, end: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    let mut last = shared.stats.snapshot();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = end.cancelled() => return,
        }
        let now = shared.stats.snapshot();
        if now != last {
            log_stats("worker counters", &now);
            last = now;
        }
    }
}

pub(super) fn log_stats(message: &str, s: &StatsSnapshot) {
    tracing::info!(
        answered_2xx = s.answered_2xx,
        answered_other = s.answered_other,
        failed = s.failed,
        interrupted = s.interrupted,
        already_answered = s.already_answered,
        redis_lost = s.redis_lost,
        abandoned = s.abandoned,
        dead_lettered = s.dead_lettered,
        reclaimed = s.reclaimed,
        in_flight = s.in_flight,
        "{message}"
    );
}
