//! The local HTTP endpoints: `/metrics` (the last snapshot plus the
//! service's own metrics), `/healthz` and `/readyz` on the main listener,
//! and a health listener with the service's own metrics alone, `/healthz`
//! and `/readyz`, whose connections the inventory's readers cannot take.
//!
//! Anyone who can reach the port is a client, so what a client can make it
//! hold is bounded: a scrape renders the snapshot in chunks of
//! [`exposition::CHUNK_BYTES`](crate::encode::exposition::CHUNK_BYTES), each
//! when its reader has taken the ones before (a slow reader holds the
//! snapshot and a few chunks, not its text; one that goes away stops its
//! rendering), connections
//! are limited (idle ones evicted for new ones), headers must arrive within [`HEADER_READ_TIMEOUT`], and a
//! reader that takes nothing for [`WRITE_STALL_TIMEOUT`] is disconnected.

mod connections;
mod routes;
mod shared;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;

use connections::accept;
pub use connections::{Metrics, HEADER_READ_TIMEOUT, WRITE_STALL_TIMEOUT};
use routes::{metrics, routes, telemetry_metrics};
pub use shared::Shared;

/// Connections served at once on the main listener; past it a new
/// connection evicts an idle one, or is closed at once when all are busy.
/// Scrapers, probes and a curious human need a handful.
pub const MAX_CONNECTIONS: usize = 64;

/// Connections served at once on the health listener (--telemetry-address):
/// the kubelet's probes and a health scrape or two.
pub const MAX_TELEMETRY_CONNECTIONS: usize = 16;

/// Binds the address and serves `/metrics` (the inventory and the
/// service's own metrics), `/healthz` and `/readyz` until the process ends.
pub async fn serve(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = routes(get(metrics), &shared);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    Ok(accept(
        listener,
        app,
        MAX_CONNECTIONS,
        shared.metrics.clone(),
    ))
}

/// Binds the health listener and serves the service's own metrics on
/// `/metrics` (never the inventory), `/healthz` and `/readyz`, with
/// [`MAX_TELEMETRY_CONNECTIONS`] of its own: however many clients hold the
/// inventory port, probes and health scrapes are answered here.
pub async fn serve_telemetry(
    address: SocketAddr,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let app = routes(get(telemetry_metrics), &shared);
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "serving the health listener: own /metrics, /healthz and /readyz");
    Ok(accept(
        listener,
        app,
        MAX_TELEMETRY_CONNECTIONS,
        shared.metrics.clone(),
    ))
}

#[cfg(test)]
mod tests;
