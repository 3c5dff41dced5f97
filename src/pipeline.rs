//! One snapshot: workloads → (image, credentials) → metadata → series.
//!
//! Each image is resolved once per credential scope (workloads with the
//! same namespace, pull secrets and service account share one), with the
//! logins the kubelet would use for it. With a watch-fed cluster, new
//! references are resolved as they appear, off the tick path, so a tick
//! over a warm cache asks no registry anything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;
use crate::discovery::{ClusterSource, FileSource, Source, WatchedCluster, Workload};
use crate::inventory::{CommonLabels, Inventory, Snapshot};
use crate::pull_secrets::PullSecrets;
use crate::registry::cloud::CloudCredentials;
use crate::registry::{Credential, Keyring, Resolution, Resolutions, Resolver, ResolverConfig};
use crate::telemetry::Telemetry;

/// How long the first snapshot waits for the first lists of watches.
const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// Takes snapshots: discovery, resolution, series.
pub struct Pipeline {
    source: Source,
    /// The cluster's client, for leader election; `None` with `--manifests`.
    client: Option<kube::Client>,
    pull_secrets: Arc<PullSecrets>,
    /// Logins for ECR, Artifact Registry/GCR and ACR from the pod's identity.
    cloud: Arc<CloudCredentials>,
    resolver: Arc<Resolver>,
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
        let (source, client) = if config.manifests.is_empty() {
            let client = kube::Client::try_default().await.context(
                "no cluster to read workloads from (use --manifests to read files instead)",
            )?;
            pull_secrets.watch(client.clone(), &config.namespaces, telemetry.clone());
            let namespaces = config.namespaces.clone();
            // A CronJob run lists once; a long-running service keeps watches.
            let source = if config.once {
                Source::Cluster(ClusterSource::new(
                    client.clone(),
                    namespaces,
                    telemetry.clone(),
                ))
            } else {
                Source::Watched(Arc::new(WatchedCluster::start(
                    client.clone(),
                    namespaces,
                    telemetry.clone(),
                )))
            };
            (source, Some(client))
        } else {
            let files = FileSource::new(
                config.manifests.clone(),
                config.namespaces.clone(),
                telemetry.clone(),
                pull_secrets.clone(),
            );
            (Source::Files(files), None)
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
            client,
            pull_secrets,
            cloud: Arc::new(CloudCredentials::from_env()),
            resolver: Arc::new(resolver),
            inventory: Inventory::new(CommonLabels::new(&config.job, &config.external_labels)),
            concurrency: config.resolve_concurrency as usize,
            telemetry,
        })
    }

    /// Manifest documents and files the last snapshot had to leave out.
    pub fn skipped_input(&self) -> usize {
        self.source.skipped_input()
    }

    pub fn client(&self) -> Option<&kube::Client> {
        self.client.as_ref()
    }

    /// One complete snapshot. Images that fail to resolve are logged and
    /// keep their container series with an empty digest.
    pub async fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let started = Instant::now();
        // A first snapshot without the pull secrets would report their
        // images unauthorized; one before the first lists would be partial.
        self.pull_secrets.wait_ready(FIRST_LIST_TIMEOUT).await;
        if let Source::Watched(watched) = &self.source {
            let deadline = Instant::now() + FIRST_LIST_TIMEOUT;
            while !watched.is_ready() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let timestamp_ms = chrono::Utc::now().timestamp_millis();
        let workloads = self
            .source
            .snapshot()
            .await
            .context("failed to take a snapshot of the workloads")?;
        let mut resolutions = Resolutions::new();
        let lookups = credential_lookups(&self.pull_secrets, &workloads, Some(&mut resolutions));
        let mut unresolved = 0;
        for (scope, image, resolution) in
            resolve_all(&self.resolver, &self.cloud, lookups, self.concurrency).await
        {
            if let Err(e) = &resolution {
                unresolved += 1;
                warn!(image, class = e.class.as_str(), error = %e.message, "cannot resolve image; its containers get an empty digest");
            }
            resolutions.insert(scope, image, resolution);
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

    /// With a watch-fed cluster: resolves references as they appear, so the
    /// registry work is done before the tick that needs it.
    pub fn spawn_prefetch(&self) -> Option<JoinHandle<()>> {
        let Source::Watched(watched) = &self.source else {
            return None;
        };
        let (watched, pull_secrets, resolver) = (
            watched.clone(),
            self.pull_secrets.clone(),
            self.resolver.clone(),
        );
        let cloud = self.cloud.clone();
        let concurrency = self.concurrency;
        Some(tokio::spawn(async move {
            let mut changes = watched.changes();
            let mut known: HashSet<(u64, String)> = HashSet::new();
            while changes.changed().await.is_ok() {
                // Events come in bursts (a rollout, the first list): take them together.
                tokio::time::sleep(Duration::from_millis(200)).await;
                changes.borrow_and_update();
                let workloads = watched.snapshot();
                let lookups = credential_lookups(&pull_secrets, &workloads, None);
                let current: HashSet<(u64, String)> =
                    lookups.iter().map(|(s, i, _)| (*s, i.clone())).collect();
                let fresh: Vec<_> = lookups
                    .into_iter()
                    .filter(|(s, i, _)| !known.contains(&(*s, i.clone())))
                    .collect();
                if !fresh.is_empty() {
                    let count = fresh.len();
                    resolve_all(&resolver, &cloud, fresh, concurrency).await;
                    tracing::debug!(count, "resolved new image references ahead of the tick");
                }
                known = current;
            }
        }))
    }
}

/// Every (credential scope, image) of the workloads, with the logins to
/// try; records each workload's scope in `resolutions` when given.
fn credential_lookups(
    pull_secrets: &PullSecrets,
    workloads: &[Arc<Workload>],
    mut resolutions: Option<&mut Resolutions>,
) -> Vec<(u64, String, Vec<Credential>)> {
    let mut keyrings: HashMap<u64, Keyring> = HashMap::new();
    let mut lookups: HashMap<u64, HashMap<String, Vec<Credential>>> = HashMap::new();
    for workload in workloads {
        let scope = pull_secrets.scope(workload);
        if let Some(resolutions) = resolutions.as_deref_mut() {
            resolutions.set_scope(workload, scope);
        }
        let keyring = keyrings
            .entry(scope)
            .or_insert_with(|| pull_secrets.keyring(workload));
        let images = lookups.entry(scope).or_default();
        for container in &workload.containers {
            if !images.contains_key(&container.image) {
                images.insert(
                    container.image.clone(),
                    PullSecrets::credentials(keyring, &container.image),
                );
            }
        }
    }
    lookups
        .into_iter()
        .flat_map(|(scope, images)| {
            images
                .into_iter()
                .map(move |(image, credentials)| (scope, image, credentials))
        })
        .collect()
}

/// Resolves each lookup; a cloud registry's ambient login is tried after
/// the pull secrets and static credentials, as the kubelet's credential
/// providers come after pull secrets.
async fn resolve_all(
    resolver: &Arc<Resolver>,
    cloud: &Arc<CloudCredentials>,
    lookups: Vec<(u64, String, Vec<Credential>)>,
    concurrency: usize,
) -> Vec<(u64, String, Resolution)> {
    futures::stream::iter(lookups)
        .map(|(scope, image, mut credentials)| {
            let (resolver, cloud) = (resolver.clone(), cloud.clone());
            async move {
                if let Some(login) = cloud_login(&cloud, &image).await {
                    credentials.push(login);
                }
                let credentials: Vec<&Credential> = credentials.iter().collect();
                let resolution = resolver.resolve(&image, &credentials).await;
                (scope, image, resolution)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// The ambient-identity login for an image in a cloud registry. A failure
/// (off that cloud, say) leaves the image to the other credentials and to
/// anonymous access: public images there need no token.
async fn cloud_login(cloud: &CloudCredentials, image: &str) -> Option<Credential> {
    // Cheap test first: cloud registry hosts always have a dot, and most
    // images are not in one.
    let (host, _) = image.split_once('/')?;
    cloud.provider_for(host)?;
    match cloud.login(host).await? {
        Ok(login) => Some(Credential {
            username: login.username,
            password: login.password,
            source: format!("the pod's cloud identity for {host}"),
        }),
        Err(e) => {
            tracing::debug!(host, error = %e, "no cloud registry login; trying without");
            None
        }
    }
}
