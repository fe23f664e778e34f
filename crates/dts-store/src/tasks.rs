//! Task rows.

use dts_core::snapshot::SnapshotRequest;
use dts_core::spec::{KafkaSecrets, Secret, TaskSpec};
use dts_core::{DesiredState, TaskState};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::text::{opt_text, text};
use crate::{now_ms, Backend, Store, StoreError};

/// Associated data bound to sealed source passwords.
const PASSWORD_PURPOSE: &str = "dts/source_password";
/// Associated data bound to sealed Kafka secrets.
const KAFKA_PURPOSE: &str = "dts/kafka_secrets";

const TASK_COLUMNS: &str =
    "id, source_addr, dest_addr, spec, source_password, kafka_secrets, desired_state, state, message, pos, \
     checkpoint, transaction_time, version, epoch, worker_id, service_addr, lease_expires_at, created_at, updated_at, \
     snapshot_request";

/// A whole task row, as the control plane and workers see it.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: i64,
    pub source_addr: String,
    pub dest_addr: String,
    /// The spec without its password (see [`Store::source_password`]).
    pub spec: TaskSpec,
    sealed_password: String,
    sealed_kafka: Option<String>,
    pub desired_state: DesiredState,
    pub state: TaskState,
    pub message: String,
    pub pos: String,
    pub checkpoint: Option<String>,
    pub transaction_time: Option<i64>,
    pub version: i64,
    pub epoch: i64,
    pub worker_id: Option<String>,
    pub service_addr: String,
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The on-demand snapshot asked of the task, if any.
    pub snapshot_request: Option<SnapshotRequest>,
}

/// The list endpoint's view of a task: the seed's fields, nothing more, so
/// paging through thousands of tasks reads no spec JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    pub id: i64,
    pub source_addr: String,
    pub dest_addr: String,
    pub pos: String,
    pub transaction_time: Option<i64>,
    pub state: String,
    pub updated_at: i64,
    pub message: String,
    pub service_addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    /// All tasks in the store, for the dashboard's pager.
    pub total: i64,
}

/// Where a new task goes: the node that will run it.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub worker_id: String,
    pub service_addr: String,
}

/// What a worker reports about a task it runs.
#[derive(Debug, Clone)]
pub struct Progress {
    pub state: TaskState,
    pub message: String,
    pub pos: String,
    pub checkpoint: Option<String>,
    pub transaction_time: Option<i64>,
}

/// The result of an alter.
#[derive(Debug)]
pub enum AlterOutcome {
    Altered(Box<TaskRecord>),
    NotFound,
    /// Someone changed the task since `expected_version` was read.
    VersionConflict {
        current: i64,
    },
}

impl Store {
    /// Inserts a new task (state `Pending`, desired `running`) and returns it.
    /// The source password is sealed before it reaches the store.
    pub async fn create_task(
        &self,
        spec: &TaskSpec,
        assignment: Option<&Assignment>,
    ) -> Result<TaskRecord, StoreError> {
        let password = spec.source.password.as_ref().map_or("", Secret::expose);
        let sealed = self.cipher.seal(PASSWORD_PURPOSE, password)?;
        let sealed_kafka = self.seal_kafka(spec)?;
        let spec_json = spec_to_json(spec)?;
        let now = now_ms();
        let (worker_id, service_addr, epoch) = match assignment {
            Some(a) => (Some(a.worker_id.clone()), a.service_addr.clone(), 1_i64),
            None => (None, String::new(), 0),
        };
        let insert = "INSERT INTO dts_tasks (source_addr, dest_addr, spec, source_password, kafka_secrets, incr, \
             desired_state, state, message, pos, version, epoch, worker_id, service_addr, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', '', 1, ?, ?, ?, ?, ?)";
        let sql = self.insert_id_sql(insert);
        let query = sqlx::query(&sql)
            .bind(spec.source.addr())
            .bind(spec.dest_addr())
            .bind(spec_json)
            .bind(sealed)
            .bind(sealed_kafka)
            .bind(i64::from(spec.incr))
            .bind(DesiredState::Running.as_str())
            .bind(TaskState::Pending.as_str())
            .bind(epoch)
            .bind(worker_id)
            .bind(service_addr)
            .bind(now)
            .bind(now);
        let id = self.insert_id(query).await?;
        self.tasks_changed();
        self.get_task(id).await?.ok_or_else(|| StoreError::Query(format!("task {id} vanished after insert")))
    }

