//! `--image-labels` and `--image-annotations`: which keys of an image's
//! labels and annotations become series. Applied when the metadata is
//! made, before the per-image [`limits`](super::limits), so a noisy image's
//! unwanted keys take no place under its caps and no room in the cache.
//!
//! Each entry is a glob on the key (`*` any run of characters, `?` one
//! character); an entry starting with `!` leaves the keys it matches out.
//! A key is kept when it matches an allowing entry (or there is none) and
//! no leaving-out one. The keys come from registries: matching takes time
//! linear in the key for a given pattern, whatever the key.

use std::collections::BTreeMap;

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{0:?} is an empty pattern")]
    Empty(String),
}

/// The allowed and left-out key patterns of one map (labels or annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    allow: Vec<Glob>,
    deny: Vec<Glob>,
}

impl KeyFilter {
    /// From the entries of a flag: `GLOB` allows, `!GLOB` leaves out.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Result<Self, FilterError> {
        let mut filter = KeyFilter::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            let (list, pattern) = match entry.strip_prefix('!') {
                Some(pattern) => (&mut filter.deny, pattern),
                None => (&mut filter.allow, entry),
            };
            if pattern.is_empty() {
                return Err(FilterError::Empty(entry.to_owned()));
            }
            list.push(Glob::new(pattern));
        }
        Ok(filter)
    }

    /// Whether the filter keeps every key: the default.
    pub fn keeps_all(&self) -> bool {
        self.deny.is_empty() && (self.allow.is_empty() || self.allow.iter().any(Glob::is_star))
    }

    pub fn keeps(&self, key: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(key)))
            && !self.deny.iter().any(|g| g.matches(key))
    }

    /// The entries of `pairs` the filter keeps; the others are freed here.
    pub fn apply(&self, mut pairs: BTreeMap<String, String>) -> BTreeMap<String, String> {
        if !self.keeps_all() {
            pairs.retain(|key, _| self.keeps(key));
        }
        pairs
    }
}

/// The filters of an image's labels and annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    pub labels: KeyFilter,
    pub annotations: KeyFilter,
}

/// A glob cut at its stars: the key must start with the first part, end
/// with the last, and hold the others in order between them. Taking each
/// middle part at its leftmost place is always right, so a match is one
/// pass over the key per part, never a backtracking search.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob {
    /// The parts between stars, as characters (`None` for `?`).
    parts: Vec<Vec<Option<char>>>,
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        Glob {
            parts: pattern
                .split('*')
                .map(|part| part.chars().map(|c| (c != '?').then_some(c)).collect())
                .collect(),
        }
    }

    fn is_star(&self) -> bool {
        self.parts.len() >= 2 && self.parts.iter().all(Vec::is_empty)
    }

    fn matches(&self, key: &str) -> bool {
        let key: Vec<char> = key.chars().collect();
        let fits = |part: &[Option<char>], at: usize| {
            key.len() >= at + part.len()
                && part
                    .iter()
                    .zip(&key[at..])
                    .all(|(p, k)| p.is_none_or(|p| p == *k))
        };
        let (first, rest) = self.parts.split_first().expect("split yields a part");
        let Some((last, middle)) = rest.split_last() else {
            // No star: the whole key.
            return key.len() == first.len() && fits(first, 0);
        };
        if !fits(first, 0) || key.len() < first.len() + last.len() {
            return false;
        }
        let end = key.len() - last.len();
        if !fits(last, end) {
            return false;
        }
        let mut at = first.len();
        for part in middle {
            let last_start = end.saturating_sub(part.len());
            match (at..=last_start).find(|&i| i + part.len() <= end && fits(part, i)) {
                Some(found) => at = found + part.len(),
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(entries: &[&str]) -> KeyFilter {
        KeyFilter::new(entries).unwrap()
    }

    #[test]
    fn globs() {
        for (pattern, key, expected) in [
            (
                "org.opencontainers.*",
                "org.opencontainers.image.source",
                true,
            ),
            ("org.opencontainers.*", "org.opencontainers", false),
            ("*.source", "org.opencontainers.image.source", true),
            ("*image*", "org.opencontainers.image.source", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("a*bc*bc", "abcbc", true),
            ("a*bc*bc", "abc", false),
            ("maintainer", "maintainer", true),
            ("maintainer", "maintainers", false),
            ("v?", "v1", true),
            ("v?", "v10", false),
            ("é?", "éé", true),
            ("*", "", true),
            ("**", "anything", true),
        ] {
            assert_eq!(Glob::new(pattern).matches(key), expected, "{pattern} {key}");
        }
    }

    #[test]
    fn allow_and_leave_out() {
        let all = filter(&[]);
        assert!(all.keeps_all() && all.keeps("anything"));
        assert!(filter(&["*"]).keeps_all());
        let some = filter(&[
            "org.opencontainers.*",
            "maintainer",
            "!org.opencontainers.image.created",
        ]);
        assert!(!some.keeps_all());
        assert!(some.keeps("org.opencontainers.image.source"));
        assert!(some.keeps("maintainer"));
        assert!(!some.keeps("org.opencontainers.image.created"));
        assert!(!some.keeps("com.example.noise"));
        let deny_only = filter(&["!com.example.*"]);
        assert!(deny_only.keeps("maintainer"));
        assert!(!deny_only.keeps("com.example.build"));
        assert_eq!(KeyFilter::new(&["!"]), Err(FilterError::Empty("!".into())));
        assert_eq!(KeyFilter::new(&[""]), Err(FilterError::Empty("".into())));

        let pairs = BTreeMap::from([
            ("maintainer".to_owned(), "ops".to_owned()),
            ("com.example.build".to_owned(), "42".to_owned()),
        ]);
        assert_eq!(deny_only.apply(pairs).len(), 1);
    }

    #[test]
    fn a_hostile_key_costs_linear_time() {
        let glob = Glob::new("*a*a*a*a*a*a*a*a*a*a*b");
        // Backtracking would not finish on this key.
        let key = "a".repeat(200_000);
        assert!(!glob.matches(&key));
        assert!(glob.matches(&format!("{key}b")));
    }
}
