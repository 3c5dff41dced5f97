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

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::custom::KindSpec;
pub use super::walk::FileLimits;
use super::walk::{self, Listed, Refused};
use super::{
    workload_keeping, DiscoveryError, HasPodSpec, MetadataAllowlist, PullObjects, Selection,
    StringPool, Workload,
};
use crate::telemetry::Telemetry;

/// Deepest nesting of a document's collections. Kubernetes objects nest
/// about 20 deep (a CronJob's node affinity, `managedFields`, in a List);
/// `[[[[…` thousands deep only costs parse time.
const MAX_DEPTH: usize = 64;

/// Most events a document's aliases may replay (and anchors record): a few
/// hundred in hand-written manifests that share an `env` block, millions in
/// an alias bomb, whose expansion is what costs memory.
const MAX_ALIAS_EVENTS: usize = 100_000;

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
    telemetry: Arc<Telemetry>,
    /// The workload labels and annotations kept.
    metadata: MetadataAllowlist,
    /// The strings of the files' workloads, one copy each.
    strings: StringPool,
}

/// What one reading of the files found.
#[derive(Debug, Default)]
pub struct FileSnapshot {
    pub workloads: Vec<Workload>,
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

/// What one manifests file holds that matters: workloads, what their pull
/// credentials come from, and the documents that had to be skipped.
#[derive(Debug, Default)]
pub struct ManifestFile {
    pub workloads: Vec<Workload>,
    pub secrets: Vec<Secret>,
    pub accounts: Vec<ServiceAccount>,
    pub skipped: Vec<Skipped>,
}

/// A document, or an object in a List, that was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Position of the document in the file, from 0.
    pub document: usize,
    pub reason: SkipReason,
    /// What was wrong, never the document's content (it may be a Secret).
    pub detail: String,
}

/// Why input was skipped: the `reason` label of `discovery_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The file could not be read at all.
    Unreadable,
    /// In a directory: a device, pipe or socket, a symlink to a directory
    /// or one out of the directory (see [`super::walk`]).
    NotRegularFile,
    NotUtf8,
    /// Not YAML or JSON.
    Unparsable,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Aliases that expand beyond [`MAX_ALIAS_EVENTS`].
    AliasExpansion,
    /// More nodes, events or scalar bytes than any document of its size can
    /// hold; or a file over `--manifests-max-file-bytes`, or past
    /// `--manifests-max-total-bytes`.
    TooLarge,
    /// Valid YAML that is not a valid object of its kind.
    InvalidObject,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Unreadable => "unreadable",
            SkipReason::NotRegularFile => "not_regular_file",
            SkipReason::NotUtf8 => "not_utf8",
            SkipReason::Unparsable => "unparsable",
            SkipReason::TooDeep => "too_deep",
            SkipReason::AliasExpansion => "alias_expansion",
            SkipReason::TooLarge => "too_large",
            SkipReason::InvalidObject => "invalid_object",
        }
    }
}

impl FileSource {
    pub fn new(
        paths: Vec<PathBuf>,
        selection: Selection,
        telemetry: Arc<Telemetry>,
        metadata: MetadataAllowlist,
    ) -> Self {
        Self::with_limits(paths, selection, telemetry, metadata, FileLimits::default())
    }

