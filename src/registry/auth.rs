//! The registry's auth policy: how a host asked to be authenticated (its
//! challenge), Bearer tokens from its token server and how long they are
//! kept, and where a login may go — only to the origin it was first sent
//! to, and to a token server only over HTTPS or to the plain-HTTP registry
//! itself. The HTTP exchanges are the registry client's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oci_client::Reference;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;

use crate::credentials::Login;

/// The spec's default token lifetime, when the token server names none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Bounds of a lifetime the token server names: real ones are minutes to
/// hours, and a login revoked at the registry must stop working here too.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub(super) const MAX_TOKENS: u64 = 10_000;

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
    pub(super) header: HeaderValue,
    lifetime: Duration,
}

/// Where a request goes: the registry, or a host it redirected to (a
/// mirror, a CDN). Credentials go only to the registry they are for.
pub(super) struct Target<'a> {
    pub(super) url: reqwest::Url,
    /// `host[:port]`, as registries and keyrings name hosts.
    pub(super) host: String,
    /// `scheme://host:port`, the port made explicit: what a challenge, a
    /// token and a login belong to.
    pub(super) origin: String,
    /// The repository the URL names, for a token's scope.
    pub(super) repository: String,
    pub(super) credential: Option<&'a Login>,
}

impl Target<'_> {
    pub(super) fn token_key(&self) -> (String, String, u64) {
        (
            self.origin.clone(),
            self.repository.clone(),
            self.credential.map_or(0, Login::id),
        )
    }
}

/// Most origins whose auth challenge is remembered: a registry redirecting
/// to ever-new hosts must not grow the map.
pub(super) const MAX_CHALLENGES: u64 = 10_000;

/// `scheme://host:port` of `url`, the scheme's default port made explicit,
/// so `https://reg` and `http://reg` (443 and 80) are told apart; `None`
/// for a URL without a host.
pub(super) fn origin(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!(
        "{}://{}:{port}",
        url.scheme(),
        host.to_ascii_lowercase()
    ))
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
pub(super) fn login_may_go_to(realm: &reqwest::Url, registry_url: &reqwest::Url) -> bool {
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
pub(super) fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
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

pub(super) struct TokenExpiry;

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

/// The target a redirect leads to. The repository is read from the new
/// URL (`/v2/<name>/manifests/…` or `/blobs/…`), as a mirror may name it
/// differently; logins stay with the origin they were first sent to
/// (`first_origin`): not another host or port, and not the same host over
/// plain HTTP (curl's CVE-2022-27776 is this class of leak).
pub(super) fn redirected<'a>(
    reference: &Reference,
    credential: Option<&'a Login>,
    url: reqwest::Url,
    first_origin: &str,
) -> Target<'a> {
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
            || reference.repository().to_owned(),
            |(name, _)| name.to_owned(),
        );
    let credential = credential.filter(|_| origin == first_origin);
    Target {
        url,
        host,
        origin,
        repository,
        credential,
    }
}

/// `Authorization: Basic …` for a login; marked sensitive, so it is never
/// logged.
pub(super) fn basic(credential: &Login) -> HeaderValue {
    use base64::Engine as _;
    let login = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credential.username, credential.password));
    let mut header =
        HeaderValue::from_str(&format!("Basic {login}")).expect("base64 is a valid header value");
    header.set_sensitive(true);
    header
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
        let first = "https://reg.example:443";
        let follow = |to: &str| {
            let url = reqwest::Url::parse(to).unwrap();
            redirected(&reference, Some(&login), url, first)
                .credential
                .is_some()
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
}
