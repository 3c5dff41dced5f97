//! What to inventory: the namespaces, the kinds beyond the built-in ones,
//! and the filters (`--exclude-namespace`, `--selector`,
//! `--exclude-image`). Every source applies the same [`Selection`]; the
//! cluster sources send the label selector to the API server (so objects
//! it excludes never reach the pusher), files evaluate it locally.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::custom::KindSpec;
use super::Workload;
use crate::glob::Glob;

/// Which workloads, and which of their containers, make the inventory.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these namespaces; empty means all.
    pub namespaces: Vec<String>,
    /// Kinds read through the dynamic API besides the built-in ones.
    pub kinds: Vec<KindSpec>,
    /// Namespaces left out, as globs.
    pub exclude_namespaces: Vec<Glob>,
    /// Only workloads whose labels match.
    pub selector: Option<LabelSelector>,
    /// Containers whose image (as written) matches one of these are left out.
    pub exclude_images: Vec<Glob>,
}

impl Selection {
    /// Every workload of the built-in kinds in these namespaces (all when empty).
    pub fn namespaces(namespaces: Vec<String>) -> Selection {
        Selection {
            namespaces,
            ..Selection::default()
        }
    }

    /// The selector as the API server's `labelSelector` parameter takes it.
    pub(crate) fn label_selector(&self) -> Option<String> {
        self.selector.as_ref().map(LabelSelector::to_string)
    }

    /// The workload as the inventory keeps it: `None` when its namespace is
    /// excluded, else without the containers whose image is excluded (their
    /// `jsonpath` keeps the index they have in the spec).
    pub(crate) fn admit(&self, mut workload: Workload) -> Option<Workload> {
        if !self.namespace_admitted(&workload.namespace) {
            return None;
        }
        if !self.exclude_images.is_empty() {
            let before = workload.containers.len();
            workload
                .containers
                .retain(|c| !self.exclude_images.iter().any(|g| g.matches(&c.image)));
            // Kept at its exact length, as the extraction made it.
            if workload.containers.len() < before {
                workload.containers.shrink_to_fit();
            }
        }
        Some(workload)
    }

    /// Not excluded by `--exclude-namespace` (the allow-list is applied
    /// by scoping requests, or by the file source).
    fn namespace_admitted(&self, namespace: &str) -> bool {
        !self.exclude_namespaces.iter().any(|g| g.matches(namespace))
    }

    /// Whether an object read from a file passes `--selector`, by its
    /// `metadata.labels`.
    pub(crate) fn selects(&self, object: &Value) -> bool {
        let Some(selector) = &self.selector else {
            return true;
        };
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        selector.matches(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    }
}

/// A Kubernetes label selector (`app=web,tier!=db,env in (prod,staging),!legacy`),
/// checked at start-up so that a typo fails there, not at every request.
#[derive(Clone, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Why a string is not a label selector.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("empty label selector")]
    Empty,
    #[error("label selector longer than {MAX_SELECTOR_LENGTH} bytes")]
    TooLong,
    #[error("cannot parse requirement {0:?} of the label selector")]
    Requirement(String),
    #[error("invalid label key {0:?} (a name of at most 63 alphanumerics, '-', '_' or '.', optionally after a DNS prefix and '/')")]
    Key(String),
    #[error("invalid label value {0:?} (at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric)")]
    Value(String),
}

/// Longer selectors are refused; real ones are a few dozen bytes.
pub const MAX_SELECTOR_LENGTH: usize = 4096;

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        if text.len() > MAX_SELECTOR_LENGTH {
            return Err(SelectorError::TooLong);
        }
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            if term.is_empty() {
                return Err(SelectorError::Requirement(term.to_owned()));
            }
            requirements.push(parse_term(term)?);
        }
        if requirements.is_empty() {
            return Err(SelectorError::Empty);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether labels (looked up by `get`) satisfy every requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    /// Matches a map of labels.
    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches(|k| labels.get(k).map(String::as_str))
    }
}

/// Splits on the commas that are not inside `in (…)` value lists.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = text[start..].trim();
    if !last.is_empty() || !terms.is_empty() {
        terms.push(last);
    }
    terms
}

