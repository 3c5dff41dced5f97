//! HTTP to token and metadata endpoints: the clients, bounded answers,
//! errors without secrets, and the encodings the providers share.

use std::time::{Duration, SystemTime};

use super::{BuildError, Clock, Failure, Settings};

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
    pub(super) fn new(settings: &Settings) -> Result<Context, BuildError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let v: serde_json::Value =
            serde_json::json!({"a": 3599, "b": "86399", "c": 1.7e9, "d": null});
        assert_eq!(json_seconds(v.get("a")), Some(3599));
        assert_eq!(json_seconds(v.get("b")), Some(86399));
        assert_eq!(json_seconds(v.get("c")), Some(1_700_000_000));
        assert_eq!(json_seconds(v.get("d")), None);
        assert_eq!(json_seconds(v.get("e")), None);
    }
}
