//! Claims: a running job's claim is refreshed on a timer, and orphans (pending past
//! `reclaim_idle`, their worker gone) are reclaimed, no more than this worker has slots for.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::streams::StreamAutoClaimReply;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Shared, Taken, Worker};
use crate::backends::redis::job;

/// Refreshes this consumer's claim on running jobs; reports those it no longer owns (another
/// worker reclaimed them) and those deleted from the stream (their client gave up, so they are
/// acknowledged here).
const REFRESH_CLAIMS: &str = r"
local stolen, deleted = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    table.insert(deleted, id)
  else
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    if #p == 1 and p[1][2] == ARGV[2] then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
    else
      table.insert(stolen, id)
    end
  end
end
return {stolen, deleted}
";

impl Worker {
    /// Claims orphans (pending longer than `reclaim_idle`), no more than free slots.
    pub(super) async fn reclaim(&mut self) -> redis::RedisResult<usize> {
        let now = Instant::now();
        let mut slots = Vec::new();
        while let Ok(slot) = self.slots.clone().try_acquire_owned() {
            slots.push(slot);
        }
        if slots.is_empty() {
            self.reclaims.busy(now);
            return Ok(0);
        }
        let idle_ms = u64::try_from(self.cfg.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(job::REQUESTS_STREAM)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(idle_ms)
            .arg(&self.reclaims.cursor)
            .arg("COUNT")
            .arg(slots.len())
            .query_async(&mut self.reader)
            .await?;
        self.redis_up();
        if !reply.deleted_ids.is_empty() {
            tracing::warn!(
                count = reply.deleted_ids.len(),
                "pending jobs were trimmed from the request stream before any worker finished them"
            );
        }
        self.reclaims.scanned(reply.next_stream_id, Instant::now());
        if reply.claimed.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(job::REQUESTS_STREAM)
                .arg(&self.cfg.group)
                .arg(&id.id)
                .arg(&id.id)
                .arg(1);
        }
        let pending: Vec<Vec<(String, String, u64, u64)>> =
            pipe.query_async(&mut self.reader).await?;
        let n = reply.claimed.len();
        for (id, info) in reply.claimed.into_iter().zip(pending) {
            let Some(slot) = slots.pop() else { break };
            let deliveries = info.first().map_or(1, |p| p.3);
            self.taken.push_back(Taken {
                data: id.get("data"),
                entry_id: id.id,
                deliveries,
                slot,
            });
        }
        self.shared
            .stats
            .reclaimed
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::info!(count = n, "reclaimed orphaned jobs");
        Ok(n)
    }
}

/// Keeps running jobs' claims fresh; stops jobs whose claim was lost or whose client left.
pub(super) async fn refresh_claims(shared: Arc<Shared>, every: Duration, end: CancellationToken) {
    let script = redis::Script::new(REFRESH_CLAIMS);
    let mut conn = shared.conn.clone();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = end.cancelled() => return,
        }
        let ids: Vec<String> = match shared.running.lock() {
            Ok(running) if !running.is_empty() => running.keys().cloned().collect(),
            _ => continue,
        };
        let result: redis::RedisResult<(Vec<String>, Vec<String>)> = script
            .key(job::REQUESTS_STREAM)
            .arg(&shared.group)
            .arg(&shared.consumer)
            .arg(&ids)
            .invoke_async(&mut conn)
            .await;
        let (stolen, deleted) = match result {
            Ok(lists) => lists,
            Err(err) => {
                tracing::debug!(error = %err, "cannot refresh claims");
                continue;
            }
        };
        let Ok(running) = shared.running.lock() else {
            continue;
        };
        for (id, token, lost) in to_stop(&running, &stolen, &deleted) {
            match lost {
                Lost::Stolen => {
                    tracing::warn!(entry = %id, "another worker took over this job; stopping it here")
                }
                Lost::Abandoned => {
                    tracing::info!(entry = %id, "the client no longer waits for this job; stopping it")
                }
            }
            token.cancel();
        }
    }
}

/// Why a running job's claim is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lost {
    /// Another consumer owns the entry now (it took it for an orphan).
    Stolen,
    /// The entry left the request stream: its client gave up and withdrew it.
    Abandoned,
}

/// The running jobs to stop after a claim refresh reported `stolen` and `deleted` entries (the
/// script's two lists), each with its entry id and why. An entry no longer running (it ended
/// meanwhile) has nothing to stop.
pub(super) fn to_stop<'a, T>(
    running: &'a HashMap<String, T>,
    stolen: &[String],
    deleted: &[String],
) -> Vec<(&'a str, &'a T, Lost)> {
    let lost = |ids: &[String], why: Lost| -> Vec<(&'a str, &'a T, Lost)> {
        ids.iter()
            .filter_map(|id| running.get_key_value(id))
            .map(|(id, job)| (id.as_str(), job, why))
            .collect()
    };
    let mut stop = lost(stolen, Lost::Stolen);
    stop.extend(lost(deleted, Lost::Abandoned));
    stop
}

