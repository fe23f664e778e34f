//! `dts-bench`: runs benchmark scenarios against the real MariaDB and
//! Kafka-protocol broker named by `DTS_TEST_MYSQL_URL` and
//! `DTS_TEST_KAFKA_ADDR` (`scripts/bench.sh` starts them), and writes
//! `results.json` and `results.md`. The work is done by a real
//! `dts standalone` process (see [`server`]), driven over its API; this
//! process writes to the source, generates load and reads results.
//!
//! Scenarios:
//! - `cdc`: rows/s catching up on a binlog backlog (the task is stopped,
//!   N rows are written, the task is started; timed from the start request
//!   to the producer timestamp of the backlog's last message). Measuring on
//!   a backlog shows the pipeline's own speed: a live run is capped by how
//!   fast the source ingests.
//! - `snapshot`: rows/s copying an N-row table (`incr: false`), from the
//!   submit to the copy's last message, the lag of rows written meanwhile,
//!   and dts's peak RSS during the copy.
//! - `lag`: a steady write rate (5k, 20k and 100k rows/s); each row carries the
//!   time it was written, and lag is its message's producer timestamp
//!   minus that (p50, p99, max). Kafka's acknowledgement adds the
//!   producer's linger (5 ms) and one round trip on top.
//! - `ceiling`: the binlog read and decoded with nothing produced, and the
//!   broker's own produce rate with no source: which side limits us.
//! - `many`: 16 tasks on one worker, each on its own table: aggregate
//!   rows/s catching up on a backlog spread over them, and dts's peak RSS.
//! - `memory`: dts's peak RSS through a CDC backlog and through one
//!   1M-row transaction.
//! - `api`: `GET /v1/task/list` (50 per page) over 10,000 stored tasks from
//!   concurrent clients in this process for 10 s: requests/s and p99
//!   latency; and the time from `POST /v1/dispatch/submit` to the task
//!   running.
//! - `control`: a `dts control` on a MariaDB store under 100 simulated
//!   workers of 16 tasks each (see [`control`]).
//!
//! `many`, `snapshot` and `memory` each start a fresh `dts`, so the peak
//! RSS they report is their own.

mod control;
mod ingest;
mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dts_e2e::SourceDb;
use dts_store::{SecretCipher, Store};
use dts_worker::WorkerConfig;
use serde::Serialize;
use serde_json::{json, Value};
use server::Dts;

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
        scenarios: ["cdc", "many", "snapshot", "lag", "ceiling", "api", "control", "memory", "ingest"]
            .map(String::from)
            .to_vec(),
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
                    "unknown flag {other} (known: --scenarios cdc,many,snapshot,lag,ceiling,api,control,memory,ingest --rows N --runs N --clients N --snapshot-readers N --snapshot-chunk-rows N --out DIR)"
                ))
            }
        }
    }
    Ok(a)
}

/// A `dts standalone` running the tasks, the source database and the broker.
struct Bench {
    dts: Dts,
    /// The flags `dts` is started with.
    flags: Vec<String>,
    src: SourceDb,
    kafka: String,
}

impl Bench {
    async fn start(kafka: String, args: &Args) -> std::result::Result<Self, String> {
        let url = std::env::var("DTS_TEST_MYSQL_URL").map_err(|_| "DTS_TEST_MYSQL_URL is not set".to_owned())?;
        let flags = [
            ("--snapshot-readers", args.snapshot_readers),
            ("--snapshot-chunk-rows", args.snapshot_chunk_rows),
            ("--server-id-base", dts_e2e::random_server_id() as usize),
        ];
        let flags: Vec<String> = flags.iter().flat_map(|(f, v)| [f.to_string(), v.to_string()]).collect();
        let dts = Dts::start_fresh(&flags).await?;
        Ok(Self { dts, flags, src: SourceDb::create_on(&url).await, kafka })
    }

    /// Replaces `dts` with a new process on a fresh store, for scenarios
    /// that report its peak RSS: a process keeps memory an earlier
    /// scenario made it grow to (the allocator does not hand it back),
    /// which would be counted against the next one.
    async fn fresh_dts(&mut self) -> std::result::Result<(), String> {
        self.dts = Dts::start_fresh(&self.flags).await?;
        Ok(())
    }

