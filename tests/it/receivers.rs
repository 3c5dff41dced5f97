//! Remote write end to end against the receivers users run today, from
//! Debian sid (`support::peers`): Prometheus 3, whose receiver speaks remote
//! write 2.0 as well as 1.0, and VictoriaMetrics, a second, independent
//! implementation of 1.0. Each gets the whole end-to-end scenario
//! (`support::fixtures`) and must answer the same PromQL with the same
//! series. (A 1.x-only receiver, Debian stable's Prometheus 2.42, making the
//! pusher fall back from 2.0 is `remote_write_2_to_prometheus_2_42_falls_back_and_lands`
//! in tests/it/remote_write.rs.)

use crate::support;

use support::fixtures::Scenario;
use support::peers::peer;
use support::{Prometheus, VictoriaMetrics};

/// What the pusher logs when it switches an endpoint from 2.0 to 1.0.
const FALLBACK: &str = "using 1.0 from now on";

/// A Prometheus 3 that accepts only 2.0 requests (1.0 ones are answered 415)
/// gets the whole inventory through the 2.0 path; so do two with the default
/// settings (both protocols), one sent 2.0 and one 1.0. One pusher run
/// pushes to all three, each endpoint with its own protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_3_receives_the_inventory_over_remote_write_2_0_and_1_0() {
    let prometheus3 = peer("prometheus");
    let (scenario, v2_only, default_v2, default_v1) = tokio::join!(
        Scenario::start(),
        Prometheus::start_binary(
            &prometheus3,
            &["--web.remote-write-receiver.accepted-protobuf-messages=io.prometheus.write.v2.Request"],
        ),
        Prometheus::start_binary(&prometheus3, &[]),
        Prometheus::start_binary(&prometheus3, &[]),
    );
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.yaml");
    std::fs::write(
        &endpoints,
        format!(
            "endpoints:\n  - url: {}\n    protocol: \"2.0\"\n  - url: {}\n    protocol: \"2.0\"\n  - url: {}\n    protocol: \"1.0\"\n",
            v2_only.write_url(),
            default_v2.write_url(),
            default_v1.write_url()
        ),
    )
    .unwrap();
    let log = scenario
        .push_once(&["--remote-write-config", endpoints.to_str().unwrap()])
        .await;
    // Prometheus 3 reports what it wrote, so 2.0 was kept (and the 2.0-only
    // receiver would have refused a fallback with 415).
    assert!(!log.contains(FALLBACK), "{log}");
    for (what, store) in [
        ("2.0-only Prometheus 3, sent 2.0", &v2_only),
        ("default Prometheus 3, sent 2.0", &default_v2),
        ("default Prometheus 3, sent 1.0", &default_v1),
    ] {
        eprintln!("checking the {what}");
        scenario.assert_stored(store).await;
    }
}

/// VictoriaMetrics stores the whole inventory sent with remote write 1.0,
/// and answers the same PromQL (MetricsQL reads it) with the same series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_receives_the_inventory_over_remote_write_1_0() {
    let (scenario, victoria) = tokio::join!(Scenario::start(), VictoriaMetrics::start());
    scenario
        .push_once(&["--remote-write-url", &victoria.write_url()])
        .await;
    victoria.force_flush().await;
    scenario.assert_stored(&victoria).await;
}
