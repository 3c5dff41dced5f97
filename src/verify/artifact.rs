//! One signature artifact (a manifest) and its signatures: cosign's legacy
//! simple-signing layers, whose annotations carry the signature and any
//! certificate and chain, and Sigstore bundle layers. Checking one layer's
//! content under one policy gives an [`Outcome`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::bundle::{self, Bundle, Content, Material};
use super::certificate::{self, CertificatePolicy};
use super::payload;
use super::policy::Policy;
use super::signature::PublicKey;
use super::tlog::{self, LogEntry, Logged};
use super::verdict::{combine, Outcome, Reason};

/// Signature layers read from one artifact.
pub const MAX_LAYERS: usize = 16;
/// Largest simple-signing payload fetched (cosign's are a few hundred bytes).
pub const MAX_PAYLOAD: u64 = 64 * 1024;
/// Largest bundle fetched (a certificate chain and log proofs fit easily).
pub const MAX_BUNDLE: u64 = 256 * 1024;

const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";

/// How a layer holds its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// The layer is the payload; the signature (and certificates, PEM) are
    /// annotations.
    SimpleSigning {
        signature: String,
        certificate: Option<String>,
        chain: Option<String>,
    },
    /// The layer is a Sigstore bundle.
    Bundle,
    /// The layer is a bare DSSE envelope (cosign's legacy `.att` tag); any
    /// certificate and chain are annotations, as for simple signing.
    Envelope {
        certificate: Option<String>,
        chain: Option<String>,
    },
    /// Something else (a Notary signature, …).
    Other,
}

/// One layer to fetch and check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub digest: String,
    pub size: u64,
    pub form: Form,
}

