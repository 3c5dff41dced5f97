//! The resolver against real registries: Debian's `docker-registry` for
//! caching and platform behaviour (requests counted from its access log),
//! and a hostile registry of our own for every way a registry can misbehave.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use container_image_pusher::image_facts::ErrorClass;
use container_image_pusher::registry::Metrics;
use container_image_pusher::registry::{Platform, Resolver, ResolverConfig};
use support::receiver::{has, label};
use support::{
    push_attestation, push_image, push_index, wait_for_async, wait_until_async, Format, ImageSpec,
    IndexEntry, Registry,
};

fn resolver(
    insecure: &str,
    cache: Duration,
    platform: &str,
    timeout: Duration,
) -> (Resolver, Metrics) {
    resolver_for(&[insecure], cache, platform, timeout)
}

fn resolver_for(
    insecure: &[&str],
    cache: Duration,
    platform: &str,
    timeout: Duration,
) -> (Resolver, Metrics) {
    let metrics = Metrics::new(&prometheus::Registry::new());
    let config = ResolverConfig {
        platform: platform.parse::<Platform>().unwrap(),
        cache_duration: cache,
        error_cache_duration: cache,
        insecure_registries: insecure.iter().map(|h| h.to_string()).collect(),
        timeout,
        registry_concurrency: 10,
        registry_rps: 1000.0,
        image_limits: Default::default(),
        referrers: false,
        referrers_cache_duration: cache,
        image_filter: Default::default(),
        verify: Default::default(),
        versions: None,
        disk_cache: None,
    };
    (
        Resolver::new(config, metrics.clone()).expect("the registry HTTP client builds"),
        metrics,
    )
}

#[tokio::test]
async fn one_request_per_tag_per_cache_period_and_none_for_pinned_digests() {
    let registry = Registry::start().await;
    let image = push_image(
        &registry,
        "apps/a",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .created("2024-01-01T00:00:00Z")
            .layer(vec![1; 10]),
    )
    .await;
    let host = registry.host();
    let (resolver, metrics) = resolver(
        &host,
        Duration::from_secs(2),
        "linux/amd64",
        Duration::from_secs(10),
    );
    let reference = format!("{host}/apps/a:1");

    // Twenty concurrent lookups of one tag: single flight.
    let cached = Instant::now();
    let results =
        futures::future::join_all((0..20).map(|_| resolver.resolve(&reference, &[]))).await;
    for result in &results {
        assert_eq!(result.as_ref().expect("resolves").digest, image.digest);
    }
    // Cold: one GET by tag gives the digest and the manifest, no HEAD.
    let manifest_by_digest = format!("/v2/apps/a/manifests/{}", image.digest);
    assert_eq!(
        registry.requests("GET", "/v2/apps/a/manifests/1"),
        1,
        "{}",
        registry.logs()
    );
    assert_eq!(registry.requests("HEAD", "/v2/apps/a/manifests/"), 0);
    assert_eq!(registry.requests("GET", &manifest_by_digest), 0);
    assert_eq!(
        registry.requests("GET", "/v2/apps/a/blobs/"),
        1,
        "config fetched once"
    );

    // Pinned by digest: no request at all, the metadata is cached by digest.
    let pinned = resolver
        .resolve(&format!("{host}/apps/a@{}", image.digest), &[])
        .await
        .unwrap();
    assert_eq!(pinned.digest, image.digest);
    assert_eq!(registry.requests("HEAD", "/v2/apps/a/manifests/"), 0);
    assert_eq!(registry.requests("GET", "/v2/apps/a/manifests/"), 1);

    // After the cache period: one HEAD, no GET, same answer. Resolved
    // until the tag is checked again (from the cache until then).
    let checked_again = wait_until_async(Duration::from_secs(20), async || {
        let resolved = resolver.resolve(&reference, &[]).await.unwrap();
        assert_eq!(resolved.digest, image.digest);
        registry.requests("HEAD", "/v2/apps/a/manifests/1") > 0
    })
    .await;
    assert!(checked_again, "never checked again:\n{}", registry.logs());
    assert!(
        cached.elapsed() >= Duration::from_secs(2),
        "checked again within the cache period"
    );
    assert_eq!(registry.requests("HEAD", "/v2/apps/a/manifests/1"), 1);
    assert_eq!(
        registry.requests("GET", "/v2/apps/a/manifests/"),
        1,
        "no second manifest GET"
    );
    assert_eq!(
        registry.requests("GET", "/v2/apps/a/blobs/"),
        1,
        "no second config GET"
    );
    let requests = |method: &str| {
        metrics
            .requests
            .with_label_values(&[&host, method, "200"])
            .get()
    };
    assert_eq!(
        (requests("HEAD"), requests("GET")),
        (1, 2),
        "counted by host, method and status"
    );
    let hits = metrics
        .cache_lookups
        .with_label_values(&["metadata", "hit"])
        .get();
    assert!(hits >= 20, "metadata cache hits: {hits}");
}

