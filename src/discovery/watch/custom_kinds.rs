//! The watcher of a configured kind: API discovery, then the same list and
//! watch as the built-in kinds, and discovery again when its API goes away.

use std::sync::Arc;
use std::time::Duration;

use kube::api::DynamicObject;
use kube::discovery::Scope;
use kube::{Api, Client};
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::stream::{count, run, Reducer};
use super::Shared;
use crate::discovery::custom::KindSpec;
use crate::discovery::custom_api::{custom_workload, discover};

/// The watcher of a configured kind in one scope: discovery, then the same
/// list and watch as the built-in kinds, and discovery again if its API
/// goes away. Runs until the task is aborted.
pub(super) async fn run_custom(
    client: Client,
    spec: KindSpec,
    namespace: Option<String>,
    index: usize,
    shared: Arc<Shared>,
) {
    let kind = spec.kind();
    let poll = shared.options.max_backoff;
    let scope = match &namespace {
        Some(namespace) => format!("in namespace {namespace}"),
        None => String::new(),
    };
    let mut backoff = Backoff::new(shared.options.max_backoff);
    let mut was_absent = false;
    loop {
        let delay = match discover(&client, &spec).await {
            Ok(Some((resource, api_scope))) => {
                backoff.succeeded();
                let cluster_scoped = api_scope == Scope::Cluster;
                if cluster_scoped && namespace.is_some() {
                    if shared.absent(index) {
                        warn!(kind = %spec, scope, "this kind is cluster-scoped, so it has no objects in the namespaces given; left out of the inventory");
                    }
                    poll
                } else {
                    if was_absent {
                        info!(kind = %spec, scope, plural = resource.plural, "this kind is served now; listing and watching it");
                    }
                    was_absent = false;
                    let api: Api<DynamicObject> = match &namespace {
                        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                        None => Api::all_with(client.clone(), &resource),
                    };
                    let reducer = Reducer {
                        reduce: |object: &DynamicObject| {
                            custom_workload(
                                &spec,
                                cluster_scoped,
                                object,
                                &shared.metadata,
                                &shared.strings,
                            )
                        },
                        key: |object: &DynamicObject| {
                            let namespace = match (&object.metadata.namespace, cluster_scoped) {
                                (_, true) => "",
                                (Some(namespace), false) => namespace.as_str(),
                                (None, false) => "default",
                            };
                            let name = object.metadata.name.as_deref().unwrap_or_default();
                            (Arc::from(namespace), Arc::from(name))
                        },
                        dynamic: true,
                    };
                    run(api, reducer, scope.clone(), index, shared.clone()).await;
                    debug!(kind = %spec, scope, "this kind's API answers 404; looking it up again");
                    Duration::ZERO
                }
            }
            Ok(None) => {
                count(&shared, kind, "not_installed");
                if shared.absent(index) {
                    warn!(kind = %spec, scope, every = ?poll, "this kind is not served by the API server (its CRD is not installed?); left out of the inventory, and looked up again periodically");
                }
                was_absent = true;
                poll
            }
            Err(error) => {
                count(&shared, kind, "error");
                let answered = matches!(error, kube::Error::Api(_));
                let before = shared.fail(index, false, format!("API discovery failed: {error}"));
                if before.is_none_or(|stale| stale.forbidden) {
                    warn!(kind = %spec, scope, %error, "cannot look this kind up with API discovery; retrying with backoff");
                }
                shared.expire();
                backoff.delay(!answered)
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}
