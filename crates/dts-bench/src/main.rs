//! `dts-bench`: runs benchmark scenarios against the real MariaDB and
//! Kafka-protocol broker named by `DTS_TEST_MYSQL_URL` and
//! `DTS_TEST_KAFKA_ADDR` (`scripts/bench.sh` starts them), with the worker
//! in this process, and writes `results.json` and `results.md`.
//!
//! Scenarios:
//! - `cdc`: rows/s catching up on a binlog backlog (the task is stopped,
//!   N rows are written, the task is started; timed until its position
//!   reaches the last write). Measuring on a backlog shows the pipeline's
//!   own speed: a live run is capped by how fast the source ingests.
//! - `snapshot`: rows/s copying an N-row table (`incr: false`), from the
//!   task entering `Snapshotting` to it entering `Running`, the lag of rows
//!   written meanwhile, and the peak RSS of this process (worker included)
//!   during the copy.
//! - `lag`: a steady write rate (5k and 20k rows/s); each row carries the
//!   time it was written, and lag is its message's producer timestamp
//!   minus that (p50, p99, max). Kafka's acknowledgement adds the
//!   producer's linger (5 ms) and one round trip on top.
//! - `ceiling`: the binlog read and decoded with nothing produced, and the
//!   broker's own produce rate with no source: which side limits us.
//! - `memory`: peak RSS of this process (worker included) through a CDC
//!   backlog and through one 1M-row transaction.
//! - `api`: `GET /v1/task/list` (50 per page) over 10,000 stored tasks from
//!   concurrent clients for 10 s: requests/s and p99 latency; and the time
//!   from `POST /v1/dispatch/submit` to the task running.

mod ingest;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dts_core::spec::{parse_submit_body, TaskSpec};
use dts_core::{DesiredState, TaskState};
use dts_e2e::SourceDb;
use dts_store::tasks::Assignment;
use dts_store::{SecretCipher, Store};
use dts_worker::{Worker, WorkerConfig};
use serde::Serialize;

#[derive(Debug, Serialize, Default)]
struct Result {
    scenario: String,
    variant: String,
    rows: u64,
    seconds: f64,
    rows_per_sec: f64,
    /// Lag scenario: milliseconds from write to produce.
    #[serde(skip_serializing_if = "Option::is_none")]
    lag_ms: Option<LagStats>,
    /// Memory scenario: peak RSS in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_rss_mib: Option<f64>,
    /// The Python baseline's rows/s on the same rows, where it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_rows_per_sec: Option<f64>,
    /// Repeated scenarios: how many runs, and the lowest and highest rows/s
    /// (`rows_per_sec` is then the median, lag the run with the median p99).
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    range: Option<(f64, f64)>,
}

/// Folds repeated runs of one variant into one line: median and range of
/// rows/s, median baseline, the lag of the median-p99 run, the highest RSS.
fn combine(mut runs: Vec<Result>) -> Result {
    let n = runs.len();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let rates: Vec<f64> = runs.iter().map(|r| r.rows_per_sec).collect();
    let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let high = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let rate = median(rates).unwrap_or(f64::NAN);
    let baseline = median(runs.iter().filter_map(|r| r.baseline_rows_per_sec).collect());
    let rss = runs.iter().filter_map(|r| r.peak_rss_mib).reduce(f64::max);
    let mut lags: Vec<LagStats> = runs.iter().filter_map(|r| r.lag_ms).collect();
    lags.sort_by(|a, b| a.p99.total_cmp(&b.p99));
    let lag = lags.get(lags.len() / 2).copied();
    runs.sort_by(|a, b| a.rows_per_sec.total_cmp(&b.rows_per_sec));
    let mid = runs.swap_remove(n / 2);
    Result {
        rows_per_sec: rate,
        baseline_rows_per_sec: baseline,
        peak_rss_mib: rss,
        lag_ms: lag,
        runs: Some(n),
        range: Some((low, high)),
        ..mid
    }
}

#[derive(Debug, Serialize, Default, Clone, Copy)]
struct LagStats {
    p50: f64,
    p99: f64,
    max: f64,
}

#[derive(Debug)]
struct Args {
    scenarios: Vec<String>,
    rows: u64,
    /// Runs of each throughput and lag variant (median and range reported).
    runs: usize,
    /// Concurrent clients of the ingest scenario.
    clients: usize,
    /// The worker's copy settings: chunk readers per task, rows per chunk.
    snapshot_readers: usize,
    snapshot_chunk_rows: usize,
    out: PathBuf,
}

/// A flag's value that must be a positive count.
fn count(flag: &str, value: &str) -> std::result::Result<usize, String> {
    value.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("{flag}: not a count: {value}"))
}

