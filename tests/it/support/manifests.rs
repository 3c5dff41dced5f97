//! Kubernetes manifests as a cluster would read them: rendered by the real
//! tools (`kubectl kustomize` for deploy/, Helm 4's engine through
//! helm-python-sdk for charts/), and checked by a round trip through their
//! k8s-openapi types. k8s-openapi ignores fields it does not know, so a
//! document that does not survive the round trip has a misspelled or
//! misplaced field that the API server would reject (or, with client-side
//! apply, silently drop).

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return path.into();
    }
    let mut candidates = vec![
        PathBuf::from("/usr/bin/kubectl"),
        PathBuf::from("/usr/local/bin/kubectl"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("kubectl")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
            "kubectl not found (looked at $KUBECTL, /usr/bin/kubectl, /usr/local/bin/kubectl and \
             $PATH). These tests render deploy/ with `kubectl kustomize`, which needs kubectl \
             1.27 or newer (Kustomize v5). Install it from the Kubernetes package repository \
             (https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/: `apt-get install \
             kubectl` after adding pkgs.k8s.io), or as the `kubectl` package of the Google Cloud \
             SDK repository, or put any kubectl binary on PATH or in $KUBECTL. Debian's own \
             `kubernetes-client` package (1.20) is too old for components and `labels`."
        )
        })
}

/// `kubectl kustomize DIR`, split into documents.
pub fn kustomize(dir: &Path) -> Vec<Value> {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl kustomize {}: {e}", dir.display()));
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize prints valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Reads `doc` as `T` and writes it back; any difference is a field that `T`
/// does not have (a typo, a field at the wrong level) or a value of the
/// wrong type.
pub fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not deserialize: {e}"))?;
    let back = serde_json::to_value(&typed).expect("k8s-openapi types serialize");
    match first_difference("", &without_nulls(doc), &back) {
        None => Ok(()),
        Some(diff) => Err(diff),
    }
}

/// YAML `null` and an absent field mean the same to the API server.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn first_difference(path: &str, manifest: &Value, typed: &Value) -> Option<String> {
    match (manifest, typed) {
        (Value::Object(m), Value::Object(t)) => {
            for (key, value) in m {
                let here = format!("{path}/{key}");
                match t.get(key) {
                    None => {
                        return Some(format!(
                            "{here}: in the manifest but unknown to the Kubernetes type \
                             (misspelled, or at the wrong level?)"
                        ))
                    }
                    Some(other) => {
                        if let Some(diff) = first_difference(&here, value, other) {
                            return Some(diff);
                        }
                    }
                }
            }
            t.keys()
                .find(|key| !m.contains_key(*key))
                .map(|key| format!("{path}/{key}: added by the Kubernetes type ({})", t[key]))
        }
        (Value::Array(m), Value::Array(t)) if m.len() == t.len() => m
            .iter()
            .zip(t)
            .enumerate()
            .find_map(|(i, (m, t))| first_difference(&format!("{path}/{i}"), m, t)),
        (m, t) if m == t => None,
        (m, t) => Some(format!(
            "{path}: {m} in the manifest, {t} after the round trip"
        )),
    }
}

/// The type-specific round trip of one rendered document.
pub fn check_document(doc: &Value) -> Result<(), String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    fn is<T: Resource>(api_version: &str, kind: &str) -> bool {
        api_version == T::API_VERSION && kind == T::KIND
    }
    match (api_version, kind) {
        (a, k) if is::<Namespace>(a, k) => round_trip::<Namespace>(doc),
        (a, k) if is::<ServiceAccount>(a, k) => round_trip::<ServiceAccount>(doc),
        (a, k) if is::<ClusterRole>(a, k) => round_trip::<ClusterRole>(doc),
        (a, k) if is::<ClusterRoleBinding>(a, k) => round_trip::<ClusterRoleBinding>(doc),
        (a, k) if is::<Role>(a, k) => round_trip::<Role>(doc),
        (a, k) if is::<RoleBinding>(a, k) => round_trip::<RoleBinding>(doc),
        (a, k) if is::<Secret>(a, k) => round_trip::<Secret>(doc),
        (a, k) if is::<ConfigMap>(a, k) => round_trip::<ConfigMap>(doc),
        (a, k) if is::<Service>(a, k) => round_trip::<Service>(doc),
        (a, k) if is::<Deployment>(a, k) => round_trip::<Deployment>(doc),
        (a, k) if is::<CronJob>(a, k) => round_trip::<CronJob>(doc),
        (a, k) if is::<PodDisruptionBudget>(a, k) => round_trip::<PodDisruptionBudget>(doc),
        (a, k) if is::<NetworkPolicy>(a, k) => round_trip::<NetworkPolicy>(doc),
        // No Rust type for the operator's CRD: checked field by field in
        // `service_monitor_scrapes_only_the_self_metrics`.
        ("monitoring.coreos.com/v1", "ServiceMonitor") => Ok(()),
        // Likewise, in `prometheus_rule_carries_the_shipped_rules`.
        ("monitoring.coreos.com/v1", "PrometheusRule") => Ok(()),
        _ => Err(format!(
            "{api_version} {kind} is not a kind this test knows: add it to check_document"
        )),
    }
}

