//! `control`: a real `dts control` on a MariaDB store, with 100 simulated
//! workers of 16 tasks each. Each worker does what an idle real one does:
//! a heartbeat every 500 ms (the worker's poll interval) carrying its tasks'
//! figures, and a progress report per task every 5 s (the worker's
//! heartbeat interval for unchanged tasks). Reported: heartbeat latency,
//! the store statements each request costs (MariaDB's `Questions` counter
//! over the window, divided by the requests), and the control plane's CPU.
//! Then the same workers heartbeat back to back, for the most heartbeats a
//! second this control plane and store take. The CPU of the control plane,
//! of MariaDB and of this process (the workers) says which one is the
//! bottleneck: on a 2-core machine, all three share the cores.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dts_core::spec::Secret;
use dts_core::wire::{Heartbeat, TaskFigures};
use dts_core::TaskState;
use dts_store::tasks::Progress;
use dts_store::{SecretCipher, Store};
use dts_worker::client::{ControlClient, ControlTls};
use mysql_async::prelude::Queryable;

use crate::server::Dts;
use crate::{Bench, LagStats, Result};

const WORKERS: usize = 100;
const TASKS_PER_WORKER: usize = 16;
const BEAT_EVERY: Duration = Duration::from_millis(500);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(10);
const TOKEN: &str = "bench-cluster-token-0123456789abcdef";

/// What the simulated workers count while the window is open.
#[derive(Default)]
struct Tally {
    measuring: AtomicBool,
    /// Back to back instead of every [`BEAT_EVERY`].
    flat_out: AtomicBool,
    stop: AtomicBool,
    heartbeats: AtomicU64,
    progress: AtomicU64,
    errors: AtomicU64,
    /// Tasks each worker held at its last heartbeat, summed.
    held: AtomicU64,
    latencies: std::sync::Mutex<Vec<f64>>,
}

