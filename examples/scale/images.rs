//! The generated images: which exist, how each is built, and the fixed
//! bytes that make two runs push the same registry content.

use serde_json::json;

use super::support::registry::{self, sha256_digest, Descriptor, Format, ImageSpec};

/// Bumped whenever the generated images change, so a registry directory
/// filled by an older harness is refilled instead of trusted.
pub(crate) const IMAGE_FORMAT_VERSION: u32 = 1;

/// Images every workload may share (sidecars, init containers, debuggers).
pub(crate) const POPULAR_IMAGES: usize = 8;

/// Fixed creation time of the generated objects and images, so two runs
/// generate the same bytes (2023-11-14T22:13:20Z).
pub(crate) const EPOCH_SECONDS: i64 = 1_700_000_000;

/// How a container spec refers to an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pin {
    Tag,
    Digest,
    TagAndDigest,
}

/// One generated image: a repository with one tag, single- or multi-arch,
/// OCI or Docker media types. Deterministic in its index.
#[derive(Debug, Clone)]
pub(crate) struct ImagePlan {
    pub(crate) repo: String,
    pub(crate) tag: String,
    /// What the tag points at (the index digest for a multi-arch image).
    pub(crate) digest: String,
    pub(crate) pin: Pin,
    pub(crate) multi_arch: bool,
    pub(crate) uploads: Vec<Upload>,
}

/// One registry write, in push order (children before what refers to them).
#[derive(Debug, Clone)]
pub(crate) enum Upload {
    Blob(Vec<u8>),
    Manifest {
        reference: String,
        media_type: &'static str,
        body: Vec<u8>,
    },
}

impl ImagePlan {
    pub(crate) fn new(i: usize) -> ImagePlan {
        let repo = format!("team-{:02}/svc-{i:05}", i % 50);
        let tag = format!("v1.{}.{}", i % 7, i % 3);
        let format = if i % 3 == 1 {
            Format::Docker
        } else {
            Format::Oci
        };
        let multi_arch = i % 5 == 0;
        let pin = match i % 8 {
            0 => Pin::Digest,
            4 => Pin::TagAndDigest,
            _ => Pin::Tag,
        };
        let mut uploads = Vec::new();
        let digest = if multi_arch {
            let mut entries = Vec::new();
            for arch in ["amd64", "arm64"] {
                let (manifest, size) = platform_image(i, format, arch, None, &mut uploads);
                entries.push(json!({
                    "mediaType": format.manifest_media_type(),
                    "digest": manifest,
                    "size": size,
                    "platform": { "architecture": arch, "os": "linux" },
                }));
                if format == Format::Oci && i % 10 == 0 {
                    let (attestation, size) = attestation(i, arch, &manifest, &mut uploads);
                    entries.push(json!({
                        "mediaType": registry::OCI_MANIFEST,
                        "digest": attestation,
                        "size": size,
                        "platform": { "architecture": "unknown", "os": "unknown" },
                        "annotations": {
                            "vnd.docker.reference.digest": manifest,
                            "vnd.docker.reference.type": "attestation-manifest",
                        },
                    }));
                }
            }
            let mut index = json!({
                "schemaVersion": 2,
                "mediaType": format.index_media_type(),
                "manifests": entries,
            });
            if format == Format::Oci {
                index["annotations"] = json!({
                    "org.opencontainers.image.created": created(i),
                });
            }
            let body = serde_json::to_vec_pretty(&index).expect("serialize an index");
            let digest = sha256_digest(&body);
            uploads.push(Upload::Manifest {
                reference: tag.clone(),
                media_type: format.index_media_type(),
                body,
            });
            digest
        } else {
            platform_image(i, format, "amd64", Some(&tag), &mut uploads).0
        };
        ImagePlan {
            repo,
            tag,
            digest,
            pin,
            multi_arch,
            uploads,
        }
    }

    /// The image as a container spec writes it.
    pub(crate) fn reference(&self, host: &str) -> String {
        match self.pin {
            Pin::Tag => format!("{host}/{}:{}", self.repo, self.tag),
            Pin::Digest => format!("{host}/{}@{}", self.repo, self.digest),
            Pin::TagAndDigest => format!("{host}/{}:{}@{}", self.repo, self.tag, self.digest),
        }
    }
}

