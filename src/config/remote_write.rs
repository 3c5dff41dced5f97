//! The "Remote write" flags: where the series are pushed.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::remote_write::{
    parse_header, parse_url, parse_wait, Header, Protocol, PushUrl, SecretValueParser,
};

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
