//! Workloads read from manifest files: the no-cluster source.
//!
//! Accepts what `kubectl apply -f` accepts for our kinds: YAML (one or many
//! documents) or JSON, single objects or `kind: List`, from files, directories
//! (recursively, `*.yaml`, `*.yml`, `*.json`) or `-` for standard input.
//!
//! Files are untrusted (any team can add one to a GitOps repository), so a
//! bad one costs only itself: each document is cut out of the stream and
//! parsed on its own, under limits of depth, alias expansion and size, and
//! one that is not UTF-8, not YAML, over a limit or not its kind's schema is
//! skipped, logged once and counted in `discovery_errors_total`; the rest
//! of the snapshot still counts. A file is parsed again only when its
//! content changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::custom::KindSpec;
pub use super::manifests::{
    parse_manifests, parse_manifests_keeping, ManifestFile, SkipReason, Skipped,
};
use super::metrics::Metrics;
pub use super::walk::FileLimits;
use super::walk::{self, Listed, Refused};
use super::{DiscoveryError, MetadataAllowlist, PullObjects, Selection, StringPool, Workload};

/// Reads workloads from files, again at every snapshot, so a directory kept
/// in sync by GitOps tooling behaves like a cluster.
pub struct FileSource {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Vec<PathBuf>,
    selection: Selection,
    /// Standard input can be read only once; later snapshots reuse it.
    stdin: OnceLock<Arc<ManifestFile>>,
    /// The last reading of every file, so an unchanged file is not parsed again.
    files: Mutex<HashMap<PathBuf, FileState>>,
    /// Documents and files skipped in the last snapshot.
    skipped: AtomicUsize,
    limits: FileLimits,
    metrics: Metrics,
    /// The workload labels and annotations kept.
    metadata: MetadataAllowlist,
    /// The strings of the files' workloads, one copy each.
    strings: StringPool,
    /// The admitted workloads of each file's content (by the address of
    /// the content, which the entry holds): an unchanged file hands every
    /// snapshot the same `Arc`s, so what later stages keep per workload
    /// (credential scopes, series) is reused, not rebuilt.
    admitted: Mutex<HashMap<usize, Admitted>>,
}

/// The workloads of one file's content that the selection admits.
struct Admitted {
    content: Arc<ManifestFile>,
    workloads: Vec<Arc<Workload>>,
}

/// What one reading of the files found.
#[derive(Debug, Default)]
pub struct FileSnapshot {
    pub workloads: Vec<Arc<Workload>>,
    /// Secrets and ServiceAccounts in the files play the cluster's part:
    /// the pipeline hands them to the credentials.
    pub pull_objects: PullObjects,
}

/// What was last seen at a path.
enum FileState {
    Parsed {
        digest: [u8; 32],
        content: Arc<ManifestFile>,
    },
    /// Listed but not read: unreadable, over a size cap, or not a regular
    /// file in the tree (logged when it started).
    Refused(Refused),
}

impl FileSource {
    pub fn new(
        paths: Vec<PathBuf>,
        selection: Selection,
        metrics: Metrics,
        metadata: MetadataAllowlist,
    ) -> Self {
        Self::with_limits(paths, selection, metrics, metadata, FileLimits::default())
    }

