//! Unit tests of [`super`]: the series of snapshots, their reuse from one
//! build to the next, and what the limits drop.

use super::*;
use crate::discovery::{Container, Kind};
use crate::image_facts::limits::{ImageLimits, TRUNCATED};
use crate::image_facts::{ErrorClass, ImageMetadata, Pairs, ResolveError};
use crate::series::fixtures::pairs;
use crate::series::{check_external_labels, NAME_LABEL};
use std::collections::BTreeMap;
use std::sync::Arc;

fn build(
    workloads: &[Workload],
    resolutions: &HashMap<String, crate::image_facts::Resolution>,
    common: &CommonLabels,
    ts: i64,
) -> Snapshot {
    build_once(workloads, resolutions, common, ts)
}

fn workload(image: &str) -> Workload {
    Workload {
        kind: Kind::Deployment,
        namespace: "shop".into(),
        name: "api".into(),
        containers: vec![Container {
            name: "api".into(),
            image: image.into(),
            jsonpath: "{.spec.template.spec.containers[0]}".into(),
            image_id: None,
            versions: None,
        }],
        pull: Default::default(),
        metadata_labels: Vec::new(),
    }
}

fn metadata(digest: &str) -> Arc<ImageMetadata> {
    Arc::new(ImageMetadata {
        digest: digest.into(),
        size: 1234,
        created: Some(1_700_000_000),
        labels: Pairs::from(BTreeMap::from([
            ("dev.chainguard.package.main".into(), "static".into()),
            ("empty".into(), String::new()),
        ])),
        annotations: Pairs::from(BTreeMap::from([(
            "org.opencontainers.image.base.name".into(),
            "cgr.dev/chainguard/static".into(),
        )])),
        dropped: Default::default(),
        supply_chain: Default::default(),
        platform_digests: Vec::new(),
        pending: false,
    })
}

