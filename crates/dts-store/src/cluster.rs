//! Cluster bookkeeping: worker membership, the scheduler's lease, and task
//! assignment with epochs.
//!
//! Every (re)assignment bumps the task's `epoch`, the fencing token a worker
//! presents with each progress write; a worker that lost the task can no
//! longer write its position (see [`Store::record_progress`]).

use dts_core::TaskState;
use sqlx::Row;

use crate::text::text;
use crate::{now_ms, Backend, Store, StoreError};

/// A worker node as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    pub id: String,
    pub addr: String,
    pub capacity: i64,
    pub version: String,
    /// `active`, or `draining` (takes no tasks; its tasks move away).
    pub state: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// The scheduler's view of a task: who holds it and what it should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub id: i64,
    pub worker_id: Option<String>,
    pub epoch: i64,
    pub desired_running: bool,
    pub state: TaskState,
    pub lease_expires_at: Option<i64>,
}

impl Store {
    /// Records a heartbeat: inserts the worker, or refreshes it (keeping a
    /// `draining` state set by an operator).
    pub async fn worker_heartbeat(&self, id: &str, addr: &str, capacity: i64, version: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let sql = match self.backend {
            Backend::MySql => {
                "INSERT INTO dts_workers (id, addr, capacity, version, state, started_at, heartbeat_at) \
                 VALUES (?, ?, ?, ?, 'active', ?, ?) ON DUPLICATE KEY UPDATE \
                 addr = VALUES(addr), capacity = VALUES(capacity), version = VALUES(version), \
                 heartbeat_at = VALUES(heartbeat_at)"
            }
            Backend::Sqlite | Backend::Postgres => {
                "INSERT INTO dts_workers (id, addr, capacity, version, state, started_at, heartbeat_at) \
                 VALUES (?, ?, ?, ?, 'active', ?, ?) ON CONFLICT (id) DO UPDATE SET \
                 addr = excluded.addr, capacity = excluded.capacity, version = excluded.version, \
                 heartbeat_at = excluded.heartbeat_at"
            }
        };
        sqlx::query(&self.backend.sql(sql))
            .bind(id.to_owned())
            .bind(addr.to_owned())
            .bind(capacity)
            .bind(version.to_owned())
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, addr, capacity, version, state, started_at, heartbeat_at FROM dts_workers ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WorkerRecord {
                    id: text(r, "id")?,
                    addr: text(r, "addr")?,
                    capacity: r.try_get("capacity")?,
                    version: text(r, "version")?,
                    state: text(r, "state")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Sets a worker `active` or `draining`; false when there is no such worker.
    pub async fn set_worker_state(&self, id: &str, state: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.backend.sql("UPDATE dts_workers SET state = ? WHERE id = ?"))
            .bind(state.to_owned())
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets a worker that has been gone a long time.
    pub async fn remove_worker(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(&self.backend.sql("DELETE FROM dts_workers WHERE id = ?"))
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes or renews the named lease for `ttl_ms`; true when `holder` has it.
    /// At most one holder at a time, on every backend: the update only
    /// succeeds for the current holder or once the lease expired.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        let insert = self.backend.insert_ignore("dts_leases (name, holder, expires_at)", "(?, ?, ?)");
        sqlx::query(&self.backend.sql(&insert))
            .bind(name.to_owned())
            .bind(holder.to_owned())
            .bind(now + ttl_ms)
            .execute(&self.pool)
            .await?;
        let done =
            sqlx::query(&self.backend.sql(
                "UPDATE dts_leases SET holder = ?, expires_at = ? WHERE name = ? AND (holder = ? OR expires_at < ?)",
            ))
            .bind(holder.to_owned())
            .bind(now + ttl_ms)
            .bind(name.to_owned())
            .bind(holder.to_owned())
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every task's placement, for the scheduler.
    pub async fn placements(&self) -> Result<Vec<Placement>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, worker_id, epoch, desired_state, state, lease_expires_at FROM dts_tasks ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state = text(r, "state")?;
                Ok(Placement {
                    id: r.try_get("id")?,
                    worker_id: crate::text::opt_text(r, "worker_id")?,
                    epoch: r.try_get("epoch")?,
                    desired_running: text(r, "desired_state")? == "running",
                    state: state.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
                    lease_expires_at: r.try_get("lease_expires_at")?,
                })
            })
            .collect()
    }

    /// Gives the task to `worker` (or to nobody) if it is still at `epoch`
    /// and no holder's lease is running (checked in the same statement, so
    /// two runners never hold one task), bumping the epoch so the previous
    /// holder is fenced off. A task moved while running shows `Pending`
    /// until its new worker reports.
    pub async fn assign(
        &self,
        id: i64,
        epoch: i64,
        worker: Option<(&str, &str)>,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let (worker_id, addr) = match worker {
            Some((w, a)) => (Some(w.to_owned()), a.to_owned()),
            None => (None, String::new()),
        };
        let sql = self.backend.sql(
            "UPDATE dts_tasks SET worker_id = ?, service_addr = ?, epoch = epoch + 1, lease_expires_at = ?, \
             updated_at = ?, state = CASE WHEN state IN ('Running', 'Snapshotting') THEN 'Pending' ELSE state END \
             WHERE id = ? AND epoch = ? AND (lease_expires_at IS NULL OR lease_expires_at <= ?)",
        );
        let now = now_ms();
        let done = sqlx::query(&sql)
            .bind(worker_id)
            .bind(addr)
            .bind(now + lease_ms)
            .bind(now)
            .bind(id)
            .bind(epoch)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes the task from its worker without bumping the epoch, so that
    /// worker can still record its final position while it stops; nobody
    /// gets the task before `hold_off_ms` pass (the worker learns of it at
    /// its next heartbeat). The next [`Store::assign`] fences it off.
    pub async fn release(&self, id: i64, epoch: i64, hold_off_ms: i64) -> Result<bool, StoreError> {
        let sql = self.backend.sql(
            "UPDATE dts_tasks SET worker_id = NULL, service_addr = '', lease_expires_at = ?, updated_at = ?, \
             state = CASE WHEN state IN ('Running', 'Snapshotting') THEN 'Pending' ELSE state END \
             WHERE id = ? AND epoch = ?",
        );
        let now = now_ms();
        let done = sqlx::query(&sql).bind(now + hold_off_ms).bind(now).bind(id).bind(epoch).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the nonce of an accepted cluster request until `expires_at`;
    /// false when some control plane already accepted it (a replay).
    pub async fn claim_nonce(&self, nonce: &str, expires_at: i64) -> Result<bool, StoreError> {
        let insert = self.backend.insert_ignore("dts_cluster_nonces (nonce, expires_at)", "(?, ?)");
        let done =
            sqlx::query(&self.backend.sql(&insert)).bind(nonce.to_owned()).bind(expires_at).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the nonces no request can be replayed with any more.
    pub async fn forget_nonces(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.backend.sql("DELETE FROM dts_cluster_nonces WHERE expires_at < ?"))
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Extends the leases of every task `worker_id` holds.
    pub async fn renew_task_leases(&self, worker_id: &str, lease_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(&self.backend.sql("UPDATE dts_tasks SET lease_expires_at = ? WHERE worker_id = ?"))
            .bind(now_ms() + lease_ms)
            .bind(worker_id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
