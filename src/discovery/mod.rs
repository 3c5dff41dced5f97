//! Discovery: which containers the cluster is configured to run.
//!
//! A [`Source`] yields a snapshot of [`Workload`]s, each with the containers
//! of its pod spec. The cluster, listed ([`cluster`]) or watched ([`watch`]),
//! and manifest files ([`files`]) are the sources; all feed the same extraction, so a workload's
//! containers and `jsonpath` labels are identical whichever way it was read.

pub mod cluster;
pub mod custom;
mod custom_api;
pub mod files;
mod manifests;
pub mod metadata_allowlist;
pub mod metrics;
pub mod select;
mod walk;
pub mod watch;

use std::fmt::Write as _;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ContainerStatus, Pod, PodSpec, PodStatus, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::interner::{Interner, StringPool};
use crate::versions::{OverrideError, Overrides};

pub use cluster::ClusterSource;
pub use custom::{KindName, KindSpec};
pub use files::FileSource;
pub use metadata_allowlist::MetadataAllowlist;
pub use metrics::Metrics;
pub use select::{LabelSelector, Selection};
pub use watch::WatchedCluster;

/// The workload kinds whose containers are inventoried: the built-in
/// ones, always, and those configured with `--workload-kind` (after them
/// in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// Read through the dynamic API (see [`custom`]).
    Custom(&'static KindName),
}

impl Kind {
    /// The built-in kinds.
    pub const ALL: [Kind; 6] = [
        Kind::Pod,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::Custom(name) => &name.kind,
        }
    }

    /// The API group, `""` for the core group, as the upstream exporter labels it.
    pub fn group(self) -> &'static str {
        match self {
            Kind::Pod => "",
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => "apps",
            Kind::Job | Kind::CronJob => "batch",
            Kind::Custom(name) => &name.group,
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Kind::Custom(name) => &name.version,
            _ => "v1",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of an inventoried kind, reduced to what the series need.
///
/// Its strings are shared: the values that repeat across workloads come
/// from the source's [`StringPool`] (one copy per distinct value), and the
/// series built from them share the same allocations. Its lists are
/// allocated at their exact length, as the extraction knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: Kind,
    /// Pooled.
    pub namespace: Arc<str>,
    /// Not pooled (names rarely repeat), but shared with the series.
    pub name: Arc<str>,
    pub containers: Vec<Container>,
    /// Where its pods get registry credentials from.
    pub pull: PullConfig,
    /// The labels and annotations `--workload-labels` and
    /// `--workload-annotations` allow, as `label_*`/`annotation_*` label
    /// names and values (see [`metadata_allowlist`]); empty unless configured.
    pub metadata_labels: Vec<(Arc<str>, Arc<str>)>,
}

/// The pod spec's `imagePullSecrets` and service account: with the
/// account's own pull secrets, what the kubelet pulls this workload's
/// images with. Pooled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullConfig {
    pub secrets: Vec<Arc<str>>,
    /// `serviceAccountName`, else `default`.
    pub service_account: Arc<str>,
}

/// The service account of a pod spec that names none.
const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// One entry of `initContainers`, `containers` or `ephemeralContainers`.
/// Its strings are pooled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: Arc<str>,
    /// The image exactly as written in the spec.
    pub image: Arc<str>,
    /// Where the container sits in its object, e.g. `{.spec.template.spec.initContainers[0]}`.
    pub jsonpath: Arc<str>,
    /// What the runtime pulled for it, from the Pod's status; `None` for
    /// other kinds and for containers that have not been pulled yet.
    pub image_id: Option<ImageId>,
    /// version-checker's annotations for this container, from the pod
    /// (template)'s annotations; `None` for the many containers without.
    pub versions: Option<Arc<VersionAnnotations>>,
}

/// version-checker's annotations for one container, read where
/// version-checker reads them: the Pod's annotations (a controller's pod
/// template's), `<what>.version-checker.io/<container>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionAnnotations {
    /// `enable.…: "false"` opts the container out.
    pub enabled: bool,
    /// `match-regex.…`, `pin-major.…`, `pin-minor.…`, `pin-patch.…`; the
    /// error when one cannot be used (the container then gets no answer).
    pub overrides: Result<Overrides, OverrideError>,
    /// `override-url.…`: the repository whose tags are compared instead.
    pub override_url: Option<Arc<str>>,
}

