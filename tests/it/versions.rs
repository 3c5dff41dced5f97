//! Version freshness against real registries: Debian's `docker-registry`
//! with tag sets modelled on real repositories (pushed by the tests), and
//! a hostile tag server of our own for what a registry anyone can push to
//! may send: huge lists, 10k-character tags, numbers beyond u64,
//! pagination loops and a `Link` to another host.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use container_image_pusher::image_facts::VersionInfo;
use container_image_pusher::registry::Metrics;
use container_image_pusher::registry::{Platform, Resolver, ResolverConfig, VersionSettings};
use container_image_pusher::versions::{Behind, Overrides};
use support::tags::push_tags;
use support::Registry;

fn new_resolver(insecure: &[&str]) -> (Resolver, Metrics) {
    let metrics = Metrics::new(&prometheus::Registry::new());
    let hour = Duration::from_secs(3600);
    let config = ResolverConfig {
        platform: "linux/amd64".parse::<Platform>().unwrap(),
        cache_duration: hour,
        error_cache_duration: hour,
        insecure_registries: insecure.iter().map(|h| h.to_string()).collect(),
        timeout: Duration::from_secs(10),
        registry_concurrency: 10,
        registry_rps: 1000.0,
        image_limits: Default::default(),
        referrers: false,
        referrers_cache_duration: hour,
        image_filter: Default::default(),
        verify: Default::default(),
        versions: Some(VersionSettings {
            cache_duration: hour,
            include: Vec::new(),
            exclude: Vec::new(),
        }),
        disk_cache: None,
    };
    let resolver = Resolver::new(config, metrics.clone()).expect("the HTTP client builds");
    (resolver, metrics)
}

