//! One shared copy of each string that workloads repeat.
//!
//! At 100k containers most of a workload's strings are values seen before:
//! a hundred namespaces, a handful of `jsonpath`s, ~10k images, container
//! names, service accounts, pull secret names, one `imageID` per image.
//! Each source reduces its objects through a [`StringPool`], so equal
//! values are one allocation, shared by every workload that has them and,
//! downstream, by the series built from them.
//!
//! The pool keeps only what is in use: a value nothing but the pool holds
//! any more is forgotten when the pool is pruned (the sources prune when a
//! snapshot or a re-list replaces what they held), and at the latest after
//! as many new values as the pool held, so object churn cannot grow it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// New values after which a pool prunes itself however long it is: small
/// enough to bound a small pool, large enough to cost little.
const PRUNE_AFTER_MIN: usize = 4096;

/// Shared copies of the strings workloads repeat; see the module docs.
#[derive(Debug, Default)]
pub struct StringPool {
    inner: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    strings: HashSet<Arc<str>>,
    /// Values added since the last prune.
    added: usize,
    /// Values the last prune kept.
    kept: usize,
}

impl Pool {
    fn prune(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.added = 0;
        self.kept = self.strings.len();
        if self.strings.capacity() > 2 * self.strings.len() + 64 {
            self.strings.shrink_to_fit();
        }
    }
}

/// The pool, locked for the values of one object.
pub struct Strings<'a> {
    pool: MutexGuard<'a, Pool>,
}

impl StringPool {
    /// Locks the pool for one object's values, so that an object costs one
    /// lock, not one per string.
    pub fn lock(&self) -> Strings<'_> {
        // Every update is one set operation, so a pool left by a panic is
        // still whole.
        Strings {
            pool: self.inner.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Forgets the values that nothing but the pool holds.
    pub fn prune(&self) {
        self.lock().pool.prune();
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.lock().pool.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Strings<'_> {
    /// The shared copy of `value`.
    pub fn get(&mut self, value: &str) -> Arc<str> {
        if let Some(shared) = self.pool.strings.get(value) {
            return shared.clone();
        }
        let pool = &mut *self.pool;
        // Pruning after as many additions as the last prune kept costs O(1)
        // per addition, and keeps the pool within about twice what is in use.
        if pool.added >= PRUNE_AFTER_MIN.max(pool.kept) {
            pool.prune();
        }
        let shared: Arc<str> = Arc::from(value);
        pool.strings.insert(shared.clone());
        pool.added += 1;
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy_and_unused_ones_are_forgotten() {
        let pool = StringPool::default();
        let a = pool.lock().get("shop");
        let b = pool.lock().get("shop");
        assert!(Arc::ptr_eq(&a, &b));
        let gone = pool.lock().get("pod-that-ends");
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
            .map(|i| pool.lock().get(&format!("kept-{i}")))
            .collect();
        for i in 0..100_000 {
            // Used for a moment, then never again, and never pruned by hand.
            drop(pool.lock().get(&format!("churn-{i}")));
        }
        assert!(
            pool.len() <= kept.len() + PRUNE_AFTER_MIN + 1,
            "{} values held",
            pool.len()
        );
        assert!(kept.iter().all(|k| Arc::ptr_eq(k, &pool.lock().get(k))));
    }
}
