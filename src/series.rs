//! The series model: what the pusher says about a cluster, independent of
//! how any sink writes it down.
//!
//! A [`Series`] is a [`LabelSet`] and a value. A label set is its
//! [`Family`], the process-wide [`CommonLabels`] (`job`, the external
//! labels) and one value per name in [`Family::label_names`], stored as a
//! 32-bit id in the process' one table of values ([`symbols`]): the values
//! of 100k containers repeat (namespaces, images, digests, container
//! names), so the table keeps one copy of each and a label set costs a few
//! ids. A label set is built once,
//! when what it describes first appears or changes, and is shared by `Arc`
//! from then on, so a warm tick clones pointers and builds nothing.
//!
//! Every sink (remote write 1.0 and 2.0, OTLP, the text exposition) is an
//! encoder over [`LabelSet::iter`], which reads the values from the table
//! under one lock per request ([`symbols::Table::read`]): the labels sorted by name, names
//! unique, empty values dropped — the form Prometheus defines a series
//! by. No sink reads another's bytes. Each label set also carries a 64-bit
//! hash of its labels, its identity for whoever has to remember series
//! (the remote-write sender's set of series a receiver holds) without
//! keeping them.
//!
//! Which label names each family carries is written down once, in
//! [`Family::label_names`]: label sets take their values in that order,
//! [`check_external_labels`] refuses every name in it, and the dashboards
//! test and docs read it, so no series can carry a name twice (a receiver
//! rejects the whole batch if one does).
//!
//! Every label set keeps the [`SeriesLimits`] ([`limits`]): values cut,
//! workload labels beyond the budget left out, when it is made.
//!
//! This module depends on no source and no sink.

mod labels;
mod limits;
pub mod symbols;

pub use labels::{Labels, RawLabels, Value};
pub use limits::{LimitDrop, LimitsError, SeriesLimits, CUT};
pub use symbols::{Symbols, Text};

use symbols::Symbol;

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

/// The metric families the pusher writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    ContainerInfo,
    Annotation,
    Label,
    SizeBytes,
    Created,
    ResolveError,
    // Supply chain (what is attached to an image, and its base).
    Referrer,
    Base,
    BaseOutdated,
    BaseCurrentCreated,
    // Signature verification (src/verify).
    SignatureVerified,
    SignatureVerifyFailure,
    // What pods run (src/inventory/running_drift.rs), and who owns workloads
    // (src/inventory/workload_labels.rs).
    RunningDrift,
    WorkloadLabels,
    // Version freshness (src/version_series.rs).
    IsLatestVersion,
    LatestVersionCreated,
    VersionsBehind,
    // The pusher's own health (src/self_metrics.rs), pushed with every
    // snapshot so that it arrives without a scrape.
    SelfBuildInfo,
    SelfLastSuccess,
    SelfPushes,
    SelfSnapshotSeries,
    SelfSnapshotDuration,
    SelfInventoryStale,
    SelfLeader,
    SelfResolveFailures,
}

