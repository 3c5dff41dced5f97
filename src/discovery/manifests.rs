//! Manifest files parsed: each document cut out of the stream and parsed
//! on its own, under limits of depth, alias expansion and size, and reduced
//! to workloads, pull secrets and service accounts; what cannot be read is
//! a [`Skipped`] with its reason.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::debug;

use super::custom::KindSpec;
use super::{workload_keeping, HasPodSpec, MetadataAllowlist, Selection, StringPool, Workload};

/// Deepest nesting of a document's collections. Kubernetes objects nest
/// about 20 deep (a CronJob's node affinity, `managedFields`, in a List);
/// `[[[[…` thousands deep only costs parse time.
const MAX_DEPTH: usize = 64;

/// Most events a document's aliases may replay (and anchors record): a few
/// hundred in hand-written manifests that share an `env` block, millions in
/// an alias bomb, whose expansion is what costs memory.
const MAX_ALIAS_EVENTS: usize = 100_000;

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
    /// or one out of the directory (see the directory walk).
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
pub(super) fn split_documents(bytes: &[u8]) -> Vec<&[u8]> {
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
    let (api_version, kind, name) = identity(&value);
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
    if is_list(&kind, selection) {
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
            custom_object(index, spec, &value, (&api_version, &kind), reduce, out);
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

/// An object's apiVersion, kind and name, each empty when absent.
fn identity(value: &Value) -> (String, String, String) {
    let text = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (text("/apiVersion"), text("/kind"), text("/metadata/name"))
}

/// A `List`, or a typed list (`PodList`, a configured kind's list): its
/// items are read one by one.
fn is_list(kind: &str, selection: &Selection) -> bool {
    kind == "List"
        || kind.strip_suffix("List").is_some_and(|item| {
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
        })
}

/// An object of a configured kind: its workload, or why it is skipped.
fn custom_object(
    index: usize,
    spec: &KindSpec,
    value: &Value,
    (api_version, kind): (&str, &str),
    reduce: &Reduce<'_>,
    out: &mut ManifestFile,
) {
    let Reduce {
        metadata, strings, ..
    } = *reduce;
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
    match spec.workload(namespace, object_name, value, &mut strings) {
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
}

fn typed<K: HasPodSpec + DeserializeOwned>(
    value: Value,
    metadata: &MetadataAllowlist,
    strings: &StringPool,
) -> Result<Workload, serde_json::Error> {
    let object = serde_json::from_value::<K>(value)?;
    Ok(workload_keeping(&object, "default", metadata, strings))
}
