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

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use prometheus::{IntGauge, Registry};

use crate::readiness::Readiness;
use crate::telemetry::{opts, register};

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

/// Where a pod's service account namespace is mounted.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace of the Lease, and where it came from (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseNamespace {
    pub name: String,
    pub source: &'static str,
}

/// What this replica competes for the Lease with, from the leader-election
/// flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSettings {
    pub lease_name: String,
    /// `--lease-namespace`.
    pub lease_namespace: Option<String>,
    /// `--pod-namespace` (`$POD_NAMESPACE` from the downward API).
    pub pod_namespace: Option<String>,
    /// This replica's name in the Lease.
    pub identity: String,
    pub lease_duration: Duration,
}

impl LeaderSettings {
    /// The Lease's namespace ([`lease_namespace`]) for this process: its
    /// flags, its service account mount and its Kubernetes client.
    pub fn lease_namespace(&self, client: &Client) -> LeaseNamespace {
        let service_account = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok();
        lease_namespace(
            self.lease_namespace.as_deref(),
            self.pod_namespace.as_deref(),
            service_account.as_deref(),
            client.default_namespace(),
        )
    }
}

/// The Lease's namespace in client-go's order: `--lease-namespace`, else
/// `--pod-namespace` (`$POD_NAMESPACE`), else the in-cluster service
/// account's namespace, else the namespace of the client's configuration
/// (the kubeconfig context's, which `kube` makes "default" when the context
/// names none). Empty values count as absent.
pub fn lease_namespace(
    flag: Option<&str>,
    pod_namespace: Option<&str>,
    service_account: Option<&str>,
    client_default: &str,
) -> LeaseNamespace {
    [
        (flag, "--lease-namespace"),
        (pod_namespace, "--pod-namespace"),
        (service_account, "the service account"),
    ]
    .into_iter()
    .find_map(|(value, source)| {
        let name = value.map(str::trim).filter(|n| !n.is_empty())?;
        Some(LeaseNamespace {
            name: name.to_owned(),
            source,
        })
    })
    .unwrap_or_else(|| LeaseNamespace {
        name: client_default.to_owned(),
        source: "the kubeconfig context",
    })
}

/// This replica's name in the Lease: the pod name where Kubernetes gives
/// it (`--pod-name`, else `$HOSTNAME`), else one unique on this host.
pub fn identity(pod_name: Option<&str>, hostname: Option<&str>, pid: u32) -> String {
    [pod_name, hostname]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .map_or_else(|| format!("container-image-pusher-{pid}"), str::to_owned)
}

/// [`identity`] of this process: `$HOSTNAME` is what the container runtime
/// names it when the manifests do not pass the pod's name.
pub fn identity_of_this_process(pod_name: Option<&str>) -> String {
    identity(
        pod_name,
        std::env::var("HOSTNAME").ok().as_deref(),
        std::process::id(),
    )
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

/// Leadership as the [`LeaderElection`] handle and the task share it.
struct Status {
    leader: watch::Sender<bool>,
    /// While leader: until when the Lease is certainly ours (the start of
    /// the last successful write plus the renew deadline).
    valid_until: Mutex<Option<Instant>>,
}

impl Status {
    fn is_leader(&self) -> bool {
        *self.leader.borrow()
            && self
                .valid_until()
                .is_some_and(|until| Instant::now() < until)
    }

    fn valid_until(&self) -> Option<Instant> {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Leader until `valid_until`, or not leader (`None`); true when that
    /// changed leadership.
    fn set(&self, valid_until: Option<Instant>) -> bool {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = valid_until;
        let leader = valid_until.is_some();
        self.leader.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        })
    }
}

/// The periods derived from the lease duration, in client-go's ratios
/// (15 s lease, 10 s renew deadline, 2 s retry period).
#[derive(Debug, Clone, Copy)]
struct Timings {
    /// `leaseDurationSeconds` written to the Lease: the duration rounded
    /// up to whole seconds (at least 1).
    lease_seconds: i32,
    /// How long a Lease without `leaseDurationSeconds` lasts.
    lease_duration: Duration,
    /// A leader renews this long after its last successful write.
    renew_interval: Duration,
    /// A leader that could not renew for this long stops leading. Shorter
    /// than the lease duration, so it stops before anyone may take over.
    renew_deadline: Duration,
    /// How often a candidate reads the Lease, and a failed renewal is retried.
    retry_period: Duration,
    /// The longest wait between two attempts of a candidate the API keeps
    /// refusing or not answering: long enough not to hammer the API (and
    /// the log) for hours, short enough that a fixed Role is noticed soon.
    max_backoff: Duration,
}

