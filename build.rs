//! Compiles `proto/` with prost. `protox` parses the files in pure Rust, so
//! building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/prometheus/remote.proto",
        "proto/io/prometheus/write/v2/types.proto",
        "proto/opentelemetry/proto/common/v1/common.proto",
        "proto/opentelemetry/proto/resource/v1/resource.proto",
        "proto/opentelemetry/proto/metrics/v1/metrics.proto",
        "proto/opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
        "proto/google/rpc/status.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    revision();
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}

/// The git revision for `container_image_pusher_build_info`:
/// $CONTAINER_IMAGE_PUSHER_REVISION if set, else the commit checked out;
/// `unknown` without either (a source tarball without git).
fn revision() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // Given from outside where there is no .git (the Dockerfile's REVISION).
    println!("cargo:rerun-if-env-changed=CONTAINER_IMAGE_PUSHER_REVISION");
    let revision = std::env::var("CONTAINER_IMAGE_PUSHER_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CONTAINER_IMAGE_PUSHER_REVISION={revision}");
    // A new commit or checkout changes HEAD (or the branch it points to).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    // Branches live in the common directory (shared by worktrees).
    if let (Some(common), Some(reference)) = (
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        // A packed ref has no file; watching a missing one would rerun
        // this script at every build.
        let path = format!("{common}/{reference}");
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
