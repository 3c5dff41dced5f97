//! One snapshot: workloads → (image, logins) → metadata → series.
//!
//! Each image is resolved once per credential scope (workloads with the
//! same namespace, pull secrets and service account share one), with the
//! logins the kubelet would use for it ([`crate::credentials`]). With a watch-fed cluster, new
//! references are resolved as they appear, off the tick path, so a tick
//! over a warm cache asks no registry anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::credentials::{self, Credentials, Login, Lookup, Scope};
use crate::discovery::files::FileLimits;
use crate::discovery::watch::WatchOptions;
use crate::discovery::{
    ClusterSource, Container, FileSource, MetadataAllowlist, Selection, Source, WatchedCluster,
    Workload,
};
use crate::image_facts::{ErrorClass, Owner, Resolution, Resolutions, VersionInfo};
use crate::inventory::Inventory;
use crate::registry::{Resolver, ResolverConfig};
use crate::self_metrics;
use crate::series::{CommonLabels, Snapshot};
use crate::telemetry::Telemetry;
use crate::versions::Overrides;

mod metrics;
pub use metrics::Metrics;

/// How long the first snapshot waits for the first lists of watches.
const FIRST_LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the log sums up the images that still cannot be resolved.
const FAILURE_SUMMARY_EVERY: Duration = Duration::from_secs(600);

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
}

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
        let concurrency =
            LookupSlots::new(settings.resolve_concurrency, settings.resolver.registry_rps);
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
        self.credentials.wait_ready(FIRST_LIST_TIMEOUT).await;
        if let Source::Watched(watched) = &self.source {
            let deadline = Instant::now() + FIRST_LIST_TIMEOUT;
            while !watched.is_ready() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
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
        let lookups = self.credentials.lookups(&workloads);
        let mut resolutions = Resolutions::new();
        resolutions.set_workload_scopes(lookups.workload_scopes);
        let (results, versions): (Vec<_>, Vec<_>) = resolve_all(
            &self.resolver,
            &self.credentials,
            lookups.images,
            self.concurrency,
        )
        .await
        .into_iter()
        .map(|(scope, image, resolution, versions)| ((scope, image, resolution), versions))
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
            series = snapshot.series.len(),
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
        Ok(snapshot)
    }

    /// With a watch-fed cluster: resolves references as they appear, so the
    /// registry work is done before the tick that needs it.
    pub fn spawn_prefetch(&self) -> Option<JoinHandle<()>> {
        let Source::Watched(watched) = &self.source else {
            return None;
        };
        let (watched, credentials, resolver) = (
            watched.clone(),
            self.credentials.clone(),
            self.resolver.clone(),
        );
        let concurrency = self.concurrency;
        Some(tokio::spawn(async move {
            let mut changes = watched.changes();
            let mut known: HashSet<(Scope, String)> = HashSet::new();
            while changes.changed().await.is_ok() {
                // Events come in bursts (a rollout, the first list): take them together.
                tokio::time::sleep(Duration::from_millis(200)).await;
                changes.borrow_and_update();
                let workloads = watched.snapshot();
                let lookups = credentials.lookups(&workloads).images;
                let current: HashSet<(Scope, String)> =
                    lookups.iter().map(|l| (l.scope, l.image.clone())).collect();
                let fresh: Vec<_> = lookups
                    .into_iter()
                    .filter(|l| !known.contains(&(l.scope, l.image.clone())))
                    .collect();
                if !fresh.is_empty() {
                    let count = fresh.len();
                    resolve_all(&resolver, &credentials, fresh, concurrency).await;
                    tracing::debug!(count, "resolved new image references ahead of the tick");
                }
                known = current;
            }
        }))
    }
}

/// What the log has said about images that cannot be resolved. Failures
/// are cached and their metrics carry the rest, so a failure is logged
/// when it starts, when its class changes and when it ends, and all are
/// summed up every [`FAILURE_SUMMARY_EVERY`] while any lasts. Holds only
/// the failing images of the last snapshot.
#[derive(Default)]
struct FailureLog {
    /// Class of each failing image, by credential scope.
    failing: HashMap<Scope, HashMap<String, ErrorClass>>,
    /// When failures were last summed up, or began; `None` while none fail.
    last_summary: Option<Instant>,
}

