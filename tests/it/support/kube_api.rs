//! A Kubernetes API server emulator for tests, speaking the real HTTP protocol
//! on 127.0.0.1 so the product's genuine `kube` client (list pagination,
//! `kube::runtime::watcher`, error handling) runs unmodified against it.
//!
//! It keeps a small in-memory object store with one global, increasing
//! `resourceVersion` (like etcd's revision) and a history of revisions, which
//! is enough to serve what a controller-style client relies on:
//! - LIST with `limit`/`continue` (each continue token pins its snapshot),
//!   `labelSelector`, `fieldSelector`, `resourceVersion` and
//!   `resourceVersionMatch`;
//! - WATCH from a `resourceVersion` (replaying history), with bookmarks,
//!   `timeoutSeconds`, streaming lists (`sendInitialEvents`) and selectors;
//! - GET of one object; `403 Forbidden` per resource or per verb; `410 Gone` after
//!   [`KubeApi::compact`]; streams ended by [`KubeApi::close_watches`];
//! - API discovery (`/api`, `/apis`, `/apis/{group}/{version}` with each
//!   resource's kind, scope and verbs) and custom resources: CRDs
//!   installed or deleted at any time ([`KubeApi::install_crd`],
//!   [`KubeApi::uninstall_crd`]), listed with their `status` subresource as
//!   kube-apiserver does, their objects served like the built-in ones;
//! - metadata-only responses (`Accept: …;as=PartialObjectMetadata…`) for
//!   `kube`'s `metadata_watcher` / `list_metadata`;
//! - control-plane events: a restart ([`KubeApi::stop`] cuts every
//!   connection, [`KubeApi::start_again`] comes back with an empty watch
//!   cache, so resumed watches get 410), a 403 window while it starts
//!   ([`KubeApi::forbid_while_starting`]), and RBAC changed at run time
//!   ([`KubeApi::forbid`] / [`KubeApi::allow`]: new requests get 403 while
//!   open watches go on until they time out or are closed).
//!
//! Like the real API server, LIST items carry no `apiVersion`/`kind` (only the
//! list itself does), while GET and WATCH objects carry both. Every error is a
//! `metav1.Status` JSON body. The server is read-only (405) except for
//! `coordination.k8s.io/v1` Leases, which clients may create (POST, 409
//! AlreadyExists) and replace (PUT, 409 Conflict on a stale
//! `metadata.resourceVersion`) for leader election; tests change objects
//! with [`KubeApi::apply`] and [`KubeApi::delete`], read them with
//! [`KubeApi::object`], can hold every request with [`KubeApi::pause`], and
//! every request is recorded for [`KubeApi::requests`].
//!
//! The server runs on the tokio runtime of the test that starts it, so the
//! test must not block that runtime while a client talks to the server (use
//! `tokio::time::sleep` and `tokio::process`, not their `std` versions): on
//! `#[tokio::test]`'s default current-thread runtime the server only makes
//! progress while the test is awaiting.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::process::install_crypto_provider;

/// How often an open watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// The user named in 403 messages, as if the product ran under this
/// service account.
const FORBIDDEN_USER: &str = "system:serviceaccount:monitoring:container-image-pusher";

/// The first resourceVersion handed out; a realistic-looking number.
const FIRST_RESOURCE_VERSION: u64 = 1000;

/// An in-process Kubernetes API server. Cloning is cheap and every clone
/// controls the same server, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct KubeApi {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    server: Arc<ServerTask>,
}

/// Stops the server when the last [`KubeApi`] clone goes away: no new
/// connections, and open watch streams end (as when an API server restarts).
struct ServerTask {
    /// The serving incarnation; `None` while stopped ([`KubeApi::stop`]).
    running: Mutex<Option<Incarnation>>,
    state: Arc<Mutex<State>>,
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        if let Some(incarnation) = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            incarnation.kill();
        }
        lock(&self.state).watches.clear();
    }
}

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// The `Accept` header, if any (shows metadata-only requests).
    pub accept: Option<String>,
}

impl RecordedRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether this was a watch (`watch=true` or `watch=1`).
    pub fn is_watch(&self) -> bool {
        is_true(self.param("watch"))
    }
}

