//! In-order acknowledgement tracking: the checkpoint of a transaction is
//! published only after every message produced before its commit (its own
//! and every earlier transaction's) is acknowledged by Kafka.

use std::sync::Arc;

use dts_metrics::{TableCopyFigures, TaskStats};
use dts_source::position::TableProgress;
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
    match &cp.snapshot {
        Some(snap) => {
            // Every delivered commit carries the copy's progress; the
            // per-table figures only move when a chunk was delivered.
            let (done, _, rows) = stats.snapshot_progress();
            let moved = (done, rows) != (snap.tables_done() as u64, snap.rows_copied);
            stats.snapshot(snap.tables_done(), snap.tables.len(), snap.rows_copied);
            stats.snapshot_tables(|figures| {
                if moved || figures.len() != snap.tables.len() {
                    table_figures(figures, &snap.tables);
                }
            });
        }
        None => stats.snapshot_tables(|figures| figures.clear()),
    }
}

/// Brings `figures` in line with the copy's tables, reusing their names.
fn table_figures(figures: &mut Vec<TableCopyFigures>, tables: &[TableProgress]) {
    figures.truncate(tables.len());
    for (i, t) in tables.iter().enumerate() {
        let named = |f: &TableCopyFigures| {
            f.table.strip_prefix(t.db.as_str()).and_then(|r| r.strip_prefix('.')) == Some(t.table.as_str())
        };
        if figures.get(i).is_none_or(|f| !named(f)) {
            let fresh = TableCopyFigures { table: format!("{}.{}", t.db, t.table), ..Default::default() };
            if i < figures.len() {
                figures[i] = fresh;
            } else {
                figures.push(fresh);
            }
        }
        let f = &mut figures[i];
        (f.rows, f.chunks, f.estimated_rows, f.done) = (t.rows, t.chunks, t.estimated_rows, t.done);
    }
}

/// `mysql-bin.000042` -> 42: the binlog file as a number a graph can plot.
pub fn file_number(file: &str) -> Option<u64> {
    file.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(db: &str, name: &str, rows: u64, done: bool) -> TableProgress {
        let mut t = TableProgress::new(db.into(), name.into(), Some(100));
        (t.rows, t.chunks, t.done) = (rows, rows / 10, done);
        t
    }

    #[test]
    fn per_table_figures_follow_the_copy_in_place() {
        let mut figures = Vec::new();
        table_figures(&mut figures, &[table("d", "a", 10, false), table("d", "b", 0, false)]);
        assert_eq!(figures.iter().map(|f| f.table.as_str()).collect::<Vec<_>>(), ["d.a", "d.b"]);
        let name = figures[0].table.as_ptr();
        table_figures(&mut figures, &[table("d", "a", 100, true), table("d", "b", 20, false)]);
        assert_eq!((figures[0].rows, figures[0].chunks, figures[0].done), (100, 10, true));
        assert_eq!((figures[1].rows, figures[1].estimated_rows), (20, Some(100)));
        assert_eq!(figures[0].table.as_ptr(), name, "names are kept, not built again");
        // Tables replaced or dropped from the copy (a cancelled request).
        table_figures(&mut figures, &[table("d", "c", 5, false)]);
        assert_eq!(figures.len(), 1);
        assert_eq!((figures[0].table.as_str(), figures[0].rows), ("d.c", 5));
        // `db.table` names that only look alike are told apart.
        table_figures(&mut figures, &[table("d.c", "", 1, false)]);
        assert_eq!(figures[0].table, "d.c.");
    }

    #[test]
    fn binlog_file_numbers() {
        assert_eq!(file_number("mysql-bin.000042"), Some(42));
        assert_eq!(file_number("host.with.dots-bin.1000000"), Some(1_000_000));
        assert_eq!(file_number("no-suffix"), None);
        assert_eq!(file_number("bin.index"), None);
    }
}
