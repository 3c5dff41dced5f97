//! Workloads kept current by kube-runtime watchers, for the long-running
//! mode: one list per kind at start (and after a 410 Gone), then watch
//! events, instead of listing everything at every tick.
//!
//! Each watcher (one per kind, or per kind and namespace with
//! `--namespace`) owns a store of [`Workload`]s keyed by namespace and name.
//! Objects are reduced with the same extraction as [`super::ClusterSource`]
//! the moment they arrive and are dropped at once, so memory follows the
//! number of containers, never the size of objects (status, managed fields,
//! annotations). A workload that did not change keeps its `Arc` — across
//! status-only updates and across re-lists — so the inventory can reuse the
//! label sets it encoded for it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::{workload, HasPodSpec, Kind, Workload};
use crate::telemetry::Telemetry;

/// Namespace and name of an object within one watcher's store.
type ObjectKey = (String, String);

/// Keeps the workloads of a cluster current with one kube-runtime watcher
/// per kind (and per namespace when namespaces are given).
///
/// Dropping it stops the watchers.
pub struct WatchedCluster {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl WatchedCluster {
    /// Spawns the watchers (tokio tasks); returns at once. `namespaces`
    /// empty means all namespaces. Must be called on a tokio runtime.
    pub fn start(
        client: Client,
        namespaces: Vec<String>,
        telemetry: Arc<Telemetry>,
    ) -> WatchedCluster {
        let mut namespaces = namespaces;
        namespaces.sort();
        namespaces.dedup();
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.into_iter().map(Some).collect()
        };
        // Streams are laid out in (kind, namespace) order, so concatenating
        // their stores (each ordered by namespace and name) is sorted.
        let mut streams = Vec::new();
        for kind in Kind::ALL {
            streams.extend(scopes.iter().map(|_| Stream::new(kind)));
        }
        let (changes, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            streams: Mutex::new(streams),
            changes,
            telemetry,
        });
        let mut tasks = Vec::new();
        let mut index = 0;
        for kind in Kind::ALL {
            for scope in &scopes {
                let task = match kind {
                    Kind::Pod => spawn::<Pod>(&client, scope, index, &shared),
                    Kind::Deployment => spawn::<Deployment>(&client, scope, index, &shared),
                    Kind::StatefulSet => spawn::<StatefulSet>(&client, scope, index, &shared),
                    Kind::DaemonSet => spawn::<DaemonSet>(&client, scope, index, &shared),
                    Kind::Job => spawn::<Job>(&client, scope, index, &shared),
                    Kind::CronJob => spawn::<CronJob>(&client, scope, index, &shared),
                };
                tasks.push(task);
                index += 1;
            }
        }
        WatchedCluster { shared, tasks }
    }

    /// The current workloads, sorted by (kind, namespace, name). An object
    /// that did not change keeps the same `Arc` between calls; a modified
    /// one gets a new `Arc`.
    pub fn snapshot(&self) -> Vec<Arc<Workload>> {
        let streams = self.shared.lock();
        let mut workloads = Vec::with_capacity(streams.iter().map(|s| s.objects.len()).sum());
        for stream in streams.iter() {
            workloads.extend(stream.objects.values().cloned());
        }
        debug_assert!(workloads.is_sorted_by(|a, b| {
            (a.kind, &a.namespace, &a.name) <= (b.kind, &b.namespace, &b.name)
        }));
        workloads
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
    telemetry: Arc<Telemetry>,
}

/// The store and status of one watcher.
struct Stream {
    kind: Kind,
    objects: BTreeMap<ObjectKey, Arc<Workload>>,
    /// The first list has completed, or the API refused it (403): from
    /// then on this watcher does not hold readiness back.
    ready: bool,
    /// The API refused the last list or watch with 403 (and no object has
    /// come since).
    forbidden: bool,
}

