//! Checks the Kubernetes manifests in `deploy/` as a cluster would see them.
//!
//! Every overlay, the example and every combination of components a user may
//! stack on an overlay is rendered with `kubectl kustomize`, the same way a
//! user's own kustomization would use them. Each rendered document is read
//! into its k8s-openapi type and written back: k8s-openapi ignores fields it
//! does not know, so a document that does not survive the round trip has a
//! misspelled or misplaced field that the API server would reject (or, with
//! client-side apply, silently drop). The rendered objects are then checked
//! for what the pusher needs and promises: read-only RBAC, a restricted pod,
//! its probes, its configuration in one place, and flags the binary accepts.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PodSpec, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;

use serde_json::Value;
use support::manifests::{check_document, kustomize, relative};

const NAMESPACE: &str = "container-image-pusher";
const NAME: &str = "container-image-pusher";
const IMAGE: &str = "ghcr.io/example/container-image-pusher:0.1.0";
/// The whole ConfigMap, sorted: what a cluster is called and where it pushes.
const CONFIG_MAP_KEYS: [&str; 2] = ["PUSHER_EXTERNAL_LABELS", "PUSHER_REMOTE_WRITE_URL"];

/// Components that change the workloads, by directory name under
/// deploy/components/.
const LEADER_ELECTION: &str = "leader-election";
const PULL_SECRETS: &str = "pull-secrets";
const SERVICE_MONITOR: &str = "service-monitor";
const BASIC_AUTH: &str = "remote-write-basic-auth";
const BEARER_TOKEN: &str = "remote-write-bearer-token";
/// Adds a resource and changes nothing else, so it is rendered once per
/// overlay rather than in every combination.
const PROMETHEUS_RULE: &str = "prometheus-rule";
/// Adds a role and appended arguments, independent of the others, so it is
/// rendered once per overlay too.
const WORKLOAD_KINDS: &str = "workload-kinds";
/// Adds the Grafana dashboards' ConfigMaps and changes nothing else
/// (tests/it/chart.rs checks their contents against dashboards/).
const DASHBOARDS: &str = "dashboards";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// One rendered kustomization: an overlay (or the base, or the example) with
/// some components.
struct Render {
    name: String,
    /// "deployment" or "cronjob" for the overlays and what is built on them.
    overlay: Option<&'static str>,
    components: Vec<&'static str>,
    docs: Vec<Value>,
}

impl Render {
    fn has(&self, component: &str) -> bool {
        self.components.contains(&component)
    }

    /// Every document of type `T`, typed.
    fn all<T: Resource + DeserializeOwned>(&self) -> Vec<T> {
        self.docs
            .iter()
            .filter(|d| d["kind"] == T::KIND && d["apiVersion"] == T::API_VERSION)
            .map(|d| {
                serde_json::from_value(d.clone()).unwrap_or_else(|e| {
                    panic!(
                        "{}: {} does not read as {}: {e}",
                        self.name,
                        d["metadata"]["name"],
                        T::KIND
                    )
                })
            })
            .collect()
    }

    /// The one document of type `T`.
    fn one<T: Resource + DeserializeOwned>(&self) -> T {
        let mut all = self.all::<T>();
        assert_eq!(
            all.len(),
            1,
            "{}: expected exactly one {}",
            self.name,
            T::KIND
        );
        all.remove(0)
    }

    /// The pod specs of the workloads, with where they came from.
    fn pod_specs(&self) -> Vec<(String, PodSpec)> {
        let mut specs = Vec::new();
        for d in self.all::<Deployment>() {
            let spec = d.spec.and_then(|s| s.template.spec);
            specs.push((
                format!("Deployment {}", d.metadata.name.unwrap_or_default()),
                spec.expect("pod spec"),
            ));
        }
        for c in self.all::<CronJob>() {
            let spec = c
                .spec
                .and_then(|s| s.job_template.spec)
                .and_then(|j| j.template.spec);
            specs.push((
                format!("CronJob {}", c.metadata.name.unwrap_or_default()),
                spec.expect("pod spec"),
            ));
        }
        specs
    }

    /// The pusher's container, and its pod spec.
    fn pusher(&self) -> (PodSpec, Container) {
        let specs = self.pod_specs();
        assert_eq!(
            specs.len(),
            1,
            "{}: expected exactly one workload",
            self.name
        );
        let (_, spec) = specs.into_iter().next().unwrap();
        let container = spec
            .containers
            .iter()
            .find(|c| c.name == NAME)
            .unwrap_or_else(|| panic!("{}: no container named {NAME}", self.name))
            .clone();
        (spec, container)
    }

    fn args(&self) -> Vec<String> {
        self.pusher().1.args.unwrap_or_default()
    }

    /// The configuration ConfigMap (not the dashboards' ones).
    fn config(&self) -> BTreeMap<String, String> {
        let mut maps: Vec<ConfigMap> = self
            .all::<ConfigMap>()
            .into_iter()
            .filter(|c| {
                !c.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key("grafana_dashboard"))
            })
            .collect();
        assert_eq!(maps.len(), 1, "{}: one configuration ConfigMap", self.name);
        maps.remove(0).data.unwrap_or_default()
    }
}

/// Renders `overlay` with `components` through a throwaway kustomization
/// that sets nothing else, like the smallest overlay a user would write.
/// `extra` is appended to that kustomization.
fn kustomize_with(
    overlay: &Path,
    components: &[&str],
    extra: &str,
    files: &[(&str, &str)],
) -> Vec<Value> {
    let tmp = tempfile::Builder::new()
        .prefix("deploy-variant-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory");
    let dir = tmp
        .path()
        .canonicalize()
        .expect("canonical temporary directory");
    let deploy = repo()
        .join("deploy")
        .canonicalize()
        .expect("deploy/ exists");
    let mut text = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    text += &format!("  - {}\n", relative(&dir, &deploy.join(overlay)).display());
    if !components.is_empty() {
        text += "components:\n";
        for c in components {
            text += &format!(
                "  - {}\n",
                relative(&dir, &deploy.join("components").join(c)).display()
            );
        }
    }
    text += extra;
    std::fs::write(dir.join("kustomization.yaml"), text).expect("write kustomization");
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("write file");
    }
    kustomize(&dir)
}

