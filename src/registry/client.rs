//! The three reads of the OCI distribution API the pusher makes — HEAD of a
//! manifest, GET of a manifest, GET of a blob — with the registry's auth
//! challenge answered (Basic, or a Bearer token from its token server).
//!
//! References are oci-client's, but the requests are ours: oci-client hides
//! the response, so `Retry-After` and the registry's error message are lost;
//! its HEAD quietly becomes a GET when the HEAD fails, and Docker Hub counts
//! GETs against pull limits; it keeps the first login it saw for a host; a
//! failed token exchange turns into an anonymous retry; and it buffers
//! manifests whole before any size check. Here every HTTP request is
//! counted by its real status, bodies are read with a bound, and content
//! fetched by digest is verified against it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache;
use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::Digest as _;

use super::limiter::HostLimiter;
use super::manifest::MAX_DOCUMENT_BYTES;
use super::{Error, ErrorClass, ResolveError};
use crate::credentials::Login;
use crate::http::{self, ReadError};
use crate::reference::{check_digest, DigestError};
use crate::telemetry::Telemetry;

/// Token answers are small; anything bigger is not a token.
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// How much of an error body is kept for the message.
const MAX_ERROR_BYTES: usize = 1024;
/// The spec's default token lifetime, when the token server names none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Bounds of a lifetime the token server names: real ones are minutes to
/// hours, and a login revoked at the registry must stop working here too.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const MAX_TOKENS: u64 = 10_000;

/// Settings of a [`RegistryClient`].
pub(crate) struct ClientSettings {
    /// Hosts (`HOST[:PORT]`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// For one HTTP request, body included.
    pub timeout: Duration,
    pub concurrency: usize,
    pub requests_per_second: f64,
}

pub(crate) struct RegistryClient {
    http: reqwest::Client,
    insecure: Vec<String>,
    /// How each origin asked to be authenticated, learnt from its first
    /// 401; bounded, as redirects may lead to any number of hosts.
    challenges: moka::sync::Cache<String, Challenge>,
    /// Bearer tokens by (origin, repository, credential id), kept for their
    /// lifetime; one token request however many lookups need it at once.
    tokens: Cache<(String, String, u64), Token>,
    limiter: HostLimiter,
    telemetry: Arc<Telemetry>,
}

/// What a GET by digest fetches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Content {
    Manifest,
    Blob,
}

/// How a host asked to be authenticated (its `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A Bearer token and how long it may be used.
#[derive(Clone)]
pub struct Token {
    header: HeaderValue,
    lifetime: Duration,
}

/// One read: what is asked of which repository, with which login.
struct Request<'a> {
    method: Method,
    reference: &'a Reference,
    /// `manifests/<tag or digest>` or `blobs/<digest>`.
    path: String,
    accept: Option<&'a str>,
    credential: Option<&'a Login>,
}

impl Request<'_> {
    fn host(&self) -> &str {
        self.reference.resolve_registry()
    }

    fn fail(&self, class: ErrorClass, what: impl std::fmt::Display) -> ResolveError {
        ResolveError::new(class, format!("{}: {what}", self.reference))
    }
}

/// Where a request goes: the registry, or a host it redirected to (a
/// mirror, a CDN). Credentials go only to the registry they are for.
struct Target<'a> {
    url: reqwest::Url,
    /// `host[:port]`, as registries and keyrings name hosts.
    host: String,
    /// `scheme://host:port`, the port made explicit: what a challenge, a
    /// token and a login belong to.
    origin: String,
    /// The repository the URL names, for a token's scope.
    repository: String,
    credential: Option<&'a Login>,
}

impl Target<'_> {
    fn token_key(&self) -> (String, String, u64) {
        (
            self.origin.clone(),
            self.repository.clone(),
            self.credential.map_or(0, Login::id),
        )
    }
}

/// Redirects followed for one request; registries use one (to a regional
/// mirror or a blob store).
const MAX_REDIRECTS: usize = 5;

/// Most origins whose auth challenge is remembered: a registry redirecting
/// to ever-new hosts must not grow the map.
const MAX_CHALLENGES: u64 = 10_000;

/// `scheme://host:port` of `url`, the scheme's default port made explicit,
/// so `https://reg` and `http://reg` (443 and 80) are told apart; `None`
/// for a URL without a host.
fn origin(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!(
        "{}://{}:{port}",
        url.scheme(),
        host.to_ascii_lowercase()
    ))
}

