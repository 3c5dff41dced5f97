//! The OTLP sink: end to end against a real OTLP receiver (VictoriaMetrics,
//! from Debian sid) with the whole end-to-end scenario, which must answer
//! the same PromQL with the same series as the remote-write path; and every
//! answer a receiver can give, on the project's own strict OTLP receiver.
//! (Debian builds Prometheus 3 without its OTLP receiver, so Prometheus'
//! mapping is documented in the README but not tested here.)

use crate::support;

use std::time::Duration;

use support::fixtures::write_pods;
use support::fixtures::Scenario;
use support::pusher::{run_once, Pusher, RunOutput};
use support::receiver::{Receiver, Reply};
use support::{wait_until_async, VictoriaMetrics};

/// VictoriaMetrics' relabeling that turns `service.name` back into `job`,
/// as the README shows it.
const VM_RELABEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/examples/victoria-metrics-otlp/relabel.yaml"
);

/// VictoriaMetrics stores every series of the scenario sent over OTLP with
/// the remote-write path's metric names and series labels, and answers the
/// same PromQL. What it stores for the resource: `cluster` as a label, and
/// `service.name` under that name (not as `job`); with the shipped
/// relabeling it is `job` again and the series are exactly those of remote
/// write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_receives_the_inventory_over_otlp() {
    let relabel = format!("-relabelConfig={VM_RELABEL}");
    let relabel = [relabel.as_str()];
    let (scenario, plain, relabelled) = tokio::join!(
        Scenario::start(),
        VictoriaMetrics::start(),
        VictoriaMetrics::start_with(&relabel),
    );
    scenario
        .push_once(&[
            "--otlp-url",
            &plain.otlp_url(),
            "--otlp-url",
            &relabelled.otlp_url(),
        ])
        .await;
    for store in [&plain, &relabelled] {
        store.force_flush().await;
    }
    eprintln!("checking VictoriaMetrics as it is");
    scenario
        .assert_stored_with_job_label(&plain, "service.name")
        .await;
    eprintln!("checking VictoriaMetrics with the shipped relabeling");
    scenario.assert_stored(&relabelled).await;
}

/// Polls `promql` on VictoriaMetrics (flushing first) until `pred` holds.
async fn wait_for_vm(
    pusher: &Pusher,
    vm: &VictoriaMetrics,
    promql: &str,
    pred: impl Fn(usize) -> bool,
) {
    let mut n = 0;
    let matched = wait_until_async(Duration::from_secs(20), async || {
        vm.force_flush().await;
        n = vm.query(promql).await.len();
        pred(n)
    })
    .await;
    assert!(
        matched,
        "{promql} never matched, last {n} series\n{}",
        pusher.child.logs()
    );
}

/// A series that disappears from the inventory ends by the OTLP convention
/// — one more point, flagged no-recorded-value, without a value — which
/// VictoriaMetrics stores as a staleness marker. Partial successes are
/// counted, and logged once while they stay the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_series_are_flagged_and_partial_successes_counted() {
    let (vm, receiver) = tokio::join!(VictoriaMetrics::start(), Receiver::start_otlp());
    receiver.script([
        Reply::partial(1, "1 point rejected:\nlabel too long"),
        Reply::partial(1, "1 point rejected:\nlabel too long"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["keep", "remove"]);
    let pusher = Pusher::on_manifests(&manifests, "300ms")
        .args(&[
            "--otlp-url",
            &vm.otlp_url(),
            "--otlp-url",
            &receiver.url(),
            "--external-label",
            "cluster=test",
        ])
        .start()
        .await;
    wait_for_vm(&pusher, &vm, "container_image_container_info", |n| n == 2).await;
    write_pods(dir.path(), "pods.yaml", &["keep"]);
    wait_for_vm(
        &pusher,
        &vm,
        r#"container_image_container_info{name="remove"}"#,
        |n| n == 0,
    )
    .await;

    // VictoriaMetrics' raw data ends the series with a staleness marker
    // (exported as null), not just with the last sample.
    let export = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/export", vm.url()),
        [(
            "match[]",
            r#"container_image_container_info{name="remove"}"#,
        )],
    )
    .unwrap();
    let export = reqwest::get(export).await.unwrap().text().await.unwrap();
    let line: serde_json::Value = serde_json::from_str(export.lines().next().unwrap()).unwrap();
    let values = line["values"].as_array().unwrap();
    assert!(values.last().unwrap().is_null(), "{export}");
    assert!(values[0].as_f64() == Some(1.0), "{export}");

    // The strict receiver saw the same: the ended series' last point has no
    // value, after points with one; every request was valid.
    let points: Vec<_> = receiver
        .received()
        .iter()
        .flat_map(|r| r.points())
        .filter(|p| {
            p.labels.get("name").map(String::as_str) == Some("remove")
                && p.labels["__name__"] == "container_image_container_info"
        })
        .collect();
    assert_eq!(points.first().unwrap().value, Some(1.0), "{points:?}");
    assert_eq!(points.last().unwrap().value, None, "{points:?}");
    assert_eq!(points.last().unwrap().labels["cluster"], "test");
    assert_eq!(
        points.last().unwrap().labels["job"],
        "container-image-pusher"
    );
    receiver.assert_valid();

    let metrics = pusher.metrics().await;
    let rejected = format!(
        "container_image_pusher_otlp_rejected_data_points_total{{endpoint=\"{}\"}} 2",
        receiver.url()
    );
    assert!(metrics.contains(&rejected), "{rejected} not in\n{metrics}");
    let logs = pusher.child.logs();
    assert_eq!(
        logs.matches("accepted the request only in part").count(),
        1,
        "the same partial success twice is logged once:\n{logs}"
    );
    assert!(
        logs.contains("1 point rejected: label too long"),
        "on one line:\n{logs}"
    );
    assert!(logs.contains("accepts every data point again"), "{logs}");
}

