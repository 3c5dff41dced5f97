//! Why a digest is not verified under a policy: a closed set, and which
//! reason wins when several signatures fail differently.

/// Why a signature (or, combined, a digest) does not verify under a policy.
///
/// The order is the precedence, lowest first: with several signatures the
/// digest's reason is the greatest one, the failure that came closest to
/// verifying, so that `digest_mismatch` (a signature our key made, for
/// another image) outranks `bad_signature` (our key or certificate, but the
/// check fails: tampering), which outranks the identity and chain checks of
/// a certificate, then a key the policy does not hold, then what could not
/// be checked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No signature is attached to the digest.
    NoSignature,
    /// A signature could not be read (not JSON, not base64, too large).
    Malformed,
    /// A signature in a form this service does not check (a Notary
    /// signature, a bundle's message signature, a transparency-log proof a
    /// policy demands).
    Unsupported,
    /// No signature names, or verifies with, a key of the policy.
    WrongKey,
    /// A certificate that does not chain to the policy's roots.
    UntrustedChain,
    /// A certificate that chains, but whose issuer or subject differs.
    WrongIdentity,
    /// A signature names a key or certificate of the policy and fails its
    /// check.
    BadSignature,
    /// The cryptography holds, but the payload names another digest.
    DigestMismatch,
}

impl Reason {
    /// Every reason, in precedence order (lowest first).
    pub const ALL: [Reason; 8] = [
        Reason::NoSignature,
        Reason::Malformed,
        Reason::Unsupported,
        Reason::WrongKey,
        Reason::UntrustedChain,
        Reason::WrongIdentity,
        Reason::BadSignature,
        Reason::DigestMismatch,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoSignature => "no_signature",
            Reason::Malformed => "malformed",
            Reason::Unsupported => "unsupported",
            Reason::WrongKey => "wrong_key",
            Reason::UntrustedChain => "untrusted_chain",
            Reason::WrongIdentity => "wrong_identity",
            Reason::BadSignature => "bad_signature",
            Reason::DigestMismatch => "digest_mismatch",
        }
    }
}

/// The outcome of checking one signature, or a digest's signatures
/// together, under one policy.
pub type Outcome = Result<(), Reason>;

/// Several outcomes as one: verified when any is, else the reason of
/// greatest precedence; [`Reason::NoSignature`] when there are none.
pub fn combine(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
    let mut worst = Reason::NoSignature;
    for outcome in outcomes {
        match outcome {
            Ok(()) => return Ok(()),
            Err(reason) => worst = worst.max(reason),
        }
    }
    Err(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_verified_signature_wins_then_the_closest_failure() {
        assert_eq!(combine([]), Err(Reason::NoSignature));
        assert_eq!(
            combine([Err(Reason::WrongKey), Ok(()), Err(Reason::Malformed)]),
            Ok(())
        );
        assert_eq!(
            combine([Err(Reason::WrongKey), Err(Reason::DigestMismatch)]),
            Err(Reason::DigestMismatch)
        );
        assert_eq!(
            combine([Err(Reason::Malformed), Err(Reason::WrongKey)]),
            Err(Reason::WrongKey)
        );
        let mut sorted = Reason::ALL;
        sorted.sort();
        assert_eq!(sorted, Reason::ALL);
    }
}
