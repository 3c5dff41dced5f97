//! version-checker's annotations end to end, from the emulated API server
//! through Debian's `docker-registry` into a real Prometheus: containers
//! that share an image but carry different overrides each get their own
//! answer through the joins the README and the shipped recording rule
//! document, and the annotations of a `--workload-kind` kind's pod
//! template count as a Deployment's do.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Value};
use support::fixtures::{containers, object, template};
use support::kube_api::ARGO_ROLLOUT;
use support::tags::push_tags;
use support::{KubeApi, QueryApi, Registry, SharedPrometheus};

const TIMEOUT: Duration = Duration::from_secs(30);
const REPO: &str = "library/app";
/// The running tag and the releases around it: the newest release is
/// 2.0.0, the newest 1.27 one 1.27.5.
const TAGS: &[&str] = &["1.27.3", "1.27.5", "1.28.0", "2.0.0", "latest"];

/// The registry holding [`REPO`] with every tag of [`TAGS`].
async fn registry() -> Registry {
    let reg = Registry::start().await;
    push_tags(&reg, REPO, "2024-05-01T00:00:00Z", TAGS).await;
    reg
}

/// A pod template's `metadata.annotations` of version-checker's pins.
fn pins(container: &str, pins: &[(&str, &str)]) -> Value {
    pins.iter()
        .map(|(what, value)| {
            (
                format!("pin-{what}.version-checker.io/{container}"),
                json!(value),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

fn deployment(
    namespace: &str,
    name: &str,
    names: &[&str],
    image: &str,
    annotations: Value,
) -> Deployment {
    let list: Vec<(&str, &str)> = names.iter().map(|n| (*n, image)).collect();
    let mut spec = template(json!({ "containers": containers(&list) }));
    spec["template"]["metadata"]["annotations"] = annotations;
    object(json!({
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }))
}

/// Pushes the API server's cluster once into `prometheus`.
async fn push_once(api: &KubeApi, reg: &Registry, prometheus: &SharedPrometheus, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    let write_url = prometheus.write_url();
    let scope = prometheus.external_label();
    let host = reg.host();
    let mut args = vec![
        "--once",
        "--remote-write-url",
        &write_url,
        "--external-label",
        &scope,
        "--insecure-registry",
        &host,
    ];
    args.extend_from_slice(extra);
    support::pusher::run_once(&args, Some(&kubeconfig))
        .await
        .assert_success();
}

/// The PromQL of the shipped rule recording `version_checker_is_latest_version`.
fn recording_rule() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/rules/container-image-versions.rules.yaml"
    );
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["record"] == "version_checker_is_latest_version")
        .and_then(|r| r["expr"].as_str())
        .expect("the recording rule")
        .to_owned()
}

/// The README's query of outdated containers by namespace.
fn readme_query() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("# Outdated containers, by namespace")
        .expect("the README's join query");
    let query = &readme[start..];
    query[..query.find("```").unwrap()].to_owned()
}

/// (namespace, workload, container) → (latest_version, value).
type Answers = BTreeMap<(String, String, String), (String, f64)>;

async fn answers(prometheus: &QueryApi, promql: &str, want: usize) -> Answers {
    prometheus
        .query_until(promql, |s| s.len() == want, TIMEOUT)
        .await
        .into_iter()
        .map(|s| {
            let key = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            (
                (key("namespace"), key("pod"), key("container")),
                (key("latest_version"), s.value),
            )
        })
        .collect()
}

fn answer(
    namespace: &str,
    pod: &str,
    container: &str,
    latest: &str,
    value: f64,
) -> ((String, String, String), (String, f64)) {
    (
        (namespace.to_owned(), pod.to_owned(), container.to_owned()),
        (latest.to_owned(), value),
    )
}

