//! Cloud registry credentials against local stand-ins of the token endpoints:
//! ECR (SigV4-signed `GetAuthorizationToken`, STS web identity), the Google
//! metadata server, and Azure AAD, IMDS and the registry's token exchange.
//! Time is a test clock, so expiry and refresh need no waiting.
#![cfg(any(feature = "ecr", feature = "gcr", feature = "acr"))]
// Shared helpers some providers do not use when built alone.
#![cfg_attr(
    not(all(feature = "ecr", feature = "gcr", feature = "acr")),
    allow(dead_code, unused_imports)
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use container_image_pusher::credentials::cloud::{
    Clock, CloudCredentials, CloudError, Provider, Settings,
};
use container_image_pusher::credentials::Login;

/// 2024-05-01T12:00:00Z.
const BASE: u64 = 1_714_564_800;

/// A clock tests move forward by hand.
#[derive(Clone)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn new() -> TestClock {
        TestClock(Arc::new(AtomicU64::new(0)))
    }

    fn clock(&self) -> Clock {
        let offset = self.0.clone();
        Clock::new(move || {
            SystemTime::UNIX_EPOCH + Duration::from_secs(BASE + offset.load(Ordering::SeqCst))
        })
    }

    fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Unix seconds now.
    fn now(&self) -> u64 {
        BASE + self.0.load(Ordering::SeqCst)
    }
}