/// The same snapshot pushed over remote write and over OTLP carries the
/// same series: names, labels (job from `service.name`) and values.
#[tokio::test]
async fn otlp_carries_the_same_series_as_remote_write() {
    let (otlp, remote_write) = tokio::join!(Receiver::start_otlp(), Receiver::start());
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["a", "b", "c"]);
    run_once(
        &[
            "--once",
            "--manifests",
            manifests.to_str().unwrap(),
            "--otlp-url",
            &otlp.url(),
            "--remote-write-url",
            &remote_write.url(),
            "--external-label",
            "cluster=prod",
            "--external-label",
            "region=eu",
        ],
        None,
    )
    .await
    .assert_success();
    otlp.assert_valid();
    remote_write.assert_valid();
    let mut want: Vec<(Vec<(String, String)>, f64)> = remote_write
        .received()
        .iter()
        .flat_map(|r| r.series())
        .collect();
    let mut got: Vec<(Vec<(String, String)>, f64)> = otlp
        .received()
        .iter()
        .flat_map(|r| r.points())
        .map(|p| (p.labels.into_iter().collect(), p.value.unwrap()))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(want.len(), 6, "3 info and 3 resolve-error series");
    assert_eq!(got, want);
}

/// Every answer an OTLP receiver can give, per the OTLP/HTTP spec: 429,
/// 502, 503 and 504 are retried (429 after its Retry-After), every other
/// 4xx and 5xx — 500 included, unlike remote write — is final, and the
/// `google.rpc.Status` message of an error is what the log says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_matrix_on_the_strict_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_pods(dir.path(), "pods.yaml", &["a"]);
    let manifests = manifests.to_str().unwrap();
    // (script, requests expected, success expected, log must contain)
    let cases: Vec<(Vec<Reply>, usize, bool, &str)> = vec![
        (vec![Reply::ok()], 1, true, "pushed"),
        (
            vec![Reply::error(400, "metric name invalid")],
            1,
            false,
            "metric name invalid",
        ),
        (vec![Reply::error(401, "no token")], 1, false, "401"),
        (
            vec![Reply::error(404, "no such path")],
            1,
            false,
            "no such path",
        ),
        (vec![Reply::error(413, "too large")], 1, false, "too large"),
        (vec![Reply::error(500, "internal")], 1, false, "internal"),
        (
            vec![Reply::error(502, "gateway"), Reply::ok()],
            2,
            true,
            "pushed",
        ),
        (
            vec![Reply::error(503, "unavailable"), Reply::ok()],
            2,
            true,
            "pushed",
        ),
        (
            vec![Reply::error(504, "timeout"), Reply::ok()],
            2,
            true,
            "pushed",
        ),
        (
            vec![
                Reply::error(429, "slow down").header("Retry-After", "1"),
                Reply::ok(),
            ],
            2,
            true,
            "pushed",
        ),
        (
            vec![Reply::partial(1, "one point dropped")],
            1,
            true,
            "one point dropped",
        ),
        // A receiver cannot reject more than the 2 points it was sent.
        (
            vec![Reply::partial(i64::MAX, "everything")],
            1,
            true,
            "rejected=2",
        ),
    ];
    let runs = cases
        .into_iter()
        .map(|(script, requests, success, log)| async move {
            let receiver = Receiver::start_otlp().await;
            let first = script[0].status;
            receiver.script(script);
            let RunOutput {
                success: ok,
                stderr,
                ..
            } = run_once(
                &[
                    "--once",
                    "--manifests",
                    manifests,
                    "--otlp-url",
                    &receiver.url(),
                ],
                None,
            )
            .await;
            let received = receiver.received();
            assert_eq!(ok, success, "HTTP {first}:\n{stderr}");
            assert_eq!(received.len(), requests, "HTTP {first}:\n{stderr}");
            let plain = without_colours(&stderr);
            assert!(plain.contains(log), "HTTP {first}: no {log:?} in\n{plain}");
            if first == 429 {
                let waited = received[1].at - received[0].at;
                assert!(
                    waited >= Duration::from_millis(900),
                    "Retry-After: 1 honoured, waited {waited:?}"
                );
            }
            if requests == 2 {
                assert_eq!(
                    received[0].request, received[1].request,
                    "the same batch again"
                );
            }
            receiver.assert_valid();
        });
    futures::future::join_all(runs).await;
}

/// The log without its terminal colour codes, so fields read `name=value`.
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
