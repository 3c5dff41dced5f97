//! The "Registry credentials" flags: which logins images are resolved with.

use std::path::PathBuf;

use clap::Args;

#[cfg(feature = "acr")]
use crate::credentials::cloud::acr::ExchangeScheme;
use crate::credentials::{self, cloud};

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
