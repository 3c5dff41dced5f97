//! What pods actually run: the digest a Pod's container status reports
//! (`imageID`) next to the one its image reference resolves to now.
//!
//! It gives two things. A digest when the registry cannot say: a Pod's
//! `container_image_container_info` falls back to the digest it pulled, so
//! a registry outage does not blank a running fleet. And drift: a
//! `container_image_running_drift` series for each running container whose
//! tag has moved since it was pulled. A runtime reports either the index
//! digest of a multi-arch tag or the digest of the platform manifest it
//! pulled; both run what the tag names, so neither is drift.

use std::sync::Arc;

use crate::discovery::{Container, Workload};
use crate::image_facts::ImageMetadata;
use crate::series::{CommonLabels, Family, LabelSet, Series};

/// The `digest` of a container's info series: what its reference resolves
/// to, else (a Pod whose registry failed) the digest the runtime pulled.
pub(crate) fn info_digest<'a>(
    metadata: Option<&'a ImageMetadata>,
    container: &'a Container,
) -> &'a str {
    match (metadata, &container.image_id) {
        (Some(metadata), _) => &metadata.digest,
        (None, Some(id)) => id.digest(),
        (None, None) => "",
    }
}

/// The `image_id` label of a container's info series; `None`, an empty
/// (so absent) label, for containers no runtime reported on.
pub(crate) fn image_id(container: &Container) -> Option<&Arc<str>> {
    container.image_id.as_ref().map(|id| &id.reference)
}

/// The drift series of one workload's containers, `images` giving each
/// container's resolved metadata in order: one per running container whose
/// pulled digest its reference no longer names. An unresolved image is not
/// drift: nothing says where its tag points now.
pub(crate) fn drift_series(
    common: &Arc<CommonLabels>,
    workload: &Workload,
    images: &[Option<&Arc<ImageMetadata>>],
) -> Vec<Series> {
    workload
        .containers
        .iter()
        .zip(images)
        .filter_map(|(container, metadata)| {
            let id = container.image_id.as_ref().filter(|id| id.running)?;
            let metadata = (*metadata)?;
            if metadata.runs(id.digest()) {
                return None;
            }
            let values = [
                (&workload.namespace).into(),
                (&workload.name).into(),
                (&container.name).into(),
                (&container.image).into(),
                (&metadata.digest).into(),
                (&id.reference).into(),
            ];
            Some(Series {
                labels: LabelSet::new(Family::RunningDrift, common, &values),
                value: 1.0,
            })
        })
        .collect()
}
