//! Registry: image references → image metadata, asking registries as
//! little as possible.
//!
//! Two caches, both single-flight (concurrent lookups of one key make one
//! request):
//! - reference → digest, for tags only, trusted for `--cache-duration` and
//!   then refreshed with one HEAD request. Digest-pinned references skip it.
//!   A tag never resolved before is read with one GET instead, which gives
//!   its digest and its manifest at once, so a cold lookup does not ask
//!   for the manifest twice (HEAD by tag, then GET by digest).
//! - digest → metadata. Content-addressed, so it never goes stale; an entry
//!   stays while snapshots keep reading it, and the cache is bounded.
//!
//! Failures are cached too, for `--error-cache-duration`, so one broken image
//! does not hammer its registry at every tick.
//!
//! Every cache keys by a reference string and a login id; the strings are
//! shared ([`keys`]), each formatted once per lookup.
//!
//! Labels and annotations are bounded by [`ImageLimits`] when the metadata
//! is made, before it is cached: what a registry sends costs the cache no
//! more than the series it may become.

pub mod auth;
pub mod base;
pub mod client;
pub mod disk_cache;
pub mod expiry;
pub mod filter;
mod host_limiter;
mod keys;
pub mod manifest;
mod metrics;
pub mod referrers;
pub mod signatures;
mod supply_chain;
pub mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use oci_client::Reference;
use tracing::debug;

pub use filter::{FilterError, ImageFilter, KeyFilter};
pub use manifest::Platform;
use manifest::{choose_platform, ImageConfig, Manifest, MAX_DOCUMENT_BYTES};
pub use metrics::Metrics;
pub use tags::VersionSettings;

use crate::credentials::Login;
use crate::image_facts::limits::{Dropped, ImageLimits};
use crate::image_facts::supply_chain::SupplyChain;
use crate::image_facts::{
    ErrorClass, ImageMetadata, Resolution, ResolveError, MAX_PLATFORM_DIGESTS,
};
use crate::reference;
use client::{ClientSettings, Content, RegistryClient};
use expiry::{AtStamp, Stamped};
use keys::{Key, Keys};

/// Why a [`Resolver`] cannot be made: a start-up error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to build the registry HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Settings of a [`Resolver`].
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub platform: Platform,
    pub cache_duration: Duration,
    pub error_cache_duration: Duration,
    pub insecure_registries: Vec<String>,
    pub timeout: Duration,
    /// Most requests in flight to one registry host.
    pub registry_concurrency: usize,
    /// Requests per second to one registry host (token bucket).
    pub registry_rps: f64,
    /// What one image's metadata may hold.
    pub image_limits: ImageLimits,
    /// Whether to look up what is attached to images (`--referrers`).
    pub referrers: bool,
    /// How long a lookup of what is attached to an image is trusted.
    pub referrers_cache_duration: Duration,
    /// Which of an image's labels and annotations are kept, before the limits.
    pub image_filter: ImageFilter,
    /// Signature verification policies (`--verify-key`, `--verify-certificate`).
    pub verify: Arc<Vec<crate::verify::policy::Policy>>,
    /// Version freshness (`--versions`); `None` when off.
    pub versions: Option<VersionSettings>,
    /// The on-disk metadata cache (`--cache-dir`); `None` when off.
    pub disk_cache: Option<Arc<disk_cache::DiskCache>>,
}

/// Digests are immutable, so metadata may stay as long as it is used; this
/// bounds how long an image nobody references any more is kept.
/// Most logins tried for one image. The kubelet tries a pod's pull secrets
/// in order until one works; a pod listing dozens, each refused slowly,
/// would hold a lookup for all of them. Real pods list one to three.
pub const MAX_LOGINS_PER_IMAGE: usize = 5;

const METADATA_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Bounds memory: about 2 KiB per entry for real images, so well under
/// 100 MB when full; the [`ImageLimits`] bound the rest.
const METADATA_CAPACITY: u64 = 50_000;
const TAG_CAPACITY: u64 = 200_000;
/// Manifests read by tag and not yet made into metadata: consumed at once
/// by the lookup that read them, so this only bounds what lookups that
/// found the metadata cached already (two tags of one digest) leave behind.
const FETCHED_MANIFEST_BYTES: u64 = 32 * 1024 * 1024;

/// What a lookup waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facts {
    /// The digest, and the metadata only when it is cached already (in
    /// memory or in `--cache-dir`): the first push of a cold start carries
    /// every container with its digest at the cost of one GET per tag and
    /// none per digest-pinned reference; the image's own series follow
    /// once its metadata is looked up ([`ImageMetadata::digest_only`]).
    Digest,
    /// Everything: digest, metadata, what is attached, the base, the verdicts.
    All,
    /// What the inventory needs (digest and metadata), plus the facts that
    /// are cached already or were looked up before (a refresh): the first
    /// snapshot of a cold start pushes that much at once, and the facts
    /// looked up for the first time are left to a later one.
    Known,
}

