//! Attestation policies against real cosign as the oracle: images on
//! Debian's `docker-registry`, signed and attested with the real `cosign` 3
//! in both formats (Sigstore bundles through the referrers tag schema,
//! legacy `.sig` and `.att` tags), and for every image and policy the
//! pusher's `container_image_signature_verified` equals whether
//! `cosign verify-attestation --key … --type …` succeeds (every image is
//! also signed by the policy's key, which the policy requires as well).

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use support::signing::{
    cosign, cosign_offline, digest_of, dry_run, generate_key, get, image, sign, tag_of, verdicts,
    write_pods, OCI_INDEX, OCI_MANIFEST,
};
use support::Registry;

const SLSA: &str = "https://slsa.dev/provenance/v1";
/// What cosign's `--type custom` stands for.
const CUSTOM: &str = "https://cosign.sigstore.dev/attestation/v1";

fn attest(dir: &Path, key: &str, predicate_type: &str, image: &str, legacy: bool) {
    let predicate = dir.join("predicate.json");
    std::fs::write(&predicate, r#"{"buildType":"https://example.com/build"}"#).unwrap();
    let predicate = predicate.to_str().unwrap();
    let attest = ["attest", "--key", key, "--type", predicate_type];
    let command = [attest.as_slice(), &["--predicate", predicate]].concat();
    cosign_offline(dir, &command, image, legacy);
}

/// The oracle: whether `cosign verify-attestation` accepts `image`.
fn cosign_attested(dir: &Path, key: &str, predicate_type: &str, image: &str) -> bool {
    cosign(
        dir,
        &[
            "verify-attestation",
            "--key",
            key,
            "--type",
            predicate_type,
            "--insecure-ignore-tlog=true",
            "--allow-insecure-registry",
            image,
        ],
    )
}

fn engine() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Changes the statement of a DSSE envelope (bare, or in a bundle) after
/// signing.
fn tamper_statement(envelope: &mut Value) {
    let statement = engine()
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let changed = String::from_utf8(statement)
        .unwrap()
        .replace("example.com/build", "example.com/other");
    envelope["payload"] = engine().encode(changed).into();
}

/// Rewrites the first layer of the manifest `manifest_ref` with `change`
/// and pushes it under `tag`; the new manifest's digest and size.
async fn tamper_layer(
    registry: &Registry,
    repo: &str,
    manifest_ref: &str,
    tag: &str,
    change: impl Fn(&mut Value),
) -> (String, usize) {
    let path = format!("/v2/{repo}/manifests/{manifest_ref}");
    let mut manifest: Value = serde_json::from_slice(&get(registry, &path).await).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = get(registry, &format!("/v2/{repo}/blobs/{layer}")).await;
    let mut content: Value = serde_json::from_slice(&blob).unwrap();
    change(&mut content);
    let pushed = registry
        .push_blob(repo, &serde_json::to_vec(&content).unwrap())
        .await;
    manifest["layers"][0]["digest"] = pushed.digest.clone().into();
    manifest["layers"][0]["size"] = pushed.size.into();
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = registry.push_manifest(repo, tag, OCI_MANIFEST, &body).await;
    (digest, body.len())
}

async fn index(registry: &Registry, repo: &str, digest: &str) -> Value {
    let path = format!("/v2/{repo}/manifests/{}", tag_of(digest));
    serde_json::from_slice(&get(registry, &path).await).unwrap()
}

async fn put_index(registry: &Registry, repo: &str, digest: &str, index: &Value) {
    let body = serde_json::to_vec(index).unwrap();
    registry
        .push_manifest(repo, &tag_of(digest), OCI_INDEX, &body)
        .await;
}

/// The entry of a referrers index whose manifest is the attestation (its
/// predicate type annotation is not cosign's signature).
async fn attestation_entry(registry: &Registry, repo: &str, index: &Value) -> usize {
    for (i, entry) in index["manifests"].as_array().unwrap().iter().enumerate() {
        let digest = entry["digest"].as_str().unwrap();
        let path = format!("/v2/{repo}/manifests/{digest}");
        let manifest: Value = serde_json::from_slice(&get(registry, &path).await).unwrap();
        let predicate = &manifest["annotations"]["dev.sigstore.bundle.predicateType"];
        if predicate.as_str() != Some("https://sigstore.dev/cosign/sign/v1") {
            return i;
        }
    }
    panic!("no attestation in {index}");
}

/// One format's five cases, in the repository `repo`: attested by our key
/// with the SLSA type, with cosign's custom type, by another key, tampered
/// after attesting, and the first's attestation copied onto another image.
async fn cases(registry: &Registry, d: &Path, repo: &str, legacy: bool) -> Vec<(String, String)> {
    let mut images = Vec::new();
    for (case, key, predicate_type) in [
        ("right", "ours.key", SLSA),
        ("custom", "ours.key", "custom"),
        ("other_key", "other.key", SLSA),
        ("tampered", "ours.key", SLSA),
        ("copied", "", ""),
    ] {
        let (pinned, _) = image(registry, repo, case).await;
        sign(d, "ours.key", &pinned, legacy);
        if !key.is_empty() {
            attest(d, key, predicate_type, &pinned, legacy);
        }
        images.push((format!("{repo}/{case}"), pinned));
    }
    let right = digest_of(&images[0].1);
    let tampered = digest_of(&images[3].1);
    let copied = digest_of(&images[4].1);
    if legacy {
        let att = format!("{}.att", tag_of(&tampered));
        tamper_layer(registry, repo, &att, &att, tamper_statement).await;
        let path = format!("/v2/{repo}/manifests/{}.att", tag_of(&right));
        let att = get(registry, &path).await;
        let tag = format!("{}.att", tag_of(&copied));
        registry.push_manifest(repo, &tag, OCI_MANIFEST, &att).await;
    } else {
        let mut tampered_index = index(registry, repo, &tampered).await;
        let entry = attestation_entry(registry, repo, &tampered_index).await;
        let old = tampered_index["manifests"][entry]["digest"]
            .as_str()
            .unwrap()
            .to_owned();
        let (new, size) = tamper_layer(registry, repo, &old, "changed", |bundle| {
            tamper_statement(&mut bundle["dsseEnvelope"])
        })
        .await;
        tampered_index["manifests"][entry]["digest"] = new.into();
        tampered_index["manifests"][entry]["size"] = size.into();
        put_index(registry, repo, &tampered, &tampered_index).await;
        let right_index = index(registry, repo, &right).await;
        let entry = attestation_entry(registry, repo, &right_index).await;
        let mut copied_index = index(registry, repo, &copied).await;
        let foreign = right_index["manifests"][entry].clone();
        copied_index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(foreign);
        put_index(registry, repo, &copied, &copied_index).await;
    }
    images
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_verdicts_agree_with_real_cosign_in_both_formats() {
    let registry = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for prefix in ["ours", "other"] {
        generate_key(d, prefix);
    }
    let mut images = cases(&registry, d, "bundle", false).await;
    images.extend(cases(&registry, d, "legacy", true).await);
    let ours = d.join("ours.pub");
    let config = d.join("verify.yaml");
    let yaml = format!(
        "policies:\n  - name: slsa\n    keys: [{0}]\n    attestations: [\"{SLSA}\"]\n  - name: custom\n    keys: [{0}]\n    attestations: [\"{CUSTOM}\"]\n",
        ours.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let pinned: Vec<String> = images.iter().map(|(_, p)| p.clone()).collect();
    let pods = write_pods(d, &pinned);
    let host = registry.host();
    let text = dry_run(&pods, &host, &["--verify-config", config.to_str().unwrap()]).await;
    let verdicts = verdicts(&text);
    let mut reasons = BTreeMap::new();
    for (name, pinned) in &images {
        for (policy, predicate_type) in [("slsa", SLSA), ("custom", CUSTOM)] {
            let oracle = cosign_attested(d, "ours.pub", predicate_type, pinned);
            let (verified, reason) = verdicts
                .get(&(digest_of(pinned), policy.to_owned()))
                .unwrap_or_else(|| panic!("no verdict for {name} under {policy}:\n{text}"))
                .clone();
            assert_eq!(
                verified == 1.0,
                oracle,
                "{name} under {policy}: pusher says {verified} ({reason:?}), cosign says {oracle}"
            );
            reasons.insert((name.as_str(), policy), reason);
        }
    }
    let expected = [
        ("bundle/right", "slsa", None),
        ("legacy/right", "slsa", None),
        ("bundle/custom", "custom", None),
        ("legacy/custom", "custom", None),
        // No attestation of the type asked for.
        ("bundle/custom", "slsa", Some("no_signature")),
        ("legacy/right", "custom", Some("no_signature")),
        // A bundle names its key by hint; a legacy envelope names none.
        ("bundle/other_key", "slsa", Some("wrong_key")),
        ("legacy/other_key", "slsa", Some("wrong_key")),
        ("bundle/tampered", "slsa", Some("bad_signature")),
        ("legacy/tampered", "slsa", Some("wrong_key")),
        ("bundle/copied", "slsa", Some("digest_mismatch")),
        ("legacy/copied", "slsa", Some("digest_mismatch")),
    ];
    for (name, policy, want) in expected {
        assert_eq!(
            reasons[&(name, policy)].as_deref(),
            want,
            "reason for {name} under {policy}"
        );
    }
}
