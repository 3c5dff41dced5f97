//! What an OTLP/HTTP receiver answers: partial successes in 2xx bodies,
//! `google.rpc.Status` in error bodies, and which statuses may be retried.
//! The request itself is [`encode::otlp`](crate::encode::otlp)'s.

use prost::Message;

use crate::encode::otlp::proto;
use proto::collector::metrics::v1::ExportMetricsServiceResponse;

/// What a receiver said about a request it accepted only in part, or
/// accepted with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSuccess {
    pub rejected_data_points: u64,
    pub message: String,
}

/// The partial success in a 2xx response body, if any. An empty or
/// undecodable body counts as full success: the spec lets receivers send
/// nothing, and a receiver's malformed answer must not fail a push that it
/// accepted.
pub fn partial_success(body: &[u8]) -> Option<PartialSuccess> {
    let partial = ExportMetricsServiceResponse::decode(body)
        .ok()?
        .partial_success?;
    let rejected_data_points = u64::try_from(partial.rejected_data_points).unwrap_or(0);
    if rejected_data_points == 0 && partial.error_message.is_empty() {
        return None;
    }
    Some(PartialSuccess {
        rejected_data_points,
        message: partial.error_message,
    })
}

/// The message of a `google.rpc.Status` error body, when it is one.
pub fn status_message(body: &[u8]) -> Option<String> {
    let status = proto::rpc::Status::decode(body).ok()?;
    (!status.message.is_empty()).then_some(status.message)
}

/// Whether OTLP/HTTP allows retrying a response with this status: only
/// 429, 502, 503 and 504; every other 4xx or 5xx must not be retried.
pub fn retryable(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_success_is_read_and_hostile_bodies_are_not_failures() {
        use proto::collector::metrics::v1::ExportMetricsPartialSuccess;
        let response = |rejected: i64, message: &str| {
            ExportMetricsServiceResponse {
                partial_success: Some(ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message.into(),
                }),
            }
            .encode_to_vec()
        };
        assert_eq!(
            partial_success(&response(3, "bad label")),
            Some(PartialSuccess {
                rejected_data_points: 3,
                message: "bad label".into()
            })
        );
        assert_eq!(
            partial_success(&response(0, "deprecated endpoint")),
            Some(PartialSuccess {
                rejected_data_points: 0,
                message: "deprecated endpoint".into()
            }),
            "a warning with nothing rejected"
        );
        assert_eq!(partial_success(&response(0, "")), None, "empty is success");
        assert_eq!(
            partial_success(&response(-7, "")),
            None,
            "negative is nothing"
        );
        assert_eq!(partial_success(b""), None);
        assert_eq!(partial_success(b"{\"partialSuccess\":{}}"), None);
        assert_eq!(partial_success(&[0xff; 16]), None);
    }

    #[test]
    fn error_bodies_give_their_status_message() {
        let body = proto::rpc::Status {
            code: 3,
            message: "invalid metric".into(),
        }
        .encode_to_vec();
        assert_eq!(status_message(&body).as_deref(), Some("invalid metric"));
        assert_eq!(status_message(&[0xff; 4]), None);
    }

    #[test]
    fn only_the_spec_s_statuses_are_retried() {
        use reqwest::StatusCode;
        for code in [429, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 413, 415, 500, 501] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
