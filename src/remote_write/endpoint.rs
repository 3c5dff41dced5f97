//! One receiver, remote write or OTLP: batching, auth, and the retry rules
//! of the specs — 5xx (OTLP: 502, 503, 504) and network errors are retried
//! with exponential backoff and jitter, 429 honours `Retry-After`, any other
//! 4xx is final. The two protocols differ only in how a batch is encoded and
//! compressed and in what an answer means; the rest is shared.
//!
//! Whatever the receiver answers is untrusted: bodies are read to at most
//! 1 KiB (and stripped of our own secrets should it echo them), redirects
//! are not followed (they would carry tenant headers elsewhere), and a
//! `Retry-After` becomes a pause of the whole endpoint, clamped to
//! `--retry-max-pause`, with no arithmetic on instants that can overflow.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT,
};
use reqwest::{StatusCode, Url};
use tracing::{debug, info, warn};

use super::config::{EndpointConfig, Header, Protocol, LONGEST_WAIT};
use super::otlp::{self, PartialSuccess};
use super::refusal::{self, Refusal};
use super::Buffers;
use crate::series::{Series, Snapshot};
use crate::telemetry::Telemetry;

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
const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
const OTLP_CONTENT_TYPE: &str = "application/x-protobuf";
/// Most of an OTLP answer read: a partial success or an error status is a
/// few hundred bytes, and a receiver must not make the pusher buffer more.
const MAX_OTLP_RESPONSE: usize = 64 * 1024;

/// Why a snapshot was not completely accepted.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{endpoint} did not accept {failed} of {batches} requests ({series} series dropped): {first}")]
    Rejected {
        endpoint: String,
        batches: usize,
        failed: usize,
        series: usize,
        /// The class of the first failed request: the root cause.
        class: FailureClass,
        first: String,
    },
    #[error("{endpoint}: a newer snapshot replaced this one before it was accepted (it had failed: {last})")]
    Superseded {
        endpoint: String,
        class: FailureClass,
        last: String,
    },
    #[error("failed to set up the HTTP client for {endpoint}: {message}")]
    Setup { endpoint: String, message: String },
}

impl PushError {
    /// What kind of failure it was, for logging changes rather than repeats.
    pub fn class(&self) -> Option<FailureClass> {
        match self {
            PushError::Rejected { class, .. } | PushError::Superseded { class, .. } => Some(*class),
            PushError::Setup { .. } => None,
        }
    }
}

/// Kinds of failure an operator tells apart: one rejected request is like
/// the next, a change of kind (400 → 5xx → network) is news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// A status the receiver will answer again to the same request (4xx, 3xx).
    Refused(u16),
    /// 5xx.
    ServerError,
    /// 429.
    RateLimited,
    /// A pause the receiver asked for earlier (`Retry-After`) is still in
    /// force, so the request was not sent.
    Paused,
    /// No HTTP answer: refused connection, timeout, TLS.
    Network,
    /// The request could not be built (an unreadable credentials file).
    Local,
}

impl FailureClass {
    fn of(status: StatusCode) -> FailureClass {
        if status == StatusCode::TOO_MANY_REQUESTS {
            FailureClass::RateLimited
        } else if status.is_server_error() {
            FailureClass::ServerError
        } else {
            FailureClass::Refused(status.as_u16())
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureClass::Refused(status) => write!(f, "HTTP {status}"),
            FailureClass::ServerError => f.write_str("HTTP 5xx"),
            FailureClass::RateLimited => f.write_str("HTTP 429"),
            FailureClass::Paused => f.write_str("paused by the receiver"),
            FailureClass::Network => f.write_str("network"),
            FailureClass::Local => f.write_str("local"),
        }
    }
}

/// One failed request: its kind and what the receiver (or the network) said.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    class: FailureClass,
    reason: String,
}

