//! Where records go: one JSON object per line, appended to a file or written to stdout.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{Notify, mpsc};

use super::{Record, Stats};
use crate::config::UsageLog;

/// The open JSONL destination.
pub struct Sink(BufWriter<Box<dyn AsyncWrite + Send + Unpin>>);

impl Sink {
    /// Opens `log` (a file is created when missing and appended to).
    pub async fn open(log: &UsageLog) -> std::io::Result<Sink> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match log {
            UsageLog::Stdout => Box::new(tokio::io::stdout()),
            UsageLog::File(path) => Box::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await?,
            ),
        };
        Ok(Sink(BufWriter::new(out)))
    }

    async fn write(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.0.write_all(&line).await
    }
}

/// Drains `records` into `sink`, flushing whenever the queue is empty, until `stop`; then
/// writes what is still queued and flushes once more.
pub async fn drain(
    mut records: mpsc::Receiver<Record>,
    mut sink: Sink,
    stats: Arc<Stats>,
    stop: Arc<Notify>,
) {
    loop {
        let record = tokio::select! {
            record = records.recv() => record,
            () = stop.notified() => {
                // No more sends; `recv` now yields what is queued, then `None`.
                records.close();
                records.recv().await
            }
        };
        let Some(record) = record else { break };
        write(&mut sink, &record, &stats).await;
        if records.is_empty() {
            flush(&mut sink).await;
        }
    }
    flush(&mut sink).await;
}

async fn write(sink: &mut Sink, record: &Record, stats: &Stats) {
    match sink.write(record).await {
        Ok(()) => stats.count(record),
        Err(err) => tracing::error!(error = %err, "cannot write a usage record"),
    }
}

async fn flush(sink: &mut Sink) {
    if let Err(err) = sink.0.flush().await {
        tracing::error!(error = %err, "cannot flush the usage log");
    }
}
