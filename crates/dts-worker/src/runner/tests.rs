//! The runner's state machine on fakes, under tokio's paused clock: time
//! only moves when every task waits, so backoffs and drain timeouts of
//! minutes take no real time and waits are exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dts_core::event::{Op, Row, RowChange, SourcePosition, TableSchema, Value};
use dts_core::spec::{parse_submit_body, Secret};
use dts_core::{DesiredState, TaskState};
use dts_kafka::SinkError;
use dts_metrics::OpKind;
use dts_source::position::{Flavor, SnapshotProgress, TableProgress};
use tokio::time::Instant;

use super::*;
use crate::seams::Acknowledgement;

const SEED: &str = r#"{"task":{"source":{"host":"127.0.0.1","port":3306,"username":"u","password":"p"},
    "kafka":{"addr":"127.0.0.1:9092","topic":"t"},"filters":[{"dbname":"shop","match":"orders"}],"incr":true}}"#;

fn cp(pos: u64) -> Checkpoint {
    Checkpoint {
        flavor: Flavor::MariaDb,
        file: "bin.000001".into(),
        pos,
        gtid: format!("0-1-{pos}"),
        snapshot: None,
        schemas: Default::default(),
        copies: Default::default(),
    }
}

fn row(id: i64) -> SourceItem {
    let schema = Arc::new(TableSchema {
        db: "shop".into(),
        table: "orders".into(),
        columns: vec!["id".into()],
        primary_key: vec![0],
    });
    SourceItem::Change(Change::Row(RowChange {
        schema,
        op: Op::Insert,
        before: None,
        after: Some(Row(vec![Value::Int(id)])),
        source: SourcePosition::default(),
    }))
}

fn commit(pos: u64) -> SourceItem {
    SourceItem::Commit { checkpoint: cp(pos), ts_ms: pos as i64 }
}

fn task(checkpoint: Option<&Checkpoint>) -> TaskAssignment {
    TaskAssignment {
        id: 7,
        version: 1,
        epoch: 3,
        desired_state: DesiredState::Running,
        state: TaskState::Pending,
        spec: parse_submit_body(SEED.as_bytes()).unwrap(),
        password: Secret::new("p"),
        checkpoint: checkpoint.map(|c| serde_json::to_string(c).unwrap()),
        transaction_time: None,
        snapshot_request: None,
    }
}

fn config() -> Arc<WorkerConfig> {
    let mut cfg = WorkerConfig::new("test");
    cfg.retry_min = Duration::from_secs(1);
    cfg.retry_max = Duration::from_secs(8);
    cfg.drain_timeout = Duration::from_secs(30);
    Arc::new(cfg)
}

/// What a fake source does on one open.
enum Run {
    Refuse(RunError),
    /// Sends `batches`, waiting `gap` before each, then ends as `then`.
    Feed {
        batches: Vec<Batch>,
        gap: Duration,
        then: Then,
    },
}

enum Then {
    /// Waits for the runner to drop its receiver (the shutdown signal).
    Hang,
    Fail(SourceError),
}

fn feed(items: Vec<SourceItem>, then: Then) -> Run {
    Run::Feed { batches: items.into_iter().map(|i| vec![i]).collect(), gap: Duration::ZERO, then }
}

