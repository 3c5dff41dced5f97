//! The HTTP side of one receiver: the client (TLS, headers, no
//! redirects), credentials read from files that rotate in place, the
//! request for each wire format, and what is read of an answer. Whatever
//! the receiver answers is untrusted: bodies are read to a bound, made one
//! line, and stripped of our own secrets should it echo them.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};
use reqwest::Url;

use super::config::{display_name, Auth, EndpointConfig, Header, Protocol};
use super::otlp;
use super::outcome::PushError;

/// How much of an error response body is logged.
const MAX_LOGGED_BODY: usize = 1024;
/// How much of an error response body is read: secrets are blanked in all
/// of it before it is cut to [`MAX_LOGGED_BODY`], so no cut can leave a
/// piece of one.
const MAX_READ_BODY: usize = 64 * 1024;
/// Headers that name a tenant, not a credential: never blanked in what a
/// receiver says (a tenant is often the cluster's name, a label value).
const TENANT_HEADERS: [&str; 3] = ["x-scope-orgid", "thanos-tenant", "tenant-id"];
const V1_CONTENT_TYPE: &str = "application/x-protobuf";
const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// A 2.0 receiver reports what it wrote; a 1.x receiver does not (and wrote nothing).
pub(super) const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
const OTLP_CONTENT_TYPE: &str = "application/x-protobuf";
/// Most of an OTLP answer read: a partial success or an error status is a
/// few hundred bytes, and a receiver must not make the pusher buffer more.
pub(super) const MAX_OTLP_RESPONSE: usize = 64 * 1024;

/// The message a request is encoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    V1,
    V2,
    Otlp,
}

/// The HTTP client of one endpoint and the credentials it sends.
pub(super) struct Transport {
    url: Url,
    http: reqwest::Client,
    auth: Auth,
    headers: Vec<Header>,
    password: Option<SecretFile>,
    token: Option<SecretFile>,
}

impl Transport {
    /// The client for `config`: an unreadable or invalid TLS file or header
    /// fails here, at start, not at the first push.
    pub(super) fn new(config: &EndpointConfig) -> Result<Self, PushError> {
        crate::install_crypto_provider();
        let name = display_name(&config.url);
        let setup_error = |message: String| PushError::Setup {
            endpoint: name.clone(),
            message,
        };
        let mut headers = HeaderMap::new();
        let encoding = if config.protocol == Protocol::Otlp {
            "gzip"
        } else {
            "snappy"
        };
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!(
                "container-image-pusher/",
                env!("CARGO_PKG_VERSION")
            )),
        );
        for Header {
            name: header,
            value,
        } in &config.headers
        {
            let header = HeaderName::from_bytes(header.as_bytes())
                .map_err(|e| setup_error(format!("header {header}: {e}")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|e| setup_error(format!("header {header}: {e}")))?;
            // Tenant IDs and API keys travel in headers too.
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // A redirect would carry the tenant headers to wherever the
            // receiver points; a 3xx is a failure to fix in the URL.
            .redirect(reqwest::redirect::Policy::none())
            .danger_accept_invalid_certs(config.tls.insecure_skip_verify);
        if let Some(ca) = &config.tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                setup_error(format!("failed to read CA file {}: {e}", ca.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                setup_error(format!(
                    "CA file {} holds no valid PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(setup_error(format!(
                    "CA file {} holds no PEM certificate",
                    ca.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
            let mut pem = std::fs::read(cert)
                .map_err(|e| setup_error(format!("failed to read {}: {e}", cert.display())))?;
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| setup_error(format!("failed to read {}: {e}", key.display())))?,
            );
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                setup_error(format!(
                    "invalid client certificate or key: {}",
                    e.without_url()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| setup_error(e.without_url().to_string()))?;
        let password = config.auth.password_file.clone().map(SecretFile::new);
        let token = config.auth.bearer_token_file.clone().map(SecretFile::new);
        Ok(Transport {
            url: config.url.clone(),
            http,
            auth: config.auth.clone(),
            headers: config.headers.clone(),
            password,
            token,
        })
    }

    /// A receiver's error text fit for a log line: line breaks and tabs
    /// made spaces (no forged log lines, and a multi-line message still
    /// reads as one), other control characters (terminal escapes) replaced,
    /// and our own secrets blanked out, should it echo a header or
    /// credential back.
    pub(super) fn redact(&self, text: String) -> String {
        let mut text: String = text
            .chars()
            .map(|c| match c {
                '\n' | '\r' | '\t' => ' ',
                c if c.is_control() => '\u{fffd}',
                c => c,
            })
            .collect();
        // Longest first: a secret inside another (a token inside its
        // `Bearer` value) must not leave the rest of the longer one.
        let mut secrets = self.secrets();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            // A one-letter value is no secret, and blanking it would garble the text.
            if secret.len() >= 4 && text.contains(&secret) {
                text = text.replace(&secret, "***");
            }
        }
        text
    }

    /// Every form in which a configured credential can come back: header
    /// values other than tenants, the password and token, the
    /// `user:password` of basic auth and its base64, and each whole
    /// `Authorization` value.
    fn secrets(&self) -> Vec<String> {
        use base64::Engine;
        let mut secrets: Vec<String> = self
            .headers
            .iter()
            .filter(|h| !TENANT_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()))
            .map(|h| h.value.clone())
            .collect();
        let url = &self.url;
        let logins = [
            self.auth
                .username
                .clone()
                .zip(self.password.as_ref().and_then(|p| p.read().ok())),
            url.password()
                .map(|p| (url.username().to_owned(), p.to_owned())),
        ];
        for (user, password) in logins.into_iter().flatten() {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            secrets.push(format!("Basic {basic}"));
            secrets.push(basic);
            secrets.push(format!("{user}:{password}"));
            secrets.push(password);
        }
        if let Some(token) = self.token.as_ref().and_then(|t| t.read().ok()) {
            secrets.push(format!("Bearer {token}"));
            secrets.push(token);
        }
        secrets
    }

    pub(super) fn request(
        &self,
        body: Vec<u8>,
        wire: Wire,
    ) -> Result<reqwest::RequestBuilder, SecretFileError> {
        let request = self.http.post(self.url.clone()).body(body);
        let mut request = match wire {
            Wire::Otlp => request.header(CONTENT_TYPE, OTLP_CONTENT_TYPE),
            Wire::V2 => request
                .header(CONTENT_TYPE, V2_CONTENT_TYPE)
                .header("X-Prometheus-Remote-Write-Version", "2.0.0"),
            Wire::V1 => request
                .header(CONTENT_TYPE, V1_CONTENT_TYPE)
                .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
        };
        if let (Some(user), Some(password)) = (&self.auth.username, &self.password) {
            request = request.basic_auth(user, Some(password.read()?));
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.read()?);
        }
        Ok(request)
    }

    /// What a refusing receiver said, fit for a log line: blanked whole,
    /// then cut, so that a cut cannot leave part of a secret.
    pub(super) async fn error_text(&self, response: reqwest::Response, wire: Wire) -> String {
        if wire == Wire::Otlp {
            one_line(&self.redact(otlp_error(response).await))
        } else {
            let body = crate::http::body_excerpt(response, MAX_READ_BODY).await;
            one_line(&self.redact(body))
        }
    }
}

