use super::*;
use p256::ecdsa::signature::Signer as _;
use spki::EncodePublicKey as _;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// RFC 6962's Merkle tree hash of `leaves` (already leaf-hashed).
fn tree_hash(leaves: &[Vec<u8>]) -> Vec<u8> {
    match leaves.len() {
        0 => Sha256::digest([]).to_vec(),
        1 => leaves[0].clone(),
        n => {
            let k = split(n);
            hash_pair(1, &tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962's audit path of leaf `m`.
fn audit_path(m: usize, leaves: &[Vec<u8>]) -> Vec<Vec<u8>> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    if m < k {
        let mut path = audit_path(m, &leaves[..k]);
        path.push(tree_hash(&leaves[k..]));
        path
    } else {
        let mut path = audit_path(m - k, &leaves[k..]);
        path.push(tree_hash(&leaves[..k]));
        path
    }
}

#[test]
fn audit_paths_lead_to_the_root_for_every_leaf_of_every_small_tree() {
    for size in 1..=33usize {
        let leaves: Vec<Vec<u8>> = (0..size)
            .map(|i| hash_pair(0, &i.to_be_bytes(), &[]))
            .collect();
        let root = tree_hash(&leaves);
        for index in 0..size {
            let path = audit_path(index, &leaves);
            let (i, n) = (index as u64, size as u64);
            let got = root_from_path(i, n, leaves[index].clone(), &path);
            assert_eq!(got.as_ref(), Some(&root), "leaf {index} of {size}");
            // Another leaf's hash, or another position, does not.
            let other = leaves[(index + 1) % size].clone();
            if size > 1 {
                assert_ne!(root_from_path(i, n, other, &path).as_ref(), Some(&root));
                let moved = root_from_path((i + 1) % n, n, leaves[index].clone(), &path);
                assert_ne!(moved.as_ref(), Some(&root), "leaf {index} of {size} moved");
            }
            assert_eq!(root_from_path(n, n, leaves[index].clone(), &path), None);
        }
    }
}

struct Log {
    key: p256::ecdsa::SigningKey,
}

impl Log {
    fn new(seed: u8) -> Log {
        Log {
            key: p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap(),
        }
    }

    fn public(&self) -> PublicKey {
        let der = self.key.verifying_key().to_public_key_der().unwrap();
        PublicKey::from_der(der.as_bytes()).unwrap()
    }

    /// An entry for `bodies[index]` in a log of `bodies`.
    fn entry(&self, bodies: &[Vec<u8>], index: usize) -> LogEntry {
        let leaves: Vec<Vec<u8>> = bodies.iter().map(|b| hash_pair(0, b, &[])).collect();
        let root = tree_hash(&leaves);
        let text = format!("test.log - 1\n{}\n{}\n", bodies.len(), b64(&root));
        let signature: p256::ecdsa::Signature = self.key.sign(text.as_bytes());
        let mut blob = vec![0, 1, 2, 3];
        blob.extend_from_slice(signature.to_der().as_bytes());
        LogEntry {
            canonicalized_body: b64(&bodies[index]),
            inclusion_proof: Some(InclusionProof {
                log_index: Number::Text(index.to_string()),
                tree_size: Number::Integer(bodies.len() as u64),
                root_hash: b64(&root),
                hashes: audit_path(index, &leaves).iter().map(|h| b64(h)).collect(),
                checkpoint: Checkpoint {
                    envelope: format!("{text}\n\u{2014} test.log {}\n", b64(&blob)),
                },
            }),
        }
    }
}

/// A Rekor `dsse` body for `payload` signed with `signature`.
fn dsse_body(payload: &[u8], signature: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "0.0.1", "kind": "dsse",
        "spec": {"payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))},
                 "signatures": [{"signature": b64(signature), "verifier": "LS0t"}]}
    }))
    .unwrap()
}

#[test]
fn a_proof_verifies_under_its_log_key_only_for_its_own_entry() {
    let log = Log::new(7);
    let keys = [log.public()];
    let (payload, signature) = (b"statement".as_slice(), vec![1u8, 2, 3]);
    let mut bodies: Vec<Vec<u8>> = (0..6u8).map(|i| dsse_body(&[i], &[i])).collect();
    bodies.insert(4, dsse_body(payload, &signature));
    let sigs = [signature];
    let entry = log.entry(&bodies, 4);
    assert_eq!(verify_entry(&entry, &keys, payload, &sigs), Ok(()));
    assert_eq!(
        check(std::slice::from_ref(&entry), &keys, payload, &sigs),
        Logged::Verified
    );
    assert_eq!(check(&[], &keys, payload, &sigs), Logged::Missing);
    // Another log's key.
    let other = [Log::new(8).public()];
    assert_eq!(
        verify_entry(&entry, &other, payload, &sigs),
        Err(ProofError::Signature)
    );
    // A tampered audit path.
    let mut tampered = entry.clone();
    let proof = tampered.inclusion_proof.as_mut().unwrap();
    proof.hashes[0] = b64(&[0; 32]);
    assert_eq!(
        verify_entry(&tampered, &keys, payload, &sigs),
        Err(ProofError::Path)
    );
    // A checkpoint of another root (signed by the log, but not this tree).
    let mut stale = entry.clone();
    stale.inclusion_proof.as_mut().unwrap().checkpoint = log
        .entry(&bodies[..5], 4)
        .inclusion_proof
        .unwrap()
        .checkpoint;
    assert_eq!(
        verify_entry(&stale, &keys, payload, &sigs),
        Err(ProofError::Checkpoint)
    );
    // A valid proof of another entry.
    let another = log.entry(&bodies, 2);
    assert_eq!(
        verify_entry(&another, &keys, payload, &sigs),
        Err(ProofError::Unbound)
    );
    assert_eq!(check(&[another], &keys, payload, &sigs), Logged::Failed);
    let mut unproven = entry;
    unproven.inclusion_proof = None;
    assert_eq!(
        verify_entry(&unproven, &keys, payload, &sigs),
        Err(ProofError::NoProof)
    );
}