fn args() -> std::result::Result<Args, String> {
    let worker = WorkerConfig::new("defaults");
    let mut a = Args {
        scenarios: ["cdc", "many", "snapshot", "lag", "ceiling", "api", "memory", "ingest"].map(String::from).to_vec(),
        rows: 1_000_000,
        runs: 3,
        clients: ingest::CLIENTS,
        snapshot_readers: worker.snapshot_readers,
        snapshot_chunk_rows: worker.snapshot_chunk_rows,
        out: "bench-results".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--scenarios" => a.scenarios = value.split(',').map(str::to_owned).collect(),
            "--rows" => a.rows = value.parse().map_err(|_| format!("--rows: not a number: {value}"))?,
            "--out" => a.out = value.into(),
            "--clients" => a.clients = count(&flag, &value)?,
            "--runs" => a.runs = count(&flag, &value)?,
            "--snapshot-readers" => a.snapshot_readers = count(&flag, &value)?,
            "--snapshot-chunk-rows" => a.snapshot_chunk_rows = count(&flag, &value)?,
            other => {
                return Err(format!(
                    "unknown flag {other} (known: --scenarios cdc,many,snapshot,lag,ceiling,api,memory,ingest --rows N --runs N --clients N --snapshot-readers N --snapshot-chunk-rows N --out DIR)"
                ))
            }
        }
    }
    Ok(a)
}

/// The store, a worker running its tasks, the source database and the broker.
struct Bench {
    store: Store,
    src: SourceDb,
    kafka: String,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn start(kafka: String, args: &Args) -> std::result::Result<Self, String> {
        let url = std::env::var("DTS_TEST_MYSQL_URL").map_err(|_| "DTS_TEST_MYSQL_URL is not set".to_owned())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let key = SecretCipher::from_base64(&SecretCipher::generate_key_base64()).map_err(|e| e.to_string())?;
        let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display()), key)
            .await
            .map_err(|e| e.to_string())?;
        let mut cfg = WorkerConfig::new("bench");
        cfg.poll_interval = Duration::from_millis(50);
        cfg.checkpoint_interval = Duration::from_millis(50);
        cfg.snapshot_readers = args.snapshot_readers;
        cfg.snapshot_chunk_rows = args.snapshot_chunk_rows;
        tokio::spawn(Worker::new(store.clone(), cfg).run(tokio::sync::watch::channel(false).1));
        Ok(Self { store, src: SourceDb::create_on(&url).await, kafka, _dir: dir })
    }

    fn spec(&self, table: &str, topic: &str, partition_mode: &str, incr: bool) -> TaskSpec {
        let body = serde_json::json!({"task": {
            "source": {"host": self.src.host, "port": self.src.port, "username": self.src.user, "password": self.src.password},
            "kafka": {"addr": self.kafka, "topic": topic, "partition_mode": partition_mode},
            "filters": [{"dbname": self.src.db, "match": table}],
            "incr": incr
        }});
        parse_submit_body(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("bench spec: {e}"))
    }

    async fn submit(&self, spec: &TaskSpec) -> i64 {
        let at = Assignment { worker_id: "bench".into(), service_addr: String::new() };
        self.store.create_task(spec, Some(&at)).await.unwrap_or_else(|e| panic!("submit: {e}")).id
    }

    /// Stops a task and waits until it has stopped.
    async fn stop(&self, id: i64) {
        self.store.set_desired_state(id, DesiredState::Stopped).await.unwrap_or_else(|e| panic!("{e}"));
        self.wait(id, "Stopped", |t| t.state == TaskState::Stopped).await;
    }

    /// Polls the task every 10 ms until `pred` holds (10 minutes at most).
    async fn wait(&self, id: i64, what: &str, pred: impl Fn(&dts_store::TaskRecord) -> bool) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let task = self
                .store
                .get_task(id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("task {id} gone"));
            if pred(&task) {
                return Instant::now();
            }
            assert!(task.state != TaskState::Failed, "task failed while waiting for {what}: {}", task.message);
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            // Half the worker's 50 ms checkpoint interval, at which these
            // figures change: a faster poll gains no precision.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The source's GTID state after its last write: a task whose position
/// ends with it has read everything written so far.
async fn last_gtid(conn: &mut mysql_async::Conn) -> String {
    let gtid: Option<String> = mysql_async::prelude::Queryable::query_first(conn, "SELECT @@GLOBAL.gtid_binlog_pos")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    gtid.unwrap_or_default()
}

fn wide_value() -> String {
    "x".repeat(1000)
}

/// What the backlog's transactions look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    /// 1,000 rows per transaction, small rows.
    Small,
    /// 1,000 rows per transaction, ~1 KB rows.
    Wide,
    /// One small row per transaction (OLTP-style: one event, one commit).
    SingleRow,
}

