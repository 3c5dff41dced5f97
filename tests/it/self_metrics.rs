//! Health without a scrape: with every snapshot the pusher pushes a small
//! set of its own metrics to every endpoint, so a receiver that never
//! scrapes it (here a real Prometheus with no scrape configured) holds its
//! health, and a second endpoint reports the first one refusing.

use crate::support;

use support::fixtures::write_pods;
use support::pusher::Pusher;
use support::receiver::{Receiver, Reply};
use support::SharedPrometheus;

#[tokio::test]
async fn the_health_set_lands_where_the_inventory_is_pushed_without_a_scrape() {
    let prometheus = SharedPrometheus::scope().await;
    let refusing = Receiver::start().await;
    refusing.set_fallback(Reply::status(400));
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["a", "b"]);
    let pusher = Pusher::on_manifests(&manifests, "250ms")
        .pushing_to_scope(&prometheus)
        .pushing_to(&refusing.url())
        .args(&["--push-self-metrics=true", "--external-label", "cluster=c1"])
        .start()
        .await;
    let api: &support::prometheus::QueryApi = &prometheus;
    pusher
        .wait_for_query(
            api,
            r#"container_image_pusher_build_info{cluster="c1", version="0.1.0", revision!=""}"#,
            |s| s.len() == 1 && s[0].value == 1.0,
        )
        .await;
    // The refusing endpoint's failures arrive through the other one.
    pusher
        .wait_for_query(
            api,
            r#"container_image_pusher_pushes_total{cluster="c1", outcome="failed"} > 0"#,
            |s| s.len() == 1 && s[0].labels["endpoint"].starts_with(&refusing.url()[..20]),
        )
        .await;
    pusher
        .wait_for_query(
            api,
            "time() - container_image_pusher_last_success_timestamp_seconds < 60",
            |s| s.len() == 1 && s[0].labels["endpoint"].ends_with("/api/v1/write"),
        )
        .await;
    pusher
        .wait_for_query(api, "container_image_pusher_snapshot_series", |s| {
            s.len() == 1 && s[0].value >= 2.0
        })
        .await;
    pusher
        .wait_for_series(api, "container_image_pusher_leader == 1", 1)
        .await;
    pusher
        .wait_for_series(
            api,
            "container_image_pusher_last_snapshot_duration_seconds",
            1,
        )
        .await;
    // Nothing per image or registry host: a handful of series in all.
    pusher
        .wait_for_query(
            api,
            r#"count({__name__=~"container_image_pusher_.*"})"#,
            |s| s.len() == 1 && s[0].value < 20.0,
        )
        .await;
    // And the inventory alongside, one copy (no scrape adds another).
    pusher
        .wait_for_query(api, "count(container_image_container_info)", |s| {
            s.len() == 1 && s[0].value == 2.0
        })
        .await;
}

#[tokio::test]
async fn push_self_metrics_false_pushes_the_inventory_only() {
    let prometheus = SharedPrometheus::scope().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["a"]);
    let pusher = Pusher::on_manifests(&manifests, "250ms")
        .pushing_to_scope(&prometheus)
        .args(&["--push-self-metrics=false"])
        .start()
        .await;
    let api: &support::prometheus::QueryApi = &prometheus;
    pusher
        .wait_for_query(api, "count(container_image_container_info)", |s| {
            s.len() == 1
        })
        .await;
    let health = api
        .query(r#"{__name__=~"container_image_pusher_.*"}"#)
        .await;
    assert!(health.is_empty(), "{health:?}");
    // Still served locally, on the health listener.
    let page = reqwest::get(format!("{}/metrics", pusher.telemetry_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("container_image_pusher_build_info{"),
        "{page}"
    );
}