/// What became of one batch, when that is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The receiver took it (2xx).
    Accepted,
    /// The receiver refused it for good (a 4xx other than 429): the same
    /// series sent again would be refused again.
    Refused,
    /// The receiver refused these series one by one and stored the rest of
    /// their request: not to be sent to it again until they change.
    Offending,
}

/// What an accepted snapshot cost, and what the receiver refused of it.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    pub requests: usize,
    pub series: usize,
    pub bytes: usize,
    /// Series refused one by one (the rest of their requests stored).
    pub refused: usize,
    /// The receiver's text for the first partially refused request.
    pub partial: Option<String>,
    /// The receiver's text for the first request refused because another
    /// pusher wrote newer samples (dropped, not failed).
    pub overlap: Option<String>,
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
    /// End of the pause the receiver asked for with `Retry-After`; kept
    /// until the first request after it, which logs that it is over.
    pause: Mutex<Option<Instant>>,
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
pub(super) enum Attempt {
    Accepted,
    /// 400 for some series, the rest stored; `written` as a 2.0 receiver
    /// reported it.
    Partial {
        failure: Failure,
        written: Option<u64>,
    },
    /// 400 for samples older than the receiver's.
    Overlap(Failure),
    Rejected(Failure),
    Superseded(Failure),
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
        let use_v2 = AtomicBool::new(config.protocol == Protocol::V2);
        Ok(Endpoint {
            config,
            name,
            http,
            password,
            token,
            use_v2,
            pause: Mutex::new(None),
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
    /// then retrying this one is pointless and the push stops. `settled`
    /// is called with each batch the receiver accepted or refused for good,
    /// so the caller knows what the receiver holds even when the push as a
    /// whole failed. Series `skip` picks (refused one by one before) are
    /// not sent.
    pub async fn push(
        &self,
        snapshot: &Snapshot,
        extra: &[Series],
        telemetry: &Telemetry,
        superseded: &(dyn Fn() -> bool + Sync),
        skip: &(dyn Fn(&Series) -> bool + Sync),
        settled: &mut (dyn FnMut(&[&Series], Settled) + Send),
    ) -> Result<PushReport, PushError> {
        let started = Instant::now();
        let mut report = PushReport::default();
        let (mut failed, mut dropped) = (0, 0);
        let mut first_failure: Option<Failure> = None;
        let all: Vec<&Series> = snapshot
            .series
            .iter()
            .filter(|s| !skip(s))
            .chain(extra)
            .collect();
        let batches: Vec<&[&Series]> = all.chunks(self.config.max_series_per_request).collect();
        let mut buffers = Buffers::default();
        for batch in &batches {
            let outcome = self
                .attempt(
                    batch,
                    snapshot.timestamp_ms,
                    &mut buffers,
                    telemetry,
                    superseded,
                )
                .await;
            match outcome {
                (Attempt::Partial { failure, written }, bytes) => {
                    self.outcome(telemetry, "partial");
                    let (good, bad) = self
                        .split_refused(
                            batch,
                            written,
                            snapshot.timestamp_ms,
                            &mut buffers,
                            telemetry,
                            superseded,
                        )
                        .await;
                    settled(&good, Settled::Accepted);
                    settled(&bad, Settled::Offending);
                    telemetry
                        .series_refused
                        .with_label_values(&[&self.name])
                        .inc_by(bad.len() as u64);
                    report.requests += 1;
                    report.series += good.len();
                    report.bytes += bytes;
                    report.refused += bad.len();
                    report.partial.get_or_insert(failure.reason);
                }
                (Attempt::Overlap(failure), _) => {
                    self.outcome(telemetry, "overlap");
                    // The receiver holds these series: newer samples of them.
                    settled(batch, Settled::Accepted);
                    report.requests += 1;
                    report.overlap.get_or_insert(failure.reason);
                }
                (Attempt::Accepted, bytes) => {
                    self.outcome(telemetry, "success");
                    report.requests += 1;
                    report.series += batch.len();
                    report.bytes += bytes;
                    settled(batch, Settled::Accepted);
                }
                (Attempt::Superseded(failure), _) => {
                    self.outcome(telemetry, "superseded");
                    return Err(PushError::Superseded {
                        endpoint: self.name.clone(),
                        class: failure.class,
                        last: failure.reason,
                    });
                }
                (Attempt::Rejected(failure), _) => {
                    if matches!(failure.class, FailureClass::Refused(_)) {
                        settled(batch, Settled::Refused);
                    }
                    self.outcome(telemetry, "failed");
                    (failed, dropped) = (failed + 1, dropped + batch.len());
                    first_failure.get_or_insert(failure);
                }
                (Attempt::FallBack, _) => unreachable!("handled in the loop"),
            }
        }
        self.count(telemetry, started, &report);
        if let Some(first) = first_failure {
            telemetry
                .series_dropped
                .with_label_values(&[&self.name])
                .inc_by(dropped as u64);
            return Err(PushError::Rejected {
                endpoint: self.name.clone(),
                batches: batches.len(),
                failed,
                series: dropped,
                class: first.class,
                first: first.reason,
            });
        }
        telemetry
            .last_success
            .with_label_values(&[&self.name])
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        Ok(report)
    }

    /// Counts one request's outcome in `container_image_pusher_pushes_total`.
    fn outcome(&self, telemetry: &Telemetry, outcome: &str) {
        telemetry
            .pushes
            .with_label_values(&[&self.name, outcome])
            .inc();
    }

    /// What one push cost and delivered, in the endpoint's metrics.
    fn count(&self, telemetry: &Telemetry, started: Instant, report: &PushReport) {
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
    }

    /// Encodes and sends one batch, again as 1.0 if the receiver does not
    /// speak 2.0. Returns the outcome and the compressed size.
    pub(super) async fn attempt(
        &self,
        batch: &[&Series],
        timestamp_ms: i64,
        buffers: &mut Buffers,
        telemetry: &Telemetry,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> (Attempt, usize) {
        loop {
            let wire = self.wire();
            let compressed = match wire {
                Wire::Otlp => otlp::compress(&otlp::encode(
                    batch,
                    timestamp_ms,
                    &self.config.resource_labels,
                ))
                .map_err(|e| format!("gzip: {e}")),
                // Only for bodies over snappy's 4 GiB limit; a failure, not a panic.
                Wire::V2 => buffers
                    .v2(batch, timestamp_ms)
                    .map_err(|e| format!("snappy: {e}")),
                Wire::V1 => buffers
                    .v1(batch, timestamp_ms)
                    .map_err(|e| format!("snappy: {e}")),
            };
            let compressed = match compressed {
                Ok(c) => c,
                Err(reason) => {
                    let failure = Failure {
                        class: FailureClass::Local,
                        reason,
                    };
                    return (Attempt::Rejected(failure), 0);
                }
            };
            let len = compressed.len();
            match self
                .send(compressed, wire, batch.len(), telemetry, superseded)
                .await
            {
                Attempt::FallBack => {
                    self.use_v2.store(false, Ordering::Relaxed);
                }
                other => return (other, len),
            }
        }
    }

    fn wire(&self) -> Wire {
        match self.config.protocol {
            Protocol::Otlp => Wire::Otlp,
            _ if self.use_v2.load(Ordering::Relaxed) => Wire::V2,
            _ => Wire::V1,
        }
    }

    /// Sends one compressed request of `points` series, retrying what may
    /// be retried within the retry window. Waits are compared with what is
    /// left of the window by saturating arithmetic: a receiver's number can
    /// shorten a retry, never overflow one.
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
        let started = Instant::now();
        let mut backoff = retry.min_backoff;
        let mut last: Option<Failure> = None;
        loop {
            if let Some(pause) = self.pause_left() {
                let failure = last.clone().unwrap_or_else(|| Failure {
                    class: FailureClass::Paused,
                    reason: "the receiver asked for a pause (Retry-After)".into(),
                });
                if superseded() {
                    return Attempt::Superseded(failure);
                }
                if started.elapsed().saturating_add(pause) > retry.retry_for {
                    debug!(endpoint = %self.name, reason = failure.reason, "the receiver's pause outlasts the retry window; giving up on this request");
                    return Attempt::Rejected(Failure {
                        class: failure.class,
                        reason: format!(
                            "{}; the receiver's pause (Retry-After, {} left) outlasts the retry window of {}",
                            failure.reason,
                            humantime::format_duration(round(pause)),
                            humantime::format_duration(retry.retry_for)
                        ),
                    });
                }
                if sleep_unless_superseded(pause, superseded).await {
                    return Attempt::Superseded(failure);
                }
            }
            self.end_pause();
            let request = match self.request(body.clone(), wire) {
                Ok(r) => r,
                Err(e) => {
                    let reason = e.to_string();
                    debug!(endpoint = %self.name, reason, "cannot build the request");
                    return Attempt::Rejected(Failure {
                        class: FailureClass::Local,
                        reason,
                    });
                }
            };
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() && wire == Wire::Otlp => {
                    self.partial_success(response, points, telemetry).await;
                    return Attempt::Accepted;
                }
                Ok(response) if response.status().is_success() => {
                    // 202: Mimir's HA tracker dropping a replica that is not
                    // elected, which says nothing of what it speaks.
                    if v2
                        && response.status() != StatusCode::ACCEPTED
                        && !response.headers().contains_key(SAMPLES_WRITTEN)
                    {
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
                    let written = refusal::written(response.headers());
                    // Blanked whole, then cut: a cut must not leave part of a secret.
                    let text = if wire == Wire::Otlp {
                        one_line(&self.redact(otlp_error(response).await))
                    } else {
                        let body = crate::http::body_excerpt(response, MAX_READ_BODY).await;
                        one_line(&self.redact(body))
                    };
                    let failure = Failure {
                        class: FailureClass::of(status),
                        reason: format!("HTTP {status}: {text}"),
                    };
                    if status == StatusCode::BAD_REQUEST && wire != Wire::Otlp {
                        match Refusal::of(&text, written) {
                            Refusal::PerSeries => {
                                debug!(endpoint = %self.name, body = %text, "remote write refused some series of a request and stored the rest");
                                return Attempt::Partial { failure, written };
                            }
                            Refusal::Overlap => {
                                debug!(endpoint = %self.name, body = %text, "remote write refused older samples than it holds");
                                return Attempt::Overlap(failure);
                            }
                            Refusal::Whole => {}
                        }
                    }
                    let retryable = match status {
                        StatusCode::TOO_MANY_REQUESTS => retry.retry_on_rate_limit,
                        _ if wire == Wire::Otlp => otlp::retryable(status),
                        _ => status.is_server_error(),
                    };
                    if !retryable {
                        debug!(endpoint = %self.name, %status, body = %text, "remote write rejected; not retrying");
                        return Attempt::Rejected(failure);
                    }
                    if let Some(asked) = retry_after {
                        self.pause_for(asked, &failure);
                    }
                    failure
                }
                Err(e) => Failure {
                    class: FailureClass::Network,
                    reason: format!(
                        "request failed: {}",
                        crate::describe_error(&e.without_url())
                    ),
                },
            };
            // A pause longer than the backoff is waited for (or given up on)
            // at the top of the loop; a shorter one is a floor on the backoff,
            // so `Retry-After: 0` cannot make the retries spin.
            let wait = jitter(backoff);
            if self.pause_left().is_some_and(|p| p > wait) {
                last = Some(failure);
                continue;
            }
            if started.elapsed().saturating_add(wait) > retry.retry_for {
                debug!(endpoint = %self.name, reason = failure.reason, "remote write failed; giving up on this request");
                return Attempt::Rejected(failure);
            }
            if superseded() {
                debug!(endpoint = %self.name, reason = failure.reason, "remote write failed; a newer snapshot is waiting, so not retrying this one");
                return Attempt::Superseded(failure);
            }
            debug!(endpoint = %self.name, reason = failure.reason, ?wait, "remote write failed; retrying");
            if sleep_unless_superseded(wait, superseded).await {
                return Attempt::Superseded(failure);
            }
            backoff = backoff.saturating_mul(2).min(retry.max_backoff);
            last = Some(failure);
        }
    }

    /// How much of the receiver's pause is left, if one is in force.
    pub fn pause_left(&self) -> Option<Duration> {
        let until = (*self.pause.lock().unwrap_or_else(PoisonError::into_inner))?;
        until
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    /// Starts (or extends) a pause the receiver asked for, cut to
    /// `--retry-max-pause`; logs when a pause starts, not when it is extended.
    fn pause_for(&self, asked: Duration, failure: &Failure) {
        let pause = asked.min(self.config.retry.max_pause).min(LONGEST_WAIT);
        let now = Instant::now();
        let Some(until) = now.checked_add(pause).filter(|_| !pause.is_zero()) else {
            return;
        };
        let mut slot = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
        match *slot {
            Some(current) if current >= until => {}
            Some(_) => *slot = Some(until),
            None => {
                *slot = Some(until);
                warn!(
                    endpoint = %self.name,
                    reason = failure.reason,
                    asked = %humantime::format_duration(round(asked.min(LONGEST_WAIT))),
                    pause = %humantime::format_duration(round(pause)),
                    "the receiver asked for a pause (Retry-After): no requests to it until the pause ends (at most --retry-max-pause); the newest snapshot waits"
                );
            }
        }
    }

    /// Forgets a pause that is over, saying so once.
    fn end_pause(&self) {
        let mut slot = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some_and(|until| until <= Instant::now()) {
            *slot = None;
            info!(endpoint = %self.name, "the receiver's pause is over; pushing again");
        }
    }

    /// A receiver's error text fit for a log line: line breaks and tabs
    /// made spaces (no forged log lines, and a multi-line message still
    /// reads as one), other control characters (terminal escapes) replaced,
    /// and our own secrets blanked out, should it echo a header or
    /// credential back.
    fn redact(&self, text: String) -> String {
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
            .config
            .headers
            .iter()
            .filter(|h| !TENANT_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()))
            .map(|h| h.value.clone())
            .collect();
        let url = &self.config.url;
        let logins = [
            self.config
                .auth
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

    fn request(
        &self,
        body: Vec<u8>,
        wire: Wire,
    ) -> Result<reqwest::RequestBuilder, SecretFileError> {
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
        if let (Some(user), Some(password)) = (&self.config.auth.username, &self.password) {
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
            p.message = one_line(&self.redact(std::mem::take(&mut p.message)));
            p
        });
        if let Some(p) = &partial {
            telemetry
                .otlp_rejected_points
                .with_label_values(&[&self.name])
                .inc_by(p.rejected_data_points);
        }
        let mut last = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
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
/// body as text; whole, to be blanked before it is cut.
async fn otlp_error(response: reqwest::Response) -> String {
    match crate::http::read_limited(response, MAX_OTLP_RESPONSE).await {
        Ok(body) => otlp::status_message(&body)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
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
    let backoff = backoff.min(LONGEST_WAIT);
    let random = RandomState::new().hash_one(Instant::now()) % 1000;
    (backoff / 2).saturating_add(backoff.mul_f64(random as f64 / 2000.0))
}

/// Sleeps for `wait`, but gives up (true) as soon as a newer snapshot is
/// waiting: retrying or waiting out a pause for an old one is pointless.
async fn sleep_unless_superseded(wait: Duration, superseded: &(dyn Fn() -> bool + Sync)) -> bool {
    const STEP: Duration = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            return false;
        }
        if superseded() {
            return true;
        }
        tokio::time::sleep(left.min(STEP)).await;
    }
}

/// Whole milliseconds, for log lines.
fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64)
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
        let err = secret.read().unwrap_err().to_string();
        assert!(err.contains("token") && !err.contains("second"), "{err}");
    }
}

#[cfg(test)]
mod setup_tests {
    use super::*;
    use crate::remote_write::config::tests::defaults;

