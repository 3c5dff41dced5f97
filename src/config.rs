//! Command-line configuration: one clap struct, every flag with an environment
//! fallback (`PUSHER_*`) so it can be set from a ConfigMap as easily as from
//! `args`. Each flag's doc comment is its `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, ValueEnum};

use crate::discovery::ownership::{Allowlist, MetadataAllowlist};
use crate::inventory::{self, CommonLabels};
use crate::registry::{FilterError, ImageFilter, ImageLimits, KeyFilter, Platform};
use crate::remote_write::{
    parse_header, parse_url, EndpointConfig, Header, Protocol, PushUrl, RetryPolicy,
    SecretValueParser, TlsConfig, LONGEST_WAIT,
};
use crate::schedule::Schedule;

/// Pushes the inventory of container images configured in a Kubernetes
/// cluster (or in manifest files) to Prometheus remote-write receivers.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
#[command(group(ArgGroup::new("when").args(["interval", "schedule"]).multiple(false)))]
#[deny(missing_docs)]
pub struct Config {
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

    /// Most series in one remote-write request; larger snapshots are split.
    #[arg(long, value_name = "N", env = "PUSHER_MAX_SERIES_PER_REQUEST", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_series_per_request: u32,

    /// Timeout of one remote-write request (at most 1 day).
    #[arg(long, value_name = "DURATION", env = "PUSHER_REMOTE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_push_duration)]
    pub remote_write_timeout: Duration,

    /// How long one remote-write request is retried (5xx, 429, network
    /// errors) before it is given up (at most 1 day).
    #[arg(long, value_name = "DURATION", env = "PUSHER_REMOTE_WRITE_RETRY_FOR", default_value = "30s", value_parser = parse_push_duration)]
    pub remote_write_retry_for: Duration,

    /// First wait before retrying a failed request; doubles on each retry.
    #[arg(long, value_name = "DURATION", env = "PUSHER_RETRY_MIN_BACKOFF", default_value = "30ms", value_parser = parse_push_duration)]
    pub retry_min_backoff: Duration,

    /// Longest wait between two retries (at most 1 day).
    #[arg(long, value_name = "DURATION", env = "PUSHER_RETRY_MAX_BACKOFF", default_value = "5s", value_parser = parse_push_duration)]
    pub retry_max_backoff: Duration,

    /// Longest pause a receiver can impose with Retry-After: no request goes
    /// to it until the pause ends (the newest snapshot waits), but a longer
    /// Retry-After is cut to this (at most 1 day).
    #[arg(long, value_name = "DURATION", env = "PUSHER_RETRY_MAX_PAUSE", default_value = "5m", value_parser = parse_push_duration)]
    pub retry_max_pause: Duration,

    /// Retry requests answered 429 Too Many Requests (after Retry-After when
    /// given); with false they are dropped, as other 4xx are.
    #[arg(long, value_name = "BOOL", env = "PUSHER_RETRY_ON_RATE_LIMIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub retry_on_rate_limit: bool,

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

