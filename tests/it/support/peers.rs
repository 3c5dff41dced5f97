//! Test peers newer than Debian stable's: Prometheus 3 (`prometheus`,
//! `promtool`), VictoriaMetrics (`victoria-metrics`, `vmagent`), `cosign` and
//! `oras`, unpacked from Debian sid's packages by `scripts/fetch-test-peers`
//! (which `./scripts/test` runs) into `target/test-peers/`, without touching
//! the system: Debian stable's own `prometheus` 2.42 stays on PATH for the
//! tests that want a 1.x receiver.

use std::path::{Path, PathBuf};

/// The path of the test peer `binary` (e.g. `"promtool"`): the environment
/// variable `PUSHER_TEST_PEER_<BINARY>` (upper case, `-` as `_`, e.g.
/// `PUSHER_TEST_PEER_VICTORIA_METRICS`) when set, else the fetch script's
/// cache. Panics, saying how to fetch it, when neither has it.
pub fn peer(binary: &str) -> PathBuf {
    let variable = format!(
        "PUSHER_TEST_PEER_{}",
        binary.to_ascii_uppercase().replace('-', "_")
    );
    if let Some(path) = std::env::var_os(&variable) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable}={} is not a file; unset it to use the fetched test peers",
            path.display()
        );
        return path;
    }
    let cached = cache_dir().join("bin").join(binary);
    // `is_file` follows the fetch script's symlink into the unpacked package.
    if cached.is_file() {
        return cached;
    }
    panic!(
        "the test peer `{binary}` (from Debian sid) is missing: {} does not exist. \
         Run ./scripts/fetch-test-peers (./scripts/test runs it for you), or point \
         {variable} at a `{binary}` binary",
        cached.display()
    )
}

/// `target/test-peers/` of this build (it follows `CARGO_TARGET_DIR`, as the
/// fetch script does).
fn cache_dir() -> PathBuf {
    let target = match option_env!("CARGO_TARGET_TMPDIR") {
        // Integration tests get `<target>/tmp`.
        Some(tmp) => Path::new(tmp)
            .parent()
            .expect("CARGO_TARGET_TMPDIR lies inside the target directory")
            .to_path_buf(),
        // Examples (the scale harness) get no CARGO_TARGET_TMPDIR; they run
        // from `<target>/<profile>/examples/`.
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
            .expect("an example runs from <target>/<profile>/examples/"),
    };
    target.join("test-peers")
}
