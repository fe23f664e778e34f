//! The web dashboard: server-rendered pages (the HTML holds every figure
//! before any script runs), a small script for auto-refresh and actions
//! through the JSON API, SVG charts from [`history`]. Same Basic auth
//! users as the API; viewers get no action buttons.
//!
//! - `GET /`: tasks (state and a copy's progress, lag, position, commit time, node,
//!   throughput, last message), paged, filtered by `?state=`.
//! - `GET /ui/tasks/{id}`: one task: spec, charts, snapshot progress,
//!   position history, recent errors, alter editor.
//! - `GET /ui/workers`: worker nodes with drain / activate.

pub mod history;
mod html;

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use dts_metrics::task::{now_ms, TaskStats, STATES};
use dts_store::TaskSummary;

use crate::auth::{Identity, Role};
use crate::envelope::ApiError;
use crate::views::{format_ms, TaskDetail};
use crate::AppState;
use html::{chart, esc, layout, Page};

const PER_PAGE: usize = 50;

pub fn routes(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(crate::handlers::method_not_allowed));
    cfg.service(resource("/").route(web::get().to(tasks)))
        .service(resource("/ui/tasks/{id}").route(web::get().to(task)))
        .service(resource("/ui/workers").route(web::get().to(workers)))
        .service(resource("/ui/assets/dashboard.js").route(web::get().to(script)))
        .service(resource("/ui/assets/dashboard.css").route(web::get().to(style)));
}

fn can_act(req: &HttpRequest) -> bool {
    req.extensions().get::<Identity>().is_some_and(|i| i.role != Role::Viewer)
}

fn html_page(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Scripts and styles only from this server; no framing (clickjacking).
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(body)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", include_str!("assets/dashboard.js"))
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", include_str!("assets/dashboard.css"))
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(body)
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    page: Option<usize>,
}

fn fmt_lag(lag: Option<f64>) -> String {
    match lag {
        None => "–".into(),
        Some(s) if s < 10.0 => format!("{s:.1} s"),
        Some(s) if s < 3600.0 => format!("{s:.0} s"),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn fmt_rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "–".into(), |r| if r < 10.0 { format!("{r:.1}/s") } else { format!("{r:.0}/s") })
}

/// A copy under way, in a line for the task list: tables done, rows copied
/// and, where the catalogue gave estimates, the share done. `None` when the
/// task reports no copy.
fn copy_progress(stats: &TaskStats) -> Option<String> {
    let (done, total, rows) = stats.snapshot_progress();
    if total == 0 {
        return None;
    }
    let tables = stats.snapshot_table_figures();
    // A table's estimate is InnoDB's, taken at planning: never below what was copied.
    let estimated: u64 = tables.iter().map(|t| t.estimated_rows.unwrap_or(0).max(t.rows)).sum();
    let mut line = format!("{done}/{total} tables, {} rows", group_digits(rows));
    if estimated > 0 && tables.iter().any(|t| t.estimated_rows.is_some()) {
        let share = (rows.min(estimated) as f64 / estimated as f64 * 100.0).floor();
        line.push_str(&format!(" of ~{} ({share:.0}%)", group_digits(estimated)));
    }
    Some(line)
}

fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `GET /`: the task list.
async fn tasks(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(dts_core::ErrorCode::InvalidQuery, format!("malformed query string: {e}")))?;
    let filter = query.state.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = filter {
        if !STATES.contains(&s) {
            let msg = format!("state must be one of {}, not {s:?}", STATES.join(", "));
            return Err(ApiError::new(dts_core::ErrorCode::InvalidQuery, msg));
        }
    }
    let page = query.page.unwrap_or(1).max(1);
    let all = state.store.list_tasks(100_000, 0).await?;
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for t in &all.tasks {
        *counts.entry(t.state.as_str()).or_default() += 1;
    }
    let matching: Vec<&TaskSummary> = all.tasks.iter().filter(|t| filter.is_none_or(|f| t.state == f)).collect();
    let pages = matching.len().div_ceil(PER_PAGE).max(1);
    let now = now_ms();
    let mut rows = String::new();
    for t in matching.iter().skip((page - 1) * PER_PAGE).take(PER_PAGE) {
        let stats = state.metrics.tasks.get(t.id);
        let lag = stats.as_ref().and_then(|s| s.lag_seconds(now));
        let rate = state.history.throughput(t.id);
        let copy = match (t.state.as_str(), stats.as_deref().and_then(copy_progress)) {
            ("Snapshotting", Some(line)) => format!("<div class=\"copy\">{}</div>", esc(&line)),
            _ => String::new(),
        };
        rows.push_str(&format!(
            "<tr data-task-id=\"{id}\"><td class=\"id\"><a href=\"/ui/tasks/{id}\">{id}</a></td>\
             <td><span class=\"state state-{st}\">{st}</span>{copy}</td><td class=\"lag num\">{lag}</td>\
             <td class=\"num\">{rate}</td><td class=\"pos\">{pos}</td><td>{tt}</td><td>{node}</td>\
             <td class=\"msg\">{msg}</td></tr>\n",
            id = t.id,
            st = esc(&t.state),
            lag = fmt_lag(lag),
            rate = fmt_rate(rate),
            pos = esc(&t.pos),
            tt = format_ms(t.transaction_time),
            node = esc(&t.service_addr),
            msg = esc(&t.message),
        ));
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"8\" class=\"empty\">No tasks. Submit one with <code>dts task submit -f task.json</code> \
                or <code>POST /v1/dispatch/submit</code>.</td></tr>"
            .into();
    }
    let mut filters =
        format!("<a href=\"/\" class=\"{}\">All ({})</a>", if filter.is_none() { "on" } else { "" }, all.tasks.len());
    for s in STATES {
        let n = counts.get(s).copied().unwrap_or(0);
        let on = if filter == Some(s) { "on" } else { "" };
        filters.push_str(&format!(" <a href=\"/?state={s}\" class=\"{on}\">{s} ({n})</a>"));
    }
    let link = |p: usize| match filter {
        Some(s) => format!("/?state={s}&page={p}"),
        None => format!("/?page={p}"),
    };
    let mut pager = format!("<span>page {page} of {pages}</span>");
    if page > 1 {
        pager = format!("<a href=\"{}\" rel=\"prev\">‹ prev</a> {pager}", link(page - 1));
    }
    if page < pages {
        pager = format!("{pager} <a href=\"{}\" rel=\"next\">next ›</a>", link(page + 1));
    }
    let body = format!(
        "<h1>Tasks</h1><nav class=\"filters\">{filters}</nav>\
         <table id=\"tasks\"><thead><tr><th>ID</th><th>State</th><th>Lag</th><th>Throughput</th><th>Position</th>\
         <th>Commit time</th><th>Node</th><th>Last message</th></tr></thead><tbody>{rows}</tbody></table>\
         <nav class=\"pager\">{pager}</nav>"
    );
    Ok(html_page(layout(Page::Tasks, "Tasks", &body)))
}

