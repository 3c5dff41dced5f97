//! Globs for the filters users write on the command line (`kube-*`,
//! `docker.io/library/*`), matched in linear time.
//!
//! Only `*` is special: it stands for any run of characters, `/` and `.`
//! included. Without `?` or classes, a pattern is literal pieces between
//! stars: the first must start the text, the last must end it, and each
//! one in between is found at its leftmost place after the previous one
//! (the leftmost place leaves the most room for what follows, so no
//! backtracking is ever needed). Each piece is searched for once with the
//! standard library's linear substring search, so a match costs
//! O(text + pattern) whatever either holds — unlike the naive recursive
//! matcher, which a pattern like `*a*a*a*a*b` on `aaaa…` makes exponential.

use std::fmt;

/// The longest pattern accepted: any namespace or image reference fits.
pub const MAX_GLOB_LENGTH: usize = 4096;

/// A parsed glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The literal pieces between the stars; one piece means no star.
    pieces: Vec<String>,
}

/// Why a pattern is not a glob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    #[error("empty pattern")]
    Empty,
    #[error("pattern longer than {MAX_GLOB_LENGTH} bytes")]
    TooLong,
}

impl Glob {
    pub fn parse(pattern: &str) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if pattern.len() > MAX_GLOB_LENGTH {
            return Err(GlobError::TooLong);
        }
        Ok(Glob {
            pattern: pattern.to_owned(),
            pieces: pattern.split('*').map(str::to_owned).collect(),
        })
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let (first, rest) = self
            .pieces
            .split_first()
            .expect("split always yields a piece");
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let Some(text) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        // The last piece is pinned to the end; the middle ones must fit
        // before it (so `ab*ba` does not match `aba`).
        let Some(mut head) = text.strip_suffix(last.as_str()) else {
            return false;
        };
        for piece in middle {
            match head.find(piece.as_str()) {
                Some(at) => head = &head[at + piece.len()..],
                None => return false,
            }
        }
        true
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl std::str::FromStr for Glob {
    type Err = GlobError;
    fn from_str(s: &str) -> Result<Glob, GlobError> {
        Glob::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Glob::parse(pattern).unwrap().matches(text)
    }

    #[test]
    fn stars_match_any_run_of_characters() {
        assert!(m("kube-*", "kube-system"));
        assert!(m("kube-*", "kube-"));
        assert!(!m("kube-*", "kube"));
        assert!(!m("kube-*", "my-kube-system"));
        assert!(m("*-system", "kube-system"));
        assert!(m("docker.io/library/*", "docker.io/library/nginx:1.27"));
        assert!(m("*/pause:*", "registry.k8s.io/pause:3.10"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "a-c-b"));
        assert!(!m("ab*ba", "aba"), "the pieces may not overlap");
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exactly"));
        assert!(m("ü*ß", "üxß"));
        assert!(!m("ü*ü", "ü"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Glob::parse(""), Err(GlobError::Empty));
        assert_eq!(
            Glob::parse(&"a".repeat(MAX_GLOB_LENGTH + 1)),
            Err(GlobError::TooLong)
        );
    }

    #[test]
    fn hostile_inputs_match_in_linear_time() {
        // Exponential for a backtracking matcher.
        let pattern = format!("{}b", "*a".repeat(2000));
        let text = "a".repeat(1_000_000);
        let started = std::time::Instant::now();
        assert!(!m(&pattern, &text));
        assert!(m(&format!("{}a", "*a".repeat(2000)), &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