/// The annotation domain version-checker reads.
const VERSION_CHECKER: &str = ".version-checker.io/";
/// Longest `override-url` taken: a repository name is at most 255 bytes
/// plus its registry host.
const MAX_OVERRIDE_URL_LENGTH: usize = 512;

impl VersionAnnotations {
    /// The annotations of container `container` among `annotations`;
    /// `None` when there are none.
    pub fn read(
        annotations: &std::collections::BTreeMap<String, String>,
        container: &str,
    ) -> Option<VersionAnnotations> {
        let get = |what: &str| {
            annotations
                .get(&format!("{what}{VERSION_CHECKER}{container}"))
                .map(String::as_str)
        };
        let keys = [
            "enable",
            "match-regex",
            "pin-major",
            "pin-minor",
            "pin-patch",
            "override-url",
        ];
        if keys.iter().all(|k| get(k).is_none()) {
            return None;
        }
        let url = get("override-url").map(str::trim).filter(|u| !u.is_empty());
        let overrides = match url {
            Some(u) if u.len() > MAX_OVERRIDE_URL_LENGTH => Err(OverrideError::UrlTooLong),
            _ => Overrides::parse(
                get("match-regex"),
                get("pin-major"),
                get("pin-minor"),
                get("pin-patch"),
            ),
        };
        Some(VersionAnnotations {
            enabled: get("enable").is_none_or(|v| !v.trim().eq_ignore_ascii_case("false")),
            overrides,
            override_url: url.map(Arc::from),
        })
    }
}

/// A container status' `imageID`: the digest reference the runtime pulled
/// (`registry/repo@sha256:…`), runtime prefix (`docker-pullable://`) stripped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageId {
    /// `repo@digest`, as the `image_id` label shows it.
    pub reference: Arc<str>,
    /// Whether the container is running now (not waiting or terminated).
    pub running: bool,
}

/// Longest `imageID` taken: a reference's name is at most 255 bytes and a
/// sha512 digest 135, so anything longer is not one.
const MAX_IMAGE_ID_LENGTH: usize = 512;

impl ImageId {
    /// Reads a status' `imageID`; `None` unless it is a reference pinned by
    /// a sha256 or sha512 digest. `docker://sha256:…` (Docker's local image
    /// ID, the config's digest) names no manifest, so it is no `ImageId`.
    pub fn parse(image_id: &str, running: bool) -> Option<ImageId> {
        Some(ImageId {
            reference: Arc::from(ImageId::pinned(image_id)?),
            running,
        })
    }

    /// The reference in a status' `imageID`, if it is one pinned by a
    /// digest (see [`ImageId::parse`]).
    fn pinned(image_id: &str) -> Option<&str> {
        if image_id.len() > MAX_IMAGE_ID_LENGTH {
            return None;
        }
        let reference = match image_id.split_once("://") {
            Some((scheme, rest))
                if !scheme.is_empty()
                    && scheme.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') =>
            {
                rest
            }
            _ => image_id,
        };
        let (name, digest) = reference.rsplit_once('@')?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'@' | b'"' | b'\\'));
        if !name_ok || crate::reference::check_digest(digest).is_err() {
            return None;
        }
        Some(reference)
    }

    /// The digest the runtime pulled: for a multi-arch tag, the index's or
    /// the platform manifest's, depending on the runtime.
    pub fn digest(&self) -> &str {
        self.reference
            .rsplit_once('@')
            .map_or("", |(_, digest)| digest)
    }
}

/// Docker config Secrets and ServiceAccounts a source read, for the
/// credentials (a source never keeps them itself).
#[derive(Debug, Default)]
pub struct PullObjects {
    pub secrets: Vec<Secret>,
    pub accounts: Vec<ServiceAccount>,
}

/// One snapshot of a source.
#[derive(Debug, Default)]
pub struct Discovered {
    pub workloads: Vec<Arc<Workload>>,
    /// What manifest files hold of pull credentials; `None` from a
    /// cluster, whose are watched by the credentials themselves.
    pub pull_objects: Option<PullObjects>,
}

