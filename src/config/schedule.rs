//! The "Schedule" flags: when snapshots are taken, and whether they are pushed or printed.

use std::time::Duration;

use clap::{ArgGroup, Args};

use crate::schedule::Schedule;

use super::values::parse_duration;

/// When snapshots are taken, and whether they are pushed or printed.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Schedule")]
#[command(group(ArgGroup::new("when").args(["interval", "schedule"]).multiple(false)))]
#[deny(missing_docs)]
pub struct ScheduleArgs {
    /// Take one snapshot, push it, and exit: for a Kubernetes CronJob.
    /// The exit code is 0 only if every request was accepted, 3 if they
    /// were but manifests input had to be skipped.
    #[arg(long, env = "PUSHER_ONCE")]
    pub once: bool,

    /// Print the series in the Prometheus text format to stdout instead of pushing them.
    #[arg(long, env = "PUSHER_DRY_RUN")]
    pub dry_run: bool,

    /// Time between two snapshots in long-running mode (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", env = "PUSHER_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Cron expression for when to take snapshots, instead of --interval: five
    /// fields (minute first) or six (seconds first), e.g. "*/5 * * * *".
    #[arg(long, value_name = "CRON", env = "PUSHER_SCHEDULE", value_parser = Schedule::parse_cron)]
    pub schedule: Option<Schedule>,
}
