//! What a hostile image or flag can do to the series and the log, with the
//! real binary, Debian's `docker-registry` and the strict receiver: an
//! image config with thousands of labels adds a bounded number of series,
//! an external label that a family already uses is refused at start-up,
//! and an unresolvable image is logged when it starts and ends failing,
//! not at every tick. The per-series limits, end to end into Prometheus 3
//! and VictoriaMetrics.

use crate::support;

use std::time::Duration;

use support::fixtures::write_pods_with_images;
use support::pusher::{once_args, run_once, Pusher, RunOutput};
use support::receiver::{has, label, Receiver};
use support::{push_image, ImageSpec, Registry};

/// The value of a `/metrics` sample line `name{labels} value`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_with_thousands_of_labels_adds_a_bounded_number_of_series() {
    let registry = Registry::start().await;
    let long_value = "x".repeat(100 * 1024);
    let mut hostile = ImageSpec::oci("linux", "amd64").created("2024-01-01T00:00:00Z");
    for i in 0..5000 {
        hostile = hostile.label(&format!("hostile.{i:04}"), &format!("value {i}"));
    }
    hostile = hostile.label("hostile.0001", &long_value);
    let hostile = push_image(&registry, "apps/hostile", Some("1"), &hostile).await;
    let plain = push_image(
        &registry,
        "apps/plain",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .label(
                "org.opencontainers.image.source",
                "https://example.com/plain",
            )
            .annotation("org.opencontainers.image.base.name", "scratch"),
    )
    .await;

    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let host = registry.host();
    let manifests = write_pods_with_images(
        dir.path(),
        "pods.yaml",
        &[
            ("hostile", &format!("{host}/apps/hostile:1")),
            ("plain", &format!("{host}/apps/plain:1")),
        ],
    );
    let pusher = Pusher::on_manifests(&manifests, "1h")
        .registry(&host)
        .pushing_to(&receiver.url())
        // The count below is of the image series: no version series.
        .args(&["--versions=false"])
        .start()
        .await;
    // The first push leaves base images out; the one after their lookup
    // has everything.
    let has_base = |r: &support::receiver::Received| r.holds("container_image_base");
    pusher
        .wait_until(Duration::from_secs(30), "a complete push", async || {
            receiver.received().iter().any(has_base)
        })
        .await;
    receiver.assert_valid();
    let series: Vec<Vec<(String, String)>> = receiver
        .received()
        .into_iter()
        .find(has_base)
        .expect("a complete push")
        .series()
        .into_iter()
        .map(|(labels, _)| labels)
        .collect();
    let of = |name: &str, digest: &str| -> Vec<&Vec<(String, String)>> {
        series
            .iter()
            .filter(|l| has(l, "__name__", name) && has(l, "digest", digest))
            .collect()
    };

    let hostile_labels = of("container_image_label", &hostile.digest);
    assert_eq!(hostile_labels.len(), 128, "--max-labels-per-image");
    let keys: Vec<&str> = hostile_labels
        .iter()
        .filter_map(|l| label(l, "key"))
        .collect();
    let mut first: Vec<String> = (0..128).map(|i| format!("hostile.{i:04}")).collect();
    first.sort();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    assert_eq!(sorted_keys, first, "the first keys in byte order are kept");
    let cut = hostile_labels
        .iter()
        .find(|l| label(l, "key") == Some("hostile.0001"))
        .and_then(|l| label(l, "value"))
        .unwrap();
    assert_eq!(cut.len(), 1024, "--max-label-value-length");
    assert!(cut.ends_with('…'), "visibly cut: {cut}");
    assert_eq!(of("container_image_size_bytes", &hostile.digest).len(), 1);
    assert_eq!(of("container_image_created", &hostile.digest).len(), 1);
    // The rest of the snapshot is intact.
    assert_eq!(of("container_image_label", &plain.digest).len(), 1);
    assert_eq!(of("container_image_annotation", &plain.digest).len(), 1);
    assert_eq!(of("container_image_size_bytes", &plain.digest).len(), 1);
    let info = series
        .iter()
        .filter(|l| has(l, "__name__", "container_image_container_info"))
        .count();
    assert_eq!(info, 2);
    // The plain image declares its base (scratch, with no digest to compare).
    assert_eq!(of("container_image_base", &plain.digest).len(), 1);
    assert_eq!(
        series.len(),
        2 + 128 + 2 + 1 + 1 + 1 + 1,
        "{:?}",
        series.len()
    );

    let metrics = pusher.metrics().await;
    let dropped = |reason: &str| {
        sample(
            &metrics,
            &format!("container_image_pusher_labels_dropped_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(
        dropped("too_many_labels"),
        Some(5000.0 - 128.0),
        "{metrics}"
    );
    assert_eq!(dropped("value_too_long"), Some(1.0), "{metrics}");
    assert_eq!(dropped("too_many_annotations"), Some(0.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "container_image_pusher_snapshot_series"),
        Some(series.len() as f64)
    );
}

#[tokio::test]
async fn an_external_label_a_family_uses_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods_with_images(dir.path(), "pods.yaml", &[("p", "127.0.0.1:1/p:1")]);
    let manifests = manifests.to_str().unwrap();
    let RunOutput { stdout, stderr, .. } = run_once(
        &[
            "--manifests",
            manifests,
            "--once",
            "--dry-run",
            "--external-label",
            "class=prod",
        ],
        None,
    )
    .await
    .expect_exit(2, "a usage error");
    assert!(stdout.is_empty(), "nothing is pushed: {stdout}");
    assert!(
        stderr.contains(r#""class" is a label of container_image_resolve_error"#),
        "{stderr}"
    );
    for (flag, expected) in [
        ("__tenant=a", "reserves"),
        ("job=a", "--job"),
        ("cluster-name=a", "not a valid label name"),
        (
            "digest=a",
            "container_image_container_info, container_image_annotation",
        ),
    ] {
        let RunOutput {
            success: ok,
            stderr,
            ..
        } = run_once(
            &[
                "--manifests",
                manifests,
                "--once",
                "--dry-run",
                "--external-label",
                flag,
            ],
            None,
        )
        .await;
        assert!(!ok && stderr.contains(expected), "{flag}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_image_is_logged_when_it_fails_and_when_it_resolves_again() {
    let registry = Registry::start().await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods_with_images(
        dir.path(),
        "pods.yaml",
        &[("late", &format!("{host}/apps/late:1"))],
    );
    let pusher = Pusher::on_manifests(&manifests, "100ms")
        .registry(&host)
        // Retried at every other tick: each retry fails the same way.
        .args(&["--error-cache-duration", "200ms", "--log-format", "json"])
        .start()
        .await;
    // (level, message, class) of each log line.
    let lines = |logs: &str| -> Vec<(String, String, String)> {
        logs.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|v| {
                let field = |name: &str| v["fields"][name].as_str().unwrap_or("").to_owned();
                (
                    v["level"].as_str().unwrap_or("").to_owned(),
                    field("message"),
                    field("class"),
                )
            })
            .collect()
    };
    let count = |logs: &str, message: &str| {
        lines(logs)
            .iter()
            .filter(|(_, m, _)| m.starts_with(message))
            .count()
    };
    let wait_for = |message: &'static str, times: usize| {
        pusher.logs_when(
            Duration::from_secs(30),
            format!("{times}× {message:?}"),
            move |logs| count(logs, message) >= times,
        )
    };
    let logs = wait_for("snapshot taken", 30).await;
    let warnings: Vec<_> = lines(&logs)
        .into_iter()
        .filter(|(l, _, _)| l == "WARN")
        .collect();
    assert_eq!(warnings.len(), 1, "one warning over 30 ticks:\n{logs}");
    assert!(
        warnings[0].1.starts_with("cannot resolve image"),
        "{warnings:?}"
    );
    assert_eq!(warnings[0].2, "not_found");

    push_image(
        &registry,
        "apps/late",
        Some("1"),
        &ImageSpec::oci("linux", "amd64"),
    )
    .await;
    wait_for("image resolves again", 1).await;
    let ticks_then = count(&pusher.child.logs(), "snapshot taken");
    let logs = wait_for("snapshot taken", ticks_then + 10).await;
    assert_eq!(count(&logs, "image resolves again"), 1, "{logs}");
    let warnings = lines(&logs)
        .into_iter()
        .filter(|(l, _, _)| l == "WARN")
        .count();
    assert_eq!(warnings, 1, "{logs}");
}

/// The per-series limits end to end into Prometheus 3 and VictoriaMetrics:
/// a 3,000-byte image and a Deployment with 40 labels land within Mimir's
/// defaults, every container and workload still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_cut_to_the_limits_land_whole_in_prometheus_3_and_victoria_metrics() {
    use support::mimir::{hostile_manifests, MAX_LABEL_NAMES, MAX_VALUE_BYTES};
    use support::peers::peer;
    use support::{Prometheus, VictoriaMetrics};
    let prometheus3 = peer("prometheus");
    let (prometheus, victoria) = tokio::join!(
        Prometheus::start_binary(&prometheus3, &[]),
        VictoriaMetrics::start()
    );
    let dir = tempfile::tempdir().unwrap();
    let manifests = hostile_manifests(dir.path(), &["a"]);
    let (prometheus_url, victoria_url) = (prometheus.write_url(), victoria.write_url());
    run_once(
        &once_args(
            &manifests,
            &prometheus_url,
            &[
                "--remote-write-url",
                &victoria_url,
                "--workload-labels",
                "*",
                "--external-label",
                "cluster=c",
            ],
        ),
        None,
    )
    .await
    .assert_success();
    victoria.force_flush().await;
    for store in [&*prometheus, &*victoria] {
        let timeout = Duration::from_secs(20);
        let containers = store
            .query_until("container_image_container_info", |s| s.len() == 3, timeout)
            .await;
        let long = containers
            .iter()
            .find(|s| s.labels.get("name").map(String::as_str) == Some("long"))
            .expect("the container with the long image");
        let image = &long.labels["image"];
        assert!(
            image.len() <= MAX_VALUE_BYTES && image.ends_with('…'),
            "{image}"
        );
        let workloads = store
            .query_until("container_image_workload_labels", |s| s.len() == 3, timeout)
            .await;
        let wide = workloads
            .iter()
            .find(|s| s.labels.get("name").map(String::as_str) == Some("wide"))
            .expect("the wide Deployment");
        assert_eq!(wide.labels.len(), MAX_LABEL_NAMES, "{:?}", wide.labels);
        store
            .query_until("container_image_resolve_error", |s| s.len() == 3, timeout)
            .await;
    }
}
