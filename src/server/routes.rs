//! What the listeners answer: `/metrics` (the inventory and the service's
//! own metrics, or the latter alone), `/healthz` and `/readyz`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use axum::Router;

use super::shared::Shared;

/// What both listeners answer; only their `/metrics` differs.
pub(super) fn routes(metrics: MethodRouter<Arc<Shared>>, shared: &Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared.clone())
}

/// The service's own metrics alone, for the health listener.
pub(super) async fn telemetry_metrics(
    State(shared): State<Arc<Shared>>,
) -> axum::response::Response {
    match shared.telemetry_text() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "failed to render the service's own metrics for the health listener");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to render the service's own metrics; see the log\n",
            )
                .into_response()
        }
    }
}

/// The inventory and the service's own metrics; 500 if the inventory
/// could not be rendered, rather than a 200 that looks like an empty one.
pub(super) async fn metrics(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    let failed = |what: &str| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to render {what}; see the log\n"),
        )
            .into_response()
    };
    let Some(inventory) = shared.inventory_chunks().await else {
        return failed("the inventory");
    };
    let telemetry = match shared.telemetry_text() {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "failed to render the service's own metrics for /metrics");
            return failed("the service's own metrics");
        }
    };
    let telemetry = futures::stream::once(async { Ok(telemetry) });
    (
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        Body::from_stream(futures::StreamExt::chain(inventory, telemetry)),
    )
        .into_response()
}

/// 200 `ready`, or 503 with one `condition: reason` line per failing condition.
async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let failing = shared.telemetry.readiness.failing();
    if failing.is_empty() {
        return (StatusCode::OK, "ready\n".to_owned());
    }
    let text = failing
        .iter()
        .map(|(condition, reason)| format!("{condition}: {reason}\n"))
        .collect();
    (StatusCode::SERVICE_UNAVAILABLE, text)
}
