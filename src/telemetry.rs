//! The service's own health metrics (`container_image_pusher_*`), served on
//! `/metrics` next to the inventory. Never labelled with anything secret:
//! endpoints appear without credentials or query strings.
//!
//! Each component defines and registers its own metrics beside its code
//! (`registry::Metrics`, `discovery::Metrics`, `pipeline::Metrics`,
//! `remote_write::Metrics`, `leader::Metrics`, `server::Metrics`) into the
//! [`Registry`] held here; this module holds the registry, what `/readyz`
//! answers, the build info, and the helpers that name and register a metric.

use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{IntGaugeVec, Opts, Registry};

use crate::readiness::Readiness;

/// The version `--version` prints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from (build.rs), `unknown` when
/// it was built outside a git checkout.
pub const REVISION: &str = env!("CONTAINER_IMAGE_PUSHER_REVISION");

/// Where the components register their metrics, and their readiness.
pub struct Telemetry {
    pub registry: Registry,
    /// What `/readyz` answers: every part of the service records its failing
    /// conditions here.
    pub readiness: Arc<Readiness>,
}

impl Telemetry {
    /// A registry holding the build info, and a replica not ready yet.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "build_info",
                    "1, labelled with the version (as --version prints it) and the git revision it was built from.",
                ),
                &["version", "revision"],
            ),
        );
        build_info.with_label_values(&[VERSION, REVISION]).set(1);
        Telemetry {
            registry,
            readiness: Arc::default(),
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// A metric's name (`container_image_pusher_` and `name`) and help text.
pub fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("container_image_pusher_{name}"), help)
}

/// `metric`, registered in `registry`. A definition is fixed in the code and
/// each component registers once, so a failure is a bug.
pub fn register<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}