    pub async fn get_task(&self, id: i64) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM dts_tasks WHERE id = ?");
        let row = sqlx::query(&self.backend.sql(&sql)).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| record_from_row(&r)).transpose()
    }

    /// One page of tasks, newest first, and the total count.
    pub async fn list_tasks(&self, limit: i64, offset: i64) -> Result<TaskPage, StoreError> {
        if self.backend == Backend::Sqlite {
            self.list_tasks_as_one_row(limit, offset).await
        } else {
            self.list_tasks_by_row(limit, offset).await
        }
    }

    /// SQLite hands each result row from its connection's thread to ours on
    /// its own (measured: about 7 us a row against 100 us for the statement),
    /// so the page travels as one JSON array built inside SQLite.
    async fn list_tasks_as_one_row(&self, limit: i64, offset: i64) -> Result<TaskPage, StoreError> {
        type Summary = (i64, String, String, String, Option<i64>, String, i64, String, String);
        let sql = "SELECT (SELECT COUNT(*) FROM dts_tasks) AS total, \
             (SELECT json_group_array(json_array(t.id, t.source_addr, t.dest_addr, t.pos, t.transaction_time, \
             t.state, t.updated_at, t.message, t.service_addr)) FROM dts_tasks t \
             JOIN (SELECT id FROM dts_tasks ORDER BY id DESC LIMIT ? OFFSET ?) page ON page.id = t.id) AS page";
        let row = sqlx::query(sql).bind(limit).bind(offset).fetch_one(&self.pool).await?;
        let total: i64 = row.try_get("total")?;
        let page: Vec<Summary> =
            serde_json::from_str(&text(&row, "page")?).map_err(|e| StoreError::Corrupt(format!("task page: {e}")))?;
        let mut tasks: Vec<TaskSummary> = page
            .into_iter()
            .map(|(id, source_addr, dest_addr, pos, transaction_time, state, updated_at, message, service_addr)| {
                TaskSummary {
                    id,
                    source_addr,
                    dest_addr,
                    pos,
                    transaction_time,
                    state,
                    updated_at,
                    message,
                    service_addr,
                }
            })
            .collect();
        // An aggregate's order is the join's in practice, not by contract.
        tasks.sort_unstable_by_key(|t| std::cmp::Reverse(t.id));
        Ok(TaskPage { tasks, total })
    }

    /// The page's ids first, from an index of ids alone (the offset steps
    /// over ids, not over whole tasks), then those tasks' rows. The total
    /// rides on every row, so a page is one statement. (No JSON aggregate
    /// here: MariaDB truncates `JSON_ARRAYAGG` at `group_concat_max_len`.)
    async fn list_tasks_by_row(&self, limit: i64, offset: i64) -> Result<TaskPage, StoreError> {
        let sql = self.backend.sql(
            "SELECT t.id, t.source_addr, t.dest_addr, t.pos, t.transaction_time, t.state, t.updated_at, t.message, \
             t.service_addr, (SELECT COUNT(*) FROM dts_tasks) AS total FROM dts_tasks t \
             JOIN (SELECT id FROM dts_tasks ORDER BY id DESC LIMIT ? OFFSET ?) page ON page.id = t.id \
             ORDER BY t.id DESC",
        );
        let rows = sqlx::query(&sql).bind(limit).bind(offset).fetch_all(&self.pool).await?;
        let tasks = rows
            .iter()
            .map(|r| {
                Ok(TaskSummary {
                    id: r.try_get("id")?,
                    source_addr: text(r, "source_addr")?,
                    dest_addr: text(r, "dest_addr")?,
                    pos: text(r, "pos")?,
                    transaction_time: r.try_get("transaction_time")?,
                    state: text(r, "state")?,
                    updated_at: r.try_get("updated_at")?,
                    message: text(r, "message")?,
                    service_addr: text(r, "service_addr")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let total: i64 = match rows.first() {
            Some(row) => row.try_get("total")?,
            // A page past the end has no row to carry the total.
            None => sqlx::query_scalar("SELECT COUNT(*) FROM dts_tasks").fetch_one(&self.pool).await?,
        };
        Ok(TaskPage { tasks, total })
    }

    /// Replaces the spec if the task is still at `expected_version`, bumping
    /// the version so the worker running it reloads. A spec without a
    /// source password keeps the stored one; Kafka secrets are stored as
    /// `spec` carries them (the caller merges in the kept ones).
    pub async fn alter_task(
        &self,
        id: i64,
        expected_version: i64,
        spec: &TaskSpec,
    ) -> Result<AlterOutcome, StoreError> {
        let spec_json = spec_to_json(spec)?;
        let sealed_kafka = self.seal_kafka(spec)?;
        let now = now_ms();
        let done = match &spec.source.password {
            Some(password) => {
                let sealed = self.cipher.seal(PASSWORD_PURPOSE, password.expose())?;
                let sql = self.backend.sql(
                    "UPDATE dts_tasks SET spec = ?, kafka_secrets = ?, source_addr = ?, dest_addr = ?, \
                     source_password = ?, version = version + 1, updated_at = ? WHERE id = ? AND version = ?",
                );
                sqlx::query(&sql)
                    .bind(spec_json)
                    .bind(sealed_kafka)
                    .bind(spec.source.addr())
                    .bind(spec.dest_addr())
                    .bind(sealed)
                    .bind(now)
                    .bind(id)
                    .bind(expected_version)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                let sql = self.backend.sql(
                    "UPDATE dts_tasks SET spec = ?, kafka_secrets = ?, source_addr = ?, dest_addr = ?, \
                     version = version + 1, updated_at = ? WHERE id = ? AND version = ?",
                );
                sqlx::query(&sql)
                    .bind(spec_json)
                    .bind(sealed_kafka)
                    .bind(spec.source.addr())
                    .bind(spec.dest_addr())
                    .bind(now)
                    .bind(id)
                    .bind(expected_version)
                    .execute(&self.pool)
                    .await?
            }
        };
        if done.rows_affected() == 1 {
            self.tasks_changed();
        }
        let current = self.get_task(id).await?;
        Ok(match current {
            None => AlterOutcome::NotFound,
            Some(task) if done.rows_affected() == 1 => AlterOutcome::Altered(Box::new(task)),
            Some(task) => AlterOutcome::VersionConflict { current: task.version },
        })
    }

    /// Records what the operator wants and moves `state` to match at once
    /// where no worker has to act (e.g. a stop of a task not yet running).
    /// Returns the updated task, or `None` when it does not exist.
    pub async fn set_desired_state(&self, id: i64, desired: DesiredState) -> Result<Option<TaskRecord>, StoreError> {
        let sql = match desired {
            // A running task must flush and checkpoint before it is Stopped:
            // its worker finishes the move from Stopping.
            DesiredState::Stopped => {
                "UPDATE dts_tasks SET desired_state = ?, version = version + 1, updated_at = ?, state = CASE \
                 WHEN state IN ('Running', 'Snapshotting') THEN 'Stopping' \
                 WHEN state IN ('Pending', 'Failed') THEN 'Stopped' ELSE state END \
                 WHERE id = ? AND desired_state <> 'stopped'"
            }
            DesiredState::Running => {
                "UPDATE dts_tasks SET desired_state = ?, version = version + 1, updated_at = ?, \
                 message = CASE WHEN state IN ('Stopped', 'Failed', 'Stopping') THEN '' ELSE message END, \
                 state = CASE WHEN state IN ('Stopped', 'Failed', 'Stopping') THEN 'Pending' ELSE state END \
                 WHERE id = ? AND (desired_state <> 'running' OR state = 'Failed')"
            }
        };
        sqlx::query(&self.backend.sql(sql)).bind(desired.as_str()).bind(now_ms()).bind(id).execute(&self.pool).await?;
        self.tasks_changed();
        self.get_task(id).await
    }

    /// Asks for an on-demand snapshot (`Some`) or cancels it (`None`),
    /// bumping the version so the worker running the task takes it up.
    /// Returns the updated task, or `None` when it does not exist.
    pub async fn set_snapshot_request(
        &self,
        id: i64,
        request: Option<&SnapshotRequest>,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let json = request.map(serde_json::to_string).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sql = "UPDATE dts_tasks SET snapshot_request = ?, version = version + 1, updated_at = ? WHERE id = ?";
        sqlx::query(&self.backend.sql(sql)).bind(json).bind(now_ms()).bind(id).execute(&self.pool).await?;
        self.tasks_changed();
        self.get_task(id).await
    }

    /// Removes the task. A worker still running it finds its next progress
    /// write refused and stops. Returns false when there was no such task.
    pub async fn delete_task(&self, id: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query(&self.backend.sql("DELETE FROM dts_tasks WHERE id = ?")).bind(id).execute(&self.pool).await?;
        self.tasks_changed();
        Ok(done.rows_affected() == 1)
    }

    /// Writes a worker's progress, but only while it still holds the task at
    /// `epoch`: a worker that lost its lease cannot overwrite its successor's
    /// position. Returns false when the write was fenced off (or the task is gone).
    pub async fn record_progress(&self, id: i64, epoch: i64, progress: &Progress) -> Result<bool, StoreError> {
        let sql = self.backend.sql(
            "UPDATE dts_tasks SET state = ?, message = ?, pos = ?, checkpoint = ?, transaction_time = ?, \
             updated_at = ? WHERE id = ? AND epoch = ?",
        );
        let done = sqlx::query(&sql)
            .bind(progress.state.as_str())
            .bind(storable_message(&progress.message))
            .bind(progress.pos.clone())
            .bind(progress.checkpoint.clone())
            .bind(progress.transaction_time)
            .bind(now_ms())
            .bind(id)
            .bind(epoch)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every task assigned to `worker_id`, for the worker's supervisor.
    pub async fn tasks_for_worker(&self, worker_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM dts_tasks WHERE worker_id = ? ORDER BY id");
        let rows = sqlx::query(&self.backend.sql(&sql)).bind(worker_id.to_owned()).fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Points every task of `worker_id` at the worker's current address
    /// (a standalone node restarted on another address keeps its tasks).
    pub async fn set_service_addr(&self, worker_id: &str, service_addr: &str) -> Result<u64, StoreError> {
        let sql = self.backend.sql("UPDATE dts_tasks SET service_addr = ? WHERE worker_id = ? AND service_addr <> ?");
        let done = sqlx::query(&sql)
            .bind(service_addr.to_owned())
            .bind(worker_id.to_owned())
            .bind(service_addr.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Sets state and message only (the position is untouched), fenced by
    /// `epoch` like [`Store::record_progress`].
    pub async fn record_state(&self, id: i64, epoch: i64, state: TaskState, message: &str) -> Result<bool, StoreError> {
        let sql =
            self.backend.sql("UPDATE dts_tasks SET state = ?, message = ?, updated_at = ? WHERE id = ? AND epoch = ?");
        let done = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(storable_message(message))
            .bind(now_ms())
            .bind(id)
            .bind(epoch)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The task's source password in clear, for the worker that connects.
    pub fn source_password(&self, task: &TaskRecord) -> Result<Secret, StoreError> {
        Ok(Secret::new(self.cipher.open(PASSWORD_PURPOSE, &task.sealed_password)?))
    }

    /// The task's Kafka secrets in clear (none stored: empty).
    pub fn kafka_secrets(&self, task: &TaskRecord) -> Result<KafkaSecrets, StoreError> {
        let Some(sealed) = task.sealed_kafka.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(KafkaSecrets::default());
        };
        let text = self.cipher.open(KAFKA_PURPOSE, sealed)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("task {}: kafka secrets: {e}", task.id)))
    }

    fn seal_kafka(&self, spec: &TaskSpec) -> Result<Option<String>, StoreError> {
        let secrets = KafkaSecrets::of(&spec.kafka);
        if secrets == KafkaSecrets::default() {
            return Ok(None);
        }
        let json = serde_json::to_string(&secrets).map_err(|e| StoreError::Corrupt(format!("kafka secrets: {e}")))?;
        Ok(Some(self.cipher.seal(KAFKA_PURPOSE, &json)?))
    }
}

fn spec_to_json(spec: &TaskSpec) -> Result<String, StoreError> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(format!("cannot encode spec: {e}")))
}

fn record_from_row(r: &AnyRow) -> Result<TaskRecord, StoreError> {
    let id: i64 = r.try_get("id")?;
    let corrupt = |what: String| StoreError::Corrupt(format!("task {id}: {what}"));
    let spec_text = text(r, "spec")?;
    let spec: TaskSpec = serde_json::from_str(&spec_text).map_err(|e| corrupt(format!("spec: {e}")))?;
    let state = text(r, "state")?;
    let desired = text(r, "desired_state")?;
    Ok(TaskRecord {
        id,
        source_addr: text(r, "source_addr")?,
        dest_addr: text(r, "dest_addr")?,
        spec,
        sealed_password: text(r, "source_password")?,
        sealed_kafka: opt_text(r, "kafka_secrets")?,
        desired_state: desired.parse().map_err(|e| corrupt(format!("{e}")))?,
        state: state.parse().map_err(|e| corrupt(format!("{e}")))?,
        message: text(r, "message")?,
        pos: text(r, "pos")?,
        checkpoint: opt_text(r, "checkpoint")?,
        transaction_time: r.try_get("transaction_time")?,
        version: r.try_get("version")?,
        epoch: r.try_get("epoch")?,
        worker_id: opt_text(r, "worker_id")?,
        service_addr: text(r, "service_addr")?,
        lease_expires_at: r.try_get("lease_expires_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        snapshot_request: opt_text(r, "snapshot_request")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| corrupt(format!("snapshot_request: {e}")))?,
    })
}

/// A task's message as every backend can store it: PostgreSQL's text holds
/// no NUL, and a server's error text may carry one. It is shown as U+FFFD.
fn storable_message(message: &str) -> String {
    message.replace('\0', "\u{FFFD}")
}
