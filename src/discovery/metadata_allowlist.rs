//! Ownership metadata: the labels and annotations of a workload that
//! `--workload-labels` and `--workload-annotations` allow, kept as the
//! label names and values of `container_image_workload_labels`, named as
//! kube-state-metrics names them (`label_app_kubernetes_io_name`), so that
//! alerts and dashboards route by team with the joins they already use.
//!
//! Only what is allowed is kept, when the object is reduced to its
//! workload: memory follows the allowlist, not the objects. Metadata is
//! untrusted (anyone who may create a Deployment writes its labels, and a
//! manifest file is not even validated by an API server), so what one
//! workload adds is bounded in count and length, and names that collide
//! once sanitised are told apart, never sent twice.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::interner::Interner;

/// The allowlist entry that allows every key.
pub const WILDCARD: &str = "*";
/// Most labels and annotations one workload exports: Kubernetes caps
/// neither, and each one is a label name on its series.
pub const MAX_WORKLOAD_LABELS: usize = 64;
/// Longest label name exported (a Kubernetes key is at most 317 bytes).
pub const MAX_NAME_LENGTH: usize = 384;
/// Longest value exported; a longer one is cut and ends in `…`.
pub const MAX_VALUE_LENGTH: usize = 1024;
const TRUNCATED: &str = "…";

/// Keys of one map (labels or annotations) to keep: names, or every key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    all: bool,
    keys: BTreeSet<String>,
}

impl Allowlist {
    /// `*` anywhere allows every key; empty entries are ignored.
    pub fn new<S: AsRef<str>>(keys: &[S]) -> Self {
        let keys: BTreeSet<String> = keys
            .iter()
            .map(|k| k.as_ref().trim())
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        Allowlist {
            all: keys.contains(WILDCARD),
            keys,
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.keys.is_empty()
    }

    fn allows(&self, key: &str) -> bool {
        self.all || self.keys.contains(key)
    }
}

/// Which labels and annotations of workloads are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataAllowlist {
    pub labels: Allowlist,
    pub annotations: Allowlist,
}

impl MetadataAllowlist {
    /// Whether any metadata is exported: only then does every workload get
    /// a `container_image_workload_labels` series.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }

    /// The `label_*` and `annotation_*` label names and values of one
    /// object, sorted by name, at most [`MAX_WORKLOAD_LABELS`], taken from
    /// the pool (names, and values such as teams, repeat across workloads).
    pub fn keep(&self, meta: &ObjectMeta, strings: &mut Interner) -> Vec<(Arc<str>, Arc<str>)> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut kept = Vec::new();
        for (prefix, map, allow) in [
            ("label", &meta.labels, &self.labels),
            ("annotation", &meta.annotations, &self.annotations),
        ] {
            let Some(map) = map.as_ref().filter(|_| !allow.is_empty()) else {
                continue;
            };
            kept.extend(prometheus_labels(
                prefix,
                map.iter().filter(|(k, _)| allow.allows(k)),
            ));
        }
        kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        kept.truncate(MAX_WORKLOAD_LABELS);
        let mut pooled = Vec::with_capacity(kept.len());
        pooled.extend(
            kept.iter()
                .map(|(name, value)| (strings.intern(name), strings.intern(value))),
        );
        pooled
    }
}

/// kube-state-metrics' names for the entries of one map, in key order:
/// `PREFIX_` + the key with every character outside `[a-zA-Z0-9_]` made
/// `_` and camelCase made snake_case. Keys that end up with one name all
/// get a `_conflictN` suffix (N from 1, in key order), skipping names
/// taken otherwise, so no name is sent twice. Names longer than
/// [`MAX_NAME_LENGTH`] are left out; values are cut to [`MAX_VALUE_LENGTH`].
fn prometheus_labels<'a>(
    prefix: &str,
    entries: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<(String, String)> {
    let named: Vec<(String, &String)> = entries
        .map(|(key, value)| (label_name(prefix, key), value))
        .filter(|(name, _)| name.len() <= MAX_NAME_LENGTH)
        .collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (name, _) in &named {
        *count.entry(name).or_default() += 1;
    }
    let mut used: HashSet<String> = count
        .iter()
        .filter(|(_, n)| **n == 1)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let mut suffix: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(named.len());
    for (name, value) in &named {
        let name = if count[name.as_str()] == 1 {
            name.clone()
        } else {
            let n = suffix.entry(name).or_default();
            loop {
                *n += 1;
                let candidate = format!("{name}_conflict{n}");
                if used.insert(candidate.clone()) {
                    break candidate;
                }
            }
        };
        out.push((name, cut(value)));
    }
    out
}

