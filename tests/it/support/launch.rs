//! Starting a long-running pusher with the options the tests vary: its
//! source (manifests or a cluster), tick interval, registry and receivers,
//! then any other flags.
//!
//! ```ignore
//! let pusher = Pusher::on_manifests(&manifests, "300ms")
//!     .registry(&host)
//!     .pushing_to(&receiver.url())
//!     .args(&["--versions=false"])
//!     .start()
//!     .await;
//! ```

use std::path::Path;

use super::pusher::Pusher;
use super::shared::SharedPrometheus;

/// A long-running pusher to be started; see [`Pusher::on_manifests`] and
/// [`Pusher::on_cluster`].
pub struct Launch {
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Pusher {
    /// A pusher of `manifests` (a file or a folder) taking a snapshot at
    /// every `interval`; add what the test needs, then [`Launch::start`].
    pub fn on_manifests(manifests: impl AsRef<Path>, interval: &str) -> Launch {
        let manifests = manifests.as_ref().to_str().expect("a UTF-8 manifests path");
        Launch::new(interval).args(&["--manifests", manifests])
    }

    /// A pusher of the cluster `kubeconfig` points at, taking a snapshot at
    /// every `interval`.
    pub fn on_cluster(kubeconfig: &Path, interval: &str) -> Launch {
        let kubeconfig = kubeconfig.to_str().expect("a UTF-8 kubeconfig path");
        Launch::new(interval).env("KUBECONFIG", kubeconfig)
    }
}

impl Launch {
    fn new(interval: &str) -> Self {
        let launch = Launch {
            args: Vec::new(),
            envs: Vec::new(),
        };
        launch.args(&["--interval", interval])
    }

    /// Reads images from the registry at `host` over plain HTTP.
    pub fn registry(self, host: &str) -> Self {
        self.args(&["--insecure-registry", host])
    }

    /// Pushes to the remote-write endpoint `url` too (in the order given).
    pub fn pushing_to(self, url: &str) -> Self {
        self.args(&["--remote-write-url", url])
    }

    /// Pushes into the test's scope of the shared Prometheus.
    pub fn pushing_to_scope(self, prometheus: &SharedPrometheus) -> Self {
        let scope = prometheus.external_label();
        self.pushing_to(&prometheus.write_url())
            .args(&["--external-label", &scope])
    }

    /// Any other flags.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable of the pusher's.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.envs.push((name.into(), value.into()));
        self
    }

    /// [`Pusher::start`] with these flags and variables.
    pub async fn start(self) -> Pusher {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        Pusher::start(&args, &envs).await
    }
}
