//! One snapshot: workloads → (image, logins) → metadata → series.
//!
//! Each image is resolved once per credential scope (workloads with the
//! same namespace, pull secrets and service account share one), with the
//! logins the kubelet would use for it ([`crate::credentials`]). With a watch-fed cluster, new
//! references are resolved as they appear, off the tick path, so a tick
//! over a warm cache asks no registry anything.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tracing::info;

use crate::credentials::{self, Credentials, Login, Lookup, Scope};
use crate::discovery::files::FileLimits;
use crate::discovery::watch::WatchOptions;
use crate::discovery::{
    ClusterSource, Container, FileSource, MetadataAllowlist, Selection, Source, WatchedCluster,
    Workload,
};
use crate::image_facts::{Owner, Resolution, Resolutions, VersionInfo};
use crate::inventory::Inventory;
use crate::registry::{Facts, Resolver, ResolverConfig};
use crate::self_metrics;
use crate::series::{CommonLabels, Snapshot};
use crate::telemetry::Telemetry;
use crate::versions::Overrides;

mod metrics;
pub use metrics::Metrics;

/// How long the first snapshot waits for the first lists of watches.
const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(60);

mod failures;
mod memo;

use failures::FailureLog;

/// What a [`Pipeline`] is built from.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub source: SourceSettings,
    pub credentials: credentials::Settings,
    pub resolver: ResolverConfig,
    /// Most images resolved at the same time.
    pub resolve_concurrency: usize,
    /// `job` and the external labels, on every series.
    pub common_labels: CommonLabels,
    /// The workload labels and annotations exported.
    pub workload_metadata: MetadataAllowlist,
    /// Add the service's own health to every snapshot (`self_metrics`).
    pub push_self_metrics: bool,
}

/// Where workloads come from.
#[derive(Debug, Clone)]
pub enum SourceSettings {
    /// Manifest files, directories or stdin (`-`).
    Files {
        paths: Vec<PathBuf>,
        /// The namespaces, kinds and filters.
        selection: Selection,
        /// How much of the files is read.
        limits: FileLimits,
    },
    /// The cluster of the kubeconfig or the pod's service account.
    Cluster {
        /// The namespaces, kinds and filters.
        selection: Selection,
        /// Watches kept current between snapshots (a long-running service),
        /// or `None` to list every kind at each snapshot (a CronJob run).
        watch: Option<WatchOptions>,
    },
}

/// Takes snapshots: discovery, resolution, series.
pub struct Pipeline {
    source: Source,
    /// The cluster's client, for leader election; `None` with `--manifests`.
    client: Option<kube::Client>,
    /// Pull secrets, `--docker-config` and the pod's cloud identity.
    credentials: Arc<Credentials>,
    resolver: Arc<Resolver>,
    inventory: Inventory,
    failures: FailureLog,
    concurrency: LookupSlots,
    telemetry: Arc<Telemetry>,
    metrics: Metrics,
    /// The labels of the health series, when they are pushed.
    self_metrics: Option<Arc<CommonLabels>>,
    /// Whether snapshots still push without the facts never looked up.
    filling: Filling,
    /// Told when what the first snapshot left out has been looked up.
    filled: Arc<Notify>,
    /// Set once the first snapshot is taken: until then the prefetch asks
    /// for digests only, so that the requests the first push waits for do
    /// not queue behind metadata and signatures at the registry's rate.
    first_taken: Arc<AtomicBool>,
    /// The last answers, reused until a fact they used expires.
    memo: memo::Memo,
}

