//! Leader election (`leader::LeaderElection`) between candidates in one
//! process, against the Kubernetes API test server's Leases through the
//! real kube client: one leader at a time, release hands over at once, a
//! crashed leader is replaced once its lease expires, a leader whose lease
//! was taken steps down. Then the pusher binary under RBAC that refuses the
//! Lease (issue 12): outside a pod, and with a Role lacking `update`.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use container_image_pusher::leader::{LeaderElection, Metrics};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::Value;
use support::pusher::Pusher;
use support::receiver::Receiver;
use support::{holds_for, wait_until_async, KubeApi};
use tokio::time::Instant;

const NAMESPACE: &str = "pushers";
const LEASE: &str = "container-image-pusher";

struct Candidate {
    election: LeaderElection,
    metrics: Metrics,
}

async fn candidate(api: &KubeApi, identity: &str, lease_duration: Duration) -> Candidate {
    support::init_logs();
    let metrics = Metrics::new(&prometheus::Registry::new());
    let election = LeaderElection::start(
        api.kube_client().await,
        NAMESPACE.into(),
        LEASE.into(),
        identity.into(),
        lease_duration,
        metrics.clone(),
        Arc::default(),
    );
    Candidate { election, metrics }
}

fn lease(api: &KubeApi) -> Lease {
    api.object::<Lease>(Some(NAMESPACE), LEASE)
        .expect("the lease exists")
}

fn holder(api: &KubeApi) -> Option<String> {
    lease(api).spec.and_then(|s| s.holder_identity)
}

