//! Workload kinds named by configuration (`--workload-kind`): any
//! `group/version/Kind` with the places of its pod spec(s), read through
//! kube's dynamic API, plus presets for well-known ones.
//!
//! Custom objects are untrusted — a CRD may accept anything — so an object
//! whose pod spec is not shaped like one (a path that leads to a string, a
//! `containers` that is not a list, an image that is a number) is skipped on
//! its own as invalid; a path that is simply absent means no containers.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use super::{Container, Kind, PullConfig, Workload, DEFAULT_SERVICE_ACCOUNT};
use crate::interner::Interner;

/// The identity of a configured kind; what its series' `group`, `version`
/// and `kind` labels say.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KindName {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl KindName {
    /// `group/version`, or `version` for the core group: what `apiVersion` says.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// One `&'static` per distinct name, so [`Kind`] stays `Copy`. Names
    /// come only from the configuration, so what is kept is bounded by it.
    fn intern(self) -> &'static KindName {
        static NAMES: Mutex<BTreeSet<&'static KindName>> = Mutex::new(BTreeSet::new());
        let mut names = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = names.get(&self) {
            return known;
        }
        let leaked: &'static KindName = Box::leak(Box::new(self));
        names.insert(leaked);
        leaked
    }
}

/// Where a pod spec sits in an object: dotted field names, e.g. `.spec.template.spec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpecPath {
    /// As written, without braces: what the `jsonpath` label starts with.
    text: String,
    fields: Vec<String>,
}

/// Most fields in a path; the deepest preset has four.
const MAX_PATH_FIELDS: usize = 16;

impl PodSpecPath {
    fn parse(text: &str) -> Result<PodSpecPath, KindSpecError> {
        let bad = || KindSpecError::Path(text.to_owned());
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text);
        let rest = inner.strip_prefix('.').ok_or_else(bad)?;
        let fields: Vec<String> = rest.split('.').map(str::to_owned).collect();
        let valid_field = |f: &String| {
            !f.is_empty()
                && f.len() <= 253
                && f.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if fields.len() > MAX_PATH_FIELDS || !fields.iter().all(valid_field) {
            return Err(bad());
        }
        Ok(PodSpecPath {
            text: inner.to_owned(),
            fields,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// version-checker's annotations of the pod template whose spec this
    /// path leads to (`.spec.template.spec` → `.spec.template.metadata`),
    /// as version-checker reads them from the Pod; `None` when there are
    /// none, so the many objects without pay nothing.
    fn template_annotations(
        &self,
        body: &Value,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let (last, parent) = self.fields.split_last()?;
        if last != "spec" || parent.is_empty() {
            return None;
        }
        let mut at = body;
        for field in parent
            .iter()
            .map(String::as_str)
            .chain(["metadata", "annotations"])
        {
            at = at.get(field)?;
        }
        let annotations: std::collections::BTreeMap<String, String> = at
            .as_object()?
            .iter()
            .filter(|(key, _)| key.contains(super::VERSION_CHECKER))
            .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
            .collect();
        (!annotations.is_empty()).then_some(annotations)
    }

    /// What the path leads to in `body`; `Ok(None)` when a field on the
    /// way is absent (or null), an error when something on the way is not
    /// an object.
    fn find<'a>(
        &self,
        body: &'a Value,
    ) -> Result<Option<&'a serde_json::Map<String, Value>>, String> {
        let mut at = body;
        for (depth, field) in self.fields.iter().enumerate() {
            let Value::Object(map) = at else {
                return Err(format!(
                    ".{} is not an object",
                    self.fields[..depth].join(".")
                ));
            };
            match map.get(field) {
                None | Some(Value::Null) => return Ok(None),
                Some(next) => at = next,
            }
        }
        match at {
            Value::Object(map) => Ok(Some(map)),
            _ => Err(format!("{} is not an object", self.text)),
        }
    }
}

/// A kind to inventory through the dynamic API and where its pod specs sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSpec {
    pub name: &'static KindName,
    pub paths: Vec<PodSpecPath>,
}