impl KubeApi {
    /// Binds 127.0.0.1 on a free port and serves on a tokio task. Knows the
    /// core/v1 pods, secrets, serviceaccounts and replicationcontrollers;
    /// apps/v1 deployments, statefulsets, daemonsets and replicasets;
    /// batch/v1 jobs and cronjobs; and the
    /// writable coordination.k8s.io/v1 leases. Other types become known
    /// when first applied, forbidden or allowed.
    pub async fn start() -> KubeApi {
        use k8s_openapi::api::{
            apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination,
            core::v1 as core,
        };
        let mut state = State::new();
        state.register(ResourceType::of::<core::Pod>());
        state.register(ResourceType::of::<core::Secret>());
        state.register(ResourceType::of::<core::ServiceAccount>());
        state.register(ResourceType::of::<apps::Deployment>());
        state.register(ResourceType::of::<apps::StatefulSet>());
        state.register(ResourceType::of::<apps::DaemonSet>());
        state.register(ResourceType::of::<batch::Job>());
        state.register(ResourceType::of::<batch::CronJob>());
        state.register(ResourceType::of::<apps::ReplicaSet>());
        state.register(ResourceType::of::<core::ReplicationController>());
        state.register(ResourceType::of::<coordination::Lease>());
        state
            .collection_mut(ResourceType::of::<coordination::Lease>())
            .writable = true;
        let state = Arc::new(Mutex::new(state));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the kube API test server");
        let addr = listener
            .local_addr()
            .expect("local address of the kube API listener");
        let incarnation = Incarnation::serve(listener, &state);
        KubeApi {
            state: state.clone(),
            addr,
            server: Arc::new(ServerTask {
                running: Mutex::new(Some(incarnation)),
                state,
            }),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes `kubeconfig` into `dir`: one cluster at [`KubeApi::url`], a user
    /// without credentials, and a current context with namespace `default`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml()).expect("write the kubeconfig file");
        path
    }

    /// The kubeconfig that [`KubeApi::write_kubeconfig`] writes, as YAML.
    pub fn kubeconfig_yaml(&self) -> String {
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "test", "cluster": { "server": self.url() } }],
            "users": [{ "name": "test", "user": {} }],
            "contexts": [{
                "name": "test",
                "context": { "cluster": "test", "user": "test", "namespace": "default" },
            }],
            "current-context": "test",
        });
        serde_yaml::to_string(&config).expect("serialize the kubeconfig")
    }

    /// A real `kube::Client` for this server, built from the same kubeconfig.
    pub async fn kube_client(&self) -> kube::Client {
        // kube builds its rustls connector even for plain HTTP.
        install_crypto_provider();
        let kubeconfig: kube::config::Kubeconfig =
            serde_yaml::from_str(&self.kubeconfig_yaml()).expect("parse the generated kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("kube config from the generated kubeconfig");
        kube::Client::try_from(config).expect("build a kube client for the test server")
    }

    /// Creates or replaces `obj` (keyed by resource, namespace and name;
    /// namespaced objects without a namespace go to `default`). Assigns the
    /// next resourceVersion, keeps or sets `uid` and `creationTimestamp`, and
    /// tells open watches (ADDED or MODIFIED, or ADDED/DELETED when a label
    /// change moves the object into/out of a watch's selector).
    pub fn apply<K>(&self, obj: &K)
    where
        K: k8s_openapi::Resource + serde::Serialize,
    {
        let ty = ResourceType::of::<K>();
        let object = serde_json::to_value(obj).expect("serialize the applied object");
        self.lock().apply(ty, object);
    }

    /// Deletes an object (the namespace is ignored for cluster-scoped types
    /// and defaults to `default` otherwise); watches get DELETED with the
    /// object at the deletion's resourceVersion. Panics if it does not exist.
    pub fn delete<K: k8s_openapi::Resource>(&self, namespace: Option<&str>, name: &str) {
        let ty = ResourceType::of::<K>();
        self.lock().delete(ty, namespace, name);
    }

    /// Makes get/list/watch of `K` answer 403 Forbidden (open watches go on,
    /// as with a real RBAC change).
    pub fn forbid<K: k8s_openapi::Resource>(&self) {
        self.lock()
            .collection_mut(ResourceType::of::<K>())
            .forbidden = true;
    }

    /// The current version of an object, as GET would return it; `None` if
    /// it does not exist.
    pub fn object<K>(&self, namespace: Option<&str>, name: &str) -> Option<K>
    where
        K: k8s_openapi::Resource + serde::de::DeserializeOwned,
    {
        let ty = ResourceType::of::<K>();
        let key = State::object_key(&ty, namespace, name);
        let state = self.lock();
        let object = state.collections.get(&ty.key)?.current(&key)?.clone();
        Some(serde_json::from_value(object).expect("a stored object deserializes"))
    }

    /// Holds every request received from now on (after recording it) until
    /// [`KubeApi::resume`], as a slow or stuck API server would. Open watch
    /// streams go on.
    pub fn pause(&self) {
        self.lock().gate.send_replace(true);
    }

    /// Lets held and new requests through again.
    pub fn resume(&self) {
        self.lock().gate.send_replace(false);
    }

    /// Undoes [`KubeApi::forbid`].
    pub fn allow<K: k8s_openapi::Resource>(&self) {
        self.lock()
            .collection_mut(ResourceType::of::<K>())
            .forbidden = false;
    }

    /// Forgets history, as etcd compaction plus a write elsewhere in the
    /// cluster would: the global resourceVersion moves on by one and any
    /// LIST, WATCH or continue token from an older resourceVersion gets
    /// 410 Gone. Open watches keep streaming but their bookmarks do not move
    /// past their resource's own last change, so after
    /// [`KubeApi::close_watches`] a client must re-list.
    pub fn compact(&self) {
        self.lock().compact();
    }

    /// Ends every open watch stream cleanly (after any queued events); the
    /// client has to watch again.
    pub fn close_watches(&self) {
        self.lock().watches.clear();
    }

    /// Caps the page size of LIST requests that set `limit`, so tests can
    /// force pagination whatever limit the client asks for. (A LIST without
    /// `limit` still returns everything, as a real server does.)
    pub fn set_max_page_size(&self, n: usize) {
        assert!(n > 0, "a page must hold at least one item");
        self.lock().max_page_size = Some(n);
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Number of watch streams of `K` currently open (so a test can wait for
    /// the product to start watching before it changes objects).
    pub fn open_watches<K: k8s_openapi::Resource>(&self) -> usize {
        let key = ResourceType::of::<K>().key;
        let mut state = self.lock();
        state.watches.retain(|watch| !watch.events.is_closed());
        state
            .watches
            .iter()
            .filter(|watch| watch.resource == key)
            .count()
    }

    /// Waits until at least one watch of `K` is open; panics after `timeout`
    /// listing the requests received, to show what the client did instead.
    pub async fn wait_for_watch<K: k8s_openapi::Resource>(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open_watches::<K>() == 0 {
            if tokio::time::Instant::now() >= deadline {
                let requests: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} {:?}", r.method, r.path, r.query))
                    .collect();
                panic!(
                    "no watch of {} opened within {timeout:?}; requests so far:\n{}",
                    K::URL_PATH_SEGMENT,
                    requests.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> String {
        self.lock().rv.to_string()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

// ---------------------------------------------------------------------------
// Restarts and permissions changing at run time
// ---------------------------------------------------------------------------

impl KubeApi {
    /// Kills the server as SIGKILL would (a graceful shutdown would keep
    /// serving open watches for about a minute; this models the abrupt
    /// case, which is also where a graceful one ends): the port refuses
    /// connections, every open connection is cut mid-stream (watches end
    /// with a transport error, pooled connections fail on their next
    /// request), and requests already held by [`KubeApi::pause`] never get
    /// an answer. Objects stay, as they would in etcd. No-op when stopped.
    pub fn stop(&self) {
        let running = self
            .server
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(incarnation) = running {
            incarnation.kill();
        }
        self.lock().watches.clear();
    }

    /// Starts a stopped server again on the same port, like a restarted
    /// kube-apiserver over the same etcd: its watch cache starts empty at
    /// etcd's current revision (which other writers moved on meanwhile),
    /// so every watch resumed from an earlier resourceVersion gets
    /// `410 Gone` "too old resource version: OLD (CURRENT)" (an `ERROR`
    /// event, as the real server's watch cache sends it), and clients
    /// have to list again. Kinds made to refuse with
    /// [`KubeApi::forbid_while_starting`] answer 403 for that long after it.
    pub async fn start_again(&self) {
        // The killed accept loop lets go of the port once its task is
        // dropped, which may take a turn of the runtime.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!(
                    "cannot bind the kube API test server's port {} again: {e}",
                    self.addr
                ),
            }
        };
        {
            let mut state = self.lock();
            state.compact();
            let now = tokio::time::Instant::now();
            for (key, window) in std::mem::take(&mut state.starting_forbidden) {
                if let Some(collection) = state.collections.get_mut(&key) {
                    collection.forbidden_until = Some(now + window);
                }
            }
        }
        let incarnation = Incarnation::serve(listener, &self.state);
        let previous = self
            .server
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(incarnation);
        assert!(
            previous.is_none(),
            "start_again needs a stopped server (stop it first)"
        );
    }

    /// At the next [`KubeApi::start_again`], `K` answers 403 Forbidden to
    /// every request for `window`, as a real API server did while its
    /// authorizer warmed up ("daemonsets.apps is forbidden: User … cannot
    /// list resource …").
    pub fn forbid_while_starting<K: k8s_openapi::Resource>(&self, window: Duration) {
        let ty = ResourceType::of::<K>();
        let mut state = self.lock();
        state.collection_mut(ty.clone());
        state.starting_forbidden.push((ty.key, window));
    }
}

/// One run of the HTTP server between a start and a [`KubeApi::stop`].
struct Incarnation {
    accept_loop: tokio::task::JoinHandle<()>,
    /// Set to true to cut every connection this incarnation accepted.
    cut: tokio::sync::watch::Sender<bool>,
}

impl Incarnation {
    fn serve(listener: tokio::net::TcpListener, state: &Shared) -> Incarnation {
        let (cut, _) = tokio::sync::watch::channel(false);
        let listener = CuttableListener {
            inner: listener,
            cut: cut.clone(),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let accept_loop = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("kube API test server stopped: {e}");
            }
        });
        Incarnation { accept_loop, cut }
    }

    fn kill(self) {
        self.accept_loop.abort();
        self.cut.send_replace(true);
    }
}

/// Accepts connections that can all be cut at once: axum's connection
/// tasks outlive its accept loop, as a real process's sockets do not.
struct CuttableListener {
    inner: tokio::net::TcpListener,
    cut: tokio::sync::watch::Sender<bool>,
}

impl axum::serve::Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CuttableStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let mut cut = self.cut.subscribe();
                    let stream = CuttableStream {
                        inner: stream,
                        cut: Box::pin(async move {
                            let _ = cut.wait_for(|cut| *cut).await;
                        }),
                    };
                    return (stream, addr);
                }
                // Out of file descriptors and the like: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that fails every read and write once its server is killed,
/// so hyper drops it and the peer sees it close.
struct CuttableStream {
    inner: tokio::net::TcpStream,
    cut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl CuttableStream {
    fn check(&mut self, cx: &mut std::task::Context<'_>) -> std::io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the kube API test server was killed",
            )),
            std::task::Poll::Pending => Ok(()),
        }
    }
}

