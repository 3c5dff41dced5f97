//! What can go wrong getting a cloud registry token, with and without the
//! provider and registry it was for.

use super::Provider;

/// The providers' HTTP clients cannot be built (TLS set-up): a start-up
/// error.
#[derive(Debug, thiserror::Error)]
#[error("failed to build the HTTP client for cloud registry logins: {0}")]
pub struct BuildError(#[source] pub(super) reqwest::Error);

/// Why a cloud registry token could not be had. Names the provider, the
/// registry and what failed; never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The ambient credentials are missing or unreadable (no request was made).
    #[error("failed to get {} for {host}: {message}", provider.token_name())]
    Credentials {
        provider: Provider,
        host: String,
        message: String,
    },
    /// A token endpoint answered with an error status.
    #[error(
        "failed to get {} for {host}: HTTP {status} from {endpoint}: {body}",
        provider.token_name()
    )]
    Status {
        provider: Provider,
        host: String,
        endpoint: String,
        status: u16,
        /// At most 300 characters of the answer, on one line, secrets redacted.
        body: String,
    },
    /// A token endpoint could not be reached, or did not answer in time.
    #[error("failed to get {} for {host}: request to {endpoint} failed: {message}", provider.token_name())]
    Transport {
        provider: Provider,
        host: String,
        endpoint: String,
        message: String,
    },
    /// A token endpoint answered 2xx with something we cannot use.
    #[error("failed to get {} for {host}: unexpected answer from {endpoint}: {message}", provider.token_name())]
    Response {
        provider: Provider,
        host: String,
        endpoint: String,
        message: String,
    },
}

impl CloudError {
    pub fn provider(&self) -> Provider {
        match self {
            CloudError::Credentials { provider, .. }
            | CloudError::Status { provider, .. }
            | CloudError::Transport { provider, .. }
            | CloudError::Response { provider, .. } => *provider,
        }
    }

    /// The HTTP status a token endpoint answered with, if that was the failure.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A failure without the provider and registry it happened for: tokens
/// shared by several registries (AWS credentials, Google and AAD access
/// tokens) cache their failure once, and each login names its own host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Credentials(String),
    Status {
        endpoint: String,
        status: u16,
        body: String,
    },
    Transport {
        endpoint: String,
        message: String,
    },
    Response {
        endpoint: String,
        message: String,
    },
}

impl Failure {
    pub(super) fn into_error(self, provider: Provider, host: &str) -> CloudError {
        let host = host.to_owned();
        match self {
            Failure::Credentials(message) => CloudError::Credentials {
                provider,
                host,
                message,
            },
            Failure::Status {
                endpoint,
                status,
                body,
            } => CloudError::Status {
                provider,
                host,
                endpoint,
                status,
                body,
            },
            Failure::Transport { endpoint, message } => CloudError::Transport {
                provider,
                host,
                endpoint,
                message,
            },
            Failure::Response { endpoint, message } => CloudError::Response {
                provider,
                host,
                endpoint,
                message,
            },
        }
    }

    pub(crate) fn response(endpoint: &str, message: impl Into<String>) -> Failure {
        Failure::Response {
            endpoint: endpoint.to_owned(),
            message: message.into(),
        }
    }
}