pub async fn control(bench: &Bench) -> Vec<Result> {
    let src = &bench.src;
    let store_url = format!("mysql://{}:{}@{}:{}/{}", src.user, src.password, src.host, src.port, src.db);
    let key = SecretCipher::generate_key_base64();
    {
        let cipher = SecretCipher::from_base64(&key).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&store_url, cipher).await.unwrap_or_else(|e| panic!("{e}"));
        let body = bench.task("control_t", "control_topic", "table", true).to_string();
        let spec = dts_core::spec::parse_submit_body(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..WORKERS * TASKS_PER_WORKER {
            // Unplaced: the scheduler spreads them over the workers.
            store.create_task(&spec, None).await.unwrap_or_else(|e| panic!("{e}"));
        }
        store.close().await;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dts = Dts::spawn("control", &store_url, &[], dir, &key, &[("DTS_CLUSTER_TOKEN", TOKEN)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..WORKERS).map(|n| tokio::spawn(worker(dts.base.clone(), n, Arc::clone(&tally)))).collect();

    // Every task placed and known to its worker.
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.held.load(Ordering::Relaxed) < (WORKERS * TASKS_PER_WORKER) as u64 {
        assert!(Instant::now() < deadline, "the scheduler did not place every task within 2 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(PROGRESS_EVERY).await; // one full progress round before measuring

    let paced = window(bench, &dts, &tally, false).await;
    let flat_out = window(bench, &dts, &tally, true).await;
    tally.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    vec![paced, flat_out]
}

/// Counts one window of [`WINDOW`]; `flat_out`: heartbeats back to back.
async fn window(bench: &Bench, dts: &Dts, tally: &Tally, flat_out: bool) -> Result {
    let mut conn = bench.src.pool.get_conn().await.unwrap_or_else(|e| panic!("{e}"));
    tally.flat_out.store(flat_out, Ordering::Relaxed);
    for counter in [&tally.heartbeats, &tally.progress, &tally.errors] {
        counter.store(0, Ordering::Relaxed);
    }
    tally.latencies.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let store_pid = mariadb_pid();
    let store_cpu = || store_pid.and_then(crate::server::cpu_time);
    let own_cpu = || crate::server::cpu_time(std::process::id());
    let (q0, cpu0, db0, me0, t0) = (questions(&mut conn).await, dts.cpu_time(), store_cpu(), own_cpu(), Instant::now());
    tally.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(WINDOW).await;
    tally.measuring.store(false, Ordering::Relaxed);
    let (q1, cpu1, db1, me1, seconds) =
        (questions(&mut conn).await, dts.cpu_time(), store_cpu(), own_cpu(), t0.elapsed().as_secs_f64());
    // Less the two reads of the counter itself.
    let statements = q1.saturating_sub(q0).saturating_sub(2);
    let beats = tally.heartbeats.load(Ordering::Relaxed);
    let progress = tally.progress.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    let percent = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.0}%", b.saturating_sub(a).as_secs_f64() / seconds * 100.0),
        _ => "unknown".to_owned(),
    };
    let (cpu, db_cpu, own) = (percent(cpu0, cpu1), percent(db0, db1), percent(me0, me1));
    let mut latencies = std::mem::take(&mut *tally.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).copied();
    let requests = beats + progress;
    let per_request = if requests == 0 { f64::NAN } else { statements as f64 / requests as f64 };
    let pace = if flat_out { "back to back".to_owned() } else { format!("every {} ms", BEAT_EVERY.as_millis()) };
    Result {
        scenario: "control".into(),
        variant: format!(
            "{WORKERS} workers x {TASKS_PER_WORKER} tasks, heartbeats {pace}, progress every {} s per task: \
             {:.0} heartbeats/s + {:.0} progress/s, {per_request:.1} store statements per request, \
             CPU: control {cpu}, MariaDB {db_cpu}, the simulated workers {own}; {errors} errors (heartbeat latency in the lag column)",
            PROGRESS_EVERY.as_secs(),
            beats as f64 / seconds,
            progress as f64 / seconds,
        ),
        rows: beats,
        seconds,
        rows_per_sec: beats as f64 / seconds,
        lag_ms: at(0.5).map(|p50| LagStats {
            p50,
            p99: at(0.99).unwrap_or(p50),
            max: latencies.last().copied().unwrap_or(p50),
        }),
        peak_rss_mib: dts.peak_rss_mib(),
        ..Default::default()
    }
}

/// The bench MariaDB's process id, from the pid file next to its
/// configuration (`scripts/services.sh` writes both).
fn mariadb_pid() -> Option<u32> {
    let cnf = std::path::PathBuf::from(std::env::var_os("DTS_TEST_MYSQL_CNF")?);
    std::fs::read_to_string(cnf.with_file_name("mariadb.pid")).ok()?.trim().parse().ok()
}

/// MariaDB's count of statements received, from every client.
async fn questions(conn: &mut mysql_async::Conn) -> u64 {
    let sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'QUESTIONS'";
    conn.query_first::<u64, _>(sql).await.ok().flatten().unwrap_or(0)
}

/// One simulated worker: heartbeats and idle progress reports until told
/// to stop.
async fn worker(base: String, n: usize, tally: Arc<Tally>) {
    let client = ControlClient::new(vec![base], Secret::new(TOKEN), Duration::from_secs(10), &ControlTls::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let client = Arc::new(client);
    let mut beat = Heartbeat {
        worker_id: format!("bench-worker-{n:03}"),
        addr: format!("127.0.0.1:{}", 20_000 + n),
        capacity: TASKS_PER_WORKER as i64,
        version: env!("CARGO_PKG_VERSION").into(),
        figures: Vec::new(),
    };
    // Spread the workers over the interval, as real ones started apart are.
    tokio::time::sleep(BEAT_EVERY * n as u32 / WORKERS as u32).await;
    let mut next_progress = Instant::now() + PROGRESS_EVERY * n as u32 / WORKERS as u32;
    let mut held: u64 = 0;
    while !tally.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match client.heartbeat(&beat).await {
            Ok((reply, _secrets)) => {
                if tally.measuring.load(Ordering::Relaxed) {
                    tally.heartbeats.fetch_add(1, Ordering::Relaxed);
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    tally.latencies.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                }
                let now = reply.tasks.len() as u64;
                if now != held {
                    tally.held.fetch_add(now, Ordering::Relaxed);
                    tally.held.fetch_sub(held, Ordering::Relaxed);
                    held = now;
                }
                beat.figures = reply
                    .tasks
                    .iter()
                    .map(|t| TaskFigures { id: t.id, state: "Running".into(), ..Default::default() })
                    .collect();
                if Instant::now() >= next_progress {
                    next_progress += PROGRESS_EVERY;
                    progress_round(&client, &reply.tasks, &tally).await;
                }
            }
            Err(_) if tally.measuring.load(Ordering::Relaxed) => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        if !tally.flat_out.load(Ordering::Relaxed) {
            tokio::time::sleep(BEAT_EVERY.saturating_sub(started.elapsed())).await;
        }
    }
}

/// One idle progress report per task: the position it already had.
async fn progress_round(client: &ControlClient, tasks: &[dts_core::wire::AssignedTask], tally: &Tally) {
    for t in tasks {
        let p = Progress {
            state: TaskState::Running,
            message: String::new(),
            pos: "bench".into(),
            checkpoint: t.checkpoint.clone(),
            transaction_time: t.transaction_time,
        };
        let sent = client.progress(t.id, t.epoch, &p).await;
        if tally.measuring.load(Ordering::Relaxed) {
            let counter = if sent.is_ok() { &tally.progress } else { &tally.errors };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}
