//! The "Server" flags: the local HTTP listeners and self-metrics.

use std::net::SocketAddr;

use clap::Args;

/// The local HTTP server.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
#[deny(missing_docs)]
pub struct ServerArgs {
    /// Address of the local HTTP server for /metrics (the inventory and the
    /// service's own metrics), /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PUSHER_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: SocketAddr,

    /// Address of the health listener: the service's own metrics on
    /// /metrics (never the inventory), /healthz and /readyz, with
    /// connections of its own, so probes and health scrapes are answered
    /// however many clients read the inventory.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PUSHER_TELEMETRY_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    pub telemetry_address: SocketAddr,

    /// Push a small set of the service's own health metrics with every
    /// snapshot to every endpoint (last accepted push per endpoint, pushes,
    /// snapshot size and duration, stale kinds, leader, resolve failures by
    /// class, build info), so that its health arrives without a scrape.
    #[arg(
        long,
        value_name = "BOOL",
        env = "PUSHER_PUSH_SELF_METRICS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub push_self_metrics: bool,
}
