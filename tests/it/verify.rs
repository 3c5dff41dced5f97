//! Signature verification against real cosign as the oracle: images on
//! Debian's `docker-registry`, signed with the real `cosign` 3 in both
//! formats (Sigstore bundles through the referrers tag schema, legacy
//! `.sig` tags), and for every image and policy the pusher's
//! `container_image_signature_verified` equals whether
//! `cosign verify --key …` succeeds with a key of the policy.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::pusher::Pusher;
use support::signing::{
    cosign_verifies, digest_of, dry_run, generate_key, get, image, samples, sign, tag_of, verdicts,
    write_pods, OCI_INDEX, OCI_MANIFEST,
};
use support::Registry;

/// Rewrites the first layer of the manifest tagged `tag` with `change`
/// applied to its content, keeping the signature annotations: a tampered
/// signature. Returns the new manifest's digest and size.
async fn tamper_layer(
    registry: &Registry,
    repo: &str,
    manifest_ref: &str,
    tag: &str,
    change: impl Fn(Vec<u8>) -> Vec<u8>,
) -> (String, usize) {
    let mut manifest: Value = serde_json::from_slice(
        &get(registry, &format!("/v2/{repo}/manifests/{manifest_ref}")).await,
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let content = change(get(registry, &format!("/v2/{repo}/blobs/{layer}")).await);
    let pushed = registry.push_blob(repo, &content).await;
    manifest["layers"][0]["digest"] = pushed.digest.clone().into();
    manifest["layers"][0]["size"] = pushed.size.into();
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = registry.push_manifest(repo, tag, OCI_MANIFEST, &body).await;
    (digest, body.len())
}

struct Fixture {
    registry: Registry,
    dir: tempfile::TempDir,
    /// name → pinned reference.
    images: BTreeMap<&'static str, String>,
}

/// The cases: signed by the trusted key in either format, by another key,
/// unsigned, two signatures one trusted, a signature re-tagged onto
/// another image, tampered payloads in either format, and a rotated key.
async fn fixture() -> Fixture {
    let registry = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for prefix in ["ours", "other", "old"] {
        generate_key(d, prefix);
    }
    let mut images = BTreeMap::new();
    let (bundle, _) = image(&registry, "bundle", "1").await;
    sign(d, "ours.key", &bundle, false);
    let (legacy, legacy_digest) = image(&registry, "shared", "legacy").await;
    sign(d, "ours.key", &legacy, true);
    let (other, _) = image(&registry, "other", "1").await;
    sign(d, "other.key", &other, false);
    sign(d, "other.key", &other, true);
    let (unsigned, _) = image(&registry, "unsigned", "1").await;
    let (two, _) = image(&registry, "two", "1").await;
    // Both bundles: cosign 3 reads `.sig` tags only when an image has no
    // bundle, where the pusher checks every signature it finds.
    sign(d, "other.key", &two, false);
    sign(d, "ours.key", &two, false);
    // The legacy image's signature, copied onto another image's tag.
    let (retagged, retagged_digest) = image(&registry, "shared", "retagged").await;
    let sig = get(
        &registry,
        &format!("/v2/shared/manifests/{}.sig", tag_of(&legacy_digest)),
    )
    .await;
    registry
        .push_manifest(
            "shared",
            &format!("{}.sig", tag_of(&retagged_digest)),
            OCI_MANIFEST,
            &sig,
        )
        .await;
    // A legacy payload changed after signing (it still names its image).
    let (tampered, tampered_digest) = image(&registry, "tampered", "1").await;
    sign(d, "ours.key", &tampered, true);
    let sig_tag = format!("{}.sig", tag_of(&tampered_digest));
    tamper_layer(&registry, "tampered", &sig_tag, &sig_tag, |payload| {
        String::from_utf8(payload)
            .unwrap()
            .replace(
                "\"optional\":null",
                "\"optional\":{\"by\":\"someone else\"}",
            )
            .into_bytes()
    })
    .await;
    // A bundle whose statement changed after signing.
    let (tampered_bundle, tb_digest) = image(&registry, "tamperedb", "1").await;
    sign(d, "ours.key", &tampered_bundle, false);
    let schema_tag = tag_of(&tb_digest);
    let mut index: Value = serde_json::from_slice(
        &get(&registry, &format!("/v2/tamperedb/manifests/{schema_tag}")).await,
    )
    .unwrap();
    let entry = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let (new_manifest, size) = tamper_layer(&registry, "tamperedb", &entry, "changed", |bundle| {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut bundle: Value = serde_json::from_slice(&bundle).unwrap();
        let payload = engine
            .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let changed = String::from_utf8(payload).unwrap().replace(
            "\"predicate\":{}",
            "\"predicate\":{\"by\":\"someone else\"}",
        );
        bundle["dsseEnvelope"]["payload"] = engine.encode(changed).into();
        serde_json::to_vec(&bundle).unwrap()
    })
    .await;
    index["manifests"][0]["digest"] = new_manifest.into();
    index["manifests"][0]["size"] = size.into();
    registry
        .push_manifest(
            "tamperedb",
            &schema_tag,
            OCI_INDEX,
            &serde_json::to_vec(&index).unwrap(),
        )
        .await;
    let (rotated, _) = image(&registry, "rotated", "1").await;
    sign(d, "old.key", &rotated, false);
    for (name, pinned) in [
        ("bundle", bundle),
        ("legacy", legacy),
        ("other", other),
        ("unsigned", unsigned),
        ("two", two),
        ("retagged", retagged),
        ("tampered", tampered),
        ("tampered_bundle", tampered_bundle),
        ("rotated", rotated),
    ] {
        images.insert(name, pinned);
    }
    Fixture {
        registry,
        dir,
        images,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_agree_with_real_cosign_for_keys_in_both_formats() {
    let fixture = fixture().await;
    let d = fixture.dir.path();
    let host = fixture.registry.host();
    let images: Vec<String> = fixture.images.values().cloned().collect();
    let pods = write_pods(d, &images);
    let ours = d.join("ours.pub");
    let old = d.join("old.pub");
    let keys = [
        format!("ours={}", ours.display()),
        format!("rotated={}", old.display()),
        format!("rotated={}", ours.display()),
    ];
    let text = dry_run(
        &pods,
        &host,
        &[
            "--verify-key",
            &keys[0],
            "--verify-key",
            &keys[1],
            "--verify-key",
            &keys[2],
        ],
    )
    .await;
    let verdicts = verdicts(&text);
    let policies: [(&str, &[&str]); 2] = [
        ("ours", &["ours.pub"]),
        ("rotated", &["old.pub", "ours.pub"]),
    ];
    for (name, pinned) in &fixture.images {
        for (policy, policy_keys) in policies {
            let oracle = cosign_verifies(d, policy_keys, pinned);
            let (verified, reason) = verdicts
                .get(&(digest_of(pinned), policy.to_owned()))
                .unwrap_or_else(|| panic!("no verdict for {name} under {policy}:\n{text}"))
                .clone();
            assert_eq!(
                verified == 1.0,
                oracle,
                "{name} under {policy}: pusher says {verified} ({reason:?}), cosign says {oracle}"
            );
        }
    }
    let reason = |name: &str| {
        verdicts[&(digest_of(&fixture.images[name]), "ours".to_owned())]
            .1
            .clone()
    };
    let expected = [
        ("bundle", None),
        ("legacy", None),
        ("two", None),
        ("other", Some("wrong_key")),
        ("unsigned", Some("no_signature")),
        ("retagged", Some("digest_mismatch")),
        // A legacy signature names no key: a failed check is a wrong key.
        ("tampered", Some("wrong_key")),
        // A bundle names its key by hint: ours, and the check fails.
        ("tampered_bundle", Some("bad_signature")),
        ("rotated", Some("wrong_key")),
    ];
    for (name, want) in expected {
        assert_eq!(reason(name).as_deref(), want, "reason for {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_ticks_verify_nothing_again() {
    let registry = Registry::start().await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_key(d, "ours");
    let (signed, _) = image(&registry, "app", "1").await;
    sign(d, "ours.key", &signed, false);
    sign(d, "ours.key", &signed, true);
    let (unsigned, _) = image(&registry, "plain", "1").await;
    let pods = write_pods(d, &[signed, unsigned]);
    let key = format!("ours={}", d.join("ours.pub").display());
    let pusher = Pusher::on_manifests(&pods, "1s")
        .registry(&host)
        .args(&["--referrers-cache-duration", "1s", "--verify-key", &key])
        .start()
        .await;
    let computed = |text: &str| -> f64 {
        samples(text, "container_image_pusher_signature_verifications_total")
            .iter()
            .map(|(_, v)| v)
            .sum()
    };
    let snapshots = |n: usize| {
        let pusher = &pusher;
        async move {
            pusher
                .logs_when(Duration::from_secs(30), format!("{n} snapshots"), |logs| {
                    logs.matches("snapshot taken").count() >= n
                })
                .await;
        }
    };
    // Blob reads by the pusher: signature payloads and bundles (and image
    // configs, read once as well).
    let blob_reads = || {
        registry
            .logs()
            .lines()
            .filter(|l| l.contains("http.request.method=GET") && l.contains("/blobs/sha256:"))
            .filter(|l| l.contains("container-image-pusher"))
            .count()
    };
    // Verified after the first push, in the background.
    let verified = pusher
        .metrics_when(Duration::from_secs(30), "the signatures verified", |text| {
            computed(text) >= 2.0
        })
        .await;
    let cold = computed(&verified);
    // Two signature artifacts (the bundle and the `.sig` manifest) under one policy.
    assert_eq!(cold, 2.0, "{verified}");
    let taken = pusher.child.logs().matches("snapshot taken").count();
    let cold_reads = blob_reads();
    assert!(cold_reads >= 2, "the signatures' layers were read");
    // Several referrer-cache periods later the lists were read again, but
    // no verdict was computed and no signature fetched again.
    snapshots(taken + 4).await;
    assert_eq!(computed(&pusher.metrics().await), cold);
    assert_eq!(blob_reads(), cold_reads);
}

/// Pushes a `.sig` manifest for `digest` in `repo` with one layer of
/// `media_type` holding `content`, annotated with a signature.
async fn push_signature(
    registry: &Registry,
    repo: &str,
    digest: &str,
    media_type: &str,
    content: &[u8],
) {
    let config = registry.push_blob(repo, b"{}").await;
    let layer = registry.push_blob(repo, content).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.with_media_type("application/vnd.oci.image.config.v1+json").to_json(),
        "layers": [{
            "mediaType": media_type,
            "digest": layer.digest,
            "size": layer.size,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
        }],
        "annotations": {"dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1"},
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    registry
        .push_manifest(
            repo,
            &format!("{}.sig", tag_of(digest)),
            OCI_MANIFEST,
            &body,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_or_malformed_signatures_cost_only_their_digest() {
    let registry = Registry::start().await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_key(d, "ours");
    let (signed, _) = image(&registry, "signed", "1").await;
    sign(d, "ours.key", &signed, true);
    const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
    let (huge, huge_digest) = image(&registry, "huge", "1").await;
    // Larger than a payload may be: not even fetched.
    push_signature(
        &registry,
        "huge",
        &huge_digest,
        SIMPLE_SIGNING,
        &vec![b' '; 1 << 20],
    )
    .await;
    let (garbage, garbage_digest) = image(&registry, "garbage", "1").await;
    push_signature(
        &registry,
        "garbage",
        &garbage_digest,
        SIMPLE_SIGNING,
        b"\xff\x00 not json",
    )
    .await;
    let (bad_bundle, bad_bundle_digest) = image(&registry, "badbundle", "1").await;
    push_signature(
        &registry,
        "badbundle",
        &bad_bundle_digest,
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        br#"{"dsseEnvelope":{"payload":"!!","payloadType":"x"}}"#,
    )
    .await;
    let images = [
        signed.clone(),
        huge.clone(),
        garbage.clone(),
        bad_bundle.clone(),
    ];
    let pods = write_pods(d, &images);
    let key = format!("ours={}", d.join("ours.pub").display());
    let text = dry_run(&pods, &host, &["--verify-key", &key]).await;
    let verdicts = verdicts(&text);
    let verdict = |pinned: &str| verdicts[&(digest_of(pinned), "ours".to_owned())].clone();
    assert_eq!(verdict(&signed), (1.0, None));
    for pinned in [&huge, &garbage, &bad_bundle] {
        assert_eq!(
            verdict(pinned),
            (0.0, Some("malformed".to_owned())),
            "{pinned}"
        );
    }
    let big = support::sha256_digest(&vec![b' '; 1 << 20]);
    assert!(
        !registry.logs().contains(&format!("/v2/huge/blobs/{big}")),
        "an oversized payload is not fetched"
    );
}