#[tokio::test]
async fn failures_are_remembered_for_the_error_cache_duration() {
    let registry = Registry::start().await;
    let host = registry.host();
    let (resolver, metrics) = resolver(
        &host,
        Duration::from_secs(1),
        "linux/amd64",
        Duration::from_secs(10),
    );
    let missing = format!("{host}/apps/missing:1");
    let remembered = Instant::now();
    for _ in 0..3 {
        let err = resolver.resolve(&missing, &[]).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::NotFound, "{err}");
        assert!(
            err.message.contains("apps/missing:1"),
            "the error names the image: {err}"
        );
    }
    assert_eq!(registry.requests("GET", "/v2/apps/missing/manifests/1"), 1);
    // Resolved until the registry is asked again (remembered until then).
    let mut resolves = 3;
    let asked_again = wait_until_async(Duration::from_secs(20), async || {
        resolver.resolve(&missing, &[]).await.unwrap_err();
        resolves += 1;
        registry.requests("GET", "/v2/apps/missing/manifests/1") > 1
    })
    .await;
    assert!(asked_again, "never asked again:\n{}", registry.logs());
    assert!(
        remembered.elapsed() >= Duration::from_secs(1),
        "asked again within the error cache duration"
    );
    assert_eq!(registry.requests("GET", "/v2/apps/missing/manifests/1"), 2);
    assert_eq!(
        metrics
            .resolve_failures
            .with_label_values(&["not_found"])
            .get(),
        resolves,
        "every failed resolve counted, remembered or not"
    );

    let invalid = resolver
        .resolve(&format!("{host}/Apps/UPPER:1"), &[])
        .await
        .unwrap_err();
    assert_eq!(invalid.class, ErrorClass::InvalidReference);
}

#[tokio::test]
async fn multi_arch_indexes_resolve_to_one_platform() {
    let registry = Registry::start().await;
    let host = registry.host();
    let amd64 = push_image(
        &registry,
        "apps/multi",
        None,
        &ImageSpec::oci("linux", "amd64")
            .label("arch", "amd64")
            .layer(vec![1; 100]),
    )
    .await;
    let arm64 = push_image(
        &registry,
        "apps/multi",
        None,
        &ImageSpec::oci("linux", "arm64")
            .variant("v8")
            .label("arch", "arm64")
            .layer(vec![2; 300]),
    )
    .await;
    let attestation = push_attestation(&registry, "apps/multi", &amd64.digest).await;
    let index = push_index(
        &registry,
        "apps/multi",
        "1",
        Format::Oci,
        vec![
            IndexEntry::Attestation {
                pushed: attestation,
                subject_digest: amd64.digest.clone(),
            },
            IndexEntry::image(&arm64, "linux", "arm64", Some("v8")),
            IndexEntry::image(&amd64, "linux", "amd64", None),
        ],
        BTreeMap::new(),
    )
    .await;
    let reference = format!("{host}/apps/multi:1");
    for (platform, want) in [
        ("linux/amd64", &amd64),
        ("linux/arm64", &arm64),
        ("linux/arm64/v8", &arm64),
        ("linux/s390x", &amd64),
    ] {
        let (resolver, _) = resolver(
            &host,
            Duration::from_secs(60),
            platform,
            Duration::from_secs(10),
        );
        let m = resolver.resolve(&reference, &[]).await.unwrap();
        assert_eq!(
            m.digest, index.digest,
            "the digest label is the index digest"
        );
        assert_eq!(m.size, want.image_size(), "{platform}");
        assert_eq!(
            m.labels.get("arch"),
            Some(if std::ptr::eq(want, &amd64) {
                "amd64"
            } else {
                "arm64"
            }),
            "{platform}"
        );
    }

    // A Docker manifest list works the same way.
    let docker = push_image(
        &registry,
        "apps/dlist",
        None,
        &ImageSpec::docker("linux", "amd64").layer(vec![3; 50]),
    )
    .await;
    push_index(
        &registry,
        "apps/dlist",
        "1",
        Format::Docker,
        vec![IndexEntry::image(&docker, "linux", "amd64", None)],
        BTreeMap::new(),
    )
    .await;
    let (resolver, _) = resolver(
        &host,
        Duration::from_secs(60),
        "linux/amd64",
        Duration::from_secs(10),
    );
    assert_eq!(
        resolver
            .resolve(&format!("{host}/apps/dlist:1"), &[])
            .await
            .unwrap()
            .size,
        docker.image_size()
    );
}

