//! The service's own health metrics (`container_image_pusher_*`), served on
//! `/metrics` next to the inventory. Never labelled with anything secret:
//! endpoints appear without credentials or query strings.

use crate::readiness::Readiness;

/// The version `--version` prints.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from (build.rs), `unknown` when
/// it was built outside a git checkout.
pub const REVISION: &str = env!("CONTAINER_IMAGE_PUSHER_REVISION");
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Every self-metric, registered in one [`Registry`].
pub struct Telemetry {
    pub registry: Registry,
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
    /// Image resolutions that failed, by error class.
    pub resolve_failures: IntCounterVec,
    /// Lookups in the reference and metadata caches, by cache and `hit`/`miss`.
    pub cache_lookups: IntCounterVec,
    /// Kinds or manifest documents that could not be read, by kind and reason.
    pub discovery_errors: IntCounterVec,
    /// Image labels and annotations left out or cut by the per-image
    /// limits, by reason (`inventory::DropReason`).
    pub labels_dropped: IntCounterVec,
    /// Seconds one snapshot took from discovery to series.
    pub snapshot_duration: Histogram,
    pub snapshot_containers: IntGauge,
    pub snapshot_images: IntGauge,
    pub snapshot_series: IntGauge,
    /// Objects held by the watch-fed inventory, by kind.
    pub watched_objects: IntGaugeVec,
    /// 1 while a kind's list or watch fails and its last known objects are
    /// served; 0 once a list of it completes.
    pub inventory_stale: IntGaugeVec,
    /// When a list or watch event of a kind last came from the API server.
    pub watch_last_heard: GaugeVec,
    /// Registry requests by host, method and status code (`transport` when no answer came).
    pub registry_requests: IntCounterVec,
    /// 1 while this replica holds the leader lease (or leader election is off).
    pub leader: IntGauge,
    /// Connections to the local server closed at once because
    /// `server::MAX_CONNECTIONS` were open.
    pub http_connections_refused: prometheus::IntCounter,
    /// Idle connections to the local server closed to make room for a new one.
    pub http_connections_evicted: prometheus::IntCounter,
    /// What `/readyz` answers: every part of the service records its failing
    /// conditions here.
    pub readiness: Readiness,
}