    /// Basic-auth user for --remote-write-url endpoints (e.g. a Grafana Cloud
    /// instance ID); the password comes from --remote-write-password-file.
    #[arg(
        long,
        value_name = "NAME",
        env = "PUSHER_REMOTE_WRITE_USERNAME",
        requires = "remote_write_password_file"
    )]
    pub remote_write_username: Option<String>,

    /// File holding the basic-auth password or access token; re-read when it changes.
    #[arg(
        long,
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_PASSWORD_FILE",
        requires = "remote_write_username"
    )]
    pub remote_write_password_file: Option<PathBuf>,

    /// File holding a bearer token (e.g. a projected service-account token);
    /// re-read when it changes.
    #[arg(
        long,
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_BEARER_TOKEN_FILE",
        conflicts_with = "remote_write_username"
    )]
    pub remote_write_bearer_token_file: Option<PathBuf>,

    /// Extra HTTP header on every request (repeatable), e.g.
    /// 'X-Scope-OrgID: team-a' for Mimir or 'THANOS-TENANT: team-a' for Thanos.
    #[arg(long = "remote-write-header", value_name = "NAME: VALUE", env = "PUSHER_REMOTE_WRITE_HEADERS", value_delimiter = ',', hide_env_values = true, value_parser = SecretValueParser(parse_header))]
    pub remote_write_headers: Vec<Header>,

    /// CA bundle (PEM) trusted for remote-write endpoints, besides the system roots.
    #[arg(long, value_name = "PATH", env = "PUSHER_REMOTE_WRITE_CA_FILE")]
    pub remote_write_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS with remote-write endpoints.
    #[arg(
        long,
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_CERT_FILE",
        requires = "remote_write_key_file"
    )]
    pub remote_write_cert_file: Option<PathBuf>,

    /// Key (PEM) of --remote-write-cert-file.
    #[arg(
        long,
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_KEY_FILE",
        requires = "remote_write_cert_file"
    )]
    pub remote_write_key_file: Option<PathBuf>,

    /// Do not verify remote-write endpoints' TLS certificates. Only for testing.
    #[arg(long, env = "PUSHER_REMOTE_WRITE_INSECURE_SKIP_VERIFY")]
    pub remote_write_insecure_skip_verify: bool,

    /// YAML file with one block per endpoint (url, basic_auth, bearer_token_file,
    /// headers, tls, protocol: 1.0, 2.0 or otlp), for endpoints with different
    /// credentials, tenants or protocols.
    #[arg(long, value_name = "PATH", env = "PUSHER_REMOTE_WRITE_CONFIG")]
    pub remote_write_config: Option<PathBuf>,

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

    /// Address of the local HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        value_name = "ADDR",
        env = "PUSHER_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: SocketAddr,

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

    /// Resolve images with the pull secrets of each workload (its pod spec's
    /// imagePullSecrets and its service account's), as the kubelet does.
    /// Needs get/list/watch on Secrets and ServiceAccounts; false needs neither.
    #[arg(long, value_name = "BOOL", env = "PUSHER_PULL_SECRETS", default_value_t = true, action = clap::ArgAction::Set)]
    pub pull_secrets: bool,

    /// A docker config.json with static credentials for registries that pull
    /// secrets do not cover.
    #[arg(long, value_name = "PATH", env = "PUSHER_DOCKER_CONFIG")]
    pub docker_config: Option<PathBuf>,

    /// Most requests in flight to one registry host.
    #[arg(long, value_name = "N", env = "PUSHER_REGISTRY_CONCURRENCY", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub registry_concurrency: u32,

    /// Requests per second to one registry host (bursts of the same size
    /// allowed); a 429 pauses that host only.
    #[arg(long, value_name = "RATE", env = "PUSHER_REGISTRY_RPS", default_value_t = 5.0, value_parser = parse_rate)]
    pub registry_rps: f64,

    /// Timeout for one image lookup: the HEAD of a tag, or the manifests and
    /// config of a digest.
    #[arg(long, value_name = "DURATION", env = "PUSHER_REGISTRY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub registry_timeout: Duration,

    /// Most images resolved against registries at the same time.
    #[arg(long, value_name = "N", env = "PUSHER_RESOLVE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub resolve_concurrency: u32,

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

    /// Namespace of the Lease. Default: $POD_NAMESPACE, else the service
    /// account's namespace, else the kubeconfig context's namespace, else
    /// "default". The service account needs get, create and update on
    /// leases there.
    #[arg(long, value_name = "NAMESPACE", env = "PUSHER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a leader's lease lasts without renewal: the longest a
    /// crashed leader delays the takeover.
    #[arg(long, value_name = "DURATION", env = "PUSHER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// Log format.
    #[arg(long, value_enum, env = "PUSHER_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Which workload and image metadata becomes series.
    #[command(flatten)]
    pub metadata: MetadataConfig,
}

/// Which labels and annotations of workloads and images become series.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Workload and image metadata")]
#[deny(missing_docs)]
pub struct MetadataConfig {
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

impl MetadataConfig {
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

fn parse_key_glob(s: &str) -> Result<String, String> {
    KeyFilter::new(&[s]).map_err(|e| e.to_string())?;
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

impl Config {
    /// Checks what clap cannot: combinations of flags and label names.
    pub fn validate(&self) -> Result<(), String> {
        if self.once
            && !self.dry_run
            && self.remote_write_urls.is_empty()
            && self.otlp_urls.is_empty()
            && self.remote_write_config.is_none()
        {
            return Err("--once needs --remote-write-url, --otlp-url or --dry-run: there is nowhere to send the snapshot".into());
        }
        inventory::check_external_labels(&self.external_labels)
            .map_err(|e| format!("--external-label: {e}"))?;
        self.endpoints()?;
        Ok(())
    }

    /// Every endpoint to push to: the --remote-write-url and --otlp-url ones
    /// with the --remote-write-* settings, then those of --remote-write-config.
    pub fn endpoints(&self) -> Result<Vec<EndpointConfig>, String> {
        let template = |PushUrl(url)| EndpointConfig {
            url,
            username: self.remote_write_username.clone(),
            password_file: self.remote_write_password_file.clone(),
            bearer_token_file: self.remote_write_bearer_token_file.clone(),
            headers: self.remote_write_headers.clone(),
            tls: TlsConfig {
                ca_file: self.remote_write_ca_file.clone(),
                cert_file: self.remote_write_cert_file.clone(),
                key_file: self.remote_write_key_file.clone(),
                insecure_skip_verify: self.remote_write_insecure_skip_verify,
            },
            protocol: self.remote_write_protocol,
            timeout: self.remote_write_timeout,
            max_series_per_request: self.max_series_per_request as usize,
            retry: RetryPolicy {
                min_backoff: self.retry_min_backoff,
                max_backoff: self.retry_max_backoff,
                retry_for: self.remote_write_retry_for,
                retry_on_rate_limit: self.retry_on_rate_limit,
                max_pause: self.retry_max_pause,
            },
            resource_labels: CommonLabels::new(&self.job, &self.external_labels)
                .names()
                .map(str::to_owned)
                .collect(),
        };
        let mut endpoints: Vec<EndpointConfig> = self
            .remote_write_urls
            .iter()
            .cloned()
            .map(template)
            .collect();
        endpoints.extend(self.otlp_urls.iter().cloned().map(|url| EndpointConfig {
            protocol: Protocol::Otlp,
            ..template(url)
        }));
        for endpoint in &endpoints {
            endpoint.validate()?;
        }
        if let Some(path) = &self.remote_write_config {
            let defaults = template(PushUrl("http://localhost/".parse().expect("a valid URL")));
            endpoints.extend(EndpointConfig::from_file(path, &defaults)?);
        }
        Ok(endpoints)
    }

    /// What one image may add to a snapshot.
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_labels: self.max_labels_per_image as usize,
            max_annotations: self.max_annotations_per_image as usize,
            max_value_length: self.max_label_value_length as usize,
        }
    }

