//! Inventory: workloads plus image metadata → the series of one snapshot.
//!
//! The series keep the names, labels and meaning of the Go
//! `container-image-exporter`, so existing queries and dashboards work on
//! pushed data. They are built into the [`series`](crate::series) model,
//! which every sink encodes; which label names each family carries comes
//! from [`Family::label_names`], the one table.
//!
//! What an image adds comes from its registry and was bounded by
//! [`ImageLimits`](crate::registry::ImageLimits) when its metadata was
//! made; what the limits dropped is counted here, once per image, when its
//! series are built.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use prometheus::IntCounterVec;

use crate::discovery::Workload;
use crate::registry::{DropReason, ImageMetadata, Resolutions};
use crate::series::{CommonLabels, Family, Interner, LabelSet, LimitDrop, Series, Snapshot};
use crate::version_series::VersionSeries;
use crate::{ownership, running};

mod signatures;

/// Builds snapshots, reusing the label sets of everything that did not
/// change since the previous one: a workload (same `Arc`, same metadata
/// `Arc`s) or an image (same cached metadata `Arc`) costs no interning,
/// hashing or allocation on a warm tick, only pointer copies.
pub struct Inventory {
    common: Arc<CommonLabels>,
    /// `container_image_pusher_labels_dropped_total`, by [`DropReason`]:
    /// counted when an image's series are built, not at every tick.
    dropped: IntCounterVec,
    /// One copy of each label value the label sets use.
    strings: Interner,
    /// Keyed by the address of the `Arc<Workload>`; holding the `Arc` keeps
    /// the address from being reused by another workload.
    workloads: HashMap<usize, CachedWorkload, ByAddress>,
    images: HashMap<usize, CachedImage, ByAddress>,
    /// Series in the previous snapshot: the next one is sized from it, as
    /// growing a Vec of 100k+ series by doubling wastes a third of it.
    last_len: usize,
    /// Whether each workload gets a `container_image_workload_labels`.
    workload_labels: bool,
    versions: VersionSeries,
}

/// The caches are keyed by `Arc` addresses, which no input chooses: one
/// multiply mixes them (SipHash stood out in a warm tick's profile).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        // The high and low halves of a 128-bit product: every bit of the
        // address reaches the bits a table indexes by.
        let product = u128::from(value) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }
}

type ByAddress = BuildHasherDefault<AddressHasher>;

struct CachedWorkload {
    workload: Arc<Workload>,
    /// The metadata each container's labels were built with (`None` when
    /// unresolved); compared by pointer, so a warm tick allocates nothing.
    images: Vec<Option<Arc<ImageMetadata>>>,
    series: Vec<Series>,
    /// `container_image_running_drift` and `container_image_workload_labels`,
    /// from the same inputs.
    extra: Vec<Series>,
}

struct CachedImage {
    metadata: Arc<ImageMetadata>,
    series: Vec<Series>,
}

impl Inventory {
    pub fn new(common: CommonLabels, dropped: IntCounterVec) -> Self {
        // Every reason at 0 from the start, so a rate over it is defined.
        for reason in DropReason::ALL {
            dropped.with_label_values(&[reason.as_str()]);
        }
        for reason in LimitDrop::ALL {
            dropped.with_label_values(&[reason.as_str()]);
        }
        Inventory {
            common: Arc::new(common),
            dropped,
            strings: Interner::default(),
            workloads: HashMap::default(),
            images: HashMap::default(),
            last_len: 0,
            workload_labels: false,
            versions: VersionSeries::default(),
        }
    }

    /// Gives every workload a `container_image_workload_labels` series
    /// (with `--workload-labels` or `--workload-annotations`), so a join on
    /// it keeps the containers of workloads that lack the labels.
    pub fn with_workload_labels(mut self, on: bool) -> Self {
        self.workload_labels = on;
        self
    }