impl Timings {
    fn new(lease_duration: Duration) -> Timings {
        let lease_duration = lease_duration.max(Duration::from_millis(100));
        let seconds = lease_duration.as_secs() + u64::from(lease_duration.subsec_nanos() > 0);
        Timings {
            lease_seconds: i32::try_from(seconds.max(1)).unwrap_or(i32::MAX),
            lease_duration,
            renew_interval: lease_duration / 3,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration / 7,
            max_backoff: lease_duration * 2,
        }
    }

    /// The wait after `failures` failed steps in a row: the retry period,
    /// doubled for each failure after the first, at most `max_backoff`.
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.retry_period
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// Why a request to the Lease API failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    fn status(&self) -> Option<&kube::core::Status> {
        match self {
            CallError::Kube(kube::Error::Api(status)) => Some(status),
            _ => None,
        }
    }

    fn is_conflict(&self) -> bool {
        self.status().is_some_and(|s| s.is_conflict())
    }

    fn is_forbidden(&self) -> bool {
        self.status().is_some_and(|s| s.code == 403)
    }
}

/// The outcome of one step of the protocol.
enum Step {
    /// The API answered every request as the protocol expects (conflicts
    /// included); the next step is due after this long.
    Answered(Duration),
    /// Nothing was asked of the API (too early to renew, or leadership
    /// just lapsed).
    Idle(Duration),
    /// A request failed.
    Failed(Failure),
}

/// A failed request: what was being done, with which verb, and the answer.
struct Failure {
    action: &'static str,
    verb: &'static str,
    error: CallError,
}

impl Step {
    fn failed(action: &'static str, verb: &'static str, error: CallError) -> Step {
        Step::Failed(Failure {
            action,
            verb,
            error,
        })
    }
}

/// What keeps failing, so each change is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    /// The API refuses this verb on the Lease (RBAC).
    Forbidden { verb: &'static str },
    /// No answer, or an error other than 403.
    Unreachable,
}

/// The background task's state.
struct Candidate {
    api: Api<Lease>,
    /// `namespace/name`, as logs show the Lease.
    path: String,
    namespace: String,
    name: String,
    identity: String,
    timings: Timings,
    status: Arc<Status>,
    metrics: Metrics,
    readiness: Arc<Readiness>,
    /// The Lease as last read or written (its resourceVersion guards the
    /// next update).
    lease: Option<Lease>,
    /// The resourceVersion of the Lease as first seen, and when: the
    /// Lease expires `leaseDurationSeconds` after that unless it changes.
    observed: Option<(String, Instant)>,
    /// While leader: when the last successful acquisition or renewal was
    /// sent.
    renewed: Option<Instant>,
    /// The holder last logged, so each change is logged once.
    holder_seen: Option<Option<String>>,
    /// The problem in progress: logged at warn when it starts or changes,
    /// repeats at debug.
    problem: Option<Problem>,
    /// Failed steps since the API last answered, for the backoff.
    failures: u32,
}

impl Candidate {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        loop {
            let step = if self.renewed.is_some() {
                self.renew().await
            } else {
                self.try_acquire().await
            };
            let wait = match step {
                Step::Answered(wait) => {
                    self.answered();
                    wait
                }
                Step::Idle(wait) => wait,
                Step::Failed(failure) => {
                    self.failed(&failure);
                    self.retry_after_failure()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                asked = &mut shutdown => {
                    // A dropped handle (`Err`) is a crash as far as the
                    // Lease is concerned: nothing is released.
                    if asked.is_ok() {
                        self.release().await;
                    }
                    return;
                }
            }
        }
    }

