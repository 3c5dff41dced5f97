//! The on-disk cache's file: one header line, then one JSON record per
//! image, most recently used first, then one per signature verdict.
//!
//! ```text
//! container-image-pusher metadata cache v2 settings=<16 hex> sha256=<64 hex>
//! {"reference":"registry/repo@sha256:…","login":0,"used":7,"digest":"sha256:…",…}
//! {"verdict":"sha256:…","subjects":"sha256:…","attestation":false,"login":0,"policies":"<32 hex>","used":7,"outcomes":[["verified"]]}
//! ```
//!
//! A verdict (the outcomes of one signature or attestation artifact for
//! the image digests it may name, under each policy) never changes for a
//! given policy set, so it is kept under the fingerprint of the policies
//! (`verify::policy::fingerprint`: names, keys, roots, options); a verdict
//! of other policies is not loaded.
//!
//! The checksum covers every byte after the header line, so a truncated or
//! corrupted file is refused as a whole; `settings` fingerprints what shapes
//! the metadata (platform, image filter, image limits), so metadata made
//! under other settings is never reused. The file is hostile input all the
//! same (a checksum is no signature): each record is read on its own within
//! [`MAX_RECORD_BYTES`] (so one record's maps cost at most that much
//! transiently), its digests and reference are checked as a registry's
//! would be, and its labels and annotations go through
//! [`ImageMetadata::bounded`] like fresh metadata.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::image_facts::limits::{DropReason, ImageLimits};
use crate::image_facts::supply_chain::SupplyChain;
use crate::image_facts::{ImageMetadata, Pairs, MAX_PLATFORM_DIGESTS};
use crate::reference;
use crate::registry::referrers::MAX_ARTIFACTS;
use crate::registry::{ImageFilter, Platform};
use crate::verify::verdict::{Outcome, Reason};

/// The format this build writes and reads; any other is refused.
pub const VERSION: u32 = 2;
const MAGIC: &str = "container-image-pusher metadata cache";
/// Longest header line read.
const MAX_HEADER: usize = 256;
/// Longest record line: real images take 1–3 KiB, the image limits
/// allow about 128 × 2 × 1 KiB per map.
pub const MAX_RECORD_BYTES: usize = 640 * 1024;
/// Most records in one file: the in-memory metadata cache's capacity.
pub const MAX_ENTRIES: usize = 50_000;
/// Most verdict records in one file.
pub const MAX_VERDICTS: usize = 100_000;
/// Most policies, checks per policy and subjects in one verdict record.
const MAX_VERDICT_WIDTH: usize = 64;
const MAX_SUBJECTS: usize = 4;
const VERIFIED: &str = "verified";
/// Longest reference accepted as a key (a registry name plus a
/// repository of 255 plus a digest fit well within it).
const MAX_REFERENCE: usize = 1024;

/// Why a cache file is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("no header line: not a metadata cache file, or truncated")]
    NoHeader,
    #[error("the header line is not this format's")]
    Header,
    #[error("written in format {0}, this build reads format v{VERSION}")]
    Version(String),
    #[error("checksum mismatch: the file is truncated or corrupted")]
    Checksum,
    #[error("written under other settings (platform, image filter or image limits)")]
    Settings,
    #[error("more than {MAX_ENTRIES} image or {MAX_VERDICTS} verdict records")]
    TooManyRecords,
    #[error("record {line}: {message}")]
    Record { line: usize, message: String },
}

/// One image read from the file: its in-memory cache key (pinned
/// reference and login id), when it was last used, and its metadata.
#[derive(Debug)]
pub struct Entry {
    pub reference: String,
    pub login: u64,
    pub used: u64,
    pub metadata: ImageMetadata,
}

/// What one signature verdict is kept under: the image digests the
/// artifact may name (comma-separated), the artifact's digest, whether it
/// is checked as an attestation, and the login it was read with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerdictKey {
    pub subjects: String,
    pub artifact: String,
    pub attestation: bool,
    pub login: u64,
}

/// One verdict read from the file: per policy, per check, the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictEntry {
    pub key: VerdictKey,
    /// The fingerprint of the policies it was computed under.
    pub policies: String,
    pub used: u64,
    pub outcomes: Vec<Vec<Outcome>>,
}

