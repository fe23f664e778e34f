//! The scheduler: places tasks on worker nodes and moves them when a node
//! dies or drains. It runs on every control plane, but only the one holding
//! the `scheduler` lease in the store acts, so decisions never race.
//!
//! Failure handling, with `lease_ms` the heartbeat lease:
//! - A worker silent for `lease_ms` is dead. It stopped its tasks on its
//!   own a quarter lease earlier (it cannot renew), so its tasks are placed
//!   elsewhere at once; the new assignment bumps their epoch, fencing off
//!   any late write of the old node.
//! - A draining worker's tasks are released (same epoch, so it can still
//!   record its final position) and placed elsewhere `lease_ms` later,
//!   after it has stopped them.
//! - New and released tasks go to the live, active worker with the lowest
//!   load relative to its capacity.

use std::collections::HashMap;
use std::time::Duration;

use dts_core::TaskState;
use dts_store::cluster::{Placement, WorkerRecord};
use dts_store::{now_ms, Store, StoreError};
use tokio::sync::watch;

const LEASE_NAME: &str = "scheduler";

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This control plane's name in the lease row.
    pub holder: String,
    pub tick: Duration,
    /// The workers' heartbeat lease.
    pub lease_ms: i64,
}

/// Runs until `shutdown` turns true.
pub async fn run(store: Store, cfg: SchedulerConfig, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(cfg.tick);
    let lease_ttl = (cfg.tick.as_millis() as i64) * 4;
    let mut leading = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match store.acquire_lease(LEASE_NAME, &cfg.holder, lease_ttl).await {
            Ok(true) => {
                if !leading {
                    tracing::info!(holder = %cfg.holder, "this control plane now schedules tasks");
                    leading = true;
                }
                if let Err(e) = reconcile(&store, cfg.lease_ms).await {
                    tracing::warn!(error = %e, "scheduling pass failed; retrying");
                }
                if let Err(e) = store.forget_nonces(now_ms()).await {
                    tracing::warn!(error = %e, "cannot delete expired cluster nonces; retrying");
                }
            }
            Ok(false) => leading = false,
            Err(e) => {
                leading = false;
                tracing::warn!(error = %e, "cannot reach the store for the scheduler lease");
            }
        }
    }
}

fn alive(w: &WorkerRecord, now: i64, lease_ms: i64) -> bool {
    now - w.heartbeat_at <= lease_ms
}

/// The live, active worker with the most room, if any has room.
pub fn pick<'a>(workers: &'a [WorkerRecord], load: &HashMap<String, i64>, lease_ms: i64) -> Option<&'a WorkerRecord> {
    let now = now_ms();
    workers
        .iter()
        .filter(|w| alive(w, now, lease_ms) && w.state == "active")
        .filter(|w| load.get(&w.id).copied().unwrap_or(0) < w.capacity)
        .min_by(|a, b| {
            let fa = load.get(&a.id).copied().unwrap_or(0) as f64 / a.capacity.max(1) as f64;
            let fb = load.get(&b.id).copied().unwrap_or(0) as f64 / b.capacity.max(1) as f64;
            fa.total_cmp(&fb).then_with(|| a.id.cmp(&b.id))
        })
}

/// Tasks per worker.
pub fn loads(placements: &[Placement]) -> HashMap<String, i64> {
    let mut load = HashMap::new();
    for p in placements {
        if let Some(w) = &p.worker_id {
            *load.entry(w.clone()).or_insert(0) += 1;
        }
    }
    load
}

/// One scheduling pass.
pub async fn reconcile(store: &Store, lease_ms: i64) -> Result<(), StoreError> {
    let now = now_ms();
    let workers = store.workers().await?;
    let placements = store.placements().await?;
    let mut load = loads(&placements);
    for p in &placements {
        match p.worker_id.as_deref() {
            Some(holder) => {
                let w = workers.iter().find(|w| w.id == holder);
                let live = w.is_some_and(|w| alive(w, now, lease_ms));
                let draining = w.is_some_and(|w| w.state == "draining");
                if live && !draining {
                    continue;
                }
                if live {
                    // Draining: let the node stop it and record its position first.
                    if store.release(p.id, p.epoch, lease_ms).await? {
                        tracing::info!(task = p.id, worker = holder, "moving task off a draining worker");
                    }
                } else if should_run(p) {
                    // Dead: it stopped its tasks when its lease ran out.
                    if let Some(target) = pick(&workers, &load, lease_ms) {
                        if store.assign(p.id, p.epoch, Some((&target.id, &target.addr)), lease_ms).await? {
                            tracing::warn!(task = p.id, from = holder, to = %target.id, "worker lost; task reassigned");
                            *load.entry(target.id.clone()).or_insert(0) += 1;
                        }
                    }
                } else {
                    store.release(p.id, p.epoch, 0).await?;
                }
            }
            None => {
                if !should_run(p) || p.lease_expires_at.is_some_and(|t| t > now) {
                    continue;
                }
                if let Some(target) = pick(&workers, &load, lease_ms) {
                    if store.assign(p.id, p.epoch, Some((&target.id, &target.addr)), lease_ms).await? {
                        tracing::info!(task = p.id, to = %target.id, "task assigned");
                        *load.entry(target.id.clone()).or_insert(0) += 1;
                    }
                }
            }
        }
    }
    Ok(())
}

fn should_run(p: &Placement) -> bool {
    p.desired_running && p.state != TaskState::Failed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn worker(id: &str, capacity: i64, state: &str, age_ms: i64) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            addr: format!("{id}:1"),
            capacity,
            version: "0".into(),
            state: state.into(),
            started_at: 0,
            heartbeat_at: now_ms() - age_ms,
        }
    }

    #[test]
    fn picks_the_least_loaded_live_active_worker_with_room() {
        let workers = vec![
            worker("a", 10, "active", 0),
            worker("b", 10, "active", 0),
            worker("dead", 10, "active", 60_000),
            worker("draining", 10, "draining", 0),
            worker("c", 2, "active", 0),
        ];
        let load = HashMap::from([("a".to_owned(), 5), ("b".to_owned(), 2), ("c".to_owned(), 0)]);
        // c is emptiest relative to its capacity; a new worker gets new tasks.
        assert_eq!(pick(&workers, &load, 5_000).unwrap().id, "c");
        let load = HashMap::from([("a".to_owned(), 5), ("b".to_owned(), 2), ("c".to_owned(), 2)]);
        assert_eq!(pick(&workers, &load, 5_000).unwrap().id, "b", "c is full");
        let full = HashMap::from([("a".to_owned(), 10), ("b".to_owned(), 10), ("c".to_owned(), 2)]);
        assert!(pick(&workers, &full, 5_000).is_none(), "never the dead or draining ones");
    }
}