impl RegistryClient {
    pub(crate) fn new(settings: ClientSettings, telemetry: Arc<Telemetry>) -> Result<Self, Error> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "container-image-pusher/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(Duration::from_secs(10).min(settings.timeout))
            .timeout(settings.timeout)
            // Followed by `send`, which answers each host's own auth challenge.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(Error::HttpClient)?;
        Ok(RegistryClient {
            http,
            insecure: settings.insecure,
            challenges: moka::sync::Cache::new(MAX_CHALLENGES),
            tokens: Cache::builder()
                .max_capacity(MAX_TOKENS)
                .expire_after(TokenExpiry)
                .build(),
            limiter: HostLimiter::new(settings.concurrency, settings.requests_per_second),
            telemetry,
        })
    }

    /// The digest a tag points at now, from a HEAD request. A registry that
    /// does not say (no `Docker-Content-Digest`) costs a GET instead.
    pub(crate) async fn manifest_digest(
        &self,
        reference: &Reference,
        credential: Option<&Login>,
    ) -> Result<String, ResolveError> {
        let tag = reference.tag().unwrap_or("latest");
        let mut request = Request {
            method: Method::HEAD,
            reference,
            path: format!("manifests/{tag}"),
            accept: Some(ACCEPT_MANIFESTS),
            credential,
        };
        let response = self.send(&request).await?;
        if let Some(digest) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            return check_digest_syntax(digest).map_err(|e| request.fail(ErrorClass::BadFormat, e));
        }
        request.method = Method::GET;
        let response = self.send(&request).await?;
        let body = read(&request, response).await?;
        Ok(format!("sha256:{}", hex(&sha2::Sha256::digest(&body))))
    }

    /// The manifest (or index) or the blob (an image config) that `digest`
    /// names, verified against it.
    pub(crate) async fn fetch(
        &self,
        reference: &Reference,
        content: Content,
        digest: &str,
        credential: Option<&Login>,
    ) -> Result<Bytes, ResolveError> {
        let (path, accept) = match content {
            Content::Manifest => (format!("manifests/{digest}"), Some(ACCEPT_MANIFESTS)),
            Content::Blob => (format!("blobs/{digest}"), None),
        };
        let request = Request {
            method: Method::GET,
            reference,
            path,
            accept,
            credential,
        };
        // The digest comes from a manifest the registry sent: it must not
        // steer the request anywhere but to content by digest.
        check_digest_syntax(digest).map_err(|e| request.fail(ErrorClass::BadFormat, e))?;
        let response = self.send(&request).await?;
        let body = read(&request, response).await?;
        verify(&body, digest).map_err(|e| request.fail(ErrorClass::BadFormat, e))?;
        Ok(body)
    }

    /// One page of a listing (`referrers/<digest>`, `tags/list`) or a
    /// manifest by tag (`manifests/<tag>`), which no digest can verify:
    /// the body, bounded, and what the answer says about the next page and
    /// about filters. `path` is ours, or a `Link` checked by [`next_page`].
    pub(crate) async fn get_page(
        &self,
        reference: &Reference,
        path: String,
        accept: Option<&str>,
        credential: Option<&Login>,
    ) -> Result<Page, ResolveError> {
        let request = Request {
            method: Method::GET,
            reference,
            path,
            accept,
            credential,
        };
        let response = self.send(&request).await?;
        let headers = response.headers();
        let next = headers
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link)
            .and_then(|link| next_page(reference.repository(), &link));
        let filters_applied = headers
            .get("oci-filters-applied")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect());
        let body = read(&request, response).await?;
        Ok(Page {
            body,
            next,
            filters_applied,
        })
    }

    /// Sends `request`, answering an auth challenge once per host and
    /// following redirects: the first request to a host goes out without
    /// credentials and learns from its 401 how the host wants them; later
    /// ones carry them from the start.
    async fn send(&self, request: &Request<'_>) -> Result<reqwest::Response, ResolveError> {
        let host = request.host();
        let scheme = if self.insecure.iter().any(|h| h == host) {
            "http"
        } else {
            "https"
        };
        let repository = request.reference.repository();
        let url = format!("{scheme}://{host}/v2/{repository}/{}", request.path);
        let url = reqwest::Url::parse(&url)
            .map_err(|e| request.fail(ErrorClass::InvalidReference, format!("{url}: {e}")))?;
        // Where the login goes first: after a redirect it goes only to this
        // very origin, never over a weaker scheme nor to another port.
        let first_origin = origin(&url).ok_or_else(|| {
            request.fail(ErrorClass::InvalidReference, format!("{url} names no host"))
        })?;
        let mut target = Target {
            url,
            host: host.to_owned(),
            origin: first_origin.clone(),
            repository: repository.to_owned(),
            credential: request.credential,
        };
        let mut answered_challenge = false;
        let mut redirects = 0;
        loop {
            let authorization = self.authorization(request, &target).await?;
            let response = self
                .send_once(request, &target, authorization.clone())
                .await?;
            let status = response.status();
            if status.is_redirection() && redirects < MAX_REDIRECTS {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| target.url.join(l).ok());
                if let Some(url) = location {
                    redirects += 1;
                    answered_challenge = false;
                    target = redirected(request, url, &first_origin);
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED && !answered_challenge {
                if let Some(challenge) = parse_challenge(response.headers()) {
                    let retry = match (&challenge, &authorization) {
                        // The host wants a login we do not have, or refused ours.
                        (Challenge::Basic, None) => target.credential.is_some(),
                        (Challenge::Basic, Some(_)) => false,
                        // A token may have expired early or lack the scope.
                        (Challenge::Bearer { .. }, _) => true,
                    };
                    self.tokens.invalidate(&target.token_key()).await;
                    self.challenges.insert(target.origin.clone(), challenge);
                    if retry {
                        answered_challenge = true;
                        continue;
                    }
                }
            }
            return self.check(request, &target, response).await;
        }
    }

    async fn send_once(
        &self,
        request: &Request<'_>,
        target: &Target<'_>,
        authorization: Option<HeaderValue>,
    ) -> Result<reqwest::Response, ResolveError> {
        let host = target.host.as_str();
        let mut builder = self
            .http
            .request(request.method.clone(), target.url.clone());
        if let Some(accept) = request.accept {
            builder = builder.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(AUTHORIZATION, authorization);
        }
        let result = {
            let _permit = self.limiter.acquire(host).await.map_err(|pause| {
                request.fail(
                    ErrorClass::RateLimited,
                    format!("{host} is rate limiting; no requests to it for another {pause:.0?}"),
                )
            })?;
            builder.send().await
        };
        self.count(
            request.host(),
            request.method.as_str(),
            result.as_ref().ok(),
        );
        result.map_err(|e| transport_error(request, &e))
    }

    fn count(&self, host: &str, method: &str, response: Option<&reqwest::Response>) {
        let code = response.map_or("transport", |r| status_label(r.status()));
        self.telemetry
            .registry_requests
            .with_label_values(&[host, method, code])
            .inc();
    }

    /// Turns an error answer into a [`ResolveError`] that says what the
    /// registry said, and pauses a host that asks for it.
    async fn check(
        &self,
        request: &Request<'_>,
        target: &Target<'_>,
        response: reqwest::Response,
    ) -> Result<reqwest::Response, ResolveError> {
        let host = target.host.as_str();
        let status = response.status();
        if status.is_success() {
            self.limiter.answered(host);
            return Ok(response);
        }
        let retry_after = http::retry_after(response.headers());
        let challenge_error = challenge_error(response.headers());
        let body = http::body_excerpt(response, MAX_ERROR_BYTES).await;
        let (code, said) = registry_message(&body);
        let class = match (status, code.as_deref()) {
            (_, Some("TOOMANYREQUESTS")) | (StatusCode::TOO_MANY_REQUESTS, _) => {
                ErrorClass::RateLimited
            }
            (StatusCode::UNAUTHORIZED, _) => ErrorClass::Unauthorized,
            (_, Some("DENIED")) | (StatusCode::FORBIDDEN, _) => ErrorClass::Forbidden,
            (StatusCode::NOT_FOUND, _) => ErrorClass::NotFound,
            (s, _) if s.is_server_error() => ErrorClass::Unavailable,
            _ => ErrorClass::Other,
        };
        let mut message = format!("{} {} answered {status}", request.method, request.path);
        for detail in [challenge_error, said].into_iter().flatten() {
            message.push_str(": ");
            message.push_str(&detail);
        }
        if class == ErrorClass::RateLimited
            || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some())
        {
            let pause = self.limiter.back_off(host, retry_after);
            tracing::warn!(
                host,
                ?pause,
                ?retry_after,
                "registry is rate limiting; pausing requests to it"
            );
            message.push_str(&format!("; pausing requests to {host} for {pause:.0?}"));
        }
        if class == ErrorClass::Unauthorized {
            message.push_str(&match target.credential {
                Some(c) => format!(" (with credentials from {})", c.source),
                None => format!(
                    " (anonymously: no pull secret or docker config has a login for {host})"
                ),
            });
        }
        Err(request.fail(class, message))
    }

    /// What to send in `Authorization` to the target's host for its repository.
    async fn authorization(
        &self,
        request: &Request<'_>,
        target: &Target<'_>,
    ) -> Result<Option<HeaderValue>, ResolveError> {
        match self.challenges.get(&target.origin) {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(target.credential.map(basic)),
            Some(Challenge::Bearer { realm, service }) => self
                .tokens
                .try_get_with(
                    target.token_key(),
                    self.fetch_token(request, target, &realm, service.as_deref()),
                )
                .await
                .map(|token| Some(token.header))
                .map_err(|e| (*e).clone()),
        }
    }

    /// Asks the token server the registry named for a pull token for the
    /// repository, with the login when there is one.
    async fn fetch_token(
        &self,
        request: &Request<'_>,
        target: &Target<'_>,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Token, ResolveError> {
        let token_error = |what: String| {
            let class = if what.contains("answered 401") || what.contains("answered 403") {
                ErrorClass::Unauthorized
            } else {
                ErrorClass::Unavailable
            };
            let from = target.credential.map_or_else(
                || "anonymously".to_owned(),
                |c| format!("with credentials from {}", c.source),
            );
            request.fail(class, format!("token server {realm} ({from}): {what}"))
        };
        let scope = format!("repository:{}:pull", target.repository);
        let mut query = vec![("scope", scope.as_str())];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let realm_url = reqwest::Url::parse(realm)
            .map_err(|e| token_error(format!("the registry named no usable URL: {e}")))?;
        let mut builder = self.http.get(realm_url.clone()).query(&query);
        if let Some(credential) = target.credential {
            if !login_may_go_to(&realm_url, &target.url) {
                return Err(request.fail(
                    ErrorClass::Unauthorized,
                    format!(
                        "the registry sends logins to the token server {realm}, plain HTTP on another host: the login from {} is not sent there",
                        credential.source
                    ),
                ));
            }
            builder = builder.header(AUTHORIZATION, basic(credential));
        }
        let realm_host = match (realm_url.host_str(), realm_url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (host, None) => host.unwrap_or_default().to_owned(),
            (None, Some(_)) => String::new(),
        };
        // Token servers are treated as politely as registries.
        let result = {
            let _permit = self.limiter.acquire(&realm_host).await.map_err(|pause| {
                token_error(format!(
                    "{realm_host} is rate limiting; no requests to it for another {pause:.0?}"
                ))
            })?;
            builder.send().await
        };
        // Counted under the registry's host: the token server is the
        // registry's to name, and a metric label must not grow with it.
        self.count(request.host(), "GET", result.as_ref().ok());
        let response = result.map_err(|e| token_error(crate::describe_error(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let body = http::body_excerpt(response, MAX_ERROR_BYTES).await;
            let said = registry_message(&body).1.unwrap_or(body);
            return Err(token_error(format!("answered {status}: {said}")));
        }
        let body = http::read_limited(response, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| token_error(e.to_string()))?;
        token_from_answer(&body).map_err(|e| token_error(e.to_string()))
    }
}

/// Why a token server's answer holds no usable token. Never quotes the
/// token: the answer is a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the answer is not a token: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the answer holds no token")]
    NoToken,
    #[error("the token is not a valid header value")]
    NotAHeader,
}

