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

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// The longest any remote-write duration may be (timeout, backoff, retry
/// window, pause): longer values are refused at start, and every wait is
/// clamped to it, so no arithmetic on an instant can overflow.
pub const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

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
    /// The longest pause a receiver's `Retry-After` can impose: a broken
    /// header must not silence the pusher for days.
    pub max_pause: Duration,
}

/// Everything needed to talk to one endpoint. Secrets are files, read when
/// used, so rotated credentials are picked up without a restart.
#[derive(Clone, PartialEq)]
pub struct EndpointConfig {
    pub url: Url,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub headers: Vec<Header>,
    pub tls: TlsConfig,
    pub protocol: Protocol,
    pub timeout: Duration,
    pub max_series_per_request: usize,
    pub retry: RetryPolicy,
    /// Labels every series carries (`job`, the external labels): OTLP sends
    /// them once per request, as resource attributes.
    pub resource_labels: Vec<String>,
}

/// The URL without userinfo or query, header values hidden: a config
/// printed with `{:?}` (in a panic, a log line) leaks no secret.
impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("url", &PushUrl(self.url.clone()))
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("bearer_token_file", &self.bearer_token_file)
            .field("headers", &self.headers)
            .field("tls", &self.tls)
            .field("protocol", &self.protocol)
            .field("timeout", &self.timeout)
            .field("max_series_per_request", &self.max_series_per_request)
            .field("retry", &self.retry)
            .field("resource_labels", &self.resource_labels)
            .finish()
    }
}

/// A `--remote-write-url`: its `Debug` form shows neither userinfo nor
/// query, which may hold credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct PushUrl(pub Url);

impl fmt::Debug for PushUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", super::endpoint::display_name(&self.0))
    }
}

/// An extra HTTP header; its `Debug` form hides the value (API keys and
/// tenant tokens travel in headers).
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ***", self.name)
    }
}

/// A command-line value that was refused. The message never repeats the
/// value as given: it may carry a password or an API key.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("{shown} is not a URL ({reason})")]
    Url { shown: String, reason: String },
    #[error("{0}")]
    Header(String),
}

/// A clap value parser whose errors are built from `parse`'s message only:
/// clap's own error for a refused value quotes the value, secrets included.
#[derive(Clone, Copy)]
pub struct SecretValueParser<T>(pub fn(&str) -> Result<T, FlagError>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for SecretValueParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let flag = arg.map(ToString::to_string).unwrap_or_default();
        let refuse = |message: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {flag}: {message}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("the value is not UTF-8".into()))?;
        (self.0)(text).map_err(|e| refuse(e.to_string()))
    }
}

/// Parses a `--remote-write-url`; a malformed one is described without its
/// userinfo or query.
pub fn parse_url(s: &str) -> Result<PushUrl, FlagError> {
    s.parse::<Url>().map(PushUrl).map_err(|e| FlagError::Url {
        shown: redact_url_text(s),
        reason: e.to_string(),
    })
}

