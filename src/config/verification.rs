//! The "Verification" flags: which signatures count as ours.

use clap::Args;

/// Signature verification policies (see the README's "Signature
/// verification").
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Verification")]
#[deny(missing_docs)]
pub struct VerificationArgs {
    /// A policy NAME=PATH: signatures made with the PEM public key at PATH
    /// (ECDSA P-256 as cosign writes it, P-384, Ed25519, RSA) verify under
    /// NAME. Repeatable; several keys under one NAME mean any of them.
    /// Needs --referrers. Default: none (no verification series).
    #[arg(
        long = "verify-key",
        value_name = "NAME=PATH",
        env = "PUSHER_VERIFY_KEY",
        value_delimiter = ';'
    )]
    pub verify_key: Vec<String>,

    /// A policy NAME=issuer=URL,subject=NAME|subject-regexp=RE,roots=PATH:
    /// signatures whose certificate chains to the PEM roots at PATH and
    /// carries that Fulcio issuer and subject (e-mail or URI) verify under
    /// NAME. Repeatable. Default: none.
    #[arg(
        long = "verify-certificate",
        value_name = "NAME=RULE",
        env = "PUSHER_VERIFY_CERTIFICATE",
        value_delimiter = ';'
    )]
    pub verify_certificate: Vec<String>,

    /// A YAML file of policies (`policies: [{name, keys: [PATH], certificates:
    /// [{issuer, subject | subjectRegexp, roots}], attestations: [TYPE],
    /// transparencyLog: {keys: [PATH], required}}]`), added to the flags'.
    /// Default: none.
    #[arg(
        long = "verify-config",
        value_name = "FILE",
        env = "PUSHER_VERIFY_CONFIG"
    )]
    pub verify_config: Option<String>,
}