/// Every set of components that makes sense on an overlay: leader election
/// only for the Deployment, at most one kind of remote-write credentials.
fn component_sets(overlay: &str) -> Vec<Vec<&'static str>> {
    let mut sets = vec![vec![]];
    let mut toggle = |component: &'static str| {
        let with: Vec<Vec<&str>> = sets
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.push(component);
                s
            })
            .collect();
        sets.extend(with);
    };
    if overlay == "deployment" {
        toggle(LEADER_ELECTION);
    }
    toggle(PULL_SECRETS);
    toggle(SERVICE_MONITOR);
    let mut all = Vec::new();
    for set in sets {
        for auth in [None, Some(BASIC_AUTH), Some(BEARER_TOKEN)] {
            let mut set = set.clone();
            set.extend(auth);
            all.push(set);
        }
    }
    all
}

/// Everything shipped, rendered once per test binary (in parallel: each
/// kubectl run is mostly start-up).
fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        struct Job {
            name: String,
            overlay: Option<&'static str>,
            components: Vec<&'static str>,
            dir: Option<PathBuf>,
        }
        let deploy = repo().join("deploy");
        let mut jobs = vec![
            Job {
                name: "base".into(),
                overlay: None,
                components: vec![],
                dir: Some(deploy.join("base")),
            },
            Job {
                name: "examples/mimir-ha".into(),
                overlay: Some("deployment"),
                components: vec![LEADER_ELECTION, SERVICE_MONITOR],
                dir: Some(deploy.join("examples/mimir-ha")),
            },
        ];
        for overlay in ["deployment", "cronjob"] {
            for components in component_sets(overlay) {
                // The overlay itself, as `kubectl apply -k` would use it.
                let dir = components
                    .is_empty()
                    .then(|| deploy.join("overlays").join(overlay));
                let name = if components.is_empty() {
                    format!("overlays/{overlay}")
                } else {
                    format!("overlays/{overlay} + {}", components.join(" + "))
                };
                jobs.push(Job {
                    name,
                    overlay: Some(overlay),
                    components,
                    dir,
                });
            }
            jobs.push(Job {
                name: format!(
                    "overlays/{overlay} + {SERVICE_MONITOR} + {PROMETHEUS_RULE} + {DASHBOARDS}"
                ),
                overlay: Some(overlay),
                components: vec![SERVICE_MONITOR, PROMETHEUS_RULE, DASHBOARDS],
                dir: None,
            });
            jobs.push(Job {
                name: format!("overlays/{overlay} + {PULL_SECRETS} + {WORKLOAD_KINDS}"),
                overlay: Some(overlay),
                components: vec![PULL_SECRETS, WORKLOAD_KINDS],
                dir: None,
            });
        }
        let render = |job: &Job| Render {
            name: job.name.clone(),
            overlay: job.overlay,
            components: job.components.clone(),
            docs: match &job.dir {
                Some(dir) => kustomize(dir),
                None => kustomize_with(
                    Path::new(&format!("overlays/{}", job.overlay.unwrap())),
                    &job.components,
                    "",
                    &[],
                ),
            },
        };
        let threads = 4;
        let chunk = jobs.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|jobs| scope.spawn(move || jobs.iter().map(render).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("render thread"))
                .collect()
        })
    })
}

fn overlays() -> impl Iterator<Item = &'static Render> {
    renders().iter().filter(|r| r.overlay.is_some())
}

// ---------------------------------------------------------------------------
// Strict typing: the round trip through k8s-openapi
// ---------------------------------------------------------------------------

#[test]
fn every_document_round_trips_through_its_kubernetes_type() {
    let mut failures = Vec::new();
    for render in renders() {
        assert!(!render.docs.is_empty(), "{}: rendered nothing", render.name);
        for doc in &render.docs {
            if let Err(e) = check_document(doc) {
                failures.push(format!(
                    "{}: {} {}: {e}",
                    render.name, doc["kind"], doc["metadata"]["name"]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "documents that are not what they claim:\n{}",
        failures.join("\n")
    );
}

/// The round trip is what catches typos; make sure it does.
#[test]
fn a_typo_in_a_field_name_fails_the_round_trip() {
    let doc = |pod_security: Value, container_extra: Value| {
        let mut container = serde_json::json!({"name": "c", "image": "i"});
        container
            .as_object_mut()
            .unwrap()
            .extend(container_extra.as_object().unwrap().clone());
        serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"securityContext": pod_security, "containers": [container]}
                }
            }
        })
    };
    let good = doc(
        serde_json::json!({"runAsNonRoot": true}),
        serde_json::json!({}),
    );
    assert_eq!(check_document(&good), Ok(()));

    let typo = doc(
        serde_json::json!({"runAsNonroot": true}),
        serde_json::json!({}),
    );
    let err = check_document(&typo).unwrap_err();
    assert!(
        err.contains("/spec/template/spec/securityContext/runAsNonroot"),
        "{err}"
    );

    // A real field at the wrong level is as wrong as a typo.
    let misplaced = doc(
        serde_json::json!({}),
        serde_json::json!({"runAsNonRoot": true}),
    );
    let err = check_document(&misplaced).unwrap_err();
    assert!(err.contains("/containers/0/runAsNonRoot"), "{err}");

    let wrong_type = doc(
        serde_json::json!({"runAsUser": "65532"}),
        serde_json::json!({}),
    );
    assert!(check_document(&wrong_type).is_err());
}

// ---------------------------------------------------------------------------
// What every rendering must hold
// ---------------------------------------------------------------------------

#[test]
fn everything_is_labelled_and_in_the_pushers_namespace() {
    let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
    for render in renders() {
        for doc in &render.docs {
            let what = format!(
                "{}: {} {}",
                render.name, doc["kind"], doc["metadata"]["name"]
            );
            assert_eq!(
                doc["metadata"]["labels"]["app.kubernetes.io/name"], NAME,
                "{what}: no app.kubernetes.io/name label"
            );
            assert_eq!(
                doc["metadata"]["labels"]["app.kubernetes.io/part-of"], NAME,
                "{what}"
            );
            let kind = doc["kind"].as_str().unwrap();
            if cluster_scoped.contains(&kind) {
                assert!(
                    doc["metadata"]["namespace"].is_null(),
                    "{what}: cluster-scoped, yet namespaced"
                );
            } else {
                // Without it, `kubectl apply` would use the current context's
                // namespace, whatever that is.
                assert_eq!(
                    doc["metadata"]["namespace"], NAMESPACE,
                    "{what}: not in {NAMESPACE}"
                );
            }
        }
    }
}