/// Serves whatever the test wants at /v2/{name}/manifests/{ref}: the
/// hostile registry.
async fn hostile_registry() -> String {
    async fn manifest(
        axum::extract::Path((name, reference)): axum::extract::Path<(String, String)>,
    ) -> axum::response::Response {
        let garbage = b"this is not a manifest".to_vec();
        let digest = |body: &[u8]| {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
        };
        let with_digest = |body: Vec<u8>| {
            let mut headers = HeaderMap::new();
            headers.insert("Docker-Content-Digest", digest(&body).parse().unwrap());
            headers.insert(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json"
                    .parse()
                    .unwrap(),
            );
            (StatusCode::OK, headers, body).into_response()
        };
        match name.as_str() {
            "garbage" => with_digest(garbage),
            // No Docker-Content-Digest: the digest comes from a GET instead.
            "undigested" => (StatusCode::OK, garbage).into_response(),
            // Whatever is asked for, the same manifest: wrong for any digest but its own.
            "substituted" => {
                let mut response = with_digest(garbage);
                response.headers_mut().insert("Docker-Content-Digest", format!("sha256:{}", "0".repeat(64)).parse().unwrap());
                response
            }
            "huge" => with_digest(vec![b'{'; 6 * 1024 * 1024]),
            "schema1" => with_digest(br#"{"schemaVersion":1,"name":"schema1","tag":"1","fsLayers":[]}"#.to_vec()),
            "attestations-only" => with_digest(
                serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
                    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:aaaa", "size": 1,
                     "platform": {"os": "unknown", "architecture": "unknown"}}]}))
                .unwrap(),
            ),
            "slow" => {
                // A registry that never answers in time: the sleep is the
                // behaviour under test, not a wait.
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK.into_response()
            }
            "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response(),
            "private" => (StatusCode::UNAUTHORIZED, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#).into_response(),
            "denied" => (StatusCode::FORBIDDEN, r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#).into_response(),
            _ => {
                let _ = reference;
                StatusCode::NOT_FOUND.into_response()
            }
        }
    }
    let app = Router::new().route("/v2/", get(|| async { "{}" })).route(
        "/v2/{name}/manifests/{reference}",
        get(manifest).head(manifest),
    );
    let host = support::process::serve(app).await.to_string();
    host
}

#[tokio::test]
async fn hostile_registries_yield_classified_errors_not_panics() {
    let host = hostile_registry().await;
    // Long enough for a HEAD and a GET on a loaded machine (2 s was not);
    // the slow registry sleeps far longer.
    let (resolver, metrics) = resolver(
        &host,
        Duration::from_secs(60),
        "linux/amd64",
        Duration::from_secs(6),
    );
    let garbage_digest = {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(b"this is not a manifest"))
        )
    };
    let cases = [
        (
            format!("{host}/garbage@{garbage_digest}"),
            ErrorClass::BadFormat,
            "not valid JSON",
        ),
        (
            format!("{host}/garbage:1"),
            ErrorClass::BadFormat,
            "not valid JSON",
        ),
        (
            format!("{host}/undigested:1"),
            ErrorClass::BadFormat,
            "not valid JSON",
        ),
        (
            format!("{host}/substituted:1"),
            ErrorClass::BadFormat,
            "whose digest is sha256:",
        ),
        (format!("{host}/huge:1"), ErrorClass::BadFormat, "larger"),
        (
            format!("{host}/schema1:1"),
            ErrorClass::BadFormat,
            "schema 1",
        ),
        (
            format!("{host}/attestations-only:1"),
            ErrorClass::BadFormat,
            "no image",
        ),
        (format!("{host}/slow:1"), ErrorClass::Timeout, ""),
        (format!("{host}/broken:1"), ErrorClass::Unavailable, "500"),
        (
            format!("{host}/private:1"),
            ErrorClass::Unauthorized,
            "anonymously",
        ),
        (format!("{host}/denied:1"), ErrorClass::Forbidden, "403"),
        (format!("{host}/nothing-here:1"), ErrorClass::NotFound, ""),
        (
            "127.0.0.1:1/refused:1".to_owned(),
            ErrorClass::Unavailable,
            "refused",
        ),
    ];
    // All at once: one slow registry must not hold up the others.
    let results = futures::future::join_all(
        cases
            .iter()
            .map(|(image, _, _)| resolver.resolve(image, &[])),
    )
    .await;
    for ((image, class, text), result) in cases.iter().zip(results) {
        let err = result.expect_err(image);
        assert_eq!(err.class, *class, "{image}: {err}");
        assert!(err.message.contains(text), "{image}: {err}");
    }
    assert_eq!(
        metrics
            .resolve_failures
            .with_label_values(&["bad_format"])
            .get(),
        7
    );
}