/// A URL that may not parse, fit for an error message: everything up to the
/// last `@` (userinfo) and everything from `?` or `#` on is replaced, and
/// text that does not even look like `scheme://…` is not shown at all.
pub(crate) fn redact_url_text(s: &str) -> String {
    let hidden = || "the value (not shown: it does not start with scheme://)".to_owned();
    let Some((scheme, rest)) = s.split_once("://") else {
        return hidden();
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return hidden();
    }
    // Userinfo first: a password may itself hold `?` or `#`.
    let rest = match rest.rfind('@') {
        Some(i) => format!("***{}", &rest[i..]),
        None => rest.to_owned(),
    };
    let rest = match rest.find(['?', '#']) {
        Some(i) => format!("{}?…", &rest[..i]),
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// A serde error about a file that may hold secrets, with every quoted
/// string in it (serde quotes the values it could not use) blanked out.
pub(crate) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if quoted {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
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

/// A `Name: value` header from the command line. Errors never repeat the
/// value, nor a name that is not a valid one (it may be a misplaced value).
pub fn parse_header(s: &str) -> Result<Header, FlagError> {
    let (name, value) = s.split_once(':').ok_or_else(|| {
        FlagError::Header(
            "not a header like 'X-Scope-OrgID: team-a': there is no ':' between name and value (the text is not shown: it may hold a secret)".into(),
        )
    })?;
    let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
    check_header(&name, &value).map_err(FlagError::Header)?;
    Ok(Header { name, value })
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!(
            "a header name ({} characters, not shown: it may hold a secret) is not valid: it must be letters, digits and -",
            name.chars().count()
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "header {name} is set by the pusher itself and cannot be overridden (use the auth settings for Authorization)"
        ));
    }
    reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name} is not valid (not shown)"))?;
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
        let file: File = serde_yaml::from_str(&text).map_err(|e| {
            format!(
                "{} is not a valid endpoints file: {}",
                path.display(),
                redact_quoted(&e.to_string())
            )
        })?;
        file.endpoints
            .into_iter()
            .map(|e| {
                let PushUrl(url) =
                    parse_url(&e.url).map_err(|err| format!("{}: {err}", path.display()))?;
                let config = EndpointConfig {
                    url,
                    username: e.basic_auth.as_ref().map(|b| b.username.clone()),
                    password_file: e.basic_auth.map(|b| b.password_file),
                    bearer_token_file: e.bearer_token_file,
                    headers: e
                        .headers
                        .into_iter()
                        .map(|(name, value)| Header { name, value })
                        .collect(),
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
        for Header { name, value } in &self.headers {
            check_header(name, value).map_err(|m| format!("{endpoint}: {m}"))?;
        }
        if self.retry.min_backoff > self.retry.max_backoff {
            return Err("the minimum retry backoff is larger than the maximum".into());
        }
        let longest = [
            ("timeout", self.timeout),
            ("retry window", self.retry.retry_for),
            ("maximum retry backoff", self.retry.max_backoff),
            ("longest pause", self.retry.max_pause),
        ]
        .into_iter()
        .find(|(_, d)| *d > LONGEST_WAIT);
        if let Some((what, d)) = longest {
            return Err(format!(
                "{endpoint}: a {what} of {} is longer than the {} allowed",
                humantime::format_duration(d),
                humantime::format_duration(LONGEST_WAIT)
            ));
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
                max_pause: Duration::from_secs(300),
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
                    .to_string()
                    .contains("cannot be overridden"),
                "{reserved}"
            );
        }
        assert_eq!(
            parse_header("X-Scope-OrgID: team-a").unwrap(),
            Header {
                name: "X-Scope-OrgID".into(),
                value: "team-a".into()
            }
        );
        assert_eq!(parse_header("THANOS-TENANT:t1").unwrap().value, "t1");
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
            [Header {
                name: "X-Scope-OrgID".into(),
                value: "team-a".into()
            }]
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
    fn malformed_urls_are_described_without_credentials_or_query() {
        for (given, shown) in [
            ("http://u:PASSWORD@[::1", "http://***@[::1"),
            ("https://u:pa/ss?#@host:99999/x", "https://***@host:99999/x"),
            (
                "http://host:99999/push?token=PASSWORD",
                "http://host:99999/push?…",
            ),
            ("PASSWORD", "not shown"),
            ("u-PASSWORD@[::1]x://h", "not shown"),
        ] {
            let err = parse_url(given).unwrap_err().to_string();
            assert!(err.contains(shown), "{given}: {err}");
            assert!(!err.contains("PASSWORD") && !err.contains("pa/ss"), "{err}");
        }
        assert_eq!(
            parse_url("https://u:p@h/x").unwrap().0.as_str(),
            "https://u:p@h/x"
        );
    }

    #[test]
    fn header_errors_never_repeat_a_value() {
        for given in [
            "X-Api-Key SECRET",
            "X-Api-Key SECRET: x",
            "X-Api-Key: SECRET\u{7f}",
        ] {
            let err = parse_header(given).unwrap_err().to_string();
            assert!(!err.contains("SECRET"), "{given}: {err}");
        }
        assert!(parse_header("X-Api-Key: SECRET\u{7f}")
            .unwrap_err()
            .to_string()
            .contains("X-Api-Key"));
    }

    #[test]
    fn debug_forms_hide_credentials() {
        let mut c = defaults("https://USER:PASSWORD@mimir.example.com/push?token=TOKEN");
        c.headers = vec![parse_header("X-Api-Key: SECRET").unwrap()];
        let debug = format!("{c:?} {:?}", PushUrl(c.url.clone()));
        assert!(debug.contains("mimir.example.com/push"), "{debug}");
        assert!(debug.contains("X-Api-Key"), "{debug}");
        for secret in ["USER", "PASSWORD", "TOKEN", "SECRET"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn file_errors_blank_the_values_serde_quotes() {
        assert_eq!(
            redact_quoted(r#"headers: invalid type: string "X-Api-Key: SECRET", expected a map"#),
            r#"headers: invalid type: string "…", expected a map"#
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.yaml");
        for text in [
            "endpoints:\n  - url: http://x\n    headers: \"X-Api-Key: SECRET\"\n",
            "endpoints:\n  - url: \"http://u:SECRET@[::1\"\n",
            "endpoints:\n  - url: http://x\n    headers: {\"X-Api-Key SECRET\": v}\n",
        ] {
            std::fs::write(&path, text).unwrap();
            let err = EndpointConfig::from_file(&path, &defaults("http://unused")).unwrap_err();
            assert!(
                err.contains("endpoints.yaml") && !err.contains("SECRET"),
                "{err}"
            );
        }
    }

    #[test]
    fn absurd_durations_are_refused() {
        let mut c = defaults("https://x/api/v1/push");
        c.retry.retry_for = Duration::from_secs(500_000_000_000 * 31_557_600);
        assert!(c.validate().unwrap_err().contains("retry window"));
        let mut c = defaults("https://x/api/v1/push");
        c.retry.max_pause = LONGEST_WAIT + Duration::from_secs(1);
        assert!(c.validate().unwrap_err().contains("pause"));
        c.retry.max_pause = LONGEST_WAIT;
        c.validate().unwrap();
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
