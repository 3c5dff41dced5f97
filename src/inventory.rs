//! Inventory: workloads plus image metadata → the series of one snapshot.
//!
//! The series keep the names, labels and meaning of the Go
//! `container-image-exporter`, so existing queries and dashboards work on
//! pushed data. Each series' label set is stored already encoded as the
//! labels of a remote-write `TimeSeries` (sorted by name, names unique,
//! empty values dropped): the form the hot path — pushing every tick —
//! needs, built once per series. `/metrics` and `--dry-run` decode it back.
//!
//! Which label names each family carries is written down once, in
//! [`Family::label_names`]: the builders zip their values with it, and
//! [`check_external_labels`] refuses every name in it, so no series can
//! carry a name twice (a receiver rejects the whole batch if one does).
//! What an image adds comes from its registry and was bounded by
//! [`ImageLimits`](crate::registry::ImageLimits) when its metadata was made; what the limits dropped is
//! counted here, once per image, when its series are built.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prometheus::IntCounterVec;
use prost::encoding::encoded_len_varint;
use prost::Message;

use crate::discovery::Workload;
use crate::registry::{DropReason, ImageMetadata, Resolutions};
use crate::remote_write::proto;
use crate::{ownership, running};

/// The metric families the pusher writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    ContainerInfo,
    Annotation,
    Label,
    SizeBytes,
    Created,
    ResolveError,
    // What pods run (src/running.rs), and who owns workloads (src/ownership.rs).
    RunningDrift,
    WorkloadLabels,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::ContainerInfo,
        Family::Annotation,
        Family::Label,
        Family::SizeBytes,
        Family::Created,
        Family::ResolveError,
        Family::RunningDrift,
        Family::WorkloadLabels,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::ContainerInfo => "container_image_container_info",
            Family::Annotation => "container_image_annotation",
            Family::Label => "container_image_label",
            Family::SizeBytes => "container_image_size_bytes",
            Family::Created => "container_image_created",
            Family::ResolveError => "container_image_resolve_error",
            Family::RunningDrift => "container_image_running_drift",
            Family::WorkloadLabels => "container_image_workload_labels",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Family::ContainerInfo => {
                "Details about containers configured in the cluster, including the image digest resolved by the pusher."
            }
            Family::Annotation => "Annotations from the image manifest (and index).",
            Family::Label => "Labels from the image config.",
            Family::SizeBytes => "The size of the image in the registry: config plus layers.",
            Family::Created => "The created date from the image config, as a Unix epoch time.",
            Family::ResolveError => {
                "1 for each image that cannot be resolved, with the class of the failure."
            }
            Family::RunningDrift => {
                "1 for each running container whose pulled digest is no longer what its image reference names."
            }
            Family::WorkloadLabels => {
                "The allowlisted labels and annotations of each workload, as label_* and annotation_* labels."
            }
        }
    }

    /// The family's own label names, in the order its builder gives their
    /// values; every series also carries `__name__` and the
    /// [`CommonLabels`]. The one table of label names: builders, external
    /// label validation and the tests of uniqueness all read it.
    pub const fn label_names(self) -> &'static [&'static str] {
        match self {
            Family::ContainerInfo => &[
                "group",
                "version",
                "kind",
                "namespace",
                "name",
                "container",
                "jsonpath",
                "image",
                "digest",
                "image_id",
            ],
            Family::Annotation | Family::Label => &["digest", "key", "value"],
            Family::SizeBytes | Family::Created => &["digest"],
            Family::ResolveError => &["image", "class"],
            Family::RunningDrift => &[
                "namespace",
                "name",
                "container",
                "image",
                "digest",
                "image_id",
            ],
            // Plus the workload's label_* and annotation_* (see
            // `ownership::workload_labels`), which never take these names.
            Family::WorkloadLabels => &["group", "version", "kind", "namespace", "name"],
        }
    }
}

/// The metric name label, on every series.
pub const NAME_LABEL: &str = "__name__";
/// The label `--job` sets, on every pushed series.
pub const JOB_LABEL: &str = "job";

