//! The shipped alert rules, tested the way kube-prometheus tests its own:
//! `promtool check rules` on the rules file, `promtool test rules` on unit
//! tests of it (tests/rules/: input series, then the alerts expected at given
//! times), with the `promtool` of Prometheus 3 fetched from Debian sid. The
//! PrometheusRule component and the README may not drift from the file.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::peers::peer;

const RULES: &str = "deploy/rules/container-image-pusher.rules.yaml";
const RULE_TESTS: &str = "tests/rules/container-image-pusher.test.yaml";
const PROMETHEUS_RULE: &str = "deploy/components/prometheus-rule/prometheusrule.yaml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Runs `promtool ARGS` in the repository and returns its output; panics with
/// the output when it fails.
fn promtool(args: &[&str]) -> String {
    let promtool: PathBuf = peer("promtool");
    let output = Command::new(&promtool)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        output.status
    );
    text
}

/// Every rule (alerting and recording) of the rules file, in file order.
fn rules() -> Vec<serde_yaml::Value> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&read(RULES)).expect("the rules file is YAML");
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().expect("rules").clone())
        .collect()
}

/// The names of the alerting rules in the rules file, in file order.
fn alert_names() -> Vec<String> {
    rules()
        .iter()
        .filter_map(|rule| rule["alert"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn promtool_checks_the_rules_file() {
    let output = promtool(&["check", "rules", RULES]);
    let found = format!("SUCCESS: {} rules found", rules().len());
    assert!(output.contains(&found), "{output}");
}

#[test]
fn promtool_unit_tests_of_the_rules_pass() {
    let output = promtool(&["test", "rules", RULE_TESTS]);
    assert!(output.contains("SUCCESS"), "{output}");
}

/// The component's `spec.groups` is the rules file's `groups`, comments and
/// all, indented under its own header.
#[test]
fn the_prometheus_rule_component_is_the_rules_file() {
    assert_component_holds(PROMETHEUS_RULE, RULES);
}

/// Fails unless the PrometheusRule at `component` carries the `groups` of
/// the rules file at `rules` byte for byte, indented under its `spec:`.
pub(crate) fn assert_component_holds(component_path: &str, rules_path: &str) {
    let rules = read(rules_path);
    let component = read(component_path);
    let groups = &rules[rules
        .find("\ngroups:\n")
        .map(|i| i + 1)
        .expect("the rules file has a top-level `groups:`")..];
    let header_end = component
        .find("\nspec:\n")
        .map(|i| i + "\nspec:\n".len())
        .expect("the PrometheusRule has a top-level `spec:`");
    let mut expected = component[..header_end].to_owned();
    for line in groups.split_inclusive('\n') {
        if !line.trim().is_empty() {
            expected.push_str("  ");
        }
        expected.push_str(line);
    }
    assert!(
        component == expected,
        "{component_path} differs from {rules_path}; it should read:\n{expected}"
    );
}

/// The README's table of alerts names exactly the alerts of the rules file
/// (and points at the file rather than copying it).
#[test]
fn the_readme_lists_every_alert_of_the_rules_file() {
    let readme = read("README.md");
    assert!(
        readme.contains(RULES),
        "the README does not point at {RULES}"
    );
    let listed: Vec<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `ContainerImage"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("ContainerImage{name}"))
        .collect();
    assert_eq!(listed, alert_names(), "README's alert table vs {RULES}");
    assert!(
        !readme.contains("- alert:"),
        "the README copies rules; point at {RULES} instead"
    );
}

/// The version freshness rules (--versions): version-checker's series and
/// the major-version alert, in a file of their own.
const VERSION_RULES: &str = "deploy/rules/container-image-versions.rules.yaml";

#[test]
fn promtool_checks_and_unit_tests_the_version_rules() {
    let output = promtool(&["check", "rules", VERSION_RULES]);
    assert!(output.contains("SUCCESS: 2 rules found"), "{output}");
    let output = promtool(&[
        "test",
        "rules",
        "tests/rules/container-image-versions.test.yaml",
    ]);
    assert!(output.contains("SUCCESS"), "{output}");
}
