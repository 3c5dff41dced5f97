//! End to end, with real peers on loopback: a Kubernetes API test server
//! (driven through the real kube client), Debian's `docker-registry` holding
//! images this test pushes, and Debian's `prometheus` receiving the push.
//! Assertions go through Prometheus' query API with the PromQL a user would
//! write, and through a strict receiver that checks the bytes on the wire.
//! The scenario and its assertions are `support::fixtures`, which
//! tests/it/receivers.rs runs against Prometheus 3 and VictoriaMetrics too.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use serde_json::json;
use support::fixtures::{
    containers, object, pod, pod_manifest, template, write_manifest, Scenario,
};
use support::receiver::{Receiver, Reply};
use support::wait_until_async;
use support::{KubeApi, Prometheus};

use support::pusher::{once_args, run_once, RunOutput, BIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_the_cluster_inventory_to_prometheus() {
    let (scenario, prometheus, receiver) =
        tokio::join!(Scenario::start(), Prometheus::start(), Receiver::start());
    scenario.api.set_max_page_size(2);

    let mut args: Vec<String> = [
        "--once",
        "--remote-write-url",
        &prometheus.write_url(),
        "--remote-write-url",
        &receiver.url(),
        "--max-series-per-request",
        "7",
    ]
    .map(String::from)
    .to_vec();
    args.extend(scenario.pusher_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let RunOutput { stderr, .. } = run_once(&args, Some(scenario.kubeconfig()))
        .await
        .assert_success();

    // The LIST followed `continue` tokens.
    let pod_lists: Vec<_> = scenario
        .api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert!(
        pod_lists.len() >= 3,
        "pods listed in pages of 2: {pod_lists:?}"
    );
    assert!(pod_lists.iter().all(|r| r.param("limit").is_some()));
    assert!(pod_lists
        .iter()
        .skip(1)
        .all(|r| r.param("continue").is_some()));

    scenario.assert_stored(&prometheus).await;

    // The same push, checked on the wire: valid requests of at most 7 series
    // that together hold what Prometheus holds.
    receiver.assert_valid();
    let received = receiver.received();
    assert!(received.iter().all(|r| r.request.timeseries.len() <= 7));
    let total: usize = received.iter().map(|r| r.request.timeseries.len()).sum();
    let in_prometheus = prometheus
        .query("count({__name__=~\"container_image_.+\"})")
        .await;
    assert_eq!(total as f64, in_prometheus[0].value);
    let timestamps: std::collections::HashSet<i64> = received
        .iter()
        .flat_map(|r| {
            r.request
                .timeseries
                .iter()
                .map(|ts| ts.samples[0].timestamp)
        })
        .collect();
    assert_eq!(timestamps.len(), 1, "one timestamp for the whole snapshot");
    assert!(received.iter().all(|r| r
        .request
        .timeseries
        .iter()
        .all(|ts| ts.labels.iter().any(|l| l.name == "cluster"))));
    assert!(received[0]
        .request
        .metadata
        .iter()
        .any(|m| m.metric_family_name == "container_image_container_info"));

    // Failures were explained in the log.
    assert!(
        stderr.contains("apps/missing:1") && stderr.contains("not_found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apps/Bad:Tag") && stderr.contains("invalid_reference"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_kind_is_skipped_and_the_rest_still_counts() {
    let api = KubeApi::start().await;
    api.apply(&pod("ns", "p", "127.0.0.1:1/a:1"));
    api.apply(&object::<DaemonSet>(json!({
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": template(json!({"containers": containers(&[("c", "127.0.0.1:1/b:1")])}))
    })));
    api.forbid::<DaemonSet>();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let RunOutput { stdout, stderr, .. } = run_once(
        &["--once", "--dry-run", "--registry-timeout", "5s"],
        Some(&kubeconfig),
    )
    .await
    .assert_success();
    assert!(stdout.contains(r#"kind="Pod""#), "{stdout}");
    assert!(!stdout.contains(r#"kind="DaemonSet""#), "{stdout}");
    assert_eq!(
        stderr.matches("not allowed to list").count(),
        1,
        "logged once: {stderr}"
    );
    assert!(stderr.contains("DaemonSet"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_fails_when_a_batch_is_rejected_but_sends_the_others() {
    let receiver = Receiver::start().await;
    receiver.script([
        Reply::status(204),
        // Refused as a whole (an out-of-order refusal is an overlap, not
        // a failure: tests/it/mimir.rs).
        Reply::status(400).body("snappy: corrupt input"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let pods: Vec<String> = (0..3)
        .map(|i| pod_manifest(&format!("p{i}"), &format!("127.0.0.1:1/app:{i}")))
        .collect();
    let manifests = write_manifest(dir.path(), "pods.yaml", &pods);
    let RunOutput { stderr, .. } = run_once(
        &once_args(
            manifests.to_str().unwrap(),
            &receiver.url(),
            &["--max-series-per-request", "1"],
        ),
        None,
    )
    .await
    .expect_failure("exit status must report the rejected batch");
    assert!(
        stderr.contains("400") && stderr.contains("snappy: corrupt input"),
        "{stderr}"
    );
    assert_eq!(
        receiver.received().len(),
        6,
        "6 series (3 containers, 3 resolve errors) in 6 requests: the 400 is not retried, the other batches still go out"
    );
    receiver.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_manifest(
        dir.path(),
        "pod.yaml",
        &[pod_manifest("p", "127.0.0.1:1/app:1")],
    );
    let port = support::free_port();
    let mut child = support::ChildGuard::spawn(
        "container-image-pusher",
        std::process::Command::new(BIN).args([
            "--manifests",
            manifests.to_str().unwrap(),
            "--metrics-address",
            &format!("127.0.0.1:{port}"),
            "--telemetry-address",
            "127.0.0.1:0",
            "--external-label",
            "cluster=local",
        ]),
    );
    let base = format!("http://127.0.0.1:{port}");
    support::wait_for_http(&format!("{base}/readyz"), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", child.logs()));
    child.check_running().unwrap();
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"container_image_container_info{container="c",image="127.0.0.1:1/app:1""#),
        "{text}"
    );
    assert!(
        !text.contains("cluster=\"local\"") && !text.contains("job=\"container-image-pusher\""),
        "no job/external labels on local /metrics: {text}"
    );
    assert!(
        text.contains(r#"container_image_pusher_resolve_failures_total{class="unavailable"}"#),
        "{text}"
    );
    assert!(
        text.contains("container_image_pusher_snapshot_containers 1"),
        "{text}"
    );
}

use crate::dashboard_queries;

/// A cosign public key (P-256) for the verification panels.
const VERIFY_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQsUyT3IB4rvLr2nYZo4Y/F3EAs37
cGGa4eDk9IWNPUV4cRTwGXh+BEUoMluwQ1LTTlwhxe/CsOTwrBWAhI9nLA==
-----END PUBLIC KEY-----
";

/// Every panel query of every dashboard returns data from a real push (and,
/// for the pusher-health panels, from scraping the pusher's own /metrics as
/// the cluster's Prometheus or agent would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    let scenario = Scenario::start().await;
    // A kind the service account may not list feeds the discovery-errors panel.
    scenario.api.forbid::<k8s_openapi::api::batch::v1::Job>();
    // A team's Pod still running a build its tag no longer names feeds the
    // drift panel (with --workload-labels team below).
    let reg = scenario.registry.host();
    scenario.api.apply(&object::<k8s_openapi::api::core::v1::Pod>(json!({
        "metadata": {"name": "stale-0", "namespace": "shop", "labels": {"team": "payments"}},
        "spec": {"containers": containers(&[("app", &format!("{reg}/apps/chainguard:1"))])},
        "status": {"containerStatuses": [{
            "name": "app", "image": format!("{reg}/apps/chainguard:1"),
            "imageID": format!("docker-pullable://{reg}/apps/chainguard@{}", scenario.images.docker.digest),
            "ready": true, "restartCount": 0, "state": {"running": {}}
        }]}
    })));
    let rejecting = Receiver::start().await;
    rejecting.set_fallback(Reply::status(400).body("rejected for the dropped-series panel"));

    // Prometheus is told where to scrape before the pusher (which needs
    // Prometheus' write URL) starts: the pusher's port is chosen up front.
    let port = support::free_port();
    let prometheus = Prometheus::start_scraping(
        "container-image-pusher-metrics",
        &format!("127.0.0.1:{port}"),
        &[("cluster", support::fixtures::CLUSTER)],
    )
    .await;
    let write_url = prometheus.write_url();
    // A verification policy feeds the supply-chain dashboard's verification
    // panels (nothing here is signed with its key: 0 % and "no_signature").
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("ours.pub");
    std::fs::write(&key, VERIFY_KEY).unwrap();
    let policy = format!("ours={}", key.display());
    let mut child = support::ChildGuard::spawn(
        "container-image-pusher",
        std::process::Command::new(BIN)
            .args([
                "--interval",
                "1s",
                "--remote-write-url",
                &write_url,
                "--remote-write-url",
                &rejecting.url(),
                "--metrics-address",
                &format!("127.0.0.1:{port}"),
                "--telemetry-address",
                "127.0.0.1:0",
                "--workload-labels",
                "team",
                "--verify-key",
                &policy,
            ])
            .args(scenario.pusher_args())
            .env("KUBECONFIG", scenario.kubeconfig())
            .env("RUST_LOG", "info"),
    );
    let queries = dashboard_queries::all_panel_queries(&std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards"
    )));
    assert!(queries.len() > 50, "{} queries", queries.len());
    // Until several ticks and scrapes have given rate() over the
    // self-metrics data, some panels are empty: re-run them all until none is.
    let mut empty = Vec::new();
    wait_until_async(Duration::from_secs(60), async || {
        empty.clear();
        for (dashboard, panel, expr) in &queries {
            match prometheus.try_query(expr).await {
                Ok(samples) if !samples.is_empty() => {}
                Ok(_) => empty.push(format!("{dashboard} / {panel}: no data\n  {expr}")),
                Err(e) => empty.push(format!("{dashboard} / {panel}: {e}\n  {expr}")),
            }
        }
        empty.is_empty()
    })
    .await;
    child.check_running().unwrap();
    assert!(
        empty.is_empty(),
        "{} of {} panel queries failed:\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n")
    );
}
