//! Workload kinds by configuration (`--workload-kind`) and the filters
//! (`--exclude-namespace`, `--selector`, `--exclude-image`), against the
//! Kubernetes API test server through the real kube client: API discovery
//! of CRDs, custom objects listed (paginated) and watched, one test per
//! preset path, a CRD installed after start-up, the same kinds in
//! `--manifests`, and the filters end to end into real Prometheus.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use container_image_pusher::discovery::watch::{WatchOptions, WatchedCluster, STALE_INVENTORY};
use container_image_pusher::discovery::Metrics;
use container_image_pusher::discovery::{
    ClusterSource, Kind, KindSpec, LabelSelector, MetadataAllowlist, Selection, Workload,
};
use container_image_pusher::readiness::Readiness;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use serde_json::{json, Value};
use support::kube_api::{Crd, ARGO_ROLLOUT, KEDA_SCALED_JOB, KNATIVE_SERVICE, KRUISE_CLONE_SET};
use support::{KubeApi, SharedPrometheus};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Retries and looks missing kinds up again within a second.
const OPTIONS: WatchOptions = WatchOptions {
    grace_period: Duration::from_secs(3600),
    max_backoff: Duration::from_secs(1),
    watch_timeout: Duration::from_secs(290),
};

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,container_image_pusher=debug",
        ))
        .with_test_writer()
        .try_init();
    container_image_pusher::install_crypto_provider();
}

async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        support::wait::wait_until(TIMEOUT, condition).await,
        "timed out after {TIMEOUT:?} waiting until {what}"
    );
}

fn kinds(specs: &[&str]) -> Selection {
    Selection {
        kinds: specs.iter().map(|s| KindSpec::parse(s).unwrap()).collect(),
        ..Selection::default()
    }
}

/// A pod spec with an init container, a regular one and pull credentials.
fn pod_spec(image: &str) -> Value {
    json!({
        "serviceAccountName": "deployer",
        "imagePullSecrets": [{"name": "regcred"}],
        "initContainers": [{"name": "init", "image": "init:1"}],
        "containers": [{"name": "app", "image": image}],
    })
}

/// Puts `spec` at `path` (dotted fields) of a new object.
fn at_path(path: &str, spec: Value) -> Value {
    path.trim_start_matches('.')
        .rsplit('.')
        .fold(spec, |inner, field| json!({ field: inner }))
}

fn custom_object(crd: Crd, namespace: &str, name: &str, path: &str, image: &str) -> Value {
    let mut object = at_path(path, pod_spec(image));
    object["apiVersion"] = json!(crd.api_version());
    object["kind"] = json!(crd.kind);
    object["metadata"] = json!({"name": name, "namespace": namespace, "labels": {"team": "shop"}});
    object
}

/// (group, version, kind, namespace, name, [(container, image, jsonpath)]).
type Row = (
    String,
    String,
    String,
    String,
    String,
    Vec<(String, String, String)>,
);

