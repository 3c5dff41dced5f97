//! The fixtures tests build their world from: workloads (as Kubernetes
//! objects for the API test server, and as manifest files), images pushed
//! to the real registry, and the end-to-end scenario shared by the tests
//! that push a whole cluster's inventory into a real store.
//!
//! The scenario: a registry holding images of every shape (OCI and Docker,
//! a multi-arch index with an attestation, no `created`, a digest-pinned
//! reference; a signature, an SBOM and a provenance statement attached
//! through the referrers tag schema; a base whose tag moved), a Kubernetes
//! API with one object of each kind using them (plus an image that is
//! missing and one that does not parse), and the assertions that a store received every series of it, read back with the
//! PromQL a user would write: the README's seed queries, their per-cluster
//! rewrites and the shipped rules' expressions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::kube_api::KubeApi;
use super::prometheus::{QueryApi, Sample};
use super::registry::{
    attach_with_tag_schema, push_attestation, push_image, push_index, Attachment, Format,
    ImageSpec, IndexEntry, PushedImage, Registry,
};

/// The external label every scenario push carries.
pub const CLUSTER: &str = "e2e";

/// The shipped rules file, whose inventory expressions are checked on every store.
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/rules/container-image-pusher.rules.yaml"
);

/// A registry and a Kubernetes API holding the scenario.
pub struct Scenario {
    pub registry: Registry,
    pub api: KubeApi,
    pub images: Images,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Scenario {
    pub async fn start() -> Scenario {
        let (registry, api) = tokio::join!(Registry::start(), KubeApi::start());
        let images = push_images(&registry).await;
        apply_workloads(&api, &registry.host(), &images);
        let dir = tempfile::tempdir().expect("create a tempdir for the kubeconfig");
        let kubeconfig = api.write_kubeconfig(dir.path());
        Scenario {
            registry,
            api,
            images,
            kubeconfig,
            _dir: dir,
        }
    }

    /// The kubeconfig pointing at the scenario's API.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The flags every pusher run over the scenario needs: the plain-HTTP
    /// registry, and the cluster's external label.
    pub fn pusher_args(&self) -> Vec<String> {
        vec![
            "--insecure-registry".into(),
            self.registry.host(),
            "--external-label".into(),
            format!("cluster={CLUSTER}"),
        ]
    }

    /// Runs the pusher once over the scenario with `extra` flags; panics with
    /// its log when it fails, and returns the log.
    pub async fn push_once(&self, extra: &[&str]) -> String {
        let mut args: Vec<String> = vec!["--once".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(self.pusher_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = super::pusher::run_once(&args, Some(self.kubeconfig())).await;
        assert!(run.success, "the pusher failed:\n{}", run.stderr);
        run.stderr
    }

    /// Asserts that `store` holds every series of one push of the scenario
    /// and answers the README's queries and the rules' expressions as it should.
    pub async fn assert_stored(&self, store: &QueryApi) {
        self.assert_stored_with_job_label(store, "job").await;
    }

    /// [`Scenario::assert_stored`] for a store that keeps the job under
    /// another label name: VictoriaMetrics stores OTLP's `service.name`
    /// resource attribute as it is.
    pub async fn assert_stored_with_job_label(&self, store: &QueryApi, job_label: &str) {
        let reg = self.registry.host();
        let images = &self.images;
        // Every container of every kind, with exactly the upstream labels (plus
        // `container`, `job` and the external label); the store drops the empty
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
                ("cluster", CLUSTER),
                ("container", container),
                ("image", image),
                (job_label, "container-image-pusher"),
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
        let mut got = store.series("container_image_container_info").await;
        got.sort();
        assert_eq!(got, expected);

        // Image series: once per digest, with the index digest for the multi-arch tag.
        let value =
            |samples: Vec<Sample>| -> Vec<f64> { samples.into_iter().map(|s| s.value).collect() };
        assert_eq!(
            value(store.query("count(container_image_size_bytes)").await),
            [5.0]
        );
        let size = |digest: &str| format!("container_image_size_bytes{{digest=\"{digest}\"}}");
        assert_eq!(
            value(store.query(&size(&images.multi.digest)).await),
            [images.multi_amd64.image_size() as f64],
            "size of the amd64 image of the index"
        );
        assert_eq!(
            value(store.query(&size(&images.chainguard.digest)).await),
            [images.chainguard.image_size() as f64]
        );
        assert_eq!(
            value(store.query(&size(&images.docker.digest)).await),
            [images.docker.image_size() as f64],
            "Docker schema 2 works"
        );
        assert!(
            store
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
                store
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
        let label = store
            .query(&format!(
                "container_image_label{{digest=\"{}\",key=\"dev.chainguard.package.main\"}}",
                images.chainguard.digest
            ))
            .await;
        assert_eq!(label[0].labels["value"], "static");
        let annotations: BTreeMap<String, String> = store
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
        // The app image's base, beside the moved base of the supply-chain one.
        let bases: Vec<String> = store
            .query("container_image_annotation{key=\"org.opencontainers.image.base.name\"}")
            .await
            .into_iter()
            .map(|s| s.labels["value"].clone())
            .collect();
        assert!(
            bases
                .iter()
                .any(|b| b == "cgr.dev/chainguard/static:latest"),
            "{bases:?}"
        );

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
        let share = value(store.query(chainguard_share).await);
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
        let mut old: Vec<String> = store
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

        // The same two queries as the README rewrites them for pushed data.
        let per_cluster = r#"100 * count by (cluster) (
            last_over_time(container_image_container_info{kind!="Pod"}[1h])
          * on (cluster, digest) group_left (value)
            last_over_time(container_image_label{key="dev.chainguard.package.main"}[1h])
        )
        / count by (cluster) (last_over_time(container_image_container_info{kind!="Pod"}[1h]))"#;
        let share = store.query(per_cluster).await;
        assert_eq!(share[0].labels["cluster"], CLUSTER);
        assert!(
            (share[0].value - 100.0 * 2.0 / 6.0).abs() < 1e-9,
            "{share:?}"
        );
        let old_rewritten = r#"time() - (
              max by (cluster, digest, image) (last_over_time(container_image_container_info[1h]))
            * on (cluster, digest) group_left ()
              last_over_time(container_image_created[1h])
          ) > 86400 * 14"#;
        let mut old: Vec<String> = store
            .query(old_rewritten)
            .await
            .into_iter()
            .map(|s| s.labels["image"].clone())
            .collect();
        old.sort();
        assert_eq!(old, want);

        // The shipped inventory rules: both unresolvable images alert, and
        // the cluster's inventory timestamp is the push just made.
        let mut failing: Vec<(String, String)> = store
            .query(&rule_expr("alert", "ContainerImageUnresolvable"))
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
        let newest = store
            .query(&rule_expr(
                "record",
                "cluster:container_image_container_info_timestamp:max",
            ))
            .await;
        assert_eq!(newest.len(), 1, "{newest:?}");
        assert_eq!(newest[0].labels, labels(&[("cluster", CLUSTER)]));
        let age = chrono::Utc::now().timestamp() as f64 - newest[0].value;
        assert!((-5.0..300.0).contains(&age), "the inventory is {age} s old");
    }
}

/// The `expr` of the rule whose `kind` (`alert` or `record`) is `name` in the
/// shipped rules file.
fn rule_expr(kind: &str, name: &str) -> String {
    let text = std::fs::read_to_string(RULES).unwrap_or_else(|e| panic!("reading {RULES}: {e}"));
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("the rules file is YAML");
    rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_sequence().into_iter().flatten())
        .find(|rule| rule[kind].as_str() == Some(name))
        .and_then(|rule| rule["expr"].as_str())
        .unwrap_or_else(|| panic!("no {kind} {name} with an expr in {RULES}"))
        .to_owned()
}

/// An image nothing answers for (nothing listens on port 1), so resolving
/// it fails fast: for tests about workloads, not their images.
pub fn unreachable_image(name: &str) -> String {
    format!("127.0.0.1:1/{name}:1")
}

/// A Kubernetes object from its JSON.
pub fn object<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a valid Kubernetes object")
}