/// A registry of our own that counts what it is asked; `answer` decides.
async fn stand_in(
    answer: impl Fn(&axum::http::Request<axum::body::Body>, usize) -> axum::response::Response
        + Clone
        + Send
        + Sync
        + 'static,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    let app = Router::new().fallback(move |request: axum::http::Request<axum::body::Body>| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let response = answer(&request, n);
        async move { response }
    });
    let host = support::process::serve(app).await.to_string();
    (host, requests)
}

#[tokio::test]
async fn a_429_pauses_that_host_for_its_retry_after_and_no_other() {
    use std::sync::atomic::Ordering::SeqCst;
    // The first request gets 429 with Retry-After: 2, every later one 404.
    let (busy, busy_requests) = stand_in(|_, n| {
        if n == 0 {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", "2")],
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            )
                .into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    })
    .await;
    let (calm, calm_requests) = stand_in(|_, _| StatusCode::NOT_FOUND.into_response()).await;
    let (resolver, metrics) = resolver_for(
        &[&busy, &calm],
        Duration::from_secs(60),
        "linux/amd64",
        Duration::from_secs(5),
    );

    let err = resolver
        .resolve(&format!("{busy}/a:1"), &[])
        .await
        .unwrap_err();
    let paused = Instant::now();
    assert_eq!(err.class, ErrorClass::RateLimited, "{err}");
    assert!(
        err.message.contains("429") && err.message.contains("2s"),
        "{err}"
    );

    let err = resolver
        .resolve(&format!("{busy}/b:1"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::RateLimited, "{err}");
    assert!(err.message.contains("rate limiting"), "{err}");
    assert_eq!(busy_requests.load(SeqCst), 1, "no request during the pause");

    let err = resolver
        .resolve(&format!("{calm}/c:1"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.class,
        ErrorClass::NotFound,
        "another host is not paused: {err}"
    );
    assert_eq!(calm_requests.load(SeqCst), 1);

    // A new image of the busy host at each try (so no failure is
    // remembered), until the host is asked again.
    let mut tries = 0;
    let err = wait_for_async(Duration::from_secs(20), async || {
        tries += 1;
        let err = resolver
            .resolve(&format!("{busy}/d{tries}:1"), &[])
            .await
            .unwrap_err();
        (err.class != ErrorClass::RateLimited).then_some(err)
    })
    .await
    .expect("the busy host is asked again");
    assert!(
        paused.elapsed() >= Duration::from_millis(1500),
        "asked again {:?} after a Retry-After of 2 s",
        paused.elapsed()
    );
    assert_eq!(
        err.class,
        ErrorClass::NotFound,
        "asked again after Retry-After: {err}"
    );
    assert_eq!(busy_requests.load(SeqCst), 2);

    let requests = |code: &str| {
        metrics
            .requests
            .with_label_values(&[busy.as_str(), "GET", code])
            .get()
    };
    assert_eq!((requests("429"), requests("404")), (1, 1));
}

/// The `Authorization` header a stand-in was sent, or "".
fn authorization(request: &axum::http::Request<axum::body::Body>) -> &str {
    request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// An OCI image small enough to serve from a stand-in registry.
struct TinyImage {
    manifest: Vec<u8>,
    config: Vec<u8>,
    manifest_digest: String,
    config_digest: String,
}

impl TinyImage {
    fn new() -> Self {
        let digest = |body: &[u8]| support::sha256_digest(body);
        let config = br#"{"architecture":"amd64","os":"linux","created":"2026-01-02T03:04:05Z","config":{"Labels":{"team":"payments"}}}"#.to_vec();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(b"layer"), "size": 1000}]
        }))
        .unwrap();
        TinyImage {
            manifest_digest: digest(&manifest),
            config_digest: digest(&config),
            manifest,
            config,
        }
    }

    /// The image at `/v2/{repository}/…`, by tag `1` or `2` or by digest.
    fn serve(&self, repository: &str, path: &str) -> axum::response::Response {
        let oci = [
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
            ("Docker-Content-Digest", self.manifest_digest.as_str()),
        ];
        let manifests = format!("/v2/{repository}/manifests/");
        if let Some(reference) = path.strip_prefix(&manifests) {
            if ["1", "2", self.manifest_digest.as_str()].contains(&reference) {
                return (oci, self.manifest.clone()).into_response();
            }
        }
        if path == format!("/v2/{repository}/blobs/{}", self.config_digest) {
            return self.config.clone().into_response();
        }
        StatusCode::NOT_FOUND.into_response()
    }
}

