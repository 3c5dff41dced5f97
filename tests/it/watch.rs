//! The watch-fed inventory (`discovery::watch::WatchedCluster`) against the
//! Kubernetes API test server, through the real kube client and
//! kube-runtime watchers: initial lists, events, resumed and expired
//! watches, forbidden kinds, readiness, namespaces.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use container_image_pusher::discovery::watch::{WatchOptions, WatchedCluster, STALE_INVENTORY};
use container_image_pusher::discovery::Metrics;
use container_image_pusher::discovery::{Kind, Selection, Workload};
use container_image_pusher::readiness::Readiness;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use support::fixtures::{object, pod};
use support::{wait_until, KubeApi};

/// Long enough for a few rounds of kube-runtime's backoff (0.8 s, doubling).
const TIMEOUT: Duration = Duration::from_secs(60);

/// A template's `spec` with an init container and a regular one.
fn template(image: &str) -> serde_json::Value {
    json!({"spec": {
        "initContainers": [{"name": "init", "image": "init:1"}],
        "containers": [{"name": "app", "image": image}],
    }})
}

fn deployment(namespace: &str, name: &str, image: &str) -> Deployment {
    object(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {}, "template": template(image)},
    }))
}

fn daemon_set(namespace: &str, name: &str, image: &str) -> DaemonSet {
    object(json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {}, "template": template(image)},
    }))
}

/// What the watcher reports besides its snapshots.
struct Health {
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

async fn start(api: &KubeApi, namespaces: &[&str]) -> (WatchedCluster, Arc<Health>) {
    start_with(api, namespaces, OPTIONS).await
}

/// Retries within a second; a grace period no test outlasts by accident.
const OPTIONS: WatchOptions = WatchOptions {
    grace_period: Duration::from_secs(3600),
    max_backoff: Duration::from_secs(1),
    watch_timeout: Duration::from_secs(290),
};

async fn start_with(
    api: &KubeApi,
    namespaces: &[&str],
    options: WatchOptions,
) -> (WatchedCluster, Arc<Health>) {
    support::init_logs();
    let telemetry = Arc::new(Health {
        metrics: Metrics::new(&prometheus::Registry::new()),
        readiness: Arc::default(),
    });
    let cluster = WatchedCluster::start(
        api.kube_client().await,
        Selection::namespaces(namespaces.iter().map(|ns| ns.to_string()).collect()),
        options,
        telemetry.metrics.clone(),
        telemetry.readiness.clone(),
        Default::default(),
    );
    (cluster, telemetry)
}

/// Polls `condition` until it holds; panics with `what` after [`TIMEOUT`].
async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        wait_until(TIMEOUT, condition).await,
        "timed out after {TIMEOUT:?} waiting until {what}"
    );
}

/// (name, image, jsonpath) of a container.
type ContainerTriple = (String, String, String);
/// (kind, namespace, name, containers) of a workload.
type Extracted = (Kind, String, String, Vec<ContainerTriple>);

/// (kind, namespace, name) of every workload, in snapshot order.
fn ids(workloads: &[Arc<Workload>]) -> Vec<(Kind, String, String)> {
    workloads
        .iter()
        .map(|w| (w.kind, w.namespace.to_string(), w.name.to_string()))
        .collect()
}

fn id(kind: Kind, namespace: &str, name: &str) -> (Kind, String, String) {
    (kind, namespace.to_owned(), name.to_owned())
}

fn find(workloads: &[Arc<Workload>], kind: Kind, name: &str) -> Option<Arc<Workload>> {
    workloads
        .iter()
        .find(|w| w.kind == kind && &*w.name == name)
        .cloned()
}

fn image_of(cluster: &WatchedCluster, kind: Kind, name: &str) -> Option<String> {
    let workload = find(&cluster.snapshot(), kind, name)?;
    Some(workload.containers.last()?.image.to_string())
}

fn gauge(telemetry: &Health, kind: &str) -> i64 {
    telemetry
        .metrics
        .watched_objects
        .with_label_values(&[kind])
        .get()
}

/// LIST requests (not watches) of one collection path so far.
fn lists(api: &KubeApi, path: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path && !r.is_watch())
        .count()
}