/// Where a snapshot of workloads comes from.
pub enum Source {
    /// LIST every kind at each snapshot: for `--once`.
    Cluster(ClusterSource),
    /// Kept current by watches: for the long-running service.
    Watched(Arc<WatchedCluster>),
    Files(FileSource),
}

impl Source {
    /// Reads every workload now. Files, and listed kinds, that cannot be
    /// read are logged and skipped by the sources; a watched kind that
    /// cannot be refreshed keeps its last known workloads (see
    /// [`watch`]). An error here means the snapshot as a whole cannot be
    /// trusted (for example the API server is down during a `--once` list).
    pub async fn snapshot(&self) -> Result<Discovered, DiscoveryError> {
        let (mut workloads, pull_objects) = match self {
            Source::Cluster(cluster) => {
                let listed = cluster.snapshot().await?;
                (listed.into_iter().map(Arc::new).collect::<Vec<_>>(), None)
            }
            // Already one per object, sorted, and sharing unchanged Arcs.
            Source::Watched(watched) => {
                return Ok(Discovered {
                    workloads: watched.snapshot(),
                    pull_objects: None,
                })
            }
            Source::Files(files) => {
                let found = files.snapshot().await?;
                (found.workloads, Some(found.pull_objects))
            }
        };
        // Files may hold one object twice (a directory and a copy of it); the
        // series identity is kind/namespace/name, so keep one of each.
        workloads
            .sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
        workloads
            .dedup_by(|a, b| a.kind == b.kind && a.namespace == b.namespace && a.name == b.name);
        Ok(Discovered {
            workloads,
            pull_objects,
        })
    }
}

impl Source {
    /// Manifest documents and files left out of the last snapshot because
    /// they could not be read; 0 for a cluster.
    pub fn skipped_input(&self) -> usize {
        match self {
            Source::Files(files) => files.skipped(),
            Source::Cluster(_) | Source::Watched(_) => 0,
        }
    }
}

