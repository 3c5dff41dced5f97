//! Who owns a workload: `container_image_workload_labels`, one series per
//! workload carrying the labels and annotations `--workload-labels` and
//! `--workload-annotations` allow (kept by
//! [`discovery::metadata_allowlist`](crate::discovery::metadata_allowlist) when the object
//! is read), so alerts and dashboards can route by team:
//!
//! ```promql
//! container_image_container_info
//!   * on (namespace, kind, name) group_left (label_team)
//!   container_image_workload_labels
//! ```

use std::sync::Arc;

use crate::discovery::Workload;
use crate::series::{CommonLabels, Family, LabelSet, Series};

/// One workload's `container_image_workload_labels`.
pub(crate) fn workload_labels(common: &Arc<CommonLabels>, workload: &Workload) -> Series {
    let values = [
        workload.kind.group().into(),
        workload.kind.version().into(),
        workload.kind.as_str().into(),
        (&workload.namespace).into(),
        (&workload.name).into(),
    ];
    // The source's own strings, shared rather than copied.
    let extra = workload.metadata_labels.clone();
    Series {
        labels: LabelSet::with_extra(Family::WorkloadLabels, common, &values, extra),
        value: 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Kind;
    use crate::series::fixtures::pairs;

    fn workload(labels: &[(&str, &str)]) -> Workload {
        Workload {
            kind: Kind::Deployment,
            namespace: "shop".into(),
            name: "api".into(),
            containers: Vec::new(),
            pull: Default::default(),
            metadata_labels: labels
                .iter()
                .map(|(n, v)| (Arc::from(*n), Arc::from(*v)))
                .collect(),
        }
    }

    #[test]
    fn one_series_with_the_kept_labels_in_name_order() {
        let common = Arc::new(CommonLabels::new("j", &[]));
        let got = pairs(&workload_labels(
            &common,
            &workload(&[("label_team", "payments"), ("annotation_owner", "alice")]),
        ));
        let expected: Vec<(String, String)> = [
            ("__name__", "container_image_workload_labels"),
            ("annotation_owner", "alice"),
            ("group", "apps"),
            ("job", "j"),
            ("kind", "Deployment"),
            ("label_team", "payments"),
            ("name", "api"),
            ("namespace", "shop"),
            ("version", "v1"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn an_external_label_of_the_same_name_wins_and_is_sent_once() {
        let external = [("label_team".to_owned(), "platform".to_owned())];
        let common = Arc::new(CommonLabels::new("j", &external));
        let got = pairs(&workload_labels(
            &common,
            &workload(&[("label_team", "payments")]),
        ));
        let teams: Vec<&(String, String)> = got.iter().filter(|(n, _)| n == "label_team").collect();
        assert_eq!(teams, [&("label_team".to_owned(), "platform".to_owned())]);
    }
}