fn rows(workloads: &[Workload], kind: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = workloads
        .iter()
        .filter(|w| w.kind.as_str() == kind && matches!(w.kind, Kind::Custom(_)))
        .map(|w| {
            (
                w.kind.group().to_owned(),
                w.kind.version().to_owned(),
                w.kind.as_str().to_owned(),
                w.namespace.to_string(),
                w.name.to_string(),
                w.containers
                    .iter()
                    .map(|c| {
                        (
                            c.name.to_string(),
                            c.image.to_string(),
                            c.jsonpath.to_string(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn expected(group: &str, version: &str, kind: &str, path: &str) -> Vec<Row> {
    let row = |namespace: &str, name: &str, image: &str| {
        (
            group.to_owned(),
            version.to_owned(),
            kind.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
            vec![
                (
                    "init".to_owned(),
                    "init:1".to_owned(),
                    format!("{{{path}.initContainers[0]}}"),
                ),
                (
                    "app".to_owned(),
                    image.to_owned(),
                    format!("{{{path}.containers[0]}}"),
                ),
            ],
        )
    };
    vec![
        row("batch", "nightly", "nightly:2"),
        row("shop", "api", "api:1"),
        row("shop", "web", "web:1"),
    ]
}

/// Lists (`--once`) and watches (long-running) a preset's objects: three,
/// over pages of two, found at the plural API discovery names; both
/// sources extract the same containers, `jsonpath`s and pull credentials.
async fn preset_is_listed_and_watched(
    preset: &str,
    (group, version, kind, plural): (&str, &str, &str, &str),
    path: &str,
    apply: impl Fn(&KubeApi, Value),
) {
    init_logs();
    let api = KubeApi::start().await;
    api.set_max_page_size(2);
    for (namespace, name, image) in [
        ("shop", "web", "web:1"),
        ("shop", "api", "api:1"),
        ("batch", "nightly", "nightly:2"),
    ] {
        let mut object = at_path(path, pod_spec(image));
        object["metadata"] = json!({"name": name, "namespace": namespace});
        apply(&api, object);
    }
    let client = api.kube_client().await;
    let want = expected(group, version, kind, path);

    let listed = ClusterSource::new(
        client.clone(),
        kinds(&[preset]),
        Metrics::new(&prometheus::Registry::new()),
        MetadataAllowlist::default(),
    )
    .snapshot()
    .await
    .expect("the --once snapshot");
    assert_eq!(rows(&listed, kind), want);
    let one = listed.iter().find(|w| &*w.name == "web").unwrap();
    assert_eq!(one.pull.secrets, [Arc::from("regcred")]);
    assert_eq!(&*one.pull.service_account, "deployer");
    let collection = if group.is_empty() {
        format!("/api/{version}/{plural}")
    } else {
        format!("/apis/{group}/{version}/{plural}")
    };
    let pages = api
        .requests()
        .iter()
        .filter(|r| r.path == collection && !r.is_watch())
        .count();
    assert_eq!(pages, 2, "three objects in pages of two");

    let watched = WatchedCluster::start(
        client,
        kinds(&[preset]),
        OPTIONS,
        Metrics::new(&prometheus::Registry::new()),
        Arc::default(),
        MetadataAllowlist::default(),
    );
    eventually("the watches have listed", || watched.is_ready()).await;
    let snapshot: Vec<Workload> = watched.snapshot().iter().map(|w| (**w).clone()).collect();
    assert_eq!(rows(&snapshot, kind), want);
    eventually("the kind is watched", || {
        api.requests()
            .iter()
            .any(|r| r.path == collection && r.is_watch())
    })
    .await;
}

fn apply_crd(crd: Crd) -> impl Fn(&KubeApi, Value) {
    move |api: &KubeApi, mut object: Value| {
        api.install_crd(crd);
        object["apiVersion"] = json!(crd.api_version());
        object["kind"] = json!(crd.kind);
        api.apply_custom(object);
    }
}

#[tokio::test]
async fn argo_rollouts_preset() {
    preset_is_listed_and_watched(
        "argo-rollouts",
        ("argoproj.io", "v1alpha1", "Rollout", "rollouts"),
        ".spec.template.spec",
        apply_crd(ARGO_ROLLOUT),
    )
    .await;
}

#[tokio::test]
async fn knative_serving_preset() {
    preset_is_listed_and_watched(
        "knative-serving",
        ("serving.knative.dev", "v1", "Service", "services"),
        ".spec.template.spec",
        apply_crd(KNATIVE_SERVICE),
    )
    .await;
}

#[tokio::test]
async fn keda_scaledjob_preset() {
    preset_is_listed_and_watched(
        "keda-scaledjob",
        ("keda.sh", "v1alpha1", "ScaledJob", "scaledjobs"),
        ".spec.jobTargetRef.template.spec",
        apply_crd(KEDA_SCALED_JOB),
    )
    .await;
}

#[tokio::test]
async fn openkruise_cloneset_preset() {
    preset_is_listed_and_watched(
        "openkruise-cloneset",
        ("apps.kruise.io", "v1alpha1", "CloneSet", "clonesets"),
        ".spec.template.spec",
        apply_crd(KRUISE_CLONE_SET),
    )
    .await;
}

#[tokio::test]
async fn replicaset_preset() {
    preset_is_listed_and_watched(
        "replicaset",
        ("apps", "v1", "ReplicaSet", "replicasets"),
        ".spec.template.spec",
        |api, mut object| {
            object["spec"]["selector"] = json!({});
            api.apply(&serde_json::from_value::<ReplicaSet>(object).unwrap());
        },
    )
    .await;
}

#[tokio::test]
async fn replicationcontroller_preset() {
    preset_is_listed_and_watched(
        "replicationcontroller",
        ("", "v1", "ReplicationController", "replicationcontrollers"),
        ".spec.template.spec",
        |api, object| api.apply(&serde_json::from_value::<ReplicationController>(object).unwrap()),
    )
    .await;
}

#[tokio::test]
async fn replicasets_are_not_inventoried_unless_asked_for() {
    init_logs();
    let api = KubeApi::start().await;
    let client = api.kube_client().await;
    ClusterSource::new(
        client,
        Selection::default(),
        Metrics::new(&prometheus::Registry::new()),
        MetadataAllowlist::default(),
    )
    .snapshot()
    .await
    .unwrap();
    let requests = api.requests();
    assert!(
        requests.iter().all(|r| !r.path.contains("replicasets")
            && !r.path.contains("replicationcontrollers")
            && r.path != "/apis/apps/v1"
            && r.path != "/api/v1"),
        "no discovery and no list beyond the built-in kinds: {requests:?}"
    );
}

/// A kind whose CRD is not installed: one warning, not a readiness
/// blocker, picked up by the watch once the CRD appears; then watched
/// like any kind (changes, deletions), and dropped if the CRD goes.
#[tokio::test]
async fn a_crd_installed_after_start_up_is_picked_up() {
    init_logs();
    let api = KubeApi::start().await;
    let metrics = Metrics::new(&prometheus::Registry::new());
    let readiness = Arc::new(Readiness::default());
    let watched = WatchedCluster::start(
        api.kube_client().await,
        kinds(&["argo-rollouts"]),
        OPTIONS,
        metrics.clone(),
        readiness.clone(),
        MetadataAllowlist::default(),
    );
    eventually("ready without the CRD", || watched.is_ready()).await;
    let not_installed = || {
        metrics
            .errors
            .with_label_values(&["Rollout", "not_installed"])
            .get()
    };
    assert!(not_installed() >= 1);
    assert_eq!(
        metrics
            .inventory_stale
            .with_label_values(&["Rollout"])
            .get(),
        0,
        "a kind not installed is not stale"
    );
    let failing = readiness.failing();
    assert!(
        failing
            .iter()
            .all(|(condition, _)| condition != STALE_INVENTORY),
        "{failing:?}"
    );
    eventually("discovery is polled", || not_installed() >= 2).await;

    let path = ".spec.template.spec";
    api.install_crd(ARGO_ROLLOUT);
    api.apply_custom(custom_object(ARGO_ROLLOUT, "shop", "web", path, "web:1"));
    let image = |watched: &WatchedCluster| {
        watched
            .snapshot()
            .iter()
            .find(|w| &*w.name == "web" && w.kind.as_str() == "Rollout")
            .map(|w| w.containers[1].image.to_string())
    };
    eventually("the rollout appears", || {
        image(&watched).as_deref() == Some("web:1")
    })
    .await;
    // The list has answered; the watch that follows it may still be on its
    // way to the server.
    eventually("the rollouts are watched", || {
        api.open_custom_watches(ARGO_ROLLOUT) >= 1
    })
    .await;
    api.apply_custom(custom_object(ARGO_ROLLOUT, "shop", "web", path, "web:2"));
    eventually("the change is watched", || {
        image(&watched).as_deref() == Some("web:2")
    })
    .await;
    api.delete_custom(ARGO_ROLLOUT, Some("shop"), "web");
    eventually("the deletion is watched", || image(&watched).is_none()).await;

    // Deleted, the CRD takes its objects along and is looked up again;
    // installed again, it comes back.
    api.apply_custom(custom_object(ARGO_ROLLOUT, "shop", "web", path, "web:3"));
    eventually("the new rollout appears", || {
        image(&watched).as_deref() == Some("web:3")
    })
    .await;
    let looked_up = not_installed();
    api.uninstall_crd(ARGO_ROLLOUT);
    eventually("the rollout is gone with its CRD", || {
        image(&watched).is_none()
    })
    .await;
    eventually("the kind is looked up again", || {
        not_installed() > looked_up
    })
    .await;
    assert!(watched.is_ready());
    api.install_crd(ARGO_ROLLOUT);
    api.apply_custom(custom_object(ARGO_ROLLOUT, "shop", "web", path, "web:4"));
    eventually("the reinstalled kind is watched", || {
        image(&watched).as_deref() == Some("web:4")
    })
    .await;
}

/// An object whose pod spec path leads to the wrong shape costs only itself.
#[tokio::test]
async fn a_malformed_custom_object_costs_only_itself() {
    init_logs();
    let api = KubeApi::start().await;
    api.install_crd(ARGO_ROLLOUT);
    let path = ".spec.template.spec";
    api.apply_custom(custom_object(ARGO_ROLLOUT, "shop", "good", path, "good:1"));
    let mut bad = custom_object(ARGO_ROLLOUT, "shop", "bad", path, "bad:1");
    bad["spec"]["template"]["spec"]["containers"] = json!("not a list");
    api.apply_custom(bad);
    let metrics = Metrics::new(&prometheus::Registry::new());
    let listed = ClusterSource::new(
        api.kube_client().await,
        kinds(&["argo-rollouts"]),
        metrics.clone(),
        MetadataAllowlist::default(),
    )
    .snapshot()
    .await
    .unwrap();
    let names: Vec<&str> = listed.iter().map(|w| &*w.name).collect();
    assert_eq!(names, ["good"]);
    assert_eq!(
        metrics
            .errors
            .with_label_values(&["Rollout", "invalid_object"])
            .get(),
        1
    );
}

/// `--selector` goes to the API server with every list and watch, of the
/// built-in kinds and the configured ones alike.
#[tokio::test]
async fn the_label_selector_is_applied_server_side() {
    init_logs();
    let api = KubeApi::start().await;
    api.install_crd(ARGO_ROLLOUT);
    let path = ".spec.template.spec";
    api.apply_custom(custom_object(ARGO_ROLLOUT, "shop", "web", path, "web:1"));
    let pod = |name: &str, team: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"team": team}},
            "spec": {"containers": [{"name": "c", "image": "x:1"}]},
        }))
        .unwrap()
    };
    api.apply(&pod("mine", "shop"));
    api.apply(&pod("theirs", "search"));
    let selection = Selection {
        selector: Some(LabelSelector::parse("team in (shop)").unwrap()),
        ..kinds(&["argo-rollouts"])
    };
    let client = api.kube_client().await;
    let listed = ClusterSource::new(
        client.clone(),
        selection.clone(),
        Metrics::new(&prometheus::Registry::new()),
        MetadataAllowlist::default(),
    )
    .snapshot()
    .await
    .unwrap();
    let mut names: Vec<&str> = listed.iter().map(|w| &*w.name).collect();
    names.sort();
    assert_eq!(names, ["mine", "web"]);
    let watched = WatchedCluster::start(
        client,
        selection,
        OPTIONS,
        Metrics::new(&prometheus::Registry::new()),
        Arc::default(),
        MetadataAllowlist::default(),
    );
    eventually("listed", || watched.is_ready()).await;
    eventually("watching rollouts", || {
        api.open_custom_watches(ARGO_ROLLOUT) > 0
    })
    .await;
    let names: Vec<String> = watched
        .snapshot()
        .iter()
        .map(|w| w.name.to_string())
        .collect();
    assert_eq!(names, ["mine", "web"]);
    let workload_requests: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "GET"
                && (r.path.ends_with("/pods")
                    || r.path.ends_with("/rollouts")
                    || r.path.ends_with("/deployments"))
        })
        .collect();
    assert!(workload_requests.iter().any(|r| r.is_watch()));
    for request in &workload_requests {
        assert_eq!(
            request.param("labelSelector"),
            Some("team in (shop)"),
            "{request:?}"
        );
    }
}