    /// The schedule in effect: --schedule if given, else --interval.
    pub fn effective_schedule(&self) -> Schedule {
        self.schedule
            .clone()
            .unwrap_or(Schedule::Interval(self.interval))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 30s, 5m or 1h: {e}"))?;
    if d.is_zero() {
        return Err("a duration of zero is not allowed".into());
    }
    Ok(d)
}

/// A remote-write duration: bounded, so that no wait or deadline built
/// from it can overflow (`500000000000y` parses, and used to panic).
fn parse_push_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > LONGEST_WAIT {
        return Err(format!(
            "{s:?} is longer than the {} allowed",
            humantime::format_duration(LONGEST_WAIT)
        ));
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "{s:?} is not a positive number of requests per second"
        )),
    }
}

/// Parses NAME=VALUE; the names are checked together, by `validate`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    if value.is_empty() {
        return Err(format!(
            "label {name} has an empty value, which remote write would drop"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["container-image-pusher"];
        argv.extend_from_slice(args);
        let config = Config::try_parse_from(argv).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn clap_definition_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.cache_duration, Duration::from_secs(3600));
        assert_eq!(c.max_series_per_request, 2000);
        assert_eq!(c.job, "container-image-pusher");
        assert_eq!(c.platform.to_string(), "linux/amd64");
    }

    #[test]
    fn once_needs_a_destination() {
        let err = parse(&["--once"]).unwrap_err();
        assert!(err.contains("--remote-write-url"), "{err}");
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
        let c = parse(&[
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
        ])
        .unwrap();
        let endpoints = c.endpoints().unwrap();
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[0].protocol, Protocol::V2);
        assert_eq!(endpoints[1].protocol, Protocol::Otlp);
        assert_eq!(
            endpoints[1].url.as_str(),
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(endpoints[1].headers, endpoints[0].headers);
        assert_eq!(endpoints[1].resource_labels, ["job", "cluster"]);
        let err = parse(&["--remote-write-protocol", "otlp"]).unwrap_err();
        assert!(err.contains("invalid value"), "OTLP is per endpoint: {err}");
    }

    #[test]
    fn interval_and_schedule_exclude_each_other() {
        assert!(parse(&["--interval", "5m", "--schedule", "*/5 * * * *"]).is_err());
    }

    #[test]
    fn external_labels_are_validated() {
        let c = parse(&[
            "--external-label",
            "cluster=prod",
            "--external-label",
            "region=eu",
        ])
        .unwrap();
        assert_eq!(c.external_labels[0], ("cluster".into(), "prod".into()));
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
        let c = parse(&[]).unwrap();
        assert_eq!(c.image_limits(), ImageLimits::default());
        let c = parse(&[
            "--max-labels-per-image",
            "0",
            "--max-annotations-per-image",
            "5",
            "--max-label-value-length",
            "64",
        ])
        .unwrap();
        assert_eq!(
            c.image_limits(),
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
            parse(&["--cache-duration", "6h"]).unwrap().cache_duration,
            Duration::from_secs(6 * 3600)
        );
        assert!(parse(&["--interval", "0s"]).is_err());
        assert!(parse(&["--interval", "soon"]).is_err());
    }

    #[test]
    fn remote_write_durations_are_bounded() {
        assert_eq!(
            parse(&[]).unwrap().retry_max_pause,
            Duration::from_secs(300)
        );
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
    fn malformed_remote_write_flags_do_not_echo_secrets() {
        for args in [
            ["--remote-write-url", "http://u:PASSWORD@[::1"],
            ["--remote-write-header", "X-Api-Key PASSWORD"],
        ] {
            let err = parse(&args).unwrap_err();
            assert!(err.contains(args[0]), "{err}");
            assert!(!err.contains("PASSWORD"), "{err}");
        }
        let c = parse(&[
            "--remote-write-url",
            "https://u:PASSWORD@mimir.example.com/push",
            "--remote-write-header",
            "X-Api-Key: PASSWORD",
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            debug.contains("mimir.example.com") && !debug.contains("PASSWORD"),
            "{debug}"
        );
    }
}