/// Content a registry named or sent that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("the registry named {0}")]
    Digest(DigestError),
    #[error("the registry sent content whose digest is {actual}, not {expected}")]
    Mismatch { actual: String, expected: String },
}

/// The token in a token server's answer (`token` or `access_token`, and
/// `expires_in`). The entry point for its untrusted bytes, public for the
/// fuzz targets.
pub fn token_from_answer(body: &[u8]) -> Result<Token, TokenError> {
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(TokenError::NotJson)?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::NoToken)?;
    let mut header =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| TokenError::NotAHeader)?;
    header.set_sensitive(true);
    Ok(Token {
        header,
        lifetime: token_lifetime(answer.expires_in.as_ref()),
    })
}

/// Whether the login for the registry reached at `registry_url` may go to
/// the token server its challenge names. The token protocol sends it there,
/// and that may be another host (Docker Hub's is auth.docker.io): over
/// HTTPS, wherever the registry says; over plain HTTP, only to the
/// registry's own origin (scheme, host and port, default ports explicit),
/// and only when the registry is itself spoken to over plain HTTP
/// (`--insecure-registry`) — anywhere else, anyone on the path would read it.
fn login_may_go_to(realm: &reqwest::Url, registry_url: &reqwest::Url) -> bool {
    match realm.scheme() {
        "https" => true,
        "http" => registry_url.scheme() == "http" && origin(realm) == origin(registry_url),
        _ => false,
    }
}