#[tokio::test]
async fn a_redirect_to_a_mirror_answers_the_mirrors_challenge_without_our_login() {
    use std::sync::atomic::Ordering::SeqCst;
    let image = Arc::new(TinyImage::new());
    // The mirror wants a token for its own repository name, from its own
    // token server, and must never see the login meant for the registry.
    let leaked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mirror_host = Arc::new(std::sync::OnceLock::<String>::new());
    let (mirror, _) = stand_in({
        let (image, leaked, mirror_host) = (image.clone(), leaked.clone(), mirror_host.clone());
        move |request, _| {
            let path = request.uri().path();
            let authorization = authorization(request);
            if authorization.starts_with("Basic") {
                leaked.store(true, SeqCst);
            }
            if path == "/token" {
                let query = request.uri().query().unwrap_or("");
                assert!(
                    query.contains("scope=repository%3Aprod%2Fteam%2Fapp%3Apull"),
                    "{query}"
                );
                return r#"{"token":"mirror-token"}"#.into_response();
            }
            if authorization != "Bearer mirror-token" {
                let challenge = format!(
                    r#"Bearer realm="http://{}/token",service="mirror""#,
                    mirror_host.get().unwrap()
                );
                return (StatusCode::UNAUTHORIZED, [("WWW-Authenticate", challenge)])
                    .into_response();
            }
            image.serve("prod/team/app", path)
        }
    })
    .await;
    mirror_host.set(mirror.clone()).unwrap();
    let (registry, registry_requests) = stand_in({
        let mirror = mirror.clone();
        move |request, _| {
            let rest = request.uri().path().strip_prefix("/v2/").unwrap_or("");
            let location = format!("http://{mirror}/v2/prod/{rest}");
            (StatusCode::TEMPORARY_REDIRECT, [("Location", location)]).into_response()
        }
    })
    .await;
    let (resolver, _) = resolver_for(
        &[&registry, &mirror],
        Duration::from_secs(60),
        "linux/amd64",
        Duration::from_secs(5),
    );
    let login = container_image_pusher::credentials::Login {
        username: "alice".into(),
        password: "s3cret".into(),
        source: "secret shop/regcred".into(),
    };
    let resolved = resolver
        .resolve(&format!("{registry}/team/app:1"), &[&login])
        .await
        .expect("resolves through the mirror");
    assert_eq!(resolved.digest, image.manifest_digest);
    assert_eq!(resolved.labels.get("team"), Some("payments"));
    assert!(
        registry_requests.load(SeqCst) >= 2,
        "the manifest by tag and the config each asked the registry first"
    );
    assert!(
        !leaked.load(SeqCst),
        "the registry's login reached the mirror"
    );
}

#[tokio::test]
async fn bearer_tokens_from_the_registry_token_server() {
    use base64::Engine as _;
    use std::sync::atomic::Ordering::SeqCst;

    let image = Arc::new(TinyImage::new());
    let tokens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let host = Arc::new(std::sync::OnceLock::<String>::new());
    let (registry, _) = stand_in({
        let (tokens, host, image) = (tokens.clone(), host.clone(), image.clone());
        move |request, _| {
            let path = request.uri().path();
            let authorization = authorization(request);
            if path == "/token" {
                let login = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
                let query = request.uri().query().unwrap_or("");
                if authorization != format!("Basic {login}") {
                    return (
                        StatusCode::UNAUTHORIZED,
                        r#"{"details":"incorrect username or password"}"#,
                    )
                        .into_response();
                }
                assert!(
                    query.contains("scope=repository%3Ateam%2Fapp%3Apull"),
                    "{query}"
                );
                assert!(query.contains("service=stand-in"), "{query}");
                let n = tokens.fetch_add(1, SeqCst);
                return serde_json::json!({"token": format!("token-{n}"), "expires_in": 300})
                    .to_string()
                    .into_response();
            }
            if !authorization.starts_with("Bearer token-") {
                let challenge = format!(
                    r#"Bearer realm="http://{}/token",service="stand-in""#,
                    host.get().unwrap()
                );
                return (
                    StatusCode::UNAUTHORIZED,
                    [("WWW-Authenticate", challenge)],
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )
                    .into_response();
            }
            image.serve("team/app", path)
        }
    })
    .await;
    host.set(registry.clone()).unwrap();
    let (resolver, _) = resolver_for(
        &[&registry],
        Duration::from_secs(60),
        "linux/amd64",
        Duration::from_secs(5),
    );
    let login = |password: &str| container_image_pusher::credentials::Login {
        username: "alice".into(),
        password: password.into(),
        source: format!("secret shop/{password}"),
    };

    let right = login("s3cret");
    let resolved = resolver
        .resolve(&format!("{registry}/team/app:1"), &[&right])
        .await
        .expect("resolves with a token");
    assert_eq!(resolved.digest, image.manifest_digest);
    assert_eq!(resolved.labels.get("team"), Some("payments"));
    resolver
        .resolve(&format!("{registry}/team/app:2"), &[&right])
        .await
        .expect("another tag of the repository");
    assert_eq!(tokens.load(SeqCst), 1, "one token serves the repository");

    let wrong = login("guess");
    let err = resolver
        .resolve(&format!("{registry}/team/app:1"), &[&wrong])
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unauthorized, "{err}");
    assert!(
        err.message.contains("incorrect username or password"),
        "{err}"
    );
    assert!(err.message.contains("secret shop/guess"), "{err}");
    assert!(
        !err.message.contains("s3cret") && !err.message.contains("token-"),
        "{err}"
    );

    let err = resolver
        .resolve(&format!("{registry}/team/app:1"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unauthorized, "{err}");
    assert!(err.message.contains("anonymously"), "{err}");
}

