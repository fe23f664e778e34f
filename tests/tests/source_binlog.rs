//! The binlog source against the real MariaDB: rows, DDL, commits, resume,
//! preflight failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use dts_core::event::{Change, Op, Value};
use dts_e2e::{random_server_id, SourceDb};
use dts_source::reader::{stream, Batch, Selection, SourceItem};
use dts_source::{checks, current_position, server_info, Checkpoint, SourceError};
use tokio::sync::mpsc;

struct Db(String);

impl Selection for Db {
    fn table(&self, db: &str, _table: &str) -> bool {
        db == self.0
    }
    fn database(&self, db: &str) -> bool {
        db == self.0
    }
    fn row_filters(&self, _db: &str, _table: &str) -> Vec<Option<dts_core::filter::RowFilter>> {
        vec![None]
    }
    fn needs_column_names(&self, _db: &str, _table: &str) -> bool {
        false
    }
}

type Reader = tokio::task::JoinHandle<Result<(), SourceError>>;

/// Receives items until `done` says so or the deadline passes (the rest of
/// the last batch is dropped); when the source stops first, fails with its
/// error.
async fn collect(
    rx: &mut mpsc::Receiver<Batch>,
    reader: &mut Reader,
    done: impl Fn(&[SourceItem]) -> bool,
) -> Vec<SourceItem> {
    let mut items = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&items) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            // Heartbeat hints come whenever the server is quiet for a second.
            // Item by item: a batch may run on past what the caller waits for.
            Ok(Some(batch)) => {
                for item in batch.into_iter().filter(|i| !matches!(i, SourceItem::Idle { .. })) {
                    if done(&items) {
                        break;
                    }
                    items.push(item);
                }
            }
            Ok(None) => panic!("the source stopped with {:?}; got {items:#?}", reader.await),
            Err(_) => panic!("timed out; got {items:#?}"),
        }
    }
    items
}

fn rows(items: &[SourceItem]) -> Vec<&dts_core::event::RowChange> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Change(Change::Row(r)) => Some(r),
            _ => None,
        })
        .collect()
}

fn commits(items: &[SourceItem]) -> Vec<&Checkpoint> {
    items
        .iter()
        .filter_map(|i| match i {
            SourceItem::Commit { checkpoint, .. } => Some(checkpoint),
            _ => None,
        })
        .collect()
}

