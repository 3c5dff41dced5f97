//! Command-line configuration: clap structs, one per group of flags (each
//! with its `--help` heading), every flag with an environment fallback
//! (`PUSHER_*`, or the downward API's names) so it can be set from a
//! ConfigMap as easily as from `args`. Each flag's doc comment is its
//! `--help` text. [`Config::settings`] checks the flags once and turns them
//! into what each stage is built from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, ValueEnum};
use reqwest::Url;

#[cfg(feature = "acr")]
use crate::credentials::cloud::acr::ExchangeScheme;
use crate::credentials::{self, cloud};
use crate::discovery::ownership::{Allowlist, MetadataAllowlist};
use crate::discovery::watch::WatchOptions;
use crate::discovery::{KindSpec, LabelSelector, Selection};
use crate::glob::Glob;
use crate::leader::{self, LeaderSettings};
use crate::pipeline::{PipelineSettings, SourceSettings};
use crate::registry::{
    FilterError, ImageFilter, ImageLimits, KeyFilter, Platform, ResolverConfig, VersionSettings,
};
use crate::remote_write::{
    parse_header, parse_url, parse_wait, Auth, EndpointConfig, EndpointError, EndpointsFileError,
    Header, Protocol, PushUrl, RetryPolicy, SecretValueParser, TlsConfig,
};
use crate::schedule::Schedule;
use crate::series::{self, CommonLabels, ExternalLabelError, LimitsError, SeriesLimits};

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

/// Version freshness: is there a newer release of the running tag?
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Versions")]
#[deny(missing_docs)]
pub struct VersionArgs {
    /// For each image referenced by a tag that is a version, list its
    /// repository's tags and tell whether a newer comparable release exists
    /// (container_image_is_latest_version, _latest_version_created,
    /// _versions_behind); honours version-checker's annotations.
    #[arg(long, value_name = "BOOL", env = "PUSHER_VERSIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub versions: bool,

    /// How long a repository's tag list is trusted before it is listed
    /// again (one listing per repository and login per period).
    #[arg(long, value_name = "DURATION", env = "PUSHER_VERSIONS_CACHE_DURATION", default_value = "1h", value_parser = parse_duration)]
    pub versions_cache_duration: Duration,

    /// Only look up versions in repositories (registry/repository, e.g.
    /// docker.io/library/*) matching this glob (repeatable). Default: all.
    #[arg(
        long = "versions-include",
        value_name = "GLOB",
        env = "PUSHER_VERSIONS_INCLUDE",
        value_delimiter = ',',
        value_parser = Glob::parse
    )]
    pub versions_include: Vec<Glob>,

    /// Never look up versions in repositories matching this glob
    /// (repeatable), even when included. Default: none.
    #[arg(
        long = "versions-exclude",
        value_name = "GLOB",
        env = "PUSHER_VERSIONS_EXCLUDE",
        value_delimiter = ',',
        value_parser = Glob::parse
    )]
    pub versions_exclude: Vec<Glob>,
}

/// Where workloads are read from.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sources")]
#[deny(missing_docs)]
pub struct SourceArgs {
    /// Read workloads from these YAML/JSON files or directories ("-" for stdin)
    /// instead of a cluster. Multi-document YAML and `kind: List` are understood.
    #[arg(
        long = "manifests",
        value_name = "PATH",
        env = "PUSHER_MANIFESTS",
        value_delimiter = ','
    )]
    pub manifests: Vec<PathBuf>,

    /// Only read workloads in this namespace (repeatable). Default: all namespaces.
    #[arg(
        long = "namespace",
        value_name = "NAMESPACE",
        env = "PUSHER_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// How long a kind's watch may fail before /readyz reports the replica
    /// not ready, and how long a kind the API refuses (403) keeps its last
    /// known workloads before they leave the inventory and their series end
    /// (an API server that is starting refuses for a moment).
    #[arg(long, value_name = "DURATION", env = "PUSHER_WATCH_GRACE_PERIOD", default_value = "60s", value_parser = parse_duration)]
    pub watch_grace_period: Duration,

    /// How long one watch request stays open before it is re-opened; a
    /// revoked list/watch permission is noticed when it is (the API server
    /// checks RBAC when a watch opens, not on an open one).
    #[arg(long, value_name = "DURATION", env = "PUSHER_WATCH_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub watch_timeout: Duration,

    /// Largest manifests file read, in bytes; a larger one is skipped,
    /// logged and counted (discovery_errors_total{reason="too_large"}).
    #[arg(long, value_name = "BYTES", env = "PUSHER_MANIFESTS_MAX_FILE_BYTES", default_value_t = crate::discovery::files::FileLimits::default().max_file_bytes)]
    pub manifests_max_file_bytes: u64,

    /// Most bytes of manifests files read in one snapshot; files past it
    /// are skipped, logged and counted (reason="too_large").
    #[arg(long, value_name = "BYTES", env = "PUSHER_MANIFESTS_MAX_TOTAL_BYTES", default_value_t = crate::discovery::files::FileLimits::default().max_total_bytes)]
    pub manifests_max_total_bytes: u64,
}

/// When snapshots are taken, and whether they are pushed or printed.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Schedule")]
#[command(group(ArgGroup::new("when").args(["interval", "schedule"]).multiple(false)))]
#[deny(missing_docs)]
pub struct ScheduleArgs {
    /// Take one snapshot, push it, and exit: for a Kubernetes CronJob.
    /// The exit code is 0 only if every request was accepted, 3 if they
    /// were but manifests input had to be skipped.
    #[arg(long, env = "PUSHER_ONCE")]
    pub once: bool,

    /// Print the series in the Prometheus text format to stdout instead of pushing them.
    #[arg(long, env = "PUSHER_DRY_RUN")]
    pub dry_run: bool,