/// The facts a cold start leaves out of its first pushes: a long-running
/// service pushes its first snapshot once every container's digest is
/// known (one GET per tag, nothing for a digest-pinned reference), then
/// looks up in the background, in two stages, what it left out: the
/// images' metadata (manifests and configs: their own series), pushed as
/// soon as it is in; then what is attached to them, their bases, signature
/// verdicts and version freshness, pushed as soon as that is in. Until a
/// fact is cached the snapshots go without its series (absent, rather than
/// wrong). A run with `--once` waits for all.
enum Filling {
    /// Every snapshot waits for every fact.
    Off,
    /// No snapshot has left anything out yet.
    Cold,
    /// What the first snapshot left out is being looked up; `stage` says
    /// what snapshots wait for meanwhile ([`STAGE_DIGEST`] …).
    Running {
        task: JoinHandle<()>,
        stage: Arc<AtomicU8>,
    },
    /// Looked up: snapshots wait for every fact from now on.
    Done,
}

/// The stages of [`Filling::Running`]: snapshots wait for the digests, then
/// also for the metadata, then for every fact.
const STAGE_DIGEST: u8 = 0;
const STAGE_METADATA: u8 = 1;
const STAGE_ALL: u8 = 2;

/// The workloads of a snapshot and their credential scopes, in order.
type Owners = (Vec<Arc<Workload>>, Vec<Scope>);

/// The workloads and scopes whose version-checker overrides are looked
/// up after the first push; none when no container has annotations.
fn owners(workloads: &[Arc<Workload>], resolutions: &Resolutions) -> Owners {
    let annotated = |w: &Arc<Workload>| w.containers.iter().any(|c| c.versions.is_some());
    match workloads.iter().any(annotated) {
        true => (workloads.to_vec(), resolutions.workload_scopes().to_vec()),
        false => (Vec::new(), Vec::new()),
    }
}

/// One lookup's answer: its scope and image, the resolution, the version
/// freshness, and whether facts were left out.
type Resolved = (Scope, String, Resolution, Option<Arc<VersionInfo>>, bool);

impl Pipeline {
    pub async fn new(
        settings: PipelineSettings,
        telemetry: Arc<Telemetry>,
    ) -> anyhow::Result<Self> {
        let credentials = Arc::new(Credentials::new(settings.credentials)?);
        let sources = crate::discovery::Metrics::new(&telemetry.registry);
        let (source, client) = match settings.source {
            SourceSettings::Cluster { selection, watch } => {
                let client = kube::Client::try_default().await.context(
                    "no cluster to read workloads from (use --manifests to read files instead)",
                )?;
                credentials.watch(client.clone(), &selection.namespaces, sources.clone());
                let source = match watch {
                    Some(options) => Source::Watched(Arc::new(WatchedCluster::start(
                        client.clone(),
                        selection,
                        options,
                        sources,
                        telemetry.readiness.clone(),
                        settings.workload_metadata.clone(),
                    ))),
                    None => Source::Cluster(ClusterSource::new(
                        client.clone(),
                        selection,
                        sources,
                        settings.workload_metadata.clone(),
                    )),
                };
                (source, Some(client))
            }
            SourceSettings::Files {
                paths,
                selection,
                limits,
            } => {
                let files = FileSource::with_limits(
                    paths,
                    selection,
                    sources,
                    settings.workload_metadata.clone(),
                    limits,
                );
                (Source::Files(files), None)
            }
        };
        let concurrency = LookupSlots::new(
            settings.resolve_concurrency,
            settings.resolver.registry_concurrency,
            settings.resolver.registry_rps,
        );
        let resolver = Resolver::new(
            settings.resolver,
            crate::registry::Metrics::new(&telemetry.registry),
        )?;
        let metrics = Metrics::new(&telemetry.registry);
        let self_metrics = settings
            .push_self_metrics
            .then(|| Arc::new(settings.common_labels.clone()));
        Ok(Pipeline {
            source,
            client,
            credentials,
            resolver: Arc::new(resolver),
            inventory: Inventory::new(settings.common_labels, metrics.labels_dropped.clone())
                .with_workload_labels(!settings.workload_metadata.is_empty()),
            failures: FailureLog::default(),
            concurrency,
            telemetry,
            metrics,
            self_metrics,
            filling: Filling::Off,
            filled: Arc::new(Notify::new()),
            first_taken: Arc::new(AtomicBool::new(false)),
            memo: memo::Memo::default(),
        })
    }

