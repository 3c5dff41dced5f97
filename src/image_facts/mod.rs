//! What is known about the images of one snapshot, as plain data: the
//! [`ImageMetadata`] of each image (with its [`supply_chain`] facts, bounded
//! by its [`limits`]), why an image could not be resolved, its version
//! freshness, and the per-snapshot join table [`Resolutions`].
//!
//! `registry` fills it in; the series builders (`inventory`,
//! `version_series`) read it without knowing the registry client. It imports no stage that
//! reads it: only the credential [`Scope`] it keys by, the freshness of
//! [`versions`](crate::versions), the verdicts of [`verify`](crate::verify)
//! and the [`interner`](crate::interner) its [`pairs`] share strings through.

pub mod limits;
pub mod pairs;
pub mod supply_chain;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::credentials::Scope;
use crate::versions::Freshness;
use limits::{DropReason, Dropped, ImageLimits};
pub use pairs::Pairs;
use supply_chain::SupplyChain;

/// What the series say about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMetadata {
    /// The digest the reference points at: the index digest for a multi-arch tag.
    pub digest: String,
    /// Config plus layers of the chosen platform's manifest, in bytes.
    pub size: u64,
    /// Unix seconds; `None` when the config has no usable `created`.
    pub created: Option<i64>,
    /// The config's labels, within [`ImageLimits`]. Shared: the metadata
    /// is copied with fresh supply-chain facts once per period.
    pub labels: Pairs,
    /// Index, then index entry, then manifest annotations (later wins),
    /// within [`ImageLimits`].
    pub annotations: Pairs,
    /// What the limits left out or cut of the image's labels and annotations.
    pub dropped: Dropped,
    /// What is attached to the image and the base it was built on.
    pub supply_chain: SupplyChain,
    /// For a multi-arch tag, the digests of the index's manifests (at most
    /// [`MAX_PLATFORM_DIGESTS`]): a runtime reports the index digest or the
    /// one of the platform it pulled, and both run what the tag names.
    pub platform_digests: Vec<String>,
    /// Only the digest is known: the manifest and config are still to be
    /// looked up (the first push of a cold start). The size, creation time,
    /// labels and annotations are not known, so the image has no series of
    /// its own yet (absent, never a size of 0); its containers have their
    /// info series with the digest.
    pub pending: bool,
}

/// Most manifests of one index remembered in [`ImageMetadata::platform_digests`]:
/// real indexes hold a few platforms and their attestations; a hostile one
/// must not grow the metadata cache.
pub const MAX_PLATFORM_DIGESTS: usize = 64;

impl ImageMetadata {
    /// The metadata of one image, its labels and annotations bounded by
    /// `limits`: the full maps are consumed here and never cached.
    pub fn bounded(
        digest: String,
        size: u64,
        created: Option<i64>,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        limits: &ImageLimits,
    ) -> Self {
        let mut dropped = Dropped::default();
        let annotations = limits::bound(
            annotations,
            limits.max_annotations,
            DropReason::TooManyAnnotations,
            limits.max_value_length,
            &mut dropped,
        );
        let labels = limits::bound(
            labels,
            limits.max_labels,
            DropReason::TooManyLabels,
            limits.max_value_length,
            &mut dropped,
        );
        ImageMetadata {
            digest,
            size,
            created,
            labels: labels.into(),
            annotations: annotations.into(),
            dropped,
            supply_chain: SupplyChain::default(),
            platform_digests: Vec::new(),
            pending: false,
        }
    }

    /// An image of which only the digest is known yet ([`ImageMetadata::pending`]).
    pub fn digest_only(digest: String) -> Self {
        ImageMetadata {
            pending: true,
            ..ImageMetadata::bounded(
                digest,
                0,
                None,
                BTreeMap::new(),
                BTreeMap::new(),
                &ImageLimits::default(),
            )
        }
    }

    /// Whether a runtime that reports `digest` runs what this image's
    /// reference names now: its digest, or one of its index's manifests.
    pub fn runs(&self, digest: &str) -> bool {
        self.digest == digest || self.platform_digests.iter().any(|d| d == digest)
    }
}

