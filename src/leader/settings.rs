//! Where the Lease lives and under which name this replica competes for it.

use std::time::Duration;

use kube::Client;

/// Where a pod's service account namespace is mounted.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace of the Lease, and where it came from (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseNamespace {
    pub name: String,
    pub source: &'static str,
}

/// What this replica competes for the Lease with, from the leader-election
/// flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSettings {
    pub lease_name: String,
    /// `--lease-namespace`.
    pub lease_namespace: Option<String>,
    /// `--pod-namespace` (`$POD_NAMESPACE` from the downward API).
    pub pod_namespace: Option<String>,
    /// This replica's name in the Lease.
    pub identity: String,
    pub lease_duration: Duration,
}

impl LeaderSettings {
    /// The Lease's namespace ([`lease_namespace`]) for this process: its
    /// flags, its service account mount and its Kubernetes client.
    pub fn lease_namespace(&self, client: &Client) -> LeaseNamespace {
        let service_account = std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE).ok();
        lease_namespace(
            self.lease_namespace.as_deref(),
            self.pod_namespace.as_deref(),
            service_account.as_deref(),
            client.default_namespace(),
        )
    }
}

/// The Lease's namespace in client-go's order: `--lease-namespace`, else
/// `--pod-namespace` (`$POD_NAMESPACE`), else the in-cluster service
/// account's namespace, else the namespace of the client's configuration
/// (the kubeconfig context's, which `kube` makes "default" when the context
/// names none). Empty values count as absent.
pub fn lease_namespace(
    flag: Option<&str>,
    pod_namespace: Option<&str>,
    service_account: Option<&str>,
    client_default: &str,
) -> LeaseNamespace {
    [
        (flag, "--lease-namespace"),
        (pod_namespace, "--pod-namespace"),
        (service_account, "the service account"),
    ]
    .into_iter()
    .find_map(|(value, source)| {
        let name = value.map(str::trim).filter(|n| !n.is_empty())?;
        Some(LeaseNamespace {
            name: name.to_owned(),
            source,
        })
    })
    .unwrap_or_else(|| LeaseNamespace {
        name: client_default.to_owned(),
        source: "the kubeconfig context",
    })
}

/// This replica's name in the Lease: the pod name where Kubernetes gives
/// it (`--pod-name`, else `$HOSTNAME`), else one unique on this host.
pub fn identity(pod_name: Option<&str>, hostname: Option<&str>, pid: u32) -> String {
    [pod_name, hostname]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .map_or_else(|| format!("container-image-pusher-{pid}"), str::to_owned)
}

/// [`identity`] of this process: `$HOSTNAME` is what the container runtime
/// names it when the manifests do not pass the pod's name.
pub fn identity_of_this_process(pod_name: Option<&str>) -> String {
    identity(
        pod_name,
        std::env::var("HOSTNAME").ok().as_deref(),
        std::process::id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_namespace_comes_from_the_first_source_that_names_one() {
        let ns = |flag, pod, account, client| {
            let found = lease_namespace(flag, pod, account, client);
            (found.name, found.source)
        };
        let all = ns(Some("flag"), Some("pod"), Some("account\n"), "context");
        assert_eq!(all, ("flag".into(), "--lease-namespace"));
        assert_eq!(
            ns(None, Some("pod"), Some("account\n"), "context"),
            ("pod".into(), "--pod-namespace")
        );
        // The mounted file ends with a newline on some clusters.
        assert_eq!(
            ns(None, None, Some("account\n"), "context"),
            ("account".into(), "the service account")
        );
        // Outside a pod (issue 12): the kubeconfig context, not "default".
        assert_eq!(
            ns(None, None, None, "container-image-pusher"),
            ("container-image-pusher".into(), "the kubeconfig context")
        );
        assert_eq!(
            ns(Some(""), Some(" "), Some(""), "default"),
            ("default".into(), "the kubeconfig context"),
            "empty values count as absent"
        );
    }

    #[test]
    fn the_identity_is_the_pod_name_where_there_is_one() {
        assert_eq!(identity(Some("pod-1"), Some("host"), 7), "pod-1");
        assert_eq!(identity(Some(""), Some("host"), 7), "host");
        assert_eq!(identity(None, None, 7), "container-image-pusher-7");
    }
}