/// The same kinds and filters with `--manifests`, through the binary.
#[tokio::test]
async fn custom_kinds_and_filters_in_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let path = ".spec.jobTargetRef.template.spec";
    let documents = [
        custom_object(
            KEDA_SCALED_JOB,
            "shop",
            "report",
            path,
            "127.0.0.1:1/report:1",
        ),
        {
            let mut other = custom_object(
                KEDA_SCALED_JOB,
                "shop",
                "other-team",
                path,
                "127.0.0.1:1/other:1",
            );
            other["metadata"]["labels"]["team"] = json!("search");
            other
        },
        custom_object(
            KEDA_SCALED_JOB,
            "kube-system",
            "system",
            path,
            "127.0.0.1:1/system:1",
        ),
        // Not configured: ignored.
        custom_object(
            ARGO_ROLLOUT,
            "shop",
            "rollout",
            ".spec.template.spec",
            "127.0.0.1:1/rollout:1",
        ),
    ];
    let text: Vec<String> = documents
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    let file = dir.path().join("jobs.yaml");
    std::fs::write(&file, text.join("\n---\n")).unwrap();
    let output = support::pusher::run_once(
        &[
            "--manifests",
            file.to_str().unwrap(),
            "--once",
            "--dry-run",
            "--workload-kind",
            "keda-scaledjob",
            "--selector",
            "team=shop",
            "--exclude-namespace",
            "kube-*",
            "--exclude-image",
            "init:*",
            "--registry-timeout",
            "1s",
        ],
        None,
    )
    .await
    .assert_success();
    let stdout = output.stdout;
    let info: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("container_image_container_info{"))
        .collect();
    assert_eq!(info.len(), 1, "{stdout}");
    for label in [
        r#"group="keda.sh""#,
        r#"version="v1alpha1""#,
        r#"kind="ScaledJob""#,
        r#"namespace="shop""#,
        r#"name="report""#,
        r#"jsonpath="{.spec.jobTargetRef.template.spec.containers[0]}""#,
        r#"image="127.0.0.1:1/report:1""#,
    ] {
        assert!(info[0].contains(label), "{label} in {}", info[0]);
    }
    assert!(
        !stdout.contains("init:1"),
        "an excluded image is never looked up: {stdout}"
    );
}