/// A caught-up reader says so on the source's heartbeats, which is what
/// keeps an idle task's lag at zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_source_yields_idle_hints() {
    let Some(src) = SourceDb::create().await else { return };
    let cfg = src.source_config(random_server_id());
    let mut conn = cfg.connect().await.unwrap();
    let info = server_info(&mut conn).await.unwrap();
    let start = current_position(&mut conn, &info).await.unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let select = Arc::new(Db(src.db.clone()));
    let before = dts_core::now_ms();
    let reader: Reader = tokio::spawn(async move { stream(&cfg, &info, &start, select, tx).await });
    // Other tests write to the same server; a one-second pause comes soon enough.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(batch)) => {
                if let Some(at_ms) = batch.iter().find_map(|i| match i {
                    SourceItem::Idle { at_ms } => Some(*at_ms),
                    _ => None,
                }) {
                    assert!(at_ms >= before, "{at_ms} < {before}");
                    break;
                }
            }
            Ok(None) => panic!("the source stopped with {:?}", reader.await),
            Err(_) => panic!("no idle hint in 120 s"),
        }
    }
    drop(rx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_rows_ddl_and_commits_then_resumes_from_a_checkpoint() {
    let Some(src) = SourceDb::create().await else { return };
    let cfg = src.source_config(random_server_id());
    src.exec(&["CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20), amount DECIMAL(10,2), big BIGINT UNSIGNED)"])
        .await;
    let mut conn = cfg.connect().await.unwrap();
    let info = server_info(&mut conn).await.unwrap();
    checks::check_source(&mut conn, &info, std::slice::from_ref(&src.db)).await.unwrap();
    let start = current_position(&mut conn, &info).await.unwrap();
    assert!(!start.gtid.is_empty(), "MariaDB always has GTIDs: {start:?}");

    let (tx, mut rx) = mpsc::channel(16);
    let select = Arc::new(Db(src.db.clone()));
    let (c, i, s) = (cfg.clone(), info.clone(), start.clone());
    let mut reader: Reader = tokio::spawn(async move { stream(&c, &i, &s, select, tx).await });

    src.exec(&[
        "BEGIN",
        "INSERT INTO t VALUES (1, 'a', 10.50, 18446744073709551615), (2, 'b', -0.01, 0)",
        "COMMIT",
        "UPDATE t SET name = 'a2' WHERE id = 1",
        "DELETE FROM t WHERE id = 2",
        "ALTER TABLE t ADD COLUMN extra INT",
        "INSERT INTO t (id, name, extra) VALUES (3, 'c', 7)",
    ])
    .await;
    let items = collect(&mut rx, &mut reader, |items| rows(items).len() >= 5).await;

    let r = rows(&items);
    let summary: Vec<String> = items
        .iter()
        .map(|i| match i {
            SourceItem::Change(Change::Row(r)) => format!("{:?}", r.op),
            SourceItem::Change(Change::Ddl(d)) => format!("ddl {}", d.statement),
            SourceItem::Commit { checkpoint, .. } => format!("commit {}", checkpoint.display()),
            SourceItem::Idle { .. } => "idle".into(),
        })
        .collect();
    assert_eq!(
        r.iter().map(|c| c.op).collect::<Vec<_>>(),
        vec![Op::Insert, Op::Insert, Op::Update, Op::Delete, Op::Insert],
        "{summary:#?}"
    );
    let first = r[0].after.as_ref().unwrap();
    assert_eq!(
        first.0,
        vec![Value::Int(1), Value::Text("a".into()), Value::Decimal("10.50".into()), Value::UInt(u64::MAX)]
    );
    assert_eq!(r[0].schema.columns, vec!["id", "name", "amount", "big"]);
    assert_eq!(r[0].schema.primary_key, vec![0]);
    assert_eq!(r[1].after.as_ref().unwrap().0[2], Value::Decimal("-0.01".into()));
    assert_eq!(r[2].before.as_ref().unwrap().0[1], Value::Text("a".into()));
    assert_eq!(r[2].after.as_ref().unwrap().0[1], Value::Text("a2".into()));
    assert!(r[3].after.is_none() && r[3].before.is_some());
    // The stream goes on with the new shape after the DDL.
    assert_eq!(r[4].schema.columns, vec!["id", "name", "amount", "big", "extra"]);
    assert_eq!(r[4].after.as_ref().unwrap().0[4], Value::Int(7));
    let ddl = items
        .iter()
        .find_map(|i| match i {
            SourceItem::Change(Change::Ddl(d)) => Some(d),
            _ => None,
        })
        .expect("the ALTER is emitted");
    assert_eq!((ddl.db.as_str(), ddl.table.as_deref()), (src.db.as_str(), Some("t")));
    assert!(ddl.statement.contains("ADD COLUMN extra"));
    // Two rows of one transaction share its GTID; each commit advances the state.
    assert_eq!(r[0].source.gtid, r[1].source.gtid);
    assert_ne!(r[0].source.gtid, r[2].source.gtid);
    let cps = commits(&items);
    assert!(cps.windows(2).all(|w| w[0].gtid != w[1].gtid && w[0].pos < w[1].pos || w[0].file != w[1].file));
    reader.abort();

    // Resuming from the first commit replays exactly what came after it.
    let (tx, mut rx) = mpsc::channel(16);
    let select = Arc::new(Db(src.db.clone()));
    let resume = cps[0].clone();
    let (c, i) = (cfg.clone(), info.clone());
    let mut again: Reader = tokio::spawn(async move { stream(&c, &i, &resume, select, tx).await });
    let replay = collect(&mut rx, &mut again, |items| rows(items).len() >= 3).await;
    let ops: Vec<Op> = rows(&replay).iter().map(|c| c.op).collect();
    assert_eq!(ops, vec![Op::Update, Op::Delete, Op::Insert]);
    again.abort();

    // So does resuming by file and position.
    let by_pos = Checkpoint { gtid: String::new(), ..cps[0].clone() };
    let (tx, mut rx) = mpsc::channel(16);
    let select = Arc::new(Db(src.db.clone()));
    let (c, i) = (cfg.clone(), info.clone());
    let mut third: Reader = tokio::spawn(async move { stream(&c, &i, &by_pos, select, tx).await });
    let replay = collect(&mut rx, &mut third, |items| rows(items).len() >= 3).await;
    assert_eq!(rows(&replay).iter().map(|c| c.op).collect::<Vec<_>>(), vec![Op::Update, Op::Delete, Op::Insert]);
    third.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_databases_are_skipped() {
    let Some(src) = SourceDb::create().await else { return };
    let Some(other) = SourceDb::create().await else { return };
    src.exec(&["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    other.exec(&["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let cfg = src.source_config(random_server_id());
    let mut conn = cfg.connect().await.unwrap();
    let info = server_info(&mut conn).await.unwrap();
    let start = current_position(&mut conn, &info).await.unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let (c, i) = (cfg.clone(), info.clone());
    let select = Arc::new(Db(src.db.clone()));
    let mut reader: Reader = tokio::spawn(async move { stream(&c, &i, &start, select, tx).await });
    other.exec(&["INSERT INTO t VALUES (1)", "ALTER TABLE t ADD x INT"]).await;
    src.exec(&["INSERT INTO t VALUES (2)"]).await;
    let items = collect(&mut rx, &mut reader, |items| !rows(items).is_empty()).await;
    let r = rows(&items);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].db(), r[0].after.as_ref().unwrap().0[0].clone()), (src.db.as_str(), Value::Int(2)));
    assert!(
        !items.iter().any(|i| matches!(i, SourceItem::Change(Change::Ddl(_)))),
        "the other db's DDL is not emitted"
    );
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_privileges_and_bad_passwords_are_definite() {
    let Some(src) = SourceDb::create().await else { return };
    let user = format!("u{}", &src.db[4..]);
    src.exec(&[
        &format!("CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'"),
        &format!("GRANT SELECT ON `{}`.* TO '{user}'@'127.0.0.1'", src.db),
    ])
    .await;
    let mut cfg = src.source_config(random_server_id());
    cfg.user = user.clone();
    cfg.password = dts_core::spec::Secret::new("pw");
    let mut conn = cfg.connect().await.unwrap();
    let info = server_info(&mut conn).await.unwrap();
    let err = checks::check_source(&mut conn, &info, std::slice::from_ref(&src.db)).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("REPLICATION SLAVE ON *.*"), "{err}");
    assert!(!err.to_string().contains("SELECT ON"), "SELECT was granted: {err}");

    cfg.password = dts_core::spec::Secret::new("wrong");
    let err = cfg.connect().await.unwrap_err();
    assert!(matches!(err, SourceError::Definite(_)), "{err}");
    assert!(err.to_string().contains("1045"), "{err}");
    src.exec(&[&format!("DROP USER '{user}'@'127.0.0.1'")]).await;
}

/// CREATE TABLE ... SELECT is one transaction holding DDL and rows: no
/// checkpoint may fall between them, or a resume by GTID skips the rows.
/// A statement that is a transaction of its own (GRANT) gets a checkpoint,
/// so the GTID state has no hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_with_rows_checkpoints_only_at_its_end() {
    let Some(src) = SourceDb::create().await else { return };
    let cfg = src.source_config(random_server_id());
    src.exec(&["CREATE TABLE src (id INT PRIMARY KEY)", "INSERT INTO src VALUES (1), (2)"]).await;
    let mut conn = cfg.connect().await.unwrap();
    let info = server_info(&mut conn).await.unwrap();
    let start = current_position(&mut conn, &info).await.unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let select = Arc::new(Db(src.db.clone()));
    let (c, i, s) = (cfg.clone(), info.clone(), start.clone());
    let mut reader: Reader = tokio::spawn(async move { stream(&c, &i, &s, select, tx).await });
    let user = format!("u{}", random_server_id());
    src.exec(&[
        "CREATE TABLE dst (id INT PRIMARY KEY) SELECT id FROM src",
        &format!("CREATE USER '{user}'@'localhost'"),
        "INSERT INTO src VALUES (3)",
    ])
    .await;
    let items = collect(&mut rx, &mut reader, |items| rows(items).iter().any(|r| r.schema.table == "src")).await;
    let kinds: Vec<&str> = items
        .iter()
        .map(|i| match i {
            SourceItem::Change(Change::Row(_)) => "row",
            SourceItem::Change(Change::Ddl(_)) => "ddl",
            SourceItem::Commit { .. } => "commit",
            SourceItem::Idle { .. } => "idle",
        })
        .collect();
    assert_eq!(kinds, ["ddl", "row", "row", "commit", "commit", "row"], "{items:#?}");
    // The CREATE USER group has its own checkpoint, one GTID past the copy's.
    let c = commits(&items);
    let seq = |cp: &Checkpoint| cp.gtid.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(seq(c[1]), seq(c[0]) + 1);
    src.exec(&[&format!("DROP USER '{user}'@'localhost'")]).await;
    reader.abort();
}

