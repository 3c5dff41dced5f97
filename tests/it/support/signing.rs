//! Signing with the real cosign and reading the pusher's verification
//! series, for the signature verification tests (`tests/verify*.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::{peers, push_image, ImageSpec, Registry};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Runs the real cosign in `dir`; whether it succeeded.
pub fn cosign(dir: &Path, args: &[&str]) -> bool {
    let output = Command::new(peers::peer("cosign"))
        .args(args)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", "")
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir)
        .output()
        .expect("run cosign");
    output.status.success()
}

pub fn sign(dir: &Path, key: &str, image: &str, legacy: bool) {
    cosign_offline(dir, &["sign", "--key", key], image, legacy);
}

/// Runs cosign's `command` (its name and flags) on `image` with no
/// transparency log, against a plain-HTTP registry, in the legacy bundle
/// format when `legacy`; panics if it fails.
pub fn cosign_offline(dir: &Path, command: &[&str], image: &str, legacy: bool) {
    let mut args = command.to_vec();
    args.extend([
        "--tlog-upload=false",
        "--use-signing-config=false",
        "--allow-http-registry",
        "--yes",
    ]);
    if legacy {
        args.push("--new-bundle-format=false");
    }
    args.push(image);
    assert!(cosign(dir, &args), "cosign {args:?} failed");
}

pub fn generate_key(dir: &Path, prefix: &str) {
    assert!(cosign(
        dir,
        &["generate-key-pair", "--output-key-prefix", prefix]
    ));
}

/// The oracle: whether `cosign verify` accepts `image` with any of `keys`.
pub fn cosign_verifies(dir: &Path, keys: &[&str], image: &str) -> bool {
    keys.iter().any(|key| {
        cosign(
            dir,
            &[
                "verify",
                "--key",
                key,
                "--insecure-ignore-tlog=true",
                "--allow-insecure-registry",
                image,
            ],
        )
    })
}

/// What one `--dry-run` over the `pods` manifest prints, its images on the
/// plain-HTTP registry at `host`, with the verification flags given.
pub async fn dry_run(pods: &str, host: &str, policies: &[&str]) -> String {
    let mut args = vec![
        "--manifests",
        pods,
        "--once",
        "--dry-run",
        "--insecure-registry",
        host,
    ];
    args.extend_from_slice(policies);
    super::pusher::run_once(&args, None)
        .await
        .assert_success()
        .stdout
}

/// `metric`'s samples in a text page, as their labels and value.
pub fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = labels
                .split("\",")
                .filter_map(|pair| {
                    let (name, value) = pair.split_once("=\"")?;
                    Some((name.to_owned(), value.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// (digest, policy) → (verified, reason) from the verification series.
pub fn verdicts(text: &str) -> BTreeMap<(String, String), (f64, Option<String>)> {
    let mut verdicts: BTreeMap<(String, String), (f64, Option<String>)> =
        samples(text, "container_image_signature_verified")
            .into_iter()
            .map(|(l, v)| ((l["digest"].clone(), l["policy"].clone()), (v, None)))
            .collect();
    for (labels, _) in samples(text, "container_image_signature_verify_failure") {
        let key = (labels["digest"].clone(), labels["policy"].clone());
        verdicts
            .get_mut(&key)
            .expect("a failure has a verified series")
            .1 = Some(labels["reason"].clone());
    }
    verdicts
}

/// A manifests file with one Pod per image; its path.
pub fn write_pods(dir: &Path, images: &[impl AsRef<str>]) -> String {
    let pods: Vec<String> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let image = image.as_ref();
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: ns}}\nspec: {{containers: [{{name: c, image: \"{image}\"}}]}}\n")
        })
        .collect();
    let path = dir.join("pods.yaml");
    std::fs::write(&path, pods.join("---\n")).expect("write the manifests");
    path.to_str().expect("a UTF-8 path").to_owned()
}

pub async fn get(registry: &Registry, path: &str) -> Vec<u8> {
    let response = registry
        .request(reqwest::Method::GET, path)
        .header("Accept", format!("{OCI_INDEX}, {OCI_MANIFEST}"))
        .send()
        .await
        .expect("GET from the registry");
    assert!(
        response.status().is_success(),
        "GET {path}: {}",
        response.status()
    );
    response.bytes().await.unwrap().to_vec()
}

pub fn tag_of(digest: &str) -> String {
    digest.replace(':', "-")
}

pub async fn image(registry: &Registry, repo: &str, tag: &str) -> (String, String) {
    let pushed = push_image(
        registry,
        repo,
        Some(tag),
        &ImageSpec::oci("linux", "amd64").layer(format!("{repo}:{tag}").into_bytes()),
    )
    .await;
    let pinned = format!("{}/{repo}@{}", registry.host(), pushed.digest);
    (pinned, pushed.digest)
}

pub fn digest_of(pinned: &str) -> String {
    pinned.rsplit_once('@').unwrap().1.to_owned()
}
