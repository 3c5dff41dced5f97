//! Every sink carries exactly the same label sets for one snapshot: `/metrics`
//! (served over a real socket), `--dry-run` (the text `app` prints: the
//! exposition without omitting anything), remote write 1.0 and 2.0, and
//! OTLP. Each output is decoded here on its own — protobuf by prost, text
//! by a parser of the exposition format — so an encoder that drops, adds,
//! renames or mis-escapes a label, or a sink that reads another's bytes
//! wrong, shows up as a difference.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use container_image_pusher::discovery::{Container, ImageId, Kind, Workload};
use container_image_pusher::encode::exposition;
use container_image_pusher::encode::otlp::{self, SERVICE_NAME};
use container_image_pusher::encode::remote_write_v1::{encode, proto};
use container_image_pusher::encode::remote_write_v2::{encode as encode_v2, proto as proto_v2};
use container_image_pusher::image_facts::{
    ErrorClass, ImageMetadata, Pairs, Resolution, Resolutions, ResolveError,
};
use container_image_pusher::inventory::Inventory;
use container_image_pusher::pipeline::Metrics;
use container_image_pusher::series::{CommonLabels, Family, Snapshot, JOB_LABEL, NAME_LABEL};
use container_image_pusher::server::{serve, Shared};
use container_image_pusher::telemetry::Telemetry;
use prost::Message;

/// One series' labels, `__name__` included.
type Labels = BTreeMap<String, String>;

const CLUSTER: (&str, &str) = ("cluster", "prod \"eu\"");

/// A snapshot with every family: two workloads, a resolved image with
/// labels and annotations (one empty, one with characters text must
/// escape), and an image that fails to resolve.
fn snapshot() -> Snapshot {
    let container = |name: &str, image: &str, i: usize| Container {
        name: name.into(),
        image: image.into(),
        jsonpath: format!("{{.spec.containers[{i}]}}").into(),
        image_id: None,
        versions: None,
    };
    // The Pod runs what app:1 named before it moved: drift.
    let mut drifted = container("c", "app:1", 0);
    drifted.image_id = ImageId::parse(&format!("app@sha256:{}", "b".repeat(64)), true);
    let workloads = [
        Workload {
            kind: Kind::Deployment,
            namespace: "shop".into(),
            name: "api".into(),
            containers: vec![
                container("api", "app:1", 0),
                container("sidecar", "gone:1", 1),
            ],
            pull: Default::default(),
            metadata_labels: Vec::new(),
        },
        Workload {
            kind: Kind::Pod,
            namespace: "shop".into(),
            name: "debug \"pod\"".into(),
            containers: vec![drifted],
            pull: Default::default(),
            metadata_labels: vec![("label_team".into(), "payments".into())],
        },
    ]
    .map(Arc::new);
    let image = ImageMetadata {
        digest: "sha256:aa".into(),
        size: 123_456_789,
        created: Some(1_700_000_000),
        labels: Pairs::from(BTreeMap::from([
            (
                "org.opencontainers.image.source".into(),
                "https://example.com/app".into(),
            ),
            ("multi.line".into(), "one\ntwo \\ three".into()),
            ("empty".into(), String::new()),
            ("unicode".into(), "ünïcødé ✓".into()),
        ])),
        annotations: Pairs::from(BTreeMap::from([(
            "org.opencontainers.image.base.name".into(),
            "cgr.dev/chainguard/static:latest".into(),
        )])),
        dropped: Default::default(),
        supply_chain: supply_chain(),
        platform_digests: Vec::new(),
        pending: false,
    };
    let gone = ResolveError {
        class: ErrorClass::NotFound,
        message: "manifest unknown".into(),
    };
    let resolutions: HashMap<String, Resolution> = HashMap::from([
        ("app:1".to_owned(), Ok(Arc::new(image))),
        ("gone:1".to_owned(), Err(gone)),
    ]);
    let common = CommonLabels::new(
        "container-image-pusher",
        &[(CLUSTER.0.into(), CLUSTER.1.into())],
    );
    let mut resolutions = Resolutions::from(resolutions);
    // Version answers: the image's, and an annotated container's own.
    let answer = |latest: &str, is_latest| {
        Arc::new(container_image_pusher::image_facts::VersionInfo {
            freshness: container_image_pusher::versions::Freshness {
                current: "1".into(),
                latest: latest.into(),
                is_latest,
                behind: container_image_pusher::versions::Behind {
                    major: u64::from(!is_latest),
                    minor: 0,
                    patch: 0,
                },
            },
            latest_created: Some(1_700_000_000),
        })
    };
    resolutions.insert_versions(Default::default(), "app:1".into(), answer("2", false));
    resolutions.set_container_versions(vec![(
        ("shop".into(), "api".into(), "api".into()),
        "app:1".into(),
        answer("1", true),
    )]);
    let mut inventory = Inventory::new(
        common,
        Metrics::new(&prometheus::Registry::new()).labels_dropped,
    )
    .with_workload_labels(true);
    inventory.build(&workloads, &resolutions, 1_700_000_000_000)
}

