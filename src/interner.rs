//! One shared copy of each string that workloads and series repeat.
//!
//! At 100k containers most strings are values seen before: a hundred
//! namespaces, a handful of `jsonpath`s, ~10k images, container names,
//! service accounts, pull secret names, one `imageID` per image. Each
//! source reduces its objects through a [`StringPool`] (an [`Interner`] its
//! watchers share), so equal values are one allocation, shared by every
//! workload that has them and, downstream, by the series model's table of
//! label values (`series::symbols`), which keeps a source's string rather
//! than a copy of it.
//!
//! An interner keeps only what is in use: a value nothing but the
//! interner holds any more is forgotten when it is pruned (the sources
//! prune when a snapshot or a re-list replaces what they held), and at the
//! latest after as many new values as it held, so churn (pods come and go)
//! cannot grow it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// New values after which an interner prunes itself however long it is:
/// small enough to bound a small interner, large enough to cost little.
const PRUNE_AFTER_MIN: usize = 4096;

/// Shared copies of repeated strings; see the module docs.
#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
    /// Values added since the last prune.
    added: usize,
    /// Values the last prune kept.
    kept: usize,
}

impl Interner {
    /// The shared copy of `value`.
    pub fn intern(&mut self, value: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(value) {
            return shared.clone();
        }
        // Pruning after as many additions as the last prune kept costs O(1)
        // per addition, and keeps the interner within about twice what is
        // in use.
        if self.added >= PRUNE_AFTER_MIN.max(self.kept) {
            self.prune();
        }
        let shared: Arc<str> = Arc::from(value);
        self.strings.insert(shared.clone());
        self.added += 1;
        shared
    }

    /// Forgets the values nothing but the interner holds.
    pub fn prune(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.added = 0;
        self.kept = self.strings.len();
        if self.strings.capacity() > 2 * self.strings.len() + 64 {
            self.strings.shrink_to_fit();
        }
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// An [`Interner`] that several holders share (the sources of discovery
/// and their watchers), locked once per object.
#[derive(Debug, Default)]
pub struct StringPool {
    inner: Mutex<Interner>,
}

impl StringPool {
    /// Locks the pool for one object's values, so that an object costs one
    /// lock, not one per string.
    pub fn lock(&self) -> MutexGuard<'_, Interner> {
        // Every update is one set operation, so a pool left by a panic is
        // still whole.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the values that nothing but the pool holds.
    pub fn prune(&self) {
        self.lock().prune();
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy_and_unused_ones_are_forgotten() {
        let pool = StringPool::default();
        let a = pool.lock().intern("shop");
        let b = pool.lock().intern("shop");
        assert!(Arc::ptr_eq(&a, &b));
        let gone = pool.lock().intern("pod-that-ends");
        assert_eq!(pool.len(), 2);
        drop(gone);
        pool.prune();
        assert_eq!(pool.len(), 1);
        drop((a, b));
        pool.prune();
        assert!(pool.is_empty());
    }

    #[test]
    fn churn_does_not_grow_the_pool() {
        let pool = StringPool::default();
        let kept: Vec<Arc<str>> = (0..10)
            .map(|i| pool.lock().intern(&format!("kept-{i}")))
            .collect();
        for i in 0..100_000 {
            // Used for a moment, then never again, and never pruned by hand.
            drop(pool.lock().intern(&format!("churn-{i}")));
        }
        assert!(
            pool.len() <= kept.len() + PRUNE_AFTER_MIN + 1,
            "{} values held",
            pool.len()
        );
        assert!(kept.iter().all(|k| Arc::ptr_eq(k, &pool.lock().intern(k))));
    }

    #[test]
    fn the_interner_keeps_one_copy_and_lets_unused_values_go() {
        let mut interner = Interner::default();
        let a = interner.intern("namespace-1");
        let b = interner.intern("namespace-1");
        assert!(Arc::ptr_eq(&a, &b));
        let gone = interner.intern("pod-that-ends");
        assert_eq!(interner.len(), 2);
        drop(gone);
        interner.prune();
        assert_eq!(interner.len(), 1);
        drop((a, b));
        interner.prune();
        assert!(interner.is_empty());
    }
}
