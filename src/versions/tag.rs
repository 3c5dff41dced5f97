//! A tag read as a version: `v1.27.3-alpine`, `7.4.2-debian-12-r3`,
//! `2.0.0-rc1`, `20240115`.
//!
//! A tag is a prefix (the text before its first digit; only none or `v`
//! makes a version by default), a release of 1 to [`MAX_RELEASE_PARTS`]
//! numbers separated by dots, then optionally a pre-release (`-rc1`,
//! `-beta.2`, `-alpha`, or attached as in `1.0.0rc1`), a flavour (`-alpine`,
//! `-debian-12`) and a trailing Bitnami-style revision (`-r3`). Tags come
//! from registries anyone can push to: a tag longer than [`MAX_TAG_LENGTH`],
//! with characters a tag may not hold, or with a number beyond `u64` is
//! not a version.

/// Longest tag read: the distribution spec allows 128 characters.
pub const MAX_TAG_LENGTH: usize = 128;
/// Most numbers in a release (`1.2.3.4`); more makes no version.
pub const MAX_RELEASE_PARTS: usize = 4;

/// Words that open a pre-release (`-rc1`, `-beta.2`, `-alpha`), followed
/// by nothing but digits and dots.
const PRE_RELEASE_WORDS: [&str; 9] = [
    "alpha", "beta", "rc", "pre", "preview", "dev", "snapshot", "canary", "nightly",
];

/// A parsed tag, compact: the text and byte offsets into it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    text: Box<str>,
    prefix_end: u8,
    parts: u8,
    release: [u64; MAX_RELEASE_PARTS],
    /// The pre-release, without its leading `-`; empty for a release.
    pre: (u8, u8),
    /// What is left once the release, the pre-release and the revision are
    /// taken out (`-debian-12`), with its leading separator.
    flavour: (u8, u8),
    revision: Option<u64>,
}

impl Tag {
    /// The tag as a version, whatever its prefix; `None` when it has no
    /// release or is not a tag a registry may hold.
    pub fn parse(text: &str) -> Option<Tag> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_TAG_LENGTH {
            return None;
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return None;
        }
        let prefix_end = bytes.iter().position(u8::is_ascii_digit)?;
        let mut release = [0u64; MAX_RELEASE_PARTS];
        let mut parts = 0;
        let mut at = prefix_end;
        loop {
            let end = at
                + bytes[at..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
            if parts == MAX_RELEASE_PARTS {
                return None;
            }
            release[parts] = number(&text[at..end])?;
            parts += 1;
            at = end;
            match bytes.get(at..at + 2) {
                Some([b'.', d]) if d.is_ascii_digit() => at += 1,
                _ => break,
            }
        }
        let mut tag = Tag {
            text: text.into(),
            prefix_end: offset(prefix_end),
            parts: offset(parts),
            release,
            pre: (0, 0),
            flavour: (offset(at), offset(at)),
            revision: None,
        };
        tag.read_suffix(at);
        Some(tag)
    }

    /// Pre-release, flavour and revision from what follows the release.
    fn read_suffix(&mut self, at: usize) {
        let text = &self.text;
        let len = text.len();
        let mut flavour_start = at;
        let mut flavour_end = len;
        if text.as_bytes().get(at).is_some_and(u8::is_ascii_alphabetic) {
            // Attached: `1.0.0rc1`, up to the next `-`.
            let end = text[at..].find('-').map_or(len, |i| at + i);
            self.pre = (offset(at), offset(end));
            flavour_start = end;
        } else if text[at..].starts_with('-') {
            let first = at + 1;
            let end = text[first..].find('-').map_or(len, |i| first + i);
            if is_pre_release(&text[first..end]) {
                self.pre = (offset(first), offset(end));
                flavour_start = end;
            }
        }
        // A trailing `-rN` (Bitnami) orders within its flavour.
        if let Some(dash) = text[flavour_start..].rfind('-') {
            let last = &text[flavour_start + dash + 1..];
            if let Some(revision) = last.strip_prefix('r').and_then(number) {
                self.revision = Some(revision);
                flavour_end = flavour_start + dash;
            }
        }
        self.flavour = (offset(flavour_start), offset(flavour_end));
    }

    /// The tag as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text before the release: `v`, or none.
    pub fn prefix(&self) -> &str {
        &self.text[..usize::from(self.prefix_end)]
    }

