//! Measurement (not a check): how long after a killed API server comes back
//! the pusher's /metrics shows a Deployment created right then. Interval 5 s,
//! a 30 s outage (long enough for any backoff to reach its ceiling), five runs.
//! Run: cargo test --test restart_measure -- --ignored --nocapture

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use support::pusher::Pusher;
use support::KubeApi;

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"namespace": "shop", "name": name},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "app", "image": format!("127.0.0.1:1/{name}:1")}]}}}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: several minutes"]
async fn restart_to_current() {
    container_image_pusher::install_crypto_provider();
    let mut took = Vec::new();
    for run in 0..5 {
        let api = KubeApi::start().await;
        api.apply(&deployment("before"));
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.write_kubeconfig(dir.path());
        let pusher = Pusher::start(
            &["--interval", "5s"],
            &[
                ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                ("RUST_LOG", "warn"),
            ],
        )
        .await;
        while !pusher.metrics().await.contains("name=\"before\"") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        api.stop();
        tokio::time::sleep(Duration::from_secs(30)).await;
        api.start_again().await;
        let back = Instant::now();
        api.apply(&deployment(&format!("after{run}")));
        let needle = format!("name=\"after{run}\"");
        while !pusher.metrics().await.contains(&needle) {
            assert!(back.elapsed() < Duration::from_secs(300), "never current");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "run {run}: current {:?} after the API server came back",
            back.elapsed()
        );
        took.push(back.elapsed());
    }
    took.sort();
    eprintln!("median of 5: {:?} (all: {took:?})", took[2]);
}
