//! The dashboard's own short memory: one sample per task every
//! [`SAMPLE_EVERY`] for the last [`KEEP`], in memory, so its charts work
//! without Prometheus. A restart starts a fresh hour.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use dts_metrics::task::now_ms;

use crate::AppState;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
pub const KEEP: Duration = Duration::from_secs(3600);
/// Messages kept per task for "recent errors".
const ERRORS_KEPT: usize = 20;

/// One task at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub lag_seconds: Option<f64>,
    /// Rows handed to Kafka so far (the counter; rates come from differences).
    pub rows: u64,
    pub bytes: u64,
    pub binlog_file: u64,
    pub binlog_pos: u64,
}

#[derive(Debug, Default)]
struct TaskHistory {
    samples: VecDeque<Sample>,
    /// (when first seen, state, message), newest last.
    errors: VecDeque<(i64, String, String)>,
}

/// Every task's recent samples.
#[derive(Debug, Default)]
pub struct History(Mutex<HashMap<i64, TaskHistory>>);

impl History {
    pub fn record(&self, id: i64, sample: Sample) {
        let Ok(mut all) = self.0.lock() else { return };
        let h = all.entry(id).or_default();
        let cutoff = sample.at_ms - KEEP.as_millis() as i64;
        while h.samples.front().is_some_and(|s| s.at_ms < cutoff) {
            h.samples.pop_front();
        }
        h.samples.push_back(sample);
    }

    /// Keeps `message` if it differs from the last one kept.
    pub fn note(&self, id: i64, at_ms: i64, state: &str, message: &str) {
        let Ok(mut all) = self.0.lock() else { return };
        let h = all.entry(id).or_default();
        if message.is_empty() || h.errors.back().is_some_and(|(_, s, m)| m == message && s == state) {
            return;
        }
        h.errors.push_back((at_ms, state.to_owned(), message.to_owned()));
        if h.errors.len() > ERRORS_KEPT {
            h.errors.pop_front();
        }
    }

    pub fn samples(&self, id: i64) -> Vec<Sample> {
        self.0.lock().ok().and_then(|all| all.get(&id).map(|h| h.samples.iter().copied().collect())).unwrap_or_default()
    }

    pub fn errors(&self, id: i64) -> Vec<(i64, String, String)> {
        self.0.lock().ok().and_then(|all| all.get(&id).map(|h| h.errors.iter().cloned().collect())).unwrap_or_default()
    }

    /// Rows per second over the last two samples.
    pub fn throughput(&self, id: i64) -> Option<f64> {
        let all = self.0.lock().ok()?;
        let s = &all.get(&id)?.samples;
        let (a, b) = (s.get(s.len().checked_sub(2)?)?, s.back()?);
        rate(a, b)
    }

    /// Forgets tasks not in `keep` (deleted).
    pub fn retain(&self, keep: impl Fn(i64) -> bool) {
        if let Ok(mut all) = self.0.lock() {
            all.retain(|id, _| keep(*id));
        }
    }
}

/// Rows per second between two samples; `None` across a counter reset.
pub fn rate(a: &Sample, b: &Sample) -> Option<f64> {
    let secs = (b.at_ms - a.at_ms) as f64 / 1000.0;
    (secs > 0.0 && b.rows >= a.rows).then(|| (b.rows - a.rows) as f64 / secs)
}

/// Samples every task until `shutdown` completes.
pub async fn sample(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sample_once(&state).await {
            tracing::debug!(error = %e, "dashboard sample skipped");
        }
    }
}

async fn sample_once(state: &AppState) -> Result<(), dts_store::StoreError> {
    let now = now_ms();
    let page = state.store.list_tasks(100_000, 0).await?;
    let ids: std::collections::HashSet<i64> = page.tasks.iter().map(|t| t.id).collect();
    state.history.retain(|id| ids.contains(&id));
    // Figures a control plane took from heartbeats: gone with the task, or
    // stale once no worker has reported them for a while (the task moved to
    // a worker that heartbeats to another control plane, or stopped running).
    let stale_after = state.cluster.as_ref().map_or(30_000, |c| c.lease_ms.saturating_mul(3).max(30_000));
    for (id, stats) in state.metrics.tasks.all() {
        let absorbed = stats.absorbed_ms();
        if !ids.contains(&id) || (absorbed > 0 && now - absorbed > stale_after) {
            state.metrics.tasks.remove(id);
        }
    }
    for t in &page.tasks {
        state.history.note(t.id, now, &t.state, &t.message);
        if let Some(stats) = state.metrics.tasks.get(t.id) {
            let (binlog_file, binlog_pos) = stats.binlog();
            state.history.record(
                t.id,
                Sample {
                    at_ms: now,
                    lag_seconds: stats.lag_seconds(now),
                    rows: stats.rows_produced(),
                    bytes: stats.bytes_produced(),
                    binlog_file,
                    binlog_pos,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, rows: u64) -> Sample {
        Sample { at_ms: ms, lag_seconds: Some(0.5), rows, bytes: rows * 10, binlog_file: 1, binlog_pos: rows }
    }

    #[test]
    fn keeps_an_hour_and_computes_rates() {
        let h = History::default();
        for i in 0..1000 {
            h.record(1, at(i * 5000, i as u64 * 100));
        }
        let s = h.samples(1);
        assert_eq!(s.len(), 721, "an hour of 5 s samples, both ends included");
        assert_eq!(h.throughput(1), Some(20.0));
        assert_eq!(rate(&at(0, 50), &at(1000, 10)), None, "a reset is no rate");
        h.retain(|id| id != 1);
        assert!(h.samples(1).is_empty());
    }

    #[test]
    fn keeps_distinct_recent_messages() {
        let h = History::default();
        for i in 0..30 {
            h.note(1, i, "Running", &format!("retrying after: error {}", i / 2));
        }
        h.note(1, 99, "Running", "");
        let e = h.errors(1);
        assert_eq!(e.len(), 15);
        assert_eq!(e.last().map(|x| x.2.as_str()), Some("retrying after: error 14"));
    }
}
