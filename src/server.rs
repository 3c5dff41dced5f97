//! The local HTTP endpoint: `/metrics` (the last snapshot plus the service's
//! own metrics), `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::exposition;
use crate::inventory::Snapshot;
use crate::readiness::FIRST_SNAPSHOT;
use crate::telemetry::Telemetry;

/// What the endpoints show; shared with the tick loop that updates it.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Labels left out of `/metrics` (job and external labels).
    omit: Vec<String>,
}

impl Shared {
    pub fn new(telemetry: Arc<Telemetry>, omit: Vec<String>) -> Self {
        Shared {
            telemetry,
            snapshot: RwLock::default(),
            omit,
        }
    }

    /// Publishes a new snapshot; the first one clears the
    /// [`FIRST_SNAPSHOT`] readiness condition.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        *self.snapshot.write().expect("snapshot lock poisoned") = snapshot;
        self.telemetry.readiness.clear(FIRST_SNAPSHOT);
    }

    fn metrics_text(&self) -> String {
        let snapshot = self
            .snapshot
            .read()
            .expect("snapshot lock poisoned")
            .clone();
        let omit: Vec<&str> = self.omit.iter().map(String::as_str).collect();
        exposition::render(&snapshot, &omit, &self.telemetry.registry.gather())
    }
}

/// Binds the address and serves until the process ends.
pub async fn serve(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "local HTTP server stopped");
        }
    }))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // Rendering 100k series takes a while; keep it off the async workers.
    let text = tokio::task::spawn_blocking(move || shared.metrics_text())
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text)
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
