//! What to measure, and where the binaries and images are.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

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
    /// Make three in ten Deployments Argo Rollouts and three in ten
    /// OpenKruise CloneSets (same containers and images), install their
    /// CRDs, and pass the pusher `--workload-kind` for both presets.
    pub custom_kinds: bool,
    /// Sign every image (a cosign `.sig` per digest, see `signing`) and pass
    /// the pusher the key (`--verify-key`), to measure what verification costs.
    pub verify: bool,
    /// Wait for the tag cache to expire and count the refresh requests.
    pub expiry: bool,
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
            custom_kinds: false,
            verify: false,
            expiry: true,
            pusher_args: Vec::new(),
            push_concurrency: 32,
            progress: true,
        }
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
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

    pub(crate) fn quiet_window(&self) -> Duration {
        (self.interval / 5).clamp(Duration::from_millis(150), Duration::from_millis(600))
    }
}

pub(crate) fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
