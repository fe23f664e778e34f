//! The push-ingest scenario: a real `dts standalone` process (the release
//! binary next to this one) serves the three protocols; this process is
//! the load generator. Each protocol runs flat out, then paced at half the
//! rate it reached, with request latencies; the server's peak RSS is read
//! from its /proc entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{LagStats, Result};

/// Concurrent clients of the ingest scenario unless `--clients` says otherwise.
pub const CLIENTS: usize = 8;
const SECONDS: u64 = 10;

/// One protocol's request, built once and sent again and again.
#[derive(Clone)]
struct Load {
    name: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    /// Shared by every request: sending it copies nothing.
    body: actix_web::web::Bytes,
    records: u64,
    /// Whether an answer means every record was stored.
    ok: fn(u16, &[u8]) -> bool,
}

async fn run(
    http: &reqwest::Client,
    load: &Load,
    clients: usize,
    per_client_interval: Option<Duration>,
    seconds: u64,
) -> (u64, f64, Vec<f64>) {
    let stored = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, load, stored) = (http.clone(), load.clone(), Arc::clone(&stored));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut tick = per_client_interval.map(tokio::time::interval);
            while Instant::now() < end {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let mut req = http.post(&load.url).body(load.body.clone());
                for (k, v) in &load.headers {
                    req = req.header(*k, v);
                }
                let t = Instant::now();
                let Ok(resp) = req.send().await else { continue };
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap_or_default();
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                if (load.ok)(status, &body) {
                    stored.fetch_add(load.records, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for c in tasks {
        latencies.extend(c.await.unwrap_or_default());
    }
    latencies.sort_by(f64::total_cmp);
    (stored.load(Ordering::Relaxed), started.elapsed().as_secs_f64(), latencies)
}

fn stats(latencies: &[f64]) -> LagStats {
    let at = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(f64::NAN);
    LagStats { p50: at(0.5), p99: at(0.99), max: latencies.last().copied().unwrap_or(f64::NAN) }
}

pub async fn ingest(kafka: &str, clients: usize) -> Vec<Result> {
    let server = match crate::server::Dts::start_fresh(&[]).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ingest scenario skipped: {e}");
            return Vec::new();
        }
    };
    let http = server.http.clone();
    let base = server.base.clone();
    let topic = |p: &str| format!("bench_ingest_{p}_{:08x}", rand::random::<u32>());
    let post = reqwest::Method::POST;
    let stream = |spec: serde_json::Value| {
        let body = json!({ "stream": spec });
        let server = &server;
        let post = post.clone();
        async move { server.call(post, "/v1/ingest/streams", Some(&body)).await }
    };
    let key = |spec: serde_json::Value| {
        let body = json!({ "key": spec });
        let server = &server;
        let post = post.clone();
        async move { server.call(post, "/v1/ingest/keys", Some(&body)).await }
    };

    stream(json!({"protocol": "inlong", "group_id": "bench", "stream_id": "s", "kafka": {"addr": kafka, "topic": topic("inlong")}})).await;
    let dis = stream(json!({"protocol": "dis", "project_id": "bench", "stream_name": "s", "kafka": {"addr": kafka, "topic": topic("dis")}})).await;
    let tp =
        stream(json!({"protocol": "timeplus", "stream": "s", "kafka": {"addr": kafka, "topic": topic("tp")}})).await;
    let token = key(json!({"protocol": "dis", "type": "token", "streams": [dis["id"]]})).await["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api_key = key(json!({"protocol": "timeplus", "streams": [tp["id"]]})).await["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let record = "x".repeat(200);
    let inlong_body: String = {
        let lines = vec![record.as_str(); 100].join("\n");
        serde_urlencoded::to_string([("groupId", "bench"), ("streamId", "s"), ("cnt", "100"), ("body", lines.as_str())])
            .unwrap_or_default()
    };
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(&record);
    let dis_body = json!({"stream_name": "s", "records": vec![json!({"data": data}); 500]}).to_string();
    let lines_body = vec![record.as_str(); 1000].join("\n");
    let loads = [
        Load {
            name: "InLong, cnt=100 x 200 B",
            url: format!("{base}/dataproxy/message"),
            headers: vec![("Content-Type", "application/x-www-form-urlencoded".into())],
            body: inlong_body.into_bytes().into(),
            records: 100,
            ok: |s, b| s == 200 && serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| v["code"] == 0),
        },
        Load {
            name: "DIS, 500 x 200 B records",
            url: format!("{base}/v2/bench/records"),
            headers: vec![("Content-Type", "application/json".into()), ("X-Auth-Token", token)],
            body: dis_body.into_bytes().into(),
            records: 500,
            ok: |s, b| {
                s == 200 && serde_json::from_slice::<serde_json::Value>(b).is_ok_and(|v| v["failed_record_count"] == 0)
            },
        },
        Load {
            name: "Timeplus lines, 1000 x 200 B",
            url: format!("{base}/api/v1beta2/streams/s/ingest?format=lines"),
            headers: vec![("Content-Type", "text/plain".into()), ("X-Api-Key", api_key)],
            body: lines_body.into_bytes().into(),
            records: 1000,
            ok: |s, _| s == 200,
        },
    ];
    let mut out = Vec::new();
    for load in &loads {
        // Warm up: topics created, producers connected.
        let _ = run(&http, load, clients, Some(Duration::from_millis(200)), 2).await;
        let (stored, seconds, latencies) = run(&http, load, clients, None, SECONDS).await;
        let rate = stored as f64 / seconds;
        out.push(Result {
            scenario: "ingest".into(),
            variant: format!("{}, {clients} clients flat out (request ms in the lag column)", load.name),
            rows: stored,
            seconds,
            rows_per_sec: rate,
            lag_ms: Some(stats(&latencies)),
            peak_rss_mib: server.peak_rss_mib(),
            ..Default::default()
        });
        // Half that rate, paced evenly over the clients.
        let requests_per_sec = (rate / 2.0 / load.records as f64).max(1.0);
        let interval = Duration::from_secs_f64(clients as f64 / requests_per_sec);
        let (stored, seconds, latencies) = run(&http, load, clients, Some(interval), SECONDS).await;
        out.push(Result {
            scenario: "ingest".into(),
            variant: format!("{}, paced at half that rate", load.name),
            rows: stored,
            seconds,
            rows_per_sec: stored as f64 / seconds,
            lag_ms: Some(stats(&latencies)),
            peak_rss_mib: server.peak_rss_mib(),
            ..Default::default()
        });
    }
    out
}
