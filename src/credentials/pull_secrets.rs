//! Registry logins per workload, the way the kubelet finds them: the
//! pod spec's `imagePullSecrets`, then those of its service account, in its
//! namespace; then the static `--docker-config`.
//!
//! Secrets and service accounts come from watch-fed caches (secrets
//! filtered by type on the server), or from the manifest files (handed
//! over by the pipeline), and are kept parsed: only the logins, never whole
//! objects.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tracing::{debug, info, warn};

use super::keyring::{DockerConfigError, Keyring, MAX_LOCATION_BYTES};
use super::{Login, Scope};
use crate::discovery::{Metrics, Workload};
use crate::reference;

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

type Key = (String, String);

/// The pull secrets' names of each service account of one namespace.
type AccountSecrets = HashMap<String, Arc<[String]>>;

/// A hash of what the pull secrets and service accounts of manifest files
/// hold that [`PullSecrets`] reads: names, types and data, the accounts'
/// pull secrets.
/// Keyed per process, so files cannot be crafted to collide.
fn files_hash(keys: &RandomState, secrets: &[Secret], accounts: &[ServiceAccount]) -> u64 {
    let mut hasher = keys.build_hasher();
    for secret in secrets {
        let meta = &secret.metadata;
        (&meta.namespace, &meta.name, &secret.type_).hash(&mut hasher);
        for (key, value) in secret.data.iter().flatten() {
            (key, &value.0).hash(&mut hasher);
        }
        for (key, value) in secret.string_data.iter().flatten() {
            (key, value).hash(&mut hasher);
        }
    }
    secrets.len().hash(&mut hasher);
    for account in accounts {
        let meta = &account.metadata;
        (&meta.namespace, &meta.name).hash(&mut hasher);
        for reference in account.image_pull_secrets.iter().flatten() {
            reference.name.hash(&mut hasher);
        }
    }
    accounts.len().hash(&mut hasher);
    hasher.finish()
}

/// Why a docker config Secret gives no logins. Names the secret, never
/// its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret {namespace}/{name} has no {key} key")]
    MissingKey {
        namespace: String,
        name: String,
        key: &'static str,
    },
    #[error(transparent)]
    Config(#[from] DockerConfigError),
}

// The maps stay whole whatever panicked while holding them: an insert or a
// remove either happened or did not.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Pull secrets and service accounts, and the static docker config.
pub struct PullSecrets {
    /// False with `--pull-secrets=false`: only the static config applies.
    enabled: bool,
    secrets: RwLock<HashMap<Key, Arc<Keyring>>>,
    /// Namespace → service account → its pull secrets' names: looked up
    /// per workload at every snapshot by `&str`, handed out shared.
    accounts: RwLock<HashMap<String, AccountSecrets>>,
    static_keyring: Keyring,
    /// Missing secrets already warned about, so each is logged once.
    warned: Mutex<HashSet<Key>>,
    /// Secrets already warned about for over-long locations (they are
    /// parsed again at every change, and every tick from files).
    warned_refused: Mutex<HashSet<Key>>,
    /// Watchers that have not completed their first list yet.
    pending: AtomicUsize,
    /// Watchers the API currently refuses (403): the first refusal is
    /// warned about and the last recovery noted, once for all of them.
    refused: AtomicUsize,
    /// Bumped at each change of the secrets or accounts: logins worked out
    /// under one generation hold while it is current.
    generation: AtomicU64,
    /// What the manifest files held at the last replacement (a hash):
    /// files re-read unchanged change nothing.
    from_files: Mutex<Option<u64>>,
    hash_keys: RandomState,
}

impl PullSecrets {
    pub fn new(enabled: bool, static_keyring: Keyring) -> Self {
        warn_refused(&static_keyring, "--docker-config");
        PullSecrets {
            enabled,
            secrets: RwLock::default(),
            accounts: RwLock::default(),
            static_keyring,
            warned: Mutex::default(),
            warned_refused: Mutex::default(),
            pending: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            from_files: Mutex::new(None),
            hash_keys: RandomState::new(),
        }
    }

    /// The [`Scope`] of a workload's logins.
    pub fn scope(&self, workload: &Workload) -> Scope {
        if !self.enabled {
            return Scope::NONE;
        }
        let account_secrets = self.account_secrets(workload);
        let account_secrets: &[String] = account_secrets.as_deref().unwrap_or_default();
        if workload.pull.secrets.is_empty() && account_secrets.is_empty() {
            return Scope::NONE;
        }
        Scope::of(&workload.namespace, &workload.pull.secrets, account_secrets)
    }