impl Family {
    pub const ALL: [Family; 25] = [
        Family::ContainerInfo,
        Family::Annotation,
        Family::Label,
        Family::SizeBytes,
        Family::Created,
        Family::ResolveError,
        Family::Referrer,
        Family::Base,
        Family::BaseOutdated,
        Family::BaseCurrentCreated,
        Family::SignatureVerified,
        Family::SignatureVerifyFailure,
        Family::RunningDrift,
        Family::WorkloadLabels,
        Family::IsLatestVersion,
        Family::LatestVersionCreated,
        Family::VersionsBehind,
        Family::SelfBuildInfo,
        Family::SelfLastSuccess,
        Family::SelfPushes,
        Family::SelfSnapshotSeries,
        Family::SelfSnapshotDuration,
        Family::SelfInventoryStale,
        Family::SelfLeader,
        Family::SelfResolveFailures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::ContainerInfo => "container_image_container_info",
            Family::Annotation => "container_image_annotation",
            Family::Label => "container_image_label",
            Family::SizeBytes => "container_image_size_bytes",
            Family::Created => "container_image_created",
            Family::ResolveError => "container_image_resolve_error",
            Family::Referrer => "container_image_referrer",
            Family::Base => "container_image_base",
            Family::BaseOutdated => "container_image_base_outdated",
            Family::BaseCurrentCreated => "container_image_base_current_created",
            Family::SignatureVerified => "container_image_signature_verified",
            Family::SignatureVerifyFailure => "container_image_signature_verify_failure",
            Family::RunningDrift => "container_image_running_drift",
            Family::WorkloadLabels => "container_image_workload_labels",
            Family::IsLatestVersion => "container_image_is_latest_version",
            Family::LatestVersionCreated => "container_image_latest_version_created",
            Family::VersionsBehind => "container_image_versions_behind",
            Family::SelfBuildInfo => "container_image_pusher_build_info",
            Family::SelfLastSuccess => "container_image_pusher_last_success_timestamp_seconds",
            Family::SelfPushes => "container_image_pusher_pushes_total",
            Family::SelfSnapshotSeries => "container_image_pusher_snapshot_series",
            Family::SelfSnapshotDuration => "container_image_pusher_last_snapshot_duration_seconds",
            Family::SelfInventoryStale => "container_image_pusher_inventory_stale",
            Family::SelfLeader => "container_image_pusher_leader",
            Family::SelfResolveFailures => "container_image_pusher_resolve_failures_total",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Family::ContainerInfo => {
                "Details about containers configured in the cluster, including the image digest resolved by the pusher."
            }
            Family::Annotation => "Annotations from the image manifest (and index).",
            Family::Label => "Labels from the image config.",
            Family::SizeBytes => "The size of the image in the registry: config plus layers.",
            Family::Created => "The created date from the image config, as a Unix epoch time.",
            Family::ResolveError => {
                "1 for each image that cannot be resolved, with the class of the failure."
            }
            Family::Referrer => {
                "Artifacts attached to the image (signatures, SBOMs, attestations), by kind and artifact type. Presence, not verification."
            }
            Family::Base => "1 for the base image the image declares it was built on.",
            Family::BaseOutdated => {
                "1 when the image's base tag now points elsewhere than the base the image was built on, else 0."
            }
            Family::BaseCurrentCreated => {
                "For an outdated base: the created date of the image its tag points at now (about when it moved), as a Unix epoch time."
            }
            Family::SignatureVerified => {
                "1 when a signature of the image verifies under the policy (key or certificate, naming this digest), else 0."
            }
            Family::SignatureVerifyFailure => {
                "1 for each image not verified under a policy, with the reason (see the README for which reason wins)."
            }
            Family::RunningDrift => {
                "1 for each running container whose pulled digest is no longer what its image reference names."
            }
            Family::WorkloadLabels => {
                "The allowlisted labels and annotations of each workload, as label_* and annotation_* labels."
            }
            Family::IsLatestVersion => {
                "1 when the running tag is the newest comparable release in its repository, else 0 (as version-checker's version_checker_is_latest_version)."
            }
            Family::LatestVersionCreated => {
                "The created date of the newest comparable release, as a Unix epoch time."
            }
            Family::VersionsBehind => {
                "How many newer versions there are: distinct majors, minors within the running major, patches within the running minor."
            }
            Family::SelfBuildInfo => {
                "1, labelled with the pusher's version and the git revision it was built from."
            }
            Family::SelfLastSuccess => {
                "When a snapshot was last accepted completely, by endpoint (as of the snapshot)."
            }
            Family::SelfPushes => "Remote-write requests by endpoint and outcome (a counter).",
            Family::SelfSnapshotSeries => "Inventory series in the snapshot.",
            Family::SelfSnapshotDuration => "Seconds the snapshot took from discovery to series.",
            Family::SelfInventoryStale => {
                "1 while a kind cannot be listed or watched and its last known objects are served, by kind."
            }
            Family::SelfLeader => "1: the replica that pushed this holds the lease.",
            Family::SelfResolveFailures => {
                "Image resolutions that failed, by error class (a counter)."
            }
        }
    }

    /// The family's own label names, in the order a [`LabelSet`] takes
    /// their values; every series also carries `__name__` and the
    /// [`CommonLabels`]. The one table of label names: label sets, external
    /// label validation, every encoder and the tests of uniqueness read it.
    pub const fn label_names(self) -> &'static [&'static str] {
        match self {
            Family::ContainerInfo => &[
                "group",
                "version",
                "kind",
                "namespace",
                "name",
                "container",
                "jsonpath",
                "image",
                "digest",
                "image_id",
            ],
            Family::Annotation | Family::Label => &["digest", "key", "value"],
            Family::SizeBytes | Family::Created => &["digest"],
            Family::ResolveError => &["image", "class"],
            Family::Referrer => &["digest", "kind", "artifact_type"],
            Family::Base => &["digest", "base_name", "base_digest"],
            Family::BaseOutdated | Family::BaseCurrentCreated => &["digest", "base_name"],
            Family::SignatureVerified => &["digest", "policy"],
            Family::SignatureVerifyFailure => &["digest", "policy", "reason"],
            Family::RunningDrift => &[
                "namespace",
                "name",
                "container",
                "image",
                "digest",
                "image_id",
            ],
            // Plus the workload's label_* and annotation_* (see
            // `LabelSet::with_extra`), which never take these names.
            Family::WorkloadLabels => &["group", "version", "kind", "namespace", "name"],
            // namespace, name and container only for containers with
            // version overrides (empty, so absent, otherwise).
            Family::IsLatestVersion => &[
                "image",
                "current_version",
                "latest_version",
                "namespace",
                "name",
                "container",
            ],
            Family::LatestVersionCreated => {
                &["image", "latest_version", "namespace", "name", "container"]
            }
            Family::VersionsBehind => &["image", "level", "namespace", "name", "container"],
            Family::SelfBuildInfo => &["version", "revision"],
            Family::SelfLastSuccess => &["endpoint"],
            Family::SelfPushes => &["endpoint", "outcome"],
            Family::SelfSnapshotSeries | Family::SelfSnapshotDuration | Family::SelfLeader => &[],
            Family::SelfInventoryStale => &["kind"],
            Family::SelfResolveFailures => &["class"],
        }
    }

    /// The pusher's own health rather than the inventory: served from the
    /// telemetry registry locally, pushed from the snapshot.
    pub const fn is_self_metric(self) -> bool {
        (self as usize) >= (Family::SelfBuildInfo as usize)
    }

    /// The family's position in [`Family::ALL`].
    fn index(self) -> usize {
        self as usize
    }
}

