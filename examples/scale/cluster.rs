//! The generated cluster served by the Kubernetes API test server:
//! workloads, their Pods, metadata, specs and status.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::json;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetStatus, Deployment, DeploymentSpec, DeploymentStatus,
    DeploymentStrategy, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerState, ContainerStateRunning, ContainerStatus, EnvVar,
    EnvVarSource, EphemeralContainer, HTTPGetAction, ObjectFieldSelector, Pod, PodCondition,
    PodSpec, PodStatus, PodTemplateSpec, Probe, ResourceRequirements, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, LabelSelector, ManagedFieldsEntry, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::images::{ImagePlan, Pin, EPOCH_SECONDS, POPULAR_IMAGES};
use super::options::Options;
use super::results::DatasetStats;
use super::support::kube_api::{Crd, KubeApi, ARGO_ROLLOUT, KRUISE_CLONE_SET};

/// Fills the API server with workloads totalling exactly `containers`
/// containers over the images of `plans`.
pub(crate) fn populate(
    api: &KubeApi,
    plans: &[ImagePlan],
    host: &str,
    options: &Options,
) -> DatasetStats {
    let containers = options.containers;
    if options.custom_kinds {
        api.install_crd(ARGO_ROLLOUT);
        api.install_crd(KRUISE_CLONE_SET);
    }
    let mut generator = Generator {
        accounts: options.service_account_per_workload,
        custom_kinds: options.custom_kinds,
        api,
        plans,
        host,
        namespaces: (containers / 1000).clamp(1, 200),
        popular: POPULAR_IMAGES.min(plans.len()),
        cursor: 0,
        used: vec![false; plans.len()],
        pulled: plans
            .iter()
            .map(|plan| {
                let id = format!("{host}/{}@{}", plan.repo, plan.digest);
                (plan.reference(host), id)
            })
            .collect(),
        stats: DatasetStats::default(),
    };
    let mut unit = 0;
    while generator.stats.containers < containers {
        let remaining = containers - generator.stats.containers;
        generator.unit(unit, remaining);
        unit += 1;
    }
    let mut stats = generator.stats;
    stats.namespaces = generator.namespaces;
    let used = generator.used;
    stats.distinct_images = used.iter().filter(|u| **u).count();
    for (plan, _) in plans.iter().zip(&used).filter(|(_, used)| **used) {
        match plan.pin {
            Pin::Tag => stats.tagged_references += 1,
            Pin::Digest | Pin::TagAndDigest => stats.pinned_references += 1,
        }
        if plan.multi_arch {
            stats.multi_arch_images += 1;
        }
    }
    stats
}

pub(crate) struct Generator<'a> {
    /// A service account per Deployment and StatefulSet.
    pub(crate) accounts: bool,
    /// Some Deployments are Argo Rollouts or OpenKruise CloneSets instead.
    pub(crate) custom_kinds: bool,
    pub(crate) api: &'a KubeApi,
    pub(crate) plans: &'a [ImagePlan],
    pub(crate) host: &'a str,
    pub(crate) namespaces: usize,
    pub(crate) popular: usize,
    /// Next image handed out round-robin, so every image gets used.
    pub(crate) cursor: usize,
    pub(crate) used: Vec<bool>,
    /// Each image reference's `imageID` as a runtime reports it: the
    /// digest the tag named when the pod pulled it (the index digest of a
    /// multi-arch image), so a steady cluster shows no drift.
    pub(crate) pulled: HashMap<String, String>,
    pub(crate) stats: DatasetStats,
}

/// A container of a template: name and image index.
pub(crate) type Slot = (String, usize);

