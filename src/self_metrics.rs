//! The pusher's health as series of the snapshot (`--push-self-metrics`):
//! a small set read from the telemetry registry and pushed with every
//! snapshot to every endpoint, so that a push-only user (no scrape of the
//! health listener) sees whether pushes land, kinds are stale, a leader
//! pushes. Labels are per endpoint, kind or error class, never per image or
//! registry host: the set stays a few dozen series whatever the cluster.
//!
//! Each endpoint receives every endpoint's figures, so a second endpoint
//! reports the first one refusing.

use std::sync::Arc;
use std::time::Duration;

use prometheus::proto::{MetricFamily, MetricType};

use crate::series::{CommonLabels, Family, LabelSet, Series};
use crate::telemetry::{Telemetry, REVISION, VERSION};

/// The registry's metrics pushed as they are: family, registry name.
const FROM_REGISTRY: [(Family, &str); 5] = [
    (
        Family::SelfLastSuccess,
        "container_image_pusher_last_success_timestamp_seconds",
    ),
    (Family::SelfPushes, "container_image_pusher_pushes_total"),
    (
        Family::SelfInventoryStale,
        "container_image_pusher_inventory_stale",
    ),
    (Family::SelfLeader, "container_image_pusher_leader"),
    (
        Family::SelfResolveFailures,
        "container_image_pusher_resolve_failures_total",
    ),
];

/// The health series of a snapshot of `inventory_series` series that took
/// `took`, with the telemetry as it stands.
pub fn health_series(
    telemetry: &Telemetry,
    common: &Arc<CommonLabels>,
    inventory_series: usize,
    took: Duration,
) -> Vec<Series> {
    let one = |family: Family, values: &[&str], value: f64| Series {
        labels: LabelSet::new(
            family,
            common,
            &values.iter().map(|v| (*v).into()).collect::<Vec<_>>(),
        ),
        value,
    };
    let mut series = vec![
        one(Family::SelfBuildInfo, &[VERSION, REVISION], 1.0),
        one(Family::SelfSnapshotSeries, &[], inventory_series as f64),
        one(Family::SelfSnapshotDuration, &[], took.as_secs_f64()),
    ];
    let gathered = telemetry.registry.gather();
    for (family, name) in FROM_REGISTRY {
        let Some(metrics) = gathered.iter().find(|m| m.name() == name) else {
            continue;
        };
        series.extend(read(metrics, family).into_iter().map(|(values, value)| {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            one(family, &values, value)
        }));
    }
    series
}

/// Each metric of a gathered family: its label values in the order of the
/// series family's label names, and its value.
fn read(metrics: &MetricFamily, family: Family) -> Vec<(Vec<String>, f64)> {
    metrics
        .get_metric()
        .iter()
        .map(|metric| {
            let values = family
                .label_names()
                .iter()
                .map(|name| {
                    metric
                        .get_label()
                        .iter()
                        .find(|pair| pair.name() == *name)
                        .map(|pair| pair.value().to_owned())
                        .unwrap_or_default()
                })
                .collect();
            let value = match metrics.get_field_type() {
                MetricType::COUNTER => metric.get_counter().get_value(),
                _ => metric.get_gauge().get_value(),
            };
            (values, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::series::fixtures::pairs;

    #[test]
    fn the_health_set_carries_the_telemetry_per_endpoint_and_kind_only() {
        let telemetry = Telemetry::new();
        let pushes = crate::remote_write::Metrics::new(&telemetry.registry);
        let discovery = crate::discovery::Metrics::new(&telemetry.registry);
        let leader = crate::leader::Metrics::new(&telemetry.registry);
        let resolver = crate::registry::Metrics::new(&telemetry.registry);
        let endpoint = "https://a.example/api/v1/push";
        pushes
            .last_success
            .with_label_values(&[endpoint])
            .set(1.7e9);
        pushes
            .pushes
            .with_label_values(&[endpoint, "failed"])
            .inc_by(3);
        discovery.inventory_stale.with_label_values(&["Pod"]).set(1);
        leader.leader.set(1);
        resolver
            .resolve_failures
            .with_label_values(&["not_found"])
            .inc();
        // Per host: never pushed.
        resolver
            .requests
            .with_label_values(&["registry.example", "GET", "200"])
            .inc();
        let common = Arc::new(CommonLabels::new(
            "pusher",
            &[("cluster".to_owned(), "c".to_owned())],
        ));
        let series = health_series(&telemetry, &common, 42, Duration::from_millis(1500));
        let find = |family: Family| -> Vec<(Vec<(String, String)>, f64)> {
            series
                .iter()
                .filter(|s| s.family() == family)
                .map(|s| (pairs(s), s.value))
                .collect()
        };
        let build = find(Family::SelfBuildInfo);
        assert_eq!(build.len(), 1);
        assert!(build[0].0.contains(&("version".into(), VERSION.into())));
        assert!(build[0].0.contains(&("cluster".into(), "c".into())));
        assert_eq!(find(Family::SelfSnapshotSeries)[0].1, 42.0);
        assert_eq!(find(Family::SelfSnapshotDuration)[0].1, 1.5);
        let success = find(Family::SelfLastSuccess);
        assert_eq!(success[0].1, 1.7e9);
        assert!(success[0].0.contains(&("endpoint".into(), endpoint.into())));
        let pushes = find(Family::SelfPushes);
        assert!(pushes[0].0.contains(&("outcome".into(), "failed".into())));
        assert_eq!(pushes[0].1, 3.0);
        assert!(find(Family::SelfInventoryStale)[0]
            .0
            .contains(&("kind".into(), "Pod".into())));
        assert_eq!(find(Family::SelfLeader)[0].1, 1.0);
        assert_eq!(find(Family::SelfResolveFailures)[0].1, 1.0);
        assert!(series.iter().all(|s| s.family().is_self_metric()));
        assert!(
            !series
                .iter()
                .any(|s| pairs(s).iter().any(|(_, v)| v == "registry.example")),
            "nothing per registry host"
        );
    }
}
