//! The Mimir family (Mimir, Cortex, Grafana Cloud) as it really behaves,
//! played by the stand-in of `support::mimir`: per-series limits, partial
//! acceptance, HA dedupe, overlapping pushers and tenants.

use crate::support;

use std::time::Duration;

use support::mimir::{hostile_manifests, Labels, Mimir, MAX_LABEL_NAMES, MAX_VALUE_BYTES};
use support::pusher::{once_args, run_with_env, Pusher};
use support::receiver::has;

/// Limits above Mimir's: the pusher sends what the stand-in refuses.
const LAX: [&str; 4] = [
    "--max-label-names-per-series",
    "100",
    "--max-label-value-bytes",
    "4096",
];

fn info_of<'a>(series: &'a [(Labels, support::mimir::Stored)], name: &str) -> Option<&'a Labels> {
    series.iter().map(|(labels, _)| labels).find(|labels| {
        has(labels, "__name__", "container_image_container_info") && has(labels, "name", name)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_limits_mimir_stores_every_series() {
    let mimir = Mimir::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = hostile_manifests(dir.path(), &["a"]);
    let url = mimir.url();
    let out = run_with_env(
        &once_args(
            &manifests,
            &url,
            &["--workload-labels", "*", "--external-label", "cluster=c"],
        ),
        &[("NO_COLOR", "1")],
    )
    .await
    .assert_success();
    mimir.receiver.assert_valid();
    assert_eq!(mimir.refusals(), 0, "{}", out.stderr);
    let sent: usize = mimir
        .receiver
        .received()
        .iter()
        .map(|r| r.request.timeseries.len())
        .sum();
    let stored: Vec<_> = mimir.series(None).into_iter().collect();
    assert_eq!(stored.len(), sent, "every series sent is stored");
    for (labels, _) in &stored {
        assert!(labels.len() <= MAX_LABEL_NAMES, "{labels:?}");
        assert!(labels.iter().all(|(_, v)| v.len() <= MAX_VALUE_BYTES));
    }
    // The container stays in the inventory, its image cut as image labels are.
    let long = info_of(&stored, "long").expect("the long image's container");
    let image = &long.iter().find(|(n, _)| n == "image").unwrap().1;
    assert!(
        image.ends_with('…') && image.starts_with("127.0.0.1:1/aaaa"),
        "{image}"
    );
    // The wide Deployment's labels: the first by name kept, the rest counted.
    let wide = stored
        .iter()
        .map(|(l, _)| l)
        .find(|l| has(l, "__name__", "container_image_workload_labels") && has(l, "name", "wide"))
        .expect("the wide Deployment's workload labels");
    assert_eq!(wide.len(), MAX_LABEL_NAMES);
    assert!(wide.iter().any(|(n, _)| n == "label_team_00"));
    assert!(!wide.iter().any(|(n, _)| n == "label_team_39"));
    assert!(
        out.stderr.contains("broke the per-series limits"),
        "{}",
        out.stderr
    );
}

/// Mimir stores the valid rest of a request it answers 400: a partial
/// success, under 1.0 and under 2.0 (whose reply says how many it wrote),
/// with `--once` exiting 4, and the tenant, a label value too, not blanked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_some_series_is_a_partial_success() {
    let mimir = Mimir::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = hostile_manifests(dir.path(), &["a", "b"]);
    let url = mimir.url();
    for (protocol, tenant) in [("1.0", "prod-eu"), ("2.0", "prod-us")] {
        let tenant_header = format!("X-Scope-OrgID: {tenant}");
        let cluster = format!("cluster={tenant}");
        let mut args = vec![
            "--manifests",
            &manifests,
            "--once",
            "--remote-write-url",
            &url,
            "--remote-write-protocol",
            protocol,
            "--remote-write-header",
            &tenant_header,
            "--workload-labels",
            "*",
            "--external-label",
            &cluster,
        ];
        args.extend(LAX);
        let out = run_with_env(&args, &[("NO_COLOR", "1")]).await;
        assert_eq!(
            out.code,
            Some(4),
            "partial, not failed ({protocol}):\n{}",
            out.stderr
        );
        let stored = mimir.series(Some(tenant));
        // The long image's container_info and resolve_error, and the wide
        // Deployment's workload labels: three refused, the rest stored.
        let sent: std::collections::HashSet<Labels> = mimir
            .receiver
            .received()
            .iter()
            .filter(|r| r.headers.get("x-scope-orgid").is_some_and(|t| t == tenant))
            .flat_map(|r| r.series())
            .map(|(labels, _)| {
                labels
                    .into_iter()
                    .filter(|(n, _)| n != "__replica__")
                    .collect()
            })
            .collect();
        assert_eq!(
            stored.len(),
            sent.len() - 3,
            "{protocol}: {:?}",
            stored.keys()
        );
        assert!(out.stderr.contains("refused_series=3"), "{}", out.stderr);
        assert!(out.stderr.contains("err-mimir-"), "{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("cluster=\"{tenant}\"")),
            "a tenant is no secret:\n{}",
            out.stderr
        );
        assert!(!out.stderr.contains("***"), "{}", out.stderr);
    }
}

async fn start_pusher(manifests: &str, url: &str, extra: &[&str]) -> Pusher {
    Pusher::on_manifests(manifests, "1s")
        .pushing_to(url)
        .args(&["--workload-labels", "*", "--external-label", "cluster=c"])
        .args(extra)
        .env("NO_COLOR", "1")
        .start()
        .await
}

/// A self-metric's series of the endpoint at `url` (`extra`: more labels).
fn endpoint_metric(name: &str, url: &str, extra: &str) -> String {
    format!("container_image_pusher_{name}{{endpoint=\"{url}\"{extra}}}")
}

