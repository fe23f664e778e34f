//! In-order acknowledgement tracking: the checkpoint of a transaction is
//! published only after every message produced before its commit (its own
//! and every earlier transaction's) is acknowledged by Kafka.

use std::sync::Arc;

use dts_metrics::TaskStats;
use dts_source::Checkpoint;
use tokio::sync::{mpsc, watch};

use crate::error::RunError;
use crate::seams::Acknowledgement;

/// What the pipeline hands the tracker, in source order.
#[derive(Debug)]
pub enum InFlight<A> {
    /// The messages of one source batch.
    Messages(A),
    Commit {
        checkpoint: Checkpoint,
        ts_ms: i64,
    },
    /// The source was idle at `at_ms`: once everything before is on the
    /// broker, the task has no lag as of then.
    Idle {
        at_ms: i64,
    },
}

/// A position whose every earlier message is on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub checkpoint: Checkpoint,
    /// Source commit time of that transaction (the list's `transaction_time`).
    pub ts_ms: i64,
}

/// Runs until the pipeline closes its sender (after which everything sent
/// has been acknowledged) or a message fails.
pub async fn track<A: Acknowledgement>(
    mut rx: mpsc::Receiver<InFlight<A>>,
    delivered: watch::Sender<Option<Delivered>>,
    stats: Arc<TaskStats>,
) -> Result<(), RunError> {
    while let Some(item) = rx.recv().await {
        match item {
            // Awaited in send order: once a batch's messages are all
            // acknowledged, every earlier batch's are too.
            InFlight::Messages(ack) => {
                if let Err(e) = ack.wait().await {
                    stats.produce_error();
                    return Err(e.into());
                }
            }
            InFlight::Commit { checkpoint, ts_ms } => {
                record(&stats, &checkpoint, ts_ms);
                delivered.send_replace(Some(Delivered { checkpoint, ts_ms }));
            }
            InFlight::Idle { at_ms } => stats.caught_up(at_ms),
        }
    }
    Ok(())
}

/// The figures a delivered checkpoint moves: lag, position, snapshot progress.
fn record(stats: &TaskStats, cp: &Checkpoint, ts_ms: i64) {
    stats.delivered(ts_ms);
    if let Some(n) = file_number(&cp.file) {
        stats.position(n, cp.pos);
    }
    if let Some(snap) = &cp.snapshot {
        stats.snapshot(snap.tables_done(), snap.tables.len(), snap.rows_copied);
    }
}

/// `mysql-bin.000042` -> 42: the binlog file as a number a graph can plot.
pub fn file_number(file: &str) -> Option<u64> {
    file.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_file_numbers() {
        assert_eq!(file_number("mysql-bin.000042"), Some(42));
        assert_eq!(file_number("host.with.dots-bin.1000000"), Some(1_000_000));
        assert_eq!(file_number("no-suffix"), None);
        assert_eq!(file_number("bin.index"), None);
    }
}
