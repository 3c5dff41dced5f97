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
//! - the Kubernetes API test server (`tests/it/support/kube_api.rs`), serving a
//!   generated cluster: Deployments (2–3 containers, some with an init
//!   container) and their ReplicaSet-owned Pods (with `--custom-kinds`,
//!   three in ten of them Argo Rollouts and three in ten OpenKruise
//!   CloneSets, whose CRDs the server then serves), StatefulSets, DaemonSets and
//!   their Pods, CronJobs with a Job and its Pod, and bare Pods (some with an
//!   ephemeral container), with realistic metadata, specs and pod status;
//! - Debian's `docker-registry` holding the images, pushed once into
//!   `--registry-dir` (default `target/scale-registry`) and reused by later
//!   runs: a marker file records how many images are there;
//! - Debian's `prometheus` 2.42 as the remote-write receiver (and, in agent
//!   mode, as the scraper of the first alternative);
//! - `vmagent` from Debian sid's `victoria-metrics` package, fetched by
//!   `scripts/fetch-test-peers` (`tests/it/support/peers.rs`), as the scraper
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
//! The harness is this folder: `options` (what to measure), `images` and
//! `registry` (the generated images and the registry holding them),
//! `cluster` (the generated cluster the API test server serves), `taps`
//! (the counters in the data paths), `measure` and `pusher_log` (CPU,
//! memory, idle moments, tick ends), `phase` (what both phases share),
//! `direct` and `exporter` (the pusher pushing, and the scrape exporter plus
//! an agent), `results` and `report` (the numbers and the table), and
//! `support`, the integration tests' servers it runs on.
//!
//! `tests/it/scale_smoke.rs` includes this file as a module and calls [`run`] at
//! a small size, so everything but `main` is plain library code.

#![allow(dead_code)]

/// Progress on stderr, unless the options silence it (the smoke test).
macro_rules! progress {
    ($options:expr, $($arg:tt)*) => {
        if $options.progress {
            eprintln!("[scale] {}", format!($($arg)*));
        }
    };
}

mod cluster;
mod direct;
mod exporter;
mod images;
mod measure;
mod options;
mod phase;
mod pusher_log;
mod registry;
mod report;
mod results;
mod signing;
mod support;
mod taps;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use self::cluster::populate;
use self::direct::direct_phase;
use self::exporter::scrape_phase;
use self::images::ImagePlan;
use self::measure::loadavg;
use self::phase::snappy_cost;
use self::registry::ScaleRegistry;

use self::support::kube_api::KubeApi;
use self::support::{peers, process};

pub use options::Options;
pub use results::{
    Agent, DatasetStats, DirectResult, Machine, RegistryCounts, Report, RunResult, ScrapeResult,
};

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
    let verify_key = if options.verify {
        signing::fill(&registry, &plans, options).await?;
        Some(signing::write_public_key(&registry.dir)?)
    } else {
        None
    };

    let started = Instant::now();
    let api = KubeApi::start().await;
    let mut dataset = populate(&api, &plans, &registry.host, options);
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
        verify_key,
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
    /// The public key the pusher verifies signatures with (`--verify`).
    verify_key: Option<PathBuf>,
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
    /// Skip the wait for the tag cache to expire and the ticks after it
    /// (about half of a run at the default cache duration); the table then
    /// has no refresh figures.
    #[arg(long)]
    skip_expiry: bool,
    /// Skip the scrape exporter + vmagent comparison (vmagent comes from
    /// `scripts/fetch-test-peers`).
    #[arg(long)]
    skip_vmagent: bool,
    /// Leave every workload on the `default` service account (by default
    /// each Deployment and StatefulSet has its own, as Helm charts do).
    #[arg(long)]
    shared_service_account: bool,
    /// Make three in ten Deployments Argo Rollouts and three in ten OpenKruise
    /// CloneSets (same containers and images), and pass the pusher
    /// `--workload-kind argo-rollouts --workload-kind openkruise-cloneset`.
    #[arg(long)]
    custom_kinds: bool,
    /// Sign every image with a generated ECDSA P-256 key (a cosign `.sig`
    /// per digest) and pass the pusher `--verify-key scale=KEY`, to measure
    /// what verification costs. Uses its own registry directory
    /// [default: TARGET_DIR/scale-registry-signed].
    #[arg(long)]
    verify: bool,
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
        cli.registry_dir.clone().unwrap_or_else(|| {
            target.join(if cli.verify {
                "scale-registry-signed"
            } else {
                "scale-registry"
            })
        }),
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
    options.expiry = !cli.skip_expiry;
    options.vmagent = !cli.skip_alternative && !cli.skip_vmagent;
    options.service_account_per_workload = !cli.shared_service_account;
    options.custom_kinds = cli.custom_kinds;
    options.verify = cli.verify;
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
