//! Google Artifact Registry (`<location>-docker.pkg.dev`) and Container
//! Registry (`gcr.io`, `<region>.gcr.io`): the access token of the default
//! service account from the metadata server (GKE workload identity or the
//! node's service account), used as the password of `oauth2accesstoken`.
//!
//! The metadata server is `metadata.google.internal`, or `GCE_METADATA_HOST`
//! (`host[:port]`, the variable Google's client libraries honour). It is
//! asked directly (never through a proxy) with a short connect timeout; off
//! Google Cloud the failure is cached for the error TTL.

use std::time::{Duration, SystemTime};

use super::{display_url, parse_url, send, Context, Failure, TokenCache, TokenLogin};

/// Username that goes with a Google access token.
pub const USERNAME: &str = "oauth2accesstoken";

/// Whether a host name (lowercase, without port) is a Google registry.
pub fn is_google_registry(name: &str) -> bool {
    name == "gcr.io"
        || super::one_label_before(name, ".gcr.io")
        || super::one_label_before(name, "-docker.pkg.dev")
}

/// Where the metadata server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcrSettings {
    /// `host[:port]` of the metadata server, or a base URL (`http://…`).
    pub metadata_host: String,
}

impl Default for GcrSettings {
    fn default() -> GcrSettings {
        GcrSettings {
            metadata_host: "metadata.google.internal".to_owned(),
        }
    }
}

impl GcrSettings {
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> GcrSettings {
        match var("GCE_METADATA_HOST") {
            Some(host) => GcrSettings {
                metadata_host: host.trim().to_owned(),
            },
            None => GcrSettings::default(),
        }
    }

    fn token_url(&self) -> String {
        let base = if self.metadata_host.contains("://") {
            self.metadata_host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", self.metadata_host.trim_end_matches('/'))
        };
        format!("{base}/computeMetadata/v1/instance/service-accounts/default/token")
    }
}

pub(crate) struct Google {
    settings: GcrSettings,
    tokens: TokenCache<TokenLogin>,
}

impl Google {
    pub(crate) fn new(settings: GcrSettings) -> Google {
        Google {
            settings,
            tokens: TokenCache::new("Google access token"),
        }
    }

    /// One token serves every Google registry.
    pub(crate) async fn login(&self, context: &Context) -> Result<TokenLogin, Failure> {
        self.tokens
            .get("default", context, || self.fetch(context))
            .await
    }

    async fn fetch(&self, context: &Context) -> Result<(TokenLogin, SystemTime), Failure> {
        let url = parse_url(
            &self.settings.token_url(),
            "metadata server (GCE_METADATA_HOST)",
        )?;
        let endpoint = display_url(&url);
        let request = context.direct.get(url).header("Metadata-Flavor", "Google");
        let answer = send(request, &endpoint, &[]).await?;
        let json: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| Failure::response(&endpoint, format!("not JSON: {e}")))?;
        let token = json
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::response(&endpoint, "no access_token in the answer"))?;
        let lifetime = super::json_seconds(json.get("expires_in")).unwrap_or(0);
        Ok((
            TokenLogin {
                username: USERNAME.to_owned(),
                password: token.to_owned(),
            },
            context.now() + Duration::from_secs(lifetime),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_hosts() {
        for host in [
            "gcr.io",
            "eu.gcr.io",
            "us.gcr.io",
            "asia.gcr.io",
            "marketplace.gcr.io",
            "europe-docker.pkg.dev",
            "us-central1-docker.pkg.dev",
        ] {
            assert!(is_google_registry(host), "{host}");
        }
        for host in [
            "docker.io",
            "ghcr.io",
            "notgcr.io",
            "gcr.io.evil.com",
            "evil.com/gcr.io",
            "a.b.gcr.io",
            ".gcr.io",
            "-docker.pkg.dev",
            "docker.pkg.dev",
            "pkg.dev",
            "europe-docker.pkg.dev.evil.com",
            "evil.europe-docker.pkg.dev",
            "europe-maven.pkg.dev",
        ] {
            assert!(!is_google_registry(host), "{host}");
        }
    }

    #[test]
    fn metadata_host_from_the_environment() {
        let settings = GcrSettings::from_lookup(&|name| {
            (name == "GCE_METADATA_HOST").then(|| "127.0.0.1:8080".to_owned())
        });
        assert_eq!(
            settings.token_url(),
            "http://127.0.0.1:8080/computeMetadata/v1/instance/service-accounts/default/token"
        );
        assert_eq!(
            GcrSettings::from_lookup(&|_| None).token_url(),
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
        );
    }
}
