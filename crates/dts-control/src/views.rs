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
    /// The catalogue's row estimates, summed (InnoDB's are approximate).
    pub estimated_rows: u64,
    /// Seconds left at the copy's average rate so far, from the estimates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    pub tables: Vec<SnapshotTableView>,
}

/// One table's copy.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SnapshotTableView {
    pub table: String,
    pub done: bool,
    pub rows: u64,
    pub chunks: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_rows: Option<u64>,
    /// The index the copy walks; empty for a table read in one scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The on-demand request this copy serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<i64>,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// The checkpoint's per-table copy entries (`{"db", "table", "done", "rows", ..}`).
fn table_views(tables: &[serde_json::Value]) -> Vec<SnapshotTableView> {
    let u64_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let str_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
    tables
        .iter()
        .map(|t| SnapshotTableView {
            table: format!("{}.{}", str_of(t, "db").unwrap_or_default(), str_of(t, "table").unwrap_or_default()),
            done: t["done"] == true,
            rows: u64_of(t, "rows").unwrap_or(0),
            chunks: u64_of(t, "chunks").unwrap_or(0),
            estimated_rows: u64_of(t, "estimated_rows"),
            key: str_of(t, "key"),
            note: str_of(t, "note"),
            request: t.get("request").and_then(serde_json::Value::as_i64),
            condition: str_of(t, "where"),
        })
        .collect()
}

/// `GET /v1/task/{id}/snapshot`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SnapshotStatus<'a> {
    pub request: Option<&'a dts_core::snapshot::SnapshotRequest>,
    /// `none`, `pending` (not yet taken up by the worker), `copying` or `done`.
    pub state: &'static str,
    /// The request's tables, as its worker last reported them.
    pub tables: Vec<SnapshotTableView>,
}

/// Where an on-demand request stands, from the task's checkpoint.
pub fn snapshot_status<'a>(
    request: Option<&'a dts_core::snapshot::SnapshotRequest>,
    checkpoint: Option<&str>,
) -> SnapshotStatus<'a> {
    let Some(r) = request else { return SnapshotStatus { request, state: "none", tables: Vec::new() } };
    let cp: Option<serde_json::Value> = checkpoint.and_then(|c| serde_json::from_str(c).ok());
    let taken = cp.as_ref().and_then(|c| c.get("requests_taken")).and_then(serde_json::Value::as_i64).unwrap_or(0);
    if taken < r.id {
        return SnapshotStatus { request, state: "pending", tables: Vec::new() };
    }
    let mut tables: Vec<SnapshotTableView> = snapshot_view(checkpoint, 0)
        .map(|v| v.tables.into_iter().filter(|t| t.request == Some(r.id)).collect())
        .unwrap_or_default();
    if tables.is_empty() {
        // Copied: the checkpoint keeps the request's tables apart.
        let copied = cp.as_ref().and_then(|c| c.get("request_tables")).and_then(serde_json::Value::as_array);
        tables =
            table_views(copied.map_or(&[], Vec::as_slice)).into_iter().filter(|t| t.request == Some(r.id)).collect();
    }
    let state = if tables.iter().all(|t| t.done) { "done" } else { "copying" };
    SnapshotStatus { request, state, tables }
}

/// Summarises the `snapshot` section the worker keeps in the checkpoint
/// (`{"snapshot": {"tables": [{"db", "table", "done", "rows", ..}], "rows_copied": n}}`).
fn snapshot_view(checkpoint: Option<&str>, now_ms: i64) -> Option<SnapshotView> {
    let v: serde_json::Value = serde_json::from_str(checkpoint?).ok()?;
    let s = v.get("snapshot")?;
    let u64_of = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    let tables = table_views(s.get("tables")?.as_array()?);
    let rows_copied = u64_of(s, "rows_copied").unwrap_or(0);
    let estimated_rows = tables.iter().map(|t| t.estimated_rows.unwrap_or(0).max(t.rows)).sum::<u64>();
    // Rows left: what the estimates say the unfinished tables still hold.
    let left: u64 =
        tables.iter().filter(|t| !t.done).map(|t| t.estimated_rows.unwrap_or(0).saturating_sub(t.rows)).sum();
    let elapsed_ms = u64_of(s, "started_ms").map(|start| now_ms.saturating_sub(start as i64).max(0) as u64);
    let eta_seconds = match elapsed_ms {
        Some(ms) if ms > 0 && rows_copied > 0 => Some(left.saturating_mul(ms) / rows_copied / 1000),
        _ => None,
    };
    Some(SnapshotView {
        tables_total: tables.len(),
        tables_done: tables.iter().filter(|t| t.done).count(),
        rows_copied,
        estimated_rows,
        eta_seconds,
        tables,
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
            snapshot: snapshot_view(t.checkpoint.as_deref(), dts_store::now_ms()),
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
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn snapshot_progress_is_read_from_the_checkpoint() {
        let cp = r#"{"flavor":"mariadb","file":"f","pos":4,"gtid":"","snapshot":{"started_ms":1000,"rows_copied":1000,
            "tables":[{"db":"d","table":"a","done":true,"rows":600,"chunks":1,"estimated_rows":500,"key":"PRIMARY"},
                      {"db":"d","table":"b","done":false,"rows":400,"chunks":1,"estimated_rows":2400,"key":""}]}}"#;
        let view = snapshot_view(Some(cp), 11_000).expect("a view");
        assert_eq!((view.tables_total, view.tables_done, view.rows_copied), (2, 1, 1000));
        assert_eq!(view.estimated_rows, 600 + 2400, "a table past its estimate counts what it copied");
        // 1000 rows in 10 s; 2000 left.
        assert_eq!(view.eta_seconds, Some(20));
        assert_eq!(view.tables[1].table, "d.b");
        assert_eq!(view.tables[1].key.as_deref(), Some(""));
        let old = r#"{"flavor":"mariadb","file":"f","pos":4,"snapshot":{"tables":[{"db":"d","table":"a","done":false}],"rows_copied":5}}"#;
        let view = snapshot_view(Some(old), 0).expect("a view");
        assert_eq!((view.tables_total, view.eta_seconds, view.tables[0].rows), (1, None, 0));
        assert_eq!(snapshot_view(Some(r#"{"flavor":"mariadb","file":"f","pos":4}"#), 0), None);
        assert_eq!(snapshot_view(None, 0), None);
        assert_eq!(snapshot_view(Some("not json"), 0), None);
    }
}
