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

/// How long written records may wait in the buffer before they are flushed (to the log file and
/// the store). Flushing whenever the queue ran empty cost one write (through tokio's blocking
/// pool) per record under load; this bounds what a crash can lose instead.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// The open destinations.
pub struct Sinks {
    log: Option<BufWriter<Box<dyn AsyncWrite + Send + Unpin>>>,
    store: Option<Store>,
    pending: BTreeMap<UsageKey, UsageSums>,
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
            log: log.map(BufWriter::new),
            store,
            pending: BTreeMap::new(),
        })
    }

    async fn write(&mut self, record: &Record, stats: &Stats) {
        if let Some(log) = &mut self.log {
            let mut line = serde_json::to_vec(record).unwrap_or_default();
            line.push(b'\n');
            if let Err(err) = log.write_all(&line).await {
                tracing::error!(error = %err, "cannot write a usage record");
                return;
            }
        }
        if self.store.is_some() {
            self.sum(record);
        }
        stats.count(record);
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

/// Drains `records` into `sinks`, flushing at most every `FLUSH_EVERY` (or when many rows are
/// pending), until `stop`; then writes what is still queued and flushes once more.
pub async fn drain(
    mut records: mpsc::Receiver<Record>,
    mut sinks: Sinks,
    stats: Arc<Stats>,
    stop: Arc<Notify>,
) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unflushed = false;
    loop {
        let record = tokio::select! {
            record = records.recv() => record,
            _ = tick.tick(), if unflushed => {
                sinks.flush(&stats).await;
                unflushed = false;
                continue;
            }
            () = stop.notified() => {
                // No more sends; `recv` now yields what is queued, then `None`.
                records.close();
                records.recv().await
            }
        };
        let Some(record) = record else { break };
        sinks.write(&record, &stats).await;
        unflushed = true;
        if sinks.pending.len() >= MAX_PENDING_ROWS {
            sinks.flush(&stats).await;
            unflushed = false;
        }
    }
    sinks.flush(&stats).await;
}
