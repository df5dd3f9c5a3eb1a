//! Claims: a running job's claim is refreshed on a timer, and orphans (pending past
//! `reclaim_idle`, their worker gone) are reclaimed, no more than this worker has slots for.

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
        let interval = reclaim_every(self.cfg.reclaim_idle);
        let mut slots = Vec::new();
        while let Ok(slot) = self.slots.clone().try_acquire_owned() {
            slots.push(slot);
        }
        if slots.is_empty() {
            // Busy: orphans wait for a worker with room.
            self.next_reclaim = Instant::now() + interval;
            return Ok(0);
        }
        let idle_ms = u64::try_from(self.cfg.reclaim_idle.as_millis()).unwrap_or(u64::MAX);
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(job::REQUESTS_STREAM)
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg(idle_ms)
            .arg(&self.reclaim_cursor)
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
        if reply.next_stream_id == "0-0" {
            self.reclaim_cursor = "0-0".to_owned();
            self.next_reclaim = Instant::now() + interval;
        } else {
            // More to scan: continue at the next step.
            self.reclaim_cursor = reply.next_stream_id;
            self.next_reclaim = Instant::now();
        }
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
        for id in &stolen {
            tracing::warn!(entry = %id, "another worker took over this job; stopping it here");
            if let Some(token) = running.get(id) {
                token.cancel();
            }
        }
        for id in &deleted {
            tracing::info!(entry = %id, "the client no longer waits for this job; stopping it");
            if let Some(token) = running.get(id) {
                token.cancel();
            }
        }
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