/// One thing [`FailureLog`] has to say.
#[derive(Debug, PartialEq)]
enum FailureNote<'a> {
    Started {
        image: &'a str,
        class: ErrorClass,
        message: &'a str,
    },
    Changed {
        image: &'a str,
        previous: ErrorClass,
        class: ErrorClass,
        message: &'a str,
    },
    Ended {
        image: &'a str,
        previous: ErrorClass,
    },
    Summary {
        failing: usize,
        /// `class=count` pairs, in class order.
        by_class: String,
    },
}

impl FailureLog {
    /// Compares one snapshot's resolutions with the previous one's; images
    /// no longer in the inventory are forgotten silently.
    fn update<'r>(
        &mut self,
        results: &'r [(Scope, String, Resolution)],
        now: Instant,
    ) -> Vec<FailureNote<'r>> {
        let mut notes = Vec::new();
        let mut failing: HashMap<Scope, HashMap<String, ErrorClass>> = HashMap::new();
        for (scope, image, resolution) in results {
            let before = self
                .failing
                .get(scope)
                .and_then(|images| images.get(image))
                .copied();
            match (resolution, before) {
                (Ok(_), None) => {}
                (Ok(_), Some(previous)) => notes.push(FailureNote::Ended { image, previous }),
                (Err(e), before) => {
                    match before {
                        None => notes.push(FailureNote::Started {
                            image,
                            class: e.class,
                            message: &e.message,
                        }),
                        Some(previous) if previous != e.class => notes.push(FailureNote::Changed {
                            image,
                            previous,
                            class: e.class,
                            message: &e.message,
                        }),
                        Some(_) => {}
                    }
                    failing
                        .entry(*scope)
                        .or_default()
                        .insert(image.clone(), e.class);
                }
            }
        }
        self.failing = failing;
        if self.failing.is_empty() {
            self.last_summary = None;
        } else {
            let last = *self.last_summary.get_or_insert(now);
            if now.saturating_duration_since(last) >= FAILURE_SUMMARY_EVERY {
                notes.push(self.summary());
                self.last_summary = Some(now);
            }
        }
        notes
    }

    fn summary(&self) -> FailureNote<'static> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for class in self.failing.values().flat_map(HashMap::values) {
            *counts.entry(class.as_str()).or_default() += 1;
        }
        FailureNote::Summary {
            failing: counts.values().sum(),
            by_class: counts
                .iter()
                .map(|(class, n)| format!("{class}={n}"))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl FailureNote<'_> {
    fn log(&self) {
        match self {
            FailureNote::Started {
                image,
                class,
                message,
            } => warn!(
                image,
                class = class.as_str(),
                error = message,
                "cannot resolve image; its containers get an empty digest (logged again when this changes)"
            ),
            FailureNote::Changed {
                image,
                previous,
                class,
                message,
            } => warn!(
                image,
                class = class.as_str(),
                previous = previous.as_str(),
                error = message,
                "image still cannot be resolved, for another reason"
            ),
            FailureNote::Ended { image, previous } => {
                info!(image, previous = previous.as_str(), "image resolves again")
            }
            FailureNote::Summary { failing, by_class } => warn!(
                failing,
                by_class = by_class.as_str(),
                "images still cannot be resolved (see container_image_resolve_error)"
            ),
        }
    }
}

/// How many image lookups run at once: in all, and for one registry host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LookupSlots {
    total: usize,
    per_host: usize,
}

