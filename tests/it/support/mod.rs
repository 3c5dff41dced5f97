//! Test support shared by the integration tests: an emulated Kubernetes API
//! server, real Debian `docker-registry` and `prometheus` daemons started
//! per test on free 127.0.0.1 ports, or one Prometheus shared by the tests
//! that only push and query, each in a scope of its own (`shared`), newer
//! peers from Debian sid (Prometheus 3, VictoriaMetrics, promtool:
//! `peers`), one strict scripted receiver for remote write 1.0/2.0 and OTLP
//! (`receiver`), the workloads, images and end-to-end scenario tests build
//! from (`fixtures`), waiting on conditions (`wait`), what a registry was
//! asked (`registry_log`), one image under many tags (`tags`), and helpers
//! to run the pusher binary itself
//! (`pusher`; `launch` starts one with the options a test varies).
//!
//! Every server's `start` sets the process up as its tests need (rustls's
//! crypto provider for the reqwest and kube clients), so tests do not.

pub mod fixtures;
pub mod kube_api;
pub mod launch;
pub mod manifests;
pub mod mimir;
pub mod peers;
pub mod process;
pub mod prometheus;
pub mod pusher;
pub mod receiver;
pub mod referrers_api;
pub mod registry;
pub mod registry_log;
pub mod shared;
pub mod signing;
pub mod slow_registry;
pub mod tags;
pub mod tlog;
pub mod tls_front;
pub mod victoria_metrics;
pub mod wait;

pub use kube_api::KubeApi;
pub use process::{free_port, wait_for_http, ChildGuard};
pub use prometheus::{Prometheus, QueryApi};
pub use registry::{
    push_artifact, push_attestation, push_image, push_index, sha256_digest, Attachment, Format,
    ImageSpec, IndexEntry, Registry,
};
pub use shared::SharedPrometheus;
pub use victoria_metrics::VictoriaMetrics;
pub use wait::{holds_for, wait_for_async, wait_until, wait_until_async};

/// Logs of the code under test when it runs in the test's own process,
/// shown for failing tests (captured otherwise).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,container_image_pusher=debug",
        ))
        .with_test_writer()
        .try_init();
}
