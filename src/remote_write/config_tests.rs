//! Unit tests of [`super`]: flags, endpoint files and their validation.

use super::*;

pub(crate) fn defaults(url: &str) -> EndpointConfig {
    EndpointConfig {
        url: url.parse().unwrap(),
        auth: Auth::default(),
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
    assert_eq!(got[0].auth.username.as_deref(), Some("team-a"));
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
            .to_string()
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
        let err = EndpointConfig::from_file(&path, &defaults("http://unused"))
            .unwrap_err()
            .to_string();
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
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("retry window"));
    let mut c = defaults("https://x/api/v1/push");
    c.retry.max_pause = LONGEST_WAIT + Duration::from_secs(1);
    assert!(c.validate().unwrap_err().to_string().contains("pause"));
    c.retry.max_pause = LONGEST_WAIT;
    c.validate().unwrap();
}

#[test]
fn inconsistent_auth_is_refused() {
    let mut c = defaults("https://x/api/v1/push");
    c.auth.username = Some("u".into());
    assert!(matches!(
        c.validate(),
        Err(EndpointError::IncompleteBasicAuth { .. })
    ));
    c.auth.password_file = Some("/p".into());
    c.validate().unwrap();
    c.auth.bearer_token_file = Some("/t".into());
    assert!(matches!(c.validate(), Err(EndpointError::TwoAuths { .. })));
    let c = defaults("ftp://x/");
    assert!(matches!(c.validate(), Err(EndpointError::Scheme { .. })));
}

#[test]
fn display_name_hides_credentials_and_query() {
    let url: Url = "https://user:secret@mimir.example.com:8443/api/v1/push?token=abc"
        .parse()
        .unwrap();
    assert_eq!(
        display_name(&url),
        "https://mimir.example.com:8443/api/v1/push"
    );
}