/// A token server's answer. `issued_at` is not read: lifetimes count from
/// when the answer arrives, so neither clock skew nor a forged date can
/// stretch or shrink them.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    /// Any JSON, so that a negative, fractional or absurd number (or a
    /// string) costs the token its lifetime, not the token itself.
    expires_in: Option<serde_json::Value>,
}

/// How long a token is kept: the seconds the token server names, within
/// [`MIN_TOKEN_LIFETIME`]..=[`MAX_TOKEN_LIFETIME`], or the spec's default
/// when it names none, zero, a negative number or no number at all;
/// renewed a tenth early, so a token does not expire in flight.
fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let lifetime = expires_in
        .and_then(serde_json::Value::as_f64)
        .filter(|&seconds| seconds > 0.0)
        .map_or(DEFAULT_TOKEN_LIFETIME, |seconds| {
            Duration::from_secs_f64(seconds.clamp(
                MIN_TOKEN_LIFETIME.as_secs_f64(),
                MAX_TOKEN_LIFETIME.as_secs_f64(),
            ))
        });
    lifetime - lifetime / 10
}

struct TokenExpiry;

impl moka::Expiry<(String, String, u64), Token> for TokenExpiry {
    fn expire_after_create(
        &self,
        _: &(String, String, u64),
        token: &Token,
        _: Instant,
    ) -> Option<Duration> {
        Some(token.lifetime)
    }
}