fn transitions(api: &KubeApi) -> i32 {
    lease(api)
        .spec
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

/// Samples every few milliseconds (often enough to catch two leaders at
/// once, hence not `support::wait_until`'s pace) until `done` holds (returning how long
/// that took) or `timeout` passes (panicking with `what`), and panics as
/// soon as two candidates lead at once.
async fn sample_until(
    candidates: &[&Candidate],
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let leaders = candidates.iter().filter(|c| c.election.is_leader()).count();
        assert!(leaders <= 1, "{leaders} candidates lead at once");
        if done() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Samples for `period` as densely as [`sample_until`], checking that
/// nobody else than `leader` leads.
async fn only_leader_for(candidates: &[&Candidate], leader: usize, period: Duration) {
    let started = Instant::now();
    while started.elapsed() < period {
        for (i, c) in candidates.iter().enumerate() {
            assert_eq!(
                c.election.is_leader(),
                i == leader,
                "candidate {i} after {:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until one of the candidates leads; returns its index.
async fn one_leads(candidates: &[&Candidate], timeout: Duration) -> usize {
    sample_until(candidates, "one candidate leads", timeout, || {
        candidates.iter().any(|c| c.election.is_leader())
    })
    .await;
    candidates
        .iter()
        .position(|c| c.election.is_leader())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_release_hands_over_at_once() {
    let api = KubeApi::start().await;
    // Long enough that a takeover by expiry could not pass for a handover.
    let lease_duration = Duration::from_secs(6);
    let a = candidate(&api, "pusher-a", lease_duration).await;
    let b = candidate(&api, "pusher-b", lease_duration).await;
    let mut changes = [a.election.changes(), b.election.changes()];
    let both = [&a, &b];
    let leader = one_leads(&both, Duration::from_secs(5)).await;
    let follower = 1 - leader;
    let names = ["pusher-a", "pusher-b"];
    assert_eq!(holder(&api).as_deref(), Some(names[leader]));
    assert_eq!(transitions(&api), 0, "created by its first holder");
    let spec = lease(&api).spec.unwrap();
    assert_eq!(spec.lease_duration_seconds, Some(6));
    let first_renewal = spec.renew_time.unwrap();
    // (Leadership may have come before the receiver was made: it then
    // starts out at the current value.)
    assert!(*changes[leader].borrow_and_update());
    assert!(!*changes[follower].borrow_and_update());
    assert_eq!(both[leader].metrics.leader.get(), 1);
    assert_eq!(both[follower].metrics.leader.get(), 0);

    // The leader renews, the other waits: no flapping over a lease duration.
    only_leader_for(&both, leader, lease_duration + Duration::from_secs(1)).await;
    assert!(lease(&api).spec.unwrap().renew_time.unwrap().0 > first_renewal.0);
    assert_eq!(holder(&api).as_deref(), Some(names[leader]));

    // Release: the other takes over at its next read, long before expiry.
    let (leader_handle, follower_handle) = if leader == 0 { (a, b) } else { (b, a) };
    let leader_metrics = leader_handle.metrics.clone();
    leader_handle.election.release().await;
    assert_eq!(leader_metrics.leader.get(), 0);
    let took = sample_until(
        &[&follower_handle],
        "the other takes over",
        lease_duration,
        || follower_handle.election.is_leader(),
    )
    .await;
    assert!(took < Duration::from_secs(2), "handover took {took:?}");
    assert_eq!(holder(&api).as_deref(), Some(names[follower]));
    assert_eq!(transitions(&api), 1);
    assert!(changes[follower].has_changed().unwrap());
    assert!(*changes[follower].borrow_and_update());
    assert_eq!(follower_handle.metrics.leader.get(), 1);
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_once_its_lease_expires() {
    let api = KubeApi::start().await;
    let lease_duration = Duration::from_secs(2);
    let a = candidate(&api, "pusher-a", lease_duration).await;
    let leader = one_leads(&[&a], Duration::from_secs(5)).await;
    assert_eq!(leader, 0);
    let b = candidate(&api, "pusher-b", lease_duration).await;
    only_leader_for(&[&a, &b], 0, Duration::from_millis(1500)).await;

    // A crash: no release, no more renewals.
    drop(a);
    let took = sample_until(
        &[&b],
        "the other takes over",
        Duration::from_secs(10),
        || b.election.is_leader(),
    )
    .await;
    // Not before the lease could have expired (the last renewal was at
    // most a third of the duration before the crash), and not much after.
    assert!(
        took >= Duration::from_secs(1),
        "took over after {took:?}, before the lease expired"
    );
    assert!(
        took <= lease_duration + Duration::from_millis(1500),
        "took over after {took:?}"
    );
    assert_eq!(holder(&api).as_deref(), Some("pusher-b"));
    assert_eq!(transitions(&api), 1);
}

#[tokio::test]
async fn a_leader_whose_lease_was_taken_steps_down_and_the_lease_comes_back_after_expiry() {
    let api = KubeApi::start().await;
    let lease_duration = Duration::from_secs(2);
    let a = candidate(&api, "pusher-a", lease_duration).await;
    one_leads(&[&a], Duration::from_secs(5)).await;
    let mut changes = a.election.changes();
    changes.borrow_and_update();

    // Someone else writes the lease (with the current resourceVersion).
    let leases: Api<Lease> = Api::namespaced(api.kube_client().await, NAMESPACE);
    let mut taken = leases.get(LEASE).await.unwrap();
    let spec = taken.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    leases
        .replace(LEASE, &PostParams::default(), &taken)
        .await
        .unwrap();

    // Its next renewal conflicts, and it finds the lease is not its own.
    sample_until(&[&a], "the leader steps down", lease_duration, || {
        !a.election.is_leader()
    })
    .await;
    assert!(changes.has_changed().unwrap());
    assert!(!*changes.borrow_and_update());
    assert_eq!(a.metrics.leader.get(), 0);
    assert_eq!(holder(&api).as_deref(), Some("intruder"));

    // The intruder never renews: after the lease duration it is taken back.
    sample_until(
        &[&a],
        "the lease is taken back",
        Duration::from_secs(10),
        || a.election.is_leader(),
    )
    .await;
    assert_eq!(holder(&api).as_deref(), Some("pusher-a"));
    assert_eq!(transitions(&api), 2);
}

#[tokio::test]
async fn nobody_leads_while_leases_are_forbidden() {
    let api = KubeApi::start().await;
    api.forbid::<Lease>();
    let a = candidate(&api, "pusher-a", Duration::from_secs(2)).await;
    let led = holds_for(Duration::from_secs(1), || !a.election.is_leader()).await;
    assert_eq!(led, Ok(()), "led while leases are forbidden");
    assert!(api.object::<Lease>(Some(NAMESPACE), LEASE).is_none());
    api.allow::<Lease>();
    one_leads(&[&a], Duration::from_secs(5)).await;
}

#[tokio::test]
async fn releasing_without_leading_leaves_the_lease_alone() {
    let api = KubeApi::start().await;
    let a = candidate(&api, "pusher-a", Duration::from_secs(2)).await;
    one_leads(&[&a], Duration::from_secs(5)).await;
    let b = candidate(&api, "pusher-b", Duration::from_secs(2)).await;
    // Let b read the lease at least once.
    only_leader_for(&[&a, &b], 0, Duration::from_millis(700)).await;
    b.election.release().await;
    only_leader_for(&[&a], 0, Duration::from_millis(700)).await;
    assert_eq!(holder(&api).as_deref(), Some("pusher-a"));
    assert_eq!(transitions(&api), 0);
}

/// The test server's Lease semantics the election relies on.
#[tokio::test]
async fn the_test_server_refuses_stale_and_duplicate_lease_writes() {
    let api = KubeApi::start().await;
    let leases: Api<Lease> = Api::namespaced(api.kube_client().await, NAMESPACE);
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "x", "leaseDurationSeconds": 5},
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert!(created.metadata.uid.is_some());
    let again = leases.create(&PostParams::default(), &lease).await;
    assert!(
        matches!(&again, Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists"),
        "{again:?}"
    );

    let mut first = created.clone();
    first.spec.as_mut().unwrap().holder_identity = Some("y".into());
    let written = leases
        .replace("l", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        written.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(written.metadata.uid, created.metadata.uid);
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("z".into());
    let lost = leases.replace("l", &PostParams::default(), &stale).await;
    assert!(
        matches!(&lost, Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict"),
        "{lost:?}"
    );
    assert_eq!(
        leases
            .get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("y")
    );
    let missing = leases
        .replace("missing", &PostParams::default(), &{
            let mut l = stale.clone();
            l.metadata.name = Some("missing".into());
            l
        })
        .await;
    assert!(
        matches!(&missing, Err(kube::Error::Api(s)) if s.code == 404),
        "{missing:?}"
    );

    // Workload kinds stay read-only.
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(api.kube_client().await, NAMESPACE);
    let pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}})).unwrap();
    let refused = pods.create(&PostParams::default(), &pod).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 405),
        "{refused:?}"
    );
}

// ---------------------------------------------------------------------------
// The pusher binary when RBAC refuses the Lease
// ---------------------------------------------------------------------------

/// What the pusher shows from outside at one moment.
struct Observed {
    ready: bool,
    readyz: String,
    leader: Option<String>,
    logs: String,
}

async fn observe(pusher: &Pusher) -> Observed {
    let response = reqwest::get(format!("{}/readyz", pusher.base_url))
        .await
        .expect("GET /readyz");
    let ready = response.status().is_success();
    let readyz = response.text().await.expect("the /readyz body");
    let leader = pusher
        .metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("container_image_pusher_leader "))
        .map(str::to_owned);
    Observed {
        ready,
        readyz,
        leader,
        logs: pusher.child.logs(),
    }
}

/// Polls until `done` holds; panics with the last observation and the log
/// after `timeout`.
async fn wait_for(
    pusher: &Pusher,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Observed) -> bool,
) -> Observed {
    let mut last = None;
    let in_time = wait_until_async(timeout, async || {
        let observed = observe(pusher).await;
        let done = done(&observed);
        last = Some(observed);
        done
    })
    .await;
    let observed = last.expect("observed at least once");
    assert!(
        in_time,
        "timed out after {timeout:?} waiting until {what}: ready {}, /readyz {:?}, leader {:?}\n{}",
        observed.ready, observed.readyz, observed.leader, observed.logs
    );
    observed
}

/// Lines of a `--log-format json` log at `level` (any level with `None`)
/// whose message contains `needle`.
fn log_lines(logs: &str, level: Option<&str>, needle: &str) -> usize {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| level.is_none_or(|level| line["level"] == level))
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        })
        .count()
}

