//! The integration tests' support the harness runs on: the same Kubernetes
//! API test server, registry, Prometheus and peers, from `tests/it/support/`
//! (compiled into the harness, which is not a test crate).

#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/process.rs"]
pub(crate) mod process;

#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/kube_api.rs"]
pub(crate) mod kube_api;

#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/registry.rs"]
pub(crate) mod registry;

#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/prometheus.rs"]
pub(crate) mod receiver;

#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/peers.rs"]
pub(crate) mod peers;

#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/wait.rs"]
pub(crate) mod wait;
