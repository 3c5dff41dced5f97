//! Per-endpoint settings: from the `--remote-write-*` flags (the same for
//! every `--remote-write-url`) or from a `--remote-write-config` file with
//! one block per endpoint, for per-endpoint credentials and tenants.
//!
//! ```yaml
//! endpoints:
//!   - url: https://mimir.example.com/api/v1/push
//!     headers: {X-Scope-OrgID: team-a}
//!     basic_auth: {username: team-a, password_file: /secrets/mimir-password}
//!   - url: https://prometheus-prod-01.grafana.net/api/prom/push
//!     basic_auth: {username: "123456", password_file: /secrets/grafana-cloud-token}
//!     protocol: "2.0"
//!   - url: https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/metrics
//!     basic_auth: {username: "123456", password_file: /secrets/grafana-cloud-token}
//!     protocol: otlp
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// Which remote-write message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum Protocol {
    /// `prometheus.WriteRequest`, understood by every receiver.
    #[default]
    #[serde(rename = "1.0")]
    #[value(name = "1.0")]
    V1,
    /// `io.prometheus.write.v2.Request`; falls back to 1.0 for receivers that lack it.
    #[serde(rename = "2.0")]
    #[value(name = "2.0")]
    V2,
    /// OTLP/HTTP with protobuf bodies (`ExportMetricsServiceRequest`), for
    /// OpenTelemetry collectors and OTLP-only backends: set per endpoint
    /// (`protocol: otlp`, or `--otlp-url`), never for remote-write URLs.
    #[serde(rename = "otlp")]
    #[value(skip)]
    Otlp,
}

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Total time one request may be retried.
    pub retry_for: Duration,
    /// Whether a 429 is retried (honouring Retry-After) or dropped.
    pub retry_on_rate_limit: bool,
}

/// Everything needed to talk to one endpoint. Secrets are files, read when
/// used, so rotated credentials are picked up without a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    pub url: Url,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub headers: Vec<(String, String)>,
    pub tls: TlsConfig,
    pub protocol: Protocol,
    pub timeout: Duration,
    pub max_series_per_request: usize,
    pub retry: RetryPolicy,
    /// Labels every series carries (`job`, the external labels): OTLP sends
    /// them once per request, as resource attributes.
    pub resource_labels: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle (PEM) trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Headers the remote-write protocol or the HTTP client set themselves; a
/// user-supplied value would break the request or hide credentials.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-scrape-timeout-seconds",
];

/// A `Name: value` header from the command line.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a header like 'X-Scope-OrgID: team-a'"))?;
    let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
    check_header(&name, &value)?;
    Ok((name, value))
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "header {name} is set by the pusher itself and cannot be overridden (use the auth settings for Authorization)"
        ));
    }
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name} is not valid"))?;
    Ok(())
}

/// The file format of `--remote-write-config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    endpoints: Vec<FileEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEndpoint {
    url: String,
    basic_auth: Option<BasicAuth>,
    bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    tls: TlsConfig,
    protocol: Option<Protocol>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuth {
    username: String,
    password_file: PathBuf,
}

