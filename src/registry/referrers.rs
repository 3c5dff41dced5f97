//! Referrers: the signatures, SBOMs and attestations attached to an image,
//! found the ways tools attach them, and classified by what they are.
//!
//! Where attachments live:
//! - the OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`), paged
//!   by `Link`; a registry that answers 404 has none, and is remembered as
//!   such for the cache period, so its other images skip straight to
//! - the referrers tag schema: an index tagged `<alg>-<hex>` that clients
//!   keep up to date on such registries (cosign's new bundle format, oras);
//! - cosign's legacy tags `sha256-<hex>.sig`, `.att`, `.sbom`, on any registry;
//! - BuildKit's attestation manifests inside the image's own index.
//!
//! Tags are not probed one by one: one `tags/list` per repository and
//! cache period says which of them exist for every image of the repository,
//! and only those are read. A tag list too long to read in
//! [`MAX_TAG_PAGES`](super::tags::MAX_TAG_PAGES) pages is not trusted to be complete: that repository's
//! tags are then asked for directly.
//!
//! Tools fill the fields differently (cosign's tag-schema entries say
//! `application/vnd.oci.empty.v1+json` for a Sigstore bundle, legacy
//! signatures carry no artifact type at all), so each artifact is
//! classified from its own manifest ([`classify`]), fetched by digest and
//! cached by it. This is presence, not verification: nothing is checked
//! against a key or a transparency log.
//!
//! Everything here comes from registries: pages, artifacts per image and
//! kept tags are bounded, and an artifact that cannot be read or parsed
//! costs only itself.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use oci_client::Reference;
use serde::Deserialize;
use tracing::debug;

use super::client::RegistryClient;
use super::keys::{Key, Keys};
use super::manifest::{DocumentError, Manifest, OCI_INDEX};
use super::{ErrorClass, ResolveError, Ttl};
use crate::credentials::Login;
use crate::image_facts::supply_chain::{Artifact, ReferrerKind, Referrers};
use crate::reference;
use crate::reference::check_digest;

/// Pages of one referrers listing or tag list that are read.
pub const MAX_PAGES: usize = 10;
/// Artifacts counted per image (its digest, its platform manifest and its
/// index's attestations together); real images have a handful.
pub const MAX_ARTIFACTS: usize = 64;
/// Longest `artifact_type` label value; media types are at most 127+1+127.
pub const MAX_ARTIFACT_TYPE_LEN: usize = 255;
/// The `artifact_type` of an artifact whose type is not a media type.
pub const INVALID_ARTIFACT_TYPE: &str = "invalid";
const ARTIFACT_CAPACITY: u64 = 100_000;
const LISTING_CAPACITY: u64 = 100_000;
const REPOSITORY_CAPACITY: u64 = 20_000;
const ARTIFACT_IDLE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArtifact {
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Config media types that say nothing about what an artifact is.
const GENERIC_CONFIGS: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.empty.v1+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.unknown.config.v1+json",
];

const SIGNATURE_TYPES: &[&str] = &[
    // cosign's simple signing (legacy `.sig` tags).
    "application/vnd.dev.cosign.simplesigning.v1+json",
    // Notary v2 / notation.
    "application/vnd.cncf.notary.signature",
];

/// The in-toto predicate type of a cosign signature in a Sigstore bundle.
const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// Annotations naming an in-toto predicate type: cosign's bundle (on the
/// manifest), its legacy `.att` layers, and BuildKit's attestation layers.
const PREDICATE_ANNOTATIONS: &[&str] = &[
    "dev.sigstore.bundle.predicateType",
    "predicateType",
    "in-toto.io/predicate-type",
];

fn is_sbom_type(media_type: &str) -> bool {
    let base = media_type.split(';').next().unwrap_or_default().trim();
    base.contains("spdx")
        || base.starts_with("application/vnd.cyclonedx")
        || base == "application/vnd.syft+json"
}

fn is_statement_type(media_type: &str) -> bool {
    media_type == "application/vnd.in-toto+json"
        || media_type == "application/vnd.dsse.envelope.v1+json"
        || media_type.starts_with("application/vnd.dev.sigstore.bundle")
}