#[tokio::test]
async fn every_kind_is_listed_with_the_same_extraction_as_the_list_based_sources() {
    let api = KubeApi::start().await;
    api.set_max_page_size(2); // kube-runtime follows continue tokens
    let objects: Vec<serde_json::Value> = vec![
        serde_json::to_value(pod("shop", "web-1", "web:1")).unwrap(),
        serde_json::to_value(pod("shop", "web-2", "web:1")).unwrap(),
        serde_json::to_value(pod("batch", "runner", "runner:3")).unwrap(),
        serde_json::to_value(deployment("shop", "api", "api:1")).unwrap(),
        serde_json::to_value(object::<StatefulSet>(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"selector": {}, "serviceName": "db", "template": template("postgres:16")},
        })))
        .unwrap(),
        serde_json::to_value(daemon_set("kube-system", "agent", "agent:2")).unwrap(),
        serde_json::to_value(object::<Job>(json!({
            "metadata": {"name": "migrate", "namespace": "shop"},
            "spec": {"template": template("migrate:1")},
        })))
        .unwrap(),
        serde_json::to_value(object::<CronJob>(json!({
            "metadata": {"name": "report", "namespace": "batch"},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template("report:1")}}},
        })))
        .unwrap(),
    ];
    for value in &objects {
        match value["kind"].as_str().unwrap() {
            "Pod" => api.apply(&object::<Pod>(value.clone())),
            "Deployment" => api.apply(&object::<Deployment>(value.clone())),
            "StatefulSet" => api.apply(&object::<StatefulSet>(value.clone())),
            "DaemonSet" => api.apply(&object::<DaemonSet>(value.clone())),
            "Job" => api.apply(&object::<Job>(value.clone())),
            "CronJob" => api.apply(&object::<CronJob>(value.clone())),
            other => unreachable!("{other}"),
        }
    }
    let (cluster, telemetry) = start(&api, &[]).await;
    assert!(!cluster.is_ready(), "nothing has been listed yet");
    eventually("every kind is listed", || cluster.is_ready()).await;

    // The extraction of the list-based sources: init then regular
    // containers, with the kind's JSONPath.
    let got: Vec<Extracted> = cluster
        .snapshot()
        .iter()
        .map(|w| {
            let containers = w
                .containers
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.image.to_string(),
                        c.jsonpath.to_string(),
                    )
                })
                .collect();
            (
                w.kind,
                w.namespace.to_string(),
                w.name.to_string(),
                containers,
            )
        })
        .collect();
    let templated = |prefix: &str, image: &str| {
        vec![
            (
                "init".to_string(),
                "init:1".to_string(),
                format!("{{{prefix}.initContainers[0]}}"),
            ),
            (
                "app".to_string(),
                image.to_string(),
                format!("{{{prefix}.containers[0]}}"),
            ),
        ]
    };
    let pod_containers = |image: &str| {
        vec![(
            "app".to_string(),
            image.to_string(),
            "{.spec.containers[0]}".to_string(),
        )]
    };
    let t = ".spec.template.spec";
    let expected = vec![
        (
            Kind::Pod,
            "batch".into(),
            "runner".into(),
            pod_containers("runner:3"),
        ),
        (
            Kind::Pod,
            "shop".into(),
            "web-1".into(),
            pod_containers("web:1"),
        ),
        (
            Kind::Pod,
            "shop".into(),
            "web-2".into(),
            pod_containers("web:1"),
        ),
        (
            Kind::Deployment,
            "shop".into(),
            "api".into(),
            templated(t, "api:1"),
        ),
        (
            Kind::StatefulSet,
            "shop".into(),
            "db".into(),
            templated(t, "postgres:16"),
        ),
        (
            Kind::DaemonSet,
            "kube-system".into(),
            "agent".into(),
            templated(t, "agent:2"),
        ),
        (
            Kind::Job,
            "shop".into(),
            "migrate".into(),
            templated(t, "migrate:1"),
        ),
        (
            Kind::CronJob,
            "batch".into(),
            "report".into(),
            templated(".spec.jobTemplate.spec.template.spec", "report:1"),
        ),
    ];
    assert_eq!(got, expected, "sorted by kind, namespace, name");
    let cronjob = find(&cluster.snapshot(), Kind::CronJob, "report").unwrap();
    assert_eq!(
        &*cronjob.containers[1].jsonpath,
        "{.spec.jobTemplate.spec.template.spec.containers[0]}"
    );
    for (kind, count) in [
        ("Pod", 3),
        ("Deployment", 1),
        ("StatefulSet", 1),
        ("DaemonSet", 1),
        ("Job", 1),
        ("CronJob", 1),
    ] {
        assert_eq!(
            gauge(&telemetry, kind),
            count,
            "watched_objects{{kind={kind}}}"
        );
    }
    assert!(
        lists(&api, "/api/v1/pods") >= 2,
        "the pods were listed in pages: {:?}",
        api.requests()
    );
}

