//! The receiver's remote-write part: every request checked byte by byte
//! against the remote-write 1.0 and 2.0 specs — headers, snappy *block*
//! format, protobuf, label order and uniqueness, the 2.0 symbols table —
//! and a 2.0 request decoded into the 1.0 shape, so tests read both alike.

use std::collections::HashSet;

use axum::http::HeaderMap;
use container_image_pusher::encode::remote_write_v1::proto::{
    Label, Sample, TimeSeries, WriteRequest,
};
use container_image_pusher::encode::remote_write_v2::proto as proto_v2;
use prost::Message;

use super::{Protocol, Received, Reply};

/// What a 2.0 receiver says it wrote.
pub const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";

const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// Remote write; 1.0 only unless it speaks 2.0.
#[derive(Clone, Default)]
pub struct RemoteWrite {
    /// Accept remote-write 2.0 (and say how much was written, as 2.0 receivers must).
    pub(super) speaks_v2: bool,
}

impl Protocol for RemoteWrite {
    type Request = WriteRequest;
    const PATH: &'static str = "/api/v1/write";

    fn decode(headers: &HeaderMap, body: &[u8]) -> (WriteRequest, Vec<String>) {
        let mut violations = check_headers(headers);
        let request = decode_body(is_v2(headers), body, &mut violations);
        for ts in &request.timeseries {
            check_series(ts, &mut violations);
        }
        (request, violations)
    }

    fn default_reply() -> Reply {
        Reply::status(204)
    }

    fn finish(&self, headers: &HeaderMap, request: &WriteRequest, reply: Reply) -> Reply {
        let counted = reply
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(SAMPLES_WRITTEN));
        if is_v2(headers) && self.speaks_v2 && (200..300).contains(&reply.status) && !counted {
            let series = request.timeseries.len();
            reply.header(SAMPLES_WRITTEN, &series.to_string())
        } else {
            reply
        }
    }
}

impl Received<RemoteWrite> {
    /// The series as sorted (name, value) label lists with their sample value.
    pub fn series(&self) -> Vec<(Vec<(String, String)>, f64)> {
        self.request
            .timeseries
            .iter()
            .map(|ts| {
                let labels = ts
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                (labels, ts.samples.first().map_or(f64::NAN, |s| s.value))
            })
            .collect()
    }

    /// Whether the push carries a series of `family`.
    pub fn holds(&self, family: &str) -> bool {
        self.holds_label("__name__", family)
    }

    /// Whether the push carries a series whose label `name` is `value`.
    pub fn holds_label(&self, name: &str, value: &str) -> bool {
        self.request
            .timeseries
            .iter()
            .any(|ts| ts.labels.iter().any(|l| l.name == name && l.value == value))
    }

    /// The `label` of each series of `family` that has it, in the order
    /// pushed.
    pub fn values(&self, family: &str, label: &str) -> Vec<String> {
        self.series()
            .into_iter()
            .filter(|(labels, _)| has(labels, "__name__", family))
            .filter_map(|(labels, _)| Some(self::label(&labels, label)?.to_owned()))
            .collect()
    }
}

/// The value of label `name` in a series' labels.
pub fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a series' labels have `name` = `value`.
pub fn has(labels: &[(String, String)], name: &str, value: &str) -> bool {
    label(labels, name) == Some(value)
}

pub fn is_v2(headers: &HeaderMap) -> bool {
    headers.get("content-type").and_then(|v| v.to_str().ok()) == Some(V2_CONTENT_TYPE)
}

fn check_headers(headers: &HeaderMap) -> Vec<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, version) = if is_v2(headers) {
        (V2_CONTENT_TYPE, "2.0.0")
    } else {
        ("application/x-protobuf", "0.1.0")
    };
    let mut violations = Vec::new();
    for (name, expected) in [
        ("content-encoding", "snappy"),
        ("content-type", content_type),
        ("x-prometheus-remote-write-version", version),
    ] {
        if header(name) != expected {
            violations.push(format!(
                "header {name} is {:?}, expected {expected:?}",
                header(name)
            ));
        }
    }
    if !header("user-agent").starts_with("container-image-pusher/") {
        violations.push(format!("user-agent is {:?}", header("user-agent")));
    }
    violations
}

/// Snappy block format, then a 1.0 `WriteRequest` or a 2.0 `Request`
/// (returned in the 1.0 shape); empty when the body does not decode.
fn decode_body(v2: bool, body: &[u8], violations: &mut Vec<String>) -> WriteRequest {
    // The framed format starts with a stream identifier chunk (0xff); the
    // block format starts with the uncompressed length as a varint.
    if body.first() == Some(&0xff) {
        violations.push("body uses the snappy framed format, not the block format".into());
    }
    let decoded = match snap::raw::Decoder::new().decompress_vec(body) {
        Ok(d) => d,
        Err(e) => {
            violations.push(format!("body is not snappy block format: {e}"));
            return WriteRequest::default();
        }
    };
    let request = if v2 {
        from_v2(&decoded, violations)
    } else {
        WriteRequest::decode(decoded.as_slice())
    };
    request.unwrap_or_else(|e| {
        violations.push(format!("body is not a WriteRequest: {e}"));
        WriteRequest::default()
    })
}

fn check_series(ts: &TimeSeries, violations: &mut Vec<String>) {
    let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
    if !names.contains(&"__name__") {
        violations.push(format!("series without __name__: {names:?}"));
    }
    if names.windows(2).any(|w| w[0] >= w[1]) {
        violations.push(format!(
            "labels not sorted by name or not unique: {names:?}"
        ));
    }
    if let Some(l) = ts
        .labels
        .iter()
        .find(|l| l.value.is_empty() || l.name.is_empty())
    {
        violations.push(format!(
            "empty label name or value: {:?} in {names:?}",
            l.name
        ));
    }
    if ts.samples.len() != 1 {
        violations.push(format!(
            "series with {} samples: {names:?}",
            ts.samples.len()
        ));
    }
}

/// Decodes a 2.0 request into the 1.0 shape, checking the symbols table.
fn from_v2(body: &[u8], violations: &mut Vec<String>) -> Result<WriteRequest, prost::DecodeError> {
    let request = proto_v2::Request::decode(body)?;
    if request.symbols.first().map(String::as_str) != Some("") {
        violations.push("2.0 symbols table does not start with \"\"".into());
    }
    let mut seen = HashSet::new();
    if let Some(dup) = request.symbols.iter().find(|s| !seen.insert(*s)) {
        violations.push(format!("2.0 symbol {dup:?} appears twice"));
    }
    let symbol = |i: u32| {
        request
            .symbols
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("<bad ref {i}>"))
    };
    let timeseries = request
        .timeseries
        .iter()
        .map(|ts| {
            if ts.labels_refs.len() % 2 != 0 {
                violations.push("2.0 labels_refs of odd length".into());
            }
            if ts.metadata.as_ref().is_none_or(|m| m.r#type == 0) {
                violations.push("2.0 series without a metric type".into());
            }
            TimeSeries {
                labels: ts
                    .labels_refs
                    .chunks(2)
                    .map(|p| Label {
                        name: symbol(p[0]),
                        value: symbol(*p.get(1).unwrap_or(&0)),
                    })
                    .collect(),
                samples: ts
                    .samples
                    .iter()
                    .map(|s| Sample {
                        value: s.value,
                        timestamp: s.timestamp,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(WriteRequest {
        timeseries,
        metadata: vec![],
    })
}