/// The metric name label, on every series.
pub const NAME_LABEL: &str = "__name__";
/// The label `--job` sets, on every pushed series.
pub const JOB_LABEL: &str = "job";

/// Prometheus' staleness marker: a NaN with this exact bit pattern. The
/// value of a series sent once more after it ended.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Why an `--external-label` name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalLabelError {
    #[error("{0:?} is not a valid label name (letters, digits and _, not starting with a digit)")]
    Invalid(String),
    #[error("{0:?} starts with __, which Prometheus reserves for its own labels")]
    Reserved(String),
    #[error("{0:?} is the job label, set with --job")]
    Job(String),
    #[error("{name:?} is a label of {families}; a series may not carry a name twice, so pick another name")]
    FamilyLabel { name: String, families: String },
    #[error("{0:?} is given twice")]
    Duplicate(String),
}

/// Checks external label names against the Prometheus label grammar and
/// against every name a series already carries: a duplicate name makes a
/// receiver reject the whole batch. `replica_label` (Mimir's HA tracker's,
/// `__replica__` by default) is accepted although it starts with `__`:
/// the receiver itself removes it once it has deduplicated.
pub fn check_external_labels(
    labels: &[(String, String)],
    replica_label: &str,
) -> Result<(), ExternalLabelError> {
    let mut seen = HashSet::new();
    for (name, _) in labels {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ExternalLabelError::Invalid(name.clone()));
        }
        if name.starts_with("__") && name != replica_label {
            return Err(ExternalLabelError::Reserved(name.clone()));
        }
        if name == JOB_LABEL {
            return Err(ExternalLabelError::Job(name.clone()));
        }
        let families: Vec<&str> = Family::ALL
            .into_iter()
            .filter(|f| f.label_names().contains(&name.as_str()))
            .map(Family::name)
            .collect();
        if !families.is_empty() {
            return Err(ExternalLabelError::FamilyLabel {
                name: name.clone(),
                families: families.join(", "),
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(ExternalLabelError::Duplicate(name.clone()));
        }
    }
    Ok(())
}