/// Resolves image references to metadata through a registry client and caches.
pub struct Resolver {
    client: RegistryClient,
    config: ResolverConfig,
    /// (reference, login id) → digest: a result obtained with one
    /// object's login is never reported for another's.
    tags: Cache<Key, Stamped<Result<String, ResolveError>>>,
    /// Hashes of the (reference, login id)s whose tag resolved before:
    /// when their entry in `tags` expires, a HEAD says whether they moved.
    known_tags: moka::sync::Cache<u64, ()>,
    /// Manifests read by tag, by (pinned reference, login id), until the
    /// metadata lookup of the same digest takes them.
    fetched: moka::sync::Cache<Key, bytes::Bytes>,
    metadata: Cache<Key, Stamped<Resolution>>,
    supply_chain: supply_chain::SupplyChainCaches,
    tag_lists: Arc<tags::TagLists>,
    /// The strings every cache's keys share.
    keys: Arc<Keys>,
    metrics: Metrics,
}

impl Resolver {
    /// Fails only when its HTTP client cannot be built (TLS set-up): a
    /// start-up error.
    /// The on-disk cache of `--cache-dir`, when there is one.
    pub fn disk_cache(&self) -> Option<&Arc<disk_cache::DiskCache>> {
        self.config.disk_cache.as_ref()
    }

    pub fn new(config: ResolverConfig, metrics: Metrics) -> Result<Self, Error> {
        crate::install_crypto_provider();
        let keys = Arc::new(Keys::default());
        if let Some(disk) = &config.disk_cache {
            let limits = &config.image_limits;
            let settings = disk_cache::format::settings_fingerprint(
                &config.platform,
                &config.image_filter,
                limits,
            );
            let policies = crate::verify::policy::fingerprint(&config.verify);
            disk.load(settings, policies, limits);
            disk.share_keys(|reference| keys.of(reference));
        }
        let tags = Cache::builder()
            .max_capacity(TAG_CAPACITY)
            .expire_after(AtStamp { idle: None })
            .build();
        let metadata = Cache::builder()
            .max_capacity(METADATA_CAPACITY)
            .expire_after(AtStamp {
                idle: Some(METADATA_IDLE),
            })
            .build();
        let client = RegistryClient::new(
            ClientSettings {
                insecure: config.insecure_registries.clone(),
                timeout: config.timeout,
                concurrency: config.registry_concurrency,
                requests_per_second: config.registry_rps,
            },
            metrics.clone(),
        )?;
        // One listing per repository serves the versions and the
        // attachment tags; trusted for the shorter of their periods.
        let lists_ok = match (&config.versions, config.referrers) {
            (Some(v), true) => v.cache_duration.min(config.referrers_cache_duration),
            (Some(v), false) => v.cache_duration,
            (None, _) => config.referrers_cache_duration,
        };
        let tag_lists = Arc::new(tags::TagLists::new(
            lists_ok,
            config.error_cache_duration,
            referrers::is_attachment_tag,
            keys.clone(),
        ));
        let supply_chain = supply_chain::SupplyChainCaches::new(
            &config,
            (METADATA_CAPACITY, METADATA_IDLE),
            signatures::SignatureVerifier::new(
                config.verify.clone(),
                &metrics,
                config.disk_cache.clone(),
            ),
            tag_lists.clone(),
            keys.clone(),
        );
        let fetched = moka::sync::Cache::builder()
            .max_capacity(FETCHED_MANIFEST_BYTES)
            .weigher(|_, body: &bytes::Bytes| u32::try_from(body.len()).unwrap_or(u32::MAX))
            .time_to_live(config.timeout.saturating_mul(2))
            .build();
        let known_tags = moka::sync::Cache::builder()
            .max_capacity(TAG_CAPACITY)
            .time_to_idle(METADATA_IDLE)
            .build();
        Ok(Resolver {
            client,
            config,
            tags,
            known_tags,
            fetched,
            metadata,
            supply_chain,
            tag_lists,
            keys,
            metrics,
        })
    }