fn owned(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

async fn answer(
    resolver: &Resolver,
    image: &str,
    overrides: &Overrides,
) -> Option<(String, bool, Behind)> {
    let info: Arc<VersionInfo> = resolver.versions(image, None, &[], overrides, None).await?;
    let f = &info.freshness;
    Some((f.latest.to_string(), f.is_latest, f.behind))
}

fn behind(major: u64, minor: u64, patch: u64) -> Behind {
    Behind {
        major,
        minor,
        patch,
    }
}

fn requests(metrics: &Metrics, host: &str) -> u64 {
    ["200", "404", "401"]
        .iter()
        .map(|code| {
            metrics
                .requests
                .with_label_values(&[host, "GET", code])
                .get()
        })
        .sum()
}

#[tokio::test]
async fn real_repositories_tag_sets_give_the_documented_answers() {
    let reg = Registry::start().await;
    let host = reg.host();
    let nginx = [
        "1.27.3",
        "1.27.3-alpine",
        "1.27-bookworm",
        "1.28.0-alpine",
        "mainline",
        "stable",
        "latest",
    ];
    push_tags(&reg, "nginx", "2024-01-01T00:00:00Z", &owned(&nginx)).await;
    // The newest release was built later: its own created date is told.
    push_tags(&reg, "nginx", "2024-11-26T00:00:00Z", &owned(&["1.28.0"])).await;
    let bitnami: Vec<String> = (0..=5)
        .map(|r| format!("7.4.2-debian-12-r{r}"))
        .chain(["7.4.3-debian-12-r0".to_owned()])
        .collect();
    push_tags(&reg, "bitnami/redis", "2024-01-01T00:00:00Z", &bitnami).await;
    let other = owned(&["v1.9.0", "v1.10.0", "1.9.9", "2.0.0-rc1"]);
    push_tags(&reg, "mixed", "2024-01-01T00:00:00Z", &other).await;
    let calendar = owned(&["2024.01.15", "2024.02.01", "20240115", "20240201"]);
    push_tags(&reg, "calendar", "2024-01-01T00:00:00Z", &calendar).await;

    let (resolver, metrics) = new_resolver(&[&host]);
    let none = Overrides::default();
    let image = |repo_tag: &str| format!("{host}/{repo_tag}");
    assert_eq!(
        answer(&resolver, &image("nginx:1.27.3"), &none).await,
        Some(("1.28.0".into(), false, behind(0, 1, 0)))
    );
    let info = resolver
        .versions(&image("nginx:1.27.3"), None, &[], &none, None)
        .await
        .unwrap();
    assert_eq!(info.latest_created, Some(1_732_579_200), "2024-11-26");
    assert_eq!(
        answer(&resolver, &image("nginx:1.27.3-alpine"), &none).await,
        Some(("1.28.0-alpine".into(), false, behind(0, 1, 0)))
    );
    assert_eq!(
        answer(&resolver, &image("nginx:1.27-bookworm"), &none).await,
        Some(("1.27-bookworm".into(), true, behind(0, 0, 0)))
    );
    for word in ["mainline", "stable", "latest"] {
        assert_eq!(
            answer(&resolver, &image(&format!("nginx:{word}")), &none).await,
            None
        );
    }
    assert_eq!(
        answer(&resolver, &image("bitnami/redis:7.4.2-debian-12-r3"), &none).await,
        Some(("7.4.3-debian-12-r0".into(), false, behind(0, 0, 3)))
    );
    assert_eq!(
        answer(&resolver, &image("mixed:v1.9.0"), &none).await,
        Some(("v1.10.0".into(), false, behind(0, 1, 0))),
        "numeric, not lexical"
    );
    assert_eq!(
        answer(&resolver, &image("mixed:1.9.9"), &none).await,
        Some(("1.9.9".into(), true, behind(0, 0, 0))),
        "2.0.0-rc1 never beats a release"
    );
    assert_eq!(
        answer(&resolver, &image("calendar:2024.01.15"), &none).await,
        Some(("2024.02.01".into(), false, behind(0, 1, 0)))
    );
    assert_eq!(
        answer(&resolver, &image("calendar:20240115"), &none).await,
        Some(("20240201".into(), false, behind(1, 0, 0)))
    );
    // One listing per repository: asked again, nothing is requested.
    let before = requests(&metrics, &host);
    answer(&resolver, &image("nginx:1.27.3"), &none).await;
    answer(&resolver, &image("nginx:1.27.3-alpine"), &none).await;
    assert_eq!(
        requests(&metrics, &host),
        before,
        "warm lookups ask nothing"
    );
}

#[tokio::test]
async fn overrides_change_the_answer_as_documented() {
    let reg = Registry::start().await;
    let host = reg.host();
    let tags = owned(&[
        "1.2.3",
        "1.2.4",
        "1.3.0",
        "2.0.0",
        "release-4.0.0",
        "release-5.0.0",
    ]);
    push_tags(&reg, "app", "2024-01-01T00:00:00Z", &tags).await;
    push_tags(
        &reg,
        "mirror/app",
        "2024-01-01T00:00:00Z",
        &owned(&["1.2.3", "9.0.0"]),
    )
    .await;
    let (resolver, _) = new_resolver(&[&host]);
    let image = format!("{host}/app:1.2.3");
    let parse = |regex, major, minor, patch| Overrides::parse(regex, major, minor, patch).unwrap();
    let latest = |o: Overrides| {
        let (resolver, image) = (&resolver, image.clone());
        async move { answer(resolver, &image, &o).await.unwrap().0 }
    };
    assert_eq!(latest(Overrides::default()).await, "2.0.0");
    assert_eq!(latest(parse(None, Some("1"), None, None)).await, "1.3.0");
    assert_eq!(
        latest(parse(None, Some("1"), Some("2"), None)).await,
        "1.2.4"
    );
    assert_eq!(
        latest(parse(None, Some("1"), Some("2"), Some("3"))).await,
        "1.2.3"
    );
    assert_eq!(
        latest(parse(Some(r"^1\.2\."), None, None, None)).await,
        "1.2.4"
    );
    let release = parse(Some("^release-"), None, None, None);
    let info = resolver
        .versions(
            &format!("{host}/app:release-4.0.0"),
            None,
            &[],
            &release,
            None,
        )
        .await
        .unwrap();
    assert_eq!(&*info.freshness.latest, "release-5.0.0");
    // override-url: the versions of another repository.
    let mirror = format!("{host}/mirror/app");
    let info = resolver
        .versions(&image, Some(&mirror), &[], &Overrides::default(), None)
        .await
        .unwrap();
    assert_eq!(&*info.freshness.latest, "9.0.0");
}

/// distribution 2.8 (Debian's) sends a whole tag list at once, whatever
/// `n` says (checked here), so it cannot show paging; Harbor, GitLab and
/// distribution 3 page. A list of 2,500 tags is served here the way they
/// do: `n` tags after `last`, in lexical order, with a `Link` to the next
/// page.
#[tokio::test]
async fn a_repository_of_2500_tags_is_read_across_pages() {
    let reg = Registry::start().await;
    push_tags(&reg, "few", "2024-01-01T00:00:00Z", &owned(&["1.0", "1.1"])).await;
    let one_page = reg
        .request(reqwest::Method::GET, "/v2/few/tags/list?n=1")
        .send()
        .await
        .unwrap();
    assert!(one_page.headers().get("link").is_none());
    let list: serde_json::Value = one_page.json().await.unwrap();
    assert_eq!(list["tags"].as_array().unwrap().len(), 2, "n is ignored");

    let mut all: Vec<String> = (0..2500).map(|i| format!("1.{i}.0")).collect();
    all.sort();
    let (host, seen) = serve(move |path| {
        let query = |key: &str| {
            path.split(['?', '&'])
                .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        let n: usize = query("n").and_then(|n| n.parse().ok()).unwrap_or(100);
        let last = query("last").unwrap_or_default();
        let page: Vec<String> = all
            .iter()
            .filter(|t| last.is_empty() || t.as_str() > last.as_str())
            .take(n)
            .cloned()
            .collect();
        let more = page.last().is_some_and(|l| all.last() != Some(l));
        let next = more.then(|| format!("/v2/big/tags/list?n={n}&last={}", page.last().unwrap()));
        (page, next)
    })
    .await;
    let (resolver, _) = new_resolver(&[&host]);
    assert_eq!(
        answer(
            &resolver,
            &format!("{host}/big:1.0.0"),
            &Overrides::default()
        )
        .await,
        Some(("1.2499.0".into(), false, behind(0, 2499, 0)))
    );
    assert_eq!(tag_lists(&seen), 3, "1000 tags a page");
}

fn tag_lists(seen: &Mutex<Vec<String>>) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|p| p.contains("/tags/list"))
        .count()
}