impl tokio::io::AsyncRead for CuttableStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.check(cx)?;
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.check(cx)?;
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.check(cx)?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A poisoned lock only means another test thread panicked mid-update; the
/// store is still usable for reporting that test's failure.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// The object store
// ---------------------------------------------------------------------------

/// Identifies a resource the way URLs do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ResourceKey {
    group: String,
    version: String,
    plural: String,
}

/// What the server knows about a resource type, taken from k8s-openapi's
/// `Resource` consts or from a [`Crd`].
#[derive(Clone, Debug)]
struct ResourceType {
    key: ResourceKey,
    kind: String,
    api_version: String,
    namespaced: bool,
    /// A custom resource: discovery lists its `status` subresource too,
    /// as for a CRD with `subresources: {status: {}}`.
    custom: bool,
}

impl ResourceType {
    fn crd(crd: &Crd) -> ResourceType {
        ResourceType {
            key: ResourceKey {
                group: crd.group.to_owned(),
                version: crd.version.to_owned(),
                plural: crd.plural.to_owned(),
            },
            kind: crd.kind.to_owned(),
            api_version: format!("{}/{}", crd.group, crd.version),
            namespaced: crd.namespaced,
            custom: true,
        }
    }

    fn of<K: k8s_openapi::Resource>() -> ResourceType {
        // `K::Scope` has no 'static bound, so TypeId cannot be used; its
        // type name tells the scope just as well.
        let namespaced = std::any::type_name::<K::Scope>().ends_with("NamespaceResourceScope");
        ResourceType {
            key: ResourceKey {
                group: K::GROUP.to_owned(),
                version: K::VERSION.to_owned(),
                plural: K::URL_PATH_SEGMENT.to_owned(),
            },
            kind: K::KIND.to_owned(),
            api_version: K::API_VERSION.to_owned(),
            namespaced,
            custom: false,
        }
    }

    /// `pods` or `deployments.apps`, as Status messages name resources.
    fn qualified_name(&self) -> String {
        if self.key.group.is_empty() {
            self.key.plural.clone()
        } else {
            format!("{}.{}", self.key.plural, self.key.group)
        }
    }
}

/// Namespace ("" for cluster-scoped objects) and name; the derived order is
/// the order of LIST items.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    namespace: String,
    name: String,
}

/// One version of an object; `None` marks a deletion.
struct Revision {
    rv: u64,
    object: Option<Value>,
}

struct Collection {
    ty: ResourceType,
    /// Every object's revisions since the last compaction, oldest first.
    objects: BTreeMap<ObjectKey, Vec<Revision>>,
    /// resourceVersion of this resource's latest change (bookmarks use it).
    last_rv: u64,
    forbidden: bool,
    /// Refused until then, as while a restarted server's authorizer warms up.
    forbidden_until: Option<tokio::time::Instant>,
    /// Clients may create (POST) and replace (PUT) objects of this type.
    writable: bool,
}

impl Collection {
    /// The objects as of resourceVersion `rv`, in key order.
    fn snapshot(&self, rv: u64) -> Vec<(&ObjectKey, &Value)> {
        self.objects
            .iter()
            .filter_map(|(key, revisions)| {
                let revision = revisions.iter().rev().find(|revision| revision.rv <= rv)?;
                revision.object.as_ref().map(|object| (key, object))
            })
            .collect()
    }

    fn current(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)?.last()?.object.as_ref()
    }
}

/// One write, kept for replaying to watches that start from an older
/// resourceVersion.
#[derive(Clone)]
struct Change {
    rv: u64,
    resource: ResourceKey,
    /// The object before the write (`None` for a creation).
    before: Option<Value>,
    /// The object after the write; for a deletion, the last state with the
    /// deletion's resourceVersion (what DELETED events carry).
    after: Value,
    deleted: bool,
}

/// An open watch's subscription to changes.
struct Subscription {
    resource: ResourceKey,
    filter: Filter,
    render: Render,
    /// Ready-to-send watch events (`{"type":…,"object":…}`).
    events: mpsc::UnboundedSender<Value>,
}

struct State {
    /// The latest resourceVersion handed out.
    rv: u64,
    /// History before this resourceVersion is gone.
    compacted_rv: u64,
    collections: BTreeMap<ResourceKey, Collection>,
    /// Changes after `compacted_rv`, oldest first.
    log: Vec<Change>,
    watches: Vec<Subscription>,
    max_page_size: Option<usize>,
    requests: Vec<RecordedRequest>,
    uids_issued: u64,
    /// True while requests are held ([`KubeApi::pause`]).
    gate: tokio::sync::watch::Sender<bool>,
    /// Kinds to refuse, and for how long, after the next restart.
    starting_forbidden: Vec<(ResourceKey, Duration)>,
    /// Verbs refused per resource ([`KubeApi::forbid_verb`]).
    denied_verbs: BTreeSet<(ResourceKey, String)>,
}

impl State {
    fn new() -> State {
        State {
            rv: FIRST_RESOURCE_VERSION,
            compacted_rv: FIRST_RESOURCE_VERSION,
            collections: BTreeMap::new(),
            log: Vec::new(),
            watches: Vec::new(),
            max_page_size: None,
            requests: Vec::new(),
            uids_issued: 0,
            gate: tokio::sync::watch::channel(false).0,
            starting_forbidden: Vec::new(),
            denied_verbs: BTreeSet::new(),
        }
    }

    fn register(&mut self, ty: ResourceType) {
        self.collection_mut(ty);
    }

    fn collection_mut(&mut self, ty: ResourceType) -> &mut Collection {
        self.collections
            .entry(ty.key.clone())
            .or_insert_with(|| Collection {
                ty,
                objects: BTreeMap::new(),
                last_rv: 0,
                forbidden: false,
                forbidden_until: None,
                writable: false,
            })
    }

    fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        let key = ResourceKey {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
        };
        self.collections.get(&key).map(|collection| &collection.ty)
    }

    fn object_key(ty: &ResourceType, namespace: Option<&str>, name: &str) -> ObjectKey {
        let namespace = match (ty.namespaced, namespace) {
            (false, _) => "",
            (true, Some(namespace)) => namespace,
            (true, None) => "default",
        };
        ObjectKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Stores `object` as the next version; returns it as stored.
    fn apply(&mut self, ty: ResourceType, mut object: Value) -> Value {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("apply of a {} without metadata.name", ty.kind))
            .to_owned();
        let key = State::object_key(&ty, object["metadata"]["namespace"].as_str(), &name);
        self.rv += 1;
        let rv = self.rv;
        let resource = ty.key.clone();
        let before = self.collection_mut(ty.clone()).current(&key).cloned();

        let metadata = object["metadata"]
            .as_object_mut()
            .expect("metadata.name was found, so metadata is an object");
        if ty.namespaced {
            metadata.insert("namespace".into(), json!(key.namespace));
        } else {
            metadata.remove("namespace");
        }
        // A replace keeps the identity and age of the object it replaces.
        let previous = |field: &str| before.as_ref().map(|old| old["metadata"][field].clone());
        if !metadata.contains_key("uid") {
            let uid = match previous("uid") {
                Some(uid) => uid,
                None => {
                    self.uids_issued += 1;
                    json!(format!("7e57c0de-0000-4000-8000-{:012x}", self.uids_issued))
                }
            };
            metadata.insert("uid".into(), uid);
        }
        if !metadata.contains_key("creationTimestamp") {
            let created = previous("creationTimestamp").unwrap_or_else(now_timestamp);
            metadata.insert("creationTimestamp".into(), created);
        }
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));

        let collection = self.collection_mut(ty);
        collection.objects.entry(key).or_default().push(Revision {
            rv,
            object: Some(object.clone()),
        });
        collection.last_rv = rv;
        self.publish(Change {
            rv,
            resource,
            before,
            after: object.clone(),
            deleted: false,
        });
        object
    }

    fn delete(&mut self, ty: ResourceType, namespace: Option<&str>, name: &str) {
        let key = State::object_key(&ty, namespace, name);
        let resource = ty.key.clone();
        let kind = ty.kind.clone();
        let Some(before) = self.collection_mut(ty.clone()).current(&key).cloned() else {
            panic!(
                "delete of {kind} {}/{} which does not exist",
                key.namespace, key.name
            );
        };
        self.rv += 1;
        let rv = self.rv;
        let collection = self.collection_mut(ty);
        let mut after = before.clone();
        after["metadata"]["resourceVersion"] = json!(rv.to_string());
        collection
            .objects
            .entry(key)
            .or_default()
            .push(Revision { rv, object: None });
        collection.last_rv = rv;
        self.publish(Change {
            rv,
            resource,
            before: Some(before),
            after,
            deleted: true,
        });
    }

    /// Logs `change` and sends it to the matching open watches.
    fn publish(&mut self, change: Change) {
        self.watches.retain(|watch| !watch.events.is_closed());
        for watch in &self.watches {
            if watch.resource != change.resource {
                continue;
            }
            if let Some(event) = watch_event(&change, &watch.filter, watch.render) {
                // A send error means the stream just went away; the next
                // publish drops the subscription.
                let _ = watch.events.send(event);
            }
        }
        self.log.push(change);
    }

    fn compact(&mut self) {
        self.rv += 1;
        self.compacted_rv = self.rv;
        self.log.clear();
        for collection in self.collections.values_mut() {
            collection.objects.retain(|_, revisions| {
                // Keep only each live object's current revision.
                let last = revisions.pop();
                revisions.clear();
                match last {
                    Some(revision) if revision.object.is_some() => {
                        revisions.push(revision);
                        true
                    }
                    _ => false,
                }
            });
        }
    }
}

/// The watch event a change means for one watch, if any. A label change can
/// move an object into a selector (ADDED) or out of it (DELETED).
fn watch_event(change: &Change, filter: &Filter, render: Render) -> Option<Value> {
    let was_in = change
        .before
        .as_ref()
        .is_some_and(|before| filter.matches(before));
    let is_in = filter.matches(&change.after);
    let event_type = match (change.deleted, was_in, is_in) {
        (true, _, true) => "DELETED",
        (true, _, false) => return None,
        (false, false, true) => "ADDED",
        (false, true, true) => "MODIFIED",
        (false, true, false) => "DELETED",
        (false, false, false) => return None,
    };
    Some(json!({ "type": event_type, "object": render.object(&change.after) }))
}

fn now_timestamp() -> Value {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    serde_json::to_value(now).expect("serialize a timestamp")
}

// ---------------------------------------------------------------------------
// Selectors
// ---------------------------------------------------------------------------

/// What a LIST or WATCH asked for: a namespace and label/field selectors.
#[derive(Clone, Debug, Default)]
struct Filter {
    namespace: Option<String>,
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        if let Some(namespace) = &self.namespace {
            if metadata["namespace"].as_str() != Some(namespace.as_str()) {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|requirement| requirement.matches(&metadata["labels"]))
            && self
                .fields
                .iter()
                .all(|requirement| requirement.matches(object))
    }

    fn has_selectors(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }
}

#[derive(Clone, Debug)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl LabelRequirement {
    fn matches(&self, labels: &Value) -> bool {
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        match self {
            LabelRequirement::Equals(key, value) => get(key) == Some(value.as_str()),
            LabelRequirement::NotEquals(key, value) => get(key) != Some(value.as_str()),
            LabelRequirement::In(key, values) => {
                get(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
            LabelRequirement::NotIn(key, values) => {
                !get(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
            LabelRequirement::Exists(key) => get(key).is_some(),
            LabelRequirement::NotExists(key) => get(key).is_none(),
        }
    }
}

/// Parses `a=b,c!=d,e,!f,g in (h,i),j notin (k)`.
fn parse_label_selector(selector: &str) -> Result<Vec<LabelRequirement>, String> {
    split_top_level(selector)
        .into_iter()
        .filter(|term| !term.is_empty())
        .map(parse_label_term)
        .collect()
}

fn parse_label_term(term: &str) -> Result<LabelRequirement, String> {
    let owned = |s: &str| s.trim().to_owned();
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::NotExists(owned(key)));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(owned(key), owned(value)));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::Equals(owned(key), owned(value)));
    }
    let words: Vec<&str> = term.splitn(3, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => Ok(LabelRequirement::Exists(owned(key))),
        [key, op, values] if *op == "in" || *op == "notin" => {
            let values = values
                .trim()
                .strip_prefix('(')
                .and_then(|rest| rest.strip_suffix(')'))
                .ok_or_else(|| {
                    format!("unable to parse requirement: values of {term:?} need parentheses")
                })?;
            let values = values.split(',').map(owned).collect();
            Ok(if *op == "in" {
                LabelRequirement::In(owned(key), values)
            } else {
                LabelRequirement::NotIn(owned(key), values)
            })
        }
        _ => Err(format!("unable to parse requirement: {term:?}")),
    }
}

/// Splits on commas that are not inside parentheses (set-based terms).
fn split_top_level(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(selector[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(selector[start..].trim());
    terms
}

#[derive(Clone, Debug)]
struct FieldRequirement {
    /// JSON path of the field, e.g. `["spec", "nodeName"]`.
    path: Vec<String>,
    value: String,
    equal: bool,
}

impl FieldRequirement {
    fn matches(&self, object: &Value) -> bool {
        let actual = self
            .path
            .iter()
            .fold(object, |value, key| &value[key.as_str()]);
        // Fields compare as their string form; a missing field is "".
        let actual = match actual {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        (actual == self.value) == self.equal
    }
}

/// The fields a real API server lets a selector use, per resource.
fn supported_fields(ty: &ResourceType) -> &'static [&'static str] {
    match (ty.key.group.as_str(), ty.key.plural.as_str()) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "secrets") => &["type"],
        ("batch", "jobs") => &["status.successful"],
        _ => &[],
    }
}