fn parse_term(term: &str) -> Result<Requirement, SelectorError> {
    let bad = || SelectorError::Requirement(term.to_owned());
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::NotExists(key_of(key.trim())?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key_of(key.trim())?,
            value_of(value.trim())?,
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(
            key_of(key.trim())?,
            value_of(value.trim())?,
        ));
    }
    let Some(open) = term.find('(') else {
        return Ok(Requirement::Exists(key_of(term)?));
    };
    let values = term[open..]
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(bad)?;
    let head: Vec<&str> = term[..open].split_whitespace().collect();
    let [key, op] = head.as_slice() else {
        return Err(bad());
    };
    let key = key_of(key)?;
    let values = values
        .split(',')
        .map(|v| value_of(v.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    match *op {
        "in" => Ok(Requirement::In(key, values)),
        "notin" => Ok(Requirement::NotIn(key, values)),
        _ => Err(bad()),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A name or value part: at most 63 characters, alphanumerics at both ends.
fn valid_name(name: &str) -> bool {
    name.len() <= 63
        && name.chars().all(is_name_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn key_of(key: &str) -> Result<String, SelectorError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    if prefix_ok && valid_name(name) {
        Ok(key.to_owned())
    } else {
        Err(SelectorError::Key(key.to_owned()))
    }
}

fn value_of(value: &str) -> Result<String, SelectorError> {
    if value.is_empty() || valid_name(value) {
        Ok(value.to_owned())
    } else {
        Err(SelectorError::Value(value.to_owned()))
    }
}

/// The canonical form, as sent to the API server.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r {
                Requirement::Equals(k, v) => write!(f, "{k}={v}")?,
                Requirement::NotEquals(k, v) => write!(f, "{k}!={v}")?,
                Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(","))?,
                Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(","))?,
                Requirement::Exists(k) => write!(f, "{k}")?,
                Requirement::NotExists(k) => write!(f, "!{k}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LabelSelector({self})")
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Container, Kind, PullConfig};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_parse_match_and_print_as_kubernetes_does() {
        let s = LabelSelector::parse(
            "app=web, tier != db,env in (prod, staging),!legacy,team,x==y,z notin (a)",
        )
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,tier!=db,env in (prod,staging),!legacy,team,x=y,z notin (a)"
        );
        let good = labels(&[("app", "web"), ("env", "prod"), ("team", "a"), ("x", "y")]);
        assert!(s.matches_map(&good));
        let mut legacy = good.clone();
        legacy.insert("legacy".into(), "".into());
        assert!(!s.matches_map(&legacy));
        let mut staging_db = good.clone();
        staging_db.insert("tier".into(), "db".into());
        assert!(!s.matches_map(&staging_db));
        assert!(LabelSelector::parse("example.com/team=a").is_ok());
        assert!(LabelSelector::parse("a=")
            .unwrap()
            .matches_map(&labels(&[("a", "")])));
    }

    #[test]
    fn bad_selectors_are_refused() {
        for bad in [
            "",
            ",",
            "a=b,",
            "a in b",
            "a in (b",
            "a foo (b)",
            "-a=b",
            "a=b c",
            "a/b/c=d",
            "a=-b",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            LabelSelector::parse(&"a".repeat(5000)),
            Err(SelectorError::TooLong)
        );
    }

    #[test]
    fn admit_drops_excluded_namespaces_and_images() {
        let selection = Selection {
            exclude_namespaces: vec![Glob::parse("kube-*").unwrap()],
            exclude_images: vec![Glob::parse("*/pause:*").unwrap()],
            ..Selection::default()
        };
        let workload = |namespace: &str| Workload {
            kind: Kind::Pod,
            namespace: namespace.into(),
            name: "p".into(),
            containers: ["registry.k8s.io/pause:3.10", "app:1"]
                .iter()
                .enumerate()
                .map(|(i, image)| Container {
                    name: format!("c{i}").into(),
                    image: (*image).into(),
                    jsonpath: format!("{{.spec.containers[{i}]}}").into(),
                    image_id: None,
                    versions: None,
                })
                .collect(),
            pull: PullConfig::default(),
            metadata_labels: Vec::new(),
        };
        assert!(selection.admit(workload("kube-system")).is_none());
        let kept = selection.admit(workload("shop")).unwrap();
        assert_eq!(kept.containers.len(), 1);
        assert_eq!(&*kept.containers[0].jsonpath, "{.spec.containers[1]}");
    }
}
