//! Scale harness: what the pusher costs on a big cluster, and what the
//! alternative costs on the same data: the same binary as a scrape exporter
//! (no `--remote-write-url`, serving `/metrics`) scraped by an agent that
//! remote-writes, a Prometheus agent or VictoriaMetrics' vmagent.
//!
//! ```sh
//! cargo run --release --example scale -- --containers 100000 --images 10000
//! ```
//!
//! Everything runs on loopback, with the peers the integration tests use:
//! - the Kubernetes API test server (`tests/support/kube_api.rs`), serving a
//!   generated cluster: Deployments (2–3 containers, some with an init
//!   container) and their ReplicaSet-owned Pods, StatefulSets, DaemonSets and
//!   their Pods, CronJobs with a Job and its Pod, and bare Pods (some with an
//!   ephemeral container), with realistic metadata, specs and pod status;
//! - Debian's `docker-registry` holding the images, pushed once into
//!   `--registry-dir` (default `target/scale-registry`) and reused by later
//!   runs: a marker file records how many images are there;
//! - Debian's `prometheus` 2.42 as the remote-write receiver (and, in agent
//!   mode, as the scraper of the first alternative);
//! - `vmagent` from Debian sid's `victoria-metrics` package, fetched by
//!   `scripts/fetch-test-peers` (`tests/support/peers.rs`), as the scraper
//!   of the second;
//! - the release pusher binary (`target/release/container-image-pusher`,
//!   built first with `cargo build --release` when run through cargo).
//!
//! Two taps of our own sit in the data paths and are not measured: one in
//! front of the receiver counts remote-write bodies (compressed, and
//! decompressed to count raw bytes and series); one in front of the
//! exporter's `/metrics` counts scrapes and their size. The pusher's own
//! `/metrics` is read only once at the end of a run, because rendering it at
//! 100k containers would add to the very CPU and memory being measured; tick
//! ends come from its JSON log lines (`snapshot taken`, `pushed`) instead.
//!
//! CPU is utime+stime from `/proc/PID/stat`, memory VmRSS/VmHWM from
//! `/proc/PID/status`. Measurement windows start and end at moments when the
//! measured processes are idle, so no tick or scrape is cut in half.
//!
//! Prints a markdown table to stdout, progress to stderr, and the raw results
//! as JSON with `--json PATH`. See `docs/performance.md`.
//!
//! `tests/scale_smoke.rs` includes this file as a module and calls [`run`] at
//! a small size, so everything but `main` is plain library code.

#![allow(dead_code)]

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/process.rs"]
mod process;

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/kube_api.rs"]
mod kube_api;

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/registry.rs"]
mod registry;

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/prometheus.rs"]
mod receiver;

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/peers.rs"]
mod peers;

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/wait.rs"]
mod wait;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{json, Value};

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetStatus, Deployment, DeploymentSpec, DeploymentStatus,
    DeploymentStrategy, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStatus, EnvVar,
    EnvVarSource, EphemeralContainer, HTTPGetAction, ObjectFieldSelector, Pod, PodCondition,
    PodSpec, PodStatus, PodTemplateSpec, Probe, ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, LabelSelector, ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use kube_api::KubeApi;
use process::{free_port, require_binary, ChildGuard};
use registry::{sha256_digest, Descriptor, Format, ImageSpec};

/// Bumped whenever the generated images change, so a registry directory
/// filled by an older harness is refilled instead of trusted.
const IMAGE_FORMAT_VERSION: u32 = 1;

/// The marker file in `--registry-dir` saying which images are stored.
const MARKER_FILE: &str = "scale-images.json";

/// Images every workload may share (sidecars, init containers, debuggers).
const POPULAR_IMAGES: usize = 8;

/// Fixed creation time of the generated objects and images, so two runs
/// generate the same bytes (2023-11-14T22:13:20Z).
const EPOCH_SECONDS: i64 = 1_700_000_000;

/// Every remote-write request and scrape passes through a tap; this bounds
/// how long one may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// What to measure, and where the binaries and images are.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Containers in the generated cluster (Pods and templates together).
    pub containers: usize,
    /// Distinct images (registry digests) they run.
    pub images: usize,
    /// `--interval` of the pusher, and the scrape interval of the agent.
    #[serde(serialize_with = "as_seconds")]
    pub interval: Duration,
    /// `--cache-duration` of the pusher: the tag → digest TTL.
    #[serde(serialize_with = "as_seconds")]
    pub cache_duration: Duration,
    /// Warm ticks (and scrapes) per measurement window.
    pub warm_ticks: usize,
    /// Measurement runs; the table shows medians.
    pub runs: usize,
    /// Registry storage, reused between invocations.
    pub registry_dir: PathBuf,
    /// The pusher binary under test.
    pub pusher: PathBuf,
    /// `--registry-rps` of the pusher (its default, 5, would make the first
    /// tick at 10k images take an hour and a half).
    pub registry_rps: f64,
    /// `--registry-concurrency` of the pusher.
    pub registry_concurrency: u32,
    /// Also measure scrape exporter + Prometheus agent.
    pub alternative: bool,
    /// Also measure scrape exporter + vmagent.
    pub vmagent: bool,
    /// Give every Deployment and StatefulSet its own service account (as
    /// most Helm charts do), or leave all workloads on `default`. Lookups
    /// are per image and credential scope, so this changes the tick's cost.
    pub service_account_per_workload: bool,
    /// Extra arguments for the pusher (both modes), e.g. `--pull-secrets=false`.
    pub pusher_args: Vec<String>,
    /// Images pushed at once when filling the registry.
    pub push_concurrency: usize,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Options {
    /// The defaults of the command line: 100k containers over 10k images,
    /// 15 s interval, 3 min cache, 4 warm ticks, one run.
    pub fn new(pusher: PathBuf, registry_dir: PathBuf) -> Options {
        Options {
            containers: 100_000,
            images: 10_000,
            interval: Duration::from_secs(15),
            cache_duration: Duration::from_secs(180),
            warm_ticks: 4,
            runs: 1,
            registry_dir,
            pusher,
            registry_rps: 1000.0,
            registry_concurrency: 10,
            alternative: true,
            vmagent: true,
            service_account_per_workload: true,
            pusher_args: Vec::new(),
            push_concurrency: 32,
            progress: true,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.containers == 0 || self.images == 0 {
            bail!("--containers and --images must be at least 1");
        }
        if self.warm_ticks == 0 || self.runs == 0 {
            bail!("--warm-ticks and --runs must be at least 1");
        }
        if self.cache_duration < self.interval * 3 {
            bail!(
                "--cache-duration must be at least three --interval: the warm ticks are measured before the tags expire"
            );
        }
        if !self.pusher.is_file() {
            bail!(
                "the pusher binary {} does not exist: build it with `cargo build --release` (or pass --pusher PATH)",
                self.pusher.display()
            );
        }
        Ok(())
    }

    fn quiet_window(&self) -> Duration {
        (self.interval / 5).clamp(Duration::from_millis(150), Duration::from_millis(600))
    }
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

macro_rules! progress {
    ($options:expr, $($arg:tt)*) => {
        if $options.progress {
            eprintln!("[scale] {}", format!($($arg)*));
        }
    };
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

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
    /// Process start to the first `pushed` log line.
    pub first_push_seconds: f64,
    /// Everything up to the end of the first push: startup, first list,
    /// every image resolved, every label set encoded.
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
    fn minus(&self, earlier: &RegistryCounts) -> RegistryCounts {
        RegistryCounts {
            head_manifests: self.head_manifests - earlier.head_manifests,
            get_manifests: self.get_manifests - earlier.get_manifests,
            get_blobs: self.get_blobs - earlier.get_blobs,
            get_version_checks: self.get_version_checks - earlier.get_version_checks,
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
    fn minus(&self, earlier: &ApiCounts) -> ApiCounts {
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
    fn minus(&self, earlier: &WireCounts) -> WireCounts {
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
    fn sent_counters(self) -> (&'static [&'static str], &'static str) {
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
    fn counters(self) -> &'static [&'static str] {
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

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// Runs the whole measurement: registry, cluster, then `options.runs` times
/// the direct pusher and the scrape + agent alternatives.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    options.validate()?;
    // Before the long setup: panics saying how to fetch it if it is missing.
    let vmagent = options.vmagent.then(|| peers::peer("vmagent"));
    process::install_crypto_provider();
    let machine = Machine::probe();
    progress!(
        options,
        "{} containers over {} images, interval {:?}, cache {:?}, {} warm ticks, {} run(s); pusher {}",
        options.containers,
        options.images,
        options.interval,
        options.cache_duration,
        options.warm_ticks,
        options.runs,
        options.pusher.display()
    );

    let registry = ScaleRegistry::start(&options.registry_dir).await?;
    let plans: Vec<ImagePlan> = (0..options.images).map(ImagePlan::new).collect();
    let registry_setup = registry.fill(&plans, options).await?;

    let started = Instant::now();
    let api = KubeApi::start().await;
    let mut dataset = populate(
        &api,
        &plans,
        &registry.host,
        options.containers,
        options.service_account_per_workload,
    );
    // Apply keeps every write for watches to replay; a fresh cluster has no
    // history anyone needs, so drop it (halves the server's memory).
    api.compact();
    dataset.generate_seconds = started.elapsed().as_secs_f64();
    progress!(
        options,
        "cluster: {:?}, {} containers, {} distinct images ({} tagged, {} pinned references), {:.1} MB of JSON, generated in {:.1}s",
        dataset.objects,
        dataset.containers,
        dataset.distinct_images,
        dataset.tagged_references,
        dataset.pinned_references,
        dataset.api_json_bytes as f64 / 1e6,
        dataset.generate_seconds
    );
    let kube_dir = tempfile::Builder::new()
        .prefix("scale-kube-")
        .tempdir()
        .context("create a tempdir for the kubeconfig")?;
    let env = Env {
        api,
        kubeconfig: kube_dir.path().join("kubeconfig"),
        registry,
        dataset: dataset.clone(),
        vmagent,
    };
    env.api.write_kubeconfig(kube_dir.path());

    let mut runs = Vec::new();
    for n in 0..options.runs {
        progress!(options, "run {}/{}", n + 1, options.runs);
        runs.push(run_once(options, &env).await?);
    }
    Ok(Report {
        options: options.clone(),
        machine,
        dataset,
        registry_setup,
        runs,
    })
}

/// What every run shares.
struct Env {
    api: KubeApi,
    kubeconfig: PathBuf,
    registry: ScaleRegistry,
    dataset: DatasetStats,
    /// The vmagent binary, if it is measured.
    vmagent: Option<PathBuf>,
}

async fn run_once(options: &Options, env: &Env) -> anyhow::Result<RunResult> {
    let load_before = loadavg();
    let (direct, bodies) = direct_phase(options, env).await?;
    let snappy = if bodies.is_empty() {
        None
    } else {
        Some(
            tokio::task::spawn_blocking(move || snappy_cost(&bodies))
                .await
                .context("snappy measurement")?,
        )
    };
    let scrape = if options.alternative {
        Some(scrape_phase(options, env, Agent::Prometheus).await?)
    } else {
        None
    };
    let vmagent = if env.vmagent.is_some() {
        Some(scrape_phase(options, env, Agent::Vmagent).await?)
    } else {
        None
    };
    Ok(RunResult {
        load_before,
        load_after: loadavg(),
        direct,
        snappy,
        scrape,
        vmagent,
    })
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

/// How a container spec refers to an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pin {
    Tag,
    Digest,
    TagAndDigest,
}

/// One generated image: a repository with one tag, single- or multi-arch,
/// OCI or Docker media types. Deterministic in its index.
#[derive(Debug, Clone)]
struct ImagePlan {
    repo: String,
    tag: String,
    /// What the tag points at (the index digest for a multi-arch image).
    digest: String,
    pin: Pin,
    multi_arch: bool,
    uploads: Vec<Upload>,
}

/// One registry write, in push order (children before what refers to them).
#[derive(Debug, Clone)]
enum Upload {
    Blob(Vec<u8>),
    Manifest {
        reference: String,
        media_type: &'static str,
        body: Vec<u8>,
    },
}

impl ImagePlan {
    fn new(i: usize) -> ImagePlan {
        let repo = format!("team-{:02}/svc-{i:05}", i % 50);
        let tag = format!("v1.{}.{}", i % 7, i % 3);
        let format = if i % 3 == 1 {
            Format::Docker
        } else {
            Format::Oci
        };
        let multi_arch = i % 5 == 0;
        let pin = match i % 8 {
            0 => Pin::Digest,
            4 => Pin::TagAndDigest,
            _ => Pin::Tag,
        };
        let mut uploads = Vec::new();
        let digest = if multi_arch {
            let mut entries = Vec::new();
            for arch in ["amd64", "arm64"] {
                let (manifest, size) = platform_image(i, format, arch, None, &mut uploads);
                entries.push(json!({
                    "mediaType": format.manifest_media_type(),
                    "digest": manifest,
                    "size": size,
                    "platform": { "architecture": arch, "os": "linux" },
                }));
                if format == Format::Oci && i % 10 == 0 {
                    let (attestation, size) = attestation(i, arch, &manifest, &mut uploads);
                    entries.push(json!({
                        "mediaType": registry::OCI_MANIFEST,
                        "digest": attestation,
                        "size": size,
                        "platform": { "architecture": "unknown", "os": "unknown" },
                        "annotations": {
                            "vnd.docker.reference.digest": manifest,
                            "vnd.docker.reference.type": "attestation-manifest",
                        },
                    }));
                }
            }
            let mut index = json!({
                "schemaVersion": 2,
                "mediaType": format.index_media_type(),
                "manifests": entries,
            });
            if format == Format::Oci {
                index["annotations"] = json!({
                    "org.opencontainers.image.created": created(i),
                });
            }
            let body = serde_json::to_vec_pretty(&index).expect("serialize an index");
            let digest = sha256_digest(&body);
            uploads.push(Upload::Manifest {
                reference: tag.clone(),
                media_type: format.index_media_type(),
                body,
            });
            digest
        } else {
            platform_image(i, format, "amd64", Some(&tag), &mut uploads).0
        };
        ImagePlan {
            repo,
            tag,
            digest,
            pin,
            multi_arch,
            uploads,
        }
    }

    /// The image as a container spec writes it.
    fn reference(&self, host: &str) -> String {
        match self.pin {
            Pin::Tag => format!("{host}/{}:{}", self.repo, self.tag),
            Pin::Digest => format!("{host}/{}@{}", self.repo, self.digest),
            Pin::TagAndDigest => format!("{host}/{}:{}@{}", self.repo, self.tag, self.digest),
        }
    }
}

fn created(i: usize) -> String {
    let at = k8s_openapi::jiff::Timestamp::from_second(EPOCH_SECONDS - (i as i64 % 5000) * 3600)
        .expect("a valid timestamp");
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Adds the config, the layer and the manifest of one platform image to
/// `uploads`; returns the manifest's digest and size. The manifest goes
/// under `tag`, or by digest only (an index entry).
fn platform_image(
    i: usize,
    format: Format,
    arch: &str,
    tag: Option<&str>,
    uploads: &mut Vec<Upload>,
) -> (String, u64) {
    let mut spec = ImageSpec::new(format, "linux", arch)
        .created(&created(i))
        .label(
            "org.opencontainers.image.source",
            &format!("https://github.com/example/svc-{i:05}"),
        )
        .label(
            "org.opencontainers.image.revision",
            &format!("{:040x}", i as u128 * 2_654_435_761),
        )
        .label(
            "org.opencontainers.image.version",
            &format!("1.{}.{}", i % 7, i % 3),
        )
        .layer(format!("scale layer {i} {arch}").into_bytes());
    if i % 3 == 0 {
        spec = spec.label("dev.chainguard.package.main", "static");
    }
    if format == Format::Oci {
        spec = spec.annotation(
            "org.opencontainers.image.base.name",
            "cgr.dev/chainguard/static:latest",
        );
    }
    let config = serde_json::to_vec(&spec.config()).expect("serialize an image config");
    let config_descriptor = descriptor(format.config_media_type(), &config);
    let layer = spec.layers[0].clone();
    let layer_descriptor = descriptor(format.layer_media_type(), &layer);
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest_media_type(),
        "config": config_descriptor.to_json(),
        "layers": [layer_descriptor.to_json()],
    });
    if format == Format::Oci {
        manifest["annotations"] = json!(spec.annotations);
    }
    let body = serde_json::to_vec_pretty(&manifest).expect("serialize a manifest");
    let digest = sha256_digest(&body);
    let size = body.len() as u64;
    uploads.push(Upload::Blob(config));
    uploads.push(Upload::Blob(layer));
    uploads.push(Upload::Manifest {
        reference: tag.map_or_else(|| digest.clone(), str::to_owned),
        media_type: format.manifest_media_type(),
        body,
    });
    (digest, size)
}

/// A BuildKit-style provenance attestation for `subject`.
fn attestation(i: usize, arch: &str, subject: &str, uploads: &mut Vec<Upload>) -> (String, u64) {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{ "name": format!("svc-{i:05}-{arch}"), "digest": { "sha256": subject.trim_start_matches("sha256:") } }],
        "predicate": {},
    });
    let layer = serde_json::to_vec(&statement).expect("serialize a statement");
    let layer_descriptor = descriptor(registry::IN_TOTO_LAYER, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer_descriptor.digest] },
    }))
    .expect("serialize an attestation config");
    let config_descriptor = descriptor(registry::OCI_CONFIG, &config);
    let mut layer_json = layer_descriptor.to_json();
    layer_json["annotations"] =
        json!({ "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2" });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [layer_json],
    });
    let body = serde_json::to_vec_pretty(&manifest).expect("serialize a manifest");
    let digest = sha256_digest(&body);
    let size = body.len() as u64;
    uploads.push(Upload::Blob(config));
    uploads.push(Upload::Blob(layer));
    uploads.push(Upload::Manifest {
        reference: digest.clone(),
        media_type: registry::OCI_MANIFEST,
        body,
    });
    (digest, size)
}

fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: sha256_digest(data),
        size: data.len() as u64,
    }
}

/// Identifies the first `n` images' content.
fn fingerprint(plans: &[ImagePlan]) -> String {
    let digests: Vec<&str> = plans.iter().map(|p| p.digest.as_str()).collect();
    sha256_digest(digests.join("\n").as_bytes())
}

// ---------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------

/// Debian's docker-registry on a storage directory that outlives the run.
/// (`tests/support/registry.rs` keeps its storage in a tempdir, so the
/// launch is repeated here with the same configuration approach.)
struct ScaleRegistry {
    host: String,
    dir: PathBuf,
    http: reqwest::Client,
    child: ChildGuard,
    /// Access-log lines already counted, and their totals.
    access: Mutex<(usize, RegistryCounts)>,
}

#[derive(serde::Deserialize, Serialize)]
struct Marker {
    format: u32,
    images: usize,
    fingerprint: String,
}

impl ScaleRegistry {
    async fn start(dir: &Path) -> anyhow::Result<ScaleRegistry> {
        let binary = require_binary("docker-registry", "docker-registry");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create the registry directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolve {}", dir.display()))?;
        let host = format!("127.0.0.1:{}", free_port());
        let config = json!({
            "version": "0.1",
            // Warnings only, but the access log on: it is how requests are counted.
            "log": { "level": "warn", "accesslog": { "disabled": false } },
            "storage": {
                "filesystem": { "rootdirectory": dir.join("storage") },
                "cache": { "blobdescriptor": "inmemory" },
            },
            "http": { "addr": host, "secret": "container-image-pusher-scale" },
        });
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, serde_yaml::to_string(&config)?)
            .context("write the registry config")?;
        let mut child = ChildGuard::spawn(
            "docker-registry",
            Command::new(binary).arg("serve").arg(&config_path),
        );
        child
            .wait_until_http(
                &format!("http://{host}/v2/"),
                Duration::from_secs(30),
                |status| status.is_success(),
            )
            .await
            .map_err(|e| anyhow!(e))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(ScaleRegistry {
            host,
            dir,
            http,
            child,
            access: Mutex::default(),
        })
    }

    /// Pushes the images the marker does not vouch for.
    async fn fill(&self, plans: &[ImagePlan], options: &Options) -> anyhow::Result<RegistrySetup> {
        let marker_path = self.dir.join(MARKER_FILE);
        let stored = std::fs::read(&marker_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Marker>(&bytes).ok())
            .filter(|marker| marker.format == IMAGE_FORMAT_VERSION)
            .filter(|marker| {
                let plans: Vec<ImagePlan> = (0..marker.images).map(ImagePlan::new).collect();
                fingerprint(&plans) == marker.fingerprint
            })
            .map_or(0, |marker| marker.images);
        if stored >= plans.len() {
            progress!(
                options,
                "registry {}: the {} images are already stored ({} in all)",
                self.dir.display(),
                plans.len(),
                stored
            );
            return Ok(RegistrySetup {
                images_stored: stored,
                images_pushed: 0,
                push_seconds: 0.0,
            });
        }
        let started = Instant::now();
        let todo = &plans[stored..];
        progress!(
            options,
            "registry {}: pushing images {}..{} ({} in flight)",
            self.dir.display(),
            stored,
            plans.len(),
            options.push_concurrency
        );
        let mut pushes = futures::stream::iter(todo.iter().map(|plan| self.push(plan)))
            .buffer_unordered(options.push_concurrency.max(1));
        let mut done = 0;
        while let Some(result) = pushes.next().await {
            result?;
            done += 1;
            if done % 1000 == 0 {
                progress!(options, "  {done}/{} pushed", todo.len());
            }
        }
        let marker = Marker {
            format: IMAGE_FORMAT_VERSION,
            images: plans.len(),
            fingerprint: fingerprint(plans),
        };
        std::fs::write(&marker_path, serde_json::to_vec_pretty(&marker)?)
            .context("write the registry marker")?;
        let push_seconds = started.elapsed().as_secs_f64();
        progress!(
            options,
            "  {} images pushed in {push_seconds:.1}s",
            todo.len()
        );
        Ok(RegistrySetup {
            images_stored: plans.len(),
            images_pushed: todo.len(),
            push_seconds,
        })
    }

    async fn push(&self, plan: &ImagePlan) -> anyhow::Result<()> {
        for upload in &plan.uploads {
            match upload {
                Upload::Blob(data) => self.push_blob(&plan.repo, data).await?,
                Upload::Manifest {
                    reference,
                    media_type,
                    body,
                } => {
                    let url = format!(
                        "http://{}/v2/{}/manifests/{reference}",
                        self.host, plan.repo
                    );
                    let response = self
                        .http
                        .put(&url)
                        .header(reqwest::header::CONTENT_TYPE, *media_type)
                        .body(body.clone())
                        .send()
                        .await
                        .with_context(|| format!("PUT {url}"))?;
                    expect(response, reqwest::StatusCode::CREATED, "PUT manifest").await?;
                }
            }
        }
        Ok(())
    }

    /// POST to start an upload, PUT with `?digest=` to finish it, as
    /// `tests/support/registry.rs` does.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> anyhow::Result<()> {
        let url = format!("http://{}/v2/{repo}/blobs/uploads/", self.host);
        let start = self
            .http
            .post(&url)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let start = expect(start, reqwest::StatusCode::ACCEPTED, "start blob upload").await?;
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| anyhow!("blob upload to {repo} answered without Location"))?;
        let mut upload = reqwest::Url::parse(&format!("http://{}/", self.host))?.join(location)?;
        upload
            .query_pairs_mut()
            .append_pair("digest", &sha256_digest(data));
        let finish = self
            .http
            .put(upload)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .with_context(|| format!("finish blob upload to {repo}"))?;
        expect(finish, reqwest::StatusCode::CREATED, "finish blob upload").await?;
        Ok(())
    }

    /// Requests by the pusher (its User-Agent) so far, from the access log:
    /// `127.0.0.1 - - [date] "HEAD /v2/… HTTP/1.1" 200 123 "" "container-image-pusher/…"`.
    fn counts(&self) -> RegistryCounts {
        let logs = self.child.logs();
        let mut access = self.access.lock().unwrap_or_else(PoisonError::into_inner);
        let (offset, counts) = &mut *access;
        let Some(end) = logs.rfind('\n').map(|i| i + 1) else {
            return counts.clone();
        };
        if end <= *offset {
            return counts.clone();
        }
        for line in logs[*offset..end].lines() {
            if !line.contains("container-image-pusher") {
                continue;
            }
            let Some(request) = line.split('"').nth(1) else {
                continue;
            };
            let mut parts = request.split(' ');
            let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
                continue;
            };
            match (
                method,
                path.contains("/manifests/"),
                path.contains("/blobs/"),
            ) {
                ("HEAD", true, _) => counts.head_manifests += 1,
                ("GET", true, _) => counts.get_manifests += 1,
                ("GET", _, true) => counts.get_blobs += 1,
                ("GET", _, _) if path == "/v2/" => counts.get_version_checks += 1,
                _ => counts.other += 1,
            }
        }
        *offset = end;
        counts.clone()
    }
}