    /// [`FileSource::new`], reading files within `limits`.
    pub fn with_limits(
        paths: Vec<PathBuf>,
        mut selection: Selection,
        telemetry: Arc<Telemetry>,
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
                telemetry,
                metadata,
                strings: StringPool::default(),
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
        let namespaces = &self.selection.namespaces;
        let workloads: Vec<Workload> = contents
            .iter()
            .flat_map(|(_, c)| c.workloads.iter())
            .filter(|w| namespaces.is_empty() || namespaces.iter().any(|n| **n == *w.namespace))
            .filter_map(|w| self.selection.admit(w.clone()))
            .collect();
        Ok(FileSnapshot {
            workloads,
            pull_objects: PullObjects { secrets, accounts },
        })
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, FileState>> {
        // Only one snapshot reads at a time; a poisoned map is still whole.
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, reason: SkipReason) {
        self.telemetry
            .discovery_errors
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

/// Parses one manifests file's bytes: every document on its own, so one
/// that is bad (not UTF-8, not YAML, too deep, an alias bomb, not its
/// kind's schema) costs only itself. Objects of the `selection`'s
/// configured kinds are read as well, and workloads its label selector
/// does not match are left out. Touches no filesystem; this is what the
/// fuzz target feeds.
pub fn parse_manifests(bytes: &[u8], selection: &Selection) -> ManifestFile {
    parse_manifests_keeping(
        bytes,
        selection,
        &MetadataAllowlist::default(),
        &StringPool::default(),
    )
}

/// [`parse_manifests`], keeping the workload labels and annotations
/// `metadata` allows, and taking repeated strings from `strings`.
pub fn parse_manifests_keeping(
    bytes: &[u8],
    selection: &Selection,
    metadata: &MetadataAllowlist,
    strings: &StringPool,
) -> ManifestFile {
    let mut out = ManifestFile::default();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    for (index, document) in split_documents(bytes).into_iter().enumerate() {
        let skip = |reason, detail: String| Skipped {
            document: index,
            reason,
            detail,
        };
        let text = match std::str::from_utf8(document) {
            Ok(text) => text,
            Err(e) => {
                out.skipped.push(skip(
                    SkipReason::NotUtf8,
                    format!("invalid UTF-8 at byte {} of the document", e.valid_up_to()),
                ));
                continue;
            }
        };
        if is_empty_document(text) {
            continue;
        }
        if let Some((api_version, kind)) = ignored_kind(text, selection) {
            debug!(
                document = index,
                api_version, kind, "not an inventoried kind; ignored"
            );
            continue;
        }
        match serde_saphyr::from_str_with_options::<Value>(text, options(text.len())) {
            Ok(Value::Null) => {} // e.g. a document of comments only
            Ok(value) => {
                let reduce = Reduce {
                    selection,
                    metadata,
                    strings,
                };
                collect(index, value, &reduce, &mut out)
            }
            Err(e) => {
                let (reason, detail) = classify(&e);
                out.skipped.push(skip(reason, detail));
            }
        }
    }
    out
}

/// The `apiVersion` and `kind` of a document the pusher does not read
/// (a ConfigMap, a Service…), from a first pass that builds nothing else:
/// the rest is skipped as the parser reads it, so a ConfigMap holding one
/// huge map costs its parse time, not a tree of it in memory (21 MB of it
/// used to take 30 times its size). `None` when the document is of a kind
/// that is read, or is not a mapping with string `apiVersion` and `kind`:
/// the full parse then reads it, or says why it cannot.
fn ignored_kind(text: &str, selection: &Selection) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "apiVersion")]
        api_version: Option<String>,
        kind: Option<String>,
    }
    let mut options = options(text.len());
    // Remembering every key of a map (for duplicates, or to merge `<<`
    // keys) is what would cost memory here. A document with a merge key,
    // or a duplicate `kind`, goes to the full parse, which reads it right.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Error;
    let head: Head = serde_saphyr::from_str_with_options(text, options).ok()?;
    let (api_version, kind) = (head.api_version?, head.kind?);
    (!reads_kind(&api_version, &kind, selection)).then_some((api_version, kind))
}