#[test]
fn container_info_carries_the_workload_container_and_digest() {
    let common = CommonLabels::new(
        "container-image-pusher",
        &[("cluster".into(), "prod".into())],
    );
    let resolutions = HashMap::from([("app:1".to_owned(), Ok(metadata("sha256:aa")))]);
    let snap = build(&[workload("app:1")], &resolutions, &common, 42);
    let info = &snap.series[0];
    let expected: Vec<(String, String)> = [
        ("__name__", "container_image_container_info"),
        ("cluster", "prod"),
        ("container", "api"),
        ("digest", "sha256:aa"),
        ("group", "apps"),
        ("image", "app:1"),
        ("job", "container-image-pusher"),
        ("jsonpath", "{.spec.template.spec.containers[0]}"),
        ("kind", "Deployment"),
        ("name", "api"),
        ("namespace", "shop"),
        ("version", "v1"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(pairs(info), expected);
    assert_eq!(info.value, 1.0);
}

#[test]
fn one_set_of_image_series_per_digest() {
    let common = CommonLabels::new("j", &[]);
    let resolutions = HashMap::from([
        ("a:1".to_owned(), Ok(metadata("sha256:aa"))),
        ("b:1".to_owned(), Ok(metadata("sha256:aa"))),
    ]);
    let snap = build(
        &[workload("a:1"), workload("b:1")],
        &resolutions,
        &common,
        0,
    );
    let count = |f: Family| snap.series.iter().filter(|s| s.family() == f).count();
    assert_eq!(count(Family::ContainerInfo), 2);
    assert_eq!(count(Family::SizeBytes), 1);
    assert_eq!(count(Family::Created), 1);
    assert_eq!(count(Family::Label), 2);
    assert_eq!(count(Family::Annotation), 1);
    assert_eq!((snap.containers, snap.images), (2, 1));
    let empty = snap
        .series
        .iter()
        .find(|s| s.family() == Family::Label && pairs(s).iter().any(|(_, v)| v == "empty"))
        .unwrap();
    assert!(
        !pairs(empty).iter().any(|(n, _)| n == "value"),
        "empty values are dropped"
    );
}

#[test]
fn unresolved_images_keep_their_info_series_with_an_empty_digest() {
    let common = CommonLabels::new("j", &[]);
    let failed = Err(ResolveError {
        class: ErrorClass::NotFound,
        message: "gone".into(),
    });
    let resolutions = HashMap::from([("gone:1".to_owned(), failed)]);
    let snap = build(
        &[workload("gone:1"), workload("never-resolved:1")],
        &resolutions,
        &common,
        0,
    );
    let (info, errors): (Vec<_>, Vec<_>) = snap
        .series
        .iter()
        .partition(|s| s.family() == Family::ContainerInfo);
    assert_eq!(info.len(), 2);
    let error_labels = pairs(errors[0]);
    assert!(
        error_labels.contains(&("class".into(), "not_found".into())),
        "{error_labels:?}"
    );
    assert!(
        error_labels.contains(&("image".into(), "gone:1".into())),
        "{error_labels:?}"
    );
    for series in &info {
        let labels = pairs(series);
        assert!(!labels.iter().any(|(n, _)| n == "digest"));
        assert!(
            labels.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted and unique"
        );
    }
}

#[test]
fn values_of_workloads_that_left_are_let_go() {
    let mut inventory = Inventory::new(
        CommonLabels::new("j", &[]),
        crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped,
    );
    let named = |name: String, image: String| {
        let mut w = workload(&image);
        w.name = name.into();
        Arc::new(w)
    };
    let steady = [named("steady".into(), "app:1".into())];
    let mut images = HashMap::from([("app:1".to_owned(), Ok(metadata("sha256:aa")))]);
    inventory.build(&steady, &Resolutions::from(images.clone()), 0);
    // The process' one table, which other tests fill at the same time:
    // only this test's own values are looked for.
    let digest = |tick: i64, i: i64| format!("sha256:churn-{tick:04}{i:04}");
    let held = |tick: i64| {
        (0..20)
            .filter(|i| symbols::table().contains(&digest(tick, *i)))
            .count()
    };
    for tick in 1..50 {
        // Pods come and go, 20 a tick, each running an image of its
        // own: 20 new digests a tick.
        let mut churn = Vec::new();
        let mut resolutions = images.clone();
        for i in 0..20 {
            let image = format!("app-{tick}-{i}:1");
            let digest = digest(tick, i);
            resolutions.insert(image.clone(), Ok(metadata(&digest)));
            churn.push(named(format!("pod-{tick}-{i}"), image));
        }
        churn.push(steady[0].clone());
        let snap = inventory.build(&churn, &Resolutions::from(resolutions), tick);
        assert_eq!(snap.containers, 21);
        assert_eq!(held(tick), 20, "tick {tick}");
        assert_eq!(held(tick - 1), 0, "the last tick's, let go at tick {tick}");
    }
    images.retain(|image, _| image == "app:1");
    inventory.build(&steady, &Resolutions::from(images), 99);
    assert_eq!(held(49), 0);
    assert!(symbols::table().contains("sha256:aa"), "still in use");
}

#[test]
fn label_values_are_the_workloads_own_strings() {
    use crate::discovery::metadata_allowlist::Allowlist;
    use crate::discovery::{workload_keeping, MetadataAllowlist};
    use crate::interner::StringPool;
    // Two Pods reduced as a watched source reduces them, through one
    // pool; they run what app:1 named before it moved (drift) and are
    // owned by a team.
    let pool = StringPool::default();
    let allow = MetadataAllowlist {
        labels: Allowlist::new(&["ownteam"]),
        annotations: Allowlist::default(),
    };
    let pod = |name: &str| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "own-shop", "labels": {"ownteam": "own-payments"}},
            "spec": {"containers": [{"name": "own-app", "image": "own-app:1"}]},
            "status": {"containerStatuses": [{
                "name": "own-app", "image": "own-app:1", "ready": true, "restartCount": 0,
                "imageID": format!("own-app@sha256:{}", "b".repeat(64)),
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
            }]}
        }))
        .unwrap()
    };
    // Values no other test uses, so that the process' table has none of
    // them before (it keeps the first copy it is given).
    let workloads: Vec<Arc<Workload>> = ["own-a", "own-b"]
        .iter()
        .map(|name| Arc::new(workload_keeping(&pod(name), "default", &allow, &pool)))
        .collect();
    assert!(Arc::ptr_eq(
        &workloads[0].namespace,
        &workloads[1].namespace
    ));
    let resolutions = Resolutions::from(HashMap::from([(
        "own-app:1".to_owned(),
        Ok(metadata("sha256:aa")),
    )]));
    let snap = Inventory::new(
        CommonLabels::new("j", &[]),
        crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped,
    )
    .with_workload_labels(true)
    .build(&workloads, &resolutions, 0);

    let symbols = symbols::table().read();
    let shared = |series: &Series, name: &str, value: &Arc<str>| {
        let got = series.labels.get(name, &symbols).unwrap();
        assert!(
            std::ptr::eq(got.as_ptr(), value.as_ptr()),
            "{name} of {} is a copy",
            series.family().name()
        );
    };
    let mut checked = HashSet::new();
    for series in &snap.series {
        let Some(name) = series.labels.get("name", &symbols) else {
            continue;
        };
        let workload = workloads.iter().find(|w| &*w.name == name).unwrap();
        let container = &workload.containers[0];
        let image_id = &container.image_id.as_ref().unwrap().reference;
        shared(series, "namespace", &workload.namespace);
        shared(series, "name", &workload.name);
        match series.family() {
            Family::ContainerInfo | Family::RunningDrift => {
                shared(series, "container", &container.name);
                shared(series, "image", &container.image);
                shared(series, "image_id", image_id);
                // (Not the jsonpath: other tests' Pods have it too.)
            }
            Family::WorkloadLabels => {
                let (label, team) = &workload.metadata_labels[0];
                let (got_label, got_team) = series
                    .labels
                    .iter(&symbols)
                    .find(|(n, _)| *n == &**label)
                    .unwrap();
                assert!(std::ptr::eq(got_label.as_ptr(), label.as_ptr()));
                assert!(std::ptr::eq(got_team.as_ptr(), team.as_ptr()));
            }
            other => panic!("{} has no workload name", other.name()),
        }
        checked.insert((series.family(), name.to_owned()));
    }
    assert_eq!(checked.len(), 6, "three families for each of two Pods");
}

