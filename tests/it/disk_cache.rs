//! The on-disk cache (`--cache-dir`) against a real docker-registry and
//! the pusher binary: a restarted pusher asks the registry nothing it
//! resolved before and pushes the same series; a damaged file is refused
//! with a warning and costs only a cold start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fixtures::{pod_manifest, write_manifest};
use crate::support::manifests::{helm_template, kustomize, repo};
use crate::support::pusher::{run_once, Pusher, RunOutput};
use crate::support::registry::{push_image, push_index, Format, ImageSpec, IndexEntry, Registry};

/// The file's name in `--cache-dir` (`registry::disk_cache::FILE_NAME`).
const FILE: &str = "image-metadata.v1";

/// A registry with a single-platform image and a multi-arch one, and a
/// manifests file running both by digest (a tag would be asked about at
/// every start: it is mutable and never cached on disk).
struct Setup {
    registry: Registry,
    manifests: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let registry = Registry::start().await;
    let single = push_image(
        &registry,
        "apps/single",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .created("2024-01-01T00:00:00Z")
            .label("org.opencontainers.image.version", "1.0")
            .annotation(
                "org.opencontainers.image.source",
                "https://example.com/single",
            )
            .layer(vec![1; 10]),
    )
    .await;
    let amd64 = push_image(
        &registry,
        "apps/multi",
        None,
        &ImageSpec::oci("linux", "amd64").layer(vec![2; 20]),
    )
    .await;
    let arm64 = push_image(
        &registry,
        "apps/multi",
        None,
        &ImageSpec::oci("linux", "arm64").layer(vec![3; 30]),
    )
    .await;
    let index = push_index(
        &registry,
        "apps/multi",
        "1",
        Format::Oci,
        vec![
            IndexEntry::image(&amd64, "linux", "amd64", None),
            IndexEntry::image(&arm64, "linux", "arm64", None),
        ],
        BTreeMap::from([("org.opencontainers.image.title".into(), "multi".into())]),
    )
    .await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let manifests = write_manifest(
        dir.path(),
        "pods.yaml",
        &[
            pod_manifest("single", &format!("{host}/apps/single@{}", single.digest)),
            pod_manifest("multi", &format!("{host}/apps/multi@{}", index.digest)),
        ],
    );
    Setup {
        registry,
        manifests,
        _dir: dir,
    }
}

