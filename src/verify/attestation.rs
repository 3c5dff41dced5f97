//! DSSE attestations a policy asks for by predicate type: an in-toto
//! statement in a DSSE envelope, as cosign's legacy `.att` tag holds it (a
//! bare envelope layer) or as cosign 3 attaches it (a Sigstore bundle).
//!
//! An attestation counts for a predicate type when its statement has that
//! type, its envelope signature verifies under the policy's keys or
//! certificates, and its statement names the image in `subject[].digest`;
//! what each failure is called follows [`super::verdict::Reason`].

use super::artifact::{self, Form, SignatureLayer, Signer};
use super::bundle::{self, Content};
use super::payload;
use super::policy::Policy;
use super::verdict::{Outcome, Reason};

/// Checks one layer's content (`blob`, already verified against the
/// layer's digest) as an attestation of `predicate_type` under `policy`;
/// `subjects` are the digests it may name.
///
/// A layer that is not a DSSE envelope, or whose statement has another
/// predicate type, is no attestation of that type: [`Reason::NoSignature`],
/// the lowest precedence, so it never hides a closer failure.
pub fn check(
    layer: &SignatureLayer,
    blob: &[u8],
    subjects: &[&str],
    policy: &Policy,
    predicate_type: &str,
) -> Outcome {
    let (signer, content, entries) = match &layer.form {
        Form::Envelope { certificate, chain } => (
            Signer::annotated(certificate.as_deref(), chain.as_deref())?,
            bundle::envelope(blob).map_err(|_| Reason::Malformed)?,
            Vec::new(),
        ),
        Form::Bundle => {
            let bundle = bundle::parse(blob).map_err(|_| Reason::Malformed)?;
            (
                Signer::of_bundle(&bundle)?,
                bundle.content,
                bundle.tlog_entries,
            )
        }
        Form::SimpleSigning { .. } | Form::Other => return Err(Reason::NoSignature),
    };
    let Content::Dsse {
        payload_type,
        payload,
        signatures,
    } = content
    else {
        return Err(Reason::NoSignature);
    };
    if payload_type != payload::IN_TOTO_PAYLOAD_TYPE {
        return Err(Reason::NoSignature);
    }
    let (statement_type, named) = payload::statement(&payload).map_err(|_| Reason::Malformed)?;
    if statement_type != predicate_type {
        return Err(Reason::NoSignature);
    }
    let message = payload::pae(&payload_type, &payload);
    signer.verify(policy, &message, &signatures, || {
        Ok(named.iter().any(|d| subjects.contains(&d.as_str())))
    })?;
    artifact::require_log(policy, &entries, &payload, &signatures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::signature::PublicKey;
    use base64::Engine as _;

    const SUBJECT: &str = "sha256:e42ce39ce0ac8fcce87fcaf3312658a7b64a00702d863dea49773f2a4e9da469";
    const SLSA: &str = "https://slsa.dev/provenance/v1";

    /// What `cosign attest --key … --type https://slsa.dev/provenance/v1
    /// --new-bundle-format=false` wrote for the image `SUBJECT`.
    const ENVELOPE: &str = r#"{"payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSIsInN1YmplY3QiOlt7Im5hbWUiOiIxMjcuMC4wLjE6NDUxMjYvYXBwIiwiZGlnZXN0Ijp7InNoYTI1NiI6ImU0MmNlMzljZTBhYzhmY2NlODdmY2FmMzMxMjY1OGE3YjY0YTAwNzAyZDg2M2RlYTQ5NzczZjJhNGU5ZGE0NjkifX1dLCJwcmVkaWNhdGVUeXBlIjoiaHR0cHM6Ly9zbHNhLmRldi9wcm92ZW5hbmNlL3YxIiwicHJlZGljYXRlIjp7ImJ1aWxkVHlwZSI6IngifX0=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"MEQCID6TJ40copVHNy7XAFiJgzAowDPvgmHP/jae6BD3s1/PAiBvKwL0J0yX5SFPLofcHdJdfpUL7Gu5WZ+DhQYhhjK/UQ=="}]}"#;
    const KEY: &str = include_str!("testdata/attest.pub");

    fn policy(key: &str) -> Policy {
        Policy {
            name: "ours".into(),
            keys: vec![PublicKey::from_pem(key.as_bytes()).unwrap()],
            certificates: Vec::new(),
            attestations: vec![SLSA.into()],
            transparency_log: None,
        }
    }

    fn envelope_layer() -> SignatureLayer {
        SignatureLayer {
            digest: String::new(),
            size: ENVELOPE.len() as u64,
            form: Form::Envelope {
                certificate: None,
                chain: None,
            },
        }
    }

    #[test]
    fn a_cosign_att_envelope_counts_for_its_type_key_and_image_only() {
        let ours = policy(KEY);
        let layer = envelope_layer();
        let blob = ENVELOPE.as_bytes();
        assert_eq!(check(&layer, blob, &[SUBJECT], &ours, SLSA), Ok(()));
        assert_eq!(
            check(&layer, blob, &[SUBJECT], &ours, "https://spdx.dev/Document"),
            Err(Reason::NoSignature)
        );
        assert_eq!(
            check(&layer, blob, &["sha256:00"], &ours, SLSA),
            Err(Reason::DigestMismatch)
        );
        let other = policy(include_str!("testdata/p384.pub"));
        assert_eq!(
            check(&layer, blob, &[SUBJECT], &other, SLSA),
            Err(Reason::WrongKey)
        );
        // The statement changed after signing.
        let engine = base64::engine::general_purpose::STANDARD;
        let mut envelope: serde_json::Value = serde_json::from_str(ENVELOPE).unwrap();
        let statement = engine
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap();
        let changed = String::from_utf8(statement)
            .unwrap()
            .replace("\"x\"", "\"y\"");
        envelope["payload"] = engine.encode(changed).into();
        let tampered = serde_json::to_vec(&envelope).unwrap();
        assert_eq!(
            check(&layer, &tampered, &[SUBJECT], &ours, SLSA),
            Err(Reason::WrongKey)
        );
        assert_eq!(
            check(&layer, b"{}", &[SUBJECT], &ours, SLSA),
            Err(Reason::Malformed)
        );
    }
}