    /// Resolves one image as written in a pod spec, trying `logins`
    /// (the logins that match it, most specific first, as the kubelet
    /// would) until one is accepted; anonymously when there are none.
    /// The metadata of `image`, trying `logins` in order (at most
    /// [`MAX_LOGINS_PER_IMAGE`]), then anonymous access. The whole lookup —
    /// tag, manifests, config, what is attached, the base, with every login
    /// tried — ends within `--registry-timeout`; what it fetched by then
    /// stays cached for the next try.
    pub async fn resolve(&self, image: &str, logins: &[&Login]) -> Resolution {
        self.resolve_facts(image, logins, Facts::All).await.0
    }

    /// [`Resolver::resolve`], waiting only for `facts`; and whether facts
    /// were left out (looked up for the first time: a later call with
    /// [`Facts::All`] fills them in).
    pub async fn resolve_facts(
        &self,
        image: &str,
        logins: &[&Login],
        facts: Facts,
    ) -> (Resolution, bool) {
        let timeout = self.config.timeout;
        let left_out = std::sync::atomic::AtomicBool::new(false);
        let lookup = self.resolve_uncounted(image, logins, facts, &left_out);
        let result = tokio::time::timeout(timeout, lookup)
            .await
            .unwrap_or_else(|_| {
                Err(ResolveError::new(
                    ErrorClass::Timeout,
                    format!("{image}: the lookup did not finish within {timeout:?} (--registry-timeout)"),
                ))
            });
        if let Err(e) = &result {
            self.metrics
                .resolve_failures
                .with_label_values(&[e.class.as_str()])
                .inc();
        }
        (result, left_out.into_inner())
    }

    async fn resolve_uncounted(
        &self,
        image: &str,
        logins: &[&Login],
        facts: Facts,
        left_out: &std::sync::atomic::AtomicBool,
    ) -> Resolution {
        let reference = reference::parse(image)
            .map_err(|e| ResolveError::new(ErrorClass::InvalidReference, e.to_string()))?;
        // Formatted once per lookup; every login's keys share it.
        let written = self.keys.of(&reference);
        let mut refused = None;
        if logins.len() > MAX_LOGINS_PER_IMAGE {
            debug!(
                image,
                logins = logins.len(),
                tried = MAX_LOGINS_PER_IMAGE,
                "more logins match the image than are tried"
            );
        }
        for login in logins.iter().take(MAX_LOGINS_PER_IMAGE) {
            match self
                .resolve_with((&reference, &written), Some(login), facts, left_out)
                .await
            {
                Err(e) if matches!(e.class, ErrorClass::Unauthorized | ErrorClass::Forbidden) => {
                    debug!(image, source = %login.source, error = %e, "login refused; trying the next");
                    refused = Some(e);
                }
                result => return result,
            }
        }
        match refused {
            // Every login was refused: the last refusal says why.
            Some(e) => Err(e),
            None => {
                self.resolve_with((&reference, &written), None, facts, left_out)
                    .await
            }
        }
    }

    /// `reference` (and `written`, its shared string) with one login.
    async fn resolve_with(
        &self,
        (reference, written): (&Reference, &Arc<str>),
        credential: Option<&Login>,
        facts: Facts,
        left_out: &std::sync::atomic::AtomicBool,
    ) -> Resolution {
        let login = keys::login(credential);
        let digest = match reference.digest() {
            Some(digest) => digest.to_owned(),
            None => {
                let key = (written.clone(), login);
                self.tag_digest(reference, key, credential, true).await?
            }
        };
        let pinned = reference::with_digest(reference, &digest);
        let key = (self.keys.of(&pinned), login);
        let pinned = (&pinned, &key);
        if facts == Facts::Digest && !self.metadata_cached(&key) {
            left_out.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(Arc::new(ImageMetadata::digest_only(digest)));
        }
        let metadata = self.cached_metadata(pinned, &digest, credential).await?;
        if facts != Facts::All {
            if let Some(known) = self.known_supply_chain(&key, &metadata).await {
                return Ok(known);
            }
            left_out.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(metadata);
        }
        Ok(self.with_supply_chain(pinned, metadata, credential).await)
    }

    /// Whether the metadata of an image pinned by digest (or its failure)
    /// is cached, in memory or on disk: reading it then asks no registry.
    fn metadata_cached(&self, key: &Key) -> bool {
        self.metadata.contains_key(key)
            || (self.config.disk_cache.as_deref()).is_some_and(|d| d.get(key).is_some())
    }