pub(crate) fn created(i: usize) -> String {
    let at = k8s_openapi::jiff::Timestamp::from_second(EPOCH_SECONDS - (i as i64 % 5000) * 3600)
        .expect("a valid timestamp");
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Adds the config, the layer and the manifest of one platform image to
/// `uploads`; returns the manifest's digest and size. The manifest goes
/// under `tag`, or by digest only (an index entry).
pub(crate) fn platform_image(
    i: usize,
    format: Format,
    arch: &str,
    tag: Option<&str>,
    uploads: &mut Vec<Upload>,
) -> (String, u64) {
    let mut spec = ImageSpec::new(format, "linux", arch)
        .created(&created(i))
        .label(
            "org.opencontainers.image.source",
            &format!("https://github.com/example/svc-{i:05}"),
        )
        .label(
            "org.opencontainers.image.revision",
            &format!("{:040x}", i as u128 * 2_654_435_761),
        )
        .label(
            "org.opencontainers.image.version",
            &format!("1.{}.{}", i % 7, i % 3),
        )
        .layer(format!("scale layer {i} {arch}").into_bytes());
    if i % 3 == 0 {
        spec = spec.label("dev.chainguard.package.main", "static");
    }
    if format == Format::Oci {
        spec = spec.annotation(
            "org.opencontainers.image.base.name",
            "cgr.dev/chainguard/static:latest",
        );
    }
    let config = serde_json::to_vec(&spec.config()).expect("serialize an image config");
    let config_descriptor = descriptor(format.config_media_type(), &config);
    let layer = spec.layers[0].clone();
    let layer_descriptor = descriptor(format.layer_media_type(), &layer);
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest_media_type(),
        "config": config_descriptor.to_json(),
        "layers": [layer_descriptor.to_json()],
    });
    if format == Format::Oci {
        manifest["annotations"] = json!(spec.annotations);
    }
    push_image(
        config,
        layer,
        &manifest,
        tag,
        format.manifest_media_type(),
        uploads,
    )
}

/// A BuildKit-style provenance attestation for `subject`.
pub(crate) fn attestation(
    i: usize,
    arch: &str,
    subject: &str,
    uploads: &mut Vec<Upload>,
) -> (String, u64) {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{ "name": format!("svc-{i:05}-{arch}"), "digest": { "sha256": subject.trim_start_matches("sha256:") } }],
        "predicate": {},
    });
    let layer = serde_json::to_vec(&statement).expect("serialize a statement");
    let layer_descriptor = descriptor(registry::IN_TOTO_LAYER, &layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer_descriptor.digest] },
    }))
    .expect("serialize an attestation config");
    let config_descriptor = descriptor(registry::OCI_CONFIG, &config);
    let mut layer_json = layer_descriptor.to_json();
    layer_json["annotations"] =
        json!({ "in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2" });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": registry::OCI_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [layer_json],
    });
    push_image(
        config,
        layer,
        &manifest,
        None,
        registry::OCI_MANIFEST,
        uploads,
    )
}

/// Queues an image's config and layer blobs, then its manifest under `tag`
/// (by its digest without one); its digest and size.
fn push_image(
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: &serde_json::Value,
    tag: Option<&str>,
    media_type: &'static str,
    uploads: &mut Vec<Upload>,
) -> (String, u64) {
    let body = serde_json::to_vec_pretty(manifest).expect("serialize a manifest");
    let digest = sha256_digest(&body);
    let size = body.len() as u64;
    uploads.push(Upload::Blob(config));
    uploads.push(Upload::Blob(layer));
    uploads.push(Upload::Manifest {
        reference: tag.map_or_else(|| digest.clone(), str::to_owned),
        media_type,
        body,
    });
    (digest, size)
}

pub(crate) fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: sha256_digest(data),
        size: data.len() as u64,
    }
}

/// Identifies the first `n` images' content.
pub(crate) fn fingerprint(plans: &[ImagePlan]) -> String {
    let digests: Vec<&str> = plans.iter().map(|p| p.digest.as_str()).collect();
    sha256_digest(digests.join("\n").as_bytes())
}
