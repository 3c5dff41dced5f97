//! OTLP/HTTP metrics: the same snapshot series as remote write, encoded as
//! an `ExportMetricsServiceRequest` for OpenTelemetry collectors and
//! OTLP-only backends. Spec: <https://opentelemetry.io/docs/specs/otlp/>.
//!
//! The mapping keeps PromQL working on the data wherever it lands:
//! - each family is one `Metric` of kind Gauge, named as in remote write and
//!   without a unit (Prometheus' OTLP receiver would append a unit suffix to
//!   the name), with the family's help as description;
//! - the labels every series carries (`job`, the external labels) go once
//!   into the resource, `job` as `service.name`, which Prometheus-compatible
//!   backends turn back into `job`; the rest are data-point attributes;
//! - no instrumentation scope, which some backends would add as
//!   `otel_scope_*` labels;
//! - a series that ended (a stale marker on the remote-write path) is a
//!   point flagged `FLAG_NO_RECORDED_VALUE`, without a value.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::io::Write;

use prost::Message;

use crate::series::{symbols, Family, Series, JOB_LABEL, NAME_LABEL};

/// Messages generated from `proto/opentelemetry/` and `proto/google/rpc/`,
/// nested as their packages are (the generated code refers to its
/// neighbours through `super::`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    pub mod common {
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.common.v1.rs"
            ));
        }
    }
    pub mod resource {
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.resource.v1.rs"
            ));
        }
    }
    pub mod metrics {
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.metrics.v1.rs"
            ));
        }
    }
    pub mod collector {
        pub mod metrics {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.collector.metrics.v1.rs"
                ));
            }
        }
    }
    /// `google.rpc.Status`, the body of an OTLP/HTTP error response.
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

use proto::collector::metrics::v1::ExportMetricsServiceRequest;
use proto::common::v1::{any_value, AnyValue, KeyValue};
use proto::metrics::v1::{
    metric, number_data_point, DataPointFlags, Gauge, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics,
};
use proto::resource::v1::Resource;

/// The resource attribute that carries `job`.
pub const SERVICE_NAME: &str = "service.name";

