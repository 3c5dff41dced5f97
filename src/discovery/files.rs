//! Workloads read from manifest files: the no-cluster source.
//!
//! Accepts what `kubectl apply -f` accepts for our kinds: YAML (one or many
//! documents) or JSON, single objects or `kind: List`, from files, directories
//! (recursively, `*.yaml`, `*.yml`, `*.json`) or `-` for standard input.
//! A document that cannot be understood is logged and skipped; the rest of
//! the snapshot still counts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use super::{workload, DiscoveryError, HasPodSpec, Workload};
use crate::pull_secrets::PullSecrets;
use crate::telemetry::Telemetry;

/// Reads workloads from files, again at every snapshot, so a directory kept
/// in sync by GitOps tooling behaves like a cluster.
pub struct FileSource {
    paths: Vec<PathBuf>,
    namespaces: Vec<String>,
    /// Standard input can be read only once; later snapshots reuse it.
    stdin: OnceLock<String>,
    telemetry: Arc<Telemetry>,
    /// Secrets and ServiceAccounts in the files play the cluster's part.
    pull_secrets: Arc<PullSecrets>,
}

/// What the files hold that matters: workloads, and what their pull
/// credentials come from.
#[derive(Default)]
struct Parsed {
    workloads: Vec<Workload>,
    secrets: Vec<Secret>,
    accounts: Vec<ServiceAccount>,
}

impl FileSource {
    pub fn new(
        paths: Vec<PathBuf>,
        namespaces: Vec<String>,
        telemetry: Arc<Telemetry>,
        pull_secrets: Arc<PullSecrets>,
    ) -> Self {
        FileSource {
            paths,
            namespaces,
            stdin: OnceLock::new(),
            telemetry,
            pull_secrets,
        }
    }

    pub async fn snapshot(&self) -> Result<Vec<Workload>, DiscoveryError> {
        let mut parsed = Parsed::default();
        for path in &self.paths {
            for (origin, text) in self.read(path).await? {
                self.parse(&origin, &text, &mut parsed);
            }
        }
        self.pull_secrets
            .replace_from_files(&parsed.secrets, &parsed.accounts);
        let mut workloads = parsed.workloads;
        if !self.namespaces.is_empty() {
            workloads.retain(|w| self.namespaces.contains(&w.namespace));
        }
        Ok(workloads)
    }

    /// Returns (name for messages, contents) of every file behind `path`.
    async fn read(&self, path: &Path) -> Result<Vec<(String, String)>, DiscoveryError> {
        let read_error = |source| DiscoveryError::Read {
            path: path.display().to_string(),
            source,
        };
        if path == Path::new("-") {
            if self.stdin.get().is_none() {
                let mut text = String::new();
                tokio::io::stdin()
                    .read_to_string(&mut text)
                    .await
                    .map_err(read_error)?;
                let _ = self.stdin.set(text);
            }
            return Ok(vec![(
                "<stdin>".into(),
                self.stdin.get().cloned().unwrap_or_default(),
            )]);
        }
        let mut files = Vec::new();
        collect_files(path, &mut files).map_err(read_error)?;
        let mut contents = Vec::with_capacity(files.len());
        for file in files {
            let text =
                tokio::fs::read_to_string(&file)
                    .await
                    .map_err(|source| DiscoveryError::Read {
                        path: file.display().to_string(),
                        source,
                    })?;
            contents.push((file.display().to_string(), text));
        }
        Ok(contents)
    }

    fn parse(&self, origin: &str, text: &str, out: &mut Parsed) {
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            match Value::deserialize(document) {
                Ok(Value::Null) => {} // empty document, e.g. a trailing `---`
                Ok(value) => self.collect(origin, index, value, out),
                Err(e) => {
                    self.telemetry
                        .discovery_errors
                        .with_label_values(&["manifest", "unparsable"])
                        .inc();
                    warn!(file = origin, document = index, error = %e, "skipping a document that is not valid YAML or JSON");
                    // The YAML stream cannot be resynchronised after a syntax error.
                    break;
                }
            }
        }
    }

    fn collect(&self, origin: &str, index: usize, value: Value, out: &mut Parsed) {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let parsed = match (api_version.as_str(), kind.as_str()) {
            (_, "List")
            | (
                _,
                "PodList" | "DeploymentList" | "StatefulSetList" | "DaemonSetList" | "JobList"
                | "CronJobList",
            ) => {
                if let Some(Value::Array(items)) = value.get("items") {
                    for item in items.clone() {
                        self.collect(origin, index, item, out);
                    }
                }
                return;
            }
            ("v1", "Secret" | "ServiceAccount") => {
                let result = if kind == "Secret" {
                    serde_json::from_value(value).map(|mut s: Secret| {
                        s.metadata.namespace.get_or_insert_with(|| "default".into());
                        out.secrets.push(s)
                    })
                } else {
                    serde_json::from_value(value).map(|mut a: ServiceAccount| {
                        a.metadata.namespace.get_or_insert_with(|| "default".into());
                        out.accounts.push(a)
                    })
                };
                if let Err(e) = result {
                    warn!(file = origin, document = index, kind, error = %e, "skipping an object that does not match its kind's schema");
                }
                return;
            }
            ("v1", "Pod") => typed::<Pod>(value),
            ("apps/v1", "Deployment") => typed::<Deployment>(value),
            ("apps/v1", "StatefulSet") => typed::<StatefulSet>(value),
            ("apps/v1", "DaemonSet") => typed::<DaemonSet>(value),
            ("batch/v1", "Job") => typed::<Job>(value),
            ("batch/v1", "CronJob") => typed::<CronJob>(value),
            _ => {
                debug!(
                    file = origin,
                    document = index,
                    api_version,
                    kind,
                    "not an inventoried kind; ignored"
                );
                return;
            }
        };
        match parsed {
            Ok(w) => out.workloads.push(w),
            Err(e) => {
                self.telemetry
                    .discovery_errors
                    .with_label_values(&["manifest", "invalid_object"])
                    .inc();
                warn!(file = origin, document = index, kind, error = %e, "skipping an object that does not match its kind's schema");
            }
        }
    }
}

