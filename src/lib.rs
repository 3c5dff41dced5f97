//! container-image-pusher: tells platform teams which container images their
//! Kubernetes clusters are configured to run, and pushes that inventory to a
//! Prometheus remote-write receiver.
//!
//! Data flows one way, one module per stage (`docs/layout.md` is the
//! whiteboard of this layout, checked against the code by a test):
//! [`discovery`] (workloads, from the cluster — listed or watched, built-in
//! and configured kinds — or manifest files) → [`credentials`] (the logins
//! each workload's images resolve with) → [`registry`] (image references,
//! [`reference`]s, resolved to [`image_facts`]: digests, labels, size, what
//! is attached, the base; its HTTP client apart from its auth policy) →
//! [`inventory`] (builds the series, with its `running_drift` for what
//! pods run and `workload_labels` for the owners' labels, [`version_series`] for version
//! freshness from [`versions`]) → [`series`] (the model: families
//! with one table of label names, label sets, snapshots; a leaf) →
//! [`encode`] (the model in each format: remote write 1.0 and 2.0, OTLP,
//! the text exposition; over the model only) → sinks: [`remote_write`]
//! (per receiver a transport, a retry-and-pause policy and the push) and
//! [`server`] (`/metrics`).
//!
//! [`image_facts`] holds what is known about a snapshot's images as plain
//! data (`ImageMetadata`, the per-snapshot `Resolutions`), so the series
//! builders read it without the registry client; [`interner`] keeps one
//! shared copy of each repeated string of the workloads discovery's
//! sources hold, and [`series`] names each label value by a 32-bit id in
//! one table of values that every sink reads.
//!
//! Inside [`discovery`]: `cluster` lists, `watch/` keeps kinds current
//! (store, stream loop, backoff, configured kinds), `custom_api` finds
//! configured kinds with API discovery for both, `files` collects manifest
//! files that `walk` lists and `manifests` parses.
//!
//! [`config`] (one file per `--help` heading, checked together in its
//! `settings`) turns the flags into each stage's settings; [`app`] wires
//! the stages; [`pipeline`] takes one snapshot through them; [`schedule`]
//! decides when; [`leader`] which replica pushes (the election loop over
//! its lease client, the status it shares with the handle); [`server`]
//! serves `/metrics`, `/healthz` and `/readyz`, and the health listener
//! (connections with their limits, routes, what the endpoints show);
//! each component defines and registers its own metrics beside its code
//! (`registry::Metrics`, `discovery::Metrics`, `pipeline::Metrics`,
//! `remote_write::Metrics`, `leader::Metrics`, `server::Metrics`) into the
//! registry that [`telemetry`] holds with the build info, [`self_metrics`]
//! turns some into series pushed with each snapshot, and [`readiness`]
//! holds what `/readyz` answers; [`http`] bounds
//! what HTTP peers send and [`glob`] matches the filters' patterns in
//! linear time; [`verify`] checks the signatures [`registry`] fetches
//! against the configured policies (a leaf: bytes in, verdicts out).
#![deny(rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod credentials;
pub mod discovery;
pub mod encode;
pub mod glob;
pub mod http;
pub mod image_facts;
pub mod interner;
pub mod inventory;
pub mod leader;
pub mod pipeline;
pub mod readiness;
pub mod reference;
pub mod registry;
pub mod remote_write;
pub mod schedule;
pub mod self_metrics;
pub mod series;
pub mod server;
pub mod telemetry;
pub mod verify;
pub mod version_series;
pub mod versions;

/// Makes ring the process-wide TLS crypto provider. Every HTTPS client
/// (kube, and reqwest for registries and remote write) needs one; calling
/// this again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An error and its causes on one line: reqwest and hyper hide the useful
/// part ("connection refused") in the source chain.
pub(crate) fn describe_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