    /// The series of one snapshot. `resolutions` maps each image string to
    /// its metadata; an image missing from it or failed yields an empty digest.
    pub fn build(
        &mut self,
        workloads: &[Arc<Workload>],
        resolutions: &Resolutions,
        timestamp_ms: i64,
    ) -> Snapshot {
        let mut series = Vec::with_capacity(self.last_len + self.last_len / 64);
        let mut containers = 0;
        // Workloads are numbered as in `resolutions.set_workload_scopes`.
        let metadata = |index: usize, image: &str| {
            resolutions
                .get(resolutions.workload_scope(index), image)
                .and_then(|r| r.as_ref().ok())
        };
        let same = |a: &Option<Arc<ImageMetadata>>, b: &Option<&Arc<ImageMetadata>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };

        // Every container's metadata, in order: looked up once per tick,
        // then also the order in which images get their series.
        let mut used: Vec<Option<&Arc<ImageMetadata>>> = Vec::with_capacity(self.last_len);
        let mut cached_workloads =
            HashMap::with_capacity_and_hasher(workloads.len(), ByAddress::default());
        let mut extra = Vec::new();
        for (index, workload) in workloads.iter().enumerate() {
            let key = Arc::as_ptr(workload) as usize;
            let start = used.len();
            used.extend(
                workload
                    .containers
                    .iter()
                    .map(|c| metadata(index, &c.image)),
            );
            let images = &used[start..];
            let cached = match self.workloads.remove(&key) {
                Some(c)
                    if Arc::ptr_eq(&c.workload, workload)
                        && c.images.len() == images.len()
                        && c.images.iter().zip(images).all(|(a, b)| same(a, b)) =>
                {
                    c
                }
                _ => {
                    let (common, strings) = (&self.common, &mut self.strings);
                    let mut extra = running::drift_series(common, strings, workload, images);
                    if self.workload_labels {
                        extra.push(ownership::workload_labels(common, strings, workload));
                    }
                    CachedWorkload {
                        workload: workload.clone(),
                        images: images.iter().map(|m| m.cloned()).collect(),
                        series: container_series(common, strings, workload, images),
                        extra,
                    }
                }
            };
            containers += workload.containers.len();
            series.extend(cached.series.iter().cloned());
            extra.extend(cached.extra.iter().cloned());
            cached_workloads.insert(key, cached);
        }
        self.workloads = cached_workloads;
        series.append(&mut extra);

        // One set of image series per digest, in order of first use.
        let mut seen_metadata = HashSet::with_hasher(ByAddress::default());
        let mut seen_digests = HashSet::new();
        let mut cached_images =
            HashMap::with_capacity_and_hasher(self.images.len(), ByAddress::default());
        for image in used.into_iter().flatten() {
            let key = Arc::as_ptr(image) as usize;
            if !seen_metadata.insert(key) || !seen_digests.insert(image.digest.as_str()) {
                continue;
            }
            let cached = match self.images.remove(&key) {
                Some(c) if Arc::ptr_eq(&c.metadata, image) => c,
                _ => CachedImage {
                    metadata: image.clone(),
                    series: image_series(&self.common, &mut self.strings, image, &self.dropped),
                },
            };
            series.extend(cached.series.iter().cloned());
            cached_images.insert(key, cached);
        }
        let images = cached_images.len();
        self.images = cached_images;

        // Failing images are few and change often: built afresh.
        let mut failures: Vec<(&str, &'static str)> = resolutions
            .iter()
            .filter_map(|(image, r)| Some((image, r.as_ref().err()?.class.as_str())))
            .collect();
        failures.sort_unstable();
        failures.dedup();
        for (image, class) in failures {
            let values = [self.strings.intern(image), self.strings.intern(class)];
            series.push(Series {
                labels: LabelSet::new(Family::ResolveError, &self.common, Box::new(values)),
                value: 1.0,
            });
        }
        let answers = resolutions.versions();
        let answers = answers.iter().map(|(image, info)| (*image, None, *info));
        let owned = resolutions.container_versions().iter();
        let answers = answers
            .chain(owned.map(|(owner, image, info)| (image.as_str(), Some(owner.clone()), info)));
        self.versions
            .build(&self.common, &mut self.strings, answers, &mut series);
        self.count_limit_drops();
        // Values of workloads and images that left are let go.
        self.strings.prune();
        self.last_len = series.len();
        if series.capacity() > series.len() + series.len() / 16 {
            series.shrink_to_fit();
        }
        Snapshot {
            timestamp_ms,
            series,
            containers,
            images,
        }
    }
}