#[tokio::test]
async fn events_keep_the_snapshot_current_and_unchanged_workloads_keep_their_arc() {
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "a", "a:1"));
    api.apply(&pod("shop", "b", "b:1"));
    api.apply(&deployment("shop", "api", "api:1"));
    let (cluster, telemetry) = start(&api, &[]).await;
    let mut changes = cluster.changes();
    eventually("ready", || cluster.is_ready()).await;
    // What was listed is announced (the current-thread runtime runs a
    // watcher's update and its announcement without interruption).
    let listed = *changes.borrow_and_update();
    assert!(listed >= 1);
    api.wait_for_watch::<Pod>(TIMEOUT).await;
    let before = cluster.snapshot();
    let a = find(&before, Kind::Pod, "a").unwrap();
    let api_deployment = find(&before, Kind::Deployment, "api").unwrap();

    // A change that leaves the containers alone (labels, status): same Arc,
    // and nothing new to resolve.
    let mut relabelled = pod("shop", "a", "a:1");
    relabelled.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
    relabelled.status = Some(object(json!({"phase": "Running"})));
    api.apply(&relabelled);
    // Then a modification of another object, to know the first was seen.
    api.apply(&pod("shop", "b", "b:2"));
    eventually("b's new image shows", || {
        image_of(&cluster, Kind::Pod, "b").as_deref() == Some("b:2")
    })
    .await;
    let after = cluster.snapshot();
    assert!(
        Arc::ptr_eq(&a, &find(&after, Kind::Pod, "a").unwrap()),
        "an unchanged workload keeps its Arc"
    );
    assert!(Arc::ptr_eq(
        &api_deployment,
        &find(&after, Kind::Deployment, "api").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        &find(&before, Kind::Pod, "b").unwrap(),
        &find(&after, Kind::Pod, "b").unwrap()
    ));
    assert_eq!(
        *changes.borrow_and_update(),
        listed + 1,
        "one announcement for b's new image, none for a's relabelling"
    );

    // Added: announced.
    api.apply(&pod("shop", "c", "c:1"));
    eventually("c shows", || image_of(&cluster, Kind::Pod, "c").is_some()).await;
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    assert_eq!(gauge(&telemetry, "Pod"), 3);

    // Deleted: gone, and nothing new to resolve.
    api.delete::<Pod>(Some("shop"), "a");
    eventually("a is gone", || image_of(&cluster, Kind::Pod, "a").is_none()).await;
    assert!(!changes.has_changed().unwrap());
    assert_eq!(gauge(&telemetry, "Pod"), 2);
    assert_eq!(
        ids(&cluster.snapshot()),
        [
            id(Kind::Pod, "shop", "b"),
            id(Kind::Pod, "shop", "c"),
            id(Kind::Deployment, "shop", "api"),
        ]
    );
}

#[tokio::test]
async fn a_closed_watch_resumes_without_listing_again() {
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "a", "a:1"));
    let (cluster, _telemetry) = start(&api, &[]).await;
    eventually("ready", || cluster.is_ready()).await;
    api.wait_for_watch::<Pod>(TIMEOUT).await;
    let listed = lists(&api, "/api/v1/pods");
    let a = find(&cluster.snapshot(), Kind::Pod, "a").unwrap();

    api.close_watches();
    eventually("the pods are watched again", || {
        api.open_watches::<Pod>() > 0
    })
    .await;
    api.apply(&pod("shop", "b", "b:1"));
    eventually("b shows", || image_of(&cluster, Kind::Pod, "b").is_some()).await;
    assert_eq!(
        lists(&api, "/api/v1/pods"),
        listed,
        "resumed from its resourceVersion"
    );
    assert!(Arc::ptr_eq(
        &a,
        &find(&cluster.snapshot(), Kind::Pod, "a").unwrap()
    ));
}

