//! The resolver's metrics: registry requests, cache lookups, failed
//! resolutions and signature verifications.

use prometheus::{IntCounterVec, Registry};

use crate::telemetry::{opts, register};

/// What the resolver and its registry client count.
#[derive(Clone)]
pub struct Metrics {
    /// Registry requests by host, method and status code (`transport` when no answer came).
    pub requests: IntCounterVec,
    /// Lookups in the reference and metadata caches, by cache and `hit`/`miss`.
    pub cache_lookups: IntCounterVec,
    /// Image resolutions that failed, by error class.
    pub resolve_failures: IntCounterVec,
    /// Signature verifications computed, by policy and result.
    pub signature_verifications: IntCounterVec,
    /// Transparency-log proofs checked, by policy and result.
    pub log_proofs: IntCounterVec,
}

impl Metrics {
    /// The resolver's metrics, registered in `registry`. The signature
    /// counters show on `/metrics` only once a policy verified something.
    pub fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(opts(name, help), labels))
        };
        Metrics {
            requests: counter(
                "registry_requests_total",
                "Registry requests by host, method and status code (transport: no HTTP answer).",
                &["host", "method", "code"],
            ),
            cache_lookups: counter(
                "cache_lookups_total",
                "Registry cache lookups by cache and result.",
                &["cache", "result"],
            ),
            resolve_failures: counter(
                "resolve_failures_total",
                "Image resolutions that failed, by error class.",
                &["class"],
            ),
            signature_verifications: counter(
                "signature_verifications_total",
                "Signature verifications computed (cached verdicts are not counted), by policy and result.",
                &["policy", "result"],
            ),
            log_proofs: counter(
                "transparency_log_proofs_total",
                "Signature layers whose transparency-log proofs were checked under a policy's log keys (cached verdicts are not counted), by policy and result: verified, missing or failed.",
                &["policy", "result"],
            ),
        }
    }
}