/// Every manifest type we read (`manifest::ACCEPTED`, checked by a test).
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The target a redirect leads to. The repository is read from the new
/// URL (`/v2/<name>/manifests/…` or `/blobs/…`), as a mirror may name it
/// differently; logins stay with the origin they were first sent to
/// (`first_origin`): not another host or port, and not the same host over
/// plain HTTP (curl's CVE-2022-27776 is this class of leak).
fn redirected<'a>(request: &Request<'a>, url: reqwest::Url, first_origin: &str) -> Target<'a> {
    let origin = origin(&url).unwrap_or_default();
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    };
    let repository = url
        .path()
        .strip_prefix("/v2/")
        .and_then(|rest| {
            rest.rsplit_once("/manifests/")
                .or_else(|| rest.rsplit_once("/blobs/"))
        })
        .map_or_else(
            || request.reference.repository().to_owned(),
            |(name, _)| name.to_owned(),
        );
    let credential = request.credential.filter(|_| origin == first_origin);
    Target {
        url,
        host,
        origin,
        repository,
        credential,
    }
}

fn basic(credential: &Login) -> HeaderValue {
    use base64::Engine as _;
    let login = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credential.username, credential.password));
    let mut header =
        HeaderValue::from_str(&format!("Basic {login}")).expect("base64 is a valid header value");
    header.set_sensitive(true);
    header
}

async fn read(request: &Request<'_>, response: reqwest::Response) -> Result<Bytes, ResolveError> {
    http::read_limited(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge { .. } => {
                request.fail(ErrorClass::BadFormat, format!("{}: {e}", request.path))
            }
            ReadError::Transport(t) => transport_error(request, &t),
        })
}

fn transport_error(request: &Request<'_>, error: &reqwest::Error) -> ResolveError {
    let class = if error.is_timeout() {
        ErrorClass::Timeout
    } else {
        ErrorClass::Unavailable
    };
    request.fail(
        class,
        format!(
            "{} {}: {}",
            request.method,
            request.path,
            crate::describe_error(error)
        ),
    )
}