async fn expect(
    response: reqwest::Response,
    status: reqwest::StatusCode,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    if response.status() == status {
        return Ok(response);
    }
    let got = response.status();
    let url = response.url().clone();
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: {url} answered {got} (expected {status}): {body}")
}

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

/// Fills the API server with workloads totalling exactly `containers`
/// containers over the images of `plans`.
fn populate(
    api: &KubeApi,
    plans: &[ImagePlan],
    host: &str,
    containers: usize,
    accounts: bool,
) -> DatasetStats {
    let mut generator = Generator {
        accounts,
        api,
        plans,
        host,
        namespaces: (containers / 1000).clamp(1, 200),
        popular: POPULAR_IMAGES.min(plans.len()),
        cursor: 0,
        used: vec![false; plans.len()],
        stats: DatasetStats::default(),
    };
    let mut unit = 0;
    while generator.stats.containers < containers {
        let remaining = containers - generator.stats.containers;
        generator.unit(unit, remaining);
        unit += 1;
    }
    let mut stats = generator.stats;
    stats.namespaces = generator.namespaces;
    let used = generator.used;
    stats.distinct_images = used.iter().filter(|u| **u).count();
    for (plan, _) in plans.iter().zip(&used).filter(|(_, used)| **used) {
        match plan.pin {
            Pin::Tag => stats.tagged_references += 1,
            Pin::Digest | Pin::TagAndDigest => stats.pinned_references += 1,
        }
        if plan.multi_arch {
            stats.multi_arch_images += 1;
        }
    }
    stats
}

struct Generator<'a> {
    /// A service account per Deployment and StatefulSet.
    accounts: bool,
    api: &'a KubeApi,
    plans: &'a [ImagePlan],
    host: &'a str,
    namespaces: usize,
    popular: usize,
    /// Next image handed out round-robin, so every image gets used.
    cursor: usize,
    used: Vec<bool>,
    stats: DatasetStats,
}

/// A container of a template: name and image index.
type Slot = (String, usize);

impl Generator<'_> {
    fn unique_image(&mut self) -> usize {
        let rest = self.plans.len() - self.popular;
        let image = if rest == 0 {
            self.cursor % self.plans.len()
        } else {
            self.popular + self.cursor % rest
        };
        self.cursor += 1;
        image
    }

    fn popular_image(&self, n: usize) -> usize {
        n % self.popular.max(1)
    }

    fn apply<K>(&mut self, object: &K, containers: usize)
    where
        K: k8s_openapi::Resource + Serialize,
    {
        self.stats.api_json_bytes += serde_json::to_vec(object).map_or(0, |v| v.len());
        *self.stats.objects.entry(K::KIND.to_owned()).or_default() += 1;
        self.stats.containers += containers;
        self.api.apply(object);
    }

    fn use_images(&mut self, slots: &[Slot]) {
        for (_, image) in slots {
            self.used[*image] = true;
        }
    }

    /// One workload with its pods; falls back to a bare pod when the
    /// remaining budget is too small.
    fn unit(&mut self, k: usize, remaining: usize) {
        let namespace = format!("team-{:03}", k % self.namespaces);
        let kind = k % 20;
        let (init, regular): (Vec<Slot>, Vec<Slot>) = match kind {
            // Deployments: 2–3 containers, a shared sidecar every fourth, an
            // init container every third.
            0..=9 => {
                let mut regular = vec![("app".to_owned(), self.unique_image())];
                let sidecar = if k % 4 == 0 {
                    ("istio-proxy".to_owned(), self.popular_image(k))
                } else {
                    ("worker".to_owned(), self.unique_image())
                };
                regular.push(sidecar);
                if k % 2 == 1 {
                    regular.push(("exporter".to_owned(), self.unique_image()));
                }
                let init = if k % 3 == 0 {
                    vec![("migrate".to_owned(), self.unique_image())]
                } else {
                    Vec::new()
                };
                (init, regular)
            }
            10..=13 => {
                let mut regular = vec![("db".to_owned(), self.unique_image())];
                if k % 2 == 0 {
                    regular.push(("backup".to_owned(), self.unique_image()));
                }
                (Vec::new(), regular)
            }
            14..=15 => (
                vec![("setup".to_owned(), self.popular_image(k + 1))],
                vec![
                    ("agent".to_owned(), self.unique_image()),
                    ("node-exporter".to_owned(), self.popular_image(k + 2)),
                ],
            ),
            16..=17 => (Vec::new(), vec![("job".to_owned(), self.unique_image())]),
            _ => {
                let mut regular = vec![("main".to_owned(), self.unique_image())];
                if k % 3 == 0 {
                    regular.push(("helper".to_owned(), self.unique_image()));
                }
                (Vec::new(), regular)
            }
        };
        let per_object = init.len() + regular.len();
        let copies = match kind {
            0..=9 => 3,   // Deployment + 2 pods
            10..=13 => 3, // StatefulSet + 2 pods
            14..=15 => 4, // DaemonSet + 3 pods (nodes)
            16..=17 => 3, // CronJob + Job + pod
            _ => 1,
        };
        let name = format!("{}-{k}", ["web", "api", "svc", "app"][k % 4]);
        if per_object * copies > remaining || kind >= 18 {
            // A bare pod, trimmed to the budget.
            let mut slots: Vec<Slot> = init.into_iter().chain(regular).collect();
            slots.truncate(remaining.min(slots.len()).max(1));
            self.use_images(&slots);
            let debug = k % 5 == 0 && slots.len() < remaining;
            let mut spec = self.pod_spec(&[], &slots, None);
            let mut count = slots.len();
            if debug {
                let image = self.popular_image(k + 3);
                self.used[image] = true;
                spec.ephemeral_containers = Some(vec![EphemeralContainer {
                    name: "debugger".to_owned(),
                    image: Some(self.plans[image].reference(self.host)),
                    stdin: Some(true),
                    tty: Some(true),
                    ..EphemeralContainer::default()
                }]);
                self.stats.ephemeral_containers += 1;
                count += 1;
            }
            let pod = self.pod(&format!("{name}-bare"), &namespace, &name, spec, None);
            self.apply(&pod, count);
            return;
        }
        self.use_images(&init);
        self.use_images(&regular);
        self.stats.init_containers += init.len() * copies;
        let labels = labels(&name);
        let account = (self.accounts && kind <= 13).then(|| name.clone());
        let spec = self.pod_spec(&init, &regular, account.as_deref());
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(spec.clone()),
        };
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_owned(), name.clone())])),
            ..LabelSelector::default()
        };
        match kind {
            0..=9 => {
                let deployment = Deployment {
                    metadata: meta(&name, &namespace, labels, None, "kubectl-client-side-apply"),
                    spec: Some(DeploymentSpec {
                        replicas: Some(2),
                        selector,
                        template,
                        strategy: Some(DeploymentStrategy {
                            type_: Some("RollingUpdate".to_owned()),
                            ..DeploymentStrategy::default()
                        }),
                        revision_history_limit: Some(10),
                        progress_deadline_seconds: Some(600),
                        ..DeploymentSpec::default()
                    }),
                    status: Some(DeploymentStatus {
                        replicas: Some(2),
                        ready_replicas: Some(2),
                        available_replicas: Some(2),
                        updated_replicas: Some(2),
                        observed_generation: Some(1),
                        ..DeploymentStatus::default()
                    }),
                };
                self.apply(&deployment, per_object);
                let replica_set = format!("{name}-{:08x}", k * 2_654_435_761 % 0xffff_ffff);
                for replica in 0..2 {
                    let owner = owner("apps/v1", "ReplicaSet", &replica_set, k);
                    let pod_name = format!("{replica_set}-{}", pod_suffix(k, replica));
                    let pod = self.pod(&pod_name, &namespace, &name, spec.clone(), Some(owner));
                    self.apply(&pod, per_object);
                }
            }
            10..=13 => {
                let statefulset = StatefulSet {
                    metadata: meta(&name, &namespace, labels, None, "helm"),
                    spec: Some(StatefulSetSpec {
                        replicas: Some(2),
                        selector,
                        service_name: Some(name.clone()),
                        template,
                        ..StatefulSetSpec::default()
                    }),
                    status: Some(StatefulSetStatus {
                        replicas: 2,
                        ready_replicas: Some(2),
                        current_replicas: Some(2),
                        ..StatefulSetStatus::default()
                    }),
                };
                self.apply(&statefulset, per_object);
                for replica in 0..2 {
                    let owner = owner("apps/v1", "StatefulSet", &name, k);
                    let pod = self.pod(
                        &format!("{name}-{replica}"),
                        &namespace,
                        &name,
                        spec.clone(),
                        Some(owner),
                    );
                    self.apply(&pod, per_object);
                }
            }
            14..=15 => {
                let daemonset = DaemonSet {
                    metadata: meta(&name, &namespace, labels, None, "helm"),
                    spec: Some(DaemonSetSpec {
                        selector,
                        template,
                        ..DaemonSetSpec::default()
                    }),
                    status: Some(DaemonSetStatus {
                        current_number_scheduled: 3,
                        desired_number_scheduled: 3,
                        number_misscheduled: 0,
                        number_ready: 3,
                        ..DaemonSetStatus::default()
                    }),
                };
                self.apply(&daemonset, per_object);
                for node in 0..3 {
                    let owner = owner("apps/v1", "DaemonSet", &name, k);
                    let pod = self.pod(
                        &format!("{name}-{}", pod_suffix(k, node)),
                        &namespace,
                        &name,
                        spec.clone(),
                        Some(owner),
                    );
                    self.apply(&pod, per_object);
                }
            }
            _ => {
                let job_spec = JobSpec {
                    template: PodTemplateSpec {
                        metadata: template.metadata.clone(),
                        spec: Some(PodSpec {
                            restart_policy: Some("OnFailure".to_owned()),
                            ..spec.clone()
                        }),
                    },
                    backoff_limit: Some(6),
                    ..JobSpec::default()
                };
                let cronjob = CronJob {
                    metadata: meta(&name, &namespace, labels.clone(), None, "helm"),
                    spec: Some(CronJobSpec {
                        schedule: format!("{} */2 * * *", k % 60),
                        job_template: JobTemplateSpec {
                            metadata: None,
                            spec: Some(job_spec.clone()),
                        },
                        successful_jobs_history_limit: Some(1),
                        ..CronJobSpec::default()
                    }),
                    status: None,
                };
                self.apply(&cronjob, per_object);
                let job_name = format!("{name}-29{:06}", k % 1_000_000);
                let job = Job {
                    metadata: meta(
                        &job_name,
                        &namespace,
                        labels,
                        Some(owner("batch/v1", "CronJob", &name, k)),
                        "kube-controller-manager",
                    ),
                    spec: Some(job_spec),
                    status: None,
                };
                self.apply(&job, per_object);
                let owner = owner("batch/v1", "Job", &job_name, k);
                let pod = self.pod(
                    &format!("{job_name}-{}", pod_suffix(k, 0)),
                    &namespace,
                    &name,
                    spec,
                    Some(owner),
                );
                self.apply(&pod, per_object);
            }
        }
    }

    fn container(&self, name: &str, image: usize) -> Container {
        Container {
            name: name.to_owned(),
            image: Some(self.plans[image].reference(self.host)),
            image_pull_policy: Some("IfNotPresent".to_owned()),
            ports: Some(vec![ContainerPort {
                container_port: 8080,
                name: Some("http".to_owned()),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            env: Some(vec![
                EnvVar {
                    name: "LOG_LEVEL".to_owned(),
                    value: Some("info".to_owned()),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "POD_NAMESPACE".to_owned(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".to_owned()),
                            field_path: "metadata.namespace".to_owned(),
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                },
            ]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity("100m".to_owned())),
                    ("memory".to_owned(), Quantity("128Mi".to_owned())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    Quantity("256Mi".to_owned()),
                )])),
                ..ResourceRequirements::default()
            }),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/healthz".to_owned()),
                    port: IntOrString::String("http".to_owned()),
                    scheme: Some("HTTP".to_owned()),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(10),
                timeout_seconds: Some(1),
                success_threshold: Some(1),
                failure_threshold: Some(3),
                ..Probe::default()
            }),
            volume_mounts: Some(vec![VolumeMount {
                name: "kube-api-access".to_owned(),
                mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
            termination_message_path: Some("/dev/termination-log".to_owned()),
            termination_message_policy: Some("File".to_owned()),
            ..Container::default()
        }
    }

    fn pod_spec(&self, init: &[Slot], regular: &[Slot], account: Option<&str>) -> PodSpec {
        PodSpec {
            init_containers: (!init.is_empty()).then(|| {
                init.iter()
                    .map(|(name, image)| self.container(name, *image))
                    .collect()
            }),
            containers: regular
                .iter()
                .map(|(name, image)| self.container(name, *image))
                .collect(),
            service_account_name: account.map(str::to_owned),
            restart_policy: Some("Always".to_owned()),
            dns_policy: Some("ClusterFirst".to_owned()),
            scheduler_name: Some("default-scheduler".to_owned()),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }
    }

    /// A running pod with the status the kubelet would report.
    fn pod(
        &self,
        name: &str,
        namespace: &str,
        app: &str,
        spec: PodSpec,
        owner: Option<OwnerReference>,
    ) -> Pod {
        let started = Time(
            k8s_openapi::jiff::Timestamp::from_second(EPOCH_SECONDS).expect("a valid timestamp"),
        );
        let status = |c: &Container| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: c
                .image
                .as_deref()
                .map(|image| {
                    let repo = image.split(['@']).next().unwrap_or(image);
                    let repo = repo.rsplit_once(':').map_or(repo, |(r, _)| r);
                    format!("{repo}@sha256:{}", "0".repeat(64))
                })
                .unwrap_or_default(),
            container_id: Some(format!("containerd://{}", "f".repeat(64))),
            ready: true,
            restart_count: 0,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started.clone()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        };
        let condition = |type_: &str| PodCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            last_transition_time: Some(started.clone()),
            ..PodCondition::default()
        };
        let pod_status = PodStatus {
            phase: Some("Running".to_owned()),
            conditions: Some(
                ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
                    .into_iter()
                    .map(condition)
                    .collect(),
            ),
            container_statuses: Some(spec.containers.iter().map(status).collect()),
            init_container_statuses: spec
                .init_containers
                .as_ref()
                .map(|init| init.iter().map(status).collect()),
            host_ip: Some("10.0.0.11".to_owned()),
            pod_ip: Some("10.244.1.23".to_owned()),
            qos_class: Some("Burstable".to_owned()),
            start_time: Some(started),
            ..PodStatus::default()
        };
        Pod {
            metadata: meta(name, namespace, labels(app), owner, "kubelet"),
            spec: Some(PodSpec {
                node_name: Some(format!("node-{}", name.len() % 7)),
                ..spec
            }),
            status: Some(pod_status),
        }
    }
}

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_owned(), app.to_owned()),
        ("app.kubernetes.io/name".to_owned(), app.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "shop".to_owned()),
    ])
}

