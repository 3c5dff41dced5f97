//! Credentials for cloud registries from the pod's ambient identity, as the
//! kubelet's credential providers get them, so that images in AWS ECR,
//! Google Artifact Registry / GCR and Azure ACR resolve without pull secrets.
//!
//! Each provider is a Cargo feature (`ecr`, `gcr`, `acr`, all default):
//! - [`ecr`]: `GetAuthorizationToken`, signed with SigV4 from the AWS
//!   credentials in the environment (access keys, IRSA web identity or EKS
//!   Pod Identity).
//! - [`gcr`]: an access token from the GCE/GKE metadata server.
//! - [`acr`]: an Entra ID (AAD) token from workload identity or the
//!   instance metadata service, exchanged at the registry for a refresh token.
//!
//! Tokens are cached until shortly before they expire, failures for
//! [`Settings::error_ttl`] (so that a cluster outside a cloud does not ask
//! the metadata server again for every image), and concurrent logins for the
//! same token make one request. Tokens, secrets and assertions never appear
//! in logs or errors: an error body that echoes one has it replaced by
//! `<redacted>`.

// Shared helpers some providers do not use when built alone.
#![cfg_attr(
    not(all(feature = "ecr", feature = "gcr", feature = "acr")),
    allow(dead_code, unused_imports)
)]

#[cfg(feature = "acr")]
pub mod acr;
#[cfg(feature = "ecr")]
pub mod ecr;
mod error;
#[cfg(feature = "gcr")]
pub mod gcr;
mod host;
mod http;
mod settings;
mod token_cache;

use tracing::{debug, trace, Instrument};

use super::Login;
pub(crate) use error::Failure;
pub use error::{BuildError, CloudError};
pub(crate) use host::{is_dns_label, one_label_before, RegistryHost};
pub(crate) use http::{
    display_url, form_encode, hex, json_seconds, jwt_claims, parse_url, percent_encode, send,
    Context,
};
pub use settings::{Clock, Settings};
pub(crate) use token_cache::TokenCache;

/// Username/password a provider's token comes down to, as `docker login`
/// would use them; shared by the registries a token is good for, each
/// login naming its own (see [`CloudCredentials::login`]).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TokenLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for TokenLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLogin")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Which cloud a registry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// AWS Elastic Container Registry.
    Ecr,
    /// Google Artifact Registry and Container Registry.
    Google,
    /// Azure Container Registry.
    Acr,
}

impl Provider {
    /// Short name, for logs and metric labels: `ecr`, `gcr` or `acr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Ecr => "ecr",
            Provider::Google => "gcr",
            Provider::Acr => "acr",
        }
    }

    /// What the provider fetches, for error messages.
    pub(super) fn token_name(self) -> &'static str {
        match self {
            Provider::Ecr => "an ECR token",
            Provider::Google => "a Google access token",
            Provider::Acr => "an ACR refresh token",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

enum Backend {
    #[cfg(feature = "ecr")]
    Ecr(ecr::Ecr),
    #[cfg(feature = "gcr")]
    Google(gcr::Google),
    #[cfg(feature = "acr")]
    Acr(acr::Acr),
}

/// Fetches and caches cloud registry tokens; refreshes them before they expire.
pub struct CloudCredentials {
    context: Context,
    backends: Vec<Backend>,
}

impl std::fmt::Debug for CloudCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudCredentials")
            .field("providers", &self.providers())
            .finish()
    }
}

impl CloudCredentials {
    /// Providers and endpoints as given ([`Settings::from_env`] for the
    /// service's). Builds the HTTP clients, the only thing that can fail.
    pub fn with_settings(settings: Settings) -> Result<CloudCredentials, BuildError> {
        let context = Context::new(&settings)?;
        #[allow(unused_mut)]
        let mut backends = Vec::new();
        #[cfg(feature = "ecr")]
        if let Some(ecr) = settings.ecr {
            debug!(
                credentials = ecr.credentials.kind(),
                "ECR credentials enabled"
            );
            backends.push(Backend::Ecr(ecr::Ecr::new(ecr)));
        }
        #[cfg(feature = "gcr")]
        if let Some(gcr) = settings.gcr {
            debug!(metadata_host = %gcr.metadata_host, "Google credentials enabled");
            backends.push(Backend::Google(gcr::Google::new(gcr)));
        }
        #[cfg(feature = "acr")]
        if let Some(acr) = settings.acr {
            debug!(identity = acr.identity.kind(), "ACR credentials enabled");
            backends.push(Backend::Acr(acr::Acr::new(acr)));
        }
        Ok(CloudCredentials { context, backends })
    }

    /// The enabled providers.
    pub fn providers(&self) -> Vec<Provider> {
        self.backends.iter().map(Backend::provider).collect()
    }

    /// The enabled provider that serves `registry_host`, if any.
    pub fn provider_for(&self, registry_host: &str) -> Option<Provider> {
        let host = RegistryHost::parse(registry_host);
        self.backend_for(&host).map(Backend::provider)
    }

    fn backend_for(&self, host: &RegistryHost) -> Option<&Backend> {
        self.backends.iter().find(|b| b.matches(host))
    }

    /// `None` when `registry_host` (`host[:port]`) is not a registry of an
    /// enabled provider. `Some(Err)` when it is but no token could be had
    /// (public images in these registries may still be readable
    /// anonymously, so callers should then try without credentials). The
    /// login's source is the pod's cloud identity for that host.
    pub async fn login(&self, registry_host: &str) -> Option<Result<Login, CloudError>> {
        let host = RegistryHost::parse(registry_host);
        let backend = self.backend_for(&host)?;
        let provider = backend.provider();
        // Token fetches and refreshes log at debug inside this span, so
        // they name the provider and the registry they were made for.
        let span =
            tracing::debug_span!("cloud_login", provider = provider.as_str(), host = %host.given);
        let login = async {
            trace!("cloud registry login");
            match *backend {
                #[cfg(feature = "ecr")]
                Backend::Ecr(ref ecr) => ecr.login(&self.context, &host).await,
                #[cfg(feature = "gcr")]
                Backend::Google(ref google) => google.login(&self.context).await,
                #[cfg(feature = "acr")]
                Backend::Acr(ref acr) => acr.login(&self.context, &host).await,
            }
        };
        let result: Result<TokenLogin, Failure> = login.instrument(span).await;
        Some(
            result
                .map(|token| Login {
                    username: token.username,
                    password: token.password,
                    source: format!("the pod's cloud identity for {}", host.given),
                })
                .map_err(|failure| failure.into_error(provider, &host.given)),
        )
    }
}

impl Backend {
    fn provider(&self) -> Provider {
        match *self {
            #[cfg(feature = "ecr")]
            Backend::Ecr(_) => Provider::Ecr,
            #[cfg(feature = "gcr")]
            Backend::Google(_) => Provider::Google,
            #[cfg(feature = "acr")]
            Backend::Acr(_) => Provider::Acr,
        }
    }

    // Built with no provider, there is no variant to match the host against.
    #[cfg_attr(
        not(any(feature = "ecr", feature = "gcr", feature = "acr")),
        allow(unused_variables)
    )]
    fn matches(&self, host: &RegistryHost) -> bool {
        match *self {
            #[cfg(feature = "ecr")]
            Backend::Ecr(_) => ecr::EcrRegistry::parse(&host.name).is_some(),
            #[cfg(feature = "gcr")]
            Backend::Google(_) => gcr::is_google_registry(&host.name),
            #[cfg(feature = "acr")]
            Backend::Acr(_) => acr::is_acr_registry(&host.name),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
