//! The files behind a `--manifests` path, and reading them with bounds.
//!
//! A directory is often a GitOps checkout that tenants commit to, and Git
//! stores symlinks: a link to `/dev/zero` must not be read without end,
//! and links to `.` must not make the walk double at every level. So the
//! walk enters real directories only (a symlink to a directory is never
//! followed, which rules out loops), takes regular files, and follows a
//! symlink to a file only when it resolves inside the walked tree — a
//! mounted ConfigMap's files are such links (`app.yaml` →
//! `..data/app.yaml`). Anything else is skipped, counted and logged.
//! Each file is read up to a size cap, and a snapshot up to a total cap.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::manifests::SkipReason;

/// Deepest directory nesting walked; a checkout is a few levels deep.
const MAX_DIR_DEPTH: usize = 32;

/// Bounds on what the manifests source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// Largest file read; a larger one is skipped.
    pub max_file_bytes: u64,
    /// Most bytes read in one snapshot; files past it are skipped.
    pub max_total_bytes: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            max_file_bytes: 32 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// One entry the walk found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Listed {
    /// A manifests file to read.
    File(PathBuf),
    /// An entry that is not read, and why.
    Skipped {
        path: PathBuf,
        reason: SkipReason,
        detail: String,
    },
}

/// The manifests files under `path` (itself if it is not a directory: a
/// path the operator names is read whatever it is, within the size cap),
/// in a stable order. Only a `path` that cannot be listed is an error.
pub(crate) fn list(path: &Path) -> std::io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    if !std::fs::metadata(path)?.is_dir() {
        out.push(Listed::File(path.to_owned()));
        return Ok(out);
    }
    let root = std::fs::canonicalize(path)?;
    let mut walk = Walk {
        root: &root,
        seen: HashSet::new(),
        out: &mut out,
    };
    walk.directory(path, 0)?;
    Ok(out)
}

struct Walk<'a> {
    /// The tree's real path: symlinks may lead to files under it only.
    root: &'a Path,
    /// Files already listed, by real path: one listed twice is read once.
    seen: HashSet<PathBuf>,
    out: &'a mut Vec<Listed>,
}

impl Walk<'_> {
    fn directory(&mut self, dir: &Path, depth: usize) -> std::io::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                // e.g. `..data` symlinks of a mounted ConfigMap, which duplicate its files.
                continue;
            }
            self.entry(entry, depth);
        }
        Ok(())
    }

    fn entry(&mut self, entry: PathBuf, depth: usize) {
        let skip = |reason, detail: String| Listed::Skipped {
            path: entry.clone(),
            reason,
            detail,
        };
        let file_type = match std::fs::symlink_metadata(&entry) {
            Ok(m) => m.file_type(),
            Err(e) => return self.out.push(skip(SkipReason::Unreadable, e.to_string())),
        };
        let manifest = matches!(
            entry.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        );
        if file_type.is_dir() {
            if depth >= MAX_DIR_DEPTH {
                let detail = format!("directories nested deeper than {MAX_DIR_DEPTH} are not read");
                return self.out.push(skip(SkipReason::TooDeep, detail));
            }
            if let Err(e) = self.directory(&entry, depth + 1) {
                self.out.push(skip(SkipReason::Unreadable, e.to_string()));
            }
        } else if file_type.is_symlink() {
            let Ok(target) = std::fs::canonicalize(&entry) else {
                if manifest {
                    let detail = "a symlink that leads nowhere".to_owned();
                    self.out.push(skip(SkipReason::Unreadable, detail));
                }
                return;
            };
            let detail = if !target.starts_with(self.root) {
                "a symlink out of the manifests directory is not followed"
            } else if target.is_dir() {
                "a symlink to a directory is not followed"
            } else if !target.is_file() {
                "a symlink to something other than a regular file is not followed"
            } else if manifest {
                return self.file(entry, target);
            } else {
                return;
            };
            self.out
                .push(skip(SkipReason::NotRegularFile, detail.to_owned()));
        } else if manifest {
            if file_type.is_file() {
                let real = std::fs::canonicalize(&entry).unwrap_or_else(|_| entry.clone());
                self.file(entry, real);
            } else {
                let detail = "not a regular file (a device, pipe or socket)".to_owned();
                self.out.push(skip(SkipReason::NotRegularFile, detail));
            }
        }
    }

    fn file(&mut self, entry: PathBuf, real: PathBuf) {
        if self.seen.insert(real) {
            self.out.push(Listed::File(entry));
        }
    }
}

/// Why a file was not read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub reason: SkipReason,
    pub detail: String,
}

/// The bytes of `path`, at most `max_bytes` of them, and no more than
/// `budget` (what the snapshot's total cap leaves), which is charged.
/// `listed_by_walk`: only regular files are read then (the entry may
/// have been swapped for something else since it was listed).
pub(crate) fn read_capped(
    path: &Path,
    max_bytes: u64,
    budget: &mut u64,
    listed_by_walk: bool,
) -> Result<Vec<u8>, Refused> {
    let unreadable = |e: std::io::Error| Refused {
        reason: SkipReason::Unreadable,
        detail: e.to_string(),
    };
    let file = File::open(path).map_err(unreadable)?;
    let metadata = file.metadata().map_err(unreadable)?;
    if listed_by_walk && !metadata.is_file() {
        return Err(Refused {
            reason: SkipReason::NotRegularFile,
            detail: "not a regular file (a device, pipe or socket)".into(),
        });
    }
    let too_large = |what: String| Refused {
        reason: SkipReason::TooLarge,
        detail: what,
    };
    let cap = max_bytes.min(*budget);
    let left = *budget;
    let over = |size: u64| {
        too_large(if size > max_bytes {
            format!("larger than the {max_bytes} bytes --manifests-max-file-bytes allows")
        } else {
            format!(
                "the snapshot's other files already take what --manifests-max-total-bytes allows ({left} bytes left)"
            )
        })
    };
    if metadata.is_file() && metadata.len() > cap {
        return Err(over(metadata.len()));
    }
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let read = bytes.len() as u64;
    if read > cap {
        return Err(over(read));
    }
    *budget -= read;
    Ok(bytes)
}
