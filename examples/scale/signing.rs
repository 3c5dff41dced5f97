//! `--verify`: one cosign signature for every image, and the key the
//! pusher verifies them with (`--verify-key scale=PATH`).
//!
//! The signatures are cosign's legacy form, the one the pusher reads most
//! cheaply: a `sha256-<hex>.sig` tag in the image's repository (found in
//! the tag listing the pusher makes anyway) whose manifest has one
//! simple-signing layer, the payload, with the ECDSA P-256 signature of it
//! in the layer's `dev.cosignproject.cosign/signature` annotation, as
//! `cosign sign --key` writes them. The key is generated from a fixed seed
//! and ECDSA signing is deterministic (RFC 6979), so a registry directory
//! filled once stays valid for later runs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use futures::StreamExt as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::images::{descriptor, ImagePlan, Upload};
use super::options::Options;
use super::registry::{Marker, ScaleRegistry};
use super::support::registry;

/// The marker file in `--registry-dir` saying which signatures are stored.
const MARKER_FILE: &str = "scale-signatures.json";
/// The policy name the pusher is given (`--verify-key scale=PATH`).
pub(crate) const POLICY: &str = "scale";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The harness's signing key, the same in every run.
pub(crate) fn signing_key() -> SigningKey {
    let seed = Sha256::digest(b"container-image-pusher scale harness signing key");
    SigningKey::from_slice(&seed).expect("a SHA-256 digest is a valid P-256 scalar")
}

/// Writes the public key as PKIX PEM (what `cosign generate-key-pair`
/// writes to `cosign.pub`) into `dir`; returns its path.
pub(crate) fn write_public_key(dir: &Path) -> anyhow::Result<PathBuf> {
    let der = signing_key()
        .verifying_key()
        .to_public_key_der()
        .context("encode the public key")?;
    let pem = pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, der.as_bytes())
        .context("encode the public key as PEM")?;
    let path = dir.join("scale-verify.pub");
    std::fs::write(&path, pem).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// The uploads of the signature of `plan`'s image (its tag's digest, the
/// index's for a multi-arch image, as `cosign sign` signs it).
pub(crate) fn signature_plan(plan: &ImagePlan, key: &SigningKey) -> ImagePlan {
    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": { "docker-reference": plan.repo },
            "image": { "docker-manifest-digest": plan.digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .expect("serialize a payload");
    let signature: Signature = key.sign(&payload);
    let signature = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    let layer = descriptor(SIMPLE_SIGNING, &payload);
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    }))
    .expect("serialize a config");
    let mut layer_json = layer.to_json();
    layer_json["annotations"] = json!({ SIGNATURE_ANNOTATION: signature });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_MANIFEST,
        "config": descriptor(registry::OCI_CONFIG, &config).to_json(),
        "layers": [layer_json],
    });
    let body = serde_json::to_vec_pretty(&manifest).expect("serialize a manifest");
    ImagePlan {
        uploads: vec![
            Upload::Blob(config),
            Upload::Blob(payload),
            Upload::Manifest {
                reference: format!("{}.sig", plan.digest.replace(':', "-")),
                media_type: registry::OCI_MANIFEST,
                body,
            },
        ],
        ..plan.clone()
    }
}

/// Pushes the signatures the marker does not vouch for; returns how many
/// were pushed.
pub(crate) async fn fill(
    registry: &ScaleRegistry,
    plans: &[ImagePlan],
    options: &Options,
) -> anyhow::Result<usize> {
    let marker_path = registry.dir.join(MARKER_FILE);
    let fingerprint = super::images::fingerprint(plans);
    let stored = std::fs::read(&marker_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Marker>(&bytes).ok())
        .is_some_and(|m| m.images == plans.len() && m.fingerprint == fingerprint);
    if stored {
        progress!(
            options,
            "registry: the {} signatures are already stored",
            plans.len()
        );
        return Ok(0);
    }
    progress!(
        options,
        "registry: signing and pushing {} images' signatures",
        plans.len()
    );
    let key = signing_key();
    let mut pushes = futures::stream::iter(plans.iter().map(|plan| {
        let signed = signature_plan(plan, &key);
        async move { registry.push(&signed).await }
    }))
    .buffer_unordered(options.push_concurrency.max(1));
    while let Some(result) = pushes.next().await {
        result?;
    }
    let marker = Marker {
        format: super::images::IMAGE_FORMAT_VERSION,
        images: plans.len(),
        fingerprint,
    };
    std::fs::write(&marker_path, serde_json::to_vec_pretty(&marker)?)
        .context("write the signature marker")?;
    Ok(plans.len())
}

/// `container_image_pusher_signature_verifications_total` on a `/metrics`
/// page, of every policy and of the results `matchers` select.
pub(crate) fn verifications(metrics: &str, matchers: &[&str]) -> f64 {
    super::phase::metric_sum(
        metrics,
        "container_image_pusher_signature_verifications_total",
        matchers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pusher's own verification accepts the harness's signatures, of
    /// the digest signed and of no other.
    #[test]
    fn the_pusher_verifies_the_signatures() {
        use container_image_pusher::verify::artifact::{check, signature_layers};
        use container_image_pusher::verify::policy::policies;
        let dir = tempfile::tempdir().unwrap();
        let key = write_public_key(dir.path()).unwrap();
        let policy = policies(&[format!("{POLICY}={}", key.display())], &[], None)
            .expect("the key is read")
            .remove(0);
        let plan = signature_plan(&ImagePlan::new(5), &signing_key());
        let [Upload::Blob(_), Upload::Blob(payload), Upload::Manifest { body, .. }] =
            &plan.uploads[..]
        else {
            panic!("config, payload, manifest");
        };
        let layers = signature_layers(body).unwrap();
        assert!(check(&layers[0], payload, &[&plan.digest], &policy).is_ok());
        assert!(check(&layers[0], payload, &["sha256:00"], &policy).is_err());
    }
}