async fn cdc(bench: &Bench, rows: u64, backlog: Backlog, partition_mode: &str) -> Result {
    let wide = backlog == Backlog::Wide;
    // Unique: the memory scenario runs this again in the same database.
    let table = dts_e2e::unique_topic(&format!("cdc_{backlog:?}_{partition_mode}").to_ascii_lowercase());
    let column = if wide { "v VARCHAR(1100)" } else { "v VARCHAR(20)" };
    bench.src.exec(&[&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, n INT, {column})")]).await;
    let spec = bench.spec(&table, &dts_e2e::unique_topic(&table), partition_mode, true);
    let id = bench.submit(&spec).await;
    bench.wait(id, "Running", |t| t.state == TaskState::Running && !t.pos.is_empty()).await;
    bench.store.set_desired_state(id, DesiredState::Stopped).await.unwrap_or_else(|e| panic!("{e}"));
    bench.wait(id, "Stopped", |t| t.state == TaskState::Stopped).await;
    let v = if wide { wide_value() } else { "small-row".into() };
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    let step = if backlog == Backlog::SingleRow { 10_000 } else { 1000 };
    for start in (0..rows).step_by(step) {
        let end = (start + step as u64).min(rows);
        let sql = match backlog {
            // Multi-row transactions of 1,000 rows.
            Backlog::Small | Backlog::Wide => {
                format!("INSERT INTO {table} SELECT seq, seq % 1000, '{v}' FROM seq_{}_to_{}", start + 1, end)
            }
            // With autocommit every INSERT of the loop is its own transaction.
            Backlog::SingleRow => format!(
                "BEGIN NOT ATOMIC FOR i IN {}..{end} DO INSERT INTO {table} VALUES (i, i % 1000, '{v}'); END FOR; END",
                start + 1
            ),
        };
        mysql_async::prelude::Queryable::query_drop(&mut conn, sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let last = last_gtid(&mut conn).await;
    let from = bench.store.get_task(id).await.ok().flatten().and_then(|t| t.checkpoint);
    bench.store.set_desired_state(id, DesiredState::Running).await.unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let done = bench.wait(id, "catching up", |t| t.pos.ends_with(&last)).await;
    let seconds = (done - started).as_secs_f64();
    // Tasks left streaming would read every later scenario's binlog too.
    bench.stop(id).await;
    let shape = match backlog {
        Backlog::Small => "small rows",
        Backlog::Wide => "~1 KB rows",
        Backlog::SingleRow => "single-row transactions",
    };
    let variant = format!("{shape}, partition_mode {partition_mode}");
    let mut result = Result {
        scenario: "cdc".into(),
        variant,
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        ..Default::default()
    };
    if backlog != Backlog::Wide && partition_mode == "primary_key" {
        result.baseline_rows_per_sec = baseline(bench, &table, from.as_deref(), rows).await;
    }
    result
}

/// `tasks` tasks on the one in-process worker, each on its own table of
/// one source: a backlog spread evenly over the tables, timed until every
/// task has caught up. Every task reads the whole binlog and decodes only
/// its own table's rows.
async fn many(bench: &Bench, rows: u64, tasks: usize) -> Result {
    let prefix = dts_e2e::unique_topic("many");
    let tables: Vec<String> = (0..tasks).map(|i| format!("{prefix}_{i}")).collect();
    let mut ids = Vec::new();
    for table in &tables {
        bench.src.exec(&[&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, n INT, v VARCHAR(20))")]).await;
        let spec = bench.spec(table, &dts_e2e::unique_topic(table), "primary_key", true);
        ids.push(bench.submit(&spec).await);
    }
    for &id in &ids {
        bench.wait(id, "Running", |t| t.state == TaskState::Running && !t.pos.is_empty()).await;
        bench.store.set_desired_state(id, DesiredState::Stopped).await.unwrap_or_else(|e| panic!("{e}"));
    }
    for &id in &ids {
        bench.wait(id, "Stopped", |t| t.state == TaskState::Stopped).await;
    }
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    for (n, start) in (0..rows).step_by(1000).enumerate() {
        let end = (start + 1000).min(rows);
        let table = &tables[n % tasks];
        let sql = format!("INSERT INTO {table} SELECT seq, seq % 1000, 'small-row' FROM seq_{}_to_{end}", start + 1);
        mysql_async::prelude::Queryable::query_drop(&mut conn, sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let last = last_gtid(&mut conn).await;
    reset_peak_rss();
    let started = Instant::now();
    for &id in &ids {
        bench.store.set_desired_state(id, DesiredState::Running).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let mut done = started;
    for &id in &ids {
        done = done.max(bench.wait(id, "catching up", |t| t.pos.ends_with(&last)).await);
    }
    let seconds = (done - started).as_secs_f64();
    for &id in &ids {
        bench.stop(id).await;
    }
    Result {
        scenario: "many".into(),
        variant: format!("{tasks} tasks, one table each, small rows (aggregate rows/s; RSS of the bench process)"),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        peak_rss_mib: Some(peak_rss_mib()),
        ..Default::default()
    }
}

/// The Python baseline over the same binlog range (`DTS_BENCH_BASELINE`,
/// set by scripts/bench.sh); `None` when it is not installed.
async fn baseline(bench: &Bench, table: &str, checkpoint: Option<&str>, rows: u64) -> Option<f64> {
    let command = std::env::var("DTS_BENCH_BASELINE").ok()?;
    let cp: serde_json::Value = serde_json::from_str(checkpoint?).ok()?;
    let (file, pos) = (cp["file"].as_str()?.to_owned(), cp["pos"].as_u64()?);
    let mut parts = command.split_whitespace();
    let program = parts.next()?;
    let out = tokio::process::Command::new(program)
        .args(parts)
        .args(["--host", &bench.src.host, "--port", &bench.src.port.to_string()])
        .args(["--user", &bench.src.user, "--password", &bench.src.password])
        .args(["--server-id", &dts_e2e::random_server_id().to_string()])
        .args(["--log-file", &file, "--log-pos", &pos.to_string()])
        .args(["--db", &bench.src.db, "--table", table, "--rows", &rows.to_string()])
        .args(["--brokers", &bench.kafka, "--topic", &dts_e2e::unique_topic("baseline")])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        eprintln!("baseline failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(r["rows"].as_f64()? / r["seconds"].as_f64()?)
}

/// Copies an N-row table while a writer inserts 1,000 rows/s into another
/// table of the same task: rows/s of the copy, and the writer's lag.
async fn snapshot(bench: &Bench, rows: u64) -> Result {
    bench
        .src
        .exec(&[
            "CREATE TABLE snap (id BIGINT PRIMARY KEY, n INT, v VARCHAR(20))",
            "CREATE TABLE snaplag (id BIGINT PRIMARY KEY, written_us BIGINT)",
            &format!("INSERT INTO snap SELECT seq, seq % 1000, CONCAT('v', seq) FROM seq_1_to_{rows}"),
        ])
        .await;
    // A topic per table: only the writer's rows are read back for lag, so
    // a 10M-row copy is not held in this process's memory afterwards.
    let topic = dts_e2e::unique_topic("snap");
    let mut spec = bench.spec("/^snap(lag)?$/", &topic, "primary_key", false);
    spec.kafka.topic_mode = Some(dts_core::spec::TopicMode::PerTable);
    let lag_topic = format!("{}_snaplag", dts_pipeline::route::escape_name(&bench.src.db));
    // The worker runs in this process: its peak from here on is the copy's.
    reset_peak_rss();
    let id = bench.submit(&spec).await;
    let started = bench.wait(id, "Snapshotting", |t| t.state == TaskState::Snapshotting).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let pool = bench.src.pool.clone();
    let writer = tokio::spawn(async move {
        let mut conn = pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        let mut next = 1u64;
        while !*stopped.borrow() {
            tick.tick().await;
            let now = micros_now();
            let values: Vec<String> = (next..next + 5).map(|i| format!("({i}, {now})")).collect();
            next += 5;
            let sql = format!("INSERT INTO snaplag VALUES {}", values.join(","));
            mysql_async::prelude::Queryable::query_drop(&mut conn, sql).await.unwrap_or_else(|e| panic!("{e}"));
        }
        next - 1
    });
    let done = bench.wait(id, "Running", |t| t.state == TaskState::Running).await;
    let peak = peak_rss_mib();
    let _ = stop.send(true);
    bench.stop(id).await;
    let written = writer.await.unwrap_or(0);
    let seconds = (done - started).as_secs_f64();
    let (addr, t) = (bench.kafka.clone(), lag_topic);
    let want = written as usize;
    let messages = tokio::task::spawn_blocking(move || dts_e2e::read_topic(&addr, &t, want)).await.unwrap_or_default();
    // Streamed inserts only: the copy also reads the rows of `snaplag`
    // written before its turn, and those are not lag.
    let mut lags: Vec<f64> = messages
        .iter()
        .filter(|m| m.payload["op"] == "c")
        .filter_map(|m| m.payload["after"]["written_us"].as_i64().map(|w| (m.timestamp_ms * 1000 - w) as f64 / 1000.0))
        .collect();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    Result {
        scenario: "snapshot".into(),
        variant: format!(
            "{rows}-row table, small rows; lag of 1,000 rows/s written meanwhile; RSS of the bench process"
        ),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        lag_ms: Some(LagStats { p50: at(0.5), p99: at(0.99), max: lags.last().copied().unwrap_or(f64::NAN) }),
        peak_rss_mib: Some(peak),
        ..Default::default()
    }
}

fn micros_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

async fn lag(bench: &Bench, rate: u64, seconds: u64) -> Result {
    let table = dts_e2e::unique_topic(&format!("lag_{rate}"));
    bench.src.exec(&[&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, written_us BIGINT)")]).await;
    let topic = dts_e2e::unique_topic(&table);
    let id = bench.submit(&bench.spec(&table, &topic, "primary_key", true)).await;
    bench.wait(id, "Running", |t| t.state == TaskState::Running && !t.pos.is_empty()).await;
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    // One row first, delivered before the clock starts: creating the topic
    // is a one-time cost, not lag (on a broker holding many topics it takes
    // hundreds of milliseconds).
    mysql_async::prelude::Queryable::query_drop(&mut conn, format!("INSERT INTO {table} VALUES (0, 0)"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let warm = last_gtid(&mut conn).await;
    bench.wait(id, "the first row delivered", |t| t.pos.ends_with(&warm)).await;
    // 200 batches a second, each one multi-row INSERT stamped with its send time.
    let batch = (rate / 200).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * seconds;
    let mut next = 1u64;
    let writing = Instant::now();
    while next <= total {
        tick.tick().await;
        let now = micros_now();
        let values: Vec<String> = (next..(next + batch).min(total + 1)).map(|i| format!("({i}, {now})")).collect();
        next += values.len() as u64;
        let sql = format!("INSERT INTO {table} VALUES {}", values.join(","));
        mysql_async::prelude::Queryable::query_drop(&mut conn, sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    // The rate the source really took: above ~50k rows/s the writer, the
    // source and dts share the two cores.
    let written_in = writing.elapsed().as_secs_f64();
    let (addr, t) = (bench.kafka.clone(), topic.clone());
    let messages = tokio::task::spawn_blocking(move || dts_e2e::read_topic(&addr, &t, total as usize + 1))
        .await
        .unwrap_or_default();
    bench.stop(id).await;
    let mut lags: Vec<f64> = messages
        .iter()
        .filter(|m| m.payload["after"]["id"].as_i64() != Some(0))
        .filter_map(|m| m.payload["after"]["written_us"].as_i64().map(|w| (m.timestamp_ms * 1000 - w) as f64 / 1000.0))
        .collect();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags.get(((lags.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    let stats = LagStats { p50: at(0.5), p99: at(0.99), max: lags.last().copied().unwrap_or(f64::NAN) };
    Result {
        scenario: "lag".into(),
        variant: format!("{rate} rows/s asked for {seconds} s (rows/s: the rate written)"),
        rows: lags.len() as u64,
        seconds: written_in,
        rows_per_sec: total as f64 / written_in,
        lag_ms: Some(stats),
        ..Default::default()
    }
}

/// The table the reader-only ceiling reads.
/// One table of the source database: (db, table).
struct CeilingTable(String, String);

impl dts_source::reader::Selection for CeilingTable {
    fn table(&self, db: &str, table: &str) -> bool {
        db == self.0 && table == self.1
    }
    fn database(&self, db: &str) -> bool {
        db == self.0
    }
    fn row_filters(&self, _: &str, _: &str) -> Vec<Option<dts_core::filter::RowFilter>> {
        vec![None]
    }
    fn needs_column_names(&self, _: &str, _: &str) -> bool {
        false
    }
}

/// The binlog alone: read and decode a backlog, produce nothing.
async fn reader_ceiling(bench: &Bench, rows: u64) -> Result {
    use dts_source::reader::{stream, SourceItem};
    let table = dts_e2e::unique_topic("ceiling");
    bench.src.exec(&[&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, n INT, v VARCHAR(20))")]).await;
    let cfg = bench.src.source_config(dts_e2e::random_server_id());
    let mut conn = cfg.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let info = dts_source::server_info(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
    let start = dts_source::current_position(&mut conn, &info).await.unwrap_or_else(|e| panic!("{e}"));
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    for s in (0..rows).step_by(1000) {
        let end = (s + 1000).min(rows);
        let sql = format!("INSERT INTO {table} SELECT seq, seq % 1000, 'small-row' FROM seq_{}_to_{end}", s + 1);
        mysql_async::prelude::Queryable::query_drop(&mut conn, sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let select = std::sync::Arc::new(CeilingTable(bench.src.db.clone(), table));
    let started = Instant::now();
    let reader = tokio::spawn(async move { stream(&cfg, &info, &start, select, tx).await });
    let mut seen = 0u64;
    while seen < rows {
        match rx.recv().await {
            Some(batch) => seen += batch.iter().filter(|i| matches!(i, SourceItem::Change(_))).count() as u64,
            None => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    reader.abort();
    Result {
        scenario: "ceiling".into(),
        variant: "binlog read + decode only".into(),
        rows: seen,
        seconds,
        rows_per_sec: seen as f64 / seconds,
        ..Default::default()
    }
}

/// The broker alone: small keyed messages from one producer, all acknowledged.
async fn producer_ceiling(bench: &Bench, rows: u64) -> Result {
    let mut cfg = dts_kafka::SinkConfig::new(bench.kafka.clone());
    cfg.topic_partitions = 3;
    let sink = dts_kafka::KafkaSink::connect(cfg).unwrap_or_else(|e| panic!("{e}"));
    let topic = dts_e2e::unique_topic("producer_ceiling");
    let partitions = sink.partitions(&topic).await.unwrap_or_else(|e| panic!("{e}"));
    let payload = br#"{"after":{"id":1,"n":1,"v":"small-row"},"op":"c"}"#;
    let started = Instant::now();
    let mut acks = std::collections::VecDeque::new();
    for i in 0..rows {
        let key = i.to_string();
        let p = dts_pipeline::murmur2::partition_for(key.as_bytes(), partitions);
        acks.push_back(sink.send(&topic, p, key.as_bytes(), payload).await.unwrap_or_else(|e| panic!("{e}")));
        if acks.len() >= 100_000 {
            if let Some(a) = acks.pop_front() {
                a.wait().await.unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    for a in acks {
        a.wait().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let seconds = started.elapsed().as_secs_f64();
    Result {
        scenario: "ceiling".into(),
        variant: "rdkafka produce only (idempotent, acks=all)".into(),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        ..Default::default()
    }
}

/// The REST API under load, served in this process on the bench's store.
async fn api(bench: &Bench) -> Vec<Result> {
    use std::sync::Arc;
    const TASKS: usize = 10_000;
    const CLIENTS: usize = 16;
    let spec = bench.spec("api_t", "api_topic", "table", true);
    for _ in 0..TASKS {
        // Unassigned: listed, never run.
        bench.store.create_task(&spec, None).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let users = dts_control::auth::parse_users_env("bench:bench-pw").unwrap_or_else(|e| panic!("{e}"));
    let state = dts_control::AppState {
        store: bench.store.clone(),
        auth: Arc::new(dts_control::auth::Authenticator::new(users).unwrap_or_else(|e| panic!("{e}"))),
        placement: dts_control::Placement::Local { worker_id: "bench".into(), service_addr: "bench".into() },
        limits: dts_control::Limits::default(),
        cluster: None,
        ingest: Arc::new(dts_ingest::Registry::new(bench.store.clone(), dts_ingest::IngestSettings::default())),
        metrics: dts_metrics::Metrics::new(dts_metrics::NodeKind::WithStore),
        history: Default::default(),
    };
    let server = actix_web::HttpServer::new(move || dts_control::app(state.clone()))
        .workers(2)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = server.addrs()[0];
    tokio::spawn(server.run());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let http = http.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut page = c as u64;
            while Instant::now() < deadline {
                page = (page * 7 + 13) % (TASKS as u64 / 50) + 1;
                let t = Instant::now();
                let r = http
                    .get(format!("http://{addr}/v1/task/list?per_page=50&page={page}"))
                    .basic_auth("bench", Some("bench-pw"))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for c in clients {
        latencies.extend(c.await.unwrap_or_default());
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    let list = Result {
        scenario: "api".into(),
        variant: format!(
            "GET /v1/task/list, 50 per page, {TASKS} tasks, {CLIENTS} clients (latency in the lag column)"
        ),
        rows: latencies.len() as u64,
        seconds: 10.0,
        rows_per_sec: latencies.len() as f64 / 10.0,
        lag_ms: Some(LagStats { p50: at(0.5), p99: at(0.99), max: latencies.last().copied().unwrap_or(f64::NAN) }),
        ..Default::default()
    };
    // Submit to Running, through the API and the worker.
    bench.src.exec(&["CREATE TABLE api_t (id INT PRIMARY KEY)"]).await;
    let body = serde_json::json!({"task": {
        "source": {"host": bench.src.host, "port": bench.src.port, "username": bench.src.user, "password": bench.src.password},
        "kafka": {"addr": bench.kafka, "topic": dts_e2e::unique_topic("api")},
        "filters": [{"dbname": bench.src.db, "match": "api_t"}]
    }});
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r: serde_json::Value = http
            .post(format!("http://{addr}/v1/dispatch/submit"))
            .basic_auth("bench", Some("bench-pw"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let id = r["data"]["id"].as_i64().unwrap_or_default();
        bench.wait(id, "Running", |task| task.state == TaskState::Running).await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let submit = Result {
        scenario: "api".into(),
        variant: "submit to Running, 5 tasks (ms in the lag column)".into(),
        rows: 5,
        seconds: times.iter().sum::<f64>() / 1000.0,
        rows_per_sec: f64::NAN,
        lag_ms: Some(LagStats { p50: times[2], p99: times[4], max: times[4] }),
        ..Default::default()
    };
    vec![list, submit]
}

/// Peak resident memory of this process in MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resets the peak so the next reading covers only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn memory(bench: &Bench, rows: u64) -> Vec<Result> {
    reset_peak_rss();
    let mut cdc_run = cdc(bench, rows, Backlog::Small, "table").await;
    cdc_run.scenario = "memory".into();
    cdc_run.variant = format!("peak RSS during a {rows}-row CDC backlog");
    cdc_run.peak_rss_mib = Some(peak_rss_mib());
    // One transaction of `rows` rows.
    bench.src.exec(&["CREATE TABLE bigtx (id BIGINT PRIMARY KEY, n INT, v VARCHAR(20))"]).await;
    let spec = bench.spec("bigtx", &dts_e2e::unique_topic("bigtx"), "primary_key", true);
    let id = bench.submit(&spec).await;
    bench.wait(id, "Running", |t| t.state == TaskState::Running && !t.pos.is_empty()).await;
    reset_peak_rss();
    let started = Instant::now();
    bench
        .src
        .exec(&[&format!("INSERT INTO bigtx SELECT seq, seq % 1000, 'one-transaction' FROM seq_1_to_{rows}")])
        .await;
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    let gtid = last_gtid(&mut conn).await;
    bench.wait(id, "the big transaction delivered", |t| t.pos.ends_with(&gtid)).await;
    let seconds = started.elapsed().as_secs_f64();
    let big = Result {
        scenario: "memory".into(),
        variant: format!("peak RSS during one {rows}-row transaction"),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        peak_rss_mib: Some(peak_rss_mib()),
        ..Default::default()
    };
    vec![cdc_run, big]
}

fn markdown(results: &[Result], cores: usize, source: &str) -> String {
    let mut md = String::from(
        "| scenario | variant | rows | seconds | rows/s (median) | range over runs | baseline rows/s (ratio) | lag p50 / p99 / max (ms) | peak RSS (MiB) |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        let lag = r.lag_ms.map_or(String::new(), |l| format!("{:.1} / {:.1} / {:.1}", l.p50, l.p99, l.max));
        let rss = r.peak_rss_mib.map_or(String::new(), |m| format!("{m:.0}"));
        let base = r.baseline_rows_per_sec.map_or(String::new(), |b| format!("{b:.0} ({:.1}x)", r.rows_per_sec / b));
        let range = match (r.runs, r.range) {
            (Some(1), _) => "1 run".to_owned(),
            (Some(n), Some((lo, hi))) => format!("{lo:.0}–{hi:.0} ({n} runs)"),
            _ => String::new(),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.0} | {range} | {base} | {lag} | {rss} |\n",
            r.scenario, r.variant, r.rows, r.seconds, r.rows_per_sec
        ));
    }
    md.push_str(&format!(
        "\nMachine: {cores} cores, dts {}, source {source}; broker: tansu (Kafka protocol), both on loopback.\n",
        env!("CARGO_PKG_VERSION")
    ));
    md
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dts-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let kafka = match std::env::var("DTS_TEST_KAFKA_ADDR") {
        Ok(k) => k,
        Err(_) => {
            eprintln!(
                "dts-bench: DTS_TEST_KAFKA_ADDR is not set (run through scripts/bench.sh, which starts the servers)"
            );
            return std::process::ExitCode::from(2);
        }
    };
    // The ingest scenario drives its own `dts` process: the in-process
    // worker (and its store polling) would only take CPU from it.
    let bench = if args.scenarios.iter().all(|s| s == "ingest") {
        None
    } else {
        match Bench::start(kafka.clone(), &args).await {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("dts-bench: {e} (run through scripts/bench.sh, which starts the servers)");
                return std::process::ExitCode::from(2);
            }
        }
    };
    let mut results = Vec::new();
    for scenario in &args.scenarios {
        if scenario == "ingest" {
            for r in ingest::ingest(&kafka, args.clients).await {
                eprintln!("{}: {} -> {:.0} records/s {:?}", r.scenario, r.variant, r.rows_per_sec, r.lag_ms);
                results.push(r);
            }
            continue;
        }
        // Started above whenever a scenario other than ingest was asked for.
        let Some(bench) = bench.as_ref() else { continue };
        match scenario.as_str() {
            "cdc" => {
                let runs = [
                    (Backlog::Small, "table"),
                    (Backlog::Small, "primary_key"),
                    (Backlog::Wide, "table"),
                    (Backlog::Wide, "primary_key"),
                    (Backlog::SingleRow, "primary_key"),
                ];
                for (backlog, mode) in runs {
                    let rows = match backlog {
                        Backlog::Small => args.rows,
                        Backlog::Wide => args.rows / 4,
                        // The Python baseline reads ~3.5k of these a second.
                        Backlog::SingleRow => args.rows / 10,
                    };
                    let mut each = Vec::new();
                    for _ in 0..args.runs {
                        let r = cdc(bench, rows, backlog, mode).await;
                        eprintln!("{}: {} -> {:.0} rows/s", r.scenario, r.variant, r.rows_per_sec);
                        each.push(r);
                    }
                    results.push(combine(each));
                }
            }
            "snapshot" => {
                let r = snapshot(bench, args.rows).await;
                eprintln!("{}: {} -> {:.0} rows/s", r.scenario, r.variant, r.rows_per_sec);
                results.push(r);
            }
            "lag" => {
                for rate in [5_000, 20_000, 100_000] {
                    let mut each = Vec::new();
                    for _ in 0..args.runs {
                        let r = lag(bench, rate, 10).await;
                        eprintln!("{}: {} -> {:?}", r.scenario, r.variant, r.lag_ms);
                        each.push(r);
                    }
                    results.push(combine(each));
                }
            }
            "ceiling" => {
                let (mut reads, mut produces) = (Vec::new(), Vec::new());
                for _ in 0..args.runs {
                    for (r, into) in [
                        (reader_ceiling(bench, args.rows).await, &mut reads),
                        (producer_ceiling(bench, args.rows).await, &mut produces),
                    ] {
                        eprintln!("{}: {} -> {:.0} rows/s", r.scenario, r.variant, r.rows_per_sec);
                        into.push(r);
                    }
                }
                results.push(combine(reads));
                results.push(combine(produces));
            }
            "api" => {
                for r in api(bench).await {
                    eprintln!("{}: {} -> {:.0} req/s {:?}", r.scenario, r.variant, r.rows_per_sec, r.lag_ms);
                    results.push(r);
                }
            }
            "many" => {
                let mut each = Vec::new();
                for _ in 0..args.runs {
                    let r = many(bench, args.rows, 16).await;
                    eprintln!(
                        "{}: {} -> {:.0} rows/s, {:?} MiB",
                        r.scenario, r.variant, r.rows_per_sec, r.peak_rss_mib
                    );
                    each.push(r);
                }
                results.push(combine(each));
            }
            "memory" => {
                for r in memory(bench, args.rows).await {
                    eprintln!("{}: {} -> {:?} MiB", r.scenario, r.variant, r.peak_rss_mib);
                    results.push(r);
                }
            }
            other => {
                eprintln!(
                    "dts-bench: unknown scenario {other} (known: cdc, many, snapshot, lag, ceiling, api, memory, ingest)"
                );
                return std::process::ExitCode::from(2);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let source: Option<String> = match bench.as_ref().map(|b| &b.src.pool) {
        Some(pool) => match pool.get_conn().await {
            Ok(mut conn) => {
                mysql_async::prelude::Queryable::query_first(&mut conn, "SELECT VERSION()").await.ok().flatten()
            }
            Err(_) => None,
        },
        None => None,
    };
    let fallback = if bench.is_some() { "MySQL/MariaDB" } else { "none (push ingest only)" };
    let md = markdown(&results, cores, source.as_deref().unwrap_or(fallback));
    let written = std::fs::create_dir_all(&args.out)
        .and_then(|()| {
            std::fs::write(args.out.join("results.json"), serde_json::to_vec_pretty(&results).unwrap_or_default())
        })
        .and_then(|()| std::fs::write(args.out.join("results.md"), &md));
    if let Err(e) = written {
        eprintln!("dts-bench: cannot write results to {}: {e}", args.out.display());
        return std::process::ExitCode::from(2);
    }
    use std::io::Write;
    let _ = std::io::stdout().write_all(md.as_bytes());
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rate: f64, p99: f64) -> Result {
        Result {
            scenario: "cdc".into(),
            variant: "v".into(),
            rows: 10,
            rows_per_sec: rate,
            lag_ms: Some(LagStats { p50: 1.0, p99, max: p99 }),
            baseline_rows_per_sec: Some(rate / 4.0),
            peak_rss_mib: Some(rate / 10.0),
            ..Default::default()
        }
    }

    #[test]
    fn repeated_runs_fold_into_median_and_range() {
        let r = combine(vec![run(300.0, 9.0), run(100.0, 1.0), run(200.0, 5.0)]);
        assert_eq!(r.rows_per_sec, 200.0);
        assert_eq!(r.range, Some((100.0, 300.0)));
        assert_eq!(r.runs, Some(3));
        assert_eq!(r.baseline_rows_per_sec, Some(50.0));
        assert_eq!(r.peak_rss_mib, Some(30.0), "the highest peak");
        assert_eq!(r.lag_ms.map(|l| l.p99), Some(5.0), "the median-p99 run's lag");
        let md = markdown(&[r, combine(vec![run(7.0, 1.0)])], 2, "MariaDB");
        assert!(md.contains("| 200 | 100–300 (3 runs) | 50 (4.0x) |"), "{md}");
        assert!(md.contains("| 7 | 1 run |"), "{md}");
    }
}
