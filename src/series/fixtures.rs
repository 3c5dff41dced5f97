//! Label sets and snapshots for the unit tests of later stages.

use super::*;

pub(crate) fn common(job: &str, external: &[(&str, &str)]) -> Arc<CommonLabels> {
    let external: Vec<(String, String)> = external
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Arc::new(CommonLabels::new(job, &external))
}

/// A series' labels as owned (name, value) pairs, in order.
pub(crate) fn pairs(series: &Series) -> Vec<(String, String)> {
    let symbols = symbols::table().read();
    series
        .labels
        .iter(&symbols)
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// One series of `family`, its values in the order of the table.
pub(crate) fn series(
    common: &Arc<CommonLabels>,
    family: Family,
    values: &[&str],
    value: f64,
) -> Series {
    let values: Vec<Text<'_>> = values.iter().map(|v| (*v).into()).collect();
    Series {
        labels: LabelSet::new(family, common, &values),
        value,
    }
}

/// The `container_info` series of a one-container Pod, unresolved.
pub(crate) fn pod(common: &Arc<CommonLabels>, name: &str, image: &str) -> Series {
    let values = [
        "",
        "v1",
        "Pod",
        "ns",
        name,
        "c",
        "{.spec.containers[0]}",
        image,
        "",
        "",
    ];
    series(common, Family::ContainerInfo, &values, 1.0)
}

/// Three Pods of one container each, with `job` and a `cluster`
/// external label: the snapshot every encoder's tests start from.
pub(crate) fn three_pods(job: &str) -> Snapshot {
    let common = common(job, &[("cluster", "prod")]);
    Snapshot {
        timestamp_ms: 1_700_000_000_123,
        series: (0..3)
            .map(|i| pod(&common, &format!("pod-{i}"), &format!("img:{i}")))
            .collect(),
        containers: 3,
        images: 0,
    }
}

/// Series of every family, with values that need escaping in text.
pub(crate) fn every_family(common: &Arc<CommonLabels>) -> Vec<Series> {
    let digest = "sha256:aa";
    let mut all = vec![
        series(
            common,
            Family::ContainerInfo,
            &[
                "apps",
                "v1",
                "Deployment",
                "ns",
                "d",
                "c",
                "{.spec.template.spec.containers[0]}",
                "app:1",
                digest,
                "",
            ],
            1.0,
        ),
        pod(common, "quote\"me", "back\\slash\nnewline"),
        series(
            common,
            Family::Annotation,
            &[
                digest,
                "org.opencontainers.image.base.name",
                "cgr.dev/chainguard/static",
            ],
            1.0,
        ),
        series(common, Family::Label, &[digest, "team", "é ünïcode"], 1.0),
        series(common, Family::Label, &[digest, "empty", ""], 1.0),
        series(common, Family::SizeBytes, &[digest], 123_456_789.0),
        series(common, Family::Created, &[digest], 1_700_000_000.0),
        series(common, Family::ResolveError, &["gone:1", "not_found"], 1.0),
    ];
    all.extend(supply_chain_and_versions(common, digest));
    all.sort_by_key(Series::family);
    all
}

/// The supply-chain, drift, workload-label and version families of
/// [`every_family`].
fn supply_chain_and_versions(common: &Arc<CommonLabels>, digest: &str) -> Vec<Series> {
    vec![
        series(
            common,
            Family::Referrer,
            &[digest, "signature", "application/vnd.cncf.notary.signature"],
            1.0,
        ),
        series(
            common,
            Family::Base,
            &[digest, "cgr.dev/chainguard/static:latest", "sha256:bb"],
            1.0,
        ),
        series(
            common,
            Family::BaseOutdated,
            &[digest, "cgr.dev/chainguard/static:latest"],
            1.0,
        ),
        series(
            common,
            Family::BaseCurrentCreated,
            &[digest, "cgr.dev/chainguard/static:latest"],
            1_700_000_000.0,
        ),
        series(common, Family::SignatureVerified, &[digest, "ours"], 0.0),
        series(
            common,
            Family::SignatureVerifyFailure,
            &[digest, "ours", "wrong_key"],
            1.0,
        ),
        series(
            common,
            Family::RunningDrift,
            &["ns", "p", "c", "app:1", digest, "app@sha256:bb"],
            1.0,
        ),
        Series {
            labels: LabelSet::with_extra(
                Family::WorkloadLabels,
                common,
                &["apps", "v1", "Deployment", "ns", "d"].map(Text::from),
                vec![(Arc::from("label_team"), Arc::from("payments"))],
            ),
            value: 1.0,
        },
        series(
            common,
            Family::IsLatestVersion,
            &["app:1.2.3", "1.2.3", "1.3.0", "", "", ""],
            0.0,
        ),
        series(
            common,
            Family::LatestVersionCreated,
            &["app:1.2.3", "1.3.0", "", "", ""],
            1_700_000_000.0,
        ),
        series(
            common,
            Family::VersionsBehind,
            &["app:1.2.3", "minor", "ns", "d", "c"],
            1.0,
        ),
    ]
}
