//! The keys of the registry's caches: each reference string once.
//!
//! Every cache of the resolver keys its answers by a reference (as written,
//! pinned to its digest, a repository, `repository@digest`) and the id of
//! the login the answer was obtained with, so that one login's answer is
//! never reported for another's. At ~10k images, a `String` per cache per
//! image, formatted again at every lookup, made each reference exist once
//! per cache. Here each is interned instead: a lookup formats it into a
//! reused buffer and takes the one shared copy, which every cache's key
//! holds; a reference no cache holds any more is forgotten by the
//! interner's pruning.

use std::cell::RefCell;
use std::fmt::{Display, Write as _};
use std::sync::Arc;

use crate::credentials::Login;
use crate::interner::StringPool;

/// A cache key: the shared reference string, and the id of the login its
/// answer was obtained with (0: anonymous).
pub type Key = (Arc<str>, u64);

/// The strings the registry's cache keys share.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    pool: StringPool,
}

/// Longest buffer kept between lookups: references are bounded well below.
const BUFFER_KEPT: usize = 1024;

thread_local! {
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Keys {
    /// The shared copy of `value` as displayed (a `Reference`, or
    /// `format_args!`): formatted into a reused buffer, so a string seen
    /// before costs no allocation.
    pub(crate) fn of(&self, value: impl Display) -> Arc<str> {
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            // Writing to a String cannot fail.
            let _ = write!(buffer, "{value}");
            let shared = self.pool.lock().intern(&buffer);
            if buffer.capacity() > BUFFER_KEPT {
                *buffer = String::new();
            }
            shared
        })
    }

    /// The key of `value` for an answer obtained with `credential`.
    pub(crate) fn key(&self, value: impl Display, credential: Option<&Login>) -> Key {
        (self.of(value), login(credential))
    }

    /// Distinct strings held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pool.len()
    }
}

/// The id a key holds for `credential`.
pub(crate) fn login(credential: Option<&Login>) -> u64 {
    credential.map_or(0, Login::id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_facts::limits::ImageLimits;
    use crate::image_facts::ImageMetadata;
    use crate::registry::{disk_cache::DiskCache, Facts, Metrics, Resolver, ResolverConfig};
    use std::time::Duration;

    /// Nothing listens there: every request fails at once.
    const NOWHERE: &str = "127.0.0.1:9";

    fn digest(i: usize) -> String {
        format!("sha256:{i:064x}")
    }

    /// A resolver whose `--cache-dir` holds `images` digest-pinned images,
    /// each declaring a base image by tag, so that resolving one fills the
    /// metadata, disk, supply-chain and tag caches.
    fn resolver(dir: &std::path::Path, images: usize) -> Resolver {
        let disk = DiskCache::new(dir.to_owned(), u64::MAX);
        let base = [
            (
                "org.opencontainers.image.base.name",
                format!("{NOWHERE}/base:1"),
            ),
            ("org.opencontainers.image.base.digest", digest(0)),
        ];
        for i in 1..=images {
            let annotations = base.iter().map(|(k, v)| (k.to_string(), v.clone()));
            let metadata = ImageMetadata::bounded(
                digest(i),
                1,
                None,
                Default::default(),
                annotations.collect(),
                &ImageLimits::default(),
            );
            let pinned: Arc<str> = format!("{NOWHERE}/app{i}@{}", digest(i)).into();
            disk.insert((pinned, 0), Arc::new(metadata));
        }
        let second = Duration::from_secs(1);
        let config = ResolverConfig {
            platform: "linux/amd64".parse().unwrap(),
            cache_duration: Duration::from_secs(600),
            error_cache_duration: Duration::from_secs(600),
            insecure_registries: vec![NOWHERE.into()],
            timeout: second,
            registry_concurrency: 10,
            registry_rps: 1000.0,
            image_limits: Default::default(),
            referrers: false,
            referrers_cache_duration: second,
            image_filter: Default::default(),
            verify: Default::default(),
            versions: None,
            disk_cache: Some(disk),
        };
        Resolver::new(config, Metrics::new(&prometheus::Registry::new())).unwrap()
    }

    #[tokio::test]
    async fn every_cache_of_a_resolved_image_holds_one_copy_of_its_reference() {
        const IMAGES: usize = 20;
        let dir = tempfile::tempdir().unwrap();
        let resolver = resolver(dir.path(), IMAGES);
        for _ in 0..2 {
            for i in 1..=IMAGES {
                let image = format!("{NOWHERE}/app{i}@{}", digest(i));
                let metadata = resolver.resolve_facts(&image, &[], Facts::All).await;
                let metadata = metadata.0.unwrap();
                assert_eq!(metadata.supply_chain.base.as_ref().unwrap().outdated, None);
            }
        }
        resolver.metadata.run_pending_tasks().await;
        let (composed, seen) = resolver.supply_chain.keys();
        let disk = resolver.config.disk_cache.as_deref().unwrap();
        let held: Vec<Arc<(Arc<str>, u64)>> = resolver.metadata.iter().map(|(k, _)| k).collect();
        assert_eq!(held.len(), IMAGES);
        for key in held {
            let shared = |other: &Key| Arc::ptr_eq(&key.0, &other.0);
            assert!(composed.iter().any(shared), "{}", key.0);
            assert!(seen.iter().any(shared), "{}", key.0);
            assert!(disk.keys().iter().any(shared), "{}", key.0);
        }
        // The images' pinned references and their base's tag, each once.
        assert_eq!(resolver.keys.len(), IMAGES + 1);
    }

    #[test]
    fn equal_references_share_one_copy_whichever_way_they_are_written() {
        let keys = Keys::default();
        let parsed = crate::reference::parse("nginx:1.27").unwrap();
        let a = keys.of(&parsed);
        let b = keys.of(format_args!("{}/{}:1.27", "docker.io", "library/nginx"));
        assert_eq!(&*a, "docker.io/library/nginx:1.27");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(keys.len(), 1);
    }
}
