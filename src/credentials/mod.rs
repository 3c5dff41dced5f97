//! Credentials: which registry logins each workload's images resolve with,
//! found the way the kubelet finds them, in its order:
//! 1. pull secrets ([`pull_secrets`]): the pod spec's `imagePullSecrets`,
//!    then those of its service account, in its namespace — watched in the
//!    cluster, or handed over from manifest files by the pipeline;
//! 2. the static `--docker-config` ([`keyring`] matches both to images);
//! 3. the pod's cloud identity for ECR, Artifact Registry/GCR and ACR
//!    ([`cloud`], Cargo features), as the kubelet's credential providers
//!    come after pull secrets.
//!
//! Reads discovery's plain [`Workload`] (namespace, pull config, images)
//! and hands the registry [`Login`]s grouped by [`Scope`]; imports neither
//! the registry nor anything downstream. Secrets never reach logs, `Debug`
//! output or errors.

pub mod cloud;
pub mod keyring;
pub mod pull_secrets;

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

pub use keyring::{DockerConfigError, Keyring};
pub use pull_secrets::PullSecrets;

use crate::discovery::{Metrics, Workload};
use cloud::CloudCredentials;

/// One registry login, and where it came from (for messages: never the
/// secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// e.g. `secret shop/regcred`, `--docker-config` or `the pod's cloud
    /// identity for 123.dkr.ecr.eu-west-1.amazonaws.com`.
    pub source: String,
}

impl Login {
    /// A stable identity for cache keys: equal for equal logins, without
    /// holding the secret in the key.
    pub fn id(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.username, &self.password).hash(&mut hasher);
        hasher.finish() | 1 // 0 is reserved for anonymous access
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("source", &self.source)
            .finish()
    }
}

/// Which logins a workload's images resolve with: workloads with equal
/// scopes get equal logins, so each (scope, image) is resolved once.
/// Workloads that name no pull secret at all — most of a cluster — share
/// [`Scope::NONE`], whatever their namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(u64);

impl Scope {
    /// No pull secrets: only the static and cloud logins apply.
    pub const NONE: Scope = Scope(0);

    /// The scope of a namespace's set of pull secrets (never [`Scope::NONE`]).
    fn of(namespace: &str, pod_secrets: &[impl Hash], account_secrets: &[impl Hash]) -> Scope {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (namespace, pod_secrets, account_secrets).hash(&mut hasher);
        Scope(hasher.finish() | 1)
    }

    /// A scope of its own for tests of code that keys by scope.
    #[cfg(test)]
    pub(crate) fn for_test(n: u64) -> Scope {
        Scope(n)
    }
}

/// Why the credentials cannot be set up: start-up errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read --docker-config {}: {source}", path.display())]
    ReadDockerConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to load --docker-config {}: {source}", path.display())]
    DockerConfig {
        path: PathBuf,
        #[source]
        source: DockerConfigError,
    },
    #[error(transparent)]
    Cloud(#[from] cloud::BuildError),
}

/// What the credentials are made from (the "Registry credentials" flags,
/// and the cloud providers' standard environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pull secrets of each workload (`--pull-secrets`); false applies only
    /// the static and cloud logins.
    pub pull_secrets: bool,
    /// A docker `config.json` with static logins (`--docker-config`).
    pub docker_config: Option<PathBuf>,
    pub cloud: cloud::Settings,
}

/// Every (scope, image) of a snapshot's workloads with the logins to try,
/// and the scope of each workload.
#[derive(Debug, Default, Clone)]
pub struct Lookups {
    /// The scope of each workload, in the order given, up to the last one
    /// not in [`Scope::NONE`] (most clusters: none at all).
    pub workload_scopes: Vec<Scope>,
    pub images: Vec<Lookup>,
}

/// One image to resolve in one scope.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub scope: Scope,
    /// Shared with the workloads' containers: no copy per snapshot.
    pub image: Arc<str>,
    /// Pull secrets' and static logins, most specific first; the cloud
    /// login is asked for when the image is resolved ([`Credentials::cloud_login`]).
    pub logins: Vec<Login>,
}

/// Every source of logins, the one thing the pipeline holds.
pub struct Credentials {
    pull_secrets: Arc<PullSecrets>,
    cloud: CloudCredentials,
    /// The last snapshot's lookups, reused while its workloads and the
    /// pull secrets are unchanged.
    last: std::sync::Mutex<Option<LastLookups>>,
}

/// Lookups worked out for a snapshot: the workloads as pointers (weak, so
/// they hold no workload alive, and no other can take their address while
/// held) and the pull secrets' generation they were worked out under.
struct LastLookups {
    workloads: Vec<std::sync::Weak<Workload>>,
    generation: u64,
    lookups: Lookups,
}

