//! Command-line configuration: clap structs, one per group of flags (each
//! with its `--help` heading), every flag with an environment fallback
//! (`PUSHER_*`, or the downward API's names) so it can be set from a
//! ConfigMap as easily as from `args`. Each flag's doc comment is its
//! `--help` text. [`Config::settings`] checks the flags once and turns them
//! into what each stage is built from.
//!
//! One file per `--help` heading, each holding its clap struct; `settings`
//! checks them together.

mod credentials;
mod leader_election;
mod logging;
mod metadata;
mod registry;
mod remote_write;
mod schedule;
mod series;
mod server;
mod settings;
mod sources;
mod supply_chain;
#[cfg(test)]
mod tests;
mod values;
mod verification;
mod versions;
mod workloads;

use clap::Parser;

use crate::remote_write::{Auth, RetryPolicy, TlsConfig};

pub use credentials::CredentialArgs;
pub use leader_election::LeaderElectionArgs;
pub use logging::{LogFormat, LoggingArgs};
pub use metadata::MetadataArgs;
pub use registry::RegistryArgs;
pub use remote_write::RemoteWriteArgs;
pub use schedule::ScheduleArgs;
pub use series::SeriesArgs;
pub use server::ServerArgs;
pub use settings::{ConfigError, Settings};
pub use sources::SourceArgs;
pub use supply_chain::SupplyChainArgs;
pub use values::ValueError;
pub use verification::VerificationArgs;
pub use versions::VersionArgs;
pub use workloads::WorkloadArgs;

/// Pushes the inventory of container images configured in a Kubernetes
/// cluster (or in manifest files) to Prometheus remote-write receivers.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
#[deny(missing_docs)]
pub struct Config {
    /// Where workloads are read from.
    #[command(flatten)]
    pub sources: SourceArgs,

    /// Which kinds of workloads are read, and which are left out.
    #[command(flatten)]
    pub workloads: WorkloadArgs,

    /// When snapshots are taken, and whether they are pushed or printed.
    #[command(flatten)]
    pub schedule: ScheduleArgs,

    /// What the series carry besides the image's own data.
    #[command(flatten)]
    pub series: SeriesArgs,

    /// Where the series are pushed.
    #[command(flatten)]
    pub remote_write: RemoteWriteArgs,

    /// How failed pushes are retried.
    #[command(flatten)]
    pub retry: RetryPolicy,

    /// How the pusher authenticates to endpoints.
    #[command(flatten)]
    pub remote_write_auth: Auth,

    /// How endpoints' certificates are checked; the client certificate.
    #[command(flatten)]
    pub remote_write_tls: TlsConfig,

    /// How images are resolved against their registries.
    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Which logins images are resolved with.
    #[command(flatten)]
    pub credentials: CredentialArgs,

    /// Which of several replicas pushes.
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,

    /// The local HTTP server.
    #[command(flatten)]
    pub server: ServerArgs,

    /// What is logged, and how.
    #[command(flatten)]
    pub logging: LoggingArgs,

    /// Signatures, SBOMs, attestations and base images.
    #[command(flatten)]
    pub supply_chain: SupplyChainArgs,
    /// Which workload and image metadata becomes series.
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Which signatures count as ours.
    #[command(flatten)]
    pub verification: VerificationArgs,
    /// Whether newer releases of the running tags are looked up.
    #[command(flatten)]
    pub versions: VersionArgs,
}
