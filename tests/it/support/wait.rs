//! Waiting on a condition instead of sleeping for a guessed time.
//!
//! A fixed sleep is either too short on a loaded machine (the test flakes)
//! or too long everywhere else (the suite crawls); polling the condition the
//! test actually needs is neither. Each helper answers whether the condition
//! came true within the timeout, so the caller asserts with its own message
//! (built only on failure, e.g. with the pusher's log):
//!
//! ```ignore
//! assert!(
//!     wait_until(Duration::from_secs(30), || !receiver.received().is_empty()).await,
//!     "nothing pushed\n{}",
//!     pusher.child.logs()
//! );
//! ```

use std::time::{Duration, Instant};

/// How often a condition is polled: often enough that a test ends soon after
/// the condition holds, rarely enough not to load the machine.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` until it holds (`true`), or until `timeout` has passed
/// (`false`). The condition is checked once more at the deadline.
pub async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || condition().then_some(()))
        .await
        .is_some()
}

/// [`wait_until`] for a condition that has to await (an HTTP request, a
/// query).
pub async fn wait_until_async(timeout: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    wait_for_async(timeout, async || condition().await.then_some(()))
        .await
        .is_some()
}

/// Polls `probe` until it returns a value, or gives up after `timeout`.
pub async fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    wait_for_async(timeout, async || probe()).await
}

/// [`wait_for`] for a probe that has to await.
pub async fn wait_for_async<T>(
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        // Read the clock before probing, so a slow probe that started in
        // time still counts.
        let in_time = Instant::now() < deadline;
        if let Some(value) = probe().await {
            return Some(value);
        }
        if !in_time {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Samples `invariant` for `period`: `Err` with the time it first failed,
/// `Ok` if it held at every sample. For the tests that check something does
/// *not* happen for a while, where there is no event to wait on.
pub async fn holds_for(
    period: Duration,
    mut invariant: impl FnMut() -> bool,
) -> Result<(), Duration> {
    let started = Instant::now();
    loop {
        if !invariant() {
            return Err(started.elapsed());
        }
        if started.elapsed() >= period {
            return Ok(());
        }
        tokio::time::sleep(POLL.min(period)).await;
    }
}
