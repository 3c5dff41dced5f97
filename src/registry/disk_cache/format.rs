//! The on-disk cache's file: one header line, then one JSON record per
//! image, most recently used first.
//!
//! ```text
//! container-image-pusher metadata cache v1 settings=<16 hex> sha256=<64 hex>
//! {"reference":"registry/repo@sha256:…","login":0,"used":7,"digest":"sha256:…",…}
//! ```
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
use crate::image_facts::{ImageMetadata, MAX_PLATFORM_DIGESTS};
use crate::reference;
use crate::registry::referrers::MAX_ARTIFACTS;
use crate::registry::{ImageFilter, Platform};

/// The format this build writes and reads; any other is refused.
pub const VERSION: u32 = 1;
const MAGIC: &str = "container-image-pusher metadata cache";
/// Longest header line read.
const MAX_HEADER: usize = 256;
/// Longest record line: real images take 1–3 KiB, the image limits
/// allow about 128 × 2 × 1 KiB per map.
pub const MAX_RECORD_BYTES: usize = 640 * 1024;
/// Most records in one file: the in-memory metadata cache's capacity.
pub const MAX_ENTRIES: usize = 50_000;
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
    #[error("more than {MAX_ENTRIES} records")]
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

/// What a record holds; written from borrowed metadata.
#[derive(Serialize)]
struct RecordOut<'a> {
    reference: &'a str,
    login: u64,
    used: u64,
    digest: &'a str,
    size: u64,
    created: Option<i64>,
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
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
pub fn parse(
    bytes: &[u8],
    settings: &str,
    limits: &ImageLimits,
) -> Result<Vec<Entry>, FormatError> {
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
    let mut entries = Vec::new();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if entries.len() == MAX_ENTRIES {
            return Err(FormatError::TooManyRecords);
        }
        let line_number = index + 2;
        let entry = parse_record(line, limits).map_err(|message| FormatError::Record {
            line: line_number,
            message,
        })?;
        entries.push(entry);
    }
    Ok(entries)
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
        let entries = parse(&written(), "abc", &ImageLimits::default()).unwrap();
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
            .replacen(" v1 ", " v2 ", 1);
        assert_eq!(
            parse(file.as_bytes(), "abc", &ImageLimits::default()).unwrap_err(),
            FormatError::Version("v2".into())
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
        let entries = parse(&with_record(&line), "abc", &ImageLimits::default()).unwrap();
        let m = &entries[0].metadata;
        let limits = ImageLimits::default();
        assert_eq!(m.labels.len(), limits.max_labels);
        assert!(m
            .labels
            .values()
            .all(|v| v.len() <= limits.max_value_length));
        assert_eq!(m.dropped.get(DropReason::TooManyLabels), u64::MAX);
    }
}
