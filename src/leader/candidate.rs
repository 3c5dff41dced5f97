//! The election loop: the background task that reads, takes, renews and
//! releases the Lease, and says when the API refuses it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::lease_client::{call, now, CallError};
use super::status::Status;
use super::timings::Timings;
use super::{Metrics, READINESS_CONDITION};
use crate::readiness::Readiness;

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
pub(super) enum Problem {
    /// The API refuses this verb on the Lease (RBAC).
    Forbidden { verb: &'static str },
    /// No answer, or an error other than 403.
    Unreachable,
}

/// The background task's state.
pub(super) struct Candidate {
    pub(super) api: Api<Lease>,
    /// `namespace/name`, as logs show the Lease.
    pub(super) path: String,
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) identity: String,
    pub(super) timings: Timings,
    pub(super) status: Arc<Status>,
    pub(super) metrics: Metrics,
    pub(super) readiness: Arc<Readiness>,
    /// The Lease as last read or written (its resourceVersion guards the
    /// next update).
    pub(super) lease: Option<Lease>,
    /// The resourceVersion of the Lease as first seen, and when: the
    /// Lease expires `leaseDurationSeconds` after that unless it changes.
    pub(super) observed: Option<(String, Instant)>,
    /// While leader: when the last successful acquisition or renewal was
    /// sent.
    pub(super) renewed: Option<Instant>,
    /// The holder last logged, so each change is logged once.
    pub(super) holder_seen: Option<Option<String>>,
    /// The problem in progress: logged at warn when it starts or changes,
    /// repeats at debug.
    pub(super) problem: Option<Problem>,
    /// Failed steps since the API last answered, for the backoff.
    pub(super) failures: u32,
}

impl Candidate {
    pub(super) async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
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