/// Parses `metadata.name=x,metadata.namespace!=y,type==z`.
fn parse_field_selector(
    selector: &str,
    ty: &ResourceType,
) -> Result<Vec<FieldRequirement>, String> {
    let mut requirements = Vec::new();
    for term in selector
        .split(',')
        .map(str::trim)
        .filter(|term| !term.is_empty())
    {
        let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
            (field, value, false)
        } else if let Some((field, value)) = term.split_once("==").or_else(|| term.split_once('='))
        {
            (field, value, true)
        } else {
            return Err(format!(
                "invalid selector: '{selector}'; can't understand '{term}'"
            ));
        };
        let field = field.trim();
        let known = ["metadata.name", "metadata.namespace"].contains(&field)
            || supported_fields(ty).contains(&field);
        if !known {
            return Err(format!("field label not supported: {field}"));
        }
        requirements.push(FieldRequirement {
            path: field.split('.').map(str::to_owned).collect(),
            value: value.trim().to_owned(),
            equal,
        });
    }
    Ok(requirements)
}

// ---------------------------------------------------------------------------
// Rendering objects, lists and Status bodies
// ---------------------------------------------------------------------------

/// Full objects, or `PartialObjectMetadata` when the client asked for
/// metadata only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Render {
    Full,
    Metadata,
}

impl Render {
    fn from_accept(headers: &HeaderMap) -> Render {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("as=PartialObjectMetadata") {
            Render::Metadata
        } else {
            Render::Full
        }
    }

    /// The object as GET and WATCH return it.
    fn object(self, object: &Value) -> Value {
        match self {
            Render::Full => object.clone(),
            Render::Metadata => json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": object["metadata"],
            }),
        }
    }

    /// The object as a LIST item: a real server leaves `apiVersion` and
    /// `kind` off typed list items (metadata-only items keep theirs).
    fn list_item(self, object: &Value) -> Value {
        let mut item = self.object(object);
        if self == Render::Full {
            if let Some(map) = item.as_object_mut() {
                map.remove("apiVersion");
                map.remove("kind");
            }
        }
        item
    }

    fn list_type(self, ty: &ResourceType) -> (String, String) {
        match self {
            Render::Full => (ty.api_version.clone(), format!("{}List", ty.kind)),
            Render::Metadata => (
                "meta.k8s.io/v1".to_owned(),
                "PartialObjectMetadataList".to_owned(),
            ),
        }
    }

    fn bookmark(self, ty: &ResourceType, rv: u64, annotations: Option<Value>) -> Value {
        let (api_version, kind) = match self {
            Render::Full => (ty.api_version.as_str(), ty.kind.as_str()),
            Render::Metadata => ("meta.k8s.io/v1", "PartialObjectMetadata"),
        };
        let mut metadata = json!({ "resourceVersion": rv.to_string(), "creationTimestamp": null });
        if let Some(annotations) = annotations {
            metadata["annotations"] = annotations;
        }
        json!({
            "type": "BOOKMARK",
            "object": { "apiVersion": api_version, "kind": kind, "metadata": metadata },
        })
    }
}

/// An error response: a `metav1.Status` body.
#[derive(Debug)]
struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: json!({}),
        }
    }

    fn details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    fn not_found_path() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }

    /// 410 for a resourceVersion older than the compaction point.
    fn too_old(requested: u64, oldest: u64) -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// What the real server answers when asked for a resourceVersion it has
    /// not reached (it waits a few seconds first; this answers at once).
    fn too_large(requested: u64, current: u64) -> ApiError {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        )
        .details(json!({
            "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }],
            "retryAfterSeconds": 1,
        }))
    }

    fn forbidden(ty: &ResourceType, verb: &str, namespace: Option<&str>) -> ApiError {
        let scope = match namespace {
            Some(namespace) => format!("in the namespace \"{namespace}\""),
            None => "at the cluster scope".to_owned(),
        };
        let message = format!(
            "{} is forbidden: User \"{FORBIDDEN_USER}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
            ty.qualified_name(),
            ty.key.plural,
            ty.key.group,
        );
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message)
            .details(json!({ "group": ty.key.group, "kind": ty.key.plural }))
    }

    fn status_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code.as_u16(),
        });
        // Like the real server (`omitempty`): an expired watch's Status,
        // for one, has no details at all.
        if self.details.as_object().is_some_and(|d| d.is_empty()) {
            status.as_object_mut().map(|s| s.remove("details"));
        }
        status
    }

    fn into_response(self) -> Response {
        json_response(self.code, &self.status_json())
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("serialize a response body");
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .expect("a response from a status, one header and a body")
}

// ---------------------------------------------------------------------------
// HTTP: routing
// ---------------------------------------------------------------------------

type Shared = Arc<Mutex<State>>;

/// What a resource URL names.
struct Target {
    ty: ResourceType,
    /// From `/namespaces/{ns}/…`; `None` for all namespaces or cluster scope.
    namespace: Option<String>,
    /// Set for a single object.
    name: Option<String>,
}

/// The only handler: records the request, then routes by path. Routing by
/// hand (rather than axum routes) keeps the Kubernetes URL grammar in one
/// place.
async fn handle(
    AxumState(state): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query().unwrap_or(""));
    lock(&state).requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.clone(),
        accept: headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let mut gate = lock(&state).gate.subscribe();
    // The sender lives as long as the state, so this only ends when resumed.
    let _ = gate.wait_for(|paused| !paused).await;
    let params = Params(query);
    let result = match method {
        Method::GET => route(&state, uri.path(), &params, Render::from_accept(&headers)),
        Method::POST | Method::PUT => write(&state, &method, uri.path(), &body),
        _ => Err(read_only(&method)),
    };
    result.unwrap_or_else(ApiError::into_response)
}

fn read_only(method: &Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("the test API server is read-only; {method} is not supported"),
    )
}

/// Serves a write: `POST` to a collection (create) or `PUT` to one object
/// (replace) of a writable type; any other write answers 405.
fn write(state: &Shared, method: &Method, path: &str, body: &[u8]) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Err(read_only(method)),
    };
    let mut guard = lock(state);
    let target = resolve(&guard, group, version, rest)?;
    if !guard.collections[&target.ty.key].writable {
        return Err(read_only(method));
    }
    let mut object: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?;
    if !object.is_object() || !object["metadata"].is_object() {
        return Err(ApiError::bad_request(
            "the request body is not an object with metadata",
        ));
    }
    for (field, expected) in [
        ("kind", &target.ty.kind),
        ("apiVersion", &target.ty.api_version),
    ] {
        match object[field].as_str() {
            None | Some("") => object[field] = json!(expected),
            Some(given) if given == expected => {}
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "{field} {given:?} does not match the expected {expected:?}"
                )))
            }
        }
    }
    let namespace = target.namespace.as_deref();
    if let (Some(url), Some(body)) = (namespace, object["metadata"]["namespace"].as_str()) {
        if url != body && !body.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let resource = target.ty.qualified_name();
    match (method, &target.name) {
        (&Method::POST, None) => {
            check_allowed(&guard, &target, "create")?;
            let Some(name) = object["metadata"]["name"]
                .as_str()
                .filter(|n| !n.is_empty())
            else {
                return Err(ApiError::invalid(format!(
                    "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    target.ty.kind
                )));
            };
            let name = name.to_owned();
            if object["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|rv| !rv.is_empty())
            {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "resourceVersion should not be set on objects to be created",
                ));
            }
            let key = State::object_key(&target.ty, namespace, &name);
            if guard.collections[&target.ty.key].current(&key).is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{resource} \"{name}\" already exists"),
                )
                .details(status_details(&target.ty, &name)));
            }
            let metadata = object["metadata"].as_object_mut().expect("checked above");
            metadata.insert("namespace".into(), json!(key.namespace));
            metadata.remove("uid");
            metadata.remove("creationTimestamp");
            let stored = guard.apply(target.ty.clone(), object);
            Ok(json_response(StatusCode::CREATED, &stored))
        }
        (&Method::PUT, Some(name)) => {
            check_allowed(&guard, &target, "update")?;
            let given = object["metadata"]["name"].as_str().unwrap_or("");
            if given != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )));
            }
            let key = State::object_key(&target.ty, namespace, name);
            let Some(current) = guard.collections[&target.ty.key].current(&key) else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{resource} \"{name}\" not found"),
                )
                .details(status_details(&target.ty, name)));
            };
            let conflict = |message: String| {
                ApiError::new(StatusCode::CONFLICT, "Conflict", message)
                    .details(status_details(&target.ty, name))
            };
            let current_rv = current["metadata"]["resourceVersion"].clone();
            let given_rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
            // An update without resourceVersion is unconditional, as the
            // real server allows for leases.
            if !given_rv.is_empty() && current_rv.as_str() != Some(given_rv) {
                return Err(conflict(format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                )));
            }
            let current_uid = current["metadata"]["uid"].clone();
            if let Some(uid) = object["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
                if current_uid.as_str() != Some(uid) {
                    return Err(conflict(format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        current_uid.as_str().unwrap_or("")
                    )));
                }
            }
            let created = current["metadata"]["creationTimestamp"].clone();
            let metadata = object["metadata"].as_object_mut().expect("checked above");
            metadata.insert("namespace".into(), json!(key.namespace));
            metadata.insert("uid".into(), current_uid);
            metadata.insert("creationTimestamp".into(), created);
            let stored = guard.apply(target.ty.clone(), object);
            Ok(json_response(StatusCode::OK, &stored))
        }
        _ => Err(read_only(method)),
    }
}