#[test]
fn pods_run_restricted() {
    for render in overlays() {
        for (what, spec) in render.pod_specs() {
            let what = format!("{}: {what}", render.name);
            let pod = spec.security_context.clone().unwrap_or_default();
            assert_eq!(spec.service_account_name.as_deref(), Some(NAME), "{what}");
            // The base service account does not mount its token; the pusher
            // needs it and asks for it explicitly.
            assert_eq!(spec.automount_service_account_token, Some(true), "{what}");
            assert_ne!(spec.host_network, Some(true), "{what}");
            assert_ne!(spec.host_pid, Some(true), "{what}");
            assert_ne!(spec.host_ipc, Some(true), "{what}");
            assert_eq!(
                spec.node_selector
                    .as_ref()
                    .and_then(|s| s.get("kubernetes.io/arch"))
                    .map(String::as_str),
                None,
                "{what}: the image is multi-arch: no architecture pinned"
            );
            // The pusher writes nothing to disk but its --cache-dir, a
            // size-limited emptyDir: otherwise Secrets, read-only, only.
            for volume in spec.volumes.iter().flatten() {
                if volume.name == "cache" {
                    let empty_dir = volume.empty_dir.as_ref();
                    assert!(empty_dir.is_some_and(|e| e.size_limit.is_some()), "{what}");
                    continue;
                }
                let secret = volume
                    .secret
                    .as_ref()
                    .unwrap_or_else(|| panic!("{what}: volume {} is not a Secret", volume.name));
                assert!(
                    secret.default_mode.is_some_and(|m| m & 0o007 == 0),
                    "{what}: volume {} is readable by others",
                    volume.name
                );
            }
            assert!(spec.init_containers.is_none(), "{what}");
            assert_eq!(spec.containers.len(), 1, "{what}");
            for c in &spec.containers {
                let sc = c.security_context.clone().unwrap_or_default();
                let container = format!("{what} container {}", c.name);
                // The container's own setting wins over the pod's.
                assert_eq!(
                    sc.run_as_non_root.or(pod.run_as_non_root),
                    Some(true),
                    "{container}"
                );
                assert_eq!(
                    sc.run_as_user.or(pod.run_as_user),
                    Some(65532),
                    "{container}"
                );
                assert_eq!(
                    sc.run_as_group.or(pod.run_as_group),
                    Some(65532),
                    "{container}"
                );
                let seccomp = sc.seccomp_profile.clone().or(pod.seccomp_profile.clone());
                assert_eq!(
                    seccomp.map(|p| p.type_),
                    Some("RuntimeDefault".into()),
                    "{container}"
                );
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{container}");
                assert_eq!(sc.read_only_root_filesystem, Some(true), "{container}");
                assert_ne!(sc.privileged, Some(true), "{container}");
                let caps = sc.capabilities.clone().unwrap_or_default();
                assert_eq!(caps.drop, Some(vec!["ALL".to_string()]), "{container}");
                assert!(caps.add.unwrap_or_default().is_empty(), "{container}");
                for mount in c.volume_mounts.iter().flatten() {
                    // The --cache-dir emptyDir is the one place it writes.
                    assert_eq!(
                        mount.read_only.unwrap_or(false),
                        mount.name != "cache",
                        "{container}: {} is writable",
                        mount.name
                    );
                    assert!(
                        spec.volumes.iter().flatten().any(|v| v.name == mount.name),
                        "{container}: mounts undeclared volume {}",
                        mount.name
                    );
                }
                assert_eq!(
                    c.image.as_deref(),
                    Some(IMAGE),
                    "{container}: kustomize `images:` not applied?"
                );
                let resources = c.resources.clone().unwrap_or_default();
                assert_eq!(
                    quantity(&resources.requests, "cpu").as_deref(),
                    Some("50m"),
                    "{container}"
                );
                assert_eq!(
                    quantity(&resources.requests, "memory").as_deref(),
                    Some("128Mi"),
                    "{container}"
                );
                assert_eq!(
                    quantity(&resources.limits, "memory").as_deref(),
                    Some("512Mi"),
                    "{container}"
                );
                // No CPU limit: CFS throttling would stretch a cold start.
                assert_eq!(quantity(&resources.limits, "cpu"), None, "{container}");
            }
        }
    }
}