/// The pusher binary, once, over one Pod per (name, image) — pull secrets
/// from `secrets` (name → docker config JSON) in the same namespace —
/// pushing to a strict receiver. Returns whether it exited 0, its log, and
/// every series the receiver accepted.
async fn push_once(
    pods: &[(&str, &str, Option<&str>)],
    secrets: &[(&str, String)],
    insecure: &[&str],
) -> (bool, String, Vec<(Vec<(String, String)>, f64)>) {
    use support::receiver::Receiver;
    let receiver = Receiver::start().await;
    let mut documents: Vec<serde_json::Value> = secrets
        .iter()
        .map(|(name, config)| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"namespace": "ns", "name": name},
                "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": config}
            })
        })
        .collect();
    for (name, image, secret) in pods {
        let mut spec = serde_json::json!({"containers": [{"name": "c", "image": image}]});
        if let Some(secret) = secret {
            spec["imagePullSecrets"] = serde_json::json!([{"name": secret}]);
        }
        documents.push(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": "ns", "name": name},
            "spec": spec
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("pods.yaml");
    let yaml: Vec<String> = documents
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect();
    std::fs::write(&manifests, yaml.join("---\n")).unwrap();
    let url = receiver.url();
    let mut args = vec![
        "--manifests",
        manifests.to_str().unwrap(),
        "--once",
        "--remote-write-url",
        &url,
        "--registry-timeout",
        "5s",
        // The deadline bounds a whole lookup, rate-limit waits included:
        // several images on one stand-in must not queue behind 5 per second.
        "--registry-rps",
        "100",
    ];
    for host in insecure {
        args.extend(["--insecure-registry", host]);
    }
    let run = support::pusher::run_once(&args, None).await;
    receiver.assert_valid();
    let series = receiver
        .received()
        .iter()
        .flat_map(|r| r.series())
        .collect();
    (run.success, run.stderr, series)
}

/// The label sets of the pushed series of `metric` that carry every one of `labels`.
fn pushed<'a>(
    series: &'a [(Vec<(String, String)>, f64)],
    metric: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a [(String, String)]> {
    series
        .iter()
        .map(|(set, _)| set.as_slice())
        .filter(|set| has(set, "__name__", metric) && labels.iter().all(|(n, v)| has(set, n, v)))
        .collect()
}

/// The `digest` label of the container_info series of pod `name` ("" when absent).
fn pushed_digest(series: &[(Vec<(String, String)>, f64)], name: &str) -> String {
    let info = pushed(series, "container_image_container_info", &[("name", name)]);
    assert_eq!(info.len(), 1, "one container_info for {name}: {series:?}");
    label(info[0], "digest").unwrap_or_default().to_owned()
}

/// How many `team` image labels (the tiny image's one label) were pushed
/// for `digest`.
fn team_labels(series: &[(Vec<(String, String)>, f64)], digest: &str) -> usize {
    let team = [("digest", digest), ("key", "team")];
    pushed(series, "container_image_label", &team).len()
}

/// A stand-in registry that hands out tokens from its own token server,
/// naming for each repository a different absurd `expires_in`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_naming_absurd_lifetimes_costs_no_image() {
    let image = Arc::new(TinyImage::new());
    let lifetimes = [
        ("forever", "18446744073709551615"),
        ("huge", "1e300"),
        ("negative", "-9223372036854775808"),
        ("zero", "0"),
        ("words", "\"until the heat death\""),
    ];
    let host = Arc::new(std::sync::OnceLock::<String>::new());
    let (registry, _) = stand_in({
        let (image, host) = (image.clone(), host.clone());
        move |request, _| {
            let path = request.uri().path();
            if path == "/token" {
                let query = request.uri().query().unwrap_or("");
                let (_, expires_in) = lifetimes
                    .iter()
                    .find(|(repository, _)| query.contains(&format!("%3A{repository}%3A")))
                    .expect("a known repository");
                return format!(r#"{{"token":"t","expires_in":{expires_in}}}"#).into_response();
            }
            if authorization(request) != "Bearer t" {
                let challenge = format!(r#"Bearer realm="http://{}/token""#, host.get().unwrap());
                return (StatusCode::UNAUTHORIZED, [("WWW-Authenticate", challenge)])
                    .into_response();
            }
            let repository = path
                .trim_start_matches("/v2/")
                .split('/')
                .next()
                .unwrap_or("");
            image.serve(repository, path)
        }
    })
    .await;
    host.set(registry.clone()).unwrap();
    let (calm, _) = stand_in({
        let image = image.clone();
        move |request, _| image.serve("calm", request.uri().path())
    })
    .await;
    let mut pods: Vec<(String, String)> = lifetimes
        .iter()
        .map(|(repository, _)| (repository.to_string(), format!("{registry}/{repository}:1")))
        .collect();
    pods.push(("calm".into(), format!("{calm}/calm:1")));
    let pods: Vec<(&str, &str, Option<&str>)> = pods
        .iter()
        .map(|(name, image)| (name.as_str(), image.as_str(), None))
        .collect();

    let (ok, stderr, series) = push_once(&pods, &[], &[&registry, &calm]).await;
    assert!(ok, "exits 0 (it used to panic with exit 101): {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (name, _, _) in &pods {
        assert_eq!(
            pushed_digest(&series, name),
            image.manifest_digest,
            "{name}\n{stderr}"
        );
    }
    assert_eq!(team_labels(&series, &image.manifest_digest), 1);
}

/// A registry naming digests of an algorithm nobody can verify: in
/// `Docker-Content-Digest` and in a manifest's config descriptor. None of
/// it is believed; pods pinned to such digests are invalid references (as
/// for the container runtime); the other image is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_of_unknown_algorithms_are_bad_format_and_cost_only_their_image() {
    let image = Arc::new(TinyImage::new());
    let forged_config =
        br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"forged":"yes"}}}"#.to_vec();
    let forged_config_digest = format!("evil:{}", "ab".repeat(32));
    let forged_manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": forged_config_digest, "size": forged_config.len()},
        "layers": []
    }))
    .unwrap();
    let forged_manifest_sha256 = support::sha256_digest(&forged_manifest);
    let evil_manifest_digest = format!("evil:{}", "cd".repeat(32));
    let (registry, _) = stand_in({
        let image = image.clone();
        let evil_manifest_digest = evil_manifest_digest.clone();
        move |request, _| {
            let path = request.uri().path();
            let manifest = |digest: &str| {
                (
                    [
                        ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                        ("Docker-Content-Digest", digest),
                    ],
                    forged_manifest.clone(),
                )
                    .into_response()
            };
            if path.ends_with(&format!("/blobs/{forged_config_digest}")) {
                return forged_config.clone().into_response();
            }
            match path {
                "/v2/header/manifests/1" => manifest(&evil_manifest_digest),
                "/v2/config/manifests/1" => manifest(&forged_manifest_sha256),
                p if p.contains("/manifests/") && !p.starts_with("/v2/good/") => {
                    manifest(&evil_manifest_digest)
                }
                p => image.serve("good", p),
            }
        }
    })
    .await;
    let pinned = format!("{registry}/pinned@{evil_manifest_digest}");
    let upper = format!("{registry}/pinned@sha256:{}", "AB".repeat(32));
    let header = format!("{registry}/header:1");
    let config = format!("{registry}/config:1");
    let good = format!("{registry}/good:1");
    let pods = [
        ("header", header.as_str(), None),
        ("config", config.as_str(), None),
        ("pinned", pinned.as_str(), None),
        ("upper", upper.as_str(), None),
        ("good", good.as_str(), None),
    ];
    let (ok, stderr, series) = push_once(&pods, &[], &[&registry]).await;
    assert!(ok, "{stderr}");
    for (i, (name, reference, _)) in pods[..4].iter().enumerate() {
        let class = if i < 2 {
            "bad_format"
        } else {
            "invalid_reference"
        };
        assert_eq!(pushed_digest(&series, name), "", "{name}\n{stderr}");
        assert_eq!(
            pushed(
                &series,
                "container_image_resolve_error",
                &[("image", reference), ("class", class)]
            )
            .len(),
            1,
            "{name}: {series:?}\n{stderr}"
        );
    }
    assert!(
        stderr.contains("is not a sha256 or sha512 digest"),
        "the log says why: {stderr}"
    );
    for (set, _) in &series {
        for (name, value) in set {
            assert!(
                !(name == "digest" && value.starts_with("evil:")) && value != "forged",
                "{name}={value} was pushed"
            );
        }
    }
    assert_eq!(pushed_digest(&series, "good"), image.manifest_digest);
    assert_eq!(team_labels(&series, &image.manifest_digest), 1);
}

