use super::*;

#[test]
fn ecr_hosts() {
    let registry = EcrRegistry::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com").unwrap();
    assert_eq!(
        registry,
        EcrRegistry {
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            fips: false,
            domain: "amazonaws.com".into(),
        }
    );
    assert_eq!(
        registry.api_endpoint(),
        "https://api.ecr.eu-west-1.amazonaws.com/"
    );
    let fips = EcrRegistry::parse("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com").unwrap();
    assert!(fips.fips);
    assert_eq!(
        fips.api_endpoint(),
        "https://ecr-fips.us-gov-west-1.amazonaws.com/"
    );
    let china = EcrRegistry::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").unwrap();
    assert_eq!(
        china.api_endpoint(),
        "https://api.ecr.cn-north-1.amazonaws.com.cn/"
    );
    for host in [
        "12345678901.dkr.ecr.eu-west-1.amazonaws.com",
        "1234567890123.dkr.ecr.eu-west-1.amazonaws.com",
        "12345678901a.dkr.ecr.eu-west-1.amazonaws.com",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.com",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.org",
        "123456789012.dkr.ecr..amazonaws.com",
        "123456789012.ecr.eu-west-1.amazonaws.com",
        "123456789012.dkr.ecr.amazonaws.com",
        "x.123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "public.ecr.aws",
        "api.ecr.eu-west-1.amazonaws.com",
    ] {
        assert_eq!(EcrRegistry::parse(host), None, "{host}");
    }
}

#[test]
fn settings_from_the_environment() {
    let env = super::super::tests::env;
    let keys = EcrSettings::from_lookup(&env(&[
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "session"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/token"),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ENDPOINT_URL", "http://localhost:1/"),
        ("AWS_ENDPOINT_URL_STS", "http://localhost:2/"),
    ]));
    assert_eq!(
        keys.credentials,
        AwsCredentialSource::Static(AwsCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: Some("session".into()),
        })
    );
    assert_eq!(keys.region.as_deref(), Some("eu-west-1"));
    assert_eq!(keys.ecr_endpoint.as_deref(), Some("http://localhost:1/"));
    assert_eq!(keys.sts_endpoint.as_deref(), Some("http://localhost:2/"));
    assert!(!format!("{keys:?}").contains("secret\""));
    assert!(!format!("{keys:?}").contains("session\""));

    let irsa = EcrSettings::from_lookup(&env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/token"),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("AWS_DEFAULT_REGION", "us-east-2"),
        ("AWS_ENDPOINT_URL", "http://localhost:1/"),
        ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
    ]));
    assert_eq!(
        irsa.credentials,
        AwsCredentialSource::WebIdentity {
            token_file: "/token".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            session_name: "container-image-pusher".into(),
        }
    );
    assert_eq!(irsa.region.as_deref(), Some("us-east-2"));
    assert_eq!(irsa.ecr_endpoint, None);

    let pod_identity = EcrSettings::from_lookup(&env(&[
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "/var/run/secrets/pods.eks.amazonaws.com/token",
        ),
    ]));
    assert_eq!(
        pod_identity.credentials,
        AwsCredentialSource::Container {
            uri: "http://169.254.170.23/v1/credentials".into(),
            token: Some(ContainerToken::File(
                "/var/run/secrets/pods.eks.amazonaws.com/token".into()
            )),
        }
    );

    assert_eq!(
        EcrSettings::from_lookup(&env(&[])).credentials,
        AwsCredentialSource::None
    );
}

#[test]
fn authorization_tokens_are_decoded() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let answer = br#"{"authorizationData":[{"authorizationToken":"QVdTOnBhc3M6d29yZA==","expiresAt":1.7000432E9,"proxyEndpoint":"https://x"}]}"#;
    let (login, expires) = parse_authorization_token(answer, "e", now).unwrap();
    assert_eq!(login.username, "AWS");
    assert_eq!(login.password, "pass:word");
    assert_eq!(
        expires,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_043_200)
    );
    assert!(parse_authorization_token(b"{}", "e", now).is_err());
    assert!(parse_authorization_token(b"<html>", "e", now).is_err());
}