    /// Time between two snapshots in long-running mode (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", env = "PUSHER_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Cron expression for when to take snapshots, instead of --interval: five
    /// fields (minute first) or six (seconds first), e.g. "*/5 * * * *".
    #[arg(long, value_name = "CRON", env = "PUSHER_SCHEDULE", value_parser = Schedule::parse_cron)]
    pub schedule: Option<Schedule>,
}

/// What the series carry besides the image's own data.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Series")]
#[deny(missing_docs)]
pub struct SeriesArgs {
    /// Value of the `job` label on every pushed series.
    #[arg(
        long = "job",
        value_name = "NAME",
        env = "PUSHER_JOB",
        default_value = "container-image-pusher"
    )]
    pub job: String,

    /// Extra label added to every pushed series (repeatable), e.g. cluster=prod.
    /// The name may not be one the series carry themselves (job, image,
    /// class, ...).
    #[arg(long = "external-label", value_name = "NAME=VALUE", env = "PUSHER_EXTERNAL_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub external_labels: Vec<(String, String)>,

    /// Most container_image_label series per image: beyond it, the first
    /// labels by key (byte order) are kept and the rest counted as dropped.
    #[arg(
        long,
        value_name = "N",
        env = "PUSHER_MAX_LABELS_PER_IMAGE",
        default_value_t = 128
    )]
    pub max_labels_per_image: u32,

    /// Most container_image_annotation series per image: beyond it, the
    /// first annotations by key (byte order) are kept and the rest counted
    /// as dropped.
    #[arg(
        long,
        value_name = "N",
        env = "PUSHER_MAX_ANNOTATIONS_PER_IMAGE",
        default_value_t = 128
    )]
    pub max_annotations_per_image: u32,

    /// Longest key or value (bytes) of an image label or annotation. A longer
    /// value is cut at a character boundary and ends in "…" (within the
    /// limit); a label or annotation with a longer key is dropped.
    #[arg(long, value_name = "BYTES", env = "PUSHER_MAX_LABEL_VALUE_LENGTH", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..))]
    pub max_label_value_length: u32,

    /// Most labels one series carries, `__name__`, `job` and external labels
    /// included (Mimir's and Cortex's default): workload labels beyond it
    /// are left out, the first by name kept.
    #[arg(long, value_name = "N", env = "PUSHER_MAX_LABEL_NAMES_PER_SERIES", default_value_t = 30, value_parser = clap::value_parser!(u32).range(12..))]
    pub max_label_names_per_series: u32,

    /// Longest label value (bytes) of any series: a longer one (an image
    /// reference, a workload label) is cut and ends in "…", within the limit.
    #[arg(long, value_name = "BYTES", env = "PUSHER_MAX_LABEL_VALUE_BYTES", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..))]
    pub max_label_value_bytes: u32,

    /// Longest label name (bytes) of any series: a workload label with a
    /// longer name is left out.
    #[arg(long, value_name = "BYTES", env = "PUSHER_MAX_LABEL_NAME_BYTES", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(32..))]
    pub max_label_name_bytes: u32,

    /// Name of the HA replica label of Mimir's and Grafana Cloud's HA
    /// tracker, accepted as an --external-label although it starts with __.
    #[arg(
        long,
        value_name = "NAME",
        env = "PUSHER_REPLICA_LABEL",
        default_value = "__replica__"
    )]
    pub replica_label: String,
}

/// Where the series are pushed.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Remote write")]
#[deny(missing_docs)]
pub struct RemoteWriteArgs {
    /// Remote-write endpoint to push to (repeatable), e.g.
    /// http://prometheus:9090/api/v1/write. Without one (and without
    /// --dry-run) the service only serves /metrics, like a scrape exporter.
    #[arg(
        long = "remote-write-url",
        value_name = "URL",
        env = "PUSHER_REMOTE_WRITE_URL",
        value_delimiter = ',',
        // A URL may carry user:password; neither --help nor an error may print it.
        hide_env_values = true,
        value_parser = SecretValueParser(parse_url)
    )]
    pub remote_write_urls: Vec<PushUrl>,

    /// Remote-write protocol: 1.0, or 2.0 (falls back to 1.0, per endpoint,
    /// when the receiver does not speak it).
    #[arg(
        long,
        value_enum,
        value_name = "VERSION",
        env = "PUSHER_REMOTE_WRITE_PROTOCOL",
        default_value = "1.0"
    )]
    pub remote_write_protocol: Protocol,

    /// OTLP/HTTP metrics endpoint to push to as well (repeatable), e.g.
    /// http://otel-collector:4318/v1/metrics: the same series as OTLP gauges,
    /// gzip-compressed protobuf, with `job` (as service.name) and the external
    /// labels as resource attributes. The --remote-write-* auth, header, TLS,
    /// timeout and retry settings apply to it too; per-endpoint settings go
    /// into --remote-write-config with `protocol: otlp`.
    #[arg(
        long = "otlp-url",
        value_name = "URL",
        env = "PUSHER_OTLP_URL",
        value_delimiter = ',',
        // A URL may carry user:password; neither --help nor an error may print it.
        hide_env_values = true,
        value_parser = SecretValueParser(parse_url)
    )]
    pub otlp_urls: Vec<PushUrl>,

    /// Extra HTTP header on every request (repeatable), e.g.
    /// 'X-Scope-OrgID: team-a' for Mimir or 'THANOS-TENANT: team-a' for Thanos.
    #[arg(long = "remote-write-header", value_name = "NAME: VALUE", env = "PUSHER_REMOTE_WRITE_HEADERS", value_delimiter = ',', hide_env_values = true, value_parser = SecretValueParser(parse_header))]
    pub remote_write_headers: Vec<Header>,

    /// YAML file with one block per endpoint (url, basic_auth, bearer_token_file,
    /// headers, tls, protocol: 1.0, 2.0 or otlp), for endpoints with different
    /// credentials, tenants or protocols.
    #[arg(long, value_name = "PATH", env = "PUSHER_REMOTE_WRITE_CONFIG")]
    pub remote_write_config: Option<PathBuf>,

    /// Most series in one remote-write request; larger snapshots are split.
    #[arg(long, value_name = "N", env = "PUSHER_MAX_SERIES_PER_REQUEST", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_series_per_request: u32,

    /// Timeout of one remote-write request (at most 1 day).
    #[arg(long, value_name = "DURATION", env = "PUSHER_REMOTE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_wait)]
    pub remote_write_timeout: Duration,
}

