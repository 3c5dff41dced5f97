//! One receiver, remote write or OTLP: batching, auth, and the retry rules
//! of the specs — 5xx (OTLP: 502, 503, 504) and network errors are retried
//! with exponential backoff and jitter, 429 honours `Retry-After`, any other
//! 4xx is final. The two protocols differ only in how a batch is encoded and
//! compressed and in what an answer means; the rest is shared.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};
use reqwest::{StatusCode, Url};
use tracing::{debug, info, warn};

use super::config::{EndpointConfig, Protocol};
use super::otlp::{self, PartialSuccess};
use super::{compress, encode, encode_v2};
use crate::inventory::{Series, Snapshot};
use crate::telemetry::Telemetry;

/// How much of an error response body is logged.
const MAX_LOGGED_BODY: usize = 1024;
const V1_CONTENT_TYPE: &str = "application/x-protobuf";
const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// A 2.0 receiver reports what it wrote; a 1.x receiver does not (and wrote nothing).
const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
const OTLP_CONTENT_TYPE: &str = "application/x-protobuf";
/// Most of an OTLP answer read: a partial success or an error status is a
/// few hundred bytes, and a receiver must not make the pusher buffer more.
const MAX_OTLP_RESPONSE: usize = 64 * 1024;

/// Why a snapshot was not completely accepted.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{endpoint} did not accept {failed} of {batches} requests ({series} series dropped): {last}")]
    Rejected {
        endpoint: String,
        batches: usize,
        failed: usize,
        series: usize,
        last: String,
    },
    #[error("{endpoint}: a newer snapshot replaced this one before it was accepted")]
    Superseded { endpoint: String },
    #[error("failed to set up the HTTP client for {endpoint}: {message}")]
    Setup { endpoint: String, message: String },
}

/// What an accepted snapshot cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushReport {
    pub requests: usize,
    pub series: usize,
    pub bytes: usize,
}

/// A receiver and how to talk to it.
pub struct Endpoint {
    config: EndpointConfig,
    /// The URL without credentials or query, for logs and metric labels.
    name: String,
    http: reqwest::Client,
    password: Option<SecretFile>,
    token: Option<SecretFile>,
    /// Cleared for good once the receiver shows it does not speak 2.0.
    use_v2: AtomicBool,
    /// The receiver's last OTLP partial success, logged when it changes.
    partial: Mutex<Option<PartialSuccess>>,
}

/// The message a request is encoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    V1,
    V2,
    Otlp,
}

