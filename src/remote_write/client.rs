//! Sending requests to one remote-write endpoint, with the retry rules of
//! the spec: 5xx and network errors are retried with exponential backoff
//! and jitter, 429 honours `Retry-After`, any other 4xx is final.

use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT,
};
use reqwest::{StatusCode, Url};
use tracing::{debug, warn};

use super::{compress, encode};
use crate::inventory::Snapshot;
use crate::telemetry::Telemetry;

const MIN_BACKOFF: Duration = Duration::from_millis(30);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How much of an error response body is logged.
const MAX_LOGGED_BODY: usize = 1024;

/// Why a snapshot was not completely accepted.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "{endpoint} rejected {failed} of {batches} requests ({series} series dropped): {last}"
    )]
    Rejected {
        endpoint: String,
        batches: usize,
        failed: usize,
        series: usize,
        last: String,
    },
    #[error("failed to build the HTTP client for {endpoint}: {source}")]
    Client {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
}

/// What a completely accepted snapshot cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct PushReport {
    pub requests: usize,
    pub series: usize,
    pub bytes: usize,
}

/// One remote-write receiver.
pub struct Endpoint {
    url: Url,
    /// The URL without credentials or query, for logs and metric labels.
    name: String,
    http: reqwest::Client,
    max_series_per_request: usize,
    retry_for: Duration,
}

/// Outcome of one request after retries.
enum Attempt {
    Accepted,
    Rejected(String),
}

impl Endpoint {
    pub fn new(
        url: Url,
        timeout: Duration,
        max_series_per_request: usize,
        retry_for: Duration,
    ) -> Result<Self, PushError> {
        crate::install_crypto_provider();
        let name = display_name(&url);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(
            "X-Prometheus-Remote-Write-Version",
            HeaderValue::from_static("0.1.0"),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!(
                "container-image-pusher/",
                env!("CARGO_PKG_VERSION")
            )),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|source| PushError::Client {
                endpoint: name.clone(),
                source,
            })?;
        Ok(Endpoint {
            url,
            name,
            http,
            max_series_per_request,
            retry_for,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends a snapshot in requests of at most `max_series_per_request`
    /// series. Every batch is tried even if an earlier one failed, so one
    /// rejected batch does not lose the rest of the snapshot.
    pub async fn push(
        &self,
        snapshot: &Snapshot,
        telemetry: &Telemetry,
    ) -> Result<PushReport, PushError> {
        let started = Instant::now();
        let mut report = PushReport::default();
        let (mut failed, mut dropped, mut last_error) = (0, 0, String::new());
        let batches: Vec<_> = snapshot
            .series
            .chunks(self.max_series_per_request)
            .collect();
        for batch in &batches {
            let body = encode(batch, snapshot.timestamp_ms);
            let compressed = match compress(&body) {
                Ok(c) => c,
                Err(e) => {
                    // Cannot happen for in-memory buffers below snappy's 4 GiB limit; kept
                    // as a failure rather than a panic all the same.
                    (failed, dropped, last_error) =
                        (failed + 1, dropped + batch.len(), format!("snappy: {e}"));
                    continue;
                }
            };
            match self.send(compressed.clone()).await {
                Attempt::Accepted => {
                    telemetry
                        .pushes
                        .with_label_values(&[&self.name, "success"])
                        .inc();
                    report.requests += 1;
                    report.series += batch.len();
                    report.bytes += compressed.len();
                }
                Attempt::Rejected(reason) => {
                    telemetry
                        .pushes
                        .with_label_values(&[&self.name, "failed"])
                        .inc();
                    (failed, dropped, last_error) = (failed + 1, dropped + batch.len(), reason);
                }
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

    /// Sends one compressed request, retrying what the spec says is retryable
    /// until `retry_for` has passed.
    async fn send(&self, body: Vec<u8>) -> Attempt {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = MIN_BACKOFF;
        loop {
            let (retry_after, reason) = match self
                .http
                .post(self.url.clone())
                .body(body.clone())
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => return Attempt::Accepted,
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    let text = response_text(response).await;
                    let reason = format!("HTTP {status}: {text}");
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        warn!(endpoint = %self.name, %status, body = %text, "remote write rejected; not retrying a client error");
                        return Attempt::Rejected(reason);
                    }
                    (retry_after, reason)
                }
                Err(e) => (None, format!("request failed: {}", describe(&e))),
            };
            let wait = retry_after.unwrap_or_else(|| jitter(backoff));
            if Instant::now() + wait > deadline {
                warn!(endpoint = %self.name, reason, "remote write failed; giving up on this request");
                return Attempt::Rejected(reason);
            }
            debug!(endpoint = %self.name, reason, ?wait, "remote write failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// `scheme://host[:port]/path`: never userinfo or query, which may hold secrets.
fn display_name(url: &Url) -> String {
    let mut name = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        name.push_str(&format!(":{port}"));
    }
    name.push_str(url.path());
    name
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (date.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
        .or(Some(Duration::ZERO))
}

/// At most [`MAX_LOGGED_BODY`] bytes of the body, on one line.
async fn response_text(response: reqwest::Response) -> String {
    let bytes = response.bytes().await.unwrap_or_default();
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LOGGED_BODY)])
        .trim()
        .replace('\n', " ");
    if bytes.len() > MAX_LOGGED_BODY {
        text.push('…');
    }
    text
}

/// Between half and all of `backoff`, so that many pushers do not retry in step.
fn jitter(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(Instant::now()) % 1000;
    backoff / 2 + backoff.mul_f64(random as f64 / 2000.0)
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
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
    fn retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
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
}
