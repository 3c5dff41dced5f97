//! End to end, with real peers on loopback: a Kubernetes API test server
//! (driven through the real kube client), Debian's `docker-registry` holding
//! images this test pushes, and Debian's `prometheus` receiving the push.
//! Assertions go through Prometheus' query API with the PromQL a user would
//! write, and through a strict receiver that checks the bytes on the wire.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use serde_json::json;
use support::receiver::{Receiver, Reply};
use support::{
    push_attestation, push_image, push_index, Format, ImageSpec, IndexEntry, KubeApi, Prometheus,
    PushedImage, Registry,
};

use support::pusher::BIN;

fn object<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a valid Kubernetes object")
}

fn containers(list: &[(&str, &str)]) -> serde_json::Value {
    list.iter()
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect()
}

fn template(spec: serde_json::Value) -> serde_json::Value {
    json!({"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}, "spec": spec}})
}

fn rfc3339_days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339()
}

/// Runs the pusher to completion; returns (success, stdout, stderr).
async fn run_pusher(args: &[&str], kubeconfig: Option<&Path>) -> (bool, String, String) {
    let (ok, _, stdout, stderr) = support::pusher::run_once(args, kubeconfig).await;
    (ok, stdout, stderr)
}

/// The images of the scenario, as pushed.
struct Images {
    chainguard: PushedImage,
    docker: PushedImage,
    multi: PushedImage,
    multi_amd64: PushedImage,
    no_created: PushedImage,
    pinned: PushedImage,
}

async fn push_images(reg: &Registry) -> Images {
    let chainguard = push_image(
        reg,
        "apps/chainguard",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .created("2024-01-01T00:00:00Z")
            .label("dev.chainguard.package.main", "static")
            .label(
                "org.opencontainers.image.source",
                "https://github.com/example/app",
            )
            .annotation(
                "org.opencontainers.image.base.name",
                "cgr.dev/chainguard/static:latest",
            )
            .layer(vec![1u8; 1000])
            .layer(vec![2u8; 234]),
    )
    .await;
    let docker = push_image(
        reg,
        "apps/docker",
        Some("1"),
        &ImageSpec::docker("linux", "amd64")
            .created(&rfc3339_days_ago(2))
            .label("maintainer", "ops")
            .layer(vec![3u8; 500]),
    )
    .await;
    let multi_amd64 = push_image(
        reg,
        "apps/multi",
        None,
        &ImageSpec::oci("linux", "amd64")
            .created("2023-06-01T00:00:00Z")
            .label("dev.chainguard.package.main", "multi")
            .annotation("precedence", "manifest")
            .annotation("from.manifest", "yes")
            .layer(vec![4u8; 4000]),
    )
    .await;
    let multi_arm64 = push_image(
        reg,
        "apps/multi",
        None,
        &ImageSpec::oci("linux", "arm64")
            .variant("v8")
            .created("2023-06-01T00:00:00Z")
            .layer(vec![5u8; 9000]),
    )
    .await;
    let attestation = push_attestation(reg, "apps/multi", &multi_amd64.digest).await;
    let mut amd64_entry = IndexEntry::image(&multi_amd64, "linux", "amd64", None);
    if let IndexEntry::Image { annotations, .. } = &mut amd64_entry {
        annotations.insert("precedence".into(), "entry".into());
        annotations.insert("from.entry".into(), "yes".into());
    }
    let multi = push_index(
        reg,
        "apps/multi",
        "1",
        Format::Oci,
        vec![
            IndexEntry::Attestation {
                pushed: attestation,
                subject_digest: multi_amd64.digest.clone(),
            },
            IndexEntry::image(&multi_arm64, "linux", "arm64", Some("v8")),
            amd64_entry,
        ],
        BTreeMap::from([
            ("precedence".into(), "index".into()),
            ("from.index".into(), "yes".into()),
        ]),
    )
    .await;
    let no_created = push_image(
        reg,
        "apps/nocreated",
        Some("1"),
        &ImageSpec::oci("linux", "amd64").layer(vec![6u8; 10]),
    )
    .await;
    let pinned = push_image(
        reg,
        "apps/pinned",
        None,
        &ImageSpec::oci("linux", "amd64")
            .created("2022-01-01T00:00:00Z")
            .label("dev.chainguard.package.main", "pinned")
            .layer(vec![7u8; 77]),
    )
    .await;
    Images {
        chainguard,
        docker,
        multi,
        multi_amd64,
        no_created,
        pinned,
    }
}

/// One object of each kind; 8 Pod containers, 6 non-Pod containers.
fn apply_workloads(api: &KubeApi, reg: &str, images: &Images) {
    let chainguard = format!("{reg}/apps/chainguard:1");
    let docker = format!("{reg}/apps/docker:1");
    let multi = format!("{reg}/apps/multi:1");
    let no_created = format!("{reg}/apps/nocreated:1");
    let pinned = format!("{reg}/apps/pinned@{}", images.pinned.digest);
    let missing = format!("{reg}/apps/missing:1");
    let unparsable = format!("{reg}/apps/Bad:Tag");
    api.apply(&object::<Pod>(json!({
        "metadata": {"name": "web-0", "namespace": "shop"},
        "spec": {
            "initContainers": containers(&[("init", &chainguard)]),
            "containers": containers(&[("app", &multi), ("sidecar", &docker)]),
            "ephemeralContainers": [{"name": "debugger", "image": docker}]
        }
    })));
    // More pods than a page holds, so the LIST must follow `continue`.
    for i in 1..=4 {
        api.apply(&object::<Pod>(json!({
            "metadata": {"name": format!("web-{i}"), "namespace": "shop"},
            "spec": {"containers": containers(&[("app", &multi)])}
        })));
    }
    api.apply(&object::<Deployment>(json!({
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": template(json!({"initContainers": containers(&[("migrate", &no_created)]), "containers": containers(&[("api", &chainguard)])}))
    })));
    api.apply(&object::<StatefulSet>(json!({
        "metadata": {"name": "db", "namespace": "data"},
        "spec": {"serviceName": "db", "selector": {}, "template": {"spec": {"containers": containers(&[("db", &pinned)])}}}
    })));
    api.apply(&object::<DaemonSet>(json!({
        "metadata": {"name": "agent", "namespace": "kube-system"},
        "spec": template(json!({"containers": containers(&[("agent", &docker)])}))
    })));
    api.apply(&object::<Job>(json!({
        "metadata": {"name": "migrate", "namespace": "shop"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": containers(&[("migrate", &missing)])}}}
    })));
    api.apply(&object::<CronJob>(json!({
        "metadata": {"name": "report", "namespace": "shop"},
        "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": containers(&[("report", &unparsable)])
        }}}}}
    })));
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_the_cluster_inventory_to_prometheus() {
    container_image_pusher::install_crypto_provider();
    let (registry, prometheus, api) =
        tokio::join!(Registry::start(), Prometheus::start(), KubeApi::start());
    let receiver = Receiver::start().await;
    let images = push_images(&registry).await;
    let reg = registry.host();
    apply_workloads(&api, &reg, &images);
    api.set_max_page_size(2);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());

    let (ok, _, stderr) = run_pusher(
        &[
            "--once",
            "--remote-write-url",
            &prometheus.write_url(),
            "--remote-write-url",
            &receiver.url(),
            "--insecure-registry",
            &reg,
            "--external-label",
            "cluster=e2e",
            "--max-series-per-request",
            "7",
        ],
        Some(&kubeconfig),
    )
    .await;
    assert!(ok, "the pusher failed:\n{stderr}");

    // The LIST followed `continue` tokens.
    let pod_lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/pods")
        .collect();
    assert!(
        pod_lists.len() >= 3,
        "pods listed in pages of 2: {pod_lists:?}"
    );
    assert!(pod_lists.iter().all(|r| r.param("limit").is_some()));
    assert!(pod_lists
        .iter()
        .skip(1)
        .all(|r| r.param("continue").is_some()));

    // Every container of every kind, with exactly the upstream labels (plus
    // `container`, `job` and the external label); Prometheus drops the empty
    // digest of unresolvable images, as it does for any empty label.
    let info = |name: &str,
                container: &str,
                jsonpath: &str,
                kind: &str,
                group: &str,
                ns: &str,
                image: &str,
                digest: &str| {
        let mut l = labels(&[
            ("__name__", "container_image_container_info"),
            ("cluster", "e2e"),
            ("container", container),
            ("image", image),
            ("job", "container-image-pusher"),
            ("jsonpath", jsonpath),
            ("kind", kind),
            ("name", name),
            ("namespace", ns),
            ("version", "v1"),
        ]);
        if !group.is_empty() {
            l.insert("group".into(), group.into());
        }
        if !digest.is_empty() {
            l.insert("digest".into(), digest.into());
        }
        l
    };
    let chainguard = format!("{reg}/apps/chainguard:1");
    let docker = format!("{reg}/apps/docker:1");
    let multi = format!("{reg}/apps/multi:1");
    let pinned = format!("{reg}/apps/pinned@{}", images.pinned.digest);
    let mut expected = vec![
        info(
            "web-0",
            "init",
            "{.spec.initContainers[0]}",
            "Pod",
            "",
            "shop",
            &chainguard,
            &images.chainguard.digest,
        ),
        info(
            "web-0",
            "app",
            "{.spec.containers[0]}",
            "Pod",
            "",
            "shop",
            &multi,
            &images.multi.digest,
        ),
        info(
            "web-0",
            "sidecar",
            "{.spec.containers[1]}",
            "Pod",
            "",
            "shop",
            &docker,
            &images.docker.digest,
        ),
        info(
            "web-0",
            "debugger",
            "{.spec.ephemeralContainers[0]}",
            "Pod",
            "",
            "shop",
            &docker,
            &images.docker.digest,
        ),
        info(
            "api",
            "migrate",
            "{.spec.template.spec.initContainers[0]}",
            "Deployment",
            "apps",
            "shop",
            &format!("{reg}/apps/nocreated:1"),
            &images.no_created.digest,
        ),
        info(
            "api",
            "api",
            "{.spec.template.spec.containers[0]}",
            "Deployment",
            "apps",
            "shop",
            &chainguard,
            &images.chainguard.digest,
        ),
        info(
            "db",
            "db",
            "{.spec.template.spec.containers[0]}",
            "StatefulSet",
            "apps",
            "data",
            &pinned,
            &images.pinned.digest,
        ),
        info(
            "agent",
            "agent",
            "{.spec.template.spec.containers[0]}",
            "DaemonSet",
            "apps",
            "kube-system",
            &docker,
            &images.docker.digest,
        ),
        info(
            "migrate",
            "migrate",
            "{.spec.template.spec.containers[0]}",
            "Job",
            "batch",
            "shop",
            &format!("{reg}/apps/missing:1"),
            "",
        ),
        info(
            "report",
            "report",
            "{.spec.jobTemplate.spec.template.spec.containers[0]}",
            "CronJob",
            "batch",
            "shop",
            &format!("{reg}/apps/Bad:Tag"),
            "",
        ),
    ];
    for i in 1..=4 {
        expected.push(info(
            &format!("web-{i}"),
            "app",
            "{.spec.containers[0]}",
            "Pod",
            "",
            "shop",
            &multi,
            &images.multi.digest,
        ));
    }
    expected.sort();
    let mut got = prometheus.series("container_image_container_info").await;
    got.sort();
    assert_eq!(got, expected);

    // Image series: once per digest, with the index digest for the multi-arch tag.
    let value = |samples: Vec<support::Sample>| -> Vec<f64> {
        samples.into_iter().map(|s| s.value).collect()
    };
    assert_eq!(
        value(prometheus.query("count(container_image_size_bytes)").await),
        [5.0]
    );
    let size = |digest: &str| format!("container_image_size_bytes{{digest=\"{digest}\"}}");
    assert_eq!(
        value(prometheus.query(&size(&images.multi.digest)).await),
        [images.multi_amd64.image_size() as f64],
        "size of the amd64 image of the index"
    );
    assert_eq!(
        value(prometheus.query(&size(&images.chainguard.digest)).await),
        [images.chainguard.image_size() as f64]
    );
    assert_eq!(
        value(prometheus.query(&size(&images.docker.digest)).await),
        [images.docker.image_size() as f64],
        "Docker schema 2 works"
    );
    assert!(
        prometheus
            .query(&format!(
                "container_image_created{{digest=\"{}\"}}",
                images.no_created.digest
            ))
            .await
            .is_empty(),
        "no created, no series"
    );
    assert_eq!(
        value(
            prometheus
                .query(&format!(
                    "container_image_created{{digest=\"{}\"}}",
                    images.chainguard.digest
                ))
                .await
        ),
        [chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .timestamp() as f64]
    );
    let label = prometheus
        .query(&format!(
            "container_image_label{{digest=\"{}\",key=\"dev.chainguard.package.main\"}}",
            images.chainguard.digest
        ))
        .await;
    assert_eq!(label[0].labels["value"], "static");
    let annotations: BTreeMap<String, String> = prometheus
        .query(&format!(
            "container_image_annotation{{digest=\"{}\"}}",
            images.multi.digest
        ))
        .await
        .into_iter()
        .map(|s| (s.labels["key"].clone(), s.labels["value"].clone()))
        .collect();
    assert_eq!(
        annotations,
        labels(&[
            ("from.entry", "yes"),
            ("from.index", "yes"),
            ("from.manifest", "yes"),
            ("precedence", "manifest")
        ]),
        "index, then entry, then manifest annotations; later wins"
    );
    let base = prometheus
        .query("container_image_annotation{key=\"org.opencontainers.image.base.name\"}")
        .await;
    assert_eq!(base[0].labels["value"], "cgr.dev/chainguard/static:latest");

    // The seed README's first query: non-Pod containers on Chainguard.
    // api/api (chainguard) and db (pinned) carry the label: 2 of 6.
    let chainguard_share = r#"
      (
          count(
            container_image_container_info{kind!="Pod"}
            * on (digest) group_left (value)
              container_image_label{key="dev.chainguard.package.main"}
          )
        /
          count(
            container_image_container_info{kind!="Pod"}
          )
      )
    *
      100"#;
    let share = value(prometheus.query(chainguard_share).await);
    assert!((share[0] - 100.0 * 2.0 / 6.0).abs() < 1e-9, "{share:?}");

    // The seed README's second query: images created more than 14 days ago.
    let old_images = r#"
        time()
      -
        (
            max by (digest, image) (container_image_container_info)
          * on (digest) group_left ()
            container_image_created
        )
    >
      86400 * 14"#;
    let mut old: Vec<String> = prometheus
        .query(old_images)
        .await
        .into_iter()
        .map(|s| s.labels["image"].clone())
        .collect();
    old.sort();
    let mut want = vec![chainguard.clone(), multi.clone(), pinned.clone()];
    want.sort();
    assert_eq!(
        old, want,
        "the docker image is 2 days old; nocreated has no date"
    );

    // The same push, checked on the wire: valid requests of at most 7 series
    // that together hold what Prometheus holds.
    receiver.assert_valid();
    let received = receiver.received();
    assert!(received.iter().all(|r| r.request.timeseries.len() <= 7));
    let total: usize = received.iter().map(|r| r.request.timeseries.len()).sum();
    let in_prometheus = prometheus
        .query("count({__name__=~\"container_image_.+\"})")
        .await;
    assert_eq!(total as f64, in_prometheus[0].value);
    let timestamps: std::collections::HashSet<i64> = received
        .iter()
        .flat_map(|r| {
            r.request
                .timeseries
                .iter()
                .map(|ts| ts.samples[0].timestamp)
        })
        .collect();
    assert_eq!(timestamps.len(), 1, "one timestamp for the whole snapshot");
    assert!(received.iter().all(|r| r
        .request
        .timeseries
        .iter()
        .all(|ts| ts.labels.iter().any(|l| l.name == "cluster"))));
    assert!(received[0]
        .request
        .metadata
        .iter()
        .any(|m| m.metric_family_name == "container_image_container_info"));

    // The same two queries as the README rewrites them for pushed data.
    let per_cluster = r#"100 * count by (cluster) (
        last_over_time(container_image_container_info{kind!="Pod"}[1h])
      * on (cluster, digest) group_left (value)
        last_over_time(container_image_label{key="dev.chainguard.package.main"}[1h])
    )
    / count by (cluster) (last_over_time(container_image_container_info{kind!="Pod"}[1h]))"#;
    let share = prometheus.query(per_cluster).await;
    assert_eq!(share[0].labels["cluster"], "e2e");
    assert!(
        (share[0].value - 100.0 * 2.0 / 6.0).abs() < 1e-9,
        "{share:?}"
    );
    let old_rewritten = r#"time() - (
          max by (cluster, digest, image) (last_over_time(container_image_container_info[1h]))
        * on (cluster, digest) group_left ()
          last_over_time(container_image_created[1h])
      ) > 86400 * 14"#;
    let mut old: Vec<String> = prometheus
        .query(old_rewritten)
        .await
        .into_iter()
        .map(|s| s.labels["image"].clone())
        .collect();
    old.sort();
    assert_eq!(old, want);

    // The README's alert rules: both unresolvable images fire, the inventory is fresh.
    let mut failing: Vec<(String, String)> = prometheus
        .query("last_over_time(container_image_resolve_error[30m]) == 1")
        .await
        .into_iter()
        .map(|s| (s.labels["image"].clone(), s.labels["class"].clone()))
        .collect();
    failing.sort();
    assert_eq!(
        failing,
        [
            (
                format!("{reg}/apps/Bad:Tag"),
                "invalid_reference".to_owned()
            ),
            (format!("{reg}/apps/missing:1"), "not_found".to_owned())
        ]
    );
    let stale = "time() - max by (cluster) (last_over_time(timestamp(container_image_container_info)[2h:1m])) > 1800";
    assert!(prometheus.query(stale).await.is_empty());

    // Failures were explained in the log.
    assert!(
        stderr.contains("apps/missing:1") && stderr.contains("not_found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apps/Bad:Tag") && stderr.contains("invalid_reference"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_kind_is_skipped_and_the_rest_still_counts() {
    container_image_pusher::install_crypto_provider();
    let api = KubeApi::start().await;
    api.apply(&object::<Pod>(json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": containers(&[("c", "127.0.0.1:1/a:1")])}
    })));
    api.apply(&object::<DaemonSet>(json!({
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": template(json!({"containers": containers(&[("c", "127.0.0.1:1/b:1")])}))
    })));
    api.forbid::<DaemonSet>();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let (ok, stdout, stderr) = run_pusher(
        &["--once", "--dry-run", "--registry-timeout", "5s"],
        Some(&kubeconfig),
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains(r#"kind="Pod""#), "{stdout}");
    assert!(!stdout.contains(r#"kind="DaemonSet""#), "{stdout}");
    assert_eq!(
        stderr.matches("not allowed to list").count(),
        1,
        "logged once: {stderr}"
    );
    assert!(stderr.contains("DaemonSet"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_fails_when_a_batch_is_rejected_but_sends_the_others() {
    container_image_pusher::install_crypto_provider();
    let receiver = Receiver::start().await;
    receiver.script([
        Reply::status(204),
        Reply::status(400).body("out of order sample"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("pods.yaml");
    let pods: Vec<String> = (0..3)
        .map(|i| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: ns}}\nspec: {{containers: [{{name: c, image: \"127.0.0.1:1/app:{i}\"}}]}}\n"))
        .collect();
    std::fs::write(&manifests, pods.join("---\n")).unwrap();
    let (ok, _, stderr) = run_pusher(
        &[
            "--manifests",
            manifests.to_str().unwrap(),
            "--once",
            "--remote-write-url",
            &receiver.url(),
            "--max-series-per-request",
            "1",
        ],
        None,
    )
    .await;
    assert!(!ok, "exit status must report the rejected batch");
    assert!(
        stderr.contains("400") && stderr.contains("out of order sample"),
        "{stderr}"
    );
    assert_eq!(
        receiver.received().len(),
        6,
        "6 series (3 containers, 3 resolve errors) in 6 requests: the 400 is not retried, the other batches still go out"
    );
    receiver.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_health_and_readiness() {
    container_image_pusher::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("pod.yaml");
    std::fs::write(&manifests, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: \"127.0.0.1:1/app:1\"}]}\n").unwrap();
    let port = support::free_port();
    let mut child = support::ChildGuard::spawn(
        "container-image-pusher",
        std::process::Command::new(BIN).args([
            "--manifests",
            manifests.to_str().unwrap(),
            "--metrics-address",
            &format!("127.0.0.1:{port}"),
            "--external-label",
            "cluster=local",
        ]),
    );
    let base = format!("http://127.0.0.1:{port}");
    support::wait_for_http(&format!("{base}/readyz"), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", child.logs()));
    child.check_running().unwrap();
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"container_image_container_info{container="c",image="127.0.0.1:1/app:1""#),
        "{text}"
    );
    assert!(
        !text.contains("cluster=\"local\"") && !text.contains("job=\"container-image-pusher\""),
        "no job/external labels on local /metrics: {text}"
    );
    assert!(
        text.contains(r#"container_image_pusher_resolve_failures_total{class="unavailable"}"#),
        "{text}"
    );
    assert!(
        text.contains("container_image_pusher_snapshot_containers 1"),
        "{text}"
    );
}

#[path = "dashboard_queries/mod.rs"]
mod dashboard_queries;

/// Every panel query of every dashboard returns data from a real push (and,
/// for the pusher-health panels, from scraping the pusher's own /metrics as
/// the cluster's Prometheus or agent would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    container_image_pusher::install_crypto_provider();
    let (registry, api) = tokio::join!(Registry::start(), KubeApi::start());
    let images = push_images(&registry).await;
    let reg = registry.host();
    apply_workloads(&api, &reg, &images);
    // A kind the service account may not list feeds the discovery-errors panel.
    api.forbid::<k8s_openapi::api::batch::v1::Job>();
    let rejecting = Receiver::start().await;
    rejecting.set_fallback(Reply::status(400).body("rejected for the dropped-series panel"));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());

    // Prometheus is told where to scrape before the pusher (which needs
    // Prometheus' write URL) starts: the pusher's port is chosen up front.
    let port = support::free_port();
    let prometheus = Prometheus::start_scraping(
        "container-image-pusher-metrics",
        &format!("127.0.0.1:{port}"),
        &[("cluster", "e2e")],
    )
    .await;
    let write_url = prometheus.write_url();
    let mut child = support::ChildGuard::spawn(
        "container-image-pusher",
        std::process::Command::new(BIN)
            .args([
                "--interval",
                "1s",
                "--remote-write-url",
                &write_url,
                "--remote-write-url",
                &rejecting.url(),
                "--insecure-registry",
                &reg,
                "--external-label",
                "cluster=e2e",
                "--metrics-address",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info"),
    );
    // Several ticks and scrapes, so rate() over the self-metrics has data.
    prometheus
        .query_until(
            "count(container_image_pusher_pushes_total)",
            |s| !s.is_empty(),
            Duration::from_secs(30),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    child.check_running().unwrap();

    let queries = dashboard_queries::all_panel_queries(&std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards"
    )));
    assert!(queries.len() > 50, "{} queries", queries.len());
    let mut empty = Vec::new();
    for (dashboard, panel, expr) in &queries {
        match prometheus.try_query(expr).await {
            Ok(samples) if !samples.is_empty() => {}
            Ok(_) => empty.push(format!("{dashboard} / {panel}: no data\n  {expr}")),
            Err(e) => empty.push(format!("{dashboard} / {panel}: {e}\n  {expr}")),
        }
    }
    assert!(
        empty.is_empty(),
        "{} of {} panel queries failed:\n{}",
        empty.len(),
        queries.len(),
        empty.join("\n")
    );
}