impl Setup {
    /// One `--once --dry-run` run with the cache in `cache`.
    async fn run(&self, cache: &Path, extra: &[&str]) -> RunOutput {
        let host = self.registry.host();
        let mut args = vec![
            "--once",
            "--dry-run",
            "--manifests",
            self.manifests.to_str().unwrap(),
            "--insecure-registry",
            &host,
            "--referrers=false",
            "--cache-dir",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_once(&args, None).await.assert_success()
    }

    /// Manifest and blob GETs the registry has served so far.
    fn gets(&self) -> usize {
        self.registry
            .logs()
            .lines()
            .filter(|line| line.contains("http.request.method=GET "))
            .filter(|line| line.contains("/manifests/") || line.contains("/blobs/"))
            .count()
    }
}

/// The series a dry run printed, without comments.
fn series(output: &RunOutput) -> Vec<&str> {
    let lines: Vec<&str> = output
        .stdout
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    // What only the metadata (manifest and config) can say.
    for family in ["container_image_created", "container_image_label{"] {
        assert!(
            lines.iter().any(|l| l.starts_with(family)),
            "no {family}:\n{}",
            output.stdout
        );
    }
    lines
}

#[tokio::test]
async fn a_restarted_pusher_asks_nothing_it_resolved_before_and_pushes_the_same_series() {
    let setup = setup().await;
    let cache = tempfile::tempdir().unwrap();
    let cold = setup.run(cache.path(), &[]).await;
    let cold_gets = setup.gets();
    // Single: manifest and config; multi: index, manifest and config.
    assert!(cold_gets >= 5, "{}", setup.registry.logs());
    assert!(cache.path().join(FILE).is_file(), "{}", cold.stderr);

    let warm = setup.run(cache.path(), &[]).await;
    assert_eq!(setup.gets(), cold_gets, "{}", setup.registry.logs());
    assert!(
        warm.stderr
            .contains("loaded image metadata from the disk cache"),
        "{}",
        warm.stderr
    );
    assert_eq!(series(&warm), series(&cold));
}

#[tokio::test]
async fn a_running_pusher_writes_the_cache_once_its_metadata_is_in_and_a_killed_one_restarts_warm()
{
    let setup = setup().await;
    let cache = tempfile::tempdir().unwrap();
    let host = setup.registry.host();
    let args = [
        "--manifests",
        setup.manifests.to_str().unwrap(),
        "--insecure-registry",
        &host,
        "--referrers=false",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--interval",
        "1h",
    ];
    let pusher = Pusher::start(&args, &[]).await;
    // The first snapshot has the digests only; the metadata looked up
    // after it must reach the file without waiting for the next periodic
    // write or a shutdown.
    pusher
        .logs_when(
            Duration::from_secs(30),
            "the cache written after the metadata was looked up",
            |logs| {
                logs.find("looked up the metadata the first snapshot left out")
                    .is_some_and(|at| logs[at..].contains("disk cache written"))
            },
        )
        .await;
    // Killed, not stopped: no write at shutdown to rely on.
    drop(pusher);
    let gets = setup.gets();
    let warm = setup.run(cache.path(), &[]).await;
    assert_eq!(setup.gets(), gets, "{}", warm.stderr);
    // Its replacement says where the metadata came from.
    let mut replacement = Pusher::start(&args, &[]).await;
    let hits = r#"container_image_pusher_cache_lookups_total{cache="disk",result="hit"}"#;
    replacement
        .metrics_when(Duration::from_secs(30), "two disk hits", |m| {
            m.contains(&format!("{hits} 2"))
        })
        .await;
    assert_eq!(setup.gets(), gets);
    replacement.terminate_promptly().await;
}

#[tokio::test]
async fn a_corrupted_truncated_or_oversized_file_is_refused_and_costs_a_cold_start() {
    let setup = setup().await;
    let cache = tempfile::tempdir().unwrap();
    let path = cache.path().join(FILE);
    let cold = setup.run(cache.path(), &[]).await;
    let good = std::fs::read(&path).unwrap();
    assert!(
        good.len() < 4096,
        "the oversized case below assumes a small file"
    );

    let mut corrupted = good.clone();
    let last = corrupted.len() - 10;
    corrupted[last] ^= 0x20;
    let truncated = good[..good.len() / 2].to_vec();
    let mut oversized = good.clone();
    oversized.resize(5000, b'\n');
    let cases = [
        ("corrupted", corrupted, "checksum mismatch"),
        ("truncated", truncated, "checksum mismatch"),
        (
            "oversized",
            oversized,
            "larger than --cache-dir-max-bytes (4096 bytes)",
        ),
    ];
    for (case, bytes, reason) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let before = setup.gets();
        let run = setup
            .run(cache.path(), &["--cache-dir-max-bytes", "4096"])
            .await;
        let refusals: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("refusing the disk cache file"))
            .collect();
        assert_eq!(refusals.len(), 1, "{case}: one warning\n{}", run.stderr);
        assert!(
            refusals[0].contains("WARN")
                && refusals[0].contains(reason)
                && refusals[0].contains(path.to_str().unwrap()),
            "{case}: {}",
            refusals[0]
        );
        // A cold start: everything asked again, the same series pushed.
        assert!(setup.gets() >= before + 5, "{case}");
        assert_eq!(series(&run), series(&cold), "{case}");
        // And the file written again is good.
        let rewritten = setup
            .run(cache.path(), &["--cache-dir-max-bytes", "4096"])
            .await;
        assert!(
            rewritten.stderr.contains("loaded image metadata"),
            "{case}: {}",
            rewritten.stderr
        );
    }
}

/// The pusher container and the pod's volumes of the one pod template in
/// `docs` (a Deployment or a CronJob).
fn pod(docs: &[Value]) -> (Value, Value) {
    let workload = docs
        .iter()
        .find(|d| matches!(d["kind"].as_str(), Some("Deployment" | "CronJob")))
        .expect("a Deployment or a CronJob");
    let spec = match workload["kind"].as_str() {
        Some("CronJob") => &workload["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &workload["spec"]["template"]["spec"],
    };
    let container = spec["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "container-image-pusher")
        .expect("the pusher container")
        .clone();
    (container, spec["volumes"].clone())
}

/// Where the pusher's `--cache-dir` is mounted and the emptyDir's size
/// limit; `None` without `--cache-dir`.
fn cache(docs: &[Value]) -> Option<(String, String)> {
    let (container, volumes) = pod(docs);
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"], true,
        "{container}"
    );
    let dir = container["args"]
        .as_array()?
        .iter()
        .find_map(|a| a.as_str()?.strip_prefix("--cache-dir="))?
        .to_owned();
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir.as_str())
        .unwrap_or_else(|| panic!("nothing mounted at {dir}: {container}"));
    let volume = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let limit = volume["emptyDir"]["sizeLimit"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            volume["emptyDir"]["sizeLimit"]
                .as_u64()
                .map(|n| n.to_string())
        })
        .unwrap_or_else(|| panic!("not a size-limited emptyDir: {volume}"));
    Some((dir, limit))
}

