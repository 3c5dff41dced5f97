//! Who owns what, end to end into real Prometheus: workload labels and
//! annotations allowlisted with `--workload-labels`/`--workload-annotations`
//! become `container_image_workload_labels`, and the README's join routes
//! containers to their team; `--image-labels`/`--image-annotations` decide
//! which of an image's labels and annotations are pushed at all.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use support::fixtures::{containers, object, template};
use support::{push_image, ImageSpec, KubeApi, Registry, SharedPrometheus};

/// The README's example that joins containers to their team.
fn readme_team_query() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .split("```promql\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(query, _)| query))
        .find(|query| query.contains("on (namespace, kind, name) group_left (label_team)"))
        .expect("the README joins on (namespace, kind, name) group_left (label_team)")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_route_containers_and_only_allowed_metadata_is_pushed() {
    container_image_pusher::install_crypto_provider();
    let (registry, api, prometheus) = tokio::join!(
        Registry::start(),
        KubeApi::start(),
        SharedPrometheus::scope()
    );
    let reg = registry.host();
    push_image(
        &registry,
        "apps/noisy",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .label("org.opencontainers.image.source", "https://example.com/app")
            .label("org.opencontainers.image.created", "2024-01-01")
            .label("com.example.build-host", "ci-17")
            .annotation(
                "org.opencontainers.image.base.name",
                "cgr.dev/chainguard/static",
            )
            .layer(vec![1; 10]),
    )
    .await;
    let image = format!("{reg}/apps/noisy:1");

    let deployment = |name: &str, labels: serde_json::Value, annotations: serde_json::Value| {
        object::<Deployment>(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": labels, "annotations": annotations},
            "spec": template(json!({"containers": containers(&[("app", &image), ("sidecar", &image)])}))
        }))
    };
    api.apply(&deployment(
        "api",
        json!({"team": "payments", "app.kubernetes.io/part-of": "shop", "cost-center": "not-allowed"}),
        json!({"owner": "alice@example.com", "kubectl.kubernetes.io/last-applied-configuration": "{}"}),
    ));
    api.apply(&deployment("web", json!({"team": "storefront"}), json!({})));
    // No team: still joined, with no label_team.
    api.apply(&deployment("legacy", json!({}), json!({})));
    api.apply(&object::<Pod>(json!({
        "metadata": {"name": "api-1", "namespace": "shop", "labels": {"team": "payments"}},
        "spec": {"containers": containers(&[("app", &image)])}
    })));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let run = support::pusher::run_once(
        &[
            "--once",
            "--remote-write-url",
            &prometheus.write_url(),
            "--external-label",
            &prometheus.external_label(),
            "--insecure-registry",
            &reg,
            "--workload-labels",
            "team,app.kubernetes.io/part-of",
            "--workload-annotations",
            "owner",
            "--image-labels",
            "org.opencontainers.*,!org.opencontainers.image.created",
            "--image-annotations",
            "!*",
        ],
        Some(&kubeconfig),
    )
    .await;
    run.assert_success();

    let owners = prometheus
        .query_until(
            "container_image_workload_labels",
            |s| s.len() == 4,
            Duration::from_secs(30),
        )
        .await;
    let api_owner = owners
        .iter()
        .find(|s| s.label("name") == "api")
        .expect("the api Deployment has its series");
    let names: Vec<&str> = api_owner.labels.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "__name__",
            "annotation_owner",
            "group",
            "job",
            "kind",
            "label_app_kubernetes_io_part_of",
            "label_team",
            "name",
            "namespace",
            "version",
        ],
        "only the allowlisted labels and annotations"
    );
    assert_eq!(api_owner.label("annotation_owner"), "alice@example.com");
    assert_eq!(api_owner.label("label_app_kubernetes_io_part_of"), "shop");

    // The README's join: every container, counted by team.
    let by_team: BTreeMap<String, f64> = prometheus
        .query(&readme_team_query())
        .await
        .into_iter()
        .map(|s| (s.label("label_team").to_owned(), s.value))
        .collect();
    assert_eq!(
        by_team,
        BTreeMap::from([
            (String::new(), 2.0),
            ("payments".to_owned(), 3.0),
            ("storefront".to_owned(), 2.0),
        ]),
        "api's two containers and its pod's one are payments'"
    );

    // Image metadata: the allowed label only, no annotation.
    let keys: Vec<String> = prometheus
        .query("container_image_label")
        .await
        .into_iter()
        .map(|s| s.label("key").to_owned())
        .collect();
    assert_eq!(keys, ["org.opencontainers.image.source"]);
    assert!(prometheus
        .query("container_image_annotation")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allowlists_nothing_changes() {
    container_image_pusher::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("d.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: ns, labels: {team: a}}\nspec: {selector: {}, template: {spec: {containers: [{name: c, image: \"127.0.0.1:1/app:1\"}]}}}\n",
    )
    .unwrap();
    let path = manifests.to_str().unwrap();
    let run = |extra: &'static [&'static str]| async move {
        let mut args = vec![
            "--manifests",
            path,
            "--once",
            "--dry-run",
            "--registry-timeout",
            "5s",
        ];
        args.extend_from_slice(extra);
        support::pusher::run_once(&args, None)
            .await
            .assert_success()
            .stdout
    };
    let plain = run(&[]).await;
    assert!(
        !plain.contains("container_image_workload_labels"),
        "{plain}"
    );
    let with = run(&["--workload-labels", "team"]).await;
    let line = with
        .lines()
        .find(|l| l.starts_with("container_image_workload_labels{"))
        .unwrap_or_else(|| panic!("no workload labels series:\n{with}"));
    assert!(
        line.contains(r#"kind="Deployment""#) && line.contains(r#"label_team="a""#),
        "the manifests source keeps allowlisted labels too: {line}"
    );
}
