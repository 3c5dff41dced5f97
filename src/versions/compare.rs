//! Which tags compare, and in which order.
//!
//! Tags are comparable when they have the same prefix, the same number of
//! release parts and the same flavour (`1.27.3-alpine` with `1.28.0-alpine`,
//! never with `1.28.0` or `1.28-alpine`). Within a flavour, tags order by
//! release numbers, then a release is newer than any of its pre-releases
//! (pre-releases order by semver precedence, numbers numerically), then by
//! revision (none before `-r0`), and last by the text itself, so that two
//! spellings of one version (`1.02`, `1.2`) still have an order and the
//! order is total.

use std::cmp::Ordering;

use super::tag::Tag;

/// Whether `a` and `b` are versions of the same flavour.
pub fn comparable(a: &Tag, b: &Tag) -> bool {
    a.prefix() == b.prefix() && a.release().len() == b.release().len() && a.flavour() == b.flavour()
}

/// The order of versions, ignoring how they are spelled: `Equal` for
/// `1.02` and `1.2`.
pub fn version_order(a: &Tag, b: &Tag) -> Ordering {
    a.release()
        .cmp(b.release())
        .then_with(|| match (a.pre_release(), b.pre_release()) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => pre_release_order(a, b),
        })
        .then_with(|| a.revision().cmp(&b.revision()))
}

/// The total order of tags within a flavour: [`version_order`], then the
/// text.
pub fn total_order(a: &Tag, b: &Tag) -> Ordering {
    version_order(a, b).then_with(|| a.as_str().cmp(b.as_str()))
}

/// Semver precedence, read loosely: runs of digits compare as numbers
/// (`rc2` before `rc10`) and before runs of letters, which compare as text;
/// a pre-release that is the start of another comes first (`rc` before
/// `rc1`). Digit runs are compared by length then text, so no run is ever
/// too long to compare.
fn pre_release_order(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (runs(a), runs(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (is_digits(x), is_digits(y)) {
                    (true, true) => {
                        let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                    }
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

fn is_digits(run: &str) -> bool {
    run.bytes().all(|b| b.is_ascii_digit())
}

/// The runs of digits and of other characters, separators (`.`, `-`, `_`)
/// left out.
fn runs(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() && matches!(bytes[at], b'.' | b'-' | b'_') {
            at += 1;
        }
        if at == bytes.len() {
            return None;
        }
        let digits = bytes[at].is_ascii_digit();
        let start = at;
        while at < bytes.len()
            && bytes[at].is_ascii_digit() == digits
            && !matches!(bytes[at], b'.' | b'-' | b'_')
        {
            at += 1;
        }
        Some(&text[start..at])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(text: &str) -> Tag {
        Tag::parse(text).unwrap()
    }

    #[test]
    fn only_the_same_prefix_length_and_flavour_compare() {
        let a = tag("1.27.3-alpine");
        assert!(comparable(&a, &tag("1.28.0-alpine")));
        for other in [
            "1.28.0",
            "1.28-alpine",
            "v1.28.0-alpine",
            "1.28.0-alpine3.20",
        ] {
            assert!(!comparable(&a, &tag(other)), "{other}");
        }
        assert!(comparable(&tag("2.0.0-rc1"), &tag("2.0.0")));
        assert!(comparable(
            &tag("7.4.2-debian-12-r3"),
            &tag("7.4.3-debian-12-r0")
        ));
    }

    #[test]
    fn versions_order_numerically_releases_after_pre_releases_then_revisions() {
        let ordered = [
            "v1.9.0-alpha",
            "v1.9.0-beta.2",
            "v1.9.0-beta.10",
            "v1.9.0-rc1",
            "v1.9.0-rc2",
            "v1.9.0",
            "v1.10.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                total_order(&tag(pair[0]), &tag(pair[1])),
                Ordering::Less,
                "{pair:?}"
            );
        }
        let bitnami = [
            "7.4.2-debian-12-r0",
            "7.4.2-debian-12-r5",
            "7.4.2-debian-12-r10",
        ];
        for pair in bitnami.windows(2) {
            assert_eq!(version_order(&tag(pair[0]), &tag(pair[1])), Ordering::Less);
        }
        assert_eq!(version_order(&tag("1.02"), &tag("1.2")), Ordering::Equal);
        assert_ne!(total_order(&tag("1.02"), &tag("1.2")), Ordering::Equal);
        assert_eq!(
            version_order(&tag("2.0.0-rc1"), &tag("2.0.0-rc01")),
            Ordering::Equal
        );
    }

    /// Every tag of a grid of versions of one flavour (releases,
    /// pre-releases, revisions, spellings): the order is total, antisymmetric
    /// and transitive, and agrees with the documented rules.
    #[test]
    fn within_a_flavour_the_order_is_total_and_follows_the_rules() {
        let mut texts = Vec::new();
        for major in ["0", "1", "01", "10", "18446744073709551615"] {
            for minor in ["0", "2", "9", "10"] {
                for pre in ["", "-alpha", "-beta.2", "-beta.10", "-rc1", "-rc01", "-rc"] {
                    for revision in ["", "-r0", "-r2", "-r10"] {
                        texts.push(format!("{major}.{minor}{pre}-debian-12{revision}"));
                    }
                }
            }
        }
        let tags: Vec<Tag> = texts.iter().map(|t| tag(t)).collect();
        assert!(tags.iter().all(|t| comparable(t, &tags[0])));
        for a in &tags {
            assert_eq!(total_order(a, a), Ordering::Equal);
            for b in &tags {
                let ab = total_order(a, b);
                assert_eq!(ab, total_order(b, a).reverse(), "{a:?} {b:?}");
                assert_eq!(ab == Ordering::Equal, a == b);
                // The rules: release numbers first, then release over pre-release.
                if a.release() != b.release() {
                    assert_eq!(ab, a.release().cmp(b.release()));
                } else if a.pre_release().is_none() && b.pre_release().is_some() {
                    assert_eq!(ab, Ordering::Greater);
                } else if a.pre_release() == b.pre_release() {
                    assert_eq!(
                        version_order(a, b),
                        a.revision().cmp(&b.revision()),
                        "{a:?} {b:?}"
                    );
                }
            }
        }
        // Transitivity, through sorting and checking every later element.
        let mut sorted = tags.clone();
        sorted.sort_by(total_order);
        for (i, a) in sorted.iter().enumerate() {
            for b in &sorted[i + 1..] {
                assert_eq!(total_order(a, b), Ordering::Less, "{a:?} {b:?}");
            }
        }
    }
}
