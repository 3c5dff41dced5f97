//! Wiring: workloads → image references → metadata → series → sinks, once
//! (`--once`, for a CronJob) or on a schedule (a Deployment).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::discovery::{ClusterSource, FileSource, Source};
use crate::exposition;
use crate::inventory::{CommonLabels, Inventory, Snapshot};
use crate::pull_secrets::PullSecrets;
use crate::registry::{Credential, Keyring, Resolutions, Resolver, ResolverConfig};
use crate::remote_write::{Endpoint, Sender};
use crate::schedule::Ticker;
use crate::server::{self, Shared};
use crate::telemetry::Telemetry;

/// How long an in-flight tick may go on after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// Takes snapshots: discovery, resolution, series.
pub struct Pipeline {
    source: Source,
    pull_secrets: Arc<PullSecrets>,
    resolver: Resolver,
    inventory: Inventory,
    concurrency: usize,
    telemetry: Arc<Telemetry>,
}

impl Pipeline {
    pub async fn from_config(config: &Config, telemetry: Arc<Telemetry>) -> anyhow::Result<Self> {
        let mut static_keyring = Keyring::default();
        if let Some(path) = &config.docker_config {
            let json = std::fs::read(path)
                .with_context(|| format!("failed to read --docker-config {}", path.display()))?;
            static_keyring
                .add_docker_config(&json, "--docker-config")
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("failed to load --docker-config {}", path.display()))?;
        }
        let pull_secrets = Arc::new(PullSecrets::new(config.pull_secrets, static_keyring));
        let source = if config.manifests.is_empty() {
            let client = kube::Client::try_default().await.context(
                "no cluster to read workloads from (use --manifests to read files instead)",
            )?;
            pull_secrets.watch(client.clone(), &config.namespaces, telemetry.clone());
            Source::Cluster(ClusterSource::new(
                client,
                config.namespaces.clone(),
                telemetry.clone(),
            ))
        } else {
            Source::Files(FileSource::new(
                config.manifests.clone(),
                config.namespaces.clone(),
                telemetry.clone(),
                pull_secrets.clone(),
            ))
        };
        let resolver = Resolver::new(
            ResolverConfig {
                platform: config.platform.clone(),
                cache_duration: config.cache_duration,
                error_cache_duration: config.error_cache_duration,
                insecure_registries: config.insecure_registries.clone(),
                timeout: config.registry_timeout,
                registry_concurrency: config.registry_concurrency as usize,
                registry_rps: config.registry_rps,
            },
            telemetry.clone(),
        );
        Ok(Pipeline {
            source,
            pull_secrets,
            resolver,
            inventory: Inventory::new(CommonLabels::new(&config.job, &config.external_labels)),
            concurrency: config.resolve_concurrency as usize,
            telemetry,
        })
    }

    /// One complete snapshot. Images that fail to resolve are logged and
    /// keep their container series with an empty digest.
    pub async fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let started = Instant::now();
        let timestamp_ms = chrono::Utc::now().timestamp_millis();
        // A first snapshot without the pull secrets would report their images unauthorized.
        self.pull_secrets.wait_ready(Duration::from_secs(30)).await;
        let workloads = self
            .source
            .snapshot()
            .await
            .context("failed to take a snapshot of the workloads")?;

        // Each image once per credential scope, with the logins that match it.
        let mut keyrings: HashMap<u64, Keyring> = HashMap::new();
        let mut lookups: HashMap<(u64, &str), Vec<Credential>> = HashMap::new();
        for workload in &workloads {
            let scope = self.pull_secrets.scope(workload);
            let keyring = keyrings
                .entry(scope)
                .or_insert_with(|| self.pull_secrets.keyring(workload));
            for container in &workload.containers {
                lookups
                    .entry((scope, container.image.as_str()))
                    .or_insert_with(|| PullSecrets::credentials(keyring, &container.image));
            }
        }
        let resolver = &self.resolver;
        let results: Vec<_> = futures::stream::iter(lookups)
            .map(|((scope, image), credentials)| async move {
                let credentials: Vec<&Credential> = credentials.iter().collect();
                (scope, image, resolver.resolve(image, &credentials).await)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut resolutions = Resolutions::new(self.pull_secrets.enabled());
        let mut unresolved = 0;
        for (scope, image, resolution) in results {
            if let Err(e) = &resolution {
                unresolved += 1;
                warn!(image, class = e.class.as_str(), error = %e.message, "cannot resolve image; its containers get an empty digest");
            }
            resolutions.insert(scope, image.to_owned(), resolution);
        }
        let snapshot = self.inventory.build(&workloads, &resolutions, timestamp_ms);
        self.telemetry
            .snapshot_duration
            .observe(started.elapsed().as_secs_f64());
        self.telemetry
            .snapshot_containers
            .set(snapshot.containers as i64);
        self.telemetry.snapshot_images.set(snapshot.images as i64);
        self.telemetry
            .snapshot_series
            .set(snapshot.series.len() as i64);
        info!(
            workloads = workloads.len(),
            containers = snapshot.containers,
            images = snapshot.images,
            unresolved,
            series = snapshot.series.len(),
            took = ?started.elapsed(),
            "snapshot taken"
        );
        Ok(snapshot)
    }
}

