//! The Helm chart (charts/container-image-pusher) rendered and linted by the
//! real Helm engine (Helm 4's Go SDK, through PyPI's helm-python-sdk, which
//! scripts/fetch-helm-sdk installs into a venv under target/), helm-unittest
//! style: each test renders some values and asserts on the objects.
//! Every rendered object must survive the round trip through its k8s-openapi
//! type; the operator's ServiceMonitor and PrometheusRule, which have none,
//! are checked field by field.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use support::manifests::{
    check_document, documents, helm_lint_strict, helm_template, kustomize, relative, repo,
    HelmRender,
};

const RELEASE: &str = "pusher";
const NAMESPACE: &str = "monitoring";
/// `<release>-<chart>`, Helm's usual full name.
const FULLNAME: &str = "pusher-container-image-pusher";

fn chart() -> PathBuf {
    repo().join("charts/container-image-pusher")
}

/// The chart rendered with `values`; panics with the engine's message.
fn render(values: Value) -> Chart {
    match helm_template(&chart(), &values, RELEASE, NAMESPACE) {
        Ok(render) => Chart { values, render },
        Err(e) => panic!("the chart does not render with {values}:\n{e}"),
    }
}

/// The engine's refusal of `values`.
fn refused(values: Value) -> String {
    match helm_template(&chart(), &values, RELEASE, NAMESPACE) {
        Ok(_) => panic!("the chart renders with {values}, which it should refuse"),
        Err(e) => e,
    }
}

struct Chart {
    values: Value,
    render: HelmRender,
}

impl Chart {
    fn all<T: Resource + DeserializeOwned>(&self) -> Vec<T> {
        self.render
            .docs
            .iter()
            .filter(|d| d["kind"] == T::KIND && d["apiVersion"] == T::API_VERSION)
            .map(|d| serde_json::from_value(d.clone()).expect("reads as its type"))
            .collect()
    }

    fn one<T: Resource + DeserializeOwned>(&self) -> T {
        let mut all = self.all::<T>();
        assert_eq!(all.len(), 1, "{}: one {} expected", self.values, T::KIND);
        all.remove(0)
    }

    fn named<
        T: Resource
            + DeserializeOwned
            + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    >(
        &self,
        name: &str,
    ) -> Option<T> {
        self.all::<T>()
            .into_iter()
            .find(|o| o.metadata().name.as_deref() == Some(name))
    }

    fn kinds(&self) -> BTreeSet<String> {
        self.render
            .docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn crd(&self, kind: &str) -> Option<&Value> {
        self.render.docs.iter().find(|d| d["kind"] == kind)
    }

    fn pod(&self) -> (PodSpec, Container) {
        let spec = match self.all::<Deployment>().pop() {
            Some(d) => d.spec.unwrap().template.spec.unwrap(),
            None => {
                let c = self.one::<CronJob>();
                c.spec
                    .unwrap()
                    .job_template
                    .spec
                    .unwrap()
                    .template
                    .spec
                    .unwrap()
            }
        };
        let container = spec.containers[0].clone();
        assert_eq!(container.name, "container-image-pusher");
        (spec, container)
    }

    fn args(&self) -> Vec<String> {
        self.pod().1.args.unwrap_or_default()
    }

    fn env(&self) -> BTreeMap<String, Value> {
        self.pod()
            .1
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), serde_json::to_value(&e).unwrap()))
            .collect()
    }

    fn config(&self) -> BTreeMap<String, String> {
        self.named::<ConfigMap>(FULLNAME)
            .expect("the configuration ConfigMap")
            .data
            .unwrap_or_default()
    }

    /// Rules of every ClusterRole and Role, as (kind/name, rule) pairs.
    fn rules(&self) -> BTreeSet<String> {
        let mut rules = BTreeSet::new();
        let show = |r: &PolicyRule| {
            format!(
                "{:?} {:?} {:?}",
                r.api_groups.clone().unwrap_or_default(),
                r.resources.clone().unwrap_or_default(),
                r.verbs
            )
        };
        for role in self.all::<ClusterRole>() {
            rules.extend(
                role.rules
                    .unwrap_or_default()
                    .iter()
                    .map(|r| format!("ClusterRole {}", show(r))),
            );
        }
        for role in self.all::<Role>() {
            rules.extend(
                role.rules
                    .unwrap_or_default()
                    .iter()
                    .map(|r| format!("Role {}", show(r))),
            );
        }
        rules
    }
}

