//! What pods actually run, end to end: Pods whose status reports the digest
//! their runtime pulled (`imageID`), a real `docker-registry` where a tag is
//! re-pushed after the pull, and Prometheus receiving the push. The drift
//! series must name exactly the containers still running the tag's old
//! digest — not those running the current one or a platform manifest of
//! the current index — and a registry that cannot be reached must leave a
//! Pod its pulled digest.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use support::fixtures::{containers, object, template};
use support::{
    push_image, push_index, Format, ImageSpec, IndexEntry, KubeApi, Registry, SharedPrometheus,
};

/// A Pod of one container whose status says it runs `image_id`.
fn running_pod(name: &str, image: &str, image_id: &str) -> Pod {
    object(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": containers(&[("app", image)])},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "app", "image": image, "imageID": image_id,
            "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
        }]}
    }))
}

/// One push of the cluster `api` serves, into the test's scope of the
/// shared Prometheus, reading images over plain HTTP from `registry` (a
/// host); the pusher's log.
async fn push_once(api: &KubeApi, prometheus: &SharedPrometheus, registry: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let (url, scope) = (prometheus.write_url(), prometheus.external_label());
    let args: [&[&str]; 3] = [
        &["--once", "--registry-timeout", "5s"],
        &["--remote-write-url", &url, "--external-label", &scope],
        &["--insecure-registry", registry],
    ];
    support::pusher::run_once(&args.concat(), Some(&kubeconfig))
        .await
        .assert_success()
        .stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_a_running_digest_the_tag_moved_away_from() {
    container_image_pusher::install_crypto_provider();
    let (registry, api, prometheus) = tokio::join!(
        Registry::start(),
        KubeApi::start(),
        SharedPrometheus::scope()
    );
    let reg = registry.host();
    let spec = |build: u8| ImageSpec::oci("linux", "amd64").layer(vec![build; 100]);
    let old = push_image(&registry, "apps/app", Some("1"), &spec(1)).await;
    // The tag moves: pods that pulled it before run the old digest.
    let new = push_image(&registry, "apps/app", Some("1"), &spec(2)).await;
    assert_ne!(old.digest, new.digest);
    let amd64 = push_image(&registry, "apps/multi", None, &spec(3)).await;
    let arm64 = push_image(
        &registry,
        "apps/multi",
        None,
        &ImageSpec::oci("linux", "arm64").layer(vec![4; 100]),
    )
    .await;
    let index = push_index(
        &registry,
        "apps/multi",
        "1",
        Format::Oci,
        vec![
            IndexEntry::image(&arm64, "linux", "arm64", None),
            IndexEntry::image(&amd64, "linux", "amd64", None),
        ],
        BTreeMap::new(),
    )
    .await;

    let app = format!("{reg}/apps/app:1");
    let multi = format!("{reg}/apps/multi:1");
    let pulled = |repo: &str, digest: &str| format!("docker-pullable://{reg}/{repo}@{digest}");
    api.apply(&running_pod("old", &app, &pulled("apps/app", &old.digest)));
    api.apply(&running_pod(
        "current",
        &app,
        &pulled("apps/app", &new.digest),
    ));
    // A runtime may report the index or the platform manifest it pulled.
    api.apply(&running_pod(
        "index",
        &multi,
        &pulled("apps/multi", &index.digest),
    ));
    api.apply(&running_pod(
        "platform",
        &multi,
        &pulled("apps/multi", &arm64.digest),
    ));
    // Configured, not running: no image_id, never drift.
    api.apply(&object::<Deployment>(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": template(json!({"containers": containers(&[("app", &app)])}))
    })));

    push_once(&api, &prometheus, &reg).await;

    let drift = prometheus
        .query_until(
            "container_image_running_drift",
            |s| !s.is_empty(),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(drift.len(), 1, "{drift:?}");
    let drifted = &drift[0];
    assert_eq!(drifted.value, 1.0);
    assert_eq!(drifted.label("name"), "old");
    assert_eq!(drifted.label("namespace"), "shop");
    assert_eq!(drifted.label("container"), "app");
    assert_eq!(drifted.label("image"), app);
    assert_eq!(
        drifted.label("digest"),
        new.digest,
        "what the tag names now"
    );
    assert_eq!(
        drifted.label("image_id"),
        format!("{reg}/apps/app@{}", old.digest),
        "what the pod runs, runtime prefix stripped"
    );

    let info = prometheus
        .query(r#"container_image_container_info{kind="Pod"}"#)
        .await;
    assert_eq!(info.len(), 4, "{info:?}");
    for sample in &info {
        let name = sample.label("name");
        let expected_digest = if name == "index" || name == "platform" {
            &index.digest
        } else {
            &new.digest
        };
        assert_eq!(sample.label("digest"), expected_digest, "{name}");
        assert!(
            sample.label("image_id").ends_with(match name {
                "old" => &old.digest,
                "current" => &new.digest,
                "index" => &index.digest,
                _ => &arm64.digest,
            }),
            "{name}: {:?}",
            sample.labels
        );
    }
    let deployment = prometheus
        .query(r#"container_image_container_info{kind="Deployment"}"#)
        .await;
    assert_eq!(deployment.len(), 1);
    assert!(!deployment[0].labels.contains_key("image_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_keeps_the_digest_it_pulled_while_its_registry_is_unreachable() {
    container_image_pusher::install_crypto_provider();
    let (api, prometheus) = tokio::join!(KubeApi::start(), SharedPrometheus::scope());
    // Nothing listens there.
    let host = format!("127.0.0.1:{}", support::free_port());
    let image = format!("{host}/apps/app:1");
    let digest = format!("sha256:{}", "5".repeat(64));
    api.apply(&running_pod(
        "web-0",
        &image,
        &format!("docker-pullable://{host}/apps/app@{digest}"),
    ));

    push_once(&api, &prometheus, &host).await;

    let info = prometheus
        .query_until(
            "container_image_container_info",
            |s| !s.is_empty(),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].label("digest"), digest, "the pulled digest");
    let errors = prometheus.query("container_image_resolve_error").await;
    assert_eq!(
        errors.len(),
        1,
        "the registry's failure is still said: {errors:?}"
    );
    assert_eq!(errors[0].label("image"), image);
    assert_eq!(errors[0].label("class"), "unavailable");
    // Nothing says where the tag points now: no drift either way.
    assert!(prometheus
        .query("container_image_running_drift")
        .await
        .is_empty());
}