fn typed<K: HasPodSpec + DeserializeOwned>(value: Value) -> Result<Workload, serde_json::Error> {
    Ok(workload(&serde_json::from_value::<K>(value)?, "default"))
}

/// Files under `path` (itself if a file), manifests only, in a stable order.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !std::fs::metadata(path)?.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            // e.g. `..data` symlinks of a mounted ConfigMap, which duplicate its files.
            continue;
        }
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Kind;

    fn no_secrets() -> Arc<PullSecrets> {
        Arc::new(PullSecrets::new(true, crate::registry::Keyring::default()))
    }

    fn source() -> FileSource {
        FileSource::new(vec![], vec![], Arc::new(Telemetry::new()), no_secrets())
    }

    fn parse(source: &FileSource, origin: &str, text: &str) -> Vec<Workload> {
        let mut parsed = Parsed::default();
        source.parse(origin, text, &mut parsed);
        parsed.workloads
    }

    #[test]
    fn multi_document_yaml_json_and_lists() {
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {containers: [{name: c, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: v1
kind: List
items:
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: cj}
  spec:
    schedule: "@hourly"
    jobTemplate: {spec: {template: {spec: {containers: [{name: r, image: report}]}}}}
---
"#;
        let got = parse(&source(), "test.yaml", yaml);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].kind, got[0].name.as_str()), (Kind::Pod, "a"));
        assert_eq!(
            (got[1].kind, got[1].namespace.as_str()),
            (Kind::CronJob, "default")
        );

        let json = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"selector":{},"template":{"spec":{"containers":[{"name":"c","image":"app"}]}}}}"#;
        assert_eq!(
            parse(&source(), "test.json", json)[0].kind,
            Kind::Deployment
        );
    }

    #[test]
    fn bad_documents_are_skipped_not_fatal() {
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: good}
spec: {containers: [{name: c, image: ok}]}
---
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec: {containers: "not a list"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: also-good}
spec: {selector: {}, template: {spec: {containers: [{name: c, image: ok}]}}}
"#;
        let s = source();
        let got = parse(&s, "test.yaml", yaml);
        let names: Vec<_> = got.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["good", "also-good"]);
        assert_eq!(
            s.telemetry
                .discovery_errors
                .with_label_values(&["manifest", "invalid_object"])
                .get(),
            1
        );
        assert!(parse(&source(), "broken.yaml", "kind: [unclosed").is_empty());
    }

    #[tokio::test]
    async fn directories_are_read_recursively_and_filtered_by_namespace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let pod = |name: &str, ns: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n")
        };
        std::fs::write(dir.path().join("a.yaml"), pod("a", "keep")).unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), pod("b", "drop")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let all = FileSource::new(
            vec![dir.path().into()],
            vec![],
            Arc::new(Telemetry::new()),
            no_secrets(),
        );
        assert_eq!(all.snapshot().await.unwrap().len(), 2);
        let some = FileSource::new(
            vec![dir.path().into()],
            vec!["keep".into()],
            Arc::new(Telemetry::new()),
            no_secrets(),
        );
        let got = some.snapshot().await.unwrap();
        assert_eq!((got.len(), got[0].name.as_str()), (1, "a"));

        let missing = FileSource::new(
            vec![dir.path().join("nope.yaml")],
            vec![],
            Arc::new(Telemetry::new()),
            no_secrets(),
        );
        let err = missing.snapshot().await.unwrap_err().to_string();
        assert!(err.contains("nope.yaml"), "{err}");
    }
}
