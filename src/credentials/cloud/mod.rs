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
    allow(dead_code)
)]

#[cfg(feature = "acr")]
pub mod acr;
#[cfg(feature = "ecr")]
pub mod ecr;
#[cfg(feature = "gcr")]
pub mod gcr;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, trace, Instrument};

use super::Login;

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

/// The providers' HTTP clients cannot be built (TLS set-up): a start-up
/// error.
#[derive(Debug, thiserror::Error)]
#[error("failed to build the HTTP client for cloud registry logins: {0}")]
pub struct BuildError(#[source] reqwest::Error);

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
    fn token_name(self) -> &'static str {
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
    fn into_error(self, provider: Provider, host: &str) -> CloudError {
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

/// The wall clock token expiry is measured against; replaceable in tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime::now))
    }

    pub fn new(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Which providers are enabled and how they reach their endpoints.
/// [`Settings::default`] enables none; [`Settings::from_env`] enables every
/// compiled-in provider, configured from the standard environment variables.
#[derive(Debug, Clone)]
pub struct Settings {
    #[cfg(feature = "ecr")]
    pub ecr: Option<ecr::EcrSettings>,
    #[cfg(feature = "gcr")]
    pub gcr: Option<gcr::GcrSettings>,
    #[cfg(feature = "acr")]
    pub acr: Option<acr::AcrSettings>,
    /// Time limit of one token request.
    pub timeout: Duration,
    /// Time limit to connect, short so that an absent metadata server fails fast.
    pub connect_timeout: Duration,
    /// How long a failure is remembered before the token is asked for again.
    pub error_ttl: Duration,
    /// Tokens are refreshed this long before they expire (at most half
    /// their lifetime before).
    pub refresh_margin: Duration,
    pub clock: Clock,
    /// Host names resolved to these addresses instead of through DNS (the
    /// port of the address is ignored). For tests.
    pub resolve: Vec<(String, SocketAddr)>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            #[cfg(feature = "ecr")]
            ecr: None,
            #[cfg(feature = "gcr")]
            gcr: None,
            #[cfg(feature = "acr")]
            acr: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            error_ttl: Duration::from_secs(60),
            refresh_margin: Duration::from_secs(5 * 60),
            clock: Clock::system(),
            resolve: Vec::new(),
        }
    }
}

impl Settings {
    /// Every compiled-in provider, configured from the process environment.
    pub fn from_env() -> Settings {
        Settings::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Like [`Settings::from_env`], reading variables through `var` (empty
    /// values count as unset).
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Settings {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        #[cfg(not(any(feature = "ecr", feature = "gcr", feature = "acr")))]
        let _ = var;
        Settings {
            #[cfg(feature = "ecr")]
            ecr: Some(ecr::EcrSettings::from_lookup(&var)),
            #[cfg(feature = "gcr")]
            gcr: Some(gcr::GcrSettings::from_lookup(&var)),
            #[cfg(feature = "acr")]
            acr: Some(acr::AcrSettings::from_lookup(&var)),
            ..Settings::default()
        }
    }
}

/// A registry host as given (`host[:port]`) and its lowercase name without
/// port, which is what providers match.
#[derive(Debug, Clone)]
pub(crate) struct RegistryHost {
    /// As given, for messages.
    pub given: String,
    /// Lowercase `host[:port]`.
    pub authority: String,
    /// Lowercase host name without port or trailing dot.
    pub name: String,
}

impl RegistryHost {
    pub(crate) fn parse(given: &str) -> RegistryHost {
        let authority = given
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = if authority.starts_with('[') {
            // An IPv6 literal: never a cloud registry.
            authority.clone()
        } else {
            authority.split(':').next().unwrap_or_default().to_owned()
        };
        RegistryHost {
            given: given.to_owned(),
            name: name.trim_end_matches('.').to_owned(),
            authority,
        }
    }
}

/// Whether `name` is `<label>.<suffix>` with one DNS label before the suffix
/// (the suffix starts with a dot or a dash).
pub(crate) fn one_label_before(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix).is_some_and(is_dns_label)
}

pub(crate) fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
}

/// What the providers share: HTTP clients, the clock and cache timings.
pub(crate) struct Context {
    /// Honours `HTTPS_PROXY`/`NO_PROXY`: for cloud APIs on the internet.
    pub http: reqwest::Client,
    /// Never proxied: for link-local metadata servers.
    pub direct: reqwest::Client,
    pub clock: Clock,
    pub error_ttl: Duration,
    pub refresh_margin: Duration,
}

impl Context {
    fn new(settings: &Settings) -> Result<Context, BuildError> {
        crate::install_crypto_provider();
        let build = |proxied: bool| {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!(
                    "container-image-pusher/",
                    env!("CARGO_PKG_VERSION")
                ))
                .timeout(settings.timeout)
                .connect_timeout(settings.connect_timeout)
                .redirect(reqwest::redirect::Policy::none());
            if !proxied {
                builder = builder.no_proxy();
            }
            for (name, addr) in &settings.resolve {
                builder = builder.resolve(name, *addr);
            }
            builder.build().map_err(BuildError)
        };
        Ok(Context {
            http: build(true)?,
            direct: build(false)?,
            clock: settings.clock.clone(),
            error_ttl: settings.error_ttl,
            refresh_margin: settings.refresh_margin,
        })
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }
}

