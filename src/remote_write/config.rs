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

/// How failed requests are retried: the `--retry-*` flags, the same for
/// every endpoint.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
#[command(next_help_heading = "Remote-write retries")]
#[deny(missing_docs)]
pub struct RetryPolicy {
    /// First wait before retrying a failed request; doubles on each retry.
    #[arg(long = "retry-min-backoff", id = "retry_min_backoff", value_name = "DURATION", env = "PUSHER_RETRY_MIN_BACKOFF", default_value = "30ms", value_parser = parse_wait)]
    pub min_backoff: Duration,

    /// Longest wait between two retries (at most 1 day).
    #[arg(long = "retry-max-backoff", id = "retry_max_backoff", value_name = "DURATION", env = "PUSHER_RETRY_MAX_BACKOFF", default_value = "5s", value_parser = parse_wait)]
    pub max_backoff: Duration,

    /// How long one remote-write request is retried (5xx, 429, network
    /// errors) before it is given up (at most 1 day).
    #[arg(long = "remote-write-retry-for", id = "remote_write_retry_for", value_name = "DURATION", env = "PUSHER_REMOTE_WRITE_RETRY_FOR", default_value = "30s", value_parser = parse_wait)]
    pub retry_for: Duration,

    /// Retry requests answered 429 Too Many Requests (after Retry-After when
    /// given); with false they are dropped, as other 4xx are.
    #[arg(long = "retry-on-rate-limit", id = "retry_on_rate_limit", value_name = "BOOL", env = "PUSHER_RETRY_ON_RATE_LIMIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub retry_on_rate_limit: bool,

    /// Longest pause a receiver can impose with Retry-After: no request goes
    /// to it until the pause ends (the newest snapshot waits), but a longer
    /// Retry-After is cut to this (at most 1 day); a broken header must not
    /// silence the pusher for days.
    #[arg(long = "retry-max-pause", id = "retry_max_pause", value_name = "DURATION", env = "PUSHER_RETRY_MAX_PAUSE", default_value = "5m", value_parser = parse_wait)]
    pub max_pause: Duration,
}

/// A duration a flag gave that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{given:?} is not a duration like 30s, 5m or 1h: {reason}")]
    Malformed { given: String, reason: String },
    #[error("a duration of zero is not allowed")]
    Zero,
    #[error(
        "{given:?} is longer than the {} allowed",
        humantime::format_duration(LONGEST_WAIT)
    )]
    TooLong { given: String },
}

/// A remote-write duration (timeout, backoff, retry window, pause): not
/// zero, and bounded, so that no wait or deadline built from it can
/// overflow (`500000000000y` parses, and used to panic).
pub fn parse_wait(s: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(s).map_err(|e| DurationError::Malformed {
        given: s.to_owned(),
        reason: e.to_string(),
    })?;
    if d.is_zero() {
        return Err(DurationError::Zero);
    }
    if d > LONGEST_WAIT {
        return Err(DurationError::TooLong {
            given: s.to_owned(),
        });
    }
    Ok(d)
}

/// How the pusher proves who it is to an endpoint: basic auth or a bearer
/// token, both read from files when used, so rotated credentials are picked
/// up without a restart. From the flags, the same for every
/// `--remote-write-url` and `--otlp-url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Remote-write auth and TLS")]
#[deny(missing_docs)]
pub struct Auth {
    /// Basic-auth user for --remote-write-url endpoints (e.g. a Grafana Cloud
    /// instance ID); the password comes from --remote-write-password-file.
    #[arg(
        long = "remote-write-username",
        id = "remote_write_username",
        value_name = "NAME",
        env = "PUSHER_REMOTE_WRITE_USERNAME",
        requires = "remote_write_password_file"
    )]
    pub username: Option<String>,

    /// File holding the basic-auth password or access token; re-read when it changes.
    #[arg(
        long = "remote-write-password-file",
        id = "remote_write_password_file",
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_PASSWORD_FILE",
        requires = "remote_write_username"
    )]
    pub password_file: Option<PathBuf>,

    /// File holding a bearer token (e.g. a projected service-account token);
    /// re-read when it changes.
    #[arg(
        long = "remote-write-bearer-token-file",
        id = "remote_write_bearer_token_file",
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_BEARER_TOKEN_FILE",
        conflicts_with = "remote_write_username"
    )]
    pub bearer_token_file: Option<PathBuf>,
}

