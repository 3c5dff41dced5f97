//! Private registries: Debian's `docker-registry` behind htpasswd basic
//! auth, credentials from pull secrets (read through the Kubernetes API test
//! server, or from manifest files), service accounts and `--docker-config`.

use crate::support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use serde::de::DeserializeOwned;
use serde_json::json;
use support::pusher::{run_once, Pusher, RunOutput};
use support::registry::PushedImage;
use support::{push_image, ImageSpec, KubeApi, Registry};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland-s3cret";

fn object<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("a valid Kubernetes object")
}

fn auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// A `kubernetes.io/dockerconfigjson` Secret for `host`.
fn config_json_secret(ns: &str, name: &str, host: &str, password: &str) -> serde_json::Value {
    let config = json!({"auths": {host: {"auth": auth(USER, password)}}}).to_string();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": ns, "name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}
    })
}

/// A legacy `kubernetes.io/dockercfg` Secret for `host`, username/password form.
fn dockercfg_secret(ns: &str, name: &str, host: &str) -> serde_json::Value {
    let config = json!({format!("http://{host}"): {"username": USER, "password": PASSWORD, "email": "a@example.com"}}).to_string();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": ns, "name": name},
        "type": "kubernetes.io/dockercfg",
        "data": {".dockercfg": base64::engine::general_purpose::STANDARD.encode(config)}
    })
}

fn pod(
    ns: &str,
    name: &str,
    image: &str,
    secrets: &[&str],
    account: Option<&str>,
) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "app", "image": image}]});
    if !secrets.is_empty() {
        spec["imagePullSecrets"] = secrets.iter().map(|s| json!({"name": s})).collect();
    }
    if let Some(account) = account {
        spec["serviceAccountName"] = json!(account);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name}, "spec": spec})
}

/// The `digest` label of a pod's container_info line in `--dry-run` output ("" when absent).
fn digest_of(stdout: &str, name: &str) -> Option<String> {
    let line = stdout.lines().find(|l| {
        l.starts_with("container_image_container_info{") && l.contains(&format!("name=\"{name}\""))
    })?;
    Some(
        line.split("digest=\"")
            .nth(1)
            .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
            .unwrap_or_default(),
    )
}

