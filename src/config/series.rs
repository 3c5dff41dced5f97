//! The "Series" flags: what the series carry besides the image's own data, and their limits.

use clap::Args;

use crate::image_facts::limits::ImageLimits;
use crate::series::SeriesLimits;

use super::values::parse_label;

/// What the series carry besides the image's own data.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Series")]
#[deny(missing_docs)]
pub struct SeriesArgs {
    /// Value of the `job` label on every pushed series.
    #[arg(
        long = "job",
        value_name = "NAME",
        env = "PUSHER_JOB",
        default_value = "container-image-pusher"
    )]
    pub job: String,

    /// Extra label added to every pushed series (repeatable), e.g. cluster=prod.
    /// The name may not be one the series carry themselves (job, image,
    /// class, ...).
    #[arg(long = "external-label", value_name = "NAME=VALUE", env = "PUSHER_EXTERNAL_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub external_labels: Vec<(String, String)>,

    /// Most container_image_label series per image: beyond it, the first
    /// labels by key (byte order) are kept and the rest counted as dropped.
    #[arg(
        long,
        value_name = "N",
        env = "PUSHER_MAX_LABELS_PER_IMAGE",
        default_value_t = 128
    )]
    pub max_labels_per_image: u32,

    /// Most container_image_annotation series per image: beyond it, the
    /// first annotations by key (byte order) are kept and the rest counted
    /// as dropped.
    #[arg(
        long,
        value_name = "N",
        env = "PUSHER_MAX_ANNOTATIONS_PER_IMAGE",
        default_value_t = 128
    )]
    pub max_annotations_per_image: u32,

    /// Longest key or value (bytes) of an image label or annotation. A longer
    /// value is cut at a character boundary and ends in "…" (within the
    /// limit); a label or annotation with a longer key is dropped.
    #[arg(long, value_name = "BYTES", env = "PUSHER_MAX_LABEL_VALUE_LENGTH", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..))]
    pub max_label_value_length: u32,

    /// Most labels one series carries, `__name__`, `job` and external labels
    /// included (Mimir's and Cortex's default): workload labels beyond it
    /// are left out, the first by name kept.
    #[arg(long, value_name = "N", env = "PUSHER_MAX_LABEL_NAMES_PER_SERIES", default_value_t = 30, value_parser = clap::value_parser!(u32).range(12..))]
    pub max_label_names_per_series: u32,

    /// Longest label value (bytes) of any series: a longer one (an image
    /// reference, a workload label) is cut and ends in "…", within the limit.
    #[arg(long, value_name = "BYTES", env = "PUSHER_MAX_LABEL_VALUE_BYTES", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..))]
    pub max_label_value_bytes: u32,

    /// Longest label name (bytes) of any series: a workload label with a
    /// longer name is left out.
    #[arg(long, value_name = "BYTES", env = "PUSHER_MAX_LABEL_NAME_BYTES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(32..))]
    pub max_label_name_bytes: u32,

    /// Name of the HA replica label of Mimir's and Grafana Cloud's HA
    /// tracker, accepted as an --external-label although it starts with __.
    #[arg(
        long,
        value_name = "NAME",
        env = "PUSHER_REPLICA_LABEL",
        default_value = "__replica__"
    )]
    pub replica_label: String,
}

impl SeriesArgs {
    /// What one image may add to a snapshot.
    pub(super) fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_labels: self.max_labels_per_image as usize,
            max_annotations: self.max_annotations_per_image as usize,
            max_value_length: self.max_label_value_length as usize,
        }
    }

    pub(super) fn series_limits(&self) -> SeriesLimits {
        SeriesLimits {
            max_label_names: self.max_label_names_per_series as usize,
            max_value_bytes: self.max_label_value_bytes as usize,
            max_name_bytes: self.max_label_name_bytes as usize,
        }
    }
}