/// Asserts that the log warned once that the lease was refused and said
/// once that it is allowed again.
fn assert_warned_once_and_allowed_again(logs: &str) {
    let again = log_lines(logs, Some("INFO"), "allowed to use the lease again");
    let warned = log_lines(logs, Some("WARN"), "not allowed to");
    assert_eq!((warned, again), (1, 1), "{logs}");
}

/// The test server's kubeconfig, with `namespace` as its context's.
fn kubeconfig_in(api: &KubeApi, dir: &Path, namespace: &str) -> PathBuf {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&api.kubeconfig_yaml()).expect("parse the kubeconfig");
    config["contexts"][0]["context"]["namespace"] = namespace.into();
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).expect("write the kubeconfig");
    path
}

fn lease_requests(api: &KubeApi, method: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains("/leases"))
        .count()
}

async fn start_pusher(api: &KubeApi, receiver: &Receiver, dir: &Path, args: &[&str]) -> Pusher {
    api.apply(
        &serde_json::from_value::<Pod>(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "p"},
            "spec": {"containers": [{"name": "app", "image": "127.0.0.1:1/p:1"}]},
        }))
        .unwrap(),
    );
    let kubeconfig = kubeconfig_in(api, dir, "container-image-pusher");
    Pusher::on_cluster(&kubeconfig, "300ms")
        .pushing_to(&receiver.url())
        .args(&["--leader-election", "--lease-duration", "1s"])
        .args(&["--log-format", "json"])
        .args(args)
        // Not in a pod: no namespace from the downward API (an empty value
        // counts as unset).
        .env("POD_NAMESPACE", "")
        .env("POD_NAME", "replica-a")
        .start()
        .await
}