/// Where one label of a family's sorted label list takes its value from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// `__name__`: the family's name.
    Name,
    /// The common label at this index.
    Common(usize),
    /// The label set's value at this index (of [`Family::label_names`]).
    Value(usize),
}

/// Labels added to every series: `job` and `--external-label`s. Also knows,
/// for each family, the order of all of a series' label names, so that a
/// label set is sorted once per process rather than once per series.
#[derive(Debug, Clone)]
pub struct CommonLabels {
    pairs: Vec<(String, String)>,
    /// Per family (by [`Family::ALL`] position): every label, sorted by name.
    layouts: Vec<Box<[Slot]>>,
    /// What every label set made with these common labels keeps.
    limits: SeriesLimits,
    /// What the limits cut or dropped since [`CommonLabels::take_drops`].
    drops: Arc<limits::DropCounts>,
}

impl PartialEq for CommonLabels {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs && self.limits == other.limits
    }
}

impl Default for CommonLabels {
    fn default() -> Self {
        CommonLabels::from_pairs(Vec::new())
    }
}

impl CommonLabels {
    /// `job` and the external labels, which [`check_external_labels`] has
    /// checked: their names are distinct from each other and from every
    /// family's.
    pub fn new(job: &str, external: &[(String, String)]) -> Self {
        let mut pairs = vec![(JOB_LABEL.to_owned(), job.to_owned())];
        pairs.extend(external.iter().cloned());
        CommonLabels::from_pairs(pairs)
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let layouts = Family::ALL
            .into_iter()
            .map(|family| {
                let mut slots: Vec<(&str, Slot)> = vec![(NAME_LABEL, Slot::Name)];
                slots.extend(
                    pairs
                        .iter()
                        .enumerate()
                        .map(|(i, (n, _))| (n.as_str(), Slot::Common(i))),
                );
                slots.extend(
                    family
                        .label_names()
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (*n, Slot::Value(i))),
                );
                slots.sort_by(|a, b| a.0.cmp(b.0));
                debug_assert!(
                    slots.windows(2).all(|w| w[0].0 != w[1].0),
                    "duplicate label names in {}",
                    family.name()
                );
                slots.into_iter().map(|(_, slot)| slot).collect()
            })
            .collect();
        CommonLabels {
            pairs,
            layouts,
            limits: SeriesLimits::default(),
            drops: Arc::default(),
        }
    }

    /// The same labels with other limits, which `job` and the external
    /// labels must keep themselves, leaving room for every family's own.
    pub fn with_limits(mut self, limits: SeriesLimits) -> Result<Self, LimitsError> {
        for (name, value) in &self.pairs {
            if name.len() > limits.max_name_bytes {
                return Err(LimitsError::NameTooLong {
                    name: name.clone(),
                    len: name.len(),
                    max: limits.max_name_bytes,
                });
            }
            if value.len() > limits.max_value_bytes {
                return Err(LimitsError::ValueTooLong {
                    name: name.clone(),
                    len: value.len(),
                    max: limits.max_value_bytes,
                });
            }
        }
        // `__name__` is a value too: every family's name must fit.
        let names = Family::ALL.map(|f| (NAME_LABEL.to_owned(), f.name().to_owned()));
        if let Some((name, value)) = names.iter().find(|(_, v)| v.len() > limits.max_value_bytes) {
            return Err(LimitsError::ValueTooLong {
                name: format!("{name}={value}"),
                len: value.len(),
                max: limits.max_value_bytes,
            });
        }
        let own = Family::ALL
            .iter()
            .map(|f| f.label_names().len())
            .max()
            .unwrap_or(0);
        let needed = 1 + self.pairs.len() + own;
        if needed > limits.max_label_names {
            return Err(LimitsError::TooManyLabels {
                needed,
                external: self.pairs.len() - 1,
                own,
                max: limits.max_label_names,
            });
        }
        self.limits = limits;
        Ok(self)
    }

    pub fn limits(&self) -> SeriesLimits {
        self.limits
    }

    /// What the limits cut or left out since the last call, by reason
    /// (label sets are made when what they describe first appears or
    /// changes, so each is counted once, not at every tick).
    pub fn take_drops(&self) -> impl Iterator<Item = (LimitDrop, u64)> {
        LimitDrop::ALL.into_iter().zip(self.drops.take())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(n, _)| n.as_str())
    }

    /// The (name, value) pairs, `job` first.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    fn layout(&self, family: Family) -> &[Slot] {
        &self.layouts[family.index()]
    }
}

