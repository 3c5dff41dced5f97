//! The raw results of a run, serialized with `--json`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::options::Options;

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub options: Options,
    pub machine: Machine,
    pub dataset: DatasetStats,
    pub registry_setup: RegistrySetup,
    pub runs: Vec<RunResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub mem_total_bytes: u64,
    pub kernel: String,
    pub clock_ticks_per_second: u64,
    pub prometheus_version: String,
    pub registry_version: String,
    pub harness_optimized: bool,
    /// `git rev-parse --short HEAD`, and how many files under `src/`
    /// differ from it: what the pusher binary was built from (if fresh).
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DatasetStats {
    pub containers: usize,
    pub init_containers: usize,
    pub ephemeral_containers: usize,
    pub objects: BTreeMap<String, usize>,
    pub namespaces: usize,
    /// Distinct images referenced by some container.
    pub distinct_images: usize,
    /// Distinct references by tag only (each costs a HEAD per cache period).
    pub tagged_references: usize,
    /// Distinct references pinned by digest (`repo@sha256:…`, `repo:tag@sha256:…`).
    pub pinned_references: usize,
    /// Distinct images that are multi-arch indexes.
    pub multi_arch_images: usize,
    /// JSON size of every object, as one full re-list transfers it.
    pub api_json_bytes: usize,
    pub generate_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistrySetup {
    pub images_stored: usize,
    pub images_pushed: usize,
    pub push_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// /proc/loadavg before and after the run.
    pub load_before: [f64; 3],
    pub load_after: [f64; 3],
    pub direct: DirectResult,
    pub snappy: Option<SnappyResult>,
    /// Exporter + Prometheus agent.
    pub scrape: Option<ScrapeResult>,
    /// Exporter + vmagent.
    pub vmagent: Option<ScrapeResult>,
}

/// Long-running pusher with a remote-write URL.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DirectResult {
    /// Process start to the first `pushed` log line: every container with
    /// its digest (and, from pushers that wait for it, the metadata).
    pub first_push_seconds: f64,
    /// Registry requests before the first push.
    pub first_push_registry: RegistryCounts,
    /// Process start to the push of the first snapshot with every image's
    /// metadata (the first push with a pusher that waits for it).
    pub metadata_push_seconds: f64,
    /// Process start to the push of the first snapshot that left nothing
    /// out (the same push as the first with a pusher that waits for all).
    pub complete_push_seconds: f64,
    /// Everything up to the end of the first complete push: startup, first
    /// list, every image resolved, every label set encoded.
    pub cold: Window,
    pub warm: Window,
    /// Ticks around the expiry of the tag cache: every tag is asked again.
    pub expiry: Window,
    /// True if the warm window may have reached the tag cache's expiry.
    pub warm_window_overlapped_expiry: bool,
    pub peak_rss_bytes: u64,
    /// VmRSS between ticks at the end of the warm window.
    pub steady_rss_bytes: u64,
    /// Highest VmRSS seen during the warm window (mid-tick).
    pub warm_max_rss_bytes: u64,
    /// From the pusher's own `/metrics`, read once at the end.
    pub self_metrics: SelfMetrics,
    /// With `--verify`: signature verifications computed by the end of the
    /// cold tick (`self_metrics` has the total at the end of the run).
    pub cold_signature_verifications: Option<f64>,
    /// `count(container_image_container_info)` in the receiver at the end.
    pub receiver_container_series: f64,
    /// Distinct label sets in one warm push (0 if none was captured).
    pub distinct_series_per_push: usize,
    /// Log lines at WARN or ERROR.
    pub warnings: usize,
    pub first_warnings: Vec<String>,
}

/// Costs over a measurement window, per tick where it says so.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    pub ticks: usize,
    pub seconds: f64,
    /// Whether both ends fell on idle moments.
    pub aligned: bool,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_tick: f64,
    /// Mean `took` of the `snapshot taken` lines (discovery to series).
    pub snapshot_wall_seconds: f64,
    /// Mean time from `snapshot taken` to `pushed`.
    pub push_wall_seconds: f64,
    pub registry: RegistryCounts,
    pub api: ApiCounts,
    pub wire: WireCounts,
    /// Series in the last `pushed` line of the window.
    pub series_per_push: usize,
    pub requests_per_push: f64,
    pub stale_per_push: f64,
}

