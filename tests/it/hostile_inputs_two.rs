//! Hostile input, round two: what a tenant's Git checkout, a registry or a
//! pod's pull secrets can do to the pusher process. Each case costs only
//! itself, and no login leaves for a place it was not meant for.

use crate::support;

use base64::Engine as _;
use serde_json::json;

use std::path::Path;
use std::time::Duration;

use std::time::Instant;
use support::fixtures::{pod_manifest, unreachable_image};

use support::pusher::{run_with_env, RunOutput, BIN};
use support::slow_registry::{Script, SlowRegistry};
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
    let leaked: Vec<_> = plain
        .iter()
        .filter(|r| r.authorization.is_some())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
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

/// The `name` of every container_info series a `--dry-run` printed.
fn printed_names(stdout: &str) -> Vec<String> {
    let mut names: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("container_image_container_info{"))
        .filter_map(|l| {
            l.split("name=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

fn pod(name: &str) -> String {
    pod_manifest(name, &unreachable_image(name))
}

/// Runs `--once --dry-run` over `args`, killed after `limit` (a walk or a
/// read without end must not take the test machine's memory with it).
async fn dry_run_bounded(args: &[&str], limit: Duration) -> RunOutput {
    let child = tokio::process::Command::new(BIN)
        .args(["--once", "--dry-run"])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the pusher binary runs");
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the pusher did not finish within {limit:?}"))
        .expect("the pusher's output");
    RunOutput {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The warnings about skipped manifests files, one per file.
fn skipped_files(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("skipping a manifests file"))
        .collect()
}

fn symlink(target: impl AsRef<Path>, link: impl AsRef<Path>) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// A tenant's Git checkout with a link to `/dev/zero` (read without limit
/// before: 769 MiB in 7 s), two links to `.` (the walk doubled at every
/// level and never ended) and a link out of the tree: each is skipped,
/// logged and counted (exit code 3), and the rest is read — including a
/// mounted ConfigMap's layout, whose files are links inside the tree.
#[tokio::test]
async fn symlinks_in_a_manifests_directory_lead_nowhere_outside_it() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yaml"), pod("outside")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("good.yaml"), pod("good")).unwrap();
    symlink("/dev/zero", root.join("zero.yaml"));
    symlink(".", root.join("a"));
    symlink(".", root.join("b"));
    symlink(outside.path().join("secret.yaml"), root.join("escape.yaml"));
    // A mounted ConfigMap: files are links to `..data/`, itself a link.
    std::fs::create_dir(root.join("..2026_12_05")).unwrap();
    std::fs::write(root.join("..2026_12_05/mounted.yaml"), pod("mounted")).unwrap();
    symlink("..2026_12_05", root.join("..data"));
    symlink("..data/mounted.yaml", root.join("mounted.yaml"));

    let RunOutput { stdout, stderr, .. } = dry_run_bounded(
        &["--manifests", root.to_str().unwrap()],
        Duration::from_secs(30),
    )
    .await
    .expect_exit(3, "input was skipped");
    assert_eq!(printed_names(&stdout), ["good", "mounted"], "{stderr}");
    let skipped = skipped_files(&stderr);
    for (file, reason) in [
        ("zero.yaml", "not_regular_file"),
        ("/a ", "not_regular_file"),
        ("/b ", "not_regular_file"),
        ("escape.yaml", "not_regular_file"),
    ] {
        assert!(
            skipped
                .iter()
                .any(|l| l.contains(file.trim()) && l.contains(reason)),
            "{file}: {skipped:#?}"
        );
    }
    assert_eq!(skipped.len(), 4, "{skipped:#?}");
}

/// A file over `--manifests-max-file-bytes` is skipped, and so are the
/// files past `--manifests-max-total-bytes` in a snapshot; each is logged
/// and counted, and the files within the caps are read.
#[tokio::test]
async fn manifests_files_are_read_within_a_per_file_and_a_total_cap() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let small = pod("a");
    std::fs::write(root.join("1.yaml"), &small).unwrap();
    let large: String = ["big-1", "big-2", "big-3", "big-4"].map(pod).join("---\n");
    std::fs::write(root.join("2-large.yaml"), &large).unwrap();
    std::fs::write(root.join("3.yaml"), pod("b")).unwrap();
    std::fs::write(root.join("4.yaml"), pod("c")).unwrap();
    let per_file = (small.len() * 2).to_string();
    let total = (small.len() * 2 + 10).to_string();

    let RunOutput { stdout, stderr, .. } = dry_run_bounded(
        &[
            "--manifests",
            root.to_str().unwrap(),
            "--manifests-max-file-bytes",
            &per_file,
            "--manifests-max-total-bytes",
            &total,
        ],
        Duration::from_secs(30),
    )
    .await
    .expect_exit(3, "input was skipped");
    assert_eq!(printed_names(&stdout), ["a", "b"], "{stderr}");
    let skipped = skipped_files(&stderr);
    assert_eq!(skipped.len(), 2, "{skipped:#?}");
    assert!(
        skipped[0].contains("2-large.yaml") && skipped[0].contains("--manifests-max-file-bytes"),
        "{skipped:#?}"
    );
    assert!(
        skipped[1].contains("4.yaml") && skipped[1].contains("--manifests-max-total-bytes"),
        "{skipped:#?}"
    );
}

/// The `container_image_container_info` line of the container `name`.
fn info_line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            l.starts_with("container_image_container_info{")
                && l.contains(&format!("name=\"{name}\""))
        })
        .unwrap_or_else(|| panic!("no series for {name}:\n{stdout}"))
}

