//! Inventory: workloads plus image metadata → the series of one snapshot.
//!
//! The series keep the names, labels and meaning of the Go
//! `container-image-exporter`, so existing queries and dashboards work on
//! pushed data. They are built into the [`series`](crate::series) model,
//! which every sink encodes; which label names each family carries comes
//! from [`Family::label_names`], the one table.
//!
//! What an image adds comes from its registry and was bounded by
//! [`ImageLimits`](crate::image_facts::limits::ImageLimits) when its metadata was
//! made; what the limits dropped is counted here, once per image, when its
//! series are built.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use prometheus::IntCounterVec;

use crate::discovery::Workload;
use crate::image_facts::limits::DropReason;
use crate::image_facts::{ImageMetadata, Resolutions};
use crate::series::{symbols, CommonLabels, Family, LabelSet, LimitDrop, Series, Snapshot, Text};
use crate::version_series::VersionSeries;
use workload_labels::workload_labels;

mod running_drift;
mod signatures;
mod workload_labels;

/// Builds snapshots, reusing the label sets of everything that did not
/// change since the previous one: a workload (same `Arc`, same metadata
/// `Arc`s) or an image (same cached metadata `Arc`) costs no interning,
/// hashing or allocation on a warm tick, only pointer copies.
pub struct Inventory {
    common: Arc<CommonLabels>,
    /// `container_image_pusher_labels_dropped_total`, by [`DropReason`]:
    /// counted when an image's series are built, not at every tick.
    dropped: IntCounterVec,
    /// Keyed by the address of the `Arc<Workload>`; holding the `Arc` keeps
    /// the address from being reused by another workload.
    workloads: HashMap<usize, CachedWorkload, ByAddress>,
    images: HashMap<usize, CachedImage, ByAddress>,
    /// Counts builds: what a build did not see again (its `seen` is older)
    /// is let go after it, so the caches are updated in place rather than
    /// copied into new maps at every tick.
    builds: u64,
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
    /// The last build that saw it.
    seen: u64,
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
    seen: u64,
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
            workloads: HashMap::default(),
            images: HashMap::default(),
            builds: 0,
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
        self.builds += 1;
        let build = self.builds;
        // Workloads are numbered as in `resolutions.set_workload_scopes`.
        // Each (scope, image) is looked up once: 100k containers name ~10k
        // images, each one `Arc` the sources share, so a lookup by its
        // address costs a multiply where one by the text hashes it.
        let mut looked_up =
            HashMap::with_capacity_and_hasher(self.images.len(), ByAddress::default());
        let mut metadata = |index: usize, image: &Arc<str>| {
            let scope = resolutions.workload_scope(index);
            *looked_up
                .entry((scope, Arc::as_ptr(image).cast::<u8>() as usize))
                .or_insert_with(|| resolutions.get(scope, image).and_then(|r| r.as_ref().ok()))
        };
        let same = |a: &Option<Arc<ImageMetadata>>, b: &Option<&Arc<ImageMetadata>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };

        // Every container's metadata, in order: looked up once per tick,
        // then also the order in which images get their series.
        let mut used: Vec<Option<&Arc<ImageMetadata>>> = Vec::with_capacity(self.last_len);
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
            let cached = self.workloads.entry(key).or_insert_with(|| CachedWorkload {
                seen: 0,
                workload: workload.clone(),
                images: Vec::new(),
                series: Vec::new(),
                extra: Vec::new(),
            });
            let unchanged = cached.seen != 0
                && Arc::ptr_eq(&cached.workload, workload)
                && cached.images.len() == images.len()
                && cached.images.iter().zip(images).all(|(a, b)| same(a, b));
            if !unchanged {
                let common = &self.common;
                // A pending image's index entries are not known: no drift yet.
                let known: Vec<_> = images.iter().map(|m| m.filter(|m| !m.pending)).collect();
                let mut extra = running_drift::drift_series(common, workload, &known);
                if self.workload_labels {
                    extra.push(workload_labels(common, workload));
                }
                *cached = CachedWorkload {
                    seen: build,
                    workload: workload.clone(),
                    images: images.iter().map(|m| m.cloned()).collect(),
                    series: container_series(common, workload, images),
                    extra,
                };
            }
            cached.seen = build;
            containers += workload.containers.len();
            series.extend(cached.series.iter().cloned());
            extra.extend(cached.extra.iter().cloned());
        }
        self.workloads.retain(|_, c| c.seen == build);
        series.append(&mut extra);

        let images = self.add_image_series(used, build, &mut series);
        self.add_resolution_series(resolutions, &mut series);
        self.count_limit_drops();
        // Values of workloads and images that left are let go.
        symbols::table().prune();
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
    /// Adds one set of image series per digest, in order of first use
    /// (`used`: every container's metadata, in order); returns how many.
    fn add_image_series(
        &mut self,
        used: Vec<Option<&Arc<ImageMetadata>>>,
        build: u64,
        series: &mut Vec<Series>,
    ) -> usize {
        let mut seen_digests = HashSet::with_capacity(self.images.len());
        let mut images = 0;
        // A pending image has only its digest: no series of its own yet.
        for image in used.into_iter().flatten().filter(|m| !m.pending) {
            let key = Arc::as_ptr(image) as usize;
            let cached = match self.images.entry(key) {
                Entry::Occupied(c) if c.get().seen == build => continue,
                Entry::Occupied(mut c) if Arc::ptr_eq(&c.get().metadata, image) => {
                    c.get_mut().seen = build;
                    c.into_mut()
                }
                entry => {
                    // Another metadata of a digest already added is not
                    // added twice.
                    if seen_digests.contains(image.digest.as_str()) {
                        continue;
                    }
                    let fresh = CachedImage {
                        seen: build,
                        metadata: image.clone(),
                        series: image_series(&self.common, image, &self.dropped),
                    };
                    match entry {
                        Entry::Occupied(mut c) => {
                            c.insert(fresh);
                            c.into_mut()
                        }
                        Entry::Vacant(v) => v.insert(fresh),
                    }
                }
            };
            if !seen_digests.insert(image.digest.as_str()) {
                // (A digest's other metadata, cached from an earlier build.)
                cached.seen = 0;
                continue;
            }
            images += 1;
            series.extend(cached.series.iter().cloned());
        }
        self.images.retain(|_, c| c.seen == build);
        images
    }

    /// Adds the series of what the registries said of no image in
    /// particular: failed lookups and version answers.
    fn add_resolution_series(&mut self, resolutions: &Resolutions, series: &mut Vec<Series>) {
        // Failing images are few and change often: built afresh.
        let mut failures: Vec<(&str, &'static str)> = resolutions
            .iter()
            .filter_map(|(image, r)| Some((image, r.as_ref().err()?.class.as_str())))
            .collect();
        failures.sort_unstable();
        failures.dedup();
        for (image, class) in failures {
            series.push(Series {
                labels: LabelSet::new(
                    Family::ResolveError,
                    &self.common,
                    &[image.into(), class.into()],
                ),
                value: 1.0,
            });
        }
        let answers = resolutions.versions();
        let answers = answers.iter().map(|(image, info)| (*image, None, *info));
        let owned = resolutions.container_versions().iter();
        let answers = answers
            .chain(owned.map(|(owner, image, info)| (image.as_str(), Some(owner.clone()), info)));
        self.versions.build(&self.common, answers, series);
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
    workload: &Workload,
    images: &[Option<&Arc<ImageMetadata>>],
) -> Vec<Series> {
    let kind = workload.kind;
    workload
        .containers
        .iter()
        .zip(images)
        .map(|(container, image)| {
            let digest = running_drift::info_digest(image.map(|m| &**m), container);
            // The workload's own strings are shared with it, not copied.
            let values = [
                kind.group().into(),
                kind.version().into(),
                kind.as_str().into(),
                (&workload.namespace).into(),
                (&workload.name).into(),
                (&container.name).into(),
                (&container.jsonpath).into(),
                (&container.image).into(),
                digest.into(),
                running_drift::image_id(container).map_or(Text::Str(""), Text::Shared),
            ];
            Series {
                labels: LabelSet::new(Family::ContainerInfo, common, &values),
                value: 1.0,
            }
        })
        .collect()
}

fn image_series(
    common: &Arc<CommonLabels>,
    image: &ImageMetadata,
    dropped: &IntCounterVec,
) -> Vec<Series> {
    for (reason, count) in image.dropped.iter() {
        dropped.with_label_values(&[reason.as_str()]).inc_by(count);
    }
    let digest = Text::from(&image.digest);
    let mut series = Vec::with_capacity(image.annotations.len() + image.labels.len() + 2);
    let mut push = |family: Family, values: &[Text<'_>], value: f64| {
        series.push(Series {
            labels: LabelSet::new(family, common, values),
            value,
        });
    };
    for (family, pairs) in [
        (Family::Annotation, &image.annotations),
        (Family::Label, &image.labels),
    ] {
        for (key, value) in pairs {
            // Keys and values repeat across images (OCI keys, base images):
            // the table keeps one copy of each.
            push(family, &[digest, key.into(), value.into()], 1.0);
        }
    }
    push(Family::SizeBytes, &[digest], image.size as f64);
    if let Some(created) = image.created {
        push(Family::Created, &[digest], created as f64);
    }
    supply_chain_series(image, digest, &mut push);
    signatures::verification_series(image, digest, &mut push);
    series
}

/// `container_image_referrer`, `_base`, `_base_outdated` and
/// `_base_current_created` of one image, from the facts its registry
/// lookup found (none when it found none).
fn supply_chain_series(
    image: &ImageMetadata,
    digest: Text<'_>,
    push: &mut impl FnMut(Family, &[Text<'_>], f64),
) {
    let facts = &image.supply_chain;
    if let Some(referrers) = &facts.referrers {
        for ((kind, artifact_type), count) in &referrers.counts {
            let values = [digest, kind.as_str().into(), artifact_type.into()];
            push(Family::Referrer, &values, *count as f64);
        }
    }
    if let Some(base) = &facts.base {
        let name = Text::from(&base.name);
        let base_digest = base.digest.as_deref().unwrap_or_default();
        push(Family::Base, &[digest, name, base_digest.into()], 1.0);
        let per_base = [digest, name];
        if let Some(outdated) = base.outdated {
            push(
                Family::BaseOutdated,
                &per_base,
                f64::from(u8::from(outdated)),
            );
        }
        if let Some(created) = base.current_created {
            push(Family::BaseCurrentCreated, &per_base, created as f64);
        }
    }
}

/// A snapshot from plain workloads, for tests of later stages.
#[cfg(test)]
pub(crate) fn build_once(
    workloads: &[Workload],
    resolutions: &HashMap<String, crate::image_facts::Resolution>,
    common: &CommonLabels,
    timestamp_ms: i64,
) -> Snapshot {
    let workloads: Vec<Arc<Workload>> = workloads.iter().cloned().map(Arc::new).collect();
    let resolutions = Resolutions::from(resolutions.clone());
    let dropped = crate::pipeline::Metrics::new(&prometheus::Registry::new()).labels_dropped;
    let owners = workloads.iter().any(|w| !w.metadata_labels.is_empty());
    Inventory::new(common.clone(), dropped)
        .with_workload_labels(owners)
        .build(&workloads, &resolutions, timestamp_ms)
}

#[cfg(test)]
mod running_drift_tests;

#[cfg(test)]
mod tests;

#[cfg(test)]
#[path = "inventory_limits_tests.rs"]
mod limits_tests;