impl Inventory {
    /// Counts what the per-series limits cut or left out of the label sets
    /// this build made, and says so: only new or changed workloads and
    /// images make label sets, so a warm tick logs nothing.
    fn count_limit_drops(&self) {
        let mut any = false;
        for (reason, count) in self.common.take_drops() {
            if count > 0 {
                any = true;
                self.dropped
                    .with_label_values(&[reason.as_str()])
                    .inc_by(count);
            }
        }
        if any {
            let limits = self.common.limits();
            tracing::warn!(
                max_label_names_per_series = limits.max_label_names,
                max_label_value_bytes = limits.max_value_bytes,
                max_label_name_bytes = limits.max_name_bytes,
                "new or changed series broke the per-series limits: values were cut (ending in …) or workload labels left out; see container_image_pusher_labels_dropped_total"
            );
        }
    }
}

fn container_series(
    common: &Arc<CommonLabels>,
    strings: &mut Interner,
    workload: &Workload,
    images: &[Option<&Arc<ImageMetadata>>],
) -> Vec<Series> {
    let kind = workload.kind;
    let (group, version, kind_name) = (
        strings.intern(kind.group()),
        strings.intern(kind.version()),
        strings.intern(kind.as_str()),
    );
    // The workload's own strings are shared with it, not copied.
    let namespace = strings.adopt(&workload.namespace);
    let name = strings.adopt(&workload.name);
    workload
        .containers
        .iter()
        .zip(images)
        .map(|(container, image)| {
            let digest = running::info_digest(image.map(|m| &**m), container);
            let values = [
                group.clone(),
                version.clone(),
                kind_name.clone(),
                namespace.clone(),
                name.clone(),
                strings.adopt(&container.name),
                strings.adopt(&container.jsonpath),
                strings.adopt(&container.image),
                strings.intern(digest),
                match running::image_id(container) {
                    Some(id) => strings.adopt(id),
                    None => strings.intern(""),
                },
            ];
            Series {
                labels: LabelSet::new(Family::ContainerInfo, common, Box::new(values)),
                value: 1.0,
            }
        })
        .collect()
}

fn image_series(
    common: &Arc<CommonLabels>,
    strings: &mut Interner,
    image: &ImageMetadata,
    dropped: &IntCounterVec,
) -> Vec<Series> {
    for (reason, count) in image.dropped.iter() {
        dropped.with_label_values(&[reason.as_str()]).inc_by(count);
    }
    let digest = strings.intern(&image.digest);
    let mut series = Vec::with_capacity(image.annotations.len() + image.labels.len() + 2);
    let mut push = |family: Family, values: Box<[Arc<str>]>, value: f64| {
        series.push(Series {
            labels: LabelSet::new(family, common, values),
            value,
        });
    };
    for (family, pairs) in [
        (Family::Annotation, &*image.annotations),
        (Family::Label, &*image.labels),
    ] {
        for (key, value) in pairs {
            // Keys and values repeat across images (OCI keys, base images).
            let values = [digest.clone(), strings.intern(key), strings.intern(value)];
            push(family, Box::new(values), 1.0);
        }
    }
    push(
        Family::SizeBytes,
        Box::new([digest.clone()]),
        image.size as f64,
    );
    if let Some(created) = image.created {
        push(Family::Created, Box::new([digest.clone()]), created as f64);
    }
    supply_chain_series(strings, image, &digest, &mut push);
    signatures::verification_series(strings, image, &digest, &mut push);
    series
}

