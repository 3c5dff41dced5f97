//! Discovery's metrics: what the watch-fed inventory holds and hears, and
//! the kinds or documents that could not be read.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Registry};

use crate::telemetry::{opts, register};

/// What the sources (watched or listed cluster, manifest files, pull
/// secrets) count.
#[derive(Clone)]
pub struct Metrics {
    /// Objects held by the watch-fed inventory, by kind.
    pub watched_objects: IntGaugeVec,
    /// 1 while a kind's list or watch fails and its last known objects are
    /// served; 0 once a list of it completes.
    pub inventory_stale: IntGaugeVec,
    /// When a list or watch event of a kind last came from the API server.
    pub watch_last_heard: GaugeVec,
    /// Kinds or manifest documents that could not be read, by kind and reason.
    pub errors: IntCounterVec,
}

impl Metrics {
    /// Discovery's metrics, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let by_kind = &["kind"];
        Metrics {
            watched_objects: register(
                registry,
                IntGaugeVec::new(
                    opts(
                        "watched_objects",
                        "Objects held by the watch-fed inventory, by kind.",
                    ),
                    by_kind,
                ),
            ),
            inventory_stale: register(
                registry,
                IntGaugeVec::new(
                    opts(
                        "inventory_stale",
                        "1 while a kind cannot be listed or watched and its last known objects are served, by kind.",
                    ),
                    by_kind,
                ),
            ),
            watch_last_heard: register(
                registry,
                GaugeVec::new(
                    opts(
                        "watch_last_heard_timestamp_seconds",
                        "When a list or watch event of a kind last came from the API server, by kind.",
                    ),
                    by_kind,
                ),
            ),
            errors: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "discovery_errors_total",
                        "Kinds or manifest documents that could not be read, by kind and reason.",
                    ),
                    &["kind", "reason"],
                ),
            ),
        }
    }
}
