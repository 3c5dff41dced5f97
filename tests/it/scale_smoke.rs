//! The scale harness (`examples/scale/`) at a small size, so it cannot rot:
//! every number it measures must be present and sane. Nothing is asserted
//! about timing or cost, only that the measurement worked and that the
//! pusher's request pattern is what the README promises.

// `examples/scale/main.rs` allows dead code itself (its `main` is unused
// here). The example compiles the support modules it needs from
// tests/it/support itself, so they are loaded a second time here.
#[allow(clippy::duplicate_mod)]
#[path = "../../examples/scale/main.rs"]
mod scale;

use std::path::PathBuf;
use std::time::Duration;

fn options(registry_dir: PathBuf) -> scale::Options {
    let mut options = scale::Options::new(
        PathBuf::from(env!("CARGO_BIN_EXE_container-image-pusher")),
        registry_dir,
    );
    options.containers = 1000;
    options.images = 100;
    options.interval = Duration::from_secs(2);
    options.cache_duration = Duration::from_secs(20);
    options.warm_ticks = 2;
    // Two custom kinds and ownership labels cost nothing extra here and keep
    // the issue #16 comparison runnable.
    options.custom_kinds = true;
    options.pusher_args = vec!["--workload-labels=app,app.kubernetes.io/part-of".to_owned()];
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_measures_every_number_at_1000_containers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = options(dir.path().join("registry"));
    let report = scale::run(&options).await.expect("the harness runs");

    let dataset = &report.dataset;
    assert_eq!(dataset.containers, 1000);
    assert!(dataset.distinct_images > 90, "{dataset:?}");
    assert!(dataset.tagged_references > 0 && dataset.pinned_references > 0);
    assert!(dataset.multi_arch_images > 0 && dataset.init_containers > 0);
    for kind in [
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "Rollout",
        "CloneSet",
    ] {
        assert!(
            dataset.objects.get(kind).is_some_and(|n| *n > 0),
            "no {kind} generated: {:?}",
            dataset.objects
        );
    }
    assert_eq!(report.registry_setup.images_stored, 100);
    assert_eq!(report.runs.len(), 1);
    let run = &report.runs[0];

    // Direct push.
    let direct = &run.direct;
    assert!(direct.first_push_seconds > 0.0);
    assert!(direct.cold.cpu_seconds > 0.0, "{:?}", direct.cold);
    assert!(direct.warm.ticks >= options.warm_ticks, "{:?}", direct.warm);
    assert!(direct.warm.cpu_seconds_per_tick >= 0.0);
    assert!(direct.warm.push_wall_seconds > 0.0);
    assert!(direct.steady_rss_bytes > 0);
    assert!(direct.peak_rss_bytes >= direct.steady_rss_bytes);
    assert!(direct.warm.series_per_push > 1000, "{:?}", direct.warm);
    assert_eq!(
        direct.distinct_series_per_push, direct.warm.series_per_push,
        "a push repeats a series"
    );
    assert_eq!(direct.warm.stale_per_push, 0.0);
    let wire = &direct.warm.wire;
    assert!(wire.requests >= direct.warm.ticks, "{wire:?}");
    assert_eq!(wire.failed_requests, 0, "{wire:?}");
    assert!(wire.compressed_bytes > 0 && wire.raw_bytes > wire.compressed_bytes);
    assert_eq!(
        wire.series,
        (direct.warm.series_per_push * direct.warm.ticks) as u64
    );
    assert_eq!(
        direct.self_metrics.snapshot_series,
        direct.warm.series_per_push as f64
    );
    assert!(direct.self_metrics.last_success_timestamp_seconds > 0.0);
    assert!(direct.self_metrics.bytes_sent_total > 0.0);
    assert_eq!(direct.receiver_container_series, 1000.0);
    assert_eq!(direct.warnings, 0, "{:?}", direct.first_warnings);

    // Registry: the first tick asks for everything (a tag with one GET, no
    // HEAD), then nothing until the tags expire, then one HEAD per tag and
    // nothing for pinned digests.
    assert_eq!(direct.cold.registry.heads(), 0);
    assert!(direct.complete_push_seconds >= direct.metadata_push_seconds);
    assert!(direct.metadata_push_seconds >= direct.first_push_seconds);
    assert!(direct.cold.registry.gets() >= dataset.distinct_images as u64);
    assert_eq!(
        direct.warm.registry,
        scale::RegistryCounts::default(),
        "a warm tick asked the registry something"
    );
    assert!(!direct.warm_window_overlapped_expiry);
    assert_eq!(
        direct.expiry.registry.heads(),
        dataset.tagged_references as u64,
        "{:?}",
        direct.expiry.registry
    );
    assert_eq!(direct.expiry.registry.gets(), 0);
    // Referrers: one tag list per repository (one image each here), at most
    // one referrers listing per digest (distribution 2.8 answers 404, which
    // is remembered per host), and nothing while warm or when tags expire.
    let digests = (dataset.distinct_images + dataset.multi_arch_images) as u64;
    let cold = &direct.cold.registry;
    assert_eq!(cold.tag_lists, dataset.distinct_images as u64, "{cold:?}");
    assert!((1..=digests).contains(&cold.referrer_listings), "{cold:?}");
    for quiet in [&direct.warm.registry, &direct.expiry.registry] {
        assert_eq!(
            (quiet.referrer_listings, quiet.tag_lists),
            (0, 0),
            "{quiet:?}"
        );
    }
    // The access log and the pusher's own counter agree.
    let heads = direct.cold.registry.heads() + direct.warm.registry.heads();
    assert!(direct.self_metrics.registry_requests_head >= heads as f64);
    assert!(direct.self_metrics.registry_requests_get >= direct.cold.registry.gets() as f64);

    let snappy = run.snappy.as_ref().expect("a push was captured");
    assert!(snappy.requests > 0 && snappy.raw_bytes > snappy.compressed_bytes);
    assert!(snappy.seconds > 0.0);

    // Scrape exporter + each agent.
    let scrape = run.scrape.as_ref().expect("the Prometheus agent ran");
    check_alternative(scrape, direct, &options, scale::Agent::Prometheus);
    let vmagent = run.vmagent.as_ref().expect("vmagent ran");
    check_alternative(vmagent, direct, &options, scale::Agent::Vmagent);

    // The report renders, with every ratio a number.
    let summary = report.summary();
    for ratios in [&summary.scrape, &summary.vmagent] {
        let ratios = ratios.as_ref().expect("a comparison");
        for ratio in [ratios.cpu_ratio, ratios.memory_ratio, ratios.bytes_ratio] {
            assert!(ratio.is_finite() && ratio > 0.0, "{ratios:?}");
        }
    }
    let markdown = report.markdown();
    assert!(markdown.contains("| CPU per warm tick"), "{markdown}");
    assert!(
        markdown.contains("| Per interval | Direct push | Exporter + Prometheus agent |")
            && markdown.contains("| Per interval | Direct push | Exporter + vmagent |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| Bytes on the wire, compressed"),
        "{markdown}"
    );
    assert!(!markdown.contains("NaN"), "{markdown}");
    serde_json::to_string(&report).expect("the report serializes");
}