/// Whether documents of this kind are read: workloads (built-in and
/// configured), lists of them, and what pull credentials come from.
fn reads_kind(api_version: &str, kind: &str, selection: &Selection) -> bool {
    const WORKLOADS: [(&str, &str); 6] = [
        ("v1", "Pod"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
    ];
    let listed = |item: &str| {
        WORKLOADS.iter().any(|(_, k)| *k == item)
            || selection.kinds.iter().any(|k| k.name.kind == item)
    };
    kind == "List"
        || kind.strip_suffix("List").is_some_and(listed)
        || WORKLOADS.contains(&(api_version, kind))
        || matches!((api_version, kind), ("v1", "Secret" | "ServiceAccount"))
        || selection
            .kinds
            .iter()
            .any(|k| k.name.api_version() == api_version && k.name.kind == kind)
}

/// The parser's limits for a document of `len` bytes: room for anything
/// that length can spell out, nothing for amplification.
fn options(len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    // A node or event takes at least a byte of input; a List of thousands
    // of objects is one legitimate large document.
    budget.max_events = budget.max_events.max(len.saturating_mul(2));
    budget.max_nodes = budget.max_nodes.max(len);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(len);
    budget.max_recorded_anchor_events = MAX_ALIAS_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_EVENTS;
    // The error would quote the document, which may be a Secret.
    options.with_snippet = false;
    // As serde_yaml and YAML 1.2 read untyped values: `yes` and `0755` stay
    // strings, which is what the Kubernetes schemas expect of them.
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options
}

fn classify(error: &serde_saphyr::Error) -> (SkipReason, String) {
    use serde_saphyr::budget::BudgetBreach;
    use serde_saphyr::granit_parser::ErrorKind;
    use serde_saphyr::localizer::ExternalMessageSource;
    use serde_saphyr::Error as E;
    let mut inner = error.without_snippet();
    while let E::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let reason = match inner {
        E::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => SkipReason::TooDeep,
            BudgetBreach::Aliases { .. }
            | BudgetBreach::Anchors { .. }
            | BudgetBreach::AliasAnchorRatio { .. }
            | BudgetBreach::RecordedAnchorEvents { .. }
            | BudgetBreach::RecordedAnchorBytes { .. }
            | BudgetBreach::MergeKeys { .. } => SkipReason::AliasExpansion,
            _ => SkipReason::TooLarge,
        },
        // The scanner's own limit on flow nesting (`[[[[…`).
        E::ExternalMessage { source, .. }
            if matches!(&**source, ExternalMessageSource::Parser(e)
                if matches!(e.kind(), ErrorKind::RecursionLimitExceeded)) =>
        {
            SkipReason::TooDeep
        }
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => SkipReason::AliasExpansion,
        _ => SkipReason::Unparsable,
    };
    (reason, error.to_string())
}

/// Cuts a YAML stream into its documents at `---` and `...` lines. YAML
/// forbids these markers at the start of a line inside any node, so this
/// is where a parser would cut too, and a document the parser chokes on
/// does not take the ones after it down with it.
fn split_documents(bytes: &[u8]) -> Vec<&[u8]> {
    let mut documents = Vec::new();
    let mut start = 0;
    // Whether the current document has more than directives and comments,
    // which belong to the `---` that follows them.
    let mut has_content = false;
    let mut offset = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let line_start = offset;
        offset += line.len();
        if is_marker(line, b"---") {
            if has_content {
                documents.push(&bytes[start..line_start]);
                start = line_start;
            }
            // `--- {a: 1}` and `--- |` carry content on the marker line.
            has_content = true;
        } else if is_marker(line, b"...") {
            documents.push(&bytes[start..offset]);
            start = offset;
            has_content = false;
        } else if !is_blank_or_comment(line) && !line.starts_with(b"%") {
            has_content = true;
        }
    }
    if start < bytes.len() {
        documents.push(&bytes[start..]);
    }
    documents
}

fn is_marker(line: &[u8], marker: &[u8]) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.first().is_none_or(|b| b" \t\r\n".contains(b)))
}

fn is_blank_or_comment(line: &[u8]) -> bool {
    match line.iter().position(|b| !b" \t\r\n".contains(b)) {
        None => true,
        Some(i) => line[i] == b'#',
    }
}

/// Markers, directives, comments and blank lines only: nothing to parse.
fn is_empty_document(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.as_bytes();
        is_blank_or_comment(line)
            || line.starts_with(b"%")
            || (is_marker(line, b"---") && is_blank_or_comment(&line[3..]))
            || is_marker(line, b"...")
    })
}

/// How a document's objects are reduced to workloads.
struct Reduce<'a> {
    selection: &'a Selection,
    metadata: &'a MetadataAllowlist,
    strings: &'a StringPool,
}