/// What a file holds.
#[derive(Debug, Default)]
pub struct Parsed {
    pub images: Vec<Entry>,
    pub verdicts: Vec<VerdictEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerdictRecord {
    verdict: String,
    subjects: String,
    attestation: bool,
    login: u64,
    policies: String,
    used: u64,
    outcomes: Vec<Vec<String>>,
}

/// One verdict record line (with its newline).
pub fn verdict_record(entry: &VerdictEntry) -> Vec<u8> {
    let outcome = |o: &Outcome| match o {
        Ok(()) => VERIFIED.to_owned(),
        Err(reason) => reason.as_str().to_owned(),
    };
    let out = VerdictRecord {
        verdict: entry.key.artifact.clone(),
        subjects: entry.key.subjects.clone(),
        attestation: entry.key.attestation,
        login: entry.key.login,
        policies: entry.policies.clone(),
        used: entry.used,
        outcomes: (entry.outcomes.iter())
            .map(|checks| checks.iter().map(outcome).collect())
            .collect(),
    };
    let mut line = serde_json::to_vec(&out).expect("a record serializes");
    line.push(b'\n');
    line
}

fn parse_verdict(line: &[u8]) -> Result<VerdictEntry, String> {
    if line.len() > MAX_RECORD_BYTES {
        return Err(format!("longer than {MAX_RECORD_BYTES} bytes"));
    }
    let record: VerdictRecord = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let subjects: Vec<&str> = record.subjects.split(',').collect();
    if subjects.len() > MAX_SUBJECTS {
        return Err(format!("more than {MAX_SUBJECTS} subjects"));
    }
    for digest in subjects.into_iter().chain([record.verdict.as_str()]) {
        reference::check_digest(digest).map_err(|e| format!("digest {:?}: {e}", cut(digest)))?;
    }
    let fingerprint =
        record.policies.len() == 32 && record.policies.bytes().all(|b| b.is_ascii_hexdigit());
    if !fingerprint {
        return Err(format!(
            "policies {:?}: not a fingerprint",
            cut(&record.policies)
        ));
    }
    let too_wide = record.outcomes.len() > MAX_VERDICT_WIDTH
        || record.outcomes.iter().any(|c| c.len() > MAX_VERDICT_WIDTH);
    if too_wide {
        return Err(format!("more than {MAX_VERDICT_WIDTH} policies or checks"));
    }
    let outcome = |text: &String| match text.as_str() {
        VERIFIED => Ok(Ok(())),
        other => (Reason::ALL.into_iter())
            .find(|r| r.as_str() == other)
            .map(Err)
            .ok_or_else(|| format!("unknown outcome {:?}", cut(other))),
    };
    let outcomes = (record.outcomes.iter())
        .map(|checks| checks.iter().map(outcome).collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VerdictEntry {
        key: VerdictKey {
            subjects: record.subjects,
            artifact: record.verdict,
            attestation: record.attestation,
            login: record.login,
        },
        policies: record.policies,
        used: record.used,
        outcomes,
    })
}

/// What a record holds; written from borrowed metadata.
#[derive(Serialize)]
struct RecordOut<'a> {
    reference: &'a str,
    login: u64,
    used: u64,
    digest: &'a str,
    size: u64,
    created: Option<i64>,
    labels: &'a Pairs,
    annotations: &'a Pairs,
    dropped: BTreeMap<&'static str, u64>,
    platform_digest: Option<&'a str>,
    index_attestations: &'a [String],
    platform_digests: &'a [String],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    reference: String,
    login: u64,
    used: u64,
    digest: String,
    size: u64,
    created: Option<i64>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    dropped: BTreeMap<String, u64>,
    platform_digest: Option<String>,
    index_attestations: Vec<String>,
    platform_digests: Vec<String>,
}

/// A fingerprint of what shapes an image's metadata: a file written under
/// other settings is not read.
pub fn settings_fingerprint(
    platform: &Platform,
    filter: &ImageFilter,
    limits: &ImageLimits,
) -> String {
    let text = format!("{platform:?}\n{filter:?}\n{limits:?}");
    hex(&Sha256::digest(text.as_bytes())[..8])
}

/// One record line (with its newline) for the image under `reference`
/// and `login`, last used at `used`.
pub fn record(reference: &str, login: u64, used: u64, metadata: &ImageMetadata) -> Vec<u8> {
    let out = RecordOut {
        reference,
        login,
        used,
        digest: &metadata.digest,
        size: metadata.size,
        created: metadata.created,
        labels: &metadata.labels,
        annotations: &metadata.annotations,
        dropped: metadata
            .dropped
            .iter()
            .map(|(reason, n)| (reason.as_str(), n))
            .collect(),
        platform_digest: metadata.supply_chain.platform_digest.as_deref(),
        index_attestations: &metadata.supply_chain.index_attestations,
        platform_digests: &metadata.platform_digests,
    };
    let mut line = serde_json::to_vec(&out).expect("a record serializes");
    line.push(b'\n');
    line
}

