//! Parsers for flag values that clap hands over, and the error they refuse a value with.

use std::time::Duration;

/// A flag value clap hands over that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{given:?} is not a duration like 30s, 5m or 1h: {reason}")]
    Duration { given: String, reason: String },
    #[error("a duration of zero is not allowed")]
    ZeroDuration,
    #[error("{0:?} is not a positive number of requests per second")]
    Rate(String),
    #[error("{0:?} is not NAME=VALUE")]
    Label(String),
    #[error("label {0} has an empty value, which remote write would drop")]
    EmptyLabelValue(String),
    #[error("{given:?} is not a log filter: {reason}")]
    LogFilter { given: String, reason: String },
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let d = humantime::parse_duration(s).map_err(|e| ValueError::Duration {
        given: s.to_owned(),
        reason: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(ValueError::ZeroDuration);
    }
    Ok(d)
}

pub(super) fn parse_rate(s: &str) -> Result<f64, ValueError> {
    match s.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(ValueError::Rate(s.to_owned())),
    }
}

/// Parses NAME=VALUE; the names are checked together, by [`Config::settings`].
pub(super) fn parse_label(s: &str) -> Result<(String, String), ValueError> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| ValueError::Label(s.to_owned()))?;
    if value.is_empty() {
        return Err(ValueError::EmptyLabelValue(name.to_owned()));
    }
    Ok((name.to_owned(), value.to_owned()))
}
