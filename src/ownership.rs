//! Who owns a workload: `container_image_workload_labels`, one series per
//! workload carrying the labels and annotations `--workload-labels` and
//! `--workload-annotations` allow (kept by
//! [`discovery::ownership`](crate::discovery::ownership) when the object
//! is read), so alerts and dashboards can route by team:
//!
//! ```promql
//! container_image_running_drift
//!   * on (namespace, kind, name) group_left (label_team)
//!   container_image_workload_labels
//! ```

use bytes::Bytes;

use crate::discovery::Workload;
use crate::inventory::{CommonLabels, Family, LabelSet};

/// The encoded labels of one workload's `container_image_workload_labels`.
pub(crate) fn workload_labels(common: &CommonLabels, workload: &Workload) -> Bytes {
    let values = [
        workload.kind.group(),
        workload.kind.version(),
        workload.kind.as_str(),
        &workload.namespace,
        &workload.name,
    ];
    LabelSet::new(common)
        .series_with(
            Family::WorkloadLabels,
            &values,
            &workload.metadata_labels,
            1.0,
        )
        .labels
}