/// Error 1236 has several causes; each must say its own. A second replica
/// with the same server id takes the stream over (transient for the first:
/// it may reconnect), and a GTID position the server never had is a
/// definite failure that does not claim the binlog was purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_1236_is_told_apart_by_cause() {
    let Some(src) = SourceDb::create().await else { return };
    let cfg = src.source_config(random_server_id());
    let mut conn = cfg.connect().await.unwrap();
    let info = server_info(&mut conn).await.unwrap();
    let start = current_position(&mut conn, &info).await.unwrap();
    let open = |start: Checkpoint| {
        let (tx, rx) = mpsc::channel(16);
        let (c, i) = (cfg.clone(), info.clone());
        let select = Arc::new(Db(src.db.clone()));
        (tokio::spawn(async move { stream(&c, &i, &start, select, tx).await }), rx)
    };
    let (first, _rx1) = open(start.clone());
    // Let the first stream register before the second takes its id.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (second, _rx2) = open(start.clone());
    let outcome = tokio::time::timeout(Duration::from_secs(20), first).await.expect("the first stream ended").unwrap();
    match outcome {
        // MariaDB answers 4052, MySQL 1236 "... same server_uuid/server_id".
        Err(SourceError::Transient(m)) => {
            assert!(m.contains("server_id") && !m.contains("purged") && !m.contains("incr=false"), "{m}")
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
    second.abort();

    // A position ahead of anything this source wrote (a diverged replica,
    // or another server's checkpoint).
    let foreign = Checkpoint { gtid: "0-4242-999999999".into(), ..start };
    let (reader, _rx) = open(foreign);
    let outcome = tokio::time::timeout(Duration::from_secs(20), reader).await.expect("the stream ended").unwrap();
    match outcome {
        Err(SourceError::Definite(m)) => assert!(m.contains("1236") && !m.contains("gone from the source"), "{m}"),
        other => panic!("expected a definite error, got {other:?}"),
    }
}