#[test]
fn references_resolve_within_each_rendering() {
    for render in renders() {
        let secrets: BTreeSet<String> = render
            .all::<Secret>()
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        let config_maps: BTreeSet<String> = render
            .all::<ConfigMap>()
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        let accounts: BTreeSet<String> = render
            .all::<ServiceAccount>()
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        for (what, spec) in render.pod_specs() {
            let what = format!("{}: {what}", render.name);
            let account = spec.service_account_name.clone().unwrap_or_default();
            assert!(
                accounts.contains(&account),
                "{what}: no ServiceAccount {account}"
            );
            for volume in spec.volumes.iter().flatten().filter(|v| v.secret.is_some()) {
                let name = volume
                    .secret
                    .as_ref()
                    .and_then(|s| s.secret_name.clone())
                    .unwrap_or_default();
                assert!(
                    secrets.contains(&name),
                    "{what}: volume {} wants Secret {name}",
                    volume.name
                );
                let secret = render
                    .all::<Secret>()
                    .into_iter()
                    .find(|s| s.metadata.name.as_deref() == Some(name.as_str()))
                    .unwrap();
                for item in volume.secret.as_ref().unwrap().items.iter().flatten() {
                    assert!(
                        secret_keys(&secret).contains(&item.key),
                        "{what}: Secret {name} has no key {}",
                        item.key
                    );
                }
            }
            for c in &spec.containers {
                for from in c.env_from.iter().flatten() {
                    // configMapGenerator adds a content hash to the name:
                    // the reference must have been rewritten to match.
                    let name = from
                        .config_map_ref
                        .as_ref()
                        .map(|r| r.name.clone())
                        .unwrap_or_default();
                    assert!(
                        config_maps.contains(&name),
                        "{what}: envFrom wants ConfigMap {name}"
                    );
                }
                for var in c.env.iter().flatten() {
                    let Some(key_ref) = var
                        .value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                    else {
                        continue;
                    };
                    let secret = render
                        .all::<Secret>()
                        .into_iter()
                        .find(|s| s.metadata.name.as_deref() == Some(key_ref.name.as_str()))
                        .unwrap_or_else(|| {
                            panic!("{what}: env {} wants Secret {}", var.name, key_ref.name)
                        });
                    assert!(
                        secret_keys(&secret).contains(&key_ref.key),
                        "{what}: env {}",
                        var.name
                    );
                }
            }
        }
        let roles: BTreeSet<(String, String)> = render
            .all::<ClusterRole>()
            .into_iter()
            .map(|r| ("ClusterRole".into(), r.metadata.name.unwrap_or_default()))
            .chain(
                render
                    .all::<Role>()
                    .into_iter()
                    .map(|r| ("Role".into(), r.metadata.name.unwrap_or_default())),
            )
            .collect();
        let bindings = render
            .all::<ClusterRoleBinding>()
            .into_iter()
            .map(|b| (b.metadata.name, b.role_ref, b.subjects))
            .chain(
                render
                    .all::<RoleBinding>()
                    .into_iter()
                    .map(|b| (b.metadata.name, b.role_ref, b.subjects)),
            );
        for (name, role_ref, subjects) in bindings {
            let what = format!("{}: binding {}", render.name, name.unwrap_or_default());
            assert!(
                roles.contains(&(role_ref.kind.clone(), role_ref.name.clone())),
                "{what}: no {} {}",
                role_ref.kind,
                role_ref.name
            );
            assert_eq!(subjects, Some(vec![pusher_account()]), "{what}");
        }
    }
}

fn quantity(map: &Option<BTreeMap<String, Quantity>>, key: &str) -> Option<String> {
    map.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone())
}

fn pusher_account() -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: NAME.into(),
        namespace: Some(NAMESPACE.into()),
        api_group: None,
    }
}

fn secret_keys(secret: &Secret) -> BTreeSet<String> {
    let data = secret.data.iter().flatten().map(|(k, _)| k.clone());
    data.chain(secret.string_data.iter().flatten().map(|(k, _)| k.clone()))
        .collect()
}

// ---------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------

/// The base role: list and watch on exactly the six kinds read.
#[test]
fn base_cluster_role_only_lists_and_watches_the_inventoried_kinds() {
    let base = renders().iter().find(|r| r.name == "base").unwrap();
    let role = base.one::<ClusterRole>();
    assert_eq!(role.metadata.name.as_deref(), Some(NAME));
    let mut granted = BTreeSet::new();
    for rule in role.rules.iter().flatten() {
        assert_eq!(rule.verbs, ["list", "watch"], "verbs of {rule:?}");
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{rule:?}"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                granted.insert(format!("{group}/{resource}"));
            }
        }
    }
    let expected: BTreeSet<String> = [
        "/pods",
        "apps/deployments",
        "apps/statefulsets",
        "apps/daemonsets",
        "batch/jobs",
        "batch/cronjobs",
    ]
    .map(String::from)
    .into();
    assert_eq!(granted, expected);
}

/// Across every rendering: reads only, except the Lease of leader election,
/// and Secrets only with the pull-secrets component.
#[test]
fn rbac_grants_nothing_beyond_the_components_asked_for() {
    for render in renders() {
        let cluster_rules: Vec<PolicyRule> = render
            .all::<ClusterRole>()
            .into_iter()
            .flat_map(|r| r.rules.unwrap_or_default())
            .collect();
        let roles = render.all::<Role>();
        for rule in &cluster_rules {
            assert!(
                rule.verbs
                    .iter()
                    .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
                "{}: cluster-wide write access {rule:?}",
                render.name
            );
            assert!(
                !rule.verbs.iter().any(|v| v == "*"),
                "{}: wildcard verb",
                render.name
            );
            assert!(
                !rule.resources.iter().flatten().any(|r| r == "*"),
                "{}: wildcard resource",
                render.name
            );
        }
        let reads = |resource: &str| {
            cluster_rules
                .iter()
                .any(|r| r.resources.iter().flatten().any(|x| x == resource))
        };
        assert_eq!(
            reads("secrets"),
            render.has(PULL_SECRETS),
            "{}: secrets",
            render.name
        );
        assert_eq!(
            reads("serviceaccounts"),
            render.has(PULL_SECRETS),
            "{}: serviceaccounts",
            render.name
        );
        if render.has(PULL_SECRETS) {
            let role = render
                .all::<ClusterRole>()
                .into_iter()
                .find(|r| r.metadata.name.as_deref() == Some("container-image-pusher-pull-secrets"))
                .expect("pull-secrets ClusterRole");
            for rule in role.rules.unwrap() {
                assert_eq!(rule.api_groups, Some(vec![String::new()]));
                assert_eq!(rule.verbs, ["get", "list", "watch"]);
            }
        }
        if render.has(LEADER_ELECTION) {
            let role = render.one::<Role>();
            let rules = role.rules.unwrap();
            assert_eq!(rules.len(), 1, "{}", render.name);
            assert_eq!(
                rules[0].api_groups,
                Some(vec!["coordination.k8s.io".to_string()])
            );
            assert_eq!(rules[0].resources, Some(vec!["leases".to_string()]));
            assert_eq!(rules[0].verbs, ["get", "create", "update"]);
            let binding = render.one::<RoleBinding>();
            assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
        } else {
            assert!(
                roles.is_empty(),
                "{}: a Role without leader election",
                render.name
            );
        }
    }
}