/// The documented presets: (name, group, version, kind, path).
pub const PRESETS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "argo-rollouts",
        "argoproj.io",
        "v1alpha1",
        "Rollout",
        ".spec.template.spec",
    ),
    (
        "knative-serving",
        "serving.knative.dev",
        "v1",
        "Service",
        ".spec.template.spec",
    ),
    (
        "keda-scaledjob",
        "keda.sh",
        "v1alpha1",
        "ScaledJob",
        ".spec.jobTargetRef.template.spec",
    ),
    (
        "openkruise-cloneset",
        "apps.kruise.io",
        "v1alpha1",
        "CloneSet",
        ".spec.template.spec",
    ),
    (
        "replicaset",
        "apps",
        "v1",
        "ReplicaSet",
        ".spec.template.spec",
    ),
    (
        "replicationcontroller",
        "",
        "v1",
        "ReplicationController",
        ".spec.template.spec",
    ),
];

/// The path a kind given without one gets: where every workload API keeps its template.
const DEFAULT_PATH: &str = ".spec.template.spec";

/// Why a `--workload-kind` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindSpecError {
    #[error("{0:?} is neither a preset ({presets}) nor GROUP/VERSION/KIND[=PATH,...] (VERSION/KIND for the core group)", presets = preset_names())]
    Syntax(String),
    #[error("pod spec path {0:?} is not a dotted field path such as .spec.template.spec")]
    Path(String),
    #[error("{0} is inventoried already (Pod, Deployment, StatefulSet, DaemonSet, Job and CronJob always are)")]
    BuiltIn(String),
}

fn preset_names() -> String {
    PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
}

/// A DNS-subdomain-like group, a lowercase alphanumeric version, a
/// CamelCase kind: what API discovery can hold.
fn valid_name(group: &str, version: &str, kind: &str) -> bool {
    let group_ok = group.len() <= 253
        && group.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        || group.is_empty();
    let version_ok = !version.is_empty()
        && version.len() <= 63
        && version
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let kind_ok = !kind.is_empty()
        && kind.len() <= 63
        && kind.starts_with(|c: char| c.is_ascii_alphabetic())
        && kind.chars().all(|c| c.is_ascii_alphanumeric());
    group_ok && version_ok && kind_ok
}

