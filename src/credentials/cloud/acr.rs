//! Azure Container Registry (`<name>.azurecr.io`, `.azurecr.cn`,
//! `.azurecr.us`): an Entra ID (AAD) access token, exchanged at the registry
//! (`POST /oauth2/exchange`) for a refresh token that is the password of the
//! user `00000000-0000-0000-0000-000000000000`.
//!
//! The AAD token comes from, first found wins:
//! 1. workload identity: `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`,
//!    `AZURE_TENANT_ID` and `AZURE_AUTHORITY_HOST` (default
//!    `https://login.microsoftonline.com/`), the variables the AKS workload
//!    identity webhook sets; the token file is re-read each time;
//! 2. managed identity from the instance metadata service (IMDS) at
//!    `http://169.254.169.254`, for the identity `AZURE_CLIENT_ID` if set.
//!    `AZURE_IMDS_ENDPOINT` (ours, not an Azure SDK variable) replaces the
//!    IMDS base URL.
//!
//! `--acr-exchange-scheme http` (for tests against a local stand-in) makes
//! the exchange use plain HTTP instead of HTTPS.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{
    display_url, form_encode, parse_url, send, Context, Failure, RegistryHost, TokenCache,
    TokenLogin,
};

/// Username that goes with an ACR refresh token.
pub const USERNAME: &str = "00000000-0000-0000-0000-000000000000";
const SCOPE: &str = "https://containerregistry.azure.net/.default";
const IMDS_RESOURCE: &str = "https://management.azure.com/";
/// Refresh tokens without a readable `exp` are trusted this long.
const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Whether a host name (lowercase, without port) is an ACR registry.
pub fn is_acr_registry(name: &str) -> bool {
    [".azurecr.io", ".azurecr.cn", ".azurecr.us"]
        .iter()
        .any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|prefix| prefix.split('.').all(super::is_dns_label))
        })
}

/// How the AAD token is had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureIdentity {
    WorkloadIdentity {
        client_id: String,
        tenant_id: String,
        /// The federated (service-account) token, sent as the client assertion.
        token_file: PathBuf,
        /// With a trailing slash, e.g. `https://login.microsoftonline.com/`.
        authority_host: String,
    },
    ManagedIdentity {
        /// IMDS base URL, e.g. `http://169.254.169.254`.
        endpoint: String,
        /// A user-assigned identity; the system-assigned one when `None`.
        client_id: Option<String>,
    },
}

impl AzureIdentity {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            AzureIdentity::WorkloadIdentity { .. } => "workload identity",
            AzureIdentity::ManagedIdentity { .. } => "managed identity",
        }
    }
}

/// How the registry's token exchange is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ExchangeScheme {
    #[default]
    Https,
    /// Plain HTTP: only for a local stand-in of the registry, in tests.
    Http,
}

impl ExchangeScheme {
    fn as_str(self) -> &'static str {
        match self {
            ExchangeScheme::Https => "https",
            ExchangeScheme::Http => "http",
        }
    }
}

/// How the ACR provider gets its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcrSettings {
    pub identity: AzureIdentity,
    /// HTTPS but in tests (`--acr-exchange-scheme`).
    pub exchange_scheme: ExchangeScheme,
}

impl AcrSettings {
    /// The identity from the variables the Azure SDKs and the AKS webhook
    /// use; the exchange over HTTPS.
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> AcrSettings {
        let identity = match (
            var("AZURE_FEDERATED_TOKEN_FILE"),
            var("AZURE_CLIENT_ID"),
            var("AZURE_TENANT_ID"),
        ) {
            (Some(token_file), Some(client_id), Some(tenant_id)) => {
                let mut authority_host = var("AZURE_AUTHORITY_HOST")
                    .unwrap_or_else(|| "https://login.microsoftonline.com/".to_owned());
                if !authority_host.ends_with('/') {
                    authority_host.push('/');
                }
                AzureIdentity::WorkloadIdentity {
                    client_id,
                    tenant_id,
                    token_file: token_file.into(),
                    authority_host,
                }
            }
            (_, client_id, _) => AzureIdentity::ManagedIdentity {
                endpoint: var("AZURE_IMDS_ENDPOINT")
                    .unwrap_or_else(|| "http://169.254.169.254".to_owned()),
                client_id,
            },
        };
        AcrSettings {
            identity,
            exchange_scheme: ExchangeScheme::Https,
        }
    }
}