/// What one scrape + agent alternative measured: every number present, the
/// same series as the direct push, and the data in the receiver.
fn check_alternative(
    scrape: &scale::ScrapeResult,
    direct: &scale::DirectResult,
    options: &scale::Options,
    kind: scale::Agent,
) {
    assert_eq!(scrape.agent_kind, kind);
    assert!(scrape.first_snapshot_seconds > 0.0);
    assert!(scrape.ticks >= options.warm_ticks && scrape.scrapes >= options.warm_ticks);
    assert!(scrape.exporter.cpu_seconds_per_interval > 0.0, "{scrape:?}");
    assert!(scrape.agent.cpu_seconds_per_interval > 0.0, "{scrape:?}");
    assert!(scrape.exporter.steady_rss_bytes > 0 && scrape.agent.steady_rss_bytes > 0);
    assert!(scrape.scrape_bytes > 0.0);
    // Scrapes counted by arrival and by sample timestamp: the same, unless
    // one started within a millisecond of a window's end.
    assert!(
        scrape.scrape_groups.abs_diff(scrape.scrapes) <= 1,
        "{scrape:?}"
    );
    // The same series, plus the agent's own (up, scrape_*).
    assert_eq!(
        scrape.samples_per_scrape,
        (direct.warm.series_per_push + kind.generated_series()) as f64,
        "{scrape:?}"
    );
    assert!(scrape.wire_compressed_bytes_per_interval > 0.0);
    assert!(scrape.wire_raw_bytes_per_interval > scrape.wire_compressed_bytes_per_interval);
    assert!(
        scrape.agent_bytes_per_scrape > 0.0,
        "{:?}",
        scrape.agent_metrics
    );
    assert_eq!(scrape.wire.failed_requests, 0, "{:?}", scrape.wire);
    assert_eq!(scrape.receiver_container_series, 1000.0);
}

/// `--verify` (`examples/scale/signing.rs`) at a small size, so the
/// measurement of what signature verification costs cannot rot: every
/// signed image verifies once, in the cold tick, and warm ticks neither
/// verify nor ask the registry anything. Nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signed_image_verifies_once_in_the_cold_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = scale::Options::new(
        PathBuf::from(env!("CARGO_BIN_EXE_container-image-pusher")),
        dir.path().join("registry"),
    );
    options.containers = 300;
    options.images = 40;
    options.interval = Duration::from_secs(2);
    // Long enough that the tags resolved before the first push are still
    // cached in the warm window, which starts after the first complete
    // push (verification follows the first push).
    options.cache_duration = Duration::from_secs(12);
    options.warm_ticks = 1;
    options.alternative = false;
    options.vmagent = false;
    options.verify = true;
    options.progress = false;
    let report = scale::run(&options).await.expect("the harness runs");

    let direct = &report.runs[0].direct;
    let images = report.dataset.distinct_images as f64;
    assert_eq!(
        direct.cold_signature_verifications,
        Some(images),
        "one verification per image digest in the cold tick"
    );
    assert_eq!(
        direct.self_metrics.signature_verifications, images,
        "none after the cold tick, the tag cache's expiry included"
    );
    assert_eq!(direct.self_metrics.signatures_verified, images);
    assert_eq!(
        direct.warm.registry.gets() + direct.warm.registry.heads(),
        0
    );
    assert_eq!(
        direct.cold.registry.tag_lists,
        report.dataset.distinct_images as u64
    );
    let summary = report.summary();
    assert_eq!(summary.later_signature_verifications, Some(0.0));
    assert!(
        report
            .markdown()
            .contains("| Signature verifications computed in the cold tick / after it |"),
        "{}",
        report.markdown()
    );
}