impl KindSpec {
    /// A preset name, or `GROUP/VERSION/KIND[=PATH,PATH…]` (`VERSION/KIND`
    /// for the core group; the path defaults to `.spec.template.spec`).
    pub fn parse(text: &str) -> Result<KindSpec, KindSpecError> {
        let text = text.trim();
        if let Some(&(_, group, version, kind, path)) = PRESETS.iter().find(|p| p.0 == text) {
            let gvk = if group.is_empty() {
                format!("{version}/{kind}")
            } else {
                format!("{group}/{version}/{kind}")
            };
            return KindSpec::parse(&format!("{gvk}={path}"));
        }
        let syntax = || KindSpecError::Syntax(text.to_owned());
        let (gvk, paths) = text.split_once('=').unwrap_or((text, DEFAULT_PATH));
        let parts: Vec<&str> = gvk.split('/').collect();
        let (group, version, kind) = match parts.as_slice() {
            [version, kind] => ("", *version, *kind),
            [group, version, kind] => (*group, *version, *kind),
            _ => return Err(syntax()),
        };
        if !valid_name(group, version, kind) {
            return Err(syntax());
        }
        let name = KindName {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        };
        if Kind::ALL
            .iter()
            .any(|k| (k.group(), k.version(), k.as_str()) == (group, version, kind))
        {
            return Err(KindSpecError::BuiltIn(format!(
                "{}/{kind}",
                name.api_version()
            )));
        }
        let paths = paths
            .split(',')
            .map(|p| PodSpecPath::parse(p.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KindSpec {
            name: name.intern(),
            paths,
        })
    }

    pub fn kind(&self) -> Kind {
        Kind::Custom(self.name)
    }

    /// Merges specs of one kind (their paths, in order) and sorts them as
    /// [`Kind`] orders them.
    pub fn normalize(specs: &[KindSpec]) -> Vec<KindSpec> {
        let mut merged: Vec<KindSpec> = Vec::new();
        for spec in specs {
            match merged.iter_mut().find(|m| m.name == spec.name) {
                Some(known) => {
                    for path in &spec.paths {
                        if !known.paths.contains(path) {
                            known.paths.push(path.clone());
                        }
                    }
                }
                None => merged.push(spec.clone()),
            }
        }
        merged.sort_by(|a, b| a.name.cmp(b.name));
        merged
    }

    /// Reduces an object of this kind (everything but its metadata, as
    /// `body`) to its workload: the containers of each pod spec path in
    /// order, init, regular, ephemeral, as for the built-in kinds, their
    /// repeated strings taken from the pool.
    pub(crate) fn workload(
        &self,
        namespace: &str,
        name: &str,
        body: &Value,
        strings: &mut Interner,
    ) -> Result<Workload, InvalidObject> {
        let invalid = |detail: String| InvalidObject {
            detail: format!("{} {namespace}/{name}: {detail}", self.name.kind),
        };
        let mut containers = Vec::with_capacity(self.count_containers(body));
        let mut jsonpath = String::new();
        let mut pull = None;
        for path in &self.paths {
            let Some(spec) = path.find(body).map_err(invalid)? else {
                continue;
            };
            let annotations = path.template_annotations(body);
            for field in ["initContainers", "containers", "ephemeralContainers"] {
                let entries = match spec.get(field) {
                    None | Some(Value::Null) => continue,
                    Some(Value::Array(entries)) => entries,
                    Some(_) => return Err(invalid(format!("{}.{field} is not a list", path.text))),
                };
                for (index, entry) in entries.iter().enumerate() {
                    let at = || format!("{}.{field}[{index}]", path.text);
                    let string = |key: &str| match entry.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) => Ok(Some(s.as_str())),
                        Some(_) => Err(invalid(format!("{}.{key} is not a string", at()))),
                    };
                    if !entry.is_object() {
                        return Err(invalid(format!("{} is not an object", at())));
                    }
                    let container_name =
                        string("name")?.ok_or_else(|| invalid(format!("{} has no name", at())))?;
                    let image = string("image")?.unwrap_or_default();
                    jsonpath.clear();
                    // Writing to a String cannot fail.
                    let _ = write!(jsonpath, "{{{}.{field}[{index}]}}", path.text);
                    containers.push(Container {
                        name: strings.intern(container_name),
                        image: strings.intern(image),
                        jsonpath: strings.intern(&jsonpath),
                        image_id: None,
                        versions: annotations
                            .as_ref()
                            .and_then(|a| super::VersionAnnotations::read(a, container_name))
                            .map(Arc::new),
                    });
                }
            }
            // The first pod spec found says where credentials come from.
            if pull.is_none() {
                pull = Some(pull_config(spec, strings).map_err(|e| invalid(e.to_string()))?);
            }
        }
        Ok(Workload {
            kind: self.kind(),
            namespace: strings.intern(namespace),
            name: Arc::from(name),
            containers,
            pull: pull.unwrap_or_else(|| PullConfig {
                secrets: Vec::new(),
                service_account: strings.intern(DEFAULT_SERVICE_ACCOUNT),
            }),
            // Filled by the caller, which holds the allowlist.
            metadata_labels: Vec::new(),
        })
    }

    /// How many container entries the pod specs of `body` list, so that
    /// the workload's list is allocated once at its length; what is not
    /// shaped as expected counts nothing (it is refused anyway).
    fn count_containers(&self, body: &Value) -> usize {
        self.paths
            .iter()
            .filter_map(|path| path.find(body).ok().flatten())
            .flat_map(|spec| {
                ["initContainers", "containers", "ephemeralContainers"]
                    .into_iter()
                    .filter_map(|field| spec.get(field)?.as_array().map(Vec::len))
            })
            .fold(0, usize::saturating_add)
    }
}

