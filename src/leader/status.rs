//! Leadership as the election handle and its background task share it.

use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;
use tokio::time::Instant;

/// Leadership as the [`LeaderElection`] handle and the task share it.
pub(super) struct Status {
    pub(super) leader: watch::Sender<bool>,
    /// While leader: until when the Lease is certainly ours (the start of
    /// the last successful write plus the renew deadline).
    pub(super) valid_until: Mutex<Option<Instant>>,
}

impl Status {
    pub(super) fn is_leader(&self) -> bool {
        *self.leader.borrow()
            && self
                .valid_until()
                .is_some_and(|until| Instant::now() < until)
    }

    fn valid_until(&self) -> Option<Instant> {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Leader until `valid_until`, or not leader (`None`); true when that
    /// changed leadership.
    pub(super) fn set(&self, valid_until: Option<Instant>) -> bool {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = valid_until;
        let leader = valid_until.is_some();
        self.leader.send_if_modified(|current| {
            let changed = *current != leader;
            *current = leader;
            changed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn leadership_lapses_at_the_deadline_on_its_own() {
        let status = Status {
            leader: watch::channel(false).0,
            valid_until: Mutex::new(None),
        };
        let mut changes = status.leader.subscribe();
        assert!(status.set(Some(Instant::now() + Duration::from_secs(60))));
        assert!(status.is_leader());
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert!(!status.set(Some(Instant::now())), "still leader: no change");
        assert!(!status.is_leader(), "past its deadline");
        assert!(status.set(None));
        assert!(!*changes.borrow_and_update());
    }
}