/// The workload-kinds component: list and watch, nothing more, on exactly
/// the resources of the presets it turns on, bound to the pusher; and the
/// presets are the pusher's own.
#[test]
fn workload_kinds_component_reads_exactly_its_kinds() {
    let expected: BTreeMap<&str, &str> = [
        ("argo-rollouts", "argoproj.io/rollouts"),
        ("knative-serving", "serving.knative.dev/services"),
        ("keda-scaledjob", "keda.sh/scaledjobs"),
        ("openkruise-cloneset", "apps.kruise.io/clonesets"),
    ]
    .into();
    let mut seen = 0;
    for render in overlays() {
        let presets: BTreeSet<String> = render
            .args()
            .iter()
            .filter_map(|a| a.strip_prefix("--workload-kind=").map(str::to_owned))
            .collect();
        let role = render
            .all::<ClusterRole>()
            .into_iter()
            .find(|r| r.metadata.name.as_deref() == Some("container-image-pusher-workload-kinds"));
        if !render.has(WORKLOAD_KINDS) {
            assert!(presets.is_empty() && role.is_none(), "{}", render.name);
            continue;
        }
        seen += 1;
        assert_eq!(
            presets,
            expected.keys().map(|k| k.to_string()).collect(),
            "{}",
            render.name
        );
        let mut granted = BTreeSet::new();
        for rule in role.expect("the workload-kinds ClusterRole").rules.unwrap() {
            assert_eq!(rule.verbs, ["list", "watch"], "{rule:?}");
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    granted.insert(format!("{group}/{resource}"));
                }
            }
        }
        let wanted: BTreeSet<String> = expected.values().map(|v| v.to_string()).collect();
        assert_eq!(granted, wanted, "{}", render.name);
        for preset in &presets {
            let spec = container_image_pusher::discovery::KindSpec::parse(preset).unwrap();
            assert!(
                expected[preset.as_str()].starts_with(&format!("{}/", spec.name.group)),
                "{preset}: the role's group is the preset's"
            );
        }
        let binding = render
            .all::<ClusterRoleBinding>()
            .into_iter()
            .find(|b| b.role_ref.name == "container-image-pusher-workload-kinds")
            .expect("its binding");
        assert_eq!(binding.subjects, Some(vec![pusher_account()]));
    }
    assert_eq!(seen, 2, "rendered on both overlays");
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

#[test]
fn deployment_probes_and_replicas() {
    for render in overlays().filter(|r| r.overlay == Some("deployment")) {
        let deployment = render.one::<Deployment>();
        let spec = deployment.spec.unwrap();
        let (_, c) = render.pusher();
        let what = &render.name;
        let port = c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("metrics"))
            .expect("metrics port");
        assert_eq!(port.container_port, 8080, "{what}");
        let telemetry = c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("telemetry"))
            .expect("telemetry port");
        assert_eq!(telemetry.container_port, 8081, "{what}");
        assert!(
            render
                .args()
                .contains(&"--telemetry-address=0.0.0.0:8081".to_owned()),
            "{what}"
        );
        // Probes read the health listener, which inventory readers cannot
        // crowd out.
        let http = |probe: Option<k8s_openapi::api::core::v1::Probe>| {
            let get = probe
                .and_then(|p| p.http_get)
                .unwrap_or_else(|| panic!("{what}: probe is not httpGet"));
            assert_eq!(get.port, IntOrString::String("telemetry".into()), "{what}");
            get.path.unwrap_or_default()
        };
        assert_eq!(http(c.liveness_probe.clone()), "/healthz", "{what}");
        assert_eq!(http(c.readiness_probe.clone()), "/readyz", "{what}");
        let args = render.args();
        assert!(
            args.contains(&"--interval=60s".to_string()),
            "{what}: {args:?}"
        );
        let strategy = spec.strategy.and_then(|s| s.type_);
        if render.has(LEADER_ELECTION) {
            assert_eq!(spec.replicas, Some(2), "{what}");
            assert_eq!(strategy.as_deref(), Some("RollingUpdate"), "{what}");
            assert!(args.contains(&"--leader-election".to_string()), "{what}");
            assert!(
                args.contains(&"--lease-name=container-image-pusher".to_string()),
                "{what}"
            );
            let env = c.env.clone().unwrap_or_default();
            let field = |name: &str| {
                env.iter()
                    .find(|v: &&EnvVar| v.name == name)
                    .and_then(|v| v.value_from.clone())
                    .and_then(|v| v.field_ref)
                    .map(|f| f.field_path)
            };
            assert_eq!(
                field("POD_NAMESPACE").as_deref(),
                Some("metadata.namespace"),
                "{what}"
            );
            assert_eq!(
                field("POD_NAME").as_deref(),
                Some("metadata.name"),
                "{what}"
            );
            // A drain takes one replica at a time, selecting the pusher's pods.
            let pdb = render.one::<PodDisruptionBudget>().spec.unwrap();
            assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)), "{what}");
            let selected = pdb.selector.unwrap().match_labels.unwrap();
            let labels = pod_template_labels(render);
            for (k, v) in &selected {
                assert_eq!(labels.get(k), Some(v), "{what}: PDB selector {k}");
            }
        } else {
            assert!(render.all::<PodDisruptionBudget>().is_empty(), "{what}");
            // Two pushers of one cluster would push out-of-order samples.
            assert_eq!(spec.replicas, Some(1), "{what}");
            assert_eq!(strategy.as_deref(), Some("Recreate"), "{what}");
            assert!(
                !args.iter().any(|a| a.starts_with("--leader-election")),
                "{what}"
            );
        }
    }
}

#[test]
fn cronjob_runs_once_never_overlapping() {
    for render in overlays().filter(|r| r.overlay == Some("cronjob")) {
        let what = &render.name;
        let spec = render.one::<CronJob>().spec.unwrap();
        assert_eq!(spec.schedule, "*/15 * * * *", "{what}");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"), "{what}");
        let job = spec.job_template.spec.unwrap();
        // A hung run must end before the next one is due.
        let deadline = job.active_deadline_seconds.expect("activeDeadlineSeconds");
        assert!(
            deadline > 0 && deadline < 15 * 60,
            "{what}: activeDeadlineSeconds {deadline}"
        );
        let backoff = job.backoff_limit.expect("backoffLimit");
        assert!((1..=3).contains(&backoff), "{what}: backoffLimit {backoff}");
        assert_eq!(
            job.template.spec.unwrap().restart_policy.as_deref(),
            Some("Never"),
            "{what}"
        );
        let args = render.args();
        assert!(args.contains(&"--once".to_string()), "{what}: {args:?}");
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--interval") || a.starts_with("--schedule")),
            "{what}"
        );
        assert!(!render.has(LEADER_ELECTION));
    }
}