/// Largest token response read; anything bigger is not a token response.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Characters of an error answer kept in the error.
const MAX_ERROR_BODY_CHARS: usize = 300;

/// Sends a token request; the body of a 2xx answer, else a [`Failure`]
/// naming `endpoint` with the status and (redacted, shortened) answer.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    endpoint: &str,
    secrets: &[&str],
) -> Result<Vec<u8>, Failure> {
    let transport = |e: reqwest::Error| Failure::Transport {
        endpoint: endpoint.to_owned(),
        message: redact(&crate::describe_error(&e.without_url()), secrets),
    };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            if status.is_success() {
                return Err(Failure::response(
                    endpoint,
                    format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                ));
            }
            break;
        }
    }
    if status.is_success() {
        Ok(body)
    } else {
        Err(Failure::Status {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
            body: error_body(&body, secrets),
        })
    }
}

/// An error answer as one short line without any of `secrets`.
pub(crate) fn error_body(body: &[u8], secrets: &[&str]) -> String {
    let text = redact(&String::from_utf8_lossy(body), secrets);
    let mut line = String::new();
    let mut count = 0;
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        for c in word.chars() {
            if count == MAX_ERROR_BODY_CHARS {
                line.push('…');
                return line;
            }
            line.push(c);
            count += 1;
        }
        if words.peek().is_some() {
            if count == MAX_ERROR_BODY_CHARS {
                line.push('…');
                return line;
            }
            line.push(' ');
            count += 1;
        }
    }
    line
}

/// `text` with every occurrence of each secret (of 4 characters or more;
/// shorter ones would redact ordinary words) replaced by `<redacted>`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        let secret = secret.trim();
        if secret.len() >= 4 && text.contains(secret) {
            text = text.replace(secret, "<redacted>");
        }
    }
    text
}

/// Scheme, host, port and path of a URL: no credentials, no query.
pub(crate) fn display_url(url: &reqwest::Url) -> String {
    let mut text = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        text.push_str(&format!(":{port}"));
    }
    text.push_str(url.path());
    text
}

/// Parses a configured endpoint URL; a bad one is a credentials failure
/// (a configuration error) naming the variable it came from.
pub(crate) fn parse_url(url: &str, what: &str) -> Result<reqwest::Url, Failure> {
    reqwest::Url::parse(url)
        .map_err(|e| Failure::Credentials(format!("invalid {what} {url:?}: {e}")))
}

/// `application/x-www-form-urlencoded`, every byte but the unreserved ones
/// percent-encoded (valid for forms and for SigV4 canonical query strings).
pub(crate) fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds as JSON gives them: a number, or a string of digits (Azure IMDS).
pub(crate) fn json_seconds(value: Option<&serde_json::Value>) -> Option<u64> {
    match value? {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The claims of a JWT, without verifying it (only to read `exp` and `tid`
/// of tokens we were just given over TLS).
pub(crate) fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// A cached token or failure and when to ask again.
struct Cached<T> {
    value: Result<T, Failure>,
    refresh_at: SystemTime,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<Cached<T>>>>;

/// Tokens by key, each fetched by one caller at a time (the others wait for
/// its answer), kept until shortly before expiry, failures for the error TTL.
pub(crate) struct TokenCache<T> {
    what: &'static str,
    slots: std::sync::Mutex<HashMap<String, Slot<T>>>,
}

impl<T: Clone> TokenCache<T> {
    pub(crate) fn new(what: &'static str) -> TokenCache<T> {
        TokenCache {
            what,
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cached value for `key`, or the value `fetch` gives with its
    /// expiry time.
    pub(crate) async fn get<F, Fut>(
        &self,
        key: &str,
        context: &Context,
        fetch: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, SystemTime), Failure>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key.to_owned()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        let now = context.now();
        match cached.as_ref() {
            Some(entry) if now < entry.refresh_at => return entry.value.clone(),
            Some(entry) if entry.value.is_ok() => {
                debug!(token = self.what, key, "refreshing token before it expires");
            }
            Some(_) => debug!(token = self.what, key, "asking again after a failure"),
            None => debug!(token = self.what, key, "fetching token"),
        }
        let result = fetch().await;
        let now = context.now();
        let entry = match result {
            Ok((value, expires_at)) => {
                let lifetime = expires_at.duration_since(now).unwrap_or_default();
                let margin = context.refresh_margin.min(lifetime / 2);
                let refresh_at = expires_at.checked_sub(margin).unwrap_or(now);
                debug!(
                    token = self.what,
                    key,
                    valid_for_secs = lifetime.as_secs(),
                    "token fetched"
                );
                Cached {
                    value: Ok(value),
                    refresh_at,
                }
            }
            Err(failure) => {
                debug!(token = self.what, key, error = ?failure, "token request failed");
                Cached {
                    value: Err(failure),
                    refresh_at: now + context.error_ttl,
                }
            }
        };
        let value = entry.value.clone();
        *cached = Some(entry);
        value
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
