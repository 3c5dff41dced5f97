//! Measurement (not a check): how long after a killed API server comes back
//! the pusher's /metrics shows a Deployment created right then. Interval 5 s,
//! a 30 s outage (long enough for any backoff to reach its ceiling), five runs.
//! Run: cargo test --test restart_measure -- --ignored --nocapture

use crate::support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use support::fixtures::{self, unreachable_image};
use support::pusher::Pusher;
use support::KubeApi;

/// A Deployment in `shop` running an image of its own name.
fn deployment(name: &str) -> Deployment {
    fixtures::deployment("shop", name, &unreachable_image(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: several minutes"]
async fn restart_to_current() {
    let mut took = Vec::new();
    for run in 0..5 {
        let api = KubeApi::start().await;
        api.apply(&deployment("before"));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.write_kubeconfig(dir.path());
        let pusher = Pusher::on_cluster(&kubeconfig, "5s")
            .env("RUST_LOG", "warn")
            .start()
            .await;
        pusher
            .metrics_when(Duration::from_secs(60), "before", |m| {
                m.contains("name=\"before\"")
            })
            .await;
        api.stop();
        // The outage being measured: its length is the input, not a wait.
        tokio::time::sleep(Duration::from_secs(30)).await;
        api.start_again().await;
        let back = Instant::now();
        api.apply(&deployment(&format!("after{run}")));
        let needle = format!("name=\"after{run}\"");
        pusher
            .metrics_when(Duration::from_secs(300), &needle, |m| m.contains(&needle))
            .await;
        eprintln!(
            "run {run}: current {:?} after the API server came back",
            back.elapsed()
        );
        took.push(back.elapsed());
    }
    took.sort();
    eprintln!("median of 5: {:?} (all: {took:?})", took[2]);
}