#[test]
fn optional_flags_follow_their_components() {
    for render in overlays() {
        let what = &render.name;
        let args = render.args();
        let (spec, c) = render.pusher();
        // args[0] is the pull-secrets switch (see the component).
        let expected = if render.has(PULL_SECRETS) {
            "--pull-secrets=true"
        } else {
            "--pull-secrets=false"
        };
        assert_eq!(args[0], expected, "{what}");
        assert_eq!(
            args.iter().filter(|a| a.contains("pull-secrets")).count(),
            1,
            "{what}"
        );
        assert!(
            args.contains(
                &"--docker-config=/etc/container-image-pusher/docker/config.json".to_string()
            ),
            "{what}"
        );
        let mounted = |path: &str| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == path)
        };
        assert!(mounted("/etc/container-image-pusher/docker"), "{what}");
        let basic = args
            .iter()
            .any(|a| a.starts_with("--remote-write-password-file="));
        let username = args
            .iter()
            .any(|a| a == "--remote-write-username=$(REMOTE_WRITE_USERNAME)");
        let bearer = args
            .iter()
            .any(|a| a.starts_with("--remote-write-bearer-token-file="));
        assert_eq!(basic, render.has(BASIC_AUTH), "{what}");
        assert_eq!(username, render.has(BASIC_AUTH), "{what}");
        assert_eq!(bearer, render.has(BEARER_TOKEN), "{what}");
        assert_eq!(
            mounted("/etc/container-image-pusher/remote-write"),
            basic || bearer,
            "{what}"
        );
        if username {
            // $(VAR) in args is expanded only from the container's own env.
            let env = c.env.clone().unwrap_or_default();
            assert!(
                env.iter().any(|v| v.name == "REMOTE_WRITE_USERNAME"),
                "{what}"
            );
        }
        // Every file flag points into a mounted volume.
        for arg in &args {
            if let Some((flag, path)) = arg.split_once('=') {
                if flag.ends_with("-file") || flag == "--docker-config" {
                    let mount = c
                        .volume_mounts
                        .iter()
                        .flatten()
                        .find(|m| path.starts_with(&format!("{}/", m.mount_path)));
                    let mount =
                        mount.unwrap_or_else(|| panic!("{what}: {arg} is not in a mounted volume"));
                    let file = &path[mount.mount_path.len() + 1..];
                    let volume = spec
                        .volumes
                        .iter()
                        .flatten()
                        .find(|v| v.name == mount.name)
                        .unwrap();
                    let secret = volume.secret.as_ref().unwrap();
                    let files: Vec<String> = match &secret.items {
                        Some(items) => items.iter().map(|i| i.path.clone()).collect(),
                        None => {
                            let name = secret.secret_name.clone().unwrap();
                            let secret = render
                                .all::<Secret>()
                                .into_iter()
                                .find(|s| s.metadata.name == Some(name.clone()))
                                .unwrap();
                            secret_keys(&secret).into_iter().collect()
                        }
                    };
                    assert!(
                        files.iter().any(|f| f == file),
                        "{what}: {arg}: the volume has {files:?}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration, Service, ServiceMonitor
// ---------------------------------------------------------------------------

#[test]
fn configuration_is_in_one_config_map() {
    for render in renders() {
        let config = render.config();
        let what = &render.name;
        let keys: Vec<&str> = config.keys().map(String::as_str).collect();
        assert_eq!(keys, CONFIG_MAP_KEYS, "{what}");
        let url = &config["PUSHER_REMOTE_WRITE_URL"];
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{what}: {url}"
        );
        assert!(
            config["PUSHER_EXTERNAL_LABELS"].starts_with("cluster="),
            "{what}"
        );
        // Nothing in the workloads may override it with args.
        if render.overlay.is_some() {
            let args = render.args();
            assert!(
                !args
                    .iter()
                    .any(|a| a.starts_with("--remote-write-url")
                        || a.starts_with("--external-label")),
                "{what}: set these in the ConfigMap"
            );
            let (_, c) = render.pusher();
            assert_eq!(c.env_from.map(|e| e.len()), Some(1), "{what}");
        }
    }
}

#[test]
fn secrets_ship_empty() {
    let base = renders().iter().find(|r| r.name == "base").unwrap();
    for secret in base.all::<Secret>() {
        let name = secret.metadata.name.clone().unwrap();
        assert!(secret.data.is_none(), "{name}: real data in git?");
        let data = secret.string_data.unwrap();
        match name.as_str() {
            "container-image-pusher-docker-config" => {
                let config: Value =
                    serde_json::from_str(&data["config.json"]).expect("config.json is JSON");
                assert_eq!(config, serde_json::json!({"auths": {}}));
            }
            "container-image-pusher-remote-write" => {
                let keys: Vec<&str> = data.keys().map(String::as_str).collect();
                assert_eq!(keys, ["bearer-token", "password", "username"]);
                assert!(
                    data.values().all(String::is_empty),
                    "{name}: credentials in git"
                );
            }
            other => panic!("unexpected Secret {other}"),
        }
    }
}

/// The annotations point annotation-based scrape jobs at the health port;
/// the inventory port is there for debugging, behind the NetworkPolicy.
#[test]
fn service_exposes_the_health_port_for_scraping() {
    for render in renders() {
        let what = &render.name;
        let service = render.one::<Service>();
        let annotations = service.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get("prometheus.io/scrape").map(String::as_str),
            Some("true"),
            "{what}"
        );
        assert_eq!(
            annotations.get("prometheus.io/port").map(String::as_str),
            Some("8081"),
            "{what}"
        );
        assert_eq!(
            annotations.get("prometheus.io/path").map(String::as_str),
            Some("/metrics"),
            "{what}"
        );
        let spec = service.spec.unwrap();
        let ports = spec.ports.unwrap();
        let ports: Vec<_> = ports
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port, p.target_port.clone()))
            .collect();
        let named = |name: &str| Some(IntOrString::String(name.into()));
        assert_eq!(
            ports,
            [
                ("metrics".to_owned(), 8080, named("metrics")),
                ("telemetry".to_owned(), 8081, named("telemetry"))
            ],
            "{what}"
        );
        // Nobody reaches the inventory port; everybody the health port.
        let policy = render.one::<NetworkPolicy>().spec.unwrap();
        assert_eq!(policy.policy_types, Some(vec!["Ingress".to_owned()]));
        let ingress = policy.ingress.unwrap_or_default();
        let open: Vec<_> = ingress
            .iter()
            .flat_map(|rule| rule.ports.clone().unwrap_or_default())
            .map(|p| p.port)
            .collect();
        assert_eq!(open, [named("telemetry")], "{what}");
        assert!(ingress.iter().all(|rule| rule.from.is_none()), "{what}");
        let selector = spec.selector.unwrap();
        if render.overlay.is_some() {
            // The selector must pick the pusher's pods.
            let labels = pod_template_labels(render);
            for (k, v) in &selector {
                assert_eq!(labels.get(k), Some(v), "{what}: selector {k}={v}");
            }
        }
    }
}

