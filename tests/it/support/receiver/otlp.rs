//! The receiver's OTLP/HTTP metrics part. Collectors and backends are
//! lenient (they skip unknown fields, accept duplicate attribute keys, take
//! any metric kind); this part checks every request against the OTLP spec
//! and the pusher's mapping — headers, gzip, protobuf with nothing the
//! message types do not know, unique non-empty attribute keys, gauges only,
//! one value or the no-recorded-value flag per point — and adds OTLP's
//! answers (an `ExportMetricsServiceResponse`, partial success, a
//! `google.rpc.Status`).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::time::Duration;

use axum::http::HeaderMap;
use container_image_pusher::encode::otlp::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use container_image_pusher::encode::otlp::proto::common::v1::{any_value, KeyValue};
use container_image_pusher::encode::otlp::proto::metrics::v1::{
    metric, number_data_point, DataPointFlags,
};
use container_image_pusher::encode::otlp::proto::rpc::Status;
use container_image_pusher::encode::otlp::SERVICE_NAME;
use prost::Message;

use super::{Protocol, Received, Reply};

/// Largest decompressed body accepted: a gzip bomb must not take the test down.
const MAX_BODY: u64 = 64 << 20;

/// OTLP/HTTP metrics, protobuf encoded.
#[derive(Clone, Default)]
pub struct Otlp;

impl Protocol for Otlp {
    type Request = ExportMetricsServiceRequest;
    const PATH: &'static str = "/v1/metrics";

    fn decode(headers: &HeaderMap, body: &[u8]) -> (ExportMetricsServiceRequest, Vec<String>) {
        check(headers, body)
    }

    fn default_reply() -> Reply {
        Reply::ok()
    }
}

impl Reply {
    /// 200 with an empty `ExportMetricsServiceResponse`.
    pub fn ok() -> Self {
        Reply::protobuf(200, ExportMetricsServiceResponse::default().encode_to_vec())
    }

    fn protobuf(status: u16, body: Vec<u8>) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/x-protobuf".into())],
            body,
            delay: Duration::ZERO,
        }
    }

    /// 200 with a partial success.
    pub fn partial(rejected: i64, message: &str) -> Self {
        let response = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: rejected,
                error_message: message.into(),
            }),
        };
        Reply::protobuf(200, response.encode_to_vec())
    }

    /// An error status with a `google.rpc.Status` body saying `message`.
    pub fn error(status: u16, message: &str) -> Self {
        let status_body = Status {
            code: 3,
            message: message.into(),
        };
        Reply::protobuf(status, status_body.encode_to_vec())
    }
}

/// One data point as a remote-write series would carry it: `__name__`, the
/// resource attributes (`service.name` as `job`) and the point's attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub labels: BTreeMap<String, String>,
    /// `None` for a point flagged no-recorded-value (a series that ended).
    pub value: Option<f64>,
    pub time_unix_nano: u64,
}

impl Received<Otlp> {
    pub fn points(&self) -> Vec<Point> {
        let mut points = Vec::new();
        for rm in &self.request.resource_metrics {
            let resource: Vec<(String, String)> = rm
                .resource
                .as_ref()
                .map(|r| strings(&r.attributes))
                .unwrap_or_default();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let Some(metric::Data::Gauge(gauge)) = &m.data else {
                        continue;
                    };
                    for p in &gauge.data_points {
                        let mut labels: BTreeMap<String, String> = resource
                            .iter()
                            .map(|(k, v)| {
                                let k = if k == SERVICE_NAME { "job" } else { k };
                                (k.to_owned(), v.clone())
                            })
                            .collect();
                        labels.extend(strings(&p.attributes));
                        labels.insert("__name__".into(), m.name.clone());
                        points.push(Point {
                            labels,
                            value: match p.value {
                                Some(number_data_point::Value::AsDouble(v)) => Some(v),
                                Some(number_data_point::Value::AsInt(v)) => Some(v as f64),
                                None => None,
                            },
                            time_unix_nano: p.time_unix_nano,
                        });
                    }
                }
            }
        }
        points
    }
}