/// Waits until the pusher's `series` (a whole sample line up to the value)
/// reaches `at_least`.
async fn wait_for_count(pusher: &Pusher, series: &str, at_least: f64, what: &str) {
    pusher
        .metrics_when(Duration::from_secs(30), what, |page| {
            page.lines().any(|l| {
                l.strip_prefix(series)
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .is_some_and(|v| v >= at_least)
            })
        })
        .await;
}

/// The series Mimir stored from a partially refused request are held, so
/// they get stale markers when they go; the refused ones are not sent
/// again; no push counts as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_stored_from_a_partial_refusal_get_stale_markers_and_refused_ones_are_not_resent() {
    let mimir = Mimir::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = hostile_manifests(dir.path(), &["a", "b"]);
    let url = mimir.url();
    let pusher = start_pusher(&manifests, &url, &LAX).await;
    let refused = endpoint_metric("series_refused_total", &url, "");
    pusher
        .metrics_when(Duration::from_secs(30), "3 refused series", |page| {
            page.contains(&format!("{refused} 3"))
        })
        .await;
    let refusals = mimir.refusals();
    let success = endpoint_metric("pushes_total", &url, ",outcome=\"success\"");
    let pushed = pusher.metric(&success).await.unwrap_or(0.0);
    wait_for_count(&pusher, &success, pushed + 3.0, "three more pushes").await;
    assert_eq!(
        mimir.refusals(),
        refusals,
        "the refused series are not sent again"
    );
    let failed = endpoint_metric("pushes_total", &url, ",outcome=\"failed\"");
    assert_eq!(pusher.metric(&failed).await.unwrap_or(0.0), 0.0);
    let logs = pusher.child.logs();
    assert_eq!(
        logs.matches("refused some series and stored the rest")
            .count(),
        1,
        "{logs}"
    );

    // Pod a's series were stored by the partially refused request.
    assert!(!mimir.find(None, "name", "a").is_empty());
    hostile_manifests(dir.path(), &["b"]);
    pusher
        .wait_until(
            Duration::from_secs(30),
            "pod a's series marked stale",
            async || {
                let a = mimir.find(None, "name", "a");
                !a.is_empty() && a.iter().all(|(_, s)| s.is_stale())
            },
        )
        .await;
    assert!(mimir
        .find(None, "name", "b")
        .iter()
        .all(|(_, s)| !s.is_stale()));
}

/// Another pusher of the cluster wrote newer samples (a surge pod, a
/// manual `--once`): the older request is dropped for that endpoint, the
/// push is not failed, and it is logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_older_than_another_pushers_are_dropped_not_failed() {
    let mimir = Mimir::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = hostile_manifests(dir.path(), &["a"]);
    let url = mimir.url();
    let pusher = start_pusher(&manifests, &url, &[]).await;
    let success = endpoint_metric("pushes_total", &url, ",outcome=\"success\"");
    wait_for_count(&pusher, &success, 1.0, "a push").await;
    mimir.write_ahead(None, 3_600_000);
    let overlap = endpoint_metric("pushes_total", &url, ",outcome=\"overlap\"");
    wait_for_count(&pusher, &overlap, 3.0, "three overlapping pushes").await;
    let failed = endpoint_metric("pushes_total", &url, ",outcome=\"failed\"");
    assert_eq!(pusher.metric(&failed).await.unwrap_or(0.0), 0.0);
    let logs = pusher.child.logs();
    assert_eq!(
        logs.matches("another pusher of the cluster").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("pushes are failing"), "{logs}");
}

/// Two replicas with `__replica__` and no leader election: Mimir keeps
/// the elected one's samples, answers the other 202, and stores neither
/// with the replica label; the other takes over when elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_are_deduplicated_by_the_ha_tracker() {
    let mimir = Mimir::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = hostile_manifests(dir.path(), &["a"]);
    let url = mimir.url();
    let a = start_pusher(&manifests, &url, &["--external-label", "__replica__=a"]).await;
    let success = endpoint_metric("pushes_total", &url, ",outcome=\"success\"");
    wait_for_count(&a, &success, 1.0, "a push").await;
    // b speaks 2.0: a 202 without written counts is no reason to fall back.
    let b = start_pusher(
        &manifests,
        &url,
        &[
            "--external-label",
            "__replica__=b",
            "--remote-write-protocol",
            "2.0",
        ],
    )
    .await;
    wait_for_count(&b, &success, 2.0, "b's pushes taken as accepted").await;
    assert!(mimir.dropped_replicas() > 0);
    let stored = mimir.series(None);
    assert!(!stored.is_empty());
    assert!(stored
        .keys()
        .all(|l| l.iter().all(|(n, _)| n != "__replica__")));
    let failed = endpoint_metric("pushes_total", &url, ",outcome=\"failed\"");
    assert_eq!(b.metric(&failed).await.unwrap_or(0.0), 0.0);
    assert!(
        !b.child.logs().contains("using 1.0 from now on"),
        "{}",
        b.child.logs()
    );
    // a stops; the tracker elects b, whose samples land from then on.
    drop(a);
    mimir.fail_over(None, "c", "b");
    let dropped = mimir.dropped_replicas();
    let samples = |m: &Mimir| {
        m.find(None, "name", "a")
            .iter()
            .map(|(_, s)| s.samples.len())
            .max()
            .unwrap_or(0)
    };
    let before = samples(&mimir);
    b.wait_until(Duration::from_secs(30), "b's samples stored", async || {
        samples(&mimir) >= before + 2
    })
    .await;
    assert!(
        mimir.dropped_replicas() <= dropped + 1,
        "at most the push in flight dropped"
    );
}