fn pod_template_labels(render: &Render) -> BTreeMap<String, String> {
    if let Some(d) = render.all::<Deployment>().into_iter().next() {
        let spec = d.spec.unwrap();
        let labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .unwrap_or_default();
        // And the Deployment's own selector must match its template.
        for (k, v) in spec.selector.match_labels.unwrap_or_default() {
            assert_eq!(
                labels.get(&k),
                Some(&v),
                "{}: Deployment selector {k}",
                render.name
            );
        }
        return labels;
    }
    let c = render.one::<CronJob>();
    let template = c.spec.unwrap().job_template.spec.unwrap().template;
    template.metadata.and_then(|m| m.labels).unwrap_or_default()
}

#[test]
fn service_monitor_scrapes_only_the_self_metrics() {
    for render in renders() {
        let monitors: Vec<&Value> = render
            .docs
            .iter()
            .filter(|d| d["kind"] == "ServiceMonitor")
            .collect();
        assert_eq!(
            monitors.len(),
            usize::from(render.has(SERVICE_MONITOR)),
            "{}",
            render.name
        );
        let Some(monitor) = monitors.first() else {
            continue;
        };
        let what = &render.name;
        let service = render.one::<Service>();
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1", "{what}");
        let spec = &monitor["spec"];
        let service_labels = service.metadata.labels.unwrap_or_default();
        let selector = spec["selector"]["matchLabels"]
            .as_object()
            .expect("selector.matchLabels");
        assert!(!selector.is_empty());
        for (k, v) in selector {
            assert_eq!(
                service_labels.get(k).map(String::as_str),
                v.as_str(),
                "{what}: selector {k}"
            );
        }
        assert_eq!(
            spec["namespaceSelector"]["matchNames"],
            serde_json::json!([NAMESPACE]),
            "{what}"
        );
        let endpoints = spec["endpoints"].as_array().expect("endpoints");
        assert_eq!(endpoints.len(), 1, "{what}");
        let endpoint = &endpoints[0];
        assert_eq!(
            endpoint["port"], "telemetry",
            "{what}: must name the Service's health port"
        );
        assert_eq!(endpoint["path"], "/metrics", "{what}");
        let known = ["port", "path", "interval"];
        for key in endpoint.as_object().unwrap().keys() {
            assert!(
                known.contains(&key.as_str()),
                "{what}: unexpected endpoint field {key}"
            );
        }
    }
}

/// The rendered PrometheusRule holds exactly the groups of the shipped rules
/// file (which `cargo test --test rules` checks with promtool): Kustomize
/// leaves them as they are.
#[test]
fn prometheus_rule_carries_the_shipped_rules() {
    let path = repo().join("deploy/rules/container-image-pusher.rules.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let rules: Value = serde_yaml::from_str(&text).expect("the rules file is YAML");
    let mut rendered_somewhere = false;
    for render in renders() {
        let what = &render.name;
        let found: Vec<&Value> = render
            .docs
            .iter()
            .filter(|d| d["kind"] == "PrometheusRule")
            .collect();
        assert_eq!(
            found.len(),
            usize::from(render.has(PROMETHEUS_RULE)),
            "{what}"
        );
        let Some(rule) = found.first() else {
            continue;
        };
        rendered_somewhere = true;
        assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1", "{what}");
        assert_eq!(rule["metadata"]["name"], NAME, "{what}");
        assert_eq!(
            rule["spec"],
            serde_json::json!({"groups": rules["groups"]}),
            "{what}: spec is not the rules file's groups"
        );
    }
    assert!(
        rendered_somewhere,
        "no rendering has the {PROMETHEUS_RULE} component"
    );
}

// ---------------------------------------------------------------------------
// The example and the documented way to fill the Secret
// ---------------------------------------------------------------------------

#[test]
fn example_overlay_merges_its_configuration() {
    let example = renders()
        .iter()
        .find(|r| r.name == "examples/mimir-ha")
        .unwrap();
    let config = example.config();
    assert_eq!(
        config["PUSHER_REMOTE_WRITE_URL"],
        "http://mimir-nginx.mimir.svc/api/v1/push"
    );
    assert_eq!(config["PUSHER_EXTERNAL_LABELS"], "cluster=prod-eu-1");
    let args = example.args();
    assert!(
        args.contains(&"--remote-write-header=X-Scope-OrgID: platform".to_string()),
        "{args:?}"
    );
    assert_eq!(example.one::<Deployment>().spec.unwrap().replicas, Some(2));
}

/// What docs/deploy.md and base/remote-write-secret.yaml tell users to do:
/// replace the placeholder Secret from their overlay with files kept out of
/// git. The workload must then read the generated Secret.
#[test]
fn credentials_can_be_filled_from_an_overlay() {
    let extra = "namespace: container-image-pusher\n\
                 secretGenerator:\n\
                 \x20 - name: container-image-pusher-remote-write\n\
                 \x20   behavior: replace\n\
                 \x20   files: [username=remote-write-username, password=remote-write-password]\n";
    let docs = kustomize_with(
        Path::new("overlays/deployment"),
        &[BASIC_AUTH],
        extra,
        &[
            ("remote-write-username", "123456"),
            ("remote-write-password", "glc_secret"),
        ],
    );
    let render = Render {
        name: "filled".into(),
        overlay: Some("deployment"),
        components: vec![BASIC_AUTH],
        docs,
    };
    let secret = render
        .all::<Secret>()
        .into_iter()
        .find(|s| {
            s.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("container-image-pusher-remote-write"))
        })
        .expect("the replaced Secret");
    let data = secret.data.clone().expect("generated data");
    assert_eq!(data["username"].0, b"123456");
    assert_eq!(data["password"].0, b"glc_secret");
    assert!(
        secret.string_data.is_none(),
        "the empty placeholders must be gone"
    );
    let (spec, c) = render.pusher();
    let name = secret.metadata.name.unwrap();
    let volume = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "remote-write")
        .unwrap();
    assert_eq!(volume.secret.unwrap().secret_name, Some(name.clone()));
    let env = c
        .env
        .unwrap()
        .into_iter()
        .find(|v| v.name == "REMOTE_WRITE_USERNAME")
        .unwrap();
    assert_eq!(env.value_from.unwrap().secret_key_ref.unwrap().name, name);
}

