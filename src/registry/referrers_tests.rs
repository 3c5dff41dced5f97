//! Unit tests of [`super`]: classifying artifacts, attachment tags and
//! bounded listings.

use super::*;
use serde_json::json;

fn kinds(manifest: serde_json::Value) -> (String, Vec<&'static str>) {
    let artifact = classify(manifest.to_string().as_bytes()).unwrap();
    (
        artifact.artifact_type,
        artifact.kinds.iter().map(|k| k.as_str()).collect(),
    )
}

const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

#[test]
fn cosign_bundles_are_signatures_or_what_their_predicate_is() {
    let bundle = |predicate: &str| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": BUNDLE,
            "config": {"mediaType": EMPTY, "digest": "sha256:44", "size": 2},
            "layers": [{"mediaType": BUNDLE, "digest": "sha256:cb", "size": 659}],
            "annotations": {"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate}})
    };
    assert_eq!(
        kinds(bundle(COSIGN_SIGN_PREDICATE)),
        (BUNDLE.into(), vec!["signature"])
    );
    assert_eq!(
        kinds(bundle("https://spdx.dev/Document")),
        (BUNDLE.into(), vec!["sbom"])
    );
    assert_eq!(
        kinds(bundle("https://slsa.dev/provenance/v1")),
        (BUNDLE.into(), vec!["attestation"])
    );
}

#[test]
fn legacy_cosign_tags_notation_oras_and_buildkit() {
    let sig = json!({"config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "annotations": {"dev.cosignproject.cosign/signature": "MEY"}}]});
    assert_eq!(
        kinds(sig),
        (
            "application/vnd.dev.cosign.simplesigning.v1+json".into(),
            vec!["signature"]
        )
    );
    let att = json!({"config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json",
            "annotations": {"predicateType": "https://cyclonedx.org/bom"}}]});
    assert_eq!(
        kinds(att),
        ("application/vnd.dsse.envelope.v1+json".into(), vec!["sbom"])
    );
    let sbom = json!({"config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [{"mediaType": "text/spdx+json"}]});
    assert_eq!(kinds(sbom), ("text/spdx+json".into(), vec!["sbom"]));
    let notation = json!({"artifactType": "application/vnd.cncf.notary.signature",
        "config": {"mediaType": EMPTY}, "layers": [{"mediaType": "application/jose+json"}]});
    assert_eq!(
        kinds(notation),
        (
            "application/vnd.cncf.notary.signature".into(),
            vec!["signature"]
        )
    );
    let oras = json!({"artifactType": "application/vnd.cyclonedx+json",
        "config": {"mediaType": EMPTY}, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar"}]});
    assert_eq!(
        kinds(oras),
        ("application/vnd.cyclonedx+json".into(), vec!["sbom"])
    );
    let buildkit = json!({"config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": [
            {"mediaType": "application/vnd.in-toto+json", "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"}},
            {"mediaType": "application/vnd.in-toto+json", "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}]});
    assert_eq!(
        kinds(buildkit),
        (
            "application/vnd.in-toto+json".into(),
            vec!["sbom", "attestation"]
        )
    );
    let helm =
        json!({"config": {"mediaType": "application/vnd.cncf.helm.config.v1+json"}, "layers": []});
    assert_eq!(
        kinds(helm),
        (
            "application/vnd.cncf.helm.config.v1+json".into(),
            vec!["other"]
        )
    );
}

#[test]
fn hostile_artifact_types_do_not_become_labels() {
    assert_eq!(
        artifact_type_label("application/vnd.x+json; charset=utf-8"),
        "application/vnd.x+json"
    );
    assert_eq!(artifact_type_label("Application/X"), "application/x");
    for bad in [
        "",
        "text",
        "a/b c",
        "a/b\"}",
        "/x",
        "x/",
        &format!("a/{}", "b".repeat(300)),
    ] {
        assert_eq!(artifact_type_label(bad), INVALID_ARTIFACT_TYPE, "{bad:?}");
    }
    assert!(classify(b"<html>").is_err());
    assert_eq!(
        kinds(json!({"artifactType": "x y", "layers": []})),
        (INVALID_ARTIFACT_TYPE.into(), vec!["other"])
    );
}

#[test]
fn tags_of_the_schema_and_of_cosign() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let hex = "ab".repeat(32);
    assert_eq!(schema_tag(&digest), Some(format!("sha256-{hex}")));
    let long = format!("sha512:{}", "cd".repeat(64));
    assert_eq!(
        schema_tag(&long),
        Some(format!("sha512-{}", "cd".repeat(32)))
    );
    assert_eq!(
        cosign_tags(&digest),
        [".sig", ".att", ".sbom"].map(|s| format!("sha256-{hex}{s}"))
    );
    assert!(cosign_tags(&long).is_empty());
    for tag in cosign_tags(&digest)
        .iter()
        .chain(schema_tag(&digest).iter())
    {
        assert!(is_attachment_tag(tag), "{tag}");
    }
    for other in [
        "latest",
        "v1.2",
        "sha256-abc.sig",
        &format!("sha256-{hex}.txt"),
    ] {
        assert!(!is_attachment_tag(other), "{other}");
    }
}

#[test]
fn buildkit_attestations_of_the_chosen_platform_only() {
    let amd = format!("sha256:{}", "aa".repeat(32));
    let att = |subject: &str, digest: &str| -> super::super::manifest::Descriptor {
        serde_json::from_value(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": 1, "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": subject}}))
        .unwrap()
    };
    let ours = format!("sha256:{}", "01".repeat(32));
    let entries = [
        att(&amd, &ours),
        att("sha256:other", &format!("sha256:{}", "02".repeat(32))),
        att(&amd, "sha256:../../blobs"),
    ];
    assert_eq!(index_attestations(&entries, &amd), vec![ours]);
}

#[test]
fn listings_are_bounded() {
    let entry = |i: usize| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{i:064x}"), "size": 1})
    };
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": (0..1000).map(entry).chain([json!({"digest": "evil", "size": 1})]).collect::<Vec<_>>()});
    let digests = index_entries(index.to_string().as_bytes()).unwrap();
    assert_eq!(digests.len(), MAX_ARTIFACTS);
    let mut referrers = Referrers::default();
    let artifact = Artifact {
        artifact_type: "a/b".into(),
        kinds: vec![ReferrerKind::Sbom],
    };
    referrers
        .counts
        .insert((ReferrerKind::Sbom, "a/b".into()), u64::MAX);
    referrers.add(&artifact);
    assert_eq!(
        referrers.counts[&(ReferrerKind::Sbom, "a/b".into())],
        u64::MAX
    );
}
