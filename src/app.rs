//! Wiring: workloads → image references → metadata → series → sinks, once
//! (`--once`, for a CronJob) or on a schedule (a Deployment).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{debug, error, info, warn};

use crate::config::Settings;
use crate::encode::exposition;
use crate::leader::{self, LeaderElection, LeaderSettings};
use crate::pipeline::Pipeline;
use crate::remote_write::{self, Endpoint, Sender};
use crate::schedule::Ticker;
use crate::series::Snapshot;
use crate::server::{self, Shared};
use crate::telemetry::Telemetry;

/// How long an in-flight tick may go on after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// Exit status of `--once` when every endpoint accepted the snapshot but
/// some manifests input was skipped: the data pushed is incomplete, and a
/// retry of the Job would read the same input.
pub const EXIT_INPUT_SKIPPED: u8 = 3;

/// Exit status of `--once` when every endpoint took the snapshot but one
/// refused some of its series one by one and stored the rest (Mimir,
/// Cortex, Grafana Cloud; logged with the receiver's message): a retry of
/// the Job would be refused the same.
pub const EXIT_PARTIAL: u8 = 4;

/// Runs the service; the result is the process exit status.
pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    crate::install_crypto_provider();
    let telemetry = Arc::new(Telemetry::new());
    let leading = leader::Metrics::new(&telemetry.registry);
    let pushes = remote_write::Metrics::new(&telemetry.registry);
    let omit = settings
        .pipeline
        .common_labels
        .names()
        .map(str::to_owned)
        .collect();
    let mut pipeline = Pipeline::new(settings.pipeline, telemetry.clone()).await?;
    let dry_run = settings.dry_run;
    let endpoints = if dry_run {
        Vec::new()
    } else {
        settings
            .endpoints
            .into_iter()
            .map(Endpoint::new)
            .collect::<Result<Vec<_>, _>>()?
    };
    if settings.once {
        let status = run_once(&mut pipeline, &endpoints, dry_run, &leading, &pushes).await;
        pipeline.save_cache().await;
        return status;
    }

    let shared = Arc::new(Shared::new(telemetry.clone(), omit));
    serve(
        settings.metrics_address,
        settings.telemetry_address,
        &shared,
    )
    .await?;
    if endpoints.is_empty() && !dry_run {
        info!(
            "no --remote-write-url: serving the inventory on /metrics only, like a scrape exporter"
        );
    }
    let schedule = settings.schedule;
    info!(%schedule, endpoints = endpoints.len(), "starting");
    let _prefetch = pipeline.spawn_prefetch();
    let leader = start_leader_election(
        settings.leader_election,
        pipeline.client(),
        leading,
        &telemetry,
    );
    // A replica that becomes leader pushes at once, not at its next tick.
    let mut became_leader = leader.as_ref().map(LeaderElection::changes);
    let senders: Vec<Sender> = endpoints
        .into_iter()
        .map(|e| Sender::spawn(e, pushes.clone(), telemetry.readiness.clone()))
        .collect();
    let mut ticker = Ticker::new(schedule);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(true) = leader_change(&mut became_leader) => info!("now the leader; pushing"),
            _ = pipeline.filled() => {}
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
                if dry_run {
                    print_snapshot(&snapshot);
                }
                // Followers keep their inventory and caches warm, and push nothing.
                if leader.as_ref().is_none_or(LeaderElection::is_leader) {
                    for sender in &senders {
                        sender.send(snapshot.clone());
                    }
                } else {
                    debug!("not the leader; not pushing");
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
    if let Some(leader) = leader {
        leader.release().await;
    }
    pipeline.save_cache().await;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The leader election, when configured and in a cluster; without it this
/// replica is the leader.
fn start_leader_election(
    election: Option<LeaderSettings>,
    client: Option<&kube::Client>,
    metrics: leader::Metrics,
    telemetry: &Telemetry,
) -> Option<LeaderElection> {
    match (election, client) {
        (Some(election), Some(client)) => {
            let namespace = election.lease_namespace(client);
            info!(namespace = %namespace.name, from = namespace.source, "the leader lease's namespace");
            Some(LeaderElection::start(
                client.clone(),
                namespace.name,
                election.lease_name,
                election.identity,
                election.lease_duration,
                metrics,
                telemetry.readiness.clone(),
            ))
        }
        _ => {
            metrics.leader.set(1);
            None
        }
    }
}

/// Serves `/metrics` and the health listener.
async fn serve(
    metrics: SocketAddr,
    telemetry: SocketAddr,
    shared: &Arc<Shared>,
) -> anyhow::Result<()> {
    server::serve(metrics, shared.clone())
        .await
        .with_context(|| format!("failed to listen on --metrics-address {metrics}"))?;
    server::serve_telemetry(telemetry, shared.clone())
        .await
        .with_context(|| format!("failed to listen on --telemetry-address {telemetry}"))?;
    Ok(())
}

/// `--once`: one snapshot, delivered; the exit status says how it went.
async fn run_once(
    pipeline: &mut Pipeline,
    endpoints: &[Endpoint],
    dry_run: bool,
    leading: &leader::Metrics,
    pushes: &remote_write::Metrics,
) -> anyhow::Result<ExitCode> {
    // A run on its own pushes: it is the leader its health reports.
    leading.leader.set(1);
    let snapshot = pipeline.snapshot().await?;
    match deliver(&snapshot, endpoints, dry_run, pushes).await {
        Delivered::Failed => return Ok(ExitCode::FAILURE),
        Delivered::Partial => {
            warn!(
                exit_status = EXIT_PARTIAL,
                "pushed, but a receiver refused some series (logged above)"
            );
            return Ok(ExitCode::from(EXIT_PARTIAL));
        }
        Delivered::All => {}
    }
    let skipped = pipeline.skipped_input();
    if skipped > 0 {
        warn!(
            skipped,
            exit_status = EXIT_INPUT_SKIPPED,
            "pushed, but manifests input was skipped (logged above)"
        );
        return Ok(ExitCode::from(EXIT_INPUT_SKIPPED));
    }
    Ok(ExitCode::SUCCESS)
}

/// The next leadership change, or never without leader election.
async fn leader_change(changes: &mut Option<tokio::sync::watch::Receiver<bool>>) -> Option<bool> {
    match changes {
        Some(rx) => {
            rx.changed().await.ok()?;
            Some(*rx.borrow_and_update())
        }
        None => std::future::pending().await,
    }
}

/// What became of a snapshot pushed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Delivered {
    All,
    /// Accepted, but some series refused one by one.
    Partial,
    Failed,
}