#[test]
fn the_deployment_and_the_chart_mount_a_size_limited_empty_dir_at_the_cache_dir() {
    let overlays = repo().join("deploy/overlays");
    let deployment = kustomize(&overlays.join("deployment"));
    let (dir, limit) = cache(&deployment).expect("--cache-dir in the Deployment");
    assert_eq!(dir, "/var/cache/container-image-pusher");
    assert_eq!(
        limit, "160Mi",
        "twice the default --cache-dir-max-bytes, and room"
    );
    // Each run is a new pod: an emptyDir would always be empty.
    assert!(cache(&kustomize(&overlays.join("cronjob"))).is_none());

    let chart = repo().join("charts/container-image-pusher");
    let render = |values: Value| {
        helm_template(&chart, &values, "pusher", "monitoring")
            .unwrap_or_else(|e| panic!("{values}: {e}"))
            .docs
    };
    let (dir, limit) = cache(&render(json!({}))).expect("--cache-dir by default");
    assert_eq!(dir, "/var/cache/container-image-pusher");
    assert_eq!(limit, (3 * 64 * 1024 * 1024).to_string());
    let (_, limit) = cache(&render(
        json!({"registry": {"cache": {"maxBytes": 1048576}}}),
    ))
    .unwrap();
    assert_eq!(limit, (3 * 1048576).to_string());
    let off = json!({"registry": {"cache": {"enabled": false}}});
    assert!(cache(&render(off)).is_none());
    let cronjob = json!({"mode": "cronjob", "cronjob": {"schedule": "0 * * * *"}});
    assert!(cache(&render(cronjob)).is_none());
}

/// Content-addressed GETs in the registry's access log after its first
/// `from` lines: (manifests by digest, blobs). Tags, tag lists and what is
/// attached to an image are mutable, so a restart asks them again.
fn content_gets(registry: &Registry, from: usize) -> (usize, usize) {
    let logs = registry.logs();
    let gets: Vec<&str> = (logs.lines().skip(from))
        .filter(|line| line.contains("http.request.method=GET "))
        .collect();
    let count = |part: &str| gets.iter().filter(|line| line.contains(part)).count();
    (count("/manifests/sha256:"), count("/blobs/"))
}

#[tokio::test]
async fn a_restarted_pusher_reuses_its_signature_verdicts_and_a_changed_key_gets_fresh_ones() {
    use crate::support::signing::{generate_key, image, sign, verdicts, write_pods};
    let registry = Registry::start().await;
    let keys = tempfile::tempdir().unwrap();
    let d = keys.path();
    generate_key(d, "ours");
    generate_key(d, "other");
    let (signed, signed_digest) = image(&registry, "apps/signed", "1").await;
    sign(d, "ours.key", &signed, false);
    let (legacy, _) = image(&registry, "apps/legacy", "1").await;
    sign(d, "ours.key", &legacy, true);
    let (unsigned, _) = image(&registry, "apps/unsigned", "1").await;
    let pods = write_pods(d, &[signed, legacy, unsigned]);
    let cache = tempfile::tempdir().unwrap();
    let host = registry.host();
    let run = async |key: &str| {
        let from = registry.logs().lines().count();
        let policy = format!("p={}", d.join(key).display());
        let args = [
            "--manifests",
            &pods,
            "--once",
            "--dry-run",
            "--insecure-registry",
            &host,
            "--verify-key",
            &policy,
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ];
        let output = run_once(&args, None).await.assert_success();
        (verdicts(&output.stdout), content_gets(&registry, from))
    };

    let (cold, cold_gets) = run("ours.pub").await;
    assert_eq!(cold.len(), 3, "a verdict per image: {cold:?}");
    assert_eq!(
        cold[&(signed_digest.clone(), "p".into())].0,
        1.0,
        "{cold:?}"
    );
    // Metadata: 3 manifests and 3 configs; the signatures: the bundle's
    // manifest (classified by the referrer lookup, then verified), the
    // legacy signature's manifest, and their 2 layers.
    assert_eq!(cold_gets, (6, 5), "{}", registry.logs());

    let (warm, warm_gets) = run("ours.pub").await;
    assert_eq!(warm, cold, "the same verdict series");
    // Only the bundle's manifest, for the referrer lookup (kept in memory):
    // no signature is fetched or checked again.
    assert_eq!(warm_gets, (1, 0), "asked again:\n{}", registry.logs());

    // Another key under the same policy name: nothing verified is reused.
    let (changed, changed_gets) = run("other.pub").await;
    assert_eq!(changed[&(signed_digest, "p".into())].0, 0.0, "{changed:?}");
    assert!(changed.values().all(|(verified, _)| *verified == 0.0));
    assert_eq!(changed_gets, (3, 2), "the signatures fetched again");
}