/// Runs the service; the result is the process exit status.
pub async fn run(config: Config) -> anyhow::Result<bool> {
    crate::install_crypto_provider();
    let telemetry = Arc::new(Telemetry::new());
    let mut pipeline = Pipeline::from_config(&config, telemetry.clone()).await?;
    let endpoints = if config.dry_run {
        Vec::new()
    } else {
        let configs = config.endpoints().map_err(anyhow::Error::msg)?;
        configs
            .into_iter()
            .map(Endpoint::new)
            .collect::<Result<Vec<_>, _>>()?
    };
    if config.once {
        let snapshot = pipeline.snapshot().await?;
        return Ok(deliver(&snapshot, &endpoints, config.dry_run, &telemetry).await);
    }

    let omit = CommonLabels::new(&config.job, &config.external_labels)
        .names()
        .map(str::to_owned)
        .collect();
    let shared = Arc::new(Shared::new(telemetry.clone(), omit));
    server::serve(config.metrics_address, shared.clone())
        .await
        .with_context(|| {
            format!(
                "failed to listen on --metrics-address {}",
                config.metrics_address
            )
        })?;
    if endpoints.is_empty() && !config.dry_run {
        info!(
            "no --remote-write-url: serving the inventory on /metrics only, like a scrape exporter"
        );
    }
    let schedule = config.effective_schedule();
    info!(%schedule, endpoints = endpoints.len(), "starting");
    let senders: Vec<Sender> = endpoints
        .into_iter()
        .map(|e| Sender::spawn(e, telemetry.clone()))
        .collect();
    let mut ticker = Ticker::new(schedule);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut shutdown => break,
        }
        let snapshot = tokio::select! {
            snapshot = pipeline.snapshot() => snapshot,
            _ = &mut shutdown => break,
        };
        match snapshot {
            Ok(snapshot) => {
                let snapshot = Arc::new(snapshot);
                shared.publish(snapshot.clone());
                if config.dry_run {
                    print_snapshot(&snapshot);
                }
                for sender in &senders {
                    sender.send(snapshot.clone());
                }
            }
            Err(e) => error!(
                error = format!("{e:#}"),
                "tick failed; the previous snapshot stays on /metrics"
            ),
        }
    }
    info!(grace = ?SHUTDOWN_GRACE, "shutting down after the pushes in flight");
    futures::future::join_all(senders.into_iter().map(|s| s.shutdown(SHUTDOWN_GRACE))).await;
    info!("stopped");
    Ok(true)
}

/// Prints (dry run) or pushes a snapshot to every endpoint at once, so a
/// slow endpoint does not delay the others. True when all accepted it.
async fn deliver(
    snapshot: &Snapshot,
    endpoints: &[Endpoint],
    dry_run: bool,
    telemetry: &Telemetry,
) -> bool {
    if dry_run {
        print_snapshot(snapshot);
        return true;
    }
    let never = || false;
    let pushes = endpoints
        .iter()
        .map(|e| e.push(snapshot, &[], telemetry, &never));
    let results = futures::future::join_all(pushes).await;
    let mut all_ok = true;
    for (endpoint, result) in endpoints.iter().zip(results) {
        match result {
            Ok(report) => info!(
                endpoint = endpoint.name(),
                requests = report.requests,
                series = report.series,
                bytes = report.bytes,
                "pushed"
            ),
            Err(e) => {
                error!(error = %e, "push failed");
                all_ok = false;
            }
        }
    }
    all_ok
}

/// The snapshot in the text format on stdout, with every pushed label.
fn print_snapshot(snapshot: &Snapshot) {
    let text = exposition::render(&exposition::families(snapshot, &[]));
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not worth a panic.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
