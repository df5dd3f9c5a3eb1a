//! The worker's counters (`worker::StatsSnapshot`) as Prometheus metrics, in OpenMetrics text,
//! for `switchyard worker --metrics-listen`. The worker is a process of its own, so it has its
//! own listener; its labels are fixed words, never a job's content.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::StatsSnapshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// `stats` in OpenMetrics text.
pub fn render(stats: &StatsSnapshot) -> String {
    let mut registry = Registry::with_prefix("switchyard_worker");
    let jobs = Family::<Outcome, Counter>::default();
    for (outcome, n) in [
        ("answered_2xx", stats.answered_2xx),
        ("answered_other", stats.answered_other),
        ("failed", stats.failed),
        ("interrupted", stats.interrupted),
        ("already_answered", stats.already_answered),
        ("redis_lost", stats.redis_lost),
        ("abandoned", stats.abandoned),
    ] {
        jobs.get_or_create(&Outcome { outcome }).inc_by(n);
    }
    registry.register("jobs", "Jobs ended, by outcome", jobs);
    let counter = |n: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        c
    };
    registry.register(
        "reclaimed_jobs",
        "Orphaned jobs claimed from other consumers",
        counter(stats.reclaimed),
    );
    registry.register(
        "dead_lettered_jobs",
        "Jobs moved to the dead-letter stream",
        counter(stats.dead_lettered),
    );
    let in_flight = Gauge::<i64>::default();
    in_flight.set(i64::try_from(stats.in_flight).unwrap_or(i64::MAX));
    registry.register("jobs_in_flight", "Jobs running now", in_flight);
    let mut out = String::with_capacity(2048);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_rendered_under_its_own_name() {
        let stats = StatsSnapshot {
            answered_2xx: 4,
            failed: 1,
            reclaimed: 2,
            dead_lettered: 3,
            in_flight: 1,
            ..StatsSnapshot::default()
        };
        let text = render(&stats);
        for line in [
            r#"switchyard_worker_jobs_total{outcome="answered_2xx"} 4"#,
            r#"switchyard_worker_jobs_total{outcome="failed"} 1"#,
            "switchyard_worker_reclaimed_jobs_total 2",
            "switchyard_worker_dead_lettered_jobs_total 3",
            "switchyard_worker_jobs_in_flight 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