#[tokio::test]
async fn an_expired_watch_lists_again_and_forgets_objects_deleted_meanwhile() {
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "deleted", "deleted:1"));
    api.apply(&pod("shop", "kept", "kept:1"));
    let (cluster, telemetry) = start(&api, &[]).await;
    eventually("ready", || cluster.is_ready()).await;
    api.wait_for_watch::<Pod>(TIMEOUT).await;
    let kept = find(&cluster.snapshot(), Kind::Pod, "kept").unwrap();
    let listed = lists(&api, "/api/v1/pods");

    // Take the pods' watch down (new watches are refused), change things
    // while nobody watches, and forget the history the watcher would need.
    api.forbid::<Pod>();
    api.close_watches();
    api.delete::<Pod>(Some("shop"), "deleted");
    api.apply(&pod("shop", "added", "added:1"));
    api.compact();
    eventually("the watcher was refused", || {
        telemetry
            .metrics
            .errors
            .with_label_values(&["Pod", "forbidden"])
            .get()
            > 0
    })
    .await;
    assert_eq!(
        image_of(&cluster, Kind::Pod, "deleted").as_deref(),
        Some("deleted:1"),
        "a refused watch keeps what it knew"
    );
    api.allow::<Pod>();

    eventually("the deleted pod is gone and the added one shows", || {
        let names: Vec<String> = cluster
            .snapshot()
            .iter()
            .filter(|w| w.kind == Kind::Pod)
            .map(|w| w.name.to_string())
            .collect();
        names == ["added", "kept"]
    })
    .await;
    assert!(
        lists(&api, "/api/v1/pods") > listed,
        "listed again after 410 Gone"
    );
    assert!(
        Arc::ptr_eq(
            &kept,
            &find(&cluster.snapshot(), Kind::Pod, "kept").unwrap()
        ),
        "a re-list keeps the Arc of an unchanged workload"
    );
    assert_eq!(gauge(&telemetry, "Pod"), 2);
}

#[tokio::test]
async fn a_forbidden_kind_does_not_hold_back_the_others_and_appears_once_allowed() {
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "web", "web:1"));
    api.apply(&daemon_set("kube-system", "agent", "agent:1"));
    api.forbid::<DaemonSet>();
    let (cluster, telemetry) = start(&api, &[]).await;
    eventually("ready", || cluster.is_ready()).await;
    eventually("the pod shows", || {
        image_of(&cluster, Kind::Pod, "web").is_some()
    })
    .await;
    assert!(find(&cluster.snapshot(), Kind::DaemonSet, "agent").is_none());
    let refused = || {
        telemetry
            .metrics
            .errors
            .with_label_values(&["DaemonSet", "forbidden"])
            .get()
    };
    assert!(refused() >= 1);

    // Other kinds keep being watched.
    api.apply(&pod("shop", "web", "web:2"));
    eventually("the pod changes", || {
        image_of(&cluster, Kind::Pod, "web").as_deref() == Some("web:2")
    })
    .await;

    api.allow::<DaemonSet>();
    eventually("the daemon set shows once allowed", || {
        image_of(&cluster, Kind::DaemonSet, "agent").as_deref() == Some("agent:1")
    })
    .await;
    assert_eq!(gauge(&telemetry, "DaemonSet"), 1);
    api.wait_for_watch::<DaemonSet>(TIMEOUT).await;
    api.apply(&daemon_set("kube-system", "agent", "agent:2"));
    eventually("and is watched", || {
        image_of(&cluster, Kind::DaemonSet, "agent").as_deref() == Some("agent:2")
    })
    .await;
}

#[tokio::test]
async fn not_ready_until_every_kind_has_been_listed() {
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "web", "web:1"));
    api.pause();
    let (cluster, _telemetry) = start(&api, &[]).await;
    let paths = [
        "/api/v1/pods",
        "/apis/apps/v1/deployments",
        "/apis/apps/v1/statefulsets",
        "/apis/apps/v1/daemonsets",
        "/apis/batch/v1/jobs",
        "/apis/batch/v1/cronjobs",
    ];
    eventually("every kind's list is under way", || {
        paths.iter().all(|path| lists(&api, path) > 0)
    })
    .await;
    assert!(!cluster.is_ready(), "the lists are held by the server");
    assert!(cluster.snapshot().is_empty());
    api.resume();
    eventually("ready", || cluster.is_ready()).await;
    assert_eq!(ids(&cluster.snapshot()), [id(Kind::Pod, "shop", "web")]);
}