/// Value sets that together turn on every template and branch.
fn variants() -> Vec<Value> {
    vec![
        json!({}),
        json!({"mode": "cronjob"}),
        json!({"replicas": 3, "serviceMonitor": {"enabled": true}, "prometheusRule": {"enabled": true},
               "dashboards": {"enabled": true}}),
        json!({"mode": "cronjob", "registry": {"pullSecrets": true},
               "remoteWrite": {"auth": {"type": "basic", "username": "u", "password": "p"}}}),
        json!({"remoteWrite": {
            "urls": ["https://a.example/api/v1/push", "https://b.example/api/v1/push"],
            "protocol": "2.0", "otlpUrls": ["https://otlp.example/v1/metrics"],
            "headers": {"X-Scope-OrgID": "tenant"},
            "auth": {"type": "bearer", "existingSecret": "mine", "bearerTokenKey": "token"},
            "tls": {"existingSecret": "tls", "certKey": "tls.crt", "keyKey": "tls.key", "insecureSkipVerify": false},
            "config": {"inline": "endpoints: []\n"}},
            "proxy": {"httpsProxy": "http://proxy:3128", "noProxy": ".svc"},
            "workloadKinds": {"presets": ["argo-rollouts", "replicationcontroller"],
                              "custom": [{"spec": "example.com/v1/Widget", "apiGroup": "example.com", "resource": "widgets"}]},
            "filters": {"namespaces": ["a"], "excludeNamespaces": ["kube-*"], "selector": "team=x", "excludeImages": ["*/pause:*"]},
            "ownership": {"workloadLabels": ["team"], "workloadAnnotations": ["owner"], "imageLabels": ["org.opencontainers.*"],
                          "imageAnnotations": ["!x"]},
            "job": "inventory", "logLevel": "debug", "extraArgs": ["--registry-rps=5"],
            "extraEnv": [{"name": "A", "value": "b"}],
            "networkPolicy": {"metricsFrom": [{"podSelector": {"matchLabels": {"app": "scraper"}}}]},
            "externalLabels": {"cluster": "c1", "region": "eu"}}),
        json!({"versions": {"enabled": false}}),
        json!({"versions": {"cacheDuration": "30m", "include": ["docker.io/*"], "exclude": ["docker.io/library/busybox"]},
               "verification": {"files": {"ours.pub": "PEM", "ca.pem": "PEM"},
                                "keys": [{"name": "ours", "files": ["ours.pub"]}],
                                "certificates": [{"name": "ci", "issuer": "https://issuer.example",
                                                  "subjectRegexp": "https://github.com/acme/.*", "rootsFile": "ca.pem"}]}}),
    ]
}

#[test]
fn lint_strict_is_clean() {
    for values in variants() {
        let problems = helm_lint_strict(&chart(), &values);
        assert!(
            problems.is_empty(),
            "helm lint --strict with {values}:\n{}",
            problems.join("\n")
        );
    }
}

/// The operator's CRDs have no k8s-openapi type: their fields are checked
/// against the ones this chart may set (a typo would be dropped silently).
fn check_crd(doc: &Value) -> Result<(), String> {
    let allowed: &[(&str, &[&str])] = match doc["kind"].as_str() {
        Some("ServiceMonitor") => &[
            ("", &["apiVersion", "kind", "metadata", "spec"]),
            ("spec", &["selector", "namespaceSelector", "endpoints"]),
            ("spec/endpoints/0", &["port", "path", "interval"]),
        ],
        Some("PrometheusRule") => &[
            ("", &["apiVersion", "kind", "metadata", "spec"]),
            ("spec", &["groups"]),
        ],
        _ => return check_document(doc),
    };
    for (path, keys) in allowed {
        let at =
            path.split('/')
                .filter(|p| !p.is_empty())
                .fold(doc, |v, p| match p.parse::<usize>() {
                    Ok(i) => &v[i],
                    Err(_) => &v[p],
                });
        for key in at
            .as_object()
            .ok_or(format!("/{path} is not an object"))?
            .keys()
        {
            if !keys.contains(&key.as_str()) {
                return Err(format!("/{path}/{key} is not a field this chart sets"));
            }
        }
    }
    Ok(())
}