/// `container_image_referrer`, `_base`, `_base_outdated` and
/// `_base_current_created` of one image, from the facts its registry
/// lookup found (none when it found none).
fn supply_chain_series(
    strings: &mut Interner,
    image: &ImageMetadata,
    digest: &Arc<str>,
    push: &mut impl FnMut(Family, Box<[Arc<str>]>, f64),
) {
    let facts = &image.supply_chain;
    if let Some(referrers) = &facts.referrers {
        for ((kind, artifact_type), count) in &referrers.counts {
            let values = [
                digest.clone(),
                strings.intern(kind.as_str()),
                strings.intern(artifact_type),
            ];
            push(Family::Referrer, Box::new(values), *count as f64);
        }
    }
    if let Some(base) = &facts.base {
        let name = strings.intern(&base.name);
        let base_digest = strings.intern(base.digest.as_deref().unwrap_or_default());
        let values = [digest.clone(), name.clone(), base_digest];
        push(Family::Base, Box::new(values), 1.0);
        let per_base = || Box::new([digest.clone(), name.clone()]);
        if let Some(outdated) = base.outdated {
            push(
                Family::BaseOutdated,
                per_base(),
                f64::from(u8::from(outdated)),
            );
        }
        if let Some(created) = base.current_created {
            push(Family::BaseCurrentCreated, per_base(), created as f64);
        }
    }
}

/// A snapshot from plain workloads, for tests of later stages.
#[cfg(test)]
pub(crate) fn build_once(
    workloads: &[Workload],
    resolutions: &HashMap<String, crate::registry::Resolution>,
    common: &CommonLabels,
    timestamp_ms: i64,
) -> Snapshot {
    let workloads: Vec<Arc<Workload>> = workloads.iter().cloned().map(Arc::new).collect();
    let resolutions = Resolutions::from(resolutions.clone());
    let dropped = crate::telemetry::Telemetry::new().labels_dropped;
    let owners = workloads.iter().any(|w| !w.metadata_labels.is_empty());
    Inventory::new(common.clone(), dropped)
        .with_workload_labels(owners)
        .build(&workloads, &resolutions, timestamp_ms)
}