impl EndpointConfig {
    /// Reads a `--remote-write-config` file; settings it does not give (timeouts,
    /// retries, batch size) come from `defaults`.
    pub fn from_file(
        path: &Path,
        defaults: &EndpointConfig,
    ) -> Result<Vec<EndpointConfig>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
        let file: File = serde_yaml::from_str(&text)
            .map_err(|e| format!("{} is not a valid endpoints file: {e}", path.display()))?;
        file.endpoints
            .into_iter()
            .map(|e| {
                let url = e.url.parse::<Url>().map_err(|err| {
                    format!("{}: {:?} is not a URL: {err}", path.display(), e.url)
                })?;
                let config = EndpointConfig {
                    url,
                    username: e.basic_auth.as_ref().map(|b| b.username.clone()),
                    password_file: e.basic_auth.map(|b| b.password_file),
                    bearer_token_file: e.bearer_token_file,
                    headers: e.headers.into_iter().collect(),
                    tls: e.tls,
                    protocol: e.protocol.unwrap_or(defaults.protocol),
                    ..defaults.clone()
                };
                config
                    .validate()
                    .map_err(|m| format!("{}: {m}", path.display()))?;
                Ok(config)
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        let endpoint = super::endpoint::display_name(&self.url);
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(format!(
                "{endpoint}: only http and https URLs can be pushed to"
            ));
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(format!(
                "{endpoint}: basic auth needs both a username and a password file"
            ));
        }
        if self.username.is_some() && self.bearer_token_file.is_some() {
            return Err(format!(
                "{endpoint}: use either basic auth or a bearer token, not both"
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(format!(
                "{endpoint}: a client certificate needs both a cert file and a key file"
            ));
        }
        for (name, value) in &self.headers {
            check_header(name, value).map_err(|m| format!("{endpoint}: {m}"))?;
        }
        if self.retry.min_backoff > self.retry.max_backoff {
            return Err("the minimum retry backoff is larger than the maximum".into());
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn defaults(url: &str) -> EndpointConfig {
        EndpointConfig {
            url: url.parse().unwrap(),
            username: None,
            password_file: None,
            bearer_token_file: None,
            headers: vec![],
            tls: TlsConfig::default(),
            protocol: Protocol::V1,
            timeout: Duration::from_secs(30),
            max_series_per_request: 2000,
            retry: RetryPolicy {
                min_backoff: Duration::from_millis(30),
                max_backoff: Duration::from_secs(5),
                retry_for: Duration::from_secs(30),
                retry_on_rate_limit: true,
            },
            resource_labels: vec!["job".into()],
        }
    }

    #[test]
    fn reserved_headers_are_refused() {
        for reserved in [
            "Content-Type: text/plain",
            "authorization: Bearer x",
            "X-Prometheus-Remote-Write-Version: 9",
            "Host: evil",
        ] {
            assert!(
                parse_header(reserved)
                    .unwrap_err()
                    .contains("cannot be overridden"),
                "{reserved}"
            );
        }
        assert_eq!(
            parse_header("X-Scope-OrgID: team-a").unwrap(),
            ("X-Scope-OrgID".into(), "team-a".into())
        );
        assert_eq!(parse_header("THANOS-TENANT:t1").unwrap().1, "t1");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
    }

    #[test]
    fn endpoints_file_with_per_endpoint_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.yaml");
        std::fs::write(
            &path,
            r#"
endpoints:
  - url: https://mimir.example.com/api/v1/push
    headers: {X-Scope-OrgID: team-a}
    basic_auth: {username: team-a, password_file: /secrets/p}
  - url: https://thanos.example.com/api/v1/receive
    bearer_token_file: /var/run/secrets/token
    protocol: "2.0"
    tls: {ca_file: /etc/ca.pem, insecure_skip_verify: false}
  - url: http://otel-collector:4318/v1/metrics
    protocol: otlp
"#,
        )
        .unwrap();
        let got = EndpointConfig::from_file(&path, &defaults("http://unused")).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].protocol, Protocol::Otlp);
        assert_eq!(
            got[0].headers,
            [("X-Scope-OrgID".to_owned(), "team-a".to_owned())]
        );
        assert_eq!(got[0].username.as_deref(), Some("team-a"));
        assert_eq!(got[1].protocol, Protocol::V2);
        assert_eq!(
            got[1].tls.ca_file.as_deref(),
            Some(Path::new("/etc/ca.pem"))
        );
        assert_eq!(
            got[1].timeout,
            Duration::from_secs(30),
            "defaults fill the rest"
        );

        std::fs::write(&path, "endpoints:\n  - url: http://x\n    headres: {}\n").unwrap();
        assert!(
            EndpointConfig::from_file(&path, &defaults("http://unused"))
                .unwrap_err()
                .contains("headres"),
            "typos are errors"
        );
        std::fs::write(
            &path,
            "endpoints:\n  - url: http://x\n    headers: {Content-Type: x}\n",
        )
        .unwrap();
        assert!(EndpointConfig::from_file(&path, &defaults("http://unused")).is_err());
    }

    #[test]
    fn inconsistent_auth_is_refused() {
        let mut c = defaults("https://x/api/v1/push");
        c.username = Some("u".into());
        assert!(c.validate().is_err());
        c.password_file = Some("/p".into());
        c.validate().unwrap();
        c.bearer_token_file = Some("/t".into());
        assert!(c.validate().is_err());
        let mut c = defaults("ftp://x/");
        c.username = None;
        assert!(c.validate().is_err());
    }
}
