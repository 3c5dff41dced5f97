//! The fuzz targets' seeds (`fuzz/corpus/<target>/`) and every input a
//! target once failed on (`fuzz/regressions/<target>/`), replayed through
//! the same entry points with the stable toolchain, so a fixed crash or
//! hang cannot come back unnoticed. See README, "Fuzzing".

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Generous for a debug build: the fuzz targets fail an input after 5 s
/// in release, and a hang these inputs once caused took minutes.
const PER_INPUT: Duration = Duration::from_secs(20);

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: harness::Target, input: &Path) {
    let data = std::fs::read(input).expect("a readable input");
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        target(&data);
        let _ = done.send(());
    });
    match finished.recv_timeout(PER_INPUT) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{} took longer than {PER_INPUT:?}", input.display())
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{} panicked", input.display()),
    }
}

#[test]
fn seeds_and_past_failures_replay_cleanly() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in harness::TARGETS {
        let seeds = inputs(&fuzz.join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name}/ holds no seeds");
        for input in seeds
            .iter()
            .chain(&inputs(&fuzz.join("regressions").join(name)))
        {
            replay(*target, input);
        }
    }
}

#[test]
fn every_input_directory_belongs_to_a_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let targets: Vec<&str> = harness::TARGETS.iter().map(|(name, _)| *name).collect();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("a readable directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                targets.contains(&name.as_ref()),
                "fuzz/{kind}/{name} is not a fuzz target's directory (targets: {targets:?})"
            );
        }
    }
    let fuzz_targets: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| {
            let path = e.expect("a readable directory entry").path();
            path.file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let mut listed = targets.clone();
    listed.sort_unstable();
    let mut files: Vec<&str> = fuzz_targets.iter().map(String::as_str).collect();
    files.sort_unstable();
    assert_eq!(
        files, listed,
        "fuzz/fuzz_targets/ and harness::TARGETS name the same targets"
    );
}
