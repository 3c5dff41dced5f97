//! AWS credentials: where they come from (keys in the environment, IRSA
//! web identity exchanged with STS, EKS Pod Identity's local endpoint) and
//! how the last two are fetched.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;

use crate::credentials::cloud::{display_url, form_encode, parse_url, send, Context, Failure};

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

/// AWS credentials fetched without an expiry are trusted this long.
const DEFAULT_CREDENTIALS_LIFETIME: Duration = Duration::from_secs(3600);
pub(super) fn secrets_of(credentials: &AwsCredentials) -> Vec<&str> {
    let mut secrets = vec![credentials.secret_access_key.as_str()];
    secrets.extend(credentials.session_token.as_deref());
    secrets
}

pub(super) async fn assume_role_with_web_identity(
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

pub(super) async fn container_credentials(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_are_read_with_a_string_search() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
      <AssumeRoleWithWebIdentityResult>
        <Credentials>
          <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
          <SecretAccessKey>se/cr+et&amp;</SecretAccessKey>
          <SessionToken>tok==</SessionToken>
          <Expiration>2024-05-01T13:00:00Z</Expiration>
        </Credentials>
      </AssumeRoleWithWebIdentityResult>
    </AssumeRoleWithWebIdentityResponse>"#;
        assert_eq!(
            xml_element(xml, "AccessKeyId").as_deref(),
            Some("ASIAEXAMPLE")
        );
        assert_eq!(
            xml_element(xml, "SecretAccessKey").as_deref(),
            Some("se/cr+et&")
        );
        assert_eq!(xml_element(xml, "Missing"), None);
        assert_eq!(
            parse_time(&xml_element(xml, "Expiration").unwrap()),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_568_400))
        );
    }
}