#[test]
fn every_document_round_trips_through_its_kubernetes_type() {
    let mut failures = Vec::new();
    for values in variants() {
        for doc in &render(values.clone()).render.docs {
            if let Err(e) = check_crd(doc) {
                failures.push(format!(
                    "{values}: {} {}: {e}",
                    doc["kind"], doc["metadata"]["name"]
                ));
            }
            let namespaced = !matches!(
                doc["kind"].as_str(),
                Some("ClusterRole" | "ClusterRoleBinding")
            );
            if namespaced && doc["metadata"]["namespace"] != NAMESPACE {
                failures.push(format!(
                    "{} {} is not in the release namespace",
                    doc["kind"], doc["metadata"]["name"]
                ));
            }
            if doc["metadata"]["labels"]["app.kubernetes.io/instance"] != RELEASE {
                failures.push(format!(
                    "{} {} lacks the instance label",
                    doc["kind"], doc["metadata"]["name"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn defaults_run_one_restricted_deployment_with_health_on_its_own_port() {
    let chart = render(json!({}));
    let kinds: Vec<_> = chart.kinds().into_iter().collect();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "Secret",
            "Service",
            "ServiceAccount"
        ]
    );
    let deployment = chart.one::<Deployment>();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let (pod, container) = chart.pod();
    let security = pod.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.unwrap().drop,
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(pod.service_account_name.as_deref(), Some(FULLNAME));
    for probe in [
        container.liveness_probe.clone(),
        container.readiness_probe.clone(),
    ] {
        let get = probe.expect("probe").http_get.unwrap();
        assert_eq!(
            get.port,
            IntOrString::String("telemetry".into()),
            "probes read the health listener"
        );
    }
    assert_eq!(
        chart.args(),
        [
            "--pull-secrets=false",
            "--interval=60s",
            "--docker-config=/etc/container-image-pusher/docker/config.json",
            "--log-format=json",
            "--metrics-address=0.0.0.0:8080",
            "--telemetry-address=0.0.0.0:8081",
            "--cache-dir=/var/cache/container-image-pusher",
        ]
    );
    assert_eq!(
        chart.config(),
        BTreeMap::from([
            (
                "PUSHER_EXTERNAL_LABELS".to_owned(),
                "cluster=my-cluster".to_owned()
            ),
            (
                "PUSHER_REMOTE_WRITE_URL".to_owned(),
                "http://prometheus.monitoring.svc:9090/api/v1/write".to_owned()
            ),
        ])
    );
    // The scrape annotations point at the health port, never the inventory.
    let service = chart.one::<Service>();
    let annotations = service.metadata.annotations.unwrap();
    assert_eq!(annotations["prometheus.io/port"], "8081");
    let ports: Vec<_> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        [("metrics".to_owned(), 8080), ("telemetry".to_owned(), 8081)]
    );
    // The inventory port admits nobody by default; health stays reachable.
    let policy = chart.one::<NetworkPolicy>().spec.unwrap();
    let ingress = policy.ingress.unwrap();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(
        ingress[0].ports.as_ref().unwrap()[0].port,
        Some(IntOrString::String("telemetry".into()))
    );
    assert!(
        chart.render.notes.contains("readyz"),
        "{}",
        chart.render.notes
    );
    // No dashboards, rules or monitor unless asked for.
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(chart.crd(kind).is_none(), "{kind} rendered by default");
    }
    assert_eq!(chart.all::<ConfigMap>().len(), 1, "only the configuration");
}

#[test]
fn cronjob_mode_runs_once_per_schedule_without_probes_or_service() {
    let chart = render(json!({"mode": "cronjob", "cronjob": {"schedule": "0 * * * *"}}));
    assert!(chart.all::<Deployment>().is_empty());
    assert!(chart.all::<Service>().is_empty());
    let cronjob = chart.one::<CronJob>().spec.unwrap();
    assert_eq!(cronjob.schedule, "0 * * * *");
    assert_eq!(cronjob.concurrency_policy.as_deref(), Some("Forbid"));
    let (pod, container) = chart.pod();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert!(container.liveness_probe.is_none() && container.readiness_probe.is_none());
    let args = chart.args();
    assert!(args.contains(&"--once".to_owned()), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--interval")),
        "{args:?}"
    );
}

#[test]
fn replicas_turn_on_leader_election_with_its_role_and_a_disruption_budget() {
    let single = render(json!({"replicas": 1}));
    assert!(single.all::<Role>().is_empty() && single.all::<PodDisruptionBudget>().is_empty());
    assert!(!single.args().contains(&"--leader-election".to_owned()));

    let ha = render(json!({"replicas": 2}));
    let args = ha.args();
    assert!(args.contains(&"--leader-election".to_owned()), "{args:?}");
    assert!(
        args.contains(&format!("--lease-name={FULLNAME}")),
        "{args:?}"
    );
    let env = ha.env();
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert!(
        ha.rules()
            .contains(r#"Role ["coordination.k8s.io"] ["leases"] ["get", "create", "update"]"#),
        "{:?}",
        ha.rules()
    );
    let pdb = ha.one::<PodDisruptionBudget>().spec.unwrap();
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        pdb.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
        RELEASE
    );
    let strategy = ha.one::<Deployment>().spec.unwrap().strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert!(
        render(json!({"replicas": 2, "podDisruptionBudget": {"enabled": false}}))
            .all::<PodDisruptionBudget>()
            .is_empty()
    );
    // A CronJob has nothing to elect.
    assert!(render(json!({"mode": "cronjob", "replicas": 2}))
        .all::<Role>()
        .is_empty());
}

/// The volume of `name` in the pod: its Secret and the items it projects.
fn secret_volume(chart: &Chart, name: &str) -> (String, Vec<(String, String)>) {
    let (pod, container) = chart.pod();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"));
    assert!(
        container
            .volume_mounts
            .unwrap()
            .iter()
            .any(|m| m.name == name && m.read_only == Some(true)),
        "{name} is mounted read-only"
    );
    let secret = volume.secret.unwrap();
    let items = secret
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.key, i.path))
        .collect();
    (secret.secret_name.unwrap(), items)
}

fn secret_data(chart: &Chart, name: &str) -> BTreeMap<String, String> {
    chart
        .named::<Secret>(name)
        .unwrap_or_else(|| panic!("no Secret {name}"))
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

#[test]
fn each_credential_form_mounts_the_right_secret() {
    let created = format!("{FULLNAME}-remote-write");
    // Basic auth from a Secret the chart creates.
    let basic = render(
        json!({"remoteWrite": {"auth": {"type": "basic", "username": "123", "password": "pw"}}}),
    );
    assert_eq!(
        secret_data(&basic, &created),
        BTreeMap::from([
            ("username".into(), "123".into()),
            ("password".into(), "pw".into())
        ])
    );
    assert_eq!(
        secret_volume(&basic, "remote-write"),
        (
            created.clone(),
            vec![("password".into(), "password".into())]
        )
    );
    assert_eq!(
        basic.env()["REMOTE_WRITE_USERNAME"]["valueFrom"]["secretKeyRef"],
        json!({"name": created, "key": "username"})
    );
    let args = basic.args();
    assert!(
        args.contains(&"--remote-write-username=$(REMOTE_WRITE_USERNAME)".to_owned()),
        "{args:?}"
    );
    assert!(args.contains(
        &"--remote-write-password-file=/etc/container-image-pusher/remote-write/password"
            .to_owned()
    ));
    // ... or from an existing one, with its own key names: nothing created.
    let existing = render(
        json!({"remoteWrite": {"auth": {"type": "basic", "existingSecret": "mine", "usernameKey": "user", "passwordKey": "pass"}}}),
    );
    assert!(existing.named::<Secret>(&created).is_none());
    assert_eq!(
        secret_volume(&existing, "remote-write"),
        ("mine".into(), vec![("pass".into(), "password".into())])
    );
    assert_eq!(
        existing.env()["REMOTE_WRITE_USERNAME"]["valueFrom"]["secretKeyRef"],
        json!({"name": "mine", "key": "user"})
    );
    // A bearer token, created and existing.
    let bearer = render(json!({"remoteWrite": {"auth": {"type": "bearer", "bearerToken": "t0k"}}}));
    assert_eq!(
        secret_data(&bearer, &created),
        BTreeMap::from([("bearer-token".into(), "t0k".into())])
    );
    assert!(bearer.args().contains(
        &"--remote-write-bearer-token-file=/etc/container-image-pusher/remote-write/bearer-token"
            .to_owned()
    ));
    let bearer = render(
        json!({"remoteWrite": {"auth": {"type": "bearer", "existingSecret": "tok", "bearerTokenKey": "t"}}}),
    );
    assert_eq!(
        secret_volume(&bearer, "remote-write"),
        ("tok".into(), vec![("t".into(), "bearer-token".into())])
    );
    // A created Secret needs its values: Helm says which.
    let error = refused(json!({"remoteWrite": {"auth": {"type": "bearer"}}}));
    assert!(error.contains("remoteWrite.auth.bearerToken"), "{error}");
    // TLS from an existing Secret.
    let tls = render(
        json!({"remoteWrite": {"tls": {"existingSecret": "certs", "certKey": "c", "keyKey": "k"}}}),
    );
    assert_eq!(
        secret_volume(&tls, "tls"),
        (
            "certs".into(),
            vec![
                ("ca.crt".into(), "ca.crt".into()),
                ("c".into(), "tls.crt".into()),
                ("k".into(), "tls.key".into())
            ]
        )
    );
    for flag in [
        "--remote-write-ca-file=",
        "--remote-write-cert-file=",
        "--remote-write-key-file=",
    ] {
        assert!(tls.args().iter().any(|a| a.starts_with(flag)), "{flag}");
    }
    // The --remote-write-config file, inline (a Secret) or existing.
    let config = render(json!({"remoteWrite": {"config": {"inline": "endpoints: []\n"}}}));
    let name = format!("{FULLNAME}-remote-write-config");
    assert_eq!(
        secret_data(&config, &name)["remote-write.yaml"],
        "endpoints: []\n"
    );
    assert_eq!(secret_volume(&config, "remote-write-config").0, name);
    assert!(config.args().contains(
        &"--remote-write-config=/etc/container-image-pusher/config/remote-write.yaml".to_owned()
    ));
    let config =
        render(json!({"remoteWrite": {"config": {"existingSecret": "rw", "key": "c.yaml"}}}));
    assert_eq!(
        secret_volume(&config, "remote-write-config"),
        (
            "rw".into(),
            vec![("c.yaml".into(), "remote-write.yaml".into())]
        )
    );
    // Registry credentials: the docker config Secret, created or existing.
    let docker =
        render(json!({"registry": {"dockerConfig": {"config": "{\"auths\":{\"r\":{}}}"}}}));
    assert_eq!(
        secret_data(&docker, &format!("{FULLNAME}-docker-config"))["config.json"],
        "{\"auths\":{\"r\":{}}}"
    );
    let docker = render(json!({"registry": {"dockerConfig": {"existingSecret": "regcred"}}}));
    assert_eq!(secret_volume(&docker, "docker-config").0, "regcred");
    assert!(docker.all::<Secret>().is_empty());
    let none = render(json!({"registry": {"dockerConfig": {"enabled": false}}}));
    assert!(!none.args().iter().any(|a| a.starts_with("--docker-config")));
    // Pull secrets: the flag and the read access they need, only then.
    assert!(!render(json!({}))
        .rules()
        .iter()
        .any(|r| r.contains("secrets")));
    let pull = render(json!({"registry": {"pullSecrets": true}}));
    assert_eq!(pull.args()[0], "--pull-secrets=true");
    let rules = pull.rules();
    assert!(
        rules.contains(r#"ClusterRole [""] ["secrets"] ["get", "list", "watch"]"#),
        "{rules:?}"
    );
    assert!(
        rules.contains(r#"ClusterRole [""] ["serviceaccounts"] ["get", "list", "watch"]"#),
        "{rules:?}"
    );
}

#[test]
fn workload_kinds_turn_into_their_flags_and_rbac() {
    let chart = render(json!({"workloadKinds": {
        "presets": ["argo-rollouts", "knative-serving", "keda-scaledjob", "openkruise-cloneset", "replicaset", "replicationcontroller"],
        "custom": [{"spec": "example.com/v1/Widget=.spec.pod", "apiGroup": "example.com", "resource": "widgets"}]}}));
    let kinds: Vec<_> = chart
        .args()
        .into_iter()
        .filter_map(|a| a.strip_prefix("--workload-kind=").map(str::to_owned))
        .collect();
    assert_eq!(
        kinds,
        [
            "argo-rollouts",
            "knative-serving",
            "keda-scaledjob",
            "openkruise-cloneset",
            "replicaset",
            "replicationcontroller",
            "example.com/v1/Widget=.spec.pod"
        ]
    );
    let role = chart
        .named::<ClusterRole>(&format!("{FULLNAME}-workload-kinds"))
        .expect("the kinds' role");
    let rules: Vec<_> = role
        .rules
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.api_groups.unwrap()[0].clone(),
                r.resources.unwrap()[0].clone(),
                r.verbs,
            )
        })
        .collect();
    let list_watch = || vec!["list".to_owned(), "watch".to_owned()];
    let expected: Vec<_> = [
        ("argoproj.io", "rollouts"),
        ("serving.knative.dev", "services"),
        ("keda.sh", "scaledjobs"),
        ("apps.kruise.io", "clonesets"),
        ("apps", "replicasets"),
        ("", "replicationcontrollers"),
        ("example.com", "widgets"),
    ]
    .into_iter()
    .map(|(g, r)| (g.to_owned(), r.to_owned(), list_watch()))
    .collect();
    assert_eq!(rules, expected);
    // Every preset the binary knows has its rule (the chart's table and
    // --help's list agree).
    let help = help();
    let listed = help
        .split("a preset (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("--workload-kind's presets in --help");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart_path("values.schema.json")).unwrap())
            .unwrap();
    let in_schema: Vec<&str> = schema["properties"]["workloadKinds"]["properties"]["presets"]
        ["items"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let in_help: Vec<&str> = listed.split(", ").map(|s| s.trim()).collect();
    assert_eq!(in_schema, in_help, "the schema's presets are --help's");
    assert!(render(json!({}))
        .named::<ClusterRole>(&format!("{FULLNAME}-workload-kinds"))
        .is_none());
}

fn chart_path(file: &str) -> PathBuf {
    chart().join(file)
}

#[test]
fn monitor_rules_and_dashboards_render_only_when_enabled() {
    let on = render(
        json!({"serviceMonitor": {"enabled": true, "labels": {"release": "kps"}},
                           "prometheusRule": {"enabled": true}, "dashboards": {"enabled": true, "folder": "Images"}}),
    );
    let monitor = on.crd("ServiceMonitor").expect("a ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "kps");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"], "telemetry",
        "health only, never the inventory"
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    // The rule's groups are the shipped rules files', unchanged: the
    // pusher's, then (versions being on by default) the version rules.
    let groups = |file: &str| {
        let path = repo().join("deploy/rules").join(file);
        documents(&std::fs::read_to_string(path).unwrap()).remove(0)["groups"]
            .as_array()
            .unwrap()
            .clone()
    };
    let pusher = groups("container-image-pusher.rules.yaml");
    let versions = groups("container-image-versions.rules.yaml");
    let both = [pusher.clone(), versions].concat();
    assert_eq!(
        on.crd("PrometheusRule").expect("a PrometheusRule")["spec"],
        json!({ "groups": both })
    );
    let unversioned =
        render(json!({"prometheusRule": {"enabled": true}, "versions": {"enabled": false}}));
    assert_eq!(
        unversioned.crd("PrometheusRule").unwrap()["spec"],
        json!({ "groups": pusher }),
        "no version rules without version series"
    );
    let dashboards: Vec<ConfigMap> = on
        .all::<ConfigMap>()
        .into_iter()
        .filter(|c| c.metadata.name.as_deref() != Some(FULLNAME))
        .collect();
    assert_eq!(dashboards.len(), dashboard_files().len());
    for map in &dashboards {
        assert_eq!(
            map.metadata.labels.as_ref().unwrap()["grafana_dashboard"],
            "1"
        );
        assert_eq!(
            map.metadata.annotations.as_ref().unwrap()["grafana_folder"],
            "Images"
        );
    }
    let off = render(json!({}));
    assert!(off.crd("ServiceMonitor").is_none() && off.crd("PrometheusRule").is_none());
    // A CronJob's pods are not scraped.
    assert!(
        render(json!({"mode": "cronjob", "serviceMonitor": {"enabled": true}}))
            .crd("ServiceMonitor")
            .is_none()
    );
    let relabelled = render(
        json!({"dashboards": {"enabled": true, "label": "dash", "labelValue": "yes", "folderAnnotation": "k8s-sidecar-target-directory"}}),
    );
    let map = relabelled
        .all::<ConfigMap>()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() != Some(FULLNAME))
        .unwrap();
    assert_eq!(map.metadata.labels.as_ref().unwrap()["dash"], "yes");
    assert!(map
        .metadata
        .annotations
        .unwrap()
        .contains_key("k8s-sidecar-target-directory"));
}

/// dashboards/*.json: name -> bytes.
fn dashboard_files() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    files
}

/// The dashboards' ConfigMaps carry the repository's files byte for byte:
/// the chart's copies, what Helm renders of them, and the kustomize
/// component's.
#[test]
fn dashboard_config_maps_carry_the_repositorys_files_unchanged() {
    let files = dashboard_files();
    let resync = "copy dashboards/*.json to charts/container-image-pusher/files/dashboards/ \
                  and deploy/components/dashboards/";
    for dir in [
        chart_path("files/dashboards"),
        repo().join("deploy/components/dashboards"),
    ] {
        let mut copies = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                copies.insert(
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
        assert_eq!(
            copies.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>(),
            "{}: {resync}",
            dir.display()
        );
        for (name, text) in &files {
            assert!(
                copies[name] == *text,
                "{}/{name} differs from dashboards/{name}: {resync}",
                dir.display()
            );
        }
    }
    let rendered: BTreeMap<String, String> = render(json!({"dashboards": {"enabled": true}}))
        .all::<ConfigMap>()
        .into_iter()
        .flat_map(|c| c.data.unwrap_or_default())
        .filter(|(k, _)| k.ends_with(".json"))
        .collect();
    assert_eq!(rendered, files, "the chart's ConfigMaps");
    let kustomized: BTreeMap<String, String> =
        kustomize(&repo().join("deploy/components/dashboards"))
            .into_iter()
            .filter_map(|d| serde_json::from_value::<ConfigMap>(d).ok())
            .flat_map(|c| c.data.unwrap_or_default())
            .collect();
    assert_eq!(kustomized, files, "the kustomize component's ConfigMaps");
    // Same names, labels and annotations as the chart's defaults.
    for doc in kustomize(&repo().join("deploy/components/dashboards")) {
        assert_eq!(doc["metadata"]["labels"]["grafana_dashboard"], "1", "{doc}");
        assert_eq!(
            doc["metadata"]["annotations"]["grafana_folder"],
            "Container images"
        );
    }
}

#[test]
fn the_rules_copies_are_the_shipped_rules_files() {
    for file in [
        "container-image-pusher.rules.yaml",
        "container-image-versions.rules.yaml",
    ] {
        let shipped = std::fs::read_to_string(repo().join("deploy/rules").join(file)).unwrap();
        let copy = std::fs::read_to_string(chart_path(&format!("files/{file}"))).unwrap();
        assert!(
            copy == shipped,
            "copy deploy/rules/{file} to charts/container-image-pusher/files/"
        );
    }
}

/// Versions and verification values turn into their flags; the policies'
/// keys and roots come from a ConfigMap mounted where the flags point, and
/// the pusher accepts them: rendered against real keys (openssl), it starts
/// and runs, and refuses to when a policy names a file that is not there.
#[test]
fn versions_and_verification_turn_into_their_flags_and_mounts() {
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run openssl");
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-noout",
        "-out",
        "key.pem",
    ]);
    openssl(&["ec", "-in", "key.pem", "-pubout", "-out", "ours.pub"]);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=test CA",
        "-days",
        "1",
    ]);
    let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap();
    let chart = render(json!({
        "versions": {"cacheDuration": "30m", "exclude": ["docker.io/library/busybox"]},
        "verification": {
            "files": {"ours.pub": read("ours.pub"), "ca.pem": read("ca.pem")},
            "keys": [{"name": "ours", "files": ["ours.pub"]}],
            "certificates": [{"name": "ci", "issuer": "https://issuer.example",
                              "subject": "ci@example.com", "rootsFile": "ca.pem"}]}}));
    let args = chart.args();
    let mount = "/etc/container-image-pusher/verify";
    for expected in [
        "--versions-cache-duration=30m".to_owned(),
        "--versions-exclude=docker.io/library/busybox".to_owned(),
        format!("--verify-key=ours={mount}/ours.pub"),
        format!("--verify-certificate=ci=issuer=https://issuer.example,subject=ci@example.com,roots={mount}/ca.pem"),
    ] {
        assert!(args.contains(&expected), "{expected} not in {args:?}");
    }
    let (pod, container) = chart.pod();
    let volume = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "verification")
        .expect("a verification volume");
    let map_name = volume.config_map.unwrap().name;
    assert!(container
        .volume_mounts
        .unwrap_or_default()
        .iter()
        .any(|m| m.name == "verification" && m.mount_path == mount));
    let map = chart
        .named::<ConfigMap>(&map_name)
        .expect("the chart makes the ConfigMap");
    let data = map.data.unwrap();
    assert_eq!(data["ours.pub"], read("ours.pub"));
    // The files where the pod would see them, and the pusher run with the
    // chart's policy flags over the example manifests.
    let mounted = dir.path().join("verify");
    std::fs::create_dir(&mounted).unwrap();
    for (name, content) in &data {
        std::fs::write(mounted.join(name), content).unwrap();
    }
    let run = |args: &[String]| {
        let policies = args
            .iter()
            .filter(|a| a.starts_with("--verify-"))
            .map(|a| a.replace(mount, mounted.to_str().unwrap()));
        Command::new(env!("CARGO_BIN_EXE_container-image-pusher"))
            .args(policies)
            .args([
                "--manifests",
                "examples/workloads.yaml",
                "--once",
                "--dry-run",
            ])
            .args(["--registry-timeout", "2s", "--versions=false"])
            .current_dir(repo())
            .env_remove("PUSHER_REMOTE_WRITE_URL")
            .output()
            .expect("run the pusher")
    };
    let output = run(&args);
    assert_ne!(
        output.status.code(),
        Some(2),
        "the pusher refuses the chart's policies: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_file(mounted.join("ours.pub")).unwrap();
    assert_eq!(
        run(&args).status.code(),
        Some(2),
        "a missing key file is refused"
    );
    // An existing ConfigMap replaces the chart's; no policies, no mount.
    let existing = render(
        json!({"verification": {"existingConfigMap": "keys", "keys": [{"name": "ours", "files": ["a.pub"]}]}}),
    );
    assert!(existing.named::<ConfigMap>(&map_name).is_none());
    let (pod, _) = existing.pod();
    assert!(pod
        .volumes
        .unwrap_or_default()
        .iter()
        .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == "keys")));
    let (pod, _) = render(json!({})).pod();
    assert!(!pod
        .volumes
        .unwrap_or_default()
        .iter()
        .any(|v| v.name == "verification"));
    assert!(render(json!({"versions": {"enabled": false}}))
        .args()
        .contains(&"--versions=false".to_owned()));
    assert!(refused(json!({"verification": {"certificates": [{"name": "ci", "issuer": "x", "rootsFile": "ca.pem"}]}}))
        .contains("certificates"));
}

