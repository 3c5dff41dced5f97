//! Supply-chain facts of an image — what is attached to it ([`referrers`])
//! and the base it was built on ([`base`]) — joined to its metadata.
//!
//! Metadata is content-addressed and cached for as long as it is used;
//! these facts are not (a signature can be attached, a base tag re-pushed,
//! long after the image). So an image's metadata is handed out with its
//! facts from a cache of its own, refreshed every `--referrers-cache-duration`
//! (or `--cache-duration`, when shorter: the base tag's HEAD follows it):
//! the copy is made once per period, never per tick, and a warm tick asks
//! no registry anything.
//!
//! [`referrers`]: super::referrers
//! [`base`]: super::base

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use oci_client::Reference;
use tracing::debug;

use super::base;
use super::keys::{Key, Keys};
use super::referrers::ReferrerLookup;
use super::signatures::SignatureVerifier;
use super::{Dropped, ErrorClass, ImageMetadata, ResolveError, Resolver};
use crate::credentials::Login;
use crate::image_facts::supply_chain::BaseImage;
use crate::reference;

/// The caches of [`Resolver::with_supply_chain`].
pub(crate) struct SupplyChainCaches {
    lookup: Option<ReferrerLookup>,
    verifier: Option<SignatureVerifier>,
    /// (pinned reference, credential) → the metadata with its facts.
    composed: Cache<Key, Composed>,
    /// Images composed before: their dropped labels were counted already.
    seen: Cache<Key, ()>,
    /// How long composed facts are trusted: when looked up, when it failed.
    ok: Duration,
    failed: Duration,
}

#[derive(Clone)]
struct Composed {
    metadata: Arc<ImageMetadata>,
    /// When it is looked up again: after the referrers period, or the
    /// error period when the referrer lookup failed.
    until: Instant,
}

/// Each composed entry goes at the instant it carries.
struct ComposedExpiry;

impl moka::Expiry<Key, Composed> for ComposedExpiry {
    fn expire_after_create(&self, _: &Key, value: &Composed, created: Instant) -> Option<Duration> {
        Some(value.until.saturating_duration_since(created))
    }
}

impl SupplyChainCaches {
    /// The caches for `config`'s durations, sized as the metadata cache is
    /// (`capacity` entries, dropped after `idle` unused).
    pub(crate) fn new(
        config: &super::ResolverConfig,
        (capacity, idle): (u64, Duration),
        verifier: Option<SignatureVerifier>,
        tag_lists: Arc<super::tags::TagLists>,
        keys: Arc<Keys>,
    ) -> Self {
        let referrers = config.referrers;
        let referrers_cache_duration = config.referrers_cache_duration;
        let cache_duration = config.cache_duration;
        let error_cache_duration = config.error_cache_duration;
        let ok = if referrers {
            referrers_cache_duration.min(cache_duration)
        } else {
            cache_duration
        };
        SupplyChainCaches {
            lookup: referrers.then(|| {
                ReferrerLookup::new(
                    referrers_cache_duration,
                    error_cache_duration,
                    tag_lists,
                    keys,
                )
            }),
            verifier: verifier.filter(|_| referrers),
            composed: Cache::builder()
                .max_capacity(capacity)
                .expire_after(ComposedExpiry)
                .build(),
            seen: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .build(),
            ok,
            failed: error_cache_duration.min(ok),
        }
    }
}

impl SupplyChainCaches {
    /// The keys of the composed images, and of those seen.
    #[cfg(test)]
    pub(super) fn keys(&self) -> (Vec<Key>, Vec<Key>) {
        let composed = self.composed.iter().map(|(k, _)| (*k).clone()).collect();
        (
            composed,
            self.seen.iter().map(|(k, _)| (*k).clone()).collect(),
        )
    }
}

