//! A cold start against Debian's `docker-registry`: what the first
//! snapshot asks the registry (requests counted from its access log) and
//! what the first push carries, ordered by events, never by time.

use crate::support;

use std::time::Duration;

use serde_json::json;
use support::fixtures::{pod_manifest, write_manifest};
use support::pusher::Pusher;
use support::receiver::{Received, Receiver};
use support::registry::attach_with_tag_schema;
use support::slow_registry::{Hold, Script, SlowRegistry};
use support::{push_image, wait_until, Attachment, ImageSpec, Registry};

#[tokio::test]
async fn a_cold_snapshot_reads_each_tag_with_one_get_and_no_head() {
    let registry = Registry::start().await;
    let host = registry.host();
    let mut documents = Vec::new();
    for i in 0..4 {
        let spec = ImageSpec::oci("linux", "amd64").label("n", &i.to_string());
        push_image(&registry, &format!("apps/a{i}"), Some("1"), &spec).await;
        documents.push(pod_manifest(
            &format!("p{i}"),
            &format!("{host}/apps/a{i}:1"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_manifest(dir.path(), "pods.yaml", &documents);
    let before = registry.logs().lines().count();
    let output = support::pusher::run_once(
        &[
            "--manifests",
            manifests.to_str().unwrap(),
            "--once",
            "--insecure-registry",
            &host,
            "--referrers=false",
            "--versions=false",
            "--dry-run",
        ],
        None,
    )
    .await
    .assert_success();
    assert!(
        output.stdout.contains(r#"container_image_label{"#),
        "{}",
        output.stdout
    );
    assert!(before > 0, "the pushes were logged");
    for i in 0..4 {
        let repository = format!("/v2/apps/a{i}/");
        let by_tag = format!("/v2/apps/a{i}/manifests/1");
        let logs = registry.logs();
        assert_eq!(registry.requests("GET", &by_tag), 1, "{logs}");
        assert_eq!(
            registry.requests("HEAD", &format!("{repository}manifests/")),
            0,
            "no HEAD on a cold start: {logs}"
        );
        assert_eq!(
            registry.requests("GET", &format!("{repository}manifests/")),
            1,
            "the manifest is not fetched again by digest: {logs}"
        );
        assert_eq!(
            registry.requests("GET", &format!("{repository}blobs/")),
            1,
            "the config"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_push_goes_before_attachments_and_versions_are_looked_up() {
    let registry = Registry::start().await;
    let host = registry.host();
    let spec = ImageSpec::oci("linux", "amd64").created("2024-01-01T00:00:00Z");
    let running = push_image(&registry, "apps/app", Some("1.0.0"), &spec).await;
    let newer = ImageSpec::oci("linux", "amd64").created("2024-06-01T00:00:00Z");
    push_image(&registry, "apps/app", Some("1.1.0"), &newer).await;
    let sbom = Attachment {
        artifact_type: Some("application/spdx+json"),
        layer_media_type: "application/spdx+json",
        layer_annotations: json!({}),
    };
    attach_with_tag_schema(&registry, "apps/app", &running, &[sbom]).await;
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{host}/apps/app:1.0.0");
    let manifests = write_manifest(dir.path(), "pods.yaml", &[pod_manifest("p", &image)]);
    let receiver = Receiver::start().await;
    let pusher = Pusher::on_manifests(&manifests, "300ms")
        .registry(&host)
        .pushing_to(&receiver.url())
        .start()
        .await;
    let filled_in = wait_until(Duration::from_secs(30), || {
        receiver.received().iter().any(|p| {
            p.holds("container_image_referrer")
                && p.holds("container_image_versions_behind")
                && p.holds("container_image_created")
        })
    })
    .await;
    let pushes = receiver.received();
    assert!(
        filled_in,
        "attachments and versions never pushed; {} pushes\n{}",
        pushes.len(),
        pusher.child.logs()
    );
    let first = &pushes[0];
    assert!(
        first.holds_label("digest", &running.digest),
        "the first push has the digest: {:?}",
        first.series()
    );
    for later in [
        "container_image_referrer",
        "container_image_versions_behind",
        "container_image_is_latest_version",
    ] {
        assert!(
            !first.holds(later),
            "the first push waited for {later}: {:?}",
            first.series()
        );
    }
    assert!(
        pusher
            .child
            .logs()
            .contains("looking up what the first snapshot left out"),
        "the pusher says what it left out:\n{}",
        pusher.child.logs()
    );
}

/// The `digest` label of the `container_image_container_info` series of a
/// push, one per container.
fn info_digests(push: &Received) -> Vec<String> {
    push.values("container_image_container_info", "digest")
}

/// A long-running pusher of `image` (one pod), pushing to `receiver`.
async fn start_pusher(
    dir: &tempfile::TempDir,
    image: &str,
    host: &str,
    receiver: &Receiver,
) -> Pusher {
    let manifests = write_manifest(dir.path(), "pods.yaml", &[pod_manifest("p", image)]);
    Pusher::on_manifests(&manifests, "300ms")
        .registry(host)
        .pushing_to(&receiver.url())
        .args(&["--versions=false"])
        .start()
        .await
}

/// Waits for a push that `wanted` accepts; panics with the pusher's log.
async fn wait_for_push(
    receiver: &Receiver,
    pusher: &Pusher,
    what: &str,
    wanted: impl Fn(&Received) -> bool,
) -> Received {
    let found = wait_until(Duration::from_secs(30), || {
        receiver.received().iter().any(&wanted)
    })
    .await;
    assert!(found, "no push {what}:\n{}", pusher.child.logs());
    receiver.received().into_iter().find(wanted).unwrap()
}

/// A registry serving one image but holding `hold`, its host, a folder for
/// the manifests and a receiver.
async fn held(hold: Hold) -> (SlowRegistry, String, tempfile::TempDir, Receiver) {
    let registry = SlowRegistry::holding(Script::ServeImage, Duration::ZERO, hold).await;
    let host = registry.host();
    (
        registry,
        host,
        tempfile::tempdir().unwrap(),
        Receiver::start().await,
    )
}

/// The first push with a container's digest, asserting that it carries the
/// digest `registry` serves and no other.
async fn first_push(receiver: &Receiver, pusher: &Pusher, registry: &SlowRegistry) -> Received {
    let first = wait_for_push(receiver, pusher, "with the digest", |p| {
        !info_digests(p).is_empty()
    })
    .await;
    assert_eq!(info_digests(&first), [registry.digest.as_str()]);
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_push_carries_every_digest_before_any_config_is_served() {
    let (registry, host, dir, receiver) = held(Hold::Blobs).await;
    let image = format!("{host}/apps/app:1");
    let pusher = start_pusher(&dir, &image, &host, &receiver).await;

    // The config blob is held: nothing but the digest can be known.
    let first = first_push(&receiver, &pusher, &registry).await;
    assert!(
        !first.holds("container_image_size_bytes"),
        "no size before the config is read: {:?}",
        first.series()
    );
    assert!(
        receiver
            .received()
            .iter()
            .all(|p| !p.holds("container_image_size_bytes")),
        "no image series while the config is held"
    );

    registry.release();
    let later = wait_for_push(&receiver, &pusher, "with the image's size", |p| {
        p.holds("container_image_size_bytes")
    })
    .await;
    assert_eq!(info_digests(&later), [registry.digest.as_str()]);
    let logs = pusher.child.logs();
    assert!(
        logs.contains("looking up the metadata the first snapshot left out"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_pinned_image_is_pushed_before_its_registry_answers_anything() {
    let (registry, host, dir, receiver) = held(Hold::Everything).await;
    let image = format!("{host}/apps/app@{}", registry.digest);
    let pusher = start_pusher(&dir, &image, &host, &receiver).await;

    // Every request is held: the first push needed none.
    let first = first_push(&receiver, &pusher, &registry).await;
    assert!(!first.holds("container_image_size_bytes"));

    registry.release();
    wait_for_push(&receiver, &pusher, "with the image's size", |p| {
        p.holds("container_image_size_bytes")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_checker_overrides_are_looked_up_after_the_first_push() {
    let (registry, host, dir, receiver) = held(Hold::Everything).await;
    // Pinned, so only the override's tag listing could ask the registry
    // anything before the first push; every request is held, for longer
    // than the test waits (--registry-timeout).
    let image = format!("{host}/apps/app:1@{}", registry.digest);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: ns, annotations: {{pin-major.version-checker.io/c: \"1\"}}}}\nspec: {{containers: [{{name: c, image: \"{image}\"}}]}}\n"
    );
    let manifests = write_manifest(dir.path(), "pods.yaml", &[pod]);
    let pusher = Pusher::on_manifests(&manifests, "300ms")
        .registry(&host)
        .pushing_to(&receiver.url())
        .args(&["--registry-timeout", "300s"])
        .start()
        .await;
    first_push(&receiver, &pusher, &registry).await;
    registry.release();
    let logs = || pusher.child.logs();
    let filled = wait_until(Duration::from_secs(30), || {
        logs().contains("looked up what the first snapshot left out")
    })
    .await;
    assert!(filled, "{}", logs());
}
