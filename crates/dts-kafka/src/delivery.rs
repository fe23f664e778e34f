//! Delivery reports: what librdkafka's report for each message completes.
//!
//! A message sent alone completes its own [`Ack`] through a oneshot. A
//! message sent in a batch completes one slot of a shared [`BatchAck`]:
//! the batch allocates its result slots once and wakes its waiter once,
//! when the last report arrives, instead of a channel and a wake-up per
//! message. A message sent into an [`AckGroup`] only counts down the
//! group and records the group's first failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use tokio::sync::{oneshot, Notify};

use crate::{too_large, BrokerContext, SinkError};

/// Where an acknowledged message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// A message's outcome.
pub type Outcome = Result<Delivered, SinkError>;

fn closed() -> SinkError {
    SinkError::Delivery("the producer was closed before the message was acknowledged".into())
}

/// The acknowledgement of one message.
pub struct Ack(pub(crate) oneshot::Receiver<Outcome>);

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

impl Ack {
    pub async fn wait(self) -> Outcome {
        self.0.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// Reports still to come, plus one held by the sender until every message
/// is enqueued, so a batch or group cannot look finished early.
struct Countdown {
    remaining: AtomicUsize,
    done: Notify,
}

impl Countdown {
    fn new(reports: usize) -> Self {
        Self { remaining: AtomicUsize::new(reports + 1), done: Notify::new() }
    }

    fn add_one(&self) {
        self.remaining.fetch_add(1, Ordering::AcqRel);
    }

    fn finish_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    fn pending(&self) -> usize {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Returns once the count reaches zero.
    async fn finished(&self) {
        // `notify_one` keeps a permit when nobody waits yet, so a report
        // landing between the check and the await is not missed.
        while self.remaining.load(Ordering::Acquire) != 0 {
            self.done.notified().await;
        }
    }
}

/// The results of a batch, filled by delivery reports in any order.
struct Slots {
    results: Box<[OnceLock<Outcome>]>,
    count: Countdown,
}

/// The acknowledgement of a batch of messages: one outcome per message,
/// in the order they were sent.
pub struct BatchAck(Arc<Slots>);

impl std::fmt::Debug for BatchAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchAck").field("messages", &self.0.results.len()).finish()
    }
}

impl BatchAck {
    pub(crate) fn new(messages: usize) -> Self {
        Self(Arc::new(Slots {
            results: (0..messages).map(|_| OnceLock::new()).collect(),
            count: Countdown::new(messages),
        }))
    }

    /// The pending report of message `index`.
    pub(crate) fn member(&self, index: usize) -> Pending {
        Pending::Member(Member { slots: Arc::clone(&self.0), index })
    }

    /// Every message is enqueued (or failed to be): the batch finishes
    /// when the reports already pending arrive.
    pub(crate) fn sealed(self) -> Self {
        self.0.count.finish_one();
        self
    }

    /// Waits for every message's report.
    pub async fn wait(self) -> Vec<Outcome> {
        self.0.count.finished().await;
        self.0.results.iter().map(|r| r.get().cloned().unwrap_or_else(|| Err(closed()))).collect()
    }
}

/// One message's slot in a batch. Dropping it unfilled (the producer went
/// away without a report) fills it with an error, so a batch always ends.
pub(crate) struct Member {
    slots: Arc<Slots>,
    index: usize,
}

impl Member {
    fn fill(&self, outcome: Outcome) {
        if let Some(slot) = self.slots.results.get(self.index) {
            let _ = slot.set(outcome);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.slots.results.get(self.index).is_some_and(|s| s.get().is_none()) {
            self.fill(Err(closed()));
        }
        self.slots.count.finish_one();
    }
}

/// The acknowledgement of messages that join it one by one, when only
/// "all delivered, or the first failure" matters: what the CDC pipeline
/// waits for before it checkpoints a source batch. No per-message result
/// is kept.
pub struct AckGroup(Arc<GroupState>);

struct GroupState {
    count: Countdown,
    failure: OnceLock<SinkError>,
}

impl std::fmt::Debug for AckGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckGroup").field("pending", &self.0.count.pending()).finish()
    }
}

impl Default for AckGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl AckGroup {
    pub fn new() -> Self {
        Self(Arc::new(GroupState { count: Countdown::new(0), failure: OnceLock::new() }))
    }

    /// The pending report of one more message.
    pub(crate) fn join(&self) -> Pending {
        self.0.count.add_one();
        Pending::Joined(Joined { group: Arc::clone(&self.0), reported: false })
    }

