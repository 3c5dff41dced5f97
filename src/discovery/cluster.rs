//! Workloads read from the Kubernetes API with paginated LIST requests.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::Scope;
use kube::Client;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::custom::{InvalidObject, KindSpec};
use super::custom_api::custom_workload;
use super::metrics::Metrics;
use super::{
    workload_keeping, DiscoveryError, HasPodSpec, Kind, MetadataAllowlist, Selection, StringPool,
    Workload,
};

/// Objects per LIST page: large enough for few round trips, small enough
/// that the API server and this process never hold a huge response.
const PAGE_SIZE: u32 = 500;

/// Reads workloads from a cluster.
pub struct ClusterSource {
    client: Client,
    /// Boxed: a `Source` is one of three, and the others are small.
    selection: Box<Selection>,
    /// Kinds already reported as forbidden, so the warning is logged once.
    forbidden: Mutex<HashSet<Kind>>,
    metrics: Metrics,
    /// The workload labels and annotations kept (boxed: `Source` holds
    /// this or a pointer, and is moved around whole).
    metadata: Box<MetadataAllowlist>,
    /// The strings workloads repeat, one copy each (boxed, as `metadata`).
    strings: Box<StringPool>,
}

impl ClusterSource {
    pub fn new(
        client: Client,
        mut selection: Selection,
        metrics: Metrics,
        metadata: MetadataAllowlist,
    ) -> Self {
        selection.kinds = KindSpec::normalize(&selection.kinds);
        ClusterSource {
            client,
            selection: Box::new(selection),
            forbidden: Mutex::default(),
            metrics,
            metadata: Box::new(metadata),
            strings: Box::default(),
        }
    }

    pub async fn snapshot(&self) -> Result<Vec<Workload>, DiscoveryError> {
        // What only earlier snapshots used is let go.
        self.strings.prune();
        let mut workloads = Vec::new();
        workloads.extend(self.list_kind::<Pod>().await?);
        workloads.extend(self.list_kind::<Deployment>().await?);
        workloads.extend(self.list_kind::<StatefulSet>().await?);
        workloads.extend(self.list_kind::<DaemonSet>().await?);
        workloads.extend(self.list_kind::<Job>().await?);
        workloads.extend(self.list_kind::<CronJob>().await?);
        for spec in &self.selection.kinds {
            workloads.extend(self.list_custom(spec).await?);
        }
        Ok(workloads)
    }

    /// `Api`s for every configured namespace (all when none), with the
    /// scope as messages name it.
    fn apis<K>(&self, make: impl Fn(Option<&str>) -> Api<K>) -> Vec<(Api<K>, String)> {
        if self.selection.namespaces.is_empty() {
            vec![(make(None), String::new())]
        } else {
            self.selection
                .namespaces
                .iter()
                .map(|ns| (make(Some(ns)), format!(" in namespace {ns}")))
                .collect()
        }
    }

    /// Lists a configured kind, found through API discovery. A kind whose
    /// CRD is not installed yields nothing (one warning), as does a
    /// cluster-scoped one when namespaces are given.
    async fn list_custom(&self, spec: &KindSpec) -> Result<Vec<Workload>, DiscoveryError> {
        let kind = spec.kind();
        let (resource, scope) = match super::custom_api::discover(&self.client, spec).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.count(kind, "not_installed");
                warn!(kind = %spec, "this kind is not served by the API server (its CRD is not installed?); left out of the inventory");
                return Ok(Vec::new());
            }
            Err(source) => {
                self.count(kind, "error");
                return Err(DiscoveryError::Discover {
                    kind: spec.to_string(),
                    source,
                });
            }
        };
        let cluster_scoped = scope == Scope::Cluster;
        let apis: Vec<(Api<DynamicObject>, String)> = if cluster_scoped {
            if !self.selection.namespaces.is_empty() {
                warn!(kind = %spec, "this kind is cluster-scoped, so it has no objects in the namespaces given; left out of the inventory");
                return Ok(Vec::new());
            }
            vec![(Api::all_with(self.client.clone(), &resource), String::new())]
        } else {
            self.apis(|ns| match ns {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
                None => Api::all_with(self.client.clone(), &resource),
            })
        };
        let reduce = |object: &DynamicObject| {
            custom_workload(spec, cluster_scoped, object, &self.metadata, &self.strings)
        };
        self.list_apis(kind, apis, reduce).await
    }

    /// Lists one kind in every configured namespace. A kind the service
    /// account may not list yields nothing, so the other kinds still count.
    async fn list_kind<K>(&self) -> Result<Vec<Workload>, DiscoveryError>
    where
        K: HasPodSpec
            + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
        K::DynamicType: Default,
    {
        let apis = self.apis(|ns| match ns {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        });
        self.list_apis(K::KIND, apis, |object: &K| {
            Ok(workload_keeping(
                object,
                "default",
                &self.metadata,
                &self.strings,
            ))
        })
        .await
    }

    fn count(&self, kind: Kind, reason: &str) {
        self.metrics
            .errors
            .with_label_values(&[kind.as_str(), reason])
            .inc();
    }

    /// Lists one kind through each of `apis`. A kind the service account
    /// may not list yields nothing, so the other kinds still count; an
    /// object that cannot be reduced is skipped on its own.
    async fn list_apis<K>(
        &self,
        kind: Kind,
        apis: Vec<(Api<K>, String)>,
        reduce: impl Fn(&K) -> Result<Workload, InvalidObject>,
    ) -> Result<Vec<Workload>, DiscoveryError>
    where
        K: Clone + DeserializeOwned + Debug,
    {
        let mut workloads = Vec::new();
        let params = match self.selection.label_selector() {
            Some(selector) => ListParams::default().labels(&selector),
            None => ListParams::default(),
        };
        for (api, scope) in apis {
            match list_pages(&api, params.clone(), &reduce).await {
                Ok((found, invalid)) => {
                    for error in invalid {
                        self.count(kind, "invalid_object");
                        warn!(kind = %kind, %error, "skipping an object that is not shaped as configured");
                    }
                    workloads.extend(found.into_iter().filter_map(|w| self.selection.admit(w)));
                }
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    self.count(kind, "forbidden");
                    if self
                        .forbidden
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(kind)
                    {
                        warn!(kind = %kind, scope = scope.trim(), detail = %status.message,
                            "not allowed to list this kind; its containers are left out of the inventory (grant list on it in the ClusterRole)");
                    } else {
                        debug!(kind = %kind, "still not allowed to list this kind");
                    }
                }
                Err(source) => {
                    self.count(kind, "error");
                    return Err(DiscoveryError::List {
                        kind,
                        scope,
                        source,
                    });
                }
            }
        }
        debug!(kind = %kind, objects = workloads.len(), "listed");
        Ok(workloads)
    }
}

/// Follows `continue` tokens until the list is complete, reducing each page
/// to workloads before the next is fetched so whole objects never pile up.
async fn list_pages<K>(
    api: &Api<K>,
    mut params: ListParams,
    reduce: impl Fn(&K) -> Result<Workload, InvalidObject>,
) -> Result<(Vec<Workload>, Vec<InvalidObject>), kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut workloads = Vec::new();
    let mut invalid = Vec::new();
    params = params.limit(PAGE_SIZE);
    loop {
        let page = api.list(&params).await?;
        for object in &page.items {
            match reduce(object) {
                Ok(workload) => workloads.push(workload),
                Err(error) => invalid.push(error),
            }
        }
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok((workloads, invalid)),
        }
    }
}