impl Stream {
    fn new(kind: Kind) -> Stream {
        Stream {
            kind,
            objects: BTreeMap::new(),
            ready: false,
            forbidden: false,
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

    /// The stored `Arc` when it holds an equal workload, else a new one.
    fn reuse(&self, index: usize, key: &ObjectKey, workload: Workload) -> Arc<Workload> {
        match self.lock()[index].objects.get(key) {
            Some(old) if **old == workload => old.clone(),
            _ => Arc::new(workload),
        }
    }

    /// A complete list: its objects replace the store, so objects deleted
    /// while no watch was open disappear.
    fn replace(&self, index: usize, objects: BTreeMap<ObjectKey, Arc<Workload>>) {
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
        let kind = stream.kind;
        let now_ready = streams.iter().all(Stream::is_ready);
        self.count(&streams, kind);
        drop(streams);
        drop(old);
        if grown || (now_ready && !was_ready) {
            self.changes.send_modify(|generation| *generation += 1);
        }
    }

    /// An object added or modified while watching.
    fn apply(&self, index: usize, workload: Workload) {
        let key = (workload.namespace.clone(), workload.name.clone());
        let mut streams = self.lock();
        let stream = &mut streams[index];
        let grown = match stream.objects.get(&key) {
            // A change that does not touch the containers (status, labels,
            // replicas): keep the Arc, so nothing is encoded again.
            Some(old) if **old == workload => return,
            Some(old) => images_differ(old, &workload),
            None => true,
        };
        let old = stream.objects.insert(key, Arc::new(workload));
        let kind = stream.kind;
        self.count(&streams, kind);
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
        drop(streams);
        drop(old);
    }

    /// Marks a watcher refused (403); true when it was not already. A
    /// refused list empties the store: like [`super::ClusterSource`], a kind
    /// that may not be listed is left out of the inventory. A refused watch
    /// keeps what the last list and events said.
    fn forbid(&self, index: usize, list: bool) -> bool {
        let mut streams = self.lock();
        let was_ready = streams.iter().all(Stream::is_ready);
        let stream = &mut streams[index];
        let newly = !stream.forbidden;
        stream.forbidden = true;
        stream.ready = true;
        let old = if list {
            std::mem::take(&mut stream.objects)
        } else {
            BTreeMap::new()
        };
        let kind = stream.kind;
        let now_ready = streams.iter().all(Stream::is_ready);
        self.count(&streams, kind);
        drop(streams);
        drop(old);
        if now_ready && !was_ready {
            self.changes.send_modify(|generation| *generation += 1);
        }
        newly
    }

    /// Clears the refused mark once objects come again; true when it was set.
    fn allowed(&self, index: usize) -> bool {
        std::mem::take(&mut self.lock()[index].forbidden)
    }

    /// Updates the `watched_objects` gauge of `kind` (all its namespaces).
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
    tokio::spawn(run::<K>(api, scope, index, shared.clone()))
}

/// How a watcher error is handled.
enum Failure<'a> {
    /// 403 on the list (`list`) or on the watch.
    Forbidden {
        list: bool,
        message: &'a str,
    },
    /// The watch's resourceVersion is gone: kube-runtime re-lists.
    Expired,
    Other,
}

fn classify(error: &watcher::Error) -> Failure<'_> {
    use watcher::Error as E;
    match error {
        E::InitialListFailed(kube::Error::Api(status)) if status.is_forbidden() => {
            Failure::Forbidden {
                list: true,
                message: &status.message,
            }
        }
        E::WatchStartFailed(kube::Error::Api(status))
        | E::WatchFailed(kube::Error::Api(status))
            if status.is_forbidden() =>
        {
            Failure::Forbidden {
                list: false,
                message: &status.message,
            }
        }
        E::WatchError(status) if status.is_forbidden() => Failure::Forbidden {
            list: false,
            message: &status.message,
        },
        E::WatchError(status) if status.code == 410 => Failure::Expired,
        _ => Failure::Other,
    }
}