/// Errors that make a whole snapshot unusable.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("failed to list {kind} objects{scope}: {source}")]
    List {
        kind: Kind,
        scope: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to find the {kind} API through API discovery: {source}")]
    Discover {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to start the thread that reads manifests: {0}")]
    Thread(#[source] std::io::Error),
    #[error("failed to read manifests from {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The kinds that have a pod spec to extract containers from.
pub(crate) trait HasPodSpec {
    const KIND: Kind;
    /// Where the pod spec sits in an object of this kind, in JSONPath.
    const POD_SPEC_PATH: &'static str = ".spec.template.spec";
    fn meta(&self) -> &ObjectMeta;
    fn pod_spec(&self) -> Option<&PodSpec>;
    /// What the kubelet reports of the containers: Pods only.
    fn pod_status(&self) -> Option<&PodStatus> {
        None
    }
    /// The annotations of the Pod (for a controller, of its pod template).
    fn pod_annotations(&self) -> Option<&std::collections::BTreeMap<String, String>>;
}

macro_rules! template_kind {
    ($ty:ty, $kind:expr) => {
        impl HasPodSpec for $ty {
            const KIND: Kind = $kind;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn pod_spec(&self) -> Option<&PodSpec> {
                self.spec.as_ref()?.template.spec.as_ref()
            }
            fn pod_annotations(&self) -> Option<&std::collections::BTreeMap<String, String>> {
                self.spec
                    .as_ref()?
                    .template
                    .metadata
                    .as_ref()?
                    .annotations
                    .as_ref()
            }
        }
    };
}

impl HasPodSpec for Pod {
    const KIND: Kind = Kind::Pod;
    const POD_SPEC_PATH: &'static str = ".spec";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn pod_spec(&self) -> Option<&PodSpec> {
        self.spec.as_ref()
    }
    fn pod_status(&self) -> Option<&PodStatus> {
        self.status.as_ref()
    }
    fn pod_annotations(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.metadata.annotations.as_ref()
    }
}

template_kind!(Deployment, Kind::Deployment);
template_kind!(StatefulSet, Kind::StatefulSet);
template_kind!(DaemonSet, Kind::DaemonSet);
template_kind!(Job, Kind::Job);

impl HasPodSpec for CronJob {
    const KIND: Kind = Kind::CronJob;
    const POD_SPEC_PATH: &'static str = ".spec.jobTemplate.spec.template.spec";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn pod_spec(&self) -> Option<&PodSpec> {
        self.spec
            .as_ref()?
            .job_template
            .spec
            .as_ref()?
            .template
            .spec
            .as_ref()
    }
    fn pod_annotations(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        let job = self.spec.as_ref()?.job_template.spec.as_ref()?;
        job.template.metadata.as_ref()?.annotations.as_ref()
    }
}

/// [`workload_keeping`] without labels or annotations, and with a pool of
/// its own, for tests.
#[cfg(test)]
pub(crate) fn workload<K: HasPodSpec>(obj: &K, default_namespace: &str) -> Workload {
    workload_keeping(
        obj,
        default_namespace,
        &MetadataAllowlist::default(),
        &StringPool::default(),
    )
}

/// Reduces an object to its workload: identity plus every container of its
/// pod spec, in the order init, regular, ephemeral (as the upstream
/// exporter), and the labels and annotations `metadata` allows; repeated
/// strings are taken from `pool`.
pub(crate) fn workload_keeping<K: HasPodSpec>(
    obj: &K,
    default_namespace: &str,
    metadata: &MetadataAllowlist,
    pool: &StringPool,
) -> Workload {
    let meta = obj.meta();
    let spec = obj.pod_spec();
    let status = obj.pod_status();
    let mut strings = pool.lock();
    let containers = match spec {
        Some(spec) => {
            let statuses = |pick: fn(&PodStatus) -> Option<&Vec<ContainerStatus>>| {
                status.and_then(pick).map_or(&[][..], Vec::as_slice)
            };
            let init = spec.init_containers.as_deref().unwrap_or_default();
            let ephemeral = spec.ephemeral_containers.as_deref().unwrap_or_default();
            let mut extraction = Extraction {
                prefix: K::POD_SPEC_PATH,
                strings: &mut strings,
                containers: Vec::with_capacity(
                    init.len() + spec.containers.len() + ephemeral.len(),
                ),
                jsonpath: String::new(),
                annotations: obj.pod_annotations(),
            };
            extraction.push(
                "initContainers",
                init.iter().map(|c| (&c.name, &c.image)),
                statuses(|s| s.init_container_statuses.as_ref()),
            );
            extraction.push(
                "containers",
                spec.containers.iter().map(|c| (&c.name, &c.image)),
                statuses(|s| s.container_statuses.as_ref()),
            );
            extraction.push(
                "ephemeralContainers",
                ephemeral.iter().map(|c| (&c.name, &c.image)),
                statuses(|s| s.ephemeral_container_statuses.as_ref()),
            );
            extraction.containers
        }
        None => Vec::new(),
    };
    Workload {
        kind: K::KIND,
        namespace: strings.intern(meta.namespace.as_deref().unwrap_or(default_namespace)),
        name: Arc::from(meta.name.as_deref().unwrap_or_default()),
        containers,
        pull: match spec {
            Some(spec) => pull_config(spec, &mut strings),
            None => PullConfig {
                secrets: Vec::new(),
                service_account: strings.intern(DEFAULT_SERVICE_ACCOUNT),
            },
        },
        metadata_labels: metadata.keep(meta, &mut strings),
    }
}

/// The containers of one pod spec, as they are extracted.
struct Extraction<'a> {
    /// Where the pod spec sits, in JSONPath.
    prefix: &'a str,
    strings: &'a mut Interner,
    containers: Vec<Container>,
    /// Where each `jsonpath` is written before it is looked up in the pool.
    jsonpath: String,
    /// The pod (template)'s annotations, for version-checker's.
    annotations: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl Extraction<'_> {
    /// The entries of one list field of the pod spec, with the statuses the
    /// kubelet reports for them.
    fn push<'c>(
        &mut self,
        field: &str,
        entries: impl Iterator<Item = (&'c String, &'c Option<String>)>,
        statuses: &[ContainerStatus],
    ) {
        for (index, (name, image)) in entries.enumerate() {
            self.jsonpath.clear();
            // Writing to a String cannot fail.
            let _ = write!(self.jsonpath, "{{{}.{field}[{index}]}}", self.prefix);
            let image_id = image_id(statuses, name).map(|(reference, running)| ImageId {
                reference: self.strings.intern(reference),
                running,
            });
            self.containers.push(Container {
                name: self.strings.intern(name),
                image: self.strings.intern(image.as_deref().unwrap_or_default()),
                jsonpath: self.strings.intern(&self.jsonpath),
                image_id,
                versions: self
                    .annotations
                    .and_then(|a| VersionAnnotations::read(a, name))
                    .map(Arc::new),
            });
        }
    }
}

