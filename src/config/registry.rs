//! The "Registry" flags: how images are resolved against their registries.

use std::time::Duration;

use clap::Args;

use crate::registry::Platform;

use super::values::{parse_duration, parse_rate};

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

    /// Directory of an on-disk cache of image metadata by digest (e.g. an
    /// `emptyDir`), so that a restarted container starts warm: written
    /// atomically after snapshots (at most every 5 min) and on shutdown; a
    /// corrupted or foreign file is refused with a warning (a cold start).
    /// Off when not set.
    #[arg(long, value_name = "DIR", env = "PUSHER_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,

    /// Largest --cache-dir file written or read, in bytes: the least
    /// recently used images are left out to fit; a larger file is not read.
    #[arg(long, value_name = "BYTES", env = "PUSHER_CACHE_DIR_MAX_BYTES", default_value_t = crate::registry::disk_cache::DEFAULT_MAX_BYTES, value_parser = clap::value_parser!(u64).range(4096..))]
    pub cache_dir_max_bytes: u64,

    /// Most images resolved against registries at the same time.
    #[arg(long, value_name = "N", env = "PUSHER_RESOLVE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub resolve_concurrency: u32,
}
