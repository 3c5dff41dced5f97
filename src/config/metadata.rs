//! The "Workload and image metadata" flags: which labels and annotations become series.

use clap::Args;

use crate::discovery::metadata_allowlist::{Allowlist, MetadataAllowlist};
use crate::registry::{FilterError, ImageFilter, KeyFilter};

/// Which labels and annotations of workloads and images become series.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Workload and image metadata")]
#[deny(missing_docs)]
pub struct MetadataArgs {
    /// Workload labels exported as label_<key> (kube-state-metrics' naming) on
    /// container_image_workload_labels, e.g. team,app.kubernetes.io/part-of;
    /// "*" exports every label. Repeatable. Default: none (no such series).
    #[arg(
        long = "workload-labels",
        value_name = "KEY",
        env = "PUSHER_WORKLOAD_LABELS",
        value_delimiter = ','
    )]
    pub workload_labels: Vec<String>,

    /// Workload annotations exported as annotation_<key> on
    /// container_image_workload_labels; "*" exports every annotation.
    /// Repeatable. Default: none.
    #[arg(
        long = "workload-annotations",
        value_name = "KEY",
        env = "PUSHER_WORKLOAD_ANNOTATIONS",
        value_delimiter = ','
    )]
    pub workload_annotations: Vec<String>,

    /// Image labels exported as container_image_label: globs on the key
    /// (* and ?), "!GLOB" leaves matching keys out, e.g.
    /// 'org.opencontainers.*,!org.opencontainers.image.created'. Applied
    /// before --max-labels-per-image. Repeatable. Default: every label.
    #[arg(long = "image-labels", value_name = "GLOB", env = "PUSHER_IMAGE_LABELS", value_delimiter = ',', value_parser = parse_key_glob)]
    pub image_labels: Vec<String>,

    /// Image annotations exported as container_image_annotation: globs on
    /// the key, "!GLOB" leaves matching keys out. Applied before
    /// --max-annotations-per-image. Repeatable. Default: every annotation.
    #[arg(long = "image-annotations", value_name = "GLOB", env = "PUSHER_IMAGE_ANNOTATIONS", value_delimiter = ',', value_parser = parse_key_glob)]
    pub image_annotations: Vec<String>,
}

impl MetadataArgs {
    /// The workload labels and annotations kept.
    pub fn workload_metadata(&self) -> MetadataAllowlist {
        MetadataAllowlist {
            labels: Allowlist::new(&self.workload_labels),
            annotations: Allowlist::new(&self.workload_annotations),
        }
    }

    /// Which image labels and annotations are kept.
    pub fn image_filter(&self) -> Result<ImageFilter, FilterError> {
        Ok(ImageFilter {
            labels: KeyFilter::new(&self.image_labels)?,
            annotations: KeyFilter::new(&self.image_annotations)?,
        })
    }
}

fn parse_key_glob(s: &str) -> Result<String, FilterError> {
    KeyFilter::new(&[s])?;
    Ok(s.trim().to_owned())
}