/// A `kubernetes.io/dockerconfigjson` Secret in namespace `ns` for `host`.
/// Each with a password of its own (the name), as the logins would be.
fn pull_secret(name: &str, host: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{name}"));
    let config = json!({"auths": {host: {"auth": auth}}}).to_string();
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"namespace": "ns", "name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}
    })
    .to_string()
}

fn pod_with_secrets(name: &str, image: &str, secrets: &[String]) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "ns", "name": name},
        "spec": {
            "containers": [{"name": name, "image": image}],
            "imagePullSecrets": secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>()
        }
    })
    .to_string()
}

/// Pods listing 30 pull secrets, each refused by their registry after a
/// delay (before: 30 × the delay per image, each holding a lookup slot),
/// and one image on another registry. Each slow lookup ends at
/// --registry-timeout with at most 5 logins tried, and the slow registry
/// holds at most half of the lookup slots: the other registry's image is
/// asked for while the slow one is still being tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_slowly_refused_pull_secrets_cost_one_deadline_and_delay_no_other_registry() {
    let delay = Duration::from_millis(500);
    let slow = SlowRegistry::start(Script::RefuseEveryLogin, delay).await;
    let fast = SlowRegistry::start(Script::ServeImage, Duration::ZERO).await;
    let secrets: Vec<String> = (0..30).map(|i| format!("cred-{i}")).collect();
    let mut documents: Vec<String> = secrets
        .iter()
        .map(|s| pull_secret(s, &slow.host()))
        .collect();
    for i in 0..3 {
        let image = format!("{}/team-{i}/app:1", slow.host());
        documents.push(pod_with_secrets(&format!("slow-{i}"), &image, &secrets));
    }
    documents.push(pod_manifest(
        "fast",
        &format!("{}/other/app:1", fast.host()),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pods.yaml");
    std::fs::write(&file, documents.join("\n---\n")).unwrap();

    let started = Instant::now();
    let RunOutput { stdout, stderr, .. } = dry_run_bounded(
        &[
            "--manifests",
            file.to_str().unwrap(),
            "--registry-timeout",
            "2s",
            "--resolve-concurrency",
            "2",
            "--registry-rps",
            "1000",
            "--insecure-registry",
            &slow.host(),
            "--insecure-registry",
            &fast.host(),
        ],
        Duration::from_secs(90),
    )
    .await;
    let took = started.elapsed();
    assert!(
        info_line(&stdout, "fast").contains(&format!("digest=\"{}\"", fast.digest)),
        "{stdout}\n{stderr}"
    );
    for i in 0..3 {
        let error = format!(
            "container_image_resolve_error{{class=\"timeout\",image=\"{}/team-{i}/app:1\"",
            slow.host()
        );
        assert!(stdout.contains(&error), "{error}\n{stdout}");
    }
    // Well under the 30 × 500 ms that one image's logins took before.
    assert!(took < 30 * delay, "took {took:?}\n{stderr}");
    let slow_arrivals = slow.arrivals();
    let fast_first = fast.arrivals()[0];
    assert!(
        slow_arrivals.len() > 2 && fast_first < slow_arrivals[2],
        "the other registry was asked while the slow one was being tried"
    );
}

/// A registry that answers each request just inside the timeout (tag,
/// manifest, config, referrers, the tag schema's fallbacks: each within
/// it, 5 s or more in all before) gets no request after the lookup's
/// deadline, and the image is a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_answering_each_step_just_in_time_is_cut_at_the_lookup_deadline() {
    let timeout = Duration::from_secs(2);
    let slow = SlowRegistry::start(Script::ServeImage, Duration::from_millis(900)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pods.yaml");
    std::fs::write(
        &file,
        pod_manifest("slow", &format!("{}/app:1", slow.host())),
    )
    .unwrap();
    let RunOutput { stdout, stderr, .. } = dry_run_bounded(
        &[
            "--manifests",
            file.to_str().unwrap(),
            "--registry-timeout",
            "2s",
            "--registry-rps",
            "1000",
            "--insecure-registry",
            &slow.host(),
        ],
        Duration::from_secs(90),
    )
    .await;
    let error = format!(
        "container_image_resolve_error{{class=\"timeout\",image=\"{}/app:1\"",
        slow.host()
    );
    assert!(stdout.contains(&error), "{stdout}\n{stderr}");
    let arrivals = slow.arrivals();
    let span = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        span < timeout,
        "{} requests over {span:?}: none after the deadline",
        arrivals.len()
    );
}
