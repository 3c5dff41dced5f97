//! Test support shared by the integration tests: an emulated Kubernetes API
//! server, and real Debian `docker-registry` and `prometheus` daemons started
//! per test on free 127.0.0.1 ports.
//!
//! Include it from a test crate with `mod support;`. Each test uses a subset,
//! hence `dead_code` and `unused_imports` (for the re-exports) are allowed.
#![allow(dead_code, unused_imports)]

pub mod kube_api;
pub mod process;
pub mod prometheus;
pub mod registry;

pub use kube_api::{ExpiredWatch, KubeApi, RecordedRequest};
pub use process::{free_port, require_binary, wait_for_http, ChildGuard};
pub use prometheus::{Prometheus, Sample};
pub use registry::{
    push_attestation, push_image, push_index, Descriptor, Format, ImageSpec, IndexEntry,
    PushedImage, Registry,
};