/// Four containers run `app:1.27.3`: two without annotations (newest
/// release 2.0.0), one pinned to 1.27 (newest 1.27.5), one pinned to
/// 1.27.3 (the newest there is). The recording rule gives each its own
/// answer, and the README's query counts the outdated ones by namespace.
#[tokio::test]
async fn containers_sharing_an_image_with_different_overrides_get_their_own_answers() {
    let (api, prometheus, reg) =
        tokio::join!(KubeApi::start(), SharedPrometheus::scope(), registry());
    let image = format!("{}/{REPO}:1.27.3", reg.host());
    let none = json!({});
    // The annotation names another container: "app" stays unannotated.
    let web = deployment(
        "shop",
        "web",
        &["app", "pinned"],
        &image,
        pins("pinned", &[("major", "1"), ("minor", "27")]),
    );
    api.apply(&web);
    let exact = [("major", "1"), ("minor", "27"), ("patch", "3")];
    api.apply(&deployment(
        "shop",
        "edge",
        &["app"],
        &image,
        pins("app", &exact),
    ));
    api.apply(&deployment("ops", "tool", &["app"], &image, none));
    push_once(&api, &reg, &prometheus, &[]).await;

    let per_image = prometheus
        .query_until(
            "container_image_is_latest_version",
            |s| s.len() == 3,
            TIMEOUT,
        )
        .await;
    assert!(
        per_image
            .iter()
            .filter(|s| !s.labels.contains_key("container"))
            .count()
            == 1,
        "one set for the image, one per annotated container: {per_image:?}"
    );
    let got = answers(&prometheus, &recording_rule(), 4).await;
    let want: Answers = [
        answer("shop", "web", "app", "2.0.0", 0.0),
        answer("shop", "web", "pinned", "1.27.5", 0.0),
        answer("shop", "edge", "app", "1.27.3", 1.0),
        answer("ops", "tool", "app", "2.0.0", 0.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);

    let outdated: BTreeMap<String, f64> = prometheus
        .query_until(&readme_query(), |s| s.len() == 2, TIMEOUT)
        .await
        .into_iter()
        .map(|s| (s.labels["namespace"].clone(), s.value))
        .collect();
    assert_eq!(
        outdated,
        BTreeMap::from([("ops".to_owned(), 1.0), ("shop".to_owned(), 2.0)]),
        "shop/edge runs its newest pinned release"
    );
}

/// An Argo Rollout's pod template annotations pin its container to 1.27,
/// as a Deployment's would; the unannotated container of the same image
/// gets the image's answer.
#[tokio::test]
async fn version_checker_annotations_of_a_custom_kind_are_honoured() {
    let (api, prometheus, reg) =
        tokio::join!(KubeApi::start(), SharedPrometheus::scope(), registry());
    api.install_crd(ARGO_ROLLOUT);
    let image = format!("{}/{REPO}:1.27.3", reg.host());
    let spec = json!({"containers": containers(&[("app", &image), ("plain", &image)])});
    let mut rollout = json!({"spec": template(spec)});
    rollout["spec"]["template"]["metadata"]["annotations"] =
        pins("app", &[("major", "1"), ("minor", "27")]);
    rollout["apiVersion"] = json!(ARGO_ROLLOUT.api_version());
    rollout["kind"] = json!(ARGO_ROLLOUT.kind);
    rollout["metadata"] = json!({"name": "web", "namespace": "shop"});
    api.apply_custom(rollout);
    push_once(
        &api,
        &reg,
        &prometheus,
        &["--workload-kind", "argo-rollouts"],
    )
    .await;

    let got = answers(&prometheus, &recording_rule(), 2).await;
    let want: Answers = [
        answer("shop", "web", "app", "1.27.5", 0.0),
        answer("shop", "web", "plain", "2.0.0", 0.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    let own = prometheus
        .query(r#"container_image_is_latest_version{container!=""}"#)
        .await;
    assert_eq!(
        own.len(),
        1,
        "only the annotated container has a set: {own:?}"
    );
    assert_eq!(own[0].labels["latest_version"], "1.27.5");
}

/// A `kubernetes.io/dockerconfigjson` Secret with a login for `host`.
fn pull_secret(namespace: &str, name: &str, host: &str, user: &str, password: &str) -> Secret {
    use base64::Engine as _;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let config = json!({"auths": {host: {"auth": b64(&format!("{user}:{password}"))}}});
    object(json!({
        "metadata": {"namespace": namespace, "name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(&config.to_string())},
    }))
}

/// `override-url` names a mirror on a registry that wants a login: the
/// workload whose pods have a pull secret for it gets the mirror's newest
/// release; the same annotation without the secret gets no answer (never
/// the image's own repository's).
#[tokio::test]
async fn override_url_reads_the_mirror_with_the_pods_own_credentials() {
    let (api, prometheus, reg) =
        tokio::join!(KubeApi::start(), SharedPrometheus::scope(), registry());
    let mirror = Registry::start_with_htpasswd("puller", "s3cret").await;
    push_tags(
        &mirror,
        "upstream/app",
        "2024-05-01T00:00:00Z",
        &["1.27.3", "3.1.0"],
    )
    .await;
    let image = format!("{}/{REPO}:1.27.3", reg.host());
    let url =
        json!({ "override-url.version-checker.io/app": format!("{}/upstream/app", mirror.host()) });
    api.apply(&pull_secret(
        "shop",
        "mirror",
        &mirror.host(),
        "puller",
        "s3cret",
    ));
    let mut web = deployment("shop", "web", &["app"], &image, url.clone());
    web.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .image_pull_secrets = Some(vec![object(json!({"name": "mirror"}))]);
    api.apply(&web);
    api.apply(&deployment("other", "bare", &["app"], &image, url));
    let mirror_host = mirror.host();
    push_once(
        &api,
        &reg,
        &prometheus,
        &["--insecure-registry", &mirror_host],
    )
    .await;

    let got = answers(&prometheus, "container_image_is_latest_version", 1).await;
    let want: Answers = [answer("shop", "", "app", "3.1.0", 0.0)]
        .into_iter()
        .collect();
    // The pushed series name the workload `name`; `pod` is the rule's.
    let named: Vec<String> = prometheus
        .query("container_image_is_latest_version")
        .await
        .iter()
        .map(|s| s.labels["name"].clone())
        .collect();
    assert_eq!((got, named), (want, vec!["web".to_owned()]));
}