/// The hasher of label-set identities: keyed at random once per process,
/// so label values a tenant chooses cannot be made to collide on purpose.
fn identity_hasher() -> &'static RandomState {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
}

/// The labels of one series: cheap to clone (one pointer), compared and
/// hashed by content.
#[derive(Clone)]
pub struct LabelSet(Arc<LabelSetData>);

struct LabelSetData {
    family: Family,
    /// Of the labels (family, common labels, values): the series' identity.
    hash: u64,
    common: Arc<CommonLabels>,
    /// One per name of [`Family::label_names`], in that order, as ids in
    /// [`symbols::table`], held until the label set is dropped;
    /// [`symbols::EMPTY`] for a label the series does not carry. Then the
    /// labels whose names are not in the table (a workload's `label_*`;
    /// none but for `WorkloadLabels`), sorted by name, as a name id and a
    /// value id each: in the one allocation, and their repeated names and
    /// values (`label_app`, `label_team`) one copy each in the table.
    values: Box<[Symbol]>,
}

impl LabelSet {
    /// The labels of one series of `family`, its values given in the order
    /// of [`Family::label_names`].
    ///
    /// # Panics
    /// If `values` does not hold one value per label name: a builder that
    /// disagrees with the table is a bug, found by any test of it.
    pub fn new(family: Family, common: &Arc<CommonLabels>, values: &[Text<'_>]) -> Self {
        LabelSet::with_extra(family, common, values, Vec::new())
    }

    /// [`LabelSet::new`] with labels whose names are not in the table (a
    /// workload's `label_*`). One whose name the set already has (an
    /// external label of that name), or that is given twice, is left out:
    /// a series never carries a name twice.
    ///
    /// The common labels' [`SeriesLimits`] are kept: a longer value is cut
    /// and ends in [`CUT`]; an extra label with a longer name is left out,
    /// and so are those beyond the label budget (the first by name are
    /// kept). What is cut or left out is counted in the common labels.
    pub fn with_extra(
        family: Family,
        common: &Arc<CommonLabels>,
        values: &[Text<'_>],
        mut extra: Vec<(Arc<str>, Arc<str>)>,
    ) -> Self {
        assert_eq!(
            family.label_names().len(),
            values.len(),
            "one value per label name of {}",
            family.name()
        );
        let (limits, drops) = (common.limits, &common.drops);
        let too_long = |v: &Text<'_>| v.as_str().len() > limits.max_value_bytes;
        // Copies only when a value is cut: a cold start makes 160k label sets.
        let shorter: Vec<Option<Arc<str>>> = match values.iter().any(too_long) {
            true => values
                .iter()
                .map(|v| limits::cut(v.as_str(), limits.max_value_bytes))
                .collect(),
            false => Vec::new(),
        };
        let mut cut = shorter.iter().flatten().count();
        let cut_values: Vec<Text<'_>>;
        let values = match shorter.is_empty() {
            true => values,
            false => {
                cut_values = values
                    .iter()
                    .zip(&shorter)
                    .map(|(value, shorter)| shorter.as_ref().map_or(*value, Text::Shared))
                    .collect();
                &cut_values
            }
        };
        if !extra.is_empty() {
            extra.sort_by(|a, b| a.0.cmp(&b.0));
            extra.dedup_by(|a, b| a.0 == b.0);
            extra.retain(|(name, _)| {
                &**name != NAME_LABEL
                    && !family.label_names().contains(&&**name)
                    && !common.names().any(|n| n == &**name)
            });
            let before = extra.len();
            extra.retain(|(name, _)| name.len() <= limits.max_name_bytes);
            drops.add(LimitDrop::SeriesNameTooLong, before - extra.len());
            // Every name of the family counts, even one whose value is
            // empty and not sent: the budget does not move with the values.
            let budget = limits
                .max_label_names
                .saturating_sub(1 + common.pairs.len() + family.label_names().len());
            drops.add(
                LimitDrop::SeriesTooManyLabels,
                extra.len().saturating_sub(budget),
            );
            extra.truncate(budget);
            for (_, value) in extra.iter_mut() {
                if let Some(shorter) = limits::cut(value, limits.max_value_bytes) {
                    *value = shorter;
                    cut += 1;
                }
            }
        }
        drops.add(LimitDrop::SeriesValueTooLong, cut);
        let mut hasher = identity_hasher().build_hasher();
        family.name().hash(&mut hasher);
        common.pairs.hash(&mut hasher);
        for value in values {
            value.as_str().hash(&mut hasher);
        }
        extra.hash(&mut hasher);
        let values = match extra.is_empty() {
            true => symbols::table().intern(values),
            false => {
                let pairs = extra
                    .iter()
                    .flat_map(|(n, v)| [Text::Shared(n), Text::Shared(v)]);
                let all: Vec<Text<'_>> = values.iter().copied().chain(pairs).collect();
                symbols::table().intern(&all)
            }
        };
        LabelSet(Arc::new(LabelSetData {
            family,
            hash: hasher.finish(),
            common: common.clone(),
            values,
        }))
    }

    pub fn family(&self) -> Family {
        self.0.family
    }

    /// A 64-bit hash of the labels, keyed per process: equal label sets
    /// have equal hashes, and distinct ones collide with a probability of
    /// about n²/2⁶⁵ among n series.
    pub fn hash(&self) -> u64 {
        self.0.hash
    }

    /// The value of one of the family's own labels ("" when absent), read
    /// from `symbols` ([`symbols::Table::read`]).
    pub fn get<'a>(&self, name: &str, symbols: &'a Symbols<'_>) -> Option<&'a str> {
        let position = self
            .family()
            .label_names()
            .iter()
            .position(|n| *n == name)?;
        Some(symbols.get(self.0.values[position]))
    }

    /// Every label, `__name__` and the common labels included, sorted by
    /// name (names are unique), without those whose value is empty: the
    /// label set as Prometheus defines a series by it. The values are read
    /// from `symbols` ([`symbols::Table::read`]).
    pub fn iter<'a>(&'a self, symbols: &'a Symbols<'_>) -> Labels<'a> {
        Labels {
            raw: self.raw(symbols),
            symbols,
        }
    }