#[cfg(test)]
#[path = "running_tests.rs"]
mod running_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Container, Kind};
    use crate::registry::{ErrorClass, ImageLimits, ImageMetadata, ResolveError, TRUNCATED};
    use crate::series::fixtures::pairs;
    use crate::series::{check_external_labels, NAME_LABEL};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn build(
        workloads: &[Workload],
        resolutions: &HashMap<String, crate::registry::Resolution>,
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
            labels: Arc::new(BTreeMap::from([
                ("dev.chainguard.package.main".into(), "static".into()),
                ("empty".into(), String::new()),
            ])),
            annotations: Arc::new(BTreeMap::from([(
                "org.opencontainers.image.base.name".into(),
                "cgr.dev/chainguard/static".into(),
            )])),
            dropped: Default::default(),
            supply_chain: Default::default(),
            platform_digests: Vec::new(),
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
            .find(|s| s.family() == Family::Label && s.labels.iter().any(|(_, v)| v == "empty"))
            .unwrap();
        assert!(
            !empty.labels.iter().any(|(n, _)| n == "value"),
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
            crate::telemetry::Telemetry::new().labels_dropped,
        );
        let named = |name: String, image: String| {
            let mut w = workload(&image);
            w.name = name.into();
            Arc::new(w)
        };
        let steady = [named("steady".into(), "app:1".into())];
        let mut images = HashMap::from([("app:1".to_owned(), Ok(metadata("sha256:aa")))]);
        inventory.build(&steady, &Resolutions::from(images.clone()), 0);
        let baseline = inventory.strings.len();
        for tick in 1..50 {
            // Pods come and go, 20 a tick, each running an image of its
            // own: 20 new digests a tick. (Their names are the workloads'
            // own strings, which the interner shares but does not keep.)
            let mut churn = Vec::new();
            let mut resolutions = images.clone();
            for i in 0..20 {
                let image = format!("app-{tick}-{i}:1");
                let digest = format!("sha256:{tick:04}{i:04}");
                resolutions.insert(image.clone(), Ok(metadata(&digest)));
                churn.push(named(format!("pod-{tick}-{i}"), image));
            }
            churn.push(steady[0].clone());
            let snap = inventory.build(&churn, &Resolutions::from(resolutions), tick);
            assert_eq!(snap.containers, 21);
            assert_eq!(inventory.strings.len(), baseline + 20, "tick {tick}");
        }
        images.retain(|image, _| image == "app:1");
        inventory.build(&steady, &Resolutions::from(images), 99);
        assert_eq!(inventory.strings.len(), baseline);
    }

    #[test]
    fn label_values_are_the_workloads_own_strings() {
        use crate::discovery::ownership::Allowlist;
        use crate::discovery::{workload_keeping, MetadataAllowlist, StringPool};
        // Two Pods reduced as a watched source reduces them, through one
        // pool; they run what app:1 named before it moved (drift) and are
        // owned by a team.
        let pool = StringPool::default();
        let allow = MetadataAllowlist {
            labels: Allowlist::new(&["team"]),
            annotations: Allowlist::default(),
        };
        let pod = |name: &str| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "shop", "labels": {"team": "payments"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                "status": {"containerStatuses": [{
                    "name": "app", "image": "app:1", "ready": true, "restartCount": 0,
                    "imageID": format!("app@sha256:{}", "b".repeat(64)),
                    "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
                }]}
            }))
            .unwrap()
        };
        let workloads: Vec<Arc<Workload>> = ["a", "b"]
            .iter()
            .map(|name| Arc::new(workload_keeping(&pod(name), "default", &allow, &pool)))
            .collect();
        assert!(Arc::ptr_eq(
            &workloads[0].namespace,
            &workloads[1].namespace
        ));
        let resolutions = Resolutions::from(HashMap::from([(
            "app:1".to_owned(),
            Ok(metadata("sha256:aa")),
        )]));
        let snap = Inventory::new(
            CommonLabels::new("j", &[]),
            crate::telemetry::Telemetry::new().labels_dropped,
        )
        .with_workload_labels(true)
        .build(&workloads, &resolutions, 0);

        let shared = |series: &Series, name: &str, value: &Arc<str>| {
            let got = series.labels.iter().find(|(n, _)| *n == name).unwrap().1;
            assert!(
                std::ptr::eq(got.as_ptr(), value.as_ptr()),
                "{name} of {} is a copy",
                series.family().name()
            );
        };
        let mut checked = HashSet::new();
        for series in &snap.series {
            let Some(name) = series.labels.get("name") else {
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
                    if series.family() == Family::ContainerInfo {
                        shared(series, "jsonpath", &container.jsonpath);
                    }
                }
                Family::WorkloadLabels => {
                    let (label, team) = &workload.metadata_labels[0];
                    let (got_label, got_team) =
                        series.labels.iter().find(|(n, _)| *n == &**label).unwrap();
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
            crate::telemetry::Telemetry::new().labels_dropped,
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
        assert_eq!(third.series[0].labels.get("digest"), Some("sha256:bb"));
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
        Arc::make_mut(&mut image.labels).retain(|_, v| !v.is_empty());
        image.supply_chain = crate::registry::SupplyChain::example();
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
        let dropped = crate::telemetry::Telemetry::new().labels_dropped;
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
        let dropped_total = crate::telemetry::Telemetry::new().labels_dropped;
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
        let dropped_total = crate::telemetry::Telemetry::new().labels_dropped;
        let limits = ImageLimits {
            max_labels: 0,
            max_annotations: 0,
            max_value_length: 64,
        };
        let image = metadata("sha256:aa");
        let image = bounded(
            &image,
            (*image.labels).clone(),
            (*image.annotations).clone(),
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
}

#[cfg(test)]
#[path = "inventory_limits_tests.rs"]
mod limits_tests;
