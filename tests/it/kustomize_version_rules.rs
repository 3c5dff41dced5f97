//! The `version-rules` Kustomize component: a PrometheusRule whose groups
//! are the shipped version rules file's (which `cargo test --test rules`
//! checks with promtool), byte for byte, rendered by `kubectl kustomize`
//! next to the `prometheus-rule` component as the README says.

use crate::support;

use std::path::Path;

use serde_json::{json, Value};
use support::manifests::{kustomize, relative, repo};

const RULES: &str = "deploy/rules/container-image-versions.rules.yaml";
const COMPONENT: &str = "deploy/components/version-rules/prometheusrule.yaml";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The component's `spec.groups` is the rules file's `groups`, comments
/// and all, indented under its own header.
#[test]
fn the_version_rules_component_is_the_rules_file() {
    crate::rules::assert_component_holds(COMPONENT, RULES);
}

/// The Deployment overlay with both rule components: two PrometheusRules
/// in the pusher's namespace, the version one carrying the rules file's
/// groups unchanged.
#[test]
fn the_deployment_overlay_renders_both_rule_components() {
    let tmp = tempfile::Builder::new()
        .prefix("version-rules-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory");
    let dir = tmp.path().canonicalize().unwrap();
    let deploy = repo().join("deploy").canonicalize().unwrap();
    let at = |path: &str| relative(&dir, &deploy.join(path)).display().to_string();
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n  - {}\n",
        at("overlays/deployment"),
        at("components/prometheus-rule"),
        at("components/version-rules"),
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
    let docs = kustomize(Path::new(&dir));
    let rules: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "PrometheusRule")
        .collect();
    let names: Vec<&Value> = rules.iter().map(|r| &r["metadata"]["name"]).collect();
    assert_eq!(
        names,
        [
            &json!("container-image-pusher"),
            &json!("container-image-versions")
        ]
    );
    let versions = rules[1];
    assert_eq!(versions["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(versions["metadata"]["namespace"], "container-image-pusher");
    let shipped: Value = serde_yaml::from_str(&read(RULES)).unwrap();
    assert_eq!(versions["spec"], json!({ "groups": shipped["groups"] }));
}