impl SignatureLayer {
    /// Whether the layer is small enough to fetch.
    pub fn fits(&self) -> bool {
        match self.form {
            Form::SimpleSigning { .. } => self.size <= MAX_PAYLOAD,
            Form::Bundle | Form::Envelope { .. } => self.size <= MAX_BUNDLE,
            Form::Other => false,
        }
    }
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default)]
    layers: Vec<RawLayer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLayer {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The signature layers of an artifact manifest, at most [`MAX_LAYERS`].
/// The entry point for those untrusted bytes.
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<SignatureLayer>, Reason> {
    let raw: RawManifest = serde_json::from_slice(manifest).map_err(|_| Reason::Malformed)?;
    if raw.layers.len() > MAX_LAYERS {
        return Err(Reason::Malformed);
    }
    Ok(raw
        .layers
        .into_iter()
        .map(|mut layer| {
            let form = if layer.media_type == SIMPLE_SIGNING {
                match layer.annotations.remove(SIGNATURE_ANNOTATION) {
                    Some(signature) => Form::SimpleSigning {
                        signature,
                        certificate: layer.annotations.remove(CERTIFICATE_ANNOTATION),
                        chain: layer.annotations.remove(CHAIN_ANNOTATION),
                    },
                    None => Form::Other,
                }
            } else if layer.media_type == DSSE_ENVELOPE {
                Form::Envelope {
                    certificate: layer.annotations.remove(CERTIFICATE_ANNOTATION),
                    chain: layer.annotations.remove(CHAIN_ANNOTATION),
                }
            } else if layer
                .media_type
                .starts_with("application/vnd.dev.sigstore.bundle")
            {
                Form::Bundle
            } else {
                Form::Other
            };
            SignatureLayer {
                digest: layer.digest,
                size: layer.size,
                form,
            }
        })
        .collect())
}

/// Checks one layer's content (`blob`, already verified against the
/// layer's digest) under `policy`; `subjects` are the digests a signature
/// may name (the image's, and its chosen platform manifest's).
pub fn check(layer: &SignatureLayer, blob: &[u8], subjects: &[&str], policy: &Policy) -> Outcome {
    match &layer.form {
        Form::SimpleSigning {
            signature,
            certificate,
            chain,
        } => {
            let named = payload::simple_signing_digest(blob).map_err(|_| Reason::Malformed)?;
            let signature =
                bundle::base64(signature, "signature").map_err(|_| Reason::Malformed)?;
            let signer = Signer::annotated(certificate.as_deref(), chain.as_deref())?;
            let signatures = [signature];
            signer.verify(policy, blob, &signatures, || {
                Ok(subjects.contains(&named.as_str()))
            })?;
            // A `.sig` carries at most a signed entry timestamp, not checked.
            require_log(policy, &[], blob, &signatures)
        }
        Form::Bundle => {
            let bundle = bundle::parse(blob).map_err(|_| Reason::Malformed)?;
            check_bundle(&bundle, subjects, policy)
        }
        // An attestation is not a signature of the image.
        Form::Envelope { .. } | Form::Other => Err(Reason::Unsupported),
    }
}

fn check_bundle(bundle: &Bundle, subjects: &[&str], policy: &Policy) -> Outcome {
    let Content::Dsse {
        payload_type,
        payload,
        signatures,
    } = &bundle.content
    else {
        return Err(Reason::Unsupported);
    };
    let signer = Signer::of_bundle(bundle)?;
    let message = payload::pae(payload_type, payload);
    signer.verify(policy, &message, signatures, || {
        if payload_type != payload::IN_TOTO_PAYLOAD_TYPE {
            return Err(Reason::Unsupported);
        }
        let named = payload::statement_digests(payload).map_err(|_| Reason::Malformed)?;
        Ok(named.iter().any(|d| subjects.contains(&d.as_str())))
    })?;
    require_log(policy, &bundle.tlog_entries, payload, signatures)
}

/// Under a policy that requires its transparency log, whether `entries`
/// prove the signatures were logged: none is `unsupported` (the policy
/// demands a proof this signature does not carry), a proof that does not
/// check is `bad_signature`.
pub(super) fn require_log(
    policy: &Policy,
    entries: &[LogEntry],
    payload: &[u8],
    signatures: &[Vec<u8>],
) -> Outcome {
    match &policy.transparency_log {
        Some(log) if log.required => match tlog::check(entries, &log.keys, payload, signatures) {
            Logged::Verified => Ok(()),
            Logged::Missing => Err(Reason::Unsupported),
            Logged::Failed => Err(Reason::BadSignature),
        },
        _ => Ok(()),
    }
}

/// What the transparency log proves of one layer's signatures under the
/// policy's log keys, for the report; `None` without a log.
pub fn logged(layer: &SignatureLayer, blob: &[u8], policy: &Policy) -> Option<Logged> {
    let log = policy.transparency_log.as_ref()?;
    let Form::Bundle = layer.form else {
        return Some(Logged::Missing);
    };
    let bundle = bundle::parse(blob).ok()?;
    let Content::Dsse {
        payload,
        signatures,
        ..
    } = &bundle.content
    else {
        return None;
    };
    Some(tlog::check(
        &bundle.tlog_entries,
        &log.keys,
        payload,
        signatures,
    ))
}

/// Who a signature says made it.
pub(super) enum Signer {
    /// A key, by its hint (a bundle of `cosign sign --key`).
    Hint(Vec<u8>),
    /// No key named: maybe certificates (leaf first).
    Unnamed(Option<Vec<x509_cert::Certificate>>),
}

impl Signer {
    /// The signer of a bundle, from its verification material.
    pub(super) fn of_bundle(bundle: &Bundle) -> Result<Signer, Reason> {
        Ok(match &bundle.material {
            Material::KeyHint(hint) => Signer::Hint(hint.clone()),
            Material::Certificates(chain) => Signer::Unnamed(Some(
                certificate::from_der_list(chain).map_err(|_| Reason::Malformed)?,
            )),
            Material::None => Signer::Unnamed(None),
        })
    }

    /// The signer of a legacy layer: its certificate and chain
    /// annotations (PEM), if any.
    pub(super) fn annotated(
        certificate: Option<&str>,
        chain: Option<&str>,
    ) -> Result<Signer, Reason> {
        let Some(leaf) = certificate else {
            return Ok(Signer::Unnamed(None));
        };
        let mut pem = leaf.to_owned();
        pem.push('\n');
        pem.push_str(chain.unwrap_or_default());
        let chain = certificate::from_pem(pem.as_bytes()).map_err(|_| Reason::Malformed)?;
        Ok(Signer::Unnamed(Some(chain)))
    }

    /// Checks `signatures` of `message` under `policy`, then, once the
    /// cryptography holds, whether the payload names a subject
    /// (`names_subject`, which reads the payload only then).
    pub(super) fn verify(
        &self,
        policy: &Policy,
        message: &[u8],
        signatures: &[Vec<u8>],
        names_subject: impl Fn() -> Result<bool, Reason>,
    ) -> Outcome {
        let verifies = |key: &PublicKey| signatures.iter().any(|s| key.verifies(message, s));
        let mut outcomes = Vec::new();
        if policy.keys.iter().any(verifies) {
            outcomes.push(Ok(()));
        } else {
            let named = matches!(self, Signer::Hint(hint)
                if policy.keys.iter().any(|k| k.hint().as_slice() == hint.as_slice()));
            outcomes.push(Err(if named {
                Reason::BadSignature
            } else {
                Reason::WrongKey
            }));
        }
        if let Signer::Unnamed(Some(chain)) = self {
            for rule in &policy.certificates {
                outcomes.push(certificate_outcome(rule, chain, &verifies));
            }
        }
        combine(outcomes)?;
        if names_subject()? {
            Ok(())
        } else {
            Err(Reason::DigestMismatch)
        }
    }
}

fn certificate_outcome(
    rule: &CertificatePolicy,
    chain: &[x509_cert::Certificate],
    verifies: &impl Fn(&PublicKey) -> bool,
) -> Outcome {
    let key = certificate::trusted_key(rule, chain)?;
    if verifies(&key) {
        Ok(())
    } else {
        Err(Reason::BadSignature)
    }
}
