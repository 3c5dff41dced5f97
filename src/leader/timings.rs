//! The election's periods, derived from the lease duration.

use std::time::Duration;

/// The periods derived from the lease duration, in client-go's ratios
/// (15 s lease, 10 s renew deadline, 2 s retry period).
#[derive(Debug, Clone, Copy)]
pub(super) struct Timings {
    /// `leaseDurationSeconds` written to the Lease: the duration rounded
    /// up to whole seconds (at least 1).
    pub(super) lease_seconds: i32,
    /// How long a Lease without `leaseDurationSeconds` lasts.
    pub(super) lease_duration: Duration,
    /// A leader renews this long after its last successful write.
    pub(super) renew_interval: Duration,
    /// A leader that could not renew for this long stops leading. Shorter
    /// than the lease duration, so it stops before anyone may take over.
    pub(super) renew_deadline: Duration,
    /// How often a candidate reads the Lease, and a failed renewal is retried.
    pub(super) retry_period: Duration,
    /// The longest wait between two attempts of a candidate the API keeps
    /// refusing or not answering: long enough not to hammer the API (and
    /// the log) for hours, short enough that a fixed Role is noticed soon.
    pub(super) max_backoff: Duration,
}

impl Timings {
    pub(super) fn new(lease_duration: Duration) -> Timings {
        let lease_duration = lease_duration.max(Duration::from_millis(100));
        let seconds = lease_duration.as_secs() + u64::from(lease_duration.subsec_nanos() > 0);
        Timings {
            lease_seconds: i32::try_from(seconds.max(1)).unwrap_or(i32::MAX),
            lease_duration,
            renew_interval: lease_duration / 3,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration / 7,
            max_backoff: lease_duration * 2,
        }
    }

    /// The wait after `failures` failed steps in a row: the retry period,
    /// doubled for each failure after the first, at most `max_backoff`.
    pub(super) fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.retry_period
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_follow_client_go_ratios_and_round_the_lease_up() {
        let t = Timings::new(Duration::from_secs(15));
        assert_eq!(t.lease_seconds, 15);
        assert_eq!(t.renew_interval, Duration::from_secs(5));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert!(t.retry_period > Duration::from_secs(2) && t.retry_period < Duration::from_secs(3));
        let t = Timings::new(Duration::from_millis(1500));
        assert_eq!(t.lease_seconds, 2, "never shorter than asked for");
        assert!(t.renew_deadline < t.lease_duration);
    }

    #[test]
    fn a_refused_candidate_backs_off_exponentially_up_to_twice_the_lease() {
        let t = Timings::new(Duration::from_secs(14));
        let waits: Vec<u64> = (1..=7).map(|n| t.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 28, 28, 28]);
        assert_eq!(t.backoff(u32::MAX), Duration::from_secs(28));
    }
}
