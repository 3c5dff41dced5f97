//! Supply-chain series against real peers: images signed with the real
//! `cosign` (new bundle format and the legacy `.sig` tag), attested with
//! `cosign attest --type spdxjson` and given a CycloneDX SBOM with the real
//! `oras attach`, on Debian's `docker-registry` (no referrers API: the tag
//! schema and cosign's tags); the referrers API through a stand-in in
//! front of that registry (pages, filters); BuildKit's attestations in an
//! image's own index; and a base image whose tag is re-pushed.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::pusher::{run_once, Pusher};
use support::referrers_api::ReferrersApi;
use support::signing::{samples, write_pods};
use support::{
    peers, push_artifact, push_attestation, push_image, push_index, Attachment, Format, ImageSpec,
    IndexEntry, Registry,
};

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";

/// `container_image_referrer` of `digest` as (kind, artifact_type) → count.
fn referrers_of(text: &str, digest: &str) -> BTreeMap<(String, String), f64> {
    samples(text, "container_image_referrer")
        .into_iter()
        .filter(|s| s.0.get("digest").map(String::as_str) == Some(digest))
        .map(|s| ((s.0["kind"].clone(), s.0["artifact_type"].clone()), s.1))
        .collect()
}

fn expected(pairs: &[(&str, &str, f64)]) -> BTreeMap<(String, String), f64> {
    pairs
        .iter()
        .map(|(k, t, v)| ((k.to_string(), t.to_string()), *v))
        .collect()
}

/// Runs the pusher once over `images` and returns its stdout (the series).
async fn dry_run(images: &[&str], insecure: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pods = write_pods(dir.path(), images);
    let mut args = vec![
        "--manifests",
        &pods,
        "--once",
        "--dry-run",
        "--insecure-registry",
        insecure,
    ];
    args.extend_from_slice(extra);
    run_once(&args, None).await.assert_success().stdout
}

/// Requests through the proxy whose path contains `part`.
fn asked(proxy: &ReferrersApi, part: &str) -> usize {
    let referrers = proxy.requests().into_iter();
    referrers
        .chain(proxy.proxied())
        .filter(|path| path.contains(part))
        .count()
}