/// The `imageID` the status of container `name` reports, if it is a digest
/// reference, and whether the container runs.
fn image_id<'s>(statuses: &'s [ContainerStatus], name: &str) -> Option<(&'s str, bool)> {
    let status = statuses.iter().find(|s| s.name == name)?;
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
    Some((ImageId::pinned(&status.image_id)?, running))
}

fn pull_config(spec: &PodSpec, strings: &mut Interner) -> PullConfig {
    #[allow(deprecated)] // `serviceAccount` is the old spelling; old manifests still use it.
    let account = spec
        .service_account_name
        .as_deref()
        .or(spec.service_account.as_deref());
    let secrets = spec.image_pull_secrets.as_deref().unwrap_or_default();
    let mut names = Vec::with_capacity(secrets.iter().filter(|s| !s.name.is_empty()).count());
    names.extend(
        secrets
            .iter()
            .filter(|s| !s.name.is_empty())
            .map(|s| strings.intern(&s.name)),
    );
    PullConfig {
        secrets: names,
        service_account: strings.intern(
            account
                .filter(|a| !a.is_empty())
                .unwrap_or(DEFAULT_SERVICE_ACCOUNT),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_json<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
        serde_json::from_value(v).expect("valid object")
    }

    #[test]
    fn pod_containers_in_upstream_order_with_jsonpaths() {
        let pod: Pod = from_json(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "migrate:1"}],
                "containers": [{"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "proxy:2"}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox"}]
            }
        }));
        let w = workload(&pod, "default");
        assert_eq!(
            (w.kind, &*w.namespace, &*w.name),
            (Kind::Pod, "shop", "web")
        );
        let got: Vec<_> = w
            .containers
            .iter()
            .map(|c| (&*c.name, &*c.image, &*c.jsonpath))
            .collect();
        assert_eq!(
            got,
            [
                ("migrate", "migrate:1", "{.spec.initContainers[0]}"),
                ("app", "app:1", "{.spec.containers[0]}"),
                ("sidecar", "proxy:2", "{.spec.containers[1]}"),
                ("debugger", "busybox", "{.spec.ephemeralContainers[0]}"),
            ]
        );
    }

    #[test]
    fn template_kinds_use_the_template_path() {
        let d: Deployment = from_json(json!({
            "metadata": {"name": "api"},
            "spec": {"selector": {}, "template": {"spec": {
                "initContainers": [{"name": "init", "image": "init:1"}],
                "containers": [{"name": "api", "image": "api:1"}]
            }}}
        }));
        let w = workload(&d, "default");
        assert_eq!(
            &*w.namespace, "default",
            "a manifest without namespace lands in the default one"
        );
        assert_eq!(
            &*w.containers[0].jsonpath,
            "{.spec.template.spec.initContainers[0]}"
        );
        assert_eq!(
            &*w.containers[1].jsonpath,
            "{.spec.template.spec.containers[0]}"
        );
        assert_eq!(
            (Kind::Deployment.group(), Kind::Deployment.version()),
            ("apps", "v1")
        );
    }

    #[test]
    fn cronjob_uses_the_job_template_path() {
        let c: CronJob = from_json(json!({
            "metadata": {"name": "nightly", "namespace": "batch"},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "report", "image": "report:1"}]
            }}}}}
        }));
        let w = workload(&c, "default");
        assert_eq!(
            &*w.containers[0].jsonpath,
            "{.spec.jobTemplate.spec.template.spec.containers[0]}"
        );
        assert_eq!(Kind::CronJob.group(), "batch");
        assert_eq!(Kind::Pod.group(), "");
    }

    #[test]
    fn version_checker_annotations_are_read_where_version_checker_reads_them() {
        let annotations = json!({
            "enable.version-checker.io/off": "false",
            "match-regex.version-checker.io/api": "^v\\d+\\.\\d+$",
            "pin-major.version-checker.io/api": "1",
            "override-url.version-checker.io/api": "mirror.example/team/api",
            "pin-minor.version-checker.io/bad": "x",
            "other.example/api": "ignored"
        });
        let containers = json!([
            {"name": "api", "image": "api:v1.2"},
            {"name": "off", "image": "off:1"},
            {"name": "bad", "image": "bad:1"},
            {"name": "plain", "image": "plain:1"}
        ]);
        // A Deployment's pod template, not its own metadata.
        let d: Deployment = from_json(json!({
            "metadata": {"name": "api", "annotations": {"pin-major.version-checker.io/plain": "2"}},
            "spec": {"selector": {}, "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": containers}
            }}
        }));
        let w = workload(&d, "default");
        let api = w.containers[0].versions.as_deref().unwrap();
        assert!(api.enabled);
        let overrides = api.overrides.as_ref().unwrap();
        assert_eq!(overrides.pin_major, Some(1));
        assert_eq!(overrides.describe(), r"pin-major=1,match-regex=^v\d+\.\d+$");
        assert_eq!(api.override_url.as_deref(), Some("mirror.example/team/api"));
        let off = w.containers[1].versions.as_deref().unwrap();
        assert!(!off.enabled);
        assert!(w.containers[2]
            .versions
            .as_ref()
            .unwrap()
            .overrides
            .is_err());
        assert_eq!(
            w.containers[3].versions, None,
            "the Deployment's own annotations are not read"
        );

        let c: CronJob = from_json(json!({
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {
                "metadata": {"annotations": {"pin-minor.version-checker.io/report": "4"}},
                "spec": {"containers": [{"name": "report", "image": "report:1.4.0"}]}
            }}}}
        }));
        let report = workload(&c, "default").containers[0]
            .versions
            .clone()
            .unwrap();
        assert_eq!(report.overrides.as_ref().unwrap().pin_minor, Some(4));
        let pod: Pod = from_json(json!({
            "metadata": {"name": "p", "annotations": {"enable.version-checker.io/app": "false"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        }));
        assert!(
            !workload(&pod, "default").containers[0]
                .versions
                .as_ref()
                .unwrap()
                .enabled
        );
    }

    #[test]
    fn pull_secrets_and_service_account() {
        let d: Deployment = from_json(json!({
            "metadata": {"name": "api"},
            "spec": {"selector": {}, "template": {"spec": {
                "serviceAccountName": "builder",
                "imagePullSecrets": [{"name": "regcred"}, {"name": "other"}],
                "containers": [{"name": "api", "image": "api:1"}]
            }}}
        }));
        let pull = workload(&d, "default").pull;
        assert_eq!(pull.secrets, [Arc::from("regcred"), Arc::from("other")]);
        assert_eq!(&*pull.service_account, "builder");
        let pod: Pod = from_json(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}));
        assert_eq!(&*workload(&pod, "default").pull.service_account, "default");
    }

    #[test]
    fn missing_spec_or_image_is_not_a_panic() {
        let pod: Pod = from_json(json!({"metadata": {"name": "empty"}}));
        assert!(workload(&pod, "default").containers.is_empty());
        let job: Job = from_json(json!({"metadata": {"name": "j"}, "spec": {"template": {}}}));
        assert!(workload(&job, "default").containers.is_empty());
        let pod: Pod = from_json(
            json!({"metadata": {"name": "noimage"}, "spec": {"containers": [{"name": "c"}]}}),
        );
        assert_eq!(&*workload(&pod, "default").containers[0].image, "");
    }
}
