//! The "Versions" flags: whether newer releases of running tags are looked up.

use std::time::Duration;

use clap::Args;

use crate::glob::Glob;

use super::values::parse_duration;

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