impl fmt::Display for KindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name.api_version(), self.name.kind)
    }
}

/// Why a custom object's pod spec names no usable credentials.
#[derive(Debug, thiserror::Error)]
enum PullConfigError {
    #[error("{0} is not a string")]
    NotAString(&'static str),
    #[error("imagePullSecrets[].name is not a string")]
    SecretName,
    #[error("imagePullSecrets is not a list")]
    NotAList,
}

/// As [`super::pull_config`] reads a typed pod spec.
fn pull_config(
    spec: &serde_json::Map<String, Value>,
    strings: &mut Interner,
) -> Result<PullConfig, PullConfigError> {
    let account = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|key| match spec.get(*key) {
            Some(Value::String(s)) if !s.is_empty() => Some(Ok(s.as_str())),
            None | Some(Value::Null) | Some(Value::String(_)) => None,
            Some(_) => Some(Err(PullConfigError::NotAString(key))),
        })
        .transpose()?;
    let secrets = match spec.get("imagePullSecrets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => {
            let names = entries
                .iter()
                .map(|e| match e.get("name") {
                    Some(Value::String(name)) => Ok(name.as_str()),
                    None | Some(Value::Null) => Ok(""),
                    Some(_) => Err(PullConfigError::SecretName),
                })
                .filter(|n| !matches!(n, Ok("")))
                .collect::<Result<Vec<&str>, _>>()?;
            let mut secrets = Vec::with_capacity(names.len());
            secrets.extend(names.into_iter().map(|name| strings.intern(name)));
            secrets
        }
        Some(_) => return Err(PullConfigError::NotAList),
    };
    Ok(PullConfig {
        secrets,
        service_account: strings.intern(account.unwrap_or(DEFAULT_SERVICE_ACCOUNT)),
    })
}

