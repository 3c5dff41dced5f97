//! The "Sources" flags: where workloads are read from (the cluster or manifest files).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::values::parse_duration;

/// Where workloads are read from.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sources")]
#[deny(missing_docs)]
pub struct SourceArgs {
    /// Read workloads from these YAML/JSON files or directories ("-" for stdin)
    /// instead of a cluster. Multi-document YAML and `kind: List` are understood.
    #[arg(
        long = "manifests",
        value_name = "PATH",
        env = "PUSHER_MANIFESTS",
        value_delimiter = ','
    )]
    pub manifests: Vec<PathBuf>,

    /// Only read workloads in this namespace (repeatable). Default: all namespaces.
    #[arg(
        long = "namespace",
        value_name = "NAMESPACE",
        env = "PUSHER_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// How long a kind's watch may fail before /readyz reports the replica
    /// not ready, and how long a kind the API refuses (403) keeps its last
    /// known workloads before they leave the inventory and their series end
    /// (an API server that is starting refuses for a moment).
    #[arg(long, value_name = "DURATION", env = "PUSHER_WATCH_GRACE_PERIOD", default_value = "60s", value_parser = parse_duration)]
    pub watch_grace_period: Duration,

    /// How long one watch request stays open before it is re-opened; a
    /// revoked list/watch permission is noticed when it is (the API server
    /// checks RBAC when a watch opens, not on an open one).
    #[arg(long, value_name = "DURATION", env = "PUSHER_WATCH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub watch_timeout: Duration,

    /// Largest manifests file read, in bytes; a larger one is skipped,
    /// logged and counted (discovery_errors_total{reason="too_large"}).
    #[arg(long, value_name = "BYTES", env = "PUSHER_MANIFESTS_MAX_FILE_BYTES", default_value_t = crate::discovery::files::FileLimits::default().max_file_bytes)]
    pub manifests_max_file_bytes: u64,

    /// Most bytes of manifests files read in one snapshot; files past it
    /// are skipped, logged and counted (reason="too_large").
    #[arg(long, value_name = "BYTES", env = "PUSHER_MANIFESTS_MAX_TOTAL_BYTES", default_value_t = crate::discovery::files::FileLimits::default().max_total_bytes)]
    pub manifests_max_total_bytes: u64,
}