fn predicate_kind(predicate: &str) -> ReferrerKind {
    if predicate == COSIGN_SIGN_PREDICATE {
        ReferrerKind::Signature
    } else if predicate.starts_with("https://spdx.dev/Document")
        || predicate.starts_with("https://cyclonedx.org/bom")
        || predicate.starts_with("https://cyclonedx.org/schema")
    {
        ReferrerKind::Sbom
    } else {
        ReferrerKind::Attestation
    }
}

/// Why an attached artifact's manifest, or a listing of them, cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// serde_json's message says where, and a registry's bytes are no secret.
    #[error("artifact manifest is not valid JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("an image manifest where an index was expected")]
    NotAnIndex,
}

/// What an artifact manifest is, from the manifest itself: its
/// `artifactType`, config and layer media types, and the in-toto predicate
/// types its annotations name. The entry point for those untrusted bytes.
pub fn classify(body: &[u8]) -> Result<Artifact, ArtifactError> {
    let raw: RawArtifact = serde_json::from_slice(body)?;
    let config = raw.config.as_ref().map(|c| c.media_type.as_str());
    let declared = raw
        .artifact_type
        .as_deref()
        .filter(|t| !t.is_empty())
        .or(config.filter(|c| !c.is_empty() && !GENERIC_CONFIGS.contains(c)))
        .or(raw.layers.first().map(|l| l.media_type.as_str()))
        .unwrap_or_default();
    let artifact_type = artifact_type_label(declared);

    let types = || {
        raw.artifact_type
            .iter()
            .map(String::as_str)
            .chain(config)
            .chain(raw.layers.iter().map(|l| l.media_type.as_str()))
    };
    let predicates: Vec<&str> = std::iter::once(&raw.annotations)
        .chain(raw.layers.iter().map(|l| &l.annotations))
        .flat_map(|a| PREDICATE_ANNOTATIONS.iter().filter_map(|k| a.get(*k)))
        .map(String::as_str)
        .collect();
    let mut kinds: Vec<ReferrerKind> = predicates.iter().map(|p| predicate_kind(p)).collect();
    if types().any(|t| SIGNATURE_TYPES.contains(&t)) {
        kinds.push(ReferrerKind::Signature);
    }
    if types().any(is_sbom_type) {
        kinds.push(ReferrerKind::Sbom);
    }
    if kinds.is_empty() && types().any(is_statement_type) {
        // A statement or bundle that does not say what it holds.
        let signature = raw
            .annotations
            .get("dev.sigstore.bundle.content")
            .is_some_and(|c| c == "message-signature");
        kinds.push(if signature {
            ReferrerKind::Signature
        } else {
            ReferrerKind::Attestation
        });
    }
    if kinds.is_empty() {
        kinds.push(ReferrerKind::Other);
    }
    kinds.sort_unstable();
    kinds.dedup();
    Ok(Artifact {
        artifact_type,
        kinds,
    })
}

/// A media type as a label value: as declared when it looks like one
/// (RFC 6838 names, parameters dropped), else [`INVALID_ARTIFACT_TYPE`],
/// so a registry cannot put arbitrary text or length into a label.
pub fn artifact_type_label(media_type: &str) -> String {
    let base = media_type.split(';').next().unwrap_or_default().trim();
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b);
    let valid = match base.split_once('/') {
        Some((kind, sub)) => {
            !kind.is_empty()
                && !sub.is_empty()
                && base.len() <= MAX_ARTIFACT_TYPE_LEN
                && kind.bytes().all(name_char)
                && sub.bytes().all(name_char)
        }
        None => false,
    };
    if valid {
        base.to_ascii_lowercase()
    } else {
        INVALID_ARTIFACT_TYPE.to_owned()
    }
}

/// The digests of the attestation manifests BuildKit put into an index for
/// the image at `subject` (`vnd.docker.reference.type: attestation-manifest`),
/// at most [`MAX_ARTIFACTS`].
pub fn index_attestations(entries: &[super::manifest::Descriptor], subject: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| {
            e.annotations
                .get("vnd.docker.reference.type")
                .map(String::as_str)
                == Some("attestation-manifest")
                && e.annotations
                    .get("vnd.docker.reference.digest")
                    .map(String::as_str)
                    == Some(subject)
                && check_digest(&e.digest).is_ok()
        })
        .map(|e| e.digest.clone())
        .take(MAX_ARTIFACTS)
        .collect()
}

