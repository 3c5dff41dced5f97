//! When an answer of the resolver stops being valid.
//!
//! Each cached fact that can change (a tag's digest, a failure, what is
//! attached to an image, a version answer) carries the instant it expires,
//! set once when it is fetched; the cache drops it at that instant (moka
//! exposes no expiry, so the value holds it). A lookup run inside
//! [`valid_until`] collects the earliest expiry of every fact it used, so
//! that the pipeline can reuse its answer until then without asking again
//! (`pipeline::memo`). Facts that never change (metadata by digest) carry
//! none.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

tokio::task_local! {
    /// The earliest expiry of the facts the current lookup used.
    static EARLIEST: Arc<Mutex<Option<Instant>>>;
}

/// Runs `lookup`, and returns with its answer the earliest instant any
/// cached fact it used expires (`None`: nothing it used can change).
pub async fn valid_until<T>(lookup: impl Future<Output = T>) -> (T, Option<Instant>) {
    let earliest = Arc::new(Mutex::new(None));
    let answer = EARLIEST.scope(earliest.clone(), lookup).await;
    let until = *earliest.lock().unwrap_or_else(|e| e.into_inner());
    // A lookup within another: the outer one used these facts too.
    used(until);
    (answer, until)
}

/// Notes that the current lookup used a fact valid until `until`.
pub(crate) fn used(until: Option<Instant>) {
    let Some(until) = until else {
        return;
    };
    // Outside [`valid_until`] nobody asks: nothing to note.
    let _ = EARLIEST.try_with(|earliest| {
        let mut earliest = earliest.lock().unwrap_or_else(|e| e.into_inner());
        *earliest = Some(earliest.map_or(until, |e| e.min(until)));
    });
}

/// A cached value and the instant it expires (`None`: never, it is
/// content-addressed; it stays while it is read).
#[derive(Debug, Clone)]
pub(crate) struct Stamped<T> {
    pub value: T,
    pub until: Option<Instant>,
}

impl<T> Stamped<T> {
    /// `value`, valid for `valid` from now (`None`: for ever).
    pub(crate) fn new(value: T, valid: Option<Duration>) -> Self {
        Stamped {
            value,
            until: valid.map(|v| Instant::now() + v),
        }
    }

    /// The value, noting its expiry for the current lookup.
    pub(crate) fn used(self) -> T {
        used(self.until);
        self.value
    }
}

/// The expiry policy of caches of [`Stamped`] values: an entry goes at the
/// instant it carries; one without is kept while read within `idle`.
pub(crate) struct AtStamp {
    pub idle: Option<Duration>,
}

impl<K, T> moka::Expiry<K, Stamped<T>> for AtStamp {
    fn expire_after_create(&self, _: &K, value: &Stamped<T>, created: Instant) -> Option<Duration> {
        match value.until {
            Some(until) => Some(until.saturating_duration_since(created)),
            None => self.idle,
        }
    }

    fn expire_after_read(
        &self,
        _: &K,
        value: &Stamped<T>,
        _: Instant,
        left: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        match value.until {
            Some(_) => left,
            None => self.idle.or(left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lookup_is_valid_until_the_earliest_fact_it_used_expires() {
        let now = Instant::now();
        let (answer, until) = valid_until(async {
            used(Some(now + Duration::from_secs(30)));
            used(None);
            Stamped::new(1, Some(Duration::from_secs(3600))).used();
            used(Some(now + Duration::from_secs(10)));
            // A nested lookup's facts count for the outer one too.
            let (_, inner) = valid_until(async { used(Some(now + Duration::from_secs(5))) }).await;
            assert_eq!(inner, Some(now + Duration::from_secs(5)));
            7
        })
        .await;
        assert_eq!(answer, 7);
        assert_eq!(until, Some(now + Duration::from_secs(5)));
        let (_, never) = valid_until(async { Stamped::new((), None).used() }).await;
        assert_eq!(never, None);
        // Outside a lookup, noting is harmless.
        used(Some(now));
    }
}
