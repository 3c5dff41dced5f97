//! Politeness towards registries, per host: a bound on requests in flight,
//! a token-bucket rate, and a pause after a 429 — so one busy registry
//! slows only its own lookups, and Docker Hub's rate limits are respected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a host is left alone after answering 429. oci-client does not
/// expose `Retry-After`, so the pause doubles on each 429 in a row instead.
const FIRST_PAUSE: Duration = Duration::from_secs(10);
const MAX_PAUSE: Duration = Duration::from_secs(300);

pub(crate) struct HostLimiter {
    concurrency: usize,
    interval: Duration,
    /// Requests allowed back to back before the rate applies.
    burst: u32,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
}

struct Host {
    in_flight: Arc<Semaphore>,
    state: Mutex<HostState>,
}

struct HostState {
    /// Theoretical arrival time of the next request (GCRA).
    next: Instant,
    paused_until: Option<Instant>,
    pause: Duration,
}

impl HostLimiter {
    pub(crate) fn new(concurrency: usize, requests_per_second: f64) -> Self {
        HostLimiter {
            concurrency: concurrency.max(1),
            interval: Duration::from_secs_f64(1.0 / requests_per_second.max(0.001)),
            burst: requests_per_second.ceil().max(1.0) as u32,
            hosts: Mutex::default(),
        }
    }

    fn host(&self, host: &str) -> Arc<Host> {
        let mut hosts = self.hosts.lock().expect("limiter poisoned");
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| {
                Arc::new(Host {
                    in_flight: Arc::new(Semaphore::new(self.concurrency)),
                    state: Mutex::new(HostState {
                        next: Instant::now(),
                        paused_until: None,
                        pause: FIRST_PAUSE,
                    }),
                })
            })
            .clone()
    }

    /// Waits for a slot at `host`; the request may run while the permit lives.
    pub(crate) async fn acquire(&self, host: &str) -> OwnedSemaphorePermit {
        let host = self.host(host);
        let permit = host
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let start = {
            let mut state = host.state.lock().expect("limiter poisoned");
            let now = Instant::now();
            let earliest = state
                .next
                .checked_sub(self.interval * (self.burst - 1))
                .unwrap_or(now)
                .max(now);
            let start = state.paused_until.map_or(earliest, |p| p.max(earliest));
            state.next = state.next.max(now).max(start) + self.interval;
            start
        };
        tokio::time::sleep_until(start).await;
        permit
    }

    /// The host answered 429: leave it alone for a while, longer each time in a row.
    pub(crate) fn back_off(&self, host: &str) {
        let host = self.host(host);
        let mut state = host.state.lock().expect("limiter poisoned");
        let pause = state.pause;
        state.paused_until = Some(Instant::now() + pause);
        state.pause = (pause * 2).min(MAX_PAUSE);
        tracing::warn!(?pause, "registry is rate limiting; pausing requests to it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_is_per_host_after_a_burst() {
        let limiter = HostLimiter::new(10, 5.0);
        let start = Instant::now();
        for _ in 0..5 {
            drop(limiter.acquire("a").await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst of 5 goes at once");
        drop(limiter.acquire("a").await);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(200),
            "then 5 per second"
        );
        drop(limiter.acquire("b").await);
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(200),
            "another host is not slowed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded_per_host() {
        let limiter = HostLimiter::new(2, 1000.0);
        let first = limiter.acquire("a").await;
        let _second = limiter.acquire("a").await;
        let third = tokio::time::timeout(Duration::from_secs(1), limiter.acquire("a")).await;
        assert!(third.is_err(), "a third request waits");
        drop(first);
        let _permit = tokio::time::timeout(Duration::from_secs(1), limiter.acquire("a"))
            .await
            .expect("runs once one finished");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_only_that_host_longer_each_time() {
        let limiter = HostLimiter::new(10, 1000.0);
        limiter.back_off("busy");
        let start = Instant::now();
        drop(limiter.acquire("other").await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(limiter.acquire("busy").await);
        assert_eq!(start.elapsed(), FIRST_PAUSE);
        limiter.back_off("busy");
        let again = Instant::now();
        drop(limiter.acquire("busy").await);
        assert_eq!(again.elapsed(), FIRST_PAUSE * 2);
    }
}
