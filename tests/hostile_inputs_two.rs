//! Hostile input, round two: what a tenant's Git checkout, a registry or a
//! pod's pull secrets can do to the pusher process. Each case costs only
//! itself, and no login leaves for a place it was not meant for.

mod support;

use base64::Engine as _;
use serde_json::json;

use support::fixtures::pod_manifest;
use support::pusher::{run_with_env, RunOutput};
use support::tls_front::TlsFront;
use support::{push_image, ImageSpec, Registry};

const USER: &str = "tenant";
const PASSWORD: &str = "s3cret-registry-password";

fn docker_config(dir: &std::path::Path, host: &str) -> std::path::PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let path = dir.join("config.json");
    std::fs::write(&path, json!({"auths": {host: {"auth": auth}}}).to_string()).unwrap();
    path
}

/// An HTTPS registry that redirects to `http://` on the same host and port
/// (Debian's `docker-registry`, with basic auth, behind a TLS front of the
/// test's own): the plain-HTTP side never sees an `Authorization` header,
/// neither on the request the redirect leads to nor on the retry that its
/// 401 challenge asks for. Before, the login went out in clear: the check
/// compared `host:port` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_registry_redirecting_to_plain_http_never_gets_the_login_in_clear() {
    let registry = Registry::start_with_htpasswd(USER, PASSWORD).await;
    push_image(
        &registry,
        "app",
        Some("1"),
        &ImageSpec::oci("linux", "amd64"),
    )
    .await;
    let front = TlsFront::start(&registry.host()).await;
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods.yaml");
    std::fs::write(
        &pods,
        pod_manifest("redirected", &format!("{}/app:1", front.host())),
    )
    .unwrap();
    let config = docker_config(dir.path(), &front.host());
    let RunOutput { stdout, stderr, .. } = run_with_env(
        &[
            "--once",
            "--dry-run",
            "--manifests",
            pods.to_str().unwrap(),
            "--docker-config",
            config.to_str().unwrap(),
        ],
        &[("SSL_CERT_FILE", front.ca_file().to_str().unwrap())],
    )
    .await;
    assert!(
        front.tls_requests() > 0,
        "the pusher asked the HTTPS side first:\n{stderr}"
    );
    let plain = front.plain_requests();
    assert!(
        !plain.is_empty(),
        "the redirect to plain HTTP was followed:\n{stderr}"
    );
    let leaked: Vec<_> = plain.iter().filter(|r| r.authorization.is_some()).collect();
    assert!(
        leaked.is_empty(),
        "credentials sent over plain HTTP: {leaked:?}"
    );
    assert!(
        stdout.contains("container_image_resolve_error{") && stdout.contains("unauthorized"),
        "without its login the image is unauthorized:\n{stdout}"
    );
    assert!(!stderr.contains(PASSWORD) && !stdout.contains(PASSWORD));
}