    fn failure() -> Failure {
        Failure {
            class: FailureClass::RateLimited,
            reason: "HTTP 429".into(),
        }
    }

    #[test]
    fn absurd_waits_saturate_instead_of_overflowing() {
        let endpoint = Endpoint::new(defaults("http://127.0.0.1:1/api/v1/write")).unwrap();
        assert_eq!(endpoint.pause_left(), None);
        // Retry-After: 18446744073709551615, and the largest Duration there is.
        for asked in [Duration::from_secs(u64::MAX), Duration::MAX] {
            endpoint.pause_for(asked, &failure());
            let left = endpoint.pause_left().expect("a pause is in force");
            assert!(
                left <= Duration::from_secs(300),
                "cut to max_pause: {left:?}"
            );
            assert!(left > Duration::from_secs(290), "{left:?}");
        }
        assert!(jitter(Duration::MAX) <= LONGEST_WAIT);
        assert!(jitter(Duration::MAX) >= LONGEST_WAIT / 2);
        assert_eq!(round(Duration::MAX), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn a_pause_is_extended_not_shortened_and_zero_is_none() {
        let endpoint = Endpoint::new(defaults("http://127.0.0.1:1/api/v1/write")).unwrap();
        endpoint.pause_for(Duration::ZERO, &failure());
        assert_eq!(endpoint.pause_left(), None, "Retry-After: 0 is no pause");
        endpoint.pause_for(Duration::from_secs(100), &failure());
        endpoint.pause_for(Duration::from_secs(10), &failure());
        assert!(endpoint.pause_left().unwrap() > Duration::from_secs(90));
        endpoint.pause_for(Duration::from_secs(200), &failure());
        assert!(endpoint.pause_left().unwrap() > Duration::from_secs(190));
        endpoint.end_pause();
        assert!(endpoint.pause_left().is_some(), "not over yet");
    }

    #[test]
    fn failure_classes_tell_refusals_errors_and_rate_limits_apart() {
        assert_eq!(
            FailureClass::of(StatusCode::BAD_REQUEST),
            FailureClass::Refused(400)
        );
        assert_eq!(
            FailureClass::of(StatusCode::TEMPORARY_REDIRECT),
            FailureClass::Refused(307)
        );
        assert_eq!(
            FailureClass::of(StatusCode::BAD_GATEWAY),
            FailureClass::ServerError
        );
        assert_eq!(
            FailureClass::of(StatusCode::SERVICE_UNAVAILABLE),
            FailureClass::of(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(
            FailureClass::of(StatusCode::TOO_MANY_REQUESTS),
            FailureClass::RateLimited
        );
    }

    #[test]
    fn a_receiver_echoing_our_secrets_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "bearer-secret-123\n").unwrap();
        let mut config = defaults("http://127.0.0.1:1/api/v1/write");
        config.headers = vec![
            Header {
                name: "X-Api-Key".into(),
                value: "key-secret-456".into(),
            },
            Header {
                name: "X-Scope-OrgID".into(),
                value: "prod-eu".into(),
            },
        ];
        config.auth.bearer_token_file = Some(token);
        let endpoint = Endpoint::new(config).unwrap();
        // A tenant is no secret: often the cluster's name, a label value.
        assert_eq!(
            endpoint.redact("bad token Bearer bearer-secret-123 for key key-secret-456 (tenant prod-eu, cluster=\"prod-eu\")".into()),
            "bad token *** for key *** (tenant prod-eu, cluster=\"prod-eu\")"
        );
        assert_eq!(
            endpoint.redact("red \u{1b}[31m\r\nforged".into()),
            "red \u{fffd}[31m  forged"
        );
    }

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