/// Outcome of one request after retries.
enum Attempt {
    Accepted,
    Rejected(String),
    Superseded,
    /// The receiver does not speak 2.0: send the batch again as 1.0.
    FallBack,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Result<Self, PushError> {
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
        for (header, value) in &config.headers {
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
        let password = config.password_file.clone().map(SecretFile::new);
        let token = config.bearer_token_file.clone().map(SecretFile::new);
        let use_v2 = AtomicBool::new(config.protocol == Protocol::V2);
        Ok(Endpoint {
            config,
            name,
            http,
            password,
            token,
            use_v2,
            partial: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends a snapshot (plus `extra` series, such as stale markers) in
    /// requests of at most `max_series_per_request` series. Every batch is
    /// tried even if an earlier one failed, so one rejected batch does not
    /// lose the rest. `superseded` tells when a newer snapshot is waiting:
    /// then retrying this one is pointless and the push stops.
    pub async fn push(
        &self,
        snapshot: &Snapshot,
        extra: &[Series],
        telemetry: &Telemetry,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> Result<PushReport, PushError> {
        let started = Instant::now();
        let mut report = PushReport::default();
        let (mut failed, mut dropped, mut last_error) = (0, 0, String::new());
        let all: Vec<&Series> = snapshot.series.iter().chain(extra).collect();
        let batches: Vec<&[&Series]> = all.chunks(self.config.max_series_per_request).collect();
        for batch in &batches {
            let outcome = loop {
                let wire = self.wire();
                let compressed = match wire {
                    Wire::Otlp => otlp::compress(&otlp::encode(
                        &batch[..],
                        snapshot.timestamp_ms,
                        &self.config.resource_labels,
                    ))
                    .map_err(|e| format!("gzip: {e}")),
                    // Only for bodies over snappy's 4 GiB limit; a failure, not a panic.
                    Wire::V2 => compress(&encode_v2(&batch[..], snapshot.timestamp_ms))
                        .map_err(|e| format!("snappy: {e}")),
                    Wire::V1 => compress(&encode(&batch[..], snapshot.timestamp_ms))
                        .map_err(|e| format!("snappy: {e}")),
                };
                let compressed = match compressed {
                    Ok(c) => c,
                    Err(reason) => break (Attempt::Rejected(reason), 0),
                };
                let len = compressed.len();
                match self
                    .send(compressed, wire, batch.len(), telemetry, superseded)
                    .await
                {
                    Attempt::FallBack => {
                        self.use_v2.store(false, Ordering::Relaxed);
                        continue;
                    }
                    other => break (other, len),
                }
            };
            match outcome {
                (Attempt::Accepted, bytes) => {
                    telemetry
                        .pushes
                        .with_label_values(&[&self.name, "success"])
                        .inc();
                    report.requests += 1;
                    report.series += batch.len();
                    report.bytes += bytes;
                }
                (Attempt::Superseded, _) => {
                    telemetry
                        .pushes
                        .with_label_values(&[&self.name, "superseded"])
                        .inc();
                    return Err(PushError::Superseded {
                        endpoint: self.name.clone(),
                    });
                }
                (Attempt::Rejected(reason), _) => {
                    telemetry
                        .pushes
                        .with_label_values(&[&self.name, "failed"])
                        .inc();
                    (failed, dropped, last_error) = (failed + 1, dropped + batch.len(), reason);
                }
                (Attempt::FallBack, _) => unreachable!("handled in the loop"),
            }
        }
        telemetry
            .push_duration
            .with_label_values(&[&self.name])
            .observe(started.elapsed().as_secs_f64());
        telemetry
            .series_sent
            .with_label_values(&[&self.name])
            .inc_by(report.series as u64);
        telemetry
            .bytes_sent
            .with_label_values(&[&self.name])
            .inc_by(report.bytes as u64);
        if failed > 0 {
            telemetry
                .series_dropped
                .with_label_values(&[&self.name])
                .inc_by(dropped as u64);
            return Err(PushError::Rejected {
                endpoint: self.name.clone(),
                batches: batches.len(),
                failed,
                series: dropped,
                last: last_error,
            });
        }
        telemetry
            .last_success
            .with_label_values(&[&self.name])
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        Ok(report)
    }

    fn wire(&self) -> Wire {
        match self.config.protocol {
            Protocol::Otlp => Wire::Otlp,
            _ if self.use_v2.load(Ordering::Relaxed) => Wire::V2,
            _ => Wire::V1,
        }
    }

    /// Sends one compressed request of `points` series, retrying what may be retried.
    async fn send(
        &self,
        body: Vec<u8>,
        wire: Wire,
        points: usize,
        telemetry: &Telemetry,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> Attempt {
        let v2 = wire == Wire::V2;
        let retry = &self.config.retry;
        let deadline = Instant::now() + retry.retry_for;
        let mut backoff = retry.min_backoff;
        loop {
            let request = match self.request(body.clone(), wire) {
                Ok(r) => r,
                Err(reason) => {
                    warn!(endpoint = %self.name, reason, "cannot build the request");
                    return Attempt::Rejected(reason);
                }
            };
            let (retry_after, reason) = match request.send().await {
                Ok(response) if response.status().is_success() && wire == Wire::Otlp => {
                    self.partial_success(response, points, telemetry).await;
                    return Attempt::Accepted;
                }
                Ok(response) if response.status().is_success() => {
                    if v2 && !response.headers().contains_key(SAMPLES_WRITTEN) {
                        info!(endpoint = %self.name, "receiver accepted a 2.0 request without reporting what it wrote: it speaks only 1.x; using 1.0 from now on");
                        return Attempt::FallBack;
                    }
                    return Attempt::Accepted;
                }
                Ok(response) if v2 && response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                    info!(endpoint = %self.name, "receiver does not accept remote-write 2.0 (415); using 1.0 from now on");
                    return Attempt::FallBack;
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = crate::http::retry_after(response.headers());
                    let text = if wire == Wire::Otlp {
                        otlp_error(response).await
                    } else {
                        crate::http::body_excerpt(response, MAX_LOGGED_BODY).await
                    };
                    let reason = format!("HTTP {status}: {text}");
                    let retryable = match status {
                        StatusCode::TOO_MANY_REQUESTS => retry.retry_on_rate_limit,
                        _ if wire == Wire::Otlp => otlp::retryable(status),
                        _ => status.is_server_error(),
                    };
                    if !retryable {
                        warn!(endpoint = %self.name, %status, body = %text, "remote write rejected; not retrying");
                        return Attempt::Rejected(reason);
                    }
                    (retry_after, reason)
                }
                Err(e) => (
                    None,
                    format!(
                        "request failed: {}",
                        crate::describe_error(&e.without_url())
                    ),
                ),
            };
            let wait = retry_after.unwrap_or_else(|| jitter(backoff));
            if Instant::now() + wait > deadline {
                warn!(endpoint = %self.name, reason, "remote write failed; giving up on this request");
                return Attempt::Rejected(reason);
            }
            if superseded() {
                debug!(endpoint = %self.name, reason, "remote write failed; a newer snapshot is waiting, so not retrying this one");
                return Attempt::Superseded;
            }
            debug!(endpoint = %self.name, reason, ?wait, "remote write failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(retry.max_backoff);
        }
    }

    fn request(&self, body: Vec<u8>, wire: Wire) -> Result<reqwest::RequestBuilder, String> {
        let request = self.http.post(self.config.url.clone()).body(body);
        let mut request = match wire {
            Wire::Otlp => request.header(CONTENT_TYPE, OTLP_CONTENT_TYPE),
            Wire::V2 => request
                .header(CONTENT_TYPE, V2_CONTENT_TYPE)
                .header("X-Prometheus-Remote-Write-Version", "2.0.0"),
            Wire::V1 => request
                .header(CONTENT_TYPE, V1_CONTENT_TYPE)
                .header("X-Prometheus-Remote-Write-Version", "0.1.0"),
        };
        if let (Some(user), Some(password)) = (&self.config.username, &self.password) {
            request = request.basic_auth(user, Some(password.read()?));
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.read()?);
        }
        Ok(request)
    }
}

impl Endpoint {
    /// Reads an accepted OTLP request's answer: points the receiver rejected
    /// are counted, and its partial success is logged when it changes (a
    /// receiver that rejects the same points every tick logs once).
    async fn partial_success(
        &self,
        response: reqwest::Response,
        points: usize,
        telemetry: &Telemetry,
    ) {
        let body = crate::http::read_limited(response, MAX_OTLP_RESPONSE)
            .await
            .unwrap_or_default();
        let partial = otlp::partial_success(&body).map(|mut p| {
            // A receiver cannot reject more than it was sent.
            p.rejected_data_points = p.rejected_data_points.min(points as u64);
            p.message = one_line(&p.message);
            p
        });
        if let Some(p) = &partial {
            telemetry
                .otlp_rejected_points
                .with_label_values(&[&self.name])
                .inc_by(p.rejected_data_points);
        }
        let mut last = self.partial.lock().expect("partial success poisoned");
        if *last == partial {
            return;
        }
        match &partial {
            Some(p) if p.rejected_data_points > 0 => {
                warn!(endpoint = %self.name, rejected = p.rejected_data_points, message = %p.message, "OTLP receiver accepted the request only in part")
            }
            Some(p) => {
                warn!(endpoint = %self.name, message = %p.message, "OTLP receiver accepted the request with a warning")
            }
            None => info!(endpoint = %self.name, "OTLP receiver accepts every data point again"),
        }
        *last = partial;
    }
}

/// The message of an OTLP error answer (a `google.rpc.Status`), else the
/// body as text.
async fn otlp_error(response: reqwest::Response) -> String {
    match crate::http::read_limited(response, MAX_OTLP_RESPONSE).await {
        Ok(body) => otlp::status_message(&body)
            .map(|m| one_line(&m))
            .unwrap_or_else(|| one_line(&String::from_utf8_lossy(&body))),
        Err(e) => e.to_string(),
    }
}

/// A receiver's text on one line and at most `MAX_LOGGED_BODY` bytes.
fn one_line(text: &str) -> String {
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
    fn read(&self) -> Result<String, String> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("cannot read credentials file {}: {e}", self.path.display()))?;
        let mut cached = self.cached.lock().expect("secret cache poisoned");
        if let Some((at, secret)) = cached.as_ref() {
            if *at == modified {
                return Ok(secret.clone());
            }
        }
        let secret = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read credentials file {}: {e}", self.path.display()))?
            .trim()
            .to_owned();
        *cached = Some((modified, secret.clone()));
        Ok(secret)
    }
}

/// `scheme://host[:port]/path`: never userinfo or query, which may hold secrets.
pub(crate) fn display_name(url: &Url) -> String {
    let mut name = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        name.push_str(&format!(":{port}"));
    }
    name.push_str(url.path());
    name
}

/// Between half and all of `backoff`, so that many pushers do not retry in step.
fn jitter(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(Instant::now()) % 1000;
    backoff / 2 + backoff.mul_f64(random as f64 / 2000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn jitter_stays_within_half_and_full_backoff() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(100));
            assert!(
                j >= Duration::from_millis(50) && j <= Duration::from_millis(100),
                "{j:?}"
            );
        }
    }

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
        let err = secret.read().unwrap_err();
        assert!(err.contains("token") && !err.contains("second"), "{err}");
    }
}

#[cfg(test)]
mod setup_tests {
    use super::*;
    use crate::remote_write::config::tests::defaults;

    #[test]
    fn unreadable_or_invalid_tls_files_fail_at_start() {
        let mut config = defaults("https://mimir.example.com/api/v1/push");
        config.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let err = Endpoint::new(config.clone())
            .err()
            .expect("setup fails")
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        config.tls.ca_file = Some(ca);
        assert!(Endpoint::new(config).is_err());
        Endpoint::new(defaults("https://mimir.example.com/api/v1/push"))
            .expect("plain HTTPS works");
    }
}
