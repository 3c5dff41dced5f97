//! The snapshot's metrics: how long one took, what it holds, and the image
//! labels the per-image and per-series limits left out.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Registry};

use crate::telemetry::{opts, register};

/// What taking a snapshot records.
#[derive(Clone)]
pub struct Metrics {
    /// Seconds one snapshot took from discovery to series.
    pub duration: Histogram,
    pub containers: IntGauge,
    pub images: IntGauge,
    pub series: IntGauge,
    /// Image labels and annotations left out or cut by the per-image
    /// limits, by reason (`inventory::DropReason`): the inventory counts them.
    pub labels_dropped: IntCounterVec,
}

impl Metrics {
    /// The snapshot's metrics, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let gauge =
            |name: &str, help: &str| register(registry, IntGauge::with_opts(opts(name, help)));
        Metrics {
            duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::from(opts(
                        "snapshot_duration_seconds",
                        "Time from discovery to series of one snapshot.",
                    ))
                    .buckets(vec![
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                    ]),
                ),
            ),
            containers: gauge("snapshot_containers", "Containers in the last snapshot."),
            images: gauge(
                "snapshot_images",
                "Distinct resolved image digests in the last snapshot.",
            ),
            series: gauge("snapshot_series", "Series in the last snapshot."),
            labels_dropped: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "labels_dropped_total",
                        "Image labels and annotations left out of the series, or cut, by the per-image limits, and labels by the per-series limits, by reason.",
                    ),
                    &["reason"],
                ),
            ),
        }
    }
}