/// The referrers tag schema's tag for `digest`: `<alg>-<hex>`, the hex cut
/// to 64 characters as the distribution spec says.
fn schema_tag(digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(format!("{algorithm}-{}", hex.get(..64).unwrap_or(hex)))
}

/// cosign's legacy attachment tags of `digest`.
fn cosign_tags(digest: &str) -> Vec<String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) => [".sig", ".att", ".sbom"]
            .iter()
            .map(|suffix| format!("sha256-{hex}{suffix}"))
            .collect(),
        None => Vec::new(),
    }
}

/// Whether a tag may be an attachment tag: the only ones kept from a tag list.
pub(crate) fn is_attachment_tag(tag: &str) -> bool {
    let rest = tag
        .strip_prefix("sha256-")
        .or_else(|| tag.strip_prefix("sha512-"));
    rest.is_some_and(|rest| {
        let hex = rest
            .strip_suffix(".sig")
            .or_else(|| rest.strip_suffix(".att"))
            .or_else(|| rest.strip_suffix(".sbom"))
            .unwrap_or(rest);
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The attachment tags a repository has, from its tag list.
#[derive(Debug, Default)]
struct RepositoryTags {
    /// Whether the list was read to its end; if not, tags are asked for.
    complete: bool,
    tags: HashSet<String>,
}

impl RepositoryTags {
    fn may_have(&self, tag: &str) -> bool {
        !self.complete || self.tags.contains(tag)
    }
}

/// Accept for the referrers API and the tag schema: both serve an index.
const ACCEPT_INDEX: &str = OCI_INDEX;

/// The digests of the artifacts attached to one subject, or why they
/// could not be listed.
type Listing = Result<Arc<Vec<String>>, ResolveError>;

/// Referrer lookups with their caches, shared by every image.
pub(crate) struct ReferrerLookup {
    /// Hosts that answered the referrers API with 404: they have none.
    no_api: Cache<String, ()>,
    /// (repository, credential) → its attachment tags, for the cache period.
    repositories: Cache<Key, Arc<RepositoryTags>>,
    /// The tag lists, shared with the version lookups: one listing serves both.
    tag_lists: Arc<super::tags::TagLists>,
    /// (repository@subject, credential) → the artifacts attached to it.
    listings: Cache<Key, Listing>,
    /// (repository@artifact, credential) → what it is; content-addressed.
    artifacts: Cache<Key, Result<Arc<Artifact>, ResolveError>>,
    /// The strings the keys share with the resolver's.
    keys: Arc<Keys>,
}

impl ReferrerLookup {
    pub(crate) fn new(
        cache_duration: Duration,
        error_cache_duration: Duration,
        tag_lists: Arc<super::tags::TagLists>,
        keys: Arc<Keys>,
    ) -> Self {
        ReferrerLookup {
            tag_lists,
            keys,
            no_api: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(cache_duration)
                .build(),
            repositories: Cache::builder()
                .max_capacity(REPOSITORY_CAPACITY)
                .time_to_live(cache_duration)
                .build(),
            listings: Cache::builder()
                .max_capacity(LISTING_CAPACITY)
                .expire_after(Ttl {
                    ok: cache_duration,
                    err: error_cache_duration,
                    idle: None,
                })
                .build(),
            artifacts: Cache::builder()
                .max_capacity(ARTIFACT_CAPACITY)
                .expire_after(Ttl {
                    ok: ARTIFACT_IDLE,
                    err: error_cache_duration,
                    idle: Some(ARTIFACT_IDLE),
                })
                .build(),
        }
    }

    /// The artifacts attached to the image `pinned` (its digest and
    /// `subjects`, e.g. the chosen platform manifest) plus `included` (the
    /// attestations in its own index), counted by kind and type, and the
    /// digests of those that are signatures (to verify). An error
    /// when a listing failed: the image then has no referrer series rather
    /// than wrong ones.
    pub(crate) async fn referrers(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        subjects: &[&str],
        included: &[String],
        credential: Option<&Login>,
    ) -> Result<(Referrers, super::signatures::Attached), ResolveError> {
        let mut digests: Vec<String> = included.to_vec();
        for subject in subjects {
            let listed = self.listing(client, pinned, subject, credential).await?;
            digests.extend(listed.iter().cloned());
        }
        let mut seen = HashSet::new();
        digests.retain(|d| seen.insert(d.clone()));
        if digests.len() > MAX_ARTIFACTS {
            debug!(image = %pinned, artifacts = digests.len(), "more artifacts than are counted; the first {MAX_ARTIFACTS} are");
            digests.truncate(MAX_ARTIFACTS);
        }
        let mut referrers = Referrers::default();
        let mut attached = super::signatures::Attached::default();
        for digest in digests {
            match self.artifact(client, pinned, &digest, credential).await {
                Ok(artifact) => {
                    referrers.add(&artifact);
                    let kinds = &artifact.kinds;
                    if kinds.contains(&ReferrerKind::Attestation)
                        || kinds.contains(&ReferrerKind::Sbom)
                    {
                        attached.attestations.push(digest.clone());
                    }
                    if kinds.contains(&ReferrerKind::Signature) {
                        attached.signatures.push(digest);
                    }
                }
                // One bad artifact costs only itself.
                Err(e) => {
                    debug!(image = %pinned, artifact = digest, error = %e, "artifact left out")
                }
            }
        }
        Ok((referrers, attached))
    }

    /// The digests of the artifacts that refer to `subject`: one listing
    /// per cache period.
    async fn listing(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        subject: &str,
        credential: Option<&Login>,
    ) -> Listing {
        let key = self.keys.key(
            format_args!(
                "{}/{}@{subject}",
                pinned.resolve_registry(),
                pinned.repository()
            ),
            credential,
        );
        self.listings
            .entry(key)
            .or_insert_with(async {
                self.list(client, pinned, subject, credential)
                    .await
                    .map(Arc::new)
            })
            .await
            .into_value()
    }

    async fn list(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        subject: &str,
        credential: Option<&Login>,
    ) -> Result<Vec<String>, ResolveError> {
        let host = pinned.resolve_registry().to_owned();
        let mut digests = Vec::new();
        let mut api = !self.no_api.contains_key(&host);
        if api {
            match self.api_listing(client, pinned, subject, credential).await {
                Ok(listed) => digests = listed,
                Err(e) if e.class == ErrorClass::NotFound => {
                    debug!(
                        host,
                        "no referrers API (404); using the referrers tag schema"
                    );
                    self.no_api.insert(host, ()).await;
                    api = false;
                }
                Err(e) => return Err(e),
            }
        }
        let tags = self.repository_tags(client, pinned, credential).await;
        let mut wanted = cosign_tags(subject);
        if !api {
            wanted.extend(schema_tag(subject));
        }
        for tag in wanted.into_iter().filter(|t| tags.may_have(t)) {
            match self.tagged(client, pinned, &tag, credential).await {
                Ok(found) => digests.extend(found),
                Err(e) if e.class == ErrorClass::NotFound => {}
                // One unreadable tag costs only what it holds.
                Err(e) => debug!(image = %pinned, tag, error = %e, "attachment tag left out"),
            }
        }
        Ok(digests)
    }

    /// `GET /v2/<name>/referrers/<digest>`, following `Link` pages.
    async fn api_listing(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        subject: &str,
        credential: Option<&Login>,
    ) -> Result<Vec<String>, ResolveError> {
        let mut digests = Vec::new();
        let mut path = Some(format!("referrers/{subject}"));
        for _ in 0..MAX_PAGES {
            let Some(current) = path.take() else { break };
            let page = client
                .get_page(pinned, current, Some(ACCEPT_INDEX), credential)
                .await?;
            if let Some(filters) = &page.filters_applied {
                // No filter is asked for: one request lists every kind.
                debug!(image = %pinned, filters, "registry applied filters nobody asked for");
            }
            digests.extend(index_entries(&page.body).map_err(|m| {
                ResolveError::new(
                    ErrorClass::BadFormat,
                    format!("{pinned}: referrers of {subject}: {m}"),
                )
            })?);
            if digests.len() >= MAX_ARTIFACTS {
                break;
            }
            path = page.next;
        }
        Ok(digests)
    }

    /// What the tag `tag` holds: the entries of a tag-schema index, or the
    /// manifest itself (a cosign attachment), classified and cached by its
    /// digest.
    async fn tagged(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        tag: &str,
        credential: Option<&Login>,
    ) -> Result<Vec<String>, ResolveError> {
        let accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
        let page = client
            .get_page(pinned, format!("manifests/{tag}"), Some(accept), credential)
            .await?;
        match Manifest::parse(&page.body) {
            Ok(Manifest::Index { .. }) => index_entries(&page.body).map_err(|m| {
                ResolveError::new(ErrorClass::BadFormat, format!("{pinned}: {tag}: {m}"))
            }),
            _ => {
                use sha2::Digest as _;
                let hex: String = sha2::Sha256::digest(&page.body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let digest = format!("sha256:{hex}");
                let artifact = classify(&page.body).map(Arc::new).map_err(|m| {
                    ResolveError::new(ErrorClass::BadFormat, format!("{pinned}: {tag}: {m}"))
                });
                let key = self.artifact_key(pinned, &digest, credential);
                self.artifacts.insert(key, artifact).await;
                Ok(vec![digest])
            }
        }
    }

    /// A repository's attachment tags, from one tag list per cache period.
    /// A list that cannot be read, or is too long, is incomplete: its tags
    /// are then asked for one by one.
    async fn repository_tags(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        credential: Option<&Login>,
    ) -> Arc<RepositoryTags> {
        let key = self.keys.key(
            format_args!("{}/{}", pinned.resolve_registry(), pinned.repository()),
            credential,
        );
        self.repositories
            .entry(key)
            .or_insert_with(async {
                // Boxed: deep inside the supply-chain lookups already.
                let listing = Box::pin(self.tag_lists.listing(client, pinned, credential)).await;
                let tags = match listing {
                    Ok(listing) => RepositoryTags {
                        complete: listing.attachments_complete,
                        tags: listing.attachments.clone(),
                    },
                    Err(e) => {
                        debug!(image = %pinned, error = %e, "no tag list; attachment tags are asked for one by one");
                        RepositoryTags::default()
                    }
                };
                Arc::new(tags)
            })
            .await
            .into_value()
    }

    fn artifact_key(&self, pinned: &Reference, digest: &str, credential: Option<&Login>) -> Key {
        self.keys.key(
            format_args!(
                "{}/{}@{digest}",
                pinned.resolve_registry(),
                pinned.repository()
            ),
            credential,
        )
    }

    /// One artifact manifest, fetched by digest (verified) and classified,
    /// once for as long as images refer to it.
    async fn artifact(
        &self,
        client: &RegistryClient,
        pinned: &Reference,
        digest: &str,
        credential: Option<&Login>,
    ) -> Result<Arc<Artifact>, ResolveError> {
        let key = self.artifact_key(pinned, digest, credential);
        self.artifacts
            .entry(key)
            .or_insert_with(async {
                let child = reference::with_digest(pinned, digest);
                let body = client
                    .fetch(&child, super::client::Content::Manifest, digest, credential)
                    .await?;
                classify(&body)
                    .map(Arc::new)
                    .map_err(|m| ResolveError::new(ErrorClass::BadFormat, format!("{child}: {m}")))
            })
            .await
            .into_value()
    }
}

/// The digests an index (a referrers answer or a tag-schema index) lists,
/// at most [`MAX_ARTIFACTS`], each checked before it names a request.
fn index_entries(body: &[u8]) -> Result<Vec<String>, ArtifactError> {
    match Manifest::parse(body)? {
        Manifest::Index { manifests, .. } => Ok(manifests
            .into_iter()
            .map(|d| d.digest)
            .filter(|d| check_digest(d).is_ok())
            .take(MAX_ARTIFACTS)
            .collect()),
        Manifest::Image { .. } => Err(ArtifactError::NotAnIndex),
    }
}

#[cfg(test)]
#[path = "referrers_tests.rs"]
mod tests;