/// Registry requests made by the pusher, from the registry's access log.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RegistryCounts {
    pub head_manifests: u64,
    pub get_manifests: u64,
    pub get_blobs: u64,
    /// `GET /v2/`: oci-client's authentication probe, sent before a request
    /// whenever it holds no token (always, for a registry without auth).
    pub get_version_checks: u64,
    /// Referrer lookups: `GET /v2/<name>/referrers/<digest>` (404 from
    /// distribution 2.8, remembered per host) and `GET /v2/<name>/tags/list`
    /// (one per repository, for the tag schema and cosign's tags).
    pub referrer_listings: u64,
    pub tag_lists: u64,
    /// Anything else.
    pub other: u64,
}

impl RegistryCounts {
    pub fn heads(&self) -> u64 {
        self.head_manifests
    }
    pub fn gets(&self) -> u64 {
        self.get_manifests + self.get_blobs
    }
    /// Every request, each of which the pusher's `--registry-rps` paces.
    pub fn total(&self) -> u64 {
        self.head_manifests
            + self.gets()
            + self.get_version_checks
            + self.referrer_listings
            + self.tag_lists
            + self.other
    }
    pub(crate) fn minus(&self, earlier: &RegistryCounts) -> RegistryCounts {
        RegistryCounts {
            head_manifests: self.head_manifests - earlier.head_manifests,
            get_manifests: self.get_manifests - earlier.get_manifests,
            get_blobs: self.get_blobs - earlier.get_blobs,
            get_version_checks: self.get_version_checks - earlier.get_version_checks,
            referrer_listings: self.referrer_listings - earlier.referrer_listings,
            tag_lists: self.tag_lists - earlier.tag_lists,
            other: self.other - earlier.other,
        }
    }
}

/// Kubernetes API requests, as the test server recorded them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiCounts {
    pub list: usize,
    pub watch: usize,
    pub other: usize,
}

impl ApiCounts {
    pub(crate) fn minus(&self, earlier: &ApiCounts) -> ApiCounts {
        ApiCounts {
            list: self.list - earlier.list,
            watch: self.watch - earlier.watch,
            other: self.other - earlier.other,
        }
    }
    pub fn total(&self) -> usize {
        self.list + self.watch + self.other
    }
}

/// Remote-write bodies seen by a tap.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WireCounts {
    pub requests: usize,
    pub compressed_bytes: u64,
    pub raw_bytes: u64,
    pub series: u64,
    pub samples: u64,
    pub metadata: u64,
    pub failed_requests: usize,
}

impl WireCounts {
    pub(crate) fn minus(&self, earlier: &WireCounts) -> WireCounts {
        WireCounts {
            requests: self.requests - earlier.requests,
            compressed_bytes: self.compressed_bytes - earlier.compressed_bytes,
            raw_bytes: self.raw_bytes - earlier.raw_bytes,
            series: self.series - earlier.series,
            samples: self.samples - earlier.samples,
            metadata: self.metadata - earlier.metadata,
            failed_requests: self.failed_requests - earlier.failed_requests,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SelfMetrics {
    pub snapshot_series: f64,
    pub last_success_timestamp_seconds: f64,
    pub bytes_sent_total: f64,
    pub registry_requests_head: f64,
    pub registry_requests_get: f64,
    /// `container_image_pusher_signature_verifications_total`, every
    /// policy and result (0 without `--verify`).
    pub signature_verifications: f64,
    /// Those of them whose result was `verified`.
    pub signatures_verified: f64,
}

/// snappy's own cost on the bytes of one push, compressed in-process by
/// the harness in the same batches.
#[derive(Debug, Clone, Serialize)]
pub struct SnappyResult {
    pub requests: usize,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    /// Median of several runs.
    pub seconds: f64,
}

/// The agent that scrapes the exporter and remote-writes what it scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Agent {
    /// Debian's `prometheus` 2.42 with `--enable-feature=agent`.
    Prometheus,
    /// VictoriaMetrics' `vmagent` (Debian sid's `victoria-metrics`).
    Vmagent,
}

impl Agent {
    pub fn name(self) -> &'static str {
        match self {
            Agent::Prometheus => "Prometheus agent",
            Agent::Vmagent => "vmagent",
        }
    }

    /// Series the agent adds to every scrape: `up` and `scrape_*`.
    pub fn generated_series(self) -> usize {
        match self {
            // up, scrape_duration_seconds, scrape_samples_scraped,
            // scrape_samples_post_metric_relabeling, scrape_series_added.
            Agent::Prometheus => 5,
            // The same, plus scrape_response_size_bytes and scrape_timeout_seconds.
            Agent::Vmagent => 7,
        }
    }

    /// Its counters of compressed bytes and of samples sent by remote write.
    pub(crate) fn sent_counters(self) -> (&'static [&'static str], &'static str) {
        match self {
            Agent::Prometheus => (
                &[
                    "prometheus_remote_storage_bytes_total",
                    "prometheus_remote_storage_sent_bytes_total",
                ],
                "prometheus_remote_storage_samples_total",
            ),
            Agent::Vmagent => (
                &["vmagent_remotewrite_bytes_sent_total"],
                "vmagent_remotewrite_block_size_rows_sum",
            ),
        }
    }