// ---------------------------------------------------------------------------
// The binary accepts what the manifests pass it
// ---------------------------------------------------------------------------

/// Every `--flag` in the manifests is in `--help`, every `PUSHER_*` variable
/// of the ConfigMap too, and each workload's full argument list parses.
/// Flags still being built make this fail until they land.
#[test]
fn manifest_flags_exist_in_help() {
    let binary = env!("CARGO_BIN_EXE_container-image-pusher");
    let help = Command::new(binary)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    let in_help = |flag: &str| {
        help.match_indices(flag).any(|(i, _)| {
            let next = help[i + flag.len()..].chars().next();
            !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    };

    let mut missing = BTreeMap::<String, BTreeSet<String>>::new();
    for render in overlays() {
        for arg in render.args() {
            let flag = arg.split('=').next().unwrap().to_string();
            assert!(
                flag.starts_with("--"),
                "{}: {arg} is not a --flag",
                render.name
            );
            if !in_help(&flag) {
                missing.entry(flag).or_default().insert(render.name.clone());
            }
        }
        for key in render.config().keys() {
            if !in_help(&format!("[env: {key}")) {
                missing
                    .entry(key.clone())
                    .or_default()
                    .insert(render.name.clone());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the manifests use flags or variables that `container-image-pusher --help` does not list:\n{}",
        missing
            .iter()
            .map(|(flag, renders)| format!("  {flag} (in {})", renders.iter().next().unwrap()))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The values too: clap parses (and validates) the arguments before it
    // meets a trailing --version, so a bad duration or label fails here.
    // Values from the environment are not parsed before --version, so the
    // ConfigMap's variables are passed as the flags they stand for.
    let flag_of_env = flags_by_env(&help);
    for render in overlays() {
        let mut args: Vec<String> = render
            .args()
            .iter()
            // What the kubelet would expand from the container's env.
            .map(|a| a.replace("$(REMOTE_WRITE_USERNAME)", "123456"))
            .collect();
        for (key, value) in render.config() {
            args.push(format!("{}={value}", flag_of_env[&key]));
        }
        let mut command = Command::new(binary);
        command.args(&args).arg("--version");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PUSHER_")) {
            command.env_remove(key);
        }
        let output = command.output().expect("run the binary");
        assert!(
            output.status.success(),
            "{}: container-image-pusher {} rejects its arguments:\n{}",
            render.name,
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Environment variable -> flag, read off `--help`, where each flag's
/// `[env: NAME]` follows the line that names the flag.
fn flags_by_env(help: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut flag = None;
    for line in help.lines() {
        let line = line.trim_start();
        if let Some(rest) = line.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            flag = Some(format!("--{name}"));
        }
        if let (Some(i), Some(flag)) = (line.find("[env: "), &flag) {
            let name: String = line[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            map.insert(name, flag.clone());
        }
    }
    map
}

/// The Dockerfile builds one image per architecture: its TARGETARCH ->
/// Rust target mapping covers amd64 and arm64, each a target this rustc
/// knows, and the build stage cross-compiles from the build platform.
/// (Actually building aarch64-unknown-linux-musl needs that target's
/// standard library and a C cross compiler, which this machine lacks; the
/// image build does it.)
#[test]
fn dockerfile_maps_each_architecture_to_a_real_musl_target() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("read the Dockerfile");
    assert!(
        text.contains("FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build"),
        "the build stage runs on the build platform and cross-compiles"
    );
    assert!(text.contains("ARG TARGETARCH"));
    // `amd64) echo x86_64-unknown-linux-musl ;; \`
    let mapping: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| {
            let (arch, rest) = line.trim().split_once(") echo ")?;
            // The catch-all `*)` refuses other architectures.
            (arch != "*").then_some(())?;
            Some((arch, rest.split_whitespace().next()?))
        })
        .collect();
    assert_eq!(
        mapping.keys().copied().collect::<Vec<_>>(),
        ["amd64", "arm64"],
        "{mapping:?}"
    );
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .args(["--print", "target-list"])
        .output()
        .expect("run rustc --print target-list");
    let known: BTreeSet<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for (arch, target) in &mapping {
        assert!(target.ends_with("-unknown-linux-musl"), "{arch}: {target}");
        assert!(
            known.contains(*target),
            "{arch}: {target} is not a target rustc knows"
        );
    }
    // The cross compiler is installed and named for the arm64 target.
    for needle in [
        "gcc-aarch64-linux-gnu",
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc",
        "CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc",
        r#"cargo build --release --locked --target "$target""#,
    ] {
        assert!(text.contains(needle), "the Dockerfile lacks {needle}");
    }
}