/// `to` relative to the directory `from` (both absolute): Kustomize refuses
/// absolute paths in `resources` and `components`.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}

/// YAML text of several documents, each as JSON; empty documents dropped.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The Python of the venv that scripts/fetch-helm-sdk installs under
/// `<target>/test-peers/helm-venv` (or $HELM_PYTHON).
fn helm_python() -> PathBuf {
    if let Some(path) = std::env::var_os("HELM_PYTHON") {
        return path.into();
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR lies inside the target directory");
    let python = target.join("test-peers/helm-venv/bin/python");
    assert!(
        python.is_file(),
        "the Helm engine for the chart tests is missing: {} does not exist. Run \
         ./scripts/fetch-helm-sdk (./scripts/test runs it for you), which installs PyPI's \
         helm-python-sdk into that venv, or point $HELM_PYTHON at a Python that has it",
        python.display()
    );
    python
}

/// One request to tests/helm.py, the driver of the real Helm engine.
fn helm(request: Value) -> Result<Value, String> {
    let mut child = Command::new(helm_python())
        .arg(repo().join("tests/helm.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the Helm driver");
    serde_json::to_writer(child.stdin.take().unwrap(), &request).expect("write the request");
    let output = child.wait_with_output().expect("run the Helm driver");
    assert!(
        output.status.success(),
        "the Helm driver failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("the driver answers JSON");
    match answer["ok"].as_bool() {
        Some(true) => Ok(answer),
        _ => Err(answer["error"]
            .as_str()
            .unwrap_or("no error given")
            .to_owned()),
    }
}

/// A chart rendered by Helm: each template's documents, and NOTES.txt.
pub struct HelmRender {
    pub docs: Vec<Value>,
    pub notes: String,
}

/// `helm template` of `chart` (a directory) with `values`, as release
/// `name` in `namespace`; Err is the engine's message (a schema violation,
/// a `required` value).
pub fn helm_template(
    chart: &Path,
    values: &Value,
    name: &str,
    namespace: &str,
) -> Result<HelmRender, String> {
    let answer = helm(serde_json::json!({
        "op": "render", "chart": chart, "values": values, "name": name, "namespace": namespace,
    }))?;
    let mut templates: Vec<(&String, &Value)> = answer["manifests"]
        .as_object()
        .expect("manifests")
        .iter()
        .collect();
    templates.sort_by_key(|(name, _)| name.as_str());
    let mut docs = Vec::new();
    let mut notes = String::new();
    for (template, text) in templates {
        let text = text.as_str().expect("rendered text");
        if template.ends_with("NOTES.txt") {
            notes = text.to_owned();
        } else {
            docs.extend(documents(text));
        }
    }
    Ok(HelmRender { docs, notes })
}

/// `helm lint --strict`: the findings that are warnings or errors.
pub fn helm_lint_strict(chart: &Path, values: &Value) -> Vec<String> {
    let answer = helm(serde_json::json!({"op": "lint", "chart": chart, "values": values}))
        .unwrap_or_else(|e| panic!("helm lint failed to run: {e}"));
    let report = &answer["report"];
    let mut problems: Vec<String> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.to_string())
        .collect();
    for message in report["messages"].as_array().into_iter().flatten() {
        // 1 is INFO (e.g. "icon is recommended"); 2 WARNING, 3 ERROR.
        if message["severity"].as_u64().unwrap_or(3) >= 2 {
            problems.push(format!("{}: {}", message["path"], message["error"]));
        }
    }
    problems
}
