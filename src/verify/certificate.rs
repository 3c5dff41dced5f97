//! Certificates (keyless-style signing): a leaf, chained through the
//! intermediates a signature carries to a root of the policy, whose Fulcio
//! issuer extension and subject alternative name match the policy's.
//!
//! What is not checked: validity periods (a Fulcio certificate lives ten
//! minutes; only a verified transparency-log or timestamp time could say
//! when it signed, and a verdict must not change with the clock), key
//! usage, name constraints, revocation (no network call is made).

use der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, SubjectAltName};
use x509_cert::Certificate;

use super::signature::PublicKey;
use super::verdict::Reason;

/// Largest certificate accepted, DER or PEM.
pub const MAX_CERTIFICATE: usize = 16 * 1024;
/// Certificates in one chain, the leaf included, or in a roots file.
pub const MAX_CHAIN: usize = 10;

/// Fulcio's issuer extension (v2: a DER UTF8String).
const FULCIO_ISSUER_V2: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Fulcio's issuer extension (v1, deprecated: the raw string).
const FULCIO_ISSUER_V1: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");

/// Why certificates cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("a certificate larger than {MAX_CERTIFICATE} bytes")]
    TooLarge,
    #[error("more than {MAX_CHAIN} certificates")]
    TooMany,
    #[error("no certificate")]
    Empty,
    #[error("not a PEM certificate: {0}")]
    Pem(pem_rfc7468::Error),
    #[error("not an X.509 certificate: {0}")]
    Der(der::Error),
}

/// How the signing certificate's subject alternative name must read.
#[derive(Debug, Clone)]
pub enum SubjectMatch {
    Exact(String),
    /// Matched against the whole name, in linear time (the `regex` crate).
    Pattern(regex::Regex),
}

impl SubjectMatch {
    fn matches(&self, name: &str) -> bool {
        match self {
            SubjectMatch::Exact(expected) => expected == name,
            SubjectMatch::Pattern(pattern) => pattern.is_match(name),
        }
    }
}

/// A certificate policy: the roots, and the identity the leaf must carry.
#[derive(Debug, Clone)]
pub struct CertificatePolicy {
    pub issuer: String,
    pub subject: SubjectMatch,
    pub roots: Vec<Certificate>,
}

/// Certificates from DER documents (a bundle's `rawBytes`).
pub fn from_der_list(documents: &[Vec<u8>]) -> Result<Vec<Certificate>, CertificateError> {
    if documents.len() > MAX_CHAIN {
        return Err(CertificateError::TooMany);
    }
    if documents.is_empty() {
        return Err(CertificateError::Empty);
    }
    documents
        .iter()
        .map(|d| {
            if d.len() > MAX_CERTIFICATE {
                return Err(CertificateError::TooLarge);
            }
            Certificate::from_der(d).map_err(CertificateError::Der)
        })
        .collect()
}

/// Certificates from concatenated PEM blocks (cosign's annotations, a
/// roots file).
pub fn from_pem(text: &[u8]) -> Result<Vec<Certificate>, CertificateError> {
    const END: &[u8] = b"-----END CERTIFICATE-----";
    if text.len() > MAX_CERTIFICATE * MAX_CHAIN {
        return Err(CertificateError::TooLarge);
    }
    let mut documents = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, b"-----BEGIN CERTIFICATE-----") {
        let block = &rest[start..];
        let end = find(block, END).ok_or(CertificateError::Empty)? + END.len();
        if documents.len() == MAX_CHAIN {
            return Err(CertificateError::TooMany);
        }
        let (_, der) = pem_rfc7468::decode_vec(&block[..end]).map_err(CertificateError::Pem)?;
        documents.push(der);
        rest = &block[end..];
    }
    from_der_list(&documents)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `issuer` signed `subject`.
fn signed_by(subject: &Certificate, issuer: &Certificate) -> bool {
    if subject.tbs_certificate().issuer() != issuer.tbs_certificate().subject() {
        return false;
    }
    let Ok(key_der) = issuer.tbs_certificate().subject_public_key_info().to_der() else {
        return false;
    };
    let Ok(key) = PublicKey::from_der(&key_der) else {
        return false;
    };
    let Ok(tbs) = subject.tbs_certificate().to_der() else {
        return false;
    };
    subject
        .signature()
        .as_bytes()
        .is_some_and(|signature| key.verifies(&tbs, signature))
}

fn is_ca(certificate: &Certificate) -> bool {
    matches!(
        certificate.tbs_certificate().get_extension::<BasicConstraints>(),
        Ok(Some((_, constraints))) if constraints.ca
    )
}

/// Whether the chain `leaf, intermediates…` ends at one of `roots`.
fn chains(chain: &[Certificate], roots: &[Certificate]) -> bool {
    let mut current = &chain[0];
    let mut intermediates = chain[1..].iter();
    loop {
        if roots.contains(current) || roots.iter().any(|r| signed_by(current, r)) {
            return true;
        }
        match intermediates.next() {
            Some(next) if is_ca(next) && signed_by(current, next) => current = next,
            _ => return false,
        }
    }
}

/// The leaf's Fulcio issuer.
fn issuer_of(leaf: &Certificate) -> Option<String> {
    let extensions = leaf.tbs_certificate().extensions()?;
    if let Some(v2) = extensions.iter().find(|e| e.extn_id == FULCIO_ISSUER_V2) {
        return der::asn1::Utf8StringRef::from_der(v2.extn_value.as_bytes())
            .ok()
            .map(|s| s.as_str().to_owned());
    }
    let v1 = extensions.iter().find(|e| e.extn_id == FULCIO_ISSUER_V1)?;
    String::from_utf8(v1.extn_value.as_bytes().to_vec()).ok()
}

/// The leaf's e-mail and URI subject alternative names.
fn subjects_of(leaf: &Certificate) -> Vec<String> {
    let Ok(Some((_, names))) = leaf.tbs_certificate().get_extension::<SubjectAltName>() else {
        return Vec::new();
    };
    names
        .0
        .iter()
        .filter_map(|name| match name {
            GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => {
                Some(s.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The leaf's public key when `chain` (leaf first) is trusted by `policy`:
/// [`Reason::UntrustedChain`] when it does not end at a root,
/// [`Reason::WrongIdentity`] when its issuer or subject differ.
pub fn trusted_key(policy: &CertificatePolicy, chain: &[Certificate]) -> Result<PublicKey, Reason> {
    let leaf = chain.first().ok_or(Reason::Malformed)?;
    if !chains(chain, &policy.roots) {
        return Err(Reason::UntrustedChain);
    }
    let issuer_matches = issuer_of(leaf).is_some_and(|i| i == policy.issuer);
    if !issuer_matches || !subjects_of(leaf).iter().any(|s| policy.subject.matches(s)) {
        return Err(Reason::WrongIdentity);
    }
    let key_der = leaf
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|_| Reason::Malformed)?;
    PublicKey::from_der(&key_der).map_err(|_| Reason::Unsupported)
}