    /// What the next snapshot waits for.
    fn facts(&mut self) -> Facts {
        let stage = match &self.filling {
            Filling::Off | Filling::Done => return Facts::All,
            Filling::Cold => STAGE_DIGEST,
            Filling::Running { task, stage } => match stage.load(Ordering::Acquire) {
                _ if task.is_finished() => STAGE_ALL,
                stage => stage,
            },
        };
        match stage {
            STAGE_DIGEST => Facts::Digest,
            STAGE_METADATA => Facts::Known,
            _ => {
                self.filling = Filling::Done;
                Facts::All
            }
        }
    }

    /// After a snapshot that waited only for the digests: looks up what it
    /// left out, in the background, once: the metadata first, then the
    /// other facts (and the version lookups of containers with
    /// version-checker overrides), each stage followed by a push.
    fn fill_in(&mut self, lookups: Vec<Lookup>, resolved: &[Resolved], owners: Owners) {
        if !matches!(self.filling, Filling::Cold) {
            return;
        }
        let pending: HashSet<(Scope, &str)> = resolved
            .iter()
            .filter(|r| r.2.as_ref().is_ok_and(|m| m.pending))
            .map(|r| (r.0, r.1.as_str()))
            .collect();
        let left_out: HashSet<(Scope, &str)> = resolved
            .iter()
            .filter(|r| r.4)
            .map(|r| (r.0, r.1.as_str()))
            .collect();
        let lookups: Vec<Lookup> = lookups
            .into_iter()
            .filter(|l| left_out.contains(&(l.scope, &*l.image)))
            .collect();
        if lookups.is_empty() && owners.0.is_empty() {
            self.filling = Filling::Done;
            return;
        }
        let metadata: Vec<Lookup> = lookups
            .iter()
            .filter(|l| pending.contains(&(l.scope, &*l.image)))
            .cloned()
            .collect();
        let first = if metadata.is_empty() {
            STAGE_METADATA
        } else {
            STAGE_DIGEST
        };
        let stage = Arc::new(AtomicU8::new(first));
        let (resolver, credentials) = (self.resolver.clone(), self.credentials.clone());
        let (concurrency, filled, told) = (self.concurrency, self.filled.clone(), stage.clone());
        let task = tokio::spawn(async move {
            let (count, started) = (metadata.len(), Instant::now());
            if count > 0 {
                info!(
                    count,
                    "looking up the metadata the first snapshot left out: manifests and configs"
                );
                resolve_all(&resolver, &credentials, metadata, concurrency, Facts::Known).await;
                info!(count, took = ?started.elapsed(), "looked up the metadata the first snapshot left out; pushing it now");
                // The first snapshot's save had digests only.
                if let Some(cache) = resolver.disk_cache() {
                    cache.save_in_background();
                }
                told.store(STAGE_METADATA, Ordering::Release);
                filled.notify_one();
            }
            let (count, started) = (lookups.len(), Instant::now());
            info!(count, "looking up what the first snapshot left out: attached artifacts, base images, signatures, versions");
            resolve_all(&resolver, &credentials, lookups, concurrency, Facts::All).await;
            let (workloads, scopes) = owners;
            let mut resolutions = Resolutions::new();
            resolutions.set_workload_scopes(scopes);
            let (r, c, total) = (&resolver, &credentials, concurrency.total);
            overridden_versions(r, c, &workloads, &resolutions, total, true).await;
            info!(count, took = ?started.elapsed(), "looked up what the first snapshot left out; pushing it now");
            if let Some(cache) = resolver.disk_cache() {
                cache.save_in_background();
            }
            told.store(STAGE_ALL, Ordering::Release);
            filled.notify_one();
        });
        self.filling = Filling::Running { task, stage };
    }