impl LookupSlots {
    /// `total` slots, at most half of them (rounded up) for one host, so
    /// one tenant's slow registry cannot hold every slot while the others'
    /// images wait; and for a host no more lookups than half its request
    /// rate: a lookup makes several requests, and lookups that share a
    /// host's rate would all run past their deadline together.
    fn new(total: usize, requests_per_second: f64) -> Self {
        let total = total.max(1);
        let by_rate = (requests_per_second / 2.0).ceil().clamp(1.0, total as f64) as usize;
        LookupSlots {
            total,
            per_host: total.div_ceil(2).min(by_rate),
        }
    }
}

/// The version freshness of each container whose version-checker
/// annotations override how it is looked up, looked up with that
/// container's own logins for the repository it names; and, when any
/// container has annotations, the (scope, image)s that some container
/// without them runs (only those get the per-image answer). Opted-out
/// containers and unusable annotations get no answer.
async fn overridden_versions<'w>(
    resolver: &Arc<Resolver>,
    credentials: &Arc<Credentials>,
    workloads: &'w [Arc<Workload>],
    resolutions: &Resolutions,
    concurrency: usize,
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
            if !annotations.enabled {
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
                    resolver.versions(&image, lookup_in.as_deref(), &logins, overrides, None);
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
/// (with `--versions`).
async fn resolve_all(
    resolver: &Arc<Resolver>,
    credentials: &Arc<Credentials>,
    lookups: Vec<Lookup>,
    concurrency: LookupSlots,
) -> Vec<(Scope, String, Resolution, Option<Arc<VersionInfo>>)> {
    let slots = Arc::new(Semaphore::new(concurrency.total));
    let per_host = concurrency.per_host;
    let mut hosts: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let lookups: futures::stream::FuturesUnordered<_> = lookups
        .into_iter()
        .map(|mut lookup| {
            let host = crate::reference::parse(&lookup.image)
                .map_or_else(|_| String::new(), |r| r.resolve_registry().to_owned());
            let host_slots = hosts
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(per_host)))
                .clone();
            let (resolver, credentials, slots) =
                (resolver.clone(), credentials.clone(), slots.clone());
            async move {
                let _host_slot = host_slots.acquire_owned().await;
                let _slot = slots.acquire_owned().await;
                if let Some(login) = credentials.cloud_login(&lookup.image).await {
                    lookup.logins.push(login);
                }
                let logins: Vec<&Login> = lookup.logins.iter().collect();
                let resolution = resolver.resolve(&lookup.image, &logins).await;
                let versions = match &resolution {
                    Ok(metadata) => {
                        let none = Overrides::default();
                        // Boxed: a cold lookup nests a listing and a resolution.
                        let lookup =
                            resolver.versions(&lookup.image, None, &logins, &none, Some(metadata));
                        Box::pin(lookup).await
                    }
                    Err(_) => None,
                };
                (lookup.scope, lookup.image, resolution, versions)
            }
        })
        .collect();
    lookups.collect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_gets_half_the_lookup_slots_and_no_more_than_its_rate_serves() {
        let slots = |total, rps| {
            let s = LookupSlots::new(total, rps);
            (s.total, s.per_host)
        };
        assert_eq!(slots(16, 5.0), (16, 3));
        assert_eq!(slots(16, 1000.0), (16, 8));
        assert_eq!(slots(2, 1000.0), (2, 1));
        assert_eq!(slots(1, 0.1), (1, 1));
        assert_eq!(slots(0, 5.0), (1, 1));
    }
    use crate::image_facts::{ImageMetadata, ResolveError};

    fn failed(scope: u64, image: &str, class: ErrorClass) -> (Scope, String, Resolution) {
        let error = ResolveError {
            class,
            message: format!("{image} failed"),
        };
        (Scope::for_test(scope), image.to_owned(), Err(error))
    }

    fn resolved(scope: u64, image: &str) -> (Scope, String, Resolution) {
        let metadata = ImageMetadata {
            digest: "sha256:aa".into(),
            size: 1,
            created: None,
            labels: Default::default(),
            annotations: Default::default(),
            dropped: Default::default(),
            supply_chain: Default::default(),
            platform_digests: Vec::new(),
        };
        (
            Scope::for_test(scope),
            image.to_owned(),
            Ok(Arc::new(metadata)),
        )
    }

    #[test]
    fn a_failure_is_logged_when_it_starts_changes_and_ends() {
        let mut log = FailureLog::default();
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let first = [
            failed(0, "gone:1", ErrorClass::NotFound),
            resolved(0, "ok:1"),
        ];
        assert_eq!(
            log.update(&first, at(0)),
            [FailureNote::Started {
                image: "gone:1",
                class: ErrorClass::NotFound,
                message: "gone:1 failed"
            }]
        );
        for tick in 1..100 {
            assert_eq!(log.update(&first, at(tick)), [], "tick {tick}");
        }
        let changed = [
            failed(0, "gone:1", ErrorClass::Unauthorized),
            resolved(0, "ok:1"),
        ];
        assert_eq!(
            log.update(&changed, at(100)),
            [FailureNote::Changed {
                image: "gone:1",
                previous: ErrorClass::NotFound,
                class: ErrorClass::Unauthorized,
                message: "gone:1 failed"
            }]
        );
        let back = [resolved(0, "gone:1"), resolved(0, "ok:1")];
        assert_eq!(
            log.update(&back, at(101)),
            [FailureNote::Ended {
                image: "gone:1",
                previous: ErrorClass::Unauthorized
            }]
        );
        assert_eq!(log.update(&back, at(102)), []);
    }

    #[test]
    fn failures_are_summed_up_while_they_last() {
        let mut log = FailureLog::default();
        let start = Instant::now();
        let failing = [
            failed(0, "a:1", ErrorClass::NotFound),
            failed(0, "b:1", ErrorClass::NotFound),
            failed(7, "a:1", ErrorClass::Unauthorized),
        ];
        assert_eq!(log.update(&failing, start).len(), 3);
        let every = FAILURE_SUMMARY_EVERY;
        assert_eq!(log.update(&failing, start + every / 2), []);
        let summary = FailureNote::Summary {
            failing: 3,
            by_class: "not_found=2 unauthorized=1".into(),
        };
        assert_eq!(log.update(&failing, start + every), [summary]);
        assert_eq!(log.update(&failing, start + every * 3 / 2), []);
        assert_eq!(log.update(&failing, start + every * 2).len(), 1);
        // Nothing failing: no summary, and the next failure starts afresh.
        assert_eq!(log.update(&[], start + every * 5), []);
        assert_eq!(log.update(&failing[..1], start + every * 6).len(), 1);
        assert_eq!(log.update(&failing[..1], start + every * 6 + every / 2), []);
    }

    #[test]
    fn images_that_left_the_inventory_are_forgotten() {
        let mut log = FailureLog::default();
        let now = Instant::now();
        let images: Vec<_> = (0..1000)
            .map(|i| failed(0, &format!("gone:{i}"), ErrorClass::NotFound))
            .collect();
        assert_eq!(log.update(&images, now).len(), 1000);
        let one = [failed(0, "other:1", ErrorClass::NotFound)];
        assert_eq!(log.update(&one, now).len(), 1);
        assert_eq!(log.failing.values().map(HashMap::len).sum::<usize>(), 1);
        // Back in the inventory, still failing: it starts again.
        assert_eq!(log.update(&images[..1], now).len(), 1);
    }

    #[test]
    fn each_credential_scope_is_its_own_failure() {
        let mut log = FailureLog::default();
        let now = Instant::now();
        let both = [
            failed(1, "private:1", ErrorClass::Unauthorized),
            resolved(2, "private:1"),
        ];
        assert_eq!(log.update(&both, now).len(), 1);
        assert_eq!(log.update(&both, now), []);
        let swapped = [
            resolved(1, "private:1"),
            failed(2, "private:1", ErrorClass::Unauthorized),
        ];
        let notes = log.update(&swapped, now);
        assert!(
            matches!(
                notes[..],
                [FailureNote::Ended { .. }, FailureNote::Started { .. }]
            ),
            "{notes:?}"
        );
    }
}