/// The filters end to end, from the API server into real Prometheus: the
/// excluded namespaces, images and unselected workloads have no series,
/// and an excluded image is never looked up (no resolve error for it).
#[tokio::test]
async fn filters_end_to_end_into_prometheus() {
    init_logs();
    let (api, prometheus) = tokio::join!(KubeApi::start(), SharedPrometheus::scope());
    api.install_crd(ARGO_ROLLOUT);
    let path = ".spec.template.spec";
    let mut rollout = custom_object(ARGO_ROLLOUT, "shop", "web", path, "127.0.0.1:1/web:1");
    rollout["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "pause", "image": "127.0.0.1:1/pause:3.10"}));
    api.apply_custom(rollout);
    api.apply_custom(custom_object(
        ARGO_ROLLOUT,
        "kube-system",
        "dns",
        path,
        "127.0.0.1:1/dns:1",
    ));
    let mut theirs = custom_object(ARGO_ROLLOUT, "search", "index", path, "127.0.0.1:1/index:1");
    theirs["metadata"]["labels"]["team"] = json!("search");
    api.apply_custom(theirs);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let write_url = prometheus.write_url();
    let scope = prometheus.external_label();
    support::pusher::run_once(
        &[
            "--once",
            "--remote-write-url",
            &write_url,
            "--external-label",
            &scope,
            "--workload-kind",
            "argo-rollouts",
            "--selector",
            "team=shop",
            "--exclude-namespace",
            "kube-*",
            "--exclude-namespace",
            "monitoring",
            "--exclude-image",
            "*/pause:*",
            "--exclude-image",
            "init:*",
            "--registry-timeout",
            "2s",
        ],
        Some(&kubeconfig),
    )
    .await
    .assert_success();
    let info = prometheus
        .query_until("container_image_container_info", |s| !s.is_empty(), TIMEOUT)
        .await;
    let got: Vec<(String, String, String, String)> = info
        .iter()
        .map(|s| {
            (
                s.labels["kind"].clone(),
                s.labels["namespace"].clone(),
                s.labels["name"].clone(),
                s.labels["image"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(
            "Rollout".to_owned(),
            "shop".to_owned(),
            "web".to_owned(),
            "127.0.0.1:1/web:1".to_owned()
        )]
    );
    assert_eq!(info[0].labels["group"], "argoproj.io");
    assert_eq!(
        info[0].labels["jsonpath"],
        "{.spec.template.spec.containers[0]}"
    );
    let errors: Vec<String> = prometheus
        .query("container_image_resolve_error")
        .await
        .iter()
        .map(|s| s.labels["image"].clone())
        .collect();
    assert_eq!(
        errors,
        ["127.0.0.1:1/web:1"],
        "only the kept image was looked up"
    );
    let selectors: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/rollouts") || r.path.ends_with("/pods"))
        .map(|r| r.param("labelSelector").map(str::to_owned))
        .collect();
    assert!(!selectors.is_empty());
    assert!(
        selectors.iter().all(|s| s.as_deref() == Some("team=shop")),
        "{selectors:?}"
    );
}

/// The long-running service: ready although a configured kind's CRD is
/// missing, then serving the kind's containers once the CRD is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_picks_up_a_late_crd() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let pusher = support::pusher::Pusher::on_cluster(&kubeconfig, "1s")
        .args(&[
            "--workload-kind",
            "argo-rollouts",
            "--registry-timeout",
            "1s",
        ])
        .start()
        .await;
    pusher
        .wait_until(TIMEOUT, "/readyz to answer 200", async || {
            pusher.readyz().await.0 == 200
        })
        .await;
    api.install_crd(ARGO_ROLLOUT);
    api.apply_custom(custom_object(
        ARGO_ROLLOUT,
        "shop",
        "web",
        ".spec.template.spec",
        "127.0.0.1:1/web:1",
    ));
    let wanted = r#"kind="Rollout""#;
    pusher
        .metrics_when(TIMEOUT, "the rollout on /metrics", |text| {
            text.lines()
                .any(|l| l.starts_with("container_image_container_info{") && l.contains(wanted))
        })
        .await;
    let logs = pusher.child.logs();
    assert_eq!(
        logs.matches("is not served by the API server").count(),
        1,
        "one warning for the missing CRD:\n{logs}"
    );
}
