//! Tokens cached until shortly before they expire, failures for the error
//! TTL, one fetch at a time per key.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::debug;

use super::{Context, Failure};

/// A cached token or failure and when to ask again.
struct Cached<T> {
    value: Result<T, Failure>,
    refresh_at: SystemTime,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<Cached<T>>>>;

/// Tokens by key, each fetched by one caller at a time (the others wait for
/// its answer), kept until shortly before expiry, failures for the error TTL.
pub(crate) struct TokenCache<T> {
    what: &'static str,
    slots: std::sync::Mutex<HashMap<String, Slot<T>>>,
}

impl<T: Clone> TokenCache<T> {
    pub(crate) fn new(what: &'static str) -> TokenCache<T> {
        TokenCache {
            what,
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cached value for `key`, or the value `fetch` gives with its
    /// expiry time.
    pub(crate) async fn get<F, Fut>(
        &self,
        key: &str,
        context: &Context,
        fetch: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, SystemTime), Failure>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key.to_owned()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        let now = context.now();
        match cached.as_ref() {
            Some(entry) if now < entry.refresh_at => return entry.value.clone(),
            Some(entry) if entry.value.is_ok() => {
                debug!(token = self.what, key, "refreshing token before it expires");
            }
            Some(_) => debug!(token = self.what, key, "asking again after a failure"),
            None => debug!(token = self.what, key, "fetching token"),
        }
        let result = fetch().await;
        let now = context.now();
        let entry = match result {
            Ok((value, expires_at)) => {
                let lifetime = expires_at.duration_since(now).unwrap_or_default();
                let margin = context.refresh_margin.min(lifetime / 2);
                let refresh_at = expires_at.checked_sub(margin).unwrap_or(now);
                debug!(
                    token = self.what,
                    key,
                    valid_for_secs = lifetime.as_secs(),
                    "token fetched"
                );
                Cached {
                    value: Ok(value),
                    refresh_at,
                }
            }
            Err(failure) => {
                debug!(token = self.what, key, error = ?failure, "token request failed");
                Cached {
                    value: Err(failure),
                    refresh_at: now + context.error_ttl,
                }
            }
        };
        let value = entry.value.clone();
        *cached = Some(entry);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::cloud::{Clock, Settings};
    use std::time::Duration;

    #[tokio::test]
    async fn the_cache_refreshes_before_expiry_and_remembers_failures_briefly() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let offset = Arc::new(AtomicU64::new(0));
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock_offset = offset.clone();
        let settings = Settings {
            clock: Clock::new(move || {
                base + Duration::from_secs(clock_offset.load(Ordering::SeqCst))
            }),
            error_ttl: Duration::from_secs(30),
            refresh_margin: Duration::from_secs(300),
            ..Settings::default()
        };
        let context = Context::new(&settings).unwrap();
        let cache = TokenCache::<u32>::new("test");
        let calls = AtomicU64::new(0);
        let fetch = |ok: bool, lifetime: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            let now = context.now();
            async move {
                if ok {
                    Ok((7, now + Duration::from_secs(lifetime)))
                } else {
                    Err(Failure::Credentials("nope".into()))
                }
            }
        };
        // A one-hour token is used until five minutes before it expires.
        assert_eq!(cache.get("k", &context, || fetch(true, 3600)).await, Ok(7));
        offset.store(3600 - 301, Ordering::SeqCst);
        assert_eq!(cache.get("k", &context, || fetch(true, 3600)).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        offset.store(3600 - 300, Ordering::SeqCst);
        assert_eq!(
            cache.get("k", &context, || fetch(false, 0)).await.ok(),
            None
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The failure is remembered for the error TTL, then asked again.
        offset.store(3600 - 300 + 29, Ordering::SeqCst);
        assert!(cache.get("k", &context, || fetch(true, 60)).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        offset.store(3600 - 300 + 30, Ordering::SeqCst);
        assert_eq!(cache.get("k", &context, || fetch(true, 60)).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // A short-lived token is refreshed half-way through its life.
        let start = 3600 - 300 + 30;
        offset.store(start + 29, Ordering::SeqCst);
        cache.get("k", &context, || fetch(true, 60)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        offset.store(start + 30, Ordering::SeqCst);
        cache.get("k", &context, || fetch(true, 60)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // Other keys are independent.
        cache
            .get("other", &context, || fetch(true, 60))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }
}
