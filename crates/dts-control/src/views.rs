//! JSON shapes the API returns.

use chrono::{Local, TimeZone};
use dts_store::{TaskRecord, TaskSummary};
use serde::Serialize;

/// `YYYY-MM-DD HH:MM:SS` in the server's local time zone (`TZ`), as in the
/// seed's examples; empty when there is no time yet.
pub fn format_ms(ms: Option<i64>) -> String {
    ms.and_then(|ms| Local.timestamp_millis_opt(ms).single())
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// One task in `GET /v1/task/list`: exactly the seed's fields.
#[derive(Debug, Serialize)]
pub struct ListItem {
    pub id: i64,
    pub source_addr: String,
    pub dest_addr: String,
    pub pos: String,
    pub updated_at: String,
    pub transaction_time: String,
    pub state: String,
    pub message: String,
    pub service_addr: String,
}

impl From<TaskSummary> for ListItem {
    fn from(t: TaskSummary) -> Self {
        Self {
            id: t.id,
            source_addr: t.source_addr,
            dest_addr: t.dest_addr,
            pos: t.pos,
            updated_at: format_ms(Some(t.updated_at)),
            transaction_time: format_ms(t.transaction_time),
            state: t.state,
            message: t.message,
            service_addr: t.service_addr,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ListPage {
    pub tasks: Vec<ListItem>,
    /// Tasks in the store, so a dashboard can draw its pager.
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// `GET /v1/task/:id`: the list fields plus the spec (no password) and the
/// bookkeeping an operator needs to reason about the task.
#[derive(Debug, Serialize)]
pub struct TaskDetail<'a> {
    pub id: i64,
    pub source_addr: &'a str,
    pub dest_addr: &'a str,
    pub pos: &'a str,
    pub updated_at: String,
    pub transaction_time: String,
    pub state: &'static str,
    pub message: &'a str,
    pub service_addr: &'a str,
    pub desired_state: &'static str,
    pub created_at: String,
    /// Bumped by every alter, stop and start.
    pub version: i64,
    /// Bumped by every (re)assignment to a worker.
    pub epoch: i64,
    pub worker_id: Option<&'a str>,
    /// Copy progress of an `incr: false` task while it is `Snapshotting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotView>,
    /// The submitted task, with `source.password` left out.
    pub task: &'a dts_core::TaskSpec,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SnapshotView {
    pub tables_total: usize,
    pub tables_done: usize,
    pub rows_copied: u64,
}

/// Summarises the `snapshot` section the worker keeps in the checkpoint
/// (`{"snapshot": {"tables": [{"done": bool, ..}], "rows_copied": n}}`).
fn snapshot_view(checkpoint: Option<&str>) -> Option<SnapshotView> {
    let v: serde_json::Value = serde_json::from_str(checkpoint?).ok()?;
    let s = v.get("snapshot")?;
    let tables = s.get("tables")?.as_array()?;
    Some(SnapshotView {
        tables_total: tables.len(),
        tables_done: tables.iter().filter(|t| t["done"] == true).count(),
        rows_copied: s.get("rows_copied").and_then(serde_json::Value::as_u64).unwrap_or(0),
    })
}

impl<'a> From<&'a TaskRecord> for TaskDetail<'a> {
    fn from(t: &'a TaskRecord) -> Self {
        Self {
            id: t.id,
            source_addr: &t.source_addr,
            dest_addr: &t.dest_addr,
            pos: &t.pos,
            updated_at: format_ms(Some(t.updated_at)),
            transaction_time: format_ms(t.transaction_time),
            state: t.state.as_str(),
            message: &t.message,
            service_addr: &t.service_addr,
            desired_state: t.desired_state.as_str(),
            created_at: format_ms(Some(t.created_at)),
            version: t.version,
            epoch: t.epoch,
            worker_id: t.worker_id.as_deref(),
            snapshot: snapshot_view(t.checkpoint.as_deref()),
            task: &t.spec,
        }
    }
}

/// Answer of stop and start.
#[derive(Debug, Serialize)]
pub struct StateChange {
    pub id: i64,
    pub state: &'static str,
    pub desired_state: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_progress_is_read_from_the_checkpoint() {
        let cp = r#"{"flavor":"mariadb","file":"f","pos":4,"gtid":"","snapshot":{"tables":[{"db":"d","table":"a","done":true},{"db":"d","table":"b","done":false}],"rows_copied":1234}}"#;
        assert_eq!(snapshot_view(Some(cp)), Some(SnapshotView { tables_total: 2, tables_done: 1, rows_copied: 1234 }));
        assert_eq!(snapshot_view(Some(r#"{"flavor":"mariadb","file":"f","pos":4}"#)), None);
        assert_eq!(snapshot_view(None), None);
        assert_eq!(snapshot_view(Some("not json")), None);
    }
}