/// Issue 12, item 5: outside a pod the Lease went to `default`, was refused,
/// and the replica stayed ready while it could never push, warning that it
/// "cannot reach the lease".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_pod_a_refused_lease_fails_readiness_until_it_is_allowed() {
    let api = KubeApi::start().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    api.forbid::<Lease>();
    let pusher = start_pusher(&api, &receiver, dir.path(), &[]).await;

    let refused = wait_for(
        &pusher,
        "/readyz fails for the lease alone",
        Duration::from_secs(20),
        |o| !o.ready && o.readyz.starts_with("leader-election:") && o.readyz.lines().count() == 1,
    )
    .await;
    assert!(
        refused
            .readyz
            .contains("not allowed to get the lease container-image-pusher/container-image-pusher"),
        "{}",
        refused.readyz
    );
    assert!(refused.readyz.contains("forbidden"), "{}", refused.readyz);
    // The kubeconfig context's namespace, not "default".
    let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths
            .iter()
            .any(|p| p.contains("/namespaces/container-image-pusher/leases/")),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("/namespaces/default/leases")),
        "{paths:?}"
    );

    // Retried, yet warned about once, and never leading.
    let before = lease_requests(&api, "GET");
    pusher
        .wait_until(Duration::from_secs(20), "the lease retried", async || {
            lease_requests(&api, "GET") >= before + 3
        })
        .await;
    let refused = observe(&pusher).await;
    assert!(!refused.ready);
    assert_eq!(refused.leader.as_deref(), Some("0"));
    assert_eq!(
        log_lines(&refused.logs, Some("WARN"), "not allowed to get the lease"),
        1,
        "{}",
        refused.logs
    );
    assert_eq!(log_lines(&refused.logs, None, "cannot reach the lease"), 0);
    assert!(
        receiver.received().is_empty(),
        "a replica that never led pushed"
    );

    api.allow::<Lease>();
    let allowed = wait_for(
        &pusher,
        "ready and leading once the lease is allowed",
        Duration::from_secs(20),
        |o| o.ready && o.leader.as_deref() == Some("1"),
    )
    .await;
    assert!(api
        .object::<Lease>(Some("container-image-pusher"), LEASE)
        .is_some());
    assert_warned_once_and_allowed_again(&allowed.logs);
    pusher
        .wait_until(
            Duration::from_secs(20),
            "the new leader pushing",
            async || !receiver.received().is_empty(),
        )
        .await;
}

/// Issue 12, item 6: with a Role lacking `update` the pusher created the
/// Lease, led, lost it, then logged "answers again" and "cannot reach the
/// lease" every retry period, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_update_on_leases_backs_off_and_says_so_once() {
    let api = KubeApi::start().await;
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    api.forbid_verb::<Lease>("update");
    let pusher = start_pusher(
        &api,
        &receiver,
        dir.path(),
        &["--lease-namespace", "monitoring"],
    )
    .await;

    let lost = wait_for(
        &pusher,
        "the lease is lost and readiness says why",
        Duration::from_secs(20),
        |o| {
            !o.ready
                && o.readyz
                    .contains("not allowed to update the lease monitoring/container-image-pusher")
                && log_lines(&o.logs, Some("INFO"), "stopped being the leader") == 1
                // /metrics is read before the log: it may predate the step-down.
                && o.leader.as_deref() == Some("0")
        },
    )
    .await;
    assert_eq!(
        log_lines(&lost.logs, Some("INFO"), "became the leader"),
        1,
        "it created the lease and led"
    );
    assert!(api.object::<Lease>(Some("monitoring"), LEASE).is_some());
    assert_eq!(lost.leader.as_deref(), Some("0"));

    // The period of the next few attempts to take the lease back: each is
    // refused; without a backoff they came every retry period (1 s / 7).
    let attempts = 4;
    let started = Instant::now();
    let before = lease_requests(&api, "PUT");
    pusher
        .wait_until(Duration::from_secs(30), "the lease retried", async || {
            lease_requests(&api, "PUT") >= before + attempts
        })
        .await;
    let period = started.elapsed();
    assert!(
        period >= Duration::from_secs(3),
        "{attempts} refused attempts within {period:?}: no backoff"
    );
    let refused = observe(&pusher).await;
    let new_lines =
        |needle: &str| log_lines(&refused.logs, None, needle) - log_lines(&lost.logs, None, needle);
    assert_eq!(new_lines("not allowed to"), 0, "{}", refused.logs);
    assert_eq!(new_lines("answers again"), 0, "{}", refused.logs);
    assert!(
        new_lines("lease API still failing") <= attempts + 1,
        "{}",
        refused.logs
    );
    assert_eq!(
        log_lines(
            &refused.logs,
            Some("WARN"),
            "not allowed to update the lease"
        ),
        1
    );
    assert!(!refused.ready);
    assert_eq!(refused.leader.as_deref(), Some("0"));

    api.allow_verb::<Lease>("update");
    let allowed = wait_for(
        &pusher,
        "ready and leading once update is allowed",
        Duration::from_secs(20),
        |o| o.ready && o.leader.as_deref() == Some("1"),
    )
    .await;
    assert_warned_once_and_allowed_again(&allowed.logs);
}
