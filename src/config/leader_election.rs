//! The "Leader election" flags: which of several replicas pushes.

use std::time::Duration;

use clap::Args;

use super::values::parse_duration;

/// Which of several replicas pushes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Leader election")]
#[deny(missing_docs)]
pub struct LeaderElectionArgs {
    /// Coordinate replicas through a coordination.k8s.io Lease: only the
    /// leader pushes, the others keep their inventory warm and take over
    /// within --lease-duration.
    #[arg(long, env = "PUSHER_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(
        long,
        value_name = "NAME",
        env = "PUSHER_LEASE_NAME",
        default_value = "container-image-pusher"
    )]
    pub lease_name: String,

    /// Namespace of the Lease. Default: --pod-namespace, else the service
    /// account's namespace, else the kubeconfig context's namespace, else
    /// "default". The service account needs get, create and update on
    /// leases there.
    #[arg(long, value_name = "NAMESPACE", env = "PUSHER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a leader's lease lasts without renewal: the longest a
    /// crashed leader delays the takeover.
    #[arg(long, value_name = "DURATION", env = "PUSHER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// The namespace this replica's pod runs in, set from the downward API
    /// (metadata.namespace): the Lease's namespace when --lease-namespace is
    /// not given.
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// This replica's pod name, set from the downward API (metadata.name):
    /// its identity in the Lease. Default: $HOSTNAME (a pod's own name),
    /// else a name unique to this process.
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    pub pod_name: Option<String>,
}
