//! Readiness: whether this replica is doing its job, as `/readyz` reports it.
//!
//! Several parts of the service can each make the replica unfit (no
//! snapshot yet, an inventory gone stale, a sender that died, a lease it may
//! not take), and each knows when it recovers. They record a named failing
//! condition with a reason, and clear it; the replica is ready when none is
//! failing. `/readyz` lists the failing conditions, so an operator reading
//! `kubectl describe` sees why, not just "503".

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The condition failing until the first snapshot is published.
pub const FIRST_SNAPSHOT: &str = "snapshot";

/// The failing conditions of this replica, by name.
#[derive(Debug)]
pub struct Readiness {
    failing: Mutex<BTreeMap<String, String>>,
}

impl Default for Readiness {
    /// Not ready until the first snapshot.
    fn default() -> Self {
        let readiness = Readiness {
            failing: Mutex::new(BTreeMap::new()),
        };
        readiness.fail(FIRST_SNAPSHOT, "no snapshot taken yet");
        readiness
    }
}

impl Readiness {
    /// Marks `condition` failing for `reason`; true when it was not failing.
    pub fn fail(&self, condition: &str, reason: impl Into<String>) -> bool {
        self.lock()
            .insert(condition.to_owned(), reason.into())
            .is_none()
    }

    /// Marks `condition` fine again; true when it was failing.
    pub fn clear(&self, condition: &str) -> bool {
        self.lock().remove(condition).is_some()
    }

    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    /// The failing conditions and their reasons, by name.
    pub fn failing(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(c, r)| (c.clone(), r.clone()))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        // Every update is one map operation: a poisoned map is still whole.
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_no_condition_fails() {
        let r = Readiness::default();
        assert!(!r.is_ready(), "not ready before the first snapshot");
        assert!(r.clear(FIRST_SNAPSHOT));
        assert!(r.is_ready());
        assert!(r.fail("inventory", "Pod stale for 40s"));
        assert!(!r.fail("inventory", "Pod stale for 45s"), "already failing");
        assert!(r.fail("leader-election", "forbidden"));
        assert_eq!(
            r.failing(),
            vec![
                ("inventory".into(), "Pod stale for 45s".into()),
                ("leader-election".into(), "forbidden".into()),
            ]
        );
        assert!(r.clear("inventory"));
        assert!(!r.clear("inventory"));
        assert!(r.clear("leader-election"));
        assert!(r.is_ready());
    }
}