    /// Its remote-write and scrape counters worth keeping in the report.
    pub(crate) fn counters(self) -> &'static [&'static str] {
        match self {
            Agent::Prometheus => &[
                "prometheus_remote_storage_bytes_total",
                "prometheus_remote_storage_sent_bytes_total",
                "prometheus_remote_storage_metadata_bytes_total",
                "prometheus_remote_storage_samples_total",
                "prometheus_remote_storage_succeeded_samples_total",
                "prometheus_remote_storage_samples_failed_total",
                "prometheus_remote_storage_samples_dropped_total",
                "prometheus_target_interval_length_seconds_count",
            ],
            Agent::Vmagent => &[
                "vmagent_remotewrite_bytes_sent_total",
                "vmagent_remotewrite_block_size_rows_sum",
                "vmagent_remotewrite_block_metadata_rows_sum",
                "vmagent_remotewrite_blocks_sent_total",
                "vmagent_remotewrite_requests_total",
                "vmagent_remotewrite_packets_dropped_total",
                "vmagent_remotewrite_samples_dropped_total",
                "vm_promscrape_scrapes_total",
                "vm_promscrape_scrapes_failed_total",
            ],
        }
    }
}

/// The same binary without a remote-write URL, scraped by an agent.
#[derive(Debug, Clone, Serialize)]
pub struct ScrapeResult {
    pub agent_kind: Agent,
    pub first_snapshot_seconds: f64,
    pub window_seconds: f64,
    pub aligned: bool,
    pub intervals: usize,
    pub ticks: usize,
    pub scrapes: usize,
    pub exporter: ProcessCost,
    pub agent: ProcessCost,
    /// Size of one `/metrics` scrape of the exporter.
    pub scrape_bytes: f64,
    /// Mean wall time of a scrape (through the tap).
    pub scrape_seconds: f64,
    /// Distinct sample timestamps (scrapes) the receiver got for the window.
    pub scrape_groups: usize,
    pub samples_per_scrape: f64,
    /// What the agent sent to the receiver while the window lasted (by
    /// arrival: cut at the agent's batch boundaries, so only indicative).
    pub wire: WireCounts,
    /// What one scrape's samples cost on the wire, counted by timestamp.
    pub wire_requests_per_interval: f64,
    /// The agent's count of bytes sent (`prometheus_remote_storage_bytes_total`,
    /// `vmagent_remotewrite_bytes_sent_total`), per sample sent, times the
    /// samples of one scrape.
    pub agent_bytes_per_scrape: f64,
    pub wire_compressed_bytes_per_interval: f64,
    pub wire_raw_bytes_per_interval: f64,
    /// The agent's own counters (delta over the window), by metric name.
    pub agent_metrics: BTreeMap<String, f64>,
    pub receiver_container_series: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessCost {
    pub cpu_seconds_per_interval: f64,
    pub steady_rss_bytes: u64,
    pub max_rss_bytes: u64,
    pub peak_rss_bytes: u64,
}