/// A status as a metric label: the codes registries use, and classes for
/// the rest so a hostile registry cannot grow the label set.
fn status_label(status: StatusCode) -> &'static str {
    const KNOWN: [&str; 11] = [
        "200", "307", "400", "401", "403", "404", "429", "500", "502", "503", "504",
    ];
    let code = status.as_str();
    KNOWN
        .into_iter()
        .find(|k| *k == code)
        .unwrap_or(match status.as_u16() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        })
}

/// One answer of [`RegistryClient::get_page`].
pub(crate) struct Page {
    pub body: Bytes,
    /// The path (relative to the repository) of the next page, when the
    /// answer named one in its repository.
    pub next: Option<String>,
    /// `OCI-Filters-Applied`: which of the asked filters the registry applied.
    pub filters_applied: Option<String>,
}

/// The target of a `Link: <…>; rel="next"` header value (RFC 8288; the
/// distribution spec's pagination).
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim();
                p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
            })
            .then(|| target.to_owned())
    })
}

/// The next page as a path under `/v2/<repository>/`, or `None` when the
/// link leads elsewhere: a registry's `Link` must not steer requests (and
/// credentials) to another repository, host or kind of request.
fn next_page(repository: &str, link: &str) -> Option<String> {
    let path = match link.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => link,
    };
    let rest = path
        .strip_prefix("/v2/")?
        .strip_prefix(repository)?
        .strip_prefix('/')?;
    let listing = rest.starts_with("referrers/") || rest.starts_with("tags/list");
    let clean = rest.len() <= 2048
        && !rest.contains("..")
        && rest
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'#' && b != b'\\');
    (listing && clean).then(|| rest.to_owned())
}

/// `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`. The
/// entry point for a registry's untrusted `WWW-Authenticate`, public for
/// the fuzz targets.
pub fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let value = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = challenge_params(params);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
    })
}

/// The `error` and `error_description` of a Bearer challenge, which say why
/// a token was refused (a HEAD answer has no body to say it). Public for
/// the fuzz targets.
pub fn challenge_error(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let params = challenge_params(value.split_once(' ')?.1);
    let error = params.get("error")?;
    Some(match params.get("error_description") {
        Some(description) => format!("{error} ({description})"),
        None => error.clone(),
    })
}

/// `key="value", key=value` pairs; quoted values may hold commas.
fn challenge_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key, value.trim().to_owned());
        rest = remainder.trim_start().trim_start_matches(',');
    }
    params
}

/// The first error of a registry's JSON error body, as (code, "CODE: message"),
/// or the body itself when it is not one.
fn registry_message(body: &str) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if body.is_empty() {
        return (None, None);
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(envelope) => match envelope.errors.into_iter().next() {
            Some(entry) => {
                let code = entry.code.map(|c| c.to_ascii_uppercase());
                let text = match (&code, entry.message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.clone(),
                    (None, Some(m)) => m,
                    (None, None) => body.to_owned(),
                };
                (code, Some(text))
            }
            None => (None, Some(body.to_owned())),
        },
        Err(_) => (None, Some(body.to_owned())),
    }
}

/// A digest a registry named (in `Docker-Content-Digest`, or in a manifest
/// it sent), if it is one content can be verified against. The entry point
/// for those untrusted bytes, public for the fuzz targets.
pub fn check_digest_syntax(digest: &str) -> Result<String, ContentError> {
    check_digest(digest)
        .map(|()| digest.to_owned())
        .map_err(ContentError::Digest)
}