#[test]
fn the_schema_refuses_unknown_keys_and_wrong_types_naming_the_key() {
    for (values, key, what) in [
        (
            json!({"replicaCount": 2}),
            "replicaCount",
            "additional properties",
        ),
        (
            json!({"remoteWrite": {"auth": {"tpye": "basic"}}}),
            "tpye",
            "additional properties",
        ),
        (
            json!({"dashboards": {"enabled": "yes"}}),
            "/dashboards/enabled",
            "want boolean",
        ),
        (json!({"replicas": "two"}), "/replicas", "want integer"),
        (
            json!({"mode": "daemonset"}),
            "/mode",
            "must be one of 'deployment', 'cronjob'",
        ),
        (
            json!({"interval": "a minute"}),
            "/interval",
            "does not match pattern",
        ),
        (
            json!({"workloadKinds": {"presets": ["argo"]}}),
            "/workloadKinds/presets/0",
            "argo",
        ),
        (
            json!({"workloadKinds": {"custom": [{"spec": "a/v1/K"}]}}),
            "/workloadKinds/custom/0",
            "missing propert",
        ),
        (
            json!({"extraArgs": ["oops"]}),
            "/extraArgs/0",
            "does not match pattern",
        ),
        (
            json!({"service": {"telemetryPort": 70000}}),
            "/service/telemetryPort",
            "maximum",
        ),
    ] {
        let error = refused(values.clone());
        assert!(
            error.contains(key) && error.contains(what),
            "{values}: the error should name {key} ({what}):\n{error}"
        );
    }
}