    /// One attempt of a candidate.
    async fn try_acquire(&mut self) -> Step {
        let retry = self.timings.retry_period;
        let limit = self.timings.renew_interval;
        let started = Instant::now();
        let lease = match call(limit, self.api.get_opt(&self.name)).await {
            Ok(lease) => lease,
            Err(error) => return Step::failed("read the lease", "get", error),
        };
        let Some(lease) = lease else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.timings.lease_seconds),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match call(limit, self.api.create(&PostParams::default(), &lease)).await {
                Ok(created) => {
                    self.became_leader(created, started);
                    Step::Answered(self.timings.renew_interval)
                }
                Err(CallError::Kube(kube::Error::Api(status))) if status.is_already_exists() => {
                    debug!(lease = %self.path, "another candidate created the lease first");
                    Step::Answered(Duration::ZERO)
                }
                Err(error) => Step::failed("create the lease", "create", error),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        self.log_holder(&holder);
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if holder.is_some() && !ours && !self.expired(&spec) {
            return Step::Answered(retry);
        }
        // Free, expired, or ours from an earlier life of this identity.
        let mut update = lease.clone();
        let new_spec = update.spec.get_or_insert_with(LeaseSpec::default);
        if !ours {
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            new_spec.acquire_time = Some(now());
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(self.timings.lease_seconds);
        new_spec.renew_time = Some(now());
        match call(
            limit,
            self.api
                .replace(&self.name, &PostParams::default(), &update),
        )
        .await
        {
            Ok(written) => {
                if let Some(previous) = holder.filter(|_| !ours) {
                    info!(lease = %self.path, previous = %previous, "took over the lease");
                }
                self.became_leader(written, started);
                Step::Answered(self.timings.renew_interval)
            }
            Err(error) if error.is_conflict() => {
                debug!(lease = %self.path, "another candidate wrote the lease first");
                Step::Answered(retry)
            }
            Err(error) => Step::failed("take the lease", "update", error),
        }
    }

    /// One renewal by the leader.
    async fn renew(&mut self) -> Step {
        let started = Instant::now();
        let renewed = self.renewed.unwrap_or(started);
        let deadline = renewed + self.timings.renew_deadline;
        let next_renewal = renewed + self.timings.renew_interval;
        if started < next_renewal {
            // Woken early (e.g. right after acquiring): nothing to do yet.
            return Step::Idle(next_renewal - started);
        }
        if started >= deadline {
            self.lost("could not renew the lease in time");
            return Step::Idle(Duration::ZERO);
        }
        let Some(mut update) = self.lease.clone() else {
            self.lost("the lease is unknown");
            return Step::Idle(Duration::ZERO);
        };
        let spec = update.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.timings.lease_seconds);
        spec.renew_time = Some(now());
        let result = call(
            deadline - started,
            self.api
                .replace(&self.name, &PostParams::default(), &update),
        )
        .await;
        match result {
            Ok(written) => {
                self.renewed = Some(started);
                self.lease = Some(written);
                self.status.set(Some(started + self.timings.renew_deadline));
                Step::Answered(self.timings.renew_interval)
            }
            Err(error) if error.is_conflict() => {
                // Written since we last did: still ours only if nobody
                // took it over.
                let limit = deadline.saturating_duration_since(Instant::now());
                match call(limit, self.api.get_opt(&self.name)).await {
                    Ok(Some(lease)) => {
                        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
                        let still_ours = holder.as_deref() == Some(self.identity.as_str());
                        self.observe(&lease);
                        self.lease = Some(lease);
                        if !still_ours {
                            self.lost("another replica took the lease over");
                            self.log_holder(&holder);
                        }
                        // When still ours, renew again at once from the
                        // version just read (still bounded by the deadline).
                        Step::Answered(Duration::ZERO)
                    }
                    Ok(None) => {
                        self.lost("the lease was deleted");
                        Step::Answered(Duration::ZERO)
                    }
                    Err(error) => Step::failed("read the lease", "get", error),
                }
            }
            Err(error) => Step::failed("renew the lease", "update", error),
        }
    }

