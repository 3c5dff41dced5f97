//! Tests of what pods run ([`super::running_drift`]) through the series
//! the inventory builds from them: part of `inventory`'s tests, so
//! `running_drift` needs nothing of the module that calls it.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::discovery::{workload, ImageId, Kind, Workload};
use crate::image_facts::{ErrorClass, ImageMetadata, Resolution, ResolveError};
use crate::inventory::build_once;
use crate::series::{CommonLabels, Family, Series};

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn pod(image: &str, image_id: &str, state: serde_json::Value) -> Workload {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {"containerStatuses": [{
            "name": "app", "image": image, "imageID": image_id,
            "ready": true, "restartCount": 0, "state": state
        }]}
    }))
    .unwrap();
    workload(&pod, "default")
}

fn running() -> serde_json::Value {
    json!({"running": {"startedAt": "2024-01-01T00:00:00Z"}})
}

fn metadata(digest: &str, platforms: &[String]) -> Resolution {
    let mut m = ImageMetadata::bounded(
        digest.into(),
        1,
        None,
        Default::default(),
        Default::default(),
        &Default::default(),
    );
    m.platform_digests = platforms.to_vec();
    Ok(Arc::new(m))
}

fn labels_of(series: &Series) -> HashMap<String, String> {
    crate::series::fixtures::pairs(series).into_iter().collect()
}

fn of(
    workloads: &[Workload],
    image: &str,
    resolution: Resolution,
    family: Family,
) -> Vec<HashMap<String, String>> {
    let resolutions = HashMap::from([(image.to_owned(), resolution)]);
    build_once(workloads, &resolutions, &CommonLabels::new("j", &[]), 0)
        .series
        .iter()
        .filter(|s| s.family() == family)
        .map(labels_of)
        .collect()
}

#[test]
fn image_ids_are_digest_references_without_the_runtime_prefix() {
    let d = digest('a');
    for (raw, reference) in [
        (format!("docker-pullable://nginx@{d}"), format!("nginx@{d}")),
        (
            format!("docker.io/library/nginx@{d}"),
            format!("docker.io/library/nginx@{d}"),
        ),
        (
            format!("cri-o://registry:5000/a/b@{d}"),
            format!("registry:5000/a/b@{d}"),
        ),
    ] {
        let id = ImageId::parse(&raw, true).unwrap_or_else(|| panic!("{raw}"));
        assert_eq!(&*id.reference, reference);
        assert_eq!(id.digest(), d);
    }
    for raw in [
        String::new(),
        // Docker's local image ID is the config's digest: no manifest.
        format!("docker://{d}"),
        d.clone(),
        format!("nginx@{}", d.to_uppercase()),
        format!("nginx@sha256:{}", "a".repeat(63)),
        "nginx@md5:abc".into(),
        format!("@{d}"),
        format!("bad name@{d}"),
        format!("{}@{d}", "x".repeat(600)),
    ] {
        assert_eq!(ImageId::parse(&raw, true), None, "{raw}");
    }
}

#[test]
fn pod_statuses_give_each_container_its_image_id() {
    let (a, b, c) = (digest('a'), digest('b'), digest('c'));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {
            "initContainers": [{"name": "init", "image": "init:1"}],
            "containers": [{"name": "app", "image": "app:1"}, {"name": "pending", "image": "app:2"}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox"}]
        },
        "status": {
            "initContainerStatuses": [{"name": "init", "image": "init:1", "imageID": format!("init@{a}"), "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
                {"name": "pending", "image": "app:2", "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {}}},
                {"name": "app", "image": "app:1", "imageID": format!("docker-pullable://app@{b}"), "ready": true, "restartCount": 0, "state": running()}
            ],
            "ephemeralContainerStatuses": [{"name": "debug", "image": "busybox", "imageID": format!("busybox@{c}"), "ready": false, "restartCount": 0, "state": running()}]
        }
    }))
    .unwrap();
    let w = workload(&pod, "default");
    let ids: Vec<_> = w
        .containers
        .iter()
        .map(|c| {
            c.image_id
                .as_ref()
                .map(|i| (i.reference.to_string(), i.running))
        })
        .collect();
    assert_eq!(
        ids,
        [
            Some((format!("init@{a}"), false)),
            Some((format!("app@{b}"), true)),
            None,
            Some((format!("busybox@{c}"), true)),
        ]
    );
}