    /// The metadata of an image pinned by digest (and its key), from the
    /// cache or its registry.
    async fn cached_metadata(
        &self,
        (pinned, key): (&Reference, &Key),
        digest: &str,
        credential: Option<&Login>,
    ) -> Resolution {
        let disk = self.config.disk_cache.as_deref().map(|d| (d, key.clone()));
        let entry = self
            .metadata
            .entry(key.clone())
            .or_insert_with(async {
                if let Some((d, key)) = &disk {
                    let found = d.get(key);
                    self.count_lookup("disk", found.is_none());
                    if let Some(metadata) = found {
                        return Stamped::new(Ok(metadata), None);
                    }
                }
                let fetch = self.fetch_metadata((pinned, key), digest, credential);
                let result = tokio::time::timeout(self.config.timeout, fetch)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ResolveError::new(
                            ErrorClass::Timeout,
                            format!("registry did not answer within {:?}", self.config.timeout),
                        ))
                    });
                let result = result.map(Arc::new);
                if let (Some((d, key)), Ok(metadata)) = (&disk, &result) {
                    d.insert(key.clone(), metadata.clone());
                }
                // Metadata by digest never changes; a failure is tried again.
                let valid = result.is_err().then_some(self.config.error_cache_duration);
                Stamped::new(result, valid)
            })
            .await;
        if let (Some((d, key)), false) = (&disk, entry.is_fresh()) {
            d.touch(key);
        }
        self.count_lookup("metadata", entry.is_fresh());
        entry.into_value().used()
    }

    /// The digest a tag points at now: one HEAD request per cache period.
    /// A tag never resolved before, when its manifest is `wanted` next, is
    /// read with one GET instead, and the manifest kept for
    /// [`Resolver::fetch_metadata`]. `key` is the reference's, with
    /// `credential`'s id.
    async fn tag_digest(
        &self,
        reference: &Reference,
        key: Key,
        credential: Option<&Login>,
        wanted: bool,
    ) -> Result<String, ResolveError> {
        let login = key.1;
        let known = known_tag(&key);
        let cold = wanted && !self.known_tags.contains_key(&known);
        let entry = self
            .tags
            .entry(key)
            .or_insert_with(async {
                debug!(reference = %reference, cold, "resolving tag");
                let read = async {
                    if !cold {
                        return self.client.manifest_digest(reference, credential).await;
                    }
                    let (digest, body) = self.client.manifest_by_tag(reference, credential).await?;
                    let pinned = reference::with_digest(reference, &digest);
                    self.fetched.insert((self.keys.of(&pinned), login), body);
                    Ok(digest)
                };
                let result = match tokio::time::timeout(self.config.timeout, read).await {
                    Ok(result) => result,
                    Err(_) => Err(ResolveError::new(
                        ErrorClass::Timeout,
                        format!(
                            "registry did not answer within {:?} for {reference}",
                            self.config.timeout
                        ),
                    )),
                };
                let valid = match result {
                    Ok(_) => self.config.cache_duration,
                    Err(_) => self.config.error_cache_duration,
                };
                Stamped::new(result, Some(valid))
            })
            .await;
        self.count_lookup("reference", entry.is_fresh());
        let digest = entry.into_value().used();
        if digest.is_ok() {
            self.known_tags.insert(known, ());
        }
        digest
    }

    /// Counts the lookups of a snapshot the pipeline answered from its
    /// memo (`reused`) and those it asked the resolver (`asked`).
    pub fn count_memo(&self, reused: u64, asked: u64) {
        let lookups = &self.metrics.cache_lookups;
        lookups.with_label_values(&["memo", "hit"]).inc_by(reused);
        lookups.with_label_values(&["memo", "miss"]).inc_by(asked);
    }

    fn count_lookup(&self, cache: &str, fresh: bool) {
        let result = if fresh { "miss" } else { "hit" };
        self.metrics
            .cache_lookups
            .with_label_values(&[cache, result])
            .inc();
    }

    /// GETs the manifest (and, for an index, the chosen platform's manifest)
    /// and the config of an image pinned by digest.
    async fn fetch_metadata(
        &self,
        (pinned, key): (&Reference, &Key),
        digest: &str,
        credential: Option<&Login>,
    ) -> Result<ImageMetadata, ResolveError> {
        let read_by_tag = self.fetched.remove(key);
        let body = match read_by_tag {
            Some(body) => body,
            None => {
                self.client
                    .fetch(pinned, Content::Manifest, digest, credential)
                    .await?
            }
        };
        let mut annotations = BTreeMap::new();
        let mut supply_chain = SupplyChain::default();
        let mut platform_digests = Vec::new();
        let (config, layers, image_annotations) =
            match Manifest::parse(&body).map_err(|m| bad_format(pinned, m))? {
                Manifest::Image {
                    config,
                    layers,
                    annotations,
                } => (config, layers, annotations),
                Manifest::Index {
                    manifests,
                    annotations: index_annotations,
                } => {
                    let entry =
                        choose_platform(&manifests, &self.config.platform).ok_or_else(|| {
                            bad_format(
                                pinned,
                                "the index holds no image manifest (only attestations or nothing)",
                            )
                        })?;
                    annotations.extend(index_annotations);
                    annotations.extend(entry.annotations.clone());
                    supply_chain.platform_digest = Some(entry.digest.clone());
                    supply_chain.index_attestations =
                        referrers::index_attestations(&manifests, &entry.digest);
                    platform_digests = manifests
                        .iter()
                        .map(|m| &m.digest)
                        .filter(|d| crate::reference::check_digest(d).is_ok())
                        .take(MAX_PLATFORM_DIGESTS)
                        .cloned()
                        .collect();
                    // Checked before it names a reference: it is the registry's text.
                    reference::check_digest(&entry.digest).map_err(|e| {
                        bad_format(pinned, format!("the index names its image manifest {e}"))
                    })?;
                    let child = reference::with_digest(pinned, &entry.digest);
                    let body = self
                        .client
                        .fetch(&child, Content::Manifest, &entry.digest, credential)
                        .await?;
                    match Manifest::parse(&body).map_err(|m| bad_format(&child, m))? {
                        Manifest::Image {
                            config,
                            layers,
                            annotations,
                        } => (config, layers, annotations),
                        Manifest::Index { .. } => {
                            return Err(bad_format(&child, "an index entry is itself an index"));
                        }
                    }
                }
            };
        annotations.extend(image_annotations);
        if config.size > MAX_DOCUMENT_BYTES as u64 {
            return Err(bad_format(
                pinned,
                format!("image config of {} bytes is too large to read", config.size),
            ));
        }
        let blob = self
            .client
            .fetch(pinned, Content::Blob, &config.digest, credential)
            .await?;
        let image_config = ImageConfig::parse(&blob).map_err(|m| bad_format(pinned, m))?;
        let size = layers
            .iter()
            .fold(config.size, |sum, layer| sum.saturating_add(layer.size));
        let mut metadata = ImageMetadata::bounded(
            digest.to_owned(),
            size,
            image_config.created_unix(),
            self.config.image_filter.labels.apply(image_config.labels()),
            self.config.image_filter.annotations.apply(annotations),
            &self.config.image_limits,
        );
        metadata.supply_chain = supply_chain;
        metadata.platform_digests = platform_digests;
        Ok(metadata)
    }
}

