use super::*;

fn example_credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
    }
}

fn suite_headers() -> Vec<(String, String)> {
    vec![
        ("Host".into(), "example.amazonaws.com".into()),
        ("X-Amz-Date".into(), "20150830T123600Z".into()),
    ]
}

#[test]
fn signing_key_matches_the_documented_example() {
    let key = signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "20120215",
        "us-east-1",
        "iam",
    );
    assert_eq!(
        hex(&key),
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    );
}

/// Vectors of the AWS SigV4 test suite (credentials AKIDEXAMPLE, region
/// us-east-1, service `service`, 20150830T123600Z).
#[test]
fn signatures_match_the_aws_test_suite() {
    let credentials = example_credentials();
    let headers = suite_headers();
    let sign = |method, query: &[(&str, &str)]| {
        authorization_header(
            &credentials,
            "us-east-1",
            "service",
            &SignedRequest {
                method,
                path: "/",
                query,
                headers: &headers,
                payload: b"",
            },
        )
    };
    // get-vanilla
    assert_eq!(
        sign("GET", &[]),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
    // post-vanilla
    assert!(sign("POST", &[])
        .ends_with("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
    // get-vanilla-query-order-key-case: parameters are sorted.
    assert!(sign("GET", &[("Param2", "value2"), ("Param1", "value1")])
        .ends_with("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
}

#[test]
fn header_values_are_trimmed_and_names_lowercased() {
    let credentials = example_credentials();
    let messy = vec![
        ("X-AMZ-DATE".to_owned(), " 20150830T123600Z ".to_owned()),
        ("HOST".to_owned(), "example.amazonaws.com".to_owned()),
    ];
    let request = |headers| SignedRequest {
        method: "GET",
        path: "/",
        query: &[],
        headers,
        payload: b"",
    };
    assert_eq!(
        authorization_header(&credentials, "us-east-1", "service", &request(&messy)),
        authorization_header(
            &credentials,
            "us-east-1",
            "service",
            &request(&suite_headers())
        )
    );
}

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
fn sts_answers_are_read_with_a_string_search() {
    let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>se/cr+et&amp;</SecretAccessKey>
      <SessionToken>tok==</SessionToken>
      <Expiration>2024-05-01T13:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;
    assert_eq!(
        xml_element(xml, "AccessKeyId").as_deref(),
        Some("ASIAEXAMPLE")
    );
    assert_eq!(
        xml_element(xml, "SecretAccessKey").as_deref(),
        Some("se/cr+et&")
    );
    assert_eq!(xml_element(xml, "Missing"), None);
    assert_eq!(
        parse_time(&xml_element(xml, "Expiration").unwrap()),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_568_400))
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

#[test]
fn amz_dates_are_basic_iso8601() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    assert_eq!(amz_date(t), "20150830T123600Z");
}