    /// The pull secrets of the workload's service account.
    fn account_secrets(&self, workload: &Workload) -> Option<Arc<[String]>> {
        read(&self.accounts)
            .get(&*workload.namespace)?
            .get(&*workload.pull.service_account)
            .cloned()
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Changes at each change of the secrets or service accounts.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Every login that may apply to the workload, in the kubelet's order.
    pub fn keyring(&self, workload: &Workload) -> Keyring {
        let mut keyring = Keyring::default();
        if self.enabled {
            let namespace: &str = &workload.namespace;
            let account_secrets = self.account_secrets(workload);
            let account_secrets: &[String] = account_secrets.as_deref().unwrap_or_default();
            let secrets = read(&self.secrets);
            let pod_secrets = workload.pull.secrets.iter().map(|name| &**name);
            for name in pod_secrets.chain(account_secrets.iter().map(String::as_str)) {
                let key = (namespace.to_owned(), name.to_owned());
                match secrets.get(&key) {
                    Some(k) => keyring.extend(k),
                    None => {
                        if lock(&self.warned).insert(key) {
                            warn!(namespace, secret = name, workload = %workload.name, "pull secret not found (or not a docker config secret); its images are resolved without it");
                        }
                    }
                }
            }
        }
        keyring.extend(&self.static_keyring);
        keyring
    }

    fn put_secret(&self, secret: &Secret) {
        let (Some(namespace), Some(name)) = (
            secret.metadata.namespace.clone(),
            secret.metadata.name.clone(),
        ) else {
            return;
        };
        let key = (namespace, name);
        match parse_secret(secret) {
            Some(Ok(keyring)) => {
                let mut warned = lock(&self.warned_refused);
                if keyring.refused_locations() == 0 {
                    warned.remove(&key);
                } else if warned.insert(key.clone()) {
                    warn_refused(&keyring, &format!("secret {}/{}", key.0, key.1));
                }
                drop(warned);
                write(&self.secrets).insert(key.clone(), Arc::new(keyring));
                lock(&self.warned).remove(&key);
            }
            Some(Err(e)) => {
                warn!(namespace = key.0, secret = key.1, error = %e, "pull secret is not a valid docker config; ignored");
                write(&self.secrets).remove(&key);
            }
            None => {
                write(&self.secrets).remove(&key);
            }
        }
    }

    fn put_account(&self, account: &ServiceAccount) {
        let (Some(namespace), Some(name)) = (
            account.metadata.namespace.clone(),
            account.metadata.name.clone(),
        ) else {
            return;
        };
        let names = account
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        write(&self.accounts)
            .entry(namespace)
            .or_default()
            .insert(name, names);
    }

    /// Replaces everything with what manifest files hold (they are re-read
    /// at every snapshot, so deletions count).
    pub fn replace_from_files(&self, secrets: &[Secret], accounts: &[ServiceAccount]) {
        let held = files_hash(&self.hash_keys, secrets, accounts);
        if lock(&self.from_files).replace(held) == Some(held) {
            return;
        }
        self.changed();
        write(&self.secrets).clear();
        write(&self.accounts).clear();
        secrets.iter().for_each(|s| self.put_secret(s));
        accounts.iter().for_each(|a| self.put_account(a));
    }

    /// True once every watcher has completed its first list (or given up on it).
    pub fn is_ready(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Waits for the first lists, at most `timeout` (a CronJob run must not hang on RBAC).
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_ready() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Keeps secrets (of the two docker config types) and service accounts
    /// current with watchers, in every namespace or the given ones.
    pub fn watch(self: &Arc<Self>, client: Client, namespaces: &[String], metrics: Metrics) {
        if !self.enabled {
            return;
        }
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        for namespace in scopes {
            for secret_type in [DOCKER_CONFIG_JSON, DOCKER_CFG] {
                let api: Api<Secret> = api(&client, namespace.as_deref());
                let config = watcher::Config::default().fields(&format!("type={secret_type}"));
                self.spawn_watcher(
                    api,
                    config,
                    "Secret",
                    metrics.clone(),
                    |store, s| store.put_secret(s),
                    |store, s| {
                        if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                            write(&store.secrets).remove(&(ns.clone(), name.clone()));
                        }
                    },
                );
            }
            let api: Api<ServiceAccount> = api(&client, namespace.as_deref());
            self.spawn_watcher(
                api,
                watcher::Config::default(),
                "ServiceAccount",
                metrics.clone(),
                |store, a| store.put_account(a),
                |store, a| {
                    if let (Some(ns), Some(name)) = (&a.metadata.namespace, &a.metadata.name) {
                        let mut accounts = write(&store.accounts);
                        if let Some(in_namespace) = accounts.get_mut(ns) {
                            in_namespace.remove(name);
                            if in_namespace.is_empty() {
                                accounts.remove(ns);
                            }
                        }
                    }
                },
            );
        }
    }

    /// A watcher's list or watch was refused (403) after being allowed (or
    /// at its start). Of several watchers (two secret types and service
    /// accounts, per namespace), only the first refusal is worth a warning.
    fn note_refused(&self, kind: &'static str) {
        if self.refused.fetch_add(1, Ordering::AcqRel) == 0 {
            warn!(refused = kind, "not allowed to read pull secrets (Secrets and ServiceAccounts); images are resolved without them (grant get/list/watch on both, or run with --pull-secrets=false)");
        }
    }

    /// A refused watcher got an answer again; said once, when none is
    /// refused any more.
    fn note_allowed(&self, kind: &'static str) {
        if self.refused.fetch_sub(1, Ordering::AcqRel) == 1 {
            info!(
                last = kind,
                "allowed to read pull secrets again; images resolve with them from now on"
            );
        }
    }

    fn spawn_watcher<K>(
        self: &Arc<Self>,
        api: Api<K>,
        config: watcher::Config,
        kind: &'static str,
        metrics: Metrics,
        apply: fn(&PullSecrets, &K),
        delete: fn(&PullSecrets, &K),
    ) where
        K: kube::Resource
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        self.pending.fetch_add(1, Ordering::AcqRel);
        let store = self.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            let mut first_list_done = false;
            let mut refused = false;
            let mut done = |store: &PullSecrets| {
                if !std::mem::replace(&mut first_list_done, true) {
                    store.pending.fetch_sub(1, Ordering::AcqRel);
                }
            };
            while let Some(event) = stream.next().await {
                if event.is_ok() && std::mem::take(&mut refused) {
                    store.note_allowed(kind);
                }
                match event {
                    Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                        apply(&store, &obj);
                        store.changed();
                    }
                    Ok(Event::Delete(obj)) => {
                        delete(&store, &obj);
                        store.changed();
                    }
                    Ok(Event::Init) => {}
                    Ok(Event::InitDone) => {
                        debug!(kind, "pull-secret cache listed");
                        done(&store);
                    }
                    Err(e) => {
                        let forbidden = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) | watcher::Error::WatchFailed(kube::Error::Api(s)) if s.code == 403);
                        if forbidden {
                            metrics.errors.with_label_values(&[kind, "forbidden"]).inc();
                            if !std::mem::replace(&mut refused, true) {
                                store.note_refused(kind);
                            }
                            // Nothing to wait for: let snapshots go on without them.
                            done(&store);
                        } else {
                            info!(kind, error = %e, "pull-secret watch interrupted; retrying");
                        }
                    }
                }
            }
        });
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Says that a docker config had locations too long to match (never what
/// they were: a tenant wrote them, and one is a kilobyte or more).
fn warn_refused(keyring: &Keyring, source: &str) {
    let refused = keyring.refused_locations();
    if refused > 0 {
        warn!(
            source,
            refused,
            limit = MAX_LOCATION_BYTES,
            "docker config has locations longer than the limit; they are ignored"
        );
    }
}

/// The logins to try for one image, most specific first; none for an image
/// that is no valid reference (it cannot be resolved anyway).
pub fn logins(keyring: &Keyring, image: &str) -> Vec<Login> {
    if keyring.is_empty() {
        return Vec::new();
    }
    match reference::parse(image) {
        Ok(r) => keyring
            .lookup(r.resolve_registry(), r.repository())
            .into_iter()
            .cloned()
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The logins of a docker config Secret; `None` for other secret types.
fn parse_secret(secret: &Secret) -> Option<Result<Keyring, SecretError>> {
    let key = match secret.type_.as_deref()? {
        DOCKER_CONFIG_JSON => ".dockerconfigjson",
        DOCKER_CFG => ".dockercfg",
        _ => return None,
    };
    let namespace = secret.metadata.namespace.as_deref().unwrap_or_default();
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let source = format!("secret {namespace}/{name}");
    // Manifests may carry `stringData` instead of base64 `data`.
    let empty = BTreeMap::new();
    let bytes = match secret.data.as_ref().and_then(|d| d.get(key)) {
        Some(data) => data.0.clone(),
        None => match secret.string_data.as_ref().unwrap_or(&empty).get(key) {
            Some(text) => text.clone().into_bytes(),
            None => {
                return Some(Err(SecretError::MissingKey {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    key,
                }))
            }
        },
    };
    let mut keyring = Keyring::default();
    Some(
        keyring
            .add_docker_config(&bytes, &source)
            .map(|_| keyring)
            .map_err(SecretError::from),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Kind, PullConfig};
    use serde_json::json;

    fn secret(ns: &str, name: &str, type_: &str, key: &str, config: serde_json::Value) -> Secret {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "type": type_,
            "stringData": {key: config.to_string()}
        }))
        .unwrap()
    }

    fn workload(ns: &str, secrets: &[&str], account: &str) -> Workload {
        Workload {
            kind: Kind::Pod,
            namespace: ns.into(),
            name: "w".into(),
            containers: vec![],
            pull: PullConfig {
                secrets: secrets.iter().map(|s| Arc::from(*s)).collect(),
                service_account: account.into(),
            },
            metadata_labels: Vec::new(),
        }
    }

    fn users(store: &PullSecrets, w: &Workload, image: &str) -> Vec<String> {
        logins(&store.keyring(w), image)
            .into_iter()
            .map(|c| c.username)
            .collect()
    }

    #[test]
    fn a_docker_config_secret_without_its_key_is_an_error_naming_the_secret() {
        let wrong_key = secret(
            "shop",
            "regcred",
            DOCKER_CONFIG_JSON,
            ".dockercfg",
            json!({}),
        );
        assert_eq!(
            parse_secret(&wrong_key).map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
            Some(Err(
                "secret shop/regcred has no .dockerconfigjson key".into()
            ))
        );
        let opaque = secret("shop", "other", "Opaque", "x", json!({}));
        assert!(
            parse_secret(&opaque).is_none(),
            "not a docker config secret"
        );
    }

    #[test]
    fn pod_secrets_then_service_account_secrets_then_static() {
        let mut static_keyring = Keyring::default();
        static_keyring
            .add_docker_config(
                br#"{"auths": {"r.example.com": {"username": "static", "password": "s"}}}"#,
                "--docker-config",
            )
            .unwrap();
        let store = PullSecrets::new(true, static_keyring);
        let auths =
            |user: &str| json!({"auths": {"r.example.com": {"username": user, "password": "p"}}});
        let legacy = json!({"r.example.com": {"username": "legacy", "password": "p"}});
        let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"namespace": "shop", "name": "builder"}, "imagePullSecrets": [{"name": "sa-cred"}]})).unwrap();
        store.replace_from_files(
            &[
                secret(
                    "shop",
                    "pod-cred",
                    DOCKER_CONFIG_JSON,
                    ".dockerconfigjson",
                    auths("pod"),
                ),
                secret("shop", "sa-cred", DOCKER_CFG, ".dockercfg", legacy),
                secret(
                    "other",
                    "pod-cred",
                    DOCKER_CONFIG_JSON,
                    ".dockerconfigjson",
                    auths("elsewhere"),
                ),
                secret("shop", "opaque", "Opaque", "x", json!({})),
            ],
            &[account],
        );
        let w = workload("shop", &["pod-cred"], "builder");
        assert_eq!(
            users(&store, &w, "r.example.com/app:1"),
            ["pod", "legacy", "static"]
        );
        assert_eq!(
            users(
                &store,
                &workload("other", &[], "default"),
                "r.example.com/app:1"
            ),
            ["static"],
            "secrets are per namespace"
        );
        assert_eq!(
            users(
                &store,
                &workload("shop", &["opaque", "missing"], "default"),
                "r.example.com/app:1"
            ),
            ["static"]
        );
        assert!(users(&store, &w, "ghcr.io/app:1").is_empty());
        assert_ne!(
            store.scope(&w),
            store.scope(&workload("other", &["pod-cred"], "builder"))
        );

        let off = PullSecrets::new(false, Keyring::default());
        off.replace_from_files(
            &[secret(
                "shop",
                "pod-cred",
                DOCKER_CONFIG_JSON,
                ".dockerconfigjson",
                auths("pod"),
            )],
            &[],
        );
        assert!(users(&off, &w, "r.example.com/app:1").is_empty());
        assert_eq!(off.scope(&w), Scope::NONE);
    }
}
