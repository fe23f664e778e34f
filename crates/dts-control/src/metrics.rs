//! `GET /metrics` (this node's figures plus the task store's view of the
//! cluster) and `GET /readyz`.

use actix_web::{web, HttpResponse};
use dts_metrics::store_view::StoreView;
use dts_metrics::task::{now_ms, STATES};
use serde_json::json;

use crate::envelope::{ok, ApiError};
use crate::AppState;

/// The exposition: node metrics, then every task's state, tasks by state
/// and, on control planes, workers by state and heartbeat age.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = StoreView::default();
    let placements = state.store.placements().await?;
    let mut by_state = std::collections::BTreeMap::<&str, usize>::new();
    for s in STATES {
        by_state.insert(s, 0);
    }
    for p in &placements {
        let name = p.state.as_str();
        view.task(p.id, name, &STATES);
        *by_state.entry(name).or_default() += 1;
    }
    for (name, n) in by_state {
        view.tasks_in(name, n);
    }
    if state.cluster.is_some() {
        let workers = state.store.workers().await?;
        let now = now_ms();
        for s in ["active", "draining"] {
            view.workers_in(s, workers.iter().filter(|w| w.state == s).count());
        }
        for w in &workers {
            view.worker_heartbeat_age(&w.id, (now - w.heartbeat_at).max(0) as f64 / 1000.0);
        }
    }
    Ok(HttpResponse::Ok().content_type(dts_metrics::CONTENT_TYPE).body(state.metrics.render(Some(view.registry()))))
}

/// Ready to serve: the task store answers.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(ok(json!({ "status": "ready", "store": state.store.backend().name() })))
}
