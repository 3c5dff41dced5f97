//! A transparency log of our own for the verification tests: there is no
//! Rekor here, so tests build RFC 6962 Merkle trees, sign checkpoints with
//! a P-256 key made from a seed, and add the entry and its inclusion proof
//! to a real cosign bundle, as Rekor would have.

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use spki::EncodePublicKey as _;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn hash(prefix: u8, a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update([prefix]);
    hasher.update(a);
    hasher.update(b);
    hasher.finalize().to_vec()
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962's Merkle tree hash of leaf hashes.
fn tree_hash(leaves: &[Vec<u8>]) -> Vec<u8> {
    match leaves.len() {
        0 => Sha256::digest([]).to_vec(),
        1 => leaves[0].clone(),
        n => hash(
            1,
            &tree_hash(&leaves[..split(n)]),
            &tree_hash(&leaves[split(n)..]),
        ),
    }
}

/// RFC 6962's audit path of leaf `m`.
fn audit_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    let (mut path, sibling) = if m < k {
        (audit_path(m, &leaves[..k]), tree_hash(&leaves[k..]))
    } else {
        (audit_path(m - k, &leaves[k..]), tree_hash(&leaves[..k]))
    };
    path.push(sibling);
    path
}

/// A log: its signing key.
pub struct TestLog {
    key: p256::ecdsa::SigningKey,
}

impl TestLog {
    pub fn new(seed: u8) -> TestLog {
        TestLog {
            key: p256::ecdsa::SigningKey::from_slice(&[seed; 32]).expect("a valid scalar"),
        }
    }

    /// The log's public key, PEM, as `--verify-config` reads it.
    pub fn public_pem(&self) -> String {
        let der = self.key.verifying_key().to_public_key_der().unwrap();
        let lines: Vec<String> = b64(der.as_bytes())
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// A bundle's `tlogEntries[]` item for `bodies[index]`, in a log that
    /// holds `bodies`.
    pub fn entry(&self, bodies: &[Vec<u8>], index: usize) -> Value {
        let leaves: Vec<Vec<u8>> = bodies.iter().map(|b| hash(0, b, &[])).collect();
        let root = tree_hash(&leaves);
        let text = format!("test.log - 1\n{}\n{}\n", bodies.len(), b64(&root));
        let signature: p256::ecdsa::Signature = self.key.sign(text.as_bytes());
        let mut blob = vec![0, 1, 2, 3];
        blob.extend_from_slice(signature.to_der().as_bytes());
        let hashes: Vec<String> = audit_path(index, &leaves).iter().map(|h| b64(h)).collect();
        json!({
            "logIndex": index.to_string(),
            "logId": {"keyId": b64(&[0; 32])},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": "1764900000",
            "inclusionProof": {
                "logIndex": index.to_string(),
                "rootHash": b64(&root),
                "treeSize": bodies.len().to_string(),
                "hashes": hashes,
                "checkpoint": {"envelope": format!("{text}\n\u{2014} test.log {}\n", b64(&blob))},
            },
            "canonicalizedBody": b64(&bodies[index]),
        })
    }
}

/// Rekor's `dsse` entry body for the DSSE envelope of a bundle.
pub fn dsse_body(bundle: &Value) -> Vec<u8> {
    let engine = base64::engine::general_purpose::STANDARD;
    let envelope = &bundle["dsseEnvelope"];
    let payload = engine
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let signature = envelope["signatures"][0]["sig"].as_str().unwrap();
    let body = json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(&payload))},
            "signatures": [{"signature": signature, "verifier": "LS0tLS1CRUdJTg=="}],
        },
    });
    serde_json::to_vec(&body).unwrap()
}

/// Bodies of other entries, around which a bundle's entry is logged.
pub fn other_bodies(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("{{\"kind\":\"hashedrekord\",\"n\":{i}}}").into_bytes())
        .collect()
}
