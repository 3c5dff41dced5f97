//! The Prometheus text exposition format, for `/metrics` and `--dry-run`,
//! written by the prometheus crate's encoder.

use std::collections::BTreeMap;

use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::inventory::{Family, Snapshot};

/// The snapshot's series as metric families. Labels named in `omit` are
/// left out: `/metrics` drops `job` and the external labels, which the
/// scraping Prometheus would otherwise rename to `exported_job` and so on.
pub fn families(snapshot: &Snapshot, omit: &[&str]) -> Vec<MetricFamily> {
    let mut by_family: BTreeMap<Family, Vec<Metric>> = BTreeMap::new();
    for series in &snapshot.series {
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
        by_family.entry(series.family).or_default().push(metric);
    }
    by_family
        .into_iter()
        .map(|(family, metrics)| {
            let mut mf = MetricFamily::default();
            mf.set_name(family.name().to_owned());
            mf.set_help(family.help().to_owned());
            mf.set_field_type(MetricType::GAUGE);
            mf.set_metric(metrics);
            mf
        })
        .collect()
}

/// Renders metric families in the text format.
pub fn render(families: &[MetricFamily]) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(families, &mut out)
        .expect("text encoding into memory cannot fail");
    String::from_utf8(out).expect("the text encoder writes UTF-8")
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
            }],
            pull: Default::default(),
        }];
        let snap = build(
            &workloads,
            &HashMap::new(),
            &CommonLabels::new("pusher", &[("cluster".into(), "a".into())]),
            0,
        );
        let full = render(&families(&snap, &[]));
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
        let local = render(&families(&snap, &["job", "cluster"]));
        assert!(
            !local.contains("job=") && !local.contains("cluster="),
            "{local}"
        );
        assert!(local.contains(r#"container_image_container_info{container="c",image="quote\"me",jsonpath="{.spec.containers[0]}",kind="Pod",name="p",namespace="ns",version="v1"} 1"#), "{local}");
    }
}
