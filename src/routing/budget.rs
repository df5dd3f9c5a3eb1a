//! The retry budget of a route, after Finagle's `RetryBudget`: over a sliding 10 s window, extra
//! upstream attempts (failovers) may add at most `retry_budget` percent (20 by default) to the
//! requests, plus a floor of a few per
//! second so that a quiet route can still fail over. When a whole fleet fails, clients get
//! their error after one attempt instead of every backend being hammered N times over.
//!
//! Time is passed in (`now`), never read here, so tests drive it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of the window, in buckets of `BUCKET`.
const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_secs(1);
/// Extra attempts always allowed per second of the window, whatever the traffic.
const FLOOR_PER_SECOND: u64 = 5;

/// A sliding-window retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    origin: Instant,
    percent: u64,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Index (in buckets since `origin`) of the newest bucket.
    newest: u64,
    requests: [u64; BUCKETS],
    retries: [u64; BUCKETS],
}

impl Window {
    /// Moves the window forward to `bucket`, emptying the buckets it passes.
    fn advance(&mut self, bucket: u64) {
        if bucket <= self.newest {
            return;
        }
        let steps = (bucket - self.newest).min(BUCKETS as u64);
        for k in 1..=steps {
            let i = slot(self.newest + k);
            self.requests[i] = 0;
            self.retries[i] = 0;
        }
        self.newest = bucket;
    }
}

fn slot(bucket: u64) -> usize {
    (bucket % BUCKETS as u64) as usize
}

impl RetryBudget {
    /// An empty budget allowing extra attempts of `percent` of the requests (plus the floor),
    /// whose clock starts at `origin`.
    pub fn new(origin: Instant, percent: u32) -> Self {
        RetryBudget {
            origin,
            percent: u64::from(percent),
            window: Mutex::new(Window::default()),
        }
    }

    fn window(&self, now: Instant) -> (std::sync::MutexGuard<'_, Window>, usize) {
        let bucket = now.saturating_duration_since(self.origin).as_secs() / BUCKET.as_secs();
        // A poisoned lock only means a panic elsewhere mid-update: the counts are still usable.
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.advance(bucket);
        // A `now` older than the newest bucket (read before another thread's) counts in the newest.
        let newest = w.newest;
        (w, slot(newest))
    }

    /// Counts a client request (its first attempt).
    pub fn record_request(&self, now: Instant) {
        let (mut w, i) = self.window(now);
        w.requests[i] += 1;
    }

    /// Takes one extra attempt from the budget, or says no.
    pub fn try_retry(&self, now: Instant) -> bool {
        let (mut w, i) = self.window(now);
        let requests: u64 = w.requests.iter().sum();
        let retries: u64 = w.retries.iter().sum();
        let allowed = FLOOR_PER_SECOND * BUCKETS as u64 + requests * self.percent / 100;
        if retries >= allowed {
            return false;
        }
        w.retries[i] += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_attempts_are_capped_at_the_floor_plus_a_fifth_of_the_requests() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(t0, 20);
        for _ in 0..1000 {
            budget.record_request(t0);
        }
        let granted = (0..1000).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 50 + 200);
    }

    #[test]
    fn the_window_slides_so_old_retries_stop_counting() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(t0, 20);
        let granted = (0..100).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 50, "the floor alone, with no requests");
        assert!(!budget.try_retry(t0 + Duration::from_secs(9)));
        // Ten seconds later the first second's retries have left the window.
        assert!(budget.try_retry(t0 + Duration::from_secs(10)));
    }
}