    /// A version by the default rules: no prefix, or `v`.
    pub fn is_plain(&self) -> bool {
        matches!(self.prefix(), "" | "v" | "V")
    }

    /// The release numbers (1 to [`MAX_RELEASE_PARTS`]).
    pub fn release(&self) -> &[u64] {
        &self.release[..usize::from(self.parts)]
    }

    /// The release number at `index`, 0 past the end.
    pub fn part(&self, index: usize) -> u64 {
        self.release().get(index).copied().unwrap_or(0)
    }

    /// The pre-release (`rc1`, `beta.2`); `None` for a release.
    pub fn pre_release(&self) -> Option<&str> {
        let (start, end) = self.pre;
        (start != end).then(|| &self.text[usize::from(start)..usize::from(end)])
    }

    /// What makes tags comparable besides prefix and release length:
    /// `-alpine`, `-debian-12`, or empty.
    pub fn flavour(&self) -> &str {
        &self.text[usize::from(self.flavour.0)..usize::from(self.flavour.1)]
    }

    /// The Bitnami-style `-rN` revision.
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }
}

/// A run of ASCII digits as a number; `None` beyond `u64` or when empty.
fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_pre_release(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    PRE_RELEASE_WORDS.iter().any(|w| {
        lower
            .strip_prefix(w)
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    })
}

/// Offsets fit in a byte: tags are at most [`MAX_TAG_LENGTH`] long.
fn offset(at: usize) -> u8 {
    u8::try_from(at).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> (String, Vec<u64>, Option<String>, String, Option<u64>) {
        let tag = Tag::parse(text).unwrap_or_else(|| panic!("{text} is a version"));
        (
            tag.prefix().to_owned(),
            tag.release().to_vec(),
            tag.pre_release().map(str::to_owned),
            tag.flavour().to_owned(),
            tag.revision(),
        )
    }

    #[test]
    fn tags_split_into_prefix_release_pre_release_flavour_and_revision() {
        let p = |s: &str| s.to_owned();
        assert_eq!(parts("1.27.3"), (p(""), vec![1, 27, 3], None, p(""), None));
        assert_eq!(
            parts("1.27.3-alpine"),
            (p(""), vec![1, 27, 3], None, p("-alpine"), None)
        );
        assert_eq!(
            parts("7.4.2-debian-12-r3"),
            (p(""), vec![7, 4, 2], None, p("-debian-12"), Some(3))
        );
        assert_eq!(
            parts("v2.0.0-rc1"),
            (p("v"), vec![2, 0, 0], Some(p("rc1")), p(""), None)
        );
        assert_eq!(
            parts("1.0.0-beta.2-alpine"),
            (p(""), vec![1, 0, 0], Some(p("beta.2")), p("-alpine"), None)
        );
        assert_eq!(
            parts("3.13.0a1"),
            (p(""), vec![3, 13, 0], Some(p("a1")), p(""), None)
        );
        assert_eq!(
            parts("20240115"),
            (p(""), vec![20240115], None, p(""), None)
        );
        assert_eq!(
            parts("1.2.3.4"),
            (p(""), vec![1, 2, 3, 4], None, p(""), None)
        );
        assert_eq!(parts("1.2-r7"), (p(""), vec![1, 2], None, p(""), Some(7)));
        assert_eq!(parts("sha-1a2b").0, "sha-");
    }

    #[test]
    fn words_hostile_numbers_and_long_tags_are_not_versions() {
        for text in [
            "latest",
            "main",
            "stable",
            "",
            "1.2.3.4.5",
            "18446744073709551616",
            "1.18446744073709551616",
            "1.2/3",
            "1.2 3",
        ] {
            assert!(Tag::parse(text).is_none(), "{text}");
        }
        // A revision beyond u64 is no revision: the text stays flavour.
        let tag = Tag::parse("1.2-r18446744073709551616").unwrap();
        assert_eq!(
            (tag.flavour(), tag.revision()),
            ("-r18446744073709551616", None)
        );
        assert!(
            Tag::parse("18446744073709551615").is_some(),
            "u64::MAX fits"
        );
        assert!(Tag::parse(&"1".repeat(MAX_TAG_LENGTH + 1)).is_none());
        assert!(Tag::parse(&format!("1.{}", "a".repeat(10_000))).is_none());
        assert!(!Tag::parse("sha-1a2b").unwrap().is_plain());
        assert!(Tag::parse("v1.2").unwrap().is_plain());
    }
}