#[derive(Default)]
struct SourceLog {
    /// The checkpoint each open resumed from, and when.
    opens: Vec<(Option<Checkpoint>, Instant)>,
    /// Readers that saw the runner drop their receiver.
    closed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMode {
    Immediate,
    Never,
}

struct Fake {
    script: Mutex<VecDeque<Run>>,
    log: Arc<Mutex<SourceLog>>,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    acks: Arc<Mutex<AckMode>>,
    /// The sink panics on this many sends, then behaves.
    panics: Arc<AtomicUsize>,
    /// Purges of the producer's queue.
    purges: Arc<AtomicUsize>,
}

impl Fake {
    fn new(script: Vec<Run>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.into()),
            log: Arc::default(),
            sent: Arc::default(),
            acks: Arc::new(Mutex::new(AckMode::Immediate)),
            panics: Arc::default(),
            purges: Arc::default(),
        })
    }
    fn opens(&self) -> Vec<Option<Checkpoint>> {
        self.log.lock().unwrap().opens.iter().map(|(c, _)| c.clone()).collect()
    }
    fn sent(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

struct FakeSink {
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    acks: Arc<Mutex<AckMode>>,
    panics: Arc<AtomicUsize>,
    purges: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct FakeAcks(AckMode);

impl Acknowledgement for FakeAcks {
    async fn wait(self) -> Result<(), SinkError> {
        if self.0 == AckMode::Never {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

impl Sink for FakeSink {
    type Acks = FakeAcks;
    async fn partitions(&self, _: &str) -> Result<u32, SinkError> {
        Ok(1)
    }
    fn acks(&self) -> FakeAcks {
        FakeAcks(*self.acks.lock().unwrap())
    }
    async fn send(&self, _: &FakeAcks, _: &str, _: u32, _: &[u8], payload: &[u8]) -> Result<(), SinkError> {
        if self.panics.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            panic!("a bug in the sink");
        }
        self.sent.lock().unwrap().push(payload.to_vec());
        Ok(())
    }
    fn in_flight(&self) -> usize {
        0
    }
    fn purge(&self) {
        self.purges.fetch_add(1, Ordering::SeqCst);
    }
}

impl Endpoints for Fake {
    type Sink = FakeSink;

    async fn open_source(
        &self,
        _: &TaskAssignment,
        resume: Option<Checkpoint>,
        tx: mpsc::Sender<Batch>,
    ) -> Result<Opened, RunError> {
        self.log.lock().unwrap().opens.push((resume.clone(), Instant::now()));
        let run = self.script.lock().unwrap().pop_front().unwrap_or(feed(vec![], Then::Hang));
        let (batches, gap, then) = match run {
            Run::Refuse(e) => return Err(e),
            Run::Feed { batches, gap, then } => (batches, gap, then),
        };
        let log = self.log.clone();
        let reader = tokio::spawn(async move {
            for batch in batches {
                tokio::time::sleep(gap).await;
                if tx.send(batch).await.is_err() {
                    return Ok(());
                }
            }
            match then {
                Then::Hang => {
                    tx.closed().await;
                    log.lock().unwrap().closed += 1;
                    Ok(())
                }
                Then::Fail(e) => Err(e),
            }
        });
        Ok(Opened { start: resume.unwrap_or_else(|| cp(1)), reader })
    }

    fn connect_sink(&self, _: &TaskAssignment) -> Result<FakeSink, RunError> {
        Ok(FakeSink {
            sent: self.sent.clone(),
            acks: self.acks.clone(),
            panics: self.panics.clone(),
            purges: self.purges.clone(),
        })
    }
}

#[derive(Default)]
struct ReportLog {
    /// Every accepted write: (state, pos or message).
    writes: Vec<(TaskState, String)>,
    progress_calls: usize,
}

#[derive(Clone, Default)]
struct FakeReporter {
    log: Arc<Mutex<ReportLog>>,
    /// Progress writes after this many are refused (the task moved away).
    fence_after: Option<usize>,
    /// This many progress writes fail first, as an unavailable store does.
    unavailable: Arc<AtomicUsize>,
}

impl FakeReporter {
    fn writes(&self) -> Vec<(TaskState, String)> {
        self.log.lock().unwrap().writes.clone()
    }
    fn last(&self) -> Option<(TaskState, String)> {
        self.writes().last().cloned()
    }
    fn has(&self, state: TaskState, text: &str) -> bool {
        self.writes().iter().any(|(s, m)| *s == state && m.contains(text))
    }
}

impl Reporter for FakeReporter {
    async fn record_progress(&self, _: i64, _: i64, p: &Progress) -> Result<bool, RunError> {
        if self.unavailable.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(RunError::Transient("the store is unavailable".into()));
        }
        let mut log = self.log.lock().unwrap();
        log.progress_calls += 1;
        if self.fence_after.is_some_and(|n| log.progress_calls > n) {
            return Ok(false);
        }
        log.writes.push((p.state, p.pos.clone()));
        Ok(true)
    }
    async fn record_state(&self, _: i64, _: i64, state: TaskState, message: &str) -> Result<bool, RunError> {
        let mut log = self.log.lock().unwrap();
        if self.fence_after.is_some_and(|n| log.progress_calls > n) {
            return Ok(false);
        }
        log.writes.push((state, message.to_owned()));
        Ok(true)
    }
}

/// Waits (in virtual time) for `cond`, failing after an hour of it.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (in virtual time) for the runner to end, failing after an hour.
async fn ended(handle: TaskHandle) {
    tokio::time::timeout(Duration::from_secs(3600), handle.join()).await.expect("the runner did not end");
}

fn start(fake: &Arc<Fake>, reporter: &FakeReporter, task: TaskAssignment, cfg: Arc<WorkerConfig>) -> TaskHandle {
    spawn_with(fake.clone(), reporter.clone(), task, cfg, LeaseClock::default())
}

#[tokio::test(start_paused = true)]
async fn positions_advance_only_past_acknowledged_commits() {
    let fake = Fake::new(vec![feed(vec![row(1), commit(10), row(2), commit(20)], Then::Hang)]);
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(None), config());
    until("the second commit's position", || reporter.has(TaskState::Running, &cp(20).display())).await;
    assert_eq!(fake.sent(), 2);
    handle.stop(StopReason::Stop);
    ended(handle).await;
    assert_eq!(reporter.last(), Some((TaskState::Stopped, String::new())));
    assert_eq!(fake.log.lock().unwrap().closed, 1, "the reader was told to stop, not aborted");

    // Unacknowledged messages never move the position, and a stop still ends.
    let fake = Fake::new(vec![feed(vec![row(1), commit(10)], Then::Hang)]);
    *fake.acks.lock().unwrap() = AckMode::Never;
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(None), config());
    until("the message to be sent", || fake.sent() == 1).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    handle.stop(StopReason::Stop);
    let stopping = Instant::now();
    ended(handle).await;
    assert!(stopping.elapsed() <= config().drain_timeout + Duration::from_secs(1));
    assert!(!reporter.has(TaskState::Running, &cp(10).display()), "{:?}", reporter.writes());
    assert_eq!(reporter.last(), Some((TaskState::Stopped, String::new())));
}

/// A batch carries many transactions: a batch's last position is written
/// only once every message of the batch and of every earlier batch is
/// acknowledged.
#[tokio::test(start_paused = true)]
async fn batches_keep_source_order_and_positions_wait_for_their_batch() {
    let first: Batch = (1..=300).map(row).chain([commit(10)]).chain((301..=310).map(row)).collect();
    let second: Batch = vec![commit(20), row(311), commit(30)];
    let fake = Fake::new(vec![Run::Feed { batches: vec![first, second], gap: Duration::ZERO, then: Then::Hang }]);
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(None), config());
    until("the last commit's position", || reporter.has(TaskState::Running, &cp(30).display())).await;
    let ids: Vec<i64> = fake
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(m).unwrap()["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=311).collect::<Vec<_>>(), "every row once, in source order");
    handle.stop(StopReason::Stop);
    ended(handle).await;

    // Nothing acknowledged: no position of the batch is written.
    let batch: Batch = vec![row(1), commit(10), row(2), commit(20)];
    let fake = Fake::new(vec![Run::Feed { batches: vec![batch], gap: Duration::ZERO, then: Then::Hang }]);
    *fake.acks.lock().unwrap() = AckMode::Never;
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(None), config());
    until("both messages to be sent", || fake.sent() == 2).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!reporter.has(TaskState::Running, &cp(10).display()), "{:?}", reporter.writes());
    handle.stop(StopReason::Stop);
    ended(handle).await;
}