/// The message of an OTLP error answer (a `google.rpc.Status`), else the
/// body as text; whole, to be blanked before it is cut.
async fn otlp_error(response: reqwest::Response) -> String {
    match crate::http::read_limited(response, MAX_OTLP_RESPONSE).await {
        Ok(body) => otlp::status_message(&body)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
        Err(e) => e.to_string(),
    }
}

/// A receiver's text on one line and at most `MAX_LOGGED_BODY` bytes.
pub(super) fn one_line(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > MAX_LOGGED_BODY {
        let mut end = MAX_LOGGED_BODY;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// A credentials file that cannot be read; never says what it holds.
#[derive(Debug, thiserror::Error)]
#[error("cannot read credentials file {}: {source}", path.display())]
pub struct SecretFileError {
    path: PathBuf,
    source: std::io::Error,
}

/// A credential in a file, re-read when the file changes: projected
/// service-account tokens and mounted Secrets are rotated in place.
struct SecretFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, String)>>,
}

impl SecretFile {
    fn new(path: PathBuf) -> Self {
        SecretFile {
            path,
            cached: Mutex::new(None),
        }
    }

    /// The file's contents without surrounding whitespace. The error names
    /// the file, never its contents.
    fn read(&self) -> Result<String, SecretFileError> {
        let unreadable = |source| SecretFileError {
            path: self.path.clone(),
            source,
        };
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(unreadable)?;
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, secret)) = cached.as_ref() {
            if *at == modified {
                return Ok(secret.clone());
            }
        }
        let secret = std::fs::read_to_string(&self.path)
            .map_err(unreadable)?
            .trim()
            .to_owned();
        *cached = Some((modified, secret.clone()));
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_reread_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let secret = SecretFile::new(path.clone());
        assert_eq!(secret.read().unwrap(), "first");
        std::fs::write(&path, "second").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(secret.read().unwrap(), "second");
        std::fs::remove_file(&path).unwrap();
        let err = secret.read().unwrap_err().to_string();
        assert!(err.contains("token") && !err.contains("second"), "{err}");
    }
}