    /// A task body reading `table` of the source database into `topic`.
    fn task(&self, table: &str, topic: &str, partition_mode: &str, incr: bool) -> Value {
        json!({"task": {
            "source": {"host": self.src.host, "port": self.src.port, "username": self.src.user, "password": self.src.password},
            "kafka": {"addr": self.kafka, "topic": topic, "partition_mode": partition_mode},
            "filters": [{"dbname": self.src.db, "match": table}],
            "incr": incr
        }})
    }

    /// The producer timestamp of the last message in `topics`, as an instant
    /// of this process's clock (the two processes share the machine's).
    async fn last_message(&self, topics: &[String]) -> std::time::SystemTime {
        let (addr, topics) = (self.kafka.clone(), topics.to_vec());
        let ms = tokio::task::spawn_blocking(move || dts_e2e::last_timestamp_ms(&addr, &topics))
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no message was produced"));
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }
}

/// Seconds from `from` to `to` (zero if the clock went backwards).
fn seconds_between(from: std::time::SystemTime, to: std::time::SystemTime) -> f64 {
    to.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
}

/// Where the source's binlog ends now: the file and offset the baseline
/// starts reading from.
async fn binlog_end(conn: &mut mysql_async::Conn) -> (String, u64) {
    let row: mysql_async::Row = mysql_async::prelude::Queryable::query_first(conn, "SHOW MASTER STATUS")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("SHOW MASTER STATUS: the source has no binlog"));
    let file: Option<String> = row.get(0);
    let pos: Option<u64> = row.get(1);
    (file.unwrap_or_default(), pos.unwrap_or_default())
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
    let topic = dts_e2e::unique_topic(&table);
    let id = bench.dts.submit(&bench.task(&table, &topic, partition_mode, true)).await;
    bench.dts.wait(id, "Running", |t| t.state == "Running" && !t.pos.is_empty()).await;
    bench.dts.stop_task(id).await;
    let v = if wide { wide_value() } else { "small-row".into() };
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    let from = binlog_end(&mut conn).await;
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
    let started = std::time::SystemTime::now();
    bench.dts.start_task(id).await;
    bench.dts.wait(id, "catching up", |t| t.pos.ends_with(&last)).await;
    let seconds = seconds_between(started, bench.last_message(std::slice::from_ref(&topic)).await);
    // Tasks left streaming would read every later scenario's binlog too.
    bench.dts.stop_task(id).await;
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
        result.baseline_rows_per_sec = baseline(bench, &table, from, rows).await;
    }
    result
}