/// How images are resolved against their registries.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Registry")]
#[deny(missing_docs)]
pub struct RegistryArgs {
    /// How long a tag's digest is trusted before the registry is asked again
    /// (one HEAD request). Image metadata itself is cached by digest.
    #[arg(long, value_name = "DURATION", env = "PUSHER_CACHE_DURATION", default_value = "1h", value_parser = parse_duration)]
    pub cache_duration: Duration,

    /// How long a failed image lookup is remembered before it is retried, so a
    /// broken image does not hammer its registry.
    #[arg(long, value_name = "DURATION", env = "PUSHER_ERROR_CACHE_DURATION", default_value = "5m", value_parser = parse_duration)]
    pub error_cache_duration: Duration,

    /// Platform picked from multi-arch images: OS/ARCH[/VARIANT]. Falls back
    /// to linux/amd64, then to the first image of the index.
    #[arg(
        long,
        value_name = "PLATFORM",
        env = "PUSHER_PLATFORM",
        default_value = "linux/amd64"
    )]
    pub platform: Platform,

    /// Registry reached over plain HTTP instead of HTTPS, as HOST[:PORT] (repeatable).
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "PUSHER_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,

    /// Most requests in flight to one registry host.
    #[arg(long, value_name = "N", env = "PUSHER_REGISTRY_CONCURRENCY", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub registry_concurrency: u32,

    /// Requests per second to one registry host (bursts of the same size
    /// allowed); a 429 pauses that host only.
    #[arg(long, value_name = "RATE", env = "PUSHER_REGISTRY_RPS", default_value_t = 5.0, value_parser = parse_rate)]
    pub registry_rps: f64,

    /// Deadline of one whole image lookup: tag, manifests, config,
    /// referrers, base image, with every login tried.
    #[arg(long, value_name = "DURATION", env = "PUSHER_REGISTRY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub registry_timeout: Duration,

    /// Most images resolved against registries at the same time.
    #[arg(long, value_name = "N", env = "PUSHER_RESOLVE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub resolve_concurrency: u32,
}

/// Which logins images are resolved with.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Registry credentials")]
#[deny(missing_docs)]
pub struct CredentialArgs {
    /// Resolve images with the pull secrets of each workload (its pod spec's
    /// imagePullSecrets and its service account's), as the kubelet does.
    /// Needs get/list/watch on Secrets and ServiceAccounts; false needs neither.
    #[arg(long, value_name = "BOOL", env = "PUSHER_PULL_SECRETS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pull_secrets: bool,

    /// A docker config.json with static credentials for registries that pull
    /// secrets do not cover.
    #[arg(long, value_name = "PATH", env = "PUSHER_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,

    /// Scheme of the ACR token exchange (`POST /oauth2/exchange` at the
    /// registry): https, or http only for a local stand-in in tests.
    #[cfg(feature = "acr")]
    #[arg(
        long,
        value_enum,
        value_name = "SCHEME",
        env = "PUSHER_ACR_EXCHANGE_SCHEME",
        default_value = "https",
        ignore_case = true
    )]
    pub acr_exchange_scheme: ExchangeScheme,
}

impl CredentialArgs {
    /// The credentials' settings: these flags, and the cloud providers'
    /// ambient identity from their standard environment variables.
    pub fn settings(&self) -> credentials::Settings {
        #[cfg_attr(not(feature = "acr"), allow(unused_mut))]
        let mut cloud = cloud::Settings::from_env();
        #[cfg(feature = "acr")]
        if let Some(acr) = &mut cloud.acr {
            acr.exchange_scheme = self.acr_exchange_scheme;
        }
        credentials::Settings {
            pull_secrets: self.pull_secrets,
            docker_config: self.docker_config.clone(),
            cloud,
        }
    }
}

/// Which of several replicas pushes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Leader election")]
#[deny(missing_docs)]
pub struct LeaderElectionArgs {
    /// Coordinate replicas through a coordination.k8s.io Lease: only the
    /// leader pushes, the others keep their inventory warm and take over
    /// within --lease-duration.
    #[arg(long, env = "PUSHER_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(
        long,
        value_name = "NAME",
        env = "PUSHER_LEASE_NAME",
        default_value = "container-image-pusher"
    )]
    pub lease_name: String,

    /// Namespace of the Lease. Default: --pod-namespace, else the service
    /// account's namespace, else the kubeconfig context's namespace, else
    /// "default". The service account needs get, create and update on
    /// leases there.
    #[arg(long, value_name = "NAMESPACE", env = "PUSHER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a leader's lease lasts without renewal: the longest a
    /// crashed leader delays the takeover.
    #[arg(long, value_name = "DURATION", env = "PUSHER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// The namespace this replica's pod runs in, set from the downward API
    /// (metadata.namespace): the Lease's namespace when --lease-namespace is
    /// not given.
    #[arg(long, value_name = "NAMESPACE", env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// This replica's pod name, set from the downward API (metadata.name):
    /// its identity in the Lease. Default: $HOSTNAME (a pod's own name),
    /// else a name unique to this process.
    #[arg(long, value_name = "NAME", env = "POD_NAME")]
    pub pod_name: Option<String>,
}

