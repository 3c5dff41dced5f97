//! Workloads kept current by kube-runtime watchers, for the long-running
//! mode: one list per kind at start (and after a 410 Gone), then watch
//! events, instead of listing everything at every tick.
//!
//! Each watcher (one per kind, or per kind and namespace with
//! `--namespace`) owns a store of [`Workload`]s keyed by namespace and name.
//! Kinds configured with `--workload-kind` get the same watchers over
//! kube's dynamic API, after API discovery has found them; one whose CRD
//! is not installed holds nothing, does not hold readiness back, and is
//! looked up again until it is. The filters of the [`Selection`] apply as
//! objects arrive: the label selector is sent with every list and watch,
//! excluded namespaces and images never reach the store.
//! Objects are reduced with the same extraction as [`super::ClusterSource`]
//! the moment they arrive and are dropped at once, so memory follows the
//! number of containers, never the size of objects (status, managed fields,
//! annotations). A workload that did not change keeps its `Arc` — across
//! status-only updates and across re-lists — so the inventory can reuse the
//! label sets it encoded for it. The strings workloads repeat come from
//! one [`StringPool`] for all watchers, pruned at every snapshot and
//! re-list, so equal values are one allocation whatever kind holds them.
//!
//! Freshness: a kind whose list or watch fails is *stale* until a list of it
//! completes again (every failure other than a 410 is followed by a fresh
//! list, so "current" never rests on a watch that resumed silently). A stale
//! kind keeps its last known objects, so a restarting API server does not
//! look like every workload disappeared; a kind refused with 403 for longer
//! than the grace period leaves the inventory (its series end), since a
//! transient 403 while the API server's authorizer warms up must not. Retries
//! back off, and the backoff starts over as soon as the server answers again,
//! so an outage's grown backoff does not delay the re-list after it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, GroupVersionKind};
use kube::discovery::{verbs, ApiResource, Scope};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::cluster::custom_workload;
use super::custom::{InvalidObject, KindSpec};
use super::{
    workload_keeping, HasPodSpec, Kind, MetadataAllowlist, Selection, StringPool, Workload,
};
use crate::readiness::Readiness;
use crate::telemetry::Telemetry;

/// The readiness condition that fails while a kind has been stale for
/// longer than the grace period.
pub const STALE_INVENTORY: &str = "inventory";

/// The first retry delay; it doubles per failed attempt up to
/// [`WatchOptions::max_backoff`] (client-go's reflector starts at 800 ms too).
const FIRST_BACKOFF: Duration = Duration::from_millis(800);

/// How the watchers retry and how long they tolerate failures.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How long a kind may stay stale before `/readyz` fails, and how long
    /// a kind refused with 403 keeps its last known objects before they
    /// leave the inventory.
    pub grace_period: Duration,
    /// The longest wait between two attempts to list or watch a kind.
    pub max_backoff: Duration,
    /// `timeoutSeconds` of each watch request: how long an open watch may
    /// go on before it is re-opened, and so how late a revoked permission
    /// is noticed at most (the API server checks RBAC when a watch opens,
    /// never on an open one).
    pub watch_timeout: Duration,
}

