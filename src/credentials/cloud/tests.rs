use super::*;

/// An environment of the given variables, for `Settings::from_lookup`.
pub(crate) fn env(
    pairs: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn token_login_debug_hides_the_password() {
    let login = TokenLogin {
        username: "AWS".into(),
        password: "hunter2-secret".into(),
    };
    let text = format!("{login:?}");
    assert!(text.contains("AWS"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn registry_hosts_are_lowercased_without_port() {
    let host = RegistryHost::parse("MyReg.AzureCR.io:443");
    assert_eq!(host.name, "myreg.azurecr.io");
    assert_eq!(host.authority, "myreg.azurecr.io:443");
    assert_eq!(host.given, "MyReg.AzureCR.io:443");
    assert_eq!(RegistryHost::parse("gcr.io.").name, "gcr.io");
    assert_eq!(RegistryHost::parse("https://gcr.io/project").name, "gcr.io");
    assert_eq!(RegistryHost::parse("[::1]:5000").name, "[::1]:5000");
}

#[test]
fn error_bodies_are_short_single_lines_without_secrets() {
    let body = format!(
        "{{\n  \"message\": \"bad token s3cr3t-token\",\n{}}}",
        "x".repeat(400)
    );
    let line = error_body(body.as_bytes(), &["s3cr3t-token", ""]);
    assert!(!line.contains("s3cr3t"), "{line}");
    assert!(line.contains("<redacted>"), "{line}");
    assert!(!line.contains('\n'));
    assert_eq!(line.chars().count(), MAX_ERROR_BODY_CHARS + 1);
    assert!(line.ends_with('…'));
    assert_eq!(error_body(b" short  answer \n", &[]), "short answer");
}

#[test]
fn forms_are_percent_encoded() {
    assert_eq!(
        form_encode(&[("scope", "https://x/.default"), ("a b", "c+d=e&f~")]),
        "scope=https%3A%2F%2Fx%2F.default&a%20b=c%2Bd%3De%26f~"
    );
}

#[test]
fn jwt_claims_are_read_without_verification() {
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"exp":1700000000,"tid":"tenant"}"#);
    let claims = jwt_claims(&format!("eyJhbGciOiJub25lIn0.{payload}.sig")).unwrap();
    assert_eq!(json_seconds(claims.get("exp")), Some(1_700_000_000));
    assert_eq!(claims["tid"], "tenant");
    assert!(jwt_claims("not-a-jwt").is_none());
    assert!(jwt_claims("a.!!!.c").is_none());
}

#[test]
fn seconds_may_be_numbers_or_strings() {
    let v: serde_json::Value = serde_json::json!({"a": 3599, "b": "86399", "c": 1.7e9, "d": null});
    assert_eq!(json_seconds(v.get("a")), Some(3599));
    assert_eq!(json_seconds(v.get("b")), Some(86399));
    assert_eq!(json_seconds(v.get("c")), Some(1_700_000_000));
    assert_eq!(json_seconds(v.get("d")), None);
    assert_eq!(json_seconds(v.get("e")), None);
}

#[test]
fn dns_labels() {
    assert!(one_label_before("eu.gcr.io", ".gcr.io"));
    assert!(!one_label_before("a.b.gcr.io", ".gcr.io"));
    assert!(!one_label_before(".gcr.io", ".gcr.io"));
    assert!(!one_label_before("-x.gcr.io", ".gcr.io"));
}

#[tokio::test]
async fn the_cache_refreshes_before_expiry_and_remembers_failures_briefly() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let offset = Arc::new(AtomicU64::new(0));
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let clock_offset = offset.clone();
    let settings = Settings {
        clock: Clock::new(move || base + Duration::from_secs(clock_offset.load(Ordering::SeqCst))),
        error_ttl: Duration::from_secs(30),
        refresh_margin: Duration::from_secs(300),
        ..Settings::default()
    };
    let context = Context::new(&settings).unwrap();
    let cache = TokenCache::<u32>::new("test");
    let calls = AtomicU64::new(0);
    let fetch = |ok: bool, lifetime: u64| {
        calls.fetch_add(1, Ordering::SeqCst);
        let now = context.now();
        async move {
            if ok {
                Ok((7, now + Duration::from_secs(lifetime)))
            } else {
                Err(Failure::Credentials("nope".into()))
            }
        }
    };
    // A one-hour token is used until five minutes before it expires.
    assert_eq!(cache.get("k", &context, || fetch(true, 3600)).await, Ok(7));
    offset.store(3600 - 301, Ordering::SeqCst);
    assert_eq!(cache.get("k", &context, || fetch(true, 3600)).await, Ok(7));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    offset.store(3600 - 300, Ordering::SeqCst);
    assert_eq!(
        cache.get("k", &context, || fetch(false, 0)).await.ok(),
        None
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The failure is remembered for the error TTL, then asked again.
    offset.store(3600 - 300 + 29, Ordering::SeqCst);
    assert!(cache.get("k", &context, || fetch(true, 60)).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    offset.store(3600 - 300 + 30, Ordering::SeqCst);
    assert_eq!(cache.get("k", &context, || fetch(true, 60)).await, Ok(7));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A short-lived token is refreshed half-way through its life.
    let start = 3600 - 300 + 30;
    offset.store(start + 29, Ordering::SeqCst);
    cache.get("k", &context, || fetch(true, 60)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    offset.store(start + 30, Ordering::SeqCst);
    cache.get("k", &context, || fetch(true, 60)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // Other keys are independent.
    cache
        .get("other", &context, || fetch(true, 60))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}