/// The header line of a file whose records hash to `checksum` (its length
/// does not depend on the checksum: a writer may write it last).
pub fn header(settings: &str, checksum: &[u8]) -> String {
    format!(
        "{MAGIC} v{VERSION} settings={settings} sha256={}\n",
        hex(checksum)
    )
}

/// The whole file: header line, then `records` (lines made by [`record`]).
pub fn file(settings: &str, records: &[u8]) -> Vec<u8> {
    let header = header(settings, &Sha256::digest(records));
    let mut out = Vec::with_capacity(header.len() + records.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(records);
    out
}

/// The entries of a whole file, or why it is refused; `settings` is the
/// fingerprint it must have been written under, `limits` bound each entry.
pub fn parse(bytes: &[u8], settings: &str, limits: &ImageLimits) -> Result<Parsed, FormatError> {
    let header_end = bytes
        .iter()
        .take(MAX_HEADER)
        .position(|&b| b == b'\n')
        .ok_or(FormatError::NoHeader)?;
    let header = std::str::from_utf8(&bytes[..header_end]).map_err(|_| FormatError::Header)?;
    let body = &bytes[header_end + 1..];
    let rest = header.strip_prefix(MAGIC).ok_or(FormatError::Header)?;
    let mut fields = rest.split_ascii_whitespace();
    let version = fields.next().ok_or(FormatError::Header)?;
    if version != format!("v{VERSION}") {
        return Err(FormatError::Version(version.chars().take(16).collect()));
    }
    let field = |value: Option<&str>, name: &str| {
        value
            .and_then(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .ok_or(FormatError::Header)
    };
    let written_under = field(fields.next(), "settings=")?;
    let checksum = field(fields.next(), "sha256=")?;
    if fields.next().is_some() {
        return Err(FormatError::Header);
    }
    if checksum != hex(&Sha256::digest(body)) {
        return Err(FormatError::Checksum);
    }
    if written_under != settings {
        return Err(FormatError::Settings);
    }
    let mut parsed = Parsed::default();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let refused = |message| FormatError::Record {
            line: index + 2,
            message,
        };
        if line.starts_with(b"{\"verdict\":") {
            if parsed.verdicts.len() == MAX_VERDICTS {
                return Err(FormatError::TooManyRecords);
            }
            parsed.verdicts.push(parse_verdict(line).map_err(refused)?);
            continue;
        }
        if parsed.images.len() == MAX_ENTRIES {
            return Err(FormatError::TooManyRecords);
        }
        parsed
            .images
            .push(parse_record(line, limits).map_err(refused)?);
    }
    Ok(parsed)
}

/// One record, checked as fresh metadata would be.
fn parse_record(line: &[u8], limits: &ImageLimits) -> Result<Entry, String> {
    if line.len() > MAX_RECORD_BYTES {
        return Err(format!("longer than {MAX_RECORD_BYTES} bytes"));
    }
    let record: RecordIn = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    check_digests(&record)?;
    if record.reference.len() > MAX_REFERENCE {
        return Err(format!("a reference longer than {MAX_REFERENCE} bytes"));
    }
    let parsed = reference::parse(&record.reference).map_err(|e| e.to_string())?;
    if parsed.digest() != Some(record.digest.as_str()) || parsed.whole() != record.reference {
        return Err("the reference is not the image's digest-pinned reference".into());
    }
    let mut metadata = ImageMetadata::bounded(
        record.digest,
        record.size,
        record.created,
        record.labels,
        record.annotations,
        limits,
    );
    for (name, count) in record.dropped {
        let reason = DropReason::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| format!("unknown drop reason {:?}", cut(&name)))?;
        metadata.dropped.add_count(reason, count);
    }
    metadata.supply_chain = SupplyChain {
        platform_digest: record.platform_digest,
        index_attestations: record.index_attestations,
        ..SupplyChain::default()
    };
    metadata.platform_digests = record.platform_digests;
    Ok(Entry {
        reference: record.reference,
        login: record.login,
        used: record.used,
        metadata,
    })
}

