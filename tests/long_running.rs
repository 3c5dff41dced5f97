//! Long-running mode against real Prometheus: ticks, stale markers that end
//! series at once, re-read manifests, self-metrics and a clean SIGTERM.

mod support;

use std::time::{Duration, Instant};

use support::pusher::{write_pods, Pusher};
use support::Prometheus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_and_changed_series_go_stale_at_once_and_sigterm_exits_cleanly() {
    container_image_pusher::install_crypto_provider();
    let prometheus = Prometheus::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["keep", "remove"]);
    let mut pusher = Pusher::start(
        &[
            "--manifests",
            manifests.to_str().unwrap(),
            "--interval",
            "300ms",
            "--remote-write-url",
            &prometheus.write_url(),
            "--external-label",
            "cluster=test",
        ],
        &[],
    )
    .await;
    pusher
        .wait_for_query(&prometheus, "count(container_image_container_info)", |s| {
            s.first().map(|s| s.value) == Some(2.0)
        })
        .await;
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_resolve_error{class="unavailable"}"#,
            |s| s.len() == 2,
        )
        .await;

    // GitOps-style change: one pod removed, the other's image changed (the
    // pods are written with image 127.0.0.1:1/NAME:1, so renaming changes it).
    write_pods(dir.path(), "pods.yaml", &["keep"]);
    let changed = dir.path().join("pods.yaml");
    let text = std::fs::read_to_string(&changed)
        .unwrap()
        .replace("keep:1", "keep:2");
    std::fs::write(&changed, text).unwrap();

    // Prometheus' lookback is 5 minutes: only a stale marker makes the old
    // series vanish from instant queries within seconds.
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{name="remove"}"#,
            |s| s.is_empty(),
        )
        .await;
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{image="127.0.0.1:1/keep:1"}"#,
            |s| s.is_empty(),
        )
        .await;
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_container_info{image="127.0.0.1:1/keep:2",cluster="test"}"#,
            |s| s.len() == 1,
        )
        .await;
    pusher
        .wait_for_query(
            &prometheus,
            r#"container_image_resolve_error{image="127.0.0.1:1/remove:1"}"#,
            |s| s.is_empty(),
        )
        .await;
    // The data is still there for range queries: staleness ends a series, it does not delete it.
    let history = prometheus
        .query(r#"count_over_time(container_image_container_info{name="remove"}[5m])"#)
        .await;
    assert!(
        history.first().is_some_and(|s| s.value >= 1.0),
        "{history:?}"
    );

    // Self-metrics on /metrics. A tag is a cache hit from its second tick on.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut metrics = pusher.metrics().await;
    while !metrics.contains(r#"cache="reference",result="hit""#) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = pusher.metrics().await;
    }
    for expected in [
        "container_image_pusher_pushes_total{endpoint=",
        "container_image_pusher_push_duration_seconds_bucket{endpoint=",
        "container_image_pusher_series_sent_total{endpoint=",
        "container_image_pusher_bytes_sent_total{endpoint=",
        "container_image_pusher_last_success_timestamp_seconds{endpoint=",
        "container_image_pusher_resolve_failures_total{class=\"unavailable\"}",
        "container_image_pusher_registry_requests_total{code=\"transport\",host=\"127.0.0.1:1\",method=\"HEAD\"}",
        "container_image_pusher_cache_lookups_total{cache=\"reference\",result=\"hit\"}",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }

    let status = pusher
        .child
        .terminate(Duration::from_secs(30))
        .await
        .expect("exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status}\n{}",
        pusher.child.logs()
    );
    assert!(pusher.child.logs().contains("stopped"));
}

#[tokio::test]
async fn a_cron_schedule_drives_the_ticks() {
    container_image_pusher::install_crypto_provider();
    let receiver = support::receiver::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["a"]);
    let _pusher = Pusher::start(
        &[
            "--manifests",
            manifests.to_str().unwrap(),
            "--schedule",
            "* * * * * *",
            "--remote-write-url",
            &receiver.url(),
        ],
        &[],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let at: Vec<Instant> = receiver.received().iter().map(|r| r.at).collect();
    assert!(
        (2..=5).contains(&at.len()),
        "every second: {} pushes in 3.5 s",
        at.len()
    );
    receiver.assert_valid();
}