    /// Waits until every message that joined is acknowledged; the first
    /// failure reported, if any.
    pub async fn wait(self) -> Result<(), SinkError> {
        self.0.count.finish_one();
        self.0.count.finished().await;
        match self.0.failure.get() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// One message of an [`AckGroup`]; dropped without a report, it fails the
/// group, so a group always ends.
pub(crate) struct Joined {
    group: Arc<GroupState>,
    reported: bool,
}

impl Drop for Joined {
    fn drop(&mut self) {
        if !self.reported {
            let _ = self.group.failure.set(closed());
        }
        self.group.count.finish_one();
    }
}

/// What a message's delivery report completes.
pub(crate) enum Pending {
    One(oneshot::Sender<Outcome>),
    Member(Member),
    Joined(Joined),
}

impl Pending {
    /// Leaves its group without failing it: the message was never
    /// enqueued and its sender already returned the error.
    pub(crate) fn withdraw(self) {
        if let Self::Joined(mut j) = self {
            j.reported = true;
        }
    }

    /// Completes with the message's outcome: its delivery report's, or an
    /// error known before it could be enqueued.
    pub(crate) fn complete(self, outcome: Outcome) {
        match self {
            Self::One(tx) => {
                let _ = tx.send(outcome);
            }
            Self::Member(m) => m.fill(outcome),
            Self::Joined(mut j) => {
                j.reported = true;
                if let Err(e) = outcome {
                    let _ = j.group.failure.set(e);
                }
            }
        }
    }
}

/// The producer's context: broker errors as [`BrokerContext`] keeps them,
/// delivery reports as [`Pending`] routes them.
#[derive(Clone, Default)]
pub(crate) struct SinkContext(pub(crate) BrokerContext);

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(error, reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, report: &DeliveryResult<'_>, pending: Box<Pending>) {
        let outcome = match report {
            Ok(m) => Ok(Delivered { partition: m.partition(), offset: m.offset() }),
            Err((
                KafkaError::MessageProduction(
                    code @ (RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge),
                ),
                m,
            )) => {
                let bytes = m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
                Err(too_large(m.topic(), bytes, format!("the broker answered {code}")))
            }
            Err((e, _)) => Err(SinkError::Delivery(e.to_string())),
        };
        pending.complete(outcome);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ok(offset: i64) -> Outcome {
        Ok(Delivered { partition: 0, offset })
    }

    #[tokio::test]
    async fn a_batch_ends_when_every_report_is_in_and_keeps_send_order() {
        let batch = BatchAck::new(3);
        let members: Vec<Pending> = (0..3).map(|i| batch.member(i)).collect();
        let batch = batch.sealed();
        let waiter = tokio::spawn(batch.wait());
        // Reports arrive out of order, from another thread, as librdkafka's
        // polling thread delivers them.
        std::thread::spawn(move || {
            for (i, m) in members.into_iter().enumerate().rev() {
                m.complete(ok(10 + i as i64));
            }
        })
        .join()
        .unwrap();
        let results = waiter.await.unwrap();
        assert_eq!(results.iter().map(|r| r.as_ref().unwrap().offset).collect::<Vec<_>>(), [10, 11, 12]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_waits_for_its_last_report() {
        let batch = BatchAck::new(2);
        let first = batch.member(0);
        let second = batch.member(1);
        let batch = batch.sealed();
        first.complete(ok(1));
        let mut waiter = tokio::spawn(batch.wait());
        assert!(tokio::time::timeout(std::time::Duration::from_secs(60), &mut waiter).await.is_err());
        second.complete(Err(SinkError::Delivery("broker down".into())));
        let results = waiter.await.unwrap();
        assert_eq!(results[0].as_ref().unwrap().offset, 1);
        assert!(matches!(&results[1], Err(SinkError::Delivery(m)) if m == "broker down"));
    }

    #[tokio::test]
    async fn a_report_that_never_comes_fails_its_message_instead_of_hanging() {
        let batch = BatchAck::new(2);
        let kept = batch.member(0);
        drop(batch.member(1));
        let batch = batch.sealed();
        kept.complete(ok(5));
        let results = batch.wait().await;
        assert!(results[0].is_ok());
        assert!(matches!(&results[1], Err(SinkError::Delivery(m)) if m.contains("closed")));
    }

    #[tokio::test]
    async fn an_empty_batch_is_done_at_once() {
        assert!(BatchAck::new(0).sealed().wait().await.is_empty());
    }

    #[tokio::test]
    async fn a_group_ends_when_its_last_message_is_acknowledged() {
        let group = AckGroup::new();
        let joined: Vec<Pending> = (0..3).map(|_| group.join()).collect();
        let mut waiter = tokio::spawn(group.wait());
        let mut joined = joined.into_iter();
        for p in joined.by_ref().take(2) {
            p.complete(ok(1));
        }
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        std::thread::spawn(move || joined.for_each(|p| p.complete(ok(2)))).join().unwrap();
        assert!((&mut waiter).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_group_reports_its_first_failure_after_every_report() {
        let group = AckGroup::new();
        let (a, b, c) = (group.join(), group.join(), group.join());
        a.complete(Err(SinkError::Delivery("first".into())));
        b.complete(Err(SinkError::Delivery("second".into())));
        let mut waiter = tokio::spawn(group.wait());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the third message is still in flight");
        c.complete(ok(3));
        assert!(matches!((&mut waiter).await.unwrap(), Err(SinkError::Delivery(m)) if m == "first"));
    }

    #[tokio::test]
    async fn a_group_whose_report_never_comes_fails_and_an_empty_one_succeeds() {
        let group = AckGroup::new();
        drop(group.join());
        assert!(matches!(group.wait().await, Err(SinkError::Delivery(m)) if m.contains("closed")));
        assert!(AckGroup::new().wait().await.is_ok());
    }

    #[tokio::test]
    async fn a_lone_message_whose_report_never_comes_fails() {
        let (tx, rx) = oneshot::channel();
        drop(Pending::One(tx));
        assert!(matches!(Ack(rx).wait().await, Err(SinkError::Delivery(_))));
    }
}
