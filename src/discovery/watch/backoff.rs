//! The watchers' retry delays.

use std::time::Duration;

/// The first retry delay; it doubles per failed attempt up to
/// [`WatchOptions::max_backoff`] (client-go's reflector starts at 800 ms too).
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(800);

/// Retry delays: doubling from [`FIRST_BACKOFF`] up to a maximum, with
/// jitter. Unlike kube-runtime's default (which only resets 120 s after the
/// last failure), it starts over as soon as the API server answers after
/// being unreachable, so the backoff grown during an outage does not delay
/// the re-list after it.
pub(super) struct Backoff {
    attempts: u32,
    max: Duration,
    /// The last failure was a connection that did not get an answer.
    unreachable: bool,
}

impl Backoff {
    pub(super) fn new(max: Duration) -> Backoff {
        Backoff {
            attempts: 0,
            max,
            unreachable: false,
        }
    }

    pub(super) fn succeeded(&mut self) {
        self.attempts = 0;
        self.unreachable = false;
    }

    /// The wait before the next attempt after a failure.
    pub(super) fn delay(&mut self, unreachable: bool) -> Duration {
        if self.unreachable && !unreachable {
            self.attempts = 0;
        }
        self.unreachable = unreachable;
        let full = FIRST_BACKOFF
            .saturating_mul(1u32 << self.attempts.min(16))
            .min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        // Between half and all of it, so watchers that failed together
        // (every kind, every replica) do not retry together.
        full.mul_f64(0.5 + 0.5 * jitter())
    }
}

/// A number in [0, 1) that differs between calls; not for cryptography.
pub(super) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