/// `GET /ui/tasks/{id}`.
async fn task(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let id = crate::handlers::task_id(&req)?;
    let record = state.store.get_task(id).await?.ok_or_else(|| ApiError::task_not_found(id))?;
    let detail = TaskDetail::from(&record);
    let now = now_ms();
    let stats = state.metrics.tasks.get(id);
    let lag = stats.as_ref().and_then(|s| s.lag_seconds(now));
    let samples = state.history.samples(id);
    let lag_points: Vec<(i64, f64)> = samples.iter().filter_map(|s| Some((s.at_ms, s.lag_seconds?))).collect();
    let rate_points: Vec<(i64, f64)> =
        samples.windows(2).filter_map(|w| Some((w[1].at_ms, history::rate(&w[0], &w[1])?))).collect();
    let act = can_act(&req);

    let mut actions = String::new();
    if act {
        actions = format!(
            "<div class=\"actions\"><button data-action=\"stop\" data-id=\"{id}\">Stop</button>\
             <button data-action=\"start\" data-id=\"{id}\">Start</button>\
             <button data-action=\"delete\" data-id=\"{id}\" class=\"danger\">Delete</button></div>"
        );
    }
    let snapshot = match &detail.snapshot {
        Some(s) => {
            let rows: String = s
                .tables
                .iter()
                .map(|t| {
                    let key = match t.key.as_deref() {
                        Some("") => "one scan".to_owned(),
                        Some(k) => esc(k),
                        None => String::new(),
                    };
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{key}</td><td>{}</td></tr>",
                        esc(&t.table),
                        if t.done { "done" } else { "copying" },
                        t.rows,
                        t.estimated_rows.map(|e| e.to_string()).unwrap_or_default(),
                        t.chunks,
                        esc(t.note.as_deref().unwrap_or(""))
                    )
                })
                .collect();
            let eta = s.eta_seconds.map(|e| format!(", about {e} s left")).unwrap_or_default();
            format!(
                "<h2>Snapshot</h2><progress id=\"snapshot-progress\" max=\"{total}\" value=\"{done}\"></progress>\
                 <p id=\"snapshot\">{done} of {total} tables, {rows_copied} rows copied{eta}</p>\
                 <table id=\"snapshot-tables\"><thead><tr><th>Table</th><th>State</th><th>Rows</th>\
                 <th>Estimated</th><th>Chunks</th><th>Key</th><th>Note</th></tr></thead><tbody>{rows}</tbody></table>",
                total = s.tables_total.max(1),
                done = s.tables_done,
                rows_copied = s.rows_copied
            )
        }
        None => String::new(),
    };
    // The last 20 positions, newest first, one row per change.
    let mut positions = String::new();
    let (mut last, mut shown) = (None, 0);
    for s in samples.iter().rev().filter(|s| (s.binlog_file, s.binlog_pos) != (0, 0)) {
        let here = (s.binlog_file, s.binlog_pos);
        if last == Some(here) {
            continue;
        }
        positions.push_str(&format!(
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            format_ms(Some(s.at_ms)),
            s.binlog_file,
            s.binlog_pos
        ));
        last = Some(here);
        shown += 1;
        if shown == 20 {
            break;
        }
    }
    if positions.is_empty() {
        positions = "<tr><td colspan=\"3\" class=\"empty\">No position delivered yet.</td></tr>".into();
    }
    let mut errors = String::new();
    for (at, st, msg) in state.history.errors(id).iter().rev() {
        errors.push_str(&format!("<li><time>{}</time> <b>{}</b> {}</li>", format_ms(Some(*at)), esc(st), esc(msg)));
    }
    if errors.is_empty() {
        errors = "<li class=\"empty\">None in the last hour.</li>".into();
    }
    let spec = serde_json::to_string_pretty(&serde_json::json!({ "task": detail.task })).unwrap_or_default();
    let editor = if act {
        format!(
            "<section id=\"alter\"><h2>Alter</h2><p class=\"hint\">Edit and save; passwords left out are kept.</p>\
             <textarea id=\"spec-editor\" data-id=\"{id}\" spellcheck=\"false\" rows=\"18\">{}</textarea>\
             <div class=\"actions\"><button data-action=\"alter\" data-id=\"{id}\">Save</button></div>\
             <div id=\"alter-error\" class=\"error\" role=\"alert\" hidden></div></section>",
            esc(&spec)
        )
    } else {
        format!("<h2>Spec</h2><pre id=\"spec\">{}</pre>", esc(&spec))
    };
    let (rows, bytes) = stats.as_ref().map_or((0, 0), |s| (s.rows_produced(), s.bytes_produced()));
    let body = format!(
        "<h1>Task {id} <span class=\"state state-{st}\" id=\"task-state\">{st}</span></h1>{actions}\
         <div id=\"action-error\" class=\"error\" role=\"alert\" hidden></div>\
         <dl class=\"facts\"><dt>Lag</dt><dd id=\"lag\">{lag}</dd><dt>Throughput</dt><dd>{rate}</dd>\
         <dt>Position</dt><dd>{pos}</dd><dt>Commit time</dt><dd>{tt}</dd><dt>Node</dt><dd>{node}</dd>\
         <dt>Desired</dt><dd>{desired}</dd><dt>Rows produced</dt><dd>{rows}</dd><dt>Bytes produced</dt><dd>{bytes}</dd>\
         <dt>Source</dt><dd>{src}</dd><dt>Kafka</dt><dd>{dst}</dd><dt>Message</dt><dd>{msg}</dd></dl>\
         {snapshot}<div class=\"charts\">{lag_chart}{rate_chart}</div>\
         <h2>Position history</h2><table><thead><tr><th>Sampled</th><th>Binlog file</th><th>Position</th></tr></thead>\
         <tbody>{positions}</tbody></table><h2>Recent errors</h2><ul class=\"errors\">{errors}</ul>{editor}",
        st = detail.state,
        lag = fmt_lag(lag),
        rate = fmt_rate(state.history.throughput(id)),
        pos = esc(detail.pos),
        tt = detail.transaction_time,
        node = esc(detail.service_addr),
        desired = detail.desired_state,
        src = esc(detail.source_addr),
        dst = esc(detail.dest_addr),
        msg = esc(detail.message),
        lag_chart = chart("lag-chart", "Lag (seconds), last hour", &lag_points),
        rate_chart = chart("rate-chart", "Throughput (rows/s), last hour", &rate_points),
    );
    Ok(html_page(layout(Page::Task, &format!("Task {id}"), &body)))
}