/// `additionalProperties: false` on every object the schema describes with
/// properties, so no level lets a typo through.
#[test]
fn the_schema_closes_every_level() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart_path("values.schema.json")).unwrap())
            .unwrap();
    fn walk(at: &Value, path: &str, open: &mut Vec<String>) {
        if let Some(properties) = at.get("properties").and_then(Value::as_object) {
            if at.get("additionalProperties") != Some(&Value::Bool(false)) {
                open.push(path.to_owned());
            }
            for (key, sub) in properties {
                walk(sub, &format!("{path}.{key}"), open);
            }
        }
        if let Some(items) = at.get("items") {
            walk(items, &format!("{path}[]"), open);
        }
    }
    let mut open = Vec::new();
    walk(&schema, "", &mut open);
    assert!(
        open.is_empty(),
        "objects without additionalProperties: false: {open:?}"
    );
    // And every key of values.yaml is in the schema (the defaults validate:
    // the default render above would fail otherwise), every schema key in
    // values.yaml, so the documented defaults are complete.
    let values: Value =
        documents(&std::fs::read_to_string(chart_path("values.yaml")).unwrap()).remove(0);
    fn keys(schema: &Value, values: &Value, path: &str, missing: &mut Vec<String>) {
        let (Some(properties), Some(values)) = (
            schema.get("properties").and_then(Value::as_object),
            values.as_object(),
        ) else {
            return;
        };
        for (key, sub) in properties {
            match values.get(key) {
                None => missing.push(format!("{path}.{key}")),
                Some(v) => keys(sub, v, &format!("{path}.{key}"), missing),
            }
        }
    }
    let mut missing = Vec::new();
    keys(&schema, &values, "", &mut missing);
    assert!(
        missing.is_empty(),
        "in the schema but without a default in values.yaml: {missing:?}"
    );
}

