//! AWS ECR: `GetAuthorizationToken` for the registry's account, signed with
//! Signature Version 4 from the ambient AWS credentials.
//!
//! Credentials, first found wins (as the AWS SDKs look for them):
//! 1. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`;
//! 2. web identity (IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`,
//!    optional `AWS_ROLE_SESSION_NAME`, exchanged with STS
//!    `AssumeRoleWithWebIdentity` (the token file is re-read each time);
//! 3. EKS Pod Identity / container credentials: `AWS_CONTAINER_CREDENTIALS_FULL_URI`
//!    with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` or
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
//!
//! Endpoints: `https://api.ecr.<region>.amazonaws.com[.cn]/` (or
//! `ecr-fips.<region>…` for FIPS registries) and `https://sts.<region>…/`
//! with the region of `AWS_REGION`/`AWS_DEFAULT_REGION`, else the registry's.
//! `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_STS` and `AWS_ENDPOINT_URL`
//! override them, unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`.

mod aws_credentials;
mod sigv4;

use std::time::{Duration, SystemTime};

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue};

use super::{display_url, parse_url, send, Context, Failure, RegistryHost, TokenCache, TokenLogin};
use aws_credentials::{assume_role_with_web_identity, container_credentials, secrets_of};
pub use aws_credentials::{AwsCredentialSource, AwsCredentials, ContainerToken};
use sigv4::{amz_date, host_header};
pub use sigv4::{authorization_header, signing_key, SignedRequest};

/// How the ECR provider gets credentials and which endpoints it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrSettings {
    pub credentials: AwsCredentialSource,
    /// Region for STS; the registry's region when unset.
    pub region: Option<String>,
    /// Replaces `https://api.ecr.<region>.amazonaws.com/`.
    pub ecr_endpoint: Option<String>,
    /// Replaces `https://sts.<region>.amazonaws.com/`.
    pub sts_endpoint: Option<String>,
}

impl EcrSettings {
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> EcrSettings {
        let credentials = match (
            var("AWS_ACCESS_KEY_ID"),
            var("AWS_SECRET_ACCESS_KEY"),
            var("AWS_WEB_IDENTITY_TOKEN_FILE"),
            var("AWS_ROLE_ARN"),
            var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        ) {
            (Some(access_key_id), Some(secret_access_key), _, _, _) => {
                AwsCredentialSource::Static(AwsCredentials {
                    access_key_id,
                    secret_access_key,
                    session_token: var("AWS_SESSION_TOKEN"),
                })
            }
            (_, _, Some(token_file), Some(role_arn), _) => AwsCredentialSource::WebIdentity {
                token_file: token_file.into(),
                role_arn,
                session_name: var("AWS_ROLE_SESSION_NAME")
                    .unwrap_or_else(|| "container-image-pusher".to_owned()),
            },
            (_, _, _, _, Some(uri)) => AwsCredentialSource::Container {
                uri,
                token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                    .map(|f| ContainerToken::File(f.into()))
                    .or_else(|| {
                        var("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(ContainerToken::Value)
                    }),
            },
            _ => AwsCredentialSource::None,
        };
        let ignore_endpoints = var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let endpoint = |name: &str| {
            if ignore_endpoints {
                None
            } else {
                var(name).or_else(|| var("AWS_ENDPOINT_URL"))
            }
        };
        EcrSettings {
            credentials,
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            ecr_endpoint: endpoint("AWS_ENDPOINT_URL_ECR"),
            sts_endpoint: endpoint("AWS_ENDPOINT_URL_STS"),
        }
    }
}

/// An ECR registry host: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrRegistry {
    pub account: String,
    pub region: String,
    pub fips: bool,
    /// `amazonaws.com` or `amazonaws.com.cn`.
    pub domain: String,
}

impl EcrRegistry {
    /// The registry a host name (lowercase, without port) is, if an ECR one.
    pub fn parse(name: &str) -> Option<EcrRegistry> {
        let mut labels = name.splitn(5, '.');
        let account = labels.next()?;
        let dkr = labels.next()?;
        let ecr = labels.next()?;
        let region = labels.next()?;
        let domain = labels.next()?;
        let valid = account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && dkr == "dkr"
            && (ecr == "ecr" || ecr == "ecr-fips")
            && super::is_dns_label(region)
            && region.contains('-')
            && (domain == "amazonaws.com" || domain == "amazonaws.com.cn");
        valid.then(|| EcrRegistry {
            account: account.to_owned(),
            region: region.to_owned(),
            fips: ecr == "ecr-fips",
            domain: domain.to_owned(),
        })
    }

    /// The ECR API endpoint of the registry's region.
    pub fn api_endpoint(&self) -> String {
        if self.fips {
            format!("https://ecr-fips.{}.{}/", self.region, self.domain)
        } else {
            format!("https://api.ecr.{}.{}/", self.region, self.domain)
        }
    }
}

pub(crate) struct Ecr {
    settings: EcrSettings,
    credentials: TokenCache<AwsCredentials>,
    tokens: TokenCache<TokenLogin>,
}

