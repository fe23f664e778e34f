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
//!   task entering `Snapshotting` to it entering `Running`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dts_core::spec::{parse_submit_body, TaskSpec};
use dts_core::{DesiredState, TaskState};
use dts_e2e::SourceDb;
use dts_store::tasks::Assignment;
use dts_store::{SecretCipher, Store};
use dts_worker::{Worker, WorkerConfig};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Result {
    scenario: String,
    variant: String,
    rows: u64,
    seconds: f64,
    rows_per_sec: f64,
}

#[derive(Debug)]
struct Args {
    scenarios: Vec<String>,
    rows: u64,
    out: PathBuf,
}

fn args() -> std::result::Result<Args, String> {
    let mut a = Args { scenarios: vec!["cdc".into(), "snapshot".into()], rows: 1_000_000, out: "bench-results".into() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--scenarios" => a.scenarios = value.split(',').map(str::to_owned).collect(),
            "--rows" => a.rows = value.parse().map_err(|_| format!("--rows: not a number: {value}"))?,
            "--out" => a.out = value.into(),
            other => return Err(format!("unknown flag {other} (known: --scenarios cdc,snapshot --rows N --out DIR)")),
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
    async fn start() -> std::result::Result<Self, String> {
        let url = std::env::var("DTS_TEST_MYSQL_URL").map_err(|_| "DTS_TEST_MYSQL_URL is not set".to_owned())?;
        let kafka = std::env::var("DTS_TEST_KAFKA_ADDR").map_err(|_| "DTS_TEST_KAFKA_ADDR is not set".to_owned())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let key = SecretCipher::from_base64(&SecretCipher::generate_key_base64()).map_err(|e| e.to_string())?;
        let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display()), key)
            .await
            .map_err(|e| e.to_string())?;
        let mut cfg = WorkerConfig::new("bench");
        cfg.poll_interval = Duration::from_millis(50);
        cfg.checkpoint_interval = Duration::from_millis(50);
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
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn wide_value() -> String {
    "x".repeat(1000)
}

async fn cdc(bench: &Bench, rows: u64, wide: bool, partition_mode: &str) -> Result {
    let table = format!("cdc_{}_{}", if wide { "wide" } else { "small" }, partition_mode);
    let column = if wide { "v VARCHAR(1100)" } else { "v VARCHAR(20)" };
    bench.src.exec(&[&format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, n INT, {column})")]).await;
    let spec = bench.spec(&table, &dts_e2e::unique_topic(&table), partition_mode, true);
    let id = bench.submit(&spec).await;
    bench.wait(id, "Running", |t| t.state == TaskState::Running && !t.pos.is_empty()).await;
    bench.store.set_desired_state(id, DesiredState::Stopped).await.unwrap_or_else(|e| panic!("{e}"));
    bench.wait(id, "Stopped", |t| t.state == TaskState::Stopped).await;
    // The backlog: multi-row transactions of 1,000 rows.
    let v = if wide { wide_value() } else { "small-row".into() };
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    for start in (0..rows).step_by(1000) {
        let end = (start + 1000).min(rows);
        let sql = format!("INSERT INTO {table} SELECT seq, seq % 1000, '{v}' FROM seq_{}_to_{}", start + 1, end);
        mysql_async::prelude::Queryable::query_drop(&mut conn, sql).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let last_gtid: Option<String> =
        mysql_async::prelude::Queryable::query_first(&mut conn, "SELECT @@GLOBAL.gtid_binlog_pos")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let last_gtid = last_gtid.unwrap_or_default();
    bench.store.set_desired_state(id, DesiredState::Running).await.unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let done = bench.wait(id, "catching up", |t| t.pos.ends_with(&last_gtid)).await;
    let seconds = (done - started).as_secs_f64();
    let variant = format!("{} rows, partition_mode {partition_mode}", if wide { "~1 KB" } else { "small" });
    Result { scenario: "cdc".into(), variant, rows, seconds, rows_per_sec: rows as f64 / seconds }
}

async fn snapshot(bench: &Bench, rows: u64) -> Result {
    bench
        .src
        .exec(&[
            "CREATE TABLE snap (id BIGINT PRIMARY KEY, n INT, v VARCHAR(20))",
            &format!("INSERT INTO snap SELECT seq, seq % 1000, CONCAT('v', seq) FROM seq_1_to_{rows}"),
        ])
        .await;
    let spec = bench.spec("snap", &dts_e2e::unique_topic("snap"), "primary_key", false);
    let id = bench.submit(&spec).await;
    let started = bench.wait(id, "Snapshotting", |t| t.state == TaskState::Snapshotting).await;
    let done = bench.wait(id, "Running", |t| t.state == TaskState::Running).await;
    let seconds = (done - started).as_secs_f64();
    Result {
        scenario: "snapshot".into(),
        variant: format!("{rows}-row table, small rows"),
        rows,
        seconds,
        rows_per_sec: rows as f64 / seconds,
    }
}

fn markdown(results: &[Result], cores: usize) -> String {
    let mut md = String::from("| scenario | variant | rows | seconds | rows/s |\n|---|---|---:|---:|---:|\n");
    for r in results {
        md.push_str(&format!(
            "| {} | {} | {} | {:.2} | {:.0} |\n",
            r.scenario, r.variant, r.rows, r.seconds, r.rows_per_sec
        ));
    }
    md.push_str(&format!(
        "\nMachine: {cores} cores. Source: MariaDB; broker: tansu (Kafka protocol), both on loopback.\n"
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
    let bench = match Bench::start().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("dts-bench: {e} (run through scripts/bench.sh, which starts the servers)");
            return std::process::ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    for scenario in &args.scenarios {
        match scenario.as_str() {
            "cdc" => {
                for (wide, mode) in [(false, "table"), (false, "primary_key"), (true, "table"), (true, "primary_key")] {
                    let rows = if wide { args.rows / 4 } else { args.rows };
                    let r = cdc(&bench, rows, wide, mode).await;
                    eprintln!("{}: {} -> {:.0} rows/s", r.scenario, r.variant, r.rows_per_sec);
                    results.push(r);
                }
            }
            "snapshot" => {
                let r = snapshot(&bench, args.rows).await;
                eprintln!("{}: {} -> {:.0} rows/s", r.scenario, r.variant, r.rows_per_sec);
                results.push(r);
            }
            other => {
                eprintln!("dts-bench: unknown scenario {other} (known: cdc, snapshot)");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let md = markdown(&results, cores);
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
