//! The long-running service against the Kubernetes API test server (real
//! watch streams) and real Prometheus: objects added, changed and deleted
//! between ticks, watches that end or expire, readiness, leader election.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use serde_json::json;
use support::pusher::Pusher;
use support::{KubeApi, Prometheus};

fn object<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a valid Kubernetes object")
}

fn pod(name: &str, image: &str) -> Pod {
    object(
        json!({"metadata": {"namespace": "shop", "name": name}, "spec": {"containers": [{"name": "app", "image": image}]}}),
    )
}

fn deployment(name: &str, image: &str) -> Deployment {
    object(json!({
        "metadata": {"namespace": "shop", "name": name},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_changes_reach_prometheus_with_stale_markers() {
    container_image_pusher::install_crypto_provider();
    let (api, prometheus) = tokio::join!(KubeApi::start(), Prometheus::start());
    api.apply(&pod("stays", "127.0.0.1:1/stays:1"));
    api.apply(&pod("goes", "127.0.0.1:1/goes:1"));
    api.apply(&deployment("web", "127.0.0.1:1/web:1"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let pusher = Pusher::start(
        &[
            "--interval",
            "300ms",
            "--remote-write-url",
            &prometheus.write_url(),
            "--external-label",
            "cluster=watch",
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
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
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{name="new"}"#,
            |s| s.len() == 1,
        )
        .await;
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{name="goes"}"#,
            |s| s.is_empty(),
        )
        .await;
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{image="127.0.0.1:1/web:1"}"#,
            |s| s.is_empty(),
        )
        .await;
    pusher.wait_for_query(&prometheus, r#"container_image_container_info{image="127.0.0.1:1/web:2",kind="Deployment",cluster="watch"}"#, |s| s.len() == 1).await;

    // A watch that ends resumes; one whose history expired (410) re-lists,
    // and an object deleted meanwhile goes stale.
    api.close_watches();
    api.apply(&pod("after-close", "127.0.0.1:1/a:1"));
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{name="after-close"}"#,
            |s| s.len() == 1,
        )
        .await;
    api.delete::<Pod>(Some("shop"), "after-close");
    api.compact();
    api.close_watches();
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{name="after-close"}"#,
            |s| s.is_empty(),
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
    container_image_pusher::install_crypto_provider();
    let api = KubeApi::start().await;
    let receiver = support::receiver::Receiver::start().await;
    api.apply(&pod("p", "127.0.0.1:1/p:1"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let replica = |name: &'static str| {
        let kubeconfig = kubeconfig.clone();
        let url = receiver.url();
        async move {
            Pusher::start(
                &[
                    "--interval",
                    "300ms",
                    "--remote-write-url",
                    &url,
                    "--leader-election",
                    "--lease-duration",
                    "2s",
                    "--lease-namespace",
                    "monitoring",
                ],
                &[
                    ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                    ("POD_NAME", name),
                ],
            )
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (a, b) = (
            leader_gauge(&first.metrics().await),
            leader_gauge(&second.metrics().await),
        );
        if a.as_deref() == Some("1") && b.as_deref() == Some("0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica-a never led alone: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::wait_for_http(
        &format!("{}/readyz", second.base_url),
        Duration::from_secs(10),
    )
    .await
    .expect("a standby turns ready too (a rollout waits for it)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = receiver.received().len();
    assert!(before > 0, "the leader pushes");

    // Crash the leader: SIGKILL, so the Lease is not released.
    std::process::Command::new("kill")
        .arg("-KILL")
        .arg(first.child.id().to_string())
        .status()
        .unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(15);
    while leader_gauge(&second.metrics().await).as_deref() != Some("1") {
        assert!(
            Instant::now() < deadline,
            "the standby never took over\n{}",
            second.child.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took_over = killed.elapsed();
    assert!(
        took_over < Duration::from_secs(6),
        "took over after {took_over:?} with a 2 s lease"
    );
    let after = receiver.received().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(receiver.received().len() > after, "the new leader pushes");
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