/// The key of [`Resolver::known_tags`]: a hash, as a collision costs only a
/// HEAD and a GET where one GET would do.
fn known_tag(key: &Key) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key)
}

fn bad_format(reference: &Reference, message: impl std::fmt::Display) -> ResolveError {
    ResolveError::new(ErrorClass::BadFormat, format!("{reference}: {message}"))
}

/// Per-entry expiry: successes and failures live for different times, and
/// metadata entries are kept alive by being read.
struct Ttl {
    ok: Duration,
    err: Duration,
    idle: Option<Duration>,
}

impl<K, T, E> moka::Expiry<K, Result<T, E>> for Ttl {
    fn expire_after_create(&self, _: &K, value: &Result<T, E>, _: Instant) -> Option<Duration> {
        Some(if value.is_ok() { self.ok } else { self.err })
    }

    fn expire_after_read(
        &self,
        _: &K,
        value: &Result<T, E>,
        _: Instant,
        left: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        match (value, self.idle) {
            (Ok(_), Some(idle)) => Some(idle),
            _ => left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_facts::limits::DropReason;

    #[test]
    fn the_metadata_of_a_config_of_5000_labels_holds_at_most_max_labels() {
        let labels: serde_json::Map<String, serde_json::Value> = (0..5000)
            .map(|i| (format!("label.{i:05}"), format!("v{i}").into()))
            .collect();
        let config = serde_json::json!({"config": {"Labels": labels}});
        let config = ImageConfig::parse(&serde_json::to_vec(&config).unwrap()).unwrap();
        let annotations = (0..300)
            .map(|i| (format!("annotation.{i:03}"), "v".into()))
            .collect();
        let limits = ImageLimits::default();
        let metadata = ImageMetadata::bounded(
            "sha256:aa".into(),
            1,
            None,
            config.labels(),
            annotations,
            &limits,
        );
        assert_eq!(metadata.labels.len(), limits.max_labels);
        assert!(metadata.labels.get("label.00000").is_some());
        assert_eq!(metadata.annotations.len(), limits.max_annotations);
        assert_eq!(
            metadata.dropped.get(DropReason::TooManyLabels),
            5000 - limits.max_labels as u64
        );
        assert_eq!(
            metadata.dropped.get(DropReason::TooManyAnnotations),
            300 - limits.max_annotations as u64
        );
    }
}
