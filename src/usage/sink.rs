//! Where records go: one JSON object per line (a file or stdout), and the store, summed per
//! project, key, model and minute.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{Notify, mpsc};

use super::{Record, Stats};
use crate::config::UsageLog;
use crate::store::{Store, UsageKey, UsageSums};

/// The most (minute, project, key, model) rows summed before they are written to the store.
const MAX_PENDING_ROWS: usize = 1024;

/// How often a busy writer drains its queue and flushes the log and the store sums: how long a
/// record may wait, and so the most a crash can lose. Flushing per record cost one write
/// (through tokio's blocking pool) per request under load.
pub(super) const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// The log's write buffer: a busy tick's records leave in few writes.
const LOG_BUFFER: usize = 256 * 1024;

/// The open destinations.
pub struct Sinks {
    log: Option<BufWriter<Box<dyn AsyncWrite + Send + Unpin>>>,
    store: Option<Store>,
    pending: BTreeMap<UsageKey, UsageSums>,
    line: Vec<u8>,
}

impl Sinks {
    /// Opens `log` (a file is created when missing and appended to), next to `store`.
    pub async fn open(log: Option<&UsageLog>, store: Option<Store>) -> std::io::Result<Sinks> {
        let log: Option<Box<dyn AsyncWrite + Send + Unpin>> = match log {
            None => None,
            Some(UsageLog::Stdout) => Some(Box::new(tokio::io::stdout())),
            Some(UsageLog::File(path)) => Some(Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?,
            )),
        };
        Ok(Sinks {
            log: log.map(|log| BufWriter::with_capacity(LOG_BUFFER, log)),
            store,
            pending: BTreeMap::new(),
            line: Vec::with_capacity(1024),
        })
    }

    async fn write(&mut self, record: &Record, stats: &Stats) {
        if let Some(log) = &mut self.log {
            // One buffer for every line: a record's line is built without allocating.
            self.line.clear();
            super::line::write(record, &mut self.line);
            self.line.push(b'\n');
            if let Err(err) = log.write_all(&self.line).await {
                tracing::error!(error = %err, "cannot write a usage record");
                return;
            }
        }
        if self.store.is_some() {
            self.sum(record);
        }
        stats.count(record);
    }

    /// Writes every queued record; whether there was any. Flushes when many store rows wait.
    async fn write_queued(&mut self, records: &mut mpsc::Receiver<Record>, stats: &Stats) -> bool {
        let mut any = false;
        while let Ok(record) = records.try_recv() {
            self.write(&record, stats).await;
            any = true;
            if self.pending.len() >= MAX_PENDING_ROWS {
                self.flush(stats).await;
            }
        }
        any
    }

    fn sum(&mut self, record: &Record) {
        let key = (
            record.minute,
            record.project.clone().unwrap_or_default(),
            record.key_id.clone().unwrap_or_default(),
            record.model.clone(),
        );
        let sums = self.pending.entry(key).or_default();
        let tokens = record.usage.unwrap_or_default();
        let add =
            |sum: &mut i64, n: u64| *sum = sum.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
        add(&mut sums.requests, 1);
        add(&mut sums.prompt_tokens, tokens.prompt_tokens);
        add(&mut sums.completion_tokens, tokens.completion_tokens);
        add(&mut sums.total_tokens, tokens.total_tokens);
        add(&mut sums.cached_tokens, tokens.cached_tokens);
        add(&mut sums.reasoning_tokens, tokens.reasoning_tokens);
    }

    async fn flush(&mut self, stats: &Stats) {
        if let Some(log) = &mut self.log
            && let Err(err) = log.flush().await
        {
            tracing::error!(error = %err, "cannot flush the usage log");
        }
        let (Some(store), false) = (&self.store, self.pending.is_empty()) else {
            return;
        };
        let rows: Vec<_> = std::mem::take(&mut self.pending).into_iter().collect();
        if let Err(err) = store.add_usage(&rows).await {
            stats
                .store_failed
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %err, rows = rows.len(), "cannot add usage to the store");
        }
    }
}

/// What the writer waits on besides its queue.
pub struct Signals {
    /// Shutdown: write out what is queued, flush, end.
    pub stop: Arc<Notify>,
    /// The queue is half full: drain it before the next tick.
    pub filling: Arc<Notify>,
}

/// Drains `records` into `sinks` until `signals.stop`, then writes what is still queued and
/// flushes once more.
///
/// Waking the writer for each record cost a cross-thread wake-up per request (an eventfd write
/// and a context switch: most of the usage log's cost under load). So only the first record
/// after a quiet spell wakes it; while records keep coming it drains the queue every
/// `DRAIN_EVERY` without being woken (the queue's receiver is not polled, so a send wakes no
/// one), or sooner when the queue fills up (`filling`).
pub async fn drain(
    mut records: mpsc::Receiver<Record>,
    mut sinks: Sinks,
    stats: Arc<Stats>,
    signals: Signals,
) {
    let mut stopping = false;
    while !stopping {
        // Quiet: sleep until a record comes.
        let first = tokio::select! {
            record = records.recv() => record,
            () = signals.stop.notified() => None,
        };
        let Some(first) = first else { break };
        sinks.write(&first, &stats).await;
        // Busy: drain on a tick, until a tick finds the queue empty.
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + DRAIN_EVERY, DRAIN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = signals.filling.notified() => {}
                () = signals.stop.notified() => {
                    stopping = true;
                    break;
                }
            }
            if !sinks.write_queued(&mut records, &stats).await {
                break;
            }
            // Under steady load the busy spell never ends: each drain is flushed.
            sinks.flush(&stats).await;
        }
        sinks.flush(&stats).await;
    }
    // No more sends; what is queued is written out.
    records.close();
    sinks.write_queued(&mut records, &stats).await;
    sinks.flush(&stats).await;
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::usage::tests::record;

    /// Lets the writer task run as far as it can without time passing.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    // Paused time and an in-memory log: no blocking write runs beside the clock.
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn under_steady_load_each_drain_reaches_the_log() {
        let (log, mut written) = tokio::io::duplex(1 << 20);
        let sinks = Sinks {
            log: Some(BufWriter::with_capacity(LOG_BUFFER, Box::new(log))),
            store: None,
            pending: BTreeMap::new(),
            line: Vec::new(),
        };
        let (queue, records) = mpsc::channel(64);
        let signals = Signals {
            stop: Arc::new(Notify::new()),
            filling: Arc::new(Notify::new()),
        };
        let stats = Arc::new(Stats::default());
        tokio::spawn(drain(records, sinks, stats, signals));
        let mut seen = Vec::new();
        queue.try_send(record("r0")).unwrap();
        settle().await;
        // A record before every tick: the writer never finds its queue empty.
        for i in 1..5 {
            queue.try_send(record(&format!("r{i}"))).unwrap();
            settle().await;
            tokio::time::advance(DRAIN_EVERY).await;
            settle().await;
            let mut chunk = vec![0; 1 << 16];
            if let Some(Ok(n)) = written.read(&mut chunk).now_or_never() {
                seen.extend_from_slice(&chunk[..n]);
            }
            let lines = seen.iter().filter(|b| **b == b'\n').count();
            assert_eq!(lines, i + 1, "round {i}: every record so far is in the log");
        }
    }
}