#[tokio::test]
async fn only_the_given_namespaces_are_watched() {
    let api = KubeApi::start().await;
    for ns in ["a", "b", "c"] {
        api.apply(&pod(ns, "web", "web:1"));
        api.apply(&deployment(ns, "api", "api:1"));
    }
    let (cluster, telemetry) = start(&api, &["b", "a", "b"]).await;
    eventually("ready", || cluster.is_ready()).await;
    assert_eq!(
        ids(&cluster.snapshot()),
        [
            id(Kind::Pod, "a", "web"),
            id(Kind::Pod, "b", "web"),
            id(Kind::Deployment, "a", "api"),
            id(Kind::Deployment, "b", "api"),
        ]
    );
    assert_eq!(gauge(&telemetry, "Pod"), 2, "summed over the namespaces");
    assert!(api
        .requests()
        .iter()
        .all(|r| !r.path.ends_with("/pods") || r.path.contains("/namespaces/")));
    api.wait_for_watch::<Pod>(TIMEOUT).await;
    api.apply(&pod("c", "other", "other:1"));
    api.apply(&pod("b", "new", "new:1"));
    eventually("the pod in b shows", || {
        image_of(&cluster, Kind::Pod, "new").is_some()
    })
    .await;
    assert!(image_of(&cluster, Kind::Pod, "other").is_none());
}

fn stale(telemetry: &Health, kind: &str) -> i64 {
    telemetry
        .metrics
        .inventory_stale
        .with_label_values(&[kind])
        .get()
}

fn inventory_failing(telemetry: &Health) -> Option<String> {
    telemetry
        .readiness
        .failing()
        .into_iter()
        .find(|(condition, _)| condition == STALE_INVENTORY)
        .map(|(_, reason)| reason)
}

/// A restart long enough for kube-runtime's default backoff to have grown
/// past 6 s: the watchers keep every object while the server is down, say
/// they are stale, and are current again within two retries (`max_backoff`
/// 1 s) once it answers — objects created and deleted across the restart
/// included — though every resumed watch gets 410.
#[tokio::test]
async fn after_a_restart_the_inventory_is_current_as_soon_as_the_server_answers() {
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "web", "web:1"));
    api.apply(&deployment("shop", "gone", "gone:1"));
    api.apply(&daemon_set("kube-system", "agent", "agent:1"));
    let options = WatchOptions {
        grace_period: Duration::from_secs(3),
        ..OPTIONS
    };
    let (cluster, telemetry) = start_with(&api, &[], options).await;
    eventually("ready", || cluster.is_ready()).await;
    api.wait_for_watch::<Deployment>(TIMEOUT).await;

    api.stop();
    eventually("every kind is stale", || {
        ["Pod", "Deployment", "DaemonSet"]
            .iter()
            .all(|kind| stale(&telemetry, kind) == 1)
    })
    .await;
    eventually("not ready once stale past the grace period", || {
        inventory_failing(&telemetry).is_some_and(|r| r.contains("Deployment not refreshed"))
    })
    .await;
    assert_eq!(
        ids(&cluster.snapshot()).len(),
        3,
        "a stale inventory keeps its objects"
    );
    // What happened while it was down.
    api.delete::<Deployment>(Some("shop"), "gone");
    // An outage of several failed attempts: kube-runtime's default backoff
    // would have grown to 6.4 s by now.
    eventually("several attempts failed", || {
        telemetry
            .metrics
            .errors
            .with_label_values(&["Deployment", "error"])
            .get()
            >= 5
    })
    .await;
    api.forbid_while_starting::<DaemonSet>(Duration::from_millis(1500));
    api.start_again().await;
    let back = tokio::time::Instant::now();
    api.apply(&deployment("shop", "new", "new:1"));
    eventually(
        "the new deployment shows and the deleted one is gone",
        || {
            let snapshot = cluster.snapshot();
            find(&snapshot, Kind::Deployment, "new").is_some()
                && find(&snapshot, Kind::Deployment, "gone").is_none()
        },
    )
    .await;
    let took = back.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "current {took:?} after the server came back; kube-runtime's default backoff took 10 s or more"
    );
    assert!(
        find(&cluster.snapshot(), Kind::DaemonSet, "agent").is_some(),
        "the 403 while starting does not drop the daemon set"
    );
    eventually("every kind is current and the replica ready", || {
        Kind::ALL.iter().all(|k| stale(&telemetry, k.as_str()) == 0)
            && inventory_failing(&telemetry).is_none()
    })
    .await;
}

