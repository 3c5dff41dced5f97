//! When snapshots are taken: a fixed interval or a cron expression.
//!
//! Ticks never stack. A tick that overruns the next due time is followed by
//! exactly one immediate tick, which takes the newest snapshot; the missed
//! ones are dropped, since an inventory is a state and only the newest counts.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{Instant, Interval, MissedTickBehavior};

/// A schedule from `--interval` or `--schedule`.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every so often, the first tick at once.
    Interval(Duration),
    /// At the times of a cron expression, in UTC.
    Cron(Box<cron::Schedule>),
}

/// A `--schedule` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("{expr:?} has {fields} fields; a cron expression has 5 (minute hour day month weekday) or 6 (with seconds first)")]
    FieldCount { expr: String, fields: usize },
    #[error("{expr:?} is not a valid cron expression: {reason}")]
    Invalid { expr: String, reason: String },
    #[error("{expr:?} never fires")]
    NeverFires { expr: String },
}

impl Schedule {
    /// Parses a cron expression of five fields (minute first, as Kubernetes
    /// CronJobs write it) or six/seven fields (seconds first, as the cron crate does).
    pub fn parse_cron(expr: &str) -> Result<Schedule, CronError> {
        let fields = expr.split_whitespace().count();
        let normalized = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_owned(),
            _ => {
                return Err(CronError::FieldCount {
                    expr: expr.to_owned(),
                    fields,
                })
            }
        };
        let schedule = cron::Schedule::from_str(&normalized).map_err(|e| CronError::Invalid {
            expr: expr.to_owned(),
            reason: e.to_string(),
        })?;
        if schedule.upcoming(Utc).next().is_none() {
            return Err(CronError::NeverFires {
                expr: expr.to_owned(),
            });
        }
        Ok(Schedule::Cron(Box::new(schedule)))
    }

    /// Time from `now` until the next cron firing; `None` for interval schedules.
    fn cron_delay(&self, now: DateTime<Utc>) -> Option<Duration> {
        match self {
            Schedule::Interval(_) => None,
            Schedule::Cron(cron) => {
                let next = cron.after(&now).next()?;
                Some((next - now).to_std().unwrap_or_default())
            }
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Interval(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => write!(f, "cron {:?}", c.source()),
        }
    }
}

/// Yields the moments at which to take a snapshot.
pub struct Ticker {
    schedule: Schedule,
    interval: Option<Interval>,
    /// Wall-clock time read once, then advanced by tokio's clock: cron
    /// firings follow the tokio timer they sleep on (and tests can pause it).
    origin: (Instant, DateTime<Utc>),
    /// The last cron firing, so one is never taken twice.
    last: Option<DateTime<Utc>>,
}

impl Ticker {
    /// A ticker whose first interval tick is immediate.
    pub fn new(schedule: Schedule) -> Self {
        let interval = match &schedule {
            Schedule::Interval(period) => {
                let mut interval = tokio::time::interval_at(Instant::now(), *period);
                interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
                Some(interval)
            }
            Schedule::Cron(_) => None,
        };
        Ticker {
            schedule,
            interval,
            origin: (Instant::now(), Utc::now()),
            last: None,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now() - self.origin.0;
        self.origin.1 + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        if let Some(interval) = &mut self.interval {
            interval.tick().await;
            return;
        }
        let now = self.now();
        let after = self.last.map_or(now, |last| last.max(now));
        match self.schedule.cron_delay(after) {
            Some(delay) => {
                let delay = delay + (after - now).to_std().unwrap_or_default();
                tokio::time::sleep(delay).await;
                self.last = Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
            }
            // A schedule that has run out of firings (a past year): never tick again.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_field_cron_is_minute_first() {
        let s = Schedule::parse_cron("*/5 * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 1, 30).unwrap();
        assert_eq!(s.cron_delay(now), Some(Duration::from_secs(3 * 60 + 30)));
    }

    #[test]
    fn six_field_cron_has_seconds() {
        let s = Schedule::parse_cron("*/10 * * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 3).unwrap();
        assert_eq!(s.cron_delay(now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn bad_cron_is_a_clear_error() {
        let err = Schedule::parse_cron("every five minutes").unwrap_err();
        assert!(matches!(err, CronError::FieldCount { fields: 3, .. }));
        assert!(err.to_string().contains("fields"), "{err}");
        let err = Schedule::parse_cron("61 * * * *").unwrap_err();
        assert!(err.to_string().contains("not a valid cron"), "{err}");
        // The cron crate accepts a year field; a year in the past never comes.
        let err = Schedule::parse_cron("0 0 0 1 1 * 2001").unwrap_err();
        assert_eq!(
            err,
            CronError::NeverFires {
                expr: "0 0 0 1 1 * 2001".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cron_ticks_follow_the_expression_and_do_not_stack() {
        let mut ticker = Ticker::new(Schedule::parse_cron("*/10 * * * * *").unwrap());
        let mut fired = Vec::new();
        for _ in 0..3 {
            ticker.tick().await;
            fired.push(ticker.now());
        }
        for at in &fired {
            assert_eq!(
                at.timestamp() % 10,
                0,
                "fires on multiples of 10 s: {fired:?}"
            );
        }
        assert_eq!((fired[1] - fired[0]).num_seconds(), 10);
        assert_eq!((fired[2] - fired[1]).num_seconds(), 10);
        // A push that takes 25 s overruns two firings: the next tick is the
        // next firing after now, not a burst of the missed ones.
        tokio::time::sleep(Duration::from_secs(25)).await;
        let before = ticker.now();
        ticker.tick().await;
        let waited = ticker.now() - before;
        assert!(
            waited.num_milliseconds() > 0 && waited.num_seconds() <= 10,
            "{waited:?}"
        );
        let again = ticker.now();
        ticker.tick().await;
        assert_eq!(
            (ticker.now() - again).num_seconds(),
            10,
            "then on the grid again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn interval_ticks_do_not_stack() {
        let mut ticker = Ticker::new(Schedule::Interval(Duration::from_secs(10)));
        let start = Instant::now();
        ticker.tick().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "first tick is immediate");
        // A push that takes 35 s overruns three ticks...
        tokio::time::sleep(Duration::from_secs(35)).await;
        ticker.tick().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(35),
            "one catch-up tick at once"
        );
        // ...and the next tick is back on the 10 s grid, not a burst of the missed ones.
        ticker.tick().await;
        assert_eq!(start.elapsed(), Duration::from_secs(40));
    }
}
