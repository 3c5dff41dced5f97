//! Politeness towards registries, per host: a bound on requests in flight,
//! a token-bucket rate, and a pause after a 429 — so one busy registry
//! slows only its own lookups, and Docker Hub's rate limits are respected.
//!
//! During a pause, lookups for that host fail at once as rate limited
//! instead of queueing: a `--once` run still pushes everything else in
//! time, and the failures are retried after `--error-cache-duration`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a host is left alone after a 429 without `Retry-After`: doubling
/// on each 429 in a row. `Retry-After` wins, up to [`MAX_PAUSE`] (Docker Hub
/// may name hours; an inventory hours old is worse than a retry).
const FIRST_PAUSE: Duration = Duration::from_secs(10);
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Hosts remembered before idle ones are forgotten: redirects and token
/// challenges name hosts, and a registry naming ever-new ones must not
/// grow the map. An idle host (no request in flight, no pause) loses
/// nothing by being forgotten but its rate history.
const MAX_HOSTS: usize = 1_000;

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

impl Host {
    /// Whether forgetting this host would lose something: a request in
    /// flight holds a permit, a pause or a rate debt is still running.
    fn is_busy(&self, now: Instant) -> bool {
        // Permits in flight hold clones of the semaphore.
        if Arc::strong_count(&self.in_flight) > 1 {
            return true;
        }
        let state = self.state.lock().expect("limiter poisoned");
        state.paused_until.is_some_and(|until| until > now) || state.next > now
    }
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
        if hosts.len() >= MAX_HOSTS && !hosts.contains_key(host) {
            let now = Instant::now();
            hosts.retain(|_, h| Arc::strong_count(h) > 1 || h.is_busy(now));
        }
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

    /// Waits for a slot at `host`; the request may run while the permit
    /// lives. A paused host gives no slot: the error is how long it stays paused.
    pub(crate) async fn acquire(&self, host: &str) -> Result<OwnedSemaphorePermit, Duration> {
        let host = self.host(host);
        host.paused_for()?;
        let permit = host
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        host.paused_for()?;
        let start = {
            let mut state = host.state.lock().expect("limiter poisoned");
            let now = Instant::now();
            let earliest = state
                .next
                .checked_sub(self.interval * (self.burst - 1))
                .unwrap_or(now)
                .max(now);
            state.next = state.next.max(now).max(earliest) + self.interval;
            earliest
        };
        tokio::time::sleep_until(start).await;
        Ok(permit)
    }

    /// The host answered 429: leave it alone for `retry_after`, or, without
    /// one, for a while that grows with each 429 in a row. Returns the pause.
    pub(crate) fn back_off(&self, host: &str, retry_after: Option<Duration>) -> Duration {
        let host = self.host(host);
        let mut state = host.state.lock().expect("limiter poisoned");
        let pause = match retry_after {
            Some(wait) => wait.min(MAX_PAUSE),
            None => {
                let pause = state.pause;
                state.pause = (pause * 2).min(MAX_PAUSE);
                pause
            }
        };
        state.paused_until = Some(Instant::now() + pause);
        pause
    }

    /// The host answered: the next 429 without `Retry-After` starts the
    /// doubling afresh.
    pub(crate) fn answered(&self, host: &str) {
        let host = self.host(host);
        host.state.lock().expect("limiter poisoned").pause = FIRST_PAUSE;
    }
}

impl Host {
    fn paused_for(&self) -> Result<(), Duration> {
        let state = self.state.lock().expect("limiter poisoned");
        match state.paused_until {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
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
            drop(limiter.acquire("a").await.unwrap());
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst of 5 goes at once");
        drop(limiter.acquire("a").await.unwrap());
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(200),
            "then 5 per second"
        );
        drop(limiter.acquire("b").await.unwrap());
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
    async fn a_429_pauses_only_that_host_for_retry_after_or_longer_each_time() {
        let limiter = HostLimiter::new(10, 1000.0);
        let pause = limiter.back_off("busy", Some(Duration::from_secs(2)));
        assert_eq!(pause, Duration::from_secs(2));
        assert!(
            limiter.acquire("other").await.is_ok(),
            "another host is not paused"
        );
        assert_eq!(
            limiter.acquire("busy").await.err(),
            Some(Duration::from_secs(2)),
            "no request during the pause"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(limiter.acquire("busy").await.is_ok(), "the pause is over");

        assert_eq!(limiter.back_off("busy", None), FIRST_PAUSE);
        assert_eq!(limiter.back_off("busy", None), FIRST_PAUSE * 2);
        assert_eq!(
            limiter.back_off("busy", Some(Duration::from_secs(86_400))),
            MAX_PAUSE
        );
        assert_eq!(
            limiter.back_off("busy", Some(Duration::MAX)),
            MAX_PAUSE,
            "Retry-After: 18446744073709551615 cannot overflow the pause"
        );
        limiter.answered("busy");
        assert_eq!(limiter.back_off("busy", None), FIRST_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn hosts_named_by_redirects_cannot_grow_the_map() {
        let limiter = HostLimiter::new(10, 1000.0);
        let held = limiter.acquire("busy").await.unwrap();
        limiter.back_off("paused", Some(Duration::from_secs(60)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 0..5 * MAX_HOSTS {
            drop(
                limiter
                    .acquire(&format!("mirror-{i}.example"))
                    .await
                    .unwrap(),
            );
            // Idle once its rate slot has passed.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let hosts = limiter.hosts.lock().unwrap();
        assert!(hosts.len() <= MAX_HOSTS, "{} hosts kept", hosts.len());
        assert!(
            hosts.contains_key("busy"),
            "a host with a request in flight stays"
        );
        assert!(hosts.contains_key("paused"), "a paused host stays");
        drop(hosts);
        drop(held);
    }
}