/// Prints (dry run) or pushes a snapshot to every endpoint at once, so a
/// slow endpoint does not delay the others.
async fn deliver(
    snapshot: &Snapshot,
    endpoints: &[Endpoint],
    dry_run: bool,
    metrics: &remote_write::Metrics,
) -> Delivered {
    if dry_run {
        print_snapshot(snapshot);
        return Delivered::All;
    }
    let never = || false;
    let pushes = endpoints.iter().map(|e| async move {
        // Nothing to remember: a one-shot run marks nothing stale later.
        e.push(snapshot, &[], metrics, &never, &|_| false, &mut |_, _| {})
            .await
    });
    let results = futures::future::join_all(pushes).await;
    let mut delivered = Delivered::All;
    for (endpoint, result) in endpoints.iter().zip(results) {
        match result {
            Ok(report) => {
                info!(
                    endpoint = endpoint.name(),
                    requests = report.requests,
                    series = report.series,
                    bytes = report.bytes,
                    "pushed"
                );
                if let Some(message) = &report.partial {
                    warn!(endpoint = endpoint.name(), refused_series = report.refused, receiver_said = %message, "the receiver refused some series and stored the rest");
                    delivered = delivered.max(Delivered::Partial);
                }
                if let Some(message) = &report.overlap {
                    warn!(endpoint = endpoint.name(), receiver_said = %message, "the receiver holds newer samples (another pusher of the cluster); the older ones were dropped");
                }
            }
            Err(e) => {
                error!(error = %e, "push failed");
                delivered = Delivered::Failed;
            }
        }
    }
    delivered
}

/// The snapshot in the text format on stdout, with every pushed label.
fn print_snapshot(snapshot: &Snapshot) {
    let text = exposition::render(snapshot, &[]);
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
