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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Kind;
    use crate::inventory::Series;

    fn workload(labels: &[(&str, &str)]) -> Workload {
        Workload {
            kind: Kind::Deployment,
            namespace: "shop".into(),
            name: "api".into(),
            containers: Vec::new(),
            pull: Default::default(),
            metadata_labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn decoded(labels: Bytes) -> Vec<(String, String)> {
        Series {
            family: Family::WorkloadLabels,
            labels,
            value: 1.0,
        }
        .decode_labels()
    }

    #[test]
    fn one_series_with_the_kept_labels() {
        let common = CommonLabels::new("j", &[]);
        let got = decoded(workload_labels(
            &common,
            &workload(&[("annotation_owner", "alice"), ("label_team", "payments")]),
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
        let common = CommonLabels::new("j", &external);
        let got = decoded(workload_labels(
            &common,
            &workload(&[("label_team", "payments")]),
        ));
        let teams: Vec<&(String, String)> = got.iter().filter(|(n, _)| n == "label_team").collect();
        assert_eq!(teams, [&("label_team".to_owned(), "platform".to_owned())]);
    }
}
