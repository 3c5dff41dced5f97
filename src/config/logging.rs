//! The "Logging" flags: what is logged, and how.

use clap::{Args, ValueEnum};

use super::values::ValueError;

/// What is logged, and how.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
#[deny(missing_docs)]
pub struct LoggingArgs {
    /// Log format (logs go to stderr).
    #[arg(long, value_enum, env = "PUSHER_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// What is logged: a level (error, warn, info, debug, trace) or
    /// directives per module, e.g. "info,container_image_pusher=debug"
    /// (tracing's RUST_LOG syntax). The default keeps kube's watcher, which
    /// warns at every retry of a forbidden watch, to errors: the pusher says
    /// it once. Empty means the default.
    #[arg(
        long,
        value_name = "FILTER",
        env = "RUST_LOG",
        default_value = DEFAULT_LOG_FILTER,
        value_parser = parse_log_filter
    )]
    pub log_level: String,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Info, but kube's watcher only at errors: it warns at every retry of a
/// forbidden watch, which the pusher reports once itself.
pub(super) const DEFAULT_LOG_FILTER: &str = "info,kube_runtime::watcher=error";

/// A filter in tracing's `RUST_LOG` syntax; an empty one (an unset
/// `RUST_LOG=` in a manifest) is the default.
fn parse_log_filter(s: &str) -> Result<String, ValueError> {
    if s.trim().is_empty() {
        return Ok(DEFAULT_LOG_FILTER.to_owned());
    }
    tracing_subscriber::EnvFilter::try_new(s).map_err(|e| ValueError::LogFilter {
        given: s.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(s.to_owned())
}