impl Resolver {
    /// `metadata` with its supply-chain facts, from a cache refreshed once
    /// per period. Images with nothing to look up are handed out as they are.
    /// `key` is `pinned`'s, with `credential`'s id.
    pub(super) async fn with_supply_chain(
        &self,
        (pinned, key): (&Reference, &Key),
        metadata: Arc<ImageMetadata>,
        credential: Option<&Login>,
    ) -> Arc<ImageMetadata> {
        let caches = &self.supply_chain;
        if caches.lookup.is_none() && base::declared(&metadata.annotations).is_none() {
            return metadata;
        }
        let composed = caches
            .composed
            .entry(key.clone())
            .or_insert_with(async {
                let mut supply = metadata.supply_chain.clone();
                let mut failed = false;
                if let Some(lookup) = &caches.lookup {
                    let subjects: Vec<&str> = std::iter::once(metadata.digest.as_str())
                        .chain(supply.platform_digest.as_deref())
                        .collect();
                    let find = lookup.referrers(
                        &self.client,
                        pinned,
                        &subjects,
                        &supply.index_attestations,
                        credential,
                    );
                    let result = tokio::time::timeout(self.config.timeout, find)
                        .await
                        .unwrap_or_else(|_| {
                            Err(ResolveError::new(
                                ErrorClass::Timeout,
                                format!("referrers of {pinned}: no answer within {:?}", self.config.timeout),
                            ))
                        });
                    match result {
                        Ok((referrers, attached)) => {
                            supply.referrers = Some(Arc::new(referrers));
                            if let Some(verifier) = &caches.verifier {
                                let verdicts = verifier
                                    .verify(&self.client, pinned, &subjects, &attached, credential)
                                    .await;
                                failed |= verdicts.is_none();
                                supply.verification = verdicts.map(Arc::new);
                            }
                        }
                        Err(e) => {
                            debug!(image = %pinned, error = %e, "cannot list what is attached to the image");
                            failed = true;
                        }
                    }
                }
                if let Some(mut declared) = base::declared(&metadata.annotations) {
                    (declared.outdated, declared.current_created) =
                        self.base_outdated(&declared, pinned, credential).await;
                    supply.base = Some(declared);
                }
                let mut composed = (*metadata).clone();
                composed.supply_chain = supply;
                // What the limits dropped is counted once per image, when its
                // series are first built, not at every refresh of its facts.
                if caches.seen.contains_key(key) {
                    composed.dropped = Dropped::default();
                } else {
                    caches.seen.insert(key.clone(), ()).await;
                }
                let valid = if failed { caches.failed } else { caches.ok };
                Composed {
                    metadata: Arc::new(composed),
                    until: Instant::now() + valid,
                }
            })
            .await
            .into_value();
        super::expiry::used(Some(composed.until));
        composed.metadata
    }

    /// What [`Resolver::with_supply_chain`] would hand out without a
    /// request: the metadata when it has no facts to look up, or the facts
    /// cached now. `None` otherwise: the metadata goes out without them,
    /// marked as composed so what its limits dropped is counted once, when
    /// the series built from it are.
    pub(super) async fn known_supply_chain(
        &self,
        key: &Key,
        metadata: &Arc<ImageMetadata>,
    ) -> Option<Arc<ImageMetadata>> {
        let caches = &self.supply_chain;
        if caches.lookup.is_none() && base::declared(&metadata.annotations).is_none() {
            return Some(metadata.clone());
        }
        if let Some(composed) = caches.composed.get(key).await {
            super::expiry::used(Some(composed.until));
            return Some(composed.metadata);
        }
        caches.seen.insert(key.clone(), ()).await;
        None
    }

    /// Whether the base's tag now points elsewhere than the digest the image
    /// was built on, from the shared tag cache, and if so when the image it
    /// points at now was created. The image's login is used only for a base
    /// in the same registry.
    async fn base_outdated(
        &self,
        declared: &BaseImage,
        pinned: &Reference,
        credential: Option<&Login>,
    ) -> (Option<bool>, Option<i64>) {
        let Some(built_on) = declared.digest.as_deref() else {
            return (None, None);
        };
        let Ok(base) = reference::parse(&declared.name) else {
            return (None, None);
        };
        if base.digest().is_some() {
            // Pinned by digest: it cannot move.
            return (None, None);
        }
        let credential =
            credential.filter(|_| base.resolve_registry() == pinned.resolve_registry());
        let key = self.keys.key(&base, credential);
        let now = match self.tag_digest(&base, key, credential, false).await {
            Ok(now) => now,
            Err(e) => {
                debug!(image = %pinned, base = declared.name, error = %e, "cannot resolve the base image");
                return (None, None);
            }
        };
        if now == built_on {
            return (Some(false), None);
        }
        let current = reference::with_digest(&base, &now);
        let key = self.keys.key(&current, credential);
        let created = match self
            .cached_metadata((&current, &key), &now, credential)
            .await
        {
            Ok(metadata) => metadata.created,
            Err(e) => {
                debug!(image = %pinned, base = %current, error = %e, "cannot read the base image's current version");
                None
            }
        };
        (Some(true), created)
    }
}