#[tokio::test(start_paused = true)]
async fn transient_errors_retry_from_the_checkpoint_with_growing_backoff() {
    let lost = || Then::Fail(SourceError::Transient("connection reset".into()));
    let fake = Fake::new(vec![
        feed(vec![row(1), commit(10)], lost()),
        Run::Refuse(RunError::Transient("connection refused".into())),
        feed(vec![], lost()),
        feed(vec![row(2), commit(20)], Then::Hang),
    ]);
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(None), config());
    until("the position after the retries", || reporter.has(TaskState::Running, &cp(20).display())).await;
    let opens = fake.log.lock().unwrap().opens.iter().map(|(_, at)| *at).collect::<Vec<_>>();
    let gaps: Vec<u64> = opens.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps, [1, 2, 4], "doubling backoff");
    assert_eq!(fake.opens()[1..], [Some(cp(10)), Some(cp(10)), Some(cp(10))], "resumed from the checkpoint");
    assert!(reporter.has(TaskState::Running, "retrying after: connection refused"), "{:?}", reporter.writes());
    handle.stop(StopReason::Stop);
    ended(handle).await;
}

#[tokio::test(start_paused = true)]
async fn definite_errors_fail_the_task_once() {
    let fake =
        Fake::new(vec![feed(vec![row(1)], Then::Fail(SourceError::Definite("binlog_format is STATEMENT".into())))]);
    let reporter = FakeReporter::default();
    ended(start(&fake, &reporter, task(None), config())).await;
    assert_eq!(reporter.last(), Some((TaskState::Failed, "binlog_format is STATEMENT".into())));
    assert_eq!(fake.opens().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_backoff_ends_at_once() {
    let fake = Fake::new(vec![Run::Refuse(RunError::Transient("connection refused".into()))]);
    let reporter = FakeReporter::default();
    let mut cfg = (*config()).clone();
    cfg.retry_min = Duration::from_secs(3600);
    let handle = start(&fake, &reporter, task(None), Arc::new(cfg));
    until("the retry note", || reporter.has(TaskState::Running, "retrying after")).await;
    let asked = Instant::now();
    handle.stop(StopReason::Stop);
    ended(handle).await;
    assert!(asked.elapsed() < Duration::from_secs(1), "waited {:?}", asked.elapsed());
    assert_eq!(fake.opens().len(), 1, "no attempt after the stop");
    assert_eq!(reporter.last(), Some((TaskState::Stopped, String::new())));
}

#[tokio::test(start_paused = true)]
async fn a_stop_with_the_in_flight_queue_full_ends_within_the_drain_timeout() {
    let items: Vec<SourceItem> = (0..50).map(row).collect();
    let fake = Fake::new(vec![feed(items, Then::Hang)]);
    *fake.acks.lock().unwrap() = AckMode::Never;
    let reporter = FakeReporter::default();
    let mut cfg = (*config()).clone();
    cfg.max_in_flight = 2;
    let handle = start(&fake, &reporter, task(None), Arc::new(cfg));
    until("the in-flight queue to fill", || fake.sent() >= 3).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(fake.sent() < 10, "delivery is blocked: {}", fake.sent());
    let asked = Instant::now();
    handle.stop(StopReason::Shutdown);
    ended(handle).await;
    assert!(asked.elapsed() <= config().drain_timeout + Duration::from_secs(1), "{:?}", asked.elapsed());
    assert_eq!(reporter.last().map(|(s, _)| s), Some(TaskState::Pending));
}

#[tokio::test(start_paused = true)]
async fn fencing_mid_transaction_ends_quietly() {
    // The first write (the start position) is accepted, later ones refused.
    let fake = Fake::new(vec![feed(vec![row(1), commit(10), row(2)], Then::Hang)]);
    let reporter = FakeReporter { fence_after: Some(1), ..Default::default() };
    ended(start(&fake, &reporter, task(None), config())).await;
    let writes = reporter.writes();
    assert_eq!(writes.len(), 1, "nothing written after the fence: {writes:?}");
    assert_eq!(fake.opens().len(), 1, "no retry of a task that is not ours");
    assert_eq!(fake.log.lock().unwrap().closed, 1);
    assert_eq!(fake.purges.load(Ordering::SeqCst), 1, "queued messages are dropped, not delivered late");
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_stops_production_before_the_next_message() {
    let fake = Fake::new(vec![Run::Feed {
        batches: vec![vec![row(1)], vec![commit(10)], vec![row(2)], vec![commit(20)]],
        gap: Duration::from_secs(2),
        then: Then::Hang,
    }]);
    let reporter = FakeReporter::default();
    let lease = LeaseClock::default();
    lease.renew(Instant::now() + Duration::from_secs(3));
    let handle = spawn_with(fake.clone(), reporter.clone(), task(None), config(), lease);
    ended(handle).await;
    assert_eq!(fake.sent(), 1, "only the message sent while the lease held");
    assert_eq!(fake.purges.load(Ordering::SeqCst), 1, "what was queued is dropped, not delivered late");
    assert_eq!(fake.opens().len(), 1);
    assert!(!reporter.has(TaskState::Stopped, "") && !reporter.has(TaskState::Failed, ""));
}

#[tokio::test(start_paused = true)]
async fn a_runner_panic_is_reported_and_retried() {
    let fake = Fake::new(vec![feed(vec![row(1), commit(10)], Then::Hang), feed(vec![row(1), commit(10)], Then::Hang)]);
    fake.panics.store(1, Ordering::SeqCst);
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(None), config());
    until("delivery after the panic", || reporter.has(TaskState::Running, &cp(10).display())).await;
    assert!(reporter.has(TaskState::Running, "the runner panicked (a bug in the sink)"), "{:?}", reporter.writes());
    assert_eq!(fake.opens().len(), 2);
    handle.stop(StopReason::Stop);
    ended(handle).await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_snapshot_resumes_the_copy_from_its_checkpoint() {
    let table = |t: &str, done, key: Option<i64>| TableProgress {
        done,
        last_key: key.map(|k| vec![serde_json::json!(k)]),
        ..TableProgress::new("shop".into(), t.into(), None)
    };
    let copying = Checkpoint {
        snapshot: Some(SnapshotProgress {
            tables: vec![table("customers", true, None), table("orders", false, Some(5000))],
            rows_copied: 9000,
            started_ms: 0,
        }),
        ..cp(100)
    };
    // The copy resumes, finishes, and streaming takes over from its position.
    let fake = Fake::new(vec![feed(vec![row(5001), commit(100)], Then::Hang)]);
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(Some(&copying)), config());
    until("the streaming position", || reporter.has(TaskState::Running, &cp(100).display())).await;
    assert_eq!(fake.opens(), [Some(copying)], "the copy's progress reached the source");
    assert_eq!(reporter.writes()[0].0, TaskState::Snapshotting);
    handle.stop(StopReason::Stop);
    ended(handle).await;
}

#[tokio::test(start_paused = true)]
async fn a_copy_interrupted_by_a_transient_error_still_reports_snapshotting() {
    let copying = Checkpoint {
        snapshot: Some(SnapshotProgress {
            tables: vec![TableProgress::new("shop".into(), "orders".into(), None)],
            rows_copied: 0,
            started_ms: 0,
        }),
        ..cp(100)
    };
    let lost = Then::Fail(SourceError::Transient("connection reset".into()));
    let fake = Fake::new(vec![feed(vec![], lost), feed(vec![], Then::Hang)]);
    let reporter = FakeReporter::default();
    let handle = start(&fake, &reporter, task(Some(&copying)), config());
    until("the retry note", || reporter.has(TaskState::Snapshotting, "retrying after: connection reset")).await;
    assert!(!reporter.writes().iter().any(|w| w.0 == TaskState::Running), "{:?}", reporter.writes());
    handle.stop(StopReason::Stop);
    ended(handle).await;
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_store_is_retried_not_fatal() {
    let run = || feed(vec![row(1), commit(10)], Then::Hang);
    let fake = Fake::new(vec![run(), run(), run()]);
    let reporter = FakeReporter { unavailable: Arc::new(AtomicUsize::new(2)), ..Default::default() };
    let handle = start(&fake, &reporter, task(None), config());
    until("the position once the store is back", || reporter.has(TaskState::Running, &cp(10).display())).await;
    assert!(!reporter.has(TaskState::Failed, ""));
    assert!(fake.opens().len() >= 2);
    handle.stop(StopReason::Stop);
    ended(handle).await;
}

#[tokio::test(start_paused = true)]
async fn metrics_follow_reads_deliveries_idleness_and_retries() {
    let lost = || Then::Fail(SourceError::Transient("connection reset".into()));
    let idle = SourceItem::Idle { at_ms: 5_000 };
    let fake = Fake::new(vec![
        feed(vec![row(1), row(2), commit(10)], lost()),
        feed(vec![row(3), commit(20), idle], Then::Hang),
    ]);
    let reporter = FakeReporter::default();
    let cfg = config();
    let handle = start(&fake, &reporter, task(None), cfg.clone());
    let stats = cfg.metrics.tasks.task(7);
    until("the idle hint", || stats.lag_seconds(5_000) == Some(0.0)).await;
    assert_eq!(stats.rows_produced_by(OpKind::Insert), 3);
    assert!(stats.bytes_produced() > 0);
    // Lag is measured from the commit time of the last delivered
    // transaction (20 ms) until the idle hint says there was nothing newer.
    assert_eq!(stats.lag_seconds(5_000 + 1_500), Some(1.5));
    until("the running state", || stats.state() == Some("Running")).await;
    let text = cfg.metrics.render(None);
    assert!(text.contains("dts_task_rows_total{task_id=\"7\",op=\"c\"} 3"), "{text}");
    assert!(text.contains("dts_task_retries_total{task_id=\"7\"} 1"), "{text}");
    assert!(text.contains("dts_task_binlog_position{task_id=\"7\"} 20"), "{text}");
    assert!(text.contains("dts_task_binlog_file_number{task_id=\"7\"} 1"), "{text}");
    handle.stop(StopReason::Stop);
    ended(handle).await;
    assert_eq!(stats.state(), Some("Stopped"));
}
