//! Passive health of one backend, learnt from the answers to real requests (no probes of our
//! own): consecutive failures eject it for a cooldown that doubles while it keeps failing; when
//! the cooldown ends, one request is let through as a probe (half-open); its success puts the
//! backend back in rotation. A `retry-after` from a 429 or 503 sets the backend aside until then
//! without counting as a failure of the box.
//!
//! Time is passed in (`now`), never read here, so tests drive it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use crate::config::HealthSettings;

/// The longest ejection, however long a backend keeps failing.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// Whether a backend may be sent a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// In rotation.
    Yes,
    /// Ejected and its cooldown over: this request is its probe, the only one let through.
    Probe,
    /// Ejected, probing, or told to wait by `retry-after`.
    No,
}

/// A backend's passive health.
#[derive(Debug)]
pub struct BackendHealth {
    settings: HealthSettings,
    /// False while `state` is the default (no failure since the last success): the common
    /// case is answered without taking the lock.
    troubled: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    /// Set while ejected: until when, and how long this ejection is.
    ejected: Option<(Instant, Duration)>,
    /// A probe request is out; nobody else is admitted until it reports.
    probing: bool,
    /// `retry-after` from the backend itself.
    wait_until: Option<Instant>,
}

/// What `/health` shows of a backend.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthView {
    /// `healthy`, `ejected`, `half_open` (a probe is out) or `waiting` (its `retry-after`).
    pub state: &'static str,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Milliseconds until it is tried again, when out of rotation.
    pub retry_in_ms: Option<u64>,
}