impl WatchOptions {
    /// Retries at most half a tick apart (between 1 s and 30 s), so a kind
    /// is current again within a tick of the API server answering.
    pub fn max_backoff_for(interval: Duration) -> Duration {
        (interval / 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// Namespace and name of an object within one watcher's store: the
/// workload's own strings, shared.
type ObjectKey = (Arc<str>, Arc<str>);

/// Keeps the workloads of a cluster current with one kube-runtime watcher
/// per kind (and per namespace when namespaces are given).
///
/// Dropping it stops the watchers.
pub struct WatchedCluster {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl WatchedCluster {
    /// Spawns the watchers (tokio tasks); returns at once. The selection's
    /// namespaces empty means all namespaces. Must be called on a tokio
    /// runtime.
    ///
    /// A configured kind is first looked up with API discovery; while it
    /// is not served (its CRD is not installed) it is looked up again every
    /// [`WatchOptions::max_backoff`], holds no objects and does not hold
    /// readiness back.
    pub fn start(
        client: Client,
        mut selection: Selection,
        options: WatchOptions,
        telemetry: Arc<Telemetry>,
        metadata: MetadataAllowlist,
    ) -> WatchedCluster {
        selection.kinds = KindSpec::normalize(&selection.kinds);
        let mut namespaces = std::mem::take(&mut selection.namespaces);
        namespaces.sort();
        namespaces.dedup();
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        // Streams are laid out in (kind, namespace) order, so concatenating
        // their stores (each ordered by namespace and name) is sorted.
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .chain(selection.kinds.iter().map(KindSpec::kind))
            .collect();
        let mut streams = Vec::new();
        for kind in &kinds {
            streams.extend(scopes.iter().map(|_| Stream::new(*kind)));
        }
        let (changes, _) = tokio::sync::watch::channel(0);
        selection.namespaces = namespaces;
        let shared = Arc::new(Shared {
            streams: Mutex::new(streams),
            changes,
            options,
            telemetry,
            selection,
            metadata,
            strings: StringPool::default(),
        });
        for kind in &kinds {
            // Every kind is reported, stale or not, from the start.
            shared
                .telemetry
                .inventory_stale
                .with_label_values(&[kind.as_str()])
                .set(0);
        }
        let mut tasks = Vec::new();
        let mut index = 0;
        // In the order of Kind::ALL.
        let built_in: [Spawn; 6] = [
            spawn::<Pod>,
            spawn::<Deployment>,
            spawn::<StatefulSet>,
            spawn::<DaemonSet>,
            spawn::<Job>,
            spawn::<CronJob>,
        ];
        for spawn in built_in {
            for scope in &scopes {
                tasks.push(spawn(&client, scope, index, &shared));
                index += 1;
            }
        }
        for spec in &shared.selection.kinds {
            for scope in &scopes {
                tasks.push(tokio::spawn(run_custom(
                    client.clone(),
                    spec.clone(),
                    scope.clone(),
                    index,
                    shared.clone(),
                )));
                index += 1;
            }
        }
        WatchedCluster { shared, tasks }
    }

    /// The current workloads, sorted by (kind, namespace, name). An object
    /// that did not change keeps the same `Arc` between calls; a modified
    /// one gets a new `Arc`.
    ///
    /// Also applies the grace period: kinds refused for longer leave the
    /// inventory, and `/readyz` fails while a kind has been stale for longer.
    pub fn snapshot(&self) -> Vec<Arc<Workload>> {
        self.shared.snapshot()
    }

    /// True once every watched kind has completed its first list. A kind
    /// the API answers 403 for does not hold readiness back.
    pub fn is_ready(&self) -> bool {
        self.shared.lock().iter().all(Stream::is_ready)
    }

    /// A generation counter that moves on when the set of distinct image
    /// strings may have changed: an object was added or its images (or
    /// their pull credentials) changed — deletions only shrink the set, so
    /// they do not count — and once when the cluster becomes ready.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}

impl Drop for WatchedCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the watcher tasks and [`WatchedCluster`] share.
struct Shared {
    /// One entry per watcher, in (kind, namespace) order.
    streams: Mutex<Vec<Stream>>,
    changes: tokio::sync::watch::Sender<u64>,
    options: WatchOptions,
    telemetry: Arc<Telemetry>,
    /// Filters applied to every object as it arrives.
    selection: Selection,
    /// The workload labels and annotations kept.
    metadata: MetadataAllowlist,
    /// The strings of every watcher's workloads, one copy each.
    strings: StringPool,
}

/// Why a watcher's objects could not be refreshed, since when.
#[derive(Debug, Clone)]
struct Stale {
    since: Instant,
    /// The API refused the list or watch (403).
    forbidden: bool,
    /// What the last failure said, for `/readyz`.
    reason: String,
    /// Refused for longer than the grace period: the objects were dropped.
    dropped: bool,
}

/// The store and status of one watcher.
struct Stream {
    kind: Kind,
    objects: BTreeMap<ObjectKey, Arc<Workload>>,
    /// The first list has completed, or the API refused it (403): from
    /// then on this watcher does not hold readiness back.
    ready: bool,
    /// Set from a failed list or watch until a list completes again.
    stale: Option<Stale>,
    /// A configured kind the API server does not serve (its CRD is not
    /// installed); said once, until it is.
    absent: bool,
}

impl Stream {
    fn new(kind: Kind) -> Stream {
        Stream {
            kind,
            objects: BTreeMap::new(),
            ready: false,
            stale: None,
            absent: false,
        }
    }

    fn is_ready(&self) -> bool {
        self.ready
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Stream>> {
        // The store stays consistent under a panic (every update is one
        // map operation), so a poisoned lock is still usable.
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`WatchedCluster::snapshot`]. Also lets go of the strings of
    /// objects deleted or changed since the last one (and of those the
    /// previous snapshot's series held), once per tick.
    fn snapshot(&self) -> Vec<Arc<Workload>> {
        self.expire();
        self.strings.prune();
        let streams = self.lock();
        let mut workloads = Vec::with_capacity(streams.iter().map(|s| s.objects.len()).sum());
        for stream in streams.iter() {
            workloads.extend(stream.objects.values().cloned());
        }
        debug_assert!(workloads.is_sorted_by(|a, b| {
            (a.kind, &a.namespace, &a.name) <= (b.kind, &b.namespace, &b.name)
        }));
        workloads
    }

    /// The stored `Arc` when it holds an equal workload, else a new one
    /// (sharing the stored one's name: names are not pooled).
    fn reuse(&self, index: usize, key: &ObjectKey, mut workload: Workload) -> Arc<Workload> {
        match self.lock()[index].objects.get(key) {
            Some(old) if **old == workload => old.clone(),
            Some(old) => {
                workload.name = old.name.clone();
                Arc::new(workload)
            }
            None => Arc::new(workload),
        }
    }

    /// A complete list: its objects replace the store, so objects deleted
    /// while no watch was open disappear, and the watcher is current again.
    /// Returns the staleness it ended, if any.
    fn replace(&self, index: usize, objects: BTreeMap<ObjectKey, Arc<Workload>>) -> Option<Stale> {
        let mut streams = self.lock();
        let was_ready = streams.iter().all(Stream::is_ready);
        let stream = &mut streams[index];
        let grown = objects
            .iter()
            .any(|(key, new)| match stream.objects.get(key) {
                Some(old) => !Arc::ptr_eq(old, new) && images_differ(old, new),
                None => true,
            });
        // The old map is freed after the lock is released.
        let old = std::mem::replace(&mut stream.objects, objects);
        stream.ready = true;
        stream.absent = false;
        let ended = stream.stale.take();
        let kind = stream.kind;
        let now_ready = streams.iter().all(Stream::is_ready);
        self.count(&streams, kind);
        self.heard(kind);
        drop(streams);
        // A re-list may leave values no object uses; a first list cannot.
        if !old.is_empty() {
            drop(old);
            self.strings.prune();
        }
        if ended.is_some() {
            self.check_readiness();
        }
        if grown || (now_ready && !was_ready) {
            self.changes.send_modify(|generation| *generation += 1);
        }
        ended
    }

    /// An object added or modified while watching.
    fn apply(&self, index: usize, mut workload: Workload) {
        let key = (workload.namespace.clone(), workload.name.clone());
        let mut streams = self.lock();
        let stream = &mut streams[index];
        let grown = match stream.objects.get(&key) {
            // A change that does not touch the containers (status, labels,
            // replicas): keep the Arc, so nothing is encoded again.
            Some(old) if **old == workload => {
                let kind = stream.kind;
                self.heard(kind);
                return;
            }
            Some(old) => {
                // The map keeps the key it has, and with it the old name:
                // one copy of it is enough (names are not pooled).
                workload.name = old.name.clone();
                images_differ(old, &workload)
            }
            None => true,
        };
        let old = stream.objects.insert(key, Arc::new(workload));
        let kind = stream.kind;
        self.count(&streams, kind);
        self.heard(kind);
        drop(streams);
        drop(old);
        if grown {
            self.changes.send_modify(|generation| *generation += 1);
        }
    }

    fn delete(&self, index: usize, key: &ObjectKey) {
        let mut streams = self.lock();
        let old = streams[index].objects.remove(key);
        let kind = streams[index].kind;
        self.count(&streams, kind);
        self.heard(kind);
        drop(streams);
        drop(old);
    }

    /// A configured kind the API server does not serve: no objects, not
    /// stale, and no reason to hold readiness back. Returns whether this is
    /// news (it was served, or not looked up yet).
    fn absent(&self, index: usize) -> bool {
        let mut streams = self.lock();
        let was_ready = streams.iter().all(Stream::is_ready);
        let stream = &mut streams[index];
        let news = !stream.absent;
        stream.absent = true;
        stream.ready = true;
        let ended = stream.stale.take();
        let old = std::mem::take(&mut stream.objects);
        let kind = stream.kind;
        let now_ready = streams.iter().all(Stream::is_ready);
        self.count(&streams, kind);
        drop(streams);
        drop(old);
        if ended.is_some() {
            self.check_readiness();
        }
        if now_ready && !was_ready {
            self.changes.send_modify(|generation| *generation += 1);
        }
        news
    }

    /// Marks a watcher stale after a failed list or watch; its objects
    /// stay. Returns the staleness it had before (`None`: it was current).
    /// A refusal (403) also counts as the first list for readiness, so a
    /// kind the service account may not read does not hold the others back.
    fn fail(&self, index: usize, forbidden: bool, reason: String) -> Option<Stale> {
        let mut streams = self.lock();
        let was_ready = streams.iter().all(Stream::is_ready);
        let stream = &mut streams[index];
        let before = stream.stale.clone();
        let stale = stream.stale.get_or_insert_with(|| Stale {
            since: Instant::now(),
            forbidden,
            reason: String::new(),
            dropped: false,
        });
        if stale.forbidden != forbidden {
            // A different failure: the grace period of a refusal starts
            // with the first 403, not with an earlier outage.
            stale.since = Instant::now();
            stale.forbidden = forbidden;
        }
        stale.reason = reason;
        if forbidden {
            stream.ready = true;
        }
        let kind = stream.kind;
        let now_ready = streams.iter().all(Stream::is_ready);
        self.count(&streams, kind);
        drop(streams);
        if now_ready && !was_ready {
            self.changes.send_modify(|generation| *generation += 1);
        }
        before
    }

    /// Applies the grace period: the objects of watchers refused for longer
    /// leave the inventory, and the readiness condition follows the
    /// watchers stale for longer.
    fn expire(&self) {
        let grace = self.options.grace_period;
        let mut streams = self.lock();
        let mut dropped = Vec::new();
        for stream in streams.iter_mut() {
            let Some(stale) = &mut stream.stale else {
                continue;
            };
            if stale.forbidden && !stale.dropped && stale.since.elapsed() >= grace {
                stale.dropped = true;
                let objects = std::mem::take(&mut stream.objects);
                warn!(kind = %stream.kind, objects = objects.len(), grace = ?grace,
                    "still not allowed to list or watch this kind after the grace period; its containers leave the inventory and their series end (grant list and watch on it in the ClusterRole)");
                dropped.push((stream.kind, objects));
            }
        }
        for (kind, _) in &dropped {
            self.count(&streams, *kind);
        }
        drop(streams);
        drop(dropped);
        self.check_readiness();
    }

    /// Fails [`STALE_INVENTORY`] while a watcher has been stale for longer
    /// than the grace period for a reason other than 403: the API server is
    /// unreachable or failing, and the inventory served is old. Refused
    /// kinds do not count: RBAC that leaves a kind out on purpose must not
    /// keep every replica unready; their series end instead.
    fn check_readiness(&self) {
        let grace = self.options.grace_period;
        let streams = self.lock();
        let mut reasons: Vec<String> = Vec::new();
        for stream in streams.iter() {
            let Some(stale) = &stream.stale else { continue };
            let age = stale.since.elapsed();
            if !stale.forbidden && age >= grace {
                let reason = format!(
                    "{} not refreshed for {}s: {}",
                    stream.kind,
                    age.as_secs(),
                    stale.reason
                );
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
            }
        }
        drop(streams);
        update_readiness(&self.telemetry.readiness, &reasons);
    }

    /// Records that the API server just said something about `kind`.
    fn heard(&self, kind: Kind) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.telemetry
            .watch_last_heard
            .with_label_values(&[kind.as_str()])
            .set(now);
    }

    /// Updates the `watched_objects` and `inventory_stale` gauges of
    /// `kind` (all its namespaces).
    fn count(&self, streams: &[Stream], kind: Kind) {
        let objects: usize = streams
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.objects.len())
            .sum();
        self.telemetry
            .watched_objects
            .with_label_values(&[kind.as_str()])
            .set(objects as i64);
        let stale = streams.iter().any(|s| s.kind == kind && s.stale.is_some());
        self.telemetry
            .inventory_stale
            .with_label_values(&[kind.as_str()])
            .set(i64::from(stale));
    }
}

/// Sets or clears [`STALE_INVENTORY`], logging when it starts and stops.
fn update_readiness(readiness: &Readiness, reasons: &[String]) {
    if reasons.is_empty() {
        if readiness.clear(STALE_INVENTORY) {
            info!("every kind is current again; ready");
        }
    } else if readiness.fail(STALE_INVENTORY, reasons.join("; ")) {
        warn!(stale = %reasons.join("; "), "a kind has been stale for longer than the grace period; not ready");
    }
}

/// Whether two versions of a workload may resolve to different images:
/// other image strings, or other pull credentials for them.
fn images_differ(old: &Workload, new: &Workload) -> bool {
    old.pull != new.pull
        || old
            .containers
            .iter()
            .map(|c| &c.image)
            .ne(new.containers.iter().map(|c| &c.image))
}

/// Starts the watcher of one built-in kind in one scope.
type Spawn = fn(&Client, &Option<String>, usize, &Arc<Shared>) -> JoinHandle<()>;

fn spawn<K>(
    client: &Client,
    namespace: &Option<String>,
    index: usize,
    shared: &Arc<Shared>,
) -> JoinHandle<()>
where
    K: HasPodSpec
        + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    let api: Api<K> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let scope = match namespace {
        Some(namespace) => format!("in namespace {namespace}"),
        None => String::new(),
    };
    let kept = shared.clone();
    let reducer = Reducer {
        reduce: move |object: &K| {
            Ok(workload_keeping(
                object,
                "default",
                &kept.metadata,
                &kept.strings,
            ))
        },
        key: |object: &K| {
            let meta = HasPodSpec::meta(object);
            (
                Arc::from(meta.namespace.as_deref().unwrap_or("default")),
                Arc::from(meta.name.as_deref().unwrap_or_default()),
            )
        },
        dynamic: false,
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        // A built-in kind's API does not go away, so this never returns.
        run(api, reducer, scope, index, shared).await;
    })
}

/// How one watcher turns its objects into workloads.
struct Reducer<R, F> {
    reduce: R,
    /// Namespace and name of an object, as `reduce` would say them.
    key: F,
    /// A configured kind: a 404 means its API went away (the CRD was
    /// deleted), and it has to be discovered again.
    dynamic: bool,
}

/// Finds a configured kind with API discovery: its resource (plural) and
/// scope, or `None` when the API server does not serve it (group, version
/// or kind unknown: its CRD is not installed) or cannot list and watch it.
pub(crate) async fn discover(
    client: &Client,
    spec: &KindSpec,
) -> Result<Option<(ApiResource, Scope)>, kube::Error> {
    let gvk = GroupVersionKind::gvk(&spec.name.group, &spec.name.version, &spec.name.kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, capabilities))
            if capabilities.supports_operation(verbs::LIST)
                && capabilities.supports_operation(verbs::WATCH) =>
        {
            Ok(Some((resource, capabilities.scope)))
        }
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The watcher of a configured kind in one scope: discovery, then the same
/// list and watch as the built-in kinds, and discovery again if its API
/// goes away. Runs until the task is aborted.
async fn run_custom(
    client: Client,
    spec: KindSpec,
    namespace: Option<String>,
    index: usize,
    shared: Arc<Shared>,
) {
    let kind = spec.kind();
    let poll = shared.options.max_backoff;
    let scope = match &namespace {
        Some(namespace) => format!("in namespace {namespace}"),
        None => String::new(),
    };
    let mut backoff = Backoff::new(shared.options.max_backoff);
    let mut was_absent = false;
    loop {
        let delay = match discover(&client, &spec).await {
            Ok(Some((resource, api_scope))) => {
                backoff.succeeded();
                let cluster_scoped = api_scope == Scope::Cluster;
                if cluster_scoped && namespace.is_some() {
                    if shared.absent(index) {
                        warn!(kind = %spec, scope, "this kind is cluster-scoped, so it has no objects in the namespaces given; left out of the inventory");
                    }
                    poll
                } else {
                    if was_absent {
                        info!(kind = %spec, scope, plural = resource.plural, "this kind is served now; listing and watching it");
                    }
                    was_absent = false;
                    let api: Api<DynamicObject> = match &namespace {
                        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                        None => Api::all_with(client.clone(), &resource),
                    };
                    let reducer = Reducer {
                        reduce: |object: &DynamicObject| {
                            custom_workload(
                                &spec,
                                cluster_scoped,
                                object,
                                &shared.metadata,
                                &shared.strings,
                            )
                        },
                        key: |object: &DynamicObject| {
                            let namespace = match (&object.metadata.namespace, cluster_scoped) {
                                (_, true) => "",
                                (Some(namespace), false) => namespace.as_str(),
                                (None, false) => "default",
                            };
                            let name = object.metadata.name.as_deref().unwrap_or_default();
                            (Arc::from(namespace), Arc::from(name))
                        },
                        dynamic: true,
                    };
                    run(api, reducer, scope.clone(), index, shared.clone()).await;
                    debug!(kind = %spec, scope, "this kind's API answers 404; looking it up again");
                    Duration::ZERO
                }
            }
            Ok(None) => {
                count(&shared, kind, "not_installed");
                if shared.absent(index) {
                    warn!(kind = %spec, scope, every = ?poll, "this kind is not served by the API server (its CRD is not installed?); left out of the inventory, and looked up again periodically");
                }
                was_absent = true;
                poll
            }
            Err(error) => {
                count(&shared, kind, "error");
                let answered = matches!(error, kube::Error::Api(_));
                let before = shared.fail(index, false, format!("API discovery failed: {error}"));
                if before.is_none_or(|stale| stale.forbidden) {
                    warn!(kind = %spec, scope, %error, "cannot look this kind up with API discovery; retrying with backoff");
                }
                shared.expire();
                backoff.delay(!answered)
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

fn count(shared: &Shared, kind: Kind, reason: &str) {
    shared
        .telemetry
        .discovery_errors
        .with_label_values(&[kind.as_str(), reason])
        .inc();
}

/// How a watcher error is handled.
enum Failure<'a> {
    /// 403 on the list or on the watch.
    Forbidden { message: &'a str },
    /// The watch's resourceVersion is gone (410): list again at once.
    Expired,
    /// 404: the resource is not served (a CRD deleted).
    NotFound,
    /// Anything else; `answered` when the API server sent a Status (it is
    /// up), false when it could not be reached.
    Other { answered: bool },
}

fn classify(error: &watcher::Error) -> Failure<'_> {
    use watcher::Error as E;
    match error {
        E::InitialListFailed(kube::Error::Api(status))
        | E::WatchStartFailed(kube::Error::Api(status))
        | E::WatchFailed(kube::Error::Api(status))
            if status.is_forbidden() =>
        {
            Failure::Forbidden {
                message: &status.message,
            }
        }
        E::WatchError(status) if status.is_forbidden() => Failure::Forbidden {
            message: &status.message,
        },
        E::WatchError(status) if status.code == 410 => Failure::Expired,
        E::InitialListFailed(kube::Error::Api(status))
        | E::WatchStartFailed(kube::Error::Api(status))
        | E::WatchFailed(kube::Error::Api(status))
            if status.code == 404 =>
        {
            Failure::NotFound
        }
        E::WatchError(status) if status.code == 404 => Failure::NotFound,
        // A 410 on the watch request itself (rather than in its stream).
        E::WatchStartFailed(kube::Error::Api(status)) if status.code == 410 => Failure::Expired,
        E::InitialListFailed(kube::Error::Api(_))
        | E::WatchStartFailed(kube::Error::Api(_))
        | E::WatchFailed(kube::Error::Api(_))
        | E::WatchError(_)
        | E::NoResourceVersion => Failure::Other { answered: true },
        _ => Failure::Other { answered: false },
    }
}

/// Retry delays: doubling from [`FIRST_BACKOFF`] up to a maximum, with
/// jitter. Unlike kube-runtime's default (which only resets 120 s after the
/// last failure), it starts over as soon as the API server answers after
/// being unreachable, so the backoff grown during an outage does not delay
/// the re-list after it.
struct Backoff {
    attempts: u32,
    max: Duration,
    /// The last failure was a connection that did not get an answer.
    unreachable: bool,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff {
            attempts: 0,
            max,
            unreachable: false,
        }
    }

    fn succeeded(&mut self) {
        self.attempts = 0;
        self.unreachable = false;
    }

    /// The wait before the next attempt after a failure.
    fn delay(&mut self, unreachable: bool) -> Duration {
        if self.unreachable && !unreachable {
            self.attempts = 0;
        }
        self.unreachable = unreachable;
        let full = FIRST_BACKOFF
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        // Between half and all of it, so watchers that failed together
        // (every kind, every replica) do not retry together.
        full.mul_f64(0.5 + 0.5 * jitter())
    }
}

/// A number in [0, 1) that differs between calls; not for cryptography.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Feeds one watcher's events into its store until the task is aborted.
/// After any failure the watcher is started over — a fresh list, after a
/// backoff — so the kind is only current again once a list completed: a
/// watch that resumes silently would not say whether it missed anything.
///
/// Returns only for a configured kind whose API answers 404 (its CRD was
/// deleted), so that it is looked up again.
async fn run<K, R, F>(
    api: Api<K>,
    reducer: Reducer<R, F>,
    scope: String,
    index: usize,
    shared: Arc<Shared>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    R: Fn(&K) -> Result<Workload, InvalidObject>,
    F: Fn(&K) -> ObjectKey,
{
    let kind = {
        let streams = shared.lock();
        streams[index].kind
    };
    let timeout = u32::try_from(shared.options.watch_timeout.as_secs())
        .unwrap_or(u32::MAX)
        .max(1);
    let mut config = watcher::Config::default().timeout(timeout);
    if let Some(selector) = shared.selection.label_selector() {
        config = config.labels(&selector);
    }
    let invalid = |error: InvalidObject| {
        count(&shared, kind, "invalid_object");
        warn!(kind = %kind, scope, %error, "skipping an object that is not shaped as configured");
    };
    let mut backoff = Backoff::new(shared.options.max_backoff);
    loop {
        // Boxed so that it (and its connection) can be dropped before the
        // backoff below.
        let mut stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
        // The objects of a list in progress; they replace the store at InitDone.
        let mut listing: Option<BTreeMap<ObjectKey, Arc<Workload>>> = None;
        let mut progressed = false;
        let error = loop {
            // The watcher stream never ends on its own.
            let Some(item) = stream.next().await else {
                break None;
            };
            let event = match item {
                Ok(event) => event,
                Err(error) => break Some(error),
            };
            // Init comes before its list request is sent, so only what
            // follows it shows that the API answers.
            if !matches!(event, Event::Init) {
                progressed = true;
                backoff.succeeded();
            }
            match event {
                Event::Init => {
                    debug!(kind = %kind, scope, "listing");
                    listing = Some(BTreeMap::new());
                }
                Event::InitApply(obj) => {
                    let listing = listing.get_or_insert_default();
                    let reduced = (reducer.reduce)(&obj);
                    drop(obj);
                    match reduced.map(|w| shared.selection.admit(w)) {
                        Ok(Some(workload)) => {
                            let key = (workload.namespace.clone(), workload.name.clone());
                            let workload = shared.reuse(index, &key, workload);
                            // Keyed by the kept workload's own strings.
                            let key = (workload.namespace.clone(), workload.name.clone());
                            listing.insert(key, workload);
                        }
                        Ok(None) => {}
                        Err(error) => invalid(error),
                    }
                }
                Event::InitDone => {
                    let objects = listing.take().unwrap_or_default();
                    debug!(kind = %kind, scope, objects = objects.len(), "listed; watching");
                    if let Some(stale) = shared.replace(index, objects) {
                        let after = stale.since.elapsed();
                        if stale.dropped {
                            info!(kind = %kind, scope, after = ?after, "allowed to list and watch this kind again; its containers are back in the inventory");
                        } else if stale.forbidden {
                            info!(kind = %kind, scope, after = ?after, "allowed to list and watch this kind again; it is current again");
                        } else {
                            info!(kind = %kind, scope, after = ?after, "listed again; this kind is current again");
                        }
                    }
                }
                Event::Apply(obj) => {
                    match (reducer.reduce)(&obj).map(|w| shared.selection.admit(w)) {
                        Ok(Some(workload)) => shared.apply(index, workload),
                        Ok(None) => {}
                        Err(error) => {
                            // What it was before no longer holds.
                            shared.delete(index, &(reducer.key)(&obj));
                            invalid(error);
                        }
                    }
                }
                Event::Delete(obj) => shared.delete(index, &(reducer.key)(&obj)),
            }
        };
        drop(stream);
        if reducer.dynamic
            && error
                .as_ref()
                .is_some_and(|e| matches!(classify(e), Failure::NotFound))
        {
            return;
        }
        let delay = match &error {
            Some(error) => handle_error(
                &shared,
                index,
                kind,
                &scope,
                error,
                progressed,
                &mut backoff,
            ),
            None => backoff.delay(false),
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// Records a failure and says how long to wait before listing again.
fn handle_error(
    shared: &Shared,
    index: usize,
    kind: Kind,
    scope: &str,
    error: &watcher::Error,
    progressed: bool,
    backoff: &mut Backoff,
) -> Duration {
    let counter = |reason: &str| {
        shared
            .telemetry
            .discovery_errors
            .with_label_values(&[kind.as_str(), reason])
            .inc();
    };
    let grace = shared.options.grace_period;
    let delay = match classify(error) {
        Failure::Forbidden { message } => {
            counter("forbidden");
            let before = shared.fail(index, true, format!("forbidden: {message}"));
            match before {
                Some(stale) if stale.forbidden => {
                    debug!(kind = %kind, scope, "still not allowed to list or watch this kind");
                }
                _ => {
                    warn!(kind = %kind, scope, detail = %message, grace = ?grace,
                        "not allowed to list or watch this kind; keeping its last known containers for the grace period (an API server that is starting refuses for a moment), then they leave the inventory (grant list and watch on it in the ClusterRole)");
                }
            }
            backoff.delay(false)
        }
        // Routine: history moved on while the watch was down. A watcher
        // that got somewhere lists again at once; one that did not (the
        // list itself keeps failing this way) backs off.
        Failure::Expired if progressed => {
            debug!(kind = %kind, scope, error = %error, "watch expired; listing again");
            Duration::ZERO
        }
        Failure::Expired => {
            debug!(kind = %kind, scope, error = %error, "watch expired again; listing again after a backoff");
            backoff.delay(false)
        }
        // For a built-in kind, any other failure.
        Failure::NotFound | Failure::Other { .. } => {
            let answered = !matches!(classify(error), Failure::Other { answered: false });
            counter("error");
            let text = error.to_string();
            let before = shared.fail(index, false, text.clone());
            match before {
                // Already reported: only the start and the end of a
                // failure are worth a warning.
                Some(stale) if !stale.forbidden => {
                    debug!(kind = %kind, scope, error = %text, "still failing; retrying with backoff");
                }
                _ => {
                    warn!(kind = %kind, scope, error = %text, "cannot list or watch this kind; its last known containers stay in the inventory, marked stale, until a list succeeds; retrying with backoff");
                }
            }
            backoff.delay(!answered)
        }
    };
    shared.expire();
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload as the extraction makes it, from a Pod or DaemonSet.
    fn w(kind: Kind, ns: &str, name: &str, images: &[&str]) -> Workload {
        reduce(&StringPool::default(), kind, ns, name, images)
    }

    /// [`w`], taking strings from `pool`.
    fn reduce(pool: &StringPool, kind: Kind, ns: &str, name: &str, images: &[&str]) -> Workload {
        let allow = MetadataAllowlist::default();
        let containers: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, image)| serde_json::json!({"name": format!("c{i}"), "image": image}))
            .collect();
        let metadata = serde_json::json!({"name": name, "namespace": ns});
        match kind {
            Kind::Pod => {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": metadata, "spec": {"containers": containers}
                }))
                .unwrap();
                workload_keeping(&pod, "default", &allow, pool)
            }
            Kind::DaemonSet => {
                let ds: DaemonSet = serde_json::from_value(serde_json::json!({
                    "metadata": metadata,
                    "spec": {"selector": {}, "template": {"spec": {"containers": containers}}}
                }))
                .unwrap();
                workload_keeping(&ds, "default", &allow, pool)
            }
            other => panic!("these tests build Pods and DaemonSets only, not {other}"),
        }
    }

    fn shared(scopes: &[Option<&str>]) -> Shared {
        let mut streams = Vec::new();
        for kind in Kind::ALL {
            streams.extend(scopes.iter().map(|_| Stream::new(kind)));
        }
        Shared {
            streams: Mutex::new(streams),
            changes: tokio::sync::watch::channel(0).0,
            options: WatchOptions {
                grace_period: Duration::from_secs(3600),
                max_backoff: Duration::from_secs(30),
                watch_timeout: Duration::from_secs(290),
            },
            telemetry: Arc::new(Telemetry::new()),
            selection: Selection::default(),
            metadata: MetadataAllowlist::default(),
            strings: StringPool::default(),
        }
    }

    fn key(ns: &str, name: &str) -> ObjectKey {
        (ns.into(), name.into())
    }

    #[test]
    fn apply_keeps_the_arc_of_an_unchanged_workload_and_counts_image_changes() {
        let s = shared(&[None]);
        let mut rx = s.changes.subscribe();
        s.apply(0, w(Kind::Pod, "a", "web", &["app:1"]));
        assert_eq!(*rx.borrow_and_update(), 1, "an added object counts");
        let first = s.lock()[0].objects[&key("a", "web")].clone();
        s.apply(0, w(Kind::Pod, "a", "web", &["app:1"]));
        assert!(Arc::ptr_eq(&first, &s.lock()[0].objects[&key("a", "web")]));
        assert!(!rx.has_changed().unwrap(), "no change, no new generation");

        let mut renamed = w(Kind::Pod, "a", "web", &["app:1"]);
        renamed.containers[0].name = "other".into();
        s.apply(0, renamed);
        assert!(!Arc::ptr_eq(&first, &s.lock()[0].objects[&key("a", "web")]));
        assert!(
            !rx.has_changed().unwrap(),
            "same images: the set of images did not change"
        );
        s.apply(0, w(Kind::Pod, "a", "web", &["app:2"]));
        assert!(rx.has_changed().unwrap());
        s.delete(0, &key("a", "web"));
        assert!(s.lock()[0].objects.is_empty());
        assert_eq!(
            s.telemetry
                .watched_objects
                .with_label_values(&["Pod"])
                .get(),
            0
        );
    }

    #[test]
    fn a_list_replaces_the_store_and_readiness_waits_for_every_stream() {
        let s = shared(&[Some("a"), Some("b")]);
        let mut rx = s.changes.subscribe();
        s.apply(0, w(Kind::Pod, "a", "gone", &["x:1"]));
        s.apply(0, w(Kind::Pod, "a", "kept", &["y:1"]));
        rx.borrow_and_update();
        let kept = s.lock()[0].objects[&key("a", "kept")].clone();
        let mut listed = BTreeMap::new();
        let again = s.reuse(0, &key("a", "kept"), w(Kind::Pod, "a", "kept", &["y:1"]));
        listed.insert(key("a", "kept"), again);
        s.replace(0, listed);
        let streams = s.lock();
        assert_eq!(streams[0].objects.len(), 1, "the deleted object is gone");
        assert!(Arc::ptr_eq(&kept, &streams[0].objects[&key("a", "kept")]));
        assert!(!streams.iter().all(Stream::is_ready));
        drop(streams);
        assert!(!rx.has_changed().unwrap(), "nothing new to resolve");
        for index in 1..12 {
            if index == 7 {
                assert!(s.fail(index, true, "forbidden".into()).is_none());
                assert!(s.fail(index, true, "forbidden".into()).is_some());
            } else {
                s.replace(index, BTreeMap::new());
            }
        }
        assert!(s.lock().iter().all(Stream::is_ready));
        assert!(rx.has_changed().unwrap(), "readiness is announced");
    }

    #[test]
    fn workloads_share_one_copy_of_each_repeated_string() {
        let s = shared(&[None]);
        s.apply(0, reduce(&s.strings, Kind::Pod, "shop", "a", &["app:1"]));
        s.apply(0, reduce(&s.strings, Kind::Pod, "shop", "b", &["app:1"]));
        s.apply(
            3,
            reduce(&s.strings, Kind::DaemonSet, "shop", "agent", &["app:1"]),
        );
        let streams = s.lock();
        let a = &streams[0].objects[&key("shop", "a")];
        let b = &streams[0].objects[&key("shop", "b")];
        let agent = &streams[3].objects[&key("shop", "agent")];
        let (ca, cb) = (&a.containers[0], &b.containers[0]);
        assert!(Arc::ptr_eq(&a.namespace, &b.namespace));
        assert!(Arc::ptr_eq(&ca.image, &cb.image));
        assert!(Arc::ptr_eq(&ca.jsonpath, &cb.jsonpath));
        assert!(Arc::ptr_eq(&ca.name, &cb.name));
        assert!(Arc::ptr_eq(
            &a.pull.service_account,
            &b.pull.service_account
        ));
        // Across kinds (and watchers) too.
        assert!(Arc::ptr_eq(&a.namespace, &agent.namespace));
        assert!(Arc::ptr_eq(&ca.image, &agent.containers[0].image));
        assert!(!Arc::ptr_eq(&ca.jsonpath, &agent.containers[0].jsonpath));
        // The store's key is the workload's own strings.
        let (stored, _) = streams[0].objects.get_key_value(&key("shop", "a")).unwrap();
        assert!(Arc::ptr_eq(&stored.0, &a.namespace) && Arc::ptr_eq(&stored.1, &a.name));
        // shop, app:1, c0, two jsonpaths, default.
        assert_eq!(s.strings.len(), 6);
    }

    #[test]
    fn the_pool_lets_go_of_what_deleted_and_relisted_objects_used() {
        let s = shared(&[None]);
        s.apply(0, reduce(&s.strings, Kind::Pod, "shop", "web", &["app:1"]));
        s.apply(
            0,
            reduce(&s.strings, Kind::Pod, "batch", "job", &["only-here:1"]),
        );
        let both = s.strings.len();
        s.delete(0, &key("batch", "job"));
        let workloads = s.snapshot();
        assert_eq!(workloads.len(), 1);
        assert_eq!(
            s.strings.len(),
            both - 2,
            "its namespace and image are let go at the next snapshot"
        );

        // A re-list in which the Pod runs another image.
        let mut listed = BTreeMap::new();
        let changed = reduce(&s.strings, Kind::Pod, "shop", "web", &["app:2"]);
        let changed = s.reuse(0, &key("shop", "web"), changed);
        listed.insert(key("shop", "web"), changed);
        let with_both_images = s.strings.len();
        drop(workloads);
        s.replace(0, listed);
        assert_eq!(
            s.strings.len(),
            with_both_images - 1,
            "the image no object runs any more is let go"
        );
        let images: Vec<Arc<str>> = s
            .snapshot()
            .iter()
            .map(|w| w.containers[0].image.clone())
            .collect();
        assert_eq!(images, [Arc::from("app:2")]);
    }

    #[test]
    fn a_stale_kind_keeps_its_objects_until_a_refusal_outlasts_the_grace_period() {
        let mut s = shared(&[None]);
        s.apply(3, w(Kind::DaemonSet, "a", "agent", &["agent:1"]));
        let stale = |s: &Shared| {
            s.telemetry
                .inventory_stale
                .with_label_values(&["DaemonSet"])
                .get()
        };
        s.fail(3, false, "connection refused".into());
        s.expire();
        assert_eq!(s.lock()[3].objects.len(), 1, "an outage keeps the objects");
        assert_eq!(stale(&s), 1);
        s.fail(3, true, "forbidden".into());
        s.expire();
        assert_eq!(s.lock()[3].objects.len(), 1, "within the grace period");
        let objects = s.lock()[3].objects.clone();
        let ended = s.replace(3, objects).expect("was stale");
        assert!(ended.forbidden && !ended.dropped);
        assert_eq!(stale(&s), 0);

        s.options.grace_period = Duration::ZERO;
        s.fail(3, true, "forbidden".into());
        s.expire();
        assert!(
            s.lock()[3].objects.is_empty(),
            "refused past the grace period"
        );
        assert_eq!(
            s.telemetry
                .watched_objects
                .with_label_values(&["DaemonSet"])
                .get(),
            0
        );
        assert!(
            s.telemetry
                .readiness
                .failing()
                .iter()
                .all(|(c, _)| c != STALE_INVENTORY),
            "a refused kind does not make the replica unready"
        );
        s.fail(0, false, "connection refused".into());
        s.expire();
        let failing = s.telemetry.readiness.failing();
        assert!(
            failing
                .iter()
                .any(|(c, r)| c == STALE_INVENTORY && r.contains("Pod not refreshed")),
            "{failing:?}"
        );
        s.replace(0, BTreeMap::new());
        assert!(s
            .telemetry
            .readiness
            .failing()
            .iter()
            .all(|(c, _)| c != STALE_INVENTORY));
    }

    #[test]
    fn the_backoff_grows_to_its_maximum_and_starts_over_once_the_server_answers() {
        let mut b = Backoff::new(Duration::from_secs(4));
        let delays: Vec<Duration> = (0..6).map(|_| b.delay(true)).collect();
        assert!(delays[0] <= FIRST_BACKOFF);
        assert!(delays[5] >= Duration::from_secs(2) && delays[5] <= Duration::from_secs(4));
        assert!(b.delay(false) <= FIRST_BACKOFF, "the server answers again");
        assert!(
            b.delay(false) > FIRST_BACKOFF / 2,
            "but still fails: grows again"
        );
        b.succeeded();
        assert!(b.delay(false) <= FIRST_BACKOFF);
    }
}