fn help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_container-image-pusher"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// Every flag and variable the chart renders is one `--help` lists, and the
/// binary accepts the rendered arguments as they are.
#[test]
fn every_rendered_flag_exists_in_help() {
    let help = help();
    let in_help = |flag: &str| {
        help.match_indices(flag).any(|(i, _)| {
            let next = help[i + flag.len()..].chars().next();
            !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    };
    let mut missing = BTreeSet::new();
    for values in variants() {
        let chart = render(values);
        for arg in chart.args() {
            let flag = arg.split('=').next().unwrap();
            assert!(flag.starts_with("--"), "{arg} is not a --flag");
            if !in_help(flag) {
                missing.insert(flag.to_owned());
            }
        }
        for key in chart.config().keys() {
            if !in_help(&format!("[env: {key}")) {
                missing.insert(key.clone());
            }
        }
        // The values parse: clap validates every argument before --version.
        let mut command = Command::new(env!("CARGO_BIN_EXE_container-image-pusher"));
        let args: Vec<String> = chart
            .args()
            .iter()
            .map(|a| a.replace("$(REMOTE_WRITE_USERNAME)", "123"))
            .collect();
        command.args(&args).arg("--version");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PUSHER_")) {
            command.env_remove(key);
        }
        command.envs(chart.config());
        let output = command.output().expect("run the binary");
        assert!(
            output.status.success(),
            "container-image-pusher {} rejects its arguments:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        missing.is_empty(),
        "the chart renders flags or variables that --help does not list: {missing:?}"
    );
}

/// No manifest pins an architecture: the image is multi-arch.
#[test]
fn nothing_pins_an_architecture() {
    for values in variants() {
        let (pod, _) = render(values).pod();
        assert!(!pod
            .node_selector
            .unwrap_or_default()
            .contains_key("kubernetes.io/arch"));
    }
    let mut stack = vec![repo().join("deploy"), chart()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !text.contains("kubernetes.io/arch"),
                    "{} pins an architecture",
                    path.display()
                );
            }
        }
    }
}