/// Why an `--external-label` name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalLabelError {
    #[error("{0:?} is not a valid label name (letters, digits and _, not starting with a digit)")]
    Invalid(String),
    #[error("{0:?} starts with __, which Prometheus reserves for its own labels")]
    Reserved(String),
    #[error("{0:?} is the job label, set with --job")]
    Job(String),
    #[error("{name:?} is a label of {families}; a series may not carry a name twice, so pick another name")]
    FamilyLabel { name: String, families: String },
    #[error("{0:?} is given twice")]
    Duplicate(String),
}

/// Checks external label names against the Prometheus label grammar and
/// against every name a series already carries: a duplicate name makes a
/// receiver reject the whole batch.
pub fn check_external_labels(labels: &[(String, String)]) -> Result<(), ExternalLabelError> {
    let mut seen = HashSet::new();
    for (name, _) in labels {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ExternalLabelError::Invalid(name.clone()));
        }
        if name.starts_with("__") {
            return Err(ExternalLabelError::Reserved(name.clone()));
        }
        if name == JOB_LABEL {
            return Err(ExternalLabelError::Job(name.clone()));
        }
        let families: Vec<&str> = Family::ALL
            .into_iter()
            .filter(|f| f.label_names().contains(&name.as_str()))
            .map(Family::name)
            .collect();
        if !families.is_empty() {
            return Err(ExternalLabelError::FamilyLabel {
                name: name.clone(),
                families: families.join(", "),
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(ExternalLabelError::Duplicate(name.clone()));
        }
    }
    Ok(())
}

/// One series of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub family: Family,
    /// The encoded `labels` field of a remote-write `TimeSeries`,
    /// `__name__` included: valid protobuf for a `TimeSeries` without samples.
    pub labels: Bytes,
    pub value: f64,
}

impl Series {
    /// The labels as (name, value) pairs, sorted by name.
    pub fn decode_labels(&self) -> Vec<(String, String)> {
        let ts = proto::TimeSeries::decode(self.labels.clone())
            .expect("labels were encoded by LabelSet");
        ts.labels.into_iter().map(|l| (l.name, l.value)).collect()
    }
}

/// All series of one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Milliseconds since the Unix epoch, shared by every sample.
    pub timestamp_ms: i64,
    pub series: Vec<Series>,
    pub containers: usize,
    /// Distinct resolved digests.
    pub images: usize,
}

/// Labels added to every series: `job` and `--external-label`s.
#[derive(Debug, Clone, Default)]
pub struct CommonLabels(pub Vec<(String, String)>);

