//! Per-series limits: what a series may carry so that the receivers of
//! the Mimir family (Mimir, Cortex, Grafana Cloud) store it. Their
//! distributor checks every series of a request — label names per series,
//! bytes per label name and per value — stores the valid rest and answers
//! 400 for the whole request. So the limits are applied where label sets
//! are made ([`LabelSet::with_extra`](super::LabelSet::with_extra)): no
//! sink ever sees a series that breaks them, and `/metrics` and
//! `--dry-run` show exactly what is pushed.
//!
//! What a limit cuts or drops is counted here, in plain atomics (the
//! model depends on no telemetry), and taken by whoever builds the
//! series ([`CommonLabels::take_drops`](super::CommonLabels::take_drops)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Ends a value cut to the limit, within the limit (as image labels are cut).
pub const CUT: &str = "…";

/// The limits every series keeps; the defaults are Mimir's and Cortex's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Most labels per series, `__name__`, `job` and external labels included
    /// (`-validation.max-label-names-per-series`).
    pub max_label_names: usize,
    /// Longest label value in bytes (`-validation.max-length-label-value`).
    pub max_value_bytes: usize,
    /// Longest label name in bytes (`-validation.max-length-label-name`).
    pub max_name_bytes: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits {
            max_label_names: 30,
            max_value_bytes: 2048,
            max_name_bytes: 1024,
        }
    }
}

/// Why a label was cut or left out by [`SeriesLimits`]: the `reason` of
/// `container_image_pusher_labels_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDrop {
    /// A value (an `image`, a workload label's) cut to `max_value_bytes`.
    SeriesValueTooLong = 0,
    /// A workload label whose name is longer than `max_name_bytes`: left out.
    SeriesNameTooLong = 1,
    /// A workload label beyond `max_label_names`: the first by name are kept.
    SeriesTooManyLabels = 2,
}

impl LimitDrop {
    pub const ALL: [LimitDrop; 3] = [
        LimitDrop::SeriesValueTooLong,
        LimitDrop::SeriesNameTooLong,
        LimitDrop::SeriesTooManyLabels,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitDrop::SeriesValueTooLong => "series_value_too_long",
            LimitDrop::SeriesNameTooLong => "series_name_too_long",
            LimitDrop::SeriesTooManyLabels => "series_too_many_labels",
        }
    }
}

/// Cuts and drops since they were last taken, by [`LimitDrop`].
#[derive(Debug, Default)]
pub(super) struct DropCounts([AtomicU64; LimitDrop::ALL.len()]);

impl DropCounts {
    pub(super) fn add(&self, reason: LimitDrop, count: usize) {
        if count > 0 {
            self.0[reason as usize].fetch_add(count as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn take(&self) -> [u64; LimitDrop::ALL.len()] {
        std::array::from_fn(|i| self.0[i].swap(0, Ordering::Relaxed))
    }
}

/// `value` cut to at most `max` bytes at a character boundary, ending in
/// [`CUT`]; `None` when it fits.
pub(super) fn cut(value: &str, max: usize) -> Option<Arc<str>> {
    if value.len() <= max {
        return None;
    }
    let mut end = max.saturating_sub(CUT.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let mut text = String::with_capacity(end + CUT.len());
    text.push_str(&value[..end]);
    if max >= CUT.len() {
        text.push_str(CUT);
    }
    Some(Arc::from(text))
}

/// Why `job` and the external labels cannot keep the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("label {name:?} has a value of {len} bytes; --max-label-value-bytes is {max}")]
    ValueTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("label name {name:?} is {len} bytes; --max-label-name-bytes is {max}")]
    NameTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("series would carry up to {needed} labels (`__name__`, `job`, {external} external labels and up to {own} of their own); --max-label-names-per-series is {max}")]
    TooManyLabels {
        needed: usize,
        external: usize,
        own: usize,
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_end_in_the_mark_within_the_limit_at_a_character_boundary() {
        assert_eq!(cut("short", 10), None);
        let cut_value = cut(&"é".repeat(100), 11).unwrap();
        assert!(
            cut_value.len() <= 11 && cut_value.ends_with(CUT),
            "{cut_value}"
        );
        assert!(cut_value.starts_with("éééé"));
        assert_eq!(
            &*cut(&"x".repeat(3000), 2048).unwrap(),
            format!("{}…", "x".repeat(2045))
        );
    }
}
