//! An image's labels or annotations: one sorted slice, its strings shared.
//!
//! At 10k images a `BTreeMap` per image cost a node of eleven slots
//! however few pairs it held, and two `String`s per pair. A sorted slice
//! holds only its pairs, read by binary search; and as names and values
//! repeat across images (OCI keys, vendors, licences, base images), each is
//! one shared copy, which the series model's table of label values then
//! shares too rather than copying it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::interner::StringPool;

/// The names and values images share; unused ones are pruned as the pool
/// grows (see [`crate::interner`]).
static STRINGS: LazyLock<StringPool> = LazyLock::new(StringPool::default);

/// Sorted (name, value) pairs, one per name; cloned by reference, as the
/// metadata is copied with fresh supply-chain facts once per period.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pairs(Arc<[(Arc<str>, Arc<str>)]>);

impl Pairs {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let found = self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        Some(&self.0[found].1)
    }

    /// The pairs in name order, as shared strings (for the series model's
    /// table of label values to share).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs as a map, for tests that change them.
    #[cfg(test)]
    pub fn to_map(&self) -> BTreeMap<String, String> {
        (self.iter())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

impl From<BTreeMap<String, String>> for Pairs {
    /// Sorted already; each string the shared copy.
    fn from(map: BTreeMap<String, String>) -> Self {
        if map.is_empty() {
            return Pairs::default();
        }
        let mut strings = STRINGS.lock();
        Pairs(
            map.iter()
                .map(|(n, v)| (strings.intern(n), strings.intern(v)))
                .collect(),
        )
    }
}

impl<'a> IntoIterator for &'a Pairs {
    type Item = (&'a Arc<str>, &'a Arc<str>);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Arc<str>, Arc<str>)>,
        fn(&'a (Arc<str>, Arc<str>)) -> (&'a Arc<str>, &'a Arc<str>),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl fmt::Debug for Pairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A map, as the `BTreeMap` it replaces was (the disk cache's records).
impl Serialize for Pairs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (name, value) in self {
            map.serialize_entry(&**name, &**value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> Pairs {
        let map: BTreeMap<String, String> = (entries.iter())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Pairs::from(map)
    }

    #[test]
    fn pairs_are_read_by_name_in_name_order_and_serialize_as_a_map() {
        let p = pairs(&[("b", "2"), ("a", "1"), ("c", "")]);
        assert_eq!(
            (p.get("a"), p.get("c"), p.get("d")),
            (Some("1"), Some(""), None)
        );
        let names: Vec<&str> = p.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"a":"1","b":"2","c":""}"#);
        assert_eq!(format!("{p:?}"), r#"{"a": "1", "b": "2", "c": ""}"#);
    }

    #[test]
    fn names_and_values_repeated_across_images_are_one_copy() {
        let vendor = "pairs-test-vendor";
        let a = pairs(&[("org.opencontainers.image.vendor", vendor)]);
        let b = pairs(&[("org.opencontainers.image.vendor", vendor), ("x", "y")]);
        let (first, second) = (a.iter().next().unwrap(), b.iter().next().unwrap());
        assert!(Arc::ptr_eq(first.0, second.0));
        assert!(Arc::ptr_eq(first.1, second.1));
    }
}
