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

//!
//! The parts: `store` (the objects of every watcher, their staleness and
//! readiness), `stream` (one watcher's loop: events into the store, errors
//! into staleness and backoff), `backoff` (the retry delays) and
//! `custom_kinds` (the watcher of a configured kind: API discovery first).

mod backoff;
mod custom_kinds;
mod store;
mod stream;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use tokio::task::JoinHandle;

use crate::discovery::custom::KindSpec;
use crate::discovery::metrics::Metrics;
use crate::discovery::{Kind, MetadataAllowlist, Selection, StringPool, Workload};
use crate::readiness::Readiness;
use custom_kinds::run_custom;
use stream::{spawn, Spawn};

/// The readiness condition that fails while a kind has been stale for
/// longer than the grace period.
pub const STALE_INVENTORY: &str = "inventory";

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
        metrics: Metrics,
        readiness: Arc<Readiness>,
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
            metrics,
            readiness,
            selection,
            metadata,
            strings: StringPool::default(),
        });
        for kind in &kinds {
            // Every kind is reported, stale or not, from the start.
            shared
                .metrics
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
    metrics: Metrics,
    /// Failing while a kind is stale.
    readiness: Arc<Readiness>,
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