fn common_names() -> Vec<String> {
    vec![JOB_LABEL.to_owned(), CLUSTER.0.to_owned()]
}

fn from_v1(body: &[u8]) -> BTreeSet<Labels> {
    proto::WriteRequest::decode(body)
        .expect("remote write 1.0 body decodes")
        .timeseries
        .into_iter()
        .map(|ts| ts.labels.into_iter().map(|l| (l.name, l.value)).collect())
        .collect()
}

fn from_v2(body: &[u8]) -> BTreeSet<Labels> {
    let request = proto_v2::Request::decode(body).expect("remote write 2.0 body decodes");
    let symbol = |i: u32| request.symbols[i as usize].clone();
    request
        .timeseries
        .iter()
        .map(|ts| {
            ts.labels_refs
                .chunks(2)
                .map(|pair| (symbol(pair[0]), symbol(pair[1])))
                .collect()
        })
        .collect()
}

/// Resource attributes and point attributes together, `service.name` back
/// to `job` and the metric's name as `__name__`: how a Prometheus-compatible
/// backend reads an OTLP point.
fn from_otlp(body: &[u8]) -> BTreeSet<Labels> {
    use otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
    use otlp::proto::common::v1::{any_value, KeyValue};
    use otlp::proto::metrics::v1::metric;
    let pairs = |attributes: &[KeyValue]| -> Vec<(String, String)> {
        attributes
            .iter()
            .map(|kv| {
                let Some(any_value::Value::StringValue(value)) =
                    kv.value.as_ref().and_then(|v| v.value.clone())
                else {
                    panic!("{kv:?} is not a string");
                };
                let key = if kv.key == SERVICE_NAME {
                    JOB_LABEL.to_owned()
                } else {
                    kv.key.clone()
                };
                (key, value)
            })
            .collect()
    };
    let request = ExportMetricsServiceRequest::decode(body).expect("OTLP body decodes");
    let mut sets = BTreeSet::new();
    for rm in &request.resource_metrics {
        let resource = pairs(&rm.resource.as_ref().expect("a resource").attributes);
        for metric in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
            let Some(metric::Data::Gauge(gauge)) = &metric.data else {
                panic!("{} is not a gauge", metric.name);
            };
            for point in &gauge.data_points {
                let mut labels: Labels = resource.iter().cloned().collect();
                labels.extend(pairs(&point.attributes));
                labels.insert(NAME_LABEL.to_owned(), metric.name.clone());
                sets.insert(labels);
            }
        }
    }
    sets
}

/// The series of the text format (the pusher's own metrics left out),
/// with `omitted` added back: what `/metrics` leaves out on purpose.
fn from_text(text: &str, omitted: &[(&str, &str)]) -> BTreeSet<Labels> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("container_image_pusher_"))
        .map(|line| {
            let mut labels = parse_series(line);
            for (name, value) in omitted {
                labels.insert(name.to_string(), value.to_string());
            }
            labels
        })
        .collect()
}

