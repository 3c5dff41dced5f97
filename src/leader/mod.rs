//! Leader election through a `coordination.k8s.io/v1` Lease, so that of
//! several replicas only one pushes while the others keep warm.
//!
//! The protocol is client-go's (`tools/leaderelection`), with `get`,
//! `create` and `update` only — the verbs the deployed Role grants:
//! - a candidate reads the Lease every retry period; it creates it when
//!   missing, and takes it over when it has no holder or its holder has not
//!   renewed it for `leaseDurationSeconds`. Expiry is measured on the
//!   candidate's own monotonic clock from when it first saw the current
//!   version of the Lease, so clock skew between nodes does not matter;
//! - every write is an update carrying the `resourceVersion` that was read,
//!   so of two candidates writing at once one gets 409 Conflict and loses;
//! - the leader renews every `lease_duration / 3`, and stops being leader
//!   (before any candidate may take over) when it has not renewed for
//!   `2 × lease_duration / 3`;
//! - [`LeaderElection::release`] clears the holder, so a candidate takes
//!   over at its next read instead of waiting for the Lease to expire.
//!
//! `leaseTransitions` counts changes of holder.
//!
//! A request the API refuses (403) is a permission problem, not an outage:
//! a replica that may not write its Lease can never lead, so it is logged as
//! such once, fails the [`READINESS_CONDITION`] readiness condition until a
//! step of the protocol succeeds again, and is retried with a capped
//! exponential backoff (as is an unreachable API) rather than every retry
//! period.

mod candidate;
mod lease_client;
mod settings;
mod status;
mod timings;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use kube::Client;
use prometheus::{IntGauge, Registry};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::readiness::Readiness;
use crate::telemetry::{opts, register};
use candidate::Candidate;
pub use settings::{
    identity, identity_of_this_process, lease_namespace, LeaderSettings, LeaseNamespace,
};
use status::Status;
use timings::Timings;

/// The readiness condition failing while the API refuses this replica the
/// Lease: a pusher that can never push is not ready.
pub const READINESS_CONDITION: &str = "leader-election";

/// The leader election's metric.
#[derive(Clone)]
pub struct Metrics {
    /// 1 while this replica holds the leader lease (or leader election is off).
    pub leader: IntGauge,
}

impl Metrics {
    /// The leader gauge, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        Metrics {
            leader: register(
                registry,
                IntGauge::with_opts(opts(
                    "leader",
                    "1 while this replica pushes (holds the lease, or runs without leader election).",
                )),
            ),
        }
    }
}

/// Competes for a Lease; see the module documentation.
///
/// Dropping it stops competing without giving the Lease up (as a crash
/// would: another replica takes over once it expires); call
/// [`LeaderElection::release`] to hand over at once.
pub struct LeaderElection {
    status: Arc<Status>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    lease_duration: Duration,
    metrics: Metrics,
}

impl LeaderElection {
    /// Starts competing for `namespace/lease_name` as `identity`; returns
    /// at once. Renews while leader; when the holder stops renewing, another
    /// candidate takes over within `lease_duration` plus about two retry
    /// periods (`lease_duration / 7` each). Must be called on a tokio
    /// runtime.
    pub fn start(
        client: Client,
        namespace: String,
        lease_name: String,
        identity: String,
        lease_duration: Duration,
        metrics: Metrics,
        readiness: Arc<Readiness>,
    ) -> LeaderElection {
        let status = Arc::new(Status {
            leader: watch::channel(false).0,
            valid_until: Mutex::new(None),
        });
        metrics.leader.set(0);
        let (shutdown, shutdown_rx) = oneshot::channel();
        info!(lease = %format!("{namespace}/{lease_name}"), identity = %identity, ?lease_duration, "competing for the leader lease");
        let candidate = Candidate {
            api: Api::namespaced(client, &namespace),
            path: format!("{namespace}/{lease_name}"),
            namespace,
            name: lease_name,
            identity,
            timings: Timings::new(lease_duration),
            status: status.clone(),
            metrics: metrics.clone(),
            readiness,
            lease: None,
            observed: None,
            renewed: None,
            holder_seen: None,
            problem: None,
            failures: 0,
        };
        LeaderElection {
            status,
            shutdown: Some(shutdown),
            task: Some(tokio::spawn(candidate.run(shutdown_rx))),
            lease_duration,
            metrics,
        }
    }

    /// Whether this replica holds the Lease now. Turns false on its own
    /// once renewals have failed for too long, even before the background
    /// task notices.
    pub fn is_leader(&self) -> bool {
        self.status.is_leader()
    }

    /// Sees every change of leadership (the value is the new
    /// [`LeaderElection::is_leader`]).
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.status.leader.subscribe()
    }

    /// Gives the Lease up (so another replica takes over at once) and
    /// stops competing. Waits at most `lease_duration` for the API.
    pub async fn release(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(self.lease_duration, &mut task)
                .await
                .is_err()
            {
                warn!("the Kubernetes API did not answer in time; the lease is left to expire");
                task.abort();
            }
        }
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // Whatever the task was doing, this replica leads no more.
        self.status.set(None);
        self.metrics.leader.set(0);
    }
}