/// Content fetched by digest must hash to it; a digest we cannot compute is
/// refused, never taken on trust. Public for the fuzz targets.
pub fn verify(body: &[u8], digest: &str) -> Result<(), ContentError> {
    check_digest(digest).map_err(ContentError::Digest)?;
    let actual = match digest.split_once(':') {
        Some(("sha512", _)) => format!("sha512:{}", hex(&sha2::Sha512::digest(body))),
        _ => format!("sha256:{}", hex(&sha2::Sha256::digest(body))),
    };
    if actual == digest {
        Ok(())
    } else {
        Err(ContentError::Mismatch {
            actual,
            expected: digest.to_owned(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(challenge: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, challenge.parse().unwrap());
        headers
    }

    #[test]
    fn challenges_as_registries_send_them() {
        assert_eq!(
            parse_challenge(&headers(r#"Basic realm="Registry Realm""#)),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(&headers(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#
            )),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(&headers(
                r#"bearer realm=https://t.example/token, service=reg"#
            )),
            Some(Challenge::Bearer {
                realm: "https://t.example/token".into(),
                service: Some("reg".into())
            })
        );
        assert_eq!(
            parse_challenge(&headers("Bearer service=x")),
            None,
            "no realm"
        );
        assert_eq!(parse_challenge(&headers("Negotiate abc")), None);
        assert_eq!(
            challenge_error(&headers(
                r#"Bearer realm="r",error="insufficient_scope",error_description="no access""#
            )),
            Some("insufficient_scope (no access)".into())
        );
    }

    #[test]
    fn token_lifetimes_are_bounded_whatever_the_token_server_says() {
        let lifetime = |json: &str| {
            let answer: TokenAnswer = serde_json::from_str(json).expect(json);
            token_lifetime(answer.expires_in.as_ref())
        };
        let renewed = |seconds: u64| Duration::from_secs(seconds) * 9 / 10;
        assert_eq!(lifetime(r#"{"token":"t","expires_in":300}"#), renewed(300));
        assert_eq!(
            lifetime(r#"{"token":"t","expires_in":18446744073709551615}"#),
            renewed(86_400),
            "u64::MAX seconds used to overflow the renewal arithmetic"
        );
        assert_eq!(
            lifetime(r#"{"token":"t","expires_in":1e300}"#),
            renewed(86_400)
        );
        assert_eq!(
            lifetime(r#"{"token":"t","expires_in":-9223372036854775808}"#),
            renewed(60)
        );
        for default in [
            r#"{"token":"t"}"#,
            r#"{"token":"t","expires_in":0}"#,
            r#"{"token":"t","expires_in":-1}"#,
            r#"{"token":"t","expires_in":null}"#,
            r#"{"token":"t","expires_in":"forever"}"#,
            r#"{"token":"t","expires_in":[1]}"#,
        ] {
            assert_eq!(lifetime(default), renewed(60), "{default}");
        }
        assert_eq!(
            lifetime(r#"{"token":"t","expires_in":0.001}"#),
            renewed(1),
            "at least a second"
        );
        assert_eq!(
            lifetime(r#"{"token":"t","expires_in":90.5}"#),
            Duration::from_secs_f64(90.5) * 9 / 10
        );
        assert_eq!(
            lifetime(r#"{"token":"t","expires_in":300,"issued_at":"99999-01-01T00:00:00Z"}"#),
            renewed(300),
            "issued_at is not read"
        );
    }

    #[test]
    fn logins_go_to_https_token_servers_or_the_plain_http_registry_itself() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let hub = url("https://registry-1.docker.io/v2/library/nginx/manifests/1");
        assert!(login_may_go_to(&url("https://auth.docker.io/token"), &hub));
        assert!(!login_may_go_to(&url("http://auth.docker.io/token"), &hub));
        assert!(
            !login_may_go_to(&url("http://registry-1.docker.io/token"), &hub),
            "no downgrade from an HTTPS registry"
        );
        assert!(
            !login_may_go_to(&url("http://registry-1.docker.io:443/token"), &hub),
            "not even on the HTTPS port"
        );
        let insecure = url("http://127.0.0.1:5000/v2/a/manifests/1");
        assert!(login_may_go_to(
            &url("http://127.0.0.1:5000/token"),
            &insecure
        ));
        assert!(
            !login_may_go_to(&url("http://127.0.0.1:5001/token"), &insecure),
            "another port is another host"
        );
        assert!(!login_may_go_to(
            &url("http://elsewhere.example/token"),
            &insecure
        ));
        assert!(login_may_go_to(
            &url("https://elsewhere.example/token"),
            &insecure
        ));
        let default_port = url("http://registry.local/v2/a/manifests/1");
        assert!(login_may_go_to(
            &url("http://registry.local:80/token"),
            &default_port
        ));
        assert!(!login_may_go_to(
            &url("ftp://127.0.0.1:5000/token"),
            &insecure
        ));
    }

    #[test]
    fn origins_make_default_ports_explicit() {
        let origin = |u: &str| origin(&reqwest::Url::parse(u).unwrap()).unwrap();
        assert_eq!(origin("https://Reg.example/v2/"), "https://reg.example:443");
        assert_eq!(
            origin("https://reg.example:443/v2/"),
            "https://reg.example:443"
        );
        assert_eq!(origin("http://reg.example/v2/"), "http://reg.example:80");
        assert_ne!(origin("https://reg:5000/"), origin("http://reg:5000/"));
    }

    #[test]
    fn logins_follow_redirects_only_to_the_origin_they_were_first_sent_to() {
        let login = Login {
            username: "user".into(),
            password: "secret".into(),
            source: "test".into(),
        };
        let reference: Reference = "reg.example/team/app:1".parse().unwrap();
        let request = Request {
            method: Method::GET,
            reference: &reference,
            path: "manifests/1".into(),
            accept: None,
            credential: Some(&login),
        };
        let first = "https://reg.example:443";
        let follow = |to: &str| {
            let url = reqwest::Url::parse(to).unwrap();
            redirected(&request, url, first).credential.is_some()
        };
        assert!(follow("https://reg.example/v2/team/app/manifests/1"));
        assert!(follow("https://reg.example:443/v2/team/app/manifests/1"));
        for elsewhere in [
            "http://reg.example/v2/team/app/manifests/1",
            "http://reg.example:443/v2/team/app/manifests/1",
            "https://reg.example:8443/v2/team/app/manifests/1",
            "https://mirror.example/v2/team/app/manifests/1",
        ] {
            assert!(!follow(elsewhere), "{elsewhere}");
        }
    }

    #[test]
    fn registry_messages_from_error_bodies() {
        assert_eq!(
            registry_message(
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#
            ),
            (
                Some("DENIED".into()),
                Some("DENIED: requested access to the resource is denied".into())
            )
        );
        assert_eq!(
            registry_message("upstream exploded"),
            (None, Some("upstream exploded".into()))
        );
        assert_eq!(registry_message(""), (None, None));
    }

    #[test]
    fn content_is_verified_against_its_digest() {
        let digest = format!("sha256:{}", hex(&sha2::Sha256::digest(b"{}")));
        assert_eq!(verify(b"{}", &digest), Ok(()));
        assert!(verify(b"{ }", &digest)
            .unwrap_err()
            .to_string()
            .contains("not sha256:"));
        let sha512 = format!("sha512:{}", hex(&sha2::Sha512::digest(b"{}")));
        assert_eq!(verify(b"{}", &sha512), Ok(()));
        assert!(verify(b"{ }", &sha512)
            .unwrap_err()
            .to_string()
            .contains("not sha512:"));
        let evil = format!("evil:{}", "cd".repeat(32));
        assert!(
            verify(b"anything", &evil).is_err(),
            "an algorithm we cannot compute is refused"
        );
        assert!(verify(b"anything", "blake3:abc").is_err());
        assert!(check_digest_syntax(&digest).is_ok());
        assert!(check_digest_syntax(&evil)
            .unwrap_err()
            .to_string()
            .contains("not a sha256 or sha512 digest"));
        assert!(check_digest_syntax("sha256:ab12").is_err());
        assert!(check_digest_syntax("sha256:").is_err());
        assert!(check_digest_syntax("<html>").is_err());
        assert!(check_digest_syntax("sha256:../../v2/other/blobs").is_err());
        assert!(check_digest_syntax("a/../b:ff").is_err());
    }

    #[test]
    fn next_pages_stay_in_the_repository_and_its_listing() {
        let link = r#"</v2/team/app/referrers/sha256:ab?n=1&last=x>; rel="next""#;
        let target = next_link(link).unwrap();
        assert_eq!(
            next_page("team/app", &target).as_deref(),
            Some("referrers/sha256:ab?n=1&last=x")
        );
        assert_eq!(
            next_page(
                "team/app",
                "https://evil.example/v2/team/app/tags/list?last=b"
            )
            .as_deref(),
            Some("tags/list?last=b"),
            "only the path is kept: the host stays the registry's"
        );
        assert_eq!(next_link(r#"</v2/a/tags/list?last=b>; rel="prev""#), None);
        for elsewhere in [
            "/v2/other/tags/list",
            "/v2/team/app/blobs/sha256:ab",
            "/v2/team/app/referrers/../../other/tags/list",
            "/v2/team/application/tags/list",
            "/token?scope=x",
        ] {
            assert_eq!(next_page("team/app", elsewhere), None, "{elsewhere}");
        }
    }

    #[test]
    fn accept_header_names_every_accepted_type() {
        let named: Vec<&str> = ACCEPT_MANIFESTS.split(", ").collect();
        assert_eq!(named, crate::registry::manifest::ACCEPTED);
    }
}
