//! Transparency-log proofs a Sigstore bundle carries, checked offline
//! against a log's public key: the RFC 6962 inclusion proof (the Merkle
//! audit path from the entry's leaf hash to the root) and the checkpoint
//! (a signed note of the tree size and root) the bundle carries with it,
//! as bundles v0.2 and later always do. The signed entry timestamp
//! (`inclusionPromise`, optional since v0.2) is not checked.
//!
//! An entry counts for a signature only when its canonicalized body binds
//! it: the body names the SHA-256 of the signed payload and one of the
//! signatures (base64, or base64 twice as Rekor's `intoto` kind keeps
//! them), whatever the entry's kind (`dsse`, `intoto`, `hashedrekord`).

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::signature::PublicKey;

/// Entries read from one bundle.
pub const MAX_ENTRIES: usize = 8;
/// Hashes in one inclusion proof: a tree of 2^64 leaves needs 64.
pub const MAX_PROOF_HASHES: usize = 64;
/// Largest canonicalized body or checkpoint read.
pub const MAX_ENTRY_TEXT: usize = 64 * 1024;
/// Signature lines read from one checkpoint.
const MAX_NOTE_SIGNATURES: usize = 4;
/// String values of a body looked at for the binding.
const MAX_BODY_STRINGS: usize = 256;

/// A log entry as a bundle carries it (`verificationMaterial.tlogEntries[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    #[serde(default)]
    pub canonicalized_body: String,
    #[serde(default)]
    pub inclusion_proof: Option<InclusionProof>,
}

/// An inclusion proof; protobuf's JSON writes its 64-bit numbers as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    #[serde(default)]
    pub log_index: Number,
    #[serde(default)]
    pub tree_size: Number,
    #[serde(default)]
    pub root_hash: String,
    #[serde(default)]
    pub hashes: Vec<String>,
    #[serde(default)]
    pub checkpoint: Checkpoint,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Checkpoint {
    #[serde(default)]
    pub envelope: String,
}

/// A number written as a JSON number or string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Integer(u64),
    Text(String),
}

impl Default for Number {
    fn default() -> Self {
        Number::Integer(0)
    }
}

impl Number {
    fn value(&self) -> Result<u64, ProofError> {
        match self {
            Number::Integer(n) => Ok(*n),
            Number::Text(text) => text.parse().map_err(|_| ProofError::Field("number")),
        }
    }
}

/// Why a log entry does not prove a signature was logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the entry has no inclusion proof")]
    NoProof,
    #[error("the entry's {0} cannot be read")]
    Field(&'static str),
    #[error("the entry's body does not name this signature and payload")]
    Unbound,
    #[error("the audit path does not lead to the proof's root")]
    Path,
    #[error("the checkpoint does not state the proof's tree size and root")]
    Checkpoint,
    #[error("no key of the log signed the checkpoint")]
    Signature,
}

/// What a signature's log entries prove under a log's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// An entry binds the signature, and its proof checks.
    Verified,
    /// No entry at all.
    Missing,
    /// Entries, none of which proves the signature was logged.
    Failed,
}

impl Logged {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Logged::Verified => "verified",
            Logged::Missing => "missing",
            Logged::Failed => "failed",
        }
    }
}

/// Whether one of `entries` proves, under one of `keys`, that the
/// signatures `signatures` of `payload` were logged.
pub fn check(
    entries: &[LogEntry],
    keys: &[PublicKey],
    payload: &[u8],
    signatures: &[Vec<u8>],
) -> Logged {
    if entries.is_empty() {
        return Logged::Missing;
    }
    let proven = entries
        .iter()
        .any(|entry| verify_entry(entry, keys, payload, signatures).is_ok());
    if proven {
        Logged::Verified
    } else {
        Logged::Failed
    }
}

fn decode(text: &str, what: &'static str) -> Result<Vec<u8>, ProofError> {
    if text.len() > MAX_ENTRY_TEXT {
        return Err(ProofError::Field(what));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| ProofError::Field(what))
}

