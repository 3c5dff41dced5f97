//! Public keys and the signature checks over them: ECDSA P-256 (what
//! `cosign generate-key-pair` writes) and P-384, Ed25519, RSA (PKCS #1 v1.5
//! or PSS, SHA-256), all PKIX `PUBLIC KEY` PEM, with RustCrypto's crates.

use sha2::{Digest as _, Sha256};
use spki::der::{Decode as _, Encode as _};
use spki::{DecodePublicKey as _, ObjectIdentifier, SubjectPublicKeyInfoRef};

/// Largest PEM key file read (an 8192-bit RSA key is about 1.5 KiB).
pub const MAX_KEY_FILE: usize = 16 * 1024;
/// RSA moduli accepted, in bits.
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384_CURVE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a public key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("larger than {MAX_KEY_FILE} bytes")]
    TooLarge,
    #[error("not a PEM document: {0}")]
    Pem(pem_rfc7468::Error),
    #[error("a PEM {0:?}, not a \"PUBLIC KEY\"")]
    Label(String),
    #[error("not a PKIX public key: {0}")]
    Der(String),
    #[error("an algorithm that is not supported (ECDSA P-256/P-384, Ed25519, RSA are): {0}")]
    Algorithm(String),
    #[error("an RSA key of {0} bits (2048 to 8192 are accepted)")]
    RsaSize(usize),
}

#[derive(Debug, Clone)]
enum Inner {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::PublicKey),
}

/// A public key signatures are checked with.
#[derive(Debug, Clone)]
pub struct PublicKey {
    inner: Inner,
    /// SHA-256 of the key's DER: the hint a Sigstore bundle names it by.
    hint: [u8; 32],
}

impl PublicKey {
    /// A key from PEM text (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, KeyError> {
        if pem.len() > MAX_KEY_FILE {
            return Err(KeyError::TooLarge);
        }
        let (label, der) = pem_rfc7468::decode_vec(pem).map_err(KeyError::Pem)?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Label(label.chars().take(40).collect()));
        }
        PublicKey::from_der(&der)
    }

    /// A key from a DER SubjectPublicKeyInfo (as certificates hold them).
    pub fn from_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let info =
            SubjectPublicKeyInfoRef::from_der(der).map_err(|e| KeyError::Der(e.to_string()))?;
        let der_error = |e: spki::Error| KeyError::Der(e.to_string());
        let algorithm = info.algorithm.oid;
        let inner = if algorithm == EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| KeyError::Algorithm(e.to_string()))?;
            if curve == P256_CURVE {
                Inner::P256(p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(der_error)?)
            } else if curve == P384_CURVE {
                Inner::P384(p384::ecdsa::VerifyingKey::from_public_key_der(der).map_err(der_error)?)
            } else {
                return Err(KeyError::Algorithm(format!("elliptic curve {curve}")));
            }
        } else if algorithm == ED25519 {
            Inner::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(der_error)?,
            )
        } else if algorithm == RSA_ENCRYPTION {
            let key = rsa::PublicKey::from_public_key_der(der).map_err(der_error)?;
            let bits = rsa::traits::PublicKeyParts::n(&key).bit_width() as usize;
            if !RSA_BITS.contains(&bits) {
                return Err(KeyError::RsaSize(bits));
            }
            Inner::Rsa(key)
        } else {
            return Err(KeyError::Algorithm(algorithm.to_string()));
        };
        let canonical = info.to_der().map_err(|e| KeyError::Der(e.to_string()))?;
        Ok(PublicKey {
            inner,
            hint: Sha256::digest(&canonical).into(),
        })
    }

    /// SHA-256 of the key's DER.
    pub fn hint(&self) -> &[u8; 32] {
        &self.hint
    }

    /// Whether `signature` is this key's signature of `message`. ECDSA
    /// signatures are ASN.1 DER (as cosign writes them) or fixed-size; a
    /// P-384 key is accepted with SHA-384 or with SHA-256, which cosign
    /// uses for every `--key` by default.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        match &self.inner {
            Inner::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .or_else(|_| p256::ecdsa::Signature::from_slice(signature))
                .is_ok_and(|s| key.verify_prehash(&Sha256::digest(message), &s).is_ok()),
            Inner::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .or_else(|_| p384::ecdsa::Signature::from_slice(signature))
                .is_ok_and(|s| {
                    key.verify_prehash(&sha2::Sha384::digest(message), &s)
                        .is_ok()
                        || key.verify_prehash(&Sha256::digest(message), &s).is_ok()
                }),
            Inner::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(message, &s).is_ok()),
            Inner::Rsa(key) => rsa_verifies(key, message, signature),
        }
    }
}

fn rsa_verifies(key: &rsa::PublicKey, message: &[u8], signature: &[u8]) -> bool {
    use rsa::signature::Verifier as _;
    let pkcs1 = rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|s| {
        rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone())
            .verify(message, &s)
            .is_ok()
    });
    pkcs1
        || rsa::pss::Signature::try_from(signature).is_ok_and(|s| {
            rsa::pss::VerifyingKey::<Sha256>::new_with_auto_salt_len(key.clone())
                .verify(message, &s)
                .is_ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn signature(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap()
    }

    /// Keys and signatures of `payload` made with the openssl CLI.
    #[test]
    fn p384_ed25519_and_rsa_signatures_verify_and_nothing_else_does() {
        let cases = [
            (
                include_str!("testdata/p384.pub"),
                include_str!("testdata/p384.sig"),
            ),
            (
                include_str!("testdata/ed25519.pub"),
                include_str!("testdata/ed25519.sig"),
            ),
            (
                include_str!("testdata/rsa.pub"),
                include_str!("testdata/rsa.sig"),
            ),
        ];
        for (pem, sig) in cases {
            let key = PublicKey::from_pem(pem.as_bytes()).unwrap();
            let sig = signature(sig);
            assert!(key.verifies(b"payload", &sig), "{pem}");
            assert!(!key.verifies(b"payloaD", &sig), "{pem}");
            let mut flipped = sig.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(!key.verifies(b"payload", &flipped), "{pem}");
        }
        // A signature of one key does not verify with another.
        let p384 = PublicKey::from_pem(include_bytes!("testdata/p384.pub")).unwrap();
        assert!(!p384.verifies(b"payload", &signature(include_str!("testdata/rsa.sig"))));
    }

    #[test]
    fn small_rsa_keys_private_keys_and_garbage_are_refused() {
        assert!(matches!(
            PublicKey::from_pem(include_bytes!("testdata/rsa1024.pub")),
            Err(KeyError::RsaSize(1024))
        ));
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(private.as_bytes()),
            Err(KeyError::Label(_))
        ));
        assert!(PublicKey::from_pem(b"not a key").is_err());
        assert!(PublicKey::from_pem(&vec![b'A'; MAX_KEY_FILE + 1]).is_err());
    }
}