/// Everything needed to talk to one endpoint. Secrets are files, read when
/// used, so rotated credentials are picked up without a restart.
#[derive(Clone, PartialEq)]
pub struct EndpointConfig {
    pub url: Url,
    pub auth: Auth,
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
            .field("auth", &self.auth)
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
        write!(f, "{:?}", display_name(&self.0))
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
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// A header that cannot be sent. The message never repeats the value, nor
/// a name that is not a valid one (it may be a misplaced value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a header like 'X-Scope-OrgID: team-a': there is no ':' between name and value (the text is not shown: it may hold a secret)")]
    NoColon,
    #[error("a header name ({chars} characters, not shown: it may hold a secret) is not valid: it must be letters, digits and -")]
    InvalidName { chars: usize },
    #[error("header {name} is set by the pusher itself and cannot be overridden (use the auth settings for Authorization)")]
    Reserved { name: String },
    #[error("the value of header {name} is not valid (not shown)")]
    InvalidValue { name: String },
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

/// How an endpoint's certificate is checked, and the client certificate
/// for mutual TLS: from the flags (the same for every `--remote-write-url`
/// and `--otlp-url`) or an endpoint's `tls` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Remote-write auth and TLS")]
#[deny(missing_docs)]
pub struct TlsConfig {
    /// CA bundle (PEM) trusted for remote-write endpoints, besides the system roots.
    #[arg(
        long = "remote-write-ca-file",
        id = "remote_write_ca_file",
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_CA_FILE"
    )]
    pub ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS with remote-write endpoints.
    #[arg(
        long = "remote-write-cert-file",
        id = "remote_write_cert_file",
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_CERT_FILE",
        requires = "remote_write_key_file"
    )]
    pub cert_file: Option<PathBuf>,

    /// Key (PEM) of --remote-write-cert-file.
    #[arg(
        long = "remote-write-key-file",
        id = "remote_write_key_file",
        value_name = "PATH",
        env = "PUSHER_REMOTE_WRITE_KEY_FILE",
        requires = "remote_write_cert_file"
    )]
    pub key_file: Option<PathBuf>,

    /// Do not verify remote-write endpoints' TLS certificates. Only for testing.
    #[serde(default)]
    #[arg(
        long = "remote-write-insecure-skip-verify",
        id = "remote_write_insecure_skip_verify",
        env = "PUSHER_REMOTE_WRITE_INSECURE_SKIP_VERIFY"
    )]
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
pub fn parse_header(s: &str) -> Result<Header, FlagError> {
    let (name, value) = s.split_once(':').ok_or(HeaderError::NoColon)?;
    let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
    check_header(&name, &value)?;
    Ok(Header { name, value })
}

fn check_header(name: &str, value: &str) -> Result<(), HeaderError> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(HeaderError::InvalidName {
            chars: name.chars().count(),
        });
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(HeaderError::Reserved {
            name: name.to_owned(),
        });
    }
    reqwest::header::HeaderValue::from_str(value).map_err(|_| HeaderError::InvalidValue {
        name: name.to_owned(),
    })?;
    Ok(())
}

/// Settings of one endpoint that cannot work together. `endpoint` is its
/// URL without credentials or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{endpoint}: only http and https URLs can be pushed to")]
    Scheme { endpoint: String },
    #[error("{endpoint}: basic auth needs both a username and a password file")]
    IncompleteBasicAuth { endpoint: String },
    #[error("{endpoint}: use either basic auth or a bearer token, not both")]
    TwoAuths { endpoint: String },
    #[error("{endpoint}: a client certificate needs both a cert file and a key file")]
    IncompleteClientCertificate { endpoint: String },
    #[error("{endpoint}: {problem}")]
    Header {
        endpoint: String,
        problem: HeaderError,
    },
    #[error("{endpoint}: the minimum retry backoff ({}) is larger than the maximum ({})", humantime::format_duration(*min), humantime::format_duration(*max))]
    BackoffOrder {
        endpoint: String,
        min: Duration,
        max: Duration,
    },
    #[error("{endpoint}: a {what} of {} is longer than the {} allowed", humantime::format_duration(*duration), humantime::format_duration(LONGEST_WAIT))]
    TooLong {
        endpoint: String,
        what: &'static str,
        duration: Duration,
    },
}