/// `PREFIX_` and the key sanitised and in snake_case, as kube-state-metrics.
fn label_name(prefix: &str, key: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + 1 + key.len() + 4);
    name.push_str(prefix);
    name.push('_');
    let mut previous: Option<char> = None;
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        };
        if c.is_ascii_uppercase()
            && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
        previous = Some(c);
    }
    name
}

fn cut(value: &str) -> String {
    if value.len() <= MAX_VALUE_LENGTH {
        return value.to_owned();
    }
    let mut end = MAX_VALUE_LENGTH - TRUNCATED.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &value[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interner::StringPool;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        ObjectMeta {
            labels: map(labels),
            annotations: map(annotations),
            ..ObjectMeta::default()
        }
    }

    fn kept(allow: &MetadataAllowlist, meta: &ObjectMeta) -> Vec<(String, String)> {
        allow
            .keep(meta, &mut StringPool::default().lock())
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_are_kube_state_metrics_names() {
        for (key, name) in [
            ("team", "label_team"),
            ("app.kubernetes.io/name", "label_app_kubernetes_io_name"),
            ("managedBy", "label_managed_by"),
            ("fooBarBAZ", "label_foo_bar_baz"),
            ("a1B", "label_a1_b"),
            ("UPPER", "label_upper"),
            ("é-x", "label___x"),
            ("9lives", "label_9lives"),
        ] {
            assert_eq!(label_name("label", key), name, "{key}");
        }
    }

    #[test]
    fn only_allowlisted_keys_are_kept() {
        let allow = MetadataAllowlist {
            labels: Allowlist::new(&["team", "missing"]),
            annotations: Allowlist::new(&["owner"]),
        };
        let m = meta(
            &[("team", "payments"), ("app", "web")],
            &[
                ("owner", "alice"),
                ("kubectl.kubernetes.io/last-applied-configuration", "{…}"),
            ],
        );
        assert_eq!(
            kept(&allow, &m),
            pairs(&[("annotation_owner", "alice"), ("label_team", "payments")])
        );
        assert!(kept(&MetadataAllowlist::default(), &m).is_empty());
        assert!(MetadataAllowlist::default().is_empty());
        let all = MetadataAllowlist {
            labels: Allowlist::new(&["x", WILDCARD]),
            annotations: Allowlist::default(),
        };
        assert_eq!(
            kept(&all, &m),
            pairs(&[("label_app", "web"), ("label_team", "payments")])
        );
    }

    #[test]
    fn names_that_collide_once_sanitised_are_told_apart() {
        let all = MetadataAllowlist {
            labels: Allowlist::new(&[WILDCARD]),
            annotations: Allowlist::new(&[WILDCARD]),
        };
        let m = meta(
            &[
                ("team.name", "a"),
                ("team/name", "b"),
                ("team_name", "c"),
                ("team_name_conflict1", "d"),
            ],
            &[("team.name", "e")],
        );
        let got = kept(&all, &m);
        assert_eq!(
            got,
            pairs(&[
                ("annotation_team_name", "e"),
                // Key order: "team.name" < "team/name" < "team_name".
                ("label_team_name_conflict1", "d"),
                ("label_team_name_conflict2", "a"),
                ("label_team_name_conflict3", "b"),
                ("label_team_name_conflict4", "c"),
            ])
        );
        let names: HashSet<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), got.len(), "no name twice");
    }

    #[test]
    fn what_one_workload_adds_is_bounded() {
        let all = MetadataAllowlist {
            labels: Allowlist::new(&[WILDCARD]),
            annotations: Allowlist::new(&[WILDCARD]),
        };
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i:05}")).collect();
        let long_key = "k".repeat(1000);
        let long_value = "é".repeat(5000);
        let mut labels: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        labels.push((&long_key, "v"));
        labels.push(("k00000", &long_value));
        let got = kept(&all, &meta(&labels, &[]));
        assert_eq!(got.len(), MAX_WORKLOAD_LABELS);
        assert_eq!(got[0].0, "label_k00000");
        assert!(got[0].1.len() <= MAX_VALUE_LENGTH && got[0].1.ends_with(TRUNCATED));
        assert!(got.iter().all(|(n, _)| n.len() <= MAX_NAME_LENGTH));
    }
}
