//! Sigstore bundles (v0.1 to v0.3 JSON), as cosign 3 attaches them to an
//! image: a DSSE envelope (or a message signature) and the verification
//! material — a public-key hint, a certificate, or an X.509 chain.
//! Transparency-log entries are read here and checked in [`super::tlog`].

use base64::Engine as _;
use serde::Deserialize;

use super::tlog::{self, LogEntry};

/// Signatures read from one DSSE envelope.
pub const MAX_ENVELOPE_SIGNATURES: usize = 8;
/// Certificates read from one chain, the leaf included.
pub const MAX_CHAIN: usize = 10;

/// Why a bundle cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is not the expected JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("bundle's {0} is not base64")]
    Base64(&'static str),
    #[error("bundle holds neither a DSSE envelope nor a message signature")]
    NoContent,
    #[error("bundle holds more than {0} {1}")]
    TooMany(usize, &'static str),
}

/// What names the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// A public key, by the SHA-256 of its DER (cosign's `--key`).
    KeyHint(Vec<u8>),
    /// A leaf certificate and what follows it in the chain, DER.
    Certificates(Vec<Vec<u8>>),
    /// Nothing: only a key of the policy can say who signed.
    None,
}

/// What is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Dsse {
        payload_type: String,
        payload: Vec<u8>,
        signatures: Vec<Vec<u8>>,
    },
    /// A signature over an artifact's digest: not how images are signed.
    MessageSignature,
}

/// A parsed bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub material: Material,
    pub content: Content,
    /// Transparency-log entries the bundle carries, at most
    /// [`tlog::MAX_ENTRIES`].
    pub tlog_entries: Vec<LogEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    verification_material: RawMaterial,
    #[serde(default)]
    dsse_envelope: Option<RawEnvelope>,
    #[serde(default)]
    message_signature: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMaterial {
    #[serde(default)]
    public_key: Option<RawHint>,
    #[serde(default)]
    certificate: Option<RawBytes>,
    #[serde(default)]
    x509_certificate_chain: Option<RawChain>,
    #[serde(default)]
    tlog_entries: Vec<LogEntry>,
}

#[derive(Deserialize)]
struct RawHint {
    #[serde(default)]
    hint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<RawSignature>,
}

#[derive(Deserialize)]
struct RawSignature {
    sig: String,
}

pub(crate) fn base64(text: &str, what: &'static str) -> Result<Vec<u8>, BundleError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| BundleError::Base64(what))
}

fn dsse(envelope: RawEnvelope) -> Result<Content, BundleError> {
    if envelope.signatures.len() > MAX_ENVELOPE_SIGNATURES {
        return Err(BundleError::TooMany(MAX_ENVELOPE_SIGNATURES, "signatures"));
    }
    Ok(Content::Dsse {
        payload: base64(&envelope.payload, "payload")?,
        payload_type: envelope.payload_type,
        signatures: envelope
            .signatures
            .iter()
            .map(|s| base64(&s.sig, "signature"))
            .collect::<Result<_, _>>()?,
    })
}

/// Parses a bare DSSE envelope's JSON (a layer of cosign's legacy `.att`
/// tag), always a [`Content::Dsse`]. The entry point for those untrusted
/// bytes.
pub fn envelope(body: &[u8]) -> Result<Content, BundleError> {
    dsse(serde_json::from_slice(body)?)
}

/// Parses a bundle's JSON. The entry point for those untrusted bytes.
pub fn parse(body: &[u8]) -> Result<Bundle, BundleError> {
    let raw: Raw = serde_json::from_slice(body)?;
    let material = raw.verification_material;
    if material.tlog_entries.len() > tlog::MAX_ENTRIES {
        return Err(BundleError::TooMany(tlog::MAX_ENTRIES, "log entries"));
    }
    let material_kind = if let Some(certificate) = material.certificate {
        Material::Certificates(vec![base64(&certificate.raw_bytes, "certificate")?])
    } else if let Some(chain) = material.x509_certificate_chain {
        if chain.certificates.len() > MAX_CHAIN {
            return Err(BundleError::TooMany(MAX_CHAIN, "certificates"));
        }
        let chain = chain
            .certificates
            .iter()
            .map(|c| base64(&c.raw_bytes, "certificate"))
            .collect::<Result<Vec<_>, _>>()?;
        Material::Certificates(chain)
    } else if let Some(hint) = material.public_key.filter(|k| !k.hint.is_empty()) {
        Material::KeyHint(base64(&hint.hint, "public key hint")?)
    } else {
        Material::None
    };
    let content = match (raw.dsse_envelope, raw.message_signature) {
        (Some(envelope), _) => dsse(envelope)?,
        (None, Some(_)) => Content::MessageSignature,
        (None, None) => return Err(BundleError::NoContent),
    };
    Ok(Bundle {
        material: material_kind,
        content,
        tlog_entries: material.tlog_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosign_key_bundle_is_a_hint_and_an_envelope() {
        let body = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial":{"publicKey":{"hint":"AQI="}},
            "dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json",
                "signatures":[{"sig":"AAE="}]}}"#;
        let bundle = parse(body).unwrap();
        assert_eq!(bundle.material, Material::KeyHint(vec![1, 2]));
        assert_eq!(
            bundle.content,
            Content::Dsse {
                payload_type: "application/vnd.in-toto+json".into(),
                payload: b"{}".to_vec(),
                signatures: vec![vec![0, 1]],
            }
        );
        assert!(parse(br#"{"verificationMaterial":{}}"#).is_err());
        assert!(parse(br#"{"dsseEnvelope":{"payload":"!","payloadType":"x"}}"#).is_err());
    }
}