/// The local HTTP server.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server")]
#[deny(missing_docs)]
pub struct ServerArgs {
    /// Address of the local HTTP server for /metrics (the inventory and the
    /// service's own metrics), /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PUSHER_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: SocketAddr,

    /// Address of the health listener: the service's own metrics on
    /// /metrics (never the inventory), /healthz and /readyz, with
    /// connections of its own, so probes and health scrapes are answered
    /// however many clients read the inventory.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PUSHER_TELEMETRY_ADDRESS",
        default_value = "0.0.0.0:8081"
    )]
    pub telemetry_address: SocketAddr,

    /// Push a small set of the service's own health metrics with every
    /// snapshot to every endpoint (last accepted push per endpoint, pushes,
    /// snapshot size and duration, stale kinds, leader, resolve failures by
    /// class, build info), so that its health arrives without a scrape.
    #[arg(
        long,
        value_name = "BOOL",
        env = "PUSHER_PUSH_SELF_METRICS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub push_self_metrics: bool,
}

/// What is logged, and how.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Logging")]
#[deny(missing_docs)]
pub struct LoggingArgs {
    /// Log format (logs go to stderr).
    #[arg(long, value_enum, env = "PUSHER_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// What is logged: a level (error, warn, info, debug, trace) or
    /// directives per module, e.g. "info,container_image_pusher=debug"
    /// (tracing's RUST_LOG syntax). The default keeps kube's watcher, which
    /// warns at every retry of a forbidden watch, to errors: the pusher says
    /// it once. Empty means the default.
    #[arg(
        long,
        value_name = "FILTER",
        env = "RUST_LOG",
        default_value = DEFAULT_LOG_FILTER,
        value_parser = parse_log_filter
    )]
    pub log_level: String,
}

/// What is attached to images (signatures, SBOMs, attestations).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Supply chain")]
#[deny(missing_docs)]
pub struct SupplyChainArgs {
    /// Look up the signatures, SBOMs and attestations attached to each image
    /// (referrers API, referrers tag schema, cosign's tags, BuildKit's
    /// attestations) for container_image_referrer. Presence, not verification.
    #[arg(long, value_name = "BOOL", env = "PUSHER_REFERRERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub referrers: bool,

    /// How long what is attached to an image is trusted before it is listed
    /// again (one request per image digest): attachments can be added long
    /// after an image is pushed.
    #[arg(long, value_name = "DURATION", env = "PUSHER_REFERRERS_CACHE_DURATION", default_value = "1h", value_parser = parse_duration)]
    pub referrers_cache_duration: Duration,
}

/// Which labels and annotations of workloads and images become series.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Workload and image metadata")]
#[deny(missing_docs)]
pub struct MetadataArgs {
    /// Workload labels exported as label_<key> (kube-state-metrics' naming) on
    /// container_image_workload_labels, e.g. team,app.kubernetes.io/part-of;
    /// "*" exports every label. Repeatable. Default: none (no such series).
    #[arg(
        long = "workload-labels",
        value_name = "KEY",
        env = "PUSHER_WORKLOAD_LABELS",
        value_delimiter = ','
    )]
    pub workload_labels: Vec<String>,

    /// Workload annotations exported as annotation_<key> on
    /// container_image_workload_labels; "*" exports every annotation.
    /// Repeatable. Default: none.
    #[arg(
        long = "workload-annotations",
        value_name = "KEY",
        env = "PUSHER_WORKLOAD_ANNOTATIONS",
        value_delimiter = ','
    )]
    pub workload_annotations: Vec<String>,

    /// Image labels exported as container_image_label: globs on the key
    /// (* and ?), "!GLOB" leaves matching keys out, e.g.
    /// 'org.opencontainers.*,!org.opencontainers.image.created'. Applied
    /// before --max-labels-per-image. Repeatable. Default: every label.
    #[arg(long = "image-labels", value_name = "GLOB", env = "PUSHER_IMAGE_LABELS", value_delimiter = ',', value_parser = parse_key_glob)]
    pub image_labels: Vec<String>,

    /// Image annotations exported as container_image_annotation: globs on
    /// the key, "!GLOB" leaves matching keys out. Applied before
    /// --max-annotations-per-image. Repeatable. Default: every annotation.
    #[arg(long = "image-annotations", value_name = "GLOB", env = "PUSHER_IMAGE_ANNOTATIONS", value_delimiter = ',', value_parser = parse_key_glob)]
    pub image_annotations: Vec<String>,
}

impl MetadataArgs {
    /// The workload labels and annotations kept.
    pub fn workload_metadata(&self) -> MetadataAllowlist {
        MetadataAllowlist {
            labels: Allowlist::new(&self.workload_labels),
            annotations: Allowlist::new(&self.workload_annotations),
        }
    }

    /// Which image labels and annotations are kept.
    pub fn image_filter(&self) -> Result<ImageFilter, FilterError> {
        Ok(ImageFilter {
            labels: KeyFilter::new(&self.image_labels)?,
            annotations: KeyFilter::new(&self.image_annotations)?,
        })
    }
}

