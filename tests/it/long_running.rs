//! Long-running mode against real Prometheus: ticks, stale markers that end
//! series at once, re-read manifests, self-metrics and a clean SIGTERM.

use crate::support;

use std::time::{Duration, Instant};

use support::fixtures::{write_pods, write_pods_with_images};
use support::pusher::Pusher;
use support::{wait_until, SharedPrometheus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_and_changed_series_go_stale_at_once_and_sigterm_exits_cleanly() {
    let prometheus = SharedPrometheus::scope().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["keep", "remove"]);
    let mut pusher = Pusher::on_manifests(&manifests, "300ms")
        .pushing_to_scope(&prometheus)
        .args(&["--external-label", "cluster=test"])
        .start()
        .await;
    pusher
        .wait_for_query(&prometheus, "count(container_image_container_info)", |s| {
            s.first().map(|s| s.value) == Some(2.0)
        })
        .await;
    pusher
        .wait_for_series(
            &prometheus,
            r#"container_image_resolve_error{class="unavailable"}"#,
            2,
        )
        .await;

    // GitOps-style change: one pod removed, the other's image changed.
    write_pods_with_images(dir.path(), "pods.yaml", &[("keep", "127.0.0.1:1/keep:2")]);

    // Prometheus' lookback is 5 minutes: only a stale marker makes the old
    // series vanish from instant queries within seconds.
    pusher
        .wait_for_each(
            &prometheus,
            &[
                (r#"container_image_container_info{name="remove"}"#, 0),
                (
                    r#"container_image_container_info{image="127.0.0.1:1/keep:1"}"#,
                    0,
                ),
                (
                    r#"container_image_container_info{image="127.0.0.1:1/keep:2",cluster="test"}"#,
                    1,
                ),
                (
                    r#"container_image_resolve_error{image="127.0.0.1:1/remove:1"}"#,
                    0,
                ),
            ],
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

    // Self-metrics on /metrics. A lookup is answered from the memo of the
    // last answers from its second tick on.
    let metrics = pusher
        .metrics_when(Duration::from_secs(10), "a memo hit", |m| {
            m.contains(r#"cache="memo",result="hit""#)
        })
        .await;
    for expected in [
        "container_image_pusher_pushes_total{endpoint=",
        "container_image_pusher_push_duration_seconds_bucket{endpoint=",
        "container_image_pusher_series_sent_total{endpoint=",
        "container_image_pusher_bytes_sent_total{endpoint=",
        "container_image_pusher_last_success_timestamp_seconds{endpoint=",
        "container_image_pusher_resolve_failures_total{class=\"unavailable\"}",
        "container_image_pusher_registry_requests_total{code=\"transport\",host=\"127.0.0.1:1\",method=\"GET\"}",
        "container_image_pusher_cache_lookups_total{cache=\"memo\",result=\"hit\"}",
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
    assert!(
        wait_until(Duration::from_secs(10), || receiver.received().len() >= 4).await,
        "{} pushes in 10 s of a schedule firing every second",
        receiver.received().len()
    );
    // After the push at start-up, one at each firing, about a second apart:
    // the schedule, not the default interval, drives the ticks (a loaded
    // machine may delay one, or make it skip a firing).
    let at: Vec<Instant> = receiver.received().iter().map(|r| r.at).collect();
    for gap in at[1..].windows(2).map(|w| w[1] - w[0]) {
        assert!(
            (Duration::from_millis(300)..Duration::from_millis(2500)).contains(&gap),
            "pushes {gap:?} apart on a schedule firing every second: {at:?}"
        );
    }
    receiver.assert_valid();
}