fn check_digests(record: &RecordIn) -> Result<(), String> {
    if record.index_attestations.len() > MAX_ARTIFACTS {
        return Err(format!("more than {MAX_ARTIFACTS} index attestations"));
    }
    if record.platform_digests.len() > MAX_PLATFORM_DIGESTS {
        return Err(format!("more than {MAX_PLATFORM_DIGESTS} platform digests"));
    }
    let digests = std::iter::once(&record.digest)
        .chain(&record.platform_digest)
        .chain(&record.index_attestations)
        .chain(&record.platform_digests);
    for digest in digests {
        reference::check_digest(digest).map_err(|e| format!("digest {:?}: {e}", cut(digest)))?;
    }
    Ok(())
}

/// At most 64 characters of a hostile string, for a message.
fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn metadata() -> ImageMetadata {
        let labels = BTreeMap::from([("org.opencontainers.image.version".into(), "1.2".into())]);
        let annotations = BTreeMap::from([(String::new(), "empty key".into())]);
        let mut m = ImageMetadata::bounded(
            DIGEST.into(),
            1234,
            Some(1_700_000_000),
            labels,
            annotations,
            &ImageLimits::default(),
        );
        m.supply_chain.platform_digest = Some(OTHER.into());
        m.supply_chain.index_attestations = vec![OTHER.into()];
        m.platform_digests = vec![DIGEST.into(), OTHER.into()];
        m
    }

    fn reference() -> String {
        format!("registry.example/apps/a@{DIGEST}")
    }

    fn written() -> Vec<u8> {
        let mut records = record(&reference(), 7, 3, &metadata());
        records.extend(record(&reference(), 0, 2, &metadata()));
        file("abc", &records)
    }

    #[test]
    fn what_is_written_reads_back_equal_with_its_keys_and_drop_counts() {
        let entries = parse(&written(), "abc", &ImageLimits::default())
            .unwrap()
            .images;
        assert_eq!(entries.len(), 2);
        let first = &entries[0];
        assert_eq!(
            (first.reference.as_str(), first.login, first.used),
            (reference().as_str(), 7, 3)
        );
        assert_eq!(first.metadata, metadata());
        assert_eq!(first.metadata.dropped.get(DropReason::EmptyKey), 1);
        assert_eq!(entries[1].login, 0);
    }

    fn verdict() -> VerdictEntry {
        VerdictEntry {
            key: VerdictKey {
                subjects: format!("{DIGEST},{OTHER}"),
                artifact: OTHER.into(),
                attestation: true,
                login: 9,
            },
            policies: "0123456789abcdef0123456789abcdef".into(),
            used: 4,
            outcomes: vec![vec![Ok(()), Err(Reason::Malformed)], vec![]],
        }
    }

    #[test]
    fn verdicts_read_back_equal_and_hostile_ones_refuse_the_file() {
        let mut records = record(&reference(), 7, 3, &metadata());
        records.extend(verdict_record(&verdict()));
        let parsed = parse(&file("abc", &records), "abc", &ImageLimits::default()).unwrap();
        assert_eq!((parsed.images.len(), parsed.verdicts), (1, vec![verdict()]));
        let line = String::from_utf8(verdict_record(&verdict())).unwrap();
        for hostile in [
            line.replace("\"malformed\"", "\"fine\""),
            line.replace(OTHER, "sha256:short"),
            line.replace("0123456789abcdef\"", "0123456789abcdeg\""),
            line.replace("\"login\":9", "\"login\":9,\"extra\":1"),
            line.replace(
                &format!("\"{DIGEST},"),
                &format!("\"{DIGEST},{DIGEST},{DIGEST},{DIGEST},"),
            ),
        ] {
            let refused = parse(
                &file("abc", hostile.as_bytes()),
                "abc",
                &ImageLimits::default(),
            );
            assert!(
                matches!(refused, Err(FormatError::Record { line: 2, .. })),
                "{hostile}: {refused:?}"
            );
        }
        // A file of the first format (no verdicts) is refused as a whole.
        let old = String::from_utf8(file("abc", &records))
            .unwrap()
            .replacen(" v2 ", " v1 ", 1);
        assert_eq!(
            parse(old.as_bytes(), "abc", &ImageLimits::default()).unwrap_err(),
            FormatError::Version("v1".into())
        );
    }

    #[test]
    fn a_truncated_or_flipped_file_fails_its_checksum() {
        let file = written();
        let truncated = &file[..file.len() - 10];
        assert_eq!(
            parse(truncated, "abc", &ImageLimits::default()).unwrap_err(),
            FormatError::Checksum
        );
        let mut flipped = file.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        assert_eq!(
            parse(&flipped, "abc", &ImageLimits::default()).unwrap_err(),
            FormatError::Checksum
        );
        assert_eq!(
            parse(b"", "abc", &ImageLimits::default()).unwrap_err(),
            FormatError::NoHeader
        );
    }

    #[test]
    fn another_version_or_other_settings_are_refused() {
        let file = String::from_utf8(written())
            .unwrap()
            .replacen(" v2 ", " v3 ", 1);
        assert_eq!(
            parse(file.as_bytes(), "abc", &ImageLimits::default()).unwrap_err(),
            FormatError::Version("v3".into())
        );
        assert_eq!(
            parse(&written(), "abd", &ImageLimits::default()).unwrap_err(),
            FormatError::Settings
        );
        let limits = ImageLimits::default();
        let platform: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm64".parse().unwrap();
        let filter = ImageFilter::default();
        assert_ne!(
            settings_fingerprint(&platform, &filter, &limits),
            settings_fingerprint(&arm, &filter, &limits)
        );
        let fewer = ImageLimits {
            max_labels: 1,
            ..limits
        };
        assert_ne!(
            settings_fingerprint(&platform, &filter, &limits),
            settings_fingerprint(&platform, &filter, &fewer)
        );
    }

    /// A record that checks out but lies: its checksum is right, as a
    /// hostile writer would make it.
    fn with_record(line: &str) -> Vec<u8> {
        file("abc", format!("{line}\n").as_bytes())
    }

    fn refusal(line: &str) -> String {
        parse(&with_record(line), "abc", &ImageLimits::default())
            .unwrap_err()
            .to_string()
    }

    fn json_record(patch: serde_json::Value) -> String {
        let mut value: serde_json::Value =
            serde_json::from_slice(&record(&reference(), 1, 1, &metadata())).unwrap();
        for (k, v) in patch.as_object().unwrap() {
            value[k] = v.clone();
        }
        value.to_string()
    }

    #[test]
    fn hostile_records_are_refused_with_what_is_wrong() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(
            refusal(&deep).starts_with("record 2: "),
            "{}",
            refusal(&deep)
        );
        let huge = format!("\"{}\"", "a".repeat(MAX_RECORD_BYTES));
        assert!(refusal(&huge).contains("longer than"));
        let absurd = json_record(serde_json::json!({"size": 1e300}));
        assert!(refusal(&absurd).starts_with("record 2: "));
        let negative = json_record(serde_json::json!({"login": -1}));
        assert!(refusal(&negative).starts_with("record 2: "));
        let bad_digest = json_record(serde_json::json!({"platform_digests": ["sha256:zz"]}));
        assert!(
            refusal(&bad_digest).contains("digest"),
            "{}",
            refusal(&bad_digest)
        );
        let many: Vec<String> = (0..=MAX_PLATFORM_DIGESTS).map(|_| DIGEST.into()).collect();
        let many = json_record(serde_json::json!({ "platform_digests": many }));
        assert!(refusal(&many).contains("platform digests"));
        let moved = json_record(serde_json::json!({ "digest": OTHER }));
        assert!(
            refusal(&moved).contains("digest-pinned"),
            "{}",
            refusal(&moved)
        );
        let reason = json_record(serde_json::json!({"dropped": {"made_up": 1}}));
        assert!(refusal(&reason).contains("made_up"));
        let unknown = json_record(serde_json::json!({"extra": 1}));
        assert!(refusal(&unknown).contains("extra"));
    }

    #[test]
    fn a_loaded_entry_is_held_to_the_image_limits_and_saturates_its_counts() {
        let labels: serde_json::Map<String, serde_json::Value> = (0..300)
            .map(|i| (format!("l{i:03}"), "x".repeat(1500).into()))
            .collect();
        let line = json_record(serde_json::json!({
            "labels": labels,
            "dropped": {"too_many_labels": u64::MAX},
        }));
        let entries = parse(&with_record(&line), "abc", &ImageLimits::default())
            .unwrap()
            .images;
        let m = &entries[0].metadata;
        let limits = ImageLimits::default();
        assert_eq!(m.labels.len(), limits.max_labels);
        assert!(m
            .labels
            .iter()
            .all(|(_, v)| v.len() <= limits.max_value_length));
        assert_eq!(m.dropped.get(DropReason::TooManyLabels), u64::MAX);
    }
}
