//! Workloads read from the Kubernetes API with paginated LIST requests.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::{workload_keeping, DiscoveryError, HasPodSpec, Kind, MetadataAllowlist, Workload};
use crate::telemetry::Telemetry;

/// Objects per LIST page: large enough for few round trips, small enough
/// that the API server and this process never hold a huge response.
const PAGE_SIZE: u32 = 500;

/// Reads workloads from a cluster.
pub struct ClusterSource {
    client: Client,
    /// Empty means all namespaces.
    namespaces: Vec<String>,
    /// Kinds already reported as forbidden, so the warning is logged once.
    forbidden: Mutex<HashSet<Kind>>,
    telemetry: Arc<Telemetry>,
    /// The workload labels and annotations kept (boxed: `Source` holds
    /// this or a pointer, and is moved around whole).
    metadata: Box<MetadataAllowlist>,
}

impl ClusterSource {
    pub fn new(
        client: Client,
        namespaces: Vec<String>,
        telemetry: Arc<Telemetry>,
        metadata: MetadataAllowlist,
    ) -> Self {
        ClusterSource {
            client,
            namespaces,
            forbidden: Mutex::default(),
            telemetry,
            metadata: Box::new(metadata),
        }
    }

    pub async fn snapshot(&self) -> Result<Vec<Workload>, DiscoveryError> {
        let mut workloads = Vec::new();
        workloads.extend(self.list_kind::<Pod>().await?);
        workloads.extend(self.list_kind::<Deployment>().await?);
        workloads.extend(self.list_kind::<StatefulSet>().await?);
        workloads.extend(self.list_kind::<DaemonSet>().await?);
        workloads.extend(self.list_kind::<Job>().await?);
        workloads.extend(self.list_kind::<CronJob>().await?);
        Ok(workloads)
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
        let apis: Vec<(Api<K>, String)> = if self.namespaces.is_empty() {
            vec![(Api::all(self.client.clone()), String::new())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| {
                    (
                        Api::namespaced(self.client.clone(), ns),
                        format!(" in namespace {ns}"),
                    )
                })
                .collect()
        };
        let mut workloads = Vec::new();
        for (api, scope) in apis {
            match list_pages(&api, &self.metadata).await {
                Ok(found) => workloads.extend(found),
                Err(kube::Error::Api(status)) if status.code == 403 => {
                    self.telemetry
                        .discovery_errors
                        .with_label_values(&[K::KIND.as_str(), "forbidden"])
                        .inc();
                    if self
                        .forbidden
                        .lock()
                        .expect("forbidden set poisoned")
                        .insert(K::KIND)
                    {
                        warn!(kind = %K::KIND, scope = scope.trim(), detail = %status.message,
                            "not allowed to list this kind; its containers are left out of the inventory (grant list on it in the ClusterRole)");
                    } else {
                        debug!(kind = %K::KIND, "still not allowed to list this kind");
                    }
                }
                Err(source) => {
                    self.telemetry
                        .discovery_errors
                        .with_label_values(&[K::KIND.as_str(), "error"])
                        .inc();
                    return Err(DiscoveryError::List {
                        kind: K::KIND,
                        scope,
                        source,
                    });
                }
            }
        }
        debug!(kind = %K::KIND, objects = workloads.len(), "listed");
        Ok(workloads)
    }
}

/// Follows `continue` tokens until the list is complete, reducing each page
/// to workloads before the next is fetched so whole objects never pile up.
async fn list_pages<K>(
    api: &Api<K>,
    metadata: &MetadataAllowlist,
) -> Result<Vec<Workload>, kube::Error>
where
    K: HasPodSpec + Clone + DeserializeOwned + Debug,
{
    let mut workloads = Vec::new();
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page = api.list(&params).await?;
        workloads.extend(
            page.items
                .iter()
                .map(|o| workload_keeping(o, "default", metadata)),
        );
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(workloads),
        }
    }
}
