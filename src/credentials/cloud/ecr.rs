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

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::{
    display_url, form_encode, hex, parse_url, send, Context, Failure, RegistryHost, TokenCache,
    TokenLogin,
};

/// Where AWS credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsCredentialSource {
    /// Long-lived or session keys given directly.
    Static(AwsCredentials),
    /// IRSA: a projected service-account token exchanged with STS.
    WebIdentity {
        token_file: PathBuf,
        role_arn: String,
        session_name: String,
    },
    /// EKS Pod Identity (or ECS): a local credentials endpoint.
    Container {
        uri: String,
        /// Sent as `Authorization`; a file is re-read each time.
        token: Option<ContainerToken>,
    },
    /// Nothing configured: ECR logins fail with a message saying what to set.
    None,
}

/// The authorization token of a container credentials endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum ContainerToken {
    File(PathBuf),
    Value(String),
}

impl std::fmt::Debug for ContainerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerToken::File(path) => f.debug_tuple("File").field(path).finish(),
            ContainerToken::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

impl AwsCredentialSource {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            AwsCredentialSource::Static(_) => "environment",
            AwsCredentialSource::WebIdentity { .. } => "web identity",
            AwsCredentialSource::Container { .. } => "container credentials endpoint",
            AwsCredentialSource::None => "none",
        }
    }
}

/// AWS access keys. `Debug` shows only the access key ID.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

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

/// AWS credentials fetched without an expiry are trusted this long.
const DEFAULT_CREDENTIALS_LIFETIME: Duration = Duration::from_secs(3600);
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

fn secrets_of(credentials: &AwsCredentials) -> Vec<&str> {
    let mut secrets = vec![credentials.secret_access_key.as_str()];
    secrets.extend(credentials.session_token.as_deref());
    secrets
}

/// `Host` as the client will send it: the port only when not the default.
fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn amz_date(now: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(now)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
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

async fn assume_role_with_web_identity(
    context: &Context,
    sts: &str,
    token_file: &std::path::Path,
    role_arn: &str,
    session_name: &str,
) -> Result<(AwsCredentials, SystemTime), Failure> {
    let url = parse_url(sts, "STS endpoint (AWS_ENDPOINT_URL_STS)")?;
    let endpoint = display_url(&url);
    let token = tokio::fs::read_to_string(token_file).await.map_err(|e| {
        Failure::Credentials(format!(
            "cannot read the web identity token file {} (AWS_WEB_IDENTITY_TOKEN_FILE): {e}",
            token_file.display()
        ))
    })?;
    let token = token.trim();
    let body = form_encode(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", token),
    ]);
    let request = context
        .http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/xml")
        .body(body);
    let answer = send(request, &endpoint, &[token]).await?;
    let answer = String::from_utf8_lossy(&answer);
    let field = |name: &str| {
        xml_element(&answer, name).ok_or_else(|| {
            Failure::response(
                &endpoint,
                format!("no {name} in the AssumeRoleWithWebIdentity answer"),
            )
        })
    };
    let credentials = AwsCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
    };
    let expires_at = xml_element(&answer, "Expiration")
        .and_then(|e| parse_time(&e))
        .unwrap_or(context.now() + DEFAULT_CREDENTIALS_LIFETIME);
    Ok((credentials, expires_at))
}

async fn container_credentials(
    context: &Context,
    uri: &str,
    token: Option<&ContainerToken>,
) -> Result<(AwsCredentials, SystemTime), Failure> {
    let url = parse_url(
        uri,
        "container credentials URI (AWS_CONTAINER_CREDENTIALS_FULL_URI)",
    )?;
    let endpoint = display_url(&url);
    let token = match token {
        None => None,
        Some(ContainerToken::Value(value)) => Some(value.trim().to_owned()),
        Some(ContainerToken::File(path)) => Some(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| {
                    Failure::Credentials(format!(
                        "cannot read the container authorization token file {} \
                         (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE): {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_owned(),
        ),
    };
    // A link-local agent (EKS Pod Identity, ECS): never through a proxy.
    let mut request = context.direct.get(url);
    if let Some(token) = &token {
        let mut value = HeaderValue::from_str(token).map_err(|_| {
            Failure::Credentials(
                "the container authorization token is not a valid header value".into(),
            )
        })?;
        value.set_sensitive(true);
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    let secrets: Vec<&str> = token.as_deref().into_iter().collect();
    let answer = send(request, &endpoint, &secrets).await?;
    let json: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| Failure::response(&endpoint, format!("not JSON: {e}")))?;
    let field = |name: &str| {
        json.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Failure::response(&endpoint, format!("no {name} in the answer")))
    };
    let credentials = AwsCredentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: json
            .get("Token")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    };
    let expires_at = json
        .get("Expiration")
        .and_then(|v| v.as_str())
        .and_then(parse_time)
        .unwrap_or(context.now() + DEFAULT_CREDENTIALS_LIFETIME);
    Ok((credentials, expires_at))
}

fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(SystemTime::from)
}

/// The text of the first `<name>…</name>` element, entities decoded. Enough
/// for STS answers, which are flat and never use CDATA.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let text = xml[start..end]
        .trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#xA;", "\n")
        .replace("&amp;", "&");
    Some(text)
}

/// A request to sign: headers as sent, names in any case (`host` included).
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The URI path, already percent-encoded as sent.
    pub path: &'a str,
    /// Query parameters, not encoded.
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(String, String)],
    pub payload: &'a [u8],
}

/// The SigV4 `Authorization` header for a request whose headers include
/// `x-amz-date` (basic ISO 8601, e.g. `20150830T123600Z`). Every header
/// given is signed.
pub fn authorization_header(
    credentials: &AwsCredentials,
    region: &str,
    service: &str,
    request: &SignedRequest<'_>,
) -> String {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.to_ascii_lowercase(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let amz_date = headers
        .iter()
        .find(|(name, _)| name == "x-amz-date")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let date = &amz_date[..amz_date.len().min(8)];
    let signed_headers = headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (super::percent_encode(k), super::percent_encode(v)))
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let path = if request.path.is_empty() {
        "/"
    } else {
        request.path
    };
    let canonical_request = format!(
        "{}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        request.method,
        hex(&Sha256::digest(request.payload)),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(&credentials.secret_access_key, date, region, service);
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    )
}

/// `kSigning`: HMAC chain over date, region, service and `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
#[path = "ecr_tests.rs"]
mod tests;
