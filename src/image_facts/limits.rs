//! Bounds on what one image may add: applied when its metadata is made,
//! so the metadata cache (up to `METADATA_CAPACITY` entries) only ever
//! holds bounded maps. A config of 4 MiB can carry 300k labels, about
//! 35 MB once parsed; kept whole, a few hostile images would exhaust
//! memory long before the series limits in the inventory applied.

use std::collections::BTreeMap;

/// What one image may add to a snapshot. Its config and manifests come
/// from a registry: without bounds one config of 4 MiB adds 300k series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most `container_image_label` series per image.
    pub max_labels: usize,
    /// Most `container_image_annotation` series per image.
    pub max_annotations: usize,
    /// Longest `key` or `value` in bytes. Longer values are cut (the cut
    /// marked with [`TRUNCATED`]); longer keys drop their entry, as a cut
    /// key would name a label the image does not have.
    pub max_value_length: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_labels: 128,
            max_annotations: 128,
            max_value_length: 1024,
        }
    }
}

/// Ends a value cut to `max_value_length`, within that length.
pub const TRUNCATED: &str = "…";

/// Why a label or annotation of an image was dropped or cut, the `reason`
/// of `container_image_pusher_labels_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Beyond `max_labels` (the first ones by key are kept).
    TooManyLabels = 0,
    /// Beyond `max_annotations` (the first ones by key are kept).
    TooManyAnnotations = 1,
    /// Value cut to `max_value_length`; the series is still sent.
    ValueTooLong = 2,
    /// Key longer than `max_value_length`: the entry is dropped.
    KeyTooLong = 3,
    /// Empty key: it would be sent without a `key` label.
    EmptyKey = 4,
}

impl DropReason {
    /// Every reason, each at the index of its discriminant.
    pub const ALL: [DropReason; 5] = [
        DropReason::TooManyLabels,
        DropReason::TooManyAnnotations,
        DropReason::ValueTooLong,
        DropReason::KeyTooLong,
        DropReason::EmptyKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooManyLabels => "too_many_labels",
            DropReason::TooManyAnnotations => "too_many_annotations",
            DropReason::ValueTooLong => "value_too_long",
            DropReason::KeyTooLong => "key_too_long",
            DropReason::EmptyKey => "empty_key",
        }
    }
}

/// How many labels and annotations of one image were dropped or cut, by
/// reason: what the metadata keeps of the maps it no longer holds, so the
/// inventory can count them when it builds the image's series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped([u64; DropReason::ALL.len()]);

impl Dropped {
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    fn add(&mut self, reason: DropReason) {
        let count = &mut self.0[reason as usize];
        *count = count.saturating_add(1);
    }

    /// Adds counts kept elsewhere (the on-disk cache), saturating.
    pub fn add_count(&mut self, reason: DropReason, count: u64) {
        let total = &mut self.0[reason as usize];
        *total = total.saturating_add(count);
    }

    /// The reasons with a count above zero.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|reason| (reason, self.get(reason)))
            .filter(|(_, count)| *count > 0)
    }
}

/// The key/value pairs of one image that become series: the first `max`
/// by key (byte order, as the map is sorted) among those with a usable
/// key, values cut to `max_length`. What is left out or cut is added to
/// `dropped`. Takes the map by value so each entry left out is freed as
/// it is passed, and the kept ones are moved, not copied.
pub fn bound(
    pairs: BTreeMap<String, String>,
    max: usize,
    over: DropReason,
    max_length: usize,
    dropped: &mut Dropped,
) -> BTreeMap<String, String> {
    let mut kept = BTreeMap::new();
    for (key, mut value) in pairs {
        if key.is_empty() {
            dropped.add(DropReason::EmptyKey);
        } else if key.len() > max_length {
            dropped.add(DropReason::KeyTooLong);
        } else if kept.len() >= max {
            dropped.add(over);
        } else {
            if truncate(&mut value, max_length) {
                dropped.add(DropReason::ValueTooLong);
            }
            kept.insert(key, value);
        }
    }
    kept
}

/// Cuts `value` to its longest prefix that ends on a character boundary
/// and leaves room for [`TRUNCATED`], marked so, if it does not fit in
/// `max` bytes. Returns whether it was cut.
fn truncate(value: &mut String, max: usize) -> bool {
    if value.len() <= max {
        return false;
    }
    let mut end = max.saturating_sub(TRUNCATED.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value.push_str(TRUNCATED);
    // The cut value stays cached: without this it would keep the
    // capacity of the registry's value.
    value.shrink_to_fit();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(value: &str, max: usize) -> String {
        let mut value = value.to_owned();
        truncate(&mut value, max);
        value
    }

    #[test]
    fn values_are_cut_at_a_character_boundary_within_the_limit() {
        assert_eq!(cut("short", 16), "short");
        assert_eq!(cut("exactly-16-bytes", 16), "exactly-16-bytes");
        assert_eq!(cut("seventeen bytes!!", 16), "seventeen byt…");
        // "é" is two bytes: a cut inside one moves back to its start.
        let long = "é".repeat(20);
        let short = cut(&long, 16);
        assert_eq!(short, format!("{}…", "é".repeat(6)));
        assert!(short.len() <= 16);
        assert!(short.capacity() <= 16, "{}", short.capacity());
        let mut fits = "x".to_owned();
        assert!(!truncate(&mut fits, 1));
    }

    #[test]
    fn the_first_keys_are_kept_and_the_rest_counted() {
        let long_value = "é".repeat(50 * 1024); // 100 KiB, two bytes a char
        let mut pairs: BTreeMap<String, String> = (0..5000)
            .map(|i| (format!("label.{i:05}"), format!("v{i}")))
            .collect();
        pairs.insert("label.00002".into(), long_value.clone());
        pairs.insert(String::new(), "empty key".into());
        pairs.insert("k".repeat(2000), "long key".into());
        let mut dropped = Dropped::default();
        let kept = bound(pairs, 128, DropReason::TooManyLabels, 1024, &mut dropped);

        let keys: Vec<&String> = kept.keys().collect();
        let first: Vec<String> = (0..128).map(|i| format!("label.{i:05}")).collect();
        assert_eq!(keys, first.iter().collect::<Vec<_>>(), "first 128 by key");
        let short = &kept["label.00002"];
        assert!(short.len() <= 1024, "{}", short.len());
        assert!(short.ends_with(TRUNCATED));
        assert!(long_value.starts_with(short.trim_end_matches(TRUNCATED)));

        assert_eq!(dropped.get(DropReason::TooManyLabels), 5000 - 128);
        assert_eq!(dropped.get(DropReason::ValueTooLong), 1);
        assert_eq!(dropped.get(DropReason::KeyTooLong), 1);
        assert_eq!(dropped.get(DropReason::EmptyKey), 1);
        assert_eq!(dropped.get(DropReason::TooManyAnnotations), 0);
        assert_eq!(dropped.iter().count(), 4, "only reasons that happened");
    }

    #[test]
    fn a_limit_of_zero_keeps_nothing() {
        let pairs = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let mut dropped = Dropped::default();
        let kept = bound(pairs, 0, DropReason::TooManyAnnotations, 64, &mut dropped);
        assert!(kept.is_empty());
        assert_eq!(dropped.get(DropReason::TooManyAnnotations), 2);
    }

    #[test]
    fn reasons_index_their_counts() {
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "{}", reason.as_str());
        }
    }
}