/// The test server restarts like a real one: open watches are cut, the
/// port refuses connections while it is down, and a watch resumed from
/// before the restart gets the watch cache's 410 "too old resource
/// version" as an ERROR event.
#[tokio::test]
async fn the_test_server_restarts_with_an_empty_watch_cache() {
    use futures::StreamExt;
    use kube::api::{Api, WatchEvent, WatchParams};
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "web", "web:1"));
    let client = api.kube_client().await;
    let pods: Api<Pod> = Api::all(client);
    let rv = api.resource_version();
    let mut open = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.stop();
    let cut = tokio::time::timeout(TIMEOUT, open.next()).await.unwrap();
    assert!(
        !matches!(
            cut,
            Some(Ok(WatchEvent::Added(_) | WatchEvent::Modified(_)))
        ),
        "the open watch ends: {cut:?}"
    );
    assert!(pods.list(&Default::default()).await.is_err(), "down");
    api.start_again().await;
    let mut resumed = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match resumed.next().await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            let current: u64 = api.resource_version().parse().unwrap();
            assert_eq!(
                status.message,
                format!("too old resource version: {rv} ({current})")
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert_eq!(pods.list(&Default::default()).await.unwrap().items.len(), 1);
}

/// A 403 while the API server starts (its authorizer warming up) is a
/// moment, not a revocation: the kind keeps its objects throughout, and
/// `/readyz` does not fail for it.
#[tokio::test]
async fn a_transient_403_keeps_the_last_known_objects() {
    let api = KubeApi::start().await;
    api.apply(&daemon_set("kube-system", "agent", "agent:1"));
    let options = WatchOptions {
        grace_period: Duration::from_secs(5),
        ..OPTIONS
    };
    let (cluster, telemetry) = start_with(&api, &[], options).await;
    eventually("ready", || cluster.is_ready()).await;
    api.wait_for_watch::<DaemonSet>(TIMEOUT).await;
    let refused = || {
        telemetry
            .metrics
            .errors
            .with_label_values(&["DaemonSet", "forbidden"])
            .get()
    };
    api.stop();
    api.forbid_while_starting::<DaemonSet>(Duration::from_secs(2));
    api.start_again().await;
    // Checked throughout, for 3 s at least and until the kind was refused
    // and is current again.
    let back = std::time::Instant::now();
    let current_again = wait_until(Duration::from_secs(3) + TIMEOUT, || {
        assert!(
            find(&cluster.snapshot(), Kind::DaemonSet, "agent").is_some(),
            "the daemon set left the inventory during a 403 shorter than the grace period"
        );
        assert!(inventory_failing(&telemetry).is_none());
        back.elapsed() >= Duration::from_secs(3)
            && refused() > 0
            && stale(&telemetry, "DaemonSet") == 0
    })
    .await;
    assert!(current_again, "never refused, or never current again");
    assert_eq!(gauge(&telemetry, "DaemonSet"), 1);
}

/// RBAC revoked while running: the open watch goes on until it times out
/// (`watch_timeout`), the re-opened one is refused, and after the grace
/// period the kind leaves the inventory — without making the replica
/// unready. Granted again, it comes back.
#[tokio::test]
async fn a_revoked_kind_leaves_the_inventory_after_the_grace_period() {
    let api = KubeApi::start().await;
    api.apply(&pod("shop", "web", "web:1"));
    api.apply(&daemon_set("kube-system", "agent", "agent:1"));
    let options = WatchOptions {
        grace_period: Duration::from_secs(2),
        max_backoff: Duration::from_secs(1),
        watch_timeout: Duration::from_secs(1),
    };
    let (cluster, telemetry) = start_with(&api, &[], options).await;
    eventually("ready", || cluster.is_ready()).await;
    api.wait_for_watch::<DaemonSet>(TIMEOUT).await;
    api.forbid::<DaemonSet>();
    eventually("the kind is refused and stale", || {
        stale(&telemetry, "DaemonSet") == 1
    })
    .await;
    let refused_at = tokio::time::Instant::now();
    eventually("the daemon set leaves the inventory", || {
        find(&cluster.snapshot(), Kind::DaemonSet, "agent").is_none()
    })
    .await;
    assert!(
        refused_at.elapsed() >= Duration::from_millis(1500),
        "left before the grace period was over"
    );
    assert_eq!(gauge(&telemetry, "DaemonSet"), 0);
    assert!(image_of(&cluster, Kind::Pod, "web").is_some());
    assert!(
        inventory_failing(&telemetry).is_none(),
        "a refused kind does not make the replica unready"
    );
    assert!(
        telemetry
            .metrics
            .errors
            .with_label_values(&["DaemonSet", "forbidden"])
            .get()
            > 0
    );

    api.allow::<DaemonSet>();
    eventually("back once allowed", || {
        image_of(&cluster, Kind::DaemonSet, "agent").is_some()
            && stale(&telemetry, "DaemonSet") == 0
    })
    .await;
}