/// An AAD access token and the tenant it was issued in.
#[derive(Clone)]
struct AadToken {
    access_token: String,
    tenant: Option<String>,
}

pub(crate) struct Acr {
    settings: AcrSettings,
    aad: TokenCache<AadToken>,
    refresh_tokens: TokenCache<TokenLogin>,
}

impl Acr {
    pub(crate) fn new(settings: AcrSettings) -> Acr {
        Acr {
            settings,
            aad: TokenCache::new("AAD access token"),
            refresh_tokens: TokenCache::new("ACR refresh token"),
        }
    }

    pub(crate) async fn login(
        &self,
        context: &Context,
        host: &RegistryHost,
    ) -> Result<TokenLogin, Failure> {
        self.refresh_tokens
            .get(&host.authority, context, || self.exchange(context, host))
            .await
    }

    async fn exchange(
        &self,
        context: &Context,
        host: &RegistryHost,
    ) -> Result<(TokenLogin, SystemTime), Failure> {
        let aad = self
            .aad
            .get("aad", context, || self.aad_token(context))
            .await?;
        let url = parse_url(
            &format!(
                "{}://{}/oauth2/exchange",
                self.settings.exchange_scheme.as_str(),
                host.authority
            ),
            "registry exchange URL",
        )?;
        let endpoint = display_url(&url);
        let mut form = vec![
            ("grant_type", "access_token"),
            ("service", host.name.as_str()),
        ];
        if let Some(tenant) = &aad.tenant {
            form.push(("tenant", tenant));
        }
        form.push(("access_token", &aad.access_token));
        let request = context
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_encode(&form));
        let answer = send(request, &endpoint, &[&aad.access_token]).await?;
        let json: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| Failure::response(&endpoint, format!("not JSON: {e}")))?;
        let refresh_token = json
            .get("refresh_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::response(&endpoint, "no refresh_token in the answer"))?;
        let expires_at = super::jwt_claims(refresh_token)
            .and_then(|claims| super::json_seconds(claims.get("exp")))
            .map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
            .unwrap_or(context.now() + DEFAULT_REFRESH_TOKEN_LIFETIME);
        Ok((
            TokenLogin {
                username: USERNAME.to_owned(),
                password: refresh_token.to_owned(),
            },
            expires_at,
        ))
    }

    async fn aad_token(&self, context: &Context) -> Result<(AadToken, SystemTime), Failure> {
        match &self.settings.identity {
            AzureIdentity::WorkloadIdentity {
                client_id,
                tenant_id,
                token_file,
                authority_host,
            } => {
                let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    Failure::Credentials(format!(
                        "cannot read the federated token file {} (AZURE_FEDERATED_TOKEN_FILE): {e}",
                        token_file.display()
                    ))
                })?;
                let assertion = assertion.trim();
                let url = parse_url(
                    &format!("{authority_host}{tenant_id}/oauth2/v2.0/token"),
                    "token URL (AZURE_AUTHORITY_HOST, AZURE_TENANT_ID)",
                )?;
                let endpoint = display_url(&url);
                let body = form_encode(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", SCOPE),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion),
                ]);
                let request = context
                    .http
                    .post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body);
                let answer = send(request, &endpoint, &[assertion]).await?;
                aad_answer(&answer, &endpoint, context.now(), Some(tenant_id))
            }
            AzureIdentity::ManagedIdentity {
                endpoint,
                client_id,
            } => {
                let mut url = parse_url(
                    &format!(
                        "{}/metadata/identity/oauth2/token",
                        endpoint.trim_end_matches('/')
                    ),
                    "IMDS endpoint (AZURE_IMDS_ENDPOINT)",
                )?;
                {
                    let mut query = url.query_pairs_mut();
                    query.append_pair("api-version", "2018-02-01");
                    query.append_pair("resource", IMDS_RESOURCE);
                    if let Some(client_id) = client_id {
                        query.append_pair("client_id", client_id);
                    }
                }
                let endpoint = display_url(&url);
                let request = context.direct.get(url).header("Metadata", "true");
                let answer = send(request, &endpoint, &[]).await?;
                aad_answer(&answer, &endpoint, context.now(), None)
            }
        }
    }
}