/// Feeds one watcher's events into its store until the task is aborted
/// (the stream itself never ends: kube-runtime retries with backoff).
async fn run<K>(api: Api<K>, scope: String, index: usize, shared: Arc<Shared>)
where
    K: HasPodSpec + kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = K::KIND;
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    // The objects of a list in progress; they replace the store at InitDone.
    let mut listing: Option<BTreeMap<ObjectKey, Arc<Workload>>> = None;
    // The error streak in progress: its first error (and any different one)
    // is logged at warn, repeats at debug.
    let mut last_error: Option<String> = None;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(error) => {
                handle_error(&shared, index, kind, &scope, &error, &mut last_error);
                continue;
            }
        };
        // Init comes before its list request is sent, so only what follows
        // it shows that the API answers again.
        if !matches!(event, Event::Init) {
            if last_error.take().is_some() {
                info!(kind = %kind, scope, "watching again");
            }
            if shared.allowed(index) {
                info!(kind = %kind, scope, "allowed to list and watch this kind again; its containers are back in the inventory");
            }
        }
        match event {
            Event::Init => {
                debug!(kind = %kind, scope, "listing");
                listing = Some(BTreeMap::new());
            }
            Event::InitApply(obj) => {
                let workload = workload(&obj, "default");
                drop(obj);
                let key = (workload.namespace.clone(), workload.name.clone());
                let workload = shared.reuse(index, &key, workload);
                listing.get_or_insert_default().insert(key, workload);
            }
            Event::InitDone => {
                let objects = listing.take().unwrap_or_default();
                debug!(kind = %kind, scope, objects = objects.len(), "listed; watching");
                shared.replace(index, objects);
            }
            Event::Apply(obj) => shared.apply(index, workload(&obj, "default")),
            Event::Delete(obj) => {
                let meta = HasPodSpec::meta(&obj);
                let key = (
                    meta.namespace
                        .clone()
                        .unwrap_or_else(|| "default".to_owned()),
                    meta.name.clone().unwrap_or_default(),
                );
                shared.delete(index, &key);
            }
        }
    }
}

fn handle_error(
    shared: &Shared,
    index: usize,
    kind: Kind,
    scope: &str,
    error: &watcher::Error,
    last_error: &mut Option<String>,
) {
    let counter = |reason: &str| {
        shared
            .telemetry
            .discovery_errors
            .with_label_values(&[kind.as_str(), reason])
            .inc();
    };
    match classify(error) {
        Failure::Forbidden { list, message } => {
            counter("forbidden");
            let newly = shared.forbid(index, list);
            if !newly {
                debug!(kind = %kind, scope, "still not allowed to list or watch this kind");
            } else if list {
                warn!(kind = %kind, scope, detail = %message,
                    "not allowed to list this kind; its containers are left out of the inventory (grant list and watch on it in the ClusterRole); retrying with backoff");
            } else {
                warn!(kind = %kind, scope, detail = %message,
                    "not allowed to watch this kind; its containers are no longer kept current (grant list and watch on it in the ClusterRole); retrying with backoff");
            }
        }
        Failure::Expired => {
            // Routine: history moved on while the watch was down.
            debug!(kind = %kind, scope, error = %error, "watch expired; listing again");
        }
        Failure::Other => {
            counter("error");
            let text = error.to_string();
            if last_error.as_deref() == Some(text.as_str()) {
                debug!(kind = %kind, scope, error = %text, "watch still failing; retrying with backoff");
            } else {
                warn!(kind = %kind, scope, error = %text, "watch failed; retrying with backoff (the last known workloads of this kind stay in the inventory)");
            }
            *last_error = Some(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload as the extraction makes it, from a Pod or DaemonSet.
    fn w(kind: Kind, ns: &str, name: &str, images: &[&str]) -> Workload {
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
                workload(&pod, "default")
            }
            Kind::DaemonSet => {
                let ds: DaemonSet = serde_json::from_value(serde_json::json!({
                    "metadata": metadata,
                    "spec": {"selector": {}, "template": {"spec": {"containers": containers}}}
                }))
                .unwrap();
                workload(&ds, "default")
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
            telemetry: Arc::new(Telemetry::new()),
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
                assert!(s.forbid(index, true));
                assert!(!s.forbid(index, true), "reported once");
            } else {
                s.replace(index, BTreeMap::new());
            }
        }
        assert!(s.lock().iter().all(Stream::is_ready));
        assert!(rx.has_changed().unwrap(), "readiness is announced");
    }

    #[test]
    fn forbidden_list_empties_the_store_forbidden_watch_keeps_it() {
        let s = shared(&[None]);
        s.apply(3, w(Kind::DaemonSet, "a", "agent", &["agent:1"]));
        s.forbid(3, false);
        assert_eq!(s.lock()[3].objects.len(), 1);
        assert!(s.allowed(3));
        s.forbid(3, true);
        assert!(s.lock()[3].objects.is_empty());
        assert_eq!(
            s.telemetry
                .watched_objects
                .with_label_values(&["DaemonSet"])
                .get(),
            0
        );
    }
}
