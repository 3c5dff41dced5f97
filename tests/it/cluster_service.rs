//! The long-running service against the Kubernetes API test server (real
//! watch streams) and real Prometheus: objects added, changed and deleted
//! between ticks, watches that end or expire, readiness, leader election.

use crate::support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use support::fixtures::{self, object};
use support::pusher::Pusher;
use support::{wait_until_async, KubeApi, SharedPrometheus};

fn pod(name: &str, image: &str) -> Pod {
    fixtures::pod("shop", name, image)
}

fn deployment(name: &str, image: &str) -> Deployment {
    fixtures::deployment("shop", name, image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_changes_reach_prometheus_with_stale_markers() {
    let (api, prometheus) = tokio::join!(KubeApi::start(), SharedPrometheus::scope());
    api.apply(&pod("stays", "127.0.0.1:1/stays:1"));
    api.apply(&pod("goes", "127.0.0.1:1/goes:1"));
    api.apply(&deployment("web", "127.0.0.1:1/web:1"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let pusher = Pusher::on_cluster(&kubeconfig, "300ms")
        .pushing_to_scope(&prometheus)
        .args(&["--external-label", "cluster=watch"])
        .start()
        .await;
    let ready = reqwest::get(format!("{}/readyz", pusher.base_url))
        .await
        .unwrap();
    let _ = ready; // may or may not be ready yet; it must turn ready below
    pusher
        .wait_for_query(&prometheus, "count(container_image_container_info)", |s| {
            s.first().map(|s| s.value) == Some(3.0)
        })
        .await;
    let ready = reqwest::get(format!("{}/readyz", pusher.base_url))
        .await
        .unwrap();
    assert!(
        ready.status().is_success(),
        "ready after the first lists and push"
    );

    // Between ticks: one added, one image changed, one deleted.
    api.apply(&pod("new", "127.0.0.1:1/new:1"));
    api.apply(&deployment("web", "127.0.0.1:1/web:2"));
    api.delete::<Pod>(Some("shop"), "goes");
    let moved = r#"container_image_container_info{image="127.0.0.1:1/web:2",kind="Deployment",cluster="watch"}"#;
    pusher
        .wait_for_each(
            &prometheus,
            &[
                (r#"container_image_container_info{name="new"}"#, 1),
                (r#"container_image_container_info{name="goes"}"#, 0),
                (
                    r#"container_image_container_info{image="127.0.0.1:1/web:1"}"#,
                    0,
                ),
                (moved, 1),
            ],
        )
        .await;

    // A watch that ends resumes; one whose history expired (410) re-lists,
    // and an object deleted meanwhile goes stale.
    api.close_watches();
    api.apply(&pod("after-close", "127.0.0.1:1/a:1"));
    pusher
        .wait_for_series(
            &prometheus,
            r#"container_image_container_info{name="after-close"}"#,
            1,
        )
        .await;
    api.delete::<Pod>(Some("shop"), "after-close");
    api.compact();
    api.close_watches();
    pusher
        .wait_for_series(
            &prometheus,
            r#"container_image_container_info{name="after-close"}"#,
            0,
        )
        .await;
    pusher
        .wait_for_query(&prometheus, "count(container_image_container_info)", |s| {
            s.first().map(|s| s.value) == Some(3.0)
        })
        .await;

    // Watches, not a LIST per tick.
    let lists = api
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/pods" && !r.is_watch())
        .count();
    assert!(
        lists <= 4,
        "pods were listed {lists} times: the inventory must be watch-fed"
    );
    let metrics = pusher.metrics().await;
    assert!(
        metrics.contains("container_image_pusher_watched_objects{kind=\"Pod\"} 2"),
        "{metrics}"
    );
}

/// Two replicas with --leader-election: only the leader pushes; when it
/// dies without releasing the Lease, the other takes over once the lease
/// expires, and series identity does not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    let api = KubeApi::start().await;
    let receiver = support::receiver::Receiver::start().await;
    api.apply(&pod("p", "127.0.0.1:1/p:1"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let replica = |name: &'static str| {
        let kubeconfig = kubeconfig.clone();
        let url = receiver.url();
        async move {
            Pusher::on_cluster(&kubeconfig, "300ms")
                .pushing_to(&url)
                .args(&[
                    "--leader-election",
                    "--lease-duration",
                    "2s",
                    "--lease-namespace",
                    "monitoring",
                ])
                .env("POD_NAME", name)
                .start()
                .await
        }
    };
    let mut first = replica("replica-a").await;
    let second = replica("replica-b").await;
    let leader_gauge = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("container_image_pusher_leader "))
            .map(str::to_owned)
    };
    let mut gauges = (None, None);
    let led_alone = wait_until_async(Duration::from_secs(20), async || {
        gauges = (
            leader_gauge(&first.metrics().await),
            leader_gauge(&second.metrics().await),
        );
        gauges.0.as_deref() == Some("1") && gauges.1.as_deref() == Some("0")
    })
    .await;
    assert!(led_alone, "replica-a never led alone: {gauges:?}");
    support::wait_for_http(
        &format!("{}/readyz", second.base_url),
        Duration::from_secs(10),
    )
    .await
    .expect("a standby turns ready too (a rollout waits for it)");
    first
        .wait_until(Duration::from_secs(10), "the leader pushing", async || {
            !receiver.received().is_empty()
        })
        .await;

    // Crash the leader: SIGKILL, so the Lease is not released.
    std::process::Command::new("kill")
        .arg("-KILL")
        .arg(first.child.id().to_string())
        .status()
        .unwrap();
    let killed = Instant::now();
    second
        .wait_until(
            Duration::from_secs(15),
            "the standby taking over",
            async || leader_gauge(&second.metrics().await).as_deref() == Some("1"),
        )
        .await;
    let took_over = killed.elapsed();
    assert!(
        took_over < Duration::from_secs(6),
        "took over after {took_over:?} with a 2 s lease"
    );
    let after = receiver.received().len();
    second
        .wait_until(
            Duration::from_secs(10),
            "the new leader pushing",
            async || receiver.received().len() > after,
        )
        .await;
    // Same series, whichever replica pushes: no per-replica label.
    let labels = |i: usize| {
        receiver.received()[i]
            .series()
            .into_iter()
            .map(|(l, _)| l)
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(0), labels(receiver.received().len() - 1));
    let _ = first.child.check_running();
}

fn daemon_set(name: &str, image: &str) -> DaemonSet {
    object(json!({
        "metadata": {"namespace": "kube-system", "name": name},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}
    }))
}

/// Polls `/metrics` until it has the exact `line`; panics with the
/// pusher's log after 20 s.
async fn wait_for_metric_line(pusher: &Pusher, line: &str) {
    pusher
        .metrics_when(Duration::from_secs(20), line, |metrics| {
            metrics.lines().any(|l| l == line)
        })
        .await;
}

/// The API server is killed and comes back with an empty watch cache and a
/// moment of 403 for DaemonSets: while it is down every series stays (no
/// stale markers), `/metrics` says which kinds are stale and `/readyz`
/// fails once that outlasts the grace period; once it is back, a
/// Deployment created right then reaches Prometheus within two ticks and
/// one deleted during the outage is gone, the DaemonSet never left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_api_server_restart_the_series_are_current_within_two_ticks() {
    let (api, prometheus) = tokio::join!(KubeApi::start(), SharedPrometheus::scope());
    api.apply(&pod("web", "127.0.0.1:1/web:1"));
    api.apply(&deployment("gone", "127.0.0.1:1/gone:1"));
    api.apply(&daemon_set("agent", "127.0.0.1:1/agent:1"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let interval = Duration::from_secs(3);
    let pusher = Pusher::on_cluster(&kubeconfig, "3s")
        .pushing_to_scope(&prometheus)
        .args(&["--watch-grace-period", "4s"])
        .start()
        .await;
    let count = "count(container_image_container_info)";
    pusher
        .wait_for_query(&prometheus, count, |s| {
            s.first().map(|s| s.value) == Some(3.0)
        })
        .await;
    wait_for_metric_line(
        &pusher,
        r#"container_image_pusher_inventory_stale{kind="Deployment"} 0"#,
    )
    .await;
    assert_eq!(pusher.readyz().await.0, 200);

    api.stop();
    wait_for_metric_line(
        &pusher,
        r#"container_image_pusher_inventory_stale{kind="Deployment"} 1"#,
    )
    .await;
    let mut readyz = (0, String::new());
    let unready = wait_until_async(Duration::from_secs(20), async || {
        readyz = pusher.readyz().await;
        readyz.0 == 503
    })
    .await;
    let (status, body) = readyz;
    assert!(
        unready,
        "/readyz stayed {status} while the API server was down"
    );
    assert!(body.contains("inventory: "), "{body}");
    assert!(body.contains("not refreshed"), "{body}");
    // More than a tick into the outage: the stale inventory was pushed again
    // as it was.
    assert_eq!(
        prometheus.query(count).await.first().map(|s| s.value),
        Some(3.0)
    );

    api.delete::<Deployment>(Some("shop"), "gone");
    api.forbid_while_starting::<DaemonSet>(Duration::from_millis(1500));
    api.start_again().await;
    let back = Instant::now();
    api.apply(&deployment("new", "127.0.0.1:1/new:1"));
    let current = wait_until_async(2 * interval, async || {
        let agent = prometheus
            .query(r#"container_image_container_info{kind="DaemonSet"}"#)
            .await;
        assert_eq!(
            agent.len(),
            1,
            "the DaemonSet's series ended during a brief 403"
        );
        let new = prometheus
            .query(r#"container_image_container_info{name="new"}"#)
            .await;
        let gone = prometheus
            .query(r#"container_image_container_info{name="gone"}"#)
            .await;
        new.len() == 1 && gone.is_empty()
    })
    .await;
    assert!(
        current,
        "not current {:?} after the API server came back\n{}",
        back.elapsed(),
        pusher.child.logs()
    );
    eprintln!(
        "current {:?} after the API server came back",
        back.elapsed()
    );
    pusher
        .wait_until(Duration::from_secs(20), "ready again", async || {
            pusher.readyz().await.0 == 200
        })
        .await;
    wait_for_metric_line(
        &pusher,
        r#"container_image_pusher_inventory_stale{kind="DaemonSet"} 0"#,
    )
    .await;
}

/// list/watch on DaemonSets revoked while running: the open watch goes on
/// until it times out (`--watch-timeout`), the re-opened one is refused,
/// and after `--watch-grace-period` the DaemonSet's series end, while
/// `/metrics` says why and the replica stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_kind_ends_its_series_after_the_grace_period() {
    let (api, prometheus) = tokio::join!(KubeApi::start(), SharedPrometheus::scope());
    api.apply(&pod("web", "127.0.0.1:1/web:1"));
    api.apply(&daemon_set("agent", "127.0.0.1:1/agent:1"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let pusher = Pusher::on_cluster(&kubeconfig, "300ms")
        .pushing_to_scope(&prometheus)
        .args(&["--watch-timeout", "1s", "--watch-grace-period", "2s"])
        .start()
        .await;
    let agent = r#"container_image_container_info{kind="DaemonSet"}"#;
    pusher.wait_for_series(&prometheus, agent, 1).await;
    api.wait_for_watch::<DaemonSet>(Duration::from_secs(20))
        .await;

    api.forbid::<DaemonSet>();
    wait_for_metric_line(
        &pusher,
        r#"container_image_pusher_inventory_stale{kind="DaemonSet"} 1"#,
    )
    .await;
    let refused = Instant::now();
    pusher.wait_for_series(&prometheus, agent, 0).await;
    assert!(
        refused.elapsed() >= Duration::from_millis(1500),
        "the series ended before the grace period was over"
    );
    let metrics = pusher.metrics().await;
    assert!(
        metrics.contains(
            r#"container_image_pusher_discovery_errors_total{kind="DaemonSet",reason="forbidden"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"container_image_pusher_watched_objects{kind="DaemonSet"} 0"#),
        "{metrics}"
    );
    assert_eq!(
        prometheus
            .query(r#"container_image_container_info{kind="Pod"}"#)
            .await
            .len(),
        1,
        "the other kinds go on"
    );
    assert_eq!(
        pusher.readyz().await.0,
        200,
        "a refused kind does not make the replica unready"
    );

    api.allow::<DaemonSet>();
    pusher.wait_for_series(&prometheus, agent, 1).await;
}