impl Credentials {
    /// Reads `--docker-config` and builds the cloud providers' HTTP clients.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let mut static_keyring = Keyring::default();
        if let Some(path) = &settings.docker_config {
            let json = std::fs::read(path).map_err(|source| Error::ReadDockerConfig {
                path: path.clone(),
                source,
            })?;
            static_keyring
                .add_docker_config(&json, "--docker-config")
                .map_err(|source| Error::DockerConfig {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(Credentials {
            pull_secrets: Arc::new(PullSecrets::new(settings.pull_secrets, static_keyring)),
            cloud: CloudCredentials::with_settings(settings.cloud)?,
            last: std::sync::Mutex::default(),
        })
    }

    /// Keeps the cluster's pull secrets and service accounts current, in
    /// every namespace or the given ones.
    pub fn watch(&self, client: kube::Client, namespaces: &[String], metrics: Metrics) {
        self.pull_secrets.watch(client, namespaces, metrics);
    }

    /// Waits for the watches' first lists, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) {
        self.pull_secrets.wait_ready(timeout).await;
    }

    /// The pull secrets and service accounts manifest files hold, in place
    /// of everything known before (files are read again at every snapshot,
    /// so deletions count).
    pub fn replace_from_files(&self, secrets: &[Secret], accounts: &[ServiceAccount]) {
        self.pull_secrets.replace_from_files(secrets, accounts);
    }

    /// [`Credentials::lookups`] of a snapshot's workloads: the last
    /// snapshot's answer when it had the same workloads (the same shared
    /// objects, as the sources hand out for unchanged ones) and the pull
    /// secrets did not change since, so a warm tick copies nothing.
    pub fn snapshot_lookups(&self, workloads: &[Arc<Workload>]) -> Lookups {
        let generation = self.pull_secrets.generation();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let unchanged = last.as_ref().is_some_and(|last| {
            last.generation == generation
                && last.workloads.len() == workloads.len()
                && (last.workloads.iter())
                    .zip(workloads)
                    .all(|(was, is)| std::ptr::eq(was.as_ptr(), Arc::as_ptr(is)))
        });
        if let (true, Some(last)) = (unchanged, last.as_ref()) {
            return last.lookups.clone();
        }
        let lookups = self.lookups(workloads);
        *last = Some(LastLookups {
            workloads: workloads.iter().map(Arc::downgrade).collect(),
            generation,
            lookups: lookups.clone(),
        });
        lookups
    }

    /// Every (scope, image) of the workloads, with the logins to try.
    pub fn lookups(&self, workloads: &[Arc<Workload>]) -> Lookups {
        let mut keyrings: HashMap<Scope, Keyring> = HashMap::new();
        let mut by_scope: HashMap<Scope, HashMap<Arc<str>, Vec<Login>>> = HashMap::new();
        let mut workload_scopes = Vec::new();
        for (index, workload) in workloads.iter().enumerate() {
            let scope = self.pull_secrets.scope(workload);
            if scope != Scope::NONE {
                workload_scopes.resize(index, Scope::NONE);
                workload_scopes.push(scope);
            }
            let keyring = keyrings
                .entry(scope)
                .or_insert_with(|| self.pull_secrets.keyring(workload));
            let images = by_scope.entry(scope).or_default();
            for container in &workload.containers {
                if !images.contains_key(&*container.image) {
                    images.insert(
                        container.image.clone(),
                        pull_secrets::logins(keyring, &container.image),
                    );
                }
            }
        }
        let images = by_scope
            .into_iter()
            .flat_map(|(scope, images)| {
                images.into_iter().map(move |(image, logins)| Lookup {
                    scope,
                    image,
                    logins,
                })
            })
            .collect();
        Lookups {
            workload_scopes,
            images,
        }
    }

    /// The ambient-identity login for an image in a cloud registry. A
    /// failure (off that cloud, say) leaves the image to the other logins
    /// and to anonymous access: public images there need no token.
    pub async fn cloud_login(&self, image: &str) -> Option<Login> {
        // Cheap test first: cloud registry hosts always have a dot, and most
        // images are not in one.
        let (host, _) = image.split_once('/')?;
        self.cloud.provider_for(host)?;
        match self.cloud.login(host).await? {
            Ok(login) => Some(login),
            Err(e) => {
                tracing::debug!(host, error = %e, "no cloud registry login; trying without");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_debug_hides_the_password() {
        let login = Login {
            username: "AWS".into(),
            password: "hunter2-secret".into(),
            source: "secret shop/regcred".into(),
        };
        let text = format!("{login:?}");
        assert!(
            text.contains("AWS") && text.contains("shop/regcred"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert_ne!(login.id(), 0, "0 is anonymous access");
        assert_eq!(login.id(), login.clone().id());
    }

    fn regcred(password: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": format!(r#"{{"auths": {{"r.example.com": {{"username": "shop", "password": "{password}"}}}}}}"#)}
        }))
        .unwrap()
    }

    fn credentials_with(secret: Secret) -> Credentials {
        let credentials = Credentials::new(Settings {
            pull_secrets: true,
            docker_config: None,
            cloud: cloud::Settings::default(),
        })
        .unwrap();
        credentials.replace_from_files(&[secret], &[]);
        credentials
    }

    fn workload(name: &str, secrets: &[&str], images: &[&str]) -> Arc<Workload> {
        use crate::discovery::{Container, Kind, PullConfig};
        Arc::new(Workload {
            kind: Kind::Deployment,
            namespace: "shop".into(),
            name: name.into(),
            containers: images
                .iter()
                .map(|image| Container {
                    name: "c".into(),
                    image: (*image).into(),
                    jsonpath: "{.spec.template.spec.containers[0]}".into(),
                    image_id: None,
                    versions: None,
                })
                .collect(),
            pull: PullConfig {
                secrets: secrets.iter().map(|s| (*s).into()).collect(),
                service_account: "default".into(),
            },
            metadata_labels: Vec::new(),
        })
    }

    #[test]
    fn a_snapshot_of_the_same_workloads_and_secrets_reuses_the_last_lookups() {
        let credentials = credentials_with(regcred("pw"));
        let workloads = vec![
            workload("a", &["regcred"], &["r.example.com/app:1"]),
            workload("b", &[], &["nginx:1"]),
        ];
        let first = credentials.snapshot_lookups(&workloads);
        assert_eq!(first.images.len(), 2);
        // A mark on the kept answer tells a reused one from one worked out.
        let marked = Scope::for_test(99);
        let mark = || {
            let mut last = credentials.last.lock().unwrap();
            last.as_mut().unwrap().lookups.workload_scopes.push(marked);
        };
        let reused = |lookups: &Lookups| lookups.workload_scopes.last() == Some(&marked);
        mark();
        assert!(reused(&credentials.snapshot_lookups(&workloads)));
        // Files read again unchanged change nothing.
        credentials.replace_from_files(&[regcred("pw")], &[]);
        assert!(reused(&credentials.snapshot_lookups(&workloads)));
        // A workload replaced by an equal one: worked out again.
        let mut replaced = workloads.clone();
        replaced[1] = workload("b", &[], &["nginx:1"]);
        let fresh = credentials.snapshot_lookups(&replaced);
        assert!(!reused(&fresh));
        assert_eq!(fresh.images.len(), 2);
        mark();
        let again = credentials.snapshot_lookups(&replaced);
        assert!(reused(&again));
        // The secret's password changed: new logins for the same workloads.
        credentials.replace_from_files(&[regcred("new")], &[]);
        let changed = credentials.snapshot_lookups(&replaced);
        let password = |lookups: &Lookups| {
            let secret = lookups.images.iter().find(|l| !l.logins.is_empty());
            secret.map(|l| l.logins[0].password.clone())
        };
        assert_eq!(password(&again).as_deref(), Some("pw"));
        assert_eq!(password(&changed).as_deref(), Some("new"));
    }

    #[test]
    fn each_image_is_looked_up_once_per_scope_with_its_logins() {
        let credentials = credentials_with(regcred("pw"));
        let workloads = [
            workload("public", &[], &["nginx:1"]),
            workload("a", &["regcred"], &["r.example.com/app:1", "nginx:1"]),
            workload("b", &["regcred"], &["r.example.com/app:1"]),
            workload("last", &[], &["r.example.com/app:1"]),
        ];
        let lookups = credentials.lookups(&workloads);
        let scopes = &lookups.workload_scopes;
        assert_eq!(scopes.len(), 3, "the trailing Scope::NONE is left out");
        assert_eq!(scopes[0], Scope::NONE);
        assert_ne!(scopes[1], Scope::NONE);
        assert_eq!(
            scopes[1], scopes[2],
            "the same secrets in the same namespace"
        );
        let mut found: Vec<_> = lookups
            .images
            .iter()
            .map(|l| {
                let users: Vec<&str> = l.logins.iter().map(|l| l.username.as_str()).collect();
                (l.scope == Scope::NONE, &*l.image, users)
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                (false, "nginx:1", vec![]),
                (false, "r.example.com/app:1", vec!["shop"]),
                (true, "nginx:1", vec![]),
                (true, "r.example.com/app:1", vec![]),
            ]
        );
    }

    #[test]
    fn a_docker_config_that_is_no_config_is_a_start_up_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {"r.example.com": {"auth": 5}}, "pw": "hunter2"}"#,
        )
        .unwrap();
        let settings = |docker_config| Settings {
            pull_secrets: true,
            docker_config,
            cloud: cloud::Settings::default(),
        };
        let error = Credentials::new(settings(Some(path.clone())))
            .err()
            .expect("a config with a number for auth is refused")
            .to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let missing = dir.path().join("missing.json");
        let error = Credentials::new(settings(Some(missing)))
            .err()
            .expect("a missing file is refused");
        assert!(matches!(error, Error::ReadDockerConfig { .. }), "{error}");
        assert!(Credentials::new(settings(None)).is_ok());
    }
}