/// What the chart's and kustomize's installs must agree on: kinds, RBAC
/// rules and the pusher's arguments.
fn summary(docs: &[Value]) -> (BTreeSet<String>, BTreeSet<String>, Vec<String>) {
    let chart = Chart {
        values: json!("kustomize"),
        render: HelmRender {
            docs: docs.to_vec(),
            notes: String::new(),
        },
    };
    // Helm users make the namespace with --create-namespace; the kustomize
    // base ships a placeholder remote-write Secret that the chart creates
    // only with credentials to put in it.
    let kinds = docs
        .iter()
        .filter(|d| d["kind"] != "Namespace")
        .filter(|d| {
            !d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-remote-write"))
        })
        .map(|d| {
            format!(
                "{} {}",
                d["apiVersion"].as_str().unwrap(),
                d["kind"].as_str().unwrap()
            )
        })
        .collect();
    (kinds, chart.rules(), chart.args())
}

#[test]
fn the_default_install_matches_the_kustomize_deployment_overlay() {
    let helm = summary(&render(json!({})).render.docs);
    let kustomized = summary(&kustomize(&repo().join("deploy/overlays/deployment")));
    assert_eq!(
        helm, kustomized,
        "chart defaults (left) and deploy/overlays/deployment (right)"
    );
    let helm = summary(&render(json!({"mode": "cronjob"})).render.docs);
    let kustomized = summary(&kustomize(&repo().join("deploy/overlays/cronjob")));
    assert_eq!(helm.1, kustomized.1, "cronjob RBAC");
    assert_eq!(helm.2, kustomized.2, "cronjob arguments");
}

/// HA: the chart with two replicas and the Deployment overlay with the
/// leader-election component create the same kinds (the Lease role and the
/// disruption budget), rules and arguments.
#[test]
fn high_availability_matches_the_leader_election_component() {
    let tmp = tempfile::Builder::new()
        .prefix("chart-ha-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let deploy = repo().join("deploy").canonicalize().unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
            relative(&dir, &deploy.join("overlays/deployment")).display(),
            relative(&dir, &deploy.join("components/leader-election")).display()
        ),
    )
    .unwrap();
    let kustomized = summary(&kustomize(&dir));
    let mut helm = summary(&render(json!({"replicas": 2})).render.docs);
    // The lease is named after the release; kustomize's is fixed.
    for arg in &mut helm.2 {
        if arg.starts_with("--lease-name=") {
            *arg = "--lease-name=container-image-pusher".to_owned();
        }
    }
    assert_eq!(
        helm, kustomized,
        "chart with replicas: 2 (left) and the leader-election component (right)"
    );
}