/// When orphans are next looked for, and where the scan of the pending list resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReclaimSchedule {
    /// `XAUTOCLAIM`'s cursor: `0-0` starts a new scan.
    pub(super) cursor: String,
    /// Not before this.
    pub(super) next: Instant,
    /// `reclaim_every(reclaim_idle)`.
    interval: Duration,
}

impl ReclaimSchedule {
    /// A schedule whose first scan is due at `now`.
    pub(super) fn new(now: Instant, reclaim_idle: Duration) -> Self {
        ReclaimSchedule {
            cursor: "0-0".to_owned(),
            next: now,
            interval: reclaim_every(reclaim_idle),
        }
    }

    /// Whether a scan is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// No free slot at `now`: orphans wait for a worker with room, one interval.
    pub(super) fn busy(&mut self, now: Instant) {
        self.next = now + self.interval;
    }

    /// The scan failed at `now` (Redis down): try again only after a full interval, so that a
    /// failing reclaim never keeps the loop from reading new jobs (and recreating a lost group).
    pub(super) fn failed(&mut self, now: Instant) {
        self.busy(now);
    }

    /// A scan ended at `next_stream_id` at `now`: `0-0` means the pending list was scanned to
    /// its end, so the next scan starts over after an interval; otherwise more is left, and the
    /// next step continues from there at once.
    pub(super) fn scanned(&mut self, next_stream_id: String, now: Instant) {
        if next_stream_id == "0-0" {
            self.next = now + self.interval;
        } else {
            self.next = now;
        }
        self.cursor = next_stream_id;
    }

    /// How long a blocking read at `now` may wait before the next scan is due.
    pub(super) fn wait_until_due(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }
}

/// Claims are refreshed four times per idle period, so a live worker's job never looks idle.
pub(super) fn refresh_every(idle: Duration) -> Duration {
    (idle / 4).max(Duration::from_millis(25))
}

/// Orphans are looked for twice per idle period.
pub(super) fn reclaim_every(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_workers_claims_are_refreshed_several_times_per_idle_period() {
        for idle_ms in [100, 1_000, 60_000, 600_000] {
            let idle = Duration::from_millis(idle_ms);
            let every = refresh_every(idle);
            // A job whose claim is refreshed this often never looks idle for `idle`.
            assert!(every * 4 <= idle, "{idle:?}: {every:?}");
            assert!(reclaim_every(idle) < idle, "{idle:?}");
        }
        // A tiny idle time does not make the refresher spin.
        assert_eq!(refresh_every(Duration::ZERO), Duration::from_millis(25));
    }

    #[test]
    fn only_running_jobs_are_stopped_each_with_why() {
        let running: HashMap<String, char> = [("1-0".to_owned(), 'a'), ("2-0".to_owned(), 'b')]
            .into_iter()
            .collect();
        let stolen = ["1-0".to_owned(), "9-0".to_owned()];
        let deleted = ["2-0".to_owned(), "8-0".to_owned()];
        assert_eq!(
            to_stop(&running, &stolen, &deleted),
            [("1-0", &'a', Lost::Stolen), ("2-0", &'b', Lost::Abandoned)]
        );
        assert!(to_stop(&running, &[], &[]).is_empty());
    }

    #[test]
    fn reclaim_scans_go_on_at_once_until_the_pending_list_ends_then_wait_an_interval() {
        let idle = Duration::from_secs(60);
        let interval = reclaim_every(idle);
        let t0 = Instant::now();
        let mut schedule = ReclaimSchedule::new(t0, idle);
        assert!(schedule.due(t0) && schedule.cursor == "0-0");
        // More pending entries past the cursor: the next step continues from there.
        schedule.scanned("5-0".to_owned(), t0);
        assert_eq!(schedule.cursor, "5-0");
        assert!(schedule.due(t0));
        assert_eq!(schedule.wait_until_due(t0), Duration::ZERO);
        // The end of the list: start over, one interval later.
        let t1 = t0 + Duration::from_secs(1);
        schedule.scanned("0-0".to_owned(), t1);
        assert_eq!(schedule.cursor, "0-0");
        assert!(!schedule.due(t1 + interval - Duration::from_millis(1)));
        assert!(schedule.due(t1 + interval));
        assert_eq!(schedule.wait_until_due(t1), interval);
    }

    #[test]
    fn a_busy_or_failing_worker_looks_for_orphans_again_one_interval_later() {
        let idle = Duration::from_secs(10);
        let interval = reclaim_every(idle);
        let t0 = Instant::now();
        let mut schedule = ReclaimSchedule::new(t0, idle);
        schedule.scanned("7-0".to_owned(), t0);
        schedule.busy(t0);
        // Busy: the scan waits, and resumes where it was.
        assert!(!schedule.due(t0 + interval / 2));
        assert!(schedule.due(t0 + interval));
        assert_eq!(schedule.cursor, "7-0");
        let t1 = t0 + interval;
        schedule.failed(t1);
        assert!(!schedule.due(t1) && schedule.due(t1 + interval));
    }
}