fn parse_key_glob(s: &str) -> Result<String, FilterError> {
    KeyFilter::new(&[s])?;
    Ok(s.trim().to_owned())
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Everything the service is built from, checked: each stage takes its part.
#[derive(Debug)]
pub struct Settings {
    /// Take one snapshot, deliver it and exit.
    pub once: bool,
    /// Print snapshots instead of pushing them.
    pub dry_run: bool,
    pub schedule: Schedule,
    pub pipeline: PipelineSettings,
    /// Every endpoint to push to: the --remote-write-url and --otlp-url
    /// ones with the shared flags, then those of --remote-write-config.
    pub endpoints: Vec<EndpointConfig>,
    /// `None` without --leader-election.
    pub leader_election: Option<LeaderSettings>,
    pub metrics_address: SocketAddr,
    pub telemetry_address: SocketAddr,
}

/// Flags that clap accepts one by one but that cannot work together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--once needs --remote-write-url, --otlp-url or --dry-run: there is nowhere to send the snapshot")]
    NowhereToSend,
    #[error("--external-label: {0}")]
    ExternalLabel(#[from] ExternalLabelError),
    #[error("--job or --external-label: {0}")]
    SeriesLimits(#[from] LimitsError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    EndpointsFile(#[from] EndpointsFileError),
    #[error("--image-labels or --image-annotations: {0}")]
    ImageFilter(#[from] FilterError),
    #[error(transparent)]
    Verification(#[from] crate::verify::policy::PolicyError),
}

impl Config {
    /// Checks what clap cannot (combinations of flags, label names, the
    /// endpoints, the --remote-write-config file, read here and only here)
    /// and builds the settings of every stage.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let (sources, schedule) = (&self.sources, &self.schedule);
        let remote_write = &self.remote_write;
        if schedule.once
            && !schedule.dry_run
            && remote_write.remote_write_urls.is_empty()
            && remote_write.otlp_urls.is_empty()
            && remote_write.remote_write_config.is_none()
        {
            return Err(ConfigError::NowhereToSend);
        }
        series::check_external_labels(&self.series.external_labels, &self.series.replica_label)?;
        let common_labels = CommonLabels::new(&self.series.job, &self.series.external_labels)
            .with_limits(self.series.series_limits())?;
        let resource_labels: Vec<String> = common_labels.names().map(str::to_owned).collect();
        let endpoints = self.endpoints(&resource_labels)?;
        let interval = schedule.interval;
        let source = if sources.manifests.is_empty() {
            SourceSettings::Cluster {
                selection: self.selection(),
                // A CronJob run lists once; a long-running service keeps watches.
                watch: (!schedule.once).then(|| WatchOptions {
                    grace_period: sources.watch_grace_period,
                    max_backoff: WatchOptions::max_backoff_for(interval),
                    watch_timeout: sources.watch_timeout,
                }),
            }
        } else {
            SourceSettings::Files {
                paths: sources.manifests.clone(),
                selection: self.selection(),
                limits: crate::discovery::files::FileLimits {
                    max_file_bytes: sources.manifests_max_file_bytes,
                    max_total_bytes: sources.manifests_max_total_bytes,
                },
            }
        };
        let registry = &self.registry;
        let pipeline = PipelineSettings {
            source,
            credentials: self.credentials.settings(),
            resolver: ResolverConfig {
                platform: registry.platform.clone(),
                cache_duration: registry.cache_duration,
                error_cache_duration: registry.error_cache_duration,
                insecure_registries: registry.insecure_registries.clone(),
                timeout: registry.registry_timeout,
                registry_concurrency: registry.registry_concurrency as usize,
                registry_rps: registry.registry_rps,
                image_limits: self.series.image_limits(),
                referrers: self.supply_chain.referrers,
                referrers_cache_duration: self.supply_chain.referrers_cache_duration,
                image_filter: self.metadata.image_filter()?,
                verify: std::sync::Arc::new(crate::verify::policy::policies(
                    &self.verification.verify_key,
                    &self.verification.verify_certificate,
                    self.verification.verify_config.as_deref(),
                )?),
                versions: self.versions.versions.then(|| VersionSettings {
                    cache_duration: self.versions.versions_cache_duration,
                    include: self.versions.versions_include.clone(),
                    exclude: self.versions.versions_exclude.clone(),
                }),
            },
            resolve_concurrency: registry.resolve_concurrency as usize,
            common_labels,
            workload_metadata: self.metadata.workload_metadata(),
            push_self_metrics: self.server.push_self_metrics,
        };
        let leader = &self.leader_election;
        let leader_election = leader.leader_election.then(|| LeaderSettings {
            lease_name: leader.lease_name.clone(),
            lease_namespace: leader.lease_namespace.clone(),
            pod_namespace: leader.pod_namespace.clone(),
            identity: leader::identity_of_this_process(leader.pod_name.as_deref()),
            lease_duration: leader.lease_duration,
        });
        Ok(Settings {
            once: schedule.once,
            dry_run: schedule.dry_run,
            schedule: schedule
                .schedule
                .clone()
                .unwrap_or(Schedule::Interval(interval)),
            pipeline,
            endpoints,
            leader_election,
            metrics_address: self.server.metrics_address,
            telemetry_address: self.server.telemetry_address,
        })
    }

    /// The --remote-write-url and --otlp-url endpoints with the shared
    /// settings, then those of --remote-write-config, which take the shared
    /// settings they do not give themselves.
    fn endpoints(&self, resource_labels: &[String]) -> Result<Vec<EndpointConfig>, ConfigError> {
        let remote_write = &self.remote_write;
        let endpoint = |url: Url, protocol: Protocol| EndpointConfig {
            url,
            protocol,
            auth: self.remote_write_auth.clone(),
            headers: remote_write.remote_write_headers.clone(),
            tls: self.remote_write_tls.clone(),
            timeout: remote_write.remote_write_timeout,
            max_series_per_request: remote_write.max_series_per_request as usize,
            retry: self.retry,
            resource_labels: resource_labels.to_vec(),
        };
        let protocol = remote_write.remote_write_protocol;
        let urls = remote_write.remote_write_urls.iter().map(|u| (u, protocol));
        let otlp = remote_write.otlp_urls.iter().map(|u| (u, Protocol::Otlp));
        let mut endpoints: Vec<EndpointConfig> = urls
            .chain(otlp)
            .map(|(PushUrl(url), protocol)| endpoint(url.clone(), protocol))
            .collect();
        for endpoint in &endpoints {
            endpoint.validate()?;
        }
        if let Some(path) = &remote_write.remote_write_config {
            let defaults = endpoint(
                Url::parse("http://localhost/").expect("a valid URL"),
                protocol,
            );
            endpoints.extend(EndpointConfig::from_file(path, &defaults)?);
        }
        Ok(endpoints)
    }
}

impl SeriesArgs {
    /// What one image may add to a snapshot.
    fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_labels: self.max_labels_per_image as usize,
            max_annotations: self.max_annotations_per_image as usize,
            max_value_length: self.max_label_value_length as usize,
        }
    }

    fn series_limits(&self) -> SeriesLimits {
        SeriesLimits {
            max_label_names: self.max_label_names_per_series as usize,
            max_value_bytes: self.max_label_value_bytes as usize,
            max_name_bytes: self.max_label_name_bytes as usize,
        }
    }
}

/// A flag value clap hands over that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{given:?} is not a duration like 30s, 5m or 1h: {reason}")]
    Duration { given: String, reason: String },
    #[error("a duration of zero is not allowed")]
    ZeroDuration,
    #[error("{0:?} is not a positive number of requests per second")]
    Rate(String),
    #[error("{0:?} is not NAME=VALUE")]
    Label(String),
    #[error("label {0} has an empty value, which remote write would drop")]
    EmptyLabelValue(String),
    #[error("{given:?} is not a log filter: {reason}")]
    LogFilter { given: String, reason: String },
}

fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let d = humantime::parse_duration(s).map_err(|e| ValueError::Duration {
        given: s.to_owned(),
        reason: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(ValueError::ZeroDuration);
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, ValueError> {
    match s.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(ValueError::Rate(s.to_owned())),
    }
}

/// Parses NAME=VALUE; the names are checked together, by [`Config::settings`].
fn parse_label(s: &str) -> Result<(String, String), ValueError> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| ValueError::Label(s.to_owned()))?;
    if value.is_empty() {
        return Err(ValueError::EmptyLabelValue(name.to_owned()));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// Info, but kube's watcher only at errors: it warns at every retry of a
/// forbidden watch, which the pusher reports once itself.
const DEFAULT_LOG_FILTER: &str = "info,kube_runtime::watcher=error";

/// A filter in tracing's `RUST_LOG` syntax; an empty one (an unset
/// `RUST_LOG=` in a manifest) is the default.
fn parse_log_filter(s: &str) -> Result<String, ValueError> {
    if s.trim().is_empty() {
        return Ok(DEFAULT_LOG_FILTER.to_owned());
    }
    tracing_subscriber::EnvFilter::try_new(s).map_err(|e| ValueError::LogFilter {
        given: s.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(s.to_owned())
}

/// Which workloads are inventoried beyond the built-in kinds, and which
/// are left out.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Workload kinds and filters")]
#[deny(missing_docs)]
pub struct WorkloadArgs {
    /// Also inventory this kind (repeatable; ';' separates several in the
    /// variable): a preset (argo-rollouts, knative-serving, keda-scaledjob,
    /// openkruise-cloneset, replicaset, replicationcontroller) or
    /// GROUP/VERSION/KIND[=PATH,...] (VERSION/KIND for the core group),
    /// PATH being where a pod spec sits, default .spec.template.spec. Found
    /// with API discovery; a kind not installed is looked up again later.
    #[arg(
        long = "workload-kind",
        value_name = "KIND",
        env = "PUSHER_WORKLOAD_KINDS",
        value_delimiter = ';',
        value_parser = KindSpec::parse
    )]
    pub kinds: Vec<KindSpec>,

    /// Leave out workloads in namespaces matching this glob (repeatable;
    /// '*' matches any characters), e.g. kube-*.
    #[arg(
        long = "exclude-namespace",
        value_name = "GLOB",
        env = "PUSHER_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        value_parser = Glob::parse
    )]
    pub exclude_namespaces: Vec<Glob>,

    /// Only workloads whose labels match this Kubernetes label selector,
    /// e.g. 'team=shop,tier!=test' (sent to the API server with each list
    /// and watch; evaluated on the files with --manifests).
    #[arg(long = "selector", value_name = "SELECTOR", env = "PUSHER_SELECTOR", value_parser = LabelSelector::parse)]
    pub selector: Option<LabelSelector>,

    /// Leave out containers whose image, as written in the spec, matches
    /// this glob (repeatable), e.g. '*/pause:*': no series, no registry
    /// request.
    #[arg(
        long = "exclude-image",
        value_name = "GLOB",
        env = "PUSHER_EXCLUDE_IMAGES",
        value_delimiter = ',',
        value_parser = Glob::parse
    )]
    pub exclude_images: Vec<Glob>,
}

