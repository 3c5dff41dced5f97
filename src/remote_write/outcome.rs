//! What became of a push, a batch and a request: the outcomes the push
//! loop, the retry policy and the sender share.

use reqwest::StatusCode;

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
    pub(super) fn of(status: StatusCode) -> FailureClass {
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
    pub(super) class: FailureClass,
    pub(super) reason: String,
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