fn collect(index: usize, value: Value, reduce: &Reduce<'_>, out: &mut ManifestFile) {
    let Reduce {
        selection,
        metadata,
        strings,
    } = *reduce;
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // serde_json's messages quote the offending value, which may be a
    // secret (a Secret's data, an env value): say where, not what.
    let invalid = |e: serde_json::Error| Skipped {
        document: index,
        reason: SkipReason::InvalidObject,
        detail: format!(
            "{api_version} {kind} {name:?} does not match its kind's schema ({:?} error)",
            e.classify()
        ),
    };
    let custom = selection
        .kinds
        .iter()
        .find(|k| k.name.api_version() == api_version && k.name.kind == kind);
    let typed_list = kind.strip_suffix("List").is_some_and(|item| {
        [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
        ]
        .contains(&item)
            || selection.kinds.iter().any(|k| k.name.kind == item)
    });
    if kind == "List" || typed_list {
        if let Value::Object(mut map) = value {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    collect(index, item, reduce, out);
                }
            }
        }
        return;
    }
    let workload_kind = custom.is_some()
        || matches!(
            (api_version.as_str(), kind.as_str()),
            ("v1", "Pod")
                | ("apps/v1", "Deployment" | "StatefulSet" | "DaemonSet")
                | ("batch/v1", "Job" | "CronJob")
        );
    if workload_kind && !selection.selects(&value) {
        debug!(
            document = index,
            api_version, kind, name, "not matched by --selector; left out"
        );
        return;
    }
    let parsed = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Secret") => {
            match serde_json::from_value::<Secret>(value) {
                Ok(mut s) => {
                    s.metadata.namespace.get_or_insert_with(|| "default".into());
                    out.secrets.push(s);
                }
                Err(e) => out.skipped.push(invalid(e)),
            }
            return;
        }
        ("v1", "ServiceAccount") => {
            match serde_json::from_value::<ServiceAccount>(value) {
                Ok(mut a) => {
                    a.metadata.namespace.get_or_insert_with(|| "default".into());
                    out.accounts.push(a);
                }
                Err(e) => out.skipped.push(invalid(e)),
            }
            return;
        }
        ("v1", "Pod") => typed::<Pod>(value, metadata, strings),
        ("apps/v1", "Deployment") => typed::<Deployment>(value, metadata, strings),
        ("apps/v1", "StatefulSet") => typed::<StatefulSet>(value, metadata, strings),
        ("apps/v1", "DaemonSet") => typed::<DaemonSet>(value, metadata, strings),
        ("batch/v1", "Job") => typed::<Job>(value, metadata, strings),
        ("batch/v1", "CronJob") => typed::<CronJob>(value, metadata, strings),
        _ if custom.is_some() => {
            let spec = custom.expect("checked by the guard");
            let namespace = match value.pointer("/metadata/namespace") {
                None | Some(Value::Null) => Some("default"),
                Some(Value::String(namespace)) => Some(namespace.as_str()),
                Some(_) => None,
            };
            let object_name = value.pointer("/metadata/name").and_then(Value::as_str);
            let (Some(namespace), Some(object_name)) = (namespace, object_name) else {
                out.skipped.push(Skipped {
                    document: index,
                    reason: SkipReason::InvalidObject,
                    detail: format!(
                        "{api_version} {kind} has no valid metadata.name and metadata.namespace"
                    ),
                });
                return;
            };
            let mut strings = strings.lock();
            match spec.workload(namespace, object_name, &value, &mut strings) {
                Ok(mut w) => {
                    if !metadata.is_empty() {
                        let meta = value.get("metadata").cloned().unwrap_or_default();
                        if let Ok(meta) = serde_json::from_value(meta) {
                            w.metadata_labels = metadata.keep(&meta, &mut strings);
                        }
                    }
                    out.workloads.push(w)
                }
                Err(e) => out.skipped.push(Skipped {
                    document: index,
                    reason: SkipReason::InvalidObject,
                    detail: e.detail,
                }),
            }
            return;
        }
        _ => {
            debug!(
                document = index,
                api_version, kind, "not an inventoried kind; ignored"
            );
            return;
        }
    };
    match parsed {
        Ok(w) => out.workloads.push(w),
        Err(e) => out.skipped.push(invalid(e)),
    }
}