/// The `details` of a Status about one object.
fn status_details(ty: &ResourceType, name: &str) -> Value {
    json!({ "name": name, "group": ty.key.group, "kind": ty.key.plural })
}

fn route(
    state: &Shared,
    path: &str,
    params: &Params,
    render: Render,
) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(json_response(StatusCode::OK, &version_info())),
        ["api"] => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({ "kind": "APIVersions", "versions": ["v1"] }),
            ))
        }
        ["apis"] => return Ok(json_response(StatusCode::OK, &api_group_list(&lock(state)))),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::not_found_path()),
    };
    let served = lock(state)
        .collections
        .keys()
        .any(|key| key.group == group && key.version == version);
    if !served {
        // No handler at all for a group/version that is not served (a CRD
        // not installed, or deleted): kube-apiserver's mux answers in plain
        // text, not with a Status.
        return Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("404 page not found\n"))
            .expect("a plain-text response"));
    }
    if rest.is_empty() {
        return api_resource_list(&lock(state), group, version)
            .map(|body| json_response(StatusCode::OK, &body));
    }
    let target = resolve(&lock(state), group, version, rest)?;
    match (&target.name, is_true(params.get("watch"))) {
        (Some(_), _) => get_object(state, &target, render),
        (None, true) => watch(state, &target, params, render),
        (None, false) => list(state, &target, params, render),
    }
}