/// A `containers` list from (name, image) pairs.
pub fn containers(list: &[(&str, &str)]) -> serde_json::Value {
    list.iter()
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect()
}

/// A workload's `spec`: a selector and a Pod template with `spec`.
pub fn template(spec: serde_json::Value) -> serde_json::Value {
    json!({"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}}, "spec": spec}})
}

/// A Pod in `namespace` running `image` in one container, `app`.
pub fn pod(namespace: &str, name: &str, image: &str) -> Pod {
    object(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"containers": containers(&[("app", image)])}
    }))
}

/// A Deployment in `namespace` whose Pods run `image` in one container, `app`.
pub fn deployment(namespace: &str, name: &str, image: &str) -> Deployment {
    object(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": template(json!({"containers": containers(&[("app", image)])}))
    }))
}

/// A manifest document: a Pod in namespace `ns` running `image` in one
/// container, `c`.
pub fn pod_manifest(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{containers: [{{name: c, image: \"{image}\"}}]}}\n"
    )
}

/// Writes `documents` as one multi-document manifest file and returns its
/// path. Written then renamed, so a pusher reading the file never sees half
/// of it.
pub fn write_manifest(dir: &Path, file: &str, documents: &[String]) -> PathBuf {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, documents.join("---\n")).expect("write manifests");
    std::fs::rename(&tmp, &path).expect("move manifests into place");
    path
}

/// Writes a manifest with one Pod per name, each running its own
/// [`unreachable_image`], and returns its path.
pub fn write_pods(dir: &Path, file: &str, names: &[&str]) -> PathBuf {
    let documents: Vec<String> = names
        .iter()
        .map(|name| pod_manifest(name, &unreachable_image(name)))
        .collect();
    write_manifest(dir, file, &documents)
}

/// Writes a manifest with one Pod per (name, image) and returns its path.
pub fn write_pods_with_images(dir: &Path, file: &str, pods: &[(&str, &str)]) -> PathBuf {
    let documents: Vec<String> = pods
        .iter()
        .map(|(name, image)| pod_manifest(name, image))
        .collect();
    write_manifest(dir, file, &documents)
}

/// Writes `count` Pods that all run `image`, named `NAME_PREFIX-i`, in one
/// multi-document file; a long prefix makes a large `/metrics` page.
pub fn write_many_pods(
    dir: &Path,
    file: &str,
    name_prefix: &str,
    count: usize,
    image: &str,
) -> PathBuf {
    let documents: Vec<String> = (0..count)
        .map(|i| pod_manifest(&format!("{name_prefix}-{i}"), image))
        .collect();
    write_manifest(dir, file, &documents)
}

fn rfc3339_days_ago(days: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339()
}

/// The images of the scenario, as pushed.
pub struct Images {
    pub chainguard: PushedImage,
    pub docker: PushedImage,
    pub multi: PushedImage,
    pub multi_amd64: PushedImage,
    pub no_created: PushedImage,
    pub pinned: PushedImage,
}

pub async fn push_images(reg: &Registry) -> Images {
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
    // Built on apps/base:1, whose tag has moved since: an outdated base.
    let old_base = push_image(
        reg,
        "apps/base",
        Some("1"),
        &ImageSpec::oci("linux", "amd64").layer(b"base v1".to_vec()),
    )
    .await;
    push_image(
        reg,
        "apps/base",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .created(&rfc3339_days_ago(3))
            .layer(b"base v2".to_vec()),
    )
    .await;
    let no_created = push_image(
        reg,
        "apps/nocreated",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .annotation(
                "org.opencontainers.image.base.name",
                &format!("{}/apps/base:1", reg.host()),
            )
            .annotation("org.opencontainers.image.base.digest", &old_base.digest)
            .layer(vec![6u8; 10]),
    )
    .await;
    attach_with_tag_schema(
        reg,
        "apps/chainguard",
        &chainguard,
        &[
            Attachment {
                artifact_type: Some("application/vnd.cncf.notary.signature"),
                layer_media_type: "application/jose+json",
                layer_annotations: json!({}),
            },
            Attachment {
                artifact_type: Some("application/spdx+json"),
                layer_media_type: "application/spdx+json",
                layer_annotations: json!({}),
            },
            Attachment {
                artifact_type: None,
                layer_media_type: "application/vnd.in-toto+json",
                layer_annotations: json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"}),
            },
        ],
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
pub fn apply_workloads(api: &KubeApi, reg: &str, images: &Images) {
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

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