impl Generator<'_> {
    pub(crate) fn unique_image(&mut self) -> usize {
        let rest = self.plans.len() - self.popular;
        let image = if rest == 0 {
            self.cursor % self.plans.len()
        } else {
            self.popular + self.cursor % rest
        };
        self.cursor += 1;
        image
    }

    pub(crate) fn popular_image(&self, n: usize) -> usize {
        n % self.popular.max(1)
    }

    pub(crate) fn apply<K>(&mut self, object: &K, containers: usize)
    where
        K: k8s_openapi::Resource + Serialize,
    {
        self.stats.api_json_bytes += serde_json::to_vec(object).map_or(0, |v| v.len());
        *self.stats.objects.entry(K::KIND.to_owned()).or_default() += 1;
        self.stats.containers += containers;
        self.api.apply(object);
    }

    /// [`Generator::apply`] for an object of an installed CRD.
    pub(crate) fn apply_custom(&mut self, object: serde_json::Value, containers: usize) {
        self.stats.api_json_bytes += serde_json::to_vec(&object).map_or(0, |v| v.len());
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        *self.stats.objects.entry(kind).or_default() += 1;
        self.stats.containers += containers;
        self.api.apply_custom(object);
    }

    pub(crate) fn use_images(&mut self, slots: &[Slot]) {
        for (_, image) in slots {
            self.used[*image] = true;
        }
    }

    /// One workload with its pods; falls back to a bare pod when the
    /// remaining budget is too small.
    pub(crate) fn unit(&mut self, k: usize, remaining: usize) {
        let namespace = format!("team-{:03}", k % self.namespaces);
        let kind = k % 20;
        let (init, regular): (Vec<Slot>, Vec<Slot>) = match kind {
            // Deployments: 2–3 containers, a shared sidecar every fourth, an
            // init container every third.
            0..=9 => {
                let mut regular = vec![("app".to_owned(), self.unique_image())];
                let sidecar = if k % 4 == 0 {
                    ("istio-proxy".to_owned(), self.popular_image(k))
                } else {
                    ("worker".to_owned(), self.unique_image())
                };
                regular.push(sidecar);
                if k % 2 == 1 {
                    regular.push(("exporter".to_owned(), self.unique_image()));
                }
                let init = if k % 3 == 0 {
                    vec![("migrate".to_owned(), self.unique_image())]
                } else {
                    Vec::new()
                };
                (init, regular)
            }
            10..=13 => {
                let mut regular = vec![("db".to_owned(), self.unique_image())];
                if k % 2 == 0 {
                    regular.push(("backup".to_owned(), self.unique_image()));
                }
                (Vec::new(), regular)
            }
            14..=15 => (
                vec![("setup".to_owned(), self.popular_image(k + 1))],
                vec![
                    ("agent".to_owned(), self.unique_image()),
                    ("node-exporter".to_owned(), self.popular_image(k + 2)),
                ],
            ),
            16..=17 => (Vec::new(), vec![("job".to_owned(), self.unique_image())]),
            _ => {
                let mut regular = vec![("main".to_owned(), self.unique_image())];
                if k % 3 == 0 {
                    regular.push(("helper".to_owned(), self.unique_image()));
                }
                (Vec::new(), regular)
            }
        };
        let per_object = init.len() + regular.len();
        let copies = match kind {
            0..=9 => 3,   // Deployment + 2 pods
            10..=13 => 3, // StatefulSet + 2 pods
            14..=15 => 4, // DaemonSet + 3 pods (nodes)
            16..=17 => 3, // CronJob + Job + pod
            _ => 1,
        };
        let name = format!("{}-{k}", ["web", "api", "svc", "app"][k % 4]);
        if per_object * copies > remaining || kind >= 18 {
            // A bare pod, trimmed to the budget.
            let mut slots: Vec<Slot> = init.into_iter().chain(regular).collect();
            slots.truncate(remaining.min(slots.len()).max(1));
            self.use_images(&slots);
            let debug = k % 5 == 0 && slots.len() < remaining;
            let mut spec = self.pod_spec(&[], &slots, None);
            let mut count = slots.len();
            if debug {
                let image = self.popular_image(k + 3);
                self.used[image] = true;
                spec.ephemeral_containers = Some(vec![EphemeralContainer {
                    name: "debugger".to_owned(),
                    image: Some(self.plans[image].reference(self.host)),
                    stdin: Some(true),
                    tty: Some(true),
                    ..EphemeralContainer::default()
                }]);
                self.stats.ephemeral_containers += 1;
                count += 1;
            }
            let pod = self.pod(&format!("{name}-bare"), &namespace, &name, spec, None);
            self.apply(&pod, count);
            return;
        }
        self.use_images(&init);
        self.use_images(&regular);
        self.stats.init_containers += init.len() * copies;
        let labels = labels(&name);
        let account = (self.accounts && kind <= 13).then(|| name.clone());
        let spec = self.pod_spec(&init, &regular, account.as_deref());
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(spec.clone()),
        };
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_owned(), name.clone())])),
            ..LabelSelector::default()
        };
        // The same containers and pods as a Deployment, under a custom
        // kind: the pusher reads its template through the dynamic API.
        let custom = match kind {
            0..=2 if self.custom_kinds => Some(ARGO_ROLLOUT),
            3..=5 if self.custom_kinds => Some(KRUISE_CLONE_SET),
            _ => None,
        };
        if let Some(crd) = custom {
            let metadata = meta(&name, &namespace, labels, None, "helm");
            let object = custom_workload(crd, metadata, &selector, &template);
            self.apply_custom(object, per_object);
            for replica in 0..2 {
                // Rollouts own ReplicaSets, as Deployments do; CloneSets
                // own their pods directly.
                let (owner, pod_name) = if crd == ARGO_ROLLOUT {
                    let replica_set = format!("{name}-{:08x}", k * 2_654_435_761 % 0xffff_ffff);
                    let pod_name = format!("{replica_set}-{}", pod_suffix(k, replica));
                    (owner("apps/v1", "ReplicaSet", &replica_set, k), pod_name)
                } else {
                    let pod_name = format!("{name}-{}", pod_suffix(k, replica));
                    (owner(&crd.api_version(), crd.kind, &name, k), pod_name)
                };
                let pod = self.pod(&pod_name, &namespace, &name, spec.clone(), Some(owner));
                self.apply(&pod, per_object);
            }
            return;
        }
        match kind {
            0..=9 => {
                let deployment = Deployment {
                    metadata: meta(&name, &namespace, labels, None, "kubectl-client-side-apply"),
                    spec: Some(DeploymentSpec {
                        replicas: Some(2),
                        selector,
                        template,
                        strategy: Some(DeploymentStrategy {
                            type_: Some("RollingUpdate".to_owned()),
                            ..DeploymentStrategy::default()
                        }),
                        revision_history_limit: Some(10),
                        progress_deadline_seconds: Some(600),
                        ..DeploymentSpec::default()
                    }),
                    status: Some(DeploymentStatus {
                        replicas: Some(2),
                        ready_replicas: Some(2),
                        available_replicas: Some(2),
                        updated_replicas: Some(2),
                        observed_generation: Some(1),
                        ..DeploymentStatus::default()
                    }),
                };
                self.apply(&deployment, per_object);
                let replica_set = format!("{name}-{:08x}", k * 2_654_435_761 % 0xffff_ffff);
                for replica in 0..2 {
                    let owner = owner("apps/v1", "ReplicaSet", &replica_set, k);
                    let pod_name = format!("{replica_set}-{}", pod_suffix(k, replica));
                    let pod = self.pod(&pod_name, &namespace, &name, spec.clone(), Some(owner));
                    self.apply(&pod, per_object);
                }
            }
            10..=13 => {
                let statefulset = StatefulSet {
                    metadata: meta(&name, &namespace, labels, None, "helm"),
                    spec: Some(StatefulSetSpec {
                        replicas: Some(2),
                        selector,
                        service_name: Some(name.clone()),
                        template,
                        ..StatefulSetSpec::default()
                    }),
                    status: Some(StatefulSetStatus {
                        replicas: 2,
                        ready_replicas: Some(2),
                        current_replicas: Some(2),
                        ..StatefulSetStatus::default()
                    }),
                };
                self.apply(&statefulset, per_object);
                for replica in 0..2 {
                    let owner = owner("apps/v1", "StatefulSet", &name, k);
                    let pod = self.pod(
                        &format!("{name}-{replica}"),
                        &namespace,
                        &name,
                        spec.clone(),
                        Some(owner),
                    );
                    self.apply(&pod, per_object);
                }
            }
            14..=15 => {
                let daemonset = DaemonSet {
                    metadata: meta(&name, &namespace, labels, None, "helm"),
                    spec: Some(DaemonSetSpec {
                        selector,
                        template,
                        ..DaemonSetSpec::default()
                    }),
                    status: Some(DaemonSetStatus {
                        current_number_scheduled: 3,
                        desired_number_scheduled: 3,
                        number_misscheduled: 0,
                        number_ready: 3,
                        ..DaemonSetStatus::default()
                    }),
                };
                self.apply(&daemonset, per_object);
                for node in 0..3 {
                    let owner = owner("apps/v1", "DaemonSet", &name, k);
                    let pod = self.pod(
                        &format!("{name}-{}", pod_suffix(k, node)),
                        &namespace,
                        &name,
                        spec.clone(),
                        Some(owner),
                    );
                    self.apply(&pod, per_object);
                }
            }
            _ => {
                let job_spec = JobSpec {
                    template: PodTemplateSpec {
                        metadata: template.metadata.clone(),
                        spec: Some(PodSpec {
                            restart_policy: Some("OnFailure".to_owned()),
                            ..spec.clone()
                        }),
                    },
                    backoff_limit: Some(6),
                    ..JobSpec::default()
                };
                let cronjob = CronJob {
                    metadata: meta(&name, &namespace, labels.clone(), None, "helm"),
                    spec: Some(CronJobSpec {
                        schedule: format!("{} */2 * * *", k % 60),
                        job_template: JobTemplateSpec {
                            metadata: None,
                            spec: Some(job_spec.clone()),
                        },
                        successful_jobs_history_limit: Some(1),
                        ..CronJobSpec::default()
                    }),
                    status: None,
                };
                self.apply(&cronjob, per_object);
                let job_name = format!("{name}-29{:06}", k % 1_000_000);
                let job = Job {
                    metadata: meta(
                        &job_name,
                        &namespace,
                        labels,
                        Some(owner("batch/v1", "CronJob", &name, k)),
                        "kube-controller-manager",
                    ),
                    spec: Some(job_spec),
                    status: None,
                };
                self.apply(&job, per_object);
                let owner = owner("batch/v1", "Job", &job_name, k);
                let pod = self.pod(
                    &format!("{job_name}-{}", pod_suffix(k, 0)),
                    &namespace,
                    &name,
                    spec,
                    Some(owner),
                );
                self.apply(&pod, per_object);
            }
        }
    }

    pub(crate) fn container(&self, name: &str, image: usize) -> Container {
        Container {
            name: name.to_owned(),
            image: Some(self.plans[image].reference(self.host)),
            image_pull_policy: Some("IfNotPresent".to_owned()),
            ports: Some(vec![ContainerPort {
                container_port: 8080,
                name: Some("http".to_owned()),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            env: Some(vec![
                EnvVar {
                    name: "LOG_LEVEL".to_owned(),
                    value: Some("info".to_owned()),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "POD_NAMESPACE".to_owned(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".to_owned()),
                            field_path: "metadata.namespace".to_owned(),
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                },
            ]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), Quantity("100m".to_owned())),
                    ("memory".to_owned(), Quantity("128Mi".to_owned())),
                ])),
                limits: Some(BTreeMap::from([(
                    "memory".to_owned(),
                    Quantity("256Mi".to_owned()),
                )])),
                ..ResourceRequirements::default()
            }),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/healthz".to_owned()),
                    port: IntOrString::String("http".to_owned()),
                    scheme: Some("HTTP".to_owned()),
                    ..HTTPGetAction::default()
                }),
                period_seconds: Some(10),
                timeout_seconds: Some(1),
                success_threshold: Some(1),
                failure_threshold: Some(3),
                ..Probe::default()
            }),
            volume_mounts: Some(vec![VolumeMount {
                name: "kube-api-access".to_owned(),
                mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
            termination_message_path: Some("/dev/termination-log".to_owned()),
            termination_message_policy: Some("File".to_owned()),
            ..Container::default()
        }
    }

    pub(crate) fn pod_spec(
        &self,
        init: &[Slot],
        regular: &[Slot],
        account: Option<&str>,
    ) -> PodSpec {
        PodSpec {
            init_containers: (!init.is_empty()).then(|| {
                init.iter()
                    .map(|(name, image)| self.container(name, *image))
                    .collect()
            }),
            containers: regular
                .iter()
                .map(|(name, image)| self.container(name, *image))
                .collect(),
            service_account_name: account.map(str::to_owned),
            restart_policy: Some("Always".to_owned()),
            dns_policy: Some("ClusterFirst".to_owned()),
            scheduler_name: Some("default-scheduler".to_owned()),
            termination_grace_period_seconds: Some(30),
            ..PodSpec::default()
        }
    }

    /// A running pod with the status the kubelet would report.
    pub(crate) fn pod(
        &self,
        name: &str,
        namespace: &str,
        app: &str,
        spec: PodSpec,
        owner: Option<OwnerReference>,
    ) -> Pod {
        let started = Time(
            k8s_openapi::jiff::Timestamp::from_second(EPOCH_SECONDS).expect("a valid timestamp"),
        );
        let status = |c: &Container| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: c
                .image
                .as_deref()
                .and_then(|image| self.pulled.get(image).cloned())
                .unwrap_or_default(),
            container_id: Some(format!("containerd://{}", "f".repeat(64))),
            ready: true,
            restart_count: 0,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started.clone()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        };
        let condition = |type_: &str| PodCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            last_transition_time: Some(started.clone()),
            ..PodCondition::default()
        };
        let pod_status = PodStatus {
            phase: Some("Running".to_owned()),
            conditions: Some(
                ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
                    .into_iter()
                    .map(condition)
                    .collect(),
            ),
            container_statuses: Some(spec.containers.iter().map(status).collect()),
            init_container_statuses: spec
                .init_containers
                .as_ref()
                .map(|init| init.iter().map(status).collect()),
            host_ip: Some("10.0.0.11".to_owned()),
            pod_ip: Some("10.244.1.23".to_owned()),
            qos_class: Some("Burstable".to_owned()),
            start_time: Some(started),
            ..PodStatus::default()
        };
        Pod {
            metadata: meta(name, namespace, labels(app), owner, "kubelet"),
            spec: Some(PodSpec {
                node_name: Some(format!("node-{}", name.len() % 7)),
                ..spec
            }),
            status: Some(pod_status),
        }
    }
}