#[test]
fn no_created_means_no_created_series() {
    let mut m = (*metadata("sha256:bb")).clone();
    m.created = None;
    let resolutions = HashMap::from([("c:1".to_owned(), Ok(Arc::new(m)))]);
    let snap = build(
        &[workload("c:1")],
        &resolutions,
        &CommonLabels::new("j", &[]),
        0,
    );
    assert!(!snap.series.iter().any(|s| s.family() == Family::Created));
}

#[test]
fn unchanged_label_sets_are_reused_between_ticks() {
    let mut inventory = Inventory::new(
        CommonLabels::new("j", &[]),
        crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped,
    );
    let workloads = [Arc::new(workload("a:1")), Arc::new(workload("b:1"))];
    let image = metadata("sha256:aa");
    let resolutions = HashMap::from([
        ("a:1".to_owned(), Ok(image.clone())),
        ("b:1".to_owned(), Ok(image.clone())),
    ]);
    let resolutions = Resolutions::from(resolutions);
    let first = inventory.build(&workloads, &resolutions, 1);
    let second = inventory.build(&workloads, &resolutions, 2);
    assert_eq!(first.series.len(), second.series.len());
    for (a, b) in first.series.iter().zip(&second.series) {
        assert!(
            a.labels.ptr_eq(&b.labels),
            "the same label set, not rebuilt"
        );
    }
    // A tag that moved to a new digest is rebuilt; the other container is not.
    let moved = HashMap::from([
        ("a:1".to_owned(), Ok(metadata("sha256:bb"))),
        ("b:1".to_owned(), Ok(image)),
    ]);
    let moved = Resolutions::from(moved);
    let third = inventory.build(&workloads, &moved, 3);
    assert!(!third.series[0].labels.ptr_eq(&second.series[0].labels));
    let digest = |s: &Series| {
        s.labels
            .get("digest", &symbols::table().read())
            .map(str::to_owned)
    };
    assert_eq!(digest(&third.series[0]).as_deref(), Some("sha256:bb"));
    assert!(third.series[1].labels.ptr_eq(&second.series[1].labels));
    // A replaced object (new Arc, as a watch event gives) is rebuilt.
    let replaced = [Arc::new(workload("a:1")), workloads[1].clone()];
    let fourth = inventory.build(&replaced, &moved, 4);
    assert!(!fourth.series[0].labels.ptr_eq(&third.series[0].labels));
    assert_eq!(fourth.series[0].labels, third.series[0].labels);
    assert_eq!(
        fourth.series[0].labels.hash(),
        third.series[0].labels.hash()
    );
}