/// `tasks` tasks on the one worker, each on its own table of one source:
/// a backlog spread evenly over the tables, timed until every task has
/// caught up. Every task reads the whole binlog and decodes only its own
/// table's rows.
async fn many(bench: &Bench, rows: u64, tasks: usize) -> Result {
    let prefix = dts_e2e::unique_topic("many");
    let tables: Vec<String> = (0..tasks).map(|i| format!("{prefix}_{i}")).collect();
    let topics: Vec<String> = tables.iter().map(|t| dts_e2e::unique_topic(t)).collect();
    let mut ids = Vec::new();
    for (table, topic) in tables.iter().zip(&topics) {
        bench.src.exec(&[&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, n INT, v VARCHAR(20))")]).await;
        ids.push(bench.dts.submit(&bench.task(table, topic, "primary_key", true)).await);
    }
    for &id in &ids {
        bench.dts.wait(id, "Running", |t| t.state == "Running" && !t.pos.is_empty()).await;
    }
    for &id in &ids {
        bench.dts.stop_task(id).await;
    }
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    for (n, start) in (0..rows).step_by(1000).enumerate() {
        let end = (start + 1000).min(rows);
        let table = &tables[n % tasks];
        let sql = format!("INSERT INTO {table} SELECT seq, seq % 1000, 'small-row' FROM seq_{}_to_{end}", start + 1);
        mysql_async::prelude::Queryable::query_drop(&mut conn, sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let last = last_gtid(&mut conn).await;
    bench.dts.reset_peak_rss();
    let started = std::time::SystemTime::now();
    for &id in &ids {
        bench.dts.start_task(id).await;
    }
    for &id in &ids {
        bench.dts.wait(id, "catching up", |t| t.pos.ends_with(&last)).await;
    }
    let seconds = seconds_between(started, bench.last_message(&topics).await);
    let peak = bench.dts.peak_rss_mib();
    for &id in &ids {
        bench.dts.stop_task(id).await;
    }
    Result {
        scenario: "many".into(),
        variant: format!("{tasks} tasks, one table each, small rows (aggregate rows/s)"),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        peak_rss_mib: peak,
        ..Default::default()
    }
}

/// The Python baseline over the same binlog range (`DTS_BENCH_BASELINE`,
/// set by scripts/bench.sh); `None` when it is not installed.
async fn baseline(bench: &Bench, table: &str, (file, pos): (String, u64), rows: u64) -> Option<f64> {
    let command = std::env::var("DTS_BENCH_BASELINE").ok()?;
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
    let r: Value = serde_json::from_slice(&out.stdout).ok()?;
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
    let mut body = bench.task("/^snap(lag)?$/", &dts_e2e::unique_topic("snap"), "primary_key", false);
    body["task"]["kafka"]["topic_mode"] = json!(1);
    let db = dts_pipeline::route::escape_name(&bench.src.db);
    let (copy_topic, lag_topic) = (format!("{db}_snap"), format!("{db}_snaplag"));
    bench.dts.reset_peak_rss();
    let started = std::time::SystemTime::now();
    let id = bench.dts.submit(&body).await;
    bench.dts.wait(id, "Snapshotting", |t| t.state == "Snapshotting").await;
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
    bench.dts.wait(id, "Running", |t| t.state == "Running").await;
    let peak = bench.dts.peak_rss_mib();
    let _ = stop.send(true);
    bench.dts.stop_task(id).await;
    let written = writer.await.unwrap_or(0);
    let seconds = seconds_between(started, bench.last_message(&[copy_topic]).await);
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
        variant: format!("{rows}-row table, small rows; lag of 1,000 rows/s written meanwhile"),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        lag_ms: Some(LagStats { p50: at(0.5), p99: at(0.99), max: lags.last().copied().unwrap_or(f64::NAN) }),
        peak_rss_mib: peak,
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
    let id = bench.dts.submit(&bench.task(&table, &topic, "primary_key", true)).await;
    bench.dts.wait(id, "Running", |t| t.state == "Running" && !t.pos.is_empty()).await;
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    // One row first, delivered before the clock starts: creating the topic
    // is a one-time cost, not lag (on a broker holding many topics it takes
    // hundreds of milliseconds).
    mysql_async::prelude::Queryable::query_drop(&mut conn, format!("INSERT INTO {table} VALUES (0, 0)"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let warm = last_gtid(&mut conn).await;
    bench.dts.wait(id, "the first row delivered", |t| t.pos.ends_with(&warm)).await;
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
    bench.dts.stop_task(id).await;
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

/// The REST API of its own `dts standalone`, whose store holds 10,000
/// tasks, under load from this process.
async fn api(bench: &Bench) -> Vec<Result> {
    const TASKS: usize = 10_000;
    const CLIENTS: usize = 16;
    const SUBMITS: usize = 20;
    let at = |v: &[f64], q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key = SecretCipher::generate_key_base64();
    {
        let cipher = SecretCipher::from_base64(&key).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&server::store_url(dir.path()), cipher).await.unwrap_or_else(|e| panic!("{e}"));
        let body = bench.task("api_t", "api_topic", "table", true).to_string();
        let spec = dts_core::spec::parse_submit_body(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..TASKS {
            // Unassigned: listed, never run.
            store.create_task(&spec, None).await.unwrap_or_else(|e| panic!("{e}"));
        }
        store.close().await;
    }
    let flags = ["--server-id-base".to_owned(), dts_e2e::random_server_id().to_string()];
    let dts = Dts::start(&flags, dir, &key).await.unwrap_or_else(|e| panic!("{e}"));
    let addr = dts.base.clone();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, addr) = (http.clone(), addr.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut page = c as u64;
            while Instant::now() < deadline {
                page = (page * 7 + 13) % (TASKS as u64 / 50) + 1;
                let t = Instant::now();
                let r = http
                    .get(format!("{addr}/v1/task/list?per_page=50&page={page}"))
                    .basic_auth(server::USER, Some(server::PASSWORD))
                    .send()
                    .await;
                // The whole body is read: a page is only served once it has
                // arrived, and an unread body would cost the connection.
                let served = match r {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if served {
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
    let list = Result {
        scenario: "api".into(),
        variant: format!(
            "GET /v1/task/list, 50 per page, {TASKS} tasks, {CLIENTS} clients (latency in the lag column)"
        ),
        rows: latencies.len() as u64,
        seconds: 10.0,
        rows_per_sec: latencies.len() as f64 / 10.0,
        lag_ms: Some(LagStats {
            p50: at(&latencies, 0.5),
            p99: at(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or(f64::NAN),
        }),
        ..Default::default()
    };
    // Submit to Running, through the API and the worker.
    bench.src.exec(&["CREATE TABLE api_t (id INT PRIMARY KEY)"]).await;
    let body = bench.task("api_t", &dts_e2e::unique_topic("api"), "table", true);
    let mut times = Vec::new();
    for _ in 0..SUBMITS {
        let t = Instant::now();
        let id = dts.submit(&body).await;
        dts.wait_every(id, "Running", Duration::from_millis(1), |task| task.state == "Running").await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let submit = Result {
        scenario: "api".into(),
        variant: format!("submit to Running, {SUBMITS} tasks (ms in the lag column)"),
        rows: SUBMITS as u64,
        seconds: times.iter().sum::<f64>() / 1000.0,
        rows_per_sec: f64::NAN,
        lag_ms: Some(LagStats { p50: at(&times, 0.5), p99: at(&times, 0.99), max: times[SUBMITS - 1] }),
        ..Default::default()
    };
    vec![list, submit]
}

async fn memory(bench: &Bench, rows: u64) -> Vec<Result> {
    bench.dts.reset_peak_rss();
    let mut cdc_run = cdc(bench, rows, Backlog::Small, "table").await;
    cdc_run.scenario = "memory".into();
    cdc_run.variant = format!("peak RSS during a {rows}-row CDC backlog");
    cdc_run.peak_rss_mib = bench.dts.peak_rss_mib();
    // One transaction of `rows` rows.
    bench.src.exec(&["CREATE TABLE bigtx (id BIGINT PRIMARY KEY, n INT, v VARCHAR(20))"]).await;
    let id = bench.dts.submit(&bench.task("bigtx", &dts_e2e::unique_topic("bigtx"), "primary_key", true)).await;
    bench.dts.wait(id, "Running", |t| t.state == "Running" && !t.pos.is_empty()).await;
    bench.dts.reset_peak_rss();
    let started = Instant::now();
    bench
        .src
        .exec(&[&format!("INSERT INTO bigtx SELECT seq, seq % 1000, 'one-transaction' FROM seq_1_to_{rows}")])
        .await;
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    let gtid = last_gtid(&mut conn).await;
    bench.dts.wait(id, "the big transaction delivered", |t| t.pos.ends_with(&gtid)).await;
    let seconds = started.elapsed().as_secs_f64();
    let big = Result {
        scenario: "memory".into(),
        variant: format!("peak RSS during one {rows}-row transaction"),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
        peak_rss_mib: bench.dts.peak_rss_mib(),
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
        // Timings that are not a rate (submit to Running) leave it blank.
        let rate = if r.rows_per_sec.is_nan() { String::new() } else { format!("{:.0}", r.rows_per_sec) };
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {rate} | {range} | {base} | {lag} | {rss} |\n",
            r.scenario, r.variant, r.rows, r.seconds
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
    // The ingest scenario starts a `dts` of its own: the shared one (and
    // its store polling) would only take CPU from it.
    let mut bench = if args.scenarios.iter().all(|s| s == "ingest") {
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
        let Some(bench) = bench.as_mut() else { continue };
        if ["many", "snapshot", "memory"].contains(&scenario.as_str()) {
            if let Err(e) = bench.fresh_dts().await {
                eprintln!("dts-bench: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
        let bench = &*bench;
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
            "control" => {
                for r in control::control(bench).await {
                    eprintln!("{}: {} -> {:?}", r.scenario, r.variant, r.lag_ms);
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
                    "dts-bench: unknown scenario {other} (known: cdc, many, snapshot, lag, ceiling, api, control, memory, ingest)"
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