fn settings(clock: &TestClock) -> Settings {
    Settings {
        clock: clock.clock(),
        timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn form(&self) -> HashMap<String, String> {
        form_decode(&self.body)
    }
}

/// The answer to the `n`th request (from 1): status and body. A check that
/// fails answers 400 with what was wrong, which the test then shows.
type Respond = dyn Fn(&Request, usize) -> (StatusCode, String) + Send + Sync;

/// A token endpoint: records requests, answers through `respond`.
struct StandIn {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl StandIn {
    async fn start(
        delay: Duration,
        respond: impl Fn(&Request, usize) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> StandIn {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Respond> = Arc::new(respond);
        let recorded = requests.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let recorded = recorded.clone();
                let respond = respond.clone();
                async move {
                    let request = Request {
                        method,
                        path: uri.path().to_owned(),
                        query: uri.query().unwrap_or_default().to_owned(),
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let n = {
                        let mut requests = recorded.lock().unwrap();
                        requests.push(request.clone());
                        requests.len()
                    };
                    // A slow token service, when a test asks for one: the
                    // delay is the peer's behaviour, not a wait.
                    tokio::time::sleep(delay).await;
                    respond(&request, n)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn count_path(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    fn last(&self) -> Request {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }
}

/// An address where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn form_decode(body: &str) -> HashMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Checks each `(what, actual, expected)`; the first mismatch as an error.
fn expect(checks: &[(&str, &str, &str)]) -> Result<(), String> {
    for (what, actual, expected) in checks {
        if actual != expected {
            return Err(format!("{what} is {actual:?}, expected {expected:?}"));
        }
    }
    Ok(())
}

fn bad_request(reason: String) -> (StatusCode, String) {
    (
        StatusCode::BAD_REQUEST,
        format!("stand-in check failed: {reason}"),
    )
}

fn ok(result: Option<Result<Login, CloudError>>) -> Login {
    match result {
        Some(Ok(login)) => login,
        Some(Err(e)) => panic!("login failed: {e}"),
        None => panic!("no provider for the host"),
    }
}

fn err(result: Option<Result<Login, CloudError>>) -> CloudError {
    match result {
        Some(Err(e)) => e,
        Some(Ok(login)) => panic!("expected a failure, got {login:?}"),
        None => panic!("no provider for the host"),
    }
}

fn jwt(claims: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"signature")
    )
}

#[test]
fn hosts_are_matched_to_enabled_providers_only() {
    // Every compiled-in provider, as from an empty environment.
    let all = CloudCredentials::with_settings(Settings::from_lookup(&|_| None))
        .expect("the HTTP clients build");
    let cases: &[(&str, Option<Provider>)] = &[
        #[cfg(feature = "ecr")]
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            Some(Provider::Ecr),
        ),
        #[cfg(feature = "ecr")]
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443",
            Some(Provider::Ecr),
        ),
        #[cfg(feature = "ecr")]
        (
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            Some(Provider::Ecr),
        ),
        #[cfg(feature = "ecr")]
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            Some(Provider::Ecr),
        ),
        #[cfg(feature = "gcr")]
        ("gcr.io", Some(Provider::Google)),
        #[cfg(feature = "gcr")]
        ("eu.gcr.io:443", Some(Provider::Google)),
        #[cfg(feature = "gcr")]
        ("europe-docker.pkg.dev", Some(Provider::Google)),
        #[cfg(feature = "gcr")]
        ("US-Central1-Docker.pkg.dev", Some(Provider::Google)),
        #[cfg(feature = "acr")]
        ("myreg.azurecr.io", Some(Provider::Acr)),
        #[cfg(feature = "acr")]
        ("MyReg.azurecr.io:8443", Some(Provider::Acr)),
        #[cfg(feature = "acr")]
        ("myreg.azurecr.cn", Some(Provider::Acr)),
        #[cfg(feature = "acr")]
        ("myreg.azurecr.us", Some(Provider::Acr)),
        ("docker.io", None),
        ("registry-1.docker.io", None),
        ("ghcr.io", None),
        ("quay.io", None),
        ("registry.k8s.io", None),
        ("mcr.microsoft.com", None),
        ("public.ecr.aws", None),
        ("localhost:5000", None),
        ("127.0.0.1:5000", None),
        ("[::1]:5000", None),
        ("gcr.io.evil.example", None),
        ("evilgcr.io", None),
        ("myreg.azurecr.io.evil.example", None),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example",
            None,
        ),
        ("", None),
    ];
    for (host, provider) in cases {
        assert_eq!(all.provider_for(host), *provider, "{host}");
    }
    // A provider that is not enabled matches nothing.
    let none =
        CloudCredentials::with_settings(Settings::default()).expect("the HTTP clients build");
    assert!(none.providers().is_empty());
    for (host, _) in cases {
        assert_eq!(none.provider_for(host), None, "{host}");
    }
    // from_env configures whatever the environment says; it never fails.
    let _ = Settings::from_env();
}

#[tokio::test]
async fn hosts_of_no_provider_need_no_login() {
    let credentials = CloudCredentials::with_settings(Settings::from_lookup(&|_| None))
        .expect("the HTTP clients build");
    for host in ["docker.io", "ghcr.io", "localhost:5000"] {
        assert!(credentials.login(host).await.is_none(), "{host}");
    }
}

#[cfg(feature = "ecr")]
mod ecr {
    use super::*;
    use base64::Engine;
    use container_image_pusher::credentials::cloud::ecr::{
        authorization_header, AwsCredentialSource, AwsCredentials, EcrSettings, SignedRequest,
    };

    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn keys() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "test-secret-access-key".into(),
            session_token: Some("test-session-token".into()),
        }
    }

    fn ecr_settings(clock: &TestClock, credentials: AwsCredentialSource, ecr: &str) -> Settings {
        Settings {
            ecr: Some(EcrSettings {
                credentials,
                region: None,
                ecr_endpoint: Some(ecr.to_owned()),
                sts_endpoint: None,
            }),
            ..settings(clock)
        }
    }

    fn amz_date(unix: u64) -> String {
        chrono::DateTime::from_timestamp(unix as i64, 0)
            .unwrap()
            .format("%Y%m%dT%H%M%SZ")
            .to_string()
    }

    /// Checks a `GetAuthorizationToken` request as ECR would, recomputing
    /// the signature over the headers as received.
    fn check_request(
        request: &Request,
        credentials: &AwsCredentials,
        now: u64,
        account: &str,
    ) -> Result<(), String> {
        let date = amz_date(now);
        expect(&[
            ("method", request.method.as_str(), "POST"),
            ("path", &request.path, "/"),
            (
                "x-amz-target",
                request.header("x-amz-target"),
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            ),
            (
                "content-type",
                request.header("content-type"),
                "application/x-amz-json-1.1",
            ),
            ("x-amz-date", request.header("x-amz-date"), &date),
            (
                "x-amz-security-token",
                request.header("x-amz-security-token"),
                credentials.session_token.as_deref().unwrap_or_default(),
            ),
            (
                "body",
                &request.body,
                &format!(r#"{{"registryIds":["{account}"]}}"#),
            ),
        ])?;
        let authorization = request.header("authorization");
        let prefix = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/eu-west-1/ecr/aws4_request, SignedHeaders=",
            credentials.access_key_id,
            &date[..8]
        );
        let rest = authorization.strip_prefix(&prefix).ok_or_else(|| {
            format!("authorization {authorization:?} does not start with {prefix:?}")
        })?;
        let (signed_headers, signature) = rest
            .split_once(", Signature=")
            .ok_or_else(|| format!("no signature in {authorization:?}"))?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("signature {signature:?} is not 64 hex digits"));
        }
        for needed in [
            "content-type",
            "host",
            "x-amz-date",
            "x-amz-security-token",
            "x-amz-target",
        ] {
            if !signed_headers.split(';').any(|h| h == needed) {
                return Err(format!("{needed} is not signed: {signed_headers}"));
            }
        }
        let headers: Vec<(String, String)> = signed_headers
            .split(';')
            .map(|name| (name.to_owned(), request.header(name).to_owned()))
            .collect();
        let expected = authorization_header(
            credentials,
            "eu-west-1",
            "ecr",
            &SignedRequest {
                method: "POST",
                path: "/",
                query: &[],
                headers: &headers,
                payload: request.body.as_bytes(),
            },
        );
        expect(&[("authorization", authorization, &expected)])
    }

    fn token_answer(password: &str, expires_at: u64) -> String {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
        format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires_at}.0,"proxyEndpoint":"https://{HOST}"}}]}}"#
        )
    }

    /// An ECR stand-in that checks requests signed with `credentials` and
    /// hands out `ecr-password-<n>` valid for 12 hours.
    async fn ecr_stand_in(clock: &TestClock, credentials: AwsCredentials) -> StandIn {
        let clock = clock.clone();
        StandIn::start(Duration::ZERO, move |request, n| {
            let account = serde_json::from_str::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|b| b["registryIds"][0].as_str().map(str::to_owned))
                .unwrap_or_default();
            match check_request(request, &credentials, clock.now(), &account) {
                Ok(()) => (
                    StatusCode::OK,
                    token_answer(&format!("ecr-password-{n}"), clock.now() + 12 * 3600),
                ),
                Err(reason) => bad_request(reason),
            }
        })
        .await
    }

    #[tokio::test]
    async fn signed_token_request_cached_until_shortly_before_expiry() {
        let clock = TestClock::new();
        let ecr = ecr_stand_in(&clock, keys()).await;
        let credentials = CloudCredentials::with_settings(ecr_settings(
            &clock,
            AwsCredentialSource::Static(keys()),
            &ecr.url(),
        ))
        .expect("the HTTP clients build");
        let login = ok(credentials.login(HOST).await);
        assert_eq!(
            login,
            Login {
                username: "AWS".into(),
                password: "ecr-password-1".into(),
                source: format!("the pod's cloud identity for {HOST}"),
            }
        );
        assert_eq!(ecr.count(), 1);

        // Within expiry: no request, also with the port written out.
        clock.advance(11 * 3600);
        assert_eq!(ok(credentials.login(HOST).await), login);
        let with_port = ok(credentials.login(&format!("{HOST}:443")).await);
        assert_eq!(with_port.password, login.password);
        assert_eq!(ecr.count(), 1);

        // Less than five minutes before expiry: refreshed, signed for the new date.
        clock.advance(3600 - 4 * 60);
        assert_eq!(ok(credentials.login(HOST).await).password, "ecr-password-2");
        assert_eq!(ecr.count(), 2);
        assert_eq!(ok(credentials.login(HOST).await).password, "ecr-password-2");
        assert_eq!(ecr.count(), 2);

        // Another account is another token.
        let other = "210987654321.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(
            ok(credentials.login(other).await).password,
            "ecr-password-3"
        );
        assert!(ecr.last().body.contains("210987654321"));
    }

    #[tokio::test]
    async fn web_identity_credentials_from_sts() {
        let clock = TestClock::new();
        let temporary = AwsCredentials {
            access_key_id: "ASIATEMPORARY".into(),
            secret_access_key: "temporary-secret".into(),
            session_token: Some("temporary-session-token".into()),
        };
        let ecr = ecr_stand_in(&clock, temporary.clone()).await;
        let sts_clock = clock.clone();
        let sts = StandIn::start(Duration::ZERO, move |request, _| {
            let form = request.form();
            let field = |name: &str| form.get(name).cloned().unwrap_or_default();
            let checks = expect(&[
                ("method", request.method.as_str(), "POST"),
                (
                    "content-type",
                    request.header("content-type"),
                    "application/x-www-form-urlencoded",
                ),
                ("authorization", request.header("authorization"), ""),
                ("Action", &field("Action"), "AssumeRoleWithWebIdentity"),
                ("Version", &field("Version"), "2011-06-15"),
                ("RoleArn", &field("RoleArn"), "arn:aws:iam::123456789012:role/pusher"),
                ("RoleSessionName", &field("RoleSessionName"), "pusher-test"),
            ]);
            if let Err(reason) = checks {
                return bad_request(reason);
            }
            let expiration = chrono::DateTime::from_timestamp(sts_clock.now() as i64 + 3600, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            (
                StatusCode::OK,
                format!(
                    r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:monitoring:pusher</SubjectFromWebIdentityToken>
    <Credentials>
      <SessionToken>temporary-session-token</SessionToken>
      <SecretAccessKey>temporary-secret</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>ASIATEMPORARY</AccessKeyId>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#
                ),
            )
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "web-identity-token-1\n").unwrap();
        let mut settings = ecr_settings(
            &clock,
            AwsCredentialSource::WebIdentity {
                token_file: token_file.clone(),
                role_arn: "arn:aws:iam::123456789012:role/pusher".into(),
                session_name: "pusher-test".into(),
            },
            &ecr.url(),
        );
        settings.ecr.as_mut().unwrap().sts_endpoint = Some(sts.url());
        let credentials =
            CloudCredentials::with_settings(settings).expect("the HTTP clients build");

        assert_eq!(ok(credentials.login(HOST).await).password, "ecr-password-1");
        assert_eq!(
            sts.last().form()["WebIdentityToken"],
            "web-identity-token-1"
        );
        // The temporary credentials serve every ECR registry until they expire.
        let second = "111111111111.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(
            ok(credentials.login(second).await).password,
            "ecr-password-2"
        );
        assert_eq!((sts.count(), ecr.count()), (1, 2));

        // Near their expiry, they are fetched again with the rotated token file.
        std::fs::write(&token_file, "web-identity-token-2").unwrap();
        clock.advance(3600 - 4 * 60);
        let third = "222222222222.dkr.ecr.eu-west-1.amazonaws.com";
        assert_eq!(
            ok(credentials.login(third).await).password,
            "ecr-password-3"
        );
        assert_eq!((sts.count(), ecr.count()), (2, 3));
        assert_eq!(
            sts.last().form()["WebIdentityToken"],
            "web-identity-token-2"
        );
        // ECR tokens still valid need no credentials at all.
        ok(credentials.login(HOST).await);
        assert_eq!((sts.count(), ecr.count()), (2, 3));
    }

    #[tokio::test]
    async fn sts_refusal_names_sts_and_hides_the_web_identity_token() {
        let clock = TestClock::new();
        let sts = StandIn::start(Duration::ZERO, |request, _| {
            let token = request.form().get("WebIdentityToken").cloned().unwrap_or_default();
            (
                StatusCode::FORBIDDEN,
                format!(
                    "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized to \
                     perform sts:AssumeRoleWithWebIdentity with {token}</Message></Error></ErrorResponse>"
                ),
            )
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "secret-web-identity-token").unwrap();
        let mut settings = ecr_settings(
            &clock,
            AwsCredentialSource::WebIdentity {
                token_file,
                role_arn: "arn:aws:iam::123456789012:role/pusher".into(),
                session_name: "s".into(),
            },
            "http://127.0.0.1:9/",
        );
        settings.ecr.as_mut().unwrap().sts_endpoint = Some(sts.url());
        let credentials =
            CloudCredentials::with_settings(settings).expect("the HTTP clients build");
        let error = err(credentials.login(HOST).await);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "failed to get an ECR token for {HOST}: HTTP 403 from {}: ",
                sts.url()
            )),
            "{message}"
        );
        assert!(message.contains("AccessDenied"), "{message}");
        assert!(!message.contains("secret-web-identity-token"), "{message}");
        assert_eq!(error.status(), Some(403));

        // A missing token file is said plainly, without a request.
        let mut settings = ecr_settings(
            &clock,
            AwsCredentialSource::WebIdentity {
                token_file: dir.path().join("missing"),
                role_arn: "arn".into(),
                session_name: "s".into(),
            },
            "http://127.0.0.1:9/",
        );
        settings.ecr.as_mut().unwrap().sts_endpoint = Some(sts.url());
        let credentials =
            CloudCredentials::with_settings(settings).expect("the HTTP clients build");
        let message = err(credentials.login(HOST).await).to_string();
        assert!(message.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{message}");
        assert_eq!(sts.count(), 1);
    }

    #[tokio::test]
    async fn refusals_are_reported_without_secrets_and_remembered_briefly() {
        let clock = TestClock::new();
        let ecr = StandIn::start(Duration::ZERO, |request, _| {
            // A hostile answer echoing the session token.
            let token = request.header("x-amz-security-token").to_owned();
            (
                StatusCode::FORBIDDEN,
                format!(
                    "{{\"__type\":\"AccessDeniedException\",\n\"message\":\"User: \
                     arn:aws:sts::123456789012:assumed-role/pusher is not authorized to perform: \
                     ecr:GetAuthorizationToken (session {token})\"}}"
                ),
            )
        })
        .await;
        let credentials = CloudCredentials::with_settings(ecr_settings(
            &clock,
            AwsCredentialSource::Static(keys()),
            &ecr.url(),
        ))
        .expect("the HTTP clients build");
        let error = err(credentials.login(HOST).await);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "failed to get an ECR token for {HOST}: HTTP 403 from {}: {{\"__type\":\"AccessDeniedException\", \"message\"",
                ecr.url()
            )),
            "{message}"
        );
        assert!(!message.contains("test-session-token"), "{message}");
        assert!(!message.contains("test-secret-access-key"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(error.provider(), Provider::Ecr);
        assert_eq!(error.status(), Some(403));

        // Remembered for the error TTL (60 s by default), then asked again.
        clock.advance(59);
        assert_eq!(err(credentials.login(HOST).await), error);
        assert_eq!(ecr.count(), 1);
        clock.advance(1);
        err(credentials.login(HOST).await);
        assert_eq!(ecr.count(), 2);
    }

    #[tokio::test]
    async fn unreachable_endpoint_and_missing_credentials() {
        let clock = TestClock::new();
        let closed = closed_port().await;
        let credentials = CloudCredentials::with_settings(ecr_settings(
            &clock,
            AwsCredentialSource::Static(keys()),
            &format!("http://{closed}/"),
        ))
        .expect("the HTTP clients build");
        let error = err(credentials.login(HOST).await);
        assert!(matches!(error, CloudError::Transport { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "failed to get an ECR token for {HOST}: request to http://{closed}/ failed: "
            )),
            "{message}"
        );

        let credentials = CloudCredentials::with_settings(ecr_settings(
            &clock,
            AwsCredentialSource::None,
            &format!("http://{closed}/"),
        ))
        .expect("the HTTP clients build");
        let error = err(credentials.login(HOST).await);
        assert!(matches!(error, CloudError::Credentials { .. }), "{error:?}");
        assert!(error.to_string().contains("AWS_ACCESS_KEY_ID"), "{error}");
    }

    #[tokio::test]
    async fn eks_pod_identity_credentials() {
        let clock = TestClock::new();
        let temporary = AwsCredentials {
            access_key_id: "ASIAPODIDENTITY".into(),
            secret_access_key: "pod-identity-secret".into(),
            session_token: Some("pod-identity-session".into()),
        };
        let ecr = ecr_stand_in(&clock, temporary).await;
        let agent = StandIn::start(Duration::ZERO, |request, _| {
            if request.header("authorization") != "pod-identity-sa-token" {
                return (StatusCode::UNAUTHORIZED, "bad token".into());
            }
            (
                StatusCode::OK,
                r#"{"AccessKeyId":"ASIAPODIDENTITY","SecretAccessKey":"pod-identity-secret","Token":"pod-identity-session","AccountId":"123456789012","Expiration":"2030-01-01T00:00:00Z"}"#.into(),
            )
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("eks-pod-identity-token");
        std::fs::write(&token_file, "pod-identity-sa-token").unwrap();
        let credentials = CloudCredentials::with_settings(ecr_settings(
            &clock,
            AwsCredentialSource::Container {
                uri: format!("{}v1/credentials", agent.url()),
                token: Some(
                    container_image_pusher::credentials::cloud::ecr::ContainerToken::File(
                        token_file,
                    ),
                ),
            },
            &ecr.url(),
        ))
        .expect("the HTTP clients build");
        assert_eq!(ok(credentials.login(HOST).await).password, "ecr-password-1");
        assert_eq!(agent.last().path, "/v1/credentials");
    }
}

#[cfg(feature = "gcr")]
mod gcr {
    use super::*;
    use container_image_pusher::credentials::cloud::gcr::GcrSettings;

    const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

    async fn metadata_server(delay: Duration) -> StandIn {
        StandIn::start(delay, |request, n| {
            let checks = expect(&[
                ("method", request.method.as_str(), "GET"),
                ("path", &request.path, TOKEN_PATH),
            ]);
            if let Err(reason) = checks {
                return bad_request(reason);
            }
            if request.header("metadata-flavor") != "Google" {
                return (
                    StatusCode::FORBIDDEN,
                    "Missing Metadata-Flavor:Google header.".into(),
                );
            }
            (
                StatusCode::OK,
                format!(
                    r#"{{"access_token":"ya29.token-{n}","expires_in":3599,"token_type":"Bearer"}}"#
                ),
            )
        })
        .await
    }

    fn google_settings(clock: &TestClock, metadata: SocketAddr) -> Settings {
        Settings {
            gcr: Some(GcrSettings {
                metadata_host: metadata.to_string(),
            }),
            ..settings(clock)
        }
    }

    #[tokio::test]
    async fn one_metadata_token_for_every_google_registry() {
        let clock = TestClock::new();
        let metadata = metadata_server(Duration::ZERO).await;
        let credentials = CloudCredentials::with_settings(google_settings(&clock, metadata.addr))
            .expect("the HTTP clients build");
        for host in ["gcr.io", "eu.gcr.io:443", "europe-docker.pkg.dev"] {
            let expected = Login {
                username: "oauth2accesstoken".into(),
                password: "ya29.token-1".into(),
                source: format!("the pod's cloud identity for {host}"),
            };
            assert_eq!(ok(credentials.login(host).await), expected, "{host}");
        }
        assert_eq!(metadata.count(), 1);
        assert_eq!(metadata.last().header("metadata-flavor"), "Google");

        // expires_in 3599: refreshed five minutes before.
        clock.advance(3599 - 301);
        ok(credentials.login("gcr.io").await);
        assert_eq!(metadata.count(), 1);
        clock.advance(1);
        assert_eq!(
            ok(credentials.login("gcr.io").await).password,
            "ya29.token-2"
        );
        assert_eq!(metadata.count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_logins_make_one_request() {
        let clock = TestClock::new();
        let metadata = metadata_server(Duration::from_millis(300)).await;
        let credentials = Arc::new(
            CloudCredentials::with_settings(google_settings(&clock, metadata.addr))
                .expect("the HTTP clients build"),
        );
        let hosts = [
            "gcr.io",
            "eu.gcr.io",
            "europe-docker.pkg.dev",
            "us-docker.pkg.dev",
        ];
        let logins: Vec<_> = (0..10)
            .map(|i| {
                let credentials = credentials.clone();
                tokio::spawn(async move { credentials.login(hosts[i % hosts.len()]).await })
            })
            .collect();
        for login in logins {
            assert_eq!(ok(login.await.unwrap()).password, "ya29.token-1");
        }
        assert_eq!(metadata.count(), 1);
    }

    #[tokio::test]
    async fn absent_metadata_server_fails_fast_and_is_not_asked_for_every_image() {
        let clock = TestClock::new();
        let closed = closed_port().await;
        let credentials = CloudCredentials::with_settings(google_settings(&clock, closed))
            .expect("the HTTP clients build");
        let start = Instant::now();
        let error = err(credentials.login("gcr.io").await);
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert!(
            error.to_string().starts_with(&format!(
                "failed to get a Google access token for gcr.io: request to http://{closed}{TOKEN_PATH} failed: "
            )),
            "{error}"
        );
        // The failure is shared by every Google registry, each named in its own error.
        let other = err(credentials.login("europe-docker.pkg.dev").await);
        assert!(
            other.to_string().contains("for europe-docker.pkg.dev:"),
            "{other}"
        );

        // A metadata server that answers an error is asked once per error TTL.
        let failing = StandIn::start(Duration::ZERO, |_, _| {
            (StatusCode::NOT_FOUND, "no service account".into())
        })
        .await;
        let credentials = CloudCredentials::with_settings(google_settings(&clock, failing.addr))
            .expect("the HTTP clients build");
        for _ in 0..5 {
            let error = err(credentials.login("gcr.io").await);
            assert_eq!(error.status(), Some(404));
            assert_eq!(error.provider(), Provider::Google);
        }
        assert_eq!(failing.count(), 1);
        clock.advance(60);
        err(credentials.login("gcr.io").await);
        assert_eq!(failing.count(), 2);
    }
}

#[cfg(feature = "acr")]
mod acr {
    use super::*;
    use container_image_pusher::credentials::cloud::acr::{
        AcrSettings, AzureIdentity, ExchangeScheme,
    };

    const USERNAME: &str = "00000000-0000-0000-0000-000000000000";

    #[test]
    fn the_exchange_scheme_is_a_flag_https_by_default() {
        use clap::Parser as _;
        use container_image_pusher::config::Config;
        let scheme = |args: &[&str]| {
            let config = Config::try_parse_from([&["container-image-pusher"], args].concat())?;
            let settings = config.credentials.settings();
            Ok::<_, clap::Error>(settings.cloud.acr.map(|acr| acr.exchange_scheme))
        };
        assert_eq!(scheme(&[]).unwrap(), Some(ExchangeScheme::Https));
        assert_eq!(
            scheme(&["--acr-exchange-scheme", "HTTP"]).unwrap(),
            Some(ExchangeScheme::Http)
        );
        assert!(
            scheme(&["--acr-exchange-scheme", "ftp"]).is_err(),
            "a scheme that is neither is refused at start-up"
        );
    }

    /// AAD (or IMDS) and the registry's exchange in one stand-in: the
    /// registries resolve to it.
    async fn azure(clock: &TestClock, tenant: &'static str, refresh_exp: bool) -> StandIn {
        let clock = clock.clone();
        StandIn::start(Duration::ZERO, move |request, n| {
            let form = request.form();
            let field = |name: &str| form.get(name).cloned().unwrap_or_default();
            match request.path.as_str() {
                "/tenant-id/oauth2/v2.0/token" => {
                    let checks = expect(&[
                        ("method", request.method.as_str(), "POST"),
                        ("grant_type", &field("grant_type"), "client_credentials"),
                        ("client_id", &field("client_id"), "client-id"),
                        ("scope", &field("scope"), "https://containerregistry.azure.net/.default"),
                        (
                            "client_assertion_type",
                            &field("client_assertion_type"),
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &field("client_assertion"), "federated-sa-token"),
                    ]);
                    match checks {
                        Ok(()) => (
                            StatusCode::OK,
                            format!(
                                r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"aad-access-token-{n}"}}"#
                            ),
                        ),
                        Err(reason) => bad_request(reason),
                    }
                }
                "/metadata/identity/oauth2/token" => {
                    let query = form_decode(&request.query);
                    let q = |name: &str| query.get(name).cloned().unwrap_or_default();
                    let checks = expect(&[
                        ("method", request.method.as_str(), "GET"),
                        ("Metadata", request.header("metadata"), "true"),
                        ("api-version", &q("api-version"), "2018-02-01"),
                        ("resource", &q("resource"), "https://management.azure.com/"),
                        ("client_id", &q("client_id"), "mi-client"),
                    ]);
                    match checks {
                        Ok(()) => (
                            StatusCode::OK,
                            format!(
                                r#"{{"access_token":"{}","expires_in":"86399","expires_on":"0","resource":"https://management.azure.com/","token_type":"Bearer"}}"#,
                                jwt(serde_json::json!({"tid": "tenant-from-token", "n": n}))
                            ),
                        ),
                        Err(reason) => bad_request(reason),
                    }
                }
                "/oauth2/exchange" => {
                    let registry = request.header("host").split(':').next().unwrap_or_default().to_owned();
                    let access_token = field("access_token");
                    let checks = expect(&[
                        ("method", request.method.as_str(), "POST"),
                        ("grant_type", &field("grant_type"), "access_token"),
                        ("service", &field("service"), &registry),
                        ("tenant", &field("tenant"), tenant),
                    ]);
                    if let Err(reason) = checks {
                        return bad_request(reason);
                    }
                    if !access_token.starts_with("aad-access-token-") && !access_token.contains('.') {
                        return bad_request(format!("unexpected access token {access_token:?}"));
                    }
                    let refresh_token = if refresh_exp {
                        jwt(serde_json::json!({
                            "exp": clock.now() + 3 * 3600,
                            "grant_type": "refresh_token",
                            "service": registry,
                            "n": n,
                        }))
                    } else {
                        format!("opaque-refresh-token-{n}")
                    };
                    (StatusCode::OK, format!(r#"{{"refresh_token":"{refresh_token}"}}"#))
                }
                other => (StatusCode::NOT_FOUND, format!("no route {other}")),
            }
        })
        .await
    }

    fn acr_settings(clock: &TestClock, identity: AzureIdentity, stand_in: &StandIn) -> Settings {
        Settings {
            acr: Some(AcrSettings {
                identity,
                exchange_scheme: ExchangeScheme::Http,
            }),
            resolve: vec![
                ("myreg.azurecr.io".into(), stand_in.addr),
                ("other.azurecr.io".into(), stand_in.addr),
            ],
            ..settings(clock)
        }
    }

    fn workload_identity(stand_in: &StandIn, token_file: std::path::PathBuf) -> AzureIdentity {
        AzureIdentity::WorkloadIdentity {
            client_id: "client-id".into(),
            tenant_id: "tenant-id".into(),
            token_file,
            authority_host: stand_in.url(),
        }
    }

    #[tokio::test]
    async fn workload_identity_token_exchanged_at_the_registry() {
        let clock = TestClock::new();
        let azure = azure(&clock, "tenant-id", true).await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("azure-identity-token");
        std::fs::write(&token_file, "federated-sa-token\n").unwrap();
        let credentials = CloudCredentials::with_settings(acr_settings(
            &clock,
            workload_identity(&azure, token_file),
            &azure,
        ))
        .expect("the HTTP clients build");
        let port = azure.addr.port();
        let host = format!("myreg.azurecr.io:{port}");
        let login = ok(credentials.login(&host).await);
        assert_eq!(login.username, USERNAME);
        assert!(login.password.contains('.'), "a JWT: {}", login.password);
        assert_eq!(azure.count_path("/tenant-id/oauth2/v2.0/token"), 1);
        assert_eq!(azure.count_path("/oauth2/exchange"), 1);
        assert_eq!(azure.last().header("host"), host);
        assert_eq!(azure.last().form()["access_token"], "aad-access-token-1");

        // Cached; another registry needs its own exchange but no new AAD token.
        assert_eq!(ok(credentials.login(&host).await), login);
        let other = ok(credentials.login(&format!("other.azurecr.io:{port}")).await);
        assert_ne!(other, login);
        assert_eq!(azure.count_path("/tenant-id/oauth2/v2.0/token"), 1);
        assert_eq!(azure.count_path("/oauth2/exchange"), 2);

        // The refresh token's exp (3 h) decides when it is exchanged again;
        // by then the AAD token (1 h) has expired too.
        clock.advance(3 * 3600 - 6 * 60);
        assert_eq!(ok(credentials.login(&host).await), login);
        assert_eq!(azure.count_path("/oauth2/exchange"), 2);
        clock.advance(2 * 60);
        let refreshed = ok(credentials.login(&host).await);
        assert_ne!(refreshed, login);
        assert_eq!(azure.count_path("/oauth2/exchange"), 3);
        assert_eq!(azure.count_path("/tenant-id/oauth2/v2.0/token"), 2);
    }

    #[tokio::test]
    async fn managed_identity_from_imds() {
        let clock = TestClock::new();
        let azure = azure(&clock, "tenant-from-token", false).await;
        let identity = AzureIdentity::ManagedIdentity {
            endpoint: format!("http://{}", azure.addr),
            client_id: Some("mi-client".into()),
        };
        let credentials = CloudCredentials::with_settings(acr_settings(&clock, identity, &azure))
            .expect("the HTTP clients build");
        let host = format!("myreg.azurecr.io:{}", azure.addr.port());
        assert_eq!(
            ok(credentials.login(&host).await),
            Login {
                username: USERNAME.into(),
                password: "opaque-refresh-token-2".into(),
                source: format!("the pod's cloud identity for {host}"),
            }
        );
        assert_eq!(azure.count_path("/metadata/identity/oauth2/token"), 1);
        // Without a readable exp, a refresh token is trusted for an hour.
        clock.advance(3600 - 6 * 60);
        ok(credentials.login(&host).await);
        assert_eq!(azure.count_path("/oauth2/exchange"), 1);
        clock.advance(2 * 60);
        assert_eq!(
            ok(credentials.login(&host).await).password,
            "opaque-refresh-token-3"
        );
        assert_eq!(azure.count_path("/oauth2/exchange"), 2);
        assert_eq!(azure.count_path("/metadata/identity/oauth2/token"), 1);
    }

    #[tokio::test]
    async fn refused_exchange_and_unreachable_aad_hide_tokens() {
        let clock = TestClock::new();
        let aad_and_registry = StandIn::start(Duration::ZERO, |request, _| {
            if request.path == "/oauth2/exchange" {
                // Echoes what it was sent, secrets included.
                (
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "{{\"errors\":[{{\"code\":\"UNAUTHORIZED\",\"message\":\"{}\"}}]}}",
                        request.body
                    ),
                )
            } else {
                (
                    StatusCode::OK,
                    r#"{"access_token":"secret-aad-token","expires_in":3599}"#.into(),
                )
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "federated-sa-token").unwrap();
        let credentials = CloudCredentials::with_settings(acr_settings(
            &clock,
            workload_identity(&aad_and_registry, token_file.clone()),
            &aad_and_registry,
        ))
        .expect("the HTTP clients build");
        let host = format!("myreg.azurecr.io:{}", aad_and_registry.addr.port());
        let error = err(credentials.login(&host).await);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "failed to get an ACR refresh token for {host}: HTTP 401 from http://{host}/oauth2/exchange: "
            )),
            "{message}"
        );
        assert!(message.contains("UNAUTHORIZED"), "{message}");
        assert!(!message.contains("secret-aad-token"), "{message}");
        assert_eq!(error.provider(), Provider::Acr);

        // AAD unreachable.
        let closed = closed_port().await;
        let identity = AzureIdentity::WorkloadIdentity {
            client_id: "client-id".into(),
            tenant_id: "tenant-id".into(),
            token_file,
            authority_host: format!("http://{closed}/"),
        };
        let credentials =
            CloudCredentials::with_settings(acr_settings(&clock, identity, &aad_and_registry))
                .expect("the HTTP clients build");
        let message = err(credentials.login(&host).await).to_string();
        assert!(
            message.starts_with(&format!(
                "failed to get an ACR refresh token for {host}: request to http://{closed}/tenant-id/oauth2/v2.0/token failed: "
            )),
            "{message}"
        );
        assert!(!message.contains("federated-sa-token"), "{message}");
    }
}
