//! A stand-in for a registry with the OCI 1.1 referrers API, which
//! Debian's distribution 2.8 lacks: a proxy in front of a real
//! [`Registry`](super::registry::Registry) that answers
//! `GET /v2/<name>/referrers/<digest>` itself, from the artifacts a test
//! attached, and passes every other request through to the registry (so
//! manifests, blobs and tag lists are the real registry's).
//!
//! As the distribution spec says: an image index of the artifacts'
//! descriptors (200 with an empty index for a subject nothing refers to),
//! `page_size` entries per page and a `Link: <…>; rel="next"` header while
//! more remain, and the `artifactType` filter applied and announced with
//! `OCI-Filters-Applied: artifactType`.
//!
//! [`ReferrersApi::without_api`] answers referrers requests 404 as
//! distribution 2.8 does: a counting proxy, for tests of how often a
//! registry without the API is asked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct Inner {
    /// `repository@subject` → descriptors of the artifacts referring to it.
    referrers: HashMap<String, Vec<Value>>,
    /// Path and query of every referrers request, in order.
    requests: Vec<String>,
    /// Path and query of every request passed to the registry, in order.
    proxied: Vec<String>,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    page_size: usize,
    /// Whether the referrers API is served (else 404, as distribution 2.8).
    api: bool,
    http: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
}

/// The stand-in; dropping it leaves its task serving until the test ends.
pub struct ReferrersApi {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl ReferrersApi {
    /// Serves on a free loopback port in front of the registry at
    /// `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, page_size: usize) -> ReferrersApi {
        ReferrersApi::launch(upstream, page_size, true).await
    }

    /// A proxy that answers referrers requests 404, as a registry without
    /// the API does, and records every request.
    pub async fn without_api(upstream: &str) -> ReferrersApi {
        ReferrersApi::launch(upstream, 1, false).await
    }

    async fn launch(upstream: &str, page_size: usize, api: bool) -> ReferrersApi {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = Shared {
            upstream: upstream.to_owned(),
            page_size: page_size.max(1),
            api,
            http: reqwest::Client::new(),
            inner: inner.clone(),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener has an address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("stand-in serves") });
        ReferrersApi { addr, inner }
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Lists the artifact `descriptor` (with its `artifactType`, as a
    /// registry copies it from the manifest) as a referrer of `subject`.
    pub fn attach(&self, repository: &str, subject: &str, descriptor: Value) {
        self.inner
            .lock()
            .unwrap()
            .referrers
            .entry(format!("{repository}@{subject}"))
            .or_default()
            .push(descriptor);
    }

    /// Path and query of every referrers request so far (answered or not).
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Path and query of every request passed to the registry so far.
    pub fn proxied(&self) -> Vec<String> {
        self.inner.lock().unwrap().proxied.clone()
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if let Some((repository, subject)) = path
        .strip_prefix("/v2/")
        .and_then(|rest| rest.rsplit_once("/referrers/"))
    {
        if method == Method::GET {
            return referrers(&shared, &uri, repository, subject);
        }
    }
    proxy(&shared, method, &uri, &headers, body).await
}

fn referrers(shared: &Shared, uri: &Uri, repository: &str, subject: &str) -> Response {
    if !shared.api {
        shared.inner.lock().unwrap().requests.push(uri.to_string());
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2B", "+").replace("%2F", "/")))
        .collect();
    let mut inner = shared.inner.lock().unwrap();
    inner.requests.push(uri.to_string());
    let all = inner
        .referrers
        .get(&format!("{repository}@{subject}"))
        .cloned()
        .unwrap_or_default();
    let filter = query.get("artifactType");
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|d| filter.is_none_or(|t| d["artifactType"].as_str() == Some(t)))
        .collect();
    let start: usize = query.get("last").and_then(|l| l.parse().ok()).unwrap_or(0);
    let end = (start + shared.page_size).min(matching.len());
    let page = matching.get(start..end).unwrap_or_default().to_vec();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": page,
    });
    let mut response = (
        StatusCode::OK,
        [("content-type", "application/vnd.oci.image.index.v1+json")],
        index.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    if end < matching.len() {
        let mut next = format!("/v2/{repository}/referrers/{subject}?last={end}");
        if let Some(filter) = filter {
            next.push_str(&format!("&artifactType={filter}"));
        }
        headers.insert(
            "link",
            HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")).unwrap(),
        );
    }
    if filter.is_some() {
        headers.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    response
}

async fn proxy(
    shared: &Shared,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    shared.inner.lock().unwrap().proxied.push(path.to_owned());
    let mut request = shared
        .http
        .request(method, format!("{}{path}", shared.upstream))
        .body(body.to_vec());
    for name in ["accept", "content-type", "authorization"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(upstream) => upstream,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = upstream.status();
    let mut copied = HeaderMap::new();
    for name in ["content-type", "docker-content-digest", "link", "location"] {
        if let Some(value) = upstream.headers().get(name) {
            copied.insert(name, value.clone());
        }
    }
    let body = upstream.bytes().await.unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().extend(copied);
    response
}