impl BackendHealth {
    /// A healthy backend.
    pub fn new(settings: HealthSettings) -> Self {
        BackendHealth {
            settings,
            troubled: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn is_clean(&self) -> bool {
        !self.troubled.load(Ordering::Acquire)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update: the state is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request may go to this backend now (without admitting it).
    pub fn is_available(&self, now: Instant) -> bool {
        if self.is_clean() {
            return true;
        }
        let s = self.state();
        if s.wait_until.is_some_and(|t| now < t) {
            return false;
        }
        match s.ejected {
            None => true,
            Some((until, _)) => !s.probing && now >= until,
        }
    }

    /// Admits one request, turning an ejected backend whose cooldown is over into half-open.
    pub fn admit(&self, now: Instant) -> Admission {
        if self.is_clean() {
            return Admission::Yes;
        }
        let mut s = self.state();
        if s.wait_until.is_some_and(|t| now < t) {
            return Admission::No;
        }
        match s.ejected {
            None => Admission::Yes,
            Some((until, _)) if !s.probing && now >= until => {
                s.probing = true;
                Admission::Probe
            }
            Some(_) => Admission::No,
        }
    }

    /// The backend answered: back in rotation, its failures forgotten.
    pub fn record_success(&self, backend: &str) {
        let mut s = self.state();
        if s.ejected.is_some() {
            tracing::info!(
                backend,
                "backend recovered: its probe succeeded, back in rotation"
            );
        }
        *s = State::default();
    }

    /// The backend failed a request before its first byte.
    pub fn record_failure(&self, backend: &str, now: Instant) {
        let mut s = self.state();
        self.troubled.store(true, Ordering::Release);
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let cooldown = match s.ejected {
            // A failed probe: out again, for twice as long.
            Some((_, last)) if s.probing => (last * 2).min(MAX_COOLDOWN),
            // A request admitted before the ejection reports late: the ejection stands.
            Some(_) => return,
            None if s.consecutive_failures >= self.settings.eject_after => self.settings.cooldown,
            None => return,
        };
        s.probing = false;
        s.ejected = Some((now + cooldown, cooldown));
        tracing::warn!(
            backend,
            consecutive_failures = s.consecutive_failures,
            cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX),
            "backend ejected"
        );
    }

    /// The backend asked to be left alone (`retry-after`) until `until`.
    pub fn record_retry_after(&self, backend: &str, until: Instant) {
        let mut s = self.state();
        self.troubled.store(true, Ordering::Release);
        s.wait_until = Some(s.wait_until.map_or(until, |t| t.max(until)));
        // A rate limit says the box is alive: a probe that got one is not a failure.
        s.probing = false;
        tracing::info!(backend, "backend set aside until its retry-after");
    }

    /// A probe that ended without a verdict (client gone, non-failover error): let another one go.
    pub fn release_probe(&self) {
        if !self.is_clean() {
            self.state().probing = false;
        }
    }

    /// The state as `/health` shows it.
    pub fn view(&self, now: Instant) -> HealthView {
        let s = self.state();
        let ms = |t: Instant| u64::try_from(t.saturating_duration_since(now).as_millis()).ok();
        let (state, retry_in_ms) = match (s.ejected, s.wait_until) {
            (Some(_), _) if s.probing => ("half_open", None),
            (Some((until, _)), _) => ("ejected", ms(until)),
            (None, Some(t)) if now < t => ("waiting", ms(t)),
            _ => ("healthy", None),
        };
        HealthView {
            state,
            consecutive_failures: s.consecutive_failures,
            retry_in_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> BackendHealth {
        BackendHealth::new(HealthSettings {
            eject_after: 3,
            cooldown: Duration::from_secs(5),
        })
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_in_between_resets_the_count() {
        let (h, t0) = (health(), Instant::now());
        h.record_failure("b", t0);
        h.record_failure("b", t0);
        h.record_success("b");
        h.record_failure("b", t0);
        h.record_failure("b", t0);
        assert_eq!(h.admit(t0), Admission::Yes);
        h.record_failure("b", t0);
        assert_eq!(h.admit(t0), Admission::No);
        assert_eq!(h.view(t0).state, "ejected");
        assert_eq!(h.view(t0).retry_in_ms, Some(5000));
    }

    #[test]
    fn after_the_cooldown_one_probe_half_opens_and_its_success_closes() {
        let (h, t0) = (health(), Instant::now());
        for _ in 0..3 {
            h.record_failure("b", t0);
        }
        let later = t0 + Duration::from_secs(5);
        assert!(h.is_available(later));
        assert_eq!(h.admit(later), Admission::Probe);
        // While the probe is out, nobody else gets through.
        assert_eq!(h.admit(later), Admission::No);
        assert_eq!(h.view(later).state, "half_open");
        h.record_success("b");
        assert_eq!(h.admit(later), Admission::Yes);
        assert_eq!(h.view(later).consecutive_failures, 0);
    }

    #[test]
    fn a_probe_that_ends_without_a_verdict_lets_the_next_request_probe() {
        let (h, t0) = (health(), Instant::now());
        for _ in 0..3 {
            h.record_failure("b", t0);
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(h.admit(later), Admission::Probe);
        h.release_probe();
        assert_eq!(h.admit(later), Admission::Probe);
    }

    #[test]
    fn each_failed_probe_doubles_the_cooldown_up_to_the_cap() {
        let (h, mut now) = (health(), Instant::now());
        for _ in 0..3 {
            h.record_failure("b", now);
        }
        let mut cooldowns = Vec::new();
        for _ in 0..8 {
            let until = now + Duration::from_millis(h.view(now).retry_in_ms.unwrap());
            cooldowns.push(until - now);
            now = until;
            assert_eq!(h.admit(now), Admission::Probe);
            h.record_failure("b", now);
        }
        let secs: Vec<u64> = cooldowns.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn retry_after_sets_a_backend_aside_without_counting_a_failure() {
        let (h, t0) = (health(), Instant::now());
        h.record_retry_after("b", t0 + Duration::from_secs(2));
        assert_eq!(h.admit(t0), Admission::No);
        assert_eq!(h.view(t0).state, "waiting");
        assert_eq!(h.view(t0).consecutive_failures, 0);
        assert_eq!(h.admit(t0 + Duration::from_secs(2)), Admission::Yes);
    }
}