    /// Completes once what the first snapshot left out has been looked up,
    /// so that it is pushed then rather than a whole interval later.
    pub async fn filled(&self) {
        self.filled.notified().await;
    }

    /// Manifest documents and files the last snapshot had to leave out.
    pub fn skipped_input(&self) -> usize {
        self.source.skipped_input()
    }

    pub fn client(&self) -> Option<&kube::Client> {
        self.client.as_ref()
    }

    /// Waits (up to [`FIRST_LIST_TIMEOUT`]) for the pull secrets and the
    /// watches' first lists: a first snapshot without the pull secrets
    /// would report their images unauthorized; one before the first lists
    /// would be partial.
    async fn wait_ready(&self) {
        self.credentials.wait_ready(FIRST_LIST_TIMEOUT).await;
        if let Source::Watched(watched) = &self.source {
            let deadline = Instant::now() + FIRST_LIST_TIMEOUT;
            while !watched.is_ready() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Answers a snapshot's lookups: from the memo where the facts of the
    /// last answer cannot have expired, from the resolver for the rest.
    async fn resolve(&mut self, lookups: Vec<Lookup>, facts: Facts) -> Vec<Resolved> {
        let (reused, asked) = self.memo.split(lookups, facts, Instant::now());
        self.resolver
            .count_memo(reused.len() as u64, asked.len() as u64);
        let asked = resolve_all(
            &self.resolver,
            &self.credentials,
            asked,
            self.concurrency,
            facts,
        )
        .await;
        self.memo.record(reused, asked, Instant::now())
    }

    /// One complete snapshot. Images that fail to resolve are logged and
    /// keep their container series with an empty digest.
    pub async fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        let started = Instant::now();
        self.wait_ready().await;
        let ready_after = started.elapsed();
        let timestamp_ms = chrono::Utc::now().timestamp_millis();
        let discovered = self
            .source
            .snapshot()
            .await
            .context("failed to take a snapshot of the workloads")?;
        if let Some(found) = &discovered.pull_objects {
            self.credentials
                .replace_from_files(&found.secrets, &found.accounts);
        }
        let workloads = discovered.workloads;
        let lookups = self.credentials.snapshot_lookups(&workloads);
        let mut resolutions = Resolutions::new();
        resolutions.set_workload_scopes(lookups.workload_scopes);
        let facts = self.facts();
        let later = (facts == Facts::Digest).then(|| lookups.images.clone());
        let resolving = Instant::now();
        let resolved = self.resolve(lookups.images, facts).await;
        let resolved_in = resolving.elapsed();
        let left_out = resolved.iter().filter(|r| r.4).count();
        let pending = resolved
            .iter()
            .filter(|r| r.2.as_ref().is_ok_and(|m| m.pending))
            .count();
        if let Some(lookups) = later {
            self.fill_in(lookups, &resolved, owners(&workloads, &resolutions));
        }
        let (results, versions): (Vec<_>, Vec<_>) = resolved
            .into_iter()
            .map(|(scope, image, resolution, versions, _)| ((scope, image, resolution), versions))
            .unzip();
        for note in self.failures.update(&results, Instant::now()) {
            note.log();
        }
        let mut unresolved = 0;
        let (plain, overridden) = overridden_versions(
            &self.resolver,
            &self.credentials,
            &workloads,
            &resolutions,
            self.concurrency.total,
            facts == Facts::All,
        )
        .await;
        resolutions.set_container_versions(overridden);
        for ((scope, image, resolution), versions) in results.into_iter().zip(versions) {
            unresolved += usize::from(resolution.is_err());
            let used = plain
                .as_ref()
                .is_none_or(|plain| plain.contains(&(scope, image.as_str())));
            if let Some(versions) = versions.filter(|_| used) {
                resolutions.insert_versions(scope, image.clone(), versions);
            }
            resolutions.insert(scope, image, resolution);
        }
        let mut snapshot = self.inventory.build(&workloads, &resolutions, timestamp_ms);
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.containers.set(snapshot.containers as i64);
        self.metrics.images.set(snapshot.images as i64);
        self.metrics.series.set(snapshot.series.len() as i64);
        info!(
            workloads = workloads.len(),
            containers = snapshot.containers,
            images = snapshot.images,
            unresolved,
            left_out,
            pending,
            series = snapshot.series.len(),
            ready_after = ?ready_after,
            resolved_in = ?resolved_in,
            took = ?started.elapsed(),
            "snapshot taken"
        );
        if let Some(common) = &self.self_metrics {
            let health = self_metrics::health_series(
                &self.telemetry,
                common,
                snapshot.series.len(),
                started.elapsed(),
            );
            snapshot.series.extend(health);
        }
        if let Some(cache) = self.resolver.disk_cache() {
            cache.save_after_snapshot();
        }
        self.first_taken.store(true, Ordering::Release);
        Ok(snapshot)
    }

    /// Writes what the resolver learnt to `--cache-dir`, after a write in
    /// progress: `--once` and a shutdown end the process next.
    pub async fn save_cache(&self) {
        if let Some(cache) = self.resolver.disk_cache() {
            cache.save().await;
        }
    }

    /// The long-running service's background work. Its first snapshots
    /// push what the inventory needs once known and leave the facts looked
    /// up for the first time to later ones ([`Filling`]). With a watch-fed
    /// cluster, references are resolved as they appear, so the registry
    /// work is done before the tick that needs it: the digests of a batch
    /// first, then their metadata, then their other facts — before the
    /// first snapshot, the digests only (the first push waits for them).
    pub fn spawn_prefetch(&mut self) -> Option<JoinHandle<()>> {
        if matches!(self.filling, Filling::Off) {
            self.filling = Filling::Cold;
        }
        let Source::Watched(watched) = &self.source else {
            return None;
        };
        let (watched, credentials, resolver) = (
            watched.clone(),
            self.credentials.clone(),
            self.resolver.clone(),
        );
        let (concurrency, first_taken) = (self.concurrency, self.first_taken.clone());
        Some(tokio::spawn(async move {
            let mut changes = watched.changes();
            let mut known: HashSet<(Scope, Arc<str>)> = HashSet::new();
            while changes.changed().await.is_ok() {
                // Events come in bursts (a rollout, the first list): take them together.
                tokio::time::sleep(Duration::from_millis(200)).await;
                changes.borrow_and_update();
                let workloads = watched.snapshot();
                let lookups = credentials.lookups(&workloads).images;
                let current: HashSet<(Scope, Arc<str>)> =
                    lookups.iter().map(|l| (l.scope, l.image.clone())).collect();
                let fresh: Vec<_> = lookups
                    .into_iter()
                    .filter(|l| !known.contains(&(l.scope, l.image.clone())))
                    .collect();
                if !fresh.is_empty() {
                    let count = fresh.len();
                    // Before the first snapshot the rest is the background
                    // lookup's, after the first push (`fill_in`).
                    let stages: &[Facts] = if first_taken.load(Ordering::Acquire) {
                        &[Facts::Digest, Facts::Known, Facts::All]
                    } else {
                        &[Facts::Digest]
                    };
                    for &facts in stages {
                        let batch = fresh.clone();
                        resolve_all(&resolver, &credentials, batch, concurrency, facts).await;
                    }
                    tracing::debug!(count, "resolved new image references ahead of the tick");
                }
                known = current;
            }
        }))
    }
}

/// How many image lookups run at once: in all, and for one registry host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LookupSlots {
    total: usize,
    per_host: usize,
}