    /// Clears the holder, so another candidate takes over at its next read.
    async fn release(&mut self) {
        if self.renewed.take().is_none() {
            return;
        }
        // Stop acting as leader before anyone else can start.
        self.set_leader(None);
        let limit = self.timings.renew_interval;
        for _ in 0..3 {
            let Some(mut update) = self.lease.clone() else {
                return;
            };
            let spec = update.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now());
            spec.renew_time = Some(now());
            match call(
                limit,
                self.api
                    .replace(&self.name, &PostParams::default(), &update),
            )
            .await
            {
                Ok(_) => {
                    info!(lease = %self.path, "released the leader lease");
                    return;
                }
                Err(error) if error.is_conflict() => {
                    match call(limit, self.api.get_opt(&self.name)).await {
                        Ok(Some(lease))
                            if lease
                                .spec
                                .as_ref()
                                .and_then(|s| s.holder_identity.as_deref())
                                == Some(self.identity.as_str()) =>
                        {
                            self.lease = Some(lease);
                        }
                        // Not ours any more (or gone): nothing to release.
                        Ok(_) => return,
                        Err(error) => {
                            warn!(lease = %self.path, error = %error, "cannot release the lease; it expires on its own");
                            return;
                        }
                    }
                }
                Err(error) => {
                    warn!(lease = %self.path, error = %error, "cannot release the lease; it expires on its own");
                    return;
                }
            }
        }
    }

    fn became_leader(&mut self, lease: Lease, started: Instant) {
        let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions);
        self.observe(&lease);
        self.lease = Some(lease);
        self.renewed = Some(started);
        self.holder_seen = Some(Some(self.identity.clone()));
        if self.set_leader(Some(started + self.timings.renew_deadline)) {
            info!(lease = %self.path, identity = %self.identity, transitions, "became the leader");
        }
    }

    fn lost(&mut self, why: &str) {
        self.renewed = None;
        if self.set_leader(None) {
            info!(lease = %self.path, identity = %self.identity, why, "stopped being the leader");
        }
    }

    fn set_leader(&self, valid_until: Option<Instant>) -> bool {
        let changed = self.status.set(valid_until);
        self.metrics.leader.set(i64::from(valid_until.is_some()));
        changed
    }

    /// Notes when this version of the Lease was first seen.
    fn observe(&mut self, lease: &Lease) {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        if self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| *seen != version)
        {
            self.observed = Some((version, Instant::now()));
        }
    }

    /// Whether the Lease as last observed has gone unrenewed for its duration.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timings.lease_duration, Duration::from_secs);
        self.observed
            .as_ref()
            .is_none_or(|(_, seen)| seen.elapsed() >= duration)
    }

    fn log_holder(&mut self, holder: &Option<String>) {
        if self.holder_seen.as_ref() == Some(holder) {
            return;
        }
        match holder {
            Some(holder) if *holder != self.identity => {
                info!(lease = %self.path, holder = %holder, "another replica holds the lease; standing by");
            }
            _ => debug!(lease = %self.path, ?holder, "lease holder"),
        }
        self.holder_seen = Some(holder.clone());
    }

    fn failed(&mut self, failure: &Failure) {
        self.failures = self.failures.saturating_add(1);
        let problem = if failure.error.is_forbidden() {
            Problem::Forbidden { verb: failure.verb }
        } else {
            Problem::Unreachable
        };
        let error = format!("{}: {}", failure.action, failure.error);
        if self.problem == Some(problem) {
            debug!(lease = %self.path, error = %error, retry_in = ?self.backoff(), "lease API still failing");
            return;
        }
        self.problem = Some(problem);
        match problem {
            Problem::Forbidden { verb } => {
                warn!(
                    lease = %self.path,
                    error = %error,
                    "leader election: not allowed to {verb} the lease, so this replica cannot lead; \
                     grant get, create and update on leases in namespace {} (or name another with --lease-namespace)",
                    self.namespace
                );
                self.readiness.fail(
                    READINESS_CONDITION,
                    format!(
                        "not allowed to {verb} the lease {}, so this replica cannot lead: {}",
                        self.path, failure.error
                    ),
                );
            }
            // A readiness failure for a refusal stays until a step
            // succeeds: an outage proves nothing about permissions.
            Problem::Unreachable => {
                warn!(lease = %self.path, error = %error, "leader election: cannot reach the lease API; retrying");
            }
        }
    }

    /// After a failed step: a leader retries within its renew deadline, a
    /// candidate backs off exponentially.
    fn retry_after_failure(&self) -> Duration {
        match self.renewed {
            Some(renewed) => {
                let deadline = renewed + self.timings.renew_deadline;
                self.timings
                    .retry_period
                    .min(deadline.saturating_duration_since(Instant::now()))
            }
            None => self.backoff(),
        }
    }

    fn backoff(&self) -> Duration {
        self.timings.backoff(self.failures)
    }

    fn answered(&mut self) {
        self.failures = 0;
        let allowed_again = self.readiness.clear(READINESS_CONDITION);
        if self.problem.take().is_none() {
            return;
        }
        if allowed_again {
            info!(lease = %self.path, "leader election: allowed to use the lease again");
        } else {
            info!(lease = %self.path, "leader election: the lease API answers again");
        }
    }
}

/// Runs one API request with a time limit.
async fn call<T>(
    limit: Duration,
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(CallError::from),
        Err(_) => Err(CallError::Timeout(limit)),
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