/// Checks one entry: its binding, its audit path, its checkpoint.
pub fn verify_entry(
    entry: &LogEntry,
    keys: &[PublicKey],
    payload: &[u8],
    signatures: &[Vec<u8>],
) -> Result<(), ProofError> {
    let body = decode(&entry.canonicalized_body, "body")?;
    if !binds(&body, payload, signatures) {
        return Err(ProofError::Unbound);
    }
    let proof = entry.inclusion_proof.as_ref().ok_or(ProofError::NoProof)?;
    if proof.hashes.len() > MAX_PROOF_HASHES {
        return Err(ProofError::Field("hashes"));
    }
    let hashes = proof
        .hashes
        .iter()
        .map(|h| decode(h, "hashes"))
        .collect::<Result<Vec<_>, _>>()?;
    let root = decode(&proof.root_hash, "root hash")?;
    let (index, size) = (proof.log_index.value()?, proof.tree_size.value()?);
    let leaf = hash_pair(0, &body, &[]);
    if root_from_path(index, size, leaf, &hashes) != Some(root.clone()) {
        return Err(ProofError::Path);
    }
    let note = &proof.checkpoint.envelope;
    if note.len() > MAX_ENTRY_TEXT {
        return Err(ProofError::Field("checkpoint"));
    }
    check_checkpoint(note, size, &root, keys)
}

/// `prefix || a || b`, hashed: RFC 6962's leaf (0) and node (1) hashes.
fn hash_pair(prefix: u8, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update([prefix]);
    hasher.update(a);
    hasher.update(b);
    hasher.finalize().to_vec()
}

/// The root an audit path leads to from the leaf at `index` of a tree of
/// `size` leaves (RFC 9162, 2.1.3.2); `None` when the path has the wrong
/// length for that position.
pub fn root_from_path(index: u64, size: u64, leaf: Vec<u8>, path: &[Vec<u8>]) -> Option<Vec<u8>> {
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn, mut root) = (index, size - 1, leaf);
    for sibling in path {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            root = hash_pair(1, sibling, &root);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            root = hash_pair(1, &root, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(root)
}

/// A checkpoint is a signed note: `origin\nsize\nroot (base64)\n[lines]\n`,
/// a blank line, then `— name base64(key hint[4] || signature)` lines. The
/// note's text up to the blank line is what is signed (SHA-256, as the
/// key's signature check hashes it). Every signature line is tried with
/// every key; the hint is not relied on.
fn check_checkpoint(
    note: &str,
    size: u64,
    root: &[u8],
    keys: &[PublicKey],
) -> Result<(), ProofError> {
    let (text, signatures) = note.split_once("\n\n").ok_or(ProofError::Checkpoint)?;
    let mut lines = text.lines();
    let _origin = lines.next().ok_or(ProofError::Checkpoint)?;
    let stated_size: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or(ProofError::Checkpoint)?;
    let stated_root = lines
        .next()
        .and_then(|l| decode(l, "checkpoint").ok())
        .ok_or(ProofError::Checkpoint)?;
    if stated_size != size || stated_root != root {
        return Err(ProofError::Checkpoint);
    }
    let signed = format!("{text}\n");
    let verified = signatures
        .lines()
        .take(MAX_NOTE_SIGNATURES)
        .filter_map(|line| line.strip_prefix("\u{2014} "))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(_, blob)| decode(blob, "checkpoint").ok())
        .filter(|blob| blob.len() > 4)
        .any(|blob| {
            keys.iter()
                .any(|k| k.verifies(signed.as_bytes(), &blob[4..]))
        });
    if verified {
        Ok(())
    } else {
        Err(ProofError::Signature)
    }
}

/// Whether a canonicalized body names the payload's SHA-256 (hex) and one
/// of the signatures (base64, or base64 of base64).
fn binds(body: &[u8], payload: &[u8], signatures: &[Vec<u8>]) -> bool {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let mut strings = Vec::new();
    collect_strings(&body, &mut strings);
    let payload_hash: String = Sha256::digest(payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let engine = base64::engine::general_purpose::STANDARD;
    let named = |s: &str| strings.contains(&s);
    named(&payload_hash)
        && signatures.iter().any(|signature| {
            let once = engine.encode(signature);
            named(&once) || named(&engine.encode(&once))
        })
}

fn collect_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    if out.len() >= MAX_BODY_STRINGS {
        return;
    }
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
#[path = "tlog_tests.rs"]
mod tests;