/// Runs a test peer (`cosign`, `oras`) in `dir`, panicking with its output
/// when it fails.
fn run_peer(binary: &str, dir: &Path, args: &[&str]) {
    let output = Command::new(peers::peer(binary))
        .args(args)
        .current_dir(dir)
        .env("COSIGN_PASSWORD", "")
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir)
        .output()
        .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    assert!(
        output.status.success(),
        "{binary} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn cosign(dir: &Path, args: &[&str]) {
    let mut all = args.to_vec();
    all.extend([
        "--key",
        "cosign.key",
        "--tlog-upload=false",
        "--use-signing-config=false",
        "--allow-http-registry",
        "--yes",
    ]);
    run_peer("cosign", dir, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cosign_and_oras_attachments_are_found_through_the_tag_schema_and_cosign_tags() {
    let registry = Registry::start().await;
    let host = registry.host();
    let signed = push_image(
        &registry,
        "app",
        Some("1"),
        &ImageSpec::oci("linux", "amd64").layer(b"app".to_vec()),
    )
    .await;
    let plain = push_image(
        &registry,
        "plain",
        Some("1"),
        &ImageSpec::oci("linux", "amd64").layer(b"plain".to_vec()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    run_peer("cosign", dir.path(), &["generate-key-pair"]);
    let pinned = format!("{host}/app@{}", signed.digest);
    cosign(dir.path(), &["sign", &pinned]);
    cosign(dir.path(), &["sign", "--new-bundle-format=false", &pinned]);
    std::fs::write(
        dir.path().join("sbom.spdx.json"),
        json!({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app",
            "dataLicense": "CC0-1.0", "documentNamespace": "https://example.com/app",
            "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: test"]},
            "packages": []})
        .to_string(),
    )
    .unwrap();
    cosign(
        dir.path(),
        &[
            "attest",
            "--type",
            "spdxjson",
            "--predicate",
            "sbom.spdx.json",
            &pinned,
        ],
    );
    std::fs::write(
        dir.path().join("bom.cdx.json"),
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#,
    )
    .unwrap();
    run_peer(
        "oras",
        dir.path(),
        &[
            "attach",
            "--plain-http",
            "--artifact-type",
            CYCLONEDX,
            &pinned,
            "bom.cdx.json",
        ],
    );

    // Read through a proxy that counts, answering referrers 404 as the
    // registry does.
    let proxy = ReferrersApi::without_api(&registry.url()).await;
    let host = proxy.host();
    let app = format!("{host}/app:1");
    let unsigned = format!("{host}/plain:1");
    let text = dry_run(&[&app, &unsigned], &host, &[]).await;
    assert_eq!(
        referrers_of(&text, &signed.digest),
        expected(&[
            ("sbom", BUNDLE, 1.0),
            ("sbom", CYCLONEDX, 1.0),
            ("signature", BUNDLE, 1.0),
            ("signature", SIMPLE_SIGNING, 1.0),
        ]),
        "{text}"
    );
    assert_eq!(
        referrers_of(&text, &plain.digest),
        BTreeMap::new(),
        "{text}"
    );

    // Politeness: the referrers API is asked at most once per digest (404
    // here, then the host is known to lack it), the tag list once per
    // repository, and only the attachment tags that exist are read.
    let listings = asked(&proxy, "/referrers/");
    assert!((1..=2).contains(&listings), "{:?}", proxy.requests());
    assert_eq!(asked(&proxy, "/tags/list"), 2, "{:?}", proxy.proxied());
    assert_eq!(asked(&proxy, "/plain/manifests/sha256-"), 0);
    assert_eq!(
        asked(&proxy, "/app/manifests/sha256-"),
        2,
        "the schema tag and .sig: {:?}",
        proxy.proxied()
    );

    let off = dry_run(&[&app], &host, &["--referrers=false"]).await;
    assert!(
        samples(&off, "container_image_referrer").is_empty(),
        "{off}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_tick_asks_no_registry_about_referrers() {
    let registry = Registry::start().await;
    let proxy = ReferrersApi::without_api(&registry.url()).await;
    let host = proxy.host();
    push_image(
        &registry,
        "app",
        Some("1"),
        &ImageSpec::oci("linux", "amd64"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pods = write_pods(dir.path(), &[&format!("{host}/app:1")]);
    let pusher = Pusher::on_manifests(&pods, "1s")
        .registry(&host)
        .start()
        .await;
    let pusher = &pusher;
    let ticks = |n: usize| async move {
        pusher
            .logs_when(Duration::from_secs(30), format!("{n} snapshots"), |logs| {
                logs.matches("snapshot taken").count() >= n
            })
            .await;
    };
    // The first snapshot leaves attachments out; they are looked up after
    // the first push, in the background.
    let done = "looked up what the first snapshot left out";
    pusher
        .logs_when(Duration::from_secs(30), done, |logs| logs.contains(done))
        .await;
    let cold = (asked(&proxy, "/referrers/"), asked(&proxy, "/tags/list"));
    assert_eq!(
        cold,
        (1, 1),
        "one listing per digest, one tag list per repository"
    );
    let seen = pusher.child.logs().matches("snapshot taken").count();
    ticks(seen + 3).await;
    assert_eq!(
        (asked(&proxy, "/referrers/"), asked(&proxy, "/tags/list")),
        cold,
        "warm ticks ask nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_referrers_api_is_read_page_by_page_without_filters() {
    let registry = Registry::start().await;
    let api = ReferrersApi::start(&registry.url(), 2).await;
    let image = push_image(
        &registry,
        "api/app",
        Some("1"),
        &ImageSpec::oci("linux", "amd64"),
    )
    .await;
    let notation = "application/vnd.cncf.notary.signature";
    let attached = [
        push_artifact(&registry, "api/app", &image, &Attachment { artifact_type: Some(notation), layer_media_type: "application/jose+json", layer_annotations: json!({}) }).await,
        push_artifact(&registry, "api/app", &image, &Attachment { artifact_type: Some("application/spdx+json"), layer_media_type: "application/spdx+json", layer_annotations: json!({}) }).await,
        push_artifact(&registry, "api/app", &image, &Attachment { artifact_type: None, layer_media_type: "application/vnd.in-toto+json", layer_annotations: json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v1"}) }).await,
        push_artifact(&registry, "api/app", &image, &Attachment { artifact_type: Some("application/vnd.example.thing"), layer_media_type: "application/octet-stream", layer_annotations: json!({}) }).await,
        push_artifact(&registry, "api/app", &image, &Attachment { artifact_type: Some(notation), layer_media_type: "application/jose+json", layer_annotations: json!({"n": "2"}) }).await,
    ];
    for descriptor in &attached {
        api.attach("api/app", &image.digest, descriptor.clone());
    }

    // The stand-in filters as the spec says, and says so.
    let filtered = reqwest::get(format!(
        "http://{}/v2/api/app/referrers/{}?artifactType={notation}",
        api.host(),
        image.digest
    ))
    .await
    .unwrap();
    assert_eq!(filtered.headers()["oci-filters-applied"], "artifactType");
    let index: Value = filtered.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    let before = api.requests().len();
    let host = api.host();
    let text = dry_run(&[&format!("{host}/api/app:1")], &host, &[]).await;
    assert_eq!(
        referrers_of(&text, &image.digest),
        expected(&[
            ("attestation", "application/vnd.in-toto+json", 1.0),
            ("other", "application/vnd.example.thing", 1.0),
            ("sbom", "application/spdx+json", 1.0),
            ("signature", notation, 2.0),
        ]),
        "{text}"
    );
    let requests = api.requests().split_off(before);
    assert_eq!(
        requests.len(),
        3,
        "five artifacts, two a page: {requests:?}"
    );
    assert!(
        requests.iter().all(|r| !r.contains("artifactType")),
        "one unfiltered listing finds every kind: {requests:?}"
    );
    let schema_tags = api
        .proxied()
        .iter()
        .filter(|p| p.contains("/manifests/sha256-"))
        .count();
    assert_eq!(schema_tags, 0, "no tag schema where the API answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildkit_attestations_in_the_index_count_for_the_image() {
    let registry = Registry::start().await;
    let host = registry.host();
    let amd = push_image(
        &registry,
        "multi",
        None,
        &ImageSpec::oci("linux", "amd64").layer(b"a".to_vec()),
    )
    .await;
    let arm = push_image(
        &registry,
        "multi",
        None,
        &ImageSpec::oci("linux", "arm64").layer(b"b".to_vec()),
    )
    .await;
    let amd_attestation = push_attestation(&registry, "multi", &amd.digest).await;
    let arm_attestation = push_attestation(&registry, "multi", &arm.digest).await;
    let index = push_index(
        &registry,
        "multi",
        "1",
        Format::Oci,
        vec![
            IndexEntry::image(&amd, "linux", "amd64", None),
            IndexEntry::image(&arm, "linux", "arm64", None),
            IndexEntry::Attestation {
                pushed: amd_attestation,
                subject_digest: amd.digest.clone(),
            },
            IndexEntry::Attestation {
                pushed: arm_attestation,
                subject_digest: arm.digest.clone(),
            },
        ],
        BTreeMap::new(),
    )
    .await;
    let text = dry_run(&[&format!("{host}/multi:1")], &host, &[]).await;
    assert_eq!(
        referrers_of(&text, &index.digest),
        expected(&[("attestation", "application/vnd.in-toto+json", 1.0)]),
        "the chosen platform's attestation only:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_on_a_re_pushed_base_tag_becomes_outdated_after_the_cache_period() {
    let registry = Registry::start().await;
    let host = registry.host();
    let base = push_image(
        &registry,
        "base",
        Some("3"),
        &ImageSpec::oci("linux", "amd64").layer(b"v1".to_vec()),
    )
    .await;
    let base_name = format!("{host}/base:3");
    let app = push_image(
        &registry,
        "app",
        Some("1"),
        &ImageSpec::oci("linux", "amd64")
            .layer(b"app".to_vec())
            .annotation("org.opencontainers.image.base.name", &base_name)
            .annotation("org.opencontainers.image.base.digest", &base.digest),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pods = write_pods(dir.path(), &[&format!("{host}/app:1")]);
    let pusher = Pusher::on_manifests(&pods, "1s")
        .registry(&host)
        .args(&["--cache-duration", "2s", "--referrers-cache-duration", "2s"])
        .start()
        .await;
    let outdated = |text: &str| {
        samples(text, "container_image_base_outdated")
            .into_iter()
            .find(|s| s.0.get("digest") == Some(&app.digest))
            .map(|s| (s.0["base_name"].clone(), s.1))
    };
    let wait_for = |value: f64| {
        let pusher = &pusher;
        let base_name = base_name.clone();
        async move {
            pusher
                .metrics_when(
                    Duration::from_secs(30),
                    format!("container_image_base_outdated {value}"),
                    |text| outdated(text) == Some((base_name.clone(), value)),
                )
                .await
        }
    };
    let text = wait_for(0.0).await;
    let declared = samples(&text, "container_image_base");
    assert_eq!(declared.len(), 1, "{text}");
    assert_eq!(declared[0].0["base_digest"], base.digest);
    assert_eq!(declared[0].0["base_name"], base_name);

    push_image(
        &registry,
        "base",
        Some("3"),
        &ImageSpec::oci("linux", "amd64")
            .created("2025-01-01T00:00:00Z")
            .layer(b"v2".to_vec()),
    )
    .await;
    let text = wait_for(1.0).await;
    let moved = samples(&text, "container_image_base_current_created");
    assert_eq!(moved.len(), 1, "{text}");
    assert_eq!(
        moved[0].1, 1_735_689_600.0,
        "when the base's new image was created"
    );
    assert_eq!(moved[0].0["base_name"], base_name);
}
