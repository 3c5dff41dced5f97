//! The "Supply chain" flags: signatures, SBOMs, attestations and base images.

use std::time::Duration;

use clap::Args;

use super::values::parse_duration;

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
