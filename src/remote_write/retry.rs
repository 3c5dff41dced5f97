//! The retry-and-pause policy of one endpoint: exponential backoff with
//! jitter within the retry window, and the pause a receiver asks for with
//! `Retry-After`, which holds back every request to it, clamped to
//! `--retry-max-pause`, with no arithmetic on instants that can overflow.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::config::{RetryPolicy, LONGEST_WAIT};
use super::outcome::{Attempt, Failure, FailureClass};

/// The pause a receiver asked for with `Retry-After`.
pub(super) struct Pause {
    /// The endpoint's display name, for log lines.
    endpoint: String,
    max_pause: Duration,
    /// End of the pause; kept until the first request after it, which logs
    /// that it is over.
    until: Mutex<Option<Instant>>,
}

impl Pause {
    pub(super) fn new(endpoint: String, max_pause: Duration) -> Self {
        Pause {
            endpoint,
            max_pause,
            until: Mutex::new(None),
        }
    }

    /// How much of the receiver's pause is left, if one is in force.
    pub(super) fn left(&self) -> Option<Duration> {
        let until = (*self.until.lock().unwrap_or_else(PoisonError::into_inner))?;
        until
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    /// Starts (or extends) a pause the receiver asked for, cut to
    /// `--retry-max-pause`; logs when a pause starts, not when it is extended.
    pub(super) fn extend(&self, asked: Duration, failure: &Failure) {
        let pause = asked.min(self.max_pause).min(LONGEST_WAIT);
        let now = Instant::now();
        let Some(until) = now.checked_add(pause).filter(|_| !pause.is_zero()) else {
            return;
        };
        let mut slot = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        match *slot {
            Some(current) if current >= until => {}
            Some(_) => *slot = Some(until),
            None => {
                *slot = Some(until);
                warn!(
                    endpoint = %self.endpoint,
                    reason = failure.reason,
                    asked = %humantime::format_duration(round(asked.min(LONGEST_WAIT))),
                    pause = %humantime::format_duration(round(pause)),
                    "the receiver asked for a pause (Retry-After): no requests to it until the pause ends (at most --retry-max-pause); the newest snapshot waits"
                );
            }
        }
    }

    /// Forgets a pause that is over, saying so once.
    pub(super) fn end(&self) {
        let mut slot = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some_and(|until| until <= Instant::now()) {
            *slot = None;
            info!(endpoint = %self.endpoint, "the receiver's pause is over; pushing again");
        }
    }

    /// Waits out a pause in force before a request started at `started`:
    /// the request's outcome when it is not to be sent at all (a newer
    /// snapshot is waiting, or the pause outlasts the retry window).
    /// `last` is the request's previous failure, if it had one.
    pub(super) async fn wait(
        &self,
        last: &Option<Failure>,
        started: Instant,
        retry: &RetryPolicy,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> Option<Attempt> {
        let pause = self.left()?;
        let failure = last.clone().unwrap_or_else(|| Failure {
            class: FailureClass::Paused,
            reason: "the receiver asked for a pause (Retry-After)".into(),
        });
        if superseded() {
            return Some(Attempt::Superseded(failure));
        }
        if started.elapsed().saturating_add(pause) > retry.retry_for {
            debug!(endpoint = %self.endpoint, reason = failure.reason, "the receiver's pause outlasts the retry window; giving up on this request");
            return Some(Attempt::Rejected(Failure {
                class: failure.class,
                reason: format!(
                    "{}; the receiver's pause (Retry-After, {} left) outlasts the retry window of {}",
                    failure.reason,
                    humantime::format_duration(round(pause)),
                    humantime::format_duration(retry.retry_for)
                ),
            }));
        }
        if sleep_unless_superseded(pause, superseded).await {
            return Some(Attempt::Superseded(failure));
        }
        None
    }
}

/// Between half and all of `backoff`, so that many pushers do not retry in step.
pub(super) fn jitter(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let backoff = backoff.min(LONGEST_WAIT);
    let random = RandomState::new().hash_one(Instant::now()) % 1000;
    (backoff / 2).saturating_add(backoff.mul_f64(random as f64 / 2000.0))
}

/// Sleeps for `wait`, but gives up (true) as soon as a newer snapshot is
/// waiting: retrying or waiting out a pause for an old one is pointless.
pub(super) async fn sleep_unless_superseded(
    wait: Duration,
    superseded: &(dyn Fn() -> bool + Sync),
) -> bool {
    const STEP: Duration = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            return false;
        }
        if superseded() {
            return true;
        }
        tokio::time::sleep(left.min(STEP)).await;
    }
}

/// Whole milliseconds, for log lines.
fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure {
            class: FailureClass::RateLimited,
            reason: "HTTP 429".into(),
        }
    }

    fn pause() -> Pause {
        Pause::new(
            "http://127.0.0.1:1/api/v1/write".into(),
            Duration::from_secs(300),
        )
    }

    #[test]
    fn jitter_stays_within_half_and_full_backoff() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(
                j >= Duration::from_millis(50) && j <= Duration::from_millis(100),
                "{j:?}"
            );
        }
    }

    #[test]
    fn absurd_waits_saturate_instead_of_overflowing() {
        let pause = pause();
        assert_eq!(pause.left(), None);
        // Retry-After: 18446744073709551615, and the largest Duration there is.
        for asked in [Duration::from_secs(u64::MAX), Duration::MAX] {
            pause.extend(asked, &failure());
            let left = pause.left().expect("a pause is in force");
            assert!(
                left <= Duration::from_secs(300),
                "cut to max_pause: {left:?}"
            );
            assert!(left > Duration::from_secs(290), "{left:?}");
        }
        assert!(jitter(Duration::MAX) <= LONGEST_WAIT);
        assert!(jitter(Duration::MAX) >= LONGEST_WAIT / 2);
        assert_eq!(round(Duration::MAX), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn a_pause_is_extended_not_shortened_and_zero_is_none() {
        let pause = pause();
        pause.extend(Duration::ZERO, &failure());
        assert_eq!(pause.left(), None, "Retry-After: 0 is no pause");
        pause.extend(Duration::from_secs(100), &failure());
        pause.extend(Duration::from_secs(10), &failure());
        assert!(pause.left().unwrap() > Duration::from_secs(90));
        pause.extend(Duration::from_secs(200), &failure());
        assert!(pause.left().unwrap() > Duration::from_secs(190));
        pause.end();
        assert!(pause.left().is_some(), "not over yet");
    }
}