/// An object of a configured kind that is not shaped as its paths say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct InvalidObject {
    /// Where it is wrong, never a value from it.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interner::StringPool;
    use serde_json::json;

    fn reduce(spec: &KindSpec, name: &str, body: &Value) -> Result<Workload, InvalidObject> {
        spec.workload("ns", name, body, &mut StringPool::default().lock())
    }

    fn images(w: &Workload) -> Vec<(&str, &str, &str)> {
        w.containers
            .iter()
            .map(|c| (&*c.name, &*c.image, &*c.jsonpath))
            .collect()
    }

    #[test]
    fn presets_and_explicit_kinds_parse() {
        let rollout = KindSpec::parse("argo-rollouts").unwrap();
        assert_eq!(rollout.to_string(), "argoproj.io/v1alpha1/Rollout");
        assert_eq!(rollout.paths[0].as_str(), ".spec.template.spec");
        let job = KindSpec::parse("keda-scaledjob").unwrap();
        assert_eq!(job.paths[0].as_str(), ".spec.jobTargetRef.template.spec");
        let rc = KindSpec::parse("replicationcontroller").unwrap();
        assert_eq!(
            (rc.name.group.as_str(), rc.name.api_version()),
            ("", "v1".into())
        );
        let custom = KindSpec::parse("example.com/v1/Thing={.spec.a.spec}, .spec.b").unwrap();
        assert_eq!(
            custom
                .paths
                .iter()
                .map(PodSpecPath::as_str)
                .collect::<Vec<_>>(),
            [".spec.a.spec", ".spec.b"]
        );
        assert_eq!(
            KindSpec::parse("example.com/v1/Thing").unwrap().paths[0].as_str(),
            DEFAULT_PATH
        );
        assert!(
            std::ptr::eq(
                custom.name,
                KindSpec::parse("example.com/v1/Thing").unwrap().name
            ),
            "one name, interned once"
        );
        for bad in [
            "nope",
            "a/b/c/d",
            "Example.com/v1/Thing",
            "x/v1/thing-s",
            "x/v1/T=spec",
            "x/v1/T=.a[0]",
            "x/v1/T=.a..b",
            "x/v1/T=",
        ] {
            assert!(KindSpec::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            KindSpec::parse("apps/v1/Deployment"),
            Err(KindSpecError::BuiltIn(_))
        ));
    }

    #[test]
    fn containers_of_every_path_with_their_jsonpaths() {
        let spec = KindSpec::parse("example.com/v1/Pair=.spec.a.spec,.spec.b.spec").unwrap();
        let body = json!({"spec": {
            "a": {"spec": {
                "serviceAccountName": "builder",
                "imagePullSecrets": [{"name": "regcred"}, {}],
                "initContainers": [{"name": "init", "image": "init:1"}],
                "containers": [{"name": "app", "image": "app:1"}],
            }},
            "b": {"spec": {"containers": [{"name": "other", "image": "other:1"}, {"name": "noimage"}]}},
        }});
        let w = reduce(&spec, "p", &body).unwrap();
        assert_eq!(w.kind.group(), "example.com");
        assert_eq!(w.kind.as_str(), "Pair");
        assert_eq!(
            images(&w),
            [
                ("init", "init:1", "{.spec.a.spec.initContainers[0]}"),
                ("app", "app:1", "{.spec.a.spec.containers[0]}"),
                ("other", "other:1", "{.spec.b.spec.containers[0]}"),
                ("noimage", "", "{.spec.b.spec.containers[1]}"),
            ]
        );
        assert_eq!(w.pull.secrets, [Arc::from("regcred")]);
        assert_eq!(&*w.pull.service_account, "builder");
    }

    #[test]
    fn absent_paths_mean_no_containers_and_wrong_shapes_cost_the_object() {
        let spec = KindSpec::parse("keda-scaledjob").unwrap();
        let w = reduce(&spec, "empty", &json!({"spec": {}})).unwrap();
        assert!(w.containers.is_empty());
        assert_eq!(&*w.pull.service_account, "default");
        for body in [
            json!({"spec": "text"}),
            json!({"spec": {"jobTargetRef": {"template": {"spec": []}}}}),
            json!({"spec": {"jobTargetRef": {"template": {"spec": {"containers": {}}}}}}),
            json!({"spec": {"jobTargetRef": {"template": {"spec": {"containers": [7]}}}}}),
            json!({"spec": {"jobTargetRef": {"template": {"spec": {"containers": [{"name": "c", "image": 7}]}}}}}),
            json!({"spec": {"jobTargetRef": {"template": {"spec": {"containers": [{"image": "x"}]}}}}}),
            json!({"spec": {"jobTargetRef": {"template": {"spec": {"imagePullSecrets": "s"}}}}}),
        ] {
            let error = reduce(&spec, "bad", &body).unwrap_err();
            assert!(error.detail.starts_with("ScaledJob ns/bad: "), "{error}");
            assert!(
                !error.detail.contains('7'),
                "no values in messages: {error}"
            );
        }
    }

    #[test]
    fn normalize_merges_and_orders_kinds() {
        let specs = [
            KindSpec::parse("x.io/v1/B=.spec.a").unwrap(),
            KindSpec::parse("x.io/v1/A").unwrap(),
            KindSpec::parse("x.io/v1/B=.spec.b,.spec.a").unwrap(),
        ];
        let merged = KindSpec::normalize(&specs);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].name.kind, "A");
        assert_eq!(merged[1].paths.len(), 2);
        assert!(Kind::Custom(merged[0].name) < Kind::Custom(merged[1].name));
        assert!(Kind::CronJob < Kind::Custom(merged[0].name));
    }
}