impl CommonLabels {
    pub fn new(job: &str, external: &[(String, String)]) -> Self {
        let mut labels = vec![(JOB_LABEL.to_owned(), job.to_owned())];
        labels.extend(external.iter().cloned());
        CommonLabels(labels)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

/// Builds snapshots, reusing the encoded label sets of everything that did
/// not change since the previous one: a workload (same `Arc`, same digests)
/// or an image (same cached metadata `Arc`) costs no sorting or allocation
/// on a warm tick.
pub struct Inventory {
    common: CommonLabels,
    /// `container_image_pusher_labels_dropped_total`, by [`DropReason`]:
    /// counted when an image's series are built, not at every tick.
    dropped: IntCounterVec,
    /// Keyed by the address of the `Arc<Workload>`; holding the `Arc` keeps
    /// the address from being reused by another workload.
    workloads: HashMap<usize, CachedWorkload>,
    images: HashMap<usize, CachedImage>,
    /// Series in the previous snapshot: the next one is sized from it, as
    /// growing a Vec of 100k+ series by doubling wastes a third of it.
    last_len: usize,
    /// Whether each workload gets a `container_image_workload_labels`.
    workload_labels: bool,
}

struct CachedWorkload {
    workload: Arc<Workload>,
    /// The metadata each container's labels were encoded with (`None` when
    /// unresolved); compared by pointer, so a warm tick allocates nothing.
    images: Vec<Option<Arc<ImageMetadata>>>,
    labels: Vec<Bytes>,
    /// `container_image_running_drift`, from the same inputs.
    drift: Vec<Bytes>,
    /// `container_image_workload_labels`, when exported.
    owner: Option<Bytes>,
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
        Inventory {
            common,
            dropped,
            workloads: HashMap::new(),
            images: HashMap::new(),
            last_len: 0,
            workload_labels: false,
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
        let common = &self.common;
        let mut series = Vec::with_capacity(self.last_len + self.last_len / 64);
        let mut containers = 0;
        let metadata = |workload: &Workload, image: &str| {
            resolutions
                .get(workload, image)
                .and_then(|r| r.as_ref().ok())
        };

        let mut cached_workloads = HashMap::with_capacity(workloads.len());
        let mut extra = Vec::new();
        for workload in workloads {
            let key = Arc::as_ptr(workload) as usize;
            let images = || {
                workload
                    .containers
                    .iter()
                    .map(|c| metadata(workload, &c.image))
            };
            let same = |a: &Option<Arc<ImageMetadata>>, b: Option<&Arc<ImageMetadata>>| match (a, b)
            {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            let cached = match self.workloads.remove(&key) {
                Some(c)
                    if Arc::ptr_eq(&c.workload, workload)
                        && c.images.len() == workload.containers.len()
                        && c.images.iter().zip(images()).all(|(a, b)| same(a, b)) =>
                {
                    c
                }
                _ => CachedWorkload {
                    workload: workload.clone(),
                    images: images().map(|m| m.cloned()).collect(),
                    labels: container_labels(common, workload, images().map(|m| m.map(|m| &**m))),
                    drift: running::drift_labels(
                        common,
                        workload,
                        images().map(|m| m.map(|m| &**m)),
                    ),
                    owner: self
                        .workload_labels
                        .then(|| ownership::workload_labels(common, workload)),
                },
            };
            containers += workload.containers.len();
            series.extend(cached.labels.iter().map(|l| Series {
                family: Family::ContainerInfo,
                labels: l.clone(),
                value: 1.0,
            }));
            extra.extend(cached.drift.iter().map(|l| Series {
                family: Family::RunningDrift,
                labels: l.clone(),
                value: 1.0,
            }));
            extra.extend(cached.owner.iter().map(|l| Series {
                family: Family::WorkloadLabels,
                labels: l.clone(),
                value: 1.0,
            }));
            cached_workloads.insert(key, cached);
        }
        self.workloads = cached_workloads;
        series.append(&mut extra);

        // One set of image series per digest, in order of first use.
        let mut seen = HashSet::new();
        let mut cached_images = HashMap::new();
        let used = workloads
            .iter()
            .flat_map(|w| w.containers.iter().map(move |c| (w, c)));
        for (workload, container) in used {
            let Some(image) = metadata(workload, &container.image) else {
                continue;
            };
            if !seen.insert(image.digest.as_str()) {
                continue;
            }
            let key = Arc::as_ptr(image) as usize;
            let cached = match self.images.remove(&key) {
                Some(c) if Arc::ptr_eq(&c.metadata, image) => c,
                _ => CachedImage {
                    metadata: image.clone(),
                    series: image_series(common, image, &self.dropped),
                },
            };
            series.extend(cached.series.iter().cloned());
            cached_images.insert(key, cached);
        }
        let images = cached_images.len();
        self.images = cached_images;

        // Failing images are few and change often: encoded afresh.
        let mut failures: Vec<(&str, &'static str)> = resolutions
            .iter()
            .filter_map(|(image, r)| Some((image, r.as_ref().err()?.class.as_str())))
            .collect();
        failures.sort_unstable();
        failures.dedup();
        let mut labels = LabelSet::new(common);
        for (image, class) in failures {
            series.push(labels.series(Family::ResolveError, &[image, class], 1.0));
        }
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

fn container_labels<'a>(
    common: &'a CommonLabels,
    workload: &'a Workload,
    images: impl Iterator<Item = Option<&'a ImageMetadata>>,
) -> Vec<Bytes> {
    let mut labels = LabelSet::new(common);
    workload
        .containers
        .iter()
        .zip(images)
        .map(|(container, image)| {
            let digest = running::info_digest(image, container);
            let values = [
                workload.kind.group(),
                workload.kind.version(),
                workload.kind.as_str(),
                &workload.namespace,
                &workload.name,
                &container.name,
                &container.jsonpath,
                &container.image,
                digest,
                running::image_id(container),
            ];
            labels.series(Family::ContainerInfo, &values, 1.0).labels
        })
        .collect()
}

fn image_series(
    common: &CommonLabels,
    image: &ImageMetadata,
    dropped: &IntCounterVec,
) -> Vec<Series> {
    for (reason, count) in image.dropped.iter() {
        dropped.with_label_values(&[reason.as_str()]).inc_by(count);
    }

    let mut labels = LabelSet::new(common);
    let mut series = Vec::with_capacity(image.annotations.len() + image.labels.len() + 2);
    for (family, pairs) in [
        (Family::Annotation, &image.annotations),
        (Family::Label, &image.labels),
    ] {
        for (key, value) in pairs {
            series.push(labels.series(family, &[&image.digest, key, value], 1.0));
        }
    }
    series.push(labels.series(Family::SizeBytes, &[&image.digest], image.size as f64));
    if let Some(created) = image.created {
        series.push(labels.series(Family::Created, &[&image.digest], created as f64));
    }
    series
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

/// Reusable scratch space for assembling one label set at a time.
pub(crate) struct LabelSet<'a> {
    common: &'a CommonLabels,
    family: Family,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> LabelSet<'a> {
    pub(crate) fn new(common: &'a CommonLabels) -> Self {
        LabelSet {
            common,
            family: Family::ContainerInfo,
            pairs: Vec::with_capacity(16),
        }
    }

    /// One series of `family`, its label values given in the order of
    /// [`Family::label_names`].
    pub(crate) fn series(&mut self, family: Family, values: &[&'a str], value: f64) -> Series {
        self.series_with(family, values, &[], value)
    }

    /// [`LabelSet::series`] with more labels whose names are not in the
    /// table (a workload's `label_*`); one that is already in the set (an
    /// external label of that name) is left out, never sent twice.
    pub(crate) fn series_with(
        &mut self,
        family: Family,
        values: &[&'a str],
        extra: &'a [(String, String)],
        value: f64,
    ) -> Series {
        let names = family.label_names();
        assert_eq!(
            names.len(),
            values.len(),
            "one value per label name of {}",
            family.name()
        );
        self.family = family;
        self.pairs.clear();
        self.pairs.push((NAME_LABEL, family.name()));
        for (name, value) in &self.common.0 {
            self.pairs.push((name, value));
        }
        self.pairs
            .extend(names.iter().copied().zip(values.iter().copied()));
        if !extra.is_empty() {
            let fixed = self.pairs.len();
            for (name, value) in extra {
                if !self.pairs[..fixed].iter().any(|(n, _)| n == name) {
                    self.pairs.push((name, value));
                }
            }
        }
        self.finish(value)
    }

    /// Sorts, drops empty values and encodes. Names are unique by
    /// construction: [`check_external_labels`] refuses external labels
    /// that reuse a series label, and each family's names are distinct.
    fn finish(&mut self, value: f64) -> Series {
        self.pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        debug_assert!(
            self.pairs.windows(2).all(|w| w[0].0 != w[1].0),
            "duplicate label names"
        );
        let labels = || self.pairs.iter().filter(|(_, v)| !v.is_empty());
        // Exactly sized: these buffers live as long as their series, and a
        // growing shared buffer would keep up to twice the bytes alive.
        let len = labels()
            .map(|(n, v)| 1 + encoded_len_varint(label_len(n, v) as u64) + label_len(n, v))
            .sum();
        let mut buf = BytesMut::with_capacity(len);
        for (name, value) in labels() {
            encode_label(name, value, &mut buf);
        }
        Series {
            family: self.family,
            labels: buf.freeze(),
            value,
        }
    }
}

/// Encoded length of a `Label { name, value }` message body.
fn label_len(name: &str, value: &str) -> usize {
    let field = |s: &str| 1 + encoded_len_varint(s.len() as u64) + s.len();
    field(name) + field(value)
}

/// Appends one `Label` as field 1 of a `TimeSeries`, exactly as prost encodes
/// `TimeSeries { labels: vec![Label { name, value }], .. }`.
fn encode_label(name: &str, value: &str, buf: &mut BytesMut) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(1, WireType::LengthDelimited, buf);
    encode_varint(label_len(name, value) as u64, buf);
    for (tag, s) in [(1, name), (2, value)] {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Container, Kind};
    use crate::registry::{ErrorClass, ImageLimits, ImageMetadata, ResolveError, TRUNCATED};
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
            labels: BTreeMap::from([
                ("dev.chainguard.package.main".into(), "static".into()),
                ("empty".into(), String::new()),
            ]),
            annotations: BTreeMap::from([(
                "org.opencontainers.image.base.name".into(),
                "cgr.dev/chainguard/static".into(),
            )]),
            dropped: Default::default(),
            platform_digests: Vec::new(),
        })
    }

    #[test]
    fn labels_match_what_prost_encodes() {
        let common = CommonLabels::new(
            "container-image-pusher",
            &[("cluster".into(), "prod".into())],
        );
        let resolutions = HashMap::from([("app:1".to_owned(), Ok(metadata("sha256:aa")))]);
        let snap = build(&[workload("app:1")], &resolutions, &common, 42);
        let info = &snap.series[0];
        let expected = proto::TimeSeries {
            labels: [
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
            .map(|(n, v)| proto::Label {
                name: n.into(),
                value: v.into(),
            })
            .collect(),
            samples: vec![],
        };
        assert_eq!(
            info.labels,
            expected.encode_to_vec(),
            "byte-identical to prost's encoding"
        );
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
        let count = |f: Family| snap.series.iter().filter(|s| s.family == f).count();
        assert_eq!(count(Family::ContainerInfo), 2);
        assert_eq!(count(Family::SizeBytes), 1);
        assert_eq!(count(Family::Created), 1);
        assert_eq!(count(Family::Label), 2);
        assert_eq!(count(Family::Annotation), 1);
        assert_eq!((snap.containers, snap.images), (2, 1));
        let empty = snap
            .series
            .iter()
            .find(|s| {
                s.family == Family::Label && s.decode_labels().iter().any(|(_, v)| v == "empty")
            })
            .unwrap();
        assert!(
            !empty.decode_labels().iter().any(|(n, _)| n == "value"),
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
            .partition(|s| s.family == Family::ContainerInfo);
        assert_eq!(info.len(), 2);
        let error_labels = errors[0].decode_labels();
        assert!(
            error_labels.contains(&("class".into(), "not_found".into())),
            "{error_labels:?}"
        );
        assert!(
            error_labels.contains(&("image".into(), "gone:1".into())),
            "{error_labels:?}"
        );
        for series in &info {
            let labels = series.decode_labels();
            assert!(!labels.iter().any(|(n, _)| n == "digest"));
            assert!(
                labels.windows(2).all(|w| w[0].0 < w[1].0),
                "sorted and unique"
            );
        }
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
        assert!(!snap.series.iter().any(|s| s.family == Family::Created));
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
            assert_eq!(
                a.labels.as_ptr(),
                b.labels.as_ptr(),
                "same bytes, not re-encoded"
            );
        }
        // A tag that moved to a new digest is re-encoded; the other container is not.
        let moved = HashMap::from([
            ("a:1".to_owned(), Ok(metadata("sha256:bb"))),
            ("b:1".to_owned(), Ok(image)),
        ]);
        let moved = Resolutions::from(moved);
        let third = inventory.build(&workloads, &moved, 3);
        assert_ne!(
            third.series[0].labels.as_ptr(),
            second.series[0].labels.as_ptr()
        );
        assert!(third.series[0]
            .decode_labels()
            .contains(&("digest".into(), "sha256:bb".into())));
        assert_eq!(
            third.series[1].labels.as_ptr(),
            second.series[1].labels.as_ptr()
        );
        // A replaced object (new Arc, as a watch event gives) is re-encoded.
        let replaced = [Arc::new(workload("a:1")), workloads[1].clone()];
        let fourth = inventory.build(&replaced, &moved, 4);
        assert_ne!(
            fourth.series[0].labels.as_ptr(),
            third.series[0].labels.as_ptr()
        );
        assert_eq!(fourth.series[0].labels, third.series[0].labels);
    }

    #[test]
    fn no_family_can_carry_a_label_name_twice() {
        let external = [("cluster".to_owned(), "a".to_owned())];
        check_external_labels(&external).unwrap();
        let common = CommonLabels::new("j", &external);
        for family in Family::ALL {
            let mut names: Vec<&str> = vec![NAME_LABEL];
            names.extend(common.names());
            names.extend(family.label_names());
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), count, "{} repeats a name", family.name());
            // No external label can add one of its names again.
            for name in family.label_names() {
                let err = check_external_labels(&[(name.to_string(), "x".into())]).unwrap_err();
                assert!(
                    matches!(&err, ExternalLabelError::FamilyLabel { families, .. } if families.contains(family.name())),
                    "{name}: {err}"
                );
            }
        }
        for name in [NAME_LABEL, "__anything"] {
            assert_eq!(
                check_external_labels(&[(name.into(), "x".into())]),
                Err(ExternalLabelError::Reserved(name.into()))
            );
        }
        assert_eq!(
            check_external_labels(&[(JOB_LABEL.into(), "x".into())]),
            Err(ExternalLabelError::Job(JOB_LABEL.into()))
        );
        for name in ["", "1a", "a-b", "a.b", "é"] {
            assert_eq!(
                check_external_labels(&[(name.into(), "x".into())]),
                Err(ExternalLabelError::Invalid(name.into()))
            );
        }
        assert_eq!(
            check_external_labels(&[("region".into(), "a".into()), ("region".into(), "b".into())]),
            Err(ExternalLabelError::Duplicate("region".into()))
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
        image.labels.retain(|_, v| !v.is_empty());
        let resolutions = HashMap::from([
            ("app:1".to_owned(), Ok(Arc::new(image))),
            ("private:1".to_owned(), failed),
        ]);
        // A Pod still running what app:1 named before it moved.
        let mut pod = workload("app:1");
        pod.kind = crate::discovery::Kind::Pod;
        pod.containers[0].image_id = crate::discovery::ImageId::parse(
            &format!("docker-pullable://app@sha256:{}", "b".repeat(64)),
            true,
        );
        pod.metadata_labels = vec![("label_team".into(), "payments".into())];
        let snap = build(
            &[workload("app:1"), workload("private:1"), pod],
            &resolutions,
            &common,
            0,
        );
        let families: HashSet<Family> = snap.series.iter().map(|s| s.family).collect();
        assert_eq!(families.len(), Family::ALL.len(), "every family is built");
        for series in &snap.series {
            let labels = series.decode_labels();
            assert!(
                labels.windows(2).all(|w| w[0].0 < w[1].0),
                "names sorted and unique, as remote write requires: {labels:?}"
            );
            let mut expected: Vec<&str> = vec![NAME_LABEL];
            expected.extend(common.names());
            expected.extend(series.family.label_names());
            if series.family == Family::WorkloadLabels
                && labels.iter().any(|(n, v)| n == "kind" && v == "Pod")
            {
                expected.push("label_team");
            }
            // Pods are in the core group: no `group`.
            if labels.iter().any(|(n, v)| n == "kind" && v == "Pod") {
                expected.retain(|n| *n != "group");
            }
            // The unresolved container's empty digest is not sent, nor
            // an image_id where no runtime reported one.
            if labels.iter().any(|(n, v)| n == "image" && v == "private:1") {
                expected.retain(|n| *n != "digest");
            }
            if series.family == Family::ContainerInfo
                && !labels.iter().any(|(n, v)| n == "kind" && v == "Pod")
            {
                expected.retain(|n| *n != "image_id");
            }
            expected.sort_unstable();
            let names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, expected, "{}", series.family.name());
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
                .filter(|s| s.family == family)
                .map(Series::decode_labels)
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
            image.labels.clone(),
            image.annotations.clone(),
            &limits,
        );
        let mut inventory = Inventory::new(CommonLabels::new("j", &[]), dropped_total.clone());
        let resolutions = Resolutions::from(HashMap::from([("app:1".to_owned(), Ok(image))]));
        let snap = inventory.build(&[Arc::new(workload("app:1"))], &resolutions, 0);
        let families: Vec<Family> = snap.series.iter().map(|s| s.family).collect();
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
            DropReason::ALL.len()
        );
    }
}