fn strings(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => format!("<not a string: {other:?}>"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// Checks one request; returns what it decoded and what is wrong.
fn check(headers: &HeaderMap, body: &[u8]) -> (ExportMetricsServiceRequest, Vec<String>) {
    let mut violations = Vec::new();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    for (name, expected) in [
        ("content-encoding", "gzip"),
        ("content-type", "application/x-protobuf"),
    ] {
        if header(name) != expected {
            violations.push(format!(
                "header {name} is {:?}, expected {expected:?}",
                header(name)
            ));
        }
    }
    if headers.contains_key("x-prometheus-remote-write-version") {
        violations.push("an OTLP request carries the remote-write version header".into());
    }
    if !header("user-agent").starts_with("container-image-pusher/") {
        violations.push(format!("user-agent is {:?}", header("user-agent")));
    }
    let mut decoded = Vec::new();
    if let Err(e) = flate2::read::GzDecoder::new(body)
        .take(MAX_BODY)
        .read_to_end(&mut decoded)
    {
        violations.push(format!("body is not gzip: {e}"));
        return (ExportMetricsServiceRequest::default(), violations);
    }
    let request = match ExportMetricsServiceRequest::decode(decoded.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            violations.push(format!("body is not an ExportMetricsServiceRequest: {e}"));
            return (ExportMetricsServiceRequest::default(), violations);
        }
    };
    // prost skips fields it does not know: a body longer than its decoded
    // message re-encoded carries something else (another metric kind, an
    // unexpected field) or spells out defaults.
    if request.encoded_len() != decoded.len() {
        violations.push(format!(
            "body has {} bytes, its decoded message {}: unknown fields or explicit defaults",
            decoded.len(),
            request.encoded_len()
        ));
    }
    if request.resource_metrics.is_empty() {
        violations.push("a request without resource metrics".into());
    }
    let mut resources = HashSet::new();
    for rm in &request.resource_metrics {
        let Some(resource) = &rm.resource else {
            violations.push("resource metrics without a resource".into());
            continue;
        };
        check_attributes("resource", &resource.attributes, &mut violations);
        let attributes = strings(&resource.attributes);
        if !attributes.iter().any(|(k, _)| k == SERVICE_NAME) {
            violations.push(format!("resource without {SERVICE_NAME}: {attributes:?}"));
        }
        if !resources.insert(attributes.clone()) {
            violations.push(format!("resource {attributes:?} appears twice"));
        }
        if rm.scope_metrics.is_empty() {
            violations.push("resource metrics without scope metrics".into());
        }
        for sm in &rm.scope_metrics {
            let mut names = HashSet::new();
            for m in &sm.metrics {
                if m.name.is_empty() || !names.insert(m.name.clone()) {
                    violations.push(format!("metric name {:?} empty or repeated", m.name));
                }
                let Some(metric::Data::Gauge(gauge)) = &m.data else {
                    violations.push(format!("metric {} is not a gauge", m.name));
                    continue;
                };
                if gauge.data_points.is_empty() {
                    violations.push(format!("gauge {} without points", m.name));
                }
                let mut series = HashSet::new();
                for p in &gauge.data_points {
                    check_attributes(&m.name, &p.attributes, &mut violations);
                    let attributes = strings(&p.attributes);
                    if let Some((k, _)) = attributes
                        .iter()
                        .find(|(k, _)| resource.attributes.iter().any(|r| &r.key == k))
                    {
                        violations.push(format!(
                            "{}: point attribute {k} is also a resource attribute",
                            m.name
                        ));
                    }
                    if !series.insert(attributes.clone()) {
                        violations.push(format!("{}: two points for {attributes:?}", m.name));
                    }
                    if p.time_unix_nano == 0 {
                        violations.push(format!("{}: a point without a time", m.name));
                    }
                    let no_value = p.flags & DataPointFlags::NoRecordedValueMask as u32 != 0;
                    if p.flags & !(DataPointFlags::NoRecordedValueMask as u32) != 0 {
                        violations.push(format!("{}: unknown flags {:#x}", m.name, p.flags));
                    }
                    match (&p.value, no_value) {
                        (Some(number_data_point::Value::AsDouble(_)), false) => {}
                        (None, true) => {}
                        (value, flagged) => violations.push(format!(
                            "{}: value {value:?} with no-recorded-value {flagged}",
                            m.name
                        )),
                    }
                }
            }
        }
    }
    (request, violations)
}

/// Keys unique and non-empty, values non-empty strings.
fn check_attributes(what: &str, attributes: &[KeyValue], violations: &mut Vec<String>) {
    let mut keys = HashSet::new();
    for kv in attributes {
        if kv.key.is_empty() || !keys.insert(kv.key.as_str()) {
            violations.push(format!(
                "{what}: attribute key {:?} empty or repeated",
                kv.key
            ));
        }
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) if !s.is_empty() => {}
            other => violations.push(format!(
                "{what}: attribute {} is {other:?}, not a non-empty string",
                kv.key
            )),
        }
    }
}