    /// [`LabelSet::iter`] without reading the values from the table: as
    /// ids where they are in it, for an encoder that maps ids to a table
    /// of its own (the names of extra labels are read from `symbols`).
    pub fn raw<'a>(&'a self, symbols: &'a Symbols<'_>) -> RawLabels<'a> {
        let own = self.0.family.label_names().len();
        RawLabels {
            data: &self.0,
            slots: self.0.common.layout(self.0.family).iter().peekable(),
            extra: self.0.values[own..].chunks_exact(2).peekable(),
            symbols,
        }
    }

    /// Whether two label sets are the same allocation (not merely equal).
    pub fn ptr_eq(&self, other: &LabelSet) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl PartialEq for LabelSet {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other)
            || (self.0.hash == other.0.hash
                && self.0.family == other.0.family
                && self.0.values == other.0.values
                && self.0.common.pairs == other.0.common.pairs)
    }
}

impl Eq for LabelSet {}

impl Drop for LabelSetData {
    fn drop(&mut self) {
        symbols::table().release(&self.values);
    }
}

impl std::fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let symbols = symbols::table().read();
        f.debug_map().entries(self.iter(&symbols)).finish()
    }
}

/// One series of a snapshot: its labels and its one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: LabelSet,
    pub value: f64,
}

impl Series {
    pub fn family(&self) -> Family {
        self.labels.family()
    }

    /// The series once more, marked as ended.
    pub fn stale(labels: LabelSet) -> Series {
        Series {
            labels,
            value: f64::from_bits(STALE_NAN),
        }
    }

    /// Whether this is a staleness marker rather than a value.
    pub fn is_stale(&self) -> bool {
        self.value.to_bits() == STALE_NAN
    }
}

/// All series of one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Milliseconds since the Unix epoch, shared by every sample.
    pub timestamp_ms: i64,
    pub series: Vec<Series>,
    pub containers: usize,
    /// Distinct resolved digests.
    pub images: usize,
}

/// Series and snapshots for the tests of every sink, built straight from
/// the model (no source, no builder).
#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;