#[test]
fn every_series_has_its_family_labels_once_and_sorted() {
    let external = [
        ("cluster".to_owned(), "prod".to_owned()),
        ("a_first".to_owned(), "x".to_owned()),
    ];
    let common = CommonLabels::new("j", &external);
    let failed = Err(ResolveError {
        class: ErrorClass::Unauthorized,
        message: "no".into(),
    });
    let mut image = (*metadata("sha256:aa")).clone();
    let mut labels = image.labels.to_map();
    labels.retain(|_, v| !v.is_empty());
    image.labels = labels.into();
    image.supply_chain = crate::image_facts::supply_chain::SupplyChain::example();
    let resolutions = HashMap::from([
        ("app:1".to_owned(), Ok(Arc::new(image))),
        ("private:1".to_owned(), failed),
    ]);
    // A team's Pod still running what app:1 named before it moved.
    let mut pod = workload("app:1");
    pod.kind = Kind::Pod;
    pod.containers[0].image_id = crate::discovery::ImageId::parse(
        &format!("docker-pullable://app@sha256:{}", "b".repeat(64)),
        true,
    );
    pod.metadata_labels = vec![("label_team".into(), "payments".into())];
    let mut resolutions = Resolutions::from(resolutions);
    resolutions.insert_versions(
        crate::credentials::Scope::NONE,
        "app:1".into(),
        Arc::new(crate::version_series::example()),
    );
    let workloads: Vec<Arc<Workload>> = [workload("app:1"), workload("private:1"), pod]
        .into_iter()
        .map(Arc::new)
        .collect();
    let dropped = crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped;
    let snap = Inventory::new(common.clone(), dropped)
        .with_workload_labels(true)
        .build(&workloads, &resolutions, 0);
    let families: HashSet<Family> = snap.series.iter().map(Series::family).collect();
    let inventory = Family::ALL.iter().filter(|f| !f.is_self_metric());
    assert_eq!(families.len(), inventory.count(), "every family is built");
    check_external_labels(&external, "__replica__").unwrap();
    for series in &snap.series {
        let labels = pairs(series);
        assert!(
            labels.windows(2).all(|w| w[0].0 < w[1].0),
            "names sorted and unique, as remote write requires: {labels:?}"
        );
        let mut expected: Vec<&str> = vec![NAME_LABEL];
        expected.extend(common.names());
        expected.extend(series.family().label_names());
        let is_pod = labels.iter().any(|(n, v)| n == "kind" && v == "Pod");
        if series.family() == Family::WorkloadLabels && is_pod {
            expected.push("label_team");
        }
        // Pods are in the core group: no `group`.
        if is_pod {
            expected.retain(|n| *n != "group");
        }
        // The unresolved container's empty digest is not sent, nor an
        // image_id where no runtime reported one.
        if labels.iter().any(|(n, v)| n == "image" && v == "private:1") {
            expected.retain(|n| *n != "digest");
        }
        if series.family() == Family::ContainerInfo && !is_pod {
            expected.retain(|n| *n != "image_id");
        }
        // Version series name a container only when it has overrides.
        if crate::version_series::FAMILIES.contains(&series.family()) {
            expected.retain(|n| !["namespace", "name", "container"].contains(n));
        }
        expected.sort_unstable();
        let names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected, "{}", series.family().name());
    }
}

fn dropped(counter: &IntCounterVec, reason: DropReason) -> u64 {
    counter.with_label_values(&[reason.as_str()]).get()
}

/// `image` with the labels and annotations given, bounded by `limits`
/// as the registry bounds what it caches.
fn bounded(
    image: &ImageMetadata,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    limits: &ImageLimits,
) -> Arc<ImageMetadata> {
    Arc::new(ImageMetadata::bounded(
        image.digest.clone(),
        image.size,
        image.created,
        labels,
        annotations,
        limits,
    ))
}

