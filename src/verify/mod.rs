//! Signature verification: whether an image's signatures verify under the
//! configured policies (keys, or certificates chaining to given roots),
//! as an observation. A leaf: bytes in, verdicts out; the registry side
//! fetches what is checked here, and no network call is ever made for it.

pub mod artifact;
pub mod attestation;
pub mod bundle;
pub mod certificate;
pub mod payload;
pub mod policy;
pub mod signature;
pub mod tlog;
pub mod verdict;
