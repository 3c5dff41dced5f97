//! Is the running tag the newest release? From the running tag, the
//! repository's parsed tags and the container's overrides.

use std::collections::HashSet;
use std::sync::Arc;

use regex::Regex;

use super::compare::{comparable, total_order, version_order};
use super::tag::Tag;

/// Longest `match-regex` accepted; the regex crate matches in linear time,
/// this bounds the compiled size.
pub const MAX_REGEX_LENGTH: usize = 1024;

/// How a container's versions are looked up, from version-checker's
/// annotations (`pin-major.version-checker.io/<container>`, …).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Only tags this matches are candidates; it also lifts the prefix rule.
    pub match_regex: Option<Regex>,
    pub pin_major: Option<u64>,
    pub pin_minor: Option<u64>,
    pub pin_patch: Option<u64>,
}

impl PartialEq for Overrides {
    fn eq(&self, other: &Self) -> bool {
        self.match_regex.as_ref().map(Regex::as_str)
            == other.match_regex.as_ref().map(Regex::as_str)
            && (self.pin_major, self.pin_minor, self.pin_patch)
                == (other.pin_major, other.pin_minor, other.pin_patch)
    }
}

impl Eq for Overrides {}

/// Why an override annotation cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    #[error("{name}: {value:?} is not a number")]
    NotANumber { name: &'static str, value: String },
    #[error("match-regex longer than {MAX_REGEX_LENGTH} bytes")]
    RegexTooLong,
    #[error("match-regex {0:?} does not compile")]
    BadRegex(String),
    #[error("override-url longer than 512 bytes")]
    UrlTooLong,
}

impl Overrides {
    /// The overrides of the annotations' values (absent: `None`).
    pub fn parse(
        match_regex: Option<&str>,
        pin_major: Option<&str>,
        pin_minor: Option<&str>,
        pin_patch: Option<&str>,
    ) -> Result<Overrides, OverrideError> {
        let pin = |name: &'static str, value: Option<&str>| {
            value
                .map(|v| {
                    v.trim().parse().map_err(|_| OverrideError::NotANumber {
                        name,
                        value: v.chars().take(64).collect(),
                    })
                })
                .transpose()
        };
        let match_regex = match match_regex {
            None => None,
            Some(r) if r.len() > MAX_REGEX_LENGTH => return Err(OverrideError::RegexTooLong),
            Some(r) => Some(
                regex::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|_| OverrideError::BadRegex(r.chars().take(64).collect()))?,
            ),
        };
        Ok(Overrides {
            match_regex,
            pin_major: pin("pin-major", pin_major)?,
            pin_minor: pin("pin-minor", pin_minor)?,
            pin_patch: pin("pin-patch", pin_patch)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Overrides::default()
    }

    /// The overrides as text, `pin-major=1,match-regex=^1\.`: a cache key,
    /// empty when there are none.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, pin) in [
            ("pin-major", self.pin_major),
            ("pin-minor", self.pin_minor),
            ("pin-patch", self.pin_patch),
        ] {
            if let Some(pin) = pin {
                parts.push(format!("{name}={pin}"));
            }
        }
        if let Some(regex) = &self.match_regex {
            parts.push(format!("match-regex={}", regex.as_str()));
        }
        parts.join(",")
    }

    fn pins_allow(&self, tag: &Tag) -> bool {
        [self.pin_major, self.pin_minor, self.pin_patch]
            .iter()
            .enumerate()
            .all(|(i, pin)| pin.is_none_or(|p| tag.part(i) == p))
    }
}

/// How many newer versions there are, by level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behind {
    /// Distinct newer major versions.
    pub major: u64,
    /// Distinct newer minor versions within the running major.
    pub minor: u64,
    /// Newer versions within the running major.minor (later release
    /// parts, revisions, and pre-releases when running one).
    pub patch: u64,
}

/// The answer for one running tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// The running tag, as written.
    pub current: Arc<str>,
    /// The newest comparable tag (the running one when it is the newest).
    pub latest: Arc<str>,
    pub is_latest: bool,
    pub behind: Behind,
}

/// The freshness of `current` among `tags`, or `None` when `current` is
/// not a version (by the default rules, or for `match-regex` any prefix).
pub fn freshness(current: &str, tags: &[Tag], overrides: &Overrides) -> Option<Freshness> {
    let running = Tag::parse(current)?;
    let regex = overrides.match_regex.as_ref();
    if regex.is_none() && !running.is_plain() {
        return None;
    }
    let candidate = |tag: &&Tag| {
        let same_kind = match regex {
            // The regex says which tags are of the running one's kind.
            Some(regex) => {
                regex.is_match(tag.as_str()) && tag.release().len() == running.release().len()
            }
            None => comparable(tag, &running),
        };
        same_kind
            && (running.pre_release().is_some() || tag.pre_release().is_none())
            && overrides.pins_allow(tag)
    };
    let newer: Vec<&Tag> = tags
        .iter()
        .filter(candidate)
        .filter(|t| version_order(t, &running).is_gt())
        .collect();
    let latest = newer.iter().copied().max_by(|a, b| total_order(a, b));
    let behind = behind(&running, &newer);
    let current: Arc<str> = Arc::from(current);
    Some(Freshness {
        latest: latest.map_or_else(|| current.clone(), |t| Arc::from(t.as_str())),
        current,
        is_latest: latest.is_none(),
        behind,
    })
}