#[test]
fn one_image_adds_a_bounded_number_of_series() {
    let long_value = "é".repeat(50 * 1024); // 100 KiB, two bytes a char
    let mut labels: BTreeMap<String, String> = (0..5000)
        .map(|i| (format!("label.{i:05}"), format!("v{i}")))
        .collect();
    labels.insert("label.00002".into(), long_value.clone());
    labels.insert(String::new(), "empty key".into());
    labels.insert("k".repeat(2000), "long key".into());
    let annotations = (0..300)
        .map(|i| (format!("annotation.{i:03}"), "v".into()))
        .collect();
    let limits = ImageLimits::default();
    let image = bounded(&metadata("sha256:aa"), labels, annotations, &limits);
    let dropped_total = crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped;
    let mut inventory = Inventory::new(CommonLabels::new("j", &[]), dropped_total.clone());
    let workloads = [Arc::new(workload("app:1"))];
    let resolutions = Resolutions::from(HashMap::from([("app:1".to_owned(), Ok(image))]));
    let snap = inventory.build(&workloads, &resolutions, 0);

    let of = |family: Family| -> Vec<Vec<(String, String)>> {
        snap.series
            .iter()
            .filter(|s| s.family() == family)
            .map(pairs)
            .collect()
    };
    let value_of = |labels: &[(String, String)], name: &str| {
        labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let labels = of(Family::Label);
    let keys: Vec<String> = labels.iter().map(|l| value_of(l, "key")).collect();
    let first: Vec<String> = (0..128).map(|i| format!("label.{i:05}")).collect();
    assert_eq!(keys, first, "the first 128 keys in byte order");
    let cut = value_of(&labels[2], "value");
    assert!(cut.len() <= limits.max_value_length, "{}", cut.len());
    assert!(cut.ends_with(TRUNCATED));
    assert!(long_value.starts_with(cut.trim_end_matches(TRUNCATED)));
    assert_eq!(of(Family::Annotation).len(), 128);
    assert_eq!(of(Family::ContainerInfo).len(), 1);
    assert_eq!(of(Family::SizeBytes).len(), 1);
    assert_eq!(of(Family::Created).len(), 1);

    assert_eq!(
        dropped(&dropped_total, DropReason::TooManyLabels),
        5000 - 128
    );
    assert_eq!(
        dropped(&dropped_total, DropReason::TooManyAnnotations),
        300 - 128
    );
    assert_eq!(dropped(&dropped_total, DropReason::ValueTooLong), 1);
    assert_eq!(dropped(&dropped_total, DropReason::KeyTooLong), 1);
    assert_eq!(dropped(&dropped_total, DropReason::EmptyKey), 1);

    // Counted when the image's series are built, not at every tick.
    inventory.build(&workloads, &resolutions, 1);
    assert_eq!(
        dropped(&dropped_total, DropReason::TooManyLabels),
        5000 - 128
    );
}

#[test]
fn limits_of_zero_keep_no_labels_and_the_other_series() {
    let dropped_total = crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped;
    let limits = ImageLimits {
        max_labels: 0,
        max_annotations: 0,
        max_value_length: 64,
    };
    let image = metadata("sha256:aa");
    let image = bounded(
        &image,
        image.labels.to_map(),
        image.annotations.to_map(),
        &limits,
    );
    let mut inventory = Inventory::new(CommonLabels::new("j", &[]), dropped_total.clone());
    let resolutions = Resolutions::from(HashMap::from([("app:1".to_owned(), Ok(image))]));
    let snap = inventory.build(&[Arc::new(workload("app:1"))], &resolutions, 0);
    let families: Vec<Family> = snap.series.iter().map(Series::family).collect();
    assert_eq!(
        families,
        [Family::ContainerInfo, Family::SizeBytes, Family::Created]
    );
    assert_eq!(dropped(&dropped_total, DropReason::TooManyLabels), 2);
    assert_eq!(dropped(&dropped_total, DropReason::TooManyAnnotations), 1);
    // Every reason is there from the start.
    assert_eq!(dropped(&dropped_total, DropReason::ValueTooLong), 0);
    use prometheus::core::Collector;
    assert_eq!(
        dropped_total.collect()[0].get_metric().len(),
        DropReason::ALL.len() + LimitDrop::ALL.len()
    );
}

/// Containers naming one image (one shared `Arc`, as the sources share
/// it) in different credential scopes each take their own scope's digest:
/// a build looks each (scope, image) up once, not each image.
#[test]
fn one_image_in_two_scopes_takes_each_scopes_digest() {
    use crate::credentials::Scope;
    let image: Arc<str> = Arc::from("scoped:1");
    let workloads: Vec<Arc<Workload>> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let mut w = workload("scoped:1");
            w.name = name.into();
            w.containers[0].image = image.clone();
            Arc::new(w)
        })
        .collect();
    let mut resolutions = Resolutions::default();
    resolutions.insert(
        Scope::for_test(1),
        "scoped:1".into(),
        Ok(metadata("sha256:11")),
    );
    resolutions.insert(
        Scope::for_test(2),
        "scoped:1".into(),
        Ok(metadata("sha256:22")),
    );
    resolutions.set_workload_scopes(vec![
        Scope::for_test(1),
        Scope::for_test(2),
        Scope::for_test(1),
    ]);
    let dropped = crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped;
    let snap =
        Inventory::new(CommonLabels::new("j", &[]), dropped).build(&workloads, &resolutions, 0);
    let symbols = symbols::table().read();
    let digests: Vec<(&str, &str)> = snap
        .series
        .iter()
        .filter(|s| s.family() == Family::ContainerInfo)
        .map(|s| {
            let get = |name| s.labels.get(name, &symbols).unwrap();
            (get("name"), get("digest"))
        })
        .collect();
    assert_eq!(
        digests,
        [("a", "sha256:11"), ("b", "sha256:22"), ("c", "sha256:11")]
    );
}
