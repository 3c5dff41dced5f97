//! The senders' metrics: what each endpoint was sent, accepted, refused
//! and still holds. Labelled by endpoint as `config::display_name` shows
//! it: never with credentials or a query string.

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

use crate::telemetry::{opts, register};

/// What pushing to the endpoints records, by endpoint.
#[derive(Clone)]
pub struct Metrics {
    /// Remote-write requests by endpoint and outcome: `success`, `failed`
    /// (refused, or given up after retries) or `superseded` (a newer
    /// snapshot replaced it while it was retried).
    pub pushes: IntCounterVec,
    /// Wall time of pushing one snapshot to one endpoint.
    pub push_duration: HistogramVec,
    pub series_sent: IntCounterVec,
    pub bytes_sent: IntCounterVec,
    /// Series in snapshots that an endpoint never accepted.
    pub series_dropped: IntCounterVec,
    /// Series a receiver refused one by one while storing the rest of
    /// their request (Mimir, Cortex, Grafana Cloud): not sent to it again.
    pub series_refused: IntCounterVec,
    /// Snapshots replaced by a newer one before they were pushed.
    pub snapshots_superseded: IntCounterVec,
    pub last_success: GaugeVec,
    /// Series an endpoint accepted and still holds: what is marked stale when gone.
    pub held_series: IntGaugeVec,
    /// Push tasks that ended unexpectedly and were restarted, by endpoint.
    pub sender_restarts: IntCounterVec,
    /// Data points an OTLP receiver accepted the request of but rejected
    /// (its partial success), by endpoint.
    pub otlp_rejected_points: IntCounterVec,
}

impl Metrics {
    /// The senders' metrics, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let by_endpoint = &["endpoint"];
        let counter = |name: &str, help: &str| {
            register(registry, IntCounterVec::new(opts(name, help), by_endpoint))
        };
        Metrics {
            pushes: register(
                registry,
                IntCounterVec::new(
                    opts(
                        "pushes_total",
                        "Remote-write requests by endpoint and outcome.",
                    ),
                    &["endpoint", "outcome"],
                ),
            ),
            push_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::from(opts(
                        "push_duration_seconds",
                        "Time to push one snapshot to one endpoint.",
                    ))
                    .buckets(vec![
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ]),
                    by_endpoint,
                ),
            ),
            series_sent: counter(
                "series_sent_total",
                "Series accepted by a remote-write endpoint.",
            ),
            bytes_sent: counter(
                "bytes_sent_total",
                "Compressed remote-write bytes sent, by endpoint.",
            ),
            series_dropped: counter(
                "series_dropped_total",
                "Series of snapshots that an endpoint did not accept.",
            ),
            series_refused: counter(
                "series_refused_total",
                "Series a receiver refused one by one while it stored the rest of the request (partial acceptance), by endpoint.",
            ),
            snapshots_superseded: counter(
                "snapshots_superseded_total",
                "Snapshots replaced by a newer one before an endpoint accepted them.",
            ),
            last_success: register(
                registry,
                GaugeVec::new(
                    opts(
                        "last_success_timestamp_seconds",
                        "When a snapshot was last accepted completely, by endpoint.",
                    ),
                    by_endpoint,
                ),
            ),
            held_series: register(
                registry,
                IntGaugeVec::new(
                    opts(
                        "held_series",
                        "Series an endpoint accepted and still holds (marked stale once gone), by endpoint.",
                    ),
                    by_endpoint,
                ),
            ),
            sender_restarts: counter(
                "sender_restarts_total",
                "Push tasks that ended unexpectedly (a panic) and were restarted, by endpoint.",
            ),
            otlp_rejected_points: counter(
                "otlp_rejected_data_points_total",
                "Data points an OTLP receiver rejected in requests it otherwise accepted (partial success).",
            ),
        }
    }
}