/// A registry that demands the login `USER`/`PASSWORD` (stopped on drop:
/// keep it), its host, an image pushed there as `private/app:1` (`layer`
/// gives each test its own digest), and that image's reference.
async fn private_image(layer: u8) -> (Registry, String, PushedImage, String) {
    let registry = Registry::start_with_htpasswd(USER, PASSWORD).await;
    let spec = ImageSpec::oci("linux", "amd64").layer(vec![layer; 10]);
    let image = push_image(&registry, "private/app", Some("1"), &spec).await;
    let host = registry.host();
    let reference = format!("{host}/private/app:1");
    (registry, host, image, reference)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_secrets_from_the_cluster_the_kubelet_way() {
    let (_registry, host, image, reference) = private_image(1).await;

    let api = KubeApi::start().await;
    api.apply(&object::<Secret>(config_json_secret(
        "shop", "regcred", &host, PASSWORD,
    )));
    api.apply(&object::<Secret>(config_json_secret(
        "wrong",
        "regcred",
        &host,
        "not-the-password",
    )));
    api.apply(&object::<Secret>(dockercfg_secret(
        "legacy", "oldcred", &host,
    )));
    api.apply(&object::<Secret>(config_json_secret(
        "sa", "sa-cred", &host, PASSWORD,
    )));
    api.apply(&object::<ServiceAccount>(json!({"metadata": {"namespace": "sa", "name": "builder"}, "imagePullSecrets": [{"name": "sa-cred"}]})));
    api.apply(&object::<Pod>(pod(
        "shop",
        "with-secret",
        &reference,
        &["regcred"],
        None,
    )));
    api.apply(&object::<Pod>(pod(
        "other",
        "without-secret",
        &reference,
        &[],
        None,
    )));
    api.apply(&object::<Pod>(pod(
        "wrong",
        "wrong-password",
        &reference,
        &["regcred"],
        None,
    )));
    api.apply(&object::<Pod>(pod(
        "legacy",
        "dockercfg",
        &reference,
        &["oldcred"],
        None,
    )));
    api.apply(&object::<Pod>(pod(
        "sa",
        "via-account",
        &reference,
        &[],
        Some("builder"),
    )));
    api.apply(&object::<Pod>(pod(
        "shop",
        "missing-secret",
        &reference,
        &["no-such-secret", "regcred"],
        None,
    )));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());

    let RunOutput { stdout, stderr, .. } = run_once(
        &["--once", "--dry-run", "--insecure-registry", &host],
        Some(&kubeconfig),
    )
    .await
    .assert_success();
    for name in ["with-secret", "dockercfg", "via-account", "missing-secret"] {
        assert_eq!(
            digest_of(&stdout, name).as_deref(),
            Some(image.digest.as_str()),
            "{name} resolves\n{stdout}\n{stderr}"
        );
    }
    for name in ["without-secret", "wrong-password"] {
        assert_eq!(
            digest_of(&stdout, name).as_deref(),
            Some(""),
            "{name} must not borrow another object's result\n{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!(
            "container_image_resolve_error{{class=\"unauthorized\",image=\"{reference}\""
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("unauthorized") && stderr.contains("secret wrong/regcred"),
        "the failure names the credentials' source: {stderr}"
    );
    assert!(
        stderr.contains("no-such-secret"),
        "a missing secret is a warning: {stderr}"
    );
    // Secrets are read through watches (LIST + WATCH), filtered by type on the server, not fetched per object.
    let secret_requests: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .collect();
    assert!(
        secret_requests.iter().all(|r| r
            .param("fieldSelector")
            .is_some_and(|f| f.starts_with("type="))),
        "{secret_requests:?}"
    );
    assert!(
        secret_requests
            .iter()
            .all(|r| !r.path.contains("/namespaces/")),
        "no GET per object: {secret_requests:?}"
    );
    for output in [&stdout, &stderr] {
        assert!(
            !output.contains(PASSWORD) && !output.contains(&auth(USER, PASSWORD)),
            "a secret leaked:\n{output}"
        );
    }
}

/// A cluster of one Pod running `image` with the pull secret `regcred`,
/// where the pusher may read neither Secrets nor ServiceAccounts; the
/// folder of its kubeconfig (removed on drop: keep it) and the kubeconfig.
async fn forbidden_secrets(image: &str) -> (KubeApi, tempfile::TempDir, PathBuf) {
    let api = KubeApi::start().await;
    api.apply(&object::<Pod>(pod("shop", "p", image, &["regcred"], None)));
    api.forbid::<Secret>();
    api.forbid::<ServiceAccount>();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(dir.path());
    (api, dir, kubeconfig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rights_on_secrets_images_resolve_anonymously() {
    let registry = Registry::start().await;
    let host = registry.host();
    push_image(
        &registry,
        "public/app",
        Some("1"),
        &ImageSpec::oci("linux", "amd64").layer(vec![2; 10]),
    )
    .await;
    let (api, _dir, kubeconfig) = forbidden_secrets(&format!("{host}/public/app:1")).await;
    let started = Instant::now();
    let RunOutput { stdout, stderr, .. } = run_once(
        &["--once", "--dry-run", "--insecure-registry", &host],
        Some(&kubeconfig),
    )
    .await
    .assert_success();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "RBAC denial does not stall the run"
    );
    assert!(
        digest_of(&stdout, "p").is_some_and(|d| d.starts_with("sha256:")),
        "{stdout}"
    );
    // One warning, not one per secret type and one for ServiceAccounts.
    assert_eq!(
        stderr.matches("not allowed to read pull secrets").count(),
        1,
        "{stderr}"
    );

    // And --pull-secrets=false does not even ask.
    api.clear_requests();
    run_once(
        &[
            "--once",
            "--dry-run",
            "--insecure-registry",
            &host,
            "--pull-secrets=false",
        ],
        Some(&kubeconfig),
    )
    .await
    .assert_success();
    assert!(!api
        .requests()
        .iter()
        .any(|r| r.path.contains("secrets") || r.path.contains("serviceaccounts")));
}

/// A long-running pusher watching two namespaces has six pull-secret
/// watchers (two secret types and ServiceAccounts, per namespace), all
/// refused and retried: one warning, and one line when they are allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pull_secrets_are_one_warning_and_allowed_again_one_line() {
    let (api, _dir, kubeconfig) = forbidden_secrets("127.0.0.1:1/app:1").await;
    let pusher = Pusher::on_cluster(&kubeconfig, "300ms")
        .args(&["--namespace", "shop,other"])
        .start()
        .await;
    let requests = || {
        api.requests()
            .iter()
            .filter(|r| r.path.contains("/secrets") || r.path.contains("/serviceaccounts"))
            .count()
    };
    let warnings = |logs: &str| logs.matches("not allowed to read pull secrets").count();
    let allowed = |logs: &str| logs.matches("allowed to read pull secrets again").count();
    // Every watcher refused at least twice.
    pusher
        .wait_until(
            Duration::from_secs(30),
            "the watchers retried",
            async || requests() >= 12,
        )
        .await;
    let logs = pusher.child.logs();
    assert_eq!(warnings(&logs), 1, "{logs}");
    assert_eq!(allowed(&logs), 0, "{logs}");

    api.allow::<Secret>();
    api.allow::<ServiceAccount>();
    let logs = pusher
        .logs_when(Duration::from_secs(60), "allowed again", |logs| {
            allowed(logs) > 0
        })
        .await;
    assert_eq!(warnings(&logs), 1, "{logs}");
    assert_eq!(allowed(&logs), 1, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_manifest_files_and_docker_config_and_one_head_per_cache_period() {
    let (_registry, host, image, reference) = private_image(3).await;
    let dir = tempfile::tempdir().unwrap();

    // Files as a source: the Secret and ServiceAccount sit next to the workloads.
    let manifests = dir.path().join("all.yaml");
    let documents = [
        config_json_secret("shop", "regcred", &host, PASSWORD),
        pod("shop", "from-files", &reference, &["regcred"], None),
        pod("other", "no-secret", &reference, &[], None),
    ];
    let yaml: Vec<String> = documents
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    std::fs::write(&manifests, yaml.join("---\n")).unwrap();
    let RunOutput { stdout, stderr, .. } = run_once(
        &[
            "--manifests",
            manifests.to_str().unwrap(),
            "--once",
            "--dry-run",
            "--insecure-registry",
            &host,
        ],
        None,
    )
    .await
    .assert_success();
    assert_eq!(
        digest_of(&stdout, "from-files").as_deref(),
        Some(image.digest.as_str()),
        "{stdout}\n{stderr}"
    );
    assert_eq!(digest_of(&stdout, "no-secret").as_deref(), Some(""));

    // --docker-config covers every workload.
    let docker_config = dir.path().join("config.json");
    std::fs::write(
        &docker_config,
        json!({"auths": {&host: {"auth": auth(USER, PASSWORD)}}}).to_string(),
    )
    .unwrap();
    let pods = dir.path().join("pods.yaml");
    std::fs::write(
        &pods,
        serde_yaml::to_string(&pod("other", "static", &reference, &[], None)).unwrap(),
    )
    .unwrap();
    let args = [
        "--manifests",
        pods.to_str().unwrap(),
        "--insecure-registry",
        &host,
        "--docker-config",
        docker_config.to_str().unwrap(),
    ];
    let RunOutput { stdout, stderr, .. } =
        run_once(&[&args[..], &["--once", "--dry-run"]].concat(), None)
            .await
            .assert_success();
    assert_eq!(
        digest_of(&stdout, "static").as_deref(),
        Some(image.digest.as_str()),
        "{stderr}"
    );

    // Long-running with a 1 s cache: after the first fetch, an unchanged tag
    // costs one HEAD per cache period and no GET. (Referrer lookups, GETs
    // of their own, are counted in tests/it/supply_chain.rs.)
    let pusher = Pusher::start(
        &[
            &args[..],
            &[
                "--interval",
                "300ms",
                "--cache-duration",
                "1s",
                "--referrers=false",
                "--versions=false",
            ],
        ]
        .concat(),
        &[],
    )
    .await;
    let requests = |text: &str, method: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("container_image_pusher_registry_requests_total{")
                    && l.contains(&format!("method=\"{method}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // The first fetch, however slow the machine (a fixed 800 ms was not
    // always enough on a loaded one): the manifest by tag (after the 401
    // that tells how the host wants the login) and the config.
    let before = pusher
        .metrics_when(Duration::from_secs(20), "the image fetched", |text| {
            requests(text, "GET") >= 3.0
        })
        .await;
    // Two more HEADs: the tag checked again in two later cache periods.
    let checking = Instant::now();
    let after = pusher
        .metrics_when(Duration::from_secs(20), "two more HEADs", |text| {
            requests(text, "HEAD") >= requests(&before, "HEAD") + 2.0
        })
        .await;
    let two_heads = checking.elapsed();
    assert_eq!(
        requests(&before, "GET"),
        3.0,
        "manifest and config, once:\n{before}"
    );
    assert_eq!(
        requests(&before, "HEAD"),
        0.0,
        "no HEAD when cold:\n{before}"
    );
    assert_eq!(
        requests(&after, "GET"),
        3.0,
        "no GET for an unchanged tag:\n{after}"
    );
    assert!(
        two_heads >= Duration::from_millis(900),
        "two HEADs within {two_heads:?}: more than one per 1 s cache period"
    );
    assert!(!pusher.child.logs().contains(PASSWORD) && !after.contains(PASSWORD));
}

/// The reproducer: an `auths` key of forty stars before `z:1`, and a
/// pod pulling `localhost:1/x/y:1` with it, made one lookup run for minutes.
/// Next to it, a key of 2 KiB (refused, with one warning naming the secret)
/// and the real login for a private registry, which must still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pull_secret_patterns_cost_no_time_and_spare_the_other_logins() {
    let (_registry, host, image, reference) = private_image(4).await;
    let forty_stars = format!("{}z:1", "*".repeat(40));
    let overlong = format!("{}z:1", "*".repeat(2048));
    let config = json!({"auths": {
        &forty_stars: {"auth": auth(USER, "hostile-1")},
        &overlong: {"auth": auth(USER, "hostile-2")},
        &host: {"auth": auth(USER, PASSWORD)},
    }})
    .to_string();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": "shop", "name": "evil"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config}
    });
    let documents = [
        secret,
        pod("shop", "hostile", "localhost:1/x/y:1", &["evil"], None),
        pod("shop", "private", &reference, &["evil"], None),
    ];
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("all.yaml");
    let yaml: Vec<String> = documents
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    std::fs::write(&manifests, yaml.join("---\n")).unwrap();
    let args = [
        "--manifests",
        manifests.to_str().unwrap(),
        "--insecure-registry",
        &host,
    ];

    let started = Instant::now();
    let RunOutput {
        success: ok,
        stdout,
        stderr,
        ..
    } = run_once(&[&args[..], &["--once", "--dry-run"]].concat(), None).await;
    let took = started.elapsed();
    assert!(ok, "{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "one lookup used to take minutes; took {took:?}\n{stderr}"
    );
    assert_eq!(
        digest_of(&stdout, "private").as_deref(),
        Some(image.digest.as_str()),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(
            "container_image_resolve_error{class=\"unavailable\",image=\"localhost:1/x/y:1\""
        ),
        "{stdout}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("locations longer than the limit"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("secret shop/evil"), "{}", warnings[0]);
    assert!(
        !stderr.contains(&"*".repeat(64)),
        "the refused location is not repeated"
    );

    // Long-running, the files are read again at every tick: still one warning.
    let pusher = Pusher::start(
        &[
            &args[..],
            &["--interval", "200ms", "--error-cache-duration", "100ms"],
        ]
        .concat(),
        &[],
    )
    .await;
    pusher
        .metrics_when(
            Duration::from_secs(20),
            "3 attempts at localhost:1",
            |metrics| {
                let attempts: f64 = metrics
                    .lines()
                    .filter(|l| {
                        l.starts_with("container_image_pusher_registry_requests_total{")
                            && l.contains("host=\"localhost:1\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum();
                attempts >= 3.0
            },
        )
        .await;
    let logs = pusher.child.logs();
    assert_eq!(
        logs.matches("locations longer than the limit").count(),
        1,
        "{logs}"
    );
    for output in [&stdout, &stderr, &logs] {
        assert!(
            !output.contains(PASSWORD) && !output.contains("hostile-1"),
            "a secret leaked:\n{output}"
        );
    }
}
