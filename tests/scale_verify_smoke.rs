//! The scale harness's `--verify` (`examples/scale/signing.rs`) at a small
//! size, so the measurement of what signature verification costs cannot
//! rot: every signed image verifies once, in the cold tick, and warm ticks
//! neither verify nor ask the registry anything. Nothing about time.

// `examples/scale/main.rs` allows dead code itself (its `main` is unused
// here); this test does not use all it re-exports.
#[allow(unused_imports)]
#[path = "../examples/scale/main.rs"]
mod scale;

use std::path::PathBuf;
use std::time::Duration;

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
    options.cache_duration = Duration::from_secs(6);
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
