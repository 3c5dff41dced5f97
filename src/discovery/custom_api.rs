//! Kinds configured with `--workload-kind`, as the API server serves them:
//! API discovery of their resource and scope, and the reduction of their
//! dynamic objects to workloads. Shared by the listing source and the
//! watchers.

use kube::api::{DynamicObject, GroupVersionKind};
use kube::discovery::{verbs, ApiResource, Scope};
use kube::Client;

use super::custom::{InvalidObject, KindSpec};
use super::{MetadataAllowlist, StringPool, Workload};

/// Finds a configured kind with API discovery: its resource (plural) and
/// scope, or `None` when the API server does not serve it (group, version
/// or kind unknown: its CRD is not installed) or cannot list and watch it.
pub(crate) async fn discover(
    client: &Client,
    spec: &KindSpec,
) -> Result<Option<(ApiResource, Scope)>, kube::Error> {
    let gvk = GroupVersionKind::gvk(&spec.name.group, &spec.name.version, &spec.name.kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, capabilities))
            if capabilities.supports_operation(verbs::LIST)
                && capabilities.supports_operation(verbs::WATCH) =>
        {
            Ok(Some((resource, capabilities.scope)))
        }
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(kube::Error::Discovery(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Reduces an object of a configured kind, with the labels and annotations
/// `metadata` allows; objects of a namespaced kind always carry their
/// namespace, those of a cluster-scoped one none.
pub(crate) fn custom_workload(
    spec: &KindSpec,
    cluster_scoped: bool,
    object: &DynamicObject,
    metadata: &MetadataAllowlist,
    pool: &StringPool,
) -> Result<Workload, InvalidObject> {
    let namespace = match (&object.metadata.namespace, cluster_scoped) {
        (_, true) => "",
        (Some(namespace), false) => namespace.as_str(),
        (None, false) => "default",
    };
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let mut strings = pool.lock();
    let mut workload = spec.workload(namespace, name, &object.data, &mut strings)?;
    workload.metadata_labels = metadata.keep(&object.metadata, &mut strings);
    Ok(workload)
}