fn meta(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
    manager: &str,
) -> ObjectMeta {
    let time = Time(k8s_openapi::jiff::Timestamp::from_second(EPOCH_SECONDS).expect("valid"));
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
            format!("{{\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"{name}\"}}}}"),
        )])),
        owner_references: owner.map(|owner| vec![owner]),
        managed_fields: Some(vec![ManagedFieldsEntry {
            api_version: Some("v1".to_owned()),
            fields_type: Some("FieldsV1".to_owned()),
            fields_v1: Some(FieldsV1(json!({
                "f:metadata": { "f:labels": { ".": {}, "f:app": {} } },
                "f:spec": { "f:containers": { "k:{\"name\":\"app\"}": {
                    ".": {}, "f:image": {}, "f:name": {}, "f:resources": { ".": {} },
                } } },
            }))),
            manager: Some(manager.to_owned()),
            operation: Some("Update".to_owned()),
            time: Some(time),
            ..ManagedFieldsEntry::default()
        }]),
        ..ObjectMeta::default()
    }
}

fn owner(api_version: &str, kind: &str, name: &str, k: usize) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: format!("0a1b2c3d-0000-4000-8000-{k:012x}"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn pod_suffix(k: usize, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = (k * 31 + n) * 2_654_435_761;
    (0..5)
        .map(|_| {
            let c = ALPHABET[x % ALPHABET.len()] as char;
            x /= ALPHABET.len();
            c
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Processes: CPU, memory, idle moments
// ---------------------------------------------------------------------------

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a whole process (all threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// (VmRSS, VmHWM) in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (0, 0);
    };
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    [
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
        fields.next().unwrap_or(0.0),
    ]
}

/// Samples the CPU and RSS of some processes every 100 ms.
struct Monitor {
    pids: Vec<u32>,
    ticks_per_second: f64,
    samples: Arc<Mutex<Vec<ProcSample>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProcSample {
    at: Instant,
    cpu: Vec<u64>,
    rss: Vec<u64>,
}

impl Monitor {
    fn start(pids: Vec<u32>) -> Monitor {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let samples = samples.clone();
            let pids = pids.clone();
            tokio::spawn(async move {
                loop {
                    let sample = ProcSample {
                        at: Instant::now(),
                        cpu: pids.iter().map(|pid| cpu_ticks(*pid)).collect(),
                        rss: pids.iter().map(|pid| memory(*pid).0).collect(),
                    };
                    lock(&samples).push(sample);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Monitor {
            pids,
            ticks_per_second: clock_ticks() as f64,
            samples,
            task,
        }
    }

    fn cpu_seconds(&self) -> Vec<f64> {
        self.pids
            .iter()
            .map(|pid| cpu_ticks(*pid) as f64 / self.ticks_per_second)
            .collect()
    }

    /// Highest RSS of each process between two instants.
    fn max_rss(&self, from: Instant, to: Instant) -> Vec<u64> {
        let samples = lock(&self.samples);
        (0..self.pids.len())
            .map(|p| {
                samples
                    .iter()
                    .filter(|s| s.at >= from && s.at <= to)
                    .map(|s| s.rss[p])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Whether every process used at most ~3% CPU (and at least one clock
    /// tick is allowed) over the last `window`.
    fn quiet(&self, window: Duration) -> bool {
        let samples = lock(&self.samples);
        let Some(last) = samples.last() else {
            return false;
        };
        let Some(first) = samples
            .iter()
            .rev()
            .find(|s| last.at.duration_since(s.at) >= window)
        else {
            return false;
        };
        let allowed = ((window.as_secs_f64() * self.ticks_per_second * 0.03) as u64).max(1);
        first
            .cpu
            .iter()
            .zip(&last.cpu)
            .all(|(a, b)| b.saturating_sub(*a) <= allowed)
    }

    /// Waits for a quiet moment, at most `timeout`; false if none came.
    async fn wait_quiet(&self, window: Duration, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.quiet(window) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The pusher's log
// ---------------------------------------------------------------------------

/// `snapshot taken` and `pushed` lines of the pusher's JSON log.
#[derive(Default)]
struct PusherLog {
    offset: usize,
    snapshots: Vec<SnapshotLine>,
    pushes: Vec<PushLine>,
    warnings: usize,
    first_warnings: Vec<String>,
}

struct SnapshotLine {
    at: f64,
    took: f64,
    series: u64,
}

struct PushLine {
    at: f64,
    series: u64,
    requests: u64,
    stale: u64,
    bytes: u64,
}

impl PusherLog {
    fn poll(&mut self, child: &ChildGuard) {
        let logs = child.logs();
        let Some(end) = logs.rfind('\n').map(|i| i + 1) else {
            return;
        };
        if end <= self.offset {
            return;
        }
        for line in logs[self.offset..end].lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let fields = entry.get("fields").unwrap_or(&entry);
            let at = entry["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0.0, |t| t.timestamp_micros() as f64 / 1e6);
            let number = |key: &str| fields[key].as_u64().unwrap_or(0);
            match fields["message"].as_str() {
                Some("snapshot taken") => self.snapshots.push(SnapshotLine {
                    at,
                    took: fields["took"].as_str().map_or(0.0, parse_debug_duration),
                    series: number("series"),
                }),
                Some("pushed") => self.pushes.push(PushLine {
                    at,
                    series: number("series"),
                    requests: number("requests"),
                    stale: number("stale"),
                    bytes: number("bytes"),
                }),
                _ => {}
            }
            if matches!(entry["level"].as_str(), Some("WARN" | "ERROR")) {
                self.warnings += 1;
                if self.first_warnings.len() < 5 {
                    self.first_warnings.push(line.chars().take(400).collect());
                }
            }
        }
        self.offset = end;
    }
}

/// `Duration`'s Debug format: `1.5s`, `12.3ms`, `45µs`, `7ns`.
fn parse_debug_duration(text: &str) -> f64 {
    let units = [
        ("ms", 1e-3),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ns", 1e-9),
        ("s", 1.0),
    ];
    for (suffix, scale) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().map_or(0.0, |n| n * scale);
        }
    }
    0.0
}

// ---------------------------------------------------------------------------
// Taps
// ---------------------------------------------------------------------------

/// A remote-write proxy in front of the receiver that counts what passes.
struct WriteTap {
    url: String,
    state: Arc<TapState>,
    _server: AbortOnDrop,
}

struct TapState {
    upstream: String,
    http: reqwest::Client,
    totals: Mutex<WireCounts>,
    /// Per sample timestamp (one per push or scrape): what its samples cost,
    /// a request's bytes shared out by sample count.
    by_timestamp: Mutex<BTreeMap<i64, Share>>,
    /// Decompressed bodies by sample timestamp, for the last two pushes.
    keep_bodies: bool,
    bodies: Mutex<BTreeMap<i64, Vec<Vec<u8>>>>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl WriteTap {
    async fn start(upstream: String, keep_bodies: bool) -> anyhow::Result<WriteTap> {
        let state = Arc::new(TapState {
            upstream,
            http: reqwest::Client::builder()
                .timeout(UPSTREAM_TIMEOUT)
                .build()?,
            totals: Mutex::default(),
            by_timestamp: Mutex::default(),
            keep_bodies,
            bodies: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(tap_write)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/api/v1/write", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WriteTap {
            url,
            state,
            _server: AbortOnDrop(server),
        })
    }

    fn totals(&self) -> WireCounts {
        lock(&self.state.totals).clone()
    }

    /// What the samples with timestamps in `[from_ms, to_ms]` cost, and how
    /// many distinct timestamps (pushes or scrapes) that is.
    fn between(&self, from_ms: i64, to_ms: i64) -> (Share, usize) {
        let shares = lock(&self.state.by_timestamp);
        let mut sum = Share::default();
        let mut groups = 0;
        for share in shares.range(from_ms..=to_ms).map(|(_, share)| share) {
            sum.samples += share.samples;
            sum.compressed += share.compressed;
            sum.raw += share.raw;
            sum.requests += share.requests;
            groups += 1;
        }
        (sum, groups)
    }

    /// The decompressed bodies of the newest push whose series add up to `series`.
    fn bodies_of_push(&self, series: u64) -> Vec<Vec<u8>> {
        let bodies = lock(&self.state.bodies);
        bodies
            .values()
            .rev()
            .find(|group| {
                group
                    .iter()
                    .map(Vec::as_slice)
                    .map(count_series)
                    .sum::<u64>()
                    == series
            })
            .cloned()
            .unwrap_or_default()
    }
}

/// The cost of the samples of one timestamp.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Share {
    pub samples: u64,
    pub compressed: f64,
    pub raw: f64,
    pub requests: f64,
}

/// Distinct label sets in some decompressed remote-write bodies.
fn distinct_series(bodies: &[Vec<u8>]) -> usize {
    use prost::Message as _;
    let mut seen = std::collections::HashSet::new();
    for body in bodies {
        if let Ok(request) =
            container_image_pusher::remote_write::proto::WriteRequest::decode(body.as_slice())
        {
            for series in request.timeseries {
                let labels: Vec<(String, String)> = series
                    .labels
                    .into_iter()
                    .map(|l| (l.name, l.value))
                    .collect();
                seen.insert(labels);
            }
        }
    }
    seen.len()
}

fn count_series(raw: &[u8]) -> u64 {
    use prost::Message as _;
    container_image_pusher::remote_write::proto::WriteRequest::decode(raw)
        .map_or(0, |r| r.timeseries.len() as u64)
}

async fn tap_write(
    axum::extract::State(tap): axum::extract::State<Arc<TapState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use prost::Message as _;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .unwrap_or_default();
    let decoded = container_image_pusher::remote_write::proto::WriteRequest::decode(&raw[..]).ok();
    let mut request = tap.http.post(&tap.upstream).body(body.clone());
    for (name, value) in &headers {
        let name = name.as_str();
        if matches!(
            name,
            "content-type"
                | "content-encoding"
                | "user-agent"
                | "x-prometheus-remote-write-version"
        ) {
            request = request.header(name, value.as_bytes());
        }
    }
    let (status, reply) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        }
        Err(e) => (502, Bytes::from(e.to_string())),
    };
    {
        let mut totals = lock(&tap.totals);
        totals.requests += 1;
        totals.compressed_bytes += body.len() as u64;
        totals.raw_bytes += raw.len() as u64;
        if let Some(request) = &decoded {
            totals.series += request.timeseries.len() as u64;
            totals.samples += request
                .timeseries
                .iter()
                .map(|ts| ts.samples.len() as u64)
                .sum::<u64>();
            totals.metadata += request.metadata.len() as u64;
        }
        if !(200..300).contains(&status) {
            totals.failed_requests += 1;
        }
    }
    if let Some(request) = &decoded {
        let mut per_timestamp: BTreeMap<i64, u64> = BTreeMap::new();
        for sample in request.timeseries.iter().flat_map(|ts| &ts.samples) {
            *per_timestamp.entry(sample.timestamp).or_default() += 1;
        }
        let total = per_timestamp.values().sum::<u64>() as f64;
        let mut shares = lock(&tap.by_timestamp);
        for (timestamp, samples) in per_timestamp {
            let part = samples as f64 / total;
            let share = shares.entry(timestamp).or_default();
            share.samples += samples;
            share.compressed += body.len() as f64 * part;
            share.raw += raw.len() as f64 * part;
            share.requests += part;
        }
    }
    if tap.keep_bodies {
        let timestamp = decoded
            .as_ref()
            .and_then(|r| r.timeseries.first()?.samples.first().map(|s| s.timestamp));
        if let Some(timestamp) = timestamp {
            let mut bodies = lock(&tap.bodies);
            bodies.entry(timestamp).or_default().push(raw);
            while bodies.len() > 2 {
                bodies.pop_first();
            }
        }
    }
    axum::response::Response::builder()
        .status(status)
        .body(axum::body::Body::from(reply))
        .expect("a plain response")
}

/// A proxy in front of the exporter's `/metrics` that counts scrapes.
struct ScrapeTap {
    url: String,
    state: Arc<ScrapeState>,
    _server: AbortOnDrop,
}

struct ScrapeState {
    upstream: String,
    http: reqwest::Client,
    /// Successful scrapes: (arrival in Unix ms, bytes, seconds), counted by
    /// arrival because the agent stamps samples with the scrape's start.
    scrapes: Mutex<Vec<(i64, u64, f64)>>,
}

impl ScrapeTap {
    async fn start(upstream: String) -> anyhow::Result<ScrapeTap> {
        let state = Arc::new(ScrapeState {
            upstream,
            http: reqwest::Client::builder()
                .timeout(UPSTREAM_TIMEOUT)
                .build()?,
            scrapes: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(tap_scrape)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ScrapeTap {
            url,
            state,
            _server: AbortOnDrop(server),
        })
    }

    /// (scrapes, bytes, seconds) of the scrapes that arrived in `[from_ms, to_ms]`.
    fn between(&self, from_ms: i64, to_ms: i64) -> (usize, u64, f64) {
        lock(&self.state.scrapes)
            .iter()
            .filter(|(at, _, _)| (from_ms..=to_ms).contains(at))
            .fold((0, 0, 0.0), |(n, bytes, seconds), (_, b, s)| {
                (n + 1, bytes + b, seconds + s)
            })
    }
}

async fn tap_scrape(
    axum::extract::State(tap): axum::extract::State<Arc<ScrapeState>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let started = Instant::now();
    let arrived_ms = chrono::Utc::now().timestamp_millis();
    let mut request = tap.http.get(&tap.upstream);
    for (name, value) in &headers {
        if matches!(
            name.as_str(),
            "accept" | "accept-encoding" | "user-agent" | "x-prometheus-scrape-timeout-seconds"
        ) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let mut builder = axum::response::Response::builder();
    let (status, body) = match request.send().await {
        Ok(response) => {
            for name in ["content-type", "content-encoding"] {
                if let Some(value) = response.headers().get(name) {
                    builder = builder.header(name, value.as_bytes());
                }
            }
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        }
        Err(e) => (502, Bytes::from(e.to_string())),
    };
    if (200..300).contains(&status) {
        lock(&tap.scrapes).push((
            arrived_ms,
            body.len() as u64,
            started.elapsed().as_secs_f64(),
        ));
    }
    builder
        .status(status)
        .body(axum::body::Body::from(body))
        .expect("a plain response")
}

// ---------------------------------------------------------------------------
// Phases
// ---------------------------------------------------------------------------

fn pusher_command(options: &Options, env: &Env, metrics_address: &str) -> Command {
    let mut command = Command::new(&options.pusher);
    command
        .arg("--interval")
        .arg(humantime::format_duration(options.interval).to_string())
        .arg("--cache-duration")
        .arg(humantime::format_duration(options.cache_duration).to_string())
        .args(["--insecure-registry", &env.registry.host])
        .args(["--registry-rps", &options.registry_rps.to_string()])
        .args([
            "--registry-concurrency",
            &options.registry_concurrency.to_string(),
        ])
        .args(["--metrics-address", metrics_address])
        .args(["--log-format", "json"])
        .args(&options.pusher_args)
        .env("KUBECONFIG", &env.kubeconfig)
        // Each push's `pushed` line is at debug level.
        .env(
            "RUST_LOG",
            "info,container_image_pusher::remote_write::sender=debug",
        );
    for var in ["PUSHER_REMOTE_WRITE_URL", "PUSHER_MANIFESTS", "PUSHER_ONCE"] {
        command.env_remove(var);
    }
    command
}

/// One end of a measurement window.
struct Mark {
    at: Instant,
    /// The same moment in Unix milliseconds (sample timestamps are in these).
    wall_ms: i64,
    aligned: bool,
    cpu: Vec<f64>,
    rss: Vec<u64>,
    snapshots: usize,
    pushes: usize,
    registry: RegistryCounts,
    api: ApiCounts,
    wire: WireCounts,
}

/// Collection paths end in a resource's plural; GETs of them are lists.
const COLLECTIONS: &[&str] = &[
    "pods",
    "deployments",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "secrets",
    "serviceaccounts",
];

fn api_counts(api: &KubeApi) -> ApiCounts {
    let mut counts = ApiCounts::default();
    for request in api.requests() {
        let collection = request
            .path
            .rsplit('/')
            .next()
            .is_some_and(|last| COLLECTIONS.contains(&last));
        if request.is_watch() {
            counts.watch += 1;
        } else if request.method == "GET" && collection {
            counts.list += 1;
        } else {
            counts.other += 1;
        }
    }
    counts
}

/// Waits until `done` holds for the pusher's log, failing if the process
/// exits or `timeout` passes.
async fn wait_log(
    child: &mut ChildGuard,
    log: &mut PusherLog,
    timeout: Duration,
    what: &str,
    done: impl Fn(&PusherLog) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        log.poll(child);
        if done(log) {
            return Ok(());
        }
        child.check_running().map_err(|e| anyhow!(e))?;
        if Instant::now() >= deadline {
            let logs = child.logs();
            let tail: String = logs
                .chars()
                .skip(logs.chars().count().saturating_sub(4000))
                .collect();
            bail!("{what} did not happen within {timeout:?}; the pusher's log ends with:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn mark(
    options: &Options,
    monitor: &Monitor,
    child: &ChildGuard,
    log: &mut PusherLog,
    env: &Env,
    tap: &WriteTap,
) -> Mark {
    let aligned = monitor
        .wait_quiet(options.quiet_window(), options.interval * 2)
        .await;
    let at = Instant::now();
    let wall_ms = chrono::Utc::now().timestamp_millis();
    let cpu = monitor.cpu_seconds();
    let rss = monitor.pids.iter().map(|pid| memory(*pid).0).collect();
    log.poll(child);
    Mark {
        at,
        wall_ms,
        aligned,
        cpu,
        rss,
        snapshots: log.snapshots.len(),
        pushes: log.pushes.len(),
        registry: env.registry.counts(),
        api: api_counts(&env.api),
        wire: tap.totals(),
    }
}

/// Costs between two marks of the direct pusher.
fn window(log: &PusherLog, from: &Mark, to: &Mark) -> Window {
    let ticks = to.pushes - from.pushes;
    let cpu = to.cpu[0] - from.cpu[0];
    let pushes = &log.pushes[from.pushes..to.pushes];
    let snapshots = &log.snapshots[from.snapshots.min(to.snapshots)..to.snapshots];
    let mean = |values: Vec<f64>| {
        if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        }
    };
    // Each push follows the newest snapshot taken before it.
    let push_walls = pushes
        .iter()
        .filter_map(|push| {
            let snapshot = log.snapshots.iter().rev().find(|s| s.at <= push.at)?;
            Some(push.at - snapshot.at)
        })
        .collect();
    Window {
        ticks,
        seconds: to.at.duration_since(from.at).as_secs_f64(),
        aligned: from.aligned && to.aligned,
        cpu_seconds: cpu,
        cpu_seconds_per_tick: if ticks > 0 { cpu / ticks as f64 } else { 0.0 },
        snapshot_wall_seconds: mean(snapshots.iter().map(|s| s.took).collect()),
        push_wall_seconds: mean(push_walls),
        registry: to.registry.minus(&from.registry),
        api: to.api.minus(&from.api),
        wire: to.wire.minus(&from.wire),
        series_per_push: pushes.last().map_or(0, |p| p.series as usize),
        requests_per_push: mean(pushes.iter().map(|p| p.requests as f64).collect()),
        stale_per_push: mean(pushes.iter().map(|p| p.stale as f64).collect()),
    }
}

/// The pusher with a remote-write URL: cold tick, warm ticks, tag expiry.
/// Also returns the raw bodies of one warm push, for the snappy measurement.
async fn direct_phase(
    options: &Options,
    env: &Env,
) -> anyhow::Result<(DirectResult, Vec<Vec<u8>>)> {
    progress!(options, "direct push: starting the receiver and the pusher");
    let receiver = receiver::Prometheus::start().await;
    let tap = WriteTap::start(receiver.write_url(), true).await?;
    let address = format!("127.0.0.1:{}", free_port());
    let mut command = pusher_command(options, env, &address);
    command.args(["--remote-write-url", &tap.url]);
    let started = Instant::now();
    let mut child = ChildGuard::spawn("container-image-pusher", &mut command);
    let monitor = Monitor::start(vec![child.id()]);
    let mut log = PusherLog::default();
    let zero = Mark {
        at: started,
        wall_ms: 0,
        aligned: true,
        cpu: vec![0.0],
        rss: vec![0],
        snapshots: 0,
        pushes: 0,
        registry: env.registry.counts(),
        api: api_counts(&env.api),
        wire: tap.totals(),
    };
    let first_timeout = Duration::from_secs(1800).max(options.interval * 4);
    wait_log(
        &mut child,
        &mut log,
        first_timeout,
        "the first push",
        |log| !log.pushes.is_empty(),
    )
    .await?;
    let first_push_seconds = started.elapsed().as_secs_f64();
    progress!(options, "  first push after {first_push_seconds:.1}s");
    let cold_end = mark(options, &monitor, &child, &mut log, env, &tap).await;

    // One warm-up tick, then the measured ones.
    let n = cold_end.pushes;
    let tick_timeout = options.interval * 4 + Duration::from_secs(120);
    wait_log(
        &mut child,
        &mut log,
        tick_timeout,
        "a warm-up tick",
        |log| log.pushes.len() > n,
    )
    .await?;
    let warm_start = mark(options, &monitor, &child, &mut log, env, &tap).await;
    let n = warm_start.pushes;
    let ticks = options.warm_ticks;
    wait_log(
        &mut child,
        &mut log,
        tick_timeout * ticks as u32,
        "the warm ticks",
        |log| log.pushes.len() >= n + ticks,
    )
    .await?;
    let warm_end = mark(options, &monitor, &child, &mut log, env, &tap).await;
    let warm = window(&log, &warm_start, &warm_end);
    progress!(
        options,
        "  warm: {:.3} CPU s/tick, {} HEAD + {} GET over {} ticks",
        warm.cpu_seconds_per_tick,
        warm.registry.heads(),
        warm.registry.gets(),
        warm.ticks
    );
    let warm_max_rss = monitor.max_rss(warm_start.at, warm_end.at)[0];
    let bodies = tap.bodies_of_push(log.pushes.last().map_or(0, |p| p.series + p.stale));
    let distinct_series_per_push = distinct_series(&bodies);

    // Every tag's digest expires within [start, first push] + cache: wait
    // past that, then for two more ticks, the second of which started after it.
    let expiry_at = started + Duration::from_secs_f64(first_push_seconds) + options.cache_duration;
    progress!(
        options,
        "  waiting {:.0}s for the tag cache to expire",
        expiry_at
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    );
    while Instant::now() < expiry_at {
        log.poll(&child);
        child.check_running().map_err(|e| anyhow!(e))?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n = log.pushes.len();
    wait_log(
        &mut child,
        &mut log,
        tick_timeout * 2,
        "the ticks after the tag cache expired",
        |log| log.pushes.len() >= n + 2,
    )
    .await?;
    let expiry_end = mark(options, &monitor, &child, &mut log, env, &tap).await;
    let expiry = window(&log, &warm_end, &expiry_end);
    progress!(
        options,
        "  expiry: {} HEAD + {} GET over {} ticks",
        expiry.registry.heads(),
        expiry.registry.gets(),
        expiry.ticks
    );
    let peak_rss = memory(child.id()).1;

    // Only now, with the measurements done, ask the pusher itself.
    let self_metrics = self_metrics(&format!("http://{address}/metrics")).await;
    let receiver_container_series = container_series(&receiver).await;
    drop(monitor);
    let _ = child.terminate(Duration::from_secs(30)).await;
    let result = DirectResult {
        first_push_seconds,
        cold: window(&log, &zero, &cold_end),
        warm_window_overlapped_expiry: warm_end.at >= started + options.cache_duration,
        warm,
        expiry,
        peak_rss_bytes: peak_rss,
        steady_rss_bytes: warm_end.rss[0],
        warm_max_rss_bytes: warm_max_rss,
        self_metrics,
        receiver_container_series,
        distinct_series_per_push,
        warnings: log.warnings,
        first_warnings: log.first_warnings.clone(),
    };
    Ok((result, bodies))
}

/// The same binary as a scrape exporter, scraped by `kind` of agent that
/// remote-writes to a fresh receiver.
async fn scrape_phase(options: &Options, env: &Env, kind: Agent) -> anyhow::Result<ScrapeResult> {
    progress!(
        options,
        "scrape + {}: starting the receiver, the exporter and the agent",
        kind.name()
    );
    let receiver = receiver::Prometheus::start().await;
    let tap = WriteTap::start(receiver.write_url(), false).await?;
    let address = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let mut exporter = ChildGuard::spawn(
        "container-image-pusher (exporter)",
        &mut pusher_command(options, env, &address),
    );
    let scrape_tap = ScrapeTap::start(format!("http://{address}/metrics")).await?;
    let agent_dir = tempfile::Builder::new().prefix("scale-agent-").tempdir()?;
    let interval = format!("{}ms", options.interval.as_millis());
    let mut config = json!({
        "global": { "scrape_interval": interval, "scrape_timeout": interval },
        "scrape_configs": [{
            "job_name": "container-image-exporter",
            "static_configs": [{ "targets": [scrape_tap.url] }],
            // The exporter's self-metrics are not part of the inventory the
            // pusher pushes: compare the same series.
            "metric_relabel_configs": [{
                "source_labels": ["__name__"],
                "regex": "container_image_pusher_.*",
                "action": "drop",
            }],
        }],
    });
    let config_path = agent_dir.path().join("agent.yml");
    let data_dir = agent_dir.path().join("data");
    let agent_port = free_port();
    let agent_url = format!("http://127.0.0.1:{agent_port}");
    let (mut agent, ready_path) = match kind {
        Agent::Prometheus => {
            config["remote_write"] = json!([{ "url": tap.url }]);
            std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
            let agent = ChildGuard::spawn(
                "prometheus (agent)",
                Command::new(require_binary("prometheus", "prometheus"))
                    .arg("--enable-feature=agent")
                    .arg(format!("--config.file={}", config_path.display()))
                    .arg(format!("--storage.agent.path={}", data_dir.display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{agent_port}"))
                    .arg("--log.level=warn"),
            );
            (agent, "/-/ready")
        }
        Agent::Vmagent => {
            // vmagent takes its remote write from flags, and rejects
            // unknown fields in the scrape config.
            std::fs::write(&config_path, serde_yaml::to_string(&config)?)?;
            let binary = env.vmagent.as_ref().context("vmagent is not measured")?;
            let agent = ChildGuard::spawn(
                "vmagent",
                Command::new(binary)
                    .arg(format!("-promscrape.config={}", config_path.display()))
                    .arg(format!("-remoteWrite.url={}", tap.url))
                    // The receiver (Prometheus 2.42) knows only Prometheus'
                    // protocol; vmagent would otherwise try its own first.
                    .arg("-remoteWrite.forcePromProto=true")
                    .arg(format!("-remoteWrite.tmpDataPath={}", data_dir.display()))
                    // The exporter's /metrics is ~42 MB at 100k containers;
                    // the default limit is 16 MiB (Prometheus has none).
                    .arg("-promscrape.maxScrapeSize=1GiB")
                    .arg(format!("-httpListenAddr=127.0.0.1:{agent_port}"))
                    .arg("-loggerLevel=WARN"),
            );
            (agent, "/health")
        }
    };
    agent
        .wait_until_http(
            &format!("{agent_url}{ready_path}"),
            Duration::from_secs(60),
            |s| s.is_success(),
        )
        .await
        .map_err(|e| anyhow!(e))?;
    let monitor = Monitor::start(vec![exporter.id(), agent.id()]);
    let mut log = PusherLog::default();
    wait_log(
        &mut exporter,
        &mut log,
        Duration::from_secs(1800).max(options.interval * 4),
        "the exporter's first snapshot",
        |log| !log.snapshots.is_empty(),
    )
    .await?;
    let first_snapshot_seconds = started.elapsed().as_secs_f64();
    progress!(
        options,
        "  first snapshot after {first_snapshot_seconds:.1}s"
    );
    // Warm up: two more ticks and two scrapes of the full inventory.
    let since = chrono::Utc::now().timestamp_millis();
    let deadline = Instant::now() + options.interval * 8 + Duration::from_secs(240);
    loop {
        log.poll(&exporter);
        exporter.check_running().map_err(|e| anyhow!(e))?;
        agent.check_running().map_err(|e| anyhow!(e))?;
        if log.snapshots.len() >= 3 && scrape_tap.between(since, i64::MAX).0 >= 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the exporter or the agent did not warm up within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counters_before = agent_counters(&agent_url, kind).await;
    let start = mark(options, &monitor, &exporter, &mut log, env, &tap).await;
    // End at an idle moment after `warm_ticks` ticks and as many scrapes.
    let deadline = Instant::now() + options.interval * (options.warm_ticks as u32 * 3 + 4);
    let end = loop {
        tokio::time::sleep(options.interval / 4).await;
        log.poll(&exporter);
        exporter.check_running().map_err(|e| anyhow!(e))?;
        agent.check_running().map_err(|e| anyhow!(e))?;
        let ticks = log.snapshots.len() - start.snapshots;
        let scrapes = scrape_tap.between(start.wall_ms, i64::MAX).0;
        if ticks < options.warm_ticks || scrapes < options.warm_ticks {
            if Instant::now() > deadline {
                bail!("only {ticks} ticks and {scrapes} scrapes in the window");
            }
            continue;
        }
        let candidate = mark(options, &monitor, &exporter, &mut log, env, &tap).await;
        let ticks = candidate.snapshots - start.snapshots;
        let scrapes = scrape_tap.between(start.wall_ms, candidate.wall_ms).0;
        if ticks == scrapes || Instant::now() > deadline {
            break candidate;
        }
    };
    // The Prometheus agent sends a partial batch only after its
    // batch_send_deadline (5s), vmagent after its flush interval (1s): give the window's samples time to arrive, then count the
    // samples by their (scrape) timestamps, not by arrival.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (share, scrape_groups) = tap.between(start.wall_ms, end.wall_ms);
    let counters_after = agent_counters(&agent_url, kind).await;
    let ticks = end.snapshots - start.snapshots;
    let (scrapes, scraped_bytes, scraped_seconds) = scrape_tap.between(start.wall_ms, end.wall_ms);
    let intervals = ticks.max(1);
    let per = |value: f64| value / intervals as f64;
    let max_rss = monitor.max_rss(start.at, end.at);
    let cost = |p: usize, pid: u32| ProcessCost {
        cpu_seconds_per_interval: per(end.cpu[p] - start.cpu[p]),
        steady_rss_bytes: end.rss[p],
        max_rss_bytes: max_rss[p],
        peak_rss_bytes: memory(pid).1,
    };
    let wire = end.wire.minus(&start.wire);
    let agent_metrics: BTreeMap<String, f64> = counters_after
        .iter()
        .map(|(name, after)| {
            let before = counters_before.get(name).copied().unwrap_or(0.0);
            (name.clone(), after - before)
        })
        .collect();
    let per_scrape = |value: f64| value / scrape_groups.max(1) as f64;
    let samples_per_scrape = per_scrape(share.samples as f64);
    // The agent's own count, as bytes per sample it sent times the samples
    // of one scrape (its counters also move after the window).
    let (bytes_counters, samples_counter) = kind.sent_counters();
    let agent_bytes_per_scrape = match (
        bytes_counters
            .iter()
            .find_map(|name| agent_metrics.get(*name)),
        agent_metrics.get(samples_counter),
    ) {
        (Some(bytes), Some(samples)) if *samples > 0.0 => bytes / samples * samples_per_scrape,
        _ => f64::NAN,
    };
    let result = ScrapeResult {
        agent_kind: kind,
        first_snapshot_seconds,
        window_seconds: end.at.duration_since(start.at).as_secs_f64(),
        aligned: start.aligned && end.aligned,
        intervals,
        ticks,
        scrapes,
        exporter: cost(0, exporter.id()),
        agent: cost(1, agent.id()),
        scrape_bytes: scraped_bytes as f64 / scrapes.max(1) as f64,
        scrape_seconds: scraped_seconds / scrapes.max(1) as f64,
        scrape_groups,
        samples_per_scrape,
        wire_compressed_bytes_per_interval: per_scrape(share.compressed),
        wire_raw_bytes_per_interval: per_scrape(share.raw),
        wire_requests_per_interval: per_scrape(share.requests),
        agent_bytes_per_scrape,
        wire,
        agent_metrics,
        receiver_container_series: container_series(&receiver).await,
    };
    progress!(
        options,
        "  exporter {:.3} + {} {:.3} CPU s/interval over {} ticks and {} scrapes",
        result.exporter.cpu_seconds_per_interval,
        kind.name(),
        result.agent.cpu_seconds_per_interval,
        ticks,
        scrapes
    );
    drop(monitor);
    let _ = agent.terminate(Duration::from_secs(30)).await;
    let _ = exporter.terminate(Duration::from_secs(30)).await;
    Ok(result)
}

/// `count(container_image_container_info)` in a receiver, after giving the
/// last writes a moment to land.
async fn container_series(receiver: &receiver::Prometheus) -> f64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    receiver
        .try_query("count(container_image_container_info)")
        .await
        .ok()
        .and_then(|samples| samples.first().map(|s| s.value))
        .unwrap_or(0.0)
}

async fn fetch_text(url: &str) -> String {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("a reqwest client");
    match client.get(url).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Sum of the samples of `name` in a text exposition whose labels contain
/// every one of `matchers` (e.g. `method="HEAD"`).
fn metric_sum(text: &str, name: &str, matchers: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| matchers.iter().all(|m| line.contains(m)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn self_metrics(url: &str) -> SelfMetrics {
    let text = fetch_text(url).await;
    SelfMetrics {
        snapshot_series: metric_sum(&text, "container_image_pusher_snapshot_series", &[]),
        last_success_timestamp_seconds: metric_sum(
            &text,
            "container_image_pusher_last_success_timestamp_seconds",
            &[],
        ),
        bytes_sent_total: metric_sum(&text, "container_image_pusher_bytes_sent_total", &[]),
        registry_requests_head: metric_sum(
            &text,
            "container_image_pusher_registry_requests_total",
            &["method=\"HEAD\""],
        ),
        registry_requests_get: metric_sum(
            &text,
            "container_image_pusher_registry_requests_total",
            &["method=\"GET\""],
        ),
    }
}

/// The agent's remote-write and scrape counters that exist in this version.
async fn agent_counters(url: &str, kind: Agent) -> BTreeMap<String, f64> {
    let text = fetch_text(&format!("{url}/metrics")).await;
    kind.counters()
        .iter()
        .copied()
        .filter(|name| {
            text.lines()
                .any(|l| l.starts_with(name) && !l.starts_with('#'))
        })
        .map(|name| (name.to_owned(), metric_sum(&text, name, &[])))
        .collect()
}

/// snappy alone on one push's bytes, in the same batches.
fn snappy_cost(bodies: &[Vec<u8>]) -> SnappyResult {
    let mut encoder = snap::raw::Encoder::new();
    let mut compressed = 0;
    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        compressed = 0;
        for body in bodies {
            compressed += encoder.compress_vec(body).map_or(0, |c| c.len() as u64);
        }
        times.push(started.elapsed().as_secs_f64());
    }
    SnappyResult {
        requests: bodies.len(),
        raw_bytes: bodies.iter().map(|b| b.len() as u64).sum(),
        compressed_bytes: compressed,
        seconds: median(&times),
    }
}

// ---------------------------------------------------------------------------
// Machine
// ---------------------------------------------------------------------------

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let version = |binary: &str, package: &str| {
            Command::new(require_binary(binary, package))
                .arg("--version")
                .output()
                .map(|out| {
                    let text = String::from_utf8_lossy(&out.stdout).into_owned()
                        + &String::from_utf8_lossy(&out.stderr);
                    text.lines().next().unwrap_or_default().trim().to_owned()
                })
                .unwrap_or_default()
        };
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            mem_total_bytes: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            clock_ticks_per_second: clock_ticks(),
            prometheus_version: version("prometheus", "prometheus"),
            registry_version: version("docker-registry", "docker-registry"),
            harness_optimized: !cfg!(debug_assertions),
            source: source_revision(),
        }
    }
}

fn source_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_owned();
    };
    let changed = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .map_or(0, |out| out.lines().count());
    if changed == 0 {
        head
    } else {
        format!("{head} + {changed} changed file(s) under src/")
    }
}

// ---------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------

pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The numbers the table shows, each the median over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub first_push_seconds: f64,
    pub cold_cpu_seconds: f64,
    pub warm_cpu_seconds_per_tick: f64,
    pub warm_snapshot_wall_seconds: f64,
    pub warm_push_wall_seconds: f64,
    pub peak_rss_mb: f64,
    pub steady_rss_mb: f64,
    pub warm_max_rss_mb: f64,
    pub series_per_push: f64,
    pub requests_per_push: f64,
    pub compressed_bytes_per_push: f64,
    pub raw_bytes_per_push: f64,
    pub snappy_seconds: f64,
    pub cold_head: f64,
    pub cold_get: f64,
    pub cold_version_checks: f64,
    pub warm_head_per_tick: f64,
    pub warm_get_per_tick: f64,
    pub expiry_head: f64,
    pub expiry_get: f64,
    pub expiry_version_checks: f64,
    pub warm_version_checks_per_tick: f64,
    pub warm_other_per_tick: f64,
    pub head_per_tagged_reference: f64,
    pub api_lists_per_tick: f64,
    pub api_watches_per_tick: f64,
    pub api_other_per_tick: f64,
    /// Exporter + Prometheus agent.
    pub scrape: Option<ScrapeSummary>,
    /// Exporter + vmagent.
    pub vmagent: Option<ScrapeSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScrapeSummary {
    pub agent_kind: Agent,
    pub exporter_cpu_seconds_per_interval: f64,
    pub agent_cpu_seconds_per_interval: f64,
    pub exporter_steady_rss_mb: f64,
    pub agent_steady_rss_mb: f64,
    pub exporter_peak_rss_mb: f64,
    pub agent_peak_rss_mb: f64,
    pub scrape_mb: f64,
    pub scrape_seconds: f64,
    pub wire_compressed_bytes_per_interval: f64,
    pub wire_raw_bytes_per_interval: f64,
    pub agent_bytes_metric_per_interval: f64,
    pub samples_per_scrape: f64,
    pub requests_per_scrape: f64,
    pub cpu_ratio: f64,
    pub memory_ratio: f64,
    pub bytes_ratio: f64,
}

impl Report {
    pub fn summary(&self) -> Summary {
        let m =
            |f: &dyn Fn(&RunResult) -> f64| median(&self.runs.iter().map(f).collect::<Vec<_>>());
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let per_tick = |w: &Window, v: f64| {
            if w.ticks > 0 {
                v / w.ticks as f64
            } else {
                f64::NAN
            }
        };
        let tagged = self.dataset.tagged_references.max(1) as f64;
        let scrape = self.scrape_summary(Agent::Prometheus, |r| r.scrape.as_ref());
        let vmagent = self.scrape_summary(Agent::Vmagent, |r| r.vmagent.as_ref());
        Summary {
            runs: self.runs.len(),
            first_push_seconds: m(&|r| r.direct.first_push_seconds),
            cold_cpu_seconds: m(&|r| r.direct.cold.cpu_seconds),
            warm_cpu_seconds_per_tick: m(&|r| r.direct.warm.cpu_seconds_per_tick),
            warm_snapshot_wall_seconds: m(&|r| r.direct.warm.snapshot_wall_seconds),
            warm_push_wall_seconds: m(&|r| r.direct.warm.push_wall_seconds),
            peak_rss_mb: m(&|r| mb(r.direct.peak_rss_bytes)),
            steady_rss_mb: m(&|r| mb(r.direct.steady_rss_bytes)),
            warm_max_rss_mb: m(&|r| mb(r.direct.warm_max_rss_bytes)),
            series_per_push: m(&|r| r.direct.warm.series_per_push as f64),
            requests_per_push: m(&|r| per_tick(&r.direct.warm, r.direct.warm.wire.requests as f64)),
            compressed_bytes_per_push: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.wire.compressed_bytes as f64)
            }),
            raw_bytes_per_push: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.wire.raw_bytes as f64)
            }),
            snappy_seconds: m(&|r| r.snappy.as_ref().map_or(f64::NAN, |s| s.seconds)),
            cold_head: m(&|r| r.direct.cold.registry.heads() as f64),
            cold_get: m(&|r| r.direct.cold.registry.gets() as f64),
            cold_version_checks: m(&|r| r.direct.cold.registry.get_version_checks as f64),
            warm_head_per_tick: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.registry.heads() as f64)
            }),
            warm_get_per_tick: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.registry.gets() as f64)
            }),
            expiry_head: m(&|r| r.direct.expiry.registry.heads() as f64),
            expiry_get: m(&|r| r.direct.expiry.registry.gets() as f64),
            expiry_version_checks: m(&|r| r.direct.expiry.registry.get_version_checks as f64),
            warm_version_checks_per_tick: m(&|r| {
                per_tick(
                    &r.direct.warm,
                    r.direct.warm.registry.get_version_checks as f64,
                )
            }),
            warm_other_per_tick: m(&|r| {
                per_tick(&r.direct.warm, r.direct.warm.registry.other as f64)
            }),
            head_per_tagged_reference: m(&|r| r.direct.expiry.registry.heads() as f64 / tagged),
            api_lists_per_tick: m(&|r| per_tick(&r.direct.warm, r.direct.warm.api.list as f64)),
            api_watches_per_tick: m(&|r| per_tick(&r.direct.warm, r.direct.warm.api.watch as f64)),
            api_other_per_tick: m(&|r| per_tick(&r.direct.warm, r.direct.warm.api.other as f64)),
            scrape,
            vmagent,
        }
    }

    /// Medians over the runs of one alternative, if every run measured it.
    fn scrape_summary(
        &self,
        kind: Agent,
        pick: fn(&RunResult) -> Option<&ScrapeResult>,
    ) -> Option<ScrapeSummary> {
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let per_tick = |w: &Window, v: f64| {
            if w.ticks > 0 {
                v / w.ticks as f64
            } else {
                f64::NAN
            }
        };
        self.runs.iter().all(|r| pick(r).is_some()).then(|| {
            let s = |f: &dyn Fn(&ScrapeResult, &DirectResult) -> f64| {
                median(
                    &self
                        .runs
                        .iter()
                        .filter_map(|r| Some(f(pick(r)?, &r.direct)))
                        .collect::<Vec<_>>(),
                )
            };
            ScrapeSummary {
                agent_kind: kind,
                exporter_cpu_seconds_per_interval: s(&|s, _| s.exporter.cpu_seconds_per_interval),
                agent_cpu_seconds_per_interval: s(&|s, _| s.agent.cpu_seconds_per_interval),
                exporter_steady_rss_mb: s(&|s, _| mb(s.exporter.steady_rss_bytes)),
                agent_steady_rss_mb: s(&|s, _| mb(s.agent.steady_rss_bytes)),
                exporter_peak_rss_mb: s(&|s, _| mb(s.exporter.peak_rss_bytes)),
                agent_peak_rss_mb: s(&|s, _| mb(s.agent.peak_rss_bytes)),
                scrape_mb: s(&|s, _| s.scrape_bytes / 1e6),
                scrape_seconds: s(&|s, _| s.scrape_seconds),
                wire_compressed_bytes_per_interval: s(&|s, _| s.wire_compressed_bytes_per_interval),
                wire_raw_bytes_per_interval: s(&|s, _| s.wire_raw_bytes_per_interval),
                agent_bytes_metric_per_interval: s(&|s, _| s.agent_bytes_per_scrape),
                samples_per_scrape: s(&|s, _| s.samples_per_scrape),
                requests_per_scrape: s(&|s, _| s.wire_requests_per_interval),
                cpu_ratio: s(&|s, d| {
                    d.warm.cpu_seconds_per_tick
                        / (s.exporter.cpu_seconds_per_interval + s.agent.cpu_seconds_per_interval)
                }),
                memory_ratio: s(&|s, d| {
                    d.steady_rss_bytes as f64
                        / (s.exporter.steady_rss_bytes + s.agent.steady_rss_bytes) as f64
                }),
                bytes_ratio: s(&|s, d| {
                    per_tick(&d.warm, d.warm.wire.compressed_bytes as f64)
                        / s.wire_compressed_bytes_per_interval
                }),
            }
        })
    }

    /// The results as markdown: the setup, then one table per question.
    pub fn markdown(&self) -> String {
        let s = self.summary();
        let d = &self.dataset;
        let o = &self.options;
        let mut out = String::new();
        let runs = if s.runs == 1 {
            "1 run".to_owned()
        } else {
            format!("median of {} runs", s.runs)
        };
        let objects = d
            .objects
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "{} containers ({} init, {} ephemeral) over {} images: {} referenced, {} by tag and {} \
             pinned by digest, {} multi-arch. {} objects ({objects}) in {} namespaces, {:.1} MB of \
             JSON per full list. Interval {}, cache duration {}, {} warm ticks per window, {runs}.",
            d.containers,
            d.init_containers,
            d.ephemeral_containers,
            o.images,
            d.distinct_images,
            d.tagged_references,
            d.pinned_references,
            d.multi_arch_images,
            d.objects.values().sum::<usize>(),
            d.namespaces,
            d.api_json_bytes as f64 / 1e6,
            humantime::format_duration(o.interval),
            humantime::format_duration(o.cache_duration),
            o.warm_ticks,
        );
        let _ = writeln!(
            out,
            "\nService accounts: {}. Pusher flags: `--interval {} --cache-duration {} \
             --registry-rps {} --registry-concurrency {}{}`.",
            if o.service_account_per_workload {
                "one per Deployment and StatefulSet (their pods use it too), `default` for the rest"
            } else {
                "`default` everywhere"
            },
            humantime::format_duration(o.interval),
            humantime::format_duration(o.cache_duration),
            o.registry_rps,
            o.registry_concurrency,
            o.pusher_args
                .iter()
                .map(|a| format!(" {a}"))
                .collect::<String>(),
        );
        let loads = self
            .runs
            .iter()
            .map(|r| format!("{:.2}→{:.2}", r.load_before[0], r.load_after[0]))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "\nMachine: {} × {}, {:.1} GB RAM, Linux {}; 1-minute load before→after each run: {loads}. \
             Source: {}.\n",
            self.machine.nproc,
            self.machine.cpu_model,
            self.machine.mem_total_bytes as f64 / 1e9,
            self.machine.kernel,
            self.machine.source,
        );

        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        let mut rows: Vec<[String; 3]> = Vec::new();
        let mut row = |name: &str, value: String, target: String| {
            rows.push([name.to_owned(), value, target]);
        };
        row(
            "Time to first complete push",
            secs(s.first_push_seconds),
            String::new(),
        );
        row(
            "CPU until then (startup + cold tick)",
            secs(s.cold_cpu_seconds),
            String::new(),
        );
        row(
            "CPU per warm tick (whole process)",
            secs(s.warm_cpu_seconds_per_tick),
            format!("≤ 0.5 s: {}", verdict(s.warm_cpu_seconds_per_tick <= 0.5)),
        );
        row(
            "Wall time of a warm tick: snapshot, then push",
            format!(
                "{} + {}",
                secs(s.warm_snapshot_wall_seconds),
                secs(s.warm_push_wall_seconds)
            ),
            String::new(),
        );
        row(
            "Steady RSS (between warm ticks)",
            format!("{:.0} MB", s.steady_rss_mb),
            format!("≤ 150 MB: {}", verdict(s.steady_rss_mb <= 150.0)),
        );
        row(
            "Highest RSS in warm ticks / peak (VmHWM)",
            format!("{:.0} MB / {:.0} MB", s.warm_max_rss_mb, s.peak_rss_mb),
            String::new(),
        );
        row(
            "Series / requests per push",
            format!("{:.0} / {:.0}", s.series_per_push, s.requests_per_push),
            String::new(),
        );
        row(
            "Bytes per push: raw → compressed",
            format!(
                "{} → {}",
                megabytes(s.raw_bytes_per_push),
                megabytes(s.compressed_bytes_per_push)
            ),
            String::new(),
        );
        row(
            "snappy alone on one push's bytes (same batches)",
            secs(s.snappy_seconds),
            String::new(),
        );
        row(
            "Registry requests in the cold tick: HEAD / GET / `GET /v2/`",
            format!(
                "{:.0} / {:.0} / {:.0}",
                s.cold_head, s.cold_get, s.cold_version_checks
            ),
            String::new(),
        );
        row(
            "Registry requests per warm tick: HEAD / GET / `GET /v2/`",
            format!(
                "{:.1} / {:.1} / {:.1}",
                s.warm_head_per_tick, s.warm_get_per_tick, s.warm_version_checks_per_tick
            ),
            format!(
                "none: {}",
                verdict(
                    s.warm_head_per_tick == 0.0
                        && s.warm_get_per_tick == 0.0
                        && s.warm_version_checks_per_tick == 0.0
                        && s.warm_other_per_tick == 0.0
                )
            ),
        );
        row(
            "Registry requests when the tag cache expires: HEAD / GET / `GET /v2/`",
            format!(
                "{:.0} / {:.0} / {:.0}",
                s.expiry_head, s.expiry_get, s.expiry_version_checks
            ),
            format!(
                "one HEAD per tag ({}), none per pinned digest, no GET of a manifest or blob: {}",
                d.tagged_references,
                verdict(s.head_per_tagged_reference == 1.0 && s.expiry_get == 0.0)
            ),
        );
        row(
            "API requests per warm tick: list / watch / other",
            format!(
                "{:.1} / {:.1} / {:.1}",
                s.api_lists_per_tick, s.api_watches_per_tick, s.api_other_per_tick
            ),
            String::new(),
        );
        let _ = writeln!(out, "| Direct push | {runs} | Target |");
        let _ = writeln!(out, "| --- | ---: | --- |");
        for [name, value, target] in rows {
            let _ = writeln!(out, "| {name} | {value} | {target} |");
        }

        for a in [&s.scrape, &s.vmagent].into_iter().flatten() {
            alternative_table(&mut out, &s, a);
        }
        out
    }
}