/// Why an image could not be resolved. The class is a metric label, so the
/// set is small and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    NotFound,
    Unauthorized,
    Forbidden,
    RateLimited,
    Unavailable,
    BadFormat,
    InvalidReference,
    Timeout,
    Other,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::NotFound => "not_found",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::BadFormat => "bad_format",
            ErrorClass::InvalidReference => "invalid_reference",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Other => "other",
        }
    }
}

/// A failed resolution; cloneable so that it can be cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}", class = .class.as_str())]
pub struct ResolveError {
    pub class: ErrorClass,
    pub message: String,
}

impl ResolveError {
    pub(crate) fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ResolveError {
            class,
            message: message.into(),
        }
    }
}

pub type Resolution = Result<Arc<ImageMetadata>, ResolveError>;

/// The resolutions of a snapshot's images. An image resolves per
/// credential [`Scope`]: the same image may be readable with one workload's
/// pull secrets and not with another's.
#[derive(Debug, Default)]
pub struct Resolutions {
    by_scope: HashMap<Scope, HashMap<String, Resolution>>,
    /// The scope of each workload of the snapshot, in the order the
    /// series are built from them; empty when every workload is in
    /// [`Scope::NONE`].
    workload_scopes: Vec<Scope>,
    /// Version freshness of each (scope, image) that has an answer.
    versions: HashMap<(Scope, String), Arc<VersionInfo>>,
    /// Version freshness of containers with version-checker overrides:
    /// (namespace, workload, container), image, answer.
    container_versions: Vec<(Owner, String, Arc<VersionInfo>)>,
}

/// The namespace, workload name and container name of a container.
pub type Owner = (Arc<str>, Arc<str>, Arc<str>);

impl Resolutions {
    pub fn new() -> Self {
        Resolutions::default()
    }

    /// The scope of each workload, in the order the series builder is given
    /// the workloads.
    pub fn set_workload_scopes(&mut self, scopes: Vec<Scope>) {
        self.workload_scopes = scopes;
    }

    /// The scope of each workload, in order.
    pub fn workload_scopes(&self) -> &[Scope] {
        &self.workload_scopes
    }

    /// The scope of the snapshot's `index`th workload.
    pub fn workload_scope(&self, index: usize) -> Scope {
        self.workload_scopes
            .get(index)
            .copied()
            .unwrap_or(Scope::NONE)
    }

    pub fn insert(&mut self, scope: Scope, image: String, resolution: Resolution) {
        self.by_scope
            .entry(scope)
            .or_default()
            .insert(image, resolution);
    }

    pub fn get(&self, scope: Scope, image: &str) -> Option<&Resolution> {
        self.by_scope.get(&scope)?.get(image)
    }

    pub fn insert_versions(&mut self, scope: Scope, image: String, versions: Arc<VersionInfo>) {
        self.versions.insert((scope, image), versions);
    }

    /// Every image's version freshness, once per image (the first scope's
    /// answer when scopes differ), sorted by image.
    pub fn versions(&self) -> Vec<(&str, &Arc<VersionInfo>)> {
        let mut all: Vec<_> = self
            .versions
            .iter()
            .map(|((scope, image), v)| (image.as_str(), *scope, v))
            .collect();
        all.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        all.dedup_by(|a, b| a.0 == b.0);
        all.into_iter().map(|(image, _, v)| (image, v)).collect()
    }

    /// The answers of containers with overrides.
    pub fn set_container_versions(&mut self, mut answers: Vec<(Owner, String, Arc<VersionInfo>)>) {
        answers.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        self.container_versions = answers;
    }

    /// The answers of containers with overrides, sorted by container.
    pub fn container_versions(&self) -> &[(Owner, String, Arc<VersionInfo>)] {
        &self.container_versions
    }

    /// Every (image, resolution) pair, images repeated across scopes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Resolution)> {
        self.by_scope
            .values()
            .flatten()
            .map(|(image, r)| (image.as_str(), r))
    }
}

impl From<HashMap<String, Resolution>> for Resolutions {
    /// Unscoped resolutions, as without pull secrets.
    fn from(by_image: HashMap<String, Resolution>) -> Self {
        Resolutions {
            by_scope: HashMap::from([(Scope::NONE, by_image)]),
            workload_scopes: Vec::new(),
            versions: HashMap::new(),
            container_versions: Vec::new(),
        }
    }
}

/// What the version series say about one running tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub freshness: Freshness,
    /// When the newest release was built, from its config.
    pub latest_created: Option<i64>,
}