fn typed<K: HasPodSpec + DeserializeOwned>(
    value: Value,
    metadata: &MetadataAllowlist,
    strings: &StringPool,
) -> Result<Workload, serde_json::Error> {
    let object = serde_json::from_value::<K>(value)?;
    Ok(workload_keeping(&object, "default", metadata, strings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::Kind;

    fn parse(text: &str) -> Vec<Workload> {
        parse_manifests(text.as_bytes(), &Selection::default()).workloads
    }

    fn names(file: &ManifestFile) -> Vec<&str> {
        file.workloads.iter().map(|w| &*w.name).collect()
    }

    fn reasons(file: &ManifestFile) -> Vec<(usize, &'static str)> {
        file.skipped
            .iter()
            .map(|s| (s.document, s.reason.as_str()))
            .collect()
    }

    fn pod(name: &str) -> String {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n")
    }

    #[test]
    fn kinds_not_read_are_skipped_before_they_are_built() {
        // Neither body can be built into a tree: a key that is a sequence
        // has no JSON form, and a repeated key is refused when keys are
        // remembered. Ignored kinds are never built, so neither fails.
        let unbuildable = ["data:\n  ? [a, b]\n  : c\n", "data:\n  k: 1\n  k: 2\n"];
        for body in unbuildable {
            let config_map =
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n{body}");
            let text = format!("{config_map}---\n{}", pod("p"));
            let file = parse_manifests(text.as_bytes(), &Selection::default());
            assert_eq!(reasons(&file), [], "{body}");
            assert_eq!(names(&file), ["p"]);
            // The same body in a kind that is read is built, and refused.
            let read = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\n{body}");
            let file = parse_manifests(read.as_bytes(), &Selection::default());
            assert_eq!(reasons(&file), [(0, "unparsable")], "{body}");
        }
        // A kind that a merge key or an alias would change is read in full.
        let merged = "base: &b {apiVersion: v1, kind: Pod}\n<<: *b\nmetadata: {name: m}\nspec: {containers: [{name: c, image: i}]}\n";
        assert_eq!(
            names(&parse_manifests(merged.as_bytes(), &Selection::default())),
            ["m"]
        );
    }

    #[test]
    fn multi_document_yaml_json_and_lists() {
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {containers: [{name: c, image: "nginx:1.27"}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: v1
kind: List
items:
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: cj}
  spec:
    schedule: "@hourly"
    jobTemplate: {spec: {template: {spec: {containers: [{name: r, image: report}]}}}}
---
"#;
        let got = parse(yaml);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].kind, &*got[0].name), (Kind::Pod, "a"));
        assert_eq!(
            (got[1].kind, &*got[1].namespace),
            (Kind::CronJob, "default")
        );

        let json = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"selector":{},"template":{"spec":{"containers":[{"name":"c","image":"app"}]}}}}"#;
        assert_eq!(parse(json)[0].kind, Kind::Deployment);
    }

    #[test]
    fn configured_kinds_lists_and_the_label_selector() {
        let selection = Selection {
            kinds: vec![KindSpec::parse("argo-rollouts").unwrap()],
            selector: Some(crate::discovery::LabelSelector::parse("team=shop").unwrap()),
            ..Selection::default()
        };
        let yaml = r#"
apiVersion: argoproj.io/v1alpha1
kind: RolloutList
items:
- apiVersion: argoproj.io/v1alpha1
  kind: Rollout
  metadata: {name: web, labels: {team: shop}}
  spec: {template: {spec: {containers: [{name: app, image: "web:1"}]}}}
- apiVersion: argoproj.io/v1alpha1
  kind: Rollout
  metadata: {name: theirs, labels: {team: search}}
  spec: {template: {spec: {containers: [{name: app, image: "x:1"}]}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: broken, namespace: shop, labels: {team: shop}}
spec: {template: {spec: {containers: {name: app}}}}
---
apiVersion: argoproj.io/v1beta1
kind: Rollout
metadata: {name: other-version, labels: {team: shop}}
spec: {template: {spec: {containers: [{name: app, image: "x:1"}]}}}
---
apiVersion: v1
kind: Pod
metadata: {name: unlabelled}
spec: {containers: [{name: c, image: i}]}
"#;
        let file = parse_manifests(yaml.as_bytes(), &selection);
        assert_eq!(names(&file), ["web"]);
        let w = &file.workloads[0];
        assert_eq!(
            (w.kind.group(), w.kind.as_str()),
            ("argoproj.io", "Rollout")
        );
        assert_eq!(&*w.namespace, "default");
        assert_eq!(
            &*w.containers[0].jsonpath,
            "{.spec.template.spec.containers[0]}"
        );
        assert_eq!(reasons(&file), [(1, "invalid_object")]);
        assert!(
            file.skipped[0].detail.contains("shop/broken"),
            "{:?}",
            file.skipped
        );
        assert_eq!(
            names(&parse_manifests(yaml.as_bytes(), &Selection::default())),
            ["unlabelled"],
            "kinds not configured are ignored"
        );
    }

    #[test]
    fn bad_documents_are_skipped_not_fatal() {
        let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: good}
spec: {containers: [{name: c, image: ok}]}
---
apiVersion: v1
kind: Pod
metadata: {name: bad}
spec: {containers: "not a list"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: also-good}
spec: {selector: {}, template: {spec: {containers: [{name: c, image: ok}]}}}
"#;
        let file = parse_manifests(yaml.as_bytes(), &Selection::default());
        assert_eq!(names(&file), ["good", "also-good"]);
        assert_eq!(reasons(&file), [(1, "invalid_object")]);
        let broken = parse_manifests(b"kind: [unclosed", &Selection::default());
        assert_eq!(reasons(&broken), [(0, "unparsable")]);
        assert!(broken.workloads.is_empty());
    }

    #[test]
    fn a_bad_document_costs_only_itself() {
        let mut text = Vec::new();
        text.extend_from_slice(pod("first").as_bytes());
        text.extend_from_slice(b"---\nkind: [unclosed\n---\n");
        text.extend_from_slice(pod("after-syntax-error").as_bytes());
        text.extend_from_slice(b"---\nmetadata: {name: \"\xff\xfe\"}\n---\n");
        text.extend_from_slice(pod("after-non-utf8").as_bytes());
        let file = parse_manifests(&text, &Selection::default());
        assert_eq!(
            names(&file),
            ["first", "after-syntax-error", "after-non-utf8"]
        );
        assert_eq!(reasons(&file), [(1, "unparsable"), (3, "not_utf8")]);
        assert!(
            !file.skipped[1].detail.contains('\u{fffd}'),
            "{:?}",
            file.skipped
        );
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_skipped_quickly() {
        let started = std::time::Instant::now();
        let deep = format!("{}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        let block_deep: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        // Eleven levels of ten aliases each: 10^12 nodes once expanded.
        let mut bomb = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let refs = vec![format!("*l{}", level - 1); 10].join(", ");
            bomb.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
        }
        let text = [
            pod("before"),
            deep,
            pod("between"),
            block_deep,
            pod("after-block"),
            bomb,
            pod("last"),
        ]
        .join("---\n");
        let file = parse_manifests(text.as_bytes(), &Selection::default());
        assert_eq!(names(&file), ["before", "between", "after-block", "last"]);
        assert_eq!(
            reasons(&file),
            [(1, "too_deep"), (3, "too_deep"), (5, "alias_expansion")]
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn shared_anchors_and_yaml_1_2_scalars_still_work() {
        let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: shared, namespace: "0755", labels: {on: yes}}
spec:
  selector: {}
  template:
    spec:
      containers:
      - &c {name: a, image: "app:1", env: [{name: E, value: yes}]}
      - <<: *c
        name: b
"#;
        let file = parse_manifests(yaml.as_bytes(), &Selection::default());
        assert!(file.skipped.is_empty(), "{:?}", file.skipped);
        let w = &file.workloads[0];
        let got: Vec<_> = w.containers.iter().map(|c| (&*c.name, &*c.image)).collect();
        assert_eq!(got, [("a", "app:1"), ("b", "app:1")]);
        assert_eq!(&*w.namespace, "0755");
    }

    #[test]
    fn documents_are_cut_at_markers_only_at_line_starts() {
        let text = b"%YAML 1.2\n---\na: 1\n...\n# c\n--- {b: 2}\nc: \"x\n --- y\"\n---\r\nd: 4\n";
        let docs: Vec<&[u8]> = split_documents(text);
        assert_eq!(
            docs,
            [
                &b"%YAML 1.2\n---\na: 1\n...\n"[..],
                &b"# c\n--- {b: 2}\nc: \"x\n --- y\"\n"[..],
                &b"---\r\nd: 4\n"[..],
            ]
        );
    }

    #[tokio::test]
    async fn directories_are_read_recursively_and_filtered_by_namespace() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let pod = |name: &str, ns: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{containers: [{{name: c, image: i}}]}}\n")
        };
        std::fs::write(dir.path().join("a.yaml"), pod("a", "keep")).unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), pod("b", "drop")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        let all = FileSource::new(
            vec![dir.path().into()],
            Selection::default(),
            Arc::new(Telemetry::new()),
            MetadataAllowlist::default(),
        );
        assert_eq!(all.snapshot().await.unwrap().workloads.len(), 2);
        let some = FileSource::new(
            vec![dir.path().into()],
            Selection::namespaces(vec!["keep".into()]),
            Arc::new(Telemetry::new()),
            MetadataAllowlist::default(),
        );
        let got = some.snapshot().await.unwrap().workloads;
        assert_eq!((got.len(), &*got[0].name), (1, "a"));

        let missing = FileSource::new(
            vec![dir.path().join("nope.yaml")],
            Selection::default(),
            Arc::new(Telemetry::new()),
            MetadataAllowlist::default(),
        );
        let err = missing.snapshot().await.unwrap_err().to_string();
        assert!(err.contains("nope.yaml"), "{err}");
    }

    #[tokio::test]
    async fn files_and_kinds_share_strings_and_let_go_of_those_of_files_gone() {
        let dir = tempfile::tempdir().unwrap();
        let pod = |name: &str, image: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{containers: [{{name: app, image: {image}}}]}}\n")
        };
        let rollout = "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r, namespace: shop}\nspec: {template: {spec: {containers: [{name: app, image: app:1}]}}}\n";
        std::fs::write(dir.path().join("a.yaml"), pod("a", "app:1")).unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            format!("{}---\n{rollout}", pod("b", "only-in-b:1")),
        )
        .unwrap();
        let files = FileSource::new(
            vec![dir.path().into()],
            Selection {
                kinds: vec![KindSpec::parse("argo-rollouts").unwrap()],
                ..Selection::default()
            },
            Arc::new(Telemetry::new()),
            MetadataAllowlist::default(),
        );
        let first = files.snapshot().await.unwrap().workloads;
        let of = |name: &str| first.iter().find(|w| &*w.name == name).unwrap();
        let (a, b, r) = (of("a"), of("b"), of("r"));
        assert!(Arc::ptr_eq(&a.containers[0].image, &r.containers[0].image));
        assert!(Arc::ptr_eq(&a.namespace, &b.namespace));
        assert!(Arc::ptr_eq(&a.namespace, &r.namespace));
        assert!(Arc::ptr_eq(&a.containers[0].name, &r.containers[0].name));
        assert!(Arc::ptr_eq(
            &a.containers[0].jsonpath,
            &b.containers[0].jsonpath
        ));
        let held = files.inner.strings.len();
        drop(first);

        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        let second = files.snapshot().await.unwrap().workloads;
        assert_eq!(second.len(), 1);
        assert_eq!(
            files.inner.strings.len(),
            held - 2,
            "only-in-b:1 and the Rollout's jsonpath are let go"
        );
    }

    #[tokio::test]
    async fn a_bad_file_is_skipped_counted_and_parsed_again_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), pod("a")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), b"\xff\xfe not UTF-8").unwrap();
        std::fs::write(dir.path().join("c.json"), pod("c")).unwrap();
        let telemetry = Arc::new(Telemetry::new());
        let source = FileSource::new(
            vec![dir.path().into()],
            Selection::default(),
            telemetry.clone(),
            MetadataAllowlist::default(),
        );
        let not_utf8 = || {
            telemetry
                .discovery_errors
                .with_label_values(&["manifest", "not_utf8"])
                .get()
        };
        let parsed = |name: &str| match &source.inner.lock_files()[&dir.path().join(name)] {
            FileState::Parsed { content, .. } => content.clone(),
            FileState::Refused(e) => panic!("{name} not read: {e:?}"),
        };
        let names = |snapshot: FileSnapshot| -> Vec<String> {
            snapshot
                .workloads
                .into_iter()
                .map(|w| w.name.to_string())
                .collect()
        };
        assert_eq!(names(source.snapshot().await.unwrap()), ["a", "c"]);
        assert_eq!((source.skipped(), not_utf8()), (1, 1));
        let first = parsed("a.yaml");
        assert_eq!(names(source.snapshot().await.unwrap()), ["a", "c"]);
        assert_eq!(
            (source.skipped(), not_utf8()),
            (1, 2),
            "counted at every snapshot while it is bad"
        );
        assert!(
            Arc::ptr_eq(&first, &parsed("a.yaml")),
            "an unchanged file is not parsed again"
        );

        std::fs::write(dir.path().join("a.yaml"), pod("a2")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), pod("b")).unwrap();
        assert_eq!(names(source.snapshot().await.unwrap()), ["a2", "b", "c"]);
        assert_eq!((source.skipped(), not_utf8()), (0, 2));
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        assert_eq!(names(source.snapshot().await.unwrap()), ["a2", "c"]);
        assert_eq!(
            source.inner.lock_files().len(),
            2,
            "removed files are forgotten"
        );
    }
}