    /// [`FileSource::new`], reading files within `limits`.
    pub fn with_limits(
        paths: Vec<PathBuf>,
        mut selection: Selection,
        metrics: Metrics,
        metadata: MetadataAllowlist,
        limits: FileLimits,
    ) -> Self {
        selection.kinds = KindSpec::normalize(&selection.kinds);
        FileSource {
            inner: Arc::new(Inner {
                paths,
                selection,
                stdin: OnceLock::new(),
                files: Mutex::new(HashMap::new()),
                skipped: AtomicUsize::new(0),
                limits,
                metrics,
                metadata,
                strings: StringPool::default(),
                admitted: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub async fn snapshot(&self) -> Result<FileSnapshot, DiscoveryError> {
        // Reading and parsing is blocking work of unbounded length. On a
        // thread of its own (not the runtime's blocking pool, which the
        // runtime waits for when it shuts down) a SIGTERM in the middle of
        // a large file is not delayed by it.
        let inner = self.inner.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("manifests".into())
            .spawn(move || {
                let _ = tx.send(inner.snapshot());
            })
            .map_err(DiscoveryError::Thread)?;
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(DiscoveryError::Thread(std::io::Error::other(
                "the manifests reader thread ended without an answer",
            ))),
        }
    }

    /// Documents and files skipped in the last snapshot.
    pub fn skipped(&self) -> usize {
        self.inner.skipped.load(Ordering::Relaxed)
    }
}

impl Inner {
    fn snapshot(&self) -> Result<FileSnapshot, DiscoveryError> {
        let mut contents = Vec::new();
        let mut skipped = 0;
        // Rebuilt at every snapshot, so files that are gone are forgotten.
        let mut known = std::mem::take(&mut *self.lock_files());
        let mut seen = HashMap::with_capacity(known.len());
        let mut budget = self.limits.max_total_bytes;
        for path in &self.paths {
            for (origin, content) in self.read(path, &mut known, &mut seen, &mut budget)? {
                for s in &content.skipped {
                    self.count(s.reason);
                }
                skipped += content.skipped.len();
                contents.push((origin, content));
            }
        }
        *self.lock_files() = seen;
        let workloads = self.admitted(&contents);
        // Files gone or changed since the last snapshot: their strings are
        // let go with them.
        drop(known);
        self.strings.prune();
        self.skipped.store(skipped, Ordering::Relaxed);
        let secrets: Vec<Secret> = contents
            .iter()
            .flat_map(|(_, c)| c.secrets.iter().cloned())
            .collect();
        let accounts: Vec<ServiceAccount> = contents
            .iter()
            .flat_map(|(_, c)| c.accounts.iter().cloned())
            .collect();
        Ok(FileSnapshot {
            workloads,
            pull_objects: PullObjects { secrets, accounts },
        })
    }

    /// The admitted workloads of `contents`, the same `Arc`s as the last
    /// snapshot's for contents it had.
    fn admitted(&self, contents: &[(String, Arc<ManifestFile>)]) -> Vec<Arc<Workload>> {
        let mut before =
            std::mem::take(&mut *self.admitted.lock().unwrap_or_else(PoisonError::into_inner));
        let mut now = HashMap::with_capacity(contents.len());
        let mut workloads = Vec::new();
        let namespaces = &self.selection.namespaces;
        for (_, content) in contents {
            let key = Arc::as_ptr(content) as usize;
            let entry = match before.remove(&key) {
                Some(entry) if Arc::ptr_eq(&entry.content, content) => entry,
                _ => Admitted {
                    content: content.clone(),
                    workloads: content
                        .workloads
                        .iter()
                        .filter(|w| {
                            namespaces.is_empty() || namespaces.iter().any(|n| **n == *w.namespace)
                        })
                        .filter_map(|w| self.selection.admit(w.clone()))
                        .map(Arc::new)
                        .collect(),
                },
            };
            workloads.extend(entry.workloads.iter().cloned());
            now.insert(key, entry);
        }
        *self.admitted.lock().unwrap_or_else(PoisonError::into_inner) = now;
        workloads
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, FileState>> {
        // Only one snapshot reads at a time; a poisoned map is still whole.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, reason: SkipReason) {
        self.metrics
            .errors
            .with_label_values(&["manifest", reason.as_str()])
            .inc();
    }

    /// Returns (name for messages, contents) of every file behind `path`.
    /// Only a `path` that cannot be listed at all is an error: the snapshot
    /// would lose every workload in it.
    /// `known` holds what the last snapshot read; what this one reads goes
    /// into `seen`.
    fn read(
        &self,
        path: &Path,
        known: &mut HashMap<PathBuf, FileState>,
        seen: &mut HashMap<PathBuf, FileState>,
        budget: &mut u64,
    ) -> Result<Vec<(String, Arc<ManifestFile>)>, DiscoveryError> {
        let read_error = |source| DiscoveryError::Read {
            path: path.display().to_string(),
            source,
        };
        if path == Path::new("-") {
            if let Some(content) = self.stdin.get() {
                return Ok(vec![("<stdin>".into(), content.clone())]);
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map_err(read_error)?;
            let content = Arc::new(parse_manifests_keeping(
                &bytes,
                &self.selection,
                &self.metadata,
                &self.strings,
            ));
            log_skipped("<stdin>", &content.skipped);
            let content = self.stdin.get_or_init(|| content).clone();
            return Ok(vec![("<stdin>".into(), content)]);
        }
        let listed = walk::list(path).map_err(read_error)?;
        let mut contents = Vec::with_capacity(listed.len());
        for entry in listed {
            let (file, read) = match entry {
                Listed::File(file) => {
                    let by_walk = file != path;
                    let read =
                        walk::read_capped(&file, self.limits.max_file_bytes, budget, by_walk);
                    (file, read)
                }
                Listed::Skipped {
                    path,
                    reason,
                    detail,
                } => (path, Err(Refused { reason, detail })),
            };
            let origin = file.display().to_string();
            // A file listed under two paths is parsed once.
            let previous = seen.remove(&file).or_else(|| known.remove(&file));
            let state = match read {
                Ok(bytes) => self.parsed(&origin, bytes, previous),
                Err(refused) => {
                    if !matches!(&previous, Some(FileState::Refused(known)) if *known == refused) {
                        warn!(
                            file = origin,
                            reason = refused.reason.as_str(),
                            error = refused.detail,
                            "skipping a manifests file"
                        );
                    }
                    FileState::Refused(refused)
                }
            };
            match &state {
                FileState::Parsed { content, .. } => contents.push((origin, content.clone())),
                FileState::Refused(refused) => contents.push((
                    origin,
                    Arc::new(ManifestFile {
                        skipped: vec![Skipped {
                            document: 0,
                            reason: refused.reason,
                            detail: refused.detail.clone(),
                        }],
                        ..ManifestFile::default()
                    }),
                )),
            }
            seen.insert(file, state);
        }
        Ok(contents)
    }

    /// A file's state after reading `bytes`: parsed again only when its
    /// content changed.
    fn parsed(&self, origin: &str, bytes: Vec<u8>, previous: Option<FileState>) -> FileState {
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        match previous {
            Some(FileState::Parsed {
                digest: known_digest,
                content,
            }) if known_digest == digest => FileState::Parsed { digest, content },
            previous => {
                let content = Arc::new(parse_manifests_keeping(
                    &bytes,
                    &self.selection,
                    &self.metadata,
                    &self.strings,
                ));
                let was_bad = match &previous {
                    Some(FileState::Parsed { content, .. }) => !content.skipped.is_empty(),
                    Some(FileState::Refused(_)) => true,
                    None => false,
                };
                if content.skipped.is_empty() && was_bad {
                    info!(file = origin, "manifests file read without problems again");
                }
                log_skipped(origin, &content.skipped);
                FileState::Parsed { digest, content }
            }
        }
    }
}

fn log_skipped(origin: &str, skipped: &[Skipped]) {
    for s in skipped {
        warn!(
            file = origin,
            document = s.document,
            reason = s.reason.as_str(),
            error = s.detail,
            "skipping a manifests document"
        );
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