#[test]
fn a_pod_whose_registry_fails_keeps_the_digest_it_pulled() {
    let old = digest('a');
    let w = pod("app:1", &format!("docker-pullable://app@{old}"), running());
    let failed = Err(ResolveError {
        class: ErrorClass::Unavailable,
        message: "down".into(),
    });
    let resolutions = HashMap::from([("app:1".to_owned(), failed)]);
    let snap = build_once(&[w], &resolutions, &CommonLabels::new("j", &[]), 0);
    let info: Vec<_> = snap
        .series
        .iter()
        .filter(|s| s.family() == Family::ContainerInfo)
        .map(labels_of)
        .collect();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0]["digest"], old);
    assert_eq!(info[0]["image_id"], format!("app@{old}"));
    assert!(
        snap.series
            .iter()
            .any(|s| s.family() == Family::ResolveError),
        "the registry's failure is still said"
    );
    assert!(!snap
        .series
        .iter()
        .any(|s| s.family() == Family::RunningDrift));
}

#[test]
fn resolved_pods_show_the_resolved_digest_and_what_they_run() {
    let (old, new) = (digest('a'), digest('b'));
    let w = pod("app:1", &format!("app@{old}"), running());
    let info = of(&[w], "app:1", metadata(&new, &[]), Family::ContainerInfo);
    assert_eq!(info[0]["digest"], new);
    assert_eq!(info[0]["image_id"], format!("app@{old}"));
}

#[test]
fn a_moved_tag_is_drift_for_its_running_containers() {
    let (old, new) = (digest('a'), digest('b'));
    let drifted = pod("app:1", &format!("docker-pullable://app@{old}"), running());
    let drift = of(
        &[drifted],
        "app:1",
        metadata(&new, &[]),
        Family::RunningDrift,
    );
    let expected: HashMap<String, String> = [
        ("__name__", "container_image_running_drift"),
        ("job", "j"),
        ("namespace", "shop"),
        ("name", "web-0"),
        ("container", "app"),
        ("image", "app:1"),
        ("digest", new.as_str()),
        ("image_id", &format!("app@{old}")),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(drift, [expected]);

    // Not running (terminated, waiting): what it pulled runs nowhere.
    let stopped = pod(
        "app:1",
        &format!("app@{old}"),
        json!({"terminated": {"exitCode": 0}}),
    );
    assert!(of(
        &[stopped],
        "app:1",
        metadata(&new, &[]),
        Family::RunningDrift
    )
    .is_empty());
}

#[test]
fn the_current_digest_or_a_manifest_of_the_current_index_is_no_drift() {
    let (index, amd64, arm64, other) = (digest('1'), digest('2'), digest('3'), digest('4'));
    let platforms = [amd64.clone(), arm64.clone()];
    for running_digest in [&index, &amd64, &arm64] {
        let w = pod("app:1", &format!("app@{running_digest}"), running());
        let drift = of(
            &[w],
            "app:1",
            metadata(&index, &platforms),
            Family::RunningDrift,
        );
        assert!(drift.is_empty(), "{running_digest}: {drift:?}");
    }
    let w = pod("app:1", &format!("app@{other}"), running());
    assert_eq!(
        of(
            &[w],
            "app:1",
            metadata(&index, &platforms),
            Family::RunningDrift
        )
        .len(),
        1
    );
}

#[test]
fn only_a_moved_image_id_changes_a_pods_workload() {
    // The watch keeps a workload's Arc (and its encoded series) while
    // the extraction is equal: readiness flapping must not re-encode.
    let id = format!("app@{}", digest('a'));
    let ready = pod("app:1", &id, running());
    let mut flapping: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "app", "image": "app:1", "imageID": id,
                "ready": false, "restartCount": 3, "state": running()}]}
    }))
    .unwrap();
    assert_eq!(workload(&flapping, "default"), ready);
    let status = flapping.status.as_mut().unwrap();
    status.container_statuses.as_mut().unwrap()[0].image_id = format!("app@{}", digest('b'));
    assert_ne!(workload(&flapping, "default"), ready);
}

#[test]
fn other_kinds_have_no_image_id() {
    let mut w = pod("app:1", &format!("app@{}", digest('a')), running());
    w.kind = Kind::Deployment;
    w.containers[0].image_id = None;
    let info = of(
        &[w],
        "app:1",
        metadata(&digest('b'), &[]),
        Family::ContainerInfo,
    );
    assert!(!info[0].contains_key("image_id"), "{info:?}");
}
