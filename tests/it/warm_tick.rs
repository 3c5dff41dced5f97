//! A warm tick against Debian's `docker-registry`: lookups whose cached
//! facts cannot have expired are answered from the pipeline's memo, with
//! no registry request, and a tag that moved is pushed with its new digest
//! once its cache period ends (the memo does not hide it).

use crate::support;

use std::time::Duration;

use support::fixtures::{pod_manifest, write_manifest};
use support::pusher::Pusher;
use support::receiver::Receiver;
use support::{push_image, wait_until_async, ImageSpec, Registry};

/// The memo's hits and misses on the pusher's /metrics.
async fn memo(pusher: &Pusher) -> (f64, f64) {
    let count = |result: &str| {
        format!(r#"container_image_pusher_cache_lookups_total{{cache="memo",result="{result}"}}"#)
    };
    let hits = pusher.metric(&count("hit")).await.unwrap_or(0.0);
    let misses = pusher.metric(&count("miss")).await.unwrap_or(0.0);
    (hits, misses)
}

/// Whether the last push carries a series with this `digest` label.
fn last_push_has(receiver: &Receiver, digest: &str) -> bool {
    let pushes = receiver.received();
    pushes
        .last()
        .is_some_and(|p| p.holds_label("digest", digest))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_tick_asks_no_registry_and_a_moved_tag_shows_after_its_cache_period() {
    let registry = Registry::start().await;
    let host = registry.host();
    let first = ImageSpec::oci("linux", "amd64").label("build", "1");
    let old = push_image(&registry, "apps/a", Some("1"), &first).await;
    let pinned_spec = ImageSpec::oci("linux", "amd64").label("build", "pinned");
    let pinned = push_image(&registry, "apps/b", Some("x"), &pinned_spec).await;
    let dir = tempfile::tempdir().unwrap();
    let pods = [
        pod_manifest("tagged", &format!("{host}/apps/a:1")),
        pod_manifest("pinned", &format!("{host}/apps/b@{}", pinned.digest)),
    ];
    let manifests = write_manifest(dir.path(), "pods.yaml", &pods);
    let receiver = Receiver::start().await;
    let pusher = Pusher::on_manifests(&manifests, "200ms")
        .registry(&host)
        .pushing_to(&receiver.url())
        .args(&[
            "--cache-duration",
            "5s",
            "--referrers=false",
            "--versions=false",
        ])
        .start()
        .await;
    pusher
        .wait_until(Duration::from_secs(30), "a push of the image", async || {
            last_push_has(&receiver, &old.digest)
        })
        .await;

    // A window of ticks answered from the memo alone (hits grew, misses did
    // not) makes no registry request. The tag's expiry may fall in a
    // window: then its misses grow and another window is taken.
    let mut windows = Vec::new();
    let quiet = wait_until_async(Duration::from_secs(60), async || {
        let before = memo(&pusher).await;
        // Every tick that asked before `before` has ended once a later one
        // reused answers: ticks run one after another.
        let settled = wait_until_async(Duration::from_secs(10), async || {
            memo(&pusher).await.0 > before.0
        })
        .await;
        let start = (memo(&pusher).await, registry.requests_under("/v2/apps/"));
        let grew = wait_until_async(Duration::from_secs(10), async || {
            memo(&pusher).await.0 >= start.0 .0 + 4.0
        })
        .await;
        let end = (registry.requests_under("/v2/apps/"), memo(&pusher).await);
        windows.push((before, start, end));
        settled && grew && end.1 .1 == before.1 && end.0 == start.1
    })
    .await;
    assert!(
        quiet,
        "no window of memo-only ticks without registry requests: {windows:?}\n{}",
        registry.logs()
    );

    // The tag moves: pushed with its new digest once its period ends.
    let second = ImageSpec::oci("linux", "amd64").label("build", "2");
    let new = push_image(&registry, "apps/a", Some("1"), &second).await;
    assert_ne!(new.digest, old.digest);
    pusher
        .wait_until(
            Duration::from_secs(30),
            "a push of the moved tag",
            async || last_push_has(&receiver, &new.digest),
        )
        .await;
    let (hits, misses) = memo(&pusher).await;
    assert!(hits > misses, "memo hits {hits}, misses {misses}");
}