impl LookupSlots {
    /// `total` slots; for one host, enough lookups to keep its
    /// `requests_in_flight` busy (half as many again: a lookup makes its
    /// requests one after the other, with parsing and the token bucket
    /// between them), but never more than three quarters of all (rounded
    /// down, at least one), so one tenant's slow registry cannot hold every
    /// slot while the others' images wait; and for a host no more lookups
    /// than half its request rate: lookups that share a host's rate would
    /// all run past their deadline together.
    fn new(total: usize, requests_in_flight: usize, requests_per_second: f64) -> Self {
        let total = total.max(1);
        let fair = total.saturating_sub(total.div_ceil(4)).max(1);
        let busy = requests_in_flight.saturating_add(requests_in_flight.div_ceil(2));
        let by_rate = (requests_per_second / 2.0).ceil().clamp(1.0, total as f64) as usize;
        LookupSlots {
            total,
            per_host: busy.clamp(1, fair).min(by_rate),
        }
    }
}

/// The version freshness of each container whose version-checker
/// annotations override how it is looked up, looked up with that
/// container's own logins for the repository it names; and, when any
/// container has annotations, the (scope, image)s that some container
/// without them runs (only those get the per-image answer). Opted-out
/// containers and unusable annotations get no answer, and none is looked
/// up unless `look_up` (a version fact: after the first push of a cold
/// start, [`Filling`]).
async fn overridden_versions<'w>(
    resolver: &Arc<Resolver>,
    credentials: &Arc<Credentials>,
    workloads: &'w [Arc<Workload>],
    resolutions: &Resolutions,
    concurrency: usize,
    look_up: bool,
) -> (
    Option<HashSet<(Scope, &'w str)>>,
    Vec<(Owner, String, Arc<VersionInfo>)>,
) {
    let annotated = |c: &Container| c.versions.is_some();
    if !workloads.iter().any(|w| w.containers.iter().any(annotated)) {
        return (None, Vec::new());
    }
    let mut plain = HashSet::new();
    let mut wanted = Vec::new();
    for (index, workload) in workloads.iter().enumerate() {
        let scope = resolutions.workload_scope(index);
        for container in &workload.containers {
            let Some(annotations) = &container.versions else {
                plain.insert((scope, &*container.image));
                continue;
            };
            let Ok(overrides) = &annotations.overrides else {
                continue;
            };
            if !annotations.enabled || !look_up {
                continue;
            }
            let lookup_in = annotations.override_url.clone();
            // The logins this workload's pods would use for that repository.
            let probe = Workload {
                containers: vec![Container {
                    image: lookup_in.clone().unwrap_or_else(|| container.image.clone()),
                    versions: None,
                    ..container.clone()
                }],
                metadata_labels: Vec::new(),
                ..(**workload).clone()
            };
            let logins = credentials
                .lookups(&[Arc::new(probe)])
                .images
                .pop()
                .map(|l| l.logins)
                .unwrap_or_default();
            let owner: Owner = (
                workload.namespace.clone(),
                workload.name.clone(),
                container.name.clone(),
            );
            // Owned: a borrowed one would tie the lookups' futures to this
            // call's lifetimes, and the background stage spawns them.
            let overrides = overrides.clone();
            wanted.push((owner, container.image.clone(), lookup_in, logins, overrides));
        }
    }
    let answers = futures::stream::iter(wanted)
        .map(|(owner, image, lookup_in, mut logins, overrides)| {
            let (resolver, credentials) = (resolver.clone(), credentials.clone());
            async move {
                let repository = lookup_in.as_deref().unwrap_or(&image);
                if let Some(login) = credentials.cloud_login(repository).await {
                    logins.push(login);
                }
                let logins: Vec<&Login> = logins.iter().collect();
                let answer =
                    resolver.versions(&image, lookup_in.as_deref(), &logins, &overrides, None);
                let answer = Box::pin(answer).await?;
                Some((owner, image.to_string(), answer))
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(std::future::ready)
        .collect()
        .await;
    (Some(plain), answers)
}

/// Resolves each lookup; a cloud registry's ambient login is tried after
/// the pull secrets and static logins, as the kubelet's credential
/// providers come after pull secrets. A lookup waits for a slot of its
/// registry host (see [`LookupSlots`]) before it takes one of all. A
/// resolved image's version freshness is looked up with the same logins
/// (with `--versions`). With [`Facts::Known`] (or [`Facts::Digest`]), a
/// lookup waits only for the metadata (or the digest) and the facts that
/// need no request made for the first time.
async fn resolve_all(
    resolver: &Arc<Resolver>,
    credentials: &Arc<Credentials>,
    lookups: Vec<Lookup>,
    concurrency: LookupSlots,
    facts: Facts,
) -> Vec<memo::Timed> {
    let slots = Arc::new(Semaphore::new(concurrency.total));
    let per_host = concurrency.per_host;
    let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let lookups: futures::stream::FuturesUnordered<_> = lookups
        .into_iter()
        .map(|lookup| {
            let host = crate::reference::parse(&lookup.image)
                .map_or_else(|_| String::new(), |r| r.resolve_registry().to_owned());
            let host_slots = hosts
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(per_host)))
                .clone();
            let (resolver, credentials, slots) =
                (resolver.clone(), credentials.clone(), slots.clone());
            crate::registry::expiry::valid_until(async move {
                let _host_slot = host_slots.acquire_owned().await;
                let _slot = slots.acquire_owned().await;
                // Boxed: a snapshot queues every lookup at once, and a
                // queued one should cost its key, not the state of a running
                // lookup (~30 MB at 10k containers when inline).
                Box::pin(lookup_one(&resolver, &credentials, lookup, facts)).await
            })
        })
        .collect();
    lookups.collect().await
}

/// One lookup of [`resolve_all`], once it holds its slots.
async fn lookup_one(
    resolver: &Resolver,
    credentials: &Credentials,
    mut lookup: Lookup,
    facts: Facts,
) -> Resolved {
    if let Some(login) = credentials.cloud_login(&lookup.image).await {
        lookup.logins.push(login);
    }
    let logins: Vec<&Login> = lookup.logins.iter().collect();
    let (resolution, mut left_out) = resolver.resolve_facts(&lookup.image, &logins, facts).await;
    let versions = match &resolution {
        Ok(_) if facts != Facts::All => {
            let known = resolver.known_versions(&lookup.image, &logins).await;
            left_out |= known.is_none();
            known.flatten()
        }
        Ok(metadata) => {
            let none = Overrides::default();
            // Boxed: a cold lookup nests a listing and a resolution.
            let lookup = resolver.versions(&lookup.image, None, &logins, &none, Some(metadata));
            Box::pin(lookup).await
        }
        Err(_) => None,
    };
    (
        lookup.scope,
        lookup.image.to_string(),
        resolution,
        versions,
        left_out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_gets_enough_lookups_for_its_requests_but_never_every_slot() {
        let slots = |total, in_flight, rps| {
            let s = LookupSlots::new(total, in_flight, rps);
            (s.total, s.per_host)
        };
        // The harness's settings: 10 requests in flight want 15 lookups,
        // and three quarters of 16 is 12.
        assert_eq!(slots(16, 10, 1000.0), (16, 12));
        assert_eq!(slots(16, 4, 1000.0), (16, 6));
        assert_eq!(slots(64, 10, 1000.0), (64, 15));
        // The default rate: no more lookups than half of 5 requests a second.
        assert_eq!(slots(16, 10, 5.0), (16, 3));
        // Another host always has a slot left.
        assert_eq!(slots(2, 10, 1000.0), (2, 1));
        assert_eq!(slots(4, 10, 1000.0), (4, 3));
        assert_eq!(slots(1, 10, 0.1), (1, 1));
        assert_eq!(slots(0, 0, 5.0), (1, 1));
    }
}