/// Direct push against one scrape + agent alternative, per interval.
fn alternative_table(out: &mut String, s: &Summary, a: &ScrapeSummary) {
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let agent = a.agent_kind.name();
    let alt_cpu = a.exporter_cpu_seconds_per_interval + a.agent_cpu_seconds_per_interval;
    let alt_rss = a.exporter_steady_rss_mb + a.agent_steady_rss_mb;
    let alt_peak = a.exporter_peak_rss_mb + a.agent_peak_rss_mb;
    let _ = writeln!(
        out,
        "\n| Per interval | Direct push | Exporter + {agent} | Ratio | Target |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- |");
    let _ = writeln!(
        out,
        "| CPU | {} | {} + {} = {} | {:.2}× | ≤ 0.25×: {} |",
        secs(s.warm_cpu_seconds_per_tick),
        secs(a.exporter_cpu_seconds_per_interval),
        secs(a.agent_cpu_seconds_per_interval),
        secs(alt_cpu),
        a.cpu_ratio,
        verdict(a.cpu_ratio <= 0.25)
    );
    let _ = writeln!(
        out,
        "| Steady RSS | {:.0} MB | {:.0} MB + {:.0} MB = {alt_rss:.0} MB | {:.2}× | ≤ 0.15×: {} |",
        s.steady_rss_mb,
        a.exporter_steady_rss_mb,
        a.agent_steady_rss_mb,
        a.memory_ratio,
        verdict(a.memory_ratio <= 0.15)
    );
    let _ = writeln!(
        out,
        "| Peak RSS (VmHWM) | {:.0} MB | {:.0} MB + {:.0} MB = {alt_peak:.0} MB | {:.2}× | |",
        s.peak_rss_mb,
        a.exporter_peak_rss_mb,
        a.agent_peak_rss_mb,
        s.peak_rss_mb / alt_peak
    );
    let _ = writeln!(
        out,
        "| Samples sent | {:.0} | {:.0} | | |",
        s.series_per_push, a.samples_per_scrape
    );
    let _ = writeln!(
        out,
        "| Remote-write requests | {:.0} | {:.0} | | |",
        s.requests_per_push, a.requests_per_scrape
    );
    let _ = writeln!(
        out,
        "| Bytes on the wire, compressed | {} | {} | {:.2}× | ≤ 1×: {} |",
        megabytes(s.compressed_bytes_per_push),
        megabytes(a.wire_compressed_bytes_per_interval),
        a.bytes_ratio,
        verdict(a.bytes_ratio <= 1.0)
    );
    let _ = writeln!(
        out,
        "| Bytes on the wire, raw protobuf | {} | {} | {:.2}× | |",
        megabytes(s.raw_bytes_per_push),
        megabytes(a.wire_raw_bytes_per_interval),
        s.raw_bytes_per_push / a.wire_raw_bytes_per_interval
    );
    let _ = writeln!(
        out,
        "| Agent's own count (`{}`) | | {} | | |",
        a.agent_kind.sent_counters().0[0],
        megabytes(a.agent_bytes_metric_per_interval)
    );
    let _ = writeln!(
        out,
        "| Scrape of the exporter's /metrics | | {}, {} | | |",
        megabytes(a.scrape_mb * 1e6),
        secs(a.scrape_seconds)
    );
}