/// A registry whose Bearer challenge names a plain-HTTP token server on
/// another host:port: the login for the registry is not sent there, and
/// the image is unauthorized; anonymous pulls of the same registry still
/// get their token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_never_goes_to_a_plain_http_token_server_on_another_host() {
    use base64::Engine as _;
    const PASSWORD: &str = "never-in-clear";
    let image = Arc::new(TinyImage::new());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (token_server, token_requests) = stand_in({
        let seen = seen.clone();
        move |request, _| {
            seen.lock().unwrap().push(authorization(request).to_owned());
            r#"{"token":"t"}"#.into_response()
        }
    })
    .await;
    let (registry, _) = stand_in({
        let (image, token_server) = (image.clone(), token_server.clone());
        move |request, _| {
            if authorization(request) != "Bearer t" {
                let challenge = format!(r#"Bearer realm="http://{token_server}/token""#);
                return (StatusCode::UNAUTHORIZED, [("WWW-Authenticate", challenge)])
                    .into_response();
            }
            image.serve("team/app", request.uri().path())
        }
    })
    .await;
    let (calm, _) = stand_in({
        let image = image.clone();
        move |request, _| image.serve("calm", request.uri().path())
    })
    .await;
    let login = base64::engine::general_purpose::STANDARD.encode(format!("alice:{PASSWORD}"));
    let config = serde_json::json!({"auths": {&registry: {"auth": &login}}}).to_string();
    let reference = format!("{registry}/team/app:1");
    let calm_reference = format!("{calm}/calm:1");
    let pods = [
        ("with-login", reference.as_str(), Some("regcred")),
        ("anonymous", reference.as_str(), None),
        ("calm", calm_reference.as_str(), Some("regcred")),
    ];
    let (ok, stderr, series) = push_once(&pods, &[("regcred", config)], &[&registry, &calm]).await;
    assert!(ok, "{stderr}");
    let seen = seen.lock().unwrap().clone();
    assert!(
        token_requests.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the anonymous pull asked for its token"
    );
    assert!(
        seen.iter().all(String::is_empty),
        "the token server saw {seen:?}"
    );
    assert_eq!(pushed_digest(&series, "with-login"), "", "{stderr}");
    assert_eq!(
        pushed(
            &series,
            "container_image_resolve_error",
            &[("image", &reference), ("class", "unauthorized")]
        )
        .len(),
        1,
        "{series:?}"
    );
    assert!(
        stderr.contains("plain HTTP on another host") && stderr.contains("secret ns/regcred"),
        "the log says why and whose login: {stderr}"
    );
    assert_eq!(pushed_digest(&series, "anonymous"), image.manifest_digest);
    assert_eq!(pushed_digest(&series, "calm"), image.manifest_digest);
    for (set, _) in &series {
        assert!(
            !set.iter()
                .any(|(_, v)| v.contains(PASSWORD) || v.contains(&login)),
            "{set:?}"
        );
    }
    assert!(
        !stderr.contains(PASSWORD) && !stderr.contains(&login),
        "a secret leaked: {stderr}"
    );
}