/// Maps the part after `/api/v1` or `/apis/{group}/{version}` to a target.
fn resolve(state: &State, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let (namespace, plural, name) = match rest {
        ["namespaces", namespace, plural] => (Some(*namespace), *plural, None),
        ["namespaces", namespace, plural, name] => (Some(*namespace), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return Err(ApiError::not_found_path()),
    };
    let ty = state
        .find_type(group, version, plural)
        .ok_or_else(ApiError::not_found_path)?
        .clone();
    // A namespaced path for a cluster-scoped type, or a namespaced object
    // without its namespace, is no URL a real server serves.
    if (namespace.is_some() && !ty.namespaced)
        || (name.is_some() && namespace.is_none() && ty.namespaced)
    {
        return Err(ApiError::not_found_path());
    }
    Ok(Target {
        ty,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

/// Query parameters, decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A parameter that must parse as a number when present.
    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(name).filter(|value| !value.is_empty()) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid {name} {value:?}: not a number"))
            }),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding; reqwest's `Url` already
/// implements it (axum's `Query` extractor is not enabled in this project).
fn parse_query(query: &str) -> Vec<(String, String)> {
    match reqwest::Url::parse(&format!("http://localhost/?{query}")) {
        Ok(url) => url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn is_true(value: Option<&str>) -> bool {
    matches!(value, Some("true") | Some("1"))
}

/// The selectors and namespace of a LIST or WATCH.
fn filter_for(target: &Target, params: &Params) -> Result<Filter, ApiError> {
    let labels = parse_label_selector(params.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = parse_field_selector(params.get("fieldSelector").unwrap_or(""), &target.ty)
        .map_err(|e| {
            ApiError::bad_request(format!(
                "Unable to find {:?} that match label selector {:?}, field selector {:?}: {e}",
                target.ty.qualified_name(),
                params.get("labelSelector").unwrap_or(""),
                params.get("fieldSelector").unwrap_or(""),
            ))
        })?;
    Ok(Filter {
        namespace: target.namespace.clone(),
        labels,
        fields,
    })
}

fn check_allowed(state: &State, target: &Target, verb: &str) -> Result<(), ApiError> {
    let now = tokio::time::Instant::now();
    let forbidden = state
        .collections
        .get(&target.ty.key)
        .is_some_and(|c| c.forbidden || c.forbidden_until.is_some_and(|until| now < until))
        || verb_denied(state, target, verb);
    if forbidden {
        return Err(ApiError::forbidden(
            &target.ty,
            verb,
            target.namespace.as_deref(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// HTTP: GET and LIST
// ---------------------------------------------------------------------------

fn get_object(state: &Shared, target: &Target, render: Render) -> Result<Response, ApiError> {
    let state = lock(state);
    check_allowed(&state, target, "get")?;
    let name = target.name.as_deref().unwrap_or_default();
    let key = State::object_key(&target.ty, target.namespace.as_deref(), name);
    let object = state
        .collections
        .get(&target.ty.key)
        .and_then(|c| c.current(&key));
    match object {
        Some(object) => Ok(json_response(StatusCode::OK, &render.object(object))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", target.ty.qualified_name()),
        )
        .details(
            json!({ "name": name, "group": target.ty.key.group, "kind": target.ty.key.plural }),
        )),
    }
}

/// A continue token: the snapshot a paginated LIST is pinned to and the last
/// key already returned. Opaque to clients (hex of JSON).
struct ContinueToken {
    rv: u64,
    after: ObjectKey,
}

impl ContinueToken {
    fn encode(&self) -> String {
        let json =
            json!({ "rv": self.rv, "namespace": self.after.namespace, "name": self.after.name });
        hex::encode(json.to_string())
    }

    fn decode(token: &str) -> Option<ContinueToken> {
        let json: Value = serde_json::from_slice(&hex::decode(token).ok()?).ok()?;
        Some(ContinueToken {
            rv: json["rv"].as_u64()?,
            after: ObjectKey {
                namespace: json["namespace"].as_str()?.to_owned(),
                name: json["name"].as_str()?.to_owned(),
            },
        })
    }
}

/// Which snapshot a LIST reads, per the resourceVersion semantics of
/// <https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list>.
fn list_snapshot(state: &State, params: &Params) -> Result<(u64, Option<ObjectKey>), ApiError> {
    let rv_param = params.get("resourceVersion").unwrap_or("");
    let rv_match = params.get("resourceVersionMatch").unwrap_or("");
    if let Some(token) = params.get("continue").filter(|token| !token.is_empty()) {
        if !rv_param.is_empty() && rv_param != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let token = ContinueToken::decode(token).ok_or_else(|| {
            ApiError::bad_request(format!("continue key is not valid: {token:?}"))
        })?;
        if token.rv < state.compacted_rv {
            return Err(ApiError::new(
                StatusCode::GONE,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ));
        }
        return Ok((token.rv, Some(token.after)));
    }
    if !matches!(rv_match, "" | "NotOlderThan" | "Exact") {
        return Err(ApiError::invalid(format!(
            "resourceVersionMatch: Unsupported value: {rv_match:?}: supported values: \"Exact\", \"NotOlderThan\""
        )));
    }
    if rv_param.is_empty() {
        if !rv_match.is_empty() {
            return Err(ApiError::invalid(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        return Ok((state.rv, None)); // a consistent read of the latest state
    }
    if rv_param == "0" {
        if rv_match == "Exact" {
            return Err(ApiError::invalid(
                "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        return Ok((state.rv, None)); // "any": the latest will do
    }
    let requested: u64 = rv_param
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}")))?;
    if requested > state.rv {
        return Err(ApiError::too_large(requested, state.rv));
    }
    // Without a match, a limit makes the resourceVersion exact (legacy rule).
    let exact = rv_match == "Exact"
        || (rv_match.is_empty() && params.get("limit").is_some_and(|l| l != "0"));
    if !exact {
        return Ok((state.rv, None));
    }
    if requested < state.compacted_rv {
        return Err(ApiError::too_old(requested, state.compacted_rv));
    }
    Ok((requested, None))
}

fn list(
    state: &Shared,
    target: &Target,
    params: &Params,
    render: Render,
) -> Result<Response, ApiError> {
    let state = lock(state);
    check_allowed(&state, target, "list")?;
    let filter = filter_for(target, params)?;
    let (rv, after) = list_snapshot(&state, params)?;
    let limit = params
        .number::<usize>("limit")?
        .filter(|&limit| limit > 0)
        .map(|limit| state.max_page_size.map_or(limit, |cap| limit.min(cap)));

    let collection = &state.collections[&target.ty.key];
    let matching: Vec<(&ObjectKey, &Value)> = collection
        .snapshot(rv)
        .into_iter()
        .filter(|(key, _)| after.as_ref().is_none_or(|after| *key > after))
        .filter(|(_, object)| filter.matches(object))
        .collect();
    let page_len = limit.map_or(matching.len(), |limit| limit.min(matching.len()));
    let (page, remaining) = matching.split_at(page_len);

    let (api_version, kind) = render.list_type(&target.ty);
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some((last_key, _)) = page.last().filter(|_| !remaining.is_empty()) {
        let token = ContinueToken {
            rv,
            after: (*last_key).clone(),
        };
        metadata["continue"] = json!(token.encode());
        // The real server counts the rest only when no selector filters it.
        if !filter.has_selectors() {
            metadata["remainingItemCount"] = json!(remaining.len());
        }
    }
    let items: Vec<Value> = page
        .iter()
        .map(|(_, object)| render.list_item(object))
        .collect();
    let body =
        json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items });
    Ok(json_response(StatusCode::OK, &body))
}

// ---------------------------------------------------------------------------
// HTTP: WATCH
// ---------------------------------------------------------------------------

/// Everything a watch stream task needs.
struct WatchTask {
    state: Shared,
    ty: ResourceType,
    render: Render,
    bookmarks: bool,
    /// Bookmarks never report less than this (the watch's starting point).
    start_rv: u64,
    timeout: Option<Duration>,
    events: mpsc::UnboundedReceiver<Value>,
    out: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

fn watch(
    state: &Shared,
    target: &Target,
    params: &Params,
    render: Render,
) -> Result<Response, ApiError> {
    let send_initial_events = is_true(params.get("sendInitialEvents"));
    let bookmarks = is_true(params.get("allowWatchBookmarks"));
    let rv_param = params.get("resourceVersion").unwrap_or("");
    let rv_match = params.get("resourceVersionMatch").unwrap_or("");
    let timeout = params
        .number::<u64>("timeoutSeconds")?
        .map(Duration::from_secs);
    if send_initial_events && (rv_match != "NotOlderThan" || !bookmarks) {
        return Err(ApiError::invalid(
            "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true",
        ));
    }
    if !send_initial_events && !rv_match.is_empty() {
        return Err(ApiError::invalid(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }

    let mut guard = lock(state);
    check_allowed(&guard, target, "watch")?;
    let filter = filter_for(target, params)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let start_rv;
    if send_initial_events || rv_param.is_empty() || rv_param == "0" {
        // Start from the current state, sent as synthetic ADDED events.
        start_rv = guard.rv;
        let collection = &guard.collections[&target.ty.key];
        for (_, object) in collection.snapshot(start_rv) {
            if filter.matches(object) {
                let _ = tx.send(json!({ "type": "ADDED", "object": render.object(object) }));
            }
        }
        if send_initial_events {
            let end = json!({ "k8s.io/initial-events-end": "true" });
            let _ = tx.send(render.bookmark(&target.ty, start_rv, Some(end)));
        }
    } else {
        let requested: u64 = rv_param
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}")))?;
        if requested < guard.compacted_rv {
            // HTTP 200 and a single `ERROR` event holding a 410 Status, then
            // the end of the stream: what the real API server (watch cache)
            // does, and what kube-runtime's watcher re-lists on.
            let error = ApiError::too_old(requested, guard.compacted_rv);
            return Ok(single_event_stream(json!({
                "type": "ERROR",
                "object": error.status_json(),
            })));
        }
        // Replay what happened after the requested resourceVersion.
        start_rv = requested;
        for change in guard
            .log
            .iter()
            .filter(|c| c.rv > requested && c.resource == target.ty.key)
        {
            if let Some(event) = watch_event(change, &filter, render) {
                let _ = tx.send(event);
            }
        }
    }
    guard.watches.push(Subscription {
        resource: target.ty.key.clone(),
        filter,
        render,
        events: tx,
    });
    drop(guard);

    let (out, body) = mpsc::channel(64);
    tokio::spawn(run_watch(WatchTask {
        state: state.clone(),
        ty: target.ty.clone(),
        render,
        bookmarks,
        start_rv,
        timeout,
        events: rx,
        out,
    }));
    Ok(stream_response(body))
}

/// A 200 response streaming newline-delimited JSON (chunked, since it has no
/// length).
fn stream_response(body: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Response {
    let stream = futures::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|chunk| (chunk, body))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a streaming response")
}

fn single_event_stream(event: Value) -> Response {
    let (out, body) = mpsc::channel(1);
    out.try_send(Ok(event_line(&event)))
        .expect("a fresh channel has room for one event");
    stream_response(body)
}

fn event_line(event: &Value) -> Bytes {
    let mut line = serde_json::to_vec(event).expect("serialize a watch event");
    line.push(b'\n');
    Bytes::from(line)
}

/// Streams a watch until it is closed ([`KubeApi::close_watches`]), times out
/// (`timeoutSeconds`), or the client goes away.
async fn run_watch(mut task: WatchTask) {
    // The first tick fires at once: that is the bookmark after the initial
    // events.
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout_after = task.timeout;
    let timeout = async move {
        match timeout_after {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            biased;
            _ = task.out.closed() => return,
            event = task.events.recv() => match event {
                Some(event) => {
                    if !task.send(&event).await {
                        return;
                    }
                }
                None => return,
            },
            _ = ticker.tick(), if task.bookmarks => {
                if !task.send_pending_and_bookmark().await {
                    return;
                }
            }
            _ = &mut timeout => return,
        }
    }
}

impl WatchTask {
    /// Sends one event; false once the client is gone.
    async fn send(&self, event: &Value) -> bool {
        self.out.send(Ok(event_line(event))).await.is_ok()
    }

    /// Sends every queued event and then a bookmark. Queued events are taken
    /// under the store lock, where writes are published, so the bookmark's
    /// resourceVersion never gets ahead of an unsent event. False once the
    /// stream is over.
    async fn send_pending_and_bookmark(&mut self) -> bool {
        let mut pending = Vec::new();
        let mut closed = false;
        let rv = {
            let state = lock(&self.state);
            loop {
                match self.events.try_recv() {
                    Ok(event) => pending.push(event),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            // Like the watch cache: bookmarks follow this resource's own
            // writes, not writes elsewhere in the cluster.
            let last_rv = state.collections.get(&self.ty.key).map_or(0, |c| c.last_rv);
            self.start_rv.max(last_rv)
        };
        for event in &pending {
            if !self.send(event).await {
                return false;
            }
        }
        !closed && self.send(&self.render.bookmark(&self.ty, rv, None)).await
    }
}

// ---------------------------------------------------------------------------
// HTTP: discovery
// ---------------------------------------------------------------------------

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn api_group_list(state: &State) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for key in state.collections.keys().filter(|key| !key.group.is_empty()) {
        let versions = groups.entry(key.group.as_str()).or_default();
        if !versions.contains(&key.version.as_str()) {
            versions.push(key.version.as_str());
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|version| json!({ "groupVersion": format!("{group}/{version}"), "version": version }))
                .collect();
            json!({ "name": group, "versions": versions, "preferredVersion": versions[0] })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn api_resource_list(state: &State, group: &str, version: &str) -> Result<Value, ApiError> {
    let resources: Vec<Value> = state
        .collections
        .values()
        .map(|collection| &collection.ty)
        .filter(|ty| ty.key.group == group && ty.key.version == version)
        .flat_map(|ty| {
            let writable = state.collections[&ty.key].writable;
            let verbs = if writable {
                json!(["create", "get", "list", "update", "watch"])
            } else {
                json!(["get", "list", "watch"])
            };
            let mut resource = json!({
                "name": ty.key.plural,
                "singularName": ty.kind.to_lowercase(),
                "namespaced": ty.namespaced,
                "kind": ty.kind,
                "verbs": verbs,
            });
            // A CRD with a status subresource, listed first as
            // kube-apiserver may: a client must tell it from the resource.
            let status = ty.custom.then(|| {
                resource["categories"] = json!(["all"]);
                resource["storageVersionHash"] = json!(hex::encode(&ty.key.plural));
                json!({
                    "name": format!("{}/status", ty.key.plural),
                    "singularName": "",
                    "namespaced": ty.namespaced,
                    "kind": ty.kind,
                    "verbs": ["get", "patch", "update"],
                })
            });
            status.into_iter().chain(std::iter::once(resource))
        })
        .collect();
    if resources.is_empty() {
        return Err(ApiError::not_found_path());
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Ok(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    )
}

// ---------------------------------------------------------------------------
// Custom resources
// ---------------------------------------------------------------------------

/// A CustomResourceDefinition as the server serves it once installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crd {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Crd {
    /// The `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// The CRDs of the pusher's presets, as their projects define them.
pub const ARGO_ROLLOUT: Crd = Crd {
    group: "argoproj.io",
    version: "v1alpha1",
    kind: "Rollout",
    plural: "rollouts",
    namespaced: true,
};
pub const KNATIVE_SERVICE: Crd = Crd {
    group: "serving.knative.dev",
    version: "v1",
    kind: "Service",
    plural: "services",
    namespaced: true,
};
pub const KEDA_SCALED_JOB: Crd = Crd {
    group: "keda.sh",
    version: "v1alpha1",
    kind: "ScaledJob",
    plural: "scaledjobs",
    namespaced: true,
};
pub const KRUISE_CLONE_SET: Crd = Crd {
    group: "apps.kruise.io",
    version: "v1alpha1",
    kind: "CloneSet",
    plural: "clonesets",
    namespaced: true,
};

impl KubeApi {
    /// Installs a CRD, at start-up or at any time later (as `kubectl apply`
    /// of a CRD would): from then on `/apis` lists its group,
    /// `/apis/{group}/{version}` its resource (and `status` subresource),
    /// and its objects can be applied, listed and watched.
    pub fn install_crd(&self, crd: Crd) {
        self.lock().register(ResourceType::crd(&crd));
    }

    /// Deletes a CRD as kube-apiserver does: its objects are deleted
    /// (watches get DELETED), then its watches end and its group and
    /// version leave discovery, so requests for it answer 404.
    pub fn uninstall_crd(&self, crd: Crd) {
        let ty = ResourceType::crd(&crd);
        let mut state = self.lock();
        let live: Vec<ObjectKey> = state
            .collections
            .get(&ty.key)
            .map(|c| {
                c.snapshot(state.rv)
                    .into_iter()
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        for key in live {
            let namespace = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
            state.delete(ty.clone(), namespace, &key.name);
        }
        state.collections.remove(&ty.key);
        state.watches.retain(|watch| watch.resource != ty.key);
    }

    /// Creates or replaces a custom object, found by its `apiVersion` and
    /// `kind` among the installed CRDs (panics if none matches), as
    /// [`KubeApi::apply`] does for typed objects.
    pub fn apply_custom(&self, object: serde_json::Value) {
        let mut state = self.lock();
        let ty = state
            .collections
            .values()
            .map(|c| &c.ty)
            .find(|ty| {
                ty.custom
                    && object["apiVersion"].as_str() == Some(ty.api_version.as_str())
                    && object["kind"].as_str() == Some(ty.kind.as_str())
            })
            .unwrap_or_else(|| {
                panic!(
                    "apply_custom of {} {}: no such CRD installed",
                    object["apiVersion"], object["kind"]
                )
            })
            .clone();
        state.apply(ty, object);
    }

    /// Deletes a custom object (see [`KubeApi::delete`]).
    pub fn delete_custom(&self, crd: Crd, namespace: Option<&str>, name: &str) {
        self.lock().delete(ResourceType::crd(&crd), namespace, name);
    }

    /// Number of watch streams of `crd`'s objects currently open.
    pub fn open_custom_watches(&self, crd: Crd) -> usize {
        let key = ResourceType::crd(&crd).key;
        let mut state = self.lock();
        state.watches.retain(|watch| !watch.events.is_closed());
        state
            .watches
            .iter()
            .filter(|watch| watch.resource == key)
            .count()
    }
}

// ---------------------------------------------------------------------------
// RBAC per verb
// ---------------------------------------------------------------------------

impl KubeApi {
    /// Makes `verb` (get, list, watch, create or update) on `K` answer 403
    /// Forbidden while the other verbs go on working, as a Role that lacks
    /// one verb does.
    pub fn forbid_verb<K: k8s_openapi::Resource>(&self, verb: &str) {
        let key = ResourceType::of::<K>().key;
        self.lock().denied_verbs.insert((key, verb.to_owned()));
    }

    /// Undoes [`KubeApi::forbid_verb`].
    pub fn allow_verb<K: k8s_openapi::Resource>(&self, verb: &str) {
        let key = ResourceType::of::<K>().key;
        self.lock().denied_verbs.remove(&(key, verb.to_owned()));
    }
}

fn verb_denied(state: &State, target: &Target, verb: &str) -> bool {
    state
        .denied_verbs
        .contains(&(target.ty.key.clone(), verb.to_owned()))
}
