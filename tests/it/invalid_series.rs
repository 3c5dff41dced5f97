//! How the receivers users run answer a batch holding one invalid series,
//! observed against the real ones (README, "Mimir and Grafana Cloud"):
//! what they store of the rest, and what they say.

use crate::support;

use std::time::Duration;

use container_image_pusher::encode::compress;
use container_image_pusher::encode::remote_write_v1::proto::{
    Label, Sample, TimeSeries, WriteRequest,
};
use container_image_pusher::encode::remote_write_v2::proto as proto_v2;
use prost::Message;
use support::peers::peer;
use support::{Prometheus, QueryApi, VictoriaMetrics};

fn series(name: &str, labels: &[(&str, &str)], timestamp: i64) -> TimeSeries {
    let mut all = vec![Label {
        name: "__name__".into(),
        value: name.into(),
    }];
    all.extend(labels.iter().map(|(n, v)| Label {
        name: (*n).into(),
        value: (*v).into(),
    }));
    TimeSeries {
        labels: all,
        samples: vec![Sample {
            value: 1.0,
            timestamp,
        }],
    }
}

/// Two valid series around one whose label name repeats.
fn batch(now: i64) -> Vec<TimeSeries> {
    vec![
        series("probe_valid_a", &[("job", "j")], now),
        series("probe_invalid", &[("job", "j"), ("job", "k")], now),
        series("probe_valid_b", &[("job", "j")], now),
    ]
}

fn v1_body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    compress(
        &WriteRequest {
            timeseries,
            metadata: vec![],
        }
        .encode_to_vec(),
    )
    .unwrap()
}

fn v2_body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut refs = |s: &str| {
        let i = symbols.iter().position(|x| x == s).unwrap_or_else(|| {
            symbols.push(s.to_owned());
            symbols.len() - 1
        });
        i as u32
    };
    let timeseries: Vec<proto_v2::TimeSeries> = timeseries
        .iter()
        .map(|ts| proto_v2::TimeSeries {
            labels_refs: ts
                .labels
                .iter()
                .flat_map(|l| [refs(&l.name), refs(&l.value)])
                .collect(),
            samples: vec![proto_v2::Sample {
                value: 1.0,
                timestamp: ts.samples[0].timestamp,
            }],
            metadata: Some(proto_v2::Metadata {
                r#type: 2,
                help_ref: 0,
                unit_ref: 0,
            }),
        })
        .collect();
    compress(
        &proto_v2::Request {
            symbols,
            timeseries,
        }
        .encode_to_vec(),
    )
    .unwrap()
}

/// Posts a body; the status, the written count and the text.
async fn post(url: &str, body: Vec<u8>, v2: bool) -> (u16, Option<String>, String) {
    let content_type = if v2 {
        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
    } else {
        "application/x-protobuf"
    };
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header(
            "X-Prometheus-Remote-Write-Version",
            if v2 { "2.0.0" } else { "0.1.0" },
        )
        .body(body)
        .send()
        .await
        .expect("the receiver answers");
    let status = response.status().as_u16();
    let written = response
        .headers()
        .get("x-prometheus-remote-write-samples-written")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, written, response.text().await.unwrap_or_default())
}

async fn stored(store: &QueryApi) -> Vec<String> {
    let mut names: Vec<String> = store
        .query("{__name__=~\"probe_.*\"}")
        .await
        .into_iter()
        .map(|s| s.labels["__name__"].clone())
        .collect();
    names.sort();
    names
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Prometheus 3 skips an invalid series of a 1.0 request and answers 204;
/// it answers a 2.0 request 400 with the count of what it wrote, the rest
/// stored: a partial success the pusher reads from the count. An older
/// sample in a 1.0 request is answered 400 and nothing of the request is
/// stored; in a 2.0 request, the rest is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_3_stores_the_valid_rest_and_says_so_under_2_0() {
    let binary = peer("prometheus");
    let (v1, v2) = tokio::join!(
        Prometheus::start_binary(&binary, &[]),
        Prometheus::start_binary(&binary, &[])
    );
    let (status, written, _) = post(&v1.write_url(), v1_body(batch(now_ms())), false).await;
    assert_eq!((status, written), (204, None));
    assert_eq!(stored(&v1).await, ["probe_valid_a", "probe_valid_b"]);
    let (status, written, text) = post(&v2.write_url(), v2_body(batch(now_ms())), true).await;
    assert_eq!((status, written.as_deref()), (400, Some("2")), "{text}");
    assert!(text.contains("invalid labels"), "{text}");
    assert_eq!(stored(&v2).await, ["probe_valid_a", "probe_valid_b"]);

    let older = |now| {
        vec![
            series("probe_valid_a", &[("job", "j")], now - 60_000),
            series("probe_new", &[("job", "j")], now),
        ]
    };
    let (status, _, text) = post(&v1.write_url(), v1_body(older(now_ms())), false).await;
    assert_eq!(status, 400);
    assert!(text.contains("out of order sample"), "{text}");
    assert_eq!(
        stored(&v1).await,
        ["probe_valid_a", "probe_valid_b"],
        "all or nothing"
    );
    let (status, written, _) = post(&v2.write_url(), v2_body(older(now_ms())), true).await;
    assert_eq!((status, written.as_deref()), (400, Some("1")));
    assert_eq!(
        stored(&v2).await,
        ["probe_new", "probe_valid_a", "probe_valid_b"]
    );
}

/// VictoriaMetrics answers 204 and stores the valid series; Debian's
/// Prometheus 2.42 answers 500 (which a sender retries) and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_stores_the_rest_and_prometheus_2_stores_nothing() {
    let (victoria, prometheus2) = tokio::join!(VictoriaMetrics::start(), Prometheus::start());
    let (status, _, _) = post(&victoria.write_url(), v1_body(batch(now_ms())), false).await;
    assert_eq!(status, 204);
    victoria.force_flush().await;
    let valid = "{__name__=~\"probe_valid_.*\"}";
    victoria
        .query_until(valid, |s| s.len() == 2, Duration::from_secs(20))
        .await;
    let (status, _, text) = post(&prometheus2.write_url(), v1_body(batch(now_ms())), false).await;
    assert_eq!(status, 500, "{text}");
    assert!(stored(&prometheus2).await.is_empty());
}