/// Numbers a registry makes up: layer sizes whose sum overflows a u64, and
/// a `Retry-After` of u64::MAX seconds. They saturate; nothing panics.
#[tokio::test]
async fn absurd_numbers_from_a_registry_saturate() {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let config_digest = support::sha256_digest(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": support::sha256_digest(b"a"), "size": u64::MAX},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": support::sha256_digest(b"b"), "size": u64::MAX}
        ]
    }))
    .unwrap();
    let manifest_digest = support::sha256_digest(&manifest);
    let (huge, _) = stand_in({
        let manifest_digest = manifest_digest.clone();
        move |request, _| {
            if request.uri().path().contains("/blobs/") {
                return config.clone().into_response();
            }
            (
                [
                    ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                    ("Docker-Content-Digest", manifest_digest.as_str()),
                ],
                manifest.clone(),
            )
                .into_response()
        }
    })
    .await;
    let (flooded, _) = stand_in(|_, _| {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("Retry-After", "18446744073709551615")],
        )
            .into_response()
    })
    .await;
    let (resolver, _) = resolver_for(
        &[&huge, &flooded],
        Duration::from_secs(60),
        "linux/amd64",
        Duration::from_secs(5),
    );
    let resolved = resolver
        .resolve(&format!("{huge}/big:1"), &[])
        .await
        .expect("resolves");
    assert_eq!(resolved.digest, manifest_digest);
    assert_eq!(resolved.size, u64::MAX, "the sum saturates");

    let err = resolver
        .resolve(&format!("{flooded}/a:1"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::RateLimited, "{err}");
    assert!(
        err.message.contains("for 300s"),
        "paused 5 minutes at most: {err}"
    );
}
