//! One watcher's loop: its events into the store, its errors into
//! staleness, counters and a backoff.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::{ObjectKey, Shared};
use crate::discovery::custom::InvalidObject;
use crate::discovery::{workload_keeping, HasPodSpec, Kind, Workload};

/// Starts the watcher of one built-in kind in one scope.
pub(super) type Spawn = fn(&Client, &Option<String>, usize, &Arc<Shared>) -> JoinHandle<()>;

pub(super) fn spawn<K>(
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
pub(super) struct Reducer<R, F> {
    pub(super) reduce: R,
    /// Namespace and name of an object, as `reduce` would say them.
    pub(super) key: F,
    /// A configured kind: a 404 means its API went away (the CRD was
    /// deleted), and it has to be discovered again.
    pub(super) dynamic: bool,
}

pub(super) fn count(shared: &Shared, kind: Kind, reason: &str) {
    shared
        .metrics
        .errors
        .with_label_values(&[kind.as_str(), reason])
        .inc();
}

/// How a watcher error is handled.
pub(super) enum Failure<'a> {
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

pub(super) fn classify(error: &watcher::Error) -> Failure<'_> {
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

/// Feeds one watcher's events into its store until the task is aborted.
/// After any failure the watcher is started over — a fresh list, after a
/// backoff — so the kind is only current again once a list completed: a
/// watch that resumes silently would not say whether it missed anything.
///
/// Returns only for a configured kind whose API answers 404 (its CRD was
/// deleted), so that it is looked up again.
pub(super) async fn run<K, R, F>(
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
    let watcher = Watcher {
        shared: &shared,
        index,
        kind,
        scope: &scope,
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
            watcher.apply(event, &reducer, &mut listing);
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

/// One watcher, as its events are applied: where its objects go and how
/// logs name it.
struct Watcher<'a> {
    shared: &'a Shared,
    index: usize,
    kind: Kind,
    scope: &'a str,
}

impl Watcher<'_> {
    fn invalid(&self, error: InvalidObject) {
        let (kind, scope) = (self.kind, self.scope);
        count(self.shared, kind, "invalid_object");
        warn!(kind = %kind, scope, %error, "skipping an object that is not shaped as configured");
    }

    /// Applies one event to the store; the objects of a list in progress
    /// gather in `listing` and replace the store at `InitDone`.
    fn apply<K, R, F>(
        &self,
        event: Event<K>,
        reducer: &Reducer<R, F>,
        listing: &mut Option<BTreeMap<ObjectKey, Arc<Workload>>>,
    ) where
        R: Fn(&K) -> Result<Workload, InvalidObject>,
        F: Fn(&K) -> ObjectKey,
    {
        let (shared, index, kind, scope) = (self.shared, self.index, self.kind, self.scope);
        match event {
            Event::Init => {
                debug!(kind = %kind, scope, "listing");
                *listing = Some(BTreeMap::new());
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
                    Err(error) => self.invalid(error),
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
                        self.invalid(error);
                    }
                }
            }
            Event::Delete(obj) => shared.delete(index, &(reducer.key)(&obj)),
        }
    }
}

/// Records a failure and says how long to wait before listing again.
pub(super) fn handle_error(
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
            .metrics
            .errors
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