/// ECR tokens live 12 hours; used when the answer has no `expiresAt`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

impl Ecr {
    pub(crate) fn new(settings: EcrSettings) -> Ecr {
        Ecr {
            settings,
            credentials: TokenCache::new("AWS credentials"),
            tokens: TokenCache::new("ECR token"),
        }
    }

    pub(crate) async fn login(
        &self,
        context: &Context,
        host: &RegistryHost,
    ) -> Result<TokenLogin, Failure> {
        let registry = EcrRegistry::parse(&host.name)
            .ok_or_else(|| Failure::Credentials(format!("{} is not an ECR registry", host.name)))?;
        self.tokens
            .get(&host.name, context, || {
                self.authorization_token(context, &registry)
            })
            .await
    }

    async fn authorization_token(
        &self,
        context: &Context,
        registry: &EcrRegistry,
    ) -> Result<(TokenLogin, SystemTime), Failure> {
        let credentials = self.aws_credentials(context, registry).await?;
        let url = parse_url(
            &self
                .settings
                .ecr_endpoint
                .clone()
                .unwrap_or_else(|| registry.api_endpoint()),
            "ECR endpoint (AWS_ENDPOINT_URL_ECR)",
        )?;
        let endpoint = display_url(&url);
        let body = format!(r#"{{"registryIds":["{}"]}}"#, registry.account);
        let amz_date = amz_date(context.now());
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-amz-json-1.1".to_owned(),
            ),
            ("host".to_owned(), host_header(&url)),
            ("x-amz-date".to_owned(), amz_date.clone()),
            (
                "x-amz-target".to_owned(),
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken".to_owned(),
            ),
        ];
        if let Some(token) = &credentials.session_token {
            headers.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        let authorization = authorization_header(
            &credentials,
            &registry.region,
            "ecr",
            &SignedRequest {
                method: "POST",
                path: url.path(),
                query: &[],
                headers: &headers,
                payload: body.as_bytes(),
            },
        );
        let mut header_map = HeaderMap::new();
        for (name, value) in headers.iter().filter(|(name, _)| name != "host") {
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| Failure::Credentials(format!("{name} is not a valid header value")))?;
            value.set_sensitive(name == "x-amz-security-token");
            header_map.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .expect("valid header name"),
                value,
            );
        }
        let mut authorization = HeaderValue::from_str(&authorization).map_err(|_| {
            Failure::Credentials("the access key ID is not a valid header value".into())
        })?;
        authorization.set_sensitive(true);
        header_map.insert(reqwest::header::AUTHORIZATION, authorization);
        let request = context.http.post(url).headers(header_map).body(body);
        let secrets = secrets_of(&credentials);
        let answer = send(request, &endpoint, &secrets).await?;
        parse_authorization_token(&answer, &endpoint, context.now())
    }

    async fn aws_credentials(
        &self,
        context: &Context,
        registry: &EcrRegistry,
    ) -> Result<AwsCredentials, Failure> {
        match &self.settings.credentials {
            AwsCredentialSource::Static(credentials) => Ok(credentials.clone()),
            AwsCredentialSource::None => Err(Failure::Credentials(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use IRSA \
                 (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN) or EKS Pod Identity"
                    .to_owned(),
            )),
            AwsCredentialSource::WebIdentity {
                token_file,
                role_arn,
                session_name,
            } => {
                let region = self.settings.region.as_deref().unwrap_or(&registry.region);
                let sts = self.settings.sts_endpoint.clone().unwrap_or_else(|| {
                    let domain = if region.starts_with("cn-") {
                        "amazonaws.com.cn"
                    } else {
                        "amazonaws.com"
                    };
                    format!("https://sts.{region}.{domain}/")
                });
                self.credentials
                    .get(&sts, context, || {
                        assume_role_with_web_identity(
                            context,
                            &sts,
                            token_file,
                            role_arn,
                            session_name,
                        )
                    })
                    .await
            }
            AwsCredentialSource::Container { uri, token } => {
                self.credentials
                    .get(uri, context, || {
                        container_credentials(context, uri, token.as_ref())
                    })
                    .await
            }
        }
    }
}

fn parse_authorization_token(
    answer: &[u8],
    endpoint: &str,
    now: SystemTime,
) -> Result<(TokenLogin, SystemTime), Failure> {
    let bad = |message: &str| Failure::response(endpoint, message);
    let json: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let data = json
        .get("authorizationData")
        .and_then(|d| d.get(0))
        .ok_or_else(|| bad("no authorizationData"))?;
    let token = data
        .get("authorizationToken")
        .and_then(|t| t.as_str())
        .ok_or_else(|| bad("no authorizationToken"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad("authorizationToken is not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("authorizationToken is not text"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad("authorizationToken is not user:password"))?;
    let expires_at = super::json_seconds(data.get("expiresAt"))
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        .unwrap_or(now + DEFAULT_TOKEN_LIFETIME);
    Ok((
        TokenLogin {
            username: username.to_owned(),
            password: password.to_owned(),
        },
        expires_at,
    ))
}

#[cfg(test)]
mod tests;