/// An AAD or IMDS token answer; the tenant is the configured one, else the
/// token's `tid` claim.
fn aad_answer(
    answer: &[u8],
    endpoint: &str,
    now: SystemTime,
    tenant: Option<&str>,
) -> Result<(AadToken, SystemTime), Failure> {
    let json: serde_json::Value = serde_json::from_slice(answer)
        .map_err(|e| Failure::response(endpoint, format!("not JSON: {e}")))?;
    let access_token = json
        .get("access_token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failure::response(endpoint, "no access_token in the answer"))?;
    let claims = super::jwt_claims(access_token);
    let tenant = tenant.map(str::to_owned).or_else(|| {
        claims
            .as_ref()
            .and_then(|c| c.get("tid"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
    });
    let expires_at = match super::json_seconds(json.get("expires_in")) {
        Some(seconds) => now + Duration::from_secs(seconds),
        None => claims
            .as_ref()
            .and_then(|c| super::json_seconds(c.get("exp")))
            .map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
            .unwrap_or(now),
    };
    Ok((
        AadToken {
            access_token: access_token.to_owned(),
            tenant,
        },
        expires_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_hosts() {
        for host in [
            "myreg.azurecr.io",
            "my-reg2.azurecr.io",
            "myreg.azurecr.cn",
            "myreg.azurecr.us",
        ] {
            assert!(is_acr_registry(host), "{host}");
        }
        for host in [
            "azurecr.io",
            ".azurecr.io",
            "myreg.azurecr.io.evil.com",
            "myreg.azurecr.com",
            "myregazurecr.io",
            "mcr.microsoft.com",
            "-x.azurecr.io",
            "a..azurecr.io",
        ] {
            assert!(!is_acr_registry(host), "{host}");
        }
    }

    #[test]
    fn settings_from_the_environment() {
        let env = super::super::tests::env;
        let workload = AcrSettings::from_lookup(&env(&[
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_CLIENT_ID", "client"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
        ]));
        assert_eq!(
            workload.identity,
            AzureIdentity::WorkloadIdentity {
                client_id: "client".into(),
                tenant_id: "tenant".into(),
                token_file: "/var/run/secrets/azure/tokens/azure-identity-token".into(),
                authority_host: "https://login.microsoftonline.us/".into(),
            }
        );
        assert_eq!(workload.exchange_scheme, ExchangeScheme::Https);

        let managed = AcrSettings::from_lookup(&env(&[("AZURE_CLIENT_ID", "client")]));
        assert_eq!(
            managed.identity,
            AzureIdentity::ManagedIdentity {
                endpoint: "http://169.254.169.254".into(),
                client_id: Some("client".into()),
            }
        );
        assert_eq!(managed.exchange_scheme, ExchangeScheme::Https);
    }

    #[test]
    fn imds_answers_give_seconds_as_strings_and_the_tenant_in_the_token() {
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"tid":"t1"}"#);
        let answer = format!(r#"{{"access_token":"h.{claims}.s","expires_in":"86399"}}"#);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let (token, expires) = aad_answer(answer.as_bytes(), "e", now, None).unwrap();
        assert_eq!(token.tenant.as_deref(), Some("t1"));
        assert_eq!(expires, now + Duration::from_secs(86399));
        let (token, _) = aad_answer(answer.as_bytes(), "e", now, Some("t2")).unwrap();
        assert_eq!(token.tenant.as_deref(), Some("t2"));
        assert!(aad_answer(b"{}", "e", now, None).is_err());
    }
}