/// `GET /ui/workers`.
async fn workers(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let lease_ms = state.cluster.as_ref().map_or(10_000, |c| c.lease_ms);
    let placements = state.store.placements().await?;
    let act = can_act(&req);
    let mut rows = String::new();
    for w in state.store.workers().await? {
        let age = now - w.heartbeat_at;
        let st = if age > lease_ms { "dead" } else { w.state.as_str() };
        let n = placements.iter().filter(|p| p.worker_id.as_deref() == Some(w.id.as_str())).count();
        let button = match (act, st) {
            (false, _) => String::new(),
            (true, "draining") => {
                format!("<button data-action=\"activate\" data-worker=\"{}\">Activate</button>", esc(&w.id))
            }
            (true, _) => format!("<button data-action=\"drain\" data-worker=\"{}\">Drain</button>", esc(&w.id)),
        };
        rows.push_str(&format!(
            "<tr data-worker-id=\"{id}\"><td>{id}</td><td>{addr}</td><td><span class=\"state state-{st}\">{st}</span></td>\
             <td class=\"num\">{n}</td><td class=\"num\">{cap}</td><td class=\"num\">{age:.1} s</td><td>{ver}</td><td>{button}</td></tr>",
            id = esc(&w.id),
            addr = esc(&w.addr),
            cap = w.capacity,
            age = age as f64 / 1000.0,
            ver = esc(&w.version),
        ));
    }
    if rows.is_empty() {
        rows = "<tr><td colspan=\"8\" class=\"empty\">No worker nodes: this is a standalone node, or no \
                <code>dts worker</code> has joined yet.</td></tr>"
            .into();
    }
    let body = format!(
        "<h1>Workers</h1><div id=\"action-error\" class=\"error\" role=\"alert\" hidden></div>\
         <table id=\"workers\"><thead><tr><th>ID</th><th>Address</th><th>State</th><th>Tasks</th><th>Capacity</th>\
         <th>Heartbeat age</th><th>Version</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    );
    Ok(html_page(layout(Page::Workers, "Workers", &body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(fmt_lag(None), "–");
        assert_eq!(fmt_lag(Some(0.25)), "0.2 s");
        assert_eq!(fmt_lag(Some(42.4)), "42 s");
        assert_eq!(fmt_lag(Some(7200.0)), "2.0 h");
        assert_eq!(fmt_rate(Some(1234.4)), "1234/s");
        assert_eq!(fmt_rate(Some(0.5)), "0.5/s");
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(12_345_678), "12,345,678");
    }

    #[test]
    fn a_copy_under_way_reads_as_tables_rows_and_share() {
        let stats = TaskStats::default();
        assert_eq!(copy_progress(&stats), None, "no copy reported");
        let table = |name: &str, rows, estimated_rows, done| dts_core::wire::TableCopyFigures {
            table: name.into(),
            rows,
            chunks: 1,
            estimated_rows,
            done,
        };
        stats.snapshot(1, 3, 1_500_000);
        stats.snapshot_tables(|t| {
            *t = vec![
                table("shop.a", 1_000_000, Some(900_000), true),
                table("shop.b", 500_000, Some(2_000_000), false),
                table("shop.c", 0, Some(1_100_000), false),
            ]
        });
        // shop.a copied more than its estimate: the estimate counts as 1,000,000.
        assert_eq!(copy_progress(&stats).as_deref(), Some("1/3 tables, 1,500,000 rows of ~4,100,000 (36%)"));
        // No estimates (an empty catalogue): rows only.
        stats.snapshot_tables(|t| *t = vec![table("shop.d", 10, None, false)]);
        stats.snapshot(0, 1, 10);
        assert_eq!(copy_progress(&stats).as_deref(), Some("0/1 tables, 10 rows"));
    }
}
