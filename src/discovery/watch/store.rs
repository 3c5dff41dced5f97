//! The store the watchers share: each watcher's objects, its staleness and
//! readiness, and what `/readyz` and the gauges say about them.

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Instant;

use tracing::{info, warn};

use super::{ObjectKey, Shared, Stale, Stream, STALE_INVENTORY};
use crate::discovery::{Kind, Workload};
use crate::readiness::Readiness;

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<Stream>> {
        // The store stays consistent under a panic (every update is one
        // map operation), so a poisoned lock is still usable.
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// See [`WatchedCluster::snapshot`]. Also lets go of the strings of
    /// objects deleted or changed since the last one (and of those the
    /// previous snapshot's series held), once per tick.
    pub(super) fn snapshot(&self) -> Vec<Arc<Workload>> {
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
    pub(super) fn reuse(
        &self,
        index: usize,
        key: &ObjectKey,
        mut workload: Workload,
    ) -> Arc<Workload> {
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
    pub(super) fn replace(
        &self,
        index: usize,
        objects: BTreeMap<ObjectKey, Arc<Workload>>,
    ) -> Option<Stale> {
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
    pub(super) fn apply(&self, index: usize, mut workload: Workload) {
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

    pub(super) fn delete(&self, index: usize, key: &ObjectKey) {
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
    pub(super) fn absent(&self, index: usize) -> bool {
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
    pub(super) fn fail(&self, index: usize, forbidden: bool, reason: String) -> Option<Stale> {
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
    pub(super) fn expire(&self) {
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
    pub(super) fn check_readiness(&self) {
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
        update_readiness(&self.readiness, &reasons);
    }

    /// Records that the API server just said something about `kind`.
    pub(super) fn heard(&self, kind: Kind) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.metrics
            .watch_last_heard
            .with_label_values(&[kind.as_str()])
            .set(now);
    }

    /// Updates the `watched_objects` and `inventory_stale` gauges of
    /// `kind` (all its namespaces).
    pub(super) fn count(&self, streams: &[Stream], kind: Kind) {
        let objects: usize = streams
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.objects.len())
            .sum();
        self.metrics
            .watched_objects
            .with_label_values(&[kind.as_str()])
            .set(objects as i64);
        let stale = streams.iter().any(|s| s.kind == kind && s.stale.is_some());
        self.metrics
            .inventory_stale
            .with_label_values(&[kind.as_str()])
            .set(i64::from(stale));
    }
}

/// Sets or clears [`STALE_INVENTORY`], logging when it starts and stops.
pub(super) fn update_readiness(readiness: &Readiness, reasons: &[String]) {
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
pub(super) fn images_differ(old: &Workload, new: &Workload) -> bool {
    old.pull != new.pull
        || old
            .containers
            .iter()
            .map(|c| &c.image)
            .ne(new.containers.iter().map(|c| &c.image))
}
