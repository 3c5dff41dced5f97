//! What a signature says it signs: cosign's simple-signing payload, an
//! in-toto statement, and DSSE's pre-authentication encoding.

use serde::Deserialize;

/// The in-toto predicate type of a cosign 3 image signature.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Why a payload cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not the expected JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("payload names no image digest")]
    NoDigest,
    #[error("statement's predicate type is {0:?}, not a cosign signature")]
    Predicate(String),
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: CriticalImage,
}

#[derive(Deserialize)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The digest a simple-signing payload signs
/// (`critical.image.docker-manifest-digest`).
pub fn simple_signing_digest(payload: &[u8]) -> Result<String, PayloadError> {
    let parsed: SimpleSigning = serde_json::from_slice(payload)?;
    let digest = parsed.critical.image.docker_manifest_digest;
    if digest.is_empty() {
        return Err(PayloadError::NoDigest);
    }
    Ok(digest)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(default)]
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// The digests (`<alg>:<hex>`) an in-toto statement of a cosign signature
/// names as its subjects.
pub fn statement_digests(payload: &[u8]) -> Result<Vec<String>, PayloadError> {
    let (predicate_type, digests) = statement(payload)?;
    if predicate_type != COSIGN_SIGN_PREDICATE {
        return Err(PayloadError::Predicate(
            predicate_type.chars().take(100).collect(),
        ));
    }
    Ok(digests)
}

/// An in-toto statement's predicate type and the digests (`<alg>:<hex>`)
/// it names as its subjects (at least one).
pub fn statement(payload: &[u8]) -> Result<(String, Vec<String>), PayloadError> {
    let statement: Statement = serde_json::from_slice(payload)?;
    let digests: Vec<String> = statement
        .subject
        .iter()
        .flat_map(|s| s.digest.iter())
        .map(|(algorithm, hex)| format!("{algorithm}:{hex}"))
        .collect();
    if digests.is_empty() {
        return Err(PayloadError::NoDigest);
    }
    Ok((statement.predicate_type, digests))
}

/// DSSE's pre-authentication encoding, what an envelope's signatures sign:
/// `DSSEv1 <len(type)> <type> <len(body)> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_signing_and_statements_name_their_digest() {
        let simple = br#"{"critical":{"identity":{"docker-reference":"r/app"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(simple_signing_digest(simple).unwrap(), "sha256:ab");
        assert!(simple_signing_digest(b"{}").is_err());
        let statement = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"ab"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}"#;
        assert_eq!(statement_digests(statement).unwrap(), ["sha256:ab"]);
        let other = br#"{"subject":[{"digest":{"sha256":"ab"}}],"predicateType":"https://slsa.dev/provenance/v1"}"#;
        assert!(matches!(
            statement_digests(other),
            Err(PayloadError::Predicate(_))
        ));
    }

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
        );
    }
}
