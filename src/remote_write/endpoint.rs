//! One receiver, remote write or OTLP, and the retry rules of the specs —
//! 5xx (OTLP: 502, 503, 504) and network errors are retried with
//! exponential backoff and jitter ([`retry`](super::retry)), 429 honours
//! `Retry-After`, any other 4xx is final. The two protocols differ only in
//! how a batch is encoded and compressed and in what an answer means; the
//! rest is shared. The HTTP client is the [`transport`](super::transport);
//! pushing a snapshot in batches is `push`.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tracing::{debug, info, warn};

use super::config::{display_name, EndpointConfig, Protocol};
use super::metrics::Metrics;
use super::otlp::{self, PartialSuccess};
use super::outcome::{Attempt, Failure, FailureClass, PushError};
use super::refusal::{self, Refusal};
use super::retry::{jitter, sleep_unless_superseded, Pause};
use super::transport::{one_line, Transport, Wire, MAX_OTLP_RESPONSE, SAMPLES_WRITTEN};
use crate::encode::{self, Buffers};
use crate::series::Series;

/// A receiver and how to talk to it.
pub struct Endpoint {
    pub(super) config: EndpointConfig,
    /// The URL without credentials or query, for logs and metric labels.
    pub(super) name: String,
    transport: Transport,
    /// Cleared for good once the receiver shows it does not speak 2.0.
    use_v2: AtomicBool,
    /// The pause the receiver asked for with `Retry-After`.
    pause: Pause,
    /// The receiver's last OTLP partial success, logged when it changes.
    partial: Mutex<Option<PartialSuccess>>,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Result<Self, PushError> {
        let name = display_name(&config.url);
        let transport = Transport::new(&config)?;
        let use_v2 = AtomicBool::new(config.protocol == Protocol::V2);
        let pause = Pause::new(name.clone(), config.retry.max_pause);
        Ok(Endpoint {
            config,
            name,
            transport,
            use_v2,
            pause,
            partial: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How much of the receiver's pause is left, if one is in force.
    pub fn pause_left(&self) -> Option<Duration> {
        self.pause.left()
    }

    /// Encodes and sends one batch, again as 1.0 if the receiver does not
    /// speak 2.0. Returns the outcome and the compressed size.
    pub(super) async fn attempt(
        &self,
        batch: &[&Series],
        timestamp_ms: i64,
        buffers: &mut Buffers,
        metrics: &Metrics,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> (Attempt, usize) {
        loop {
            let wire = self.wire();
            let compressed = match wire {
                Wire::Otlp => encode::otlp::compress(&encode::otlp::encode(
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
                .send(compressed, wire, batch.len(), metrics, superseded)
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
        metrics: &Metrics,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> Attempt {
        let retry = &self.config.retry;
        let started = Instant::now();
        let mut backoff = retry.min_backoff;
        let mut last: Option<Failure> = None;
        loop {
            if let Some(attempt) = self.pause.wait(&last, started, retry, superseded).await {
                return attempt;
            }
            self.pause.end();
            let request = match self.transport.request(body.clone(), wire) {
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
                Ok(response) => match self.answer(response, wire, points, metrics).await {
                    ControlFlow::Break(attempt) => return attempt,
                    ControlFlow::Continue(failure) => failure,
                },
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
            if self.pause.left().is_some_and(|p| p > wait) {
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

    /// What the receiver's answer to one request means: the request's
    /// outcome (`Break`), or a failure to retry (`Continue`), after which
    /// a `Retry-After` pauses the endpoint.
    async fn answer(
        &self,
        response: reqwest::Response,
        wire: Wire,
        points: usize,
        metrics: &Metrics,
    ) -> ControlFlow<Attempt, Failure> {
        let v2 = wire == Wire::V2;
        let status = response.status();
        if status.is_success() && wire == Wire::Otlp {
            self.partial_success(response, points, metrics).await;
            return ControlFlow::Break(Attempt::Accepted);
        }
        if status.is_success() {
            // 202: Mimir's HA tracker dropping a replica that is not
            // elected, which says nothing of what it speaks.
            if v2
                && status != StatusCode::ACCEPTED
                && !response.headers().contains_key(SAMPLES_WRITTEN)
            {
                info!(endpoint = %self.name, "receiver accepted a 2.0 request without reporting what it wrote: it speaks only 1.x; using 1.0 from now on");
                return ControlFlow::Break(Attempt::FallBack);
            }
            return ControlFlow::Break(Attempt::Accepted);
        }
        if v2 && status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            info!(endpoint = %self.name, "receiver does not accept remote-write 2.0 (415); using 1.0 from now on");
            return ControlFlow::Break(Attempt::FallBack);
        }
        let retry_after = crate::http::retry_after(response.headers());
        let written = refusal::written(response.headers());
        let text = self.transport.error_text(response, wire).await;
        let failure = Failure {
            class: FailureClass::of(status),
            reason: format!("HTTP {status}: {text}"),
        };
        if status == StatusCode::BAD_REQUEST && wire != Wire::Otlp {
            match Refusal::of(&text, written) {
                Refusal::PerSeries => {
                    debug!(endpoint = %self.name, body = %text, "remote write refused some series of a request and stored the rest");
                    return ControlFlow::Break(Attempt::Partial { failure, written });
                }
                Refusal::Overlap => {
                    debug!(endpoint = %self.name, body = %text, "remote write refused older samples than it holds");
                    return ControlFlow::Break(Attempt::Overlap(failure));
                }
                Refusal::Whole => {}
            }
        }
        let retryable = match status {
            StatusCode::TOO_MANY_REQUESTS => self.config.retry.retry_on_rate_limit,
            _ if wire == Wire::Otlp => otlp::retryable(status),
            _ => status.is_server_error(),
        };
        if !retryable {
            debug!(endpoint = %self.name, %status, body = %text, "remote write rejected; not retrying");
            return ControlFlow::Break(Attempt::Rejected(failure));
        }
        if let Some(asked) = retry_after {
            self.pause.extend(asked, &failure);
        }
        ControlFlow::Continue(failure)
    }

    /// Reads an accepted OTLP request's answer: points the receiver rejected
    /// are counted, and its partial success is logged when it changes (a
    /// receiver that rejects the same points every tick logs once).
    async fn partial_success(&self, response: reqwest::Response, points: usize, metrics: &Metrics) {
        let body = crate::http::read_limited(response, MAX_OTLP_RESPONSE)
            .await
            .unwrap_or_default();
        let partial = otlp::partial_success(&body).map(|mut p| {
            // A receiver cannot reject more than it was sent.
            p.rejected_data_points = p.rejected_data_points.min(points as u64);
            p.message = one_line(&self.transport.redact(std::mem::take(&mut p.message)));
            p
        });
        if let Some(p) = &partial {
            metrics
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::config::tests::defaults;
    use crate::remote_write::config::Header;

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
            endpoint.transport.redact("bad token Bearer bearer-secret-123 for key key-secret-456 (tenant prod-eu, cluster=\"prod-eu\")".into()),
            "bad token *** for key *** (tenant prod-eu, cluster=\"prod-eu\")"
        );
        assert_eq!(
            endpoint.transport.redact("red \u{1b}[31m\r\nforged".into()),
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
