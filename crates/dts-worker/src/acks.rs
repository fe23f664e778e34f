//! In-order acknowledgement tracking: the checkpoint of a transaction is
//! published only after every message produced before its commit (its own
//! and every earlier transaction's) is acknowledged by Kafka.

use dts_source::Checkpoint;
use tokio::sync::{mpsc, watch};

use crate::error::RunError;
use crate::seams::Acknowledgement;

/// What the pipeline hands the tracker, in source order.
#[derive(Debug)]
pub enum InFlight<A> {
    Message(A),
    Commit { checkpoint: Checkpoint, ts_ms: i64 },
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
) -> Result<(), RunError> {
    while let Some(item) = rx.recv().await {
        match item {
            // Acks of one partition complete in order and we await them in
            // send order, so when an ack resolves all earlier ones have too.
            InFlight::Message(ack) => {
                ack.wait().await?;
            }
            InFlight::Commit { checkpoint, ts_ms } => {
                delivered.send_replace(Some(Delivered { checkpoint, ts_ms }));
            }
        }
    }
    Ok(())
}
