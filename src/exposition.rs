//! The Prometheus text exposition format, for `/metrics` and `--dry-run`,
//! written by the prometheus crate's encoder.

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::inventory::{Family, Series, Snapshot};

/// Series handed to the encoder at a time. Its per-metric structures cost
/// several hundred bytes a series, so a snapshot of 160k series is only
/// ever held in that form a chunk at a time; the text is what remains.
const CHUNK: usize = 4096;

/// The snapshot's series, then `extra` (the pusher's own metrics), in the
/// text format. Labels named in `omit` are left out: `/metrics` drops `job`
/// and the external labels, which the scraping Prometheus would otherwise
/// rename to `exported_job` and so on.
pub fn render(snapshot: &Snapshot, omit: &[&str], extra: &[MetricFamily]) -> String {
    // A series' text is about as long as its encoded labels, so this is
    // close to the final size and the buffer is never copied to grow.
    let estimate = snapshot.series.iter().map(|s| s.labels.len() + 16).sum();
    let mut out = Vec::with_capacity(estimate);
    for family in Family::ALL {
        let series: Vec<&Series> = snapshot
            .series
            .iter()
            .filter(|s| s.family == family)
            .collect();
        for (i, chunk) in series.chunks(CHUNK).enumerate() {
            let text = encode(&[metric_family(family, chunk, omit)]);
            // A family is one group in the text format: its HELP and TYPE
            // lines come once, before its first chunk.
            let body = if i == 0 {
                &text[..]
            } else {
                skip_lines(&text, 2)
            };
            out.extend_from_slice(body);
        }
    }
    out.extend_from_slice(&encode(extra));
    String::from_utf8(out).expect("the text encoder writes UTF-8")
}

fn metric_family(family: Family, series: &[&Series], omit: &[&str]) -> MetricFamily {
    let metrics = series
        .iter()
        .map(|series| {
            let labels = series
                .decode_labels()
                .into_iter()
                .filter(|(name, _)| name != "__name__" && !omit.contains(&name.as_str()))
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(name);
                    pair.set_value(value);
                    pair
                })
                .collect();
            let mut gauge = Gauge::default();
            gauge.set_value(series.value);
            let mut metric = Metric::default();
            metric.set_label(labels);
            metric.set_gauge(gauge);
            metric
        })
        .collect();
    let mut mf = MetricFamily::default();
    mf.set_name(family.name().to_owned());
    mf.set_help(family.help().to_owned());
    mf.set_field_type(MetricType::GAUGE);
    mf.set_metric(metrics);
    mf
}

fn encode(families: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(families, &mut out)
        .expect("text encoding into memory cannot fail");
    out
}

