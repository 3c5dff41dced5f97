//! Versions: is there a newer release of the tag a container runs?
//!
//! A leaf: pure functions over tags, no I/O. [`tag`] reads a tag as a
//! version, [`compare`] says which tags compare and in which order, and
//! [`freshness`] answers for one running tag from a repository's tags and
//! the container's overrides. The rules follow Renovate's "docker"
//! versioning, with semver's pre-release precedence and Bitnami's `-rN`
//! revisions.

pub mod compare;
pub mod freshness;
pub mod tag;

pub use freshness::{freshness, Behind, Freshness, OverrideError, Overrides};
pub use tag::Tag;
