//! The reads of the OCI distribution API the pusher makes — HEAD of a
//! manifest, GET of a manifest (by tag or digest), GET of a blob, listings — with the registry's auth
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

use std::time::Duration;

use bytes::Bytes;
use moka::future::Cache;
use oci_client::Reference;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, LOCATION};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::Digest as _;

use super::auth::{
    basic, challenge_error, login_may_go_to, origin, parse_challenge, redirected,
    token_from_answer, Challenge, Target, Token, TokenExpiry, MAX_CHALLENGES, MAX_TOKENS,
};
use super::host_limiter::HostLimiter;
use super::manifest::MAX_DOCUMENT_BYTES;
use super::metrics::Metrics;
use super::{Error, ErrorClass, ResolveError};
use crate::credentials::Login;
use crate::http::{self, ReadError};
use crate::reference::{check_digest, DigestError};

/// Token answers are small; anything bigger is not a token.
const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// How much of an error body is kept for the message.
const MAX_ERROR_BYTES: usize = 1024;

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
    metrics: Metrics,
}

/// What a GET by digest fetches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Content {
    Manifest,
    Blob,
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

/// Redirects followed for one request; registries use one (to a regional
/// mirror or a blob store).
const MAX_REDIRECTS: usize = 5;

impl RegistryClient {
    pub(crate) fn new(settings: ClientSettings, metrics: Metrics) -> Result<Self, Error> {
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
            metrics,
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

    /// The digest a tag points at now and the manifest (or index) it names,
    /// from one GET: what a cold lookup needs, in one request instead of a
    /// HEAD and a GET by digest. The digest is the registry's
    /// `Docker-Content-Digest` when the body hashes to it (a registry that
    /// names another digest than it sends is refused), or the body's own
    /// sha256 when it names none.
    pub(crate) async fn manifest_by_tag(
        &self,
        reference: &Reference,
        credential: Option<&Login>,
    ) -> Result<(String, Bytes), ResolveError> {
        let tag = reference.tag().unwrap_or("latest");
        let request = Request {
            method: Method::GET,
            reference,
            path: format!("manifests/{tag}"),
            accept: Some(ACCEPT_MANIFESTS),
            credential,
        };
        let response = self.send(&request).await?;
        let named = response
            .headers()
            .get("docker-content-digest")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = read(&request, response).await?;
        let digest = match named {
            Some(named) => {
                verify(&body, &named).map_err(|e| request.fail(ErrorClass::BadFormat, e))?;
                named
            }
            None => format!("sha256:{}", hex(&sha2::Sha256::digest(&body))),
        };
        Ok((digest, body))
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
                    target = redirected(request.reference, request.credential, url, &first_origin);
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
        self.metrics
            .requests
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

/// Content a registry named or sent that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("the registry named {0}")]
    Digest(DigestError),
    #[error("the registry sent content whose digest is {actual}, not {expected}")]
    Mismatch { actual: String, expected: String },
}

/// Every manifest type we read (`manifest::ACCEPTED`, checked by a test).
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws";

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