/// Encodes one request: the series, each as one point at `timestamp_ms`.
/// `resource_labels` names the labels that go into the resource rather
/// than onto each point (`job` and the external labels). Series whose
/// resource labels differ go into separate `ResourceMetrics`.
pub fn encode<S: Borrow<Series>>(
    series: &[S],
    timestamp_ms: i64,
    resource_labels: &[String],
) -> Vec<u8> {
    // Before 1970 is not a time an inventory is taken; 0 would mean "unset".
    let time_unix_nano = u64::try_from(timestamp_ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000);
    type Points = BTreeMap<Family, Vec<NumberDataPoint>>;
    let symbols = symbols::table().read();
    let mut resources: BTreeMap<Vec<(&str, &str)>, Points> = BTreeMap::new();
    for s in series {
        let s = s.borrow();
        let mut resource = Vec::new();
        let mut attributes = Vec::new();
        for (name, value) in s.labels.iter(&symbols) {
            if name == NAME_LABEL {
                continue;
            }
            if resource_labels.iter().any(|r| r == name) {
                let key = if name == JOB_LABEL {
                    SERVICE_NAME
                } else {
                    name
                };
                resource.push((key, value));
            } else {
                attributes.push(key_value(name, value));
            }
        }
        resource.sort_unstable();
        let stale = s.is_stale();
        let point = NumberDataPoint {
            attributes,
            start_time_unix_nano: 0,
            time_unix_nano,
            value: (!stale).then_some(number_data_point::Value::AsDouble(s.value)),
            flags: if stale {
                DataPointFlags::NoRecordedValueMask as u32
            } else {
                0
            },
        };
        resources
            .entry(resource)
            .or_default()
            .entry(s.family())
            .or_default()
            .push(point);
    }
    let resource_metrics = resources
        .into_iter()
        .map(|(resource, families)| ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.into_iter().map(|(k, v)| key_value(k, v)).collect(),
                dropped_attributes_count: 0,
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics: families
                    .into_iter()
                    .map(|(family, data_points)| Metric {
                        name: family.name().to_owned(),
                        description: family.help().to_owned(),
                        unit: String::new(),
                        data: Some(metric::Data::Gauge(Gauge { data_points })),
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }.encode_to_vec()
}

fn key_value(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
    }
}

/// gzip, which every OTLP/HTTP receiver must accept.
pub fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::fixtures::{common, pod, series as one, three_pods};
    use crate::series::{Snapshot, STALE_NAN};

    fn snapshot() -> Snapshot {
        three_pods("pusher")
    }

    fn resource_labels() -> Vec<String> {
        vec!["job".into(), "cluster".into()]
    }

    fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
        kvs.iter()
            .map(|kv| {
                let Some(AnyValue {
                    value: Some(any_value::Value::StringValue(v)),
                }) = &kv.value
                else {
                    panic!("{kv:?} is not a string attribute");
                };
                (kv.key.clone(), v.clone())
            })
            .collect()
    }

    #[test]
    fn families_are_gauges_with_common_labels_in_the_resource() {
        let snap = snapshot();
        let body = encode(&snap.series, snap.timestamp_ms, &resource_labels());
        let request = ExportMetricsServiceRequest::decode(body.as_slice()).expect("valid protobuf");
        assert_eq!(request.resource_metrics.len(), 1);
        let rm = &request.resource_metrics[0];
        assert_eq!(
            attributes(&rm.resource.as_ref().unwrap().attributes),
            [
                ("cluster".to_owned(), "prod".to_owned()),
                (SERVICE_NAME.to_owned(), "pusher".to_owned())
            ]
        );
        assert_eq!(rm.scope_metrics.len(), 1);
        assert!(rm.scope_metrics[0].scope.is_none());
        let metrics = &rm.scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].name, "container_image_container_info");
        assert_eq!(metrics[0].description, Family::ContainerInfo.help());
        assert_eq!(metrics[0].unit, "");
        let Some(metric::Data::Gauge(gauge)) = &metrics[0].data else {
            panic!("not a gauge: {:?}", metrics[0].data);
        };
        assert_eq!(gauge.data_points.len(), 3);
        for (point, series) in gauge.data_points.iter().zip(&snap.series) {
            let want: Vec<(String, String)> = crate::series::fixtures::pairs(series)
                .into_iter()
                .filter(|(n, _)| !["__name__", "job", "cluster"].contains(&n.as_str()))
                .collect();
            assert_eq!(attributes(&point.attributes), want);
            assert_eq!(point.time_unix_nano, 1_700_000_000_123_000_000);
            assert_eq!(point.start_time_unix_nano, 0);
            assert_eq!(point.flags, 0);
            assert_eq!(point.value, Some(number_data_point::Value::AsDouble(1.0)));
        }
    }

    #[test]
    fn stale_series_end_with_no_recorded_value() {
        let mut snap = snapshot();
        snap.series[1].value = f64::from_bits(STALE_NAN);
        snap.series[2].value = 0.0;
        let body = encode(&snap.series, snap.timestamp_ms, &resource_labels());
        let request = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
        let Some(metric::Data::Gauge(gauge)) =
            &request.resource_metrics[0].scope_metrics[0].metrics[0].data
        else {
            panic!("not a gauge");
        };
        let points = &gauge.data_points;
        assert_eq!(points[1].flags, DataPointFlags::NoRecordedValueMask as u32);
        assert_eq!(points[1].value, None, "an ended series has no value");
        assert_eq!(points[0].flags, 0);
        assert_eq!(
            points[2].value,
            Some(number_data_point::Value::AsDouble(0.0)),
            "zero is a value, not an absent one"
        );
    }

    #[test]
    fn families_in_one_request_and_differing_resources_apart() {
        let mut series = snapshot().series;
        let prod = common("pusher", &[("cluster", "prod")]);
        series.extend((0..3).map(|i| one(&prod, Family::SizeBytes, &[&format!("d{i}")], 42.0)));
        series.push(pod(&common("other", &[]), "lone", "img:x"));
        let body = encode(&series, 1, &resource_labels());
        let request = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(request.resource_metrics.len(), 2);
        let names: Vec<Vec<&str>> = request
            .resource_metrics
            .iter()
            .map(|rm| {
                rm.scope_metrics[0]
                    .metrics
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect()
            })
            .collect();
        assert!(names.contains(&vec![
            "container_image_container_info",
            "container_image_size_bytes"
        ]));
        assert!(names.contains(&vec!["container_image_container_info"]));
        let total: usize = request
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics[0].metrics)
            .map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                None => 0,
            })
            .sum();
        assert_eq!(total, 7, "every series once");
    }

    #[test]
    fn timestamps_saturate_instead_of_wrapping() {
        let snap = snapshot();
        for (ms, nanos) in [(-5, 0), (i64::MAX, u64::MAX)] {
            let body = encode(&snap.series[..1], ms, &resource_labels());
            let request = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
            let Some(metric::Data::Gauge(gauge)) =
                &request.resource_metrics[0].scope_metrics[0].metrics[0].data
            else {
                panic!("not a gauge");
            };
            assert_eq!(gauge.data_points[0].time_unix_nano, nanos, "{ms} ms");
        }
    }

    #[test]
    fn gzip_round_trips() {
        let snap = snapshot();
        let body = encode(&snap.series, snap.timestamp_ms, &resource_labels());
        let compressed = compress(&body).unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(compressed.as_slice()),
            &mut plain,
        )
        .unwrap();
        assert_eq!(plain, body);
    }
}
