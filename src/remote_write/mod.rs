//! Remote write: pushes each snapshot's series to receivers as remote
//! write 1.0 or 2.0 (chosen per endpoint, with a fallback to 1.0 for
//! receivers that do not speak 2.0) or OTLP/HTTP ([`otlp`] reads what an
//! OTLP receiver answers).
//!
//! The bodies are [`encode`](crate::encode)'s; this module sends them:
//! per receiver an [`EndpointConfig`], a transport (HTTP, auth,
//! TLS, redaction), a retry-and-pause policy, the push (batches, and the
//! series a receiver refused isolated from the rest) and a [`Sender`]
//! that keeps the latest snapshot for each receiver.

mod config;
mod endpoint;
mod metrics;
pub mod otlp;
mod outcome;
mod push;
mod refusal;
mod retry;
mod sender;
mod transport;

pub use refusal::{written, Refusal, MAX_ISOLATING_REQUESTS};

/// The staleness marker's bits, kept here too for the receivers' tests.
pub use crate::series::STALE_NAN;
pub use config::{
    parse_header, parse_url, parse_wait, Auth, DurationError, EndpointConfig, EndpointError,
    EndpointsFileError, FlagError, Header, HeaderError, Protocol, PushUrl, RetryPolicy,
    SecretValueParser, TlsConfig, LONGEST_WAIT,
};
pub use endpoint::Endpoint;
pub use metrics::Metrics;
pub use outcome::{PushError, PushReport, Settled};
pub use sender::Sender;