/// `name{label="value",...} value`, unescaping label values.
fn parse_series(line: &str) -> Labels {
    let (name, mut rest) = line
        .split_once('{')
        .unwrap_or_else(|| panic!("no labels: {line}"));
    let mut labels = Labels::from([(NAME_LABEL.to_owned(), name.to_owned())]);
    loop {
        let (label, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated value in {line}"),
            }
        };
        assert!(
            labels.insert(label.to_owned(), value).is_none(),
            "{label} twice in {line}"
        );
        rest = &after[end + 1..];
        match rest.as_bytes().first() {
            Some(b',') => rest = &rest[1..],
            Some(b'}') => break,
            _ => panic!("{line}"),
        }
    }
    labels
}

/// `/metrics` of a real server holding the snapshot, as a scraper gets it.
async fn scrape(snapshot: Snapshot) -> String {
    container_image_pusher::install_crypto_provider();
    let shared = Arc::new(Shared::new(Arc::new(Telemetry::new()), common_names()));
    shared.publish(Arc::new(snapshot));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let server = serve(address, shared).await.expect("the server starts");
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    server.abort();
    text
}

#[tokio::test]
async fn every_sink_carries_the_same_label_sets() {
    let snapshot = snapshot();
    let families: BTreeSet<Family> = snapshot.series.iter().map(|s| s.family()).collect();
    let inventory = Family::ALL.iter().filter(|f| !f.is_self_metric());
    assert_eq!(families.len(), inventory.count(), "every family is there");
    let timestamp = snapshot.timestamp_ms;

    let v1 = from_v1(&encode(&snapshot.series, timestamp));
    assert_eq!(v1.len(), snapshot.series.len(), "no two series alike");
    for labels in &v1 {
        assert!(labels.values().all(|v| !v.is_empty()), "{labels:?}");
        assert_eq!(labels[JOB_LABEL], "container-image-pusher");
        assert_eq!(labels[CLUSTER.0], CLUSTER.1);
    }
    assert!(
        v1.iter()
            .any(|l| l.get("value").map(String::as_str) == Some("one\ntwo \\ three")),
        "{v1:?}"
    );
    assert!(
        v1.iter()
            .any(|l| l.get("key").map(String::as_str) == Some("empty") && !l.contains_key("value")),
        "an empty value is no label: {v1:?}"
    );

    let v2 = from_v2(&encode_v2(&snapshot.series, timestamp));
    assert_eq!(v2, v1, "remote write 2.0");

    let otlp = from_otlp(&otlp::encode(&snapshot.series, timestamp, &common_names()));
    assert_eq!(otlp, v1, "OTLP");

    // What app prints for --dry-run: every label, nothing omitted.
    let dry_run = from_text(&exposition::render(&snapshot, &[]), &[]);
    assert_eq!(dry_run, v1, "--dry-run");

    let metrics = from_text(
        &scrape(snapshot).await,
        &[(JOB_LABEL, "container-image-pusher"), CLUSTER],
    );
    assert_eq!(
        metrics, v1,
        "/metrics, with job and the external labels it omits"
    );
}

/// Facts of every supply-chain family: a signature, an outdated base.
fn supply_chain() -> container_image_pusher::image_facts::supply_chain::SupplyChain {
    use container_image_pusher::image_facts::supply_chain::BaseImage;
    use container_image_pusher::image_facts::supply_chain::{ReferrerKind, Referrers};
    let signature = (
        ReferrerKind::Signature,
        "application/vnd.dev.sigstore.bundle.v0.3+json".to_owned(),
    );
    container_image_pusher::image_facts::supply_chain::SupplyChain {
        referrers: Some(Arc::new(Referrers {
            counts: BTreeMap::from([(signature, 1)]),
        })),
        base: Some(BaseImage {
            name: "cgr.dev/chainguard/static:latest".into(),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            outdated: Some(true),
            current_created: Some(1_700_000_000),
        }),
        verification: Some(Arc::new(vec![(
            "ours".to_owned(),
            Err(container_image_pusher::verify::verdict::Reason::WrongKey),
        )])),
        ..Default::default()
    }
}