/// A `--remote-write-config` file that cannot be used. Messages name the
/// file and never quote a value from it: it holds credentials' paths,
/// headers and URLs that may carry secrets.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsFileError {
    #[error("failed to read --remote-write-config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--remote-write-config {} is not a valid endpoints file: {reason}", path.display())]
    Syntax { path: PathBuf, reason: String },
    #[error("--remote-write-config {}: {problem}", path.display())]
    Url { path: PathBuf, problem: FlagError },
    #[error("--remote-write-config {}: {problem}", path.display())]
    Endpoint {
        path: PathBuf,
        problem: EndpointError,
    },
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
    ) -> Result<Vec<EndpointConfig>, EndpointsFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| EndpointsFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: File = serde_yaml::from_str(&text).map_err(|e| EndpointsFileError::Syntax {
            path: path.to_owned(),
            reason: redact_quoted(&e.to_string()),
        })?;
        file.endpoints
            .into_iter()
            .map(|e| {
                let PushUrl(url) =
                    parse_url(&e.url).map_err(|problem| EndpointsFileError::Url {
                        path: path.to_owned(),
                        problem,
                    })?;
                let config = EndpointConfig {
                    url,
                    auth: Auth {
                        username: e.basic_auth.as_ref().map(|b| b.username.clone()),
                        password_file: e.basic_auth.map(|b| b.password_file),
                        bearer_token_file: e.bearer_token_file,
                    },
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
                    .map_err(|problem| EndpointsFileError::Endpoint {
                        path: path.to_owned(),
                        problem,
                    })?;
                Ok(config)
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), EndpointError> {
        let endpoint = || display_name(&self.url);
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(EndpointError::Scheme {
                endpoint: endpoint(),
            });
        }
        let auth = &self.auth;
        if auth.username.is_some() != auth.password_file.is_some() {
            return Err(EndpointError::IncompleteBasicAuth {
                endpoint: endpoint(),
            });
        }
        if auth.username.is_some() && auth.bearer_token_file.is_some() {
            return Err(EndpointError::TwoAuths {
                endpoint: endpoint(),
            });
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(EndpointError::IncompleteClientCertificate {
                endpoint: endpoint(),
            });
        }
        for Header { name, value } in &self.headers {
            check_header(name, value).map_err(|problem| EndpointError::Header {
                endpoint: endpoint(),
                problem,
            })?;
        }
        if self.retry.min_backoff > self.retry.max_backoff {
            return Err(EndpointError::BackoffOrder {
                endpoint: endpoint(),
                min: self.retry.min_backoff,
                max: self.retry.max_backoff,
            });
        }
        let longest = [
            ("timeout", self.timeout),
            ("retry window", self.retry.retry_for),
            ("maximum retry backoff", self.retry.max_backoff),
            ("longest pause", self.retry.max_pause),
        ]
        .into_iter()
        .find(|(_, d)| *d > LONGEST_WAIT);
        if let Some((what, duration)) = longest {
            return Err(EndpointError::TooLong {
                endpoint: endpoint(),
                what,
                duration,
            });
        }
        Ok(())
    }
}

/// `scheme://host[:port]/path`: never userinfo or query, which may hold secrets.
pub(crate) fn display_name(url: &Url) -> String {
    let mut name = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        name.push_str(&format!(":{port}"));
    }
    name.push_str(url.path());
    name
}

#[cfg(test)]
#[path = "config_tests.rs"]
pub(crate) mod tests;