/// An Argo Rollout or OpenKruise CloneSet with two replicas, as their
/// controllers report them once rolled out.
fn custom_workload(
    crd: Crd,
    metadata: ObjectMeta,
    selector: &LabelSelector,
    template: &PodTemplateSpec,
) -> serde_json::Value {
    let strategy = if crd == ARGO_ROLLOUT {
        json!({ "strategy": { "canary": { "steps": [
            { "setWeight": 20 }, { "pause": { "duration": "1m" } }, { "setWeight": 100 },
        ] } } })
    } else {
        json!({ "updateStrategy": { "type": "InPlaceIfPossible", "maxUnavailable": "20%" } })
    };
    let mut spec = json!({
        "replicas": 2,
        "selector": selector,
        "template": template,
        "revisionHistoryLimit": 10,
    });
    if let (Some(spec), Some(strategy)) = (spec.as_object_mut(), strategy.as_object()) {
        spec.extend(strategy.clone());
    }
    json!({
        "apiVersion": crd.api_version(),
        "kind": crd.kind,
        "metadata": metadata,
        "spec": spec,
        "status": {
            "replicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "updatedReplicas": 2,
            "observedGeneration": 1,
        },
    })
}

pub(crate) fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".to_owned(), app.to_owned()),
        ("app.kubernetes.io/name".to_owned(), app.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "shop".to_owned()),
    ])
}