impl Config {
    /// What discovery reads: the namespaces, kinds and filters.
    fn selection(&self) -> Selection {
        Selection {
            namespaces: self.sources.namespaces.clone(),
            kinds: self.workloads.kinds.clone(),
            exclude_namespaces: self.workloads.exclude_namespaces.clone(),
            selector: self.workloads.selector.clone(),
            exclude_images: self.workloads.exclude_images.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn config(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["container-image-pusher"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).map_err(|e| e.to_string())
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        config(args)?.settings().map_err(|e| e.to_string())
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn workload_and_image_metadata() {
        let s = parse(&[]).unwrap();
        assert!(s.pipeline.workload_metadata.is_empty());
        assert!(s.pipeline.resolver.image_filter.labels.keeps_all());
        assert!(s.pipeline.resolver.image_filter.annotations.keeps_all());
        let s = parse(&[
            "--workload-labels",
            "team,app.kubernetes.io/name",
            "--workload-annotations=*",
            "--image-labels",
            "org.opencontainers.*,!org.opencontainers.image.created",
        ])
        .unwrap();
        assert!(!s.pipeline.workload_metadata.is_empty());
        let labels = &s.pipeline.resolver.image_filter.labels;
        assert!(labels.keeps("org.opencontainers.image.source"));
        assert!(!labels.keeps("org.opencontainers.image.created"));
        assert!(!labels.keeps("maintainer"));
        let err = parse(&["--image-annotations", "!"]).unwrap_err();
        assert!(err.contains("empty pattern"), "{err}");
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap();
        assert!(matches!(s.schedule, Schedule::Interval(d) if d == Duration::from_secs(60)));
        assert!(!s.once && !s.dry_run);
        assert!(s.endpoints.is_empty() && s.leader_election.is_none());
        let resolver = &s.pipeline.resolver;
        assert_eq!(resolver.cache_duration, Duration::from_secs(3600));
        assert_eq!(resolver.platform.to_string(), "linux/amd64");
        assert_eq!(resolver.image_limits, ImageLimits::default());
        assert_eq!(
            s.pipeline.common_labels.pairs().collect::<Vec<_>>(),
            [("job", "container-image-pusher")]
        );
        assert_eq!(s.metrics_address.to_string(), "0.0.0.0:8080");
        assert_eq!(s.telemetry_address.to_string(), "0.0.0.0:8081");
    }

    #[test]
    fn every_flag_is_under_a_help_heading_with_an_env_fallback() {
        let command = Config::command();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(arg.get_help_heading().is_some(), "--{id} has no heading");
            assert!(arg.get_env().is_some(), "--{id} has no env fallback");
            assert!(arg.get_help().is_some(), "--{id} has no help");
        }
    }

    #[test]
    fn the_source_follows_the_mode() {
        let s = parse(&["--namespace", "a,b"]).unwrap();
        assert!(matches!(
            s.pipeline.source,
            SourceSettings::Cluster { ref selection, watch: Some(w) }
                if selection.namespaces == ["a", "b"] && w.max_backoff == Duration::from_secs(30)
        ));
        let s = parse(&["--once", "--dry-run"]).unwrap();
        assert!(matches!(
            s.pipeline.source,
            SourceSettings::Cluster { watch: None, .. }
        ));
        let s = parse(&["--manifests", "a.yaml,-"]).unwrap();
        assert!(matches!(
            s.pipeline.source,
            SourceSettings::Files { ref paths, .. } if paths.len() == 2
        ));
    }

    #[test]
    fn once_needs_a_destination() {
        let err = parse(&["--once"]).unwrap_err();
        assert!(err.contains("--remote-write-url"), "{err}");
        assert!(matches!(
            config(&["--once"]).unwrap().settings(),
            Err(ConfigError::NowhereToSend)
        ));
        parse(&["--once", "--dry-run"]).unwrap();
        parse(&[
            "--once",
            "--remote-write-url",
            "http://localhost:9090/api/v1/write",
        ])
        .unwrap();
    }

    #[test]
    fn otlp_urls_are_endpoints_with_the_shared_settings() {
        let s = parse(&[
            "--once",
            "--otlp-url",
            "http://collector:4318/v1/metrics",
            "--remote-write-url",
            "http://prometheus:9090/api/v1/write",
            "--remote-write-header",
            "X-Scope-OrgID: team-a",
            "--external-label",
            "cluster=prod",
            "--remote-write-protocol",
            "2.0",
            "--remote-write-bearer-token-file",
            "/token",
            "--retry-max-pause",
            "1m",
        ])
        .unwrap();
        let endpoints = s.endpoints;
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].protocol, Protocol::V2);
        assert_eq!(endpoints[1].protocol, Protocol::Otlp);
        assert_eq!(
            endpoints[1].url.as_str(),
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(endpoints[1].headers, endpoints[0].headers);
        assert_eq!(
            endpoints[1].auth.bearer_token_file.as_deref(),
            Some(std::path::Path::new("/token"))
        );
        assert_eq!(endpoints[1].retry.max_pause, Duration::from_secs(60));
        assert_eq!(endpoints[1].resource_labels, ["job", "cluster"]);
        let err = parse(&["--remote-write-protocol", "otlp"]).unwrap_err();
        assert!(err.contains("invalid value"), "OTLP is per endpoint: {err}");
    }

    #[test]
    fn the_endpoints_file_is_read_once_with_the_flags_as_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.yaml");
        std::fs::write(
            &path,
            "endpoints:\n  - url: https://mimir.example.com/api/v1/push\n    protocol: otlp\n",
        )
        .unwrap();
        let config = config(&[
            "--remote-write-url",
            "http://prometheus:9090/api/v1/write",
            "--remote-write-config",
            path.to_str().unwrap(),
            "--remote-write-timeout",
            "7s",
        ])
        .unwrap();
        let settings = config.settings().unwrap();
        // The file is gone: the settings hold what it said.
        std::fs::remove_file(&path).unwrap();
        let endpoints = settings.endpoints;
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[1].protocol, Protocol::Otlp);
        assert_eq!(endpoints[1].timeout, Duration::from_secs(7));
        assert!(matches!(
            config.settings(),
            Err(ConfigError::EndpointsFile(EndpointsFileError::Read { .. }))
        ));
    }

    #[test]
    fn interval_and_schedule_exclude_each_other() {
        assert!(parse(&["--interval", "5m", "--schedule", "*/5 * * * *"]).is_err());
        let s = parse(&["--schedule", "*/5 * * * *"]).unwrap();
        assert!(matches!(s.schedule, Schedule::Cron(_)));
    }

    #[test]
    fn external_labels_are_validated() {
        let s = parse(&[
            "--external-label",
            "cluster=prod",
            "--external-label",
            "region=eu",
        ])
        .unwrap();
        assert_eq!(
            s.pipeline.common_labels.pairs().nth(1),
            Some(("cluster", "prod"))
        );
        assert!(parse(&["--external-label", "cluster"]).is_err());
        assert!(parse(&["--external-label", "1cluster=x"]).is_err());
        assert!(parse(&["--external-label", "__name__=x"]).is_err());
        assert!(parse(&["--external-label", "cluster="]).is_err());
        assert!(parse(&["--external-label", "namespace=x"])
            .unwrap_err()
            .contains("namespace"));
        assert!(
            parse(&["--external-label", "a=1", "--external-label", "a=2"])
                .unwrap_err()
                .contains("given twice")
        );
        assert!(parse(&["--external-label", "job=x"])
            .unwrap_err()
            .contains("--job"));
        assert!(parse(&["--external-label", "cluster-name=x"])
            .unwrap_err()
            .contains("not a valid label name"));
    }

    #[test]
    fn an_external_label_named_like_a_series_label_names_its_family() {
        let err = parse(&["--external-label", "class=prod"]).unwrap_err();
        assert!(
            err.contains("\"class\"") && err.contains("container_image_resolve_error"),
            "{err}"
        );
    }

    #[test]
    fn image_limits() {
        let s = parse(&[
            "--max-labels-per-image",
            "0",
            "--max-annotations-per-image",
            "5",
            "--max-label-value-length",
            "64",
        ])
        .unwrap();
        assert_eq!(
            s.pipeline.resolver.image_limits,
            ImageLimits {
                max_labels: 0,
                max_annotations: 5,
                max_value_length: 64
            }
        );
        assert!(parse(&["--max-label-value-length", "3"]).is_err());
    }

    #[test]
    fn durations_are_humane() {
        assert_eq!(
            parse(&["--cache-duration", "6h"])
                .unwrap()
                .pipeline
                .resolver
                .cache_duration,
            Duration::from_secs(6 * 3600)
        );
        assert!(parse(&["--interval", "0s"]).is_err());
        assert!(parse(&["--interval", "soon"]).is_err());
        assert_eq!(parse_duration("0s"), Err(ValueError::ZeroDuration));
    }

    #[test]
    fn remote_write_durations_are_bounded() {
        let s = parse(&["--remote-write-url", "http://x/"]).unwrap();
        assert_eq!(s.endpoints[0].retry.max_pause, Duration::from_secs(300));
        for flag in [
            "--remote-write-retry-for",
            "--remote-write-timeout",
            "--retry-max-backoff",
            "--retry-max-pause",
        ] {
            let err = parse(&[flag, "500000000000y"]).unwrap_err();
            assert!(err.contains(flag) && err.contains("1day"), "{err}");
            parse(&[flag, "1d"]).unwrap();
        }
    }

    #[test]
    fn leader_election_settings_come_from_the_downward_api_flags() {
        let s = parse(&[
            "--leader-election",
            "--pod-namespace",
            "monitoring",
            "--pod-name",
            "pusher-0",
        ])
        .unwrap();
        let leader = s.leader_election.unwrap();
        assert_eq!(leader.identity, "pusher-0");
        assert_eq!(leader.pod_namespace.as_deref(), Some("monitoring"));
        assert_eq!(leader.lease_name, "container-image-pusher");
        assert_eq!(leader.lease_duration, Duration::from_secs(15));
        let args = Config::command();
        for (flag, env) in [("pod_namespace", "POD_NAMESPACE"), ("pod_name", "POD_NAME")] {
            let arg = args.get_arguments().find(|a| a.get_id() == flag).unwrap();
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(env)));
        }
    }

    #[test]
    fn log_filters_are_checked_and_empty_means_the_default() {
        let c = config(&["--log-level", "debug,container_image_pusher=trace"]).unwrap();
        assert_eq!(c.logging.log_level, "debug,container_image_pusher=trace");
        assert!(config(&["--log-level", "=foo["]).is_err());
        assert_eq!(
            config(&["--log-level", ""]).unwrap().logging.log_level,
            DEFAULT_LOG_FILTER
        );
    }

    #[test]
    fn malformed_remote_write_flags_do_not_echo_secrets() {
        for args in [
            ["--remote-write-url", "http://u:PASSWORD@[::1"],
            ["--remote-write-header", "X-Api-Key PASSWORD"],
        ] {
            let err = parse(&args).unwrap_err();
            assert!(err.contains(args[0]), "{err}");
            assert!(!err.contains("PASSWORD"), "{err}");
        }
        let c = config(&[
            "--remote-write-url",
            "https://u:PASSWORD@mimir.example.com/push",
            "--remote-write-header",
            "X-Api-Key: PASSWORD",
        ])
        .unwrap();
        let debug = format!("{c:?} {:?}", c.settings().unwrap());
        assert!(
            debug.contains("mimir.example.com") && !debug.contains("PASSWORD"),
            "{debug}"
        );
    }

    #[test]
    fn workload_kinds_and_filters_reach_the_source() {
        let s = parse(&[
            "--namespace",
            "shop",
            "--workload-kind",
            "argo-rollouts",
            "--workload-kind",
            "example.com/v1/Thing=.spec.a,.spec.b",
            "--exclude-namespace",
            "kube-*,monitoring",
            "--selector",
            "team=shop",
            "--exclude-image",
            "*/pause:*",
        ])
        .unwrap();
        let SourceSettings::Cluster { selection, .. } = s.pipeline.source else {
            panic!("a cluster source");
        };
        assert_eq!(selection.namespaces, ["shop"]);
        let kinds: Vec<String> = selection.kinds.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            kinds,
            ["argoproj.io/v1alpha1/Rollout", "example.com/v1/Thing"]
        );
        assert_eq!(selection.exclude_namespaces.len(), 2);
        assert_eq!(selection.label_selector().as_deref(), Some("team=shop"));
        assert_eq!(selection.exclude_images[0].as_str(), "*/pause:*");
        assert!(parse(&["--workload-kind", "apps/v1/Deployment"]).is_err());
        assert!(parse(&["--selector", "team in shop"]).is_err());
    }
}
