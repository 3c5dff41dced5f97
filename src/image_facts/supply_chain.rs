//! The supply-chain facts of an image: what is attached to it (counted by
//! kind and type), the base it declares, and each verification policy's
//! verdict on its signatures.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::verify::verdict::Outcome;

/// The supply-chain part of an image's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupplyChain {
    /// The chosen platform's manifest, for a multi-arch image: what is
    /// attached to it counts for the image too.
    pub platform_digest: Option<String>,
    /// BuildKit attestation manifests in the image's index for that platform.
    pub index_attestations: Vec<String>,
    /// What is attached, by kind and type; `None` when not looked up
    /// (`--referrers=false`) or when the lookup failed.
    pub referrers: Option<Arc<Referrers>>,
    /// The base the image declares, and whether it moved.
    pub base: Option<BaseImage>,
    /// Each verification policy's verdict on the image's signatures; `None`
    /// without policies, or when they could not be looked up.
    pub verification: Option<Arc<Verdicts>>,
}

/// What an artifact is, as `container_image_referrer{kind}` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferrerKind {
    Signature,
    Sbom,
    Attestation,
    Other,
}

impl ReferrerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferrerKind::Signature => "signature",
            ReferrerKind::Sbom => "sbom",
            ReferrerKind::Attestation => "attestation",
            ReferrerKind::Other => "other",
        }
    }
}

/// One classified artifact: its type, and every kind it holds (a BuildKit
/// attestation manifest carries an SBOM and a provenance statement at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub artifact_type: String,
    pub kinds: Vec<ReferrerKind>,
}

/// The artifacts attached to one image, counted by kind and type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referrers {
    pub counts: BTreeMap<(ReferrerKind, String), u64>,
}

impl Referrers {
    pub(crate) fn add(&mut self, artifact: &Artifact) {
        for kind in &artifact.kinds {
            let count = self
                .counts
                .entry((*kind, artifact.artifact_type.clone()))
                .or_default();
            *count = count.saturating_add(1);
        }
    }
}

/// The base an image declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// As the annotation writes it, e.g. `docker.io/library/alpine:3.20`.
    pub name: String,
    /// The base's digest when the image was built; `None` when not declared
    /// or not a digest.
    pub digest: Option<String>,
    /// Whether the base's tag now points elsewhere than `digest`; `None`
    /// when that cannot be told (no digest, a name without a tag, or the
    /// base cannot be resolved).
    pub outdated: Option<bool>,
    /// When outdated: the `created` time (Unix seconds) of the image the
    /// base tag points at now, i.e. about when the base moved.
    pub current_created: Option<i64>,
}

/// Each policy's verdict for one image, in the policies' order.
pub type Verdicts = Vec<(String, Outcome)>;

#[cfg(test)]
impl SupplyChain {
    /// Facts of every kind, for tests of the series built from them.
    pub(crate) fn example() -> Self {
        let counts = [
            (
                (
                    ReferrerKind::Signature,
                    "application/vnd.cncf.notary.signature".to_owned(),
                ),
                1,
            ),
            ((ReferrerKind::Sbom, "application/spdx+json".to_owned()), 2),
        ];
        SupplyChain {
            platform_digest: None,
            index_attestations: Vec::new(),
            referrers: Some(Arc::new(Referrers {
                counts: counts.into_iter().collect(),
            })),
            verification: Some(Arc::new(vec![
                ("ours".to_owned(), Ok(())),
                (
                    "vendor".to_owned(),
                    Err(crate::verify::verdict::Reason::WrongKey),
                ),
            ])),
            base: Some(BaseImage {
                name: "cgr.dev/chainguard/static:latest".into(),
                digest: Some(format!("sha256:{}", "ab".repeat(32))),
                outdated: Some(true),
                current_created: Some(1_700_000_000),
            }),
        }
    }
}