pub(crate) fn meta(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerReference>,
    manager: &str,
) -> ObjectMeta {
    let time = Time(k8s_openapi::jiff::Timestamp::from_second(EPOCH_SECONDS).expect("valid"));
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
            format!("{{\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"{name}\"}}}}"),
        )])),
        owner_references: owner.map(|owner| vec![owner]),
        managed_fields: Some(vec![ManagedFieldsEntry {
            api_version: Some("v1".to_owned()),
            fields_type: Some("FieldsV1".to_owned()),
            fields_v1: Some(FieldsV1(json!({
                "f:metadata": { "f:labels": { ".": {}, "f:app": {} } },
                "f:spec": { "f:containers": { "k:{\"name\":\"app\"}": {
                    ".": {}, "f:image": {}, "f:name": {}, "f:resources": { ".": {} },
                } } },
            }))),
            manager: Some(manager.to_owned()),
            operation: Some("Update".to_owned()),
            time: Some(time),
            ..ManagedFieldsEntry::default()
        }]),
        ..ObjectMeta::default()
    }
}

pub(crate) fn owner(api_version: &str, kind: &str, name: &str, k: usize) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: format!("0a1b2c3d-0000-4000-8000-{k:012x}"),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(crate) fn pod_suffix(k: usize, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = (k * 31 + n) * 2_654_435_761;
    (0..5)
        .map(|_| {
            let c = ALPHABET[x % ALPHABET.len()] as char;
            x /= ALPHABET.len();
            c
        })
        .collect()
}