/// A registry that serves scripted tag-list pages and counts requests.
#[derive(Clone)]
struct Hostile {
    /// Each request's path and query.
    seen: Arc<Mutex<Vec<String>>>,
    pages: Arc<Pages>,
}

/// A request's path and query → the page's tags and the `Link` to the next.
type Pages = dyn Fn(&str) -> (Vec<String>, Option<String>) + Send + Sync;

async fn hostile(State(state): State<Hostile>, uri: Uri) -> impl IntoResponse {
    let path = uri
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    state.seen.lock().unwrap().push(path.clone());
    if !path.contains("/tags/list") {
        return (StatusCode::NOT_FOUND, HeaderMap::new(), String::new());
    }
    let (tags, next) = (state.pages)(&path);
    let mut headers = HeaderMap::new();
    if let Some(next) = next {
        let link = format!("<{next}>; rel=\"next\"");
        headers.insert("link", HeaderValue::from_str(&link).unwrap());
    }
    let body = serde_json::json!({"name": "app", "tags": tags}).to_string();
    (StatusCode::OK, headers, body)
}

async fn serve(
    pages: impl Fn(&str) -> (Vec<String>, Option<String>) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let state = Hostile {
        seen: Arc::default(),
        pages: Arc::new(pages),
    };
    let seen = state.seen.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = Router::new().fallback(hostile).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (host, seen)
}

#[tokio::test]
async fn hostile_tag_lists_cost_only_their_bounds() {
    // Oversized tags and numbers beyond u64 are left out; the rest answers.
    let (host, _) = serve(|_| {
        let mut tags = vec!["1".repeat(10_000), format!("1.{}", "9".repeat(30))];
        tags.extend([
            "1.0.0".into(),
            "1.1.0".into(),
            "18446744073709551616.0.0".into(),
        ]);
        (tags, None)
    })
    .await;
    let (resolver, _) = new_resolver(&[&host]);
    let none = Overrides::default();
    assert_eq!(
        answer(&resolver, &format!("{host}/app:1.0.0"), &none).await,
        Some(("1.1.0".into(), false, behind(0, 1, 0)))
    );
}

#[tokio::test]
async fn tag_lists_that_loop_never_end_or_point_elsewhere_are_not_followed() {
    let none = Overrides::default();
    // A loop: the next page is the one just read. Read once, then no answer.
    let (host, seen) = serve(|_| {
        (
            vec!["1.0.0".into()],
            Some("/v2/app/tags/list?n=1000".into()),
        )
    })
    .await;
    let (resolver, _) = new_resolver(&[&host]);
    assert_eq!(
        answer(&resolver, &format!("{host}/app:1.0.0"), &none).await,
        None
    );
    assert_eq!(seen.lock().unwrap().len(), 1);

    // An endless list: at most 20 pages, then no answer.
    let (host, seen) = serve(|path| {
        let page: usize = path
            .rsplit('=')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        (
            vec![format!("1.{page}.0")],
            Some(format!("/v2/app/tags/list?last={}", page + 1)),
        )
    })
    .await;
    let (resolver, _) = new_resolver(&[&host]);
    assert_eq!(
        answer(&resolver, &format!("{host}/app:1.0.0"), &none).await,
        None
    );
    assert_eq!(tag_lists(&seen), 20);

    // A Link to another host: that host is never asked (nor given credentials).
    let (elsewhere, elsewhere_seen) = serve(|_| (vec!["9.0.0".into()], None)).await;
    let link = format!("http://{elsewhere}/v2/app/tags/list?last=1.0.0");
    let (host, seen) = serve(move |path| {
        if path.contains("last=") {
            (vec!["1.1.0".into()], None)
        } else {
            (vec!["1.0.0".into()], Some(link.clone()))
        }
    })
    .await;
    let (resolver, _) = new_resolver(&[&host, &elsewhere]);
    assert_eq!(
        answer(&resolver, &format!("{host}/app:1.0.0"), &none)
            .await
            .map(|a| a.0),
        Some("1.1.0".into()),
        "the next page is read from the registry itself"
    );
    assert!(elsewhere_seen.lock().unwrap().is_empty());
    assert_eq!(tag_lists(&seen), 2);
}
