//! What both phases share: starting the pusher, marks and measurement
//! windows, and reading counters off `/metrics` pages.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::measure::{memory, Monitor};
use super::options::Options;
use super::pusher_log::PusherLog;
use super::report::median;
use super::results::{ApiCounts, RegistryCounts, SelfMetrics, SnappyResult, Window, WireCounts};
use super::support::kube_api::KubeApi;
use super::support::process::ChildGuard;
use super::support::receiver;
use super::support::wait::{wait_for, wait_until_async};
use super::taps::WriteTap;
use super::Env;

pub(crate) fn pusher_command(options: &Options, env: &Env, metrics_address: &str) -> Command {
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
        .args(["--telemetry-address", "127.0.0.1:0"])
        // The inventory alone: the harness checks the series it pushes
        // against what the cluster holds.
        .args(["--push-self-metrics=false"])
        .args(["--log-format", "json"]);
    if options.custom_kinds {
        command.args([
            "--workload-kind",
            "argo-rollouts",
            "--workload-kind",
            "openkruise-cloneset",
        ]);
    }
    if let Some(key) = &env.verify_key {
        command
            .arg("--verify-key")
            .arg(format!("{}={}", super::signing::POLICY, key.display()));
    }
    command
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
pub(crate) struct Mark {
    pub(crate) at: Instant,
    /// The same moment in Unix milliseconds (sample timestamps are in these).
    pub(crate) wall_ms: i64,
    pub(crate) aligned: bool,
    pub(crate) cpu: Vec<f64>,
    pub(crate) rss: Vec<u64>,
    pub(crate) snapshots: usize,
    pub(crate) pushes: usize,
    pub(crate) registry: RegistryCounts,
    pub(crate) api: ApiCounts,
    pub(crate) wire: WireCounts,
}

/// Collection paths end in a resource's plural; GETs of them are lists.
pub(crate) const COLLECTIONS: &[&str] = &[
    "pods",
    "deployments",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "secrets",
    "serviceaccounts",
];

pub(crate) fn api_counts(api: &KubeApi) -> ApiCounts {
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
pub(crate) async fn wait_log(
    child: &mut ChildGuard,
    log: &mut PusherLog,
    timeout: Duration,
    what: &str,
    done: impl Fn(&PusherLog) -> bool,
) -> anyhow::Result<()> {
    // Some(Err) ends the wait early: the pusher has exited.
    let outcome = wait_for(timeout, || {
        log.poll(child);
        if done(log) {
            return Some(Ok(()));
        }
        child.check_running().err().map(|e| Err(anyhow!(e)))
    })
    .await;
    outcome.unwrap_or_else(|| {
        let logs = child.logs();
        let tail: String = logs
            .chars()
            .skip(logs.chars().count().saturating_sub(4000))
            .collect();
        bail!("{what} did not happen within {timeout:?}; the pusher's log ends with:\n{tail}")
    })
}

pub(crate) async fn mark(
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
pub(crate) fn window(log: &PusherLog, from: &Mark, to: &Mark) -> Window {
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

/// `count(container_image_container_info)` in a receiver, once it is
/// `expected` (the last writes landed) or after 30 s, whichever is first.
pub(crate) async fn container_series(receiver: &receiver::Prometheus, expected: usize) -> f64 {
    let mut count = 0.0;
    wait_until_async(Duration::from_secs(30), async || {
        count = receiver
            .try_query("count(container_image_container_info)")
            .await
            .ok()
            .and_then(|samples| samples.first().map(|s| s.value))
            .unwrap_or(0.0);
        count == expected as f64
    })
    .await;
    count
}

pub(crate) async fn fetch_text(url: &str) -> String {
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
pub(crate) fn metric_sum(text: &str, name: &str, matchers: &[&str]) -> f64 {
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

pub(crate) async fn self_metrics(url: &str) -> SelfMetrics {
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
        signature_verifications: super::signing::verifications(&text, &[]),
        signatures_verified: super::signing::verifications(&text, &["result=\"verified\""]),
    }
}

/// snappy alone on one push's bytes, in the same batches.
pub(crate) fn snappy_cost(bodies: &[Vec<u8>]) -> SnappyResult {
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
