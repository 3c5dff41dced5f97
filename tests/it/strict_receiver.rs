//! The strict receiver (`support::receiver`) is itself checked: it keeps
//! each request's bytes as they came, and it catches what lenient
//! receivers let through, so the tests that find it without violations
//! prove something.

use crate::support;

use std::io::Write as _;

use container_image_pusher::encode::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use container_image_pusher::encode::remote_write_v1::proto::{
    Label, Sample, TimeSeries, WriteRequest,
};
use prost::Message;
use support::receiver::{Protocol, Receiver};

/// POSTs `body` with the headers the pusher sends for `content_type`.
async fn post(url: &str, content_type: &str, encoding: &str, body: Vec<u8>) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .header("content-encoding", encoding)
        .header("x-prometheus-remote-write-version", "0.1.0")
        .header("user-agent", "container-image-pusher/test")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
}

fn series(labels: &[(&str, &str)]) -> WriteRequest {
    WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(name, value)| Label {
                    name: (*name).into(),
                    value: (*value).into(),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1,
            }],
        }],
        metadata: vec![],
    }
}

fn violations<P: Protocol>(receiver: &Receiver<P>) -> Vec<String> {
    receiver
        .received()
        .into_iter()
        .flat_map(|r| r.violations)
        .collect()
}

#[tokio::test]
async fn a_valid_remote_write_request_is_kept_byte_for_byte_without_violations() {
    let receiver = Receiver::start().await;
    let body = snap::raw::Encoder::new()
        .compress_vec(&series(&[("__name__", "up"), ("job", "a")]).encode_to_vec())
        .unwrap();
    post(
        &receiver.url(),
        "application/x-protobuf",
        "snappy",
        body.clone(),
    )
    .await;
    let received = receiver.received();
    assert_eq!(received[0].body, body);
    assert_eq!(received[0].series()[0].0[1], ("job".into(), "a".into()));
    receiver.assert_valid();
}

#[tokio::test]
async fn the_receiver_catches_unsorted_labels_and_the_framed_snappy_format() {
    let receiver = Receiver::start().await;
    let unsorted = series(&[("__name__", "up"), ("z", "1"), ("a", "2")]).encode_to_vec();
    let block = snap::raw::Encoder::new().compress_vec(&unsorted).unwrap();
    post(&receiver.url(), "application/x-protobuf", "snappy", block).await;
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    framed
        .write_all(&series(&[("__name__", "up")]).encode_to_vec())
        .unwrap();
    let framed = framed.into_inner().unwrap();
    post(
        &receiver.url(),
        "application/x-protobuf",
        "snappy",
        framed.clone(),
    )
    .await;

    let found = violations(&receiver);
    assert!(
        found.iter().any(|v| v.contains("labels not sorted")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|v| v.contains("framed format")),
        "{found:?}"
    );
    assert_eq!(receiver.received()[1].body, framed);
}

#[tokio::test]
async fn the_otlp_receiver_catches_fields_the_message_does_not_know() {
    let receiver = Receiver::start_otlp().await;
    let mut message = ExportMetricsServiceRequest::default().encode_to_vec();
    // Field 15, varint 1: not a field of ExportMetricsServiceRequest.
    message.extend_from_slice(&[15 << 3, 1]);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&message).unwrap();
    let body = gzip.finish().unwrap();
    post(
        &receiver.url(),
        "application/x-protobuf",
        "gzip",
        body.clone(),
    )
    .await;

    let received = receiver.received();
    assert_eq!(received[0].body, body);
    let found = violations(&receiver);
    assert!(
        found.iter().any(|v| v.contains("unknown fields")),
        "{found:?}"
    );
    // The remote-write version header has no business in an OTLP request.
    assert!(
        found.iter().any(|v| v.contains("remote-write version")),
        "{found:?}"
    );
}
