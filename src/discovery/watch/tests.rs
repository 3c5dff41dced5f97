use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;

use super::backoff::Backoff;
use super::backoff::*;
use super::{ObjectKey, Shared, Stream, WatchOptions, STALE_INVENTORY};
use crate::discovery::Metrics;
use crate::discovery::{
    workload_keeping, Kind, MetadataAllowlist, Selection, StringPool, Workload,
};

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
        metrics: Metrics::new(&prometheus::Registry::new()),
        readiness: Arc::default(),
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
        s.metrics.watched_objects.with_label_values(&["Pod"]).get(),
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
        s.metrics
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
        s.metrics
            .watched_objects
            .with_label_values(&["DaemonSet"])
            .get(),
        0
    );
    assert!(
        s.readiness
            .failing()
            .iter()
            .all(|(c, _)| c != STALE_INVENTORY),
        "a refused kind does not make the replica unready"
    );
    s.fail(0, false, "connection refused".into());
    s.expire();
    let failing = s.readiness.failing();
    assert!(
        failing
            .iter()
            .any(|(c, r)| c == STALE_INVENTORY && r.contains("Pod not refreshed")),
        "{failing:?}"
    );
    s.replace(0, BTreeMap::new());
    assert!(s
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