/// Seconds, in ms below one second.
fn secs(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value < 0.01 {
        format!("{:.1} ms", value * 1e3)
    } else if value < 1.0 {
        format!("{:.0} ms", value * 1e3)
    } else {
        format!("{value:.2} s")
    }
}

fn megabytes(bytes: f64) -> String {
    if !bytes.is_finite() {
        "n/a".to_owned()
    } else if bytes < 1e6 {
        format!("{:.0} kB", bytes / 1e3)
    } else {
        format!("{:.2} MB", bytes / 1e6)
    }
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// Measures what the pusher costs on a big (generated) cluster, and what a
/// scrape exporter plus a Prometheus agent, or plus vmagent, cost on the
/// same data.
#[derive(Debug, clap::Parser)]
#[command(name = "scale")]
struct Cli {
    /// Containers in the generated cluster.
    #[arg(long, default_value_t = 100_000)]
    containers: usize,
    /// Distinct images they run.
    #[arg(long, default_value_t = 10_000)]
    images: usize,
    /// --interval of the pusher and scrape interval of the agent.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// --cache-duration of the pusher; the harness waits for it to expire
    /// to count the refresh requests.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    cache_duration: Duration,
    /// Warm ticks per measurement window.
    #[arg(long, default_value_t = 4)]
    warm_ticks: usize,
    /// Measurement runs (the table shows medians).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Registry storage, kept between invocations [default: TARGET_DIR/scale-registry].
    #[arg(long)]
    registry_dir: Option<PathBuf>,
    /// The pusher binary [default: TARGET_DIR/release/container-image-pusher,
    /// built first with `cargo build --release` when run through cargo].
    #[arg(long)]
    pusher: Option<PathBuf>,
    /// Do not run `cargo build --release` first.
    #[arg(long)]
    no_build: bool,
    /// --registry-rps of the pusher.
    #[arg(long, default_value_t = 1000.0)]
    registry_rps: f64,
    /// --registry-concurrency of the pusher.
    #[arg(long, default_value_t = 10)]
    registry_concurrency: u32,
    /// Skip both scrape exporter + agent comparisons.
    #[arg(long)]
    skip_alternative: bool,
    /// Skip the scrape exporter + vmagent comparison (vmagent comes from
    /// `scripts/fetch-test-peers`).
    #[arg(long)]
    skip_vmagent: bool,
    /// Leave every workload on the `default` service account (by default
    /// each Deployment and StatefulSet has its own, as Helm charts do).
    #[arg(long)]
    shared_service_account: bool,
    /// Extra argument for the pusher, repeatable: `--pusher-arg=--pull-secrets=false`.
    #[arg(long = "pusher-arg", value_name = "ARG", allow_hyphen_values = true)]
    pusher_args: Vec<String>,
    /// Write the raw results here as JSON.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// `target/` (or `$CARGO_TARGET_DIR`): this example runs from
/// `TARGET/PROFILE/examples/scale`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn main() -> std::process::ExitCode {
    use clap::Parser as _;
    let cli = Cli::parse();
    let target = target_dir();
    let pusher = match &cli.pusher {
        Some(path) => path.clone(),
        None => {
            if !cli.no_build {
                if let Some(cargo) = std::env::var_os("CARGO") {
                    eprintln!("[scale] cargo build --release --bin container-image-pusher");
                    let status = Command::new(cargo)
                        .args(["build", "--release", "--bin", "container-image-pusher"])
                        .current_dir(env!("CARGO_MANIFEST_DIR"))
                        .status();
                    if !status.is_ok_and(|s| s.success()) {
                        eprintln!("error: `cargo build --release` failed; fix the build or pass --pusher PATH");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            }
            target.join("release").join("container-image-pusher")
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("[scale] warning: the harness is a debug build; its test servers will be slow (use --release)");
    }
    let mut options = Options::new(
        pusher,
        cli.registry_dir
            .clone()
            .unwrap_or_else(|| target.join("scale-registry")),
    );
    options.containers = cli.containers;
    options.images = cli.images;
    options.interval = cli.interval;
    options.cache_duration = cli.cache_duration;
    options.warm_ticks = cli.warm_ticks;
    options.runs = cli.runs;
    options.registry_rps = cli.registry_rps;
    options.registry_concurrency = cli.registry_concurrency;
    options.alternative = !cli.skip_alternative;
    options.vmagent = !cli.skip_alternative && !cli.skip_vmagent;
    options.service_account_per_workload = !cli.shared_service_account;
    options.pusher_args = cli.pusher_args.clone();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = match runtime.block_on(run(&options)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(path) = &cli.json {
        let json = json!({ "report": report, "summary": report.summary() });
        if let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap_or_default()) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    println!("{}", report.markdown());
    std::process::ExitCode::SUCCESS
}