fn behind(running: &Tag, newer: &[&Tag]) -> Behind {
    let (major, minor) = (running.part(0), running.part(1));
    let parts = running.release().len();
    let mut majors = HashSet::new();
    let mut minors = HashSet::new();
    let mut patches: Vec<&Tag> = Vec::new();
    for tag in newer {
        if tag.part(0) > major {
            majors.insert(tag.part(0));
        } else if parts >= 2 && tag.part(0) == major && tag.part(1) > minor {
            minors.insert(tag.part(1));
        } else if parts >= 2 && tag.part(0) == major && tag.part(1) == minor {
            patches.push(tag);
        }
    }
    // Distinct versions: two spellings of one count once.
    patches.sort_by(|a, b| version_order(a, b));
    patches.dedup_by(|a, b| version_order(a, b).is_eq());
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    Behind {
        major: count(majors.len()),
        minor: count(minors.len()),
        patch: count(patches.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(texts: &[&str]) -> Vec<Tag> {
        texts.iter().filter_map(|t| Tag::parse(t)).collect()
    }

    fn answer(current: &str, texts: &[&str], overrides: &Overrides) -> (String, bool, Behind) {
        let f = freshness(current, &tags(texts), overrides).expect("a version");
        (f.latest.to_string(), f.is_latest, f.behind)
    }

    const NGINX: &[&str] = &[
        "1.27.3",
        "1.27.3-alpine",
        "1.27-bookworm",
        "1.28-bookworm",
        "1.28.0",
        "1.28.0-alpine",
        "1.29.1",
        "2.0.0-rc1",
        "mainline",
        "stable",
        "latest",
    ];

    fn behind(major: u64, minor: u64, patch: u64) -> Behind {
        Behind {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn nginx_like_tags_compare_within_their_flavour() {
        let none = Overrides::default();
        assert_eq!(
            answer("1.27.3", NGINX, &none),
            ("1.29.1".into(), false, behind(0, 2, 0))
        );
        assert_eq!(
            answer("1.27.3-alpine", NGINX, &none),
            ("1.28.0-alpine".into(), false, behind(0, 1, 0))
        );
        assert_eq!(
            answer("1.28-bookworm", NGINX, &none),
            ("1.28-bookworm".into(), true, behind(0, 0, 0))
        );
        assert!(freshness("mainline", &tags(NGINX), &none).is_none());
        assert!(freshness("sha-1a2b3c", &tags(NGINX), &none).is_none());
    }

    #[test]
    fn bitnami_revisions_v_prefixes_and_calendar_versions() {
        let none = Overrides::default();
        let bitnami: Vec<String> = (0..=5)
            .map(|r| format!("7.4.2-debian-12-r{r}"))
            .chain(["7.4.3-debian-12-r0".into(), "7.4.3-debian-11-r9".into()])
            .collect();
        let bitnami: Vec<&str> = bitnami.iter().map(String::as_str).collect();
        assert_eq!(
            answer("7.4.2-debian-12-r3", &bitnami, &none),
            ("7.4.3-debian-12-r0".into(), false, behind(0, 0, 3))
        );
        assert_eq!(
            answer("v1.9.0", &["v1.9.0", "v1.10.0", "1.11.0"], &none),
            ("v1.10.0".into(), false, behind(0, 1, 0))
        );
        assert_eq!(
            answer(
                "2024.01.15",
                &["2024.01.15", "2024.02.01", "2025.01.01"],
                &none
            ),
            ("2025.01.01".into(), false, behind(1, 1, 0))
        );
        assert_eq!(
            answer("20240115", &["20240115", "20240201"], &none),
            ("20240201".into(), false, behind(1, 0, 0))
        );
    }

    #[test]
    fn pre_releases_count_only_for_a_running_pre_release() {
        let none = Overrides::default();
        let set = ["1.9.9", "2.0.0-rc1", "2.0.0-rc2", "v2.0.0-rc3"];
        assert_eq!(
            answer("1.9.9", &set, &none),
            ("1.9.9".into(), true, behind(0, 0, 0))
        );
        assert_eq!(
            answer("2.0.0-rc1", &set, &none),
            ("2.0.0-rc2".into(), false, behind(0, 0, 1))
        );
        assert_eq!(
            answer("2.0.0-rc1", &["2.0.0-rc2", "2.0.0"], &none).0,
            "2.0.0"
        );
    }

    #[test]
    fn overrides_change_the_answer_as_documented() {
        let set = ["1.2.3", "1.2.4", "1.3.0", "2.0.0", "release-5.0.0"];
        let pin = |major, minor| Overrides {
            pin_major: major,
            pin_minor: minor,
            ..Overrides::default()
        };
        assert_eq!(answer("1.2.3", &set, &pin(Some(1), None)).0, "1.3.0");
        assert_eq!(answer("1.2.3", &set, &pin(Some(1), Some(2))).0, "1.2.4");
        let regex = Overrides::parse(Some(r"^1\.2\."), None, None, None).unwrap();
        assert_eq!(answer("1.2.3", &set, &regex).0, "1.2.4");
        let release = Overrides::parse(Some(r"^release-"), None, None, None).unwrap();
        assert_eq!(
            answer("release-4.0.0", &set, &release),
            ("release-5.0.0".into(), false, behind(1, 0, 0))
        );
        assert_eq!(
            Overrides::parse(None, Some("x"), None, None),
            Err(OverrideError::NotANumber {
                name: "pin-major",
                value: "x".into()
            })
        );
        assert!(Overrides::parse(Some("("), None, None, None).is_err());
        assert!(Overrides::parse(Some(&"a".repeat(2000)), None, None, None).is_err());
    }

    #[test]
    fn the_running_tag_need_not_be_listed() {
        assert_eq!(
            answer("1.2.3", &["1.2.0"], &Overrides::default()),
            ("1.2.3".into(), true, behind(0, 0, 0))
        );
    }
}