impl Telemetry {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(
                Opts::new(format!("container_image_pusher_{name}"), help),
                labels,
            )
            .expect("valid counter definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(format!("container_image_pusher_{name}"), help)
                .expect("valid gauge definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let pushes = counter(
            "pushes_total",
            "Remote-write requests by endpoint and outcome.",
            &["endpoint", "outcome"],
        );
        let series_sent = counter(
            "series_sent_total",
            "Series accepted by a remote-write endpoint.",
            &["endpoint"],
        );
        let bytes_sent = counter(
            "bytes_sent_total",
            "Compressed remote-write bytes sent, by endpoint.",
            &["endpoint"],
        );
        let series_dropped = counter(
            "series_dropped_total",
            "Series of snapshots that an endpoint did not accept.",
            &["endpoint"],
        );
        let series_refused = counter(
            "series_refused_total",
            "Series a receiver refused one by one while it stored the rest of the request (partial acceptance), by endpoint.",
            &["endpoint"],
        );
        let snapshots_superseded = counter(
            "snapshots_superseded_total",
            "Snapshots replaced by a newer one before an endpoint accepted them.",
            &["endpoint"],
        );
        let sender_restarts = counter(
            "sender_restarts_total",
            "Push tasks that ended unexpectedly (a panic) and were restarted, by endpoint.",
            &["endpoint"],
        );
        let held_series = IntGaugeVec::new(
            Opts::new(
                "container_image_pusher_held_series",
                "Series an endpoint accepted and still holds (marked stale once gone), by endpoint.",
            ),
            &["endpoint"],
        )
        .expect("valid gauge definition");
        registry
            .register(Box::new(held_series.clone()))
            .expect("metric registered once");
        let otlp_rejected_points = counter(
            "otlp_rejected_data_points_total",
            "Data points an OTLP receiver rejected in requests it otherwise accepted (partial success).",
            &["endpoint"],
        );
        let resolve_failures = counter(
            "resolve_failures_total",
            "Image resolutions that failed, by error class.",
            &["class"],
        );
        let cache_lookups = counter(
            "cache_lookups_total",
            "Registry cache lookups by cache and result.",
            &["cache", "result"],
        );
        let discovery_errors = counter(
            "discovery_errors_total",
            "Kinds or manifest documents that could not be read, by kind and reason.",
            &["kind", "reason"],
        );
        let labels_dropped = counter(
            "labels_dropped_total",
            "Image labels and annotations left out of the series, or cut, by the per-image limits, and labels by the per-series limits, by reason.",
            &["reason"],
        );
        let registry_requests = counter(
            "registry_requests_total",
            "Registry requests by host, method and status code (transport: no HTTP answer).",
            &["host", "method", "code"],
        );
        let watched_objects = IntGaugeVec::new(
            Opts::new(
                "container_image_pusher_watched_objects",
                "Objects held by the watch-fed inventory, by kind.",
            ),
            &["kind"],
        )
        .expect("valid gauge definition");
        registry
            .register(Box::new(watched_objects.clone()))
            .expect("metric registered once");
        let inventory_stale = IntGaugeVec::new(
            Opts::new(
                "container_image_pusher_inventory_stale",
                "1 while a kind cannot be listed or watched and its last known objects are served, by kind.",
            ),
            &["kind"],
        )
        .expect("valid gauge definition");
        registry
            .register(Box::new(inventory_stale.clone()))
            .expect("metric registered once");
        let watch_last_heard = GaugeVec::new(
            Opts::new(
                "container_image_pusher_watch_last_heard_timestamp_seconds",
                "When a list or watch event of a kind last came from the API server, by kind.",
            ),
            &["kind"],
        )
        .expect("valid gauge definition");
        registry
            .register(Box::new(watch_last_heard.clone()))
            .expect("metric registered once");
        let push_duration = HistogramVec::new(
            HistogramOpts::new(
                "container_image_pusher_push_duration_seconds",
                "Time to push one snapshot to one endpoint.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["endpoint"],
        )
        .expect("valid histogram definition");
        registry
            .register(Box::new(push_duration.clone()))
            .expect("metric registered once");
        let last_success = GaugeVec::new(
            Opts::new(
                "container_image_pusher_last_success_timestamp_seconds",
                "When a snapshot was last accepted completely, by endpoint.",
            ),
            &["endpoint"],
        )
        .expect("valid gauge definition");
        registry
            .register(Box::new(last_success.clone()))
            .expect("metric registered once");
        let snapshot_duration = Histogram::with_opts(
            HistogramOpts::new(
                "container_image_pusher_snapshot_duration_seconds",
                "Time from discovery to series of one snapshot.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
        )
        .expect("valid histogram definition");
        registry
            .register(Box::new(snapshot_duration.clone()))
            .expect("metric registered once");
        let http_connections_refused = prometheus::IntCounter::new(
            "container_image_pusher_http_connections_refused_total",
            "Connections to /metrics, /healthz and /readyz closed at once because too many were open.",
        )
        .expect("valid counter definition");
        registry
            .register(Box::new(http_connections_refused.clone()))
            .expect("metric registered once");
        let http_connections_evicted = prometheus::IntCounter::new(
            "container_image_pusher_http_connections_evicted_total",
            "Idle connections to the local server (no request in progress) closed to make room for a new one.",
        )
        .expect("valid counter definition");
        registry
            .register(Box::new(http_connections_evicted.clone()))
            .expect("metric registered once");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "container_image_pusher_build_info",
                "1, labelled with the version (as --version prints it) and the git revision it was built from.",
            ),
            &["version", "revision"],
        )
        .expect("valid gauge definition");
        registry
            .register(Box::new(build_info.clone()))
            .expect("metric registered once");
        build_info.with_label_values(&[VERSION, REVISION]).set(1);
        Telemetry {
            http_connections_refused,
            http_connections_evicted,
            pushes,
            push_duration,
            series_sent,
            bytes_sent,
            series_dropped,
            series_refused,
            snapshots_superseded,
            last_success,
            held_series,
            sender_restarts,
            otlp_rejected_points,
            resolve_failures,
            cache_lookups,
            discovery_errors,
            labels_dropped,
            snapshot_duration,
            snapshot_containers: gauge("snapshot_containers", "Containers in the last snapshot."),
            snapshot_images: gauge(
                "snapshot_images",
                "Distinct resolved image digests in the last snapshot.",
            ),
            snapshot_series: gauge("snapshot_series", "Series in the last snapshot."),
            watched_objects,
            inventory_stale,
            watch_last_heard,
            registry_requests,
            leader: gauge(
                "leader",
                "1 while this replica pushes (holds the lease, or runs without leader election).",
            ),
            registry,
            readiness: Readiness::default(),
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