fn skip_lines(text: &[u8], lines: usize) -> &[u8] {
    let mut rest = text;
    for _ in 0..lines {
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => rest = &rest[end + 1..],
            None => return &[],
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Container, Kind, Workload};
    use crate::inventory::{build_once as build, CommonLabels};
    use std::collections::HashMap;

    #[test]
    fn renders_gauges_and_omits_labels() {
        let workloads = [Workload {
            kind: Kind::Pod,
            namespace: "ns".into(),
            name: "p".into(),
            containers: vec![Container {
                name: "c".into(),
                image: "quote\"me".into(),
                jsonpath: "{.spec.containers[0]}".into(),
                image_id: None,
            }],
            pull: Default::default(),
            metadata_labels: Vec::new(),
        }];
        let snap = build(
            &workloads,
            &HashMap::new(),
            &CommonLabels::new("pusher", &[("cluster".into(), "a".into())]),
            0,
        );
        let full = render(&snap, &[], &[]);
        assert!(
            full.contains("# TYPE container_image_container_info gauge"),
            "{full}"
        );
        assert!(
            full.contains(r#"cluster="a""#) && full.contains(r#"job="pusher""#),
            "{full}"
        );
        assert!(
            full.contains(r#"image="quote\"me""#),
            "label values are escaped: {full}"
        );
        let local = render(&snap, &["job", "cluster"], &[]);
        assert!(
            !local.contains("job=") && !local.contains("cluster="),
            "{local}"
        );
        assert!(local.contains(r#"container_image_container_info{container="c",image="quote\"me",jsonpath="{.spec.containers[0]}",kind="Pod",name="p",namespace="ns",version="v1"} 1"#), "{local}");
    }

    #[test]
    fn local_metrics_show_each_family_its_own_labels_only() {
        use crate::registry::{ErrorClass, ImageMetadata, ResolveError};
        use std::sync::Arc;
        let container = |image: &str| Container {
            name: "c".into(),
            image: image.into(),
            jsonpath: "{.spec.containers[0]}".into(),
            image_id: None,
        };
        // A Pod running what app:1 named before, owned by a team.
        let mut drifted = container("app:1");
        drifted.image_id =
            crate::discovery::ImageId::parse(&format!("app@sha256:{}", "b".repeat(64)), true);
        let workloads = [
            Workload {
                kind: Kind::Deployment,
                namespace: "ns".into(),
                name: "d".into(),
                containers: vec![container("app:1"), container("gone:1")],
                pull: Default::default(),
                metadata_labels: Vec::new(),
            },
            Workload {
                kind: Kind::Pod,
                namespace: "ns".into(),
                name: "p".into(),
                containers: vec![drifted],
                pull: Default::default(),
                metadata_labels: vec![("label_team".into(), "a".into())],
            },
        ];
        let image = ImageMetadata {
            digest: "sha256:aa".into(),
            size: 1,
            created: Some(1),
            labels: [("l".into(), "v".into())].into(),
            annotations: [("a".into(), "v".into())].into(),
            dropped: Default::default(),
            platform_digests: Vec::new(),
        };
        let gone = ResolveError {
            class: ErrorClass::NotFound,
            message: "gone".into(),
        };
        let resolutions = HashMap::from([
            ("app:1".to_owned(), Ok(Arc::new(image))),
            ("gone:1".to_owned(), Err(gone)),
        ]);
        let common = CommonLabels::new("pusher", &[("cluster".into(), "a".into())]);
        let snap = build(&workloads, &resolutions, &common, 0);
        let omit: Vec<&str> = common.names().collect();
        let text = render(&snap, &omit, &[]);
        let mut seen = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, rest) = line.split_once('{').expect("every series has labels");
            let family = Family::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("{line}"));
            seen.push(family);
            let labels = rest.rsplit_once('}').unwrap().0;
            for pair in labels.split("\",") {
                let label = pair.split_once('=').unwrap().0;
                let owner = family == Family::WorkloadLabels && label.starts_with("label_");
                assert!(
                    family.label_names().contains(&label) || owner,
                    "{label} on {}: {line}",
                    family.name()
                );
            }
        }
        seen.dedup();
        assert_eq!(seen, Family::ALL, "{text}");
    }

    #[test]
    fn a_family_bigger_than_a_chunk_is_one_group() {
        let workloads: Vec<Workload> = (0..CHUNK + 10)
            .map(|i| Workload {
                kind: Kind::Pod,
                namespace: "ns".into(),
                name: format!("p{i}"),
                containers: vec![Container {
                    name: "c".into(),
                    image: "nginx".into(),
                    jsonpath: "{.spec.containers[0]}".into(),
                    image_id: None,
                }],
                pull: Default::default(),
                metadata_labels: Vec::new(),
            })
            .collect();
        let snap = build(
            &workloads,
            &HashMap::new(),
            &CommonLabels::new("pusher", &[]),
            0,
        );
        let text = render(&snap, &[], &[]);
        assert_eq!(
            text.matches("# TYPE container_image_container_info gauge")
                .count(),
            1
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("container_image_container_info{"))
                .count(),
            CHUNK + 10
        );
        assert!(text.ends_with("\n"));
    }
}
